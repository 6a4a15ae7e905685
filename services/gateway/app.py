"""The gateway's FastAPI app: REST under /api, OpenAPI at /docs, SSE, metrics, the GUI.

It talks to the rest of jobmesh only over NATS, and never blocks its event loop: file
reads go to threads, live updates come from KV watches and stream consumers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats.errors
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobmesh import __version__
from jobmesh.common import bus, subjects
from jobmesh.common.names import InvalidName
from jobmesh.common.settings import Settings

from . import entry, events, health, jobs, runs, workflows
from .auth import Guard, TokenRequired, check_bind
from .deps import Gateway, authorize
from .limits import BodyLimit
from .store import Store

STATIC = Path(__file__).parent / "static"
RETRY_AFTER = 5  # seconds: a NATS node restarting or a cluster electing a leader
log = logging.getLogger("jobmesh.gateway")
__all__ = ["TokenRequired", "check_bind", "close_streams", "create_app"]


def close_streams(app: FastAPI) -> None:
    """End the app's open event streams; call it just before stopping the server, so
    that open GUI tabs do not make it wait out its graceful-shutdown timeout."""
    gw = getattr(app.state, "gateway", None)
    if gw is not None:
        gw.close_streams()


def create_app(settings: Settings, token: str | None = None, nc: Any | None = None,
               bind: str = "127.0.0.1", allow_hosts: Iterable[str] = ()) -> FastAPI:
    """The gateway. ``token``: what every API call must carry (None: nothing, for a
    library user who guards it otherwise; the commands always set one, see
    ``auth.resolve``). ``bind``: the address it listens on; ``allow_hosts``: names of a
    reverse proxy in front of it (see ``auth.Guard``)."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conn = nc or await bus.connect(settings, "jobmesh-gateway")
        js = conn.jetstream()
        await bus.ensure(js, settings.replicas)
        gw = Gateway(js=js, nc=conn, home=settings.home, token=token, store=Store(settings.home))
        app.state.gateway = gw

        async def on_beat(msg: Any) -> None:
            try:
                beat = json.loads(msg.data)
                gw.executors[f"{beat['pool']}/{beat['instance']}"] = beat
            except (ValueError, KeyError):
                pass

        sub = await conn.subscribe(subjects.HEARTBEATS, cb=on_beat)
        try:
            yield
        finally:
            await sub.unsubscribe()
            if nc is None:
                await bus.close(conn)

    app = FastAPI(title="jobmesh", version=__version__, lifespan=lifespan,
                  description="Hybrid workflow manager: upload, run and watch workflows. "
                  "Send the service's token as 'Authorization: Bearer <token>' (the token of "
                  "a 'jobmesh up' is in $JOBMESH_HOME/gateway.token).")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "path",
                                                                          "query"))
            msg = str(e.get("msg"))
            if e.get("type") == "string_pattern_mismatch" and where in ("name", "job"):
                what = "workflow" if where == "name" else "job"
                extra = ", '.'" if what == "job" else ""
                msg = (f"invalid {what} name {e.get('input')!r}: use letters, digits, '-', "
                       f"'_'{extra}")
                problems.append(msg)
                continue
            problems.append(f"{where}: {msg}" if where else msg)
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems),
                                                      "errors": json.loads(json.dumps(
                                                          exc.errors(), default=str))})

    @app.exception_handler(InvalidName)
    async def bad_name(request: Request, exc: InvalidName) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(bus.MessageTooLarge)
    async def too_large(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=413, content={"detail": str(exc)})

    # Every way NATS can fail to answer: 503 with Retry-After, never a 500.
    @app.exception_handler(bus.BusError)
    @app.exception_handler(nats.errors.Error)
    @app.exception_handler(asyncio.TimeoutError)
    async def bus_down(request: Request, exc: Exception) -> JSONResponse:
        what = str(exc) if isinstance(exc, bus.BusError) else type(exc).__name__
        log.warning("%s %s: NATS did not answer: %r", request.method, request.url.path, exc)
        return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER)},
                            content={"detail": f"NATS is not answering ({what}); try again "
                                     f"in {RETRY_AFTER} s"})

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log; the answer names no server path.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500, content={
            "detail": f"internal error ({type(exc).__name__}); the service's log has more"})

    secured = [Depends(authorize)]
    app.include_router(health.router)
    app.include_router(workflows.router, dependencies=secured)
    app.include_router(jobs.router, dependencies=secured)
    app.include_router(runs.router, dependencies=secured)
    app.include_router(events.router, dependencies=secured)
    app.include_router(entry.router)
    if (STATIC / "index.html").exists():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="gui")
    # Outermost first: the Host/Origin guard, then the body limit, before any route.
    app.add_middleware(BodyLimit)
    app.add_middleware(Guard, bind=bind, allow=tuple(allow_hosts))
    return app
