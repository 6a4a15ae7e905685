"""The one simulated scheduler shell around SchedulerCore, shared by the scheduler core
tests (core, restart, native deps, hostile input, control flow): each instruction
becomes the messages the shipping shell publishes (``jobmesh.scheduler.outbox``), and
those that go on the EVENTS log come back to the core, as on the bus. With ``fold`` the
monitor's fold reads the same log, so a workflow's final state can be checked too."""

from __future__ import annotations

from typing import Any

from jobmesh.common.messages import (
    JobFailed,
    JobStarted,
    JobSucceeded,
    WorkflowSubmitted,
)
from jobmesh.common.states import JobState
from jobmesh.scheduler import outbox
from jobmesh.scheduler.core import (
    CancelRunning,
    MarkJob,
    ReleaseJob,
    SchedulerCore,
)


class Sim:
    """The core plus what the scheduler's shell does with its instructions (a release is
    recorded with its key, then every message for the log is fed back). ``sent`` keeps
    what went elsewhere: the JobReady messages and cancels."""

    def __init__(self, spec: Any, parallel: int = 1, run: str = "r1", fold: bool = False):
        self.core, self.log, self.run = SchedulerCore(), [], run
        self.sent: list[outbox.Outgoing] = []
        self.fold: Any = None
        if fold:
            from jobmesh.monitor.fold import Fold

            self.fold = Fold()
        self.feed(WorkflowSubmitted(workflow=spec.name, run=run, spec=spec,
                                    parallel=parallel, time=0.0))

    def feed(self, msg: Any) -> None:
        self.log.append(msg)
        self.core.apply(msg)
        if self.fold is not None:
            self.fold.apply(len(self.log), msg)

    def ev(self, cls: Any, job: str, attempt: int = 1, t: float = 1.0, **kw: Any) -> None:
        self.feed(cls(workflow="w", run=self.run, job=job, attempt=attempt, time=t, **kw))

    def done(self, job: str, attempt: int = 1, **kw: Any) -> None:
        self.ev(JobStarted, job, attempt)
        self.ev(JobSucceeded, job, attempt, **kw)

    def fail(self, job: str, attempt: int = 1) -> None:
        self.ev(JobStarted, job, attempt)
        self.ev(JobFailed, job, attempt, exit_code=1)

    def publish(self, out: list[Any], now: float = 1.0) -> None:
        """What the shell does with ``out``: expansions first, then the rest; a release
        goes out as a job sent to run, under the key a ready event recorded (no cache
        lookups here: those read files, see test_resume)."""
        expansions, rest = outbox.expansions_first(out)
        for i in [*expansions, *rest]:
            key = i.recorded[0] if isinstance(i, ReleaseJob) and i.recorded else None
            if isinstance(i, ReleaseJob):
                self.core.released(i.workflow, i.run, i.job, i.attempt, key, None,
                                   i.spec.kind)
            for msg in outbox.outgoing(i, now, key):
                if msg.logged:
                    self.feed(msg.msg)
                else:
                    self.sent.append(msg)

    def step(self, now: float = 1.0, publish: bool = True) -> list[Any]:
        out = self.core.decide(now)
        if publish:
            self.publish(out, now)
        return out

    def state(self, job: str) -> JobState:
        return self.core.runs["w"].jobs[job].state

    @property
    def snap(self) -> Any:
        return self.fold.snaps["w"]

    def replay(self) -> SchedulerCore:
        """A restarted scheduler: a new core that read the same log."""
        core = SchedulerCore()
        for msg in self.log:
            core.apply(msg)
        core.reconcile()
        return core


def released(out: list[Any]) -> list[str]:
    return [i.job for i in out if isinstance(i, ReleaseJob)]


def marks(out: list[Any], state: JobState) -> list[str]:
    return [i.job for i in out if isinstance(i, MarkJob) and i.state is state]


def cancels(out: list[Any]) -> list[str]:
    return [i.job for i in out if isinstance(i, CancelRunning)]
