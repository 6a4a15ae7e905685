"""python -m jobmesh.scheduler --nats URL"""

from __future__ import annotations

import asyncio

from jobmesh.common.service import base_parser, run_service, settings_from

from .app import SchedulerService


def main(argv: list[str] | None = None) -> None:
    args = base_parser("jobmesh.scheduler",
                       "Release ready jobs to executor pools.").parse_args(argv)
    settings = settings_from(args)

    async def serve(stop: asyncio.Event) -> None:
        await SchedulerService(settings).run(stop)

    run_service(serve)


if __name__ == "__main__":
    main()
