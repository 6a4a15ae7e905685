"""The signals that stop a jobmesh process cleanly: Ctrl-C, SIGTERM, and a lost terminal.

A terminal that goes away (its window closed, an SSH connection dropped, a laptop's
session ended) sends SIGHUP, whose default action ends the process on the spot: no
checkpoint, no clean stop of a private nats-server, which then ran on until the next
command in that home stopped it. Here SIGHUP stops the process like SIGTERM does, and
the terminal's file descriptors are pointed at ``/dev/null`` first, so the messages the
stop prints cannot fail on a terminal that is gone (a redirected output stays where it
was). Jobs are detached from jobmesh and keep running either way. A process started
with SIGHUP ignored (``nohup jobmesh run ...``) keeps it ignored and carries on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from collections.abc import Callable

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP: POSIX only


def on_stop(callback: Callable[[int], object], plain_fallback: bool = True) -> None:
    """Call ``callback(signum)`` in the running loop when a stop signal arrives. Where
    the loop has no ``add_signal_handler`` (Windows), a plain handler hands the call to
    the loop, unless ``plain_fallback`` is False (the caller handles KeyboardInterrupt)."""
    loop = asyncio.get_running_loop()
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        if name == "SIGHUP" and signal.getsignal(sig) == signal.SIG_IGN:
            continue  # started under nohup: told to outlive its terminal, so it does

        def handler(sig: int = sig) -> None:
            if sig == getattr(signal, "SIGHUP", None):
                release_terminal()
            callback(sig)

        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError):
            if plain_fallback:
                signal.signal(sig, lambda *_, h=handler: loop.call_soon_threadsafe(h))


def release_terminal() -> None:
    """Point stdin, stdout and stderr at ``/dev/null`` where they are a terminal. (A
    terminal that hung up no longer says it is one, ``isatty`` fails on it: a character
    device is taken for one; /dev/null is one too, and stays what it was. Files and
    pipes are kept.)"""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the terminal is gone: what was buffered is lost
            pass
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            try:
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
            except OSError:
                pass
    finally:
        os.close(null)
