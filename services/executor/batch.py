"""Batch executors (Slurm, LSF): jobs go to a batch system on this machine or through an
SSH login node, sharing that host's connection with the SSH executor's design.

A batch system supplies only pure hooks: the script header, the submit/status/find/
cancel commands and parsers for their output (``slurm.py``, ``lsf.py``). Per cluster
one status query covers every active job, at most once per ``squeue_interval``; every
poll reads the exit files and logs over the open connection. A submit limit keeps the
job queued (SubmitError), never failed. Submission is exactly once: a ``submitting``
marker is written before the submit command and the job id right after; after a crash
the id file, or a lookup by the job's deterministic name, finds the job instead of
submitting it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import time
from abc import ABC, abstractmethod
from typing import Any

from jobmesh.common.messages import JobProgressed, JobQueued, JobReady, JobSkipped, JobStarted
from jobmesh.common.spec import check_spec

from . import rundir
from .base import InvalidJobError, SubmitError
from .probe import parse, probe_script
from .remote import RemoteExecutor, RJob, _ids
from .transport import HostRefused, HostUnreachable, Result, Transport

log = logging.getLogger("jobmesh.executor.batch")
STATUS_MARK = "@@STATUS"
# Site-friendly polling: at most one status query (squeue/bjobs) per cluster connection
# (one user) per interval. Exit files are read on every probe over the open connection,
# which costs the controller nothing, so finished work is still noticed within seconds.
DEFAULT_STATUS_INTERVAL = 30.0
FORCED_STATUS_GAP = 2.0  # a failed exit file asks the batch system for the reason, no faster


# A per-user or QOS submit limit: the job waits QUEUED and is submitted again when room
# appears (every SUBMIT_BACKOFF seconds per cluster at most), never FAILED for that.
_LIMIT = re.compile(r"QOSMaxSubmitJob\w*|AssocMaxSubmitJob\w*|MaxSubmitJob\w*|"
                    r"job violates accounting/QOS policy|Job violates accounting policy",
                    re.IGNORECASE)
SUBMIT_BACKOFF = 10.0


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

# What a batch system's state means for jobmesh: queued, running, or an ending with a reason.
QUEUED, RUNNING, DONE, FAILED, CANCELED = "queued", "running", "done", "failed", "canceled"


class BatchSystem(ABC):
    """Pure hooks: build commands, parse outputs. No I/O."""

    name: str
    directive: str  # "#SBATCH" or "#BSUB"

    @abstractmethod
    def header(self, job: JobReady, rdir: str, name: str) -> list[str]:
        """Directive lines from the node's attributes, ending with name and output."""

    @abstractmethod
    def submit(self, script: str) -> str:
        """The command that submits the script and prints the job id."""

    @abstractmethod
    def parse_submit(self, out: str) -> str:
        """The job id from the submit command's output; ValueError when there is none."""

    @abstractmethod
    def status(self, ids: list[str]) -> str:
        """One command that reports every given job."""

    @abstractmethod
    def parse_status(self, out: str) -> dict[str, tuple[str, str | None]]:
        """id -> (native state, reason) for the jobs the output lists."""

    @abstractmethod
    def meaning(self, state: str) -> tuple[str, str | None]:
        """(QUEUED | RUNNING | DONE | FAILED | CANCELED, reason) for a native state."""

    @abstractmethod
    def find(self, name: str) -> str:
        """A command printing the ids of jobs with this name."""

    @abstractmethod
    def cancel(self, ids: list[str]) -> str:
        """The command that cancels jobs."""

    def accounting(self, ids: list[str]) -> str | None:
        """A command for jobs that left the queue (e.g. sacct), or None."""
        return None

    def parse_accounting(self, out: str) -> dict[str, tuple[str, str | None]]:
        return {}


def job_name(job: JobReady, limit: int = 100) -> str:
    """jm-<workflow>-<job>-<attempt>-<run hash>: deterministic, so a lookup by name finds
    a job whose id was lost; shortened with a hash when too long for the batch system."""
    tag = hashlib.sha1(job.run.encode()).hexdigest()[:6]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"jm-{job.workflow}-{job.job}-{job.attempt}-{tag}")
    if len(name) > limit:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = name[: limit - 9] + "-" + digest
    return name


