"""The monitor's fold: the EVENTS log in, WorkflowSnapshots out."""

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
from jobmesh.common.states import JobState, WorkflowState
from jobmesh.monitor.fold import Fold

from ._build import workflow

pytestmark = pytest.mark.unit


class Log:
    def __init__(self, spec: Any, run: str = "r1", time: float = 100.0):
        self.fold, self.seq, self.run = Fold(), 0, run
        self.put(WorkflowSubmitted(workflow="w", run=run, spec=spec, parallel=3, time=time))

    def put(self, msg: Any) -> str | None:
        self.seq += 1
        return self.fold.apply(self.seq, msg)

    def ev(self, cls: Any, job: str, t: float, attempt: int = 1, run: str | None = None,
           **kw: Any) -> str | None:
        return self.put(cls(workflow="w", run=run or self.run, job=job, attempt=attempt,
                            time=t, **kw))

    @property
    def snap(self) -> Any:
        return self.fold.snaps["w"]

    def job(self, name: str) -> Any:
        return self.snap.jobs[name]


def test_submission_builds_the_snapshot() -> None:
    log = Log(workflow([("a", "b")], a={"kind": "ssh", "host": "h1"}))
    snap = log.snap
    assert (snap.name, snap.run, snap.state, snap.created, snap.parallel, snap.seq) == (
        "w", "r1", WorkflowState.RUNNING, 100.0, 3, 1)
    assert snap.started is None and snap.ended is None
    assert snap.edges == [("a", "b")]
    assert list(snap.jobs) == ["a", "b"]
    assert (log.job("a").state, log.job("a").kind, log.job("a").host) == (
        JobState.PENDING, "ssh", "h1")
    assert snap.counts()["PENDING"] == 2


def test_a_job_through_its_life() -> None:
    log = Log(workflow(names=["a"]))
    assert log.ev(JobReadied, "a", 101) == "w"
    log.ev(JobQueued, "a", 102, native_id="slurm-7", reason="Priority")
    assert (log.job("a").state, log.job("a").native_id, log.job("a").reason) == (
        JobState.QUEUED, "slurm-7", "Priority")
    log.ev(JobQueued, "a", 102.5, native_id="slurm-7", reason="Resources")  # reason changed
    assert (log.job("a").state, log.job("a").reason) == (JobState.QUEUED, "Resources")
    log.ev(JobStarted, "a", 103, host="node1", run_dir="/runs/w/a/1")
    a = log.job("a")
    assert (a.state, a.started, a.host, a.run_dir, a.reason, a.native_id) == (
        JobState.RUNNING, 103.0, "node1", "/runs/w/a/1", None, "slurm-7")
    assert log.snap.started == 103.0
    log.ev(JobSucceeded, "a", 110, outputs={"n": 5}, msg="done")
    a = log.job("a")
    assert (a.state, a.ended, a.exit_code, a.progress, a.outputs, a.msg, a.modified) == (
        JobState.SUCCEEDED, 110.0, 0, 100.0, {"n": 5}, "done", 110.0)
    assert log.snap.state is WorkflowState.SUCCEEDED
    assert log.snap.ended == 110.0
    assert log.snap.seq == 6  # submission + 5 events


def test_progress_only_updates_progress() -> None:
    log = Log(workflow(names=["a"]))
    log.ev(JobStarted, "a", 101)
    log.ev(JobProgressed, "a", 102, progress=40, msg="epoch 4", outputs={"k": 1})
    a = log.job("a")
    assert (a.state, a.progress, a.msg, a.outputs, a.modified) == (
        JobState.RUNNING, 40.0, "epoch 4", {"k": 1}, 102.0)
    log.ev(JobProgressed, "a", 103, progress=60)
    assert (log.job("a").progress, log.job("a").msg) == (60.0, "epoch 4")


def test_progress_on_a_pending_job_does_not_move_it() -> None:
    log = Log(workflow(names=["a"]))
    log.ev(JobProgressed, "a", 101, progress=10)
    assert (log.job("a").state, log.job("a").progress) == (JobState.PENDING, 10.0)
    assert log.snap.state is WorkflowState.RUNNING


