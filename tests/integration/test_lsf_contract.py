"""Contract tests for the LSF executor: no LSF can run here, so stand-in bsub, bjobs and
bkill (tests/fakelsf/lsf.py) print LSF 10.1's documented formats and really run jobs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli, write_workflow

pytestmark = pytest.mark.integration


@pytest.fixture
def lsf_env(tmp_path: Path, home: Path) -> dict[str, str]:
    bindir = tmp_path / "lsfbin"
    bindir.mkdir()
    for cmd in ("bsub", "bjobs", "bkill"):
        (bindir / cmd).symlink_to(ROOT / "tests" / "fakelsf" / "lsf.py")
    (ROOT / "tests" / "fakelsf" / "lsf.py").chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
            "FAKE_LSF_DIR": str(tmp_path / "lsfstate"), "JOBMESH_HOME": str(home)}


def status(home: Path, name: str, env: dict[str, str]) -> dict:
    res = cli(home, "status", name, "-o", "json", env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_lsf_contract_chain_failure_and_directives(tmp_path: Path, home: Path,
                                                   lsf_env: dict[str, str]) -> None:
    runs = str(tmp_path / "lsf-runs")
    wf = write_workflow(tmp_path, "lsfwf", {
        "prep": {"exec": "echo local > data.txt", "outputs": ["data.txt"]},
        "compute": {"kind": "lsf", "workdir": runs, "queue": "short", "time": "5",
                    "exec": "cat data.txt; jobmesh progress 100 -m lsf-done",
                    "inputs": ["data.txt"]},
        "broken": {"kind": "lsf", "workdir": runs, "exec": "exit 4"},
        "after": {"kind": "lsf", "workdir": runs, "exec": "true"},
    }, ["prep,compute", "broken,after"])
    res = cli(home, "run", str(wf), env=lsf_env, timeout=180)
    assert res.returncode == 1, res.stderr
    jobs = status(home, "lsfwf", lsf_env)["jobs"]
    assert jobs["compute"]["state"] == "SUCCEEDED" and jobs["compute"]["msg"] == "lsf-done"
    assert jobs["compute"]["native_id"].isdigit()
    script = Path(jobs["compute"]["run_dir"], "batch.sh").read_text()
    assert "#BSUB -q short" in script and "#BSUB -W 5" in script
    assert "#BSUB -J jm-lsfwf-compute-1-" in script
    assert Path(jobs["compute"]["run_dir"], "job.log").read_text().startswith("local")
    assert jobs["broken"]["state"] == "FAILED" and jobs["broken"]["exit_code"] == 4
    assert jobs["after"]["state"] == "SKIPPED"


def test_lsf_contract_cancel_uses_bkill(tmp_path: Path, home: Path, lsf_env: dict[str, str],
                                        nats, bus, services) -> None:
    wf = write_workflow(tmp_path, "lsfcancel", {"long": {
        "kind": "lsf", "workdir": str(tmp_path / "lsf-runs"), "exec": "sleep 300"}}, [])
    saved = dict(os.environ)
    os.environ.update(lsf_env)
    try:
        services.start("scheduler")
        services.start("monitor")
        services.start("executor:lsf", "--kind", "lsf")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    run_id, _ = bus.submit(wf)
    bus.wait("lsfcancel", lambda s: s.jobs["long"].state.value == "RUNNING", 30, "RUN")
    from jobmesh.common import ops

    bus.call(lambda js: ops.cancel(js, "lsfcancel", run_id))
    snap = bus.wait("lsfcancel", lambda s: s.state.terminal, 30, "the cancel")
    assert snap.jobs["long"].state.value == "CANCELED"
    jid = snap.jobs["long"].native_id
    assert (Path(lsf_env["FAKE_LSF_DIR"]) / jid / "stat").read_text() == "EXIT"
