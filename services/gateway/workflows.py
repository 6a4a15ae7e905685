"""/api/workflows: list, upload, show, delete, run, cancel, retry, graph."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
from pathlib import Path
from typing import IO, Any, Literal

import yaml
from fastapi import APIRouter, Body, File, Form, HTTPException, Query, Response, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from jobmesh.common import ops
from jobmesh.common.loader import SpecError, parse_workflow
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.report import csv_rows, iso, status_json
from jobmesh.common.spec import Workflow
from jobmesh.common.states import WorkflowState

from .deps import ERRORS, GatewayDep, WfName
from .limits import MAX_UPLOAD
from .store import Exists, NotUploaded
from .unpack import OverBudget, unpack
from .uploads import UnsafeUpload, kind_of

router = APIRouter(prefix="/api/workflows", tags=["workflows"], responses=ERRORS)


def spec_errors(exc: SpecError) -> JSONResponse:
    return JSONResponse(status_code=422, content={
        "detail": "the workflow is not valid: " + "; ".join(str(i) for i in exc.issues),
        "errors": [{"file": i.file, "line": i.line, "node": i.node, "field": i.field,
                    "message": i.message, "text": str(i)} for i in exc.issues]})


def summary(name: str, snap: WorkflowSnapshot | None, spec: Workflow | None,
            uploaded: bool) -> dict[str, Any]:
    total = len(snap.jobs) if snap else len(spec.jobs) if spec else 0
    counts = {k: v for k, v in snap.counts().items() if v} if snap else {}
    return {"name": name, "state": snap.state.value if snap else "NEW",
            "run": snap.run if snap else None, "jobs": total, "counts": counts,
            "created": iso(snap.created) if snap else None,
            "started": iso(snap.started) if snap else None,
            "ended": iso(snap.ended) if snap else None, "uploaded": uploaded}


async def current(gw: GatewayDep, name: str) -> tuple[WorkflowSnapshot | None, Workflow | None]:
    snap = await ops.snapshot(gw.js, name)
    uploaded = gw.store.exists(name)
    # An uploaded workflow's YAML is the truth (job edits land there); else what ran.
    spec = await asyncio.to_thread(gw.store.load, name) if uploaded else await ops.spec(
        gw.js, name)
    if snap is None and spec is None:
        raise HTTPException(404, f"no workflow named '{name}'")
    return snap, spec


async def settled(gw: GatewayDep, name: str, seq: int, timeout: float = 5.0) -> None:
    """Wait until the stored state includes the command at stream sequence ``seq``, so
    a GET right after a POST sees its effect."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        snap = await ops.snapshot(gw.js, name)
        if snap is not None and snap.seq >= seq:
            return
        await asyncio.sleep(0.02)


async def announce(gw: GatewayDep, wf: Workflow) -> None:
    """Tell the open /api/events streams about a change no snapshot shows (an upload, a
    job edit)."""
    snap = await ops.snapshot(gw.js, wf.name)
    gw.announce("workflow", summary(wf.name, snap, wf, gw.store.exists(wf.name)))


def running(snap: WorkflowSnapshot | None) -> bool:
    return snap is not None and not snap.state.terminal


@router.get("", summary="List workflows with their state and job counts")
async def list_workflows(gw: GatewayDep) -> list[dict[str, Any]]:
    snaps = {s.name: s for s in await ops.snapshots(gw.js)}
    return await asyncio.to_thread(_listing, gw, snaps)


def _listing(gw: GatewayDep, snaps: dict[str, WorkflowSnapshot]) -> list[dict[str, Any]]:
    names = set(snaps) | {p.name for p in gw.store.root.iterdir()
                          if p.is_dir() and not p.name.startswith(".") and gw.store.exists(p.name)}
    out = []
    for name in sorted(names):
        spec = None if name in snaps else gw.store.load(name)
        out.append(summary(name, snaps.get(name), spec, gw.store.exists(name)))
    return out


@router.post("", status_code=201, summary="Upload a workflow: a YAML file or a .tar, "
             ".tar.gz, .tgz or .zip archive holding the YAML and its scripts")
