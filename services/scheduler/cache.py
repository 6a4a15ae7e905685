"""Reusing the jobs of earlier runs (docs/workflows.md#resume-and-caching).

``CacheIndex`` is pure: the core feeds it the EVENTS log, and it remembers, per workflow
and job, the succeeded attempts and their cache keys (from each attempt's ``ready``
event), where they ran and what they output. A replayed scheduler rebuilds it from the
log, so it holds only what the log says durably.

``Reuse`` is part of the scheduler's shell: before a job is released it computes the
job's key (reading its script and inputs, ``jobmesh.common.cachekey``) and, when the
index knows a succeeded attempt with that key, checks the facts in that attempt's run
directory before reusing it: its ``exit`` file says 0 and its ``job.json`` records the
same key. Its ``outputs:`` files are then copied from that run directory into the
workflow's folder. A run directory that is not on this machine (an SSH or batch job's)
cannot be read here: such a job is reused on the log's word only when it declares no
``outputs:`` files, and otherwise runs again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union

from jobmesh.common.attempt import AttemptKey
from jobmesh.common.cachekey import FileDigests, Unkeyable, input_files, job_key
from jobmesh.common.messages import (
    JobCanceled,
    JobFailed,
    JobProgressed,
    JobReadied,
    JobSkipped,
    JobStarted,
    JobSucceeded,
    WorkflowDeleted,
)
from jobmesh.common.packing import unpack
from jobmesh.common.spec import JobSpec

from .flow import NO_OUTPUTS  # shared by entries without outputs: never changed

# A workflow's cache as the checkpoint holds it: JSON text, or a big one as stored
# (bytes, ``packing.pack``ed: a 100,000-job sweep's ~34 MB of text is ~2 MB so).
Text = Union[str, bytes]
KEEP = 4  # keys remembered per job: the latest few versions of it
log = logging.getLogger("jobmesh.scheduler.cache")
EARLY = 1000  # successes remembered while their ready event may still come


@dataclass(slots=True)
class Entry:
    """One succeeded attempt that can stand in for a later one with the same key. A job's
    latest entry holds its older ones (``older``, other keys, oldest first, at most
    ``KEEP - 1``): a 100,000-job sweep keeps 100,000 of them, with slots and no dict or
    list per job (~45 MB less than a dataclass in an OrderedDict per job)."""
    key: str
    run: str
    attempt: int
    kind: str
    run_dir: str | None = None
    host: str | None = None
    started: float | None = None
    ended: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    older: tuple[Entry, ...] = ()  # not stored as a field: the checkpoint lists them

    def versions(self) -> tuple[Entry, ...]:
        """This entry and its older ones, oldest first."""
        return (*self.older, self)

    def described(self) -> dict[str, Any]:
        seconds = (self.ended - self.started) if self.started and self.ended else None
        return {"run": self.run, "attempt": self.attempt, "run_dir": self.run_dir,
                "host": self.host, "seconds": round(seconds, 3) if seconds else None}

    def as_dict(self) -> dict[str, Any]:
        """Its fields, as the checkpoint stores them (not a deep copy: entries are not
        changed once done)."""
        return {name: getattr(self, name) for name in FIELDS}


FIELDS = tuple(f.name for f in fields(Entry) if f.name != "older")


def latest_of(entries: list[Entry]) -> Entry:
    """The last of a job's entries (oldest first), holding the others: one per key (a
    later one wins), at most ``KEEP``."""
    by_key: dict[str, Entry] = {}
    for e in entries:  # a later one of a key goes last
        by_key.pop(e.key, None)
        by_key[e.key] = e
    chain = list(by_key.values())[-KEEP:]
    for e in chain:
        e.older = ()
    chain[-1].older = tuple(chain[:-1])
    return chain[-1]


def decode_jobs(jobs: Any) -> dict[str, Entry]:
    """A workflow's cached attempts as the checkpoint stores them: {job: [entry, ...]}.
    TypeError for an entry with other fields than ``FIELDS`` (``older`` is not stored:
    the list is the chain)."""
    return {str(job): latest_of([_entry(e) for e in entries])
            for job, entries in jobs.items() if entries}


def _entry(stored: dict[str, Any]) -> Entry:
    if "older" in stored:
        raise TypeError("a stored cache entry has a field 'older'")
    entry = Entry(**stored)
    for name in ("run", "kind", "host"):  # one string each, as apply keeps them
        value = getattr(entry, name)
        if type(value) is str:
            setattr(entry, name, sys.intern(value))
    return entry


class CacheIndex:
    """Succeeded attempts by (workflow, job, key), folded from the log. Pure."""

    def __init__(self) -> None:
        self.flying: dict[AttemptKey, Entry] = {}
        self.done: dict[str, dict[str, Entry]] = {}  # wf -> job -> its latest entry
        # Successes logged before their ready event (the two are published concurrently):
        self.early: OrderedDict[AttemptKey, JobSucceeded] = OrderedDict()
        # The checkpoint's JSON text of each workflow's ``done`` (checkpoint.py), kept
        # so a save encodes only the workflows whose entries changed since the last one:
        self.encoded: dict[str, Text] = {}
        # Workflows loaded from a checkpoint and not decoded yet (their text): a start
        # decodes only the workflows it runs or reuses from, not a whole home's history.
        self.unread: dict[str, Text] = {}

    def touch(self, wf: str) -> None:
        """``done[wf]`` is about to change: its checkpoint text goes stale."""
        self.jobs_of(wf)
        self.encoded.pop(wf, None)

    def jobs_of(self, wf: str) -> dict[str, Entry] | None:
        """The workflow's succeeded attempts by job and key (decoded when first needed)."""
        text = self.unread.pop(wf, None)
        if text is not None:
            try:
                self.done[wf] = decode_jobs(json.loads(
                    text if isinstance(text, str) else unpack(text)))
            except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as exc:
                # The cache only saves work: without it the jobs run again.
                log.warning("workflow %s: cannot read its cached attempts (%r); its jobs "
                            "run again", wf, exc)
                self.encoded.pop(wf, None)
        return self.done.get(wf)

    def apply(self, msg: Any, kind: str | None = None, name: str | None = None) -> None:
        """Record one message; ``kind`` is the job's kind (for ``ready`` events), ``name``
        the run's own string of its name (kept as the key instead of the message's)."""
        if isinstance(msg, WorkflowDeleted):
            self.done.pop(msg.workflow, None)
            self.unread.pop(msg.workflow, None)
            self.encoded.pop(msg.workflow, None)
            return
        if not isinstance(msg, (JobReadied, JobStarted, JobProgressed, JobSucceeded,
                                JobFailed, JobCanceled, JobSkipped)):
            return
        ident = AttemptKey.of(msg)
        if isinstance(msg, JobReadied):
            if msg.cache_key and not msg.cached_from and ident not in self.flying:
                # (one string per run, kind and host, and one empty outputs dict:
                # ~0.2 KB a job less in a big sweep; outputs are replaced, not updated)
                self.flying[ident] = Entry(msg.cache_key, sys.intern(msg.run), msg.attempt,
                                           sys.intern(kind or "local"), outputs=NO_OUTPUTS)
                early = self.early.pop(ident, None)
                if early is not None:
                    self.apply(early)
            return
        entry = self.flying.get(ident)
        if entry is None:
            if isinstance(msg, JobSucceeded) and not msg.cached_from:
                self.early[ident] = msg
                while len(self.early) > EARLY:
                    self.early.popitem(last=False)
            return
        if isinstance(msg, JobStarted):
            # (interned: the monitor's status of the job holds the same string)
            entry.run_dir = sys.intern(msg.run_dir) if msg.run_dir else entry.run_dir
            entry.host = sys.intern(msg.host) if msg.host else entry.host
            entry.started = entry.started or msg.time
        elif isinstance(msg, JobProgressed):
            if msg.outputs:
                entry.outputs = {**entry.outputs, **msg.outputs}
        else:
            del self.flying[ident]
            if isinstance(msg, JobSucceeded) and not msg.cached_from:
                if msg.outputs:
                    entry.outputs = {**entry.outputs, **msg.outputs}
                entry.ended = msg.time
                self.touch(msg.workflow)
                jobs = self.done.setdefault(msg.workflow, {})
                prev = jobs.get(msg.job)
                jobs[name if name == msg.job else msg.job] = entry if prev is None else \
                    latest_of([*prev.versions(), entry])

    def lookup(self, wf: str, job: str, key: str) -> Entry | None:
        jobs = self.jobs_of(wf)
        latest = jobs.get(job) if jobs else None
        if latest is not None:
            for e in latest.versions():
                if e.key == key:
                    return e
        return None


