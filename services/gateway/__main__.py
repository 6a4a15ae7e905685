"""python -m jobmesh.gateway --nats URL [--host 127.0.0.1] [--port 8000] [--api-token T]
[--allow-host NAME]"""

from __future__ import annotations

import asyncio
import os

from jobmesh.common.service import base_parser, run_service, settings_from

from .app import close_streams, create_app
from .auth import TokenRequired, resolve
from .entry import CannotListen, listen


def main(argv: list[str] | None = None) -> None:
    p = base_parser("jobmesh.gateway", "Serve the REST API, OpenAPI and the GUI.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-token", default=None, help="bearer token for the API (or "
                   "JOBMESH_TOKEN); required to bind beyond loopback; on loopback the "
                   "default is the home's gateway.token")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name a reverse proxy reaches the gateway by (repeatable; "
                   "or JOBMESH_ALLOW_HOSTS=a,b)")
    args = p.parse_args(argv)
    settings = settings_from(args)
    try:  # the same rule as jobmesh up and jobmesh serve
        token = resolve(settings.home, args.host,
                        args.api_token or os.environ.get("JOBMESH_TOKEN") or None)
    except TokenRequired as exc:
        raise SystemExit(f"error: {exc}")

    try:
        sock = listen(args.host, args.port)  # a port in use: one line, exit 1
    except CannotListen as exc:
        raise SystemExit(f"error: {exc}") from None
    failed: list[str] = []  # why the server stopped on its own (said after the loop ends)

    async def serve(stop: asyncio.Event) -> None:
        import uvicorn

        from jobmesh.common import bus

        # Connected before uvicorn starts: refused credentials, an unreachable NATS or one
        # without JetStream are one line and exit 1 (run_service), not a lifespan
        # traceback and exit 3.
        nc = await bus.connect(settings, "jobmesh-gateway")
        try:
            await bus.ensure(nc.jetstream(), settings.replicas)
            app = create_app(settings, token, nc=nc, bind=args.host,
                             allow_hosts=args.allow_host)
            # Open event streams end when asked (close_streams); anything else still open
            # after 3 s is cut short rather than holding the stop up.
            server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                                   log_level="warning",
                                                   timeout_graceful_shutdown=3))
            task = asyncio.create_task(server.serve(sockets=[sock]))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            close_streams(app)
            server.should_exit = True
            try:
                await task
            except SystemExit:  # uvicorn's own start-up failure; it logged the reason
                failed.append("error: the gateway could not start (see above)")
            else:
                if not stop.is_set():
                    failed.append("error: the gateway stopped on its own (see above)")
        finally:
            await bus.close(nc)

    try:
        run_service(serve)
    finally:
        sock.close()
    if failed:
        raise SystemExit(failed[0])


if __name__ == "__main__":
    main()
