"""The remote executor: jobs run detached on another host (SSH) or in WSL, under the
same wrapper and run-directory files as local jobs.

Submissions to a host are batched: one script claims, stages and launches every job
waiting for that host, in one round trip (``launch.py``).

Per host, one probe command per poll reports every job there: exit files, live pids,
cancel and reason files, and the log bytes past each job's stored offset. A redelivered
job finds its run directory taken (``mkdir`` is the claim) and is attached to, never
launched twice. Hosts that cannot be reached fail only their own jobs, with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import shlex
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jobmesh
from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import (
    JobReady,
    JobStarted,
)
from jobmesh.common.spec import JobSpec

from . import launch, outcome, rundir
from .base import Emit, Executor, InvalidJobError, SubmitError, fail_waiting
from .local import KILL_GRACE, stage_files
from .remotewatch import RemoteWatch, RJob  # noqa: F401  (RJob: batch.py)
from .transport import HostRefused, HostUnreachable, Result, Transport

log = logging.getLogger("jobmesh.executor.remote")
NOTEBOOK_RUNNER = Path(__file__).with_name("notebook.py")  # standalone: nbclient, stdlib
DEFAULT_WORKDIR = "~/.jobmesh/runs"
CONNECT_TRIES = 3
HELPER = """#!/bin/sh
# jobmesh's job helpers for hosts without jobmesh: progress and output.
case "$1" in
  progress)
    p=$2; m=""
    if [ "$3" = "-m" ] || [ "$3" = "--msg" ]; then m=" msg=\\"$4\\""; fi
    echo "# cloudmesh status=running progress=$p pid=$$$m" ;;
  output) echo "# jobmesh output $2=$3" ;;
  *) echo "jobmesh (job helper): use 'progress N [-m MSG]' or 'output KEY VALUE'" >&2
     exit 2 ;;
