"""Fold the EVENTS log into ``WorkflowSnapshot``s. Pure: messages in, snapshots out.

Applying a message twice changes nothing: state moves only to a higher rank, events of
an older attempt or another run are ignored, and progress never moves a job.
The workflow's own state comes from two counters kept per event (jobs not yet final,
and final jobs that spoil success), so a 5,000-job workflow costs O(1) per event.
"""

from __future__ import annotations

from typing import Any

from jobmesh.common.control import repeat_done
from jobmesh.common.messages import (
    EVENT_STATE,
    JobCancelRequested,
    JobProgressed,
    JobsExpanded,
    JobStatus,
    WorkflowCancelRequested,
    WorkflowDeleted,
    WorkflowRetryRequested,
    WorkflowSnapshot,
    WorkflowSubmitted,
)
from jobmesh.common.spec import JobSpec, Workflow, will_retry
from jobmesh.common.states import JobState, WorkflowState, should_apply


class Fold:
    def __init__(self) -> None:
        self.snaps: dict[str, WorkflowSnapshot] = {}
        self.specs: dict[str, Workflow] = {}
        self.open: dict[str, int] = {}   # jobs not final yet
        self.spoil: dict[str, int] = {}  # final jobs that make the workflow fail
        self.first: dict[str, dict[str, int]] = {}  # repeat: each iteration's first attempt
        self.deleted: set[str] = set()

    def apply(self, seq: int, msg: Any) -> str | None:
        """Fold one message; returns the workflow it changed, or None."""
        wf = getattr(msg, "workflow", None)
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

    def _submitted(self, seq: int, msg: WorkflowSubmitted) -> str:
        spec = msg.spec.model_copy()  # expansions replace its jobs and edges
        snap = WorkflowSnapshot(name=msg.workflow, run=msg.run, state=WorkflowState.RUNNING,
                                created=msg.time, parallel=msg.parallel, seq=seq,
                                edges=list(spec.edges))
        for name, job in spec.jobs.items():
            snap.jobs[name] = JobStatus(kind=job.kind, host=job.host)
        self.snaps[msg.workflow], self.specs[msg.workflow] = snap, spec
        self.deleted.discard(msg.workflow)
        self.open[msg.workflow], self.spoil[msg.workflow] = len(spec.jobs), 0
        self.first[msg.workflow] = {}
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
        spec.jobs, snap.jobs = jobs, states
        spec.edges = [e for e in spec.edges if ev.job not in e] + list(ev.edges)
        snap.edges = list(spec.edges)
        snap.expansions += 1
        self.open[wf] += len(ev.jobs) - a
        self.spoil[wf] -= b
        return True

    def _job_event(self, wf: str, snap: WorkflowSnapshot, ev: Any) -> None:
        js = snap.jobs.get(ev.job)
        spec = self.specs[wf].jobs.get(ev.job)
        if js is None or spec is None or ev.attempt < js.attempt:
            return
        before = self._classify(wf, ev.job, js, snap.cancel_requested)
        if ev.attempt > js.attempt:
            keep = {"attempt", "state", "exit_code", "reason", "started", "ended", "native_id",
                    "run_dir"} | ({"iteration", "outputs"} if spec.repeat else set())
            js.history.append({k: v for k, v in js.model_dump(include=keep).items()
                               if v is not None})
            iteration = getattr(ev, "iteration", None)
            if iteration is not None:
                self.first[wf][ev.job] = ev.attempt
            snap.jobs[ev.job] = js = JobStatus(attempt=ev.attempt, kind=js.kind, host=js.host,
                                               history=js.history, outputs={},
                                               iteration=iteration or js.iteration)
        if isinstance(ev, JobProgressed):
            if js.state.terminal:
                return
            if ev.progress is not None:
                js.progress = ev.progress
            if ev.msg is not None:
                js.msg = ev.msg
            if ev.outputs:
                js.outputs.update(ev.outputs)
            js.modified = ev.time
            return
        target = EVENT_STATE[ev.type]
        if target is JobState.PENDING:
            if js.state is not JobState.PENDING:
                return  # a duplicate of the event that started this attempt
            js.reason = ev.reason
        elif not should_apply(js.state, target):
            if ev.type == "queued" and js.state is JobState.QUEUED:  # a new pending reason
                js.native_id = ev.native_id or js.native_id
                js.reason, js.modified = ev.reason, ev.time
            return
        js.state, js.modified = target, ev.time
        t = ev.type
        if t == "queued":
            js.native_id = ev.native_id or js.native_id
            js.reason = ev.reason
        elif t == "started":
            js.started = js.started or ev.time
            js.native_id = ev.native_id or js.native_id
            js.host = ev.host or js.host
            js.run_dir = ev.run_dir or js.run_dir
            js.reason = None
            if snap.started is None:
                snap.started = ev.time
        elif target.terminal:
            js.ended = ev.time
            js.exit_code = getattr(ev, "exit_code", None)
            js.reason = getattr(ev, "reason", None)
            js.benign = bool(getattr(ev, "benign", False))
            if getattr(ev, "outputs", None):
                js.outputs.update(ev.outputs)
            if getattr(ev, "progress", None) is not None:
                js.progress = ev.progress
            if getattr(ev, "msg", None) is not None:
                js.msg = ev.msg
            if target is JobState.SUCCEEDED:
                js.progress = 100.0
                if getattr(ev, "cached_from", None):  # reused: show where it ran
                    js.cached_from = ev.cached_from
                    js.run_dir = js.run_dir or ev.cached_from.get("run_dir")
                    js.host = ev.cached_from.get("host") or js.host
        after = self._classify(wf, ev.job, js, snap.cancel_requested)
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
