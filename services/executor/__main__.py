"""python -m jobmesh.executor --nats URL [--pool local] [--kind local] [--instance NAME]"""

from __future__ import annotations

import asyncio
import sys

from jobmesh.common.service import base_parser, run_service, settings_from

from .adopt import ADOPT_BEATS
from .app import HEARTBEAT, KINDS, ExecutorService
from .platforms import PlatformError, select_platform


def main(argv: list[str] | None = None) -> None:
    p = base_parser("jobmesh.executor", "Run jobs from one pool's work queue.")
    p.add_argument("--pool", default=None, help="the pool to serve (default: the kind)")
    p.add_argument("--kind", default="local", choices=KINDS, help="executor kind")
    p.add_argument("--instance", default=None,
                   help="a name for this executor instance, unique in its pool "
                        "(default: <host>-<pid>)")
    p.add_argument("--adopt-after", type=float, default=ADOPT_BEATS * HEARTBEAT,
                   metavar="SECONDS",
                   help="adopt a pool peer's jobs once it has sent no heartbeat for this "
                        "long (default: %(default)s; heartbeats every "
                        f"{HEARTBEAT:g} s)")
    args = p.parse_args(argv)
    if args.adopt_after < 2 * HEARTBEAT:
        p.error(f"--adopt-after: {args.adopt_after:g} is too short: at least two "
                f"heartbeats ({2 * HEARTBEAT:g} s), or live peers' jobs get adopted")
    settings = settings_from(args)
    if args.kind == "local":  # bad input, one line and exit 2, before anything connects
        try:
            select_platform()
        except PlatformError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    async def serve(stop: asyncio.Event) -> None:
        await ExecutorService(settings, pool=args.pool or args.kind, kind=args.kind,
                              instance=args.instance, adopt_after=args.adopt_after).run(stop)

    run_service(serve)


if __name__ == "__main__":
    main()
