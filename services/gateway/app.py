"""The gateway's FastAPI app: REST under /api, OpenAPI at /docs, SSE, metrics, the GUI.

It talks to the rest of jobmesh only over NATS, and never blocks its event loop: file
reads go to threads, live updates come from KV watches and stream consumers.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from jobmesh import __version__
from jobmesh.common import bus, subjects
from jobmesh.common.names import InvalidName
from jobmesh.common.settings import Settings
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import events, health, jobs, workflows
from .deps import Gateway, authorize
from .store import Store

STATIC = Path(__file__).parent / "static"


class TokenRequired(ValueError):
    pass


def check_bind(host: str, token: str | None) -> None:
    """Binding beyond loopback requires a token."""
    if token:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise TokenRequired(f"binding the API to {host} exposes it beyond this machine; "
                            "set a token with --token (or JOBMESH_TOKEN)")


def close_streams(app: FastAPI) -> None:
    """End the app's open event streams; call it just before stopping the server, so
    that open GUI tabs do not make it wait out its graceful-shutdown timeout."""
    gw = getattr(app.state, "gateway", None)
    if gw is not None:
        gw.close_streams()


def create_app(settings: Settings, token: str | None = None, nc: Any | None = None) -> FastAPI:
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
                  "With a token set, send 'Authorization: Bearer <token>'.")

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

    @app.exception_handler(bus.BusError)
    async def bus_down(request: Request, exc: bus.BusError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    secured = [Depends(authorize)]
    app.include_router(health.router)
    app.include_router(workflows.router, dependencies=secured)
    app.include_router(jobs.router, dependencies=secured)
    app.include_router(events.router, dependencies=secured)
    if (STATIC / "index.html").exists():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="gui")
    return app