def test_progress_after_the_end_is_ignored() -> None:
    log = Log(workflow(names=["a"]))
    log.ev(JobStarted, "a", 101)
    log.ev(JobFailed, "a", 102, progress=30, exit_code=2, reason="exit 2")
    log.ev(JobProgressed, "a", 103, progress=90, msg="late")
    a = log.job("a")
    assert (a.progress, a.msg, a.modified, a.exit_code, a.reason) == (
        30.0, None, 102.0, 2, "exit 2")


def test_stale_and_duplicate_events_are_dropped() -> None:
    log = Log(workflow(names=["a", "b"]))
    log.ev(JobStarted, "a", 101)
    log.ev(JobQueued, "a", 102)  # lower rank: stale
    log.ev(JobReadied, "a", 103)
    assert (log.job("a").state, log.job("a").modified) == (JobState.RUNNING, 101.0)
    log.ev(JobSucceeded, "a", 104)
    before = log.snap.model_dump(exclude={"seq"})
    log.ev(JobSucceeded, "a", 105)
    log.ev(JobFailed, "a", 106)
    log.ev(JobStarted, "a", 107)
    assert log.snap.model_dump(exclude={"seq"}) == before
    assert log.job("a").ended == 104.0


def test_replaying_the_log_gives_the_same_snapshot() -> None:
    spec = workflow([("a", "b")], a={"retries": 1})
    log = Log(spec)
    msgs = [
        JobStarted(workflow="w", run="r1", job="a", time=101),
        JobFailed(workflow="w", run="r1", job="a", time=102),
        JobPending(workflow="w", run="r1", job="a", attempt=2, time=103, reason="retry"),
        JobStarted(workflow="w", run="r1", job="a", attempt=2, time=104),
        JobSucceeded(workflow="w", run="r1", job="a", attempt=2, time=105),
        JobStarted(workflow="w", run="r1", job="b", time=106),
    ]
    for m in msgs:
        log.put(m)
    once = log.snap.model_dump(exclude={"seq"})
    for m in msgs:  # the whole log again, except the submission
        log.put(m)
    assert log.snap.model_dump(exclude={"seq"}) == once


def test_duplicate_pending_event_changes_nothing() -> None:
    log = Log(workflow(names=["a"], a={"retries": 1}))
    log.ev(JobStarted, "a", 101)
    log.ev(JobFailed, "a", 102)
    pending = JobPending(workflow="w", run="r1", job="a", attempt=2, time=103)
    log.put(pending)
    log.ev(JobStarted, "a", 104, attempt=2)
    log.ev(JobSucceeded, "a", 105, attempt=2)
    log.put(pending)
    assert log.job("a").state is JobState.SUCCEEDED
    assert log.snap.state is WorkflowState.SUCCEEDED


def test_events_of_another_run_or_unknown_job_are_ignored() -> None:
    log = Log(workflow(names=["a"]))
    assert log.ev(JobSucceeded, "a", 101, run="old") is None
    assert log.ev(JobSucceeded, "nope", 101) == "w"
    assert log.put(JobSucceeded(workflow="zz", run="r1", job="a", time=1)) is None
    assert log.job("a").state is JobState.PENDING
    assert list(log.snap.jobs) == ["a"]


def test_workflow_failed_once_every_job_is_final() -> None:
    log = Log(workflow([("a", "b")], names=["x"]))
    log.ev(JobStarted, "a", 101)
    log.ev(JobFailed, "a", 102, exit_code=1, reason="exit 1")
    assert log.snap.state is WorkflowState.RUNNING  # b is not final yet
    log.ev(JobSkipped, "b", 103)
    assert log.snap.state is WorkflowState.RUNNING  # x is not final yet
    log.ev(JobStarted, "x", 104)
    log.ev(JobSucceeded, "x", 107)
    assert log.snap.state is WorkflowState.FAILED
    assert log.snap.ended == 107.0
    assert log.snap.counts() == {"PENDING": 0, "READY": 0, "QUEUED": 0, "RUNNING": 0,
                                 "SUCCEEDED": 1, "FAILED": 1, "CANCELED": 0, "SKIPPED": 1}


