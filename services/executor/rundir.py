"""A job's run directory and the wrapper it runs under, shared by every executor that runs
processes (local, ssh, wsl). Pure functions: they build text and parse file contents.

<workdir>/<workflow>/<run>/<job>/<attempt>/
    job.json     what was asked (the JobReady message)
    wrapper.sh   runs the job detached, writes pid and exit
    job.log      stdout and stderr, where progress lines appear
    pid          the wrapper's pid (its process group)
    exit         the exit code, written once when the job ends
    cancel       present when jobmesh asked the job to stop (holds the reason)
    reason       optional: why the job failed, in the job's own words (notebooks)
    outputs.json optional: results the job publishes for later jobs
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from jobmesh.common.messages import JobReady
from jobmesh.common.names import check_job, check_workflow

from .base import InvalidJobError

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _same(path: str) -> str:
    return path


@dataclass(frozen=True)
class Dialect:
    """How the wrapper writes paths and its pid for the shell that runs it. POSIX shells
    take paths as they are; Git Bash on Windows gets its own (platform_windows.py)."""

    native: Callable[[str], str] = _same  # a path as the job's programs read it (cd, env)
    entry: Callable[[str], str] = _same   # a path as an entry of the shell's PATH
    pathsep: str = ":"                    # between PYTHONPATH entries
    pid: str = "$$"                       # the shell's expression for the pid to record
    venv_bin: str = "bin"                 # where a venv keeps its python


POSIX = Dialect()


def run_dir(workdir: str, job: JobReady) -> str:
    if not _RUN_ID.match(job.run) or job.attempt < 1:
        raise InvalidJobError(f"invalid run id {job.run!r} or attempt {job.attempt}")
    return str(PurePosixPath(workdir) / check_workflow(job.workflow) / job.run
               / check_job(job.job) / str(job.attempt))


def staged_script(job: JobReady) -> str | None:
    """The file name the script gets inside the run directory."""
    if not job.spec.script:
        return None
    return "script" + PurePosixPath(job.spec.script).suffix


def command(job: JobReady, python: str = "python3", dialect: Dialect = POSIX) -> str:
    """The shell command line the wrapper runs, every user value quoted."""
    spec = job.spec
    args = " ".join(shlex.quote(a) for a in spec.args)
    kind = spec.job_type
    if kind == "exec":
        # The user's command line runs in bash as written; args are appended, quoted.
        line = spec.exec or ""
        return "bash -c " + shlex.quote(line + (" " + args if args else ""))
    name = staged_script(job)
    if kind == "sh":
        return f"bash ./{name} {args}".rstrip()
    if kind == "py":
        if spec.venv:
            py = f"{shlex.quote(dialect.native(spec.venv))}/{dialect.venv_bin}/python"
            return f"{py} -u ./{name} {args}".rstrip()
        return f"{shlex.quote(python)} -u ./{name} {args}".rstrip()
    if kind == "ipynb":
        # nbclient runs under jobmesh's Python; the kernel under the venv's (JOBMESH_VENV).
        return f"{shlex.quote(python)} -m jobmesh.executor.notebook ./{name}"
    return "true"


def wrapper(job: JobReady, rdir: str, python: str = "python3", tools: str | None = None,
            pylib: str | None = None, dialect: Dialect = POSIX) -> str:
    """The POSIX sh script that runs the job. It survives its launcher (HUP ignored, own
    session), records its pid and, when the job ends, the exit code. ``tools`` is a
    directory appended to PATH so jobs can call ``jobmesh progress``; ``pylib`` one
    appended to PYTHONPATH so any Python can ``from jobmesh import progress``. The
    ``dialect`` says how paths and the pid are written for the shell that runs it."""
    native = dialect.native
    env = {
        "JOBMESH_WORKFLOW": job.workflow,
        "JOBMESH_JOB": job.job,
        "JOBMESH_ATTEMPT": str(job.attempt),
        "JOBMESH_RUN": job.run,
        "JOBMESH_RUN_DIR": native(rdir),
        "JOBMESH_WORKFLOW_DIR": native(job.base_dir),
        "PYTHONUNBUFFERED": "1",
    }
    if job.spec.parameters:
        env["JOBMESH_PARAMETERS"] = json.dumps(job.spec.parameters)
    if job.spec.venv:
        env["JOBMESH_VENV"] = native(job.spec.venv)
        env["VIRTUAL_ENV"] = native(job.spec.venv)
    if job.spec.script:
        env["JOBMESH_NOTEBOOK_NAME"] = PurePosixPath(job.spec.script).stem
    for key, value in job.spec.env.items():
        if not _ENV_KEY.match(key):
            raise InvalidJobError(f"env name {key!r} is not a valid variable name")
        env[key] = value
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    if job.spec.venv:
        venv_bin = dialect.entry(job.spec.venv + "/" + dialect.venv_bin)
        exports += f'\nexport PATH={shlex.quote(venv_bin)}:"$PATH"'
    if tools:
        exports += f'\nexport PATH="$PATH":{shlex.quote(dialect.entry(tools))}'
    if pylib:
        sep = dialect.pathsep
        exports += (f'\nexport PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH{sep}}}"'
                    f'{shlex.quote(native(pylib))}')
    return f"""#!/bin/sh
# jobmesh wrapper for {job.workflow}/{job.job} attempt {job.attempt}
cd {shlex.quote(native(rdir))} || exit 97
trap '' HUP
trap 'echo 143 > exit; exit 143' TERM
echo {dialect.pid} > pid
{exports}
{command(job, python, dialect)} >> job.log 2>&1 < /dev/null
rc=$?
echo $rc > exit
"""


def parse_exit(text: str) -> int | None:
    """The exit file's content -> code, or None while it is being written."""
    if not text.endswith("\n"):
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def describe_exit(code: int) -> str:
    if code == 124:
        return "exit code 124 (timeout)"
    if code > 128:
        return f"exit code {code} (signal {code - 128})"
    return f"exit code {code}"
