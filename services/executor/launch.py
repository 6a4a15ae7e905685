"""Claim, stage and launch many jobs on one host with one shell script: one round trip
and one SSH session for every job that waited for that host, instead of several each.

Per job the script claims the run directory (``mkdir``; one that exists is taken, by a
redelivered message or a retried batch, and is left alone), writes the job's files from
base64 here-documents, and runs the executor's start lines in a subshell. Then, for the
jobs that started, the report lines (e.g. wait for the pid file), so the jobs start
together and the waits overlap. Each job's output is framed, so every job gets back
what its own lines printed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import posixpath
import re
import shlex
from dataclasses import dataclass, field

from jobmesh.common.messages import JobReady

from .transport import Result

TAKEN = "@@TAKEN"
NO_DIR = "@@NODIR"
BATCH_BYTES = 4 << 20  # staged bytes per script; a bigger job goes alone
BATCH_JOBS = 200       # jobs per script (its mkdir -p lists every job's parent)
_EOF = "@@JM_EOF"      # never inside base64 text
_MARK = re.compile(r"\n@@([LR]) (\d+)\n")


@dataclass
class Launch:
    rdir: str
    files: dict[str, bytes]     # absolute paths inside rdir
    modes: dict[str, int]
    lines: str                  # shell lines run in rdir that start the job
    report: str = ""            # run in rdir after every job started; print the native id
    done: asyncio.Future[Result | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def size(self) -> int:
        return sum(len(d) for d in self.files.values())


def _write(path: str, data: bytes) -> tuple[str, str]:
    """A shell command writing data to path: printf (a builtin, no process) for text,
    a base64 here-document for anything else."""
    q = shlex.quote(path)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = "\0"
    if "\0" not in text:
        return f"printf '%s' {shlex.quote(text)} > {q}", ""
    return f"base64 -d > {q} <<'{_EOF}'", f"{base64.encodebytes(data).decode()}{_EOF}"


def _chain(steps: list[tuple[str, str]]) -> str:
    """Commands joined by &&; a here-document's body (the second item) goes on the lines
    after its command."""
    out = []
    for n, (cmd, body) in enumerate(steps):
        out.append(cmd + (" &&" if n < len(steps) - 1 else "") + ("\n" + body if body else ""))
    return "\n".join(out)


def _job(i: int, job: Launch) -> str:
    r = shlex.quote(job.rdir)
    for path in job.files:
        if not path.startswith(job.rdir + "/"):
            raise ValueError(f"{path} is outside the run directory {job.rdir}")
    dirs = sorted({posixpath.dirname(p) for p in job.files} - {job.rdir})
    steps = [("mkdir -p " + " ".join(shlex.quote(d) for d in dirs), "")] if dirs else []
    steps += [_write(path, data) for path, data in job.files.items()]
    for mode in sorted(set(job.modes.values())):
        steps.append((f"chmod {mode:o} " + " ".join(
            shlex.quote(p) for p, m in job.modes.items() if m == mode), ""))
    stage = _chain(steps) or "true"
    return (f"printf '\\n@@L {i}\\n'\n"
            f"if mkdir {r} 2>/dev/null; then\n{{ {stage}\n}} 2>&1 && ( cd {r} && {job.lines}\n"
            f") 2>&1\ns=$?; printf '\\n@@S %s\\n' $s; [ $s = 0 ] && ok_{i}=1\n"
            f"elif [ -d {r} ]; then echo {TAKEN}\n"
            f"else echo {NO_DIR}; fi\n")


def _report(i: int, job: Launch) -> str:
    return (f"[ -n \"$ok_{i}\" ] && {{ printf '\\n@@R {i}\\n'; "
            f"( cd {shlex.quote(job.rdir)} && {job.report} ) 2>&1; }}\n")


def script(batch: list[Launch]) -> bytes:
    parents = sorted({posixpath.dirname(job.rdir) for job in batch})
    return ("mkdir -p " + " ".join(shlex.quote(p) for p in parents) + " 2>/dev/null\n"
            + "".join(_job(i, job) for i, job in enumerate(batch))
            + "".join(_report(i, job) for i, job in enumerate(batch) if job.report)
            ).encode()


def parse(out: bytes, n: int) -> list[Result | None | Exception]:
    """Per job: what its launch lines printed and their status; None when its run
    directory was taken; an exception when it could not be staged or the script stopped
    before it."""
    parts = _MARK.split(out.decode("utf-8", "replace"))
    started: dict[int, str] = {}
    reported: dict[int, str] = {}
    for kind, idx, body in zip(parts[1::3], parts[2::3], parts[3::3]):
        (started if kind == "L" else reported)[int(idx)] = body
    results: list[Result | None | Exception] = []
    for i in range(n):
        if i not in started:
            results.append(ConnectionError("the launch script stopped before this job"))
            continue
        seg = started[i]
        if seg.strip() == TAKEN:
            results.append(None)
        elif seg.strip() == NO_DIR:
            results.append(PermissionError("cannot create the run directory"))
        elif "\n@@S " in seg:
            body, _, status = seg.rpartition("\n@@S ")
            code = status.strip()
            results.append(Result(int(code) if code.isdigit() else -1,
                                  (body + reported.get(i, "")).encode(), b""))
        else:
            results.append(ConnectionError("the launch script stopped during this job"))
    return results


# Batch scripts (batch.py, array.py): the deterministic job name and the user's directives.

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