async def upload(gw: GatewayDep, file: UploadFile = File(...), name: str | None = Form(None),
                 replace: bool = Form(False), allow_large: bool = Form(
                     False, description="allow more than 10,000 jobs after foreach "
                     "expansion (jobmesh run --allow-large); kept for its runs")) -> Any:
    filename = file.filename or "upload.yaml"
    try:
        kind_of(filename)
    except UnsafeUpload as exc:
        raise HTTPException(400, str(exc)) from None
    staging = await asyncio.to_thread(gw.store.staging)
    try:
        size = await asyncio.to_thread(save, file.file, staging / "upload")
        if size > MAX_UPLOAD:
            raise HTTPException(413, f"the upload is larger than {MAX_UPLOAD // 2**20} MB")
        checked = await unpack(staging, filename, name, allow_large=allow_large)
        wf = checked.workflow
        # Replacing swaps the scripts a running workflow's later jobs would run.
        if replace and running(await ops.snapshot(gw.js, wf.name)):
            raise HTTPException(409, f"workflow '{wf.name}' is running; cancel it first")
        wf = await asyncio.to_thread(gw.store.install, staging, checked.yaml, wf, replace,
                                     allow_large)
    except UnsafeUpload as exc:
        raise HTTPException(400, str(exc)) from None
    except OverBudget as exc:
        raise HTTPException(413, str(exc)) from None
    except SpecError as exc:
        return spec_errors(exc)
    except Exists as exc:
        raise HTTPException(409, str(exc)) from None
    finally:
        await asyncio.to_thread(gw.store.discard, staging)
    await announce(gw, wf)
    return {"name": wf.name, "jobs": list(wf.jobs), "edges": wf.edges}


def save(src: IO[bytes], target: Path) -> int:
    """Copy the uploaded file (already bounded by the body limit) into the staging
    folder; returns its size, stopping one byte past MAX_UPLOAD."""
    size = 0
    with open(target, "wb") as out:
        while size <= MAX_UPLOAD and (chunk := src.read(1 << 20)):
            size += len(chunk)
            out.write(chunk)
    return size


@router.get("/{name}", summary="A workflow's spec and state (format: json, yaml or csv)",
            responses={200: {"content": {"application/json": {}, "application/yaml": {},
                                         "text/csv": {}}}})
async def show(gw: GatewayDep, name: WfName,
               format: Literal["json", "yaml", "csv"] = Query("json")) -> Response:
    snap, spec = await current(gw, name)
    if format == "csv":
        buf = io.StringIO()
        if snap is not None:
            csv.writer(buf).writerows(csv_rows(snap))
        return PlainTextResponse(buf.getvalue(), media_type="text/csv")
    doc: dict[str, Any] = {"name": name, "uploaded": gw.store.exists(name),
                           "spec": spec.model_dump(mode="json") if spec else None,
                           "status": status_json(snap) if snap else None}
    if format == "yaml":
        return PlainTextResponse(yaml.safe_dump(doc, sort_keys=False),
                                 media_type="application/yaml")
    return JSONResponse(doc)


@router.delete("/{name}", summary="Delete a workflow (force=true cancels a running one)")
async def delete(gw: GatewayDep, name: WfName, force: bool = False) -> dict[str, Any]:
    snap, _spec = await current(gw, name)
    if running(snap) and not force:
        raise HTTPException(409, f"workflow '{name}' is running; cancel it or use force=true")
    if snap is not None:
        if running(snap):
            await ops.cancel(gw.js, name, snap.run, "workflow deleted")
        await ops.delete(gw.js, name, snap.run)
    gw.store.remove(name)
    if snap is None:  # else the monitor deletes its snapshot, and the KV watch says so
        gw.announce("deleted", {"name": name})
    return {"name": name, "deleted": True}


