"""Requeue, escalation and controller outages on the real single-node Slurm.

Real: slurmctld, slurmd, sbatch, squeue, ``scontrol requeue`` (Slurm kills the running
job and queues it again), Slurm's time limit (TIMEOUT), stopping and restarting
slurmctld. Simulated: after a requeue Slurm holds the job back with a BeginTime of a
couple of minutes; the test moves that start time to now (``scontrol update
StartTime=now``), as an admin could. OUT_OF_MEMORY cannot happen on this cluster (no
memory enforcement without cgroups), so memory escalation is covered by the unit tests.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import slurmcluster
from tests.conftest import cli, wait_until, write_workflow
from tests.helpers import status
from tests.integration.test_slurm import node, start_slurm_stack

why = slurmcluster.available()
pytestmark = [pytest.mark.integration, pytest.mark.slurm]
if why:
    pytestmark.append(pytest.mark.skip(reason=why))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurmcluster.Slurm]:
    cluster = slurmcluster.Slurm(tmp_path_factory.mktemp("slurm"), cpus=8)
    cluster.start()
    yield cluster
    cluster.stop()


def requeue(slurm: slurmcluster.Slurm, jid: str) -> None:
    res = slurm.run("scontrol", "requeue", jid)
    assert res.returncode == 0, res.stderr
    # Slurm holds a requeued job back (BeginTime); let it start again soon. (Not at once:
    # slurmd refuses to launch a job it killed a moment ago, "already killed".)
    wait_until(lambda: slurm.state(jid) == "PENDING", 30, "the requeued job to pend")
    res = slurm.run("scontrol", "update", f"JobId={jid}", "StartTime=now+10")
    assert res.returncode == 0, res.stderr


def twice(tmp_path: Path, gate: Path) -> str:
    """A job whose first run waits at a gate and whose second run succeeds at once."""
    runs = tmp_path / "runs.txt"
    return (f"echo run >> {runs}; if [ $(wc -l < {runs}) -ge 2 ]; then echo second run; "
            f"exit 0; fi; echo first run; while [ ! -e {gate} ]; do sleep 0.2; done")


def first_run(snap, name: str) -> bool:
    job = snap.jobs.get(name)
    if job is None or job.state.value != "RUNNING" or not job.run_dir:
        return False
    log = Path(job.run_dir, "job.log")
    return log.exists() and "first run" in log.read_text()


def test_scontrol_requeue_is_followed_in_the_same_attempt(slurm, tmp_path: Path,
                                                          home: Path, bus, services) -> None:
    gate = tmp_path / "never"
    wf = write_workflow(tmp_path, "hpcrequeue", {"job": node(
        tmp_path, exec=twice(tmp_path, gate))}, [])
    start_slurm_stack(services, slurm)
    bus.submit(wf)
    snap = bus.wait("hpcrequeue", lambda s: first_run(s, "job"), 60, "the first run")
    jid = snap.jobs["job"].native_id
    requeue(slurm, jid)
    bus.wait("hpcrequeue", lambda s: "requeued" in (s.jobs["job"].msg or "")
             or s.state.terminal, 60, "the requeue to be shown")
    snap = bus.wait("hpcrequeue", lambda s: s.state.terminal, 120, "the second run")
    job = snap.jobs["job"]
    assert snap.state.value == "SUCCEEDED" and job.state.value == "SUCCEEDED"
    assert job.attempt == 1 and job.native_id == jid
    log = Path(job.run_dir, "job.log").read_text()
    assert "first run" in log and "second run" in log and "REQUEUE" in log
    kinds = [ev.type for ev in bus.events("hpcrequeue", "job")]
    assert "failed" not in kinds and kinds.count("succeeded") == 1


def test_requeued_array_element_keeps_its_attempt(slurm, tmp_path: Path, home: Path,
                                                   bus, services) -> None:
    gate = tmp_path / "never"
    wf = write_workflow(tmp_path, "hpcrqarr", {"el": node(
        tmp_path, foreach={"i": [1, 2]},
        exec=f"if [ {{i}} = 1 ]; then {twice(tmp_path, gate)}; fi; echo element {{i}}")}, [])
    start_slurm_stack(services, slurm)
    bus.submit(wf, parallel=2)
    snap = bus.wait("hpcrqarr", lambda s: first_run(s, "el-i_1"), 90,
                    "the first run of element 1")
    jid = snap.jobs["el-i_1"].native_id
    assert "_" in jid, jid
    requeue(slurm, jid)
    snap = bus.wait("hpcrqarr", lambda s: s.state.terminal, 120, "the workflow")
    assert snap.state.value == "SUCCEEDED"
    assert snap.jobs["el-i_1"].attempt == 1 and snap.jobs["el-i_1"].native_id == jid


@pytest.mark.timeout(600)
def test_timeout_escalates_time_on_retry(slurm, tmp_path: Path, home: Path) -> None:
    """Real: Slurm's 20-second time limit ends attempt 1 (TIMEOUT; slurmctld checks limits
    about every 30 s). ``escalate: {time: 3}`` gives attempt 2 one minute (60 s, in whole
    minutes), in which the job (now quick) finishes."""
    wf = write_workflow(tmp_path, "hpcescalate", {"slow": node(
        tmp_path, exec='if [ "$JOBMESH_ATTEMPT" = 1 ]; then sleep 600; fi; echo finished',
        time="0:20", retries=1, escalate={"time": 3, "mem": 2}, mem="100M")}, [])
    res = cli(home, "run", str(wf), timeout=600, env={**slurm.env, "JOBMESH_HOME": str(home)})
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    job = status(home, "hpcescalate", env=slurm.env)["jobs"]["slow"]
    assert job["state"] == "SUCCEEDED" and job["attempt"] == 2
    second = Path(job["run_dir"])
    first = second.parent / "1"
    assert (first / "ended").read_text().strip() == "TIMEOUT"
    # attempt 1 as the user sees it (this also stands for a plain time-limit failure)
    earlier = job["attempts"][0]
    assert (earlier["attempt"], earlier["state"], earlier["reason"]) == (1, "FAILED", "timeout")
    assert "#SBATCH --time=0:20\n" in (first / "batch.sh").read_text()
    batch = (second / "batch.sh").read_text()
    assert "#SBATCH --time=1\n" in batch and "#SBATCH --mem=100M\n" in batch  # mem kept
    assert slurm.state(job["native_id"]) == "COMPLETED"
    shown = cli(home, "status", "hpcescalate", env=slurm.env).stdout
    assert "escalated for attempt 2 after TIMEOUT: time 0:20 -> 1" in shown, shown


def test_controller_restart_keeps_queued_and_running_jobs(slurm, tmp_path: Path,
                                                          home: Path, bus, services) -> None:
    """slurmctld stops while one job runs and another waits in the queue (held), then
    starts again: nothing fails, each job runs exactly once."""
    gate = tmp_path / "go"
    count = tmp_path / "count"
    wf = write_workflow(tmp_path, "hpcctld", {
        "run": node(tmp_path, exec=f"echo x >> {count}.run; "
                    f"while [ ! -e {gate} ]; do sleep 0.2; done; echo ran"),
        "wait": node(tmp_path, exec=f"echo x >> {count}.wait; echo waited",
                     sbatch=["--hold"]),
    }, [])
    start_slurm_stack(services, slurm)
    bus.submit(wf)
    snap = bus.wait("hpcctld", lambda s: s.jobs["run"].state.value == "RUNNING"
                    and s.jobs["wait"].state.value == "QUEUED"
                    and bool(s.jobs["wait"].native_id), 60, "one running, one queued")
    held = snap.jobs["wait"].native_id
    slurm.stop_daemon("slurmctld")
    try:
        bus.wait("hpcctld", lambda s: "unreachable" in (s.jobs["run"].msg or ""), 30,
                 "the outage to be shown")
        gate.touch()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the outage lasts 15 s
            snap = bus.snapshot("hpcctld")
            assert not any(j.state.value == "FAILED" for j in snap.jobs.values())
            time.sleep(0.5)
    finally:
        slurm.start_ctld()
    wait_until(lambda: slurm.run("scontrol", "release", held).returncode == 0, 30,
               "the controller to take commands")
    snap = bus.wait("hpcctld", lambda s: s.state.terminal, 120, "both jobs")
    assert snap.state.value == "SUCCEEDED", {k: (j.state, j.reason)
                                              for k, j in snap.jobs.items()}
    assert snap.jobs["wait"].native_id == held
    assert Path(f"{count}.run").read_text() == "x\n"
    assert Path(f"{count}.wait").read_text() == "x\n"


def lying_squeue(folder: Path) -> Path:
    """A stand-in ``squeue`` in front of the real one: while ``<folder>/lie`` holds
    "ID STATE once|always", the job ID's state in the output is STATE ("once": for one
    call, then the file is removed). Everything else is the real squeue's output."""
    real = shutil.which("squeue")
    assert real
    folder.mkdir(parents=True, exist_ok=True)
    lie = folder / "lie"
    shim = folder / "squeue"
    shim.write_text(f"""#!/bin/sh
out=$({real} "$@"); rc=$?
if [ -s {lie} ]; then
  read -r id state how < {lie}
  out=$(printf '%s\\n' "$out" | sed "s/^$id|[A-Z_]*|/$id|$state|/")
  [ "$how" = once ] && printf '%s\\n' "$out" | grep -q "^$id|" && rm -f {lie}
fi
printf '%s\\n' "$out"
exit $rc
""")
    shim.chmod(0o755)
    return lie


