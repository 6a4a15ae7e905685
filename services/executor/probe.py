"""The probe: one shell script per host and poll that reports every job there (exit
file, pid liveness, cancel and reason files, the log bytes past each job's stored offset,
outputs), so watching N jobs costs one round trip, not N. For the batch kinds also the
status policy: when a status query (squeue/bjobs) is due, accounting for jobs that left
the queue, and controller outages."""

from __future__ import annotations

import logging
import os
import shlex
import time
from typing import Any, Protocol

from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import JobProgressed

from .transport import HostRefused, HostUnreachable, Transport

log = logging.getLogger("jobmesh.executor.batch")


class Watched(Protocol):
    rdir: str    # the job's run directory there
    offset: int  # log bytes already read
    side: Any    # a sidelog.SideLogs or None: <script>.log files to read as well

PROBE_BYTES = 256 * 1024   # log bytes per job per probe


# The probe: a shell function defined once per probe, then one short line per job. The
# script goes to `sh -s` on standard input: one argument may not exceed 128 KiB on Linux.
PROBE_FN = (
    "p() { printf '\\n@@J %s\\n' \"$1\"; d=$2\n"
    'if [ -d "$d" ]; then\n'
    '  [ -s "$d/exit" ] && { read -r x < "$d/exit"; printf "exit=%s\\n" "$x"; }\n'
    '  if [ -s "$d/pid" ]; then echo pid=1; read -r x < "$d/pid"; kill -0 "$x" 2>/dev/null '
    "&& echo alive=1; fi\n"
    '  [ -f "$d/started" ] && echo started=1\n'
    '  [ -f "$d/cancel" ] && printf "cancel=%s\\n" "$(head -c 300 "$d/cancel" | tr "\\n" " '
    '" | sed "s/ *$//")"\n'
    '  [ -f "$d/reason" ] && printf "reason=%s\\n" "$(head -c 2000 "$d/reason" | tr "\\n" '
    '" ")"\n'
    # Only a log that grew past the stored offset is read (most polls read none); a job
    # still in the batch queue has no log yet and costs no process (test is a builtin).
    '  [ -s "$d/job.log" ] && n=$(wc -c < "$d/job.log" 2>/dev/null) && '
    '[ "${n:-0}" -ge "$3" ] && { printf "log="; '
    f'tail -c +"$3" "$d/job.log" | head -c {PROBE_BYTES} | base64 | tr -d "\\n"; echo; }}\n'
    # Then the side logs (sidelog.py): "name first-byte" pairs after the log's offset.
    '  shift 3; while [ $# -ge 2 ]; do n=$(wc -c < "$d/$1" 2>/dev/null); '
    '[ "${n:-0}" -ge "$2" ] && { printf "side:%s=" "$1"; '
    f'tail -c +"$2" "$d/$1" | head -c {PROBE_BYTES} | base64 | tr -d "\\n"; echo; }}; '
    "shift 2; done\n"
    '  if [ -s "$d/exit" ] && [ -f "$d/outputs.json" ]; then printf "outputs="; '
    'head -c 65536 "$d/outputs.json" | base64 | tr -d "\\n"; echo; fi\n'
    "else echo missing=1; fi; }\n"
)


def probe_one(i: int, rj: Watched) -> str:
    side = getattr(rj, "side", None)
    extra = "".join(f" {shlex.quote(name)} {first}" for name, first in
                    (side.probe_args() if side is not None else []))
    return f"p {i} {shlex.quote(rj.rdir)} {rj.offset + 1}{extra}"


def probe_script(jobs: list[Any], before: str = "") -> bytes:
    return (before + PROBE_FN + "\n".join(probe_one(i, rj) for i, rj in enumerate(jobs))
            + "\n").encode()


def parse(out: bytes) -> dict[int, dict[str, str]]:
    result: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in out.decode("utf-8", "replace").splitlines():
        if raw.startswith("@@J "):
            current = result.setdefault(int(raw[4:].strip()), {})
        elif current is not None and "=" in raw:
            k, _, v = raw.partition("=")
            current[k] = v
    return result


