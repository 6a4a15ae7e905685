"""The local executor: jobs run detached on this machine, under the shared wrapper.

While this executor lives, the wrappers are its children and their exits are noticed at
once where the platform can (a pidfd on Linux, a kqueue on macOS: platforms.py), else by
the poller. Jobs it attached to after a restart are not its children; their ``exit``
files and pids are polled instead (``Platform.is_job``, psutil against pid reuse). Logs
are tailed from stored offsets, with an interval that backs off while nothing changes.
Run-directory files are read and staged in procfiles.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import JobProgressed, JobReady, JobStarted
from jobmesh.common.progress import LogScan, scan

from . import rundir
from .base import Emit, Executor, InvalidJobError, SubmitError
from .outcome import ids
from .platforms import BOOT, Platform, select_platform
from .procfiles import abandoned, helper_lib, read_int, read_text, stage_files, terminal_event
from .sidelog import SideLogs

__all__ = ["BOOT", "KILL_GRACE", "MAX_STEPS", "LocalExecutor", "stage_files"]

KILL_GRACE = 5.0      # seconds between SIGTERM and SIGKILL on cancel
MAX_READ = 1 << 20    # log bytes read per job per tick
TOOLS = os.path.dirname(sys.executable)  # where the jobmesh command is, for jobs' PATH
MAX_STEPS = 20        # progress lines published one by one per tick; beyond, the last
log = logging.getLogger("jobmesh.executor.local")
INLINE_MAX = 100_000  # bytes; bigger files are written here (one environment string < 128 KiB)


@dataclass
class Tracked:
    job: JobReady
    dir: Path
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    offset: int = 0
    partial: bytes = b""
    scan: LogScan = field(default_factory=LogScan)
    side: SideLogs | None = None  # <script>.log files (sidelog.py)
    sent: tuple[Any, ...] = (None, None, None)
    next_check: float = 0.0
    interval: float = 0.05
    deadline: float | None = None
    term_sent: float | None = None
    watched: bool = False  # the platform tells us of its exit (else: the poller looks)
    done: bool = False


class LocalExecutor(Executor):
    kind = "local"

    def __init__(self, emit: Emit, workdir: Path, on_done: Callable[[JobReady], Any] | None = None,
                 poll_min: float = 0.05, poll_max: float = 2.0,
                 platform: Platform | None = None):
        """``platform`` starts, watches and stops wrappers (default: this system's, or
        the one JOBMESH_PLATFORM names)."""
        self.emit = emit
        self.platform = platform or select_platform()
        self.workdir = Path(workdir)
        self.on_done = on_done
        self.poll_min, self.poll_max = poll_min, poll_max
        self.host = socket.gethostname()
        self.tracked: dict[AttemptKey, Tracked] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._until = 0.0  # when the poller wakes next by itself
        self.swept = asyncio.Event()  # set after each pass over the watched jobs

    async def start(self) -> None:
        self.pylib = helper_lib(self.workdir)
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_loop())

    def active(self) -> int:
        return len(self.tracked)

    # -- submit / attach -----------------------------------------------------------------

    async def submit(self, job: JobReady) -> str:
        rdir = Path(rundir.run_dir(str(self.workdir), job))
        if AttemptKey.of(job) in self.tracked:
            return str(self.tracked[AttemptKey.of(job)].pid or "")
        try:
            rdir.parent.mkdir(parents=True, exist_ok=True)
            try:
                rdir.mkdir()
            except FileExistsError:
                if not abandoned(rdir):
                    pid = read_int(rdir / "pid")
                    await self.attach(job, str(pid or ""))
                    return str(pid or "")
                # An executor died after creating the directory but before starting the
                # wrapper (which writes pid first thing): nothing ran, so start afresh.
                shutil.rmtree(rdir)
                rdir.mkdir()
        except OSError as exc:
            raise SubmitError(f"cannot create run directory {rdir}: {exc}") from exc
        try:
            files = {name: text.encode() for name, text in self._stage(job, rdir).items()}
            # The wrapper's shell writes job.json and wrapper.sh itself (see BOOT): creating
            # files costs more than the fork, and so it stays off the event loop.
            inline = (self.platform.inline and job.spec.job_type != "noop"
                      and max(map(len, files.values())) <= INLINE_MAX)
            if not inline:
                for name, data in files.items():
                    (rdir / name).write_bytes(data)
        except InvalidJobError:
            raise
        except OSError as exc:
            raise InvalidJobError(f"cannot stage job: {exc}") from exc
        t = Tracked(job, rdir, interval=self.poll_min)
        if job.spec.timeout:
            t.deadline = time.time() + job.spec.timeout
        self.tracked[AttemptKey.of(job)] = t
        if job.spec.job_type == "noop":
            (rdir / "job.log").touch()
            (rdir / "exit").write_text("0\n")
            await self.emit(JobStarted(**ids(job), native_id="-", host=self.host,
                                       run_dir=str(rdir), time=time.time()))
            await self._finish(t)
            return "-"
        env = {**os.environb, b"JOBMESH_STAGE_JOB": files["job.json"],
               b"JOBMESH_STAGE_WRAPPER": files["wrapper.sh"]} if inline else None
        try:
            argv = self.platform.argv(str(rdir / "wrapper.sh"), inline)
            proc = subprocess.Popen(
                argv, cwd=rdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, close_fds=True, **self.platform.popen_options())
        except OSError as exc:  # (FileNotFoundError: no Git Bash, on Windows)
            del self.tracked[AttemptKey.of(job)]
            shutil.rmtree(rdir, ignore_errors=True)
            raise SubmitError(f"cannot start the job's shell: {exc}") from exc
        t.proc, t.pid = proc, proc.pid  # (the wrapper writes its pid file first thing)
        self._watch_child(t)
        await self.emit(JobStarted(**ids(job), native_id=str(proc.pid), host=self.host,
                                   run_dir=str(rdir), time=time.time()))
        # Its log is first read after poll_min: the platform reports an exit at once, so
        # a job that ends sooner is never polled. Wake the poller only if it sleeps longer.
        t.next_check = time.time() + self.poll_min
        if t.next_check < self._until:
            self._wake.set()
        return str(proc.pid)

    def _stage(self, job: JobReady, rdir: Path) -> dict[str, str]:
        """Copy the job's script and inputs; return the texts of job.json and wrapper.sh."""
        name = rundir.staged_script(job)
        if name and job.spec.script:
            src = Path(job.spec.script)
            if not src.is_file():
                raise InvalidJobError(f"script {src} does not exist")
            shutil.copyfile(src, rdir / name)
        if job.spec.venv:
            venv_python = self.platform.venv_python(job.spec.venv)
            if not venv_python.exists():
                raise InvalidJobError(f"venv {job.spec.venv} has no "
                                      f"{venv_python.relative_to(job.spec.venv).as_posix()}")
        for rel in stage_files(Path(job.base_dir), job.spec.inputs, "input"):
            (rdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(job.base_dir) / rel, rdir / rel)
        python = sys.executable if job.spec.job_type == "ipynb" else self.platform.python
        return {"job.json": job.model_dump_json(indent=1),
                "wrapper.sh": rundir.wrapper(job, str(rdir), python=python, tools=TOOLS,
                                             pylib=self.pylib, dialect=self.platform.dialect)}

    async def attach(self, job: JobReady, native_id: str) -> None:
        if AttemptKey.of(job) in self.tracked:
            return
        rdir = Path(rundir.run_dir(str(self.workdir), job))
        t = Tracked(job, rdir, pid=read_int(rdir / "pid"), interval=self.poll_min)
        if job.spec.timeout and (rdir / "job.json").exists():
            t.deadline = (rdir / "job.json").stat().st_mtime + job.spec.timeout
        self.tracked[AttemptKey.of(job)] = t
        await self.emit(JobStarted(**ids(job), native_id=str(t.pid or native_id or ""),
                                   host=self.host, run_dir=str(rdir), time=time.time()))
        self._wake.set()

    def _watch_child(self, t: Tracked) -> None:
        """Notice the wrapper's exit at once where the platform can (no thread per child);
        otherwise the poller asks ``_ended``."""

        def exited() -> None:
            if t.proc is not None:
                t.proc.poll()
            if not t.done:
                asyncio.ensure_future(self._finish(t))

        assert t.pid is not None
        t.watched = self.platform.watch(t.pid, exited)

    # -- cancel ------------------------------------------------------------------------

    async def cancel(self, job: JobReady, reason: str) -> None:
        t = self.tracked.get(AttemptKey.of(job))
        if t is None or t.done:
            return
        self._signal(t, reason)

    def _signal(self, t: Tracked, reason: str) -> None:
        if t.term_sent is None:
            try:
                (t.dir / "cancel").write_text(reason + "\n")
            except OSError:
                pass
        t.term_sent = t.term_sent or time.time()
        if t.pid and self._running(t):
            self.platform.stop(t.pid, hard=time.time() - t.term_sent >= KILL_GRACE)
        self._wake.set()

    def _running(self, t: Tracked) -> bool:
        """Is the job's wrapper still running? An own child is asked directly (its pid
        cannot be reused before it is reaped); any other pid through the platform."""
        if t.proc is not None:
            return t.proc.poll() is None
        return t.pid is not None and self.platform.is_job(t.pid, t.dir)

    # -- watching ----------------------------------------------------------------------

    async def sweep(self, timeout: float) -> None:
        """Look at every watched job once now, and wait until that pass is done."""
        self.swept.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(self.swept.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def _tick_loop(self) -> None:
        while True:
            self._wake.clear()  # (a wake-up during the pass below brings another pass)
            self._until = 0.0
            now = time.time()
            soonest = now + self.poll_max
            for t in list(self.tracked.values()):
                if t.done:
                    continue
                if t.deadline is not None and now >= t.deadline:
                    t.deadline = None
                    self._signal(t, "timeout")
                if t.term_sent is not None and now - t.term_sent >= KILL_GRACE:
                    self._signal(t, "")
                if now >= t.next_check:
                    changed = self._read_log(t)
                    if changed:
                        await self._report(t)
                        t.interval = self.poll_min
                    else:
                        t.interval = min(t.interval * 1.5, self.poll_max)
                    t.next_check = now + t.interval
                    if (not t.watched or not self.platform.sure) and self._ended(t):
                        await self._finish(t)
                        continue
                soonest = min(soonest, t.next_check)
                if t.deadline is not None:
                    soonest = min(soonest, t.deadline)
            self.swept.set()
            self._until = soonest
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.01, soonest - time.time()))
            except asyncio.TimeoutError:
                pass

    def _ended(self, t: Tracked) -> bool:
        """Has a job the platform does not watch ended? An own child when it exited (so
        its exit file is complete, and it is reaped); another when its exit file exists,
        or its pid is no longer its wrapper."""
        if t.proc is not None:
            return t.proc.poll() is not None
        if (t.dir / "exit").exists():
            return True
        pid = t.pid or read_int(t.dir / "pid")
        t.pid = pid
        return pid is None and not (t.dir / "wrapper.sh").exists() or (
            pid is not None and not self.platform.is_job(pid, t.dir))

    def _read_log(self, t: Tracked) -> bool:
        t.side = t.side or SideLogs.of(t.job)
        side = t.side.read_local(t.dir, t.scan)
        try:
            with open(t.dir / "job.log", "rb") as f:
                f.seek(t.offset)
                data = f.read(MAX_READ)
        except FileNotFoundError:
            return side
        if not data:
            return side
        t.offset += len(data)
        data = t.partial + data
        cut = data.rfind(b"\n") + 1
        t.partial = data[cut:]
        if cut:
            scan(data[:cut].decode("utf-8", "replace"), t.scan)
        return True

    async def _report(self, t: Tracked) -> None:
        """Publish the progress lines read since the last report: each one while there
        are few (so a watcher sees 10, 20, ... 100 in order), only the last of a flood."""
        s = t.scan
        outputs = json.dumps(s.outputs, sort_keys=True) if s.outputs else None
        steps = s.updates[-MAX_STEPS:] or [(s.progress, s.msg)]
        s.updates = []
        for progress, msg in steps:
            now = (progress, msg, outputs)
            if now != t.sent:
                t.sent = now
                await self.emit(JobProgressed(**ids(t.job), progress=progress, msg=msg,
                                              outputs=s.outputs, time=time.time()))

    async def _finish(self, t: Tracked) -> None:
        if t.done:
            return
        t.done = True
        while self._read_log(t):
            pass
        if t.partial:
            scan(t.partial.decode("utf-8", "replace"), t.scan)
            t.partial = b""
        if t.side is not None:
            t.side.flush(t.scan)
        if t.scan.updates:
            await self._report(t)
        code = rundir.parse_exit(read_text(t.dir / "exit"))
        if code is None and (t.dir / "exit").exists():
            await asyncio.sleep(0.05)  # the wrapper is writing it right now
            code = rundir.parse_exit(read_text(t.dir / "exit"))
        if code is None and not (t.dir / "cancel").exists():
            log.warning("%s/%s attempt %s: no exit file in %s (pid %s, own child %s, alive %s)",
                        t.job.workflow, t.job.job, t.job.attempt, t.dir, t.pid,
                        t.proc is not None, bool(t.pid and self.platform.is_job(t.pid, t.dir)))
        await self.emit(terminal_event(t.job, t.dir, t.scan, code, time.time()))
        self.tracked.pop(AttemptKey.of(t.job), None)
        if self.on_done is not None:
            await self.on_done(t.job)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except (asyncio.CancelledError, Exception):
                pass
            self._ticker = None
        self.platform.close()
        for t in self.tracked.values():
            t.done = True  # an exit notice still under way reports nothing: jobs run on
        self.tracked.clear()