def test_allow_failure_does_not_fail_the_workflow() -> None:
    log = Log(workflow([("a", "b")], a={"allow_failure": True}))
    log.ev(JobFailed, "a", 101)
    log.ev(JobSucceeded, "b", 102)
    assert log.snap.state is WorkflowState.SUCCEEDED


def test_a_failed_job_that_will_be_retried_keeps_the_workflow_running() -> None:
    log = Log(workflow(names=["a"], a={"retries": 2}))
    log.ev(JobStarted, "a", 101)
    log.ev(JobFailed, "a", 102)
    assert log.snap.state is WorkflowState.RUNNING and log.snap.ended is None
    log.ev(JobPending, "a", 103, attempt=2, reason="retry (attempt 2)")
    log.ev(JobFailed, "a", 104, attempt=2)
    assert log.snap.state is WorkflowState.RUNNING
    log.ev(JobPending, "a", 105, attempt=3)
    log.ev(JobFailed, "a", 106, attempt=3)  # retries used up
    assert log.snap.state is WorkflowState.FAILED
    assert log.snap.ended == 106.0


def test_history_of_attempts() -> None:
    log = Log(workflow(names=["a"], a={"retries": 1}))
    log.ev(JobStarted, "a", 101, native_id="123", run_dir="/r/a/1", host="h")
    log.ev(JobProgressed, "a", 101.5, progress=70, outputs={"tmp": 1})
    log.ev(JobFailed, "a", 102, exit_code=3, reason="exit 3")
    log.ev(JobPending, "a", 103, attempt=2, reason="retry (attempt 2)", not_before=110)
    a = log.job("a")
    assert (a.attempt, a.state, a.progress, a.outputs, a.reason, a.exit_code) == (
        2, JobState.PENDING, 0.0, {}, "retry (attempt 2)", None)
    assert a.history == [{"attempt": 1, "state": JobState.FAILED, "exit_code": 3,
                          "reason": "exit 3", "started": 101.0, "ended": 102.0,
                          "native_id": "123", "run_dir": "/r/a/1"}]
    log.ev(JobStarted, "a", 104, attempt=1)  # the old attempt: ignored
    assert log.job("a").state is JobState.PENDING
    log.ev(JobStarted, "a", 111, attempt=2)
    log.ev(JobSucceeded, "a", 120, attempt=2)
    a = log.job("a")
    assert (a.attempt, a.state, a.started, a.ended) == (2, JobState.SUCCEEDED, 111.0, 120.0)
    assert len(a.history) == 1
    assert log.snap.state is WorkflowState.SUCCEEDED


def test_an_event_of_a_later_attempt_starts_a_new_attempt() -> None:
    # e.g. the 'pending' event was lost or compacted: 'started' of attempt 2 still counts
    log = Log(workflow(names=["a"], a={"retries": 1}))
    log.ev(JobFailed, "a", 102)
    log.ev(JobStarted, "a", 104, attempt=2)
    assert (log.job("a").attempt, log.job("a").state) == (2, JobState.RUNNING)
    assert [h["attempt"] for h in log.job("a").history] == [1]


def test_cancel_gives_canceled() -> None:
    log = Log(workflow([("a", "b")]))
    log.ev(JobStarted, "a", 101)
    log.put(WorkflowCancelRequested(workflow="w", run="r1", time=102))
    assert log.snap.cancel_requested and log.snap.state is WorkflowState.RUNNING
    log.ev(JobCanceled, "b", 103)
    log.ev(JobCanceled, "a", 104, exit_code=143)
    assert log.snap.state is WorkflowState.CANCELED
    assert log.snap.ended == 104.0
    assert (log.job("a").exit_code, log.job("a").reason) == (143, "canceled")


