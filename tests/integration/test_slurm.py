"""The Slurm executor on a real single-node Slurm, locally and through an SSH login node."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import slurmcluster, sshhosts
from tests.conftest import cli, wait_until, write_workflow
from tests.helpers import status

why = slurmcluster.available()
pytestmark = [pytest.mark.integration, pytest.mark.slurm]
if why:
    pytestmark.append(pytest.mark.skip(reason=why))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurmcluster.Slurm]:
    cluster = slurmcluster.Slurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


def run(home: Path, wf: Path, slurm: slurmcluster.Slurm, *extra: str, timeout: float = 240):
    return cli(home, "run", str(wf), *extra, timeout=timeout,
               env={**slurm.env, "JOBMESH_HOME": str(home)})



def node(tmp_path: Path, **attrs: object) -> dict[str, object]:
    return {"kind": "slurm", "workdir": str(tmp_path / "slurm-runs"), **attrs}


def start_slurm_stack(services, slurm: slurmcluster.Slurm) -> None:
    os.environ["SLURM_CONF"] = slurm.env["SLURM_CONF"]  # the executor process inherits it
    os.environ["JOBMESH_SQUEUE_INTERVAL"] = slurm.env["JOBMESH_SQUEUE_INTERVAL"]
    try:
        services.start("scheduler")
        services.start("monitor")
        services.start("executor:slurm", "--kind", "slurm")
    finally:
        del os.environ["SLURM_CONF"], os.environ["JOBMESH_SQUEUE_INTERVAL"]


def test_local_slurm_slurm_local_succeeds_with_job_ids(slurm, tmp_path: Path,
                                                       home: Path) -> None:
    script = ("#!/bin/bash\n#SBATCH --ntasks=1\n#SBATCH --comment=from-the-script\n"
              "echo \"on slurm job $SLURM_JOB_ID\"\njobmesh progress 50 -m half\n"
              "cat data.txt > data2.txt; echo step >> data2.txt\n")
    wf = write_workflow(tmp_path, "hpc", {
        "prep": {"exec": "echo local > data.txt", "outputs": ["data.txt"]},
        "sim.sh": node(tmp_path, partition="debug", time="2", inputs=["data.txt"],
                       outputs=["data2.txt"]),
        "post": node(tmp_path, exec="cat data2.txt; echo done", inputs=["data2.txt"],
                     sbatch=["--ntasks=1"]),
        "report": {"exec": 'cat "$JOBMESH_WORKFLOW_DIR/data2.txt"'},
    }, ["prep,sim.sh,post,report"], files={"sim.sh": script})
    res = run(home, wf, slurm)
    assert res.returncode == 0, res.stderr + res.stdout
    jobs = status(home, "hpc", env=slurm.env)["jobs"]
    for name in ("sim.sh", "post"):
        jid = jobs[name]["native_id"]
        assert jid.isdigit(), jid
        assert slurm.state(jid) == "COMPLETED"
    log = Path(jobs["sim.sh"]["run_dir"], "job.log").read_text()
    assert f"on slurm job {jobs['sim.sh']['native_id']}" in log
    batch = Path(jobs["sim.sh"]["run_dir"], "batch.sh").read_text()
    assert "#SBATCH --comment=from-the-script" in batch and "#SBATCH --partition=debug" in batch
    assert (tmp_path / "data2.txt").read_text() == "local\nstep\n"
    assert "native id" in res.stdout and jobs["sim.sh"]["native_id"] in res.stdout


def test_failing_slurm_job_fails_workflow_and_skips(slurm, tmp_path: Path, home: Path) -> None:
    wf = write_workflow(tmp_path, "hpcfail", {
        "bad": node(tmp_path, exec="echo failing; exit 7"),
        "after": node(tmp_path, exec="true"),
    }, ["bad,after"])
    res = run(home, wf, slurm)
    assert res.returncode == 1
    jobs = status(home, "hpcfail", env=slurm.env)["jobs"]
    assert jobs["bad"]["state"] == "FAILED" and jobs["bad"]["exit_code"] == 7
    assert "exit code 7" in jobs["bad"]["reason"]
    assert jobs["after"]["state"] == "SKIPPED"
    assert slurm.state(jobs["bad"]["native_id"]) == "FAILED"


def test_cancel_scancels_and_slurm_shows_cancelled(slurm, tmp_path: Path, home: Path, bus,
                                                   services) -> None:
    wf = write_workflow(tmp_path, "hpccancel", {"long": node(tmp_path, exec="sleep 300")}, [])
    start_slurm_stack(services, slurm)
    run_id, _ = bus.submit(wf)
    snap = bus.wait("hpccancel", lambda s: s.jobs["long"].state.value == "RUNNING", 60,
                    "the Slurm job to run")
    jid = snap.jobs["long"].native_id
    from jobmesh.common import ops

    bus.call(lambda js: ops.cancel(js, "hpccancel", run_id))
    snap = bus.wait("hpccancel", lambda s: s.state.terminal, 60, "the cancel to land")
    assert snap.jobs["long"].state.value == "CANCELED"
    wait_until(lambda: slurm.state(jid) == "CANCELLED", 30, "Slurm to show CANCELLED")


def test_executor_restart_reattaches_by_id_without_resubmitting(slurm, tmp_path: Path,
                                                                home: Path, bus,
                                                                services) -> None:
    gate = tmp_path / "go"
    wf = write_workflow(tmp_path, "hpcattach", {"wait": node(
        tmp_path, exec=f"echo x >> {tmp_path}/count; while [ ! -e {gate} ]; do sleep 0.1; "
                       "done")}, [])
    os.environ["SLURM_CONF"] = slurm.env["SLURM_CONF"]
    os.environ["JOBMESH_SQUEUE_INTERVAL"] = slurm.env["JOBMESH_SQUEUE_INTERVAL"]
    try:
        services.start("scheduler")
        services.start("monitor")
        services.start("executor:slurm", "--kind", "slurm")
        bus.submit(wf)
        snap = bus.wait("hpcattach", lambda s: s.jobs["wait"].state.value == "RUNNING", 60,
                        "the Slurm job to run")
        jid = snap.jobs["wait"].native_id
        services.kill("executor:slurm", signal.SIGKILL)
        gate.touch()
        services.start("executor:slurm", "--kind", "slurm")
    finally:
        del os.environ["SLURM_CONF"], os.environ["JOBMESH_SQUEUE_INTERVAL"]
    snap = bus.wait("hpcattach", lambda s: s.state.terminal, 60, "the workflow to end")
    assert snap.state.value == "SUCCEEDED" and snap.jobs["wait"].native_id == jid
    assert (tmp_path / "count").read_text() == "x\n"
    names = slurm.run("squeue", "-h", "-t", "all", "-o", "%j").stdout.split()
    assert sum(1 for n in names if n.startswith("jm-hpcattach-wait-1-")) == 1


def test_slurmctld_outage_backs_off_and_recovers(slurm, tmp_path: Path, home: Path, bus,
                                                 services) -> None:
    gate = tmp_path / "go"
    wf = write_workflow(tmp_path, "hpcoutage", {"job": node(
        tmp_path, exec=f"while [ ! -e {gate} ]; do sleep 0.1; done; echo survived")}, [])
    start_slurm_stack(services, slurm)
    bus.submit(wf)
    bus.wait("hpcoutage", lambda s: s.jobs["job"].state.value == "RUNNING", 60, "the job")
    slurm.stop_daemon("slurmctld")
    try:
        bus.wait("hpcoutage", lambda s: "unreachable" in (s.jobs["job"].msg or ""), 30,
                 "the outage to be reported")
        gate.touch()
        time.sleep(20)  # the outage itself: slurmctld stays down for 20 seconds
    finally:
        slurm.start_ctld()
    snap = bus.wait("hpcoutage", lambda s: s.state.terminal, 120, "the recovery")
    assert snap.state.value == "SUCCEEDED"
    assert "back" in (snap.jobs["job"].msg or "")
    assert Path(snap.jobs["job"].run_dir, "job.log").read_text().endswith("survived\n")


def test_native_dependencies_queue_the_chain_in_slurm(slurm, tmp_path: Path, home: Path, bus,
                                                      services) -> None:
    """slurm_dependencies: true submits s2 and s3 while s1 still runs; they wait in
    Slurm's queue (reason Dependency) and the chain ends as usual."""
    from rich.console import Console

    from jobmesh.cli.view import final_table

    gate, out = tmp_path / "go", tmp_path / "chain.txt"
    wf = write_workflow(tmp_path, "hpcchain", {
        "s1": node(tmp_path, exec=f"while [ ! -e {gate} ]; do sleep 0.1; done; echo one > {out}"),
        "s2": node(tmp_path, exec=f"echo two >> {out}"),
        "s3": node(tmp_path, exec=f"echo three >> {out}"),
    }, ["s1,s2,s3"], slurm_dependencies=True)
    start_slurm_stack(services, slurm)
    bus.submit(wf)

    def chained(s: object) -> bool:
        j = s.jobs  # type: ignore[attr-defined]
        return j["s1"].state.value == "RUNNING" and all(
            j[n].state.value == "QUEUED" and j[n].reason == "Dependency" for n in ("s2", "s3"))

    snap = bus.wait("hpcchain", chained, 90, "s2 and s3 to wait in Slurm's queue")
    ids = {n: snap.jobs[n].native_id for n in ("s1", "s2", "s3")}
    assert slurm.state(ids["s3"]) == "PENDING"
    run_dir = Path(bus.call(lambda js: _run_dir(js, "hpcchain")), "s3", "1")
    batch = (run_dir / "batch.sh").read_text()
    assert f"#SBATCH --dependency=afterok:{ids['s2']}" in batch
    assert "#SBATCH --kill-on-invalid-dep=yes" in batch
    console = Console(record=True, width=200)
    console.print(final_table(snap))
    assert "Dependency" in console.export_text()  # what 'jobmesh status' shows
    gate.touch()
    snap = bus.wait("hpcchain", lambda s: s.state.terminal, 90, "the chain to finish")
    assert snap.state.value == "SUCCEEDED"
    assert out.read_text() == "one\ntwo\nthree\n"
    assert all(slurm.state(i) == "COMPLETED" for i in ids.values())


