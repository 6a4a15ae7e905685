"""The scheduler's pure core: commands and events in, instructions out (releasing,
failures, retries, cancels, workflow commands; restart, placeholders and caching:
test_scheduler_restart.py)."""

from __future__ import annotations

import pytest

from jobmesh.common.messages import (
    JobCanceled,
    JobCancelRequested,
    JobFailed,
    JobQueued,
    JobStarted,
    JobSucceeded,
    WorkflowCancelRequested,
    WorkflowDeleted,
    WorkflowRetryRequested,
    WorkflowSubmitted,
)
from jobmesh.common.states import JobState
from jobmesh.scheduler.core import (
    CANCEL_RESEND,
    CancelRunning,
    MarkJob,
    ReleaseJob,
)

from ._build import workflow
from ._schedsim import Sim, cancels, marks, released

pytestmark = pytest.mark.unit


# -- releasing --------------------------------------------------------------------------

def test_release_carries_the_spec_pool_and_attempt() -> None:
    spec = workflow(names=["a"], a={"kind": "ssh", "host": "h1", "exec": "hostname"})
    spec.base_dir = "/flows/demo"
    sim = Sim(spec)
    (ins,) = sim.step()
    assert isinstance(ins, ReleaseJob)
    assert (ins.workflow, ins.run, ins.job, ins.attempt, ins.pool, ins.base_dir) == (
        "w", "r1", "a", 1, "ssh", "/flows/demo")
    assert ins.spec.exec == "hostname" and ins.spec.host == "h1"
    assert sim.state("a") is JobState.READY
    assert sim.step() == []  # issued once


def test_children_wait_for_all_parents_to_succeed() -> None:
    sim = Sim(workflow([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]), parallel=4)
    assert released(sim.step()) == ["a"]
    sim.ev(JobStarted, "a")
    assert sim.step() == []  # running is not enough
    sim.ev(JobSucceeded, "a")
    assert released(sim.step()) == ["b", "c"]
    sim.done("b")
    assert sim.step() == []  # d still waits for c
    sim.ev(JobStarted, "c")
    assert sim.step() == []
    sim.ev(JobSucceeded, "c")
    assert released(sim.step()) == ["d"]
    sim.done("d")
    assert sim.step() == [] and sim.core.runs["w"].finished


def test_isolated_jobs_all_run() -> None:
    sim = Sim(workflow(names=["x", "y", "z"]), parallel=8)
    assert released(sim.step()) == ["x", "y", "z"]


def test_parallel_limit_is_respected() -> None:
    sim = Sim(workflow(names=["j1", "j2", "j3", "j4", "j5"]), parallel=2)
    assert released(sim.step()) == ["j1", "j2"]
    sim.ev(JobQueued, "j1")
    sim.ev(JobStarted, "j2")
    assert sim.step() == []  # QUEUED and RUNNING both count
    sim.ev(JobSucceeded, "j2")
    assert released(sim.step()) == ["j3"]
    sim.ev(JobFailed, "j1")
    sim.ev(JobSucceeded, "j3")
    assert released(sim.step()) == ["j4", "j5"]
    assert sim.core.runs["w"].active == 2


def test_parallel_is_at_least_one() -> None:
    sim = Sim(workflow(names=["a", "b"]), parallel=0)
    assert released(sim.step()) == ["a"]


# -- failures, skips, allow_failure -----------------------------------------------------

def test_failure_skips_descendants_and_other_branches_go_on() -> None:
    sim = Sim(workflow([("a", "b"), ("b", "c"), ("x", "y")]), parallel=4)
    assert released(sim.step()) == ["a", "x"]
    sim.fail("a")
    sim.done("x")
    out = sim.step()
    assert marks(out, JobState.SKIPPED) == ["b", "c"]
    assert all(i.reason == "an upstream job did not succeed" for i in out
               if isinstance(i, MarkJob))
    assert released(out) == ["y"]
    assert (sim.state("b"), sim.state("c")) == (JobState.SKIPPED, JobState.SKIPPED)
    sim.done("y")
    assert sim.step() == []
    assert sim.core.runs["w"].finished


def test_failed_branch_skips_the_join_while_the_other_branch_runs() -> None:
    sim = Sim(workflow([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]), parallel=4)
    sim.step()
    sim.done("a")
    sim.step()
    sim.fail("c")
    out = sim.step()
    assert marks(out, JobState.SKIPPED) == ["d"]
    assert sim.state("b") is JobState.READY  # untouched
    sim.done("b")
    assert sim.step() == []  # d is not released after all


