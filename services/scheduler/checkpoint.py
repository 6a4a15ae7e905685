"""The scheduler's checkpoint: finished runs compacted, so a restart does not replay
everything a home ever ran.

A finished run (every job ended for good, nothing to cancel or retry) keeps nothing in
the core but its id and the log sequence of its submission (``SchedulerCore.finished``);
what reuse needs of it stays in the cache index. The checkpoint is that state, stored
as JSON in the object store ``scheduler``, taken only when every decision so far is on
the log (after the shell's publishes were acked) and no replaced run is still being
canceled:

    {"version": 2, "seq": S, "start": T, "finished": {wf: [run, first_seq]},
     "purge": {...}, "cache": {wf: "<JSON text of {job: [entry, ...]}>"}}

Each workflow's cache is JSON text inside the document, so a save re-encodes only the
workflows whose entries changed since the last save or load (``CacheIndex.encoded``):
after a 10,000-job sweep, a later 1-job run's end no longer encodes the sweep's 10,000
attempts again. A load keeps the text too and decodes a workflow's part only when the
scheduler first needs it (``CacheIndex.jobs_of``); text it cannot decode then is
dropped with a warning, and that workflow's jobs run again. The document is still
written as one object, so a scheduler killed at any point finds either the old
checkpoint or the new one whole. Version 1 (the cache
as plain JSON) is still read.

A restarted scheduler loads it and follows the log from ``T``: the submission of the
oldest run still going, or ``S + 1`` when none is. Messages up to ``S`` of the
workflows compacted in it are skipped (the checkpoint has them). A retry of a compacted
run replays that workflow's messages from its submission first (``replay_run``).

Events of finished runs can also leave the log: deleting a workflow purges its events
(the ``deleted`` command stays, so every follower still sees it), and with
``JOBMESH_EVENTS_RETENTION`` set (seconds) the events of a run that finished that long
ago are purged once the monitor's snapshot has folded them. A run whose events were
purged cannot be retried; running the workflow again reuses its succeeded jobs.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from jobmesh.common import bus, objects, subjects
from jobmesh.common.packing import pack, unpack

from .cache import decode_jobs
from .core import SchedulerCore

log = logging.getLogger("jobmesh.scheduler.checkpoint")
STORE = "scheduler"  # object store
NAME = "checkpoint"
VERSION = 2
VERSIONS = (1, 2)  # what restore reads
EVERY = 1.0  # seconds: at most one checkpoint per second while runs finish
RETENTION_ENV = "JOBMESH_EVENTS_RETENTION"


def retention(environ: Any = None) -> float | None:
    """Seconds a finished run's events stay in the log; None keeps them (the default)."""
    text = (os.environ if environ is None else environ).get(RETENTION_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{RETENTION_ENV}={text!r}: give a number of seconds, e.g. "
                         "86400 for a day, or leave it unset to keep every event") from None
    if value < 0:
        raise ValueError(f"{RETENTION_ENV}={text!r}: the number of seconds cannot be negative")
    return value


def start_of(core: SchedulerCore, seq: int) -> int:
    """Where a scheduler restored from a checkpoint at ``seq`` follows the log from."""
    firsts = [r.first_seq for r in core.runs.values()]
    return min([seq + 1, *firsts])


def dump(core: SchedulerCore, seq: int, purge: dict[str, list[Any]]) -> bytes:
    """``purge``: workflow -> [run, its last seq, when it was compacted], runs whose
    events retention may remove later."""
    index = core.cache
    encoded = index.encoded
    for wf in [wf for wf in encoded if wf not in index.done and wf not in index.unread]:
        del encoded[wf]
    for wf, jobs in index.done.items():
        if wf not in encoded:
            encoded[wf] = _encode(jobs)
    return json.dumps({"version": VERSION, "seq": seq, "start": start_of(core, seq),
                       "finished": {wf: list(v) for wf, v in core.finished.items()},
                       "purge": purge, "cache": encoded}, separators=(",", ":")).encode()


def _encode(jobs: dict[str, Any]) -> str:
    # vars(), not dataclasses.asdict (a deep copy): entries are not changed once done.
    return json.dumps({job: [vars(e) for e in keys.values()] for job, keys in jobs.items()},
                      separators=(",", ":"))


