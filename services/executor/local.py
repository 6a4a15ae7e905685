"""The local executor: jobs run detached on this machine, under the shared wrapper.

While this executor lives, the wrappers are its children and their exits are noticed at
once (a pidfd on the event loop). Jobs it attached to after a restart are not its
children; their ``exit`` files and pids are polled instead. Logs are tailed from stored
offsets, with an interval that backs off while nothing changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobmesh.common.messages import (
    JobCanceled,
    JobFailed,
    JobProgressed,
    JobReady,
    JobStarted,
    JobSucceeded,
)
from jobmesh.common.progress import LogScan, scan

from . import rundir
from .base import Emit, Executor, InvalidJobError, SubmitError
from .sidelog import SideLogs

KILL_GRACE = 5.0      # seconds between SIGTERM and SIGKILL on cancel
MAX_READ = 1 << 20    # log bytes read per job per tick
TOOLS = os.path.dirname(sys.executable)  # where the jobmesh command is, for jobs' PATH
MAX_STEPS = 20        # progress lines published one by one per tick; beyond, the last
# The wrapper's shell first writes the run directory's job.json and wrapper.sh from its
# environment, then runs the wrapper in the same process ("." keeps its pid).
log = logging.getLogger("jobmesh.executor.local")
BOOT = ('printf %s "$JOBMESH_STAGE_JOB" > job.json && '
        'printf %s "$JOBMESH_STAGE_WRAPPER" > wrapper.sh && '
        'unset JOBMESH_STAGE_JOB JOBMESH_STAGE_WRAPPER && . "$0"')
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
    done: bool = False


def _key(job: JobReady) -> tuple[str, str, str, int]:
    return (job.workflow, job.run, job.job, job.attempt)


class LocalExecutor(Executor):
    kind = "local"

    def __init__(self, emit: Emit, workdir: Path, on_done: Callable[[JobReady], Any] | None = None,
                 poll_min: float = 0.05, poll_max: float = 2.0):
        self.emit = emit
        self.workdir = Path(workdir)
        self.on_done = on_done
        self.poll_min, self.poll_max = poll_min, poll_max
        self.host = socket.gethostname()
        self.tracked: dict[tuple[str, str, str, int], Tracked] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._until = 0.0  # when the poller wakes next by itself
        self.swept = asyncio.Event()  # set after each pass over the watched jobs

    async def start(self) -> None:
        self.pylib = _helper_lib(self.workdir)
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_loop())

    def active(self) -> int:
        return len(self.tracked)

    # -- submit / attach -----------------------------------------------------------------

    async def submit(self, job: JobReady) -> str:
        rdir = Path(rundir.run_dir(str(self.workdir), job))
        if _key(job) in self.tracked:
            return str(self.tracked[_key(job)].pid or "")
        try:
            rdir.parent.mkdir(parents=True, exist_ok=True)
            try:
                rdir.mkdir()
            except FileExistsError:
                if not _abandoned(rdir):
                    pid = _read_int(rdir / "pid")
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
            inline = job.spec.job_type != "noop" and max(map(len, files.values())) <= INLINE_MAX
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
        self.tracked[_key(job)] = t
        if job.spec.job_type == "noop":
            (rdir / "job.log").touch()
            (rdir / "exit").write_text("0\n")
            await self.emit(JobStarted(**_ids(job), native_id="-", host=self.host,
                                       run_dir=str(rdir), time=time.time()))
            await self._finish(t)
            return "-"
        env = {**os.environb, b"JOBMESH_STAGE_JOB": files["job.json"],
               b"JOBMESH_STAGE_WRAPPER": files["wrapper.sh"]} if inline else None
        try:
            # $0 names the wrapper file, so the command line holds the run directory
            # (_alive checks it) and ps shows which job this is.
            proc = subprocess.Popen(
                ["/bin/sh", "-c", BOOT if inline else '. "$0"', str(rdir / "wrapper.sh")],
                cwd=rdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        except OSError as exc:
            del self.tracked[_key(job)]
            shutil.rmtree(rdir, ignore_errors=True)
            raise SubmitError(f"cannot start /bin/sh: {exc}") from exc
        t.proc, t.pid = proc, proc.pid  # (the wrapper writes its pid file first thing)
        self._watch_child(t)
        await self.emit(JobStarted(**_ids(job), native_id=str(proc.pid), host=self.host,
                                   run_dir=str(rdir), time=time.time()))
        # Its log is first read after poll_min: the pidfd reports an exit at once, so a
        # job that ends sooner is never polled. Wake the poller only if it sleeps longer.
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
        if job.spec.venv and not Path(job.spec.venv, "bin", "python").exists():
            raise InvalidJobError(f"venv {job.spec.venv} has no bin/python")
        for rel in stage_files(Path(job.base_dir), job.spec.inputs, "input"):
            (rdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(job.base_dir) / rel, rdir / rel)
        python = sys.executable if job.spec.job_type == "ipynb" else "python3"
        return {"job.json": job.model_dump_json(indent=1),
                "wrapper.sh": rundir.wrapper(job, str(rdir), python=python, tools=TOOLS,
                                             pylib=self.pylib)}

    async def attach(self, job: JobReady, native_id: str) -> None:
        if _key(job) in self.tracked:
            return
        rdir = Path(rundir.run_dir(str(self.workdir), job))
        t = Tracked(job, rdir, pid=_read_int(rdir / "pid"), interval=self.poll_min)
        if job.spec.timeout and (rdir / "job.json").exists():
            t.deadline = (rdir / "job.json").stat().st_mtime + job.spec.timeout
        self.tracked[_key(job)] = t
        await self.emit(JobStarted(**_ids(job), native_id=str(t.pid or native_id or ""),
                                   host=self.host, run_dir=str(rdir), time=time.time()))
        self._wake.set()

    def _watch_child(self, t: Tracked) -> None:
        """Notice the wrapper's exit at once through a pidfd, without a thread per child."""
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(t.pid)  # type: ignore[arg-type]
        except (AttributeError, OSError):
            return  # the poller will notice

        def ready() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            if t.proc is not None:
                t.proc.poll()
            if not t.done:
                asyncio.ensure_future(self._finish(t))

        loop.add_reader(fd, ready)

    # -- cancel ------------------------------------------------------------------------

    async def cancel(self, job: JobReady, reason: str) -> None:
        t = self.tracked.get(_key(job))
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
        sig = signal.SIGTERM if time.time() - t.term_sent < KILL_GRACE else signal.SIGKILL
        if t.pid and _alive(t.pid, t.dir):
            try:
                os.killpg(t.pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(t.pid, sig)
        self._wake.set()

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
                    if t.proc is None and self._ended(t):
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
        if (t.dir / "exit").exists():
            return True
        pid = t.pid or _read_int(t.dir / "pid")
        t.pid = pid
        return pid is None and not (t.dir / "wrapper.sh").exists() or (
            pid is not None and not _alive(pid, t.dir))

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
                await self.emit(JobProgressed(**_ids(t.job), progress=progress, msg=msg,
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
        code = rundir.parse_exit(_read_text(t.dir / "exit"))
        if code is None and (t.dir / "exit").exists():
            await asyncio.sleep(0.05)  # the wrapper is writing it right now
            code = rundir.parse_exit(_read_text(t.dir / "exit"))
        reason = _read_text(t.dir / "cancel").strip() if (t.dir / "cancel").exists() else None
        outputs = dict(t.scan.outputs or {})
        outputs.update(_read_outputs(t.dir / "outputs.json"))
        ids = _ids(t.job)
        s = t.scan
        now = time.time()
        event: Any
        if reason == "timeout":
            event = JobFailed(**ids, exit_code=code, reason="timeout", progress=s.progress,
                              msg=s.msg, outputs=outputs or None, time=now)
        elif reason is not None:
            event = JobCanceled(**ids, exit_code=code, reason=reason or "canceled", time=now)
        elif code is None:
            log.warning("%s/%s attempt %s: no exit file in %s (pid %s, own child %s, alive %s)",
                        t.job.workflow, t.job.job, t.job.attempt, t.dir, t.pid,
                        t.proc is not None, bool(t.pid and _alive(t.pid, t.dir)))
            event = JobFailed(**ids, reason="the job's process was killed before it could "
                              "record an exit code", progress=s.progress, msg=s.msg, time=now)
        elif code != 0:
            told = _read_text(t.dir / "reason").strip()
            event = JobFailed(**ids, exit_code=code, reason=told or rundir.describe_exit(code),
                              progress=s.progress, msg=s.msg, outputs=outputs or None, time=now)
        elif s.status == "failed":
            event = JobFailed(**ids, exit_code=code, reason="the job reported status=failed",
                              progress=s.progress, msg=s.msg, outputs=outputs or None, time=now)
        else:
            try:
                for rel in stage_files(t.dir, t.job.spec.outputs, "output"):
                    dest = Path(t.job.base_dir) / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(t.dir / rel, dest)
                event = JobSucceeded(**ids, exit_code=0, progress=s.progress, msg=s.msg,
                                     outputs=outputs or None, time=now)
            except (InvalidJobError, OSError) as exc:
                event = JobFailed(**ids, exit_code=0, reason=str(exc), progress=s.progress,
                                  msg=s.msg, outputs=outputs or None, time=now)
        await self.emit(event)
        self.tracked.pop(_key(t.job), None)
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
        self.tracked.clear()


def stage_files(root: Path, patterns: list[str], what: str) -> list[Path]:
    """Files under root matching the patterns, as relative paths. A pattern that matches
    nothing is an error (a declared input or output that is not there)."""
    found: list[Path] = []
    if not patterns:
        return found
    base = root.resolve()
    for pattern in patterns:
        matches = [p for p in sorted(root.glob(pattern)) if p.is_file()]
        if not matches:
            raise InvalidJobError(f"declared {what} '{pattern}' matches no file in {root}")
        for p in matches:
            real = p.resolve()
            if base not in real.parents:
                raise InvalidJobError(f"{what} '{p}' leaves {root}")
            found.append(p.relative_to(root))
    return found


def _helper_lib(workdir: Path) -> str:
    """A folder holding only jobmesh's job-side helpers (jobmesh.progress, .output), for
    jobs' PYTHONPATH: any Python, even without jobmesh installed, can import them."""
    import jobmesh

    lib = workdir / ".lib"
    target = lib / "jobmesh" / "__init__.py"
    source = Path(jobmesh.__file__).read_text()
    if not target.exists() or target.read_text() != source:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, target)
    return str(lib)


def _ids(job: JobReady) -> dict[str, Any]:
    return dict(workflow=job.workflow, run=job.run, job=job.job, attempt=job.attempt)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def _read_int(path: Path) -> int | None:
    text = _read_text(path).strip()
    return int(text) if text.isdigit() else None


def _read_outputs(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


ABANDONED_AFTER = 10.0  # seconds: a run directory this old without pid or exit never ran


def _abandoned(rdir: Path) -> bool:
    """A run directory whose wrapper was never started: its launcher died between mkdir
    and starting it. (A started wrapper writes ``pid`` within milliseconds, and the
    JobReady comes back only after the consumer's ack wait, far longer.)"""
    try:
        age = time.time() - rdir.stat().st_mtime
    except FileNotFoundError:
        return False
    return (age > ABANDONED_AFTER and not (rdir / "pid").exists()
            and not (rdir / "exit").exists())


def _alive(pid: int, rdir: Path) -> bool:
    """Is pid still our wrapper? Guards against pid reuse by checking its command line."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(rdir).encode() in f.read()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
