"""Reading the EVENTS log in order (replay, then live) and cleaning up consumers."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from . import subjects
from .natsconn import retrying
from .packing import unpack

if TYPE_CHECKING:
    from nats.js import JetStreamContext

log = logging.getLogger("jobmesh.bus")

_event_log: Any = None


def decode_log(data: bytes) -> Any:
    """Bytes from the EVENTS stream -> a typed command or event (a large one is stored
    zlib-packed, ``bus.publish``)."""
    global _event_log
    if _event_log is None:
        from .messages import EVENT_LOG

        _event_log = EVENT_LOG
    return _event_log.validate_json(unpack(data) if data[:1] == b"x" else data)


# A big message (a submission or a foreach expansion of thousands of jobs) is decoded once
# per process, not once per follower: ``jobmesh run``'s scheduler and monitor each follow
# the log, and a 20,000-job submission decodes to ~60 MB and ~0.3 s. The followers only
# read what they are given (the monitor folds a copy of a submitted spec). Kept: the last
# few, by (stream sequence, size, hash), so messages of another server never mix.
SHARE_OVER = 64_000  # bytes
SHARE_KEEP = 3
_shared: collections.OrderedDict[tuple[int, int, int], Any] = collections.OrderedDict()


def decode_shared(seq: int, data: bytes) -> Any:
    """``decode_log(data)``; a big message already decoded in this process is shared, and
    a submission this process made (``submitting``) is built around its own spec."""
    if len(data) <= SHARE_OVER or not isinstance(data, bytes):
        return decode_log(data)
    key = (seq, len(data), hash(data))
    item = _shared.get(key)
    if item is None:
        item = _own(data) if _local else None
        if item is None:
            item = decode_log(data)
            _compact(item)
        _shared[key] = item
        while len(_shared) > SHARE_KEEP:
            _shared.popitem(last=False)
    return item


# Specs this process is submitting, by (workflow, run): ``jobmesh run`` parsed its spec,
# and its own scheduler and monitor follow the log it submits to. Decoding the submission
# again made a second copy of every job while the first was still held (a 100,000-job
# sweep: ~200 MB more at its peak, and ~3 s): they take the submitter's object instead.
_local: dict[tuple[str, str], Any] = {}
_SUBMITTED_TAIL = re.compile(
    rb',"parallel":(-?[0-9]+),"time":(-?[0-9.]+(?:[eE][-+]?[0-9]+)?),"cache":(true|false)\}\Z')


def submitting(spec: Any, run: str) -> None:
    """``spec`` (a ``Workflow``) is about to be submitted as ``run`` from this process; a
    follower here that reads that submission gets this very object as its spec (which
    nobody may change any more). ``submitted`` forgets it if no follower took it."""
    _local[(spec.name, run)] = spec


def submitted(name: str, run: str) -> None:
    _local.pop((name, run), None)


def _own(data: bytes) -> Any:
    """The submission ``data`` built around a spec of ``_local``, or None (not one of
    ours, or not laid out as ``bus.encode`` lays it out: then it is decoded)."""
    from .messages import WorkflowSubmitted

    raw = unpack(data) if data[:1] == b"x" else data
    for (name, run), spec in list(_local.items()):
        head = (b'{"type":"workflow_submitted","workflow":' + json.dumps(name).encode() +
                b',"run":' + json.dumps(run).encode() + b',"spec":')
        if not raw.startswith(head):
            continue
        tail = _SUBMITTED_TAIL.search(raw, max(0, len(raw) - 200))
        if tail is None:
            return None
        del _local[(name, run)]
        return WorkflowSubmitted(workflow=name, run=run, spec=spec,
                                 parallel=int(tail.group(1)), time=float(tail.group(2)),
                                 cache=tail.group(3) == b"true")
    return None


def _compact(item: Any) -> None:
    """A big submission's or expansion's jobs share their ``model_fields_set``
    (``spec.share_fields_set``: a 20,000-job submission decodes to ~14 MB less)."""
    from .spec import share_fields_set

    spec = getattr(item, "spec", None)
    jobs = getattr(spec, "jobs", None) if spec is not None else getattr(item, "jobs", None)
    if isinstance(jobs, dict):
        share_fields_set(jobs.values())


# Idle heartbeat of the log followers' ordered consumers (seconds); see LogFollower.start.
FOLLOW_HEARTBEAT = 1.0


class LogFollower:
    """Replays the EVENTS log from the start, then follows it live, in order.

    ``get`` returns the next batch of (sequence, message) pairs. ``caught_up`` turns true
    once the replay has reached the end of the log as it was when following began.
    Undecodable messages are skipped (and counted) rather than stopping the service.
    """

    def __init__(self, js: JetStreamContext):
        self.js = js
        self.queue: collections.deque[tuple[int, Any, int]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None  # a get() waiting for messages
        self.caught_up = False
        self.bad = 0
        self.sub: Any = None

    async def start(self, start_seq: int = 1) -> None:
        """Follow from ``start_seq`` (1: the whole log; a checkpoint's start later)."""
        from nats.js.api import DeliverPolicy

        info = await retrying(lambda: self.js.stream_info(subjects.STREAM_EVENTS),
                              "read the EVENTS stream")
        if info.state.messages == 0 or start_seq > info.state.last_seq:
            self.caught_up = True
        where: dict[str, Any] = dict(deliver_policy=DeliverPolicy.ALL)
        if start_seq > 1:
            from nats.js.api import ConsumerConfig

            where = dict(config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                               opt_start_seq=start_seq))

        async def on_msg(msg: Any) -> None:
            meta = msg.metadata
            try:
                item = decode_shared(meta.sequence.stream, msg.data)
            except Exception:
                self.bad += 1
                item = None
            self.queue.append((meta.sequence.stream, item, meta.num_pending))
            self.wake()

        # An ordered consumer is one in-memory replica on one server. If that server goes
        # away, the client notices through missed idle heartbeats (two in a row) and
        # recreates the consumer from the next sequence: with nats-py's default of 5 s a
        # follower could stall for 10-20 s after a node loss; with 1 s it resumes in ~2 s.
        self.sub = await retrying(lambda: self.js.subscribe(
            f"{subjects.PREFIX}.>", stream=subjects.STREAM_EVENTS, ordered_consumer=True,
            **where, cb=on_msg, pending_msgs_limit=-1,
            pending_bytes_limit=-1, inactive_threshold=EPHEMERAL_INACTIVE,
            idle_heartbeat=FOLLOW_HEARTBEAT), "follow the EVENTS stream")
        if not self.caught_up and start_seq > 1:
            # The messages from start_seq on may all be gone (purged): nothing will come
            # to say so.
            ci = await retrying(self.sub.consumer_info, "read the follower's position")
            if ci.num_pending == 0 and not (ci.delivered and ci.delivered.stream_seq):
                self.caught_up = True

    async def get(self, timeout: float | None) -> list[tuple[int, Any]]:
        """Wait up to ``timeout`` for messages; return all that are queued (maybe none)."""
        out: list[tuple[int, Any]] = []
        if not self.queue:  # wait on a bare future: no task and no queue per message
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()

            def expire() -> None:
                if not waiter.done():
                    waiter.set_result(None)

            timer = None if timeout is None else loop.call_later(timeout, expire)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        batch = [self.queue.popleft() for _ in range(min(len(self.queue), 5000))]
        for seq, item, pending in batch:
            if pending == 0:
                self.caught_up = True
            if item is not None:
                out.append((seq, item))
        return out

    def wake(self) -> None:
        """End a waiting ``get`` now (it returns what is queued, maybe nothing)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def stop(self) -> None:
        if self.sub is not None:
            await drop(self.js, self.sub)


# Ephemeral consumers outlive unsubscribe until their inactivity threshold; a busy API
# would pile them up. Watchers use a short threshold and are deleted when done.
EPHEMERAL_INACTIVE = 30.0


async def drop(js: JetStreamContext, sub: Any) -> None:
    """Unsubscribe and delete the subscription's ephemeral consumer."""
    try:
        info = await sub.consumer_info()
        await js.delete_consumer(info.stream_name, info.name)
    except Exception:
        pass
    try:
        await sub.unsubscribe()
    except Exception:
        pass