def start_with(services, slurm: slurmcluster.Slurm, shims: Path) -> None:
    saved = dict(os.environ)
    os.environ.update(SLURM_CONF=slurm.env["SLURM_CONF"], JOBMESH_SQUEUE_INTERVAL="2",
                      PATH=f"{shims}:{os.environ['PATH']}")
    try:
        services.start("scheduler")
        services.start("monitor")
        services.start("executor:slurm", "--kind", "slurm")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_a_glimpse_of_node_fail_before_a_requeue_is_not_a_failure(
        slurm, tmp_path: Path, home: Path, bus, services) -> None:
    """Simulated: squeue says NODE_FAIL for one call (as in the moment before Slurm
    requeues a job whose node failed), then the real state again. The job is asked about
    once more before anything ends, and it runs on and succeeds in its first attempt."""
    gate = tmp_path / "go"
    lie = lying_squeue(tmp_path / "shims")
    wf = write_workflow(tmp_path, "hpcglimpse", {"job": node(
        tmp_path, exec=f"while [ ! -e {gate} ]; do sleep 0.2; done; echo fine")}, [])
    start_with(services, slurm, tmp_path / "shims")
    bus.submit(wf)
    snap = bus.wait("hpcglimpse", lambda s: s.jobs["job"].state.value == "RUNNING", 60,
                    "the job to run")
    lie.write_text(f"{snap.jobs['job'].native_id} NODE_FAIL once\n")
    wait_until(lambda: not lie.exists(), 30, "squeue to report NODE_FAIL once")
    time.sleep(3)  # two more status queries (2 s apart) must not end the job
    assert bus.snapshot("hpcglimpse").jobs["job"].state.value == "RUNNING"
    gate.touch()
    snap = bus.wait("hpcglimpse", lambda s: s.state.terminal, 60, "the job to end")
    assert snap.state.value == "SUCCEEDED" and snap.jobs["job"].attempt == 1


