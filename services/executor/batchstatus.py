"""What a batch executor makes of a poll: one probe per cluster reads the run directories
and, when due (``probe.py``), the batch system's status of every active job; each job's
native state and files then become its events. A job the batch system requeues is
followed under the same attempt; NODE_FAIL or PREEMPTED is believed only when the next
status query still says so; a job dropped for a dependency that can never be met is
SKIPPED.

``BatchStatus`` is a part of ``BatchExecutor`` (batch.py), kept apart by responsibility:
submitting there, interpreting status here."""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Awaitable
from typing import Any

from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import JobProgressed, JobQueued, JobSkipped, JobStarted

from . import rundir
from .batchsys import CANCELED, DONE, FAILED, QUEUED, RUNNING, BatchSystem
from .outcome import ids as _ids
from .probe import StatusPolicy, controller_down, parse, probe_script
from .remotewatch import RJob, side_by_side
from .transport import HostRefused, HostUnreachable, Transport

log = logging.getLogger("jobmesh.executor.batch")
STATUS_MARK = "@@STATUS"


class BatchStatus(StatusPolicy):
    """Polling and status interpretation for ``BatchExecutor``."""

    system: BatchSystem
    status_calls: int
    jobs: dict[AttemptKey, RJob]
    probes: int
    calls: Any
    emit: Any
    on_done: Any
    _read_log: Any      # remotewatch.py
    _watched: Any       # remotewatch.py
    _signal: Any        # batch.py

    async def _probe(self, t: Transport) -> bool:
        mine = self._watched(t)
        if not mine:
            return False
        now = time.time()
        for rj in mine:
            if rj.term_sent is not None and now - rj.term_sent >= 30:
                rj.term_sent = None  # ask the batch system again
                await self._signal(rj, "")
        keys = [AttemptKey.of(rj.job) for rj in mine]
        ids = [self.native[k] for k in keys if k in self.native]
        if ids and not self._status_now(t, mine, now):
            ids = []  # this probe reads only the run directories
        prefix = self._env_prefix(mine[0].job)
        status = f"{prefix}{self.system.status(ids)}; echo; " if ids else ""
        script = probe_script(mine, before=f"{status}printf '\\n{STATUS_MARK}\\n'\n")
        res = await t.run("/bin/sh -s", stdin=script, timeout=60)
        self.probes += 1
        self.calls[f"poll.{t.name}"] += 1
        if ids:
            self.calls[f"status.{t.name}"] += 1
        text = res.stdout.decode("utf-8", "replace")
        head, _, rest = text.partition(STATUS_MARK)
        states = self.system.parse_status(head) if ids else {}
        if ids:
            self.status_calls += 1
            self.last_status[t.name] = now
            self.status_due.discard(t.name)
            if not states and res.status != 0 or controller_down(head + res.stderr.decode(
                    "utf-8", "replace")):
                await self._outage(t, mine, True)
                return False
            await self._outage(t, mine, False)
        fields = parse(rest.encode())
        updates: list[Awaitable[bool]] = []
        vanished: list[RJob] = []
        for i, rj in enumerate(mine):
            jid = self.native.get(AttemptKey.of(rj.job))
            f = fields.get(i, {})
            if not ids:
                pass  # no status this probe: the last state stands, exit files still count
            elif jid and jid in states:
                self.seen[jid] = states[jid]
            elif jid and "exit" in f:
                self.seen.pop(jid, None)  # left the queue leaving an exit file: that ends it
            elif jid and "exit" not in f and jid in self.seen and self.seen[jid][0] not in (
                    "PENDING", "RUNNING", "PEND", "RUN", "CONFIGURING", "COMPLETING"):
                pass  # ended earlier and aged out of the queue: the last state stands
            elif jid and "exit" not in f:
                vanished.append(rj)
            updates.append(self._update_batch(rj, f))
        changed = await side_by_side(updates)
        if vanished:
            await self._accounting(t, vanished)
        return changed

    async def _update_batch(self, rj: RJob, f: dict[str, str]) -> bool:
        """Apply what the batch system and the run directory say about one job. The job
        ends when the batch system says so (an exit file alone may be a trap's 143 on a
        time limit), or when it left the queue leaving an exit file."""
        jid = self.native.get(AttemptKey.of(rj.job), "")
        state, reason = self.seen.get(jid, ("", None))
        meaning, why = self.system.meaning(state) if state else ("", None)
        changed: bool = await self._read_log(rj, f)
        running = rj.running
        # Requeued: queued again after Slurm said it ran, or after its first run's exit
        # file (a 'started' file alone is not enough: the last squeue may be older).
        rj.ran = meaning == RUNNING or rj.ran
        exit_at, asked = rj.exit_at, self.last_status.get(rj.transport.name, 0)
        back = meaning == QUEUED and running and (rj.ran or exit_at is not None and asked > exit_at)
        if back and not rj.requeued:
            rj.requeued, rj.ran, rj.exit_at = True, False, None
            await self.emit(JobProgressed(**_ids(rj.job), msg=f"requeued by {self.system.name}"
                                          f" ({reason or state}); runs again in this attempt",
                                          time=time.time()))
            changed = True
        elif meaning == RUNNING and rj.requeued:
            rj.requeued = rj.suspect = None
            await self.emit(JobProgressed(**_ids(rj.job), msg="running again after requeue",
                                          time=time.time()))
        if (meaning == QUEUED and rj.queued_reason != reason
                and not f.get("started") and not running):
            rj.queued_reason = reason
            await self.emit(JobQueued(**_ids(rj.job), native_id=jid, reason=reason,
                                      time=time.time()))
            changed = True
        # The wrapper writes 'started' as it starts on the node: the run directory says
        # "running" long before the next status query (up to squeue_interval away) would.
        started = meaning in (RUNNING, DONE, FAILED) or (
            bool(f.get("started")) and meaning in ("", QUEUED))
        if started and not rj.running:
            rj.running = True
            await self.emit(JobStarted(**_ids(rj.job), native_id=jid, host=rj.transport.name,
                                       run_dir=rj.rdir, time=time.time()))
            changed = True
        ended = meaning in (DONE, FAILED, CANCELED) or (not state and "exit" in f)
        if meaning == FAILED and state.split()[0] in self.system.requeueable:
            # NODE_FAIL or PREEMPTED may be the moment before a requeue: believe it only
            # when the next status query (within 2 s) still says so.
            asked = self.last_status.get(rj.transport.name, 0.0)
            first = rj.suspect
            if first is None or asked <= first:
                rj.suspect = first if first is not None else asked
                self.status_due.add(rj.transport.name)
                return changed
        if not ended and f.get("exit") and meaning in ("", QUEUED, RUNNING):
            code = rundir.parse_exit(f["exit"] + "\n")
            if code == 0 and "cancel" not in f:
                ended, meaning = True, DONE  # the command succeeded: no need to ask Slurm
            elif not rj.requeued:  # (its first run left this exit file)
                rj.exit_at = exit_at or time.time()
                self.status_due.add(rj.transport.name)  # time limit, memory, cancel...?
        if ended and not rj.running:
            rj.running = True
            await self.emit(JobStarted(**_ids(rj.job), native_id=jid, host=rj.transport.name,
                                       run_dir=rj.rdir, time=time.time()))
        if not ended:
            return changed
        if meaning == CANCELED and "cancel" not in f and "Dependency" in (reason or ""):
            await self._skip(rj, f"an upstream job did not succeed ({self.system.name}: "
                             f"{reason})")
            return True
        code = rundir.parse_exit(f["exit"] + "\n") if f.get("exit") else None
        g = {k: v for k, v in f.items() if k in ("outputs", "reason", "cancel")}
        problem = None
        if meaning == CANCELED:
            g.setdefault("cancel", why or "canceled outside jobmesh")
        elif why == "timeout":
            g["cancel"] = "timeout"
        elif meaning == FAILED and why:
            problem = why
        elif meaning == FAILED and code in (None, 0) and "cancel" not in g:
            problem = f"{self.system.name} reports the job {state}"
        if meaning == DONE and code is None:
            code = 0
        base = state.split()[0].rstrip("+") if state else ""
        if base in self.system.ends:  # for escalate: on a retry, more of what ran out
            try:
                await rj.transport.run(f"printf '%s\\n' {base} > "
                                       f"{shlex.quote(rj.rdir)}/ended")
            except (HostUnreachable, HostRefused):
                pass
        await self._finish(rj, code, problem, g)
        return True


    async def _skip(self, rj: RJob, reason: str) -> None:
        """The batch system dropped a job whose native dependency can never be met."""
        rj.done = True
        await self.emit(JobSkipped(**_ids(rj.job), reason=reason, time=time.time()))
        self.jobs.pop(AttemptKey.of(rj.job), None)
        if self.on_done is not None:
            await self.on_done(rj.job)
