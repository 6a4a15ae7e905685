"""How the local executor starts, watches and stops a job's wrapper on this operating
system: one small interface, one class per platform, chosen by ``sys.platform``.

| platform | starts the wrapper with | notices its exit | cancels |
| --- | --- | --- | --- |
| Linux | ``/bin/sh``, own session | a pidfd on the event loop | signals to the process group |
| macOS | ``/bin/sh``, own session | a kqueue on the event loop | signals to the process group |
| Windows | Git Bash, own process group, detached | polling | the process tree (psutil) |

Where the event-loop watch is unavailable (an old kernel, a forced platform, a job this
executor did not start) the executor's poller notices the exit instead. Which pid is
still the job (against pid reuse) is answered by ``jobmesh.common.procs`` (psutil) on
every platform. ``JOBMESH_PLATFORM`` (``linux``, ``macos``, ``windows``) forces a class,
so tests on Linux run the macOS path: POSIX sessions with the poller alone.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .rundir import POSIX, Dialect

# The wrapper's shell first writes the run directory's job.json and wrapper.sh from its
# environment, then runs the wrapper in the same process ("." keeps its pid).
BOOT = ('printf %s "$JOBMESH_STAGE_JOB" > job.json && '
        'printf %s "$JOBMESH_STAGE_WRAPPER" > wrapper.sh && '
        'unset JOBMESH_STAGE_JOB JOBMESH_STAGE_WRAPPER && . "$0"')
RUN = '. "$0"'  # the files are written already: just run the wrapper


class Platform:
    """Start, watch and stop one job's wrapper. The POSIX behaviour; subclasses change
    what differs.

    ``argv``/``popen_options`` build the launch (pure); ``watch`` asks to be told of an
    own child's exit (False: poll instead); ``is_job`` says whether a pid is still the
    job's wrapper; ``stop`` asks it (``hard``: forces it) to end, with its children.
    """

    name = "posix"
    inline = True          # may hand job.json and wrapper.sh over in the environment
    dialect: Dialect = POSIX
    python = "python3"     # what runs a py job without a venv
    sure = True            # a watch never misses an exit (else the poller looks too)

    def venv_python(self, venv: str) -> Path:
        return Path(venv, self.dialect.venv_bin, "python")

    def shell(self) -> str:
        return "/bin/sh"

    def argv(self, wrapper: str, inline: bool) -> list[str]:
        """The command that runs the wrapper. $0 names the wrapper file, so the command
        line holds the run directory (``is_job`` checks it) and ps shows the job."""
        return [self.shell(), "-c", BOOT if inline else RUN, wrapper]

    def popen_options(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments: a session of its own, so the wrapper
        outlives the executor and its process group can be signalled as one."""
        return {"start_new_session": True}

    def watch(self, pid: int, on_exit: Callable[[], None]) -> bool:
        """Call ``on_exit`` on the event loop when the child ``pid`` ends. False when this
        platform cannot: the caller polls."""
        return False

    def is_job(self, pid: int, rdir: Path) -> bool:
        """Is ``pid`` alive and still the wrapper of the run directory ``rdir``? Its
        command line must name the directory, and it must not be younger than the pid
        file it wrote (another process that got the same pid). (psutil is imported here,
        when first needed: a run that starts its jobs afresh never asks.)"""
        from jobmesh.common import procs

        return bool(procs.same(pid, marker=str(rdir), born_by=_mtime(rdir / "pid")))

    def stop(self, pid: int, hard: bool) -> None:
        """SIGTERM (``hard``: SIGKILL) to the wrapper's process group; to the wrapper
        alone if the group may not be signalled."""
        sig = signal.SIGKILL if hard else signal.SIGTERM
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Stop watching (the jobs run on)."""


class Linux(Platform):
    """Exits are noticed through a pidfd (Linux 5.3+), no thread per child."""

    name = "linux"

    def __init__(self) -> None:
        self._fds: dict[int, asyncio.AbstractEventLoop] = {}  # pidfds watched -> their loop

    def watch(self, pid: int, on_exit: Callable[[], None]) -> bool:
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(pid)  # type: ignore[attr-defined,unused-ignore]
        except (AttributeError, OSError):
            return False  # the poller will notice

        def ready() -> None:
            if self._fds.pop(fd, None) is None:
                return
            loop.remove_reader(fd)
            os.close(fd)
            on_exit()

        self._fds[fd] = loop
        loop.add_reader(fd, ready)
        return True

    def close(self) -> None:
        """Stop watching: an executor closed while its jobs run on reports none of their
        exits (a new one attaches to them)."""
        for fd, loop in list(self._fds.items()):
            self._fds.pop(fd, None)
            try:
                loop.remove_reader(fd)
            except RuntimeError:  # its loop is closed already
                pass
            os.close(fd)


class MacOS(Platform):
    """Exits are noticed through one kqueue (EVFILT_PROC, NOTE_EXIT) on the event loop.
    Not run on a Mac yet (docs/platforms.md), so the poller checks watched children too."""

    name = "macos"
    sure = False

    def __init__(self) -> None:
        self._kq: Any = None
        self._waiting: dict[int, Callable[[], None]] = {}

    def watch(self, pid: int, on_exit: Callable[[], None]) -> bool:
        if not hasattr(select, "kqueue"):
            return False  # (a forced macOS platform on Linux: the poller notices)
        try:
            if self._kq is None:
                self._kq = select.kqueue()
                asyncio.get_running_loop().add_reader(self._kq.fileno(), self._drain)
            kq: Any = select  # (kqueue names exist on BSD and macOS only)
            event = kq.kevent(pid, filter=kq.KQ_FILTER_PROC,
                              flags=kq.KQ_EV_ADD | kq.KQ_EV_ONESHOT, fflags=kq.KQ_NOTE_EXIT)
            self._kq.control([event], 0, 0)
        except OSError:  # ESRCH: it has ended already; the poller notices
            return False
        self._waiting[pid] = on_exit
        return True

    def _drain(self) -> None:
        for event in self._kq.control(None, 64, 0):
            on_exit = self._waiting.pop(int(event.ident), None)
            if on_exit is not None:
                on_exit()

    def close(self) -> None:
        if self._kq is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._kq.fileno())
            except RuntimeError:
                pass
            self._kq.close()
            self._kq = None
        self._waiting.clear()


NAMES = {"linux": "linux", "darwin": "macos", "macos": "macos", "win32": "windows",
         "windows": "windows"}


class PlatformError(ValueError):
    """JOBMESH_PLATFORM (or a platform name) this machine cannot use; a one-line message
    naming the variable and the values it takes."""


def select_platform(name: str | None = None, bash: str | None = None) -> Platform:
    """The platform class for ``name`` (default: ``JOBMESH_PLATFORM``, else
    ``sys.platform``). ``bash`` is Git Bash's bash.exe on Windows (default:
    ``JOBMESH_BASH``, else found). Raises ValueError for an unknown name, and for a
    Windows platform outside Windows (its launch flags exist only there)."""
    env = os.environ.get("JOBMESH_PLATFORM")
    wanted = name or env or sys.platform
    source = f"JOBMESH_PLATFORM={wanted}: " if not name and env else ""
    kind = NAMES.get(wanted.lower(), "linux" if wanted.startswith("linux") else None)
    if kind is None:
        raise PlatformError(f"{source}unknown platform {wanted!r} (JOBMESH_PLATFORM takes "
                            "linux, macos or windows; unset, it follows this machine)")
    if kind == "windows":
        if sys.platform != "win32":
            raise PlatformError(f"{source}the windows platform needs Windows (this is "
                                f"{sys.platform})")
        from .platform_windows import Windows

        return Windows(bash or os.environ.get("JOBMESH_BASH"))
    return Linux() if kind == "linux" else MacOS()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
