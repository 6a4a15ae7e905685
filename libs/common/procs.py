"""Questions about processes, answered the same way on Linux, macOS and Windows (psutil),
one function per question. Nothing here reads ``/proc`` itself.

Every function answers for a pid that may vanish at any moment: a process that is gone,
or one this account may not inspect (``AccessDenied``: another user's), is "not alive"
and "not ours". Jobs run as the account of the executor, so a process we may not read is
never one of our jobs.
"""

from __future__ import annotations

import psutil

# A pid file is written after its process was created. Its mtime and the process's
# creation time come from different clocks: psutil derives the creation time on Linux
# from the boot time, which /proc/stat gives in whole seconds, and FAT-like file systems
# store mtimes in 2 s steps. A process created more than this after its pid file was
# written is another one that got the same pid.
CLOCK_SLACK = 2.5


def _process(pid: int) -> psutil.Process | None:
    if pid <= 0:
        return None
    try:
        return psutil.Process(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def exists(pid: int) -> bool:
    """Is there a process with this pid, zombies included?"""
    return pid > 0 and bool(psutil.pid_exists(pid))


def zombie(pid: int) -> bool:
    """Has the process exited, waiting to be reaped? (False for no process at all; never
    true on Windows, which has no zombies.)"""
    p = _process(pid)
    if p is None:
        return False
    try:
        return bool(p.status() == psutil.STATUS_ZOMBIE)
    except psutil.ZombieProcess:
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def alive(pid: int) -> bool:
    """Is the process running? A zombie (exited, not yet reaped, which can take seconds
    in containers) counts as stopped."""
    return exists(pid) and not zombie(pid)


def created(pid: int) -> float | None:
    """When the process was created (epoch seconds), or None if it is gone or hidden."""
    p = _process(pid)
    if p is None:
        return None
    try:
        return float(p.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def cmdline(pid: int) -> list[str] | None:
    """The process's arguments, or None if it is gone, a zombie, or hidden."""
    p = _process(pid)
    if p is None:
        return None
    try:
        return list(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


def same(pid: int, marker: str | None = None, born_by: float | None = None) -> bool:
    """Is ``pid`` still the process we started, not another that reused its pid?

    It must be alive (not a zombie); with ``marker``, hold that text in its command line
    (the local wrapper's is its run directory); with ``born_by`` (the mtime of the pid
    file it wrote), have been created no later than that, give or take CLOCK_SLACK.
    """
    if not alive(pid):
        return False
    if marker is not None:
        args = cmdline(pid)
        if args is None or marker not in " ".join(args):
            return False
    if born_by is not None:
        start = created(pid)
        if start is None or start > born_by + CLOCK_SLACK:
            return False
    return True


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants, parent first (an empty list if it is gone).
    Descendants are read before anything is killed, so a child that outlives its parent
    is still found."""
    p = _process(pid)
    if p is None:
        return []
    try:
        return [p, *p.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return [p]


def kill_tree(pid: int, hard: bool = False) -> int:
    """Terminate (``hard``: kill) the process and every descendant; returns how many were
    signalled. On Windows both mean TerminateProcess. Processes that vanish meanwhile are
    skipped. This is how Windows cancels a job (it has no process-group signals), and the
    fallback where a process group cannot be signalled."""
    done = 0
    for p in tree(pid):
        try:
            p.kill() if hard else p.terminate()
            done += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return done


def children_named(pid: int, text: str) -> list[int]:
    """Pids of the process's descendants whose name contains ``text`` (e.g. the
    nats-server a stack started)."""
    found = []
    for p in tree(pid)[1:]:
        try:
            if text in p.name():
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found
