"""The scheduler's pure core after a restart, replays, output placeholders and caching."""

from __future__ import annotations

from typing import Any

import pytest

from jobmesh.common.messages import (
    JobFailed,
    JobProgressed,
    JobQueued,
    JobReadied,
    JobStarted,
    JobSucceeded,
    WorkflowCancelRequested,
    WorkflowDeleted,
    WorkflowSubmitted,
)
from jobmesh.common.states import JobState
from jobmesh.scheduler import outbox
from jobmesh.scheduler.core import ReleaseJob, SchedulerCore

from ._build import workflow
from ._schedsim import Sim, cancels, released

pytestmark = pytest.mark.unit


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
    """What the shell does with a release: record its key, then log its ready event (a
    job sent to run, or the first half of a reuse: a crash before its succeeded)."""
    sim.core.released(rel.workflow, rel.run, rel.job, rel.attempt, key, cached_from, "local")
    ready = outbox.reused(rel, 1.0, key, cached_from, None, {}, 1.0)[0] \
        if key and cached_from else outbox.readied(rel, 1.0, key)
    sim.feed(ready.msg)


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
