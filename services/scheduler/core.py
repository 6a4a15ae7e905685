"""The scheduler's pure core: commands and events in, instructions out.

No I/O and no clock: time comes on the events and as ``now`` into ``decide``. ``apply``
only records state; ``decide`` turns what changed into instructions and applies them
locally at once, so the same instruction is never issued twice. After a restart the
shell replays the whole log through ``apply`` and then calls ``decide``, which issues
whatever the crash left undone (level-triggered, not edge-triggered).

``WorkflowRun`` is one run's state; its mixins hold the rest of its rules: releasing jobs
(``release.py``), retries and cancels (``attempts.py``), and ``when:``/``foreach:``/
``repeat:`` (``flow.py``). ``SchedulerCore`` routes commands and events to the runs.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from jobmesh.common.control import repeat_done
from jobmesh.common.messages import (
    EVENT_STATE,
    JobCancelRequested,
    JobEvent,
    JobProgressed,
    JobReadied,
    JobsExpanded,
    WorkflowCancelRequested,
    WorkflowDeleted,
    WorkflowRetryRequested,
    WorkflowSubmitted,
)
from jobmesh.common.spec import will_retry
from jobmesh.common.states import JobState, should_apply

from .attempts import Attempts
from .cache import CacheIndex
from .flow import (
    CANCEL_RESEND,
    CancelRunning,
    ExpandJob,
    Instruction,
    Job,
    MarkJob,
    ReleaseJob,
)

__all__ = ["CANCEL_RESEND", "CancelRunning", "ExpandJob", "Instruction", "Job", "MarkJob",
           "ReleaseJob", "SchedulerCore", "WorkflowRun"]

log = logging.getLogger("jobmesh.scheduler")


class WorkflowRun(Attempts):
    """One submitted run of a workflow."""

    def __init__(self, sub: WorkflowSubmitted):
        self.name, self.run = sub.workflow, sub.run
        self.parallel = max(1, sub.parallel)
        self.base_dir = sub.spec.base_dir
        self.variables = dict(sub.spec.variables)
        self.allow_large = sub.spec.allow_large
        self.reuse = sub.cache  # reuse earlier runs' jobs (cache.py); not with --restart
        self.first_seq = 0  # the log sequence of the submission (for checkpoints)
        parents, children = sub.spec.parents(), sub.spec.children()
        self.jobs: dict[str, Job] = {
            n: Job(s, parents[n], children[n], unmet=len(parents[n]))
            for n, s in sub.spec.jobs.items()
        }
        self.active = 0  # READY, QUEUED or RUNNING
        self.cancel_requested = False
        self.cancel_reason = "canceled by user"
        self.cancel_one: set[str] = set()
        self.maybe_ready: deque[str] = deque(n for n, j in self.jobs.items() if j.unmet == 0)
        self.maybe_skip: deque[str] = deque()
        self.maybe_chain: deque[str] = deque()  # children of a job that got a Slurm id
        self.resend_ready = False
        # Indexes, so a decide touches only the jobs that need it (never all of them):
        self.order = {n: i for i, n in enumerate(self.jobs)}  # file order, for determinism
        self.due: set[str] = set()        # retry_due or repeat_due
        self.delayed: set[str] = set()    # pending with a not_before (backoff, loop delay)
        self.canceling: set[str] = set()  # cancel requests sent, to send again
        self.groups: dict[str, list[str]] = {}  # repeat group -> members, in order
        for n, j in self.jobs.items():
            if j.spec.group is not None:
                self.groups.setdefault(j.spec.group, []).append(n)

    # -- apply: record what happened -------------------------------------------------

    def apply_event(self, ev: JobEvent) -> None:
        job = self.jobs.get(ev.job)
        if job is None or ev.attempt < job.attempt:
            return
        if isinstance(ev, JobsExpanded):
            self._apply_expansion(ev.job, ev.jobs, ev.edges)
            return
        if isinstance(ev, JobProgressed):
            if ev.outputs:
                job.outputs = {**job.outputs, **ev.outputs}  # (replaced: may be shared)
            return
        if ev.attempt > job.attempt:  # a retry issued before a restart, seen in replay
            self._new_attempt(ev.job, ev.attempt, getattr(ev, "not_before", None) or 0.0,
                              getattr(ev, "iteration", None))
        if ev.attempt == job.attempt:
            self._native(ev.job, job, ev)
        outputs = getattr(ev, "outputs", None)
        if outputs:
            job.outputs = {**job.outputs, **outputs}
        if getattr(ev, "exit_code", None) is not None:
            job.exit_code = ev.exit_code  # type: ignore[union-attr]
        if getattr(ev, "benign", False) and job.state is JobState.PENDING:
            job.benign = True
        target = EVENT_STATE[ev.type]
        if target is JobState.PENDING:
            if job.state is JobState.PENDING:
                self.maybe_ready.append(ev.job)
            return
        self._set(ev.job, target)

    def _native(self, name: str, job: Job, ev: JobEvent) -> None:
        """Remember a batch job id (its children may chain on it) and, after a replay, the
        dependencies a job was released with."""
        if isinstance(ev, JobReadied):
            job.readied, job.cache_key, job.cached_from = True, ev.cache_key, ev.cached_from
            if ev.native_deps:
                job.native_deps = tuple(ev.native_deps)
        nid = getattr(ev, "native_id", None)
        if nid and nid != job.native:
            job.native = nid
            if job.spec.kind == "slurm":
                self.maybe_chain.extend(job.children)

    def _set(self, name: str, new: JobState, force: bool = False) -> None:
        job = self.jobs[name]
        old = job.state
        if not force and not should_apply(old, new):
            return
        if old is new:
            return
        active = (JobState.READY, JobState.QUEUED, JobState.RUNNING)
        self.active += (new in active) - (old in active)
        job.state = new
        if old.terminal and not new.terminal and job.counted:  # a retry: unmet again
            job.counted = False
            for c in job.children:
                if self._satisfies(job, old, self.jobs[c]):
                    self.jobs[c].unmet += 1
        if new.terminal:
            self._ended(name, job, new)

    def _satisfies(self, job: Job, state: JobState, child: Job | None = None) -> bool:
        """Does a parent in this state let the child go on? A condition-false skip lets
        only children with a ``when:`` of their own go on (to evaluate it)."""
        return state is JobState.SUCCEEDED or (
            state is JobState.FAILED and job.spec.allow_failure) or (
            state is JobState.SKIPPED and job.benign and child is not None
            and child.spec.when is not None)

    def _ended(self, name: str, job: Job, state: JobState) -> None:
        if state is JobState.FAILED and not self.cancel_requested and will_retry(
                job.spec, job.attempt, job.first_attempt) and name not in self.cancel_one:
            job.retry_due = True
            self.due.add(name)
            return
        if state is JobState.SUCCEEDED and job.spec.repeat is not None and \
                not self.cancel_requested:
            done, why = repeat_done(job.spec, self.variables, job.outputs, job.iteration)
            if not done:
                job.repeat_due, job.repeat_why = True, why
                self.due.add(name)
                return
        job.counted = True
        for c in job.children:
            child = self.jobs[c]
            if self._satisfies(job, state, child):
                child.unmet -= 1
                if child.unmet == 0:
                    self.maybe_ready.append(c)
            else:
                self.maybe_skip.append(c)


    def decide(self, now: float) -> list[Instruction]:
        out: list[Instruction] = []
        self._skips(out)
        if self.cancel_requested:
            self._cancel_all(now, out)
        for name in list(self.cancel_one):
            self._cancel_job(name, now, out, "canceled by user")
        # Jobs READY before this decide are re-sent after a replay; the ones _releases
        # makes READY now are sent once, by _releases.
        resend = [n for n, j in self.jobs.items() if j.state is JobState.READY] \
            if self.resend_ready else []
        self.resend_ready = False
        if not self.cancel_requested:
            self._retries(now, out)
            self._repeats(now, out)
            self._releases(now, out)
        for name in resend:
            if self.jobs[name].state is JobState.READY:
                out.append(self._release(name, self.jobs[name]))
        self._skips(out)
        return [i for i in out if i is not None]

    def _skips(self, out: list[Instruction]) -> None:
        while self.maybe_skip:
            name = self.maybe_skip.popleft()
            job = self.jobs.get(name)
            if job is None or job.retry_due:
                continue
            # A job released with native dependencies waits in Slurm's queue; Slurm drops
            # it too (--kill-on-invalid-dep), the cancel makes sure.
            chained = bool(job.native_deps) and job.state in (
                JobState.READY, JobState.QUEUED, JobState.RUNNING)
            if job.state is not JobState.PENDING and not chained:
                continue
            blocking = [self.jobs[p] for p in job.parents if self._blocks(self.jobs[p], job)]
            if not blocking:
                continue
            benign = all(p.state is JobState.SKIPPED and p.benign for p in blocking)
            reason = ("an upstream job was skipped (condition false)" if benign
                      else "an upstream job did not succeed")
            out.append(MarkJob(self.name, self.run, name, job.attempt, JobState.SKIPPED,
                               reason, benign=benign))
            if chained:
                out.append(CancelRunning(self.name, self.run, name, job.attempt,
                                         job.spec.pool_name, f"skipped: {reason}"))
            job.benign = benign
            self._set(name, JobState.SKIPPED)


    def next_wakeup(self) -> float | None:
        """The earliest time a decide has something to do without a new event: a delayed
        retry or iteration, or a cancel to send again. Looks only at indexed jobs."""
        times: list[float] = []
        for name in list(self.delayed):
            j = self.jobs.get(name)
            if j is None or j.state is not JobState.PENDING or j.not_before <= 0:
                self.delayed.discard(name)
            elif j.unmet == 0:
                times.append(j.not_before)
        if self.cancel_requested or self.cancel_one:
            for name in list(self.canceling):
                j = self.jobs[name]
                if j.cancel_sent is None or j.state.terminal:
                    self.canceling.discard(name)
                else:
                    times.append(j.cancel_sent + CANCEL_RESEND)
        return min(times) if times else None

    @property
    def finished(self) -> bool:
        return self.active == 0 and all(
            j.state.terminal and not j.retry_due and not j.repeat_due
            for j in self.jobs.values())


class SchedulerCore:
    """All runs, keyed by workflow name. Feed it the EVENTS log in order."""

    def __init__(self) -> None:
        self.runs: dict[str, WorkflowRun] = {}
        self.dirty: set[str] = set()
        self.stale: list[WorkflowRun] = []  # replaced runs whose active jobs get canceled
        self.cache = CacheIndex()  # succeeded attempts of every run, by cache key
        # Finished runs compacted away (checkpoint.py): workflow -> (run, first log seq).
        # Their jobs are not kept; a retry rebuilds the run from the log first.
        self.finished: dict[str, tuple[str, int]] = {}

    def apply(self, msg: Any, seq: int = 0) -> None:
        wf = getattr(msg, "workflow", None)
        if wf is None:
            return
        run = self.runs.get(wf)
        job = run.jobs.get(getattr(msg, "job", "")) if run is not None else None
        self.cache.apply(msg, *((job.spec.kind, job.spec.name) if job is not None else ()))
        if isinstance(msg, WorkflowSubmitted):
            if run is not None and run.run == msg.run:
                return
            if run is None and self.finished.get(wf, ("",))[0] == msg.run:
                return  # compacted already
            self.finished.pop(wf, None)
            if run is not None and not run.finished:
                run.request_cancel("replaced by a new run")
                self.stale.append(run)
            self.runs[wf] = WorkflowRun(msg)
            self.runs[wf].first_seq = seq
            self.dirty.add(wf)
            return
        if run is None:
            if isinstance(msg, WorkflowDeleted) and \
                    self.finished.get(wf, ("",))[0] == msg.run:
                del self.finished[wf]
            return
        if getattr(msg, "run", None) != run.run:
            return
        if isinstance(msg, WorkflowCancelRequested):
            run.request_cancel(msg.reason)
        elif isinstance(msg, WorkflowRetryRequested):
            run.request_retry()
        elif isinstance(msg, JobCancelRequested):
            if msg.job in run.jobs:
                run.cancel_one.add(msg.job)
        elif isinstance(msg, WorkflowDeleted):
            run.request_cancel("workflow deleted")
            self.stale.append(run)
            del self.runs[wf]
            self.dirty.discard(wf)
            return
        else:
            run.apply_event(msg)
        self.dirty.add(wf)

    def released(self, wf: str, run: str, job: str, attempt: int, key: str | None,
                 cached_from: str | None, kind: str) -> None:
        """The shell decided a release (its key, and whether it is reused): recorded now,
        as its ready event will be, so a child released before that event is read back
        already sees its parent's key."""
        self.cache.apply(JobReadied(workflow=wf, run=run, job=job, attempt=attempt,
                                    cache_key=key, cached_from=cached_from, time=0.0), kind)
        r = self.runs.get(wf)
        j = r.jobs.get(job) if r is not None and r.run == run else None
        if j is not None and j.attempt == attempt:
            j.readied, j.cache_key, j.cached_from = True, key, cached_from

    def poisoned(self, wf: str, why: str) -> list[Instruction]:
        """A workflow whose data the scheduler cannot handle: it is dropped, and each of
        its unfinished jobs is failed with the reason, so no other workflow waits."""
        run = self.runs.pop(wf, None)
        self.dirty.discard(wf)
        if run is None:
            return []
        log.error("workflow %s: cannot be scheduled (%s); its unfinished jobs fail", wf, why)
        return [MarkJob(wf, run.run, name, job.attempt, JobState.FAILED,
                        f"the scheduler cannot handle this workflow: {why}"[:500])
                for name, job in run.jobs.items() if not job.state.terminal]

    def reconcile(self) -> None:
        """After a replay: everything may need a decision, and READY jobs are sent again
        (a crash may have come between the ready event and the job message)."""
        for run in self.runs.values():
            run.resend_ready = True
            self.dirty.add(run.name)

    def decide(self, now: float) -> list[Instruction]:
        out: list[Instruction] = []
        for old in self.stale:
            out += [i for i in old.decide(now) if isinstance(i, CancelRunning)]
        self.stale = [r for r in self.stale if not r.finished and r.active]
        for wf in sorted(self.dirty):
            run = self.runs.get(wf)
            if run is not None:
                try:
                    out += run.decide(now)
                except Exception as exc:  # noqa: BLE001 - one workflow's data, not the rest
                    out += self.poisoned(wf, f"{type(exc).__name__}: {exc}")
        self.dirty = {wf for wf, r in self.runs.items() if r.next_wakeup() is not None}
        return out

    def next_wakeup(self) -> float | None:
        times = [t for r in self.runs.values() if (t := r.next_wakeup()) is not None]
        return min(times) if times else None
