"""Local jobs on native Windows: the POSIX wrapper runs under Git Bash's ``bash.exe`` (the
paper's manual requires Git Bash), detached in a process group of its own; a cancel ends
the whole process tree through psutil. Path and command building are pure functions, so
Linux tests them (tests/unit/test_platform_windows.py, the Windows contract tests).

Known limits (docs/platforms.md): a detached job has no console, so CTRL_BREAK cannot
reach it and a cancel ends the tree at once (no SIGTERM grace: the job's own clean-up
does not run, and ``exit`` is not written; the ``cancel`` file says why it ended).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path, PureWindowsPath
from typing import Any

from jobmesh.common import procs

from .platforms import RUN, Platform, _mtime
from .rundir import Dialect

# Process creation flags (winbase.h); numbers, so that Linux can build and check them.
CREATE_NEW_PROCESS_GROUP = 0x00000200
DETACHED_PROCESS = 0x00000008
FLAGS = CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS

_DRIVE = re.compile(r"^([A-Za-z]):[\\/]*")


def mixed(path: str) -> str:
    """A Windows path with forward slashes (``C:/Users/a b/x``): Windows, Python and Git
    Bash all read this form, so it goes into ``cd`` and the job's environment."""
    return path.replace("\\", "/")


def msys(path: str) -> str:
    """A Windows path as a Git Bash PATH entry (``/c/Users/a b/x``): a ``C:`` in PATH
    would split at its colon. UNC paths (``\\\\server\\share``) become ``//server/share``;
    a path that is POSIX already is left alone."""
    slashed = mixed(path)
    m = _DRIVE.match(slashed)
    if m:
        rest = slashed[m.end():]
        return f"/{m.group(1).lower()}/{rest}".rstrip("/") if rest else f"/{m.group(1).lower()}"
    return slashed


GIT_BASH = Dialect(
    native=mixed,
    entry=msys,
    pathsep=";",  # PYTHONPATH is read by Windows Python
    # Git Bash's $$ is an MSYS pid; /proc/$$/winpid is the Windows pid psutil knows.
    pid='"$(cat /proc/$$/winpid 2>/dev/null || echo $$)"',
    venv_bin="Scripts",
)


def find_bash(configured: str | None = None, env: dict[str, str] | None = None,
              which: Any = shutil.which, exists: Any = os.path.isfile) -> str:
    """Git Bash's bash.exe: ``configured`` (JOBMESH_BASH) if given, else ``bash`` on PATH
    unless it is ``System32\\bash.exe`` (that one starts WSL, not Git Bash), else the
    usual install folders. Raises FileNotFoundError naming what was tried."""
    env = dict(os.environ if env is None else env)
    if configured:
        if not exists(configured):
            raise FileNotFoundError(f"JOBMESH_BASH={configured} does not exist")
        return configured
    tried = []
    found = which("bash")
    if found and "system32" not in found.lower().replace("/", "\\").split("\\"):
        return str(found)
    if found:
        tried.append(f"{found} (WSL's, skipped)")
    for root in (env.get("ProgramFiles"), env.get("ProgramW6432"),
                 env.get("ProgramFiles(x86)"),
                 env.get("LOCALAPPDATA") and str(PureWindowsPath(env["LOCALAPPDATA"],
                                                                 "Programs"))):
        if root:
            candidate = str(PureWindowsPath(root, "Git", "bin", "bash.exe"))
            if exists(candidate):
                return candidate
            tried.append(candidate)
    raise FileNotFoundError("Git Bash (bash.exe) is needed for local jobs on Windows; "
                            "install Git for Windows or set JOBMESH_BASH. Tried: "
                            + ", ".join(tried or ["bash on PATH"]))


def command(bash: str, wrapper: str) -> list[str]:
    """The command that runs the wrapper file (its path as ``$0``, so the job's command
    line names its run directory) under Git Bash's ``bash``. Never the environment
    hand-over of POSIX (platforms.BOOT): Windows has no bytes environment."""
    return [bash, "-c", RUN, mixed(wrapper)]


class Windows(Platform):
    """Git Bash, a new detached process group, cancel by process tree."""

    name = "windows"
    inline = False  # no bytes environment (os.environb) on Windows: the executor writes
    dialect = GIT_BASH
    python = "python"  # Windows installs no python3 by default

    def venv_python(self, venv: str) -> Path:
        return Path(venv, "Scripts", "python.exe")

    def __init__(self, bash: str | None = None) -> None:
        self._configured = bash
        self._bash: str | None = None

    def shell(self) -> str:
        if self._bash is None:
            self._bash = find_bash(self._configured)
        return self._bash

    def argv(self, wrapper: str, inline: bool) -> list[str]:
        return command(self.shell(), wrapper)

    def popen_options(self) -> dict[str, Any]:
        return {"creationflags": FLAGS}

    def is_job(self, pid: int, rdir: Path) -> bool:
        """Alive and not younger than its pid file. (The command line of a bash that
        Git Bash started does not reliably show the wrapper's path.)"""
        return bool(procs.same(pid, born_by=_mtime(rdir / "pid")))

    def stop(self, pid: int, hard: bool) -> None:
        procs.kill_tree(pid, hard)
