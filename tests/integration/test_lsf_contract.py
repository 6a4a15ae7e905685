"""Contract tests for the LSF executor: no LSF can run here, so stand-in bsub, bjobs and
bkill (tests/fakelsf/lsf.py) print LSF 10.1's documented formats and really run jobs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli, write_workflow
from tests.helpers import status

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
    jobs = status(home, "lsfwf", env=lsf_env)["jobs"]
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


def test_lsf_contract_foreach_is_one_job_array(tmp_path: Path, home: Path,
                                               lsf_env: dict[str, str]) -> None:
    """Three elements go out as one ``bsub -J "name[1-3]"``; each runs with its own
    $LSB_JOBINDEX, writes its own log through %I, and is followed as ``id[index]``."""
    runs = str(tmp_path / "lsf-runs")
    wf = write_workflow(tmp_path, "lsfarr", {"sweep": {
        "kind": "lsf", "workdir": runs, "foreach": {"i": "[1-3]"}, "array": 2,
        "exec": "echo value {i} index $LSB_JOBINDEX"}}, [])
    res = cli(home, "run", str(wf), "--parallel", "3", env=lsf_env, timeout=180)
    assert res.returncode == 0, res.stderr + res.stdout
    jobs = status(home, "lsfarr", env=lsf_env)["jobs"]
    arrays = [p for p in Path(lsf_env["FAKE_LSF_DIR"]).iterdir() if p.name.isdigit()]
    assert len(arrays) == 1, arrays
    master = arrays[0].name
    seen = set()
    for i in (1, 2, 3):
        job = jobs[f"sweep-i_{i}"]
        assert job["state"] == "SUCCEEDED"
        assert job["native_id"].startswith(f"{master}[") and job["native_id"].endswith("]")
        index = job["native_id"][len(master) + 1:-1]
        seen.add(index)
        log = Path(job["run_dir"], "job.log").read_text()
        assert f"value {i} index {index}" in log, log
    assert seen == {"1", "2", "3"}
    assert (Path(lsf_env["FAKE_LSF_DIR"]) / master / "name").read_text().startswith(
        "jm-lsfarr-sweep-1-a")
