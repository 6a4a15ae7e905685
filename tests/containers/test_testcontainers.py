"""testcontainers: a clean NATS in a container for tests, as the integration tests get
with JOBMESH_TEST_NATS=container (tests/conftest.py's ``nats`` fixture). Here the
services run as processes from this checkout (scheduler, monitor, executor: the
``services`` fixture) against that NATS, and a real workflow runs through them. Without a
Docker engine the ``docker_host`` fixture skips, saying why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ContainerNats, docker_engine, write_workflow

NODES = {"make": {"exec": 'echo "# jobmesh output n=$((6 * 7))"'},
         "use": {"exec": "test {parents.make.outputs.n} = 42 && echo used"},
         "side": {"exec": "echo side"}}


@pytest.fixture
def container_nats(docker_host: str, images: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ``nats`` fixture (requested after this one) start NATS by testcontainers."""
    monkeypatch.setenv("JOBMESH_TEST_NATS", "container")
    host, why = docker_engine()
    assert host == docker_host, why


def test_a_workflow_runs_on_services_against_nats_from_testcontainers(
        container_nats: None, nats: Any, bus: Any, services: Any, tmp_path: Path) -> None:
    assert isinstance(nats, ContainerNats), "JOBMESH_TEST_NATS=container gives a container"
    assert nats.url.startswith("nats://127.0.0.1:"), nats.url  # published on loopback only
    assert "Server is ready" in nats.logs()
    services.start("scheduler")
    services.start("monitor")
    services.start("executor", "--pool", "local", "--kind", "local")
    wf = write_workflow(tmp_path / "wf", "tc", NODES, ["make,use"])
    bus.submit(wf)
    snap = bus.wait("tc", lambda s: s.state.value in ("SUCCEEDED", "FAILED"), 90,
                    "workflow tc to end")
    assert snap.state.value == "SUCCEEDED", {j: (s.state.value, s.reason)
                                             for j, s in snap.jobs.items()}
    assert snap.jobs["make"].outputs == {"n": 42}
    # a clean server: every subject in its log is this workflow's
    async def subjects(js: Any) -> dict[str, int]:
        info = await js.stream_info("EVENTS", subjects_filter=">")
        return dict(info.state.subjects or {})

    seen = bus.call(subjects)
    assert seen and all(".tc." in subj or subj.endswith(".tc") for subj in seen), seen
    assert len(bus.events("tc")) >= 3 * 3  # ready, started, succeeded of each job at least
