"""python -m jobmesh.gateway --nats URL [--host 127.0.0.1] [--port 8000] [--api-token T]
[--allow-host NAME]"""

from __future__ import annotations

import asyncio
import os

from jobmesh.common.service import base_parser, run_service, settings_from

from .app import close_streams, create_app
from .auth import TokenRequired, resolve


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
            task = asyncio.create_task(server.serve())
            await stop.wait()
            close_streams(app)
            server.should_exit = True
            await task
        finally:
            await bus.close(nc)

    run_service(serve)


if __name__ == "__main__":
    main()
