"""Server-Sent Events: a workflow's job events (from the EVENTS stream) and snapshot
changes (from the KV watch). Nothing here polls files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from jobmesh.common import bus, subjects
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.names import check_workflow
from nats.js.api import ConsumerConfig, DeliverPolicy

from .deps import ERRORS, GatewayDep, WfName
from .workflows import current, summary

router = APIRouter(tags=["events"], responses=ERRORS)
KEEPALIVE = 15.0


def sse(event: str, data: Any, ident: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {ident}\n" if ident is not None else "")
    return (head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n").encode()


def snap_event(snap: WorkflowSnapshot) -> dict[str, Any]:
    return {"name": snap.name, "run": snap.run, "state": snap.state.value, "seq": snap.seq,
            "counts": {k: v for k, v in snap.counts().items() if v},
            "jobs": {n: {"state": j.state.value, "progress": j.progress, "msg": j.msg,
                         "attempt": j.attempt} for n, j in snap.jobs.items()}}


@router.get("/api/workflows/{name}/events", summary="Live job events and state changes of "
            "one workflow (SSE: events 'job' and 'workflow'; the last 'workflow' event of a "
            "run carries its final state)", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def workflow_events(gw: GatewayDep, request: Request, name: WfName) -> StreamingResponse:
    snap0, _ = await current(gw, name)
    last_id = request.headers.get("last-event-id", "")
    start = int(last_id) + 1 if last_id.isdigit() else None

    async def stream() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        async def on_event(msg: Any) -> None:
            queue.put_nowait(("job", msg))

        # Start at the current run (or where the client left off), not at the first run.
        if start is not None:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=start)
        elif snap0 is not None and snap0.created:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                    opt_start_time=_rfc3339(snap0.created - 1))
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        sub = await gw.js.subscribe(subjects.workflow_events(name),
                                    stream=subjects.STREAM_EVENTS, ordered_consumer=True,
                                    cb=on_event, inactive_threshold=bus.EPHEMERAL_INACTIVE,
                                    config=config)
        kv = await gw.js.key_value(subjects.KV_WORKFLOWS)
        watcher = await kv.watch(check_workflow(name), inactive_threshold=bus.EPHEMERAL_INACTIVE)

        async def watch() -> None:
            async for entry in watcher:
                if entry is not None and entry.value:
                    queue.put_nowait(("snap", WorkflowSnapshot.model_validate_json(entry.value)))

        watch_task = asyncio.create_task(watch())
        run: str | None = snap0.run if snap0 is not None else None
        later: list[tuple[str, Any]] = []  # items taken out of order, handled next
        try:
            while True:
                if later:
                    kind, item = later.pop(0)
                else:
                    try:
                        kind, item = await asyncio.wait_for(queue.get(), KEEPALIVE)
                    except asyncio.TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                if kind == "snap":
                    run = item.run
                    if item.state.terminal:
                        # Send every job event folded into this state before it; newer
                        # states found on the way are kept, in order, for afterwards.
                        await _catch_up(sub, queue)
                        while not queue.empty():
                            k, ev = queue.get_nowait()
                            if k == "job":
                                data = bus.decode_log(ev.data)
                                if data.run == run:
                                    yield sse("job", data.model_dump(mode="json"),
                                              ev.metadata.sequence.stream)
                            else:
                                later.append((k, ev))
                    yield sse("workflow", snap_event(item))
                    continue
                ev = bus.decode_log(item.data)
                if run is None or ev.run == run:
                    yield sse("job", ev.model_dump(mode="json"), item.metadata.sequence.stream)
        finally:
            watch_task.cancel()
            await bus.stop_watch(gw.js, watcher)
            await bus.drop(gw.js, sub)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _rfc3339(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


async def _catch_up(sub: Any, queue: asyncio.Queue[Any], timeout: float = 2.0) -> None:
    """Wait until the job-event consumer has delivered everything in the stream now."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            info = await sub.consumer_info()
        except Exception:
            return
        if info.num_pending == 0 and info.num_ack_pending == 0:
            await asyncio.sleep(0.02)  # let the last delivered messages reach the queue
            return
        await asyncio.sleep(0.02)


@router.get("/api/events", summary="Live state changes of every workflow (SSE: event "
            "'workflow')", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def all_events(gw: GatewayDep) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        kv = await gw.js.key_value(subjects.KV_WORKFLOWS)
        watcher = await kv.watchall(inactive_threshold=bus.EPHEMERAL_INACTIVE)
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=KEEPALIVE)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if entry is None:
                    continue
                if not entry.value:
                    yield sse("deleted", {"name": entry.key})
                    continue
                snap = WorkflowSnapshot.model_validate_json(entry.value)
                yield sse("workflow", summary(snap.name, snap, None, gw.store.exists(snap.name)))
        finally:
            await bus.stop_watch(gw.js, watcher)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
