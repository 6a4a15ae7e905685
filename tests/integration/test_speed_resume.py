"""A monitor that stopped cleanly with every run ended leaves a checkpoint; the next one
starts from the stored snapshots instead of replaying the whole log, and what users see
is the same: old workflows' states, a retry of an old failed run, a delete, a new run."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from jobmesh.common import ops, subjects
from jobmesh.common.packing import unpack
from jobmesh.monitor import history, resume
from tests.helpers import wait_until, write_workflow

pytestmark = pytest.mark.integration


def _checkpoint(bus: Any) -> bytes | None:
    async def read(js: Any) -> bytes | None:
        kv = await js.key_value(history.BUCKET)
        try:
            return (await kv.get(resume.CHECKPOINT_KEY)).value
        except Exception:
            return None
    return bus.call(read)  # type: ignore[no-any-return]


def _revision(bus: Any, wf: str) -> int:
    async def read(js: Any) -> int:
        kv = await js.key_value(subjects.KV_WORKFLOWS)
        return int((await kv.get(wf)).revision)
    return bus.call(read)  # type: ignore[no-any-return]


def _graph_kept(bus: Any, wf: str, run: str) -> bool:
    """The run's final graph is in the store (a checkpoint waits for it)."""
    async def read(js: Any) -> bool:
        obj = await js.object_store(subjects.OBJ_GRAPHS)
        try:
            await obj.get_info(history.graph_key(wf, run))
            return True
        except Exception:
            return False
    return bool(bus.call(read))


def test_a_restarted_monitor_resumes_from_its_checkpoint(
        tmp_path: Path, services: Any, bus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMESH_LOG_LEVEL", "info")  # (the monitor says how it started)
    flag = tmp_path / "ok"
    good = write_workflow(tmp_path / "wf", "good", {"a": {"exec": "echo a"},
                                                    "b": {"exec": "echo b"}}, ["a,b"])
    flaky = write_workflow(tmp_path / "wf", "flaky", {
        "x": {"exec": f"test -e {flag}"}}, [])
    services.start("scheduler")
    services.start("executor", "--pool", "local", "--kind", "local")
    services.start("monitor")
    good_run, _ = bus.submit(good)
    bus.wait("good", lambda s: s.state.value == "SUCCEEDED", 60, "good to succeed")
    first, _ = bus.submit(flaky)
    bus.wait("flaky", lambda s: s.state.value == "FAILED", 60, "flaky to fail")
    wait_until(lambda: _graph_kept(bus, "good", good_run) and _graph_kept(bus, "flaky", first),
               30, "the runs' final graphs to be stored")
    services.kill("monitor", signal.SIGTERM)  # a clean stop, every run ended
    data = _checkpoint(bus)
    assert data, "no checkpoint after a clean stop"
    point = json.loads(unpack(data))
    assert point["v"] == resume.VERSION
    # Each stored snapshot is named by its revision and head: the next start checks it
    # without unpacking it.
    for wf in ("good", "flaky"):
        run, _seq, _spec, _open, _spoil, rev, state, _ended = point["workflows"][wf]
        assert rev == _revision(bus, wf) and state in ("SUCCEEDED", "FAILED")

    services.start("monitor")
    wait_until(lambda: _checkpoint(bus) is None, 30, "the new monitor to take it")
    wait_until(lambda: "resumed from the checkpoint" in (tmp_path / "monitor.log").read_text(),
               30, "the new monitor to say it resumed (not replayed)")
    assert bus.snapshot("good").state.value == "SUCCEEDED"
    # a retry of the failed run folds on top of the seeded snapshot
    flag.write_text("")
    bus.call(lambda js: ops.retry(js, "flaky", first))
    snap = bus.wait("flaky", lambda s: s.state.value == "SUCCEEDED", 60, "the retry")
    assert snap.run == first and snap.jobs["x"].attempt == 2
    # a delete and a new run of the other workflow
    run = bus.snapshot("good").run
    bus.call(lambda js: ops.delete(js, "good", run))
    wait_until(lambda: bus.snapshot("good") is None, 30, "good to be deleted")
    again, _ = bus.submit(good)
    snap = bus.wait("good", lambda s: s.run == again and s.state.value == "SUCCEEDED", 60,
                    "good to run again")
    assert set(snap.jobs) == {"a", "b"}

    # a checkpoint is used once: a monitor killed later leaves none, the next one replays
    services.kill("monitor", signal.SIGKILL)
    assert _checkpoint(bus) is None
    services.start("monitor")
    bus.submit(flaky)
    bus.wait("flaky", lambda s: s.run != first and s.state.value == "SUCCEEDED", 60,
             "flaky to run again")
    assert bus.snapshot("good").run == again
    assert "Traceback" not in (tmp_path / "monitor.log").read_text()