def test_preempted_without_requeue_fails_as_preempted_and_is_retried(
        slurm, tmp_path: Path, home: Path, bus, services) -> None:
    """Real: Slurm ends the first attempt (scancel). Simulated: squeue reports it
    PREEMPTED (a single-node Slurm has no one to preempt it). The attempt fails with the
    reason "preempted" and the retry succeeds."""
    lie = lying_squeue(tmp_path / "shims")
    wf = write_workflow(tmp_path, "hpcpreempt", {"job": node(
        tmp_path, retries=1,
        exec='if [ "$JOBMESH_ATTEMPT" = 1 ]; then sleep 600; fi; echo second attempt')}, [])
    start_with(services, slurm, tmp_path / "shims")
    bus.submit(wf)
    snap = bus.wait("hpcpreempt", lambda s: s.jobs["job"].state.value == "RUNNING", 60,
                    "the first attempt to run")
    jid = snap.jobs["job"].native_id
    lie.write_text(f"{jid} PREEMPTED always\n")
    assert slurm.run("scancel", jid).returncode == 0
    snap = bus.wait("hpcpreempt", lambda s: s.state.terminal, 120, "the retry")
    assert snap.state.value == "SUCCEEDED" and snap.jobs["job"].attempt == 2
    failed = [ev for ev in bus.events("hpcpreempt", "job") if ev.type == "failed"]
    assert [ev.reason for ev in failed] == ["preempted"] and failed[0].attempt == 1
