"""Workflow operations over the bus, shared by the CLI, the gateway and the client:
submit, cancel, retry, delete, and reading snapshots, specs and graphs."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

from nats.js.errors import KeyNotFoundError, NotFoundError

from . import bus, objects, subjects
from .attempt import submission_id
from .messages import (
    JobCancelRequested,
    WorkflowCancelRequested,
    WorkflowDeleted,
    WorkflowRetryRequested,
    WorkflowSnapshot,
    WorkflowSubmitted,
)
from .names import check_job, check_workflow
from .packing import unpack
from .spec import Workflow


def new_run_id(now: float | None = None) -> str:
    """Sortable and readable: 20261123T143012-3fa20c1d. The random part keeps two runs
    of one workflow started in one second apart (their message ids include it): 4 hex
    digits collided 1 time in 65,536, 8 collide 1 in 4 billion."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now or time.time()))
    return f"{stamp}-{secrets.token_hex(4)}"


async def submit(js: Any, workflow: Workflow, parallel: int, run: str | None = None,
                 cache: bool = True) -> tuple[str, int]:
    """Submit a new run; returns (run id, stream sequence of the submission). With
    ``cache`` the run reuses earlier runs' jobs whose cache key matches."""
    run = run or new_run_id()
    msg = WorkflowSubmitted(workflow=workflow.name, run=run, spec=workflow,
                            parallel=max(1, parallel), time=time.time(), cache=cache)
    subject = subjects.workflow(workflow.name)
    payload = bus.log_payload(subject, bus.encode(msg))  # packed when large
    limit = getattr(getattr(js, "_nc", None), "max_payload", None)
    if isinstance(limit, int) and len(payload) > limit:
        raise bus.MessageTooLarge(
            f"workflow {workflow.name!r} is {len(payload) / 2**20:.1f} MB as submitted "
            f"({'compressed; ' if payload[:1] == b'x' else ''}{len(workflow.jobs):,} "
            f"job{'' if len(workflow.jobs) == 1 else 's'} after expansion), over the NATS server's "
            f"max_payload of {limit / 2**20:.1f} MB, so it cannot be submitted. A "
            "foreach is expanded when the workflow is submitted: take its values from a "
            "parent's output (a dynamic foreach, expanded as the run goes), drop "
            "per-job fields such as env that only repeat the values, or raise "
            "max_payload in the server's configuration.")
    seq = await bus.publish(js, subject, msg,
                            msg_id=submission_id(workflow.name, run), payload=payload)
    return run, seq


async def cancel(js: Any, wf: str, run: str, reason: str = "canceled by user") -> int:
    return await bus.publish(js, subjects.workflow(wf), WorkflowCancelRequested(
        workflow=wf, run=run, reason=reason, time=time.time()))


async def cancel_job(js: Any, wf: str, run: str, job: str) -> int:
    return await bus.publish(js, subjects.workflow(wf), JobCancelRequested(
        workflow=wf, run=run, job=check_job(job), time=time.time()))


async def retry(js: Any, wf: str, run: str) -> int:
    return await bus.publish(js, subjects.workflow(wf), WorkflowRetryRequested(
        workflow=wf, run=run, time=time.time()))


async def delete(js: Any, wf: str, run: str) -> int:
    return await bus.publish(js, subjects.workflow(wf), WorkflowDeleted(
        workflow=wf, run=run, time=time.time()))


async def snapshot(js: Any, wf: str) -> WorkflowSnapshot | None:
    kv = await js.key_value(subjects.KV_WORKFLOWS)
    try:
        entry = await kv.get(check_workflow(wf))
    except (KeyNotFoundError, NotFoundError):
        return None
    return (WorkflowSnapshot.model_validate_json(unpack(entry.value)) if entry.value
            else None)


async def snapshots(js: Any) -> list[WorkflowSnapshot]:
    """Every stored snapshot (direct gets: no consumer is created)."""
    kv = await js.key_value(subjects.KV_WORKFLOWS)
    out: list[WorkflowSnapshot] = []
    for key in await bus.kv_keys(js, subjects.KV_WORKFLOWS):
        try:
            entry = await kv.get(key)
        except (KeyNotFoundError, NotFoundError):
            continue  # deleted meanwhile
        if entry.value:
            out.append(WorkflowSnapshot.model_validate_json(unpack(entry.value)))
    return sorted(out, key=lambda s: s.name)


