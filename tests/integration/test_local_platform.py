"""The local executor on each platform path this machine can run, with real processes.

Part 1 runs the executor in this process (no NATS: events go to a list) once per platform
available here: on Linux the native path (pidfd) and the macOS path forced (POSIX
sessions, no pidfd, so the poller alone notices every exit; psutil for every process
question); on macOS and Windows (the CI matrix) their native path. It covers exit codes,
outputs, cancel of a process tree, timeout, re-attach by a new executor, and a pid reused
by an unrelated process.

Part 2 runs test_engine.py's and test_job_types.py's local-executor tests a second time
with JOBMESH_PLATFORM=macos: real nats-server, separate service processes, the executor
SIGKILLed and restarted. Those use POSIX signals and ``/proc`` in their helpers, so they
run on Linux and macOS only.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobmesh.common import procs
from jobmesh.common.messages import JobReady
from jobmesh.common.spec import JobSpec
from jobmesh.executor.local import LocalExecutor
from jobmesh.executor.platforms import select_platform
from tests.helpers import run_async

pytestmark = pytest.mark.integration

HERE = {"linux": ["linux", "macos"], "darwin": ["macos"], "win32": ["windows"]}.get(
    sys.platform, ["linux"])
PY = shlex.quote(sys.executable.replace("\\", "/"))  # Git Bash reads C:/... paths too
# A job that starts a child (a native process on every OS) and waits for it.
WITH_CHILD = (f"{PY} -c \"import subprocess, sys; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
              "open('child.pid', 'w').write(str(p.pid)); p.wait()\"")


class Harness:
    """One LocalExecutor on a forced platform; its events, and waits with deadlines."""

    def __init__(self, workdir: Path, platform: str):
        self.workdir, self.events = workdir, []  # type: ignore[var-annotated]
        self.ex = LocalExecutor(self._emit, workdir / "runs", poll_max=0.5,
                                platform=select_platform(platform))

    async def _emit(self, event: Any) -> None:
        self.events.append(event)

    def job(self, name: str, **spec: Any) -> JobReady:
        return JobReady(workflow="plat", run="r1", job=name, attempt=1, pool="local",
                        spec=JobSpec(name=name, **spec), base_dir=str(self.workdir),
                        time=time.time())

    def ended(self, name: str) -> Any:
        done = [e for e in self.events if e.job == name and e.type in
                ("succeeded", "failed", "canceled")]
        assert len(done) <= 1, f"{name} ended more than once: {done}"
        return done[0] if done else None

    async def until(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := pred()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"events: {[(e.job, e.type) for e in self.events]}")
            await asyncio.sleep(0.05)
        return value


@pytest.fixture(params=HERE)
def platform(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_exit_codes_outputs_and_logs(tmp_path: Path, platform: str) -> None:
    async def go() -> None:
        h = Harness(tmp_path, platform)
        await h.ex.start()
        await h.ex.submit(h.job("ok", exec="echo hello; echo '# jobmesh output n=7'"))
        await h.ex.submit(h.job("bad", exec="echo about to fail; exit 3"))
        key = ("plat", "r1", "ok", 1)
        watched = h.ex.tracked[key].watched if key in h.ex.tracked else None
        await h.until(lambda: h.ended("ok") and h.ended("bad"), 30, "both jobs to end")
        await h.ex.close()
        ok, bad = h.ended("ok"), h.ended("bad")
        assert ok.type == "succeeded" and ok.exit_code == 0 and ok.outputs == {"n": 7}
        assert bad.type == "failed" and bad.exit_code == 3 and "exit code 3" in bad.reason
        rdir = tmp_path / "runs" / "plat" / "r1" / "ok" / "1"
        assert (rdir / "job.log").read_text().startswith("hello\n")
        assert (rdir / "exit").read_text() == "0\n" and (rdir / "pid").read_text().strip()
        if platform == "macos" and sys.platform == "linux":
            assert watched is False, "the forced macOS path must leave exits to the poller"
        if platform == "linux":
            assert watched in (True, None)  # (None: it ended before we looked)

    run_async(go())


def test_cancel_ends_the_whole_process_tree(tmp_path: Path, platform: str) -> None:
    async def go() -> tuple[int, int]:
        h = Harness(tmp_path, platform)
        await h.ex.start()
        job = h.job("long", exec=WITH_CHILD)
        native = int(await h.ex.submit(job))
        pidfile = tmp_path / "runs" / "plat" / "r1" / "long" / "1" / "child.pid"
        await h.until(lambda: pidfile.exists() and pidfile.read_text(), 30, "the child")
        child = int(pidfile.read_text())
        assert procs.alive(child) and procs.alive(native)
        await h.ex.cancel(job, "user asked")
        ended = await h.until(lambda: h.ended("long"), 30, "the cancel to end the job")
        await h.ex.close()
        assert ended.type == "canceled" and ended.reason == "user asked"
        return child, native

    child, native = run_async(go())
    deadline = time.monotonic() + 15
    while any(procs.alive(p) for p in (child, native)):
        assert time.monotonic() < deadline, "a process of the canceled job is still alive"
        time.sleep(0.05)


def test_timeout_fails_the_job_and_ends_it(tmp_path: Path, platform: str) -> None:
    async def go() -> Any:
        h = Harness(tmp_path, platform)
        await h.ex.start()
        await h.ex.submit(h.job("slow", exec=WITH_CHILD, timeout=1))
        ended = await h.until(lambda: h.ended("slow"), 30, "the timeout")
        await h.ex.close()
        return ended

    ended = run_async(go())
    assert ended.type == "failed" and ended.reason == "timeout"
    child = int((tmp_path / "runs" / "plat" / "r1" / "slow" / "1" / "child.pid").read_text())
    deadline = time.monotonic() + 15
    while procs.alive(child):
        assert time.monotonic() < deadline, "the timed-out job's child is still alive"
        time.sleep(0.05)


def test_a_new_executor_reattaches_and_the_job_runs_once(tmp_path: Path,
                                                         platform: str) -> None:
    """The first executor stops watching (as when it dies: close never kills jobs); a new
    one gets the same JobReady, finds the run directory, and reports the job's end."""
    script = ('echo x >> "$JOBMESH_WORKFLOW_DIR/counter"; '
              'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done; '
              "echo '# jobmesh output done=1'")

    async def go() -> None:
        first = Harness(tmp_path, platform)
        await first.ex.start()
        job = first.job("work", exec=script)
        await first.ex.submit(job)
        await first.until(lambda: (tmp_path / "counter").exists(), 30, "the job to start")
        await first.ex.close()
        second = Harness(tmp_path, platform)
        await second.ex.start()
        await second.ex.submit(job)  # a redelivered JobReady
        assert [e.type for e in second.events] == ["started"]
        await asyncio.sleep(0.6)  # more than poll_max: the poller has looked at it
        assert second.ended("work") is None, "a running job was taken for dead"
        (tmp_path / "go").touch()
        ended = await second.until(lambda: second.ended("work"), 30, "the job to end")
        await second.ex.close()
        assert ended.type == "succeeded" and ended.outputs == {"done": 1}

    run_async(go())
    assert (tmp_path / "counter").read_text() == "x\n", "the job ran more than once"


