"""/api/workflows/{name}/runs: the run history the monitor keeps (KV bucket ``runs``).

The index ``<wf>`` lists the ended runs, the record ``<wf>.<run>`` holds one run's last
snapshot and its jobs' queue times; the current run comes from the ``workflows``
snapshot while it goes on. The bucket's layout is the monitor's (``monitor/history.py``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Response
from fastapi import Path as PathParam
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    NotFoundError,
)

from jobmesh.common import names, objects, ops, subjects
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.packing import unpack
from jobmesh.common.report import iso, status_json

from .deps import ERRORS, GatewayDep, WfName

BUCKET = subjects.KV_RUNS
router = APIRouter(prefix="/api/workflows", tags=["runs"], responses=ERRORS)
RunId = Annotated[str, PathParam(max_length=200, description=(
    "run id, as GET /api/workflows/{name}/runs lists them: letters, digits, '-', '_'"))]


def check_run(run: str) -> str:
    if not names.RUN_RE.match(run):
        raise HTTPException(422, f"invalid run id {run!r}: a run id is 1-64 letters, digits, "
                                 "'-' or '_' (e.g. 20261203T230512-3fa20c1d)")
    return run


async def _bucket(gw: GatewayDep) -> Any | None:
    try:
        return await gw.js.key_value(BUCKET)
    except (NotFoundError, BucketNotFoundError):
        return None  # no monitor has kept a run yet


async def _get(kv: Any, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, NotFoundError):
        return None
    return entry.value or None


def line(item: dict[str, Any], current: str | None) -> dict[str, Any]:
    """A run-list line as the API shows it: ISO times, durations in seconds."""
    return {"run": item["run"], "state": item["state"], "current": item["run"] == current,
            "created": iso(item.get("created")), "started": iso(item.get("started")),
            "ended": iso(item.get("ended")), "duration": item.get("duration"),
            "jobs": item.get("jobs", 0), "counts": item.get("counts", {}),
            "replaced_by": item.get("replaced_by")}


def live_line(snap: WorkflowSnapshot, now: float | None = None) -> dict[str, Any]:
    start = snap.started or snap.created
    return {"run": snap.run, "state": snap.state.value, "created": snap.created,
            "started": snap.started, "ended": snap.ended,
            "duration": round(snap.ended - start, 3) if snap.ended and start else None,
            "jobs": len(snap.jobs), "counts": {k: v for k, v in snap.counts().items() if v}}


@router.get("/{name}/runs", summary="A workflow's runs, newest first: state, start, end, "
            "duration (seconds) and job counts per state; the current run is marked")
async def list_runs(gw: GatewayDep, name: WfName) -> dict[str, Any]:
    snap = await ops.snapshot(gw.js, name)
    kv = await _bucket(gw)
    raw = await _get(kv, name) if kv is not None else None
    items = json.loads(raw).get("runs", []) if raw else []
    if snap is None and not items and not gw.store.exists(name) and \
            await ops.spec(gw.js, name) is None:
        raise HTTPException(404, f"no workflow named '{name}'")
    if snap is not None:  # the live state of the current run wins over its last record
        items = [i for i in items if i.get("run") != snap.run] + [live_line(snap)]
    items.sort(key=lambda i: (i.get("created") or 0, i.get("run") or ""), reverse=True)
    current = snap.run if snap else None
    return {"name": name, "current": current, "runs": [line(i, current) for i in items]}


@router.get("/{name}/runs/{run}", summary="One run of a workflow: its summary, the state "
            "of every job (as in GET /api/workflows/{name}) and when each job was queued",
            responses={404: {"description": "no such workflow, or it has no such run"}})
async def get_run(gw: GatewayDep, name: WfName, run: RunId) -> dict[str, Any]:
    check_run(run)
    snap = await ops.snapshot(gw.js, name)
    current = snap.run if snap else None
    queued: dict[str, float] = {}
    kv = await _bucket(gw)
    data = await _get(kv, subjects.run_record_key(name, run)) if kv is not None else None
    if data is not None and (snap is None or snap.run != run or snap.state.terminal):
        doc = json.loads(unpack(data))
        queued = {k: float(v) for k, v in (doc.get("queued") or {}).items()}
        if snap is None or snap.run != run:
            snap = WorkflowSnapshot.model_validate(doc["snapshot"])
    if snap is None or snap.run != run:
        if snap is None and not gw.store.exists(name) and await ops.spec(gw.js, name) is None:
            raise HTTPException(404, f"no workflow named '{name}'")
        raise HTTPException(404, f"workflow '{name}' has no run '{run}' (it may be older than "
                                 f"the runs kept); GET /api/workflows/{name}/runs lists them")
    summary = line(live_line(snap), current)
    return {"name": name, **summary, "status": status_json(snap),
            "queued": {k: iso(v) for k, v in queued.items()}}


@router.get("/{name}/runs/{run}/graph.svg", summary="The graph of a run as it ended (SVG); "
            "404 while it runs, and for runs that ended before graphs were kept",
            response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}})
async def run_graph(gw: GatewayDep, name: WfName, run: RunId) -> Response:
    check_run(run)
    data = await objects.get(gw.js, subjects.OBJ_GRAPHS, subjects.run_record_key(name, run))
    if not data:
        raise HTTPException(404, f"no graph kept for run '{run}' of workflow '{name}'; "
                                 f"GET /api/workflows/{name}/graph.svg is the current one")
    return Response(data, media_type="image/svg+xml")