async def spec(js: Any, wf: str) -> Workflow | None:
    kv = await js.key_value(subjects.KV_SPECS)
    try:
        entry = await kv.get(check_workflow(wf))
    except (KeyNotFoundError, NotFoundError):
        return None
    return Workflow.model_validate_json(unpack(entry.value)) if entry.value else None


GRAPH_READ = 10.0  # seconds one read of a stored graph may take before it is tried again


async def graph(js: Any, wf: str, tries: int = 3) -> bytes | None:
    """The stored graph. A read that overlaps the monitor replacing the object can wait
    for chunks that were purged meanwhile (it never ends by itself), so each read has a
    deadline, and a new read finds the new object."""
    name = check_workflow(wf)
    for attempt in range(tries):
        try:
            data = await asyncio.wait_for(objects.get(js, subjects.OBJ_GRAPHS, name),
                                          GRAPH_READ)
        except (asyncio.TimeoutError, objects.ObjectError):
            if attempt == tries - 1:
                raise
            continue
        return data or None
    return None


async def watch(js: Any, wf: str) -> AsyncIterator[WorkflowSnapshot]:
    """Yield the snapshot each time it changes, starting with the current one."""
    async for raw in watch_raw(js, wf):
        yield WorkflowSnapshot.model_validate_json(raw)


_HEAD = re.compile(rb'^\{"name":"[^"]*","run":"([^"]*)","state":"([A-Z]+)"')
_SEQ = re.compile(rb'"seq":(\d+)')


def peek(raw: bytes) -> tuple[str, str, int] | None:
    """(run, state, seq) of an encoded snapshot without decoding it all: a 5,000-job
    snapshot takes tens of milliseconds to decode, and a watcher sees many. A stored
    (possibly compressed) value or an unpacked one."""
    front, back = _ends(raw)
    head = _HEAD.match(front)
    # The top-level seq follows jobs and edges: the last "seq" key in the document (a
    # quote in a JSON string is escaped, so the bytes '"seq":' are always a key).
    at = back.rfind(b'"seq":')
    tail = _SEQ.match(back, at) if at >= 0 else None
    if head is None or tail is None:
        return None
    return head.group(1).decode(), head.group(2).decode(), int(tail.group(1))


PEEK_CHUNK = 1 << 16  # compressed bytes inflated at a time by ``_ends``
PEEK_KEEP = 1 << 12   # bytes kept of each end


def _ends(raw: bytes) -> tuple[bytes, bytes]:
    """The first and last ``PEEK_KEEP`` bytes of what ``unpack(raw)`` gives, without
    holding it all: a 100,000-job snapshot is ~45 MB of JSON, ~3 MB stored."""
    if raw[:1] != b"x":
        return raw[:PEEK_KEEP], raw[-PEEK_KEEP:]
    z = zlib.decompressobj()
    front = back = b""
    for i in range(0, len(raw), PEEK_CHUNK):
        out = z.decompress(raw[i:i + PEEK_CHUNK])
        if len(front) < PEEK_KEEP:
            front += out[:PEEK_KEEP - len(front)]
        back = (back + out)[-PEEK_KEEP:]
    out = z.flush()
    if not z.eof:
        raise zlib.error("incomplete or truncated stream")
    return front, (back + out)[-PEEK_KEEP:]


async def watch_raw(js: Any, wf: str, unpacked: bool = True) -> AsyncIterator[bytes]:
    """Like ``watch`` but yields the encoded snapshots; decode only the ones you use.
    ``unpacked=False``: as stored (maybe packed; ``packing.unpack`` reads them)."""
    kv = await js.key_value(subjects.KV_WORKFLOWS)
    watcher = await bus.kv_watch(kv, check_workflow(wf), inactive_threshold=bus.EPHEMERAL_INACTIVE)
    try:
        async for entry in watcher:
            if entry is not None and entry.value:
                yield unpack(bytes(entry.value)) if unpacked else bytes(entry.value)
    finally:
        await bus.stop_watch(js, watcher)


async def wait_for(js: Any, wf: str, predicate: Any, timeout: float) -> WorkflowSnapshot:
    """Wait until predicate(snapshot) holds; raises TimeoutError with the last state."""
    last: list[WorkflowSnapshot] = []

    async def run() -> WorkflowSnapshot:
        async for snap in watch(js, wf):
            last[:] = [snap]
            if predicate(snap):
                return snap
        raise RuntimeError("watch ended")

    try:
        return await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        state = last[0].state if last else "no snapshot"
        raise TimeoutError(f"workflow {wf} did not reach the condition in {timeout}s "
                           f"(last state: {state})") from None
