"""Batch executors (Slurm, LSF): jobs go to a batch system on this machine or through an
SSH login node, sharing that host's connection with the SSH executor's design.

A batch system supplies only pure hooks: the script header, the submit/status/find/
cancel commands and parsers for their output (``slurm.py``, ``lsf.py``). Per cluster
one status query covers every active job, at most once per ``squeue_interval``; every
poll reads the exit files and logs over the open connection. A submit limit keeps the
job queued (SubmitError), never failed. Submission is exactly once: a ``submitting``
marker is written before the submit command and the job id right after; after a crash
the id file, or a lookup by the job's deterministic name, finds the job instead of
submitting it again. Elements of a ``foreach`` node go out as job arrays (``array.py``).
A retry after OUT_OF_MEMORY or TIMEOUT gets more memory or time when the node says
``escalate:``. The hooks' interface is ``batchsys.py``; what a poll's status means
(requeues included) is ``batchstatus.py``.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import time
from typing import Any

from jobmesh.common import options
from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import JobProgressed, JobQueued, JobReady
from jobmesh.common.spec import check_spec

from . import array, rundir
from .base import InvalidJobError, SubmitError
from .batchstatus import STATUS_MARK, BatchStatus  # noqa: F401 (STATUS_MARK re-exported)
from .batchsys import (  # noqa: F401 (the states and BatchSystem re-exported)
    CANCELED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    BatchSystem,
)
from .launch import job_name, user_directives
from .probe import (
    DEFAULT_STATUS_INTERVAL,  # noqa: F401 (re-exported)
    status_interval,  # noqa: F401 (re-exported)
)
from .remote import RemoteExecutor, RJob, _ids
from .transport import HostRefused, HostUnreachable, Result, Transport

log = logging.getLogger("jobmesh.executor.batch")
# A per-user or QOS submit limit: the job waits QUEUED and is submitted again when room
# appears (every SUBMIT_BACKOFF seconds per cluster at most), never FAILED for that.
_LIMIT = re.compile(r"QOSMaxSubmitJob\w*|AssocMaxSubmitJob\w*|MaxSubmitJob\w*|"
                    r"job violates accounting/QOS policy|Job violates accounting policy",
                    re.IGNORECASE)
SUBMIT_BACKOFF = 10.0


class BatchExecutor(BatchStatus, RemoteExecutor):
    def __init__(self, kind: str, system: BatchSystem, *args: Any, **kw: Any):
        super().__init__(kind, *args, **kw)
        self.system = system
        self.native: dict[AttemptKey, str] = {}  # key -> batch job id
        self.seen: dict[str, tuple[str, str | None]] = {}        # id -> last native state
        self.outage: set[str] = set()                            # clusters unreachable now
        self.status_calls = 0
        self.last_status: dict[str, float] = {}  # transport name -> time of the last query
        self.status_due: set[str] = set()         # transports whose jobs need a reason now
        self.limited: dict[str, tuple[float, str]] = {}  # transport -> (when, limit message)
        self.directives: dict[str, list[str]] = {}  # rdir -> its batch.sh's directives
        self.told: dict[AttemptKey, str] = {}  # why a job waits to submit
        self.inflight: dict[str, int] = {}  # transport -> submissions under way (max_queued)
        self.arrays = array.Arrays(self)

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
        # A requeued job runs again in the same run directory: the first run's exit file
        # (143 from the trap) goes as the second starts.
        body = body.replace("trap 'echo 143 > exit; exit 143' TERM\necho $$ > pid\n",
                            "trap 'echo 143 > exit; exit 143' TERM\nrm -f exit; : > started\n")
        own: list[str] = []
        name = rundir.staged_script(job)
        if name and f"{rdir}/{name}" in files:
            own = user_directives(files[f"{rdir}/{name}"], self.system.directive)
        body = body.rstrip("\n") + "\nexit $rc\n"  # so the batch system records the failure
        problems = check_spec(job.spec)  # a line break in a directive value, a bad pool...
        if problems:
            raise InvalidJobError(problems[0][1])
        head = [*own, *self.system.header(job, rdir, job_name(job))]
        self.directives[rdir] = head
        lines = ["#!/bin/bash", *head, body]
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
        self.directives.pop(rdir, None)
        try:
            native = self.system.parse_submit(out)
        except ValueError:
            limit = self.limit_hit(t, out)
            if limit:
                await self._wait_for_room(job, limit)
            raise InvalidJobError(f"{self.system.name} refused the job: "
                                  f"{out.strip()[-500:] or res.status}") from None
        await t.run(f"printf '%s\\n' {shlex.quote(native)} > {q}/jobid")
        self.native[AttemptKey.of(job)] = native
        return str(native)

    def limit_hit(self, t: Transport, out: str) -> str | None:
        """The submit limit a refusal names (remembered per cluster), or None."""
        hit = _LIMIT.search(out)
        if not hit:
            return None
        self.limited[t.name] = (time.time(), hit.group(0))
        return hit.group(0)

    async def _say_waiting(self, job: JobReady, limit: str, why: str = "") -> None:
        """Say once (not on every return of the message) why the job is not submitted."""
        reason = why or f"pending submit: {self.system.name} submit limit ({limit})"
        if self.told.get(AttemptKey.of(job)) != reason:
            if len(self.told) > 100_000:
                self.told.clear()
            self.told[AttemptKey.of(job)] = reason
            await self.emit(JobQueued(**_ids(job), reason=reason, time=time.time()))

    async def _wait_for_room(self, job: JobReady, limit: str) -> None:
        """Say why the job is still QUEUED, then hand it back to come again later."""
        await self._say_waiting(job, limit)
        raise SubmitError(f"{self.system.name} submit limit: {limit}")

    async def submit(self, job: JobReady) -> str:
        t = self.transport_for(job.spec)
        when, limit = self.limited.get(t.name, (0.0, ""))
        if AttemptKey.of(job) not in self.jobs and time.time() - when < SUBMIT_BACKOFF:
            await self._wait_for_room(job, limit)  # no sbatch while the limit just refused
        problems = options.check_values(self.kind, job.spec.extras)
        if problems:
            raise InvalidJobError(f"{problems[0][0]}: {problems[0][1]}")
        cap = job.spec.extras.get("max_queued")
        busy = self.inflight.get(t.name, 0) + sum(
            1 for rj in self.jobs.values() if rj.transport is t and not rj.done)
        if cap and AttemptKey.of(job) not in self.jobs and busy >= int(cap):
            await self._say_waiting(job, "", f"pending submit: max_queued ({cap} jobs of "
                                    f"this cluster queued or running)")
            raise SubmitError(f"max_queued {cap} reached on {t.name}")
        self.inflight[t.name] = self.inflight.get(t.name, 0) + 1
        try:
            native = await self._submit(t, job)
        finally:
            self.inflight[t.name] -= 1
        self.told.pop(AttemptKey.of(job), None)
        return native

    async def _submit(self, t: Transport, job: JobReady) -> str:
        self.calls[f"submit.{t.name}"] += 1
        note = None
        key = AttemptKey.of(job)
        if job.attempt > 1 and job.spec.extras.get("escalate") and key not in self.jobs:
            job, note = await self._escalated(t, job)
        if self.system.arrays and array.wanted(job) and key not in self.jobs:
            native = await self.arrays.element(t, job)
        else:
            native = await super().submit(job)
        if note and AttemptKey.of(job) in self.jobs:
            await self.emit(JobProgressed(**_ids(job), msg=note, time=time.time()))
        return native.rsplit(":", 1)[-1]

    async def _escalated(self, t: Transport, job: JobReady) -> tuple[JobReady, str | None]:
        """More memory or time for a retry after OUT_OF_MEMORY or TIMEOUT: the earlier
        attempts' ``ended`` files (written when they ended so) say how often."""
        factors = options.escalation(job.spec.extras.get("escalate"))
        home = await self._with_retries(t, lambda: self._home(t))
        base = os.path.dirname(rundir.run_dir(self._workdir(home, job.spec), job))
        cmd = "; ".join(f"cat {shlex.quote(f'{base}/{a}/ended')} 2>/dev/null"
                        for a in range(1, job.attempt)) + "; true"
        res = await self._with_retries(t, lambda: t.run(cmd))
        ended = res.stdout.decode(errors="replace").split()
        try:
            updates = self.system.escalate(job.spec.extras, job.spec.timeout, ended, factors)
        except ValueError as exc:
            raise InvalidJobError(f"escalate: {exc}") from None
        if not updates:
            return job, None
        x = job.spec.extras
        what = ", ".join(f"{k} {x.get(k) or '-'} -> {v}" for k, v in updates.items())
        causes = "/".join(sorted({e for e in ended if e in self.system.ends}))
        note = f"escalated for attempt {job.attempt} after {causes}: {what}"
        return job.model_copy(update={"spec": job.spec.model_copy(update=updates)}), note

    async def _accepted(self, rj: RJob, native: str) -> None:
        """Queued, not running: the batch system's status says when it starts. A job
        attached to after a crash has its id found first (``native``, else the id file or
        the queue), so the event that says it is queued carries it before any poll can
        end the job."""
        key = AttemptKey.of(rj.job)
        if key not in self.native:
            jid = native.rsplit(":", 1)[-1] if native else ""
            if not jid or not jid[0].isdigit():
                jid = await self._recover_id(rj)
            if jid:
                self.native[key] = jid
        known = self.native.get(key)
        if known:
            rj.queued_reason = None
            await self.emit(JobQueued(**_ids(rj.job), native_id=known, time=time.time()))

    async def _recover_id(self, rj: RJob) -> str:
        """After a crash: the id file, else the queue's job of our deterministic name."""
        q = shlex.quote(rj.rdir)
        cmd = (f"{self._env_prefix(rj.job)}cat {q}/jobid 2>/dev/null || "
               f"{{ [ -e {q}/submitting ] && {self.system.find(job_name(rj.job))}; }} || "
               f"{array.recover(self.system, q)}")
        try:
            res = await rj.transport.run(cmd)
        except (HostUnreachable, HostRefused):
            return ""
        ids = res.stdout.decode(errors="replace").split()
        return ids[0] if ids else ""

    async def _signal(self, rj: RJob, reason: str) -> None:
        jid = self.native.get(AttemptKey.of(rj.job))
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