# Site-friendly polling: at most one status query (squeue/bjobs) per cluster connection
# (one user) per interval. Exit files are read on every probe over the open connection,
# which costs the controller nothing, so finished work is still noticed within seconds.
DEFAULT_STATUS_INTERVAL = 30.0
FORCED_STATUS_GAP = 2.0  # a failed exit file asks the batch system for the reason, no faster


def status_interval(extras: dict[str, Any]) -> float:
    """The node's ``squeue_interval`` (seconds), else $JOBMESH_SQUEUE_INTERVAL, else 30."""
    for value in (extras.get("squeue_interval"), os.environ.get("JOBMESH_SQUEUE_INTERVAL")):
        if value in (None, ""):
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if seconds >= 0:
            return seconds
    return DEFAULT_STATUS_INTERVAL


def controller_down(text: str) -> bool:
    low = text.lower()
    return ("unable to contact slurm controller" in low or "connection refused" in low
            or "lsf is down" in low or "batch system daemon not responding" in low)


def _ids(job: Any) -> dict[str, Any]:
    return AttemptKey.of(job).ids()


class StatusPolicy:
    """The batch executor's status queries: how often, what after a job left the queue,
    and what an unreachable controller means (never a failed job)."""

    system: Any
    native: dict[AttemptKey, str]
    seen: dict[str, tuple[str, str | None]]
    outage: set[str]
    last_status: dict[str, float]
    status_due: set[str]
    emit: Any
    _finish: Any       # the executor's (remote.py)
    _env_prefix: Any   # the executor's (batch.py)

    def _status_now(self, t: Transport, mine: list[Any], now: float) -> bool:
        """Is a status query due on this connection? Once per interval (the smallest of
        its jobs' ``squeue_interval``), sooner while the controller is down or when an
        exit file needs the batch system's reason, but never twice within 2 s."""
        last = self.last_status.get(t.name)
        if last is None:
            return True
        gap = now - last
        if t.name in self.outage or t.name in self.status_due:
            return gap >= min(FORCED_STATUS_GAP, status_interval(mine[0].job.spec.extras))
        return gap >= min(status_interval(rj.job.spec.extras) for rj in mine)

    async def _accounting(self, t: Transport, gone: list[Any]) -> None:
        ids = [self.native[AttemptKey.of(rj.job)] for rj in gone]
        cmd = self.system.accounting(ids)
        states: dict[str, tuple[str, str | None]] = {}
        if cmd:
            try:
                res = await t.run(f"{self._env_prefix(gone[0].job)}{cmd}")
                if res.status == 0:
                    states = self.system.parse_accounting(res.stdout.decode(errors="replace"))
            except (HostUnreachable, HostRefused):
                return
        for rj in gone:
            jid = self.native[AttemptKey.of(rj.job)]
            if jid in states:
                self.seen[jid] = states[jid]
            else:
                rj.dead_polls += 1
                if rj.dead_polls >= 5:  # not in the queue, no accounting, no exit file
                    await self._finish(rj, None, f"{self.system.name} job {jid} left the "
                                       "queue without an exit file or accounting record")

    async def _outage(self, t: Transport, mine: list[Any], down: bool) -> None:
        if down and t.name not in self.outage:
            self.outage.add(t.name)
            log.warning("%s controller on %s unreachable; backing off", self.system.name,
                        t.name)
            for rj in mine:
                await self.emit(JobProgressed(**_ids(rj.job), msg=f"{self.system.name} "
                                "controller unreachable; retrying", time=time.time()))
        elif not down and t.name in self.outage:
            self.outage.discard(t.name)
            for rj in mine:
                await self.emit(JobProgressed(**_ids(rj.job), msg=f"{self.system.name} "
                                "controller back", time=time.time()))