def test_a_pid_reused_by_another_process_is_not_the_job(tmp_path: Path,
                                                        platform: str) -> None:
    """The job's wrapper died without an exit file (a reboot, a SIGKILL) and the system
    gave its pid to an unrelated process: the job must fail, not wait for ever."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        async def go() -> Any:
            h = Harness(tmp_path, platform)
            job = h.job("gone", exec="true")
            rdir = tmp_path / "runs" / "plat" / "r1" / "gone" / "1"
            rdir.mkdir(parents=True)
            for name in ("job.json", "wrapper.sh"):
                (rdir / name).write_text("written by the dead executor\n")
            (rdir / "pid").write_text(f"{stranger.pid}\n")
            old = time.time() - 3600  # the wrapper started an hour ago
            os.utime(rdir / "pid", (old, old))
            await h.ex.start()
            await h.ex.submit(job)
            ended = await h.until(lambda: h.ended("gone"), 30, "the dead job to end")
            await h.ex.close()
            return ended

        ended = run_async(go())
        assert ended.type == "failed" and "killed before it could record" in ended.reason
        assert procs.alive(stranger.pid), "jobmesh touched a process that is not its job"
    finally:
        stranger.kill()
        stranger.wait()


# -- Part 2: the engine's local-executor tests again, on the forced macOS path -------------
# Not on Windows: tests/conftest.py (signal.SIGKILL) and the services these start (POSIX
# signal handlers) do not load there (docs/platforms.md); Part 1 runs with --noconftest.

proc_helpers = pytest.mark.skipif(sys.platform != "linux", reason=(
    "tests.helpers.pid_alive reads /proc"))


@pytest.fixture
def forced_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every executor these tests start (jobmesh run, python -m jobmesh.executor) takes
    the macOS path: no pidfd, the poller alone, psutil instead of /proc."""
    monkeypatch.setenv("JOBMESH_PLATFORM", "macos")


def _again(test: Callable[..., None], *marks: Any) -> Callable[..., None]:
    """A new test function (marks go on it, not on the original) running ``test``."""

    @functools.wraps(test)
    def again(*args: Any, **kwargs: Any) -> None:
        test(*args, **kwargs)

    wrapped: Any = pytest.mark.usefixtures("forced_macos")(again)
    for mark in marks:
        wrapped = mark(wrapped)
    return wrapped


if sys.platform != "win32":
    from tests.integration import test_engine as engine
    from tests.integration import test_job_types as job_types

    venv = job_types.venv  # (the module-scoped fixture the venv test uses)
    test_macos_path_diamond = _again(engine.test_diamond_middle_jobs_overlap)
    test_macos_path_failure = _again(
        engine.test_failure_skips_descendants_and_unrelated_branch_finishes)
    test_macos_path_progress = _again(
        engine.test_progress_values_arrive_in_order_and_status_shows_them)
    test_macos_path_cancel = _again(engine.test_cancel_leaves_no_process_behind, proc_helpers)
    test_macos_path_executor_sigkill = _again(
        engine.test_executor_sigkill_reattaches_and_job_runs_once)
    test_macos_path_ctrl_c = _again(
        engine.test_ctrl_c_leaves_jobs_running_and_rerun_reattaches, proc_helpers)
    test_macos_path_run_directory = _again(
        engine.test_run_directory_files_small_and_large_jobs)
    test_macos_path_venv = _again(
        job_types.test_python_job_runs_in_its_venv_and_reports_progress)
    test_macos_path_timeout = _again(job_types.test_timeout_kills_the_process_group,
                                     proc_helpers)
    test_macos_path_retries = _again(
        job_types.test_retries_end_succeeded_on_attempt_three_with_every_log)
    test_macos_path_staging = _again(job_types.test_input_and_output_files_are_staged)
