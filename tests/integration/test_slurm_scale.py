"""Slurm at scale on the real single-node Slurm: site-friendly polling.

Real: slurmctld, slurmd, sbatch, squeue, sacct and the jobs. The only stand-in is a PATH
shim in front of the real ``squeue`` that records when it was called and then runs it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import slurmcluster
from tests.conftest import cli, write_workflow
from tests.helpers import status
from tests.integration.test_slurm import node

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


def counting_shim(folder: Path, command: str) -> Path:
    """A ``command`` earlier on PATH that logs each call's time, then runs the real one."""
    real = shutil.which(command)
    assert real, f"{command} not found"
    folder.mkdir(parents=True, exist_ok=True)
    calls = folder / f"{command}.calls"
    shim = folder / command
    shim.write_text(f"#!/bin/sh\ndate +%s.%N >> {calls}\nexec {real} \"$@\"\n")
    shim.chmod(0o755)
    return calls


def test_squeue_runs_at_most_once_per_interval_and_exit_files_end_jobs(
        slurm, tmp_path: Path, home: Path) -> None:
    """A chain of three short jobs with ``squeue_interval: 20``: the chain ends as soon as
    each job's exit file appears (they need no squeue to succeed), and squeue calls are at
    least 20 s apart (a 2 s grace for the clock of the shim's date)."""
    shims = tmp_path / "shims"
    calls = counting_shim(shims, "squeue")
    jobs = {name: node(tmp_path, exec=f"sleep 1; echo {name} done", squeue_interval=20)
            for name in ("a", "b", "c")}
    wf = write_workflow(tmp_path, "hpcpoll", jobs, ["a,b", "b,c"])
    env = {**slurm.env, "PATH": f"{shims}:{slurm.env['PATH']}", "JOBMESH_HOME": str(home)}
    env.pop("JOBMESH_SQUEUE_INTERVAL")  # the node's attribute decides
    res = cli(home, "run", str(wf), timeout=240, env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    got = status(home, "hpcpoll", env=slurm.env)["jobs"]
    for name in ("a", "b", "c"):
        assert got[name]["state"] == "SUCCEEDED"
        assert slurm.state(got[name]["native_id"]) in ("COMPLETED", "COMPLETING")
    times = [float(x) for x in calls.read_text().split()] if calls.exists() else []
    assert times, "the first probe asks squeue once"
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= 18 for g in gaps), f"squeue called too often: gaps {gaps}"


def test_failed_exit_file_still_gets_slurms_reason(slurm, tmp_path: Path,
                                                  home: Path) -> None:
    """With a 60 s interval, a job that exits 7 asks squeue for the reason without waiting
    out the interval, and fails with its exit code, Slurm saying FAILED."""
    wf = write_workflow(tmp_path, "hpcpollfail", {
        "bad": node(tmp_path, exec="sleep 1; exit 7", squeue_interval=60)}, [])
    env = {**slurm.env, "JOBMESH_HOME": str(home)}
    env.pop("JOBMESH_SQUEUE_INTERVAL")
    res = cli(home, "run", str(wf), timeout=240, env=env)
    assert res.returncode == 1
    job = status(home, "hpcpollfail", env=slurm.env)["jobs"]["bad"]
    assert job["state"] == "FAILED" and job["exit_code"] == 7
    assert slurm.state(job["native_id"]) == "FAILED"


