"""Large snapshots and run records are stored compressed, and every reader gets them back
(libs/common/packing.py): a 20,000-job snapshot fits NATS's max_payload."""

from __future__ import annotations

import pytest

from jobmesh.common import bus, ops
from jobmesh.common.messages import JobStatus, WorkflowSnapshot
from jobmesh.common.packing import PACK_OVER, pack, unpack
from jobmesh.common.states import JobState, WorkflowState
from jobmesh.monitor import history

pytestmark = pytest.mark.unit


def _snap(n: int) -> WorkflowSnapshot:
    jobs = {f"train-{i:05d}": JobStatus(name=f"train-{i:05d}", state=JobState.SUCCEEDED,
                                        progress=100, attempt=1, started=1.0e9 + i,
                                        ended=1.0e9 + i + 3, exit_code=0)
            for i in range(n)}
    return WorkflowSnapshot(name="sweep", run="20261204T000000-abcd", state=WorkflowState.RUNNING,
                            jobs=jobs, seq=77)


def test_small_values_stay_plain_json() -> None:
    raw = bus.encode(_snap(3))
    assert len(raw) < PACK_OVER and pack(raw) == raw and unpack(raw) == raw


def test_a_20000_job_snapshot_fits_under_8_mb_and_reads_back() -> None:
    snap = _snap(20_000)
    raw = bus.encode(snap)
    stored = pack(raw)
    assert len(raw) > 3_000_000 and len(stored) < len(raw) / 5
    assert unpack(stored) == raw
    assert ops.peek(stored) == (snap.run, "RUNNING", 77)  # the checkpointer's quick look
    back = WorkflowSnapshot.model_validate_json(unpack(stored))
    assert back.jobs["train-19999"].ended == snap.jobs["train-19999"].ended


def test_run_records_are_packed_too() -> None:
    snap = _snap(20_000)
    data = history.record(snap, {"train-00001": 5.0})
    assert len(data) < 1_000_000
    again, queued = history.read_record(data)
    assert len(again.jobs) == 20_000 and queued == {"train-00001": 5.0}


@pytest.mark.parametrize("n", [0, 3, 2_000, 20_000])
def test_peek_reads_only_the_ends_and_agrees_with_a_whole_unpack(n: int) -> None:
    """``ops.peek`` inflates a stored snapshot a piece at a time (a 100,000-job one is
    ~45 MB of JSON) and finds what a whole unpack finds: the run, state and the last
    (top-level) seq, also when a job is named like the key."""
    import zlib

    snap = _snap(n)
    snap.jobs['x"seq":5'] = JobStatus(name='x"seq":5', state=JobState.PENDING)
    snap.edges = [('x"seq":5', 'x"seq":5')]
    raw = bus.encode(snap)
    for stored in (raw, pack(raw, over=0)):
        assert ops.peek(stored) == (snap.run, "RUNNING", 77)
    with pytest.raises(zlib.error):
        ops.peek(pack(raw, over=0)[:-9])  # a truncated value is an error, not a guess
