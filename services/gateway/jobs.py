"""/api/workflows/{name}/jobs: inspect and edit jobs, read and follow their logs."""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from jobmesh.common import ops
from jobmesh.common.loader import SpecError
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.report import job_json

from .deps import ERRORS, GatewayDep, JobName, WfName
from .store import NotUploaded
from .workflows import announce, current, running, spec_errors

router = APIRouter(prefix="/api/workflows/{name}/jobs", tags=["jobs"],
                   responses=ERRORS)
MAX_CHUNK = 1 << 20


class JobUpdate(BaseModel):
    """A job's attributes (as in the YAML) and, optionally, its parents."""
    attributes: dict[str, Any] = Field(default_factory=dict,
                                       examples=[{"exec": "echo hello", "timeout": "5m"}])
    after: list[str] | None = Field(None, description="parents; replaces the job's parents")


def describe(snap: WorkflowSnapshot | None, spec: Any, job: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": job}
    if spec is not None and job in spec.jobs:
        out["spec"] = spec.jobs[job].model_dump(mode="json", exclude_none=True)
        out["parents"] = spec.parents()[job]
    if snap is not None and job in snap.jobs:
        out["status"] = job_json(snap, job)
    return out


@router.get("", summary="The jobs of a workflow with their spec and state")
async def list_jobs(gw: GatewayDep, name: WfName) -> list[dict[str, Any]]:
    snap, spec = await current(gw, name)
    names = list(spec.jobs) if spec else list(snap.jobs) if snap else []
    return [describe(snap, spec, j) for j in names]


@router.get("/{job}", summary="One job's spec and state")
async def get_job(gw: GatewayDep, name: WfName, job: JobName) -> dict[str, Any]:
    snap, spec = await current(gw, name)
    if not (spec and job in spec.jobs) and not (snap and job in snap.jobs):
        raise HTTPException(404, f"workflow '{name}' has no job '{job}'")
    return describe(snap, spec, job)


async def editable(gw: GatewayDep, name: str) -> None:
    snap, _ = await current(gw, name)
    if running(snap):
        raise HTTPException(409, f"workflow '{name}' is running; jobs can change only while "
                                 "it is not")
    if not gw.store.exists(name):
        raise HTTPException(409, f"workflow '{name}' was not uploaded to this service; edit "
                                 "its YAML file instead")


@router.put("/{job}", summary="Add or change a job (while the workflow is not running)")
async def put_job(gw: GatewayDep, name: WfName, job: JobName, body: JobUpdate) -> Any:
    await editable(gw, name)
    try:
        wf = await asyncio.to_thread(gw.store.put_job, name, job, body.attributes, body.after)
    except SpecError as exc:
        return spec_errors(exc)
    except NotUploaded as exc:
        raise HTTPException(409, str(exc)) from None
    await announce(gw, wf)
    return describe(None, wf, job)


@router.delete("/{job}", summary="Remove a job and its edges (while not running)")
async def delete_job(gw: GatewayDep, name: WfName, job: JobName) -> Any:
    await editable(gw, name)
    try:
        wf = await asyncio.to_thread(gw.store.delete_job, name, job)
    except KeyError:
        raise HTTPException(404, f"workflow '{name}' has no job '{job}'") from None
    except SpecError as exc:
        return spec_errors(exc)
    await announce(gw, wf)
    return {"name": name, "job": job, "deleted": True}


@router.post("/{job}/cancel", status_code=202, summary="Cancel one job")
async def cancel_job(gw: GatewayDep, name: WfName, job: JobName) -> dict[str, Any]:
    snap, _ = await current(gw, name)
    if snap is None or job not in snap.jobs:
        raise HTTPException(404, f"workflow '{name}' has no job '{job}' that ran")
    if snap.jobs[job].state.terminal:
        raise HTTPException(409, f"job '{job}' has ended already ({snap.jobs[job].state})")
    await ops.cancel_job(gw.js, name, snap.run, job)
    return {"name": name, "job": job, "cancel_requested": True}


async def log_path(gw: GatewayDep, name: str, job: str) -> tuple[Path, WorkflowSnapshot]:
    snap, _ = await current(gw, name)
    if snap is None or job not in snap.jobs:
        raise HTTPException(404, f"workflow '{name}' has no job '{job}' that ran")
    run_dir = snap.jobs[job].run_dir
    if not run_dir:
        raise HTTPException(404, f"job '{job}' has not started, so it has no log yet")
    return Path(run_dir) / "job.log", snap


def read_chunk(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(min(offset, size))
            return f.read(limit), size
    except FileNotFoundError:
        return b"", 0


def read_tail(path: Path, lines: int) -> tuple[bytes, int]:
    data, size = read_chunk(path, 0, 0)
    start = max(0, size - MAX_CHUNK)
    data, size = read_chunk(path, start, MAX_CHUNK)
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts = parts[:-1]
        tail = b"\n".join(parts[-lines:]) + b"\n" if parts else b""
    else:
        tail = b"\n".join(parts[-lines:])
    return tail, size


@router.get("/{job}/log", summary="Log bytes from an offset (or the last N lines), and the "
            "offset to ask for next")
async def get_log(gw: GatewayDep, name: WfName, job: JobName,
                  offset: int = Query(0, ge=0), tail: int | None = Query(None, ge=1, le=100000),
                  limit: int = Query(MAX_CHUNK, ge=1, le=MAX_CHUNK)) -> dict[str, Any]:
    path, snap = await log_path(gw, name, job)
    if tail is not None:
        data, size = await asyncio.to_thread(read_tail, path, tail)
        return {"data": data.decode("utf-8", "replace"), "offset": size - len(data),
                "next_offset": size, "size": size, "done": snap.jobs[job].state.terminal}
    data, size = await asyncio.to_thread(read_chunk, path, offset, limit)
    start = min(offset, size)
    return {"data": data.decode("utf-8", "replace"), "offset": start,
            "next_offset": start + len(data), "size": size,
            "done": snap.jobs[job].state.terminal and start + len(data) >= size}


@router.get("/{job}/log/stream", summary="Follow a job's log live (Server-Sent Events)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream_log(gw: GatewayDep, name: WfName, job: JobName,
                     offset: int = Query(0, ge=0)) -> StreamingResponse:
    path, _ = await log_path(gw, name, job)

    async def events() -> AsyncIterator[bytes]:
        pos = offset
        idle = 0.1
        # A multi-byte character may straddle two reads: decode incrementally.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        ended = False
        snap: WorkflowSnapshot | None = None
        while True:
            data, size = await asyncio.to_thread(read_chunk, path, pos, MAX_CHUNK)
            if data:
                pos += len(data)
                idle = 0.1
                payload = json.dumps({"data": decoder.decode(data), "offset": pos})
                yield f"event: log\nid: {pos}\ndata: {payload}\n\n".encode()
                continue
            if ended:  # one more read after the job ended found nothing: done
                state = snap.jobs[job].state.value if snap and job in snap.jobs else "GONE"
                yield f"event: end\ndata: {json.dumps({'state': state})}\n\n".encode()
                return
            snap = await ops.snapshot(gw.js, name)
            if snap is None or job not in snap.jobs or snap.jobs[job].state.terminal:
                ended = True
                continue
            yield b": keep-alive\n\n"
            await asyncio.sleep(idle)
            idle = min(idle * 1.5, 1.0)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


__all__ = ["router"]
