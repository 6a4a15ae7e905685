"""The embedded stack: a private nats-server and every service, in one process.

If ``jobmesh up`` already runs a stack from the same home, commands use it instead.
A lock file keeps two embedded stacks from sharing one JetStream store.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from jobmesh.common import bus
from jobmesh.common.settings import Settings
from jobmesh.executor.app import ExecutorService
from jobmesh.monitor.app import MonitorService
from jobmesh.scheduler.app import SchedulerService

from . import natsserver

EXECUTOR_KINDS = ("local", "ssh", "wsl", "slurm", "lsf")


class StackBusy(RuntimeError):
    pass


def service_info(home: Path) -> dict[str, Any] | None:
    """What a running ``jobmesh up`` wrote about itself, if it is alive."""
    path = home / "service.json"
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, PermissionError):
        return None


class Stack:
    """``async with Stack(home) as s:`` gives ``s.nc``/``s.js`` on a working bus.

    services: which services to run in-process ("scheduler", "executor", "monitor");
    attach_only: executors re-attach and report, but take no new work (for status).
    """

    def __init__(self, home: Path, services: tuple[str, ...] = ("scheduler", "executor",
                 "monitor"), workdir: Path | None = None, use_running: bool = True,
                 take_work: bool = True):
        self.home = home
        self.services = services
        self.workdir = workdir
        self.use_running = use_running
        self.take_work = take_work
        self.server: natsserver.NatsServer | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.stop = asyncio.Event()
        self._lock: int | None = None
        self.shared = False
        self.monitor: MonitorService | None = None
        self.executor: ExecutorService | None = None  # the local one
        self.executors: list[ExecutorService] = []

    async def __aenter__(self) -> Stack:
        self.home.mkdir(parents=True, exist_ok=True)
        info = service_info(self.home) if self.use_running else None
        if info is not None:
            self.shared = True
            self.settings = Settings(nats_url=info["nats_url"], home=self.home,
                                     workdir=self.workdir)
        else:
            self._take_lock()
            try:
                self.server = await asyncio.to_thread(natsserver.start, self.home / "nats")
            except Exception:
                self._release_lock()
                raise
            self.settings = Settings(nats_url=self.server.url, home=self.home,
                                     workdir=self.workdir)
        self.nc = await bus.connect(self.settings, "jobmesh-cli")
        self.js = self.nc.jetstream()
        await bus.ensure(self.js)
        if not self.shared:
            self._start_services()
        return self

    def _start_services(self) -> None:
        if "monitor" in self.services:
            self.monitor = MonitorService(self.settings, nc=self.nc)
            self.tasks.append(asyncio.create_task(self.monitor.run(self.stop), name="monitor"))
        if "scheduler" in self.services:
            sched = SchedulerService(self.settings, nc=self.nc)
            self.tasks.append(asyncio.create_task(sched.run(self.stop), name="scheduler"))
        if "executor" in self.services:
            for kind in EXECUTOR_KINDS:
                ex = ExecutorService(self.settings, pool=kind, kind=kind, nc=self.nc,
                                     take_work=self.take_work)
                self.executors.append(ex)
                self.tasks.append(asyncio.create_task(ex.run(self.stop), name=f"{kind} executor"))
            self.executor = self.executors[0]

    def failed(self) -> str | None:
        """A service that died, with its error, or None while all run."""
        for t in self.tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                return f"the {t.get_name()} stopped: {t.exception()!r}"
        return None

    async def __aexit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.tasks:
            t0 = time.monotonic()
            done, pending = await asyncio.wait(self.tasks, timeout=10)
            for t in pending:
                t.cancel()
            if os.environ.get("JOBMESH_DEBUG"):
                print(f"services stopped in {time.monotonic() - t0:.2f}s; pending={pending}")
        await bus.close(self.nc)
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        self._release_lock()

    def _take_lock(self) -> None:
        path = self.home / "stack.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StackBusy(
                f"another jobmesh command is running its own stack from {self.home}; wait for "
                "it, start a shared one with 'jobmesh up', or set JOBMESH_HOME") from None
        self._lock = fd

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None
