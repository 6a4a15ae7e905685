"""The executor contract (services/executor/base.py), one suite over every kind that can
run here: local; ssh against a real sshd on loopback; slurm on a real single-node Slurm;
lsf and wsl through their stand-ins (tests/fakelsf/lsf.py, a wsl.exe that runs sh).

Each executor is the one the service builds (``app.make_executor``), run in this process
with its events going to a list (no NATS), so the contract is what is checked:
- a job starts (``started``) and its progress lines become ``progress`` events;
- exit 0 is one ``succeeded`` with the declared outputs; exit 3 is one ``failed`` with
  exit code 3;
- cancel is one ``canceled`` with the reason, and the job's process is ended;
- the status files (``exit``, ``job.log``) are written in the run directory, where the
  job runs;
- an executor closed while a job runs leaves it running, and a new executor that
  attaches to it reports its end once.
Every wait has a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobmesh.common.loader import parse_workflow
from jobmesh.common.messages import JobReady
from jobmesh.common.settings import Settings
from jobmesh.executor.app import make_executor
from jobmesh.executor.base import Executor
from tests import slurmcluster, sshhosts
from tests.conftest import ROOT
from tests.helpers import pid_alive, run_async

pytestmark = pytest.mark.integration

KINDS = ["local", "ssh", "slurm", "lsf", "wsl"]
TERMINAL = ("succeeded", "failed", "canceled", "skipped")
WAIT = 45.0  # s: a deadline for one job on a loaded machine (they take ~1 s alone)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshhosts.Lab]:
    why = sshhosts.available()
    if why:
        pytest.skip(why)
    lab = sshhosts.Lab(tmp_path_factory.mktemp("contract-ssh"))
    lab.loopback("loop")
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurmcluster.Slurm]:
    why = slurmcluster.available()
    if why:
        pytest.skip(why)
    cluster = slurmcluster.Slurm(tmp_path_factory.mktemp("contract-slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


@dataclass
class Target:
    """One kind made ready to run here: its node attributes and where run dirs go."""

    kind: str
    attrs: dict[str, Any]
    runs: Path
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Target:
    kind = str(request.param)
    runs = tmp_path / "runs"
    t = Target(kind, {}, runs)
    if kind == "ssh":
        lab = request.getfixturevalue("lab")
        t.attrs = lab.node(lab.hosts["loop"], workdir=str(runs))
    elif kind == "slurm":
        slurm = request.getfixturevalue("slurm")
        t.attrs = {"workdir": str(runs), "slurm_conf": slurm.env["SLURM_CONF"],
                   "squeue_interval": 1}
    elif kind == "lsf":
        bindir = tmp_path / "lsfbin"
        bindir.mkdir()
        for cmd in ("bsub", "bjobs", "bkill"):
            (bindir / cmd).symlink_to(ROOT / "tests" / "fakelsf" / "lsf.py")
        (ROOT / "tests" / "fakelsf" / "lsf.py").chmod(0o755)
        t.env = {"PATH": f"{bindir}:{os.environ['PATH']}",
                 "FAKE_LSF_DIR": str(tmp_path / "lsfstate")}
        t.attrs = {"workdir": str(runs), "squeue_interval": 1}
    elif kind == "wsl":
        stub = tmp_path / "wsl.exe"
        stub.write_text('#!/bin/sh\n# stand-in for wsl.exe: [-d DISTRO] -e sh -c CMD\n'
                        'while [ $# -gt 0 ]; do case "$1" in -d) shift 2;; -e) shift; '
                        'break;; *) shift;; esac; done\nexec "$@"\n')
        stub.chmod(0o755)
        t.attrs = {"workdir": str(runs), "wsl_exe": str(stub), "distribution": "Ubuntu"}
    for k, v in t.env.items():  # the batch commands run from this process (LocalTransport)
        monkeypatch.setenv(k, v)
    return t


class Harness:
    """An executor of one kind as the service builds it; its events, and waits."""

    def __init__(self, target: Target, base: Path):
        self.target, self.base, self.events = target, base, []  # type: ignore[var-annotated]
        self.settings = Settings(workdir=target.runs, poll_min=0.05, poll_max=0.5)
        self.ex = self.new()

    def new(self) -> Executor:
        async def emit(event: Any) -> None:
            self.events.append(event)

        async def on_done(job: JobReady) -> None:
            pass

        return make_executor(self.target.kind, emit, self.settings, on_done)

    def job(self, name: str, exec: str, **attrs: Any) -> JobReady:
        """A JobReady for one node, its spec made by the loader (typed options checked)."""
        node = {"kind": self.target.kind, **self.target.attrs, "exec": exec, **attrs}
        text = yaml.safe_dump({"name": "contract", "workflow": {"nodes": {name: node}}})
        spec = parse_workflow(text, str(self.base / "w.yaml"), str(self.base)).workflow
        return JobReady(workflow="contract", run="r1", job=name, attempt=1,
                        pool=self.target.kind, spec=spec.jobs[name], base_dir=str(self.base),
                        time=time.time())

    def of(self, name: str, *types: str) -> list[Any]:
        return [e for e in self.events if e.job == name and (not types or e.type in types)]

    def ended(self, name: str) -> Any:
        done = self.of(name, *TERMINAL)
        assert len(done) <= 1, f"{name} ended more than once: {done}"
        return done[0] if done else None

    async def until(self, pred: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := pred()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.target.kind}: timed out after {timeout}s "
                                     f"waiting for {what}; events: "
                                     f"{[(e.job, e.type) for e in self.events]}")
            await asyncio.sleep(0.05)
        return value

    def rdir(self, name: str) -> Path:
        return self.target.runs / "contract" / "r1" / name / "1"


def test_success_progress_failure_and_status_files(target: Target, tmp_path: Path) -> None:
    async def go() -> None:
        h = Harness(target, tmp_path)
        await h.ex.start()
        ok = h.job("ok", "echo hello; echo '# jobmesh progress=50 msg=halfway'; "
                   "echo '# jobmesh output n=7'", outputs=["made.txt"])
        ok.spec.exec = "echo made > made.txt; " + (ok.spec.exec or "")
        await h.ex.submit(ok)
        await h.ex.submit(h.job("bad", "echo about to fail; exit 3"))
        await h.until(lambda: h.ended("ok") and h.ended("bad"), "both jobs to end")
        await h.ex.close()
        good, bad = h.ended("ok"), h.ended("bad")
        assert good.type == "succeeded", good
        assert good.exit_code == 0 and good.outputs == {"n": 7}
        assert bad.type == "failed" and bad.exit_code == 3, bad
        assert h.of("ok", "started") and h.of("bad", "started")
        steps = [(e.progress, e.msg) for e in h.of("ok", "progress") if e.progress]
        assert (50.0, "halfway") in steps or good.progress == 50.0, h.of("ok")
        # the status files, in the run directory where the job ran
        rdir = h.rdir("ok")
        assert (rdir / "exit").read_text().strip() == "0"
        assert (rdir / "job.log").read_text().startswith("hello\n")
        assert (rdir / "made.txt").read_text() == "made\n"
        assert (h.rdir("bad") / "exit").read_text().strip() == "3"
        assert h.ex.active() == 0

    run_async(go())


def test_cancel_ends_the_job_once_with_the_reason(target: Target, tmp_path: Path) -> None:
    async def go() -> None:
        h = Harness(target, tmp_path)
        await h.ex.start()
        job = h.job("long", "sleep 300 & echo $! > sleeper; wait")
        await h.ex.submit(job)
        pidfile = h.rdir("long") / "sleeper"
        await h.until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the job")
        sleeper = int(pidfile.read_text())
        await h.ex.cancel(job, "canceled by the contract")
        end = await h.until(lambda: h.ended("long"), "the cancel")
        assert end.type == "canceled", end
        assert end.reason == "canceled by the contract"
        # every kind here runs its jobs on this machine: the job's process is gone
        await h.until(lambda: not pid_alive(sleeper), "the job's process to end")
        await h.ex.close()
        assert h.ended("long") is end  # exactly one terminal event

    run_async(go())


def test_a_new_executor_attaches_to_a_running_job_and_reports_its_end_once(
        target: Target, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    async def go() -> None:
        h = Harness(target, tmp_path)
        await h.ex.start()
        job = h.job("gated", f"echo waiting; while [ ! -e {gate} ]; do sleep 0.1; done; "
                    "echo through")
        native = await h.ex.submit(job)
        await h.until(lambda: (h.rdir("gated") / "job.log").exists()
                      and "waiting" in (h.rdir("gated") / "job.log").read_text(),
                      "the job to run")
        await h.ex.close()  # never kills: the job runs on
        assert h.ended("gated") is None
        h.ex = h.new()
        await h.ex.start()
        await h.ex.attach(job, native)
        gate.touch()
        end = await h.until(lambda: h.ended("gated"), "the re-attached job to end")
        await h.ex.close()
        assert end.type == "succeeded" and end.exit_code == 0, end
        assert (h.rdir("gated") / "job.log").read_text() == "waiting\nthrough\n"

    run_async(go())
