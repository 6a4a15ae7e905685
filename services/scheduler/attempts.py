"""The scheduler core's retries and cancels: a failed job's next attempt (after its
backoff), a user's retry of a run, and cancel requests sent (and sent again) for running
jobs. Pure, like ``core.py``, whose ``WorkflowRun`` mixes this in (split from core.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobmesh.common.spec import retry_delay
from jobmesh.common.states import JobState

from .flow import CANCEL_RESEND, NO_OUTPUTS, CancelRunning, Instruction, Job, MarkJob
from .release import Releases


class Attempts(Releases):
    if TYPE_CHECKING:  # provided by WorkflowRun
        cancel_requested: bool
        cancel_reason: str
        cancel_one: set[str]
        canceling: set[str]
        delayed: set[str]

        def _ended(self, name: str, job: Job, state: JobState) -> None: ...

    def request_cancel(self, reason: str) -> None:
        self.cancel_requested, self.cancel_reason = True, reason

    def request_retry(self) -> None:
        """Rerun failed, canceled and skipped jobs; keep the ones that succeeded."""
        self.cancel_requested = False
        self.cancel_one.clear()
        for name, job in self.jobs.items():
            if job.state in (JobState.FAILED, JobState.CANCELED, JobState.SKIPPED):
                job.retry_due = True
                job.not_before = 0.0
                self.due.add(name)
            elif job.state is JobState.SUCCEEDED and not job.counted:
                self._ended(name, job, job.state)  # a loop that a cancel cut short goes on

    # -- decide: turn state into instructions ----------------------------------------

    def _cancel_all(self, now: float, out: list[Instruction]) -> None:
        for name, job in list(self.jobs.items()):
            job.retry_due = job.repeat_due = False
            self._cancel_job(name, now, out, self.cancel_reason)

    def _cancel_job(self, name: str, now: float, out: list[Instruction], reason: str) -> None:
        job = self.jobs[name]
        if job.state is JobState.PENDING:
            out.append(MarkJob(self.name, self.run, name, job.attempt, JobState.CANCELED, reason))
            self._set(name, JobState.CANCELED)
        elif not job.state.terminal:
            if job.cancel_sent is None or now - job.cancel_sent >= CANCEL_RESEND:
                job.cancel_sent = now
                self.canceling.add(name)
                out.append(CancelRunning(self.name, self.run, name, job.attempt,
                                         job.spec.pool_name, reason))
        else:
            self.cancel_one.discard(name)
            job.retry_due = False

    def _retries(self, now: float, out: list[Instruction]) -> None:
        # Only the jobs marked due (an index, so a decide never scans every job).
        for name in sorted(self.due, key=self.order.__getitem__):
            job = self.jobs[name]
            if not job.retry_due:
                continue
            delay = retry_delay(job.spec, job.attempt) if job.state is JobState.FAILED else 0.0
            attempt = job.attempt + 1
            self._new_attempt(name, attempt, now + delay if delay else 0.0)
            out.append(MarkJob(self.name, self.run, name, attempt, JobState.PENDING,
                               f"retry (attempt {attempt})", job.not_before or None))

    def _new_attempt(self, name: str, attempt: int, not_before: float,
                     iteration: int | None = None) -> None:
        job = self.jobs[name]
        self._set(name, JobState.PENDING, force=True)
        job.attempt, job.retry_due, job.cancel_sent = attempt, False, None
        self.due.discard(name)
        job.repeat_due, job.benign, job.exit_code, job.outputs = False, False, None, NO_OUTPUTS
        job.native, job.native_deps = None, ()
        job.readied, job.cache_key, job.cached_from = False, None, None
        if iteration is not None:
            job.iteration, job.first_attempt = iteration, attempt
        job.not_before = not_before
        if not_before > 0:
            self.delayed.add(name)
        job.unmet = sum(1 for p in job.parents
                        if not self._counts_for(self.jobs[p], job))
        if job.unmet == 0:
            self.maybe_ready.append(name)
        elif any(self._blocks(self.jobs[p], job) for p in job.parents):
            self.maybe_skip.append(name)