def test_allow_failure_lets_descendants_run() -> None:
    sim = Sim(workflow([("a", "b")], a={"allow_failure": True}))
    sim.step()
    sim.fail("a")
    assert released(sim.step()) == ["b"]


def test_canceled_parent_skips_children() -> None:
    sim = Sim(workflow([("a", "b")]))
    sim.step()
    sim.ev(JobCanceled, "a")
    assert marks(sim.step(), JobState.SKIPPED) == ["b"]


# -- retries ----------------------------------------------------------------------------

def test_retries_make_new_attempts_with_backoff() -> None:
    sim = Sim(workflow([("a", "b")], a={"retries": 2, "retry_delay": 10}))
    sim.step(0)
    sim.fail("a")
    (mark,) = sim.step(100)
    assert isinstance(mark, MarkJob)
    assert (mark.job, mark.attempt, mark.state, mark.not_before) == (
        "a", 2, JobState.PENDING, 110.0)
    assert mark.reason == "retry (attempt 2)"
    assert sim.core.next_wakeup() == 110.0
    assert sim.step(109) == []  # backoff
    (rel,) = sim.step(110)
    assert isinstance(rel, ReleaseJob) and (rel.job, rel.attempt) == ("a", 2)

    sim.ev(JobFailed, "a", attempt=1)  # a stale event of the first attempt
    assert sim.step(111) == [] and sim.state("a") is JobState.READY

    sim.fail("a", attempt=2)
    (mark,) = sim.step(200)
    assert (mark.attempt, mark.not_before) == (3, 220.0)  # exponential: 10, then 20
    (rel,) = sim.step(220)
    assert rel.attempt == 3
    sim.fail("a", attempt=3)
    out = sim.step(300)
    assert marks(out, JobState.SKIPPED) == ["b"]  # retries used up
    assert [i for i in out if isinstance(i, ReleaseJob)] == []


def test_retry_without_delay_is_released_at_once() -> None:
    sim = Sim(workflow(names=["a"], a={"retries": 1}))
    sim.step()
    sim.fail("a")
    out = sim.step(5)
    assert [(type(i).__name__, i.attempt) for i in out] == [("MarkJob", 2), ("ReleaseJob", 2)]
    assert out[0].not_before is None


def test_children_wait_while_a_parent_is_retried() -> None:
    sim = Sim(workflow([("a", "b")], a={"retries": 1}))
    sim.step()
    sim.fail("a")
    out = sim.step()
    assert marks(out, JobState.SKIPPED) == [] and released(out) == ["a"]
    sim.done("a", attempt=2)
    assert released(sim.step()) == ["b"]


# -- cancel -----------------------------------------------------------------------------

def test_cancel_workflow() -> None:
    sim = Sim(workflow([("a", "b")], names=["a", "x", "y"]), parallel=2)
    assert released(sim.step(0)) == ["a", "x"]
    sim.ev(JobStarted, "a")
    sim.feed(WorkflowCancelRequested(workflow="w", run="r1", time=1, reason="stop it"))
    out = sim.step(1)
    assert sorted(cancels(out)) == ["a", "x"]  # RUNNING and READY
    assert sorted(marks(out, JobState.CANCELED)) == ["b", "y"]  # PENDING
    assert released(out) == []
    assert {i.reason for i in out} == {"stop it"}
    assert [i.pool for i in out if isinstance(i, CancelRunning)] == ["local", "local"]
    assert sim.step(2) == []  # not repeated at once
    assert sim.core.next_wakeup() == 1 + CANCEL_RESEND
    assert sorted(cancels(sim.step(1 + CANCEL_RESEND))) == ["a", "x"]  # resent
    sim.ev(JobCanceled, "a")
    sim.ev(JobCanceled, "x")
    assert sim.step(20) == [] and sim.core.next_wakeup() is None


def test_no_retry_after_cancel() -> None:
    sim = Sim(workflow(names=["a"], a={"retries": 3}))
    sim.step()
    sim.ev(JobStarted, "a")
    sim.feed(WorkflowCancelRequested(workflow="w", run="r1", time=1))
    assert cancels(sim.step()) == ["a"]
    sim.ev(JobFailed, "a", exit_code=143)
    assert sim.step(10) == []
    assert sim.state("a") is JobState.FAILED


