"""Fixtures shared by the integration tests (tests/conftest.py has the rest)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli


@pytest.fixture
def stack(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """`jobmesh up --port 0` for this test's home, as its service.json describes it (url,
    nats_url, ...) plus the gateway's API ``token``; `jobmesh down` afterwards, which must
    leave no service.json behind."""
    monkeypatch.setenv("JOBMESH_HOME", str(home))
    monkeypatch.delenv("JOBMESH_URL", raising=False)
    monkeypatch.delenv("JOBMESH_TOKEN", raising=False)
    res = cli(home, "up", "--port", "0")
    assert res.returncode == 0, res.stdout + res.stderr
    info = json.loads((home / "service.json").read_text())
    info["token"] = (home / "gateway.token").read_text().strip()
    yield info
    down = cli(home, "down")
    assert down.returncode == 0, down.stderr
    assert not (home / "service.json").exists()
