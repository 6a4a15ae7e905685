"""What ``jobmesh run`` shows a user: a failed job's last log lines under the final table,
one command away from the cause (issue 23), and one-line errors for a bad platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli
from tests.helpers import write_workflow

pytestmark = pytest.mark.integration


def test_failed_job_shows_the_end_of_its_log(tmp_path: Path, home: Path) -> None:
    wf = write_workflow(tmp_path, "failing", {
        "ok": {"exec": "echo fine"},
        "bad": {"exec": "echo first line; echo boom >&2; exit 2"}}, ["ok,bad"])
    res = cli(home, "run", str(wf))
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if "bad failed (exit code 2)" in ln)
    assert "last lines of its log" in lines[at]
    assert [ln.strip() for ln in lines[at + 1:at + 3]] == ["first line", "boom"], res.stdout
    assert "fine" not in "\n".join(lines[at:])  # only the failed job's log
    # the same note under `jobmesh status`
    res = cli(home, "status", "failing")
    assert "bad failed (exit code 2)" in res.stdout and "boom" in res.stdout, res.stdout


@pytest.mark.parametrize("value,words", [
    ("foo", "unknown platform 'foo' (JOBMESH_PLATFORM takes linux, macos or windows"),
    ("windows", "the windows platform needs Windows")])
def test_a_bad_jobmesh_platform_is_one_line_and_exit_2(tmp_path: Path, home: Path,
                                                        value: str, words: str) -> None:
    import os
    import sys

    if value == "windows" and sys.platform == "win32":
        pytest.skip("windows is a good value here")
    wf = write_workflow(tmp_path, "plat", {"a": {"exec": "echo hi"}}, [])
    res = cli(home, "run", str(wf), env={**os.environ, "JOBMESH_PLATFORM": value})
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: JOBMESH_PLATFORM: {words}"), lines
    assert "run " not in res.stderr and not (home / "runs").exists()  # nothing started


@pytest.mark.parametrize("command", [["executor"], ["executor", "--kind", "local"]])
def test_a_standalone_executor_with_a_bad_platform_is_one_line_and_exit_2(
        home: Path, command: list[str]) -> None:
    """`jobmesh executor` (a service started by hand or by a unit file) refuses a bad
    JOBMESH_PLATFORM before it connects: one line, exit 2, no 'internal error'."""
    import os

    res = cli(home, *command, "--nats", "nats://127.0.0.1:9",
              env={**os.environ, "JOBMESH_PLATFORM": "foo"})
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert lines == ["error: JOBMESH_PLATFORM=foo: unknown platform 'foo' (JOBMESH_PLATFORM "
                     "takes linux, macos or windows; unset, it follows this machine)"], lines
