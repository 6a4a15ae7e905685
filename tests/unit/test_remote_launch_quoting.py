"""Values that reach a command line or a batch directive are data (issue 14, D5, D16)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jobmesh.common.messages import JobReady
from jobmesh.common.spec import JobSpec
from jobmesh.executor.remote import RemoteExecutor

pytestmark = pytest.mark.unit


def test_a_hostile_python_is_printed_not_run(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("print(1)\n")
    python = "nopython'; touch PWN; echo '"
    spec = JobSpec(name="a", kind="ssh", host="h", script=str(tmp_path / "x.py"),
                   python=python)
    job = JobReady(workflow="w", run="r", job="a", attempt=1, pool="ssh", spec=spec,
                   base_dir=str(tmp_path), time=0.0)
    line = RemoteExecutor._launch_cmd(None, job, str(tmp_path))  # type: ignore[arg-type]
    check = line.split("(setsid", 1)[0]
    res = subprocess.run(["sh", "-c", check], cwd=tmp_path, capture_output=True, text=True,
                         timeout=10)
    assert res.returncode == 90
    assert res.stdout == f"MISSING {python}\n"
    assert not (tmp_path / "PWN").exists()


@pytest.mark.parametrize("system,attr", [("slurm", "partition"), ("slurm", "account"),
                                         ("slurm", "sbatch"), ("lsf", "queue"),
                                         ("lsf", "bsub")])
def test_the_batch_executor_refuses_a_line_break_in_a_directive(system: str,
                                                                attr: str) -> None:
    # the last of three checks (loader, scheduler, executor): a job that got past both
    from jobmesh.executor.base import InvalidJobError
    from jobmesh.executor.batch import BatchExecutor
    from jobmesh.executor.lsf import LSF
    from jobmesh.executor.slurm import Slurm

    ex = BatchExecutor.__new__(BatchExecutor)
    ex.system = Slurm() if system == "slurm" else LSF()
    spec = JobSpec(name="a", kind=system, exec="true", **{attr: "x\ntouch PWN"})
    job = JobReady(workflow="w", run="r", job="a", attempt=1, pool=system, spec=spec,
                   base_dir="/tmp", time=0.0)
    with pytest.raises(InvalidJobError, match=f"'{attr}' holds the control character"):
        ex._files(job, "/tmp/rd", "/tmp")