def test_cancel_one_job_skips_its_descendants_only() -> None:
    sim = Sim(workflow([("a", "b"), ("b", "c")], names=["a", "x"]), parallel=2)
    sim.step()
    sim.ev(JobStarted, "a")
    sim.feed(JobCancelRequested(workflow="w", run="r1", job="a", time=1))
    out = sim.step()
    assert cancels(out) == ["a"] and out[0].reason == "canceled by user"
    sim.ev(JobCanceled, "a")
    out = sim.step()
    assert marks(out, JobState.SKIPPED) == ["b", "c"]
    assert sim.state("x") is JobState.READY


def test_cancel_one_pending_job() -> None:
    sim = Sim(workflow([("a", "b")]))
    sim.step()
    sim.feed(JobCancelRequested(workflow="w", run="r1", job="b", time=1))
    assert marks(sim.step(), JobState.CANCELED) == ["b"]
    sim.done("a")
    assert sim.step() == []


def test_cancel_one_running_job_that_fails_is_not_retried() -> None:
    sim = Sim(workflow(names=["a"], a={"retries": 2}))
    sim.step()
    sim.ev(JobStarted, "a")
    sim.feed(JobCancelRequested(workflow="w", run="r1", job="a", time=1))
    sim.step()
    sim.ev(JobFailed, "a")
    assert sim.step() == []


def test_canceled_run_is_finished() -> None:
    sim = Sim(workflow(names=["a", "b"]))
    sim.step()
    sim.feed(WorkflowCancelRequested(workflow="w", run="r1", time=1))
    sim.step()
    sim.ev(JobCanceled, "a")
    sim.step()
    assert all(j.state.terminal for j in sim.core.runs["w"].jobs.values())
    assert sim.core.runs["w"].finished


# -- workflow commands ------------------------------------------------------------------

def test_retry_request_reruns_failed_and_skipped_jobs() -> None:
    sim = Sim(workflow([("a", "b")], names=["ok"]), parallel=2)
    sim.step()
    sim.done("ok")
    sim.fail("a")
    assert marks(sim.step(), JobState.SKIPPED) == ["b"]
    sim.feed(WorkflowRetryRequested(workflow="w", run="r1", time=5))
    out = sim.step(5)
    assert sorted((i.job, i.attempt) for i in out if isinstance(i, MarkJob)) == [
        ("a", 2), ("b", 2)]
    assert released(out) == ["a"]
    sim.done("a", attempt=2)
    (rel,) = sim.step(6)
    assert (rel.job, rel.attempt) == ("b", 2)
    assert sim.state("ok") is JobState.SUCCEEDED


def test_new_run_cancels_the_old_runs_active_jobs() -> None:
    spec = workflow([("a", "b")])
    sim = Sim(spec)
    sim.step()
    sim.ev(JobStarted, "a")
    sim.feed(WorkflowSubmitted(workflow="w", run="r2", spec=spec, time=5))
    out = sim.core.decide(5)
    assert [(type(i).__name__, i.run, i.job) for i in out] == [
        ("CancelRunning", "r1", "a"), ("ReleaseJob", "r2", "a")]
    assert out[0].reason == "replaced by a new run"
    # events of the old run no longer count
    sim.ev(JobSucceeded, "a")
    assert sim.core.decide(6) == []


def test_same_submission_twice_is_ignored() -> None:
    spec = workflow(names=["a"])
    sim = Sim(spec)
    sim.step()
    sim.feed(sim.log[0])
    assert sim.step() == [] and sim.state("a") is JobState.READY


def test_delete_cancels_active_jobs_and_forgets_the_run() -> None:
    sim = Sim(workflow([("a", "b")]))
    sim.step()
    sim.ev(JobStarted, "a")
    sim.feed(WorkflowDeleted(workflow="w", run="r1", time=2))
    out = sim.core.decide(2)
    assert [(type(i).__name__, i.job, i.reason) for i in out] == [
        ("CancelRunning", "a", "workflow deleted")]
    assert "w" not in sim.core.runs


def test_messages_for_other_runs_and_workflows_are_ignored() -> None:
    sim = Sim(workflow([("a", "b")]))
    sim.step()
    sim.core.apply(JobSucceeded(workflow="w", run="other", job="a", time=1))
    sim.core.apply(JobSucceeded(workflow="zz", run="r1", job="a", time=1))
    sim.core.apply(JobSucceeded(workflow="w", run="r1", job="nope", time=1))
    assert sim.step() == [] and sim.state("a") is JobState.READY
