"""The scheduler's pure core: commands and events in, instructions out."""

from __future__ import annotations

from typing import Any

import pytest
from jobmesh.common.messages import (
    JobCanceled,
    JobCancelRequested,
    JobFailed,
    JobPending,
    JobProgressed,
    JobQueued,
    JobReadied,
    JobSkipped,
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
    SchedulerCore,
)

from ._build import workflow

pytestmark = pytest.mark.unit

MARK_EVENT = {JobState.SKIPPED: JobSkipped, JobState.CANCELED: JobCanceled,
              JobState.PENDING: JobPending, JobState.FAILED: JobFailed}


class Sim:
    """The core plus what the scheduler's shell does with its instructions: every
    ReleaseJob and MarkJob comes back as an event on the log, as on the bus."""

    def __init__(self, spec: Any, parallel: int = 1, run: str = "r1"):
        self.core, self.log, self.run = SchedulerCore(), [], run
        self.feed(WorkflowSubmitted(workflow=spec.name, run=run, spec=spec,
                                    parallel=parallel, time=0.0))

    def feed(self, msg: Any) -> None:
        self.log.append(msg)
        self.core.apply(msg)

    def ev(self, cls: Any, job: str, attempt: int = 1, t: float = 1.0, **kw: Any) -> None:
        self.feed(cls(workflow="w", run=self.run, job=job, attempt=attempt, time=t, **kw))

    def done(self, job: str, attempt: int = 1, **kw: Any) -> None:
        self.ev(JobStarted, job, attempt)
        self.ev(JobSucceeded, job, attempt, **kw)

    def fail(self, job: str, attempt: int = 1) -> None:
        self.ev(JobStarted, job, attempt)
        self.ev(JobFailed, job, attempt, exit_code=1)

    def step(self, now: float = 1.0) -> list[Any]:
        out = self.core.decide(now)
        for i in out:
            common = {"workflow": i.workflow, "run": i.run, "job": i.job,
                      "attempt": i.attempt, "time": now}
            if isinstance(i, ReleaseJob):
                self.feed(JobReadied(pool=i.pool, native_deps=list(i.native_deps), **common))
            elif isinstance(i, MarkJob):
                extra = {"not_before": i.not_before} if i.state is JobState.PENDING else {}
                self.feed(MARK_EVENT[i.state](reason=i.reason, **common, **extra))
        return out

    def state(self, job: str) -> JobState:
        return self.core.runs["w"].jobs[job].state


def released(out: list[Any]) -> list[str]:
    return [i.job for i in out if isinstance(i, ReleaseJob)]


def marks(out: list[Any], state: JobState) -> list[str]:
    return [i.job for i in out if isinstance(i, MarkJob) and i.state is state]


def cancels(out: list[Any]) -> list[str]:
    return [i.job for i in out if isinstance(i, CancelRunning)]


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


# -- idempotence and restart ------------------------------------------------------------

def test_same_event_twice_changes_nothing() -> None:
    sim = Sim(workflow([("a", "c"), ("b", "c")]), parallel=2)
    sim.step()
    ok = JobSucceeded(workflow="w", run="r1", job="a", time=1)
    sim.feed(ok)
    sim.feed(ok)
    assert sim.step() == []  # c still needs b
    assert sim.core.runs["w"].jobs["c"].unmet == 1
    assert sim.core.runs["w"].active == 1


def test_same_failure_twice_makes_one_retry() -> None:
    sim = Sim(workflow(names=["a"], a={"retries": 3}))
    sim.step()
    bad = JobFailed(workflow="w", run="r1", job="a", time=1)
    sim.feed(bad)
    sim.feed(bad)
    out = sim.step()
    sim.feed(bad)
    assert [(type(i).__name__, i.attempt) for i in out] == [("MarkJob", 2), ("ReleaseJob", 2)]
    assert sim.step() == []


def test_replaying_the_whole_log_into_the_same_core_changes_nothing() -> None:
    sim = Sim(workflow([("a", "b"), ("x", "y")]), parallel=2)
    sim.step()
    sim.done("a")
    sim.step()
    before = {n: (j.state, j.attempt, j.unmet) for n, j in sim.core.runs["w"].jobs.items()}
    for msg in list(sim.log):
        sim.core.apply(msg)
    assert sim.core.decide(2) == []
    after = {n: (j.state, j.attempt, j.unmet) for n, j in sim.core.runs["w"].jobs.items()}
    assert after == before


def restart(sim: Sim) -> SchedulerCore:
    core = SchedulerCore()
    for msg in sim.log:
        core.apply(msg)
    core.reconcile()
    return core


