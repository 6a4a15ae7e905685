"""/healthz and /metrics (Prometheus text format)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import CONTENT_TYPE_LATEST

from jobmesh import __version__
from jobmesh.common import bus, ops, subjects
from jobmesh.common.states import JobState

from .deps import ERRORS, GatewayDep, authorize
from .metrics import EXECUTOR_FRESH, Current, Metrics

__all__ = ["EXECUTOR_FRESH", "router"]
log = logging.getLogger("jobmesh.gateway")


@asynccontextmanager
async def follow_events(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (after it set ``app.state.gateway``): the app's
    metrics, fed by the job events published from now on (see ``metrics.py``)."""
    gw = app.state.gateway
    m = app.state.metrics = Metrics(gw.executors)

    async def on_msg(msg: Any) -> None:
        try:
            m.apply(msg.metadata.sequence.stream, bus.decode_log(msg.data))
        except Exception as exc:  # one odd message must not stop the metrics
            log.debug("metrics: skipped a message on %s: %r", msg.subject, exc)

    sub = None
    try:
        sub = await gw.js.subscribe(f"{subjects.PREFIX}.events.>",
                                    stream=subjects.STREAM_EVENTS, ordered_consumer=True,
                                    cb=on_msg, inactive_threshold=bus.EPHEMERAL_INACTIVE,
                                    pending_msgs_limit=-1, pending_bytes_limit=-1,
                                    config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW))
    except Exception as exc:
        log.warning("metrics: cannot follow the EVENTS stream (job metrics stay at 0): %r",
                    exc)
    try:
        yield
    finally:
        if sub is not None:
            await bus.drop(gw.js, sub)


router = APIRouter(tags=["health"], responses=ERRORS, lifespan=follow_events)


@router.get("/healthz", response_model=dict[str, Any],
            summary="Liveness and readiness; 503 names a service that died")
async def healthz(request: Request, gw: GatewayDep) -> Any:
    body = {"status": "ok" if gw.nc.is_connected else "degraded",
            "nats": gw.nc.is_connected, "version": __version__}
    # ``jobmesh up`` runs the services in this process and says which have ended.
    check = getattr(request.app.state, "dead_services", None)
    dead = check() if check else {}
    if dead:
        detail = "; ".join(f"the {name} stopped: {why}" for name, why in dead.items())
        return JSONResponse(status_code=503, content={**body, "status": "failed",
                                                      "dead": dead, "detail": detail})
    return body


@router.get("/metrics", response_class=Response, dependencies=[Depends(authorize)],
            summary="Prometheus metrics: jobs by state, queue and run times, job ends and "
            "retries, events, queue depth, executors and their calls",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request, gw: GatewayDep) -> Response:
    m: Metrics | None = getattr(request.app.state, "metrics", None)
    if m is None:  # an app whose lifespan did not run this router's (not under FastAPI)
        m = request.app.state.metrics = Metrics(gw.executors)
    cur = Current(jobs={s.value: 0 for s in JobState})
    for snap in await ops.snapshots(gw.js):
        for state, n in snap.counts().items():
            cur.jobs[state] = cur.jobs.get(state, 0) + n
        cur.workflows[snap.state.value] = cur.workflows.get(snap.state.value, 0) + 1
    events = await gw.js.stream_info(subjects.STREAM_EVENTS)
    jobs = await gw.js.stream_info(subjects.STREAM_JOBS)
    cur.events, cur.queue_depth = int(events.state.last_seq), int(jobs.state.messages)
    m.current = cur  # no await between this and the rendering: scrapes cannot mix
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
