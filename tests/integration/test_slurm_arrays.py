"""Job arrays for ``foreach`` nodes on the real single-node Slurm.

Real: slurmctld, slurmd, sbatch (arrays), squeue and the jobs. Stand-ins: PATH shims in
front of the real ``sbatch`` and ``squeue`` that log each call and then run it. The
cluster claims 32 CPUs on this 2-core machine (slurmd's config_overrides) so tiny
elements run side by side, and MaxArraySize is 40, so a burst of elements must be split.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import slurmcluster
from tests.conftest import cli, wait_until, write_workflow
from tests.helpers import status
from tests.integration.test_slurm import node
from tests.integration.test_slurm_scale import counting_shim

why = slurmcluster.available()
pytestmark = [pytest.mark.integration, pytest.mark.slurm]
if why:
    pytestmark.append(pytest.mark.skip(reason=why))

MAX_ARRAY = 40


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurmcluster.Slurm]:
    cluster = slurmcluster.Slurm(tmp_path_factory.mktemp("slurm"), cpus=32,
                                 max_array_size=MAX_ARRAY)
    cluster.start()
    yield cluster
    cluster.stop()


def shimmed(slurm: slurmcluster.Slurm, shims: Path, home: Path) -> dict[str, str]:
    return {**slurm.env, "PATH": f"{shims}:{slurm.env['PATH']}", "JOBMESH_HOME": str(home)}


def sbatch_arrays(calls: Path) -> int:
    return len(calls.read_text().split()) if calls.exists() else 0


def test_200_element_foreach_goes_out_as_a_few_arrays(slurm, tmp_path: Path,
                                                      home: Path) -> None:
    """200 elements, each with its own state, log and <arrayid>_<index> id, submitted
    with a handful of sbatch calls (arrays of at most MaxArraySize), and squeue asked at
    most once per squeue_interval (5 s)."""
    shims = tmp_path / "shims"
    sbatch = counting_shim(shims, "sbatch")
    squeue = counting_shim(shims, "squeue")
    wf = write_workflow(tmp_path, "sweep", {"train": node(
        tmp_path, foreach={"i": "[0-199]"}, squeue_interval=5,
        exec="echo element {i} on $SLURM_ARRAY_JOB_ID/$SLURM_ARRAY_TASK_ID; "
             "jobmesh output n {i}")}, [])
    env = shimmed(slurm, shims, home)
    env.pop("JOBMESH_SQUEUE_INTERVAL")
    res = cli(home, "run", str(wf), "--parallel", "200", timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    jobs = status(home, "sweep", env=slurm.env)["jobs"]
    assert len(jobs) == 200
    arrays: dict[str, set[str]] = {}
    for name, job in jobs.items():
        assert job["state"] == "SUCCEEDED" and job["attempt"] == 1, (name, job)
        array_id, _, index = job["native_id"].partition("_")
        assert array_id.isdigit() and index.isdigit(), job["native_id"]
        assert int(index) < MAX_ARRAY
        arrays.setdefault(array_id, set()).add(index)
        i = name.rsplit("_", 1)[-1]
        log = Path(job["run_dir"], "job.log").read_text()
        assert f"element {i} on {array_id}/{index}" in log, (name, log)
        assert job["outputs"] == {"n": int(i)} or job["outputs"] == {"n": i}
    calls = sbatch_arrays(sbatch)
    assert calls == len(arrays), (calls, len(arrays))
    assert 5 <= calls <= 15, f"{calls} sbatch calls for 200 elements"
    assert all(len(idx) <= MAX_ARRAY for idx in arrays.values())
    times = [float(x) for x in squeue.read_text().split()]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= 4 for g in gaps), f"squeue called too often: gaps {gaps}"


def test_failed_element_is_retried_alone(slurm, tmp_path: Path, home: Path) -> None:
    """One element of four fails its first attempt; its retry is a single sbatch of its
    own (a plain Slurm id), the others stay elements of the one array."""
    shims = tmp_path / "shims"
    sbatch = counting_shim(shims, "sbatch")
    mark = tmp_path / "failed-once"
    wf = write_workflow(tmp_path, "retryone", {"work": node(
        tmp_path, foreach={"i": "[1-4]"}, retries=1,
        exec=f"if [ {{i}} = 3 ] && [ ! -e {mark} ]; then touch {mark}; exit 3; fi; "
             "echo ok {i}")}, [])
    res = cli(home, "run", str(wf), "--parallel", "4", timeout=300,
              env=shimmed(slurm, shims, home))
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    jobs = status(home, "retryone", env=slurm.env)["jobs"]
    again = jobs["work-i_3"]
    assert again["state"] == "SUCCEEDED" and again["attempt"] == 2
    assert again["native_id"].isdigit(), again["native_id"]
    firsts = {jobs[f"work-i_{i}"]["native_id"].split("_")[0] for i in (1, 2, 4)}
    assert len(firsts) == 1 and all("_" in jobs[f"work-i_{i}"]["native_id"]
                                    for i in (1, 2, 4))
    first_try = Path(again["run_dir"]).parent / "1"
    assert (first_try / "jobid").read_text().split("_")[0] in firsts
    assert sbatch_arrays(sbatch) == 2  # the array, then the retried element alone
    assert slurm.state(again["native_id"]) == "COMPLETED"


def test_array_false_submits_one_job_each(slurm, tmp_path: Path, home: Path) -> None:
    shims = tmp_path / "shims"
    sbatch = counting_shim(shims, "sbatch")
    wf = write_workflow(tmp_path, "noarray", {"w": node(
        tmp_path, foreach={"i": "[1-3]"}, array=False, exec="echo {i}")}, [])
    res = cli(home, "run", str(wf), "--parallel", "3", timeout=300,
              env=shimmed(slurm, shims, home))
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    jobs = status(home, "noarray", env=slurm.env)["jobs"]
    assert all(j["native_id"].isdigit() for j in jobs.values())
    assert sbatch_arrays(sbatch) == 3


def test_array_throttle_and_bad_values(slurm, tmp_path: Path, home: Path) -> None:
    """``array: 2`` becomes ``%2`` (Slurm shows it as ArrayTaskThrottle); a bad
    ``squeue_interval`` fails the job with a message naming the field."""
    wf = write_workflow(tmp_path, "throttle", {"t": node(
        tmp_path, foreach={"i": "[1-4]"}, array=2, exec="echo {i}")}, [])
    res = cli(home, "run", str(wf), "--parallel", "4", timeout=300,
              env={**slurm.env, "JOBMESH_HOME": str(home)})
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    job = status(home, "throttle", env=slurm.env)["jobs"]["t-i_1"]
    shown = slurm.run("scontrol", "show", "job", job["native_id"].split("_")[0]).stdout
    assert "ArrayTaskThrottle=2" in shown, shown
    bad = write_workflow(tmp_path, "badpoll", {"b": node(
        tmp_path, exec="echo never", squeue_interval="soon")}, [])
    res = cli(home, "run", str(bad), timeout=120, env={**slurm.env, "JOBMESH_HOME": str(home)})
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "squeue_interval" in out and "Traceback" not in out, out


def test_crash_between_sbatch_and_record_finds_the_array(slurm, tmp_path: Path, home: Path,
                                                         bus, services) -> None:
    """Real: the array is really submitted. Simulated: the crash. A stand-in ``sbatch``
    runs the real one for the first array, then holds the launch script so that no id
    file is written, and the executor is SIGKILLed there. The restarted executor gets the
    elements again, finds their run directories taken and the array by its name: each
    element runs once, with the array's ids, and sbatch ran once."""
    shims = tmp_path / "shims"
    shims.mkdir()
    real = shutil.which("sbatch")
    held = tmp_path / "held"
    (shims / "sbatch").write_text(f"""#!/bin/sh
echo call >> {shims}/calls
if [ ! -e {held} ]; then
  {real} "$@" || exit $?
  ps -o pgid= $$ | tr -d ' ' > {held}.tmp && mv {held}.tmp {held}
  exec sleep 600
fi
exec {real} "$@"
""")
    (shims / "sbatch").chmod(0o755)
    counts = tmp_path / "counts"
    counts.mkdir()
    wf = write_workflow(tmp_path, "crash", {"el": node(
        tmp_path, foreach={"i": "[1-3]"}, exec=f"echo x >> {counts}/{{i}}; echo el {{i}}")},
        [])
    saved = dict(os.environ)
    os.environ.update(SLURM_CONF=slurm.env["SLURM_CONF"], JOBMESH_SQUEUE_INTERVAL="2",
                      PATH=f"{shims}:{os.environ['PATH']}")
    try:
        services.start("scheduler")
        services.start("monitor")
        services.start("executor:slurm", "--kind", "slurm")
        bus.submit(wf, parallel=3)
        wait_until(lambda: held.exists(), 60, "the array to be submitted")
        services.kill("executor:slurm", signal.SIGKILL)
        os.killpg(int(held.read_text()), signal.SIGKILL)  # the launch script dies too
        services.start("executor:slurm", "--kind", "slurm")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    snap = bus.wait("crash", lambda s: s.state.terminal, 180, "the workflow to end")
    assert snap.state.value == "SUCCEEDED", {k: (j.state, j.reason)
                                              for k, j in snap.jobs.items()}
    ids = {snap.jobs[f"el-i_{i}"].native_id for i in (1, 2, 3)}
    assert len({x.split("_")[0] for x in ids}) == 1 and all("_" in x for x in ids), ids
    for i in (1, 2, 3):
        assert (counts / str(i)).read_text() == "x\n"
    assert (shims / "calls").read_text().split() == ["call"]
