"""Server-Sent Events: a workflow's job events (from the EVENTS stream) and snapshot
changes (from the KV watch), and every workflow's changes. Nothing here polls files.

Every stream owns NATS consumers (an ordered consumer, KV watchers). They are deleted
when the stream ends, however it ends: the client went away (Starlette cancels the
response), the server is stopping, or an error. Cancellation would abort the clean-up
at its first ``await``, so the clean-up runs shielded, with a deadline of its own.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from nats.js.api import ConsumerConfig, DeliverPolicy
from starlette.types import Receive, Scope, Send

from jobmesh.common import bus, subjects
from jobmesh.common.messages import WorkflowSnapshot, WorkflowSubmitted
from jobmesh.common.names import check_workflow
from jobmesh.common.packing import unpack

from .deps import ERRORS, Gateway, GatewayDep, WfName
from .workflows import current, summary

router = APIRouter(tags=["events"], responses=ERRORS)
KEEPALIVE = 15.0   # a comment line this often keeps proxies from closing an idle stream
CATCH_UP = 3.0     # how long a snapshot waits for the job events it includes
CLEANUP = 5.0      # how long deleting a stream's consumers may take
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
EVENT_STREAM: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}},
                      "description": "an endless event stream"}}


def sse(event: str, data: Any, ident: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {ident}\n" if ident is not None else "")
    return (head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n").encode()


KEEPALIVE_LINE = b": keep-alive\n\n"
LIVE_LINE = b": live\n\n"  # first, once the stream follows everything: nothing is missed


def snap_event(snap: WorkflowSnapshot) -> dict[str, Any]:
    return {"name": snap.name, "run": snap.run, "state": snap.state.value, "seq": snap.seq,
            "counts": {k: v for k, v in snap.counts().items() if v},
            "jobs": {n: _job(j) for n, j in snap.jobs.items()}}


def _job(j: Any) -> dict[str, Any]:
    """A job in a snapshot event; its start time once it has one (a page that missed the
    job's started event takes it from here, e.g. for the timeline's bar)."""
    out = {"state": j.state.value, "progress": j.progress, "msg": j.msg, "attempt": j.attempt}
    if j.started is not None:
        out["started"] = j.started
    return out


class EventStream(StreamingResponse):
    """An SSE response whose generator is closed as soon as the response ends, so its
    ``finally`` (which deletes its consumers) runs at once. (A client that goes away
    while a chunk is being sent leaves the generator suspended at its ``yield``;
    without this it would be closed only when the garbage collector finds it.)"""

    def __init__(self, body: AsyncIterator[bytes]):
        super().__init__(body, media_type="text/event-stream", headers=SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.move_on_after(CLEANUP, shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


async def release(js: Any, subs: list[Any], watchers: list[Any],
                  tasks: list[asyncio.Task[Any]]) -> None:
    """Stop the tasks, delete the KV watchers' and the subscriptions' consumers; shielded
    from the cancellation that usually brings us here, and bounded in time."""
    for task in tasks:
        task.cancel()
    with anyio.move_on_after(CLEANUP, shield=True):
        for watcher in watchers:
            await bus.stop_watch(js, watcher)
        for sub in subs:
            await bus.drop(js, sub)


def resume_point(last_event_id: str | None, since: int | None) -> int | None:
    """The stream sequence a client has seen up to: Last-Event-ID (sent by EventSource
    when it reconnects by itself, so newer than the URL's ``since``), else ``since``."""
    text = (last_event_id or "").strip()
    # ASCII digits only, and few enough for a 64-bit sequence: str.isdigit() takes '²',
    # which int() refuses, and int() refuses 5,000 digits. Anything else is ignored.
    if text.isascii() and text.isdigit() and len(text) <= 19:
        return int(text)
    return since


WORKFLOW_EVENTS_DOC = """\
Server-Sent Events of one workflow, for as long as the client stays connected.

* `job`: a job event (pending, ready, queued, started, progress, succeeded, failed,
  canceled, skipped, jobs_expanded) of the workflow's current run, in log order. Its
  `id:` is the event's sequence in the EVENTS log.
* `workflow`: the workflow's state and every job's state (`seq`: the last log sequence it
  includes). The first one is the current state; then one per change. A `workflow` event
  comes after every `job` event it includes, so the last one of a run carries its final
  state after all of the run's job events.
* comment lines: `: live` first, once the stream follows everything (what happens after
  it is sent will be seen), then `: keep-alive` every 15 s while nothing happens.

A new connection replays the current run's job events, then follows live; a run started
later is followed from its first event. **Resume**: a reconnect with the
`Last-Event-ID` header (browsers' EventSource sends it when it reconnects by itself), or
with `?since=<seq>`, gets only the job events after that sequence (plus the current state
as a `workflow` event). The header wins over `since`; an id that is not a number, or lies
beyond the end of the log, is ignored.
"""


@router.get("/api/workflows/{name}/events", summary="Live job events and state changes of "
            "one workflow (SSE: events 'job' and 'workflow'; resume with Last-Event-ID or "
            "?since=)", description=WORKFLOW_EVENTS_DOC, response_class=StreamingResponse,
            responses=EVENT_STREAM)
async def workflow_events(
        gw: GatewayDep, name: WfName,
        since: int | None = Query(None, ge=0, description=(
            "resume: send only job events after this EVENTS sequence (the last `id:` "
            "seen)")),
        last_event_id: str | None = Header(None, description=(
            "resume, as EventSource does on reconnects: like `since`, and wins over it"))
) -> StreamingResponse:
    # Read the log's end before the snapshot: a run submitted in between is seen whole.
    head = await bus.retrying(lambda: gw.js.stream_info(subjects.STREAM_EVENTS),
                              "read the EVENTS stream", deadline=10)
    snap0, _ = await current(gw, name)
    last = int(head.state.last_seq)
    resume = resume_point(last_event_id, since)
    if resume is not None and resume > last:
        resume = None  # an id from another log (a new deployment): start afresh
    return EventStream(_workflow_stream(gw, name, snap0, last, resume))


async def _workflow_stream(gw: Gateway, name: str, snap0: WorkflowSnapshot | None,
                           head: int, resume: int | None) -> AsyncIterator[bytes]:
    """Follows the workflow's commands and job events (one ordered consumer on both
    subject trees) and its snapshot (a KV watch).

    The run whose job events are sent is tracked the way the monitor's fold does it: the
    snapshot's run at first, then the run of each later submission. So a new run's first
    events are sent even before its first snapshot is stored.
    """
    loop = asyncio.get_running_loop()
    logs: deque[Any] = deque()
    snaps: deque[WorkflowSnapshot] = deque()
    wake = asyncio.Event()
    run = snap0.run if snap0 is not None else None
    base = snap0.seq if snap0 is not None else 0  # submissions up to here are not newer
    if resume is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=resume + 1)
        done = resume  # every log message up to here is handled
    elif snap0 is not None and snap0.created:
        # From just before the run was submitted (the submission's time is the client's
        # clock; a second of slack for a cluster's skew). Earlier runs are filtered out.
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                # nats-py sends the RFC 3339 string as given
                                opt_start_time=_rfc3339(snap0.created - 1))  # type: ignore[arg-type]
        done = 0
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=head + 1)
        done = head
    config.filter_subjects = [subjects.workflow(name), subjects.workflow_events(name)]

    async def on_msg(msg: Any) -> None:
        logs.append(msg)
        wake.set()

    subs: list[Any] = []
    watchers: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []
    gw.wakers.add(wake)  # close_streams sets it
    try:
        sub = await gw.js.subscribe(subjects.workflow_events(name),
                                    stream=subjects.STREAM_EVENTS, ordered_consumer=True,
                                    cb=on_msg, inactive_threshold=bus.EPHEMERAL_INACTIVE,
                                    pending_msgs_limit=-1, pending_bytes_limit=-1,
                                    config=config)
        subs.append(sub)
        kv = await gw.js.key_value(subjects.KV_WORKFLOWS)
        watcher = await bus.kv_watch(kv, check_workflow(name),
                                     inactive_threshold=bus.EPHEMERAL_INACTIVE)
        watchers.append(watcher)

        async def watch() -> None:
            async for entry in watcher:
                if entry is not None and entry.value:
                    snaps.append(WorkflowSnapshot.model_validate_json(unpack(entry.value)))
                    wake.set()

        tasks.append(asyncio.create_task(watch()))
        yield LIVE_LINE

        def handle(msg: Any) -> bytes | None:
            """One log message: a job event of the followed run becomes a 'job' event;
            a newer submission switches the run."""
            nonlocal run, done
            seq = msg.metadata.sequence.stream
            done = max(done, seq)
            try:
                item = bus.decode_log(msg.data)
            except Exception:
                return None  # not ours to judge: the monitor skips it too
            if isinstance(item, WorkflowSubmitted):
                if seq > base:
                    run = item.run
                return None
            if not msg.subject.startswith(f"{subjects.PREFIX}.events."):
                return None  # other commands: cancel, retry, delete
            if run is None or getattr(item, "run", None) != run:
                return None
            return sse("job", item.model_dump(mode="json"), seq)

        async def drained() -> bool:
            """Has the consumer delivered, and have we handled, everything in the log?"""
            try:
                info = await sub.consumer_info()
            except Exception:
                return False
            return not logs and info.num_pending == 0 and info.delivered.stream_seq <= done

        waiting_since: float | None = None  # when the first queued snapshot began waiting
        while not gw.closing:
            wake.clear()
            if logs:
                chunk = handle(logs.popleft())
                if chunk is not None:
                    yield chunk
                continue
            if snaps:
                snap = snaps[0]
                now = loop.time()
                waiting_since = now if waiting_since is None else waiting_since
                # A snapshot goes out after the job events it includes (up to its seq).
                if (snap.seq <= done or now - waiting_since > CATCH_UP
                        or await drained()):
                    snaps.popleft()
                    waiting_since = None
                    yield sse("workflow", snap_event(snap))
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), 0.1)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                await asyncio.wait_for(wake.wait(), KEEPALIVE)
            except asyncio.TimeoutError:
                yield KEEPALIVE_LINE
    finally:
        gw.wakers.discard(wake)
        await release(gw.js, subs, watchers, tasks)


