"""The pure Slurm and LSF hooks (executor/slurm.py, lsf.py) against captured outputs.

Slurm's were captured from the single-node Slurm the integration tests start
(tests/slurmcluster.py; Slurm 22.05 from Debian): a running job, one pending on a
dependency, one that exited 3, an array's pending elements, then the first cancelled and
its dependant dropped. LSF's are the formats IBM documents for LSF 10.1 (bsub, bjobs -o
with a delimiter), as tests/fakelsf/lsf.py prints them."""

from __future__ import annotations

import time

import pytest

from jobmesh.common.messages import JobReady
from jobmesh.common.spec import JobSpec
from jobmesh.executor.base import InvalidJobError
from jobmesh.executor.batchsys import CANCELED, DONE, FAILED, QUEUED, RUNNING
from jobmesh.executor.lsf import LSF
from jobmesh.executor.slurm import Slurm

pytestmark = pytest.mark.unit

SBATCH_OK = "1\n"
SBATCH_REFUSED = ("sbatch: error: invalid partition specified: nope\n"
                  "sbatch: error: Batch job submission failed: Invalid partition name "
                  "specified\n")
SQUEUE_RUNNING = ("3|FAILED|NonZeroExitCode\n2|PENDING|Dependency\n4_0|PENDING|Resources\n"
                  "4_1|PENDING|Resources\n1|RUNNING|None\n")
SQUEUE_AFTER_CANCEL = ("1|CANCELLED|None\n2|CANCELLED|DependencyNeverSatisfied\n"
                       "3|FAILED|NonZeroExitCode\n")
SACCT_DISABLED = "Slurm accounting storage is disabled\n"
SACCT = ("7|COMPLETED|0:0\n8|CANCELLED by 0|0:15\n9|OUT_OF_MEMORY|0:125\n"
         "10_2|TIMEOUT|0:0\n9.batch|OUT_OF_MEMORY|0:125\n")

BSUB_OK = "Job <1234> is submitted to default queue <normal>.\n"
BSUB_REFUSED = "Bad resource requirement syntax. Job not submitted.\n"
BJOBS = ("1234|RUN|-|-|0\n"
         "1235|PEND|New job is waiting for scheduling|-|0\n"
         "1236|EXIT|-|3|0\n"
         "1240|DONE|-|-|2\n"
         "1240|PEND|Job array element limit reached|-|3\n"
         "Job <999> is not found\n")


def job(kind: str = "slurm", timeout: float | None = None, deps: list[str] | None = None,
        **extras: object) -> JobReady:
    spec = JobSpec(name="train", kind=kind, exec="true", timeout=timeout, **extras)
    return JobReady(workflow="w", run="r1", job="train", attempt=1, pool=kind, spec=spec,
                    base_dir="/flows", time=time.time(), native_deps=deps or [])


# -- Slurm ------------------------------------------------------------------------------

def test_slurm_submit_output_gives_the_id_or_a_refusal() -> None:
    s = Slurm()
    assert s.parse_submit(SBATCH_OK) == "1"
    assert s.parse_submit("sbatch: warning: can't honor --ntasks\n42;cluster2\n") == "42"
    with pytest.raises(ValueError, match="Invalid partition name"):
        s.parse_submit(SBATCH_REFUSED)
    assert s.submit("batch.sh") == "sbatch --parsable batch.sh"


def test_slurm_status_of_a_live_queue() -> None:
    s = Slurm()
    got = s.parse_status(SQUEUE_RUNNING)
    assert got == {"1": ("RUNNING", None), "2": ("PENDING", "Dependency"),
                   "3": ("FAILED", "NonZeroExitCode"), "4_0": ("PENDING", "Resources"),
                   "4_1": ("PENDING", "Resources")}
    assert [s.meaning(got[i][0])[0] for i in ("1", "2", "3")] == [RUNNING, QUEUED, FAILED]
    assert "--jobs=1,2" in s.status(["1", "2"]) and "--states=all" in s.status(["1"])


def test_slurm_status_after_a_cancel_names_the_dropped_dependant() -> None:
    s = Slurm()
    got = s.parse_status(SQUEUE_AFTER_CANCEL)
    assert got["1"] == ("CANCELLED", None)
    assert got["2"] == ("CANCELLED", "DependencyNeverSatisfied")  # batch skips it
    assert s.meaning("CANCELLED by 0") == (CANCELED, None)
    assert s.parse_status("slurm_load_jobs error: Unable to contact slurm controller\n") == {}


