"""The embedded stack: a private nats-server and every service, in one process.

If ``jobmesh up`` already runs a stack from the same home, commands use it instead.
A lock file keeps two embedded stacks from sharing one JetStream store. The server
requires the home's token (``jobmesh.common.credentials``); every command of the home
reads it, other accounts cannot.

A service task that ends while the stack runs is logged with its traceback and reported
by ``dead()``: ``/healthz`` answers 503 and ``jobmesh info`` names it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from jobmesh.common import bus, credentials
from jobmesh.common.loader import SpecError, SpecIssue
from jobmesh.common.settings import Settings
from jobmesh.common.spec import KINDS
from jobmesh.executor.app import ExecutorService
from jobmesh.monitor.app import MonitorService
from jobmesh.scheduler.app import SchedulerService

from . import natsserver
from .natsserver import StackBusy

__all__ = ["Stack", "StackBusy", "service_info"]
log = logging.getLogger("jobmesh.stack")


def service_info(home: Path) -> dict[str, Any] | None:
    """What a running ``jobmesh up`` wrote about itself, if it is alive."""
    path = home / "service.json"
    try:
        info: dict[str, Any] = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, PermissionError):
        return None


def _check_platform() -> None:
    """JOBMESH_PLATFORM names a platform the local executor can use here; else the
    error is bad input (``jobmesh run`` prints one line and exits 2), not a service that
    dies with a traceback after the run started."""
    from jobmesh.executor.platforms import PlatformError, select_platform

    try:
        select_platform()
    except PlatformError as exc:
        raise SpecError([SpecIssue("JOBMESH_PLATFORM", None, str(exc).removeprefix(
            f"JOBMESH_PLATFORM={os.environ.get('JOBMESH_PLATFORM')}: "))]) from None


class Stack:
    """``async with Stack(home) as s:`` gives ``s.nc``/``s.js`` on a working bus.

    services: which services to run in-process ("scheduler", "executor", "monitor");
    take_work=False: executors re-attach and report, but take no new work (for status).
    live_graphs=False: the monitor stores a graph only when its run ends (a private stack
    no other process can reach: nobody watches the graph while it runs).
    """

    def __init__(self, home: Path, services: tuple[str, ...] = ("scheduler", "executor",
                 "monitor"), workdir: Path | None = None, use_running: bool = True,
                 take_work: bool = True, live_graphs: bool = True):
        self.home = home
        self.services = services
        self.workdir = workdir
        self.use_running = use_running
        self.take_work = take_work
        self.live_graphs = live_graphs
        self.server: natsserver.NatsServer | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.stop = asyncio.Event()
        self._lock: int | None = None
        self.shared = False
        self.monitor: MonitorService | None = None
        self.executor: ExecutorService | None = None  # the local one
        self.executors: list[ExecutorService] = []

    async def __aenter__(self) -> Stack:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = service_info(self.home) if self.use_running else None
        if info is None and "executor" in self.services:
            _check_platform()  # before a server starts: bad input, one line, exit 2
        if info is not None:
            self.shared = True
            self.settings = Settings(nats_url=info["nats_url"], home=self.home,
                                     workdir=self.workdir,
                                     nats_token=credentials.read_token(self.home))
        else:
            early = natsserver.adopt(self.home) if self.use_running else None
            try:
                if early is not None:  # started by ``jobmesh run`` before its imports
                    self._lock, token, warning = early.lock, early.token, early.warning
                    starting = early.starting
                else:
                    self._lock = natsserver.take_lock(self.home)
                    token, warning = credentials.ensure_token(self.home)
                    starting = natsserver.spawn(self.home / "nats", token,
                                                pass_fds=(self._lock,), tied=True)
                    natsserver.mark(self._lock, "running", starting.proc.pid)
                if warning:
                    print(f"warning: {warning}", file=sys.stderr)
                self.server = await asyncio.to_thread(natsserver.wait_ready, starting)
            except Exception:
                self._release_lock()
                raise
            self.settings = Settings(nats_url=self.server.url, home=self.home,
                                     workdir=self.workdir, nats_token=token)
        nc = None
        try:
            nc = self.nc = await bus.connect(self.settings, "jobmesh-cli")
            self.js = self.nc.jetstream()
            await bus.ensure(self.js)
        except BaseException as exc:
            if nc is not None:
                await bus.close(nc)
            if self.server is not None:  # our own server: stop it again
                self._stop_server()
            elif isinstance(exc, bus.CredentialsRefused):
                raise credentials.CredentialsError(
                    f"the jobmesh stack of {self.home} refused the NATS token in "
                    f"{credentials.token_path(self.home)}, which changed after it started; "
                    "run 'jobmesh down' and 'jobmesh up'") from None
            raise
        if not self.shared:
            self._start_services()
        return self

    def _start_services(self) -> None:
        if "monitor" in self.services:
            self.monitor = MonitorService(self.settings, nc=self.nc,
                                          live_graphs=self.live_graphs)
            self._spawn(self.monitor.run(self.stop), "monitor")
        if "scheduler" in self.services:
            sched = SchedulerService(self.settings, nc=self.nc)
            self._spawn(sched.run(self.stop), "scheduler")
        if "executor" in self.services:
            for kind in KINDS:
                ex = ExecutorService(self.settings, pool=kind, kind=kind, nc=self.nc,
                                     take_work=self.take_work)
                self.executors.append(ex)
                self._spawn(ex.run(self.stop), f"{kind} executor")
            self.executor = self.executors[0]

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._ended)
        self.tasks.append(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A service task ended: expected once the stack stops, a failure before."""
        if self.stop.is_set():
            return
        exc = None if task.cancelled() else task.exception()
        log.error("the %s stopped: %s", task.get_name(), self._why(task),
                  exc_info=(type(exc), exc, exc.__traceback__) if exc else None)

    def _why(self, task: asyncio.Task[None], detail: bool = True) -> str:
        if task.cancelled():
            return "cancelled"
        exc = task.exception()
        if exc is None:
            return "it returned"
        return repr(exc) if detail else type(exc).__name__

    def dead(self, detail: bool = True) -> dict[str, str]:
        """The services that ended while the stack runs: name -> why (the error, or only
        its type without ``detail``: what /healthz tells anyone who asks)."""
        if self.stop.is_set():
            return {}
        return {t.get_name(): self._why(t, detail) for t in self.tasks if t.done()}

    def failed(self) -> str | None:
        """A service that died, with its error, or None while all run."""
        dead = self.dead()
        return "; ".join(f"the {name} stopped: {why}" for name, why in dead.items()) or None

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
        self._stop_server()

    def _stop_server(self) -> None:
        """Ask our server to stop without waiting: it keeps the home's lock (inherited)
        until it has flushed its store and exited, and the next command waits for that
        (``natsserver.take_lock``)."""
        if self.server is not None:
            if self._lock is not None:
                natsserver.mark(self._lock, "stopping", self.server.proc.pid)
            self.server.stop_nowait()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            natsserver.release_lock(self._lock)
            self._lock = None