def user_directives(script: bytes, directive: str) -> list[str]:
    """The user's own directive lines from the top of a script (they are respected)."""
    out = []
    for line in script.decode(errors="replace").splitlines()[1:]:
        s = line.strip()
        if s.startswith(directive):
            out.append(s)
        elif s and not s.startswith("#"):
            break
    return out


class BatchExecutor(RemoteExecutor):
    def __init__(self, kind: str, system: BatchSystem, *args: Any, **kw: Any):
        super().__init__(kind, *args, **kw)
        self.system = system
        self.native: dict[tuple[str, str, str, int], str] = {}  # key -> batch job id
        self.seen: dict[str, tuple[str, str | None]] = {}        # id -> last native state
        self.outage: set[str] = set()                            # clusters unreachable now
        self.status_calls = 0
        self.last_status: dict[str, float] = {}  # transport name -> time of the last query
        self.status_due: set[str] = set()         # transports whose jobs need a reason now
        self.limited: dict[str, tuple[float, str]] = {}  # transport -> (when, limit message)

    def _env_prefix(self, job: JobReady) -> str:
        """Exports the batch commands need there (e.g. SLURM_CONF), before each call."""
        x = job.spec.extras
        parts = []
        if x.get("slurm_conf"):
            parts.append(f"export SLURM_CONF={shlex.quote(str(x['slurm_conf']))}; ")
        if x.get("batch_setup"):
            parts.append(f"{x['batch_setup']}; ")  # e.g. 'module load slurm', the user's own
        return "".join(parts)

    def _files(self, job: JobReady, rdir: str, root: str) -> tuple[dict[str, bytes],
                                                                   dict[str, int]]:
        files, modes = super()._files(job, rdir, root)
        wrapper = files.pop(f"{rdir}/wrapper.sh").decode()
        body = wrapper.split("\n", 2)[2]  # drop the shebang and comment; keep cd/exports/command
        # No pid file (its pid is on a compute node, not checkable here): a 'started' file
        # says the job runs, which the probe reads without asking the batch system.
        body = body.replace("trap 'echo 143 > exit; exit 143' TERM\necho $$ > pid\n",
                            "trap 'echo 143 > exit; exit 143' TERM\n: > started\n")
        own: list[str] = []
        name = rundir.staged_script(job)
        if name and f"{rdir}/{name}" in files:
            own = user_directives(files[f"{rdir}/{name}"], self.system.directive)
        body = body.rstrip("\n") + "\nexit $rc\n"  # so the batch system records the failure
        problems = check_spec(job.spec)  # a line break in a directive value, a bad pool...
        if problems:
            raise InvalidJobError(problems[0][1])
        lines = ["#!/bin/bash", *own, *self.system.header(job, rdir, job_name(job)), body]
        files[f"{rdir}/batch.sh"] = "\n".join(lines).encode()
        modes = {f"{rdir}/batch.sh": 0o755}
        return files, modes

    def _report_cmd(self) -> str:
        return ""  # the submit command prints the id

    def _launch_cmd(self, job: JobReady, rdir: str) -> str:
        return (f"{self._env_prefix(job)}touch submitting && "
                f"{self.system.submit('batch.sh')} > submit.out 2>&1; rc=$?; cat submit.out; "
                "exit $rc")

    async def _launched(self, t: Transport, job: JobReady, rdir: str, res: Result) -> str:
        q = shlex.quote(rdir)
        out = res.stdout.decode(errors="replace")
        try:
            native = self.system.parse_submit(out)
        except ValueError:
            hit = _LIMIT.search(out)
            if hit:
                self.limited[t.name] = (time.time(), hit.group(0))
                await self._wait_for_room(job, hit.group(0))
            raise InvalidJobError(f"{self.system.name} refused the job: "
                                  f"{out.strip()[-500:] or res.status}") from None
        await t.run(f"printf '%s\\n' {shlex.quote(native)} > {q}/jobid")
        self.native[_key(job)] = native
        return native

    async def _wait_for_room(self, job: JobReady, limit: str) -> None:
        """Say why the job is still QUEUED, then hand it back to come again later."""
        await self.emit(JobQueued(**_ids(job), reason=f"pending submit: {self.system.name} "
                                  f"submit limit ({limit})", time=time.time()))
        raise SubmitError(f"{self.system.name} submit limit: {limit}")

    async def submit(self, job: JobReady) -> str:
        t = self.transport_for(job.spec)
        when, limit = self.limited.get(t.name, (0.0, ""))
        if _key(job) not in self.jobs and time.time() - when < SUBMIT_BACKOFF:
            await self._wait_for_room(job, limit)  # no sbatch while the limit just refused
        native = await super().submit(job)
        return native.rsplit(":", 1)[-1]

    async def _accepted(self, rj: RJob, native: str) -> None:
        """Queued, not running: the batch system's status says when it starts."""
        jid = self.native.get(_key(rj.job))
        if jid:
            rj.queued_reason = None  # type: ignore[attr-defined]
            await self.emit(JobQueued(**_ids(rj.job), native_id=jid, time=time.time()))

    async def attach(self, job: JobReady, native_id: str) -> None:
        await super().attach(job, native_id)
        rj = self.jobs.get(_key(job))
        if rj is None or _key(job) in self.native:
            return
        jid = native_id.rsplit(":", 1)[-1] if native_id else ""
        if not jid or not jid[0].isdigit():
            jid = await self._recover_id(rj)
        if jid:
            self.native[_key(job)] = jid

    async def _recover_id(self, rj: RJob) -> str:
        """After a crash: the id file, else the queue's job of our deterministic name."""
        q = shlex.quote(rj.rdir)
        cmd = (f"{self._env_prefix(rj.job)}cat {q}/jobid 2>/dev/null || "
               f"{{ [ -e {q}/submitting ] && {self.system.find(job_name(rj.job))}; }}")
        try:
            res = await rj.transport.run(cmd)
        except (HostUnreachable, HostRefused):
            return ""
        ids = res.stdout.decode(errors="replace").split()
        return ids[0] if ids else ""

    async def _signal(self, rj: RJob, reason: str) -> None:
        jid = self.native.get(_key(rj.job))
        first = rj.term_sent is None
        rj.term_sent = rj.term_sent or time.time()
        q = shlex.quote(rj.rdir)
        mark = f"printf '%s\\n' {shlex.quote(reason or 'canceled')} > {q}/cancel; " if first \
            else ""
        cancel = self.system.cancel([jid]) if jid else "true"
        try:
            await rj.transport.run(f"{self._env_prefix(rj.job)}{mark}{cancel}; true")
        except (HostUnreachable, HostRefused) as exc:
            log.warning("cancel on %s failed (will retry): %s", rj.transport.name, exc)

    async def _probe(self, t: Transport) -> bool:
        mine = [rj for rj in self.jobs.values() if rj.transport is t and not rj.done]
        if not mine:
            return False
        now = time.time()
        for rj in mine:
            if rj.term_sent is not None and now - rj.term_sent >= 30:
                rj.term_sent = None  # ask the batch system again
                await self._signal(rj, "")
        ids = [self.native[_key(rj.job)] for rj in mine if _key(rj.job) in self.native]
        if ids and not self._status_now(t, mine, now):
            ids = []  # this probe reads only the run directories
        prefix = self._env_prefix(mine[0].job)
        status = f"{prefix}{self.system.status(ids)}; echo; " if ids else ""
        script = probe_script(mine, before=f"{status}printf '\\n{STATUS_MARK}\\n'\n")
        res = await t.run("/bin/sh -s", stdin=script, timeout=60)
        self.probes += 1
        text = res.stdout.decode("utf-8", "replace")
        head, _, rest = text.partition(STATUS_MARK)
        states = self.system.parse_status(head) if ids else {}
        if ids:
            self.status_calls += 1
            self.last_status[t.name] = now
            self.status_due.discard(t.name)
            if not states and res.status != 0 or _controller_down(head + res.stderr.decode(
                    "utf-8", "replace")):
                await self._outage(t, mine, True)
                return False
            await self._outage(t, mine, False)
        fields = parse(rest.encode())
        changed = False
        vanished: list[RJob] = []
        for i, rj in enumerate(mine):
            jid = self.native.get(_key(rj.job))
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
            changed |= await self._update_batch(rj, f)
        if vanished:
            await self._accounting(t, vanished)
        return changed

    def _status_now(self, t: Transport, mine: list[RJob], now: float) -> bool:
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

    async def _accounting(self, t: Transport, gone: list[RJob]) -> None:
        ids = [self.native[_key(rj.job)] for rj in gone]
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
            jid = self.native[_key(rj.job)]
            if jid in states:
                self.seen[jid] = states[jid]
            else:
                rj.dead_polls += 1
                if rj.dead_polls >= 5:  # not in the queue, no accounting, no exit file
                    await self._finish(rj, None, f"{self.system.name} job {jid} left the "
                                       "queue without an exit file or accounting record")

    async def _outage(self, t: Transport, mine: list[RJob], down: bool) -> None:
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

    async def _update_batch(self, rj: RJob, f: dict[str, str]) -> bool:
        """Apply what the batch system and the run directory say about one job. The job
        ends when the batch system says so (an exit file alone may be a trap's 143 on a
        time limit), or when it left the queue leaving an exit file."""
        jid = self.native.get(_key(rj.job), "")
        state, reason = self.seen.get(jid, ("", None))
        meaning, why = self.system.meaning(state) if state else ("", None)
        changed = await self._read_log(rj, f)
        if (meaning == QUEUED and getattr(rj, "queued_reason", "-") != reason
                and not f.get("started") and not getattr(rj, "running", False)):
            rj.queued_reason = reason  # type: ignore[attr-defined]
            await self.emit(JobQueued(**_ids(rj.job), native_id=jid, reason=reason,
                                      time=time.time()))
            changed = True
        # The wrapper writes 'started' as it starts on the node: the run directory says
        # "running" long before the next status query (up to squeue_interval away) would.
        started = meaning in (RUNNING, DONE, FAILED) or (
            bool(f.get("started")) and meaning in ("", QUEUED))
        if started and not getattr(rj, "running", False):
            rj.running = True  # type: ignore[attr-defined]
            await self.emit(JobStarted(**_ids(rj.job), native_id=jid, host=rj.transport.name,
                                       run_dir=rj.rdir, time=time.time()))
            changed = True
        ended = meaning in (DONE, FAILED, CANCELED) or (not state and "exit" in f)
        if not ended and f.get("exit") and meaning in ("", QUEUED, RUNNING):
            code = rundir.parse_exit(f["exit"] + "\n")
            if code == 0 and "cancel" not in f:
                ended, meaning = True, DONE  # the command succeeded: no need to ask Slurm
            else:
                self.status_due.add(rj.transport.name)  # time limit, memory, cancel...?
        if ended and not getattr(rj, "running", False):
            rj.running = True  # type: ignore[attr-defined]
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
        await self._finish(rj, code, problem, g)
        return True


    async def _skip(self, rj: RJob, reason: str) -> None:
        """The batch system dropped a job whose native dependency can never be met."""
        rj.done = True
        await self.emit(JobSkipped(**_ids(rj.job), reason=reason, time=time.time()))
        self.jobs.pop(_key(rj.job), None)
        if self.on_done is not None:
            await self.on_done(rj.job)


def _key(job: JobReady) -> tuple[str, str, str, int]:
    return (job.workflow, job.run, job.job, job.attempt)


def _controller_down(text: str) -> bool:
    low = text.lower()
    return ("unable to contact slurm controller" in low or "connection refused" in low
            or "lsf is down" in low or "batch system daemon not responding" in low)
