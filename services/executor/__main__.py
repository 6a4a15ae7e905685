"""python -m jobmesh.executor --nats URL [--pool local] [--kind local]"""

from __future__ import annotations

import asyncio

from jobmesh.common.service import base_parser, run_service, settings_from

from .app import KINDS, ExecutorService


def main(argv: list[str] | None = None) -> None:
    p = base_parser("jobmesh.executor", "Run jobs from one pool's work queue.")
    p.add_argument("--pool", default=None, help="the pool to serve (default: the kind)")
    p.add_argument("--kind", default="local", choices=KINDS, help="executor kind")
    p.add_argument("--instance", default=None, help="a name for this executor instance")
    args = p.parse_args(argv)
    settings = settings_from(args)

    async def serve(stop: asyncio.Event) -> None:
        await ExecutorService(settings, pool=args.pool or args.kind, kind=args.kind,
                              instance=args.instance).run(stop)

    run_service(serve)


if __name__ == "__main__":
    main()