@pytest.mark.parametrize("state,meaning", [
    ("PENDING", (QUEUED, None)), ("COMPLETING", (RUNNING, None)),
    ("COMPLETED", (DONE, None)), ("TIMEOUT", (FAILED, "timeout")),
    ("OUT_OF_MEMORY", (FAILED, "out of memory")), ("NODE_FAIL", (FAILED, "node failure")),
    ("PREEMPTED", (FAILED, "preempted")), ("REQUEUED", (QUEUED, "requeued")),
    ("SUSPENDED", (RUNNING, "suspended")), ("CANCELLED+", (CANCELED, None)),
    ("SOMETHING_NEW", (RUNNING, "something_new")),  # unknown: keep watching, say what
])
def test_slurm_state_meanings(state: str, meaning: tuple[str, str | None]) -> None:
    assert Slurm().meaning(state) == meaning


def test_slurm_accounting_output() -> None:
    s = Slurm()
    assert s.parse_accounting(SACCT_DISABLED) == {}
    assert s.parse_accounting(SACCT) == {
        "7": ("COMPLETED", None), "8": ("CANCELLED", None), "9": ("OUT_OF_MEMORY", None),
        "10_2": ("TIMEOUT", None)}  # job steps (9.batch) are not jobs
    assert "--jobs=7,8" in (s.accounting(["7", "8"]) or "")


def test_slurm_header_from_the_node() -> None:
    lines = Slurm().header(job(timeout=90, partition="debug", mem="2G",
                               sbatch=["--exclusive"]), "/runs/w/r1/train/1", "jm-x")
    assert lines[:4] == ["#SBATCH --partition=debug", "#SBATCH --time=2",
                         "#SBATCH --mem=2G", "#SBATCH --exclusive"]
    assert lines[-5:] == ["#SBATCH --open-mode=append", "#SBATCH --job-name=jm-x",
                          "#SBATCH --output=/runs/w/r1/train/1/job.log",
                          "#SBATCH --error=/runs/w/r1/train/1/job.log",
                          "#SBATCH --chdir=/runs/w/r1/train/1"]


def test_slurm_native_dependencies_and_a_forged_one() -> None:
    lines = Slurm().header(job(deps=["afterok:101", "afterok:102_3"]), "/r", "n")
    assert "#SBATCH --dependency=afterok:101,afterok:102_3" in lines
    assert "#SBATCH --kill-on-invalid-dep=yes" in lines
    with pytest.raises(InvalidJobError, match="invalid Slurm dependency"):
        Slurm().header(job(deps=["afterok:1;rm -rf ~"]), "/r", "n")


def test_slurm_cancel_and_find_quote_their_arguments() -> None:
    s = Slurm()
    assert s.cancel(["1", "4_0"]) == "scancel 1 4_0"
    assert s.find("jm-w-a b") == ("squeue --noheader --states=all --format=%i "
                                  "--name='jm-w-a b'")


# -- LSF --------------------------------------------------------------------------------

def test_lsf_submit_output_gives_the_id_or_a_refusal() -> None:
    lsf = LSF()
    assert lsf.parse_submit(BSUB_OK) == "1234"
    with pytest.raises(ValueError, match="Job not submitted"):
        lsf.parse_submit(BSUB_REFUSED)
    assert lsf.submit("batch.sh") == "bsub < batch.sh"


def test_lsf_status_with_array_elements_and_unknown_ids() -> None:
    lsf = LSF()
    got = lsf.parse_status(BJOBS)
    assert got == {"1234": ("RUN", None),
                   "1235": ("PEND", "New job is waiting for scheduling"),
                   "1236": ("EXIT", None), "1240[2]": ("DONE", None),
                   "1240[3]": ("PEND", "Job array element limit reached")}
    assert [lsf.meaning(got[k][0])[0] for k in ("1234", "1235", "1236", "1240[2]")] == [
        RUNNING, QUEUED, FAILED, DONE]
    assert lsf.meaning("UNKWN") == (RUNNING, "LSF lost contact with the host")
    assert "delimiter='|'" in lsf.status(["1234"]) and lsf.status(["1", "2"]).endswith("1 2")


def test_lsf_header_from_the_node() -> None:
    lines = LSF().header(job("lsf", timeout=61, queue="short", mem="4000", bsub="-x"),
                         "/runs/w/r1/train/1", "jm-x")
    assert lines == ["#BSUB -q short", "#BSUB -M 4000", "#BSUB -W 2", "#BSUB -x",
                     "#BSUB -J jm-x", "#BSUB -o /runs/w/r1/train/1/job.log",
                     "#BSUB -e /runs/w/r1/train/1/job.log", "#BSUB -cwd /runs/w/r1/train/1"]
    assert LSF().cancel(["1240[3]"]) == "bkill '1240[3]'"