class RunOptions(BaseModel):
    """Optional body of POST /run."""
    variables: dict[str, Any] = Field(default_factory=dict, description=(
        "override the workflow's variables (each must be declared under variables:)"))
    allow_large: bool = Field(False, description="allow more than 10,000 jobs after "
                              "foreach expansion")
    restart: bool = Field(False, description="run every job again, reusing none from earlier "
                          "runs (jobmesh run --restart); by default a job whose cache key "
                          "matches a succeeded earlier attempt is reused")


@router.post("/{name}/run", status_code=202, summary="Start a new run of a workflow "
             "(optional JSON body: {\"variables\": {...}, \"allow_large\": false, "
             "\"restart\": false})")
async def run(gw: GatewayDep, name: WfName,
              parallel: int = Query(0, ge=0, le=10000),
              options: RunOptions | None = Body(None)) -> dict[str, Any]:
    snap, spec = await current(gw, name)
    if running(snap):
        raise HTTPException(409, f"workflow '{name}' is already running")
    options = options or RunOptions()
    try:
        if gw.store.exists(name):
            path = gw.store._yaml_path(name)
            wf = (await asyncio.to_thread(
                parse_workflow, path.read_text(), path.name, base_dir=path.parent, name=name,
                variables=options.variables,
                allow_large=options.allow_large or gw.store.allow_large(name))).workflow
        elif options.variables or options.allow_large:
            raise HTTPException(409, f"workflow '{name}' was not uploaded here, so its "
                                "variables cannot be changed; run it with jobmesh run -v")
        elif spec is not None:
            wf = spec
        else:
            raise HTTPException(404, f"no workflow named '{name}'")
    except SpecError as exc:
        raise HTTPException(422, "; ".join(str(i) for i in exc.issues)) from None
    if wf is None:
        raise HTTPException(404, f"no workflow named '{name}'")
    run_id, seq = await ops.submit(gw.js, wf, parallel or os.cpu_count() or 1,
                                   cache=not options.restart)
    await settled(gw, name, seq)
    return {"name": name, "run": run_id, "state": "RUNNING"}


@router.post("/{name}/cancel", status_code=202, summary="Cancel a running workflow")
async def cancel(gw: GatewayDep, name: WfName) -> dict[str, Any]:
    snap, _ = await current(gw, name)
    if not running(snap):
        raise HTTPException(409, f"workflow '{name}' is not running")
    assert snap is not None
    seq = await ops.cancel(gw.js, name, snap.run)
    await settled(gw, name, seq)
    return {"name": name, "run": snap.run, "cancel_requested": True}


@router.post("/{name}/retry", status_code=202,
             summary="Rerun the failed, canceled and skipped jobs; keep the succeeded ones")
async def retry(gw: GatewayDep, name: WfName) -> dict[str, Any]:
    snap, _ = await current(gw, name)
    if snap is None:
        raise HTTPException(409, f"workflow '{name}' has not run yet; use /run")
    if running(snap):
        raise HTTPException(409, f"workflow '{name}' is still running")
    if snap.state is WorkflowState.SUCCEEDED:
        raise HTTPException(409, f"workflow '{name}' succeeded; nothing to retry")
    seq = await ops.retry(gw.js, name, snap.run)
    await settled(gw, name, seq)
    return {"name": name, "run": snap.run, "state": "RUNNING"}


GRAPH_WAIT = 10.0  # seconds a graph request waits for the monitor to draw a new run's


@router.get("/{name}/graph.svg", summary="The workflow's graph as SVG",
            response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}})
async def graph(gw: GatewayDep, name: WfName) -> Response:
    snap, _ = await current(gw, name)
    svg = await ops.graph(gw.js, name)
    # The monitor draws a run's graph a moment after the run starts or ends: a request
    # in that moment (the run going on, or ended under a minute ago) waits for it.
    recent = snap is not None and (snap.ended is None or time.time() - snap.ended < 60)
    deadline = time.monotonic() + GRAPH_WAIT
    while svg is None and recent and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        svg = await ops.graph(gw.js, name)
    if svg is None:
        raise HTTPException(404, f"workflow '{name}' has no graph yet; run it first")
    return Response(svg, media_type="image/svg+xml")


__all__ = ["router", "NotUploaded"]
