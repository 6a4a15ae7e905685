"""Fold the EVENTS log into ``WorkflowSnapshot``s. Pure: messages in, snapshots out.

Applying a message twice changes nothing: state moves only to a higher rank, events of
an older attempt or another run are ignored, and progress never moves a job.
The workflow's own state comes from two counters kept per event (jobs not yet final,
and final jobs that spoil success), so a 5,000-job workflow costs O(1) per event.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, NamedTuple

from jobmesh.common import jobfold
from jobmesh.common.control import repeat_done
from jobmesh.common.messages import (
    EVENT_STATE,
    JobCancelRequested,
    JobsExpanded,
    JobStatus,
    WorkflowCancelRequested,
    WorkflowDeleted,
    WorkflowRetryRequested,
    WorkflowSnapshot,
    WorkflowSubmitted,
)
from jobmesh.common.packing import unpack
from jobmesh.common.spec import SHARE_FIELDS_SET_FROM, JobSpec, Workflow, will_retry
from jobmesh.common.states import JobState, WorkflowState


class _Given(set[str]):
    """The ``model_fields_set`` of a big run's job statuses: one set for all of them that
    stays as it was made. pydantic adds to a model's set every field assigned, and the
    fold assigns ~12 per job: a 728-byte set per job (half of a job's status) that nothing
    in jobmesh reads (no ``exclude_unset``; ``model_copy`` copies it). Equality and
    encoding do not look at it."""

    def add(self, element: str) -> None:
        pass


def _lean(statuses: Collection[JobStatus]) -> None:
    """The new statuses of a big run (``SHARE_FIELDS_SET_FROM`` jobs or more) share one
    fields set (``_Given``), one empty ``outputs`` dict and one empty ``history`` list:
    ~0.85 KB a job less. ``jobfold`` replaces a status's outputs and history, never
    changes them in place."""
    if len(statuses) < SHARE_FIELDS_SET_FROM:
        return
    given: _Given | None = None
    outputs: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    for js in statuses:
        if given is None:
            given = _Given(js.__pydantic_fields_set__)
        object.__setattr__(js, "__pydantic_fields_set__", given)
        values = js.__dict__
        values["outputs"], values["history"] = outputs, history


class Specs(dict[str, Workflow]):
    """wf -> spec. A spec seeded from the store (``resume.py``) stays as stored (JSON,
    packed when big) until it is read: a 10,000-job spec takes ~0.3 s to decode, and an
    ended run's is rarely needed again. (``values``/``items`` are not used on it.)"""

    def __init__(self) -> None:
        super().__init__()
        self.raw: dict[str, bytes] = {}
        self.repeat: dict[str, bool] = {}  # of a raw spec: has it a ``repeat`` job

    def store(self, wf: str, data: bytes, repeat: bool) -> None:
        super().__setitem__(wf, None)  # type: ignore[assignment]  # (decoded when read)
        self.raw[wf], self.repeat[wf] = data, repeat

    def __getitem__(self, wf: str) -> Workflow:
        data = self.raw.pop(wf, None)
        if data is not None:
            self.repeat.pop(wf, None)
            super().__setitem__(wf, Workflow.model_validate_json(unpack(data)))
        return super().__getitem__(wf)

    def get(self, wf: str, default: Any = None) -> Any:
        return self[wf] if wf in self else default

    def __setitem__(self, wf: str, spec: Workflow) -> None:
        self.raw.pop(wf, None)
        self.repeat.pop(wf, None)
        super().__setitem__(wf, spec)

    def __delitem__(self, wf: str) -> None:
        self.raw.pop(wf, None)
        self.repeat.pop(wf, None)
        super().__delitem__(wf)

    def has_repeat(self, wf: str) -> bool:
        if wf in self.raw:
            return self.repeat[wf]
        return any(job.repeat is not None for job in self[wf].jobs.values())


class Head(NamedTuple):
    """What the shell reads of every snapshot at start: no jobs."""
    run: str
    seq: int
    state: WorkflowState
    ended: float | None


def head_of(data: bytes) -> Head | None:
    """The head of an encoded snapshot (``bus.encode``) without decoding its jobs: the
    fields before ``jobs``, and the top-level ``seq`` (the last one: it follows jobs and
    edges). None when ``data`` is not laid out so."""
    cut, at = data.find(b',"jobs":'), data.rfind(b',"seq":')
    if cut < 0 or at < cut:
        return None
    try:
        top = json.loads(data[:cut] + b"}")
        end = data.find(b",", at + 7)
        seq = int(data[at + 7: end if end >= 0 else len(data) - 1])
        return Head(top["run"], seq, WorkflowState(top["state"]), top.get("ended"))
    except (ValueError, KeyError, TypeError):
        return None


class Snaps(dict[str, WorkflowSnapshot]):
    """wf -> snapshot. A snapshot seeded from the store (``resume.py``) stays as stored
    (JSON, packed when big) until it is read: a 20,000-job snapshot takes ~0.15 s to
    decode at every start, and an ended run's is rarely needed again. ``head`` reads
    what the shell needs of every one without decoding it; ``values``/``items`` decode
    them all."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: dict[str, tuple[bytes, Head]] = {}

    def store(self, wf: str, data: bytes, head: Head) -> None:
        super().__setitem__(wf, None)  # type: ignore[assignment]  # (decoded when read)
        self.raw[wf] = (data, head)

    def head(self, wf: str) -> Head:
        if wf in self.raw:
            return self.raw[wf][1]
        snap = super().__getitem__(wf)
        return Head(snap.run, snap.seq, snap.state, snap.ended)

    def __getitem__(self, wf: str) -> WorkflowSnapshot:
        raw = self.raw.pop(wf, None)
        if raw is not None:
            super().__setitem__(wf, WorkflowSnapshot.model_validate_json(unpack(raw[0])))
        return super().__getitem__(wf)

    def get(self, wf: str, default: Any = None) -> Any:
        return self[wf] if wf in self else default

    def __setitem__(self, wf: str, snap: WorkflowSnapshot) -> None:
        self.raw.pop(wf, None)
        super().__setitem__(wf, snap)

    def __delitem__(self, wf: str) -> None:
        self.raw.pop(wf, None)
        super().__delitem__(wf)

    def values(self) -> Any:
        return [self[wf] for wf in self]

    def items(self) -> Any:
        return [(wf, self[wf]) for wf in self]


class Fold:
    def __init__(self) -> None:
        self.snaps = Snaps()
        self.specs = Specs()
        self.open: dict[str, int] = {}   # jobs not final yet
        self.spoil: dict[str, int] = {}  # final jobs that make the workflow fail
        self.first: dict[str, dict[str, int]] = {}  # repeat: each iteration's first attempt
        self.deleted: set[str] = set()
        # When each job's current attempt was released to a pool (ready, else queued):
        # the timeline's queue time is from then to its start. Not in the snapshot.
        self.queued: dict[str, dict[str, float]] = {}
        # Runs a new submission replaced: (their last snapshot, their queue times, the new
        # run), for the shell to keep as history; it drains this list.
        self.superseded: list[tuple[WorkflowSnapshot, dict[str, float], str]] = []

    def apply(self, seq: int, msg: Any) -> str | None:
        """Fold one message; returns the workflow it changed, or None."""
        wf: str | None = getattr(msg, "workflow", None)
        if wf is None:
            return None
        if isinstance(msg, WorkflowSubmitted):
            return self._submitted(seq, msg)
        snap = self.snaps.get(wf)
        if snap is None or getattr(msg, "run", None) != snap.run:
            return None
        snap.seq = seq
        if isinstance(msg, WorkflowDeleted):
            del self.snaps[wf], self.specs[wf], self.open[wf], self.spoil[wf], self.first[wf]
            self.queued.pop(wf, None)
            self.superseded = [s for s in self.superseded if s[0].name != wf]
            self.deleted.add(wf)
            return wf
        if isinstance(msg, WorkflowCancelRequested):
            snap.cancel_requested = True
            self._recount(wf)
        elif isinstance(msg, WorkflowRetryRequested):
            snap.cancel_requested = False
            snap.ended = None
            self._recount(wf)
        elif isinstance(msg, JobCancelRequested):
            return None
        elif isinstance(msg, JobsExpanded):
            if not self._expanded(wf, snap, msg):
                return None
        else:
            self._job_event(wf, snap, msg)
        self._workflow_state(wf, snap, getattr(msg, "time", None))
        return wf

    def seed(self, wf: str, snap: bytes, head: Head, spec: bytes, counts: tuple[int, int],
             repeat: bool) -> None:
        """Take a stored, ended run's snapshot and its spec (both JSON, decoded when first
        read) and its (open, spoil) counts as if its events had been folded (the monitor's
        checkpoint, ``resume.py``)."""
        self.snaps.store(wf, snap, head)
        self.specs.store(wf, spec, repeat)
        self.deleted.discard(wf)
        self.first[wf], self.queued[wf] = {}, {}
        self.open[wf], self.spoil[wf] = counts

    def _submitted(self, seq: int, msg: WorkflowSubmitted) -> str:
        old = self.snaps.get(msg.workflow)
        if old is not None and old.run != msg.run:
            self.superseded.append((old, self.queued.get(msg.workflow, {}), msg.run))
        spec = msg.spec.model_copy()  # expansions replace its jobs and edges
        snap = WorkflowSnapshot(name=msg.workflow, run=msg.run, state=WorkflowState.RUNNING,
                                created=msg.time, parallel=msg.parallel, seq=seq,
                                edges=list(spec.edges))
        for name, job in spec.jobs.items():
            snap.jobs[name] = JobStatus(kind=job.kind, host=job.host)
        _lean(snap.jobs.values())
        self.snaps[msg.workflow], self.specs[msg.workflow] = snap, spec
        self.deleted.discard(msg.workflow)
        self.open[msg.workflow], self.spoil[msg.workflow] = len(spec.jobs), 0
        self.first[msg.workflow] = {}
        self.queued[msg.workflow] = {}
        self._workflow_state(msg.workflow, snap, msg.time)
        return msg.workflow

    def _classify(self, wf: str, name: str, js: JobStatus, cancel: bool) -> tuple[int, int]:
        """(open, spoil) contribution of one job."""
        spec = self.specs[wf].jobs[name]
        if not js.state.terminal:
            return 1, 0
        if js.state is JobState.FAILED and not cancel and will_retry(
                spec, js.attempt, self.first[wf].get(name, 1)):
            return 1, 0  # the scheduler will start another attempt
        if js.state is JobState.SUCCEEDED:
            if spec.repeat is not None and not cancel and not repeat_done(
                    spec, self.specs[wf].variables, js.outputs, js.iteration)[0]:
                return 1, 0  # the scheduler will start the next iteration
            return 0, 0
        if js.state is JobState.FAILED and spec.allow_failure:
            return 0, 0
        if js.state is JobState.SKIPPED and js.benign:
            return 0, 0  # condition false: not a failure
        return 0, 1

    def _recount(self, wf: str) -> None:
        snap = self.snaps[wf]
        o = s = 0
        for name, js in snap.jobs.items():
            a, b = self._classify(wf, name, js, snap.cancel_requested)
            o, s = o + a, s + b
        self.open[wf], self.spoil[wf] = o, s

    def _expanded(self, wf: str, snap: WorkflowSnapshot, ev: JobsExpanded) -> bool:
        """A foreach node became jobs: swap them in, in its place. False if done already."""
        spec = self.specs[wf]
        js = snap.jobs.get(ev.job)
        if ev.job not in spec.jobs or js is None or js.state is not JobState.PENDING:
            return False
        a, b = self._classify(wf, ev.job, js, snap.cancel_requested)
        if spec.submitted_digest is None:
            spec.submitted_digest = spec.digest()
        jobs: dict[str, JobSpec] = {}
        states: dict[str, JobStatus] = {}
        for name, job in spec.jobs.items():
            if name != ev.job:
                jobs[name], states[name] = job, snap.jobs[name]
                continue
            for new, job2 in ev.jobs.items():
                jobs[new], states[new] = job2, JobStatus(kind=job2.kind, host=job2.host,
                                                         modified=ev.time)
        _lean([states[new] for new in ev.jobs])
        spec.jobs, snap.jobs = jobs, states
        spec.edges = [e for e in spec.edges if ev.job not in e] + list(ev.edges)
        snap.edges = list(spec.edges)
        snap.expansions += 1
        self.open[wf] += len(ev.jobs) - a
        self.spoil[wf] -= b
        return True

    def _job_event(self, wf: str, snap: WorkflowSnapshot, ev: Any) -> None:
        """The job-event rule (``jobfold.apply``), and the fold's own bookkeeping: each
        repeat iteration's first attempt, queue times, and the open/spoil counts."""
        js = snap.jobs.get(ev.job)
        spec = self.specs[wf].jobs.get(ev.job)
        if js is None or spec is None or ev.attempt < js.attempt:
            return
        before = self._classify(wf, ev.job, js, snap.cancel_requested)
        fresh = ev.attempt > js.attempt
        new = jobfold.apply(js, ev, spec.repeat is not None)
        if new is None:
            return
        if fresh:
            if getattr(ev, "iteration", None) is not None:
                self.first[wf][ev.job] = ev.attempt
            self.queued[wf].pop(ev.job, None)  # the new attempt waits afresh
            snap.jobs[ev.job] = new
        target = EVENT_STATE.get(ev.type)
        if target is not None and new.state is target:
            if ev.type in ("ready", "queued"):
                self.queued[wf].setdefault(ev.job, ev.time)
            elif ev.type == "started" and snap.started is None:
                snap.started = ev.time
        after = self._classify(wf, ev.job, new, snap.cancel_requested)
        self.open[wf] += after[0] - before[0]
        self.spoil[wf] += after[1] - before[1]

    def _workflow_state(self, wf: str, snap: WorkflowSnapshot, now: float | None) -> None:
        if self.open[wf] > 0:
            snap.state, snap.ended = WorkflowState.RUNNING, None
            return
        if self.spoil[wf] == 0:
            state = WorkflowState.SUCCEEDED
        elif snap.cancel_requested:
            state = WorkflowState.CANCELED
        else:
            state = WorkflowState.FAILED
        if snap.state is not state or snap.ended is None:
            snap.state = state
            snap.ended = max((j.ended or 0 for j in snap.jobs.values()), default=0) or now
