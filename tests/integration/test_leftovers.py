"""Test sessions clean up after themselves (tests/leftovers.py): a session killed outright
leaves a record that the next one sweeps, and SIGTERM runs the fixtures' finalizers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests import leftovers, sshhosts
from tests.helpers import ROOT, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.ssh]
if sshhosts.available():
    pytestmark.append(pytest.mark.skip(reason=sshhosts.available() or ""))

MAKE = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from tests import sshhosts
lab = sshhosts.Lab(Path({folder!r}))
lab.loopback("left")
lab.namespaces(1)
print("ready", flush=True)
time.sleep(600)
"""


def _sshds(folder: Path) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "sshd" and str(folder) in " ".join(p.info["cmdline"] or [])]


def _netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_a_killed_sessions_daemons_and_namespaces_are_swept(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", MAKE.format(root=str(ROOT),
                                                                folder=str(tmp_path))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        record = leftovers.DIR / f"{child.pid}.json"
        kinds = sorted(i[0] for i in leftovers._read(record))
        assert kinds == ["link", "netns", "process", "process"], kinds
        names = [i[1] for i in leftovers._read(record) if i[0] == "netns"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert len(_sshds(tmp_path)) == 2 and names[0] in _netns()  # left behind
    swept = leftovers.sweep()
    assert {"process", "netns", "link"} <= {i[0] for i in swept} and not record.exists()
    wait_until(lambda: not _sshds(tmp_path), 15, "the left sshd processes to stop")
    assert names[0] not in _netns()


def test_sigterm_runs_the_finalizers(tmp_path: Path) -> None:
    (tmp_path / "test_slow.py").write_text(textwrap.dedent(f"""
        import time
        from pathlib import Path
        import pytest
        from tests import sshhosts

        @pytest.fixture
        def lab():
            lab = sshhosts.Lab(Path({str(tmp_path / 'lab')!r}))
            lab.loopback("term")
            yield lab
            lab.stop()

        def test_waits(lab):
            Path({str(tmp_path / 'started')!r}).touch()
            time.sleep(600)
        """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-p", "tests.conftest",  # its SIGTERM handler
                             "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                             str(tmp_path / "test_slow.py")], cwd=ROOT, env=env,
                            stdout=open(tmp_path / "out.txt", "w"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (tmp_path / "started").exists() or proc.poll() is not None, 60,
                   "the inner test to start")
        assert proc.poll() is None, (tmp_path / "out.txt").read_text()
        assert len(_sshds(tmp_path)) == 1
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = (tmp_path / "out.txt").read_text()
    assert "KeyboardInterrupt" in out, out
    assert not _sshds(tmp_path), out
    assert not (leftovers.DIR / f"{proc.pid}.json").exists()