def test_restart_resends_only_ready_jobs() -> None:
    sim = Sim(workflow([("a", "b"), ("x", "y")], names=["z"]), parallel=3)
    assert released(sim.step()) == ["z", "a", "x"]
    sim.ev(JobQueued, "z")
    sim.ev(JobStarted, "a")
    sim.done("x")
    assert released(sim.step()) == ["y"]  # y is READY; its job message may be lost

    core = restart(sim)
    out = core.decide(10)
    assert [(type(i).__name__, i.job, i.attempt) for i in out] == [("ReleaseJob", "y", 1)]
    assert core.decide(11) == []
    run = core.runs["w"]
    assert {n: j.state for n, j in run.jobs.items()} == {
        "z": JobState.QUEUED, "a": JobState.RUNNING, "b": JobState.PENDING,
        "x": JobState.SUCCEEDED, "y": JobState.READY}
    assert run.active == 3
    core.apply(JobSucceeded(workflow="w", run="r1", job="a", time=12))
    assert released(core.decide(12)) == ["b"]
    assert core.decide(13) == []


def test_restart_keeps_the_retry_backoff() -> None:
    sim = Sim(workflow(names=["a"], a={"retries": 1, "retry_delay": 30}))
    sim.step(0)
    sim.fail("a")
    (mark,) = sim.step(100)
    assert mark.not_before == 130.0
    core = restart(sim)
    assert core.decide(101) == []
    assert core.next_wakeup() == 130.0
    (rel,) = core.decide(130)
    assert (rel.job, rel.attempt) == ("a", 2)


def test_restart_issues_a_retry_the_crash_left_undone() -> None:
    sim = Sim(workflow(names=["a"], a={"retries": 1}))
    sim.step()
    sim.fail("a")  # crash before decide: no JobPending on the log
    core = restart(sim)
    out = core.decide(5)
    assert (type(out[0]).__name__, out[0].job, out[0].attempt, out[0].state) == (
        "MarkJob", "a", 2, JobState.PENDING)
    assert {(i.job, i.attempt) for i in out[1:] if isinstance(i, ReleaseJob)} == {("a", 2)}
    # (that it is released exactly once is test_restart_releases_a_job_only_once)


def test_restart_after_cancel_does_not_release() -> None:
    sim = Sim(workflow([("a", "b")]))
    sim.step()
    sim.ev(JobStarted, "a")
    sim.feed(WorkflowCancelRequested(workflow="w", run="r1", time=1))
    sim.step(1)
    core = restart(sim)
    out = core.decide(2)
    assert released(out) == [] and cancels(out) == ["a"]


@pytest.mark.parametrize("lost", ["release", "retry"])
def test_restart_releases_a_job_only_once(lost: str) -> None:
    sim = Sim(workflow([("a", "b")], a={"retries": 1}))
    sim.step()
    if lost == "release":
        sim.done("a")  # crash before the decide that would release b
        expected = [("b", 1)]
    else:
        sim.fail("a")  # crash before the decide that would retry a
        expected = [("a", 2)]
    core = restart(sim)
    out = core.decide(5)
    assert [(i.job, i.attempt) for i in out if isinstance(i, ReleaseJob)] == expected


# -- output placeholders ----------------------------------------------------------------

def test_outputs_of_parents_are_substituted() -> None:
    spec = workflow([("a", "c"), ("b", "c")], variables={"mode": "fast"}, c={
        "exec": "run {parents.a.outputs.n} {parents.b.outputs.files} {mode} ${HOME} {x}",
        "args": ["--n={parents.a.outputs.n}"],
        "env": {"P": "{parents.b.outputs.p}"},
    })
    sim = Sim(spec, parallel=2)
    sim.step()
    sim.done("a", outputs={"n": 42})
    sim.ev(JobStarted, "b")
    sim.ev(JobProgressed, "b", progress=50, outputs={"files": ["x.csv", "y.csv"]})
    sim.ev(JobSucceeded, "b", outputs={"p": "/data"})
    (rel,) = sim.step()
    # in exec each value is one quoted shell word (docs/workflows.md#placeholder-quoting)
    assert rel.spec.exec == 'run 42 \'["x.csv","y.csv"]\' fast ${HOME} {x}'
    assert rel.spec.args == ["--n=42"]
    assert rel.spec.env == {"P": "/data"}
    # the workflow's own spec is not changed
    assert spec.jobs["c"].exec.startswith("run {parents.a.outputs.n}")


def test_missing_output_fails_the_job() -> None:
    spec = workflow([("a", "b"), ("b", "c")], b={"exec": "echo {parents.a.outputs.n}"})
    sim = Sim(spec)
    sim.step()
    sim.done("a", outputs={"other": 1})
    out = sim.step()
    assert [(type(i).__name__, i.job, getattr(i, "state", None)) for i in out] == [
        ("MarkJob", "b", JobState.FAILED), ("MarkJob", "c", JobState.SKIPPED)]
    assert out[0].reason == "parent 'a' has no output 'n'"
    assert sim.state("b") is JobState.FAILED
    assert sim.core.runs["w"].active == 0


