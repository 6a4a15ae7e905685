"""Slurm's hooks: sbatch (single jobs and job arrays), squeue (one call for every job),
sacct when accounting is on, scancel, and the resource escalation on retry. States
follow Slurm's squeue/sacct documentation (JOB STATE CODES)."""

from __future__ import annotations

import math
import re
import shlex

from jobmesh.common.messages import JobReady

from .base import InvalidJobError
from .batchsys import CANCELED, DONE, FAILED, QUEUED, RUNNING, BatchSystem

_DEP = re.compile(r"^(afterok|afterany):[0-9]+(_[0-9]+)?$")  # an array element too
_ID = re.compile(r"^[0-9]+(_[0-9]+)?$")
_MEM = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_UNITS = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}

# node attribute -> sbatch option
OPTIONS = {"partition": "partition", "time": "time", "nodes": "nodes", "ntasks": "ntasks",
           "cpus_per_task": "cpus-per-task", "mem": "mem", "gres": "gres",
           "account": "account", "qos": "qos"}

STATES: dict[str, tuple[str, str | None]] = {
    "PENDING": (QUEUED, None), "CONFIGURING": (RUNNING, None), "RUNNING": (RUNNING, None),
    "COMPLETING": (RUNNING, None), "SUSPENDED": (RUNNING, "suspended"),
    "STOPPED": (RUNNING, "stopped"), "RESIZING": (RUNNING, None),
    # Requeued (scontrol requeue, preemption or NODE_FAIL with requeue): the same attempt
    # waits and runs again; the wrapper copes with a second run in its run directory.
    "REQUEUED": (QUEUED, "requeued"), "REQUEUE_HOLD": (QUEUED, "requeued, held"),
    "REQUEUE_FED": (QUEUED, "requeued"),
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
        # append: a requeued job's second run adds to its log (the executor tails it)
        return lines + ["#SBATCH --open-mode=append", f"#SBATCH --job-name={name}",
                        f"#SBATCH --output={rdir}/job.log", f"#SBATCH --error={rdir}/job.log",
                        f"#SBATCH --chdir={rdir}"]

    # -- job arrays (array.py) ----------------------------------------------------------
    arrays = True
    index_var = "SLURM_ARRAY_TASK_ID"
    first_index = 0

    def array_header(self, shared: list[str], name: str, group: str) -> list[str]:
        """The array script's directives: the elements' shared ones, then each element's
        log through ``<group>/<index>``, a link to the element's run directory."""
        keep = [ln for ln in shared if not ln.startswith((
            "#SBATCH --job-name=", "#SBATCH --output=", "#SBATCH --error=",
            "#SBATCH --chdir=", "#SBATCH --open-mode="))]
        return keep + ["#SBATCH --open-mode=append", f"#SBATCH --job-name={name}",
                       f"#SBATCH --output={group}/%a/job.log",
                       f"#SBATCH --error={group}/%a/job.log", f"#SBATCH --chdir={group}"]

    def array_submit(self, script: str, name: str, spec: str,
                     limit: int | None) -> str:
        throttle = f"%{limit}" if limit else ""
        return f"sbatch --parsable --array={spec}{throttle} {shlex.quote(script)}"

    def element_id(self, array_id: str, index: int) -> str:
        return f"{array_id}_{index}"

    def find_array(self, name_expr: str) -> str:
        """Print the array job id of the array named by the shell expression."""
        return (f"squeue --noheader --states=all --array --format=%F --name={name_expr} "
                "| head -n 1")

    def max_array(self) -> str:
        return ("scontrol show config 2>/dev/null | "
                "sed -n 's/^MaxArraySize *= *\\([0-9][0-9]*\\).*/\\1/p'")

    def submit(self, script: str) -> str:
        return f"sbatch --parsable {shlex.quote(script)}"

    def parse_submit(self, out: str) -> str:
        for line in reversed(out.strip().splitlines()):
            head = line.strip().split(";")[0]  # --parsable: "id" or "id;cluster"
            if head.isdigit():
                return head
        raise ValueError(out)

    def status(self, ids: list[str]) -> str:
        return (f"squeue --noheader --states=all --array --format='%i|%T|%r' "
                f"--jobs={','.join(ids)}")

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
            if len(parts) >= 2 and _ID.match(parts[0]):
                result[parts[0]] = (parts[1].split()[0].rstrip("+"), None)
        return result

    # -- escalation on retry (batch.py reads the earlier attempts' 'ended' files) -------
    ends = {"OUT_OF_MEMORY": "mem", "TIMEOUT": "time"}
    requeueable = frozenset({"NODE_FAIL", "PREEMPTED"})

    def escalate(self, extras: dict[str, object], timeout: float | None,
                 ended: list[str], factors: dict[str, float]) -> dict[str, str]:
        """New ``mem``/``time`` for a retry: each earlier attempt that ended
        OUT_OF_MEMORY multiplies ``mem`` by its factor, each TIMEOUT ``time``."""
        out: dict[str, str] = {}
        for attr in ("mem", "time"):
            n = sum(1 for e in ended if self.ends.get(e) == attr)
            if not n or attr not in factors:
                continue
            value = extras.get(attr)
            if attr == "time" and value in (None, "") and timeout:
                value = max(1, -(-int(timeout) // 60))
            if value in (None, ""):
                continue
            scale = float(factors[attr]) ** n
            out[attr] = scale_mem(str(value), scale) if attr == "mem" else \
                scale_time(str(value), scale)
        return out


def scale_mem(value: str, factor: float) -> str:
    """Slurm's ``--mem`` (MB by default, K/M/G/T suffixes) times factor, in whole MB."""
    m = _MEM.match(value)
    if not m:
        raise ValueError(f"mem {value!r} is not a Slurm memory size (e.g. 500M, 4G)")
    mb = float(m.group(1)) * _UNITS[m.group(2).upper()]
    return f"{math.ceil(mb * factor)}M"


def time_seconds(value: str) -> int:
    """Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    text = value.strip()
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        days = int(d)
        parts = [int(x) for x in text.split(":")] + [0, 0]
        h, mi, se = parts[0], parts[1], parts[2] if len(parts) > 3 else 0
        return ((days * 24 + h) * 60 + mi) * 60 + se
    parts = [int(x) for x in text.split(":")]
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    if len(parts) == 3:
        return (parts[0] * 60 + parts[1]) * 60 + parts[2]
    raise ValueError(f"time {value!r} is not a Slurm time")


def scale_time(value: str, factor: float) -> str:
    """A Slurm time times factor, as whole minutes (rounded up)."""
    try:
        seconds = time_seconds(value)
    except ValueError:
        raise ValueError(f"time {value!r} is not a Slurm time (e.g. 30, 2:00:00, "
                         "1-00:00)") from None
    return str(max(1, math.ceil(seconds * factor / 60)))