def test_cancel_while_a_retry_is_due_ends_the_workflow() -> None:
    log = Log(workflow(names=["a"], a={"retries": 3}))
    log.ev(JobFailed, "a", 101)
    assert log.snap.state is WorkflowState.RUNNING
    log.put(WorkflowCancelRequested(workflow="w", run="r1", time=102))
    assert log.snap.state is WorkflowState.CANCELED


def test_cancel_after_everything_succeeded_stays_succeeded() -> None:
    log = Log(workflow(names=["a"]))
    log.ev(JobSucceeded, "a", 101)
    log.put(WorkflowCancelRequested(workflow="w", run="r1", time=102))
    assert log.snap.state is WorkflowState.SUCCEEDED


def test_job_cancel_request_changes_nothing_by_itself() -> None:
    log = Log(workflow(names=["a"]))
    before = log.snap.model_dump()
    assert log.put(JobCancelRequested(workflow="w", run="r1", job="a", time=101)) is None
    assert log.snap.model_dump(exclude={"seq"}) == {
        k: v for k, v in before.items() if k != "seq"}


def test_retry_request_reopens_the_workflow() -> None:
    log = Log(workflow([("a", "b")]))
    log.ev(JobFailed, "a", 101)
    log.ev(JobSkipped, "b", 102)
    assert log.snap.state is WorkflowState.FAILED
    log.put(WorkflowRetryRequested(workflow="w", run="r1", time=103))
    log.ev(JobPending, "a", 104, attempt=2)
    log.ev(JobPending, "b", 104, attempt=2)
    assert log.snap.state is WorkflowState.RUNNING and log.snap.ended is None
    log.ev(JobSucceeded, "a", 105, attempt=2)
    log.ev(JobSucceeded, "b", 106, attempt=2)
    assert log.snap.state is WorkflowState.SUCCEEDED and log.snap.ended == 106.0


def test_new_submission_replaces_the_snapshot() -> None:
    log = Log(workflow(names=["a"]))
    log.ev(JobSucceeded, "a", 101)
    log.put(WorkflowSubmitted(workflow="w", run="r2", spec=workflow(names=["a", "b"]),
                              time=200))
    assert (log.snap.run, log.snap.state, log.snap.created) == ("r2", WorkflowState.RUNNING,
                                                              200.0)
    assert [j.state for j in log.snap.jobs.values()] == [JobState.PENDING] * 2


def test_delete_forgets_the_workflow() -> None:
    log = Log(workflow(names=["a"]))
    assert log.put(WorkflowDeleted(workflow="w", run="r1", time=101)) == "w"
    assert "w" not in log.fold.snaps and "w" in log.fold.deleted
    assert log.ev(JobSucceeded, "a", 102) is None


def test_empty_workflow_succeeds_at_once() -> None:
    log = Log(workflow(names=[]))
    assert log.snap.state is WorkflowState.SUCCEEDED


# -- run history: queue times and replaced runs ------------------------------------------

def test_queue_time_is_kept_per_attempt_and_reset_by_a_retry() -> None:
    log = Log(workflow([("a", "b")], a={"retries": 1}))
    log.ev(JobReadied, "a", 101.0)
    log.ev(JobQueued, "a", 102.0)
    log.ev(JobStarted, "a", 104.0)
    assert log.fold.queued["w"] == {"a": 101.0}  # released at 101, not queued at 102
    log.ev(JobFailed, "a", 105.0, exit_code=1)
    log.ev(JobPending, "a", 105.5, attempt=2)
    assert "a" not in log.fold.queued["w"]
    log.ev(JobQueued, "a", 106.0, attempt=2)
    assert log.fold.queued["w"] == {"a": 106.0}