esac
"""


class RemoteExecutor(RemoteWatch, Executor):
    """Jobs on hosts reached through a transport (ssh, wsl, a local shell): staged and
    launched in batches, watched by one probe per host (``remotewatch.py``)."""

    def __init__(self, kind: str, emit: Emit, transport_for: Callable[[JobSpec], Transport],
                 on_done: Callable[[JobReady], Any] | None = None, poll_min: float = 0.2,
                 poll_max: float = 2.0):
        self.kind = kind  # type: ignore[misc]
        self.emit, self.transport_for, self.on_done = emit, transport_for, on_done
        self.poll_min, self.poll_max = poll_min, poll_max
        self.jobs: dict[AttemptKey, RJob] = {}
        self.pollers: dict[str, asyncio.Task[None]] = {}
        self.homes: dict[str, str] = {}
        self.prepared: set[tuple[str, str]] = set()
        self.locks: dict[str, asyncio.Lock] = {}
        self.launching: dict[str, list[launch.Launch]] = {}  # host -> waiting submissions
        self.launchers: dict[str, asyncio.Task[None]] = {}
        self.probes = 0  # probe round trips made (for benchmarks)
        # calls per target for /metrics (sent in heartbeats): poll.<host>, status.<cluster>,
        # submit.<cluster>
        self.calls: collections.Counter[str] = collections.Counter()
        self.swept = asyncio.Event()

    async def start(self) -> None:
        return None

    def active(self) -> int:
        return len(self.jobs)

    # -- hosts ---------------------------------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    async def _home(self, t: Transport) -> str:
        """The remote home (asked once per host, even by concurrent submits)."""
        async with self._lock(f"home:{t.name}"):
            if t.name in self.homes:
                return self.homes[t.name]
            return await self._ask_home(t)

    async def _ask_home(self, t: Transport) -> str:
        res = await t.run('printf "%s" "$HOME"; command -v setsid >/dev/null || echo " NOSETSID"')
        text = res.stdout.decode(errors="replace")
        if "NOSETSID" in text:
            raise HostRefused(f"{t.name} has no 'setsid' (util-linux); jobs cannot detach there")
        home = text.strip()
        if not home.startswith("/"):
            raise HostUnreachable(f"{t.name} did not say where its home is")
        self.homes[t.name] = home
        return home

    async def _prepare(self, t: Transport, root: str) -> None:
        """jobmesh's job helpers (the `jobmesh progress` command, `import jobmesh`) under a
        workdir root, installed once per host and root."""
        async with self._lock(f"prep:{t.name}:{root}"):
            if (t.name, root) not in self.prepared:
                await self._install_helpers(t, root)

    async def _install_helpers(self, t: Transport, root: str) -> None:
        q = shlex.quote(root)
        await t.run(f"mkdir -p {q}/.bin {q}/.lib/jobmesh/executor")
        await t.put({f"{root}/.bin/jobmesh": HELPER.encode(),
                     f"{root}/.lib/jobmesh/__init__.py": Path(jobmesh.__file__).read_bytes(),
                     # the notebook runner, for `python3 -m jobmesh.executor.notebook` there
                     f"{root}/.lib/jobmesh/executor/__init__.py": b"",
                     f"{root}/.lib/jobmesh/executor/notebook.py": NOTEBOOK_RUNNER.read_bytes()},
                    mode={f"{root}/.bin/jobmesh": 0o755})
        self.prepared.add((t.name, root))

    @staticmethod
    def _workdir(home: str, spec: JobSpec | None) -> str:
        wd = str((spec.extras.get("workdir") if spec else None) or DEFAULT_WORKDIR)
        if wd.startswith("~"):
            wd = home + wd[1:]
        if not wd.startswith("/"):
            wd = f"{home}/{wd}"
        return wd.rstrip("/")

    async def _with_retries(self, t: Transport, what: Callable[[], Any]) -> Any:
        delay = 1.0
        for attempt in range(1, CONNECT_TRIES + 1):
            try:
                return await what()
            except HostRefused as exc:
                raise InvalidJobError(str(exc)) from None
            except HostUnreachable as exc:
                if attempt == CONNECT_TRIES:
                    raise InvalidJobError(f"{exc} (after {CONNECT_TRIES} tries)") from None
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # -- submit / attach -------------------------------------------------------------------

    async def submit(self, job: JobReady) -> str:
        if AttemptKey.of(job) in self.jobs:
            return self.jobs[AttemptKey.of(job)].rdir
        t = self.transport_for(job.spec)
        home = await self._with_retries(t, lambda: self._home(t))
        root = self._workdir(home, job.spec)
        await self._with_retries(t, lambda: self._prepare(t, root))
        rdir = rundir.run_dir(root, job)
        files, modes = self._files(job, rdir, root)
        item = launch.Launch(rdir, files, modes, self._launch_cmd(job, rdir),
                             self._report_cmd())
        self.launching.setdefault(t.name, []).append(item)
        if t.name not in self.launchers or self.launchers[t.name].done():
            self.launchers[t.name] = asyncio.create_task(self._launcher(t))
        res = await item.done
        if res is None:  # taken: a redelivered message or a retried batch; never twice
            await self.attach(job, "")
            return f"{t.name}:{rdir}"
        try:
            pid = await self._launched(t, job, rdir, res)
        except BaseException:
            try:
                await t.run(f"rm -rf {shlex.quote(rdir)}")
            except Exception:
                pass
            raise
        rj = RJob(job, t, rdir)
        if job.spec.timeout:
            rj.deadline = time.time() + job.spec.timeout
        self.jobs[AttemptKey.of(job)] = rj
        native = f"{t.name}:{pid}"
        await self._accepted(rj, native)
        self._poll(t)
        return native

    async def _accepted(self, rj: RJob, native: str) -> None:
        """The job was launched (or found again): say so."""
        await self.emit(JobStarted(**_ids(rj.job), native_id=native, host=rj.transport.name,
                                   run_dir=rj.rdir, time=time.time()))

    def _files(self, job: JobReady, rdir: str, root: str) -> tuple[dict[str, bytes],
                                                                   dict[str, int]]:
        files: dict[str, bytes] = {f"{rdir}/job.json": job.model_dump_json(indent=1).encode()}
        name = rundir.staged_script(job)
        if name and job.spec.script:
            try:
                files[f"{rdir}/{name}"] = Path(job.spec.script).read_bytes()
            except OSError as exc:
                raise InvalidJobError(f"cannot read script {job.spec.script}: {exc}") from None
        for rel in stage_files(Path(job.base_dir), job.spec.inputs, "input"):
            files[f"{rdir}/{rel.as_posix()}"] = (Path(job.base_dir) / rel).read_bytes()
        python = (job.spec.extras.get("python") or "python3")
        # On the host the workflow's folder is the run directory (inputs are staged there).
        there = job.model_copy(update={"base_dir": rdir})
        files[f"{rdir}/wrapper.sh"] = rundir.wrapper(
            there, rdir, python=str(python), tools=f"{root}/.bin", pylib=f"{root}/.lib").encode()
        return files, {f"{rdir}/wrapper.sh": 0o755}

    def _launch_cmd(self, job: JobReady, rdir: str) -> str:
        """Shell lines run in the staged run directory that start the job."""
        check = ""
        if job.spec.job_type in ("py", "ipynb"):
            py = f"{job.spec.venv}/bin/python" if job.spec.venv else str(
                job.spec.extras.get("python") or "python3")
            check = (f"command -v {shlex.quote(py)} >/dev/null 2>&1 || "
                     f"{{ echo MISSING {shlex.quote(py)}; exit 90; }}; ")
        return f"{check}(setsid /bin/sh ./wrapper.sh </dev/null >/dev/null 2>&1 &)"

    def _report_cmd(self) -> str:
        """Shell lines run once every job of a batch started: print the native id (here
        the wrapper's pid, which it writes as it starts)."""
        return ("i=0; while [ ! -s pid ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); "
                "done; cat pid 2>/dev/null")

    async def _launcher(self, t: Transport) -> None:
        """Send the host's waiting submissions, as many per script as fit."""
        waiting = self.launching[t.name]
        while waiting:
            batch = [waiting.pop(0)]
            size = batch[0].size
            while waiting and size + waiting[0].size <= launch.BATCH_BYTES \
                    and len(batch) < launch.BATCH_JOBS:
                size += waiting[0].size
                batch.append(waiting.pop(0))
            try:
                body = launch.script(batch)
                res = await self._with_retries(t, partial(t.run, "/bin/sh -s", stdin=body,
                                                          timeout=300))
                outcomes = launch.parse(res.stdout, len(batch))
            except BaseException as exc:
                fail_waiting((item.done for item in batch), exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for item, result in zip(batch, outcomes):
                if isinstance(result, PermissionError):
                    item.done.set_exception(InvalidJobError(
                        f"cannot create the run directory {item.rdir} on {t.name}"))
                elif isinstance(result, Exception):
                    item.done.set_exception(SubmitError(f"{t.name}: {result}"))
                else:
                    item.done.set_result(result)

    async def _launched(self, t: Transport, job: JobReady, rdir: str, res: Result) -> str:
        """The native id from what the launch lines printed; InvalidJobError if refused."""
        out = res.stdout.decode(errors="replace").strip()
        if out.startswith("MISSING"):
            raise InvalidJobError(f"{out[8:]} is not installed on {t.name}; install it or set "
                                  "venv:/python: for this job")
        if res.status != 0:
            raise InvalidJobError(f"cannot stage or launch the job on {t.name}: {out[-500:]}")
        return out or "?"

    async def attach(self, job: JobReady, native_id: str) -> None:
        if AttemptKey.of(job) in self.jobs:
            return
        t = self.transport_for(job.spec)
        home = self.homes.get(t.name)
        if home is None:
            try:
                home = await self._home(t)
            except (HostUnreachable, HostRefused):
                home = "~"
        rdir = rundir.run_dir(self._workdir(home, job.spec), job)
        rj = RJob(job, t, rdir, settling=True)
        self.jobs[AttemptKey.of(job)] = rj
        try:  # a poll running for other jobs of this host waits until its id is known
            await self._accepted(rj, native_id or f"{t.name}:?")
        finally:
            rj.settling = False
        self._poll(t)

    # -- cancel -----------------------------------------------------------------------------

    async def cancel(self, job: JobReady, reason: str) -> None:
        rj = self.jobs.get(AttemptKey.of(job))
        if rj is None or rj.done:
            return
        await self._signal(rj, reason)

    async def _signal(self, rj: RJob, reason: str) -> None:
        first = rj.term_sent is None
        rj.term_sent = rj.term_sent or time.time()
        sig = "TERM" if time.time() - rj.term_sent < KILL_GRACE else "KILL"
        q = shlex.quote(rj.rdir)
        mark = f"printf '%s\\n' {shlex.quote(reason or 'canceled')} > {q}/cancel; " if first \
            else ""
        # "-s SIG --": dash (sh on Debian, Ubuntu and WSL) takes "kill -TERM -- -PGID" for
        # a bad number, and the fallback would signal the wrapper alone (its children
        # would run on).
        cmd = (f"{mark}p=$(cat {q}/pid 2>/dev/null) && "
               f"{{ kill -s {sig} -- -$p 2>/dev/null || kill -s {sig} $p 2>/dev/null; }}; "
               "true")
        try:
            await rj.transport.run(cmd, timeout=30)
        except (HostUnreachable, HostRefused) as exc:
            log.warning("cancel on %s failed (will retry): %s", rj.transport.name, exc)

    async def close(self) -> None:
        for task in self.launchers.values():
            task.cancel()
        for task in self.pollers.values():
            task.cancel()
        for task in self.pollers.values():
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self.pollers.clear()
        self.jobs.clear()


_ids = outcome.ids  # the name batch.py and array.py import


__all__ = ["RemoteExecutor", "SubmitError"]
