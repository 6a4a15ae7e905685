"""/healthz and /metrics (Prometheus text format)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from jobmesh import __version__
from jobmesh.common import ops, subjects
from jobmesh.common.states import JobState

from .deps import ERRORS, GatewayDep, authorize

router = APIRouter(tags=["health"], responses=ERRORS)
EXECUTOR_FRESH = 30.0  # seconds a heartbeat counts for


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


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(authorize)],
            summary="Prometheus metrics: jobs by state, events, queue depth, executors")
async def metrics(gw: GatewayDep) -> str:
    lines = ["# HELP jobmesh_jobs Jobs by state, over every workflow's current run.",
             "# TYPE jobmesh_jobs gauge"]
    totals = {s.value: 0 for s in JobState}
    wf_states: dict[str, int] = {}
    for snap in await ops.snapshots(gw.js):
        for state, n in snap.counts().items():
            totals[state] += n
        wf_states[snap.state.value] = wf_states.get(snap.state.value, 0) + 1
    lines += [f'jobmesh_jobs{{state="{s}"}} {n}' for s, n in totals.items()]
    lines += ["# HELP jobmesh_workflows Workflows by state.", "# TYPE jobmesh_workflows gauge"]
    lines += [f'jobmesh_workflows{{state="{s}"}} {n}' for s, n in sorted(wf_states.items())]
    events = await gw.js.stream_info(subjects.STREAM_EVENTS)
    jobs = await gw.js.stream_info(subjects.STREAM_JOBS)
    lines += ["# HELP jobmesh_events_total Messages in the EVENTS log.",
              "# TYPE jobmesh_events_total counter",
              f"jobmesh_events_total {events.state.last_seq}",
              "# HELP jobmesh_jobs_queue_depth Jobs waiting in the JOBS work queue.",
              "# TYPE jobmesh_jobs_queue_depth gauge",
              f"jobmesh_jobs_queue_depth {jobs.state.messages}",
              "# HELP jobmesh_executors Executor instances seen in the last 30 s, by pool.",
              "# TYPE jobmesh_executors gauge"]
    now = time.time()
    pools: dict[str, int] = {}
    for beat in gw.executors.values():
        if now - beat["time"] < EXECUTOR_FRESH:
            pools[beat["pool"]] = pools.get(beat["pool"], 0) + 1
    lines += [f'jobmesh_executors{{pool="{p}"}} {n}' for p, n in sorted(pools.items())]
    return "\n".join(lines) + "\n"
