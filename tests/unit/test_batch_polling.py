"""How often the batch executors may ask the batch system (jobmesh.executor.batch)."""

from __future__ import annotations

import pytest
from jobmesh.executor.batch import DEFAULT_STATUS_INTERVAL, status_interval

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
