"""A snapshot seeded from the monitor's checkpoint stays undecoded until it is read; its
head (run, seq, state, ended) is read from the stored bytes alone."""

from __future__ import annotations

import pytest

from jobmesh.common import bus
from jobmesh.common.messages import JobStatus, WorkflowSnapshot
from jobmesh.common.packing import pack, unpack
from jobmesh.common.states import JobState, WorkflowState
from jobmesh.monitor.fold import Fold, Head, head_of

pytestmark = pytest.mark.unit


def stored(ended: float | None = 12.5) -> WorkflowSnapshot:
    jobs = {"seq": JobStatus(state=JobState.SUCCEEDED, outputs={"seq": 99, "x": ',"seq":7'}),
            "b": JobStatus(state=JobState.FAILED, exit_code=2, msg='a "quoted" ,"jobs":{}')}
    return WorkflowSnapshot(name="w", run="r-1", state=WorkflowState.FAILED, created=1.0,
                            started=2.0, ended=ended, jobs=jobs, edges=[("seq", "b")],
                            seq=4321, expansions=2)


def test_head_of_reads_the_top_level_fields_only() -> None:
    assert head_of(bus.encode(stored())) == Head("r-1", 4321, WorkflowState.FAILED, 12.5)
    assert head_of(bus.encode(stored(ended=None))) == Head("r-1", 4321,
                                                           WorkflowState.FAILED, None)
    big = unpack(pack(bus.encode(stored()), over=0))
    assert head_of(big) == Head("r-1", 4321, WorkflowState.FAILED, 12.5)
    assert head_of(b'{"name":"w"}') is None
    assert head_of(b"not json") is None


def test_a_seeded_snapshot_is_decoded_when_read() -> None:
    fold, snap = Fold(), stored()
    data = bus.encode(snap)
    fold.seed("w", data, head_of(data) or Head("", 0, WorkflowState.PENDING, None),
              b"{}", (0, 1), repeat=False)
    assert "w" in fold.snaps and "w" in fold.snaps.raw and len(fold.snaps) == 1
    assert fold.snaps.head("w").run == "r-1"
    assert "w" in fold.snaps.raw  # the head did not decode it
    assert fold.snaps.get("w") == snap
    assert "w" not in fold.snaps.raw
    assert fold.snaps.head("w") == Head("r-1", 4321, WorkflowState.FAILED, 12.5)
    assert fold.snaps.get("other") is None
    fold.seed("v", data, Head("r-1", 4321, WorkflowState.FAILED, 12.5), b"{}", (0, 0),
              repeat=False)
    assert dict(fold.snaps.items()) == {"w": snap, "v": snap}
    del fold.snaps["v"]
    assert list(fold.snaps) == ["w"] and not fold.snaps.raw
