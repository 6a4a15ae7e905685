"""Control flow on the real stack: foreach sweeps, dynamic fan-out, when:, repeat:, the
variables of the CLI and the REST API, and the errors `jobmesh validate` reports."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobmesh.common import subjects
from tests.helpers import ROOT, cli, status, wait_until, write_workflow

pytestmark = pytest.mark.integration
SWEEP = str(ROOT / "examples" / "sweep.yaml")



def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_three_by_three_sweep_runs_nine_jobs_and_fan_in_waits(home: Path) -> None:
    res = cli(home, "run", SWEEP, "-p", "4", "-v", "gpus=[a100, v100, k80]",
              "-v", "epochs=[1, 2, 3]", "-v", "repetitions=[1]")
    assert res.returncode == 0, res.stderr
    doc = status(home, "sweep")
    assert doc["state"] == "SUCCEEDED"
    train = {n: j for n, j in doc["jobs"].items() if n.startswith("train-")}
    assert len(train) == 9 and len(doc["jobs"]) == 13
    for gpu in ("a100", "v100", "k80"):
        for epochs in (1, 2, 3):
            job = train[f"train-gpu_{gpu}-epochs_{epochs}-rep_1"]
            log = Path(job["log"]).read_text()
            assert f"training mnist on {gpu} for {epochs} epochs (repetition 1)" in log
            assert job["outputs"]["gpu"] == gpu
            assert job["outputs"]["accuracy"] == round(1 - 1 / (epochs + 9), 4)
    fan_in = ts(doc["jobs"]["summarize"]["started"])
    assert fan_in >= max(ts(j["ended"]) for j in train.values()) - 0.05
    summary = Path(doc["jobs"]["summarize"]["log"]).read_text()
    # a list variable arrives as its JSON text, quotes and all (placeholder quoting)
    assert 'sweep finished: every training run of ["a100","v100","k80"] x [1,2,3] x [1]' \
        in summary


def dynamic_workflow(folder: Path, items: list[Any]) -> Path:
    chunks = json.dumps(items)
    return write_workflow(folder, "fanout", {
        "split": {"exec": f"echo '# jobmesh output chunks={chunks}'"},
        "work": {"foreach": {"chunk": "{parents.split.outputs.chunks}"},
                 "exec": 'echo "# jobmesh output done={chunk}"; echo {chunk} >> '
                         '"$JOBMESH_WORKFLOW_DIR/ran"'},
        "merge": {"exec": "echo merged"},
    }, ["split,work,merge"])


def test_dynamic_fan_out_runs_five_jobs_and_status_shows_them(tmp_path: Path,
                                                              home: Path) -> None:
    wf = dynamic_workflow(tmp_path, ["a", "b", "c", "d", "e"])
    res = cli(home, "run", str(wf), "-p", "3")
    assert res.returncode == 0, res.stderr
    doc = status(home, "fanout")
    names = [f"work-chunk_{x}" for x in "abcde"]
    assert list(doc["jobs"]) == ["split", *names, "merge"]
    assert all(doc["jobs"][n]["state"] == "SUCCEEDED" for n in names)
    assert sorted((tmp_path / "ran").read_text().split()) == list("abcde")
    assert ts(doc["jobs"]["merge"]["started"]) >= max(
        ts(doc["jobs"][n]["ended"]) for n in names) - 0.05
    table = cli(home, "status", "fanout").stdout
    assert all(n in table for n in names)
    svg = next(home.glob("runs/fanout/*/fanout.svg")).read_text()
    assert all(f'data-job="{n}"' in svg for n in names) and 'data-job="work"' not in svg
    graph = cli(home, "graph", "fanout", "-o", str(tmp_path / "g.svg"))
    assert graph.returncode == 0 and 'data-job="work-chunk_e"' in (tmp_path / "g.svg").read_text()
    again = cli(home, "run", str(wf))  # the grown workflow is still the same spec
    assert again.returncode == 0 and "already succeeded" in again.stderr


def test_expansion_is_an_event_that_a_restarted_monitor_replays(tmp_path: Path, bus,
                                                                services) -> None:
    wf = dynamic_workflow(tmp_path, [1, 2, 3, 4, 5])
    services.start("scheduler")
    services.start("monitor")
    services.start("executor")
    bus.submit(wf)
    snap = bus.wait("fanout", lambda s: s.state.terminal, 60, "the workflow to end")
    assert snap.state.value == "SUCCEEDED" and len(snap.jobs) == 7 and snap.expansions == 1
    (ev,) = [e for e in bus.events("fanout") if e.type == "jobs_expanded"]
    assert ev.job == "work" and list(ev.jobs) == [f"work-chunk_{i}" for i in range(1, 6)]
    assert ("split", "work-chunk_1") in ev.edges and ("work-chunk_5", "merge") in ev.edges
    services.kill("monitor", signal.SIGKILL)
    services.kill("scheduler", signal.SIGKILL)

    async def forget(js: Any) -> None:  # so the snapshot seen next is the rebuilt one
        kv = await js.key_value(subjects.KV_WORKFLOWS)
        await kv.purge("fanout")

    bus.call(forget)
    assert bus.snapshot("fanout") is None
    services.start("scheduler")
    services.start("monitor")
    rebuilt = bus.wait("fanout", lambda s: s.state.terminal, 30, "the rebuilt snapshot")
    assert rebuilt.model_dump() == snap.model_dump()
    assert [e.type for e in bus.events("fanout")].count("jobs_expanded") == 1


def test_when_true_runs_false_skips_and_allow_failure_interplay(tmp_path: Path,
                                                                home: Path) -> None:
    wf = write_workflow(tmp_path, "cond", {
        "prepare": {"exec": "echo '# jobmesh output count=3'"},
        "deploy": {"exec": 'touch "$JOBMESH_WORKFLOW_DIR/deployed"',
                   "when": "prepare.outputs.count > 0 and env == 'prod'"},
        "dev-only": {"exec": 'touch "$JOBMESH_WORKFLOW_DIR/dev-ran"',
                     "when": "env == 'dev'"},
        "after-dev": {"exec": 'touch "$JOBMESH_WORKFLOW_DIR/after-dev-ran"'},
        "risky": {"exec": "exit 3", "allow_failure": True},
        "on-error": {"exec": 'touch "$JOBMESH_WORKFLOW_DIR/handled"',
                     "when": "risky.state == 'FAILED' and risky.exit_code == 3"},
        "on-success": {"exec": 'touch "$JOBMESH_WORKFLOW_DIR/wrong"',
                       "when": "risky.state == 'SUCCEEDED'"},
    }, ["prepare,deploy", "prepare,dev-only,after-dev", "risky,on-error", "risky,on-success"],
        variables={"env": "dev"})
    res = cli(home, "run", str(wf), "-v", "env=prod")
    assert res.returncode == 0, res.stderr  # condition-false skips are not failures
    doc = status(home, "cond")
    jobs = doc["jobs"]
    assert doc["state"] == "SUCCEEDED"
    assert jobs["deploy"]["state"] == "SUCCEEDED"
    assert (jobs["dev-only"]["state"], jobs["dev-only"]["reason"]) == (
        "SKIPPED", "condition false")
    assert (jobs["after-dev"]["state"], jobs["after-dev"]["reason"]) == (
        "SKIPPED", "an upstream job was skipped (condition false)")
    assert jobs["risky"]["state"] == "FAILED" and jobs["on-error"]["state"] == "SUCCEEDED"
    assert (jobs["on-success"]["state"], jobs["on-success"]["reason"]) == (
        "SKIPPED", "condition false")
    assert "condition false" in res.stdout
    made = {p.name for p in tmp_path.iterdir()}
    assert {"deployed", "handled"} <= made and not {"dev-ran", "after-dev-ran", "wrong"} & made


def test_repeat_until_stops_at_the_right_iteration_and_max_bounds_it(tmp_path: Path,
                                                                     home: Path) -> None:
    count = ('n=$(( $(cat "$JOBMESH_WORKFLOW_DIR/{f}" 2>/dev/null || echo 0) + 1 )); '
             'echo $n > "$JOBMESH_WORKFLOW_DIR/{f}"; echo "# jobmesh output n=$n"')
    wf = write_workflow(tmp_path, "loops", {
        "converge": {"exec": count.format(f="c1"),
                     "repeat": {"until": "outputs.n >= 3", "max": 10, "delay": "0.1s"}},
        "bounded": {"exec": count.format(f="c2"), "repeat": {"until": "outputs.n > 100",
                                                             "max": 4}},
        "after": {"exec": 'echo "# jobmesh output saw={parents.converge.outputs.n}"'},
    }, ["converge,after"])
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    jobs = status(home, "loops")["jobs"]
    assert (tmp_path / "c1").read_text().strip() == "3"
    assert (tmp_path / "c2").read_text().strip() == "4"
    assert jobs["converge"]["attempt"] == 3 and jobs["bounded"]["attempt"] == 4
    history = jobs["converge"]["attempts"]
    assert [(h["attempt"], h["iteration"], h["outputs"]["n"]) for h in history] == [
        (1, 1, 1), (2, 2, 2)]
    assert all(h["state"] == "SUCCEEDED" for h in history)
    assert jobs["after"]["outputs"] == {"saw": 3}  # ran once, after the last iteration
    assert ts(jobs["after"]["started"]) >= ts(jobs["converge"]["ended"]) - 0.05


@pytest.mark.parametrize("node,extra,field,message", [
    ("bad-expr", {"when": "env == 'prod' and"}, "when", "syntax error"),
    ("unknown-var", {"when": "stage == 'x'"}, "when", "unknown variable 'stage'"),
    ("scalar", {"foreach": {"gpu": "a100"}}, "foreach", "must be a list"),
    ("big", {"foreach": {"i": "[1-101]", "j": "[1-100]"}}, "foreach",
     "10100 jobs is more than 10000; pass --allow-large"),
])
def test_validate_names_node_and_field(tmp_path: Path, home: Path, node: str,
                                       extra: dict[str, Any], field: str,
                                       message: str) -> None:
    wf = write_workflow(tmp_path, "bad", {node: {"exec": "true", **extra}}, [],
                        variables={"env": "dev"})
    for command in ("validate", "run"):
        res = cli(home, command, str(wf))
        assert res.returncode == 2, res.stdout
        assert f"node '{node}' field '{field}'" in res.stderr and message in res.stderr
        assert "Traceback" not in res.stderr
    if node == "big":
        res = cli(home, "validate", str(wf), "--allow-large")
        assert res.returncode == 0 and "10100 jobs" in res.stdout


def test_variable_overrides_are_checked(tmp_path: Path, home: Path) -> None:
    wf = write_workflow(tmp_path, "vars", {"a": {"exec": "echo {msg}"}}, [],
                        variables={"msg": "hi"})
    res = cli(home, "validate", str(wf), "-v", "mgs=typo")
    assert res.returncode == 2 and "unknown variable 'mgs'" in res.stderr
    res = cli(home, "validate", str(wf), "-v", "novalue")
    assert res.returncode == 2 and "NAME=VALUE" in res.stderr
    res = cli(home, "run", str(wf), "-v", "msg=overridden text")
    assert res.returncode == 0, res.stderr
    log = Path(status(home, "vars")["jobs"]["a"]["log"]).read_text()
    assert "overridden text" in log


def test_rest_api_run_takes_variables(tmp_path: Path, home: Path) -> None:
    res = cli(home, "up", "--port", "0", timeout=90)
    assert res.returncode == 0, res.stderr
    url = json.loads((home / "service.json").read_text())["url"]
    try:
        wf = write_workflow(tmp_path, "api-vars", {
            "t": {"foreach": {"n": "{sizes}"}, "exec": "echo size {n} in {env}"}}, [],
            variables={"sizes": [1, 2], "env": "dev"})
        token = (home / "gateway.token").read_text().strip()  # `jobmesh up` made it
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as api:
            up = api.post("/api/workflows", files={"file": ("api-vars.yaml", wf.read_bytes())})
            assert up.status_code == 201, up.text
            bad = api.post("/api/workflows/api-vars/run", json={"variables": {"nope": 1}})
            assert bad.status_code == 422 and "unknown variable 'nope'" in bad.text
            big = api.post("/api/workflows/api-vars/run",
                           json={"variables": {"sizes": list(range(10_001))}})
            assert big.status_code == 422 and "--allow-large" in big.text
            ok = api.post("/api/workflows/api-vars/run",
                          json={"variables": {"sizes": [5, 6, 7], "env": "prod"}})
            assert ok.status_code == 202, ok.text

            def finished() -> Any:
                doc = api.get("/api/workflows/api-vars").json()["status"]
                return doc if doc and doc["state"] in ("SUCCEEDED", "FAILED") else None

            doc = wait_until(finished, 60, "the run to end", every=0.2)
        assert doc["state"] == "SUCCEEDED" and sorted(doc["jobs"]) == [
            "t-n_5", "t-n_6", "t-n_7"]
        assert "size 7 in prod" in Path(doc["jobs"]["t-n_7"]["log"]).read_text()
    finally:
        assert cli(home, "down", timeout=90).returncode == 0
