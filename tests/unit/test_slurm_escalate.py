"""Escalation on retry (``escalate: {mem: 2, time: 2}``) and the value checks of the
batch options: pure functions (jobmesh.executor.slurm, jobmesh.common.options)."""

from __future__ import annotations

import pytest

from jobmesh.common import options
from jobmesh.executor.slurm import Slurm, scale_mem, scale_time, time_seconds

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("value", "factor", "want"), [
    ("500M", 2, "1000M"), ("1G", 2, "2048M"), ("1000", 1.5, "1500M"), ("2g", 2, "4096M"),
    ("512K", 2, "1M"), ("1T", 1, "1048576M"),
])
def test_memory_scales_in_whole_megabytes(value: str, factor: float, want: str) -> None:
    assert scale_mem(value, factor) == want


@pytest.mark.parametrize(("value", "seconds"), [
    ("30", 1800), ("1:30", 90), ("2:00:00", 7200), ("1-0", 86400), ("1-2:30", 95400),
    ("1-00:00:10", 86410),
])
def test_slurm_time_formats(value: str, seconds: int) -> None:
    assert time_seconds(value) == seconds


def test_time_scales_to_whole_minutes() -> None:
    assert scale_time("1", 2) == "2"
    assert scale_time("1:30", 2) == "3"
    assert scale_time("2:00:00", 1.5) == "180"


def test_bad_sizes_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="mem 'lots'"):
        scale_mem("lots", 2)
    with pytest.raises(ValueError, match="time 'soon'"):
        scale_time("soon", 2)


def test_each_end_escalates_its_own_resource() -> None:
    s = Slurm()
    x = {"mem": "1G", "time": "10"}
    factors = {"mem": 2.0, "time": 3.0}
    assert s.escalate(x, None, [], factors) == {}
    assert s.escalate(x, None, ["OUT_OF_MEMORY"], factors) == {"mem": "2048M"}
    assert s.escalate(x, None, ["TIMEOUT"], factors) == {"time": "30"}
    # two earlier attempts ran out of memory: twice the factor
    assert s.escalate(x, None, ["OUT_OF_MEMORY", "OUT_OF_MEMORY", "FAILED"],
                      factors) == {"mem": "4096M"}
    # only what the map names is escalated; a timeout: without time: counts
    assert s.escalate({}, 120, ["TIMEOUT", "OUT_OF_MEMORY"], {"time": 2}) == {"time": "4"}


def test_escalate_map_is_checked() -> None:
    assert options.escalation({"mem": 2, "time": "1.5"}) == {"mem": 2.0, "time": 1.5}
    for bad, words in [({"cpus": 2}, "cannot be escalated"), ({"mem": "x"}, "not a number"),
                       ({"mem": 0.5}, "between 1 and 100"), ([2], "mapping")]:
        with pytest.raises(ValueError, match=words):
            options.escalation(bad)


def test_option_values_are_checked() -> None:
    ok = {"squeue_interval": 60, "array": 20, "escalate": {"mem": 2}}
    assert options.check_values("slurm", ok) == []
    assert options.check_values("slurm", {"array": False, "squeue_interval": "0.5"}) == []
    bad = options.check_values("lsf", {"squeue_interval": "soon", "array": "many",
                                       "escalate": {"gpu": 2}})
    assert [field for field, _ in bad] == ["squeue_interval", "array", "escalate"]
    assert "86400" in bad[0][1] and "true, false" in bad[1][1]
    assert options.check_values("slurm", {"squeue_interval": -5})
    assert options.check_values("local", {"squeue_interval": "soon"}) == []