def refusing_sbatch(folder: Path, most: int) -> Path:
    """A stand-in ``sbatch`` in front of the real one: while ``most`` or more jobs are
    pending or running it refuses with Slurm's own message (as a QOS MaxSubmitJobsPerUser
    limit does); otherwise it runs the real ``sbatch``, one call at a time.
    It logs "refused" or "passed"."""
    real_sbatch, real_squeue = shutil.which("sbatch"), shutil.which("squeue")
    assert real_sbatch and real_squeue
    folder.mkdir(parents=True, exist_ok=True)
    calls = folder / "sbatch.calls"
    shim = folder / "sbatch"
    shim.write_text(f"""#!/bin/sh
exec 9>{folder}/sbatch.lock
flock 9  # one check-and-submit at a time, as slurmctld counts atomically
n=$({real_squeue} -h -t PENDING,RUNNING,CONFIGURING,COMPLETING | wc -l)
if [ "$n" -ge {most} ]; then
  echo refused >> {calls}
  echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2
  echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy \
(job submit limit, user's size and/or time limits)" >&2
  exit 1
fi
echo passed >> {calls}
{real_sbatch} "$@"
""")
    shim.chmod(0o755)
    return calls


def test_submit_limit_keeps_jobs_queued_until_room_appears(slurm, tmp_path: Path,
                                                           home: Path) -> None:
    """Real: Slurm runs every job. Simulated: the submit limit (a stand-in sbatch refusing
    with Slurm's message while 2 jobs are queued). Six jobs at once (--parallel 6)
    all succeed, none FAILED, and the refusals really happened."""
    shims = tmp_path / "shims"
    calls = refusing_sbatch(shims, 2)
    jobs = {f"j{i}": node(tmp_path, exec=f"sleep 3; echo j{i} done") for i in range(6)}
    wf = write_workflow(tmp_path, "hpclimit", jobs, [])
    env = {**slurm.env, "PATH": f"{shims}:{slurm.env['PATH']}", "JOBMESH_HOME": str(home)}
    res = cli(home, "run", str(wf), "--parallel", "6", timeout=300, env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    got = status(home, "hpclimit", env=slurm.env)["jobs"]
    assert all(got[f"j{i}"]["state"] == "SUCCEEDED" for i in range(6)), got
    log = calls.read_text().split()
    assert log.count("refused") >= 1 and log.count("passed") == 6, log


def test_max_queued_keeps_jobmesh_under_the_limit(slurm, tmp_path: Path, home: Path) -> None:
    """``max_queued: 2``: jobmesh never has more than 2 jobs of the cluster submitted and
    unfinished, so the site's limit is never hit. A stand-in sbatch (then the real one)
    counts, at each call, the run directories with a Slurm id and no exit file yet, and
    the elements that call submits. Six elements of a foreach all succeed."""
    shims = tmp_path / "shims"
    shims.mkdir(parents=True)
    real = shutil.which("sbatch")
    runs = tmp_path / "slurm-runs"
    (shims / "sbatch").write_text(f"""#!/bin/sh
n=0
for d in {runs}/capped/*/[!@]*/*/; do  # run/job/attempt, not @arrays/<name>
  [ -e "$d/jobid" ] && [ ! -e "$d/exit" ] && n=$((n+1))
done
a=$(printf '%s\\n' "$@" | sed -n 's/^--array=\\([^%]*\\).*/\\1/p')
echo "$n ${{a:-single}}" >> {shims}/calls
exec {real} "$@"
""")
    (shims / "sbatch").chmod(0o755)
    jobs = {"w": node(tmp_path, foreach={"i": "[1-6]"}, max_queued=2,
                      exec="sleep 2; echo {i}")}
    wf = write_workflow(tmp_path, "capped", jobs, [])
    env = {**slurm.env, "PATH": f"{shims}:{slurm.env['PATH']}", "JOBMESH_HOME": str(home)}
    res = cli(home, "run", str(wf), "--parallel", "6", timeout=300, env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    got = status(home, "capped", env=slurm.env)["jobs"]
    assert all(j["state"] == "SUCCEEDED" for j in got.values()), got
    submitted = 0
    for line in (shims / "calls").read_text().splitlines():
        before, spec = line.split()
        size = 1 if spec == "single" else sum(
            int(b) - int(a) + 1 for a, _, b in (p.partition("-") if "-" in p else (p, "", p)
                                                for p in spec.split(",")))
        assert int(before) + size <= 2, line
        submitted += size
    assert submitted == 6
