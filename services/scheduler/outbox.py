"""The scheduler's instruction-to-message step, pure: what the shell (``app.py``)
publishes for each instruction of the core, with its subject and message id. The test
simulator (``tests/unit/_schedsim.py``) feeds the same messages back to the core, so the
tests exercise the messages that ship.

    ReleaseJob     the ``ready`` event, then the ``JobReady`` for the pool's executors;
                   a reused job: the ``ready`` event (with ``cached_from``) and
                   ``succeeded`` (reason ``cached``), no JobReady
    MarkJob        skipped, canceled, pending (retry or repeat) or failed
    ExpandJob      ``jobs_expanded``; published one by one before anything else
    CancelRunning  ``CancelJob`` on core NATS (not the log), re-sent until the job ends
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jobmesh.common import subjects
from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import (
    CancelJob,
    JobCanceled,
    JobFailed,
    JobPending,
    JobReadied,
    JobReady,
    JobsExpanded,
    JobSkipped,
    JobSucceeded,
)
from jobmesh.common.states import JobState

from .flow import CancelRunning, ExpandJob, Instruction, MarkJob, ReleaseJob


@dataclass(frozen=True)
class Outgoing:
    subject: str
    msg: Any
    msg_id: str | None  # the Nats-Msg-Id (JetStream dedupes repeats); None: core NATS

    @property
    def logged(self) -> bool:
        """On the EVENTS log (the core reads it back), not a JobReady or a cancel."""
        return self.subject.startswith(f"{subjects.PREFIX}.events.")


def expansions_first(instructions: Iterable[Instruction]
                     ) -> tuple[list[ExpandJob], list[Instruction]]:
    """New jobs must be on the log before any event about them: the expansions (to
    publish one by one, in order) and the rest (at once)."""
    ins = list(instructions)
    return ([i for i in ins if isinstance(i, ExpandJob)],
            [i for i in ins if not isinstance(i, ExpandJob)])


def _common(ins: Any, now: float) -> dict[str, Any]:
    return {**AttemptKey.of(ins).ids(), "time": now}


def readied(ins: ReleaseJob, now: float, key: str | None) -> Outgoing:
    """The ``ready`` event of a job sent to run (its cache key, its native deps)."""
    return Outgoing(subjects.events(ins.workflow, ins.run), JobReadied(
        **_common(ins, now), pool=ins.pool, native_deps=list(ins.native_deps),
        cache_key=key), AttemptKey.of(ins).event_id("ready"))


def job_ready(ins: ReleaseJob, now: float, key: str | None) -> Outgoing:
    """The work for the pool's executors, under the attempt's message id."""
    job = JobReady(**_common(ins, now), pool=ins.pool, spec=ins.spec,
                   base_dir=ins.base_dir, native_deps=list(ins.native_deps), cache_key=key)
    return Outgoing(subjects.jobs(ins.pool), job, job.msg_id)


def released(ins: ReleaseJob, now: float, key: str | None) -> list[Outgoing]:
    """A job sent to run: its ``ready`` event and its JobReady (published together)."""
    return [readied(ins, now, key), job_ready(ins, now, key)]


def reused(ins: ReleaseJob, now: float, key: str, run: str, outputs: dict[str, Any] | None,
           described: dict[str, Any], done: float) -> list[Outgoing]:
    """A job reused from ``run``: ``ready`` (with the key and the run) before
    ``succeeded``, so the log says, even after a crash between the two, that nothing was
    sent to run."""
    ident, subject = AttemptKey.of(ins), subjects.events(ins.workflow, ins.run)
    ready = JobReadied(**_common(ins, now), pool=ins.pool, cache_key=key, cached_from=run)
    end = JobSucceeded(**_common(ins, done), exit_code=0, progress=100.0,
                       msg=f"reused from run {run}", outputs=outputs or None,
                       reason="cached", cached_from=described)
    return [Outgoing(subject, ready, ident.event_id("ready")),
            Outgoing(subject, end, ident.event_id("cached"))]


def marked(ins: MarkJob, now: float) -> Outgoing:
    common = _common(ins, now)
    event: Any
    if ins.state is JobState.SKIPPED:
        event = JobSkipped(reason=ins.reason, benign=ins.benign, **common)
    elif ins.state is JobState.CANCELED:
        event = JobCanceled(reason=ins.reason, **common)
    elif ins.state is JobState.PENDING:
        event = JobPending(reason=ins.reason, not_before=ins.not_before,
                           iteration=ins.iteration, **common)
    else:
        event = JobFailed(reason=ins.reason, **common)
    return Outgoing(subjects.events(ins.workflow, ins.run), event,
                    AttemptKey.of(ins).event_id(event.type))


def expanded(ins: ExpandJob, now: float) -> Outgoing:
    event = JobsExpanded(**_common(ins, now), jobs=ins.jobs, edges=ins.edges)
    return Outgoing(subjects.events(ins.workflow, ins.run), event,
                    AttemptKey.of(ins).event_id("expanded"))


def cancel(ins: CancelRunning, now: float) -> Outgoing:
    msg = CancelJob(**_common(ins, now), reason=ins.reason)
    return Outgoing(subjects.cancel(ins.pool), msg, None)


def outgoing(ins: Instruction, now: float, key: str | None = None) -> list[Outgoing]:
    """The messages of one instruction; a ReleaseJob as a job sent to run with cache key
    ``key`` (the shell looks in the cache first: ``reused``)."""
    if isinstance(ins, ReleaseJob):
        return released(ins, now, key)
    if isinstance(ins, MarkJob):
        return [marked(ins, now)]
    if isinstance(ins, ExpandJob):
        return [expanded(ins, now)]
    return [cancel(ins, now)]
