"""A lost terminal (SIGHUP) stops a jobmesh process like SIGTERM does, and its output to
the terminal goes to /dev/null from then on, while a redirected output stays where it
was (libs/common/signals.py). Real processes, real signals, a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_until

CHILD = """
import asyncio, os, signal, sys
from jobmesh.common import signals

if sys.argv[2:] != ["keep"]:  # as a terminal's shell starts it, whatever ran these tests
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

async def main():
    got = asyncio.Event()
    seen = []
    signals.on_stop(lambda sig: (seen.append(sig), got.set()))
    open(sys.argv[1] + ".ready", "w").close()
    await got.wait()
    print("still writing after the stop")  # must not fail on a terminal that is gone
    sys.stdout.flush()
    with open(sys.argv[1], "w") as f:
        f.write(f"{seen[0]} {os.readlink('/proc/self/fd/1')}")

asyncio.run(main())
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, pty")


def _run(tmp_path: Path, sig: int, terminal: bool, hang_up: bool = True) -> tuple[int, str, str]:
    out = tmp_path / "result"
    master = slave = None
    if terminal:
        master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out)],
                            stdout=slave if terminal else subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: Path(f"{out}.ready").exists(), 20, "the child to listen")
        if master is not None and hang_up:
            os.close(master)  # the terminal goes away: writes to it now fail (EIO)
            master = None
        proc.send_signal(sig)
        code = proc.wait(20)
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
        if proc.poll() is None:
            proc.kill()
    signum, fd1 = out.read_text().split(" ", 1)
    assert int(signum) == sig
    return code, fd1, proc.stdout.read().decode() if proc.stdout else ""


def test_a_hangup_stops_and_points_a_lost_terminal_at_dev_null(tmp_path: Path) -> None:
    code, fd1, _ = _run(tmp_path, signal.SIGHUP, terminal=True)
    assert code == 0 and fd1 == os.devnull


def test_a_hangup_keeps_a_redirected_output(tmp_path: Path) -> None:
    code, fd1, printed = _run(tmp_path, signal.SIGHUP, terminal=False)
    assert code == 0 and fd1.startswith("pipe:")
    assert printed == "still writing after the stop\n"


def test_sigterm_stops_and_leaves_the_terminal_alone(tmp_path: Path) -> None:
    code, fd1, _ = _run(tmp_path, signal.SIGTERM, terminal=True, hang_up=False)
    assert code == 0 and fd1.startswith("/dev/pts/")


def test_under_nohup_a_hangup_is_still_ignored(tmp_path: Path) -> None:
    out = tmp_path / "result"
    proc = subprocess.Popen(["nohup", sys.executable, "-c", CHILD, str(out), "keep"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until(lambda: Path(f"{out}.ready").exists(), 20, "the child to listen")
        proc.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(1)  # still running: nohup asked it to outlive its terminal
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.read_text().split(" ", 1)[0] == str(int(signal.SIGTERM))
