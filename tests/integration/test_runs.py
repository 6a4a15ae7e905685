"""Run history against the real stack: `jobmesh runs`, `jobmesh status --run`, and
GET /api/workflows/{name}/runs[/{run}] on a `jobmesh up` (issue 20)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import cli, wait_until, write_workflow

pytestmark = pytest.mark.integration


def _flaky(tmp_path: Path) -> Path:
    """a then b; b fails while the file 'fail' exists next to the workflow."""
    flag = tmp_path / "wf" / "fail"
    return write_workflow(tmp_path / "wf", "hist", {
        "a": {"exec": "echo a"},
        "b": {"exec": f"test ! -e {flag}"}}, ["a,b"])


def test_cli_lists_runs_and_shows_an_older_one(home: Path, tmp_path: Path) -> None:
    wf = _flaky(tmp_path)
    (tmp_path / "wf" / "fail").write_text("")
    assert cli(home, "run", str(wf), "-q").returncode == 1
    (tmp_path / "wf" / "fail").unlink()
    assert cli(home, "run", str(wf), "-q", "--restart").returncode == 0

    res = cli(home, "runs", "hist", "-o", "json")
    assert res.returncode == 0, res.stderr
    runs = json.loads(res.stdout)["runs"]
    assert [r["state"] for r in runs] == ["SUCCEEDED", "FAILED"]  # newest first
    assert [r["current"] for r in runs] == [True, False]
    old = runs[1]
    assert old["counts"] == {"SUCCEEDED": 1, "FAILED": 1} and old["jobs"] == 2
    assert old["duration"] is not None and old["duration"] >= 0
    assert old["replaced_by"] == runs[0]["run"]

    table = cli(home, "runs", "hist")
    assert table.returncode == 0 and old["run"] in table.stdout and "(current)" in table.stdout
    assert "durations, oldest to newest" in table.stderr

    res = cli(home, "status", "hist", "--run", old["run"], "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["run"], doc["state"]) == (old["run"], "FAILED")
    assert doc["jobs"]["b"]["state"] == "FAILED" and doc["jobs"]["b"]["exit_code"] == 1
    res = cli(home, "status", "hist", "--run", old["run"], "--job", "b", "-o", "json")
    assert res.returncode == 0 and json.loads(res.stdout)["state"] == "FAILED"

    res = cli(home, "status", "hist", "--run", "20200101T000000-dead")
    assert res.returncode == 1
    assert "has no run '20200101T000000-dead'" in res.stderr and "jobmesh runs hist" in res.stderr
    res = cli(home, "status", "hist", "--run", "../x")
    assert res.returncode == 2 and "invalid run id" in res.stderr
    assert "Traceback" not in res.stderr
    res = cli(home, "runs", "nosuch")
    assert res.returncode == 1 and "no workflow named 'nosuch'" in res.stderr


@pytest.fixture
def api(home: Path) -> Iterator[httpx.Client]:
    res = cli(home, "up", "--port", "0", timeout=90)
    assert res.returncode == 0, res.stderr + res.stdout
    url = json.loads((home / "service.json").read_text())["url"]
    token = (home / "gateway.token").read_text().strip()
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        yield client
    assert cli(home, "down", timeout=90).returncode == 0


def _run_to_end(api: httpx.Client, name: str, restart: bool = False) -> str:
    r = api.post(f"/api/workflows/{name}/run", json={"restart": restart})
    assert r.status_code == 202, r.text
    run = r.json()["run"]

    def ended() -> bool:
        status = api.get(f"/api/workflows/{name}").json()["status"]
        return status["run"] == run and status["state"] in ("SUCCEEDED", "FAILED")
    wait_until(ended, 60, f"run {run} to end")
    return str(run)


def test_rest_lists_two_runs_and_returns_the_older(api: httpx.Client, home: Path,
                                                   tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", "hist", {"a": {"exec": "echo a"},
                                                  "b": {"exec": "echo b"}}, ["a,b"])
    r = api.post("/api/workflows", files={"file": ("hist.yaml", wf.read_bytes())})
    assert r.status_code == 201, r.text
    assert api.get("/api/workflows/hist/runs").json()["runs"] == []  # uploaded, never run

    first = _run_to_end(api, "hist")
    second = _run_to_end(api, "hist", restart=True)

    def two() -> list | None:
        runs = api.get("/api/workflows/hist/runs").json()["runs"]
        return runs if len(runs) == 2 else None
    runs = wait_until(two, 30, "two runs listed")
    assert [r["run"] for r in runs] == [second, first]
    assert [r["current"] for r in runs] == [True, False]
    assert all(r["state"] == "SUCCEEDED" and r["counts"] == {"SUCCEEDED": 2} for r in runs)
    assert all(r["started"] and r["ended"] and r["duration"] is not None for r in runs)

    old = api.get(f"/api/workflows/hist/runs/{first}")
    assert old.status_code == 200, old.text
    doc = old.json()
    assert (doc["run"], doc["state"], doc["current"]) == (first, "SUCCEEDED", False)
    assert set(doc["status"]["jobs"]) == {"a", "b"}
    assert doc["status"]["jobs"]["b"]["started"] and doc["status"]["jobs"]["b"]["ended"]
    assert set(doc["queued"]) == {"a", "b"}  # when each job was released to its pool
    assert doc["queued"]["b"] <= doc["status"]["jobs"]["b"]["started"]
    cur = api.get(f"/api/workflows/hist/runs/{second}").json()
    assert cur["current"] is True and cur["status"]["run"] == second

    missing = api.get("/api/workflows/hist/runs/20200101T000000-dead")
    assert missing.status_code == 404
    assert "has no run '20200101T000000-dead'" in missing.json()["detail"]
    for bad in ("r.1", "a%2A", "x" * 65):
        r = api.get(f"/api/workflows/hist/runs/{bad}")
        assert r.status_code == 422 and "invalid run id" in r.json()["detail"], (bad, r.text)
    assert api.get("/api/workflows/nosuch/runs").status_code == 404
    assert api.get("/api/workflows/nosuch/runs/20200101T000000-dead").status_code == 404
    assert api.get("/api/workflows/bad.name/runs").status_code == 422

    paths = api.get("/openapi.json").json()["paths"]
    assert "/api/workflows/{name}/runs" in paths and "/api/workflows/{name}/runs/{run}" in paths
    assert "404" in paths["/api/workflows/{name}/runs/{run}"]["get"]["responses"]

    # each run's graph as it ended
    svg = wait_until(lambda: (r := api.get(f"/api/workflows/hist/runs/{first}/graph.svg"))
                     .status_code == 200 and r, 30, "the first run's graph")
    assert svg.headers["content-type"] == "image/svg+xml" and b'data-job="b"' in svg.content
    r = api.get("/api/workflows/hist/runs/20200101T000000-dead/graph.svg")
    assert r.status_code == 404 and "no graph kept" in r.json()["detail"]
    assert api.get("/api/workflows/hist/runs/r.1/graph.svg").status_code == 422

    # the same over the API from the CLI (service mode)
    res = cli(home, "workflow", "runs", "hist", "-o", "json")
    assert res.returncode == 0, res.stderr
    assert [r["run"] for r in json.loads(res.stdout)["runs"]] == [second, first]
    res = cli(home, "workflow", "runs", "hist")
    assert res.returncode == 0 and first in res.stdout and "(current)" in res.stdout
    res = cli(home, "workflow", "show", "hist", "--run", first, "-o", "json")
    assert res.returncode == 0 and json.loads(res.stdout)["status"]["run"] == first
    res = cli(home, "workflow", "show", "hist", "--run", first)
    assert res.returncode == 0 and f"hist ({first}): SUCCEEDED" in res.stdout
    res = cli(home, "workflow", "show", "hist", "--run", "r.1")
    assert res.returncode == 2 and "invalid run id" in res.stderr
    res = cli(home, "workflow", "show", "hist", "--run", "20200101T000000-dead")
    assert res.returncode == 1 and "has no run" in res.stderr

    # deleting the workflow takes its history with it
    assert api.delete("/api/workflows/hist").status_code == 200
    wait_until(lambda: api.get("/api/workflows/hist/runs").status_code == 404, 30,
               "the history to go")
    wait_until(lambda: api.get(f"/api/workflows/hist/runs/{first}/graph.svg").status_code
               == 404, 30, "the kept graphs to go")


def test_only_the_last_runs_are_kept(home: Path, tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", "keep", {"a": {"exec": "true"}}, [])
    env = {**os.environ, "JOBMESH_KEEP_RUNS": "2"}
    ids = []
    for _ in range(3):
        res = cli(home, "run", str(wf), "-q", "--restart", env=env)
        assert res.returncode == 0, res.stderr
        ids.append(re.search(r"run (\S+),", res.stderr).group(1))
    res = cli(home, "runs", "keep", "-o", "json", env=env)
    assert res.returncode == 0, res.stderr
    assert [r["run"] for r in json.loads(res.stdout)["runs"]] == [ids[2], ids[1]]
    res = cli(home, "status", "keep", "--run", ids[1], "-o", "json", env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["state"] == "SUCCEEDED"
    res = cli(home, "status", "keep", "--run", ids[0], env=env)
    assert res.returncode == 1 and "older than the runs kept" in res.stderr


def test_a_run_replaced_before_its_graph_was_drawn_keeps_its_graph(
        tmp_path: Path, services: Any, bus: Any) -> None:
    """The monitor learns of a run's end and of the next run in one batch (it was down, or
    the next run came at once): the first run's final graph is still drawn and kept."""
    wf = write_workflow(tmp_path / "wf", "quick", {"a": {"exec": "echo a"},
                                                   "b": {"exec": "echo b"}}, ["a,b"])
    services.start("scheduler")
    services.start("executor", "--pool", "local", "--kind", "local")

    def done(run: str) -> bool:
        return sum(1 for ev in bus.events("quick")
                   if ev.type == "succeeded" and ev.run == run) == 2
    first, _ = bus.submit(wf)
    wait_until(lambda: done(first), 60, "the first run's two jobs to succeed")
    second, _ = bus.submit(wf)
    wait_until(lambda: done(second), 60, "the second run's two jobs to succeed")

    services.start("monitor")  # it folds both runs in one catch-up
    bus.wait("quick", lambda s: s.run == second and s.state.value == "SUCCEEDED", 60,
             "the monitor to show the second run")
    from jobmesh.common import subjects
    from jobmesh.monitor import history

    async def graph(js: Any, run: str) -> bytes | None:
        obj = await js.object_store(subjects.OBJ_GRAPHS)
        try:
            return (await obj.get(history.graph_key("quick", run))).data
        except Exception:
            return None
    svg = wait_until(lambda: bus.call(lambda js: graph(js, first)), 30,
                     "the first run's graph in the store")
    assert b'data-job="b"' in svg and b"SUCCEEDED" in svg.upper()
    assert "Traceback" not in (tmp_path / "monitor.log").read_text()
