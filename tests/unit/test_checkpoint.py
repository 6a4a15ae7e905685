"""The scheduler's checkpoint format and compaction (services/scheduler/checkpoint.py):
pure, no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobmesh.common.messages import (
    JobFailed,
    JobReadied,
    JobStarted,
    JobSucceeded,
    WorkflowDeleted,
    WorkflowRetryRequested,
    WorkflowSubmitted,
)
from jobmesh.scheduler import checkpoint
from jobmesh.scheduler.core import SchedulerCore

from ._build import workflow

pytestmark = pytest.mark.unit


def finished_core(wf: str = "w", run: str = "r1", fail: bool = False) -> tuple[Any, int]:
    """A core that ran a -> b to the end, messages numbered like a log; the last seq."""
    core, seq = SchedulerCore(), 0

    def feed(msg: Any) -> None:
        nonlocal seq
        seq += 1
        core.apply(msg, seq)

    feed(WorkflowSubmitted(workflow=wf, run=run, spec=workflow([("a", "b")], name=wf),
                           parallel=2, time=0.0))
    core.decide(1.0)
    feed(JobReadied(workflow=wf, run=run, job="a", attempt=1, cache_key="ka", time=1.0))
    feed(JobStarted(workflow=wf, run=run, job="a", attempt=1, run_dir="/tmp/x/a", time=1.0))
    feed(JobSucceeded(workflow=wf, run=run, job="a", attempt=1, exit_code=0, time=2.0,
                      outputs={"n": "1"}))
    core.decide(2.0)
    feed(JobReadied(workflow=wf, run=run, job="b", attempt=1, cache_key="kb", time=2.0))
    end = JobFailed if fail else JobSucceeded
    feed(end(workflow=wf, run=run, job="b", attempt=1, exit_code=1 if fail else 0, time=3.0))
    core.decide(3.0)
    return core, seq


def test_a_finished_run_is_compacted_to_its_id_and_first_sequence() -> None:
    core, seq = finished_core()
    assert checkpoint.compact(core) == ["w"]
    assert core.runs == {} and core.finished == {"w": ("r1", 1)}
    data = checkpoint.dump(core, seq, {"w": ["r1", seq, 5.0]})
    doc = json.loads(data)
    assert doc["seq"] == seq and doc["start"] == seq + 1  # nothing left to replay
    fresh = SchedulerCore()
    assert checkpoint.restore(fresh, data) == (seq, seq + 1, {"w": ["r1", seq, 5.0]})
    assert fresh.finished == {"w": ("r1", 1)}
    entry = fresh.cache.lookup("w", "a", "ka")
    assert entry is not None and entry.run_dir == "/tmp/x/a" and entry.outputs == {"n": "1"}
    assert fresh.cache.lookup("w", "b", "kb") is not None


def test_a_running_run_is_kept_and_the_restart_replays_from_its_submission() -> None:
    core, seq = finished_core()
    checkpoint.compact(core)
    core.apply(WorkflowSubmitted(workflow="v", run="r9", spec=workflow([("a", "b")], name="v"),
                                 parallel=1, time=0.0), seq + 1)
    core.decide(4.0)
    assert checkpoint.compact(core) == []
    doc = json.loads(checkpoint.dump(core, seq + 1, {}))
    assert doc["start"] == seq + 1 and set(doc["finished"]) == {"w"}


def test_a_retry_of_a_compacted_run_asks_for_a_rebuild() -> None:
    core, _ = finished_core(fail=True)
    checkpoint.compact(core)
    retry = WorkflowRetryRequested(workflow="w", run="r1", time=9.0)
    assert checkpoint.needs_rebuild(core, retry) == ("r1", 1)
    other = WorkflowRetryRequested(workflow="w", run="r0", time=9.0)
    assert checkpoint.needs_rebuild(core, other) is None
    # Replaying the run's messages brings it back, and the retry reruns b.
    again, _ = finished_core(fail=True)
    core.finished.clear()
    core.runs = again.runs
    core.apply(retry, 99)
    out = core.decide(10.0)
    assert [(type(i).__name__, i.job, i.attempt) for i in out] == [
        ("MarkJob", "b", 2), ("ReleaseJob", "b", 2)]


def test_a_new_run_or_a_delete_replaces_the_compacted_one() -> None:
    core, seq = finished_core()
    checkpoint.compact(core)
    core.apply(WorkflowDeleted(workflow="w", run="r1", time=5.0), seq + 1)
    assert core.finished == {} and core.cache.lookup("w", "a", "ka") is None
    core, seq = finished_core()
    checkpoint.compact(core)
    core.apply(WorkflowSubmitted(workflow="w", run="r2", spec=workflow([("a", "b")]),
                                 parallel=1, time=0.0), seq + 1)
    assert core.finished == {} and core.runs["w"].first_seq == seq + 1


@pytest.mark.parametrize("data", [b"{", b"[]", b'{"version": 2}',
                                  b'{"version": 1, "seq": 5, "start": 9, "finished": {}, '
                                  b'"cache": {}}'])
def test_data_it_cannot_use_is_refused(data: bytes) -> None:
    core = SchedulerCore()
    with pytest.raises(ValueError):
        checkpoint.restore(core, data)
    assert core.finished == {} and core.cache.done == {}


def test_the_retention_setting() -> None:
    assert checkpoint.retention({}) is None
    assert checkpoint.retention({"JOBMESH_EVENTS_RETENTION": "86400"}) == 86400.0
    for bad in ("a day", "-1"):
        with pytest.raises(ValueError, match="JOBMESH_EVENTS_RETENTION"):
            checkpoint.retention({"JOBMESH_EVENTS_RETENTION": bad})
