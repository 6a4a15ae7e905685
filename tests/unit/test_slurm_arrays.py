"""Job arrays: which jobs become elements, the deterministic array name, Slurm's array
directives and element ids (jobmesh.executor.array, jobmesh.executor.slurm)."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest

from jobmesh.common.messages import JobReady
from jobmesh.common.spec import JobSpec
from jobmesh.executor import array
from jobmesh.executor.slurm import Slurm

pytestmark = pytest.mark.unit


def job(name: str = "train-i_1", attempt: int = 1, deps: list[str] | None = None,
        **attrs: Any) -> JobReady:
    spec = JobSpec(name=name, kind="slurm", exec="echo", foreach_of="train", **attrs)
    return JobReady(workflow="wf", run="20261203T000000-abcd", job=name, attempt=attempt,
                    pool="slurm", spec=spec, base_dir="/tmp", time=0.0,
                    native_deps=deps or [])


def test_first_attempts_of_foreach_jobs_become_elements() -> None:
    assert array.wanted(job())
    assert not array.wanted(job(attempt=2))  # a retry goes out alone
    assert not array.wanted(job(array=False))
    assert not array.wanted(job(deps=["afterok:12"]))
    plain = job()
    plain.spec.foreach_of = None
    assert not array.wanted(plain)


def test_throttle() -> None:
    assert array.throttle(job()) is None
    assert array.throttle(job(array=True)) is None
    assert array.throttle(job(array=8)) == 8
    assert Slurm().array_submit("array.sh", "jm-x", '"$spec"', 8) == \
        "sbatch --parsable --array=\"$spec\"%8 array.sh"


def elements(names: list[str]) -> list[array.Element]:
    async def make() -> list[array.Element]:
        return [array.Element(job(n), f"/w/wf/run/{n}/1", {}, {}, []) for n in names]
    return asyncio.run(make())


def test_array_name_is_deterministic_and_bounded() -> None:
    a = array.array_name(elements(["train-i_1", "train-i_2"]))
    assert a == array.array_name(elements(["train-i_1", "train-i_2"]))
    assert a != array.array_name(elements(["train-i_1", "train-i_3"]))
    assert a.startswith("jm-wf-train-1-a") and len(a) <= 100
    assert array.group_dir(elements(["x"])[0], a) == f"/w/wf/run/@arrays/{a}"


def test_slurm_array_directives_send_each_log_to_its_element() -> None:
    shared = ["#SBATCH --mem=1G", "#SBATCH --open-mode=append"]
    lines = Slurm().array_header(shared, "jm-x", "/g")
    assert lines[0] == "#SBATCH --mem=1G"
    assert "#SBATCH --output=/g/%a/job.log" in lines and "#SBATCH --job-name=jm-x" in lines
    assert lines.count("#SBATCH --open-mode=append") == 1


def test_element_ids_in_status_and_accounting() -> None:
    s = Slurm()
    assert s.element_id("123", 4) == "123_4"
    assert "--array" in s.status(["123_4"])
    got = s.parse_status("123_4|RUNNING|None\n123_5|PENDING|Resources\n")
    assert got == {"123_4": ("RUNNING", None), "123_5": ("PENDING", "Resources")}
    assert s.parse_accounting("123_4|COMPLETED|0:0\n124|TIMEOUT|0:0\n") == {
        "123_4": ("COMPLETED", None), "124": ("TIMEOUT", None)}
    assert s.meaning("REQUEUED") == ("queued", "requeued")


def test_index_list_is_compressed_into_ranges() -> None:
    for given, want in [("0 1 2 3", "0-3"), ("0 2 3 4 7", "0,2-4,7"), ("5", "5")]:
        out = subprocess.run(f"echo {given} | {array._COMPRESS}", shell=True,
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == want


def test_recovery_reads_the_group_id(tmp_path: Any) -> None:
    """After a crash: an element's id from its group's jobid file and its index."""
    group = tmp_path / "@arrays" / "jm-g"
    group.mkdir(parents=True)
    (group / "jobid").write_text("77\n")
    rdir = tmp_path / "el"
    rdir.mkdir()
    (rdir / "array").write_text(f"{group} 5\n")
    out = subprocess.run(["sh", "-c", array.recover(Slurm(), str(rdir))],
                         capture_output=True, text=True).stdout
    assert out.strip() == "77_5"