def restore(core: SchedulerCore, data: bytes) -> tuple[int, int, dict[str, list[Any]]]:
    """Load a checkpoint into a fresh core; returns (seq, start, purge). Raises
    ValueError on data it cannot use (the caller then replays the whole log)."""
    encoded: dict[str, str] = {}
    unread: dict[str, str] = {}
    try:
        doc = json.loads(data)
        version = doc.get("version")
        if version not in VERSIONS:
            raise ValueError(f"checkpoint version {version!r}")
        seq, start = int(doc["seq"]), int(doc["start"])
        finished = {str(wf): (str(v[0]), int(v[1])) for wf, v in doc["finished"].items()}
        purge = {str(wf): [str(v[0]), int(v[1]), float(v[2])]
                 for wf, v in doc.get("purge", {}).items()}
        done: dict[str, Any] = {}
        for wf, jobs in doc["cache"].items():
            if version == 1:
                done[wf] = decode_jobs(jobs)
                continue
            if not isinstance(jobs, str):
                raise TypeError(f"workflow {wf}: cache is not JSON text")
            unread[wf] = encoded[wf] = jobs  # decoded when first needed
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"malformed checkpoint: {exc!r}") from None
    if not 0 < start <= seq + 1:
        raise ValueError(f"checkpoint starts at {start}, after its sequence {seq}")
    core.finished, core.cache.done = finished, done
    core.cache.encoded, core.cache.unread = encoded, unread
    return seq, start, purge


async def open_store(js: Any, replicas: int, create: bool = True) -> Any:
    """The checkpoint's object store; None if it does not exist and not ``create``."""
    from nats.js.api import ObjectStoreConfig
    from nats.js.errors import BucketNotFoundError, NotFoundError

    try:
        return await js.object_store(STORE)
    except (NotFoundError, BucketNotFoundError):
        if not create:
            return None
        try:
            return await js.create_object_store(STORE, config=ObjectStoreConfig(
                replicas=replicas, description="the scheduler's checkpoint"))
        except Exception:  # raced with another scheduler
            return await js.object_store(STORE)


async def read(js: Any) -> bytes | None:
    """The stored checkpoint (JSON), None if there is none. Read in one batch
    (``objects.get``: nats-py's reader took ~300 ms for the 3.5 MB checkpoint of a home
    that ran a 10,000-job sweep); stored compressed when large (``write``)."""
    data = await objects.get(js, STORE, NAME)
    return unpack(data) if data else None


async def write(store: Any, data: bytes) -> None:
    """Store the checkpoint, zlib-compressed when large (``packing``): the cache index
    of a 10,000-job sweep is ~3.5 MB of JSON, ~6x smaller packed."""
    await store.put(NAME, pack(data))


async def replay_run(js: Any, wf: str, first: int, upto: int) -> list[tuple[int, Any]]:
    """The log messages of workflow ``wf`` with sequences in [first, upto)."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    out: list[tuple[int, Any]] = []
    if upto <= first:
        return out
    sub = await js.subscribe(f"{subjects.PREFIX}.>", stream=subjects.STREAM_EVENTS,
                             ordered_consumer=True, config=ConsumerConfig(
                                 deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                 opt_start_seq=first),
                             inactive_threshold=bus.EPHEMERAL_INACTIVE)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=5)
            except Exception:  # noqa: BLE001 - the end of the log, or NATS away
                break
            seq = msg.metadata.sequence.stream
            if seq >= upto:
                break
            parts = msg.subject.split(".")
            if len(parts) > 2 and parts[2] == wf:
                try:
                    out.append((seq, bus.decode_log(msg.data)))
                except Exception:  # noqa: BLE001 - undecodable: skipped, as in a replay
                    pass
            if msg.metadata.num_pending == 0:
                break
    finally:
        await bus.drop(js, sub)
    return out


async def purge(js: Any, wf: str, before: int) -> None:
    """Remove the workflow's commands and job events with sequences below ``before``."""
    for subject in (subjects.workflow(wf), subjects.workflow_events(wf)):
        await bus.retrying(lambda s=subject: js.purge_stream(
            subjects.STREAM_EVENTS, seq=before, subject=s), f"purge {subject}")


def needs_rebuild(core: SchedulerCore, msg: Any) -> tuple[str, int] | None:
    """A message about a compacted run that needs its jobs (a retry): the run and its
    first log sequence, for the shell to replay that run's messages first."""
    from jobmesh.common.messages import WorkflowRetryRequested

    stub = core.finished.get(getattr(msg, "workflow", None) or "")
    if stub is not None and isinstance(msg, WorkflowRetryRequested) and msg.run == stub[0]:
        return stub
    return None


def compact(core: SchedulerCore) -> list[str]:
    """Drop the jobs of finished runs, keeping (run, first seq) of each; returns their
    workflows. The cache index keeps what reuse needs."""
    done = [wf for wf, r in core.runs.items()
            if r.finished and not r.cancel_one and wf not in core.dirty]
    for wf in done:
        run = core.runs.pop(wf)
        core.finished[wf] = (run.run, run.first_seq)
    return done
