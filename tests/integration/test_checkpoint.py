"""The scheduler's checkpoint (services/scheduler/checkpoint.py) on a real nats-server,
with the services as processes: a restarted scheduler starts from the checkpoint, still
retries a finished run, reuses earlier jobs; deleting a workflow purges its events; the
retention setting purges finished runs' events once the monitor has them."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until, write_workflow

pytestmark = pytest.mark.integration


def _checkpoint(bus: Any) -> dict[str, Any] | None:
    from jobmesh.scheduler import checkpoint

    async def go(js: Any) -> bytes | None:
        return await checkpoint.read(js)

    data = bus.call(go)
    return json.loads(data) if data else None


def _count(bus: Any, wf: str) -> int:
    return len(bus.events(wf))


def _start(services: Any) -> None:
    for name in ("scheduler", "monitor"):
        services.start(name)
    services.start("executor", "--pool", "local", "--kind", "local")


def test_restart_from_checkpoint_retries_a_finished_run(tmp_path: Path, services: Any,
                                                        bus: Any) -> None:
    flag = tmp_path / "fixed"
    wf = write_workflow(tmp_path, "flaky", {
        "a": {"exec": "echo a"},
        "b": {"exec": f"test -e {flag}"},
        "c": {"exec": "echo c"},
    }, ["a,b,c"])
    _start(services)
    _, _ = bus.submit(wf)
    snap = bus.wait("flaky", lambda s: s.state.terminal, 60, "the first run ends")
    assert snap.state.value == "FAILED"
    assert snap.jobs["c"].state.value == "SKIPPED"
    ck = wait_until(lambda: (c := _checkpoint(bus)) and "flaky" in c["finished"] and c,
                    15, "a checkpoint with the finished run")
    assert ck["finished"]["flaky"][0] == snap.run
    assert ck["start"] == ck["seq"] + 1  # nothing runs: a restart reads no old event

    # A restarted scheduler starts after the checkpoint, and a retry of the compacted
    # run still reruns exactly what failed.
    services.kill("scheduler", signal.SIGKILL)
    services.start("scheduler")
    flag.write_text("now it works\n")
    from jobmesh.common import ops

    bus.call(lambda js: ops.retry(js, "flaky", snap.run))
    done = bus.wait("flaky", lambda s: s.state.value == "SUCCEEDED", 60, "the retry succeeds")
    assert done.run == snap.run
    assert done.jobs["a"].attempt == 1
    assert done.jobs["b"].attempt == 2 and done.jobs["c"].state.value == "SUCCEEDED"
    log = (tmp_path / "scheduler.log").read_text()
    assert "Traceback" not in log


def test_delete_purges_the_workflows_events(tmp_path: Path, services: Any, bus: Any) -> None:
    gone = write_workflow(tmp_path / "g", "gone", {"x": {"exec": "true"}, "y": {"exec": "true"}},
                          ["x,y"])
    kept = write_workflow(tmp_path / "k", "kept", {"x": {"exec": "true"}}, ["x"])
    _start(services)
    bus.submit(gone)
    bus.submit(kept)
    snap = bus.wait("gone", lambda s: s.state.terminal, 60, "gone ends")
    bus.wait("kept", lambda s: s.state.terminal, 60, "kept ends")
    before = _count(bus, "kept")
    assert _count(bus, "gone") > 3
    from jobmesh.common import ops

    bus.call(lambda js: ops.delete(js, "gone", snap.run))
    # Its job events go (its deleted command stays: followers that are behind see it).
    wait_until(lambda: _count(bus, "gone") == 0, 15, "the deleted workflow's events purged")
    wait_until(lambda: bus.snapshot("gone") is None, 15, "the monitor drops its snapshot")
    assert _count(bus, "kept") == before

    # A new scheduler, from the checkpoint or the log, runs the name afresh.
    services.kill("scheduler", signal.SIGKILL)
    services.start("scheduler")
    bus.submit(gone)
    again = bus.wait("gone", lambda s: s.state.value == "SUCCEEDED", 60, "gone runs again")
    assert again.run != snap.run


def test_retention_purges_finished_runs_after_the_monitor(tmp_path: Path, services: Any,
                                                          bus: Any,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("JOBMESH_EVENTS_RETENTION", "0")
    wf = write_workflow(tmp_path, "brief", {"x": {"exec": "true"}, "y": {"exec": "true"}},
                        ["x,y"])
    _start(services)
    bus.submit(wf)
    snap = bus.wait("brief", lambda s: s.state.value == "SUCCEEDED", 60, "brief ends")
    wait_until(lambda: _count(bus, "brief") == 0, 20, "the finished run's events purged")
    # The snapshot (the monitor's) stays, and a restarted monitor keeps it.
    services.kill("monitor", signal.SIGKILL)
    services.start("monitor")
    assert bus.snapshot("brief").run == snap.run
    # A new run reuses the purged run's jobs (the checkpoint kept the cache index).
    services.kill("scheduler", signal.SIGKILL)
    services.start("scheduler")
    bus.submit(wf)
    again = bus.wait("brief", lambda s: s.run != snap.run and s.state.terminal, 60,
                     "the second run ends")
    assert again.state.value == "SUCCEEDED"
    assert all(j.cached_from for j in again.jobs.values()), again.jobs


def test_a_big_workflows_cache_is_kept_apart_and_read_only_when_it_runs_again(
        tmp_path: Path, services: Any, bus: Any) -> None:
    """A 300-job sweep's cached attempts (~100 KB of JSON) are an object of their own,
    named by the checkpoint. A restarted scheduler that runs another workflow does not
    read them (the sweep stays named, unread), and running the sweep again reuses every
    job: its cache was read when its submission came."""
    import yaml

    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"name": "big", "workflow": {"nodes": {
        "t": {"exec": "true", "foreach": {"i": "[1-300]"}}}}}))
    small = write_workflow(tmp_path / "s", "small", {"x": {"exec": "true"}}, ["x"])
    _start(services)
    bus.submit(big)
    first = bus.wait("big", lambda s: s.state.value == "SUCCEEDED", 120, "the sweep ends")
    ck = wait_until(lambda: (c := _checkpoint(bus)) and "big" in c.get("stored", []) and c,
                    15, "a checkpoint that keeps the sweep's cache apart")
    assert "big" not in ck["cache"]

    services.kill("scheduler", signal.SIGKILL)
    services.start("scheduler")
    bus.submit(small)
    bus.wait("small", lambda s: s.state.value == "SUCCEEDED", 60, "the small run ends")
    ck = wait_until(lambda: (c := _checkpoint(bus)) and "small" in c["finished"] and c,
                    15, "a checkpoint with the small run")
    assert "big" in ck["stored"] and "big" not in ck["cache"]

    services.kill("scheduler", signal.SIGKILL)
    services.start("scheduler")
    bus.submit(big)
    again = bus.wait("big", lambda s: s.run != first.run and s.state.terminal, 120,
                     "the sweep's second run ends")
    assert again.state.value == "SUCCEEDED"
    assert len(again.jobs) == 300 and all(j.cached_from for j in again.jobs.values())
    assert "Traceback" not in (tmp_path / "scheduler.log").read_text()