async def stop_watch(js: JetStreamContext, watcher: Any) -> None:
    """Stop a KV watcher and delete its consumer."""
    sub = getattr(watcher, "_sub", None)
    if sub is not None:
        await drop(js, sub)
    try:
        await watcher.stop()
    except Exception:
        pass


class KvWatch:
    """A KV watcher whose ``None`` (the current values have all come) can be trusted.

    nats-py sends that ``None`` when the consumer has nothing pending *and* its reader has
    parsed no value yet, so when the server has sent every value before it answers the
    consumer-info request, the ``None`` comes first and the values after it: a reader
    that stops at the ``None`` sees none of them (9 watches in 200 over 1,050 keys on a
    quiet machine; it left a registry's delete markers unpurged in CI). Here a ``None``
    before any value counts only if the consumer has truly sent nothing; otherwise the
    current values end with the one that had nothing pending behind it (delta 0)."""

    def __init__(self, watcher: Any) -> None:
        self.watcher = watcher
        self.seen = False  # a value has come
        self.ended = False  # our None is out: later ones are nats-py's, dropped
        self.owed = False  # the last current value is out: a None is next

    @property
    def _sub(self) -> Any:  # stop_watch deletes the consumer through it
        return self.watcher._sub

    def __aiter__(self) -> KvWatch:
        return self

    async def __anext__(self) -> Any:
        if self.owed:
            self.owed, self.ended = False, True
            return None
        while True:
            entry = await self.watcher.__anext__()
            if entry is None:
                if self.ended or (not self.seen and not await self._sent_nothing()):
                    continue  # after ours, or early: the values are still coming
                self.ended = True  # (after a value: nats-py skipped one it cannot type)
                return None
            if not self.ended and entry.delta == 0:
                self.owed = True
            self.seen = True
            return entry

    async def _sent_nothing(self) -> bool:
        try:
            info = await self.watcher._sub.consumer_info()
        except Exception as exc:  # NATS away: take nats-py's word for it
            log.warning("cannot check a watch's start, taking it as empty: %r", exc)
            return True
        return not info.num_pending and not info.delivered.consumer_seq

    async def stop(self) -> None:
        await self.watcher.stop()


async def kv_watch(kv: Any, keys: str = ">", **kwargs: Any) -> KvWatch:
    """``kv.watch(keys, **kwargs)``, its end of the current values made reliable."""
    return KvWatch(await kv.watch(keys, **kwargs))


async def kv_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """The keys of a bucket that hold a value, without creating a consumer."""
    stream = f"KV_{bucket}"
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(stream, subjects_filter=f"{prefix}>")
    subjects_seen = info.state.subjects or {}
    return sorted(s[len(prefix):] for s in subjects_seen)
