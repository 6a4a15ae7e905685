"""The pure pieces under the remote and batch executors, with what ``sh`` really prints:
the probe (executor/probe.py), the batched launch script (launch.py) and the run
directory's wrapper and files (rundir.py). Each script is run by /bin/sh here, in a
temporary folder, as the executor sends it to a host."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from jobmesh.common.messages import JobReady
from jobmesh.common.spec import JobSpec
from jobmesh.executor import launch, probe, rundir
from jobmesh.executor.base import InvalidJobError

pytestmark = pytest.mark.unit


def sh(script: bytes | str, cwd: Path | None = None) -> bytes:
    data = script.encode() if isinstance(script, str) else script
    return subprocess.run(["/bin/sh", "-s"], input=data, capture_output=True, cwd=cwd,
                          timeout=30, check=False).stdout


def ready(job: str = "a", run: str = "r1", attempt: int = 1, **spec: Any) -> JobReady:
    return JobReady(workflow="w", run=run, job=job, attempt=attempt, pool="ssh",
                    spec=JobSpec(name=job, **{"exec": "true", **spec}), base_dir="/flows",
                    time=time.time())


class Watched:
    def __init__(self, rdir: Path, offset: int = 0):
        self.rdir, self.offset, self.side = str(rdir), offset, None


# -- probe ------------------------------------------------------------------------------

def test_probe_reports_every_job_in_one_round_trip(tmp_path: Path) -> None:
    done, live, gone = tmp_path / "done", tmp_path / "live", tmp_path / "gone"
    for d in (done, live):
        d.mkdir()
    (done / "exit").write_text("3\n")
    (done / "pid").write_text("999999999\n")  # no such process
    (done / "job.log").write_text("first line\nsecond line\n")
    (done / "cancel").write_text("timeout\n")
    (done / "reason").write_text("out of\nmemory\n")
    (done / "outputs.json").write_text('{"n": 7}')
    (live / "pid").write_text(f"{os.getpid()}\n")
    (live / "started").touch()
    jobs = [Watched(done, offset=len("first line\n")), Watched(live), Watched(gone)]
    fields = probe.parse(sh(probe.probe_script(jobs)))
    assert fields[0]["exit"] == "3" and fields[0]["pid"] == "1" and "alive" not in fields[0]
    assert base64.b64decode(fields[0]["log"]) == b"second line\n"  # past the offset only
    assert (fields[0]["cancel"], fields[0]["reason"]) == ("timeout", "out of memory ")
    assert base64.b64decode(fields[0]["outputs"]) == b'{"n": 7}'
    assert fields[1] == {"pid": "1", "alive": "1", "started": "1"}
    assert fields[2] == {"missing": "1"}


def test_probe_reads_no_log_that_did_not_grow(tmp_path: Path) -> None:
    (tmp_path / "job.log").write_text("seen\n")
    fields = probe.parse(sh(probe.probe_script([Watched(tmp_path, offset=5)])))
    assert fields[0] == {}


@pytest.mark.parametrize("text,down", [
    ("squeue: error: Unable to contact slurm controller (connect failure)", True),
    ("slurm_load_jobs error: Connection refused", True),
    ("LSF is down. Please wait ...", True),
    ("batch system daemon not responding ... still trying", True),
    ("1|RUNNING|None", False),
    ("slurm_load_jobs error: Invalid job id specified", False),
])
def test_controller_outages_are_told_from_other_errors(text: str, down: bool) -> None:
    assert probe.controller_down(text) is down


# -- launch -----------------------------------------------------------------------------

def test_one_script_stages_and_starts_every_job_and_reports_each(tmp_path: Path) -> None:
    taken = tmp_path / "w" / "r1" / "b" / "1"
    taken.mkdir(parents=True)

    async def build() -> list[launch.Launch]:
        a = tmp_path / "w" / "r1" / "a" / "1"
        return [
            launch.Launch(str(a), {f"{a}/wrapper.sh": b"echo \"it's\" $1\n",
                                   f"{a}/data/blob.bin": bytes(range(256))},
                          {f"{a}/wrapper.sh": 0o755}, "sh ./wrapper.sh started",
                          report="echo 4242"),
            launch.Launch(str(taken), {f"{taken}/wrapper.sh": b"true\n"}, {}, "true"),
            launch.Launch(str(tmp_path / "w" / "r1" / "c" / "1"), {}, {}, "exit 5"),
        ]

    jobs = asyncio.run(build())
    out = sh(launch.script(jobs))
    first, second, third = launch.parse(out, 3)
    assert isinstance(first, launch.Result) and first.status == 0
    assert first.stdout.decode().split() == ["it's", "started", "4242"]
    a = Path(jobs[0].rdir)
    assert (a / "data" / "blob.bin").read_bytes() == bytes(range(256))  # base64, intact
    assert os.stat(a / "wrapper.sh").st_mode & 0o777 == 0o755
    assert second is None  # a run directory that exists is attached to, never relaunched
    assert isinstance(third, launch.Result) and third.status == 5


def test_a_script_cut_short_fails_the_jobs_it_did_not_reach() -> None:
    out = b"\n@@L 0\nhello\n@@S 0\n\n@@L 1\npartial"
    first, second, third = launch.parse(out, 3)
    assert isinstance(first, launch.Result) and first.stdout == b"hello"
    assert isinstance(second, ConnectionError) and "during this job" in str(second)
    assert isinstance(third, ConnectionError) and "before this job" in str(third)


def test_job_names_are_deterministic_safe_and_bounded() -> None:
    name = launch.job_name(ready("fetch.sh", attempt=2))
    assert name == launch.job_name(ready("fetch.sh", attempt=2))  # found again after a crash
    assert name.startswith("jm-w-fetch.sh-2-") and name != launch.job_name(ready(
        "fetch.sh", run="r2", attempt=2))
    long = launch.job_name(ready("x" * 300))
    assert len(long) == 100 and long == launch.job_name(ready("x" * 300))


def test_user_directives_are_read_from_the_top_of_the_script_only() -> None:
    script = (b"#!/bin/bash\n#SBATCH --gres=gpu:1\n# a comment\n\n#SBATCH --mem=4G\n"
              b"echo go\n#SBATCH --late=ignored\n")
    assert launch.user_directives(script, "#SBATCH") == ["#SBATCH --gres=gpu:1",
                                                         "#SBATCH --mem=4G"]
    assert launch.user_directives(script, "#BSUB") == []


# -- rundir -----------------------------------------------------------------------------

def test_the_wrapper_records_pid_log_and_exit_where_the_job_runs(tmp_path: Path) -> None:
    job = ready(exec='echo "$JOBMESH_JOB attempt $JOBMESH_ATTEMPT in $PWD, $GREETING"; '
                     'echo oops >&2; exit 3', env={"GREETING": "it's"})
    rdir = tmp_path / rundir.run_dir("", job).lstrip("/")
    rdir.mkdir(parents=True)
    (rdir / "wrapper.sh").write_text(rundir.wrapper(job, str(rdir)))
    subprocess.run(["/bin/sh", str(rdir / "wrapper.sh")], check=False, timeout=30)
    assert (rdir / "job.log").read_text() == f"a attempt 1 in {rdir}, it's\noops\n"
    assert rundir.parse_exit((rdir / "exit").read_text()) == 3
    assert (rdir / "pid").read_text().strip().isdigit()


def test_run_directories_hold_the_run_and_refuse_what_is_no_name() -> None:
    assert rundir.run_dir("/work", ready("fetch.sh", attempt=2)) == "/work/w/r1/fetch.sh/2"
    for bad in (ready(run="../x"), ready(run="a/b"), ready(attempt=0)):
        with pytest.raises(InvalidJobError, match="invalid run id"):
            rundir.run_dir("/work", bad)


def test_exit_file_contents() -> None:
    assert rundir.parse_exit("0\n") == 0 and rundir.parse_exit("143\n") == 143
    assert rundir.parse_exit("1") is None  # still being written
    assert rundir.parse_exit("x\n") is None
    assert rundir.describe_exit(137) == "exit code 137 (signal 9)"
    assert rundir.describe_exit(124) == "exit code 124 (timeout)"


def test_the_command_quotes_every_user_value() -> None:
    job = ready(exec="echo", args=["$(reboot)", "a b"])
    assert rundir.command(job) == "bash -c 'echo '\"'\"'$(reboot)'\"'\"' '\"'\"'a b'\"'\"''"
    out = subprocess.run(["/bin/sh", "-c", rundir.command(job)], capture_output=True,
                         text=True, check=True).stdout
    assert out == "$(reboot) a b\n"
    with pytest.raises(InvalidJobError, match="not a valid variable name"):
        rundir.wrapper(ready(env={"BAD NAME": "x"}), "/r")
