"""How often the batch executors may ask the batch system, and which refusals are submit
limits (jobmesh.executor.batch)."""

from __future__ import annotations

import pytest

from jobmesh.executor.batch import _LIMIT, DEFAULT_STATUS_INTERVAL, status_interval

pytestmark = pytest.mark.unit


def test_default_is_site_friendly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBMESH_SQUEUE_INTERVAL", raising=False)
    assert status_interval({}) == DEFAULT_STATUS_INTERVAL == 30


def test_node_attribute_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMESH_SQUEUE_INTERVAL", "5")
    assert status_interval({}) == 5
    assert status_interval({"squeue_interval": 90}) == 90
    assert status_interval({"squeue_interval": "0.5"}) == 0.5


def test_unusable_values_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMESH_SQUEUE_INTERVAL", "soon")
    assert status_interval({"squeue_interval": -1}) == 30
    assert status_interval({"squeue_interval": "x"}) == 30


@pytest.mark.parametrize("message", [
    "sbatch: error: QOSMaxSubmitJobPerUserLimit",
    "sbatch: error: AssocMaxSubmitJobLimit",
    "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
    "(job submit limit, user's size and/or time limits)",
])
def test_submit_limits_are_recognised(message: str) -> None:
    assert _LIMIT.search(message)


def test_other_refusals_are_not_submit_limits() -> None:
    assert not _LIMIT.search("sbatch: error: Batch job submission failed: Invalid "
                             "partition name specified")
