"""The scheduler's instruction-to-message step (scheduler/outbox.py), the one the shell
publishes and the simulator feeds back: subjects, message ids and what goes on the log."""

from __future__ import annotations

import pytest

from jobmesh.common.messages import (
    CancelJob,
    JobPending,
    JobReadied,
    JobReady,
    JobsExpanded,
    JobSkipped,
    JobSucceeded,
)
from jobmesh.common.spec import JobSpec
from jobmesh.common.states import JobState
from jobmesh.scheduler import outbox
from jobmesh.scheduler.core import CancelRunning, ExpandJob, MarkJob, ReleaseJob

from ._build import workflow
from ._schedsim import Sim

pytestmark = pytest.mark.unit

RUN = "20261204T061200-3fa2"


def release(**kw: object) -> ReleaseJob:
    base = dict(workflow="w", run=RUN, job="fetch.sh", attempt=2, pool="slurm",
                spec=JobSpec(name="fetch.sh", kind="slurm", exec="true"), base_dir="/flows",
                native_deps=("afterok:101",))
    return ReleaseJob(**{**base, **kw})  # type: ignore[arg-type]


def test_a_release_is_its_ready_event_then_its_job_ready_under_the_attempt_id() -> None:
    ready, work = outbox.outgoing(release(), 5.0, key="k1")
    assert ready.subject == f"jobmesh.events.w.{RUN}" and ready.logged  # one per run
    assert ready.msg_id == f"w.{RUN}.fetch.sh.2.ready"
    assert isinstance(ready.msg, JobReadied)
    assert (ready.msg.pool, ready.msg.native_deps, ready.msg.cache_key, ready.msg.time) == (
        "slurm", ["afterok:101"], "k1", 5.0)
    assert work.subject == "jobmesh.jobs.slurm" and not work.logged
    assert isinstance(work.msg, JobReady) and work.msg_id == f"w.{RUN}.fetch.sh.2"
    assert (work.msg.base_dir, work.msg.native_deps, work.msg.cache_key) == (
        "/flows", ["afterok:101"], "k1")


def test_a_reused_job_is_ready_then_succeeded_and_sends_no_work() -> None:
    ready, done = outbox.reused(release(), 5.0, "k1", "r0", {"n": 1}, {"run": "r0"}, 6.0)
    assert [o.msg_id for o in (ready, done)] == [f"w.{RUN}.fetch.sh.2.ready",
                                                 f"w.{RUN}.fetch.sh.2.cached"]
    assert isinstance(ready.msg, JobReadied) and ready.msg.cached_from == "r0"
    assert isinstance(done.msg, JobSucceeded) and done.logged
    assert (done.msg.reason, done.msg.outputs, done.msg.msg, done.msg.time) == (
        "cached", {"n": 1}, "reused from run r0", 6.0)


def test_marks_expansions_and_cancels() -> None:
    (skip,) = outbox.outgoing(MarkJob("w", RUN, "b", 1, JobState.SKIPPED, "x", benign=True), 1)
    assert isinstance(skip.msg, JobSkipped) and skip.msg.benign
    assert skip.msg_id == f"w.{RUN}.b.1.skipped"
    (again,) = outbox.outgoing(MarkJob("w", RUN, "b", 2, JobState.PENDING, "retry",
                                       not_before=9.0, iteration=3), 1)
    assert isinstance(again.msg, JobPending) and again.msg_id.endswith(".b.2.pending")
    assert (again.msg.not_before, again.msg.iteration) == (9.0, 3)
    (grown,) = outbox.outgoing(ExpandJob("w", RUN, "split", 1, {}, []), 1)
    assert isinstance(grown.msg, JobsExpanded) and grown.msg_id.endswith(".split.1.expanded")
    (stop,) = outbox.outgoing(CancelRunning("w", RUN, "b", 1, "gpu", "canceled by user"), 1)
    assert isinstance(stop.msg, CancelJob) and stop.subject == "jobmesh.cancel.gpu"
    assert stop.msg_id is None and not stop.logged


def test_expansions_go_first_in_their_order() -> None:
    a, b = ExpandJob("w", RUN, "a", 1, {}, []), ExpandJob("w", RUN, "b", 1, {}, [])
    mark = MarkJob("w", RUN, "c", 1, JobState.FAILED, "x")
    assert outbox.expansions_first([mark, a, b]) == ([a, b], [mark])


def test_the_simulator_sends_the_job_ready_the_shell_would() -> None:
    sim = Sim(workflow(names=["a"]))
    sim.step(3.0)
    (sent,) = sim.sent
    assert isinstance(sent.msg, JobReady) and sent.msg_id == "w.r1.a.1"
    assert isinstance(sim.log[-1], JobReadied) and sim.log[-1].time == 3.0