async def _run_dir(js: object, wf: str) -> str:
    from jobmesh.common import ops

    snap = await ops.snapshot(js, wf)
    return str(Path(snap.jobs["s1"].run_dir).parent.parent)


def test_native_dependencies_failure_skips_the_queued_chain(slurm, tmp_path: Path,
                                                            home: Path) -> None:
    ran = tmp_path / "ran"
    wf = write_workflow(tmp_path, "hpcchainfail", {
        "s1": node(tmp_path, exec="sleep 2; exit 3", slurm_dependencies=True),
        "s2": node(tmp_path, exec=f"touch {ran}", slurm_dependencies=True),
        "s3": node(tmp_path, exec=f"touch {ran}", slurm_dependencies=True),
        "other": {"exec": "true"},
    }, ["s1,s2,s3"])
    res = run(home, wf, slurm, "--parallel", "8")  # chained jobs hold a slot while queued
    assert res.returncode == 1, res.stderr + res.stdout
    jobs = status(home, "hpcchainfail", env=slurm.env)["jobs"]
    assert jobs["s1"]["state"] == "FAILED" and jobs["s1"]["exit_code"] == 3
    assert jobs["other"]["state"] == "SUCCEEDED"
    for name in ("s2", "s3"):
        assert jobs[name]["state"] == "SKIPPED", jobs[name]
        assert "upstream" in jobs[name]["reason"]
        jid = jobs[name]["native_id"]
        assert jid and slurm.state(jid) == "CANCELLED"  # Slurm dropped it, it never ran
    assert not ran.exists()


def test_slurm_through_an_ssh_login_node(slurm, tmp_path: Path, home: Path,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    if sshhosts.available():
        pytest.skip(sshhosts.available())
    lab = sshhosts.Lab(tmp_path_factory.mktemp("login"))
    login = lab.loopback("login")
    try:
        wf = write_workflow(tmp_path, "hpcssh", {"remote": {
            **lab.node(login, exec="echo via login node $SLURM_JOB_ID"),
            "kind": "slurm", "slurm_conf": str(slurm.conf)}}, [])
        res = run(home, wf, slurm)
        assert res.returncode == 0, res.stderr + res.stdout
        job = status(home, "hpcssh", env=slurm.env)["jobs"]["remote"]
        assert job["native_id"].isdigit() and slurm.state(job["native_id"]) == "COMPLETED"
        assert login.logins() == 1
    finally:
        lab.stop()
