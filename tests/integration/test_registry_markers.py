"""The executions registry's delete markers (one per finished job) do not pile up: the
last executor of a pool purges them when it stops cleanly, and an executor that starts
and counts many of them purges the old ones in the background (adopt.purge_markers);
the entries of jobs still running are kept. Real nats-server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import cli, run_async

pytestmark = pytest.mark.integration


def test_old_delete_markers_are_purged_and_live_entries_kept(bus: Any,
                                                              monkeypatch: Any) -> None:
    from jobmesh.common import subjects
    from jobmesh.executor import adopt

    monkeypatch.setattr(adopt, "MARKER_AGE", 0.0)  # every marker counts as old here
    finished = adopt.MARKERS_PURGE_AT + 50

    async def go(js: Any) -> tuple[int, int, bytes]:
        kv = await js.key_value(subjects.KV_EXECUTIONS)
        for i in range(finished):
            await kv.put(f"local.wf.job{i}.1", b'{"x": 1}')
            await kv.delete(f"local.wf.job{i}.1")
            if i == finished // 2:  # a job still running, between finished ones
                await kv.put("local.wf.running.1", b'{"still": "running"}')
        await kv.put("other.wf.job.1", b"{}")  # another pool's entry and marker
        await kv.delete("other.wf.job.1")
        stream = f"KV_{subjects.KV_EXECUTIONS}"
        before = (await js.stream_info(stream)).state.messages
        await adopt.purge_markers(js, kv, finished, pool="local")
        after = (await js.stream_info(stream)).state.messages
        return before, after, bytes((await kv.get("local.wf.running.1")).value or b"")

    before, after, running = bus.call(go)
    assert before >= finished + 1
    assert after == 2, (f"{after} messages left in the registry, want the running job's "
                        "and the other pool's marker")
    assert running == b'{"still": "running"}'


def test_few_markers_are_left_alone(bus: Any) -> None:
    from jobmesh.common import subjects
    from jobmesh.executor import adopt

    async def go(js: Any) -> int:
        kv = await js.key_value(subjects.KV_EXECUTIONS)
        for i in range(5):
            await kv.put(f"local.wf.j{i}.1", b"{}")
            await kv.delete(f"local.wf.j{i}.1")
        await adopt.purge_markers(js, kv, 5)
        return int((await js.stream_info(f"KV_{subjects.KV_EXECUTIONS}")).state.messages)

    assert bus.call(go) == 5


def registry_counts(home: Path) -> tuple[int, int, list[str]]:
    """(messages left, messages ever written, live keys) of the home's executions
    registry, read from its own store after the command that used it has stopped."""
    from jobmesh.cli import natsserver
    from jobmesh.common import bus as jbus
    from jobmesh.common import subjects
    from jobmesh.common.settings import Settings

    token = (home / "nats.token").read_text().strip()
    # the command's server may still be flushing the store as it stops: wait for it (it
    # holds the home's lock until it has exited), as the next command would
    lock = natsserver.take_lock(home)
    server = natsserver.start(home / "nats", token)
    try:
        async def go() -> tuple[int, int, list[str]]:
            nc = await jbus.connect(Settings(nats_url=server.url, nats_token=token), "test")
            try:
                js = nc.jetstream()
                info = await js.stream_info(f"KV_{subjects.KV_EXECUTIONS}")
                kv = await js.key_value(subjects.KV_EXECUTIONS)
                watcher = await jbus.kv_watch(kv, headers_only=True)  # (nats-py's keys()
                live = []  # ends early at times: test_kv_watch.py)
                async for entry in watcher:
                    if entry is None:
                        break
                    if entry.operation not in ("DEL", "PURGE"):
                        live.append(entry.key)
                await jbus.stop_watch(js, watcher)
                return int(info.state.messages), int(info.state.last_seq), live
            finally:
                await nc.close()

        return run_async(go())  # type: ignore[no-any-return]
    finally:
        server.stop()
        natsserver.release_lock(lock)


def test_quick_jobs_are_not_written_to_the_registry(tmp_path: Path, home: Path) -> None:
    """A local job that ends within the executor's QUICK window has no registry entry
    (nor delete marker); a longer one has both. Each still reports started, then its end,
    and ran once."""
    import json

    from jobmesh.executor import app

    assert app.QUICK < 1
    quick = 30
    wf = tmp_path / "mixed.yaml"
    wf.write_text(yaml.safe_dump({"name": "mixed", "workflow": {"nodes": {
        "q": {"exec": f"echo x >> {tmp_path}/q-$JOBMESH_JOB", "foreach": {"i": f"[1-{quick}]"}},
        "long": {"exec": "sleep 1"}}}}))
    res = cli(home, "run", str(wf), "--quiet", timeout=120)
    assert res.returncode == 0, res.stderr
    _left, written, live = registry_counts(home)
    assert not live, f"registry entries left after the run: {live[:5]}"
    # before: 2 writes a job (62); a quick job slowed past QUICK by a busy machine adds 2
    assert 2 <= written <= quick + 2, (f"{written} registry writes for {quick} quick jobs "
                                       "and a long one")
    assert sorted(p.read_text() for p in tmp_path.glob("q-*")) == ["x\n"] * quick
    (state,) = home.glob("runs/mixed/*/state.json")
    jobs = json.loads(state.read_text())["jobs"]
    assert all(j["state"] == "SUCCEEDED" and j["started"] and j["ended"] >= j["started"]
               for j in jobs.values()), jobs


def test_a_clean_stop_leaves_no_markers_for_the_next_start(tmp_path: Path, home: Path) -> None:
    """`jobmesh run` of a sweep of 1,100 jobs: its executor, the only one of its pool,
    purges the finished jobs' delete markers when it stops, so the next command in the
    home does not read them again. Checked on the home's own store, reopened after."""
    from jobmesh.executor import adopt

    size = adopt.MARKERS_PURGE_AT + 100
    wf = tmp_path / "sweep.yaml"
    wf.write_text(yaml.safe_dump({"name": "sweep", "workflow": {"nodes": {
        # longer than the executor's QUICK window, so every job is written to the registry
        "train": {"exec": "sleep 0.3", "foreach": {"i": f"[1-{size}]"}}}}}))
    res = cli(home, "run", str(wf), "--quiet", "-p", "100", timeout=300)
    assert res.returncode == 0, res.stderr
    left, written, live = registry_counts(home)
    assert not live, f"{len(live)} registry entries left after the run: {live[:5]}"
    assert written >= 2 * size, f"only {written} registry writes for {size} jobs"
    assert left <= size // 20, (f"{left} of {size} finished jobs' delete markers are still "
                                "in the registry after a clean stop")