# -- caching: keys on releases, the index of succeeded attempts (scheduler/cache.py) -----

def shell_released(sim: Sim, rel: ReleaseJob, key: str | None, cached_from: str | None = None
             ) -> None:
    """What the shell does with a release: record its key, then log its ready event."""
    sim.core.released(rel.workflow, rel.run, rel.job, rel.attempt, key, cached_from, "local")
    sim.feed(JobReadied(workflow=rel.workflow, run=rel.run, job=rel.job, attempt=rel.attempt,
                        cache_key=key, cached_from=cached_from, time=1.0))


def test_release_carries_parent_keys_and_cache_flags() -> None:
    sim = Sim(workflow([("a", "b"), ("b", "c")], b={"cache": False}))
    (rel_a,) = sim.core.decide(1.0)
    assert (rel_a.keyed, rel_a.reuse, rel_a.parent_keys, rel_a.recorded) == (
        True, True, (), None)
    shell_released(sim, rel_a, "ka")
    sim.done("a")
    (rel_b,) = sim.core.decide(1.0)
    assert rel_b.parent_keys == (("a", "ka"),) and rel_b.keyed is False
    shell_released(sim, rel_b, None)  # cache: false has no key ...
    sim.done("b")
    (rel_c,) = sim.core.decide(1.0)
    assert rel_c.parent_keys == (("b", None),)  # ... so its children have none either


def test_a_restart_computes_keys_but_reuses_nothing() -> None:
    spec = workflow(names=["a"])
    core = SchedulerCore()
    core.apply(WorkflowSubmitted(workflow="w", run="r2", spec=spec, time=0.0, cache=False))
    (rel,) = core.decide(1.0)
    assert rel.keyed is True and rel.reuse is False


def test_a_replayed_scheduler_keeps_the_decision_in_the_log() -> None:
    sim = Sim(workflow([("a", "b")]))
    (rel_a,) = sim.core.decide(1.0)
    shell_released(sim, rel_a, "ka", cached_from="r0")  # crash before the succeeded event
    core = SchedulerCore()
    for msg in sim.log:
        core.apply(msg)
    core.reconcile()
    (again,) = core.decide(2.0)
    assert again.job == "a" and again.recorded == ("ka", "r0")


def index_after(*events: Any) -> Any:
    from jobmesh.scheduler.cache import CacheIndex

    index = CacheIndex()
    for e in events:
        index.apply(e, "local")
    return index


def ids(job: str = "b", attempt: int = 1, run: str = "r1") -> dict[str, Any]:
    return {"workflow": "w", "run": run, "job": job, "attempt": attempt, "time": 1.0}


def test_a_failed_attempt_is_never_indexed_a_retried_success_is() -> None:
    index = index_after(
        JobReadied(**ids(), cache_key="k"), JobStarted(**ids(), run_dir="/x/1"),
        JobFailed(**ids(), exit_code=1),
    )
    assert index.lookup("w", "b", "k") is None
    index = index_after(
        JobReadied(**ids(), cache_key="k"), JobFailed(**ids(), exit_code=1),
        JobReadied(**ids(attempt=2), cache_key="k"),
        JobStarted(**ids(attempt=2), run_dir="/x/2"),
        JobProgressed(**ids(attempt=2), outputs={"n": 1}),
        JobSucceeded(**{**ids(attempt=2), "time": 4.0}, outputs={"m": 2}),
    )
    hit = index.lookup("w", "b", "k")
    assert hit is not None and (hit.run, hit.attempt, hit.run_dir) == ("r1", 2, "/x/2")
    assert hit.outputs == {"n": 1, "m": 2} and hit.described()["seconds"] == 3.0


def test_a_reused_success_is_not_indexed_again_and_order_does_not_matter() -> None:
    index = index_after(
        JobReadied(**ids(run="r2"), cache_key="k", cached_from="r1"),
        JobSucceeded(**ids(run="r2"), reason="cached", cached_from={"run": "r1"}),
    )
    assert index.lookup("w", "b", "k") is None
    # the executor's succeeded event logged before the scheduler's ready event
    index = index_after(JobSucceeded(**ids(), outputs={"n": 1}),
                        JobReadied(**ids(), cache_key="k"))
    hit = index.lookup("w", "b", "k")
    assert hit is not None and hit.outputs == {"n": 1}
    index.apply(WorkflowDeleted(workflow="w", run="r1", time=2.0))
    assert index.lookup("w", "b", "k") is None
