"""The scheduler's checkpoint: finished runs compacted, so a restart does not replay
everything a home ever ran.

A finished run (every job ended for good, nothing to cancel or retry) keeps nothing in
the core but its id and the log sequence of its submission (``SchedulerCore.finished``);
what reuse needs of it stays in the cache index. The checkpoint is that state, stored
as JSON in the object store ``scheduler``, taken only when every decision so far is on
the log (after the shell's publishes were acked) and no replaced run is still being
canceled:

    {"version": 3, "seq": S, "start": T, "finished": {wf: [run, first_seq]},
     "purge": {...}, "cache": {wf: "<JSON text of {job: [entry, ...]}>"},
     "stored": [wf, ...]}

Each workflow's cache is JSON text, so a save re-encodes only the workflows whose
entries changed since the last save or load (``CacheIndex.encoded``), and a load
decodes a workflow's part only when the scheduler first needs it
(``CacheIndex.jobs_of``); text it cannot decode then is dropped with a warning, and
that workflow's jobs run again. A small workflow's text is inside the document; a big
one's (over INLINE characters: a 10,000-job sweep's is ~3.5 MB) is its own object,
``cache.<wf>``, named under "stored", written (packed) only when it changed, and read
only when a message of that workflow comes (``Stored``); the scheduler keeps such a text
as stored (packed bytes, encoded and compressed a job at a time: a 100,000-job sweep's
~34 MB of text is ~2 MB so, and encoding it whole peaked at ~110 MB): a 1-job run after a
100,000-job sweep neither reads nor writes the sweep's cache. A workflow's object is
written before the document that names it, and a newer object under an older document
only holds more succeeded attempts of the same log (applying them again is a no-op),
so a scheduler killed at any point finds a usable checkpoint. Versions 1 (the cache as
plain JSON) and 2 (every text inside) are still read.

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
import zlib
from dataclasses import dataclass, field
from typing import Any

from jobmesh.common import bus, objects, subjects
from jobmesh.common.packing import pack, unpack

from .cache import Text, decode_jobs
from .core import SchedulerCore

log = logging.getLogger("jobmesh.scheduler.checkpoint")
STORE = "scheduler"  # object store
NAME = "checkpoint"
VERSION = 3
VERSIONS = (1, 2, 3)  # what restore reads
INLINE = 64_000  # characters: a bigger workflow cache text is its own object
CACHE_PREFIX = "cache."  # + workflow name: the object holding that workflow's cache
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


@dataclass
class Stored:
    """The workflows whose cache text is an object of its own (``cache.<wf>``)."""

    written: dict[str, Text] = field(default_factory=dict)  # wf -> the text last stored
    unfetched: set[str] = field(default_factory=set)  # named by the document, not read yet
    due: dict[str, Text] = field(default_factory=dict)  # to store before the next document
    dropped: set[str] = field(default_factory=set)  # objects no document names any more


def dump(core: SchedulerCore, seq: int, purge: dict[str, list[Any]],
         stored: Stored | None = None) -> bytes:
    """``purge``: workflow -> [run, its last seq, when it was compacted], runs whose
    events retention may remove later. With ``stored``, big workflow caches are named,
    and those changed since written are put in ``stored.due`` (the caller stores them
    first); without, every text is inside."""
    index = core.cache
    encoded = index.encoded
    for wf in [wf for wf in encoded if wf not in index.done and wf not in index.unread]:
        del encoded[wf]
    for wf, jobs in index.done.items():
        if wf not in encoded:
            encoded[wf] = _encode(jobs)
    inline: dict[str, str] = {wf: _text(v) for wf, v in encoded.items()} \
        if stored is None else {}
    named: list[str] = []
    if stored is not None:
        named = sorted(stored.unfetched)
        for wf, text in encoded.items():
            if isinstance(text, str) and len(text) <= INLINE:
                inline[wf] = text
                continue
            named.append(wf)
            if stored.written.get(wf) is not text:
                stored.due[wf] = text
        for wf in set(stored.written) - set(named):  # deleted, or small again
            del stored.written[wf]
            stored.dropped.add(wf)
    return json.dumps({"version": VERSION, "seq": seq, "start": start_of(core, seq),
                       "finished": {wf: list(v) for wf, v in core.finished.items()},
                       "purge": purge, "cache": inline, "stored": sorted(named)},
                      separators=(",", ":")).encode()


def _encode(jobs: dict[str, Any]) -> Text:
    """The JSON text of a workflow's cache, ``{job: [entry, ...]}``; one over ``INLINE``
    characters as it is stored (``pack``ed bytes), encoded and compressed a job at a time:
    a 100,000-job sweep's text is ~34 MB, and encoding it whole peaked at ~110 MB; the
    scheduler keeps each workflow's encoded cache between saves."""
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    z: Any = None
    out: list[bytes] = []
    batch: list[str] = []
    size = 0
    sep = "{"
    for job, latest in jobs.items():
        batch.append(f"{sep}{dumps(job)}:{dumps([e.as_dict() for e in latest.versions()])}")
        size += len(batch[-1])
        sep = ","
        if size > INLINE:
            if z is None:
                z = zlib.compressobj(1)  # as pack
            out.append(z.compress("".join(batch).encode()))
            batch, size = [], 0
    batch.append("{}" if sep == "{" else "}")
    if z is None:
        return "".join(batch)
    out.append(z.compress("".join(batch).encode()))
    out.append(z.flush())
    return b"".join(out)