class Reuse:
    """The shell's half: compute keys and check what the index offers against files."""

    def __init__(self, index: CacheIndex):
        self.index = index
        self.digests = FileDigests()

    async def key(self, spec: JobSpec, base_dir: str,
                  parents: tuple[tuple[str, str | None], ...]) -> str | None:
        """The job's key, or None (it runs). Never raises: a key is an optimisation, and
        the scheduler must not stop over one."""
        try:
            if not spec.script and not spec.inputs:  # nothing to read: no thread needed
                return job_key(spec, base_dir, parents, self.digests)
            return await asyncio.to_thread(job_key, spec, base_dir, parents, self.digests)
        except Exception:  # noqa: BLE001 - e.g. a glob pathlib refuses
            log.warning("%s: no cache key", spec.name, exc_info=True)
            return None

    async def find(self, wf: str, job: str, key: str, spec: JobSpec,
                   base_dir: str) -> Entry | None:
        """A succeeded earlier attempt with this key whose durable facts hold, with its
        output files staged into the workflow's folder; None means run the job."""
        entry = self.index.lookup(wf, job, key)
        if entry is None:
            return None
        try:
            ok = await asyncio.to_thread(_usable, entry, spec, base_dir)
        except Exception:  # noqa: BLE001 - as in key(): when in doubt, run the job
            log.warning("%s/%s: cannot check run %s", wf, job, entry.run, exc_info=True)
            return None
        return entry if ok else None


def _usable(entry: Entry, spec: JobSpec, base_dir: str) -> bool:
    rdir = Path(entry.run_dir) if entry.run_dir else None
    if rdir is None or not rdir.is_dir():
        # Not on this machine: an SSH or batch job's run directory is read over there.
        return entry.kind != "local" and not spec.outputs
    if _read(rdir / "exit").strip() != "0":
        return False
    try:
        recorded = json.loads(_read(rdir / "job.json") or "{}").get("cache_key")
    except ValueError:
        return False
    if recorded != entry.key:
        return False
    return _restage(rdir, spec, Path(base_dir))


def _restage(rdir: Path, spec: JobSpec, base: Path) -> bool:
    """Copy the declared outputs from the earlier run directory into the workflow's
    folder, as the executor did when that attempt succeeded."""
    try:
        for rel in input_files(rdir, spec.outputs):
            dest = base / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(rdir / rel, dest)
    except (Unkeyable, OSError):
        return False
    return True


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""
