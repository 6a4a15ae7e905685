"""<script>.log following and shell staging, against a real /bin/sh: the probe's side-log
reads and the SFTP-free file writes run here exactly as they run on a remote host."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobmesh.common.messages import JobReady
from jobmesh.common.progress import LogScan
from jobmesh.common.spec import JobSpec
from jobmesh.executor.probe import parse, probe_script
from jobmesh.executor.sidelog import SideLogs, names
from jobmesh.executor.ssh import put_script

pytestmark = pytest.mark.unit


def ready(name: str, script: str | None) -> JobReady:
    return JobReady(workflow="w", run="r1", job=name, attempt=1, pool="local",
                    spec=JobSpec(name=name, script=script), base_dir="/wf", time=0.0)


def test_names_follow_the_script_and_its_staged_name() -> None:
    assert names(ready("fetch.py", "/wf/fetch.py")) == ["fetch.log", "script.log"]
    assert names(ready("job", "/wf/job.py")) == ["script.log"]  # never job.log itself
    assert names(ready("x", None)) == []
    assert names(ready("odd", "/wf/a b.py")) == ["script.log"]  # unsafe for the probe


def test_local_read_folds_whole_lines_only(tmp_path: Path) -> None:
    side, into = SideLogs.of(ready("fetch.py", "/wf/fetch.py")), LogScan()
    log = tmp_path / "fetch.log"
    assert side.read_local(tmp_path, into) is False  # not there yet
    log.write_text("# cloudmesh status=running progress=30 pid=1\n# cloudmesh progress=4")
    assert side.read_local(tmp_path, into) is True
    assert into.progress == 30.0  # the unfinished line waits
    with open(log, "a") as f:
        f.write("5 pid=1\n")
    side.read_local(tmp_path, into)
    assert into.progress == 45.0
    assert side.read_local(tmp_path, into) is False


def test_probe_reads_side_logs_past_their_offsets(tmp_path: Path) -> None:
    rdir = tmp_path / "run"
    rdir.mkdir()
    (rdir / "job.log").write_text("hello\n")
    (rdir / "fetch.log").write_text("# cloudmesh status=running progress=20 pid=1\n")
    rj = SimpleNamespace(rdir=str(rdir), offset=0,
                         side=SideLogs.of(ready("fetch.py", "/wf/fetch.py")))
    into = LogScan()

    def probe() -> dict[str, str]:
        out = subprocess.run(["/bin/sh", "-s"], input=probe_script([rj]), capture_output=True,
                             check=True).stdout
        return parse(out)[0]

    assert rj.side.read_probe(probe(), into) is True and into.progress == 20.0
    assert rj.side.read_probe(probe(), into) is False  # nothing new past the offset
    with open(rdir / "fetch.log", "a") as f:
        f.write("# cloudmesh status=done progress=100 pid=1\n")
    (rdir / "script.log").write_text("[INFO] # cloudmesh status=failed progress=99 pid=1\n")
    fields = probe()
    assert "log" in fields and rj.side.read_probe(fields, into) is True
    assert (into.progress, into.status) == (99.0, "failed")


def test_put_script_writes_text_binary_and_modes_with_sh(tmp_path: Path) -> None:
    files = {str(tmp_path / "a.sh"): b"#!/bin/sh\necho 'quoted' \"$x\"\n",
             str(tmp_path / "bin.dat"): bytes(range(256)) * 3,
             str(tmp_path / "empty"): b"",
             str(tmp_path / "it's odd.txt"): b"no newline at end"}
    res = subprocess.run(["/bin/sh", "-s"], input=put_script(files, {
        str(tmp_path / "a.sh"): 0o755}), capture_output=True)
    assert res.returncode == 0, res.stderr
    for path, data in files.items():
        assert Path(path).read_bytes() == data
    assert (tmp_path / "a.sh").stat().st_mode & 0o777 == 0o755


def test_put_script_stops_at_the_first_failure(tmp_path: Path) -> None:
    files = {str(tmp_path / "missing" / "x"): b"x", str(tmp_path / "y"): b"y"}
    res = subprocess.run(["/bin/sh", "-s"], input=put_script(files), capture_output=True)
    assert res.returncode != 0 and b"missing" in res.stderr
    assert not (tmp_path / "y").exists()
