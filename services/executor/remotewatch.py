"""Watching remote jobs: one probe per host reads every job's new log bytes, exit code and
side logs in one round trip, polled with backoff while nothing changes; a job that ended
becomes its terminal event (``outcome.py``) and its declared outputs are fetched.

``RemoteWatch`` is a part of ``RemoteExecutor`` (remote.py), kept apart by responsibility:
submitting and launching there, watching here. The batch executors reuse both."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import re
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import JobFailed, JobProgressed, JobReady, JobSucceeded
from jobmesh.common.progress import LogScan, scan

from . import outcome, rundir
from .base import InvalidJobError
from .local import KILL_GRACE, MAX_STEPS
from .probe import parse as _parse
from .probe import probe_script
from .sidelog import SideLogs
from .transport import HostRefused, HostUnreachable, Transport

log = logging.getLogger("jobmesh.executor.remote")
NEVER_STARTED = 60.0       # s: a claimed run directory without pid or exit has no job
_SAFE_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]/-]+$")
_ids = outcome.ids


UPDATES_AT_ONCE = 64  # jobs whose probe news are applied side by side


async def side_by_side(updates: list[Awaitable[bool]]) -> bool:
    """Apply one probe's news to its jobs side by side, at most ``UPDATES_AT_ONCE`` at a
    time: each job's own events stay in order, and a probe that finds 2,000 jobs ended
    costs about the round trips of one job, not of 2,000, before the last is reported.
    True when any job changed. Every update runs to its end before an error is raised
    (the next probe must not meet a job still being updated)."""
    gate = asyncio.Semaphore(UPDATES_AT_ONCE)

    async def one(update: Awaitable[bool]) -> bool:
        async with gate:
            return await update

    results = await asyncio.gather(*(one(u) for u in updates), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return any(results)


@dataclass
class RJob:
    job: JobReady
    transport: Transport
    rdir: str
    offset: int = 0
    partial: bytes = b""
    scan: LogScan = field(default_factory=LogScan)
    sent: tuple[Any, ...] = (None, None, None)
    deadline: float | None = None
    term_sent: float | None = None
    dead_polls: int = 0
    done: bool = False
    settling: bool = False  # attached to, its id not yet found: not probed until it is
    since: float = field(default_factory=time.time)
    side: SideLogs | None = None  # <script>.log files, read by the same probe
    # Batch jobs (batch.py): Slurm said it ran; it was requeued; when its exit file was
    # seen; when an exit file under a stale PENDING first asked squeue again.
    ran: bool = False
    running: bool = False               # its start was reported
    queued_reason: str | None = "-"     # the last pending reason reported ("-": none yet)
    requeued: bool | None = None
    exit_at: float | None = None
    suspect: float | None = None

    def __post_init__(self) -> None:
        if self.side is None:
            self.side = SideLogs.of(self.job)


class RemoteWatch:
    """The watching half of ``RemoteExecutor`` (which sets these attributes)."""

    jobs: dict[AttemptKey, RJob]
    pollers: dict[str, asyncio.Task[None]]
    poll_min: float
    poll_max: float
    probes: int
    calls: collections.Counter[str]
    swept: asyncio.Event
    emit: Callable[[Any], Awaitable[None]]
    on_done: Callable[[JobReady], Any] | None

    async def _signal(self, rj: RJob, reason: str) -> None:
        raise NotImplementedError

    def _poll(self, t: Transport) -> None:
        task = self.pollers.get(t.name)
        if task is None or task.done():
            self.pollers[t.name] = asyncio.create_task(self._poll_host(t))

    async def sweep(self, timeout: float) -> None:
        """Probe every host once now."""
        hosts = {rj.transport.name: rj.transport for rj in self.jobs.values()}
        try:
            await asyncio.wait_for(asyncio.gather(*(self._probe(t) for t in hosts.values()),
                                                  return_exceptions=True), timeout)
        except asyncio.TimeoutError:
            pass
        self.swept.set()

    async def _poll_host(self, t: Transport) -> None:
        interval = self.poll_min
        while any(rj.transport is t and not rj.done for rj in self.jobs.values()):
            try:
                changed = await self._probe(t)
                interval = self.poll_min if changed else min(interval * 1.5, self.poll_max)
            except HostUnreachable as exc:
                log.warning("%s: %s; jobs run on there, retrying", t.name, exc)
                interval = min(max(interval * 2, 1.0), self.poll_max * 5)
            except HostRefused as exc:
                for rj in [r for r in self.jobs.values() if r.transport is t]:
                    await self._finish(rj, None, str(exc))
                return
            except Exception:  # never let the watch of a host die silently
                log.exception("probe of %s failed; retrying", t.name)
                interval = min(max(interval * 2, 1.0), self.poll_max * 5)
            await asyncio.sleep(interval)

    def _watched(self, t: Transport) -> list[RJob]:
        """The jobs a probe of host ``t`` reads: not ended, their id known."""
        return [rj for rj in self.jobs.values()
                if rj.transport is t and not rj.done and not rj.settling]

    async def _probe(self, t: Transport) -> bool:
        mine = self._watched(t)
        if not mine:
            return False
        now = time.time()
        for rj in mine:
            if rj.deadline is not None and now >= rj.deadline:
                rj.deadline = None
                await self._signal(rj, "timeout")
            elif rj.term_sent is not None and now - rj.term_sent >= KILL_GRACE:
                await self._signal(rj, "")
        res = await t.run("/bin/sh -s", stdin=probe_script(mine), timeout=60)
        self.probes += 1
        self.calls[f"poll.{t.name}"] += 1
        return await side_by_side([self._update(mine[i], fields)
                                   for i, fields in _parse(res.stdout).items() if i < len(mine)])

    async def _update(self, rj: RJob, f: dict[str, str]) -> bool:
        if "missing" in f:
            rj.dead_polls += 1
            if rj.dead_polls >= 3:
                await self._finish(rj, None, f"the run directory {rj.rdir} is gone")
            return True
        changed = await self._read_log(rj, f)
        code = rundir.parse_exit(f["exit"] + "\n") if f.get("exit") else None
        if code is not None:
            await self._finish(rj, code, None, f)
            return True
        if "pid" not in f and time.time() - rj.since > NEVER_STARTED:
            await self._finish(rj, None, f"the job never started in {rj.rdir} (the executor "
                               "stopped between claiming and launching it)")
            return True
        if "alive" not in f and "pid" in f:
            rj.dead_polls += 1
            if rj.dead_polls >= 2:
                await self._finish(rj, None, None, f)
        return changed

    async def _read_log(self, rj: RJob, f: dict[str, str]) -> bool:
        """Fold the log bytes a probe brought back; True when there were any."""
        side = rj.side is not None and rj.side.read_probe(f, rj.scan)
        data = base64.b64decode(f.get("log", "")) if f.get("log") else b""
        if not data:
            if side:
                await self._report(rj)
            return side
        rj.offset += len(data)
        data = rj.partial + data
        cut = data.rfind(b"\n") + 1
        rj.partial = data[cut:]
        if cut:
            scan(data[:cut].decode("utf-8", "replace"), rj.scan)
        await self._report(rj)
        return True

    async def _report(self, rj: RJob) -> None:
        s = rj.scan
        outputs = json.dumps(s.outputs, sort_keys=True) if s.outputs else None
        steps = s.updates[-MAX_STEPS:] or [(s.progress, s.msg)]
        s.updates = []
        for progress, msg in steps:
            if (progress, msg, outputs) != rj.sent:
                rj.sent = (progress, msg, outputs)
                await self.emit(JobProgressed(**_ids(rj.job), progress=progress, msg=msg,
                                              outputs=s.outputs, time=time.time()))

    async def _finish(self, rj: RJob, code: int | None, problem: str | None,
                      f: dict[str, str] | None = None) -> None:
        if rj.done:
            return
        rj.done = True
        f = f or {}
        if rj.partial:
            scan(rj.partial.decode("utf-8", "replace"), rj.scan)
            rj.partial = b""
        if rj.side is not None:
            rj.side.flush(rj.scan)
        if rj.scan.updates:
            await self._report(rj)
        s, ids, now = rj.scan, _ids(rj.job), time.time()
        outputs = dict(s.outputs or {})
        if f.get("outputs"):
            try:
                extra = json.loads(base64.b64decode(f["outputs"]))
                outputs.update(extra if isinstance(extra, dict) else {})
            except ValueError:
                pass
        event = JobFailed(**ids, reason=problem, progress=s.progress, msg=s.msg,
                          outputs=outputs or None, time=now) if problem is not None else \
            outcome.ended(rj.job, code, f.get("cancel"), f.get("reason", "").strip(), s,
                          outputs, now, rj.transport.name)
        if event is None:
            try:
                await self._fetch_outputs(rj)
                event = JobSucceeded(**ids, exit_code=0, progress=s.progress, msg=s.msg,
                                     outputs=outputs or None, time=now)
            except (InvalidJobError, HostUnreachable, HostRefused, OSError) as exc:
                event = JobFailed(**ids, exit_code=0, reason=str(exc), progress=s.progress,
                                  msg=s.msg, outputs=outputs or None, time=now)
        await self.emit(event)
        self.jobs.pop(AttemptKey.of(rj.job), None)
        if self.on_done is not None:
            await self.on_done(rj.job)

    async def _fetch_outputs(self, rj: RJob) -> None:
        patterns = rj.job.spec.outputs
        if not patterns:
            return
        for p in patterns:
            if not _SAFE_GLOB.match(p):
                raise InvalidJobError(f"output pattern {p!r} has characters jobmesh will not "
                                      "pass to a remote shell")
        listing = await rj.transport.run(
            f"cd {shlex.quote(rj.rdir)} && for f in {' '.join(patterns)}; do "
            "[ -f \"$f\" ] && printf '%s\\n' \"$f\"; done; true")
        found = [x for x in listing.stdout.decode(errors="replace").splitlines() if x]
        for p in patterns:
            if not any(Path(x).match(p) or x == p for x in found):
                raise InvalidJobError(f"declared output '{p}' matches no file on "
                                      f"{rj.transport.name}")
        for rel in found:
            if rel.startswith("/") or ".." in rel.split("/"):
                continue
            data = await rj.transport.get(f"{rj.rdir}/{rel}")
            dest = Path(rj.job.base_dir) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