def test_a_new_run_hands_over_the_old_one_once() -> None:
    spec = workflow([("a", "b")])
    log = Log(spec)
    log.put(WorkflowSubmitted(workflow="w", run="r1", spec=spec, parallel=3, time=100.0))
    assert log.fold.superseded == []  # the same run again: nothing replaced
    log.ev(JobReadied, "a", 101.0)
    log.put(WorkflowSubmitted(workflow="w", run="r2", spec=spec, parallel=3, time=120.0))
    [(old, queued, new)] = log.fold.superseded
    assert (old.run, new, queued) == ("r1", "r2", {"a": 101.0})
    assert log.snap.run == "r2" and log.fold.queued["w"] == {}
    log.ev(JobStarted, "a", 121.0, run="r1")  # the old run's late events change nothing
    assert old.jobs["a"].state is JobState.READY and log.fold.queued["w"] == {}
    assert log.job("a").state is JobState.PENDING


def test_deleting_drops_what_was_not_handed_over() -> None:
    spec = workflow([("a", "b")])
    log = Log(spec)
    log.put(WorkflowSubmitted(workflow="w", run="r2", spec=spec, parallel=3, time=120.0))
    log.put(WorkflowDeleted(workflow="w", run="r2", time=130.0))
    assert log.fold.superseded == [] and "w" not in log.fold.queued


def test_history_summaries_keep_the_newest_runs_and_refuse_bad_ids() -> None:
    from jobmesh.common.names import InvalidName
    from jobmesh.monitor import history

    log = Log(workflow([("a", "b")]))
    log.ev(JobStarted, "a", 103.0)
    line = history.summary(log.snap, replaced_by="r2", now=110.0)
    assert (line["state"], line["started"], line["ended"], line["duration"]) == (
        "CANCELED", 103.0, 110.0, 7.0)  # replaced while it ran
    assert line["counts"] == {"PENDING": 1, "RUNNING": 1} and line["jobs"] == 2
    runs: list[dict[str, Any]] = []
    for i in range(4):
        runs, dropped = history.merge(runs, {"run": f"r{i}", "created": float(i)}, keep=3)
    assert [r["run"] for r in runs] == ["r1", "r2", "r3"] and dropped == ["r0"]
    runs, dropped = history.merge(runs, {"run": "r2", "created": 2.0, "state": "X"}, keep=3)
    assert [r["run"] for r in runs] == ["r1", "r2", "r3"] and runs[1]["state"] == "X"
    snap, queued = history.read_record(history.record(log.snap, {"a": 101.5}))
    assert snap == log.snap and queued == {"a": 101.5}
    assert history.record_key("w", "20261203T230512-3fa2") == "w.20261203T230512-3fa2"
    for bad in ("r.1", "", "../x", "r*", "a" * 65):
        with pytest.raises(InvalidName, match="invalid run id"):
            history.record_key("w", bad)


def test_run_store_writes_only_what_changed_and_drops_past_keep() -> None:
    from jobmesh.monitor import history
    from jobmesh.monitor.runs import RunStore

    spec = workflow([("a", "b")])
    log = Log(spec)
    for job in ("a", "b"):
        log.ev(JobStarted, job, 101.0)
        log.ev(JobSucceeded, job, 102.0)
    store = RunStore(keep=2)
    store.stored["w"] = {"r1": history.summary(log.snap)}  # what a monitor wrote before
    store.note(log.snap, {})
    assert store.pending == {} and store.changed == set()  # the same: nothing to write
    store.note(log.snap, {}, replaced_by="r2")
    assert store.pending == {} and store.changed == {"w"}  # only the index changes
    for run in ("r2", "r3"):
        log.put(WorkflowSubmitted(workflow="w", run=run, spec=spec, parallel=3, time=110.0))
        store.note(log.snap, {"a": 111.0})
    assert set(store.pending) == {("w", "r2"), ("w", "r3")}
    assert [r["run"] for r in store.index["w"]] == ["r2", "r3"] and store.drop == {("w", "r1")}
    bad = log.snap.model_copy(update={"run": "r.9"})
    store.note(bad, {})  # a run id unfit for a key is not kept
    assert ("w", "r.9") not in store.pending
    store.forget("w")
    assert store.pending == {} and store.drop == set() and store.purge == {"w"}
