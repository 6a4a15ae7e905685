"""Slurm's hooks: sbatch, squeue (one call for every job), sacct when accounting is on,
scancel. States follow Slurm's squeue/sacct documentation (JOB STATE CODES)."""

from __future__ import annotations

import re
import shlex

from jobmesh.common.messages import JobReady

from .base import InvalidJobError
from .batch import CANCELED, DONE, FAILED, QUEUED, RUNNING, BatchSystem

_DEP = re.compile(r"^(afterok|afterany):[0-9]+$")

# node attribute -> sbatch option
OPTIONS = {"partition": "partition", "time": "time", "nodes": "nodes", "ntasks": "ntasks",
           "cpus_per_task": "cpus-per-task", "mem": "mem", "gres": "gres",
           "account": "account", "qos": "qos"}

STATES: dict[str, tuple[str, str | None]] = {
    "PENDING": (QUEUED, None), "CONFIGURING": (RUNNING, None), "RUNNING": (RUNNING, None),
    "COMPLETING": (RUNNING, None), "SUSPENDED": (RUNNING, "suspended"),
    "STOPPED": (RUNNING, "stopped"), "RESIZING": (RUNNING, None), "REQUEUED": (QUEUED, None),
    "COMPLETED": (DONE, None), "FAILED": (FAILED, None), "CANCELLED": (CANCELED, None),
    "TIMEOUT": (FAILED, "timeout"), "OUT_OF_MEMORY": (FAILED, "out of memory"),
    "NODE_FAIL": (FAILED, "node failure"), "PREEMPTED": (FAILED, "preempted"),
    "BOOT_FAIL": (FAILED, "node boot failure"), "DEADLINE": (FAILED, "deadline passed"),
    "SPECIAL_EXIT": (FAILED, "special exit"), "REVOKED": (CANCELED, "revoked"),
}


class Slurm(BatchSystem):
    name = "Slurm"
    directive = "#SBATCH"

    def header(self, job: JobReady, rdir: str, name: str) -> list[str]:
        x = dict(job.spec.extras)
        if x.get("time") in (None, "") and job.spec.timeout:
            x["time"] = max(1, -(-int(job.spec.timeout) // 60))  # minutes, rounded up
        lines = [f"#SBATCH --{opt}={x[attr]}" for attr, opt in OPTIONS.items()
                 if x.get(attr) not in (None, "")]
        extra = x.get("sbatch") or []
        for item in [extra] if isinstance(extra, str) else extra:
            lines.append(f"#SBATCH {item}")
        if job.native_deps:  # wait in Slurm's queue for the parents (scheduler/native.py)
            bad = [d for d in job.native_deps if not _DEP.match(d)]
            if bad:
                raise InvalidJobError(f"invalid Slurm dependency {bad[0]!r}")
            lines += [f"#SBATCH --dependency={','.join(job.native_deps)}",
                      "#SBATCH --kill-on-invalid-dep=yes"]
        return lines + [f"#SBATCH --job-name={name}", f"#SBATCH --output={rdir}/job.log",
                        f"#SBATCH --error={rdir}/job.log", f"#SBATCH --chdir={rdir}"]

    def submit(self, script: str) -> str:
        return f"sbatch --parsable {shlex.quote(script)}"

    def parse_submit(self, out: str) -> str:
        for line in reversed(out.strip().splitlines()):
            head = line.strip().split(";")[0]  # --parsable: "id" or "id;cluster"
            if head.isdigit():
                return head
        raise ValueError(out)

    def status(self, ids: list[str]) -> str:
        return f"squeue --noheader --states=all --format='%i|%T|%r' --jobs={','.join(ids)}"

    def parse_status(self, out: str) -> dict[str, tuple[str, str | None]]:
        result: dict[str, tuple[str, str | None]] = {}
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 2 and parts[0].split("_")[0].isdigit():
                reason = parts[2] if len(parts) > 2 and parts[2] not in ("None", "") else None
                result[parts[0]] = (parts[1], reason)
        return result

    def meaning(self, state: str) -> tuple[str, str | None]:
        base = state.split()[0].rstrip("+") if state else state
        return STATES.get(base, (RUNNING, base.lower() or None))

    def find(self, name: str) -> str:
        return f"squeue --noheader --states=all --format=%i --name={shlex.quote(name)}"

    def cancel(self, ids: list[str]) -> str:
        return f"scancel {' '.join(shlex.quote(i) for i in ids)}"

    def accounting(self, ids: list[str]) -> str | None:
        return f"sacct --noheader --allocations --parsable2 --format=JobID,State,ExitCode " \
               f"--jobs={','.join(ids)}"

    def parse_accounting(self, out: str) -> dict[str, tuple[str, str | None]]:
        result: dict[str, tuple[str, str | None]] = {}
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 2 and parts[0].isdigit():
                result[parts[0]] = (parts[1].split()[0].rstrip("+"), None)
        return result
