"""jobmesh.common.procs against real processes: alive, zombie, the same process (command
line and creation time against pid reuse), and ending a process tree. These run on every
platform of the CI matrix; only the zombie test needs POSIX."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jobmesh.common import procs
from tests.helpers import wait_until

pytestmark = pytest.mark.unit

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
# A parent that starts two grandchildren-to-be and waits: a small process tree.
TREE = [sys.executable, "-c",
        "import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
        " for _ in range(2)]\n"
        "print(' '.join(str(k.pid) for k in kids), flush=True)\n"
        "time.sleep(60)\n"]


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([*SLEEP, "marker-for-procs-test"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_running_process_is_alive_and_a_reaped_one_is_not(sleeper) -> None:
    assert procs.exists(sleeper.pid) and procs.alive(sleeper.pid)
    assert not procs.zombie(sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    assert not procs.alive(sleeper.pid) and procs.cmdline(sleeper.pid) is None


def test_no_such_pid_is_neither_alive_nor_a_zombie() -> None:
    for pid in (0, -1, 2**22 + 12345):
        assert not procs.alive(pid) and not procs.zombie(pid)
        assert procs.created(pid) is None and not procs.same(pid)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no zombies")
def test_an_exited_unreaped_child_is_a_zombie_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_until(lambda: procs.zombie(proc.pid), 10, "the child to become a zombie")
        assert procs.exists(proc.pid) and not procs.alive(proc.pid)
        assert not procs.same(proc.pid)
    finally:
        proc.wait()


def test_same_checks_the_command_line_marker(sleeper) -> None:
    assert procs.same(sleeper.pid, marker="marker-for-procs-test")
    assert not procs.same(sleeper.pid, marker="another-run-directory")
    assert "marker-for-procs-test" in " ".join(procs.cmdline(sleeper.pid) or [])


def test_a_reused_pid_is_told_apart_by_its_creation_time(sleeper, tmp_path: Path) -> None:
    """The job wrote its pid file, ended, and the system gave the pid to a newer process:
    that process was created after the pid file was written."""
    start = procs.created(sleeper.pid)
    assert start is not None and abs(start - time.time()) < 60
    pidfile = tmp_path / "pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    assert procs.same(sleeper.pid, born_by=pidfile.stat().st_mtime)
    old = start - 3600  # the pid file of a job that ran an hour before this process
    os.utime(pidfile, (old, old))
    assert not procs.same(sleeper.pid, born_by=pidfile.stat().st_mtime)
    assert not procs.same(sleeper.pid, marker="marker-for-procs-test", born_by=old)


def test_kill_tree_ends_the_parent_and_every_descendant() -> None:
    parent = subprocess.Popen(TREE, stdout=subprocess.PIPE, text=True)
    try:
        kids = [int(p) for p in parent.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(kids) == 2 and all(procs.alive(k) for k in kids)
        assert {p.pid for p in procs.tree(parent.pid)} == {parent.pid, *kids}
        assert procs.kill_tree(parent.pid) == 3
        parent.wait(timeout=10)
        wait_until(lambda: not any(procs.alive(k) for k in kids), 10,
                   "the grandchildren to be gone")
        assert procs.kill_tree(parent.pid, hard=True) == 0 and procs.tree(parent.pid) == []
    finally:
        parent.kill()
        parent.wait()


def test_children_named_finds_descendants_by_name() -> None:
    parent = subprocess.Popen(TREE, stdout=subprocess.PIPE, text=True)
    try:
        kids = {int(p) for p in parent.stdout.readline().split()}  # type: ignore[union-attr]
        name = psutil.Process(min(kids)).name()  # python3.12, Python, python.exe, ...
        assert set(procs.children_named(parent.pid, name)) >= kids
        assert procs.children_named(parent.pid, "nats-server") == []
    finally:
        procs.kill_tree(parent.pid, hard=True)
        parent.wait()