def _rfc3339(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


ALL_EVENTS_DOC = """\
Server-Sent Events of every workflow, for as long as the client stays connected.

* `workflow`: one workflow's summary (as in `GET /api/workflows`): first every stored
  workflow state, then one per change: a run's progress, an upload (a new or replaced
  workflow, state `NEW` until it runs), a job added or removed.
* `deleted`: `{"name": ...}`, a workflow was deleted.
* comment lines: `: live` first, once the stream follows everything, then `: keep-alive`
  every 15 s while nothing happens.
"""


@router.get("/api/events", summary="Live changes of every workflow (SSE: events "
            "'workflow' and 'deleted')", description=ALL_EVENTS_DOC,
            response_class=StreamingResponse, responses=EVENT_STREAM)
async def all_events(gw: GatewayDep) -> StreamingResponse:
    return EventStream(_all_stream(gw))


RECENT_DELETE = 300.0  # seconds: a deletion this recent is sent to a stream that opens


def _recent(entry: Any) -> bool:
    """Whether a KV delete marker is younger than RECENT_DELETE."""
    created = getattr(entry, "created", None)
    if not isinstance(created, datetime.datetime):
        return False
    age = datetime.datetime.now(datetime.timezone.utc) - created
    return age.total_seconds() < RECENT_DELETE


async def _all_stream(gw: Gateway) -> AsyncIterator[bytes]:
    items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    watchers: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []
    gw.listeners.add(items)  # uploads and edits: they change no snapshot
    try:
        kv = await gw.js.key_value(subjects.KV_WORKFLOWS)
        watcher = await bus.kv_watch(kv, inactive_threshold=bus.EPHEMERAL_INACTIVE)
        watchers.append(watcher)

        async def watch() -> None:
            initial = True  # the current values come first, then a None
            async for entry in watcher:
                if entry is None:
                    initial = False
                elif entry.value:
                    items.put_nowait(("snap", unpack(entry.value)))
                elif not initial or _recent(entry):  # (one deleted long ago is no news)
                    # A deletion just before the stream opened is news: a page that
                    # listed the workflow a moment ago (GET /api/workflows) must drop it.
                    items.put_nowait(("deleted", {"name": entry.key}))

        tasks.append(asyncio.create_task(watch()))
        yield LIVE_LINE
        while not gw.closing:
            try:
                kind, item = await asyncio.wait_for(items.get(), KEEPALIVE)
            except asyncio.TimeoutError:
                yield KEEPALIVE_LINE
                continue
            if kind == "close":
                return
            if kind == "snap":
                snap = WorkflowSnapshot.model_validate_json(item)
                yield sse("workflow", summary(snap.name, snap, None,
                                              gw.store.exists(snap.name)))
            else:
                yield sse(kind, item)
    finally:
        gw.listeners.discard(items)
        await release(gw.js, [], watchers, tasks)