def _text(value: Text) -> str:
    """A workflow's cache text, whether kept as text or as stored (packed bytes)."""
    return value if isinstance(value, str) else unpack(value).decode()


def restore(core: SchedulerCore, data: bytes, stored: Stored | None = None
            ) -> tuple[int, int, dict[str, list[Any]]]:
    """Load a checkpoint into a fresh core; returns (seq, start, purge); the workflows
    whose cache is an object of its own go to ``stored.unfetched`` (the caller reads each
    when first needed: ``fetch``). Raises ValueError on data it cannot use (the caller
    then replays the whole log)."""
    encoded: dict[str, Text] = {}
    unread: dict[str, Text] = {}
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
        named = {str(wf) for wf in doc.get("stored", [])}
        if named and stored is None:
            raise ValueError("it names workflow caches stored apart; read with Stored")
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"malformed checkpoint: {exc!r}") from None
    if not 0 < start <= seq + 1:
        raise ValueError(f"checkpoint starts at {start}, after its sequence {seq}")
    core.finished, core.cache.done = finished, done
    core.cache.encoded, core.cache.unread = encoded, unread
    if stored is not None:
        stored.unfetched, stored.written = named, {}
    return seq, start, purge


async def fetch(js: Any, core: SchedulerCore, stored: Stored, wf: str) -> None:
    """Read the cache of ``wf`` if the checkpoint named it and it was not read yet. A
    missing or unreadable one is logged, and that workflow's jobs run again."""
    if wf not in stored.unfetched:
        return
    try:
        text: Text | None = await objects.get(js, STORE, CACHE_PREFIX + wf) or None
    except Exception as exc:  # noqa: BLE001 - the cache only saves work
        log.warning("workflow %s: cannot read its cached attempts (%r); its jobs run "
                    "again", wf, exc)
        text = None
    stored.unfetched.discard(wf)
    if text is None:
        stored.dropped.add(wf)
        return
    core.cache.unread[wf] = core.cache.encoded[wf] = stored.written[wf] = text


async def write_caches(store: Any, stored: Stored) -> None:
    """Store the changed big caches ``dump`` found (before the document names them)."""
    while stored.due:
        wf, text = next(iter(stored.due.items()))
        await store.put(CACHE_PREFIX + wf,
                        text if isinstance(text, bytes) else pack(text.encode()))
        stored.written[wf] = text
        del stored.due[wf]


async def drop_caches(store: Any, stored: Stored) -> None:
    """Delete the objects no stored document names any more (best effort)."""
    for wf in list(stored.dropped):
        if wf in stored.written or wf in stored.unfetched:
            stored.dropped.discard(wf)  # named again (a workflow run again)
            continue
        try:
            await store.delete(CACHE_PREFIX + wf)
        except Exception as exc:  # noqa: BLE001 - a leftover object is only space
            log.debug("cache object of %s not deleted: %r", wf, exc)
        stored.dropped.discard(wf)


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
