"""Windows contract tests: what the local executor hands to Windows, checked as pure
values on any OS (this machine has no Windows). The command line that starts Git Bash,
its creation flags, how bash.exe is found, how paths with drive letters, backslashes,
spaces and UNC shares are written into the wrapper, and the cancel of a process tree
(psutil, the same calls on Windows, run here on real processes).

What they cannot show: that Windows and Git Bash accept these values. The CI matrix
(.github/workflows/ci.yml) runs tests/integration/test_local_platform.py on a
real Windows runner for that."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobmesh.common import procs
from jobmesh.common.messages import JobReady
from jobmesh.common.spec import JobSpec
from jobmesh.executor import rundir
from jobmesh.executor.platform_windows import (
    CREATE_NEW_PROCESS_GROUP,
    DETACHED_PROCESS,
    GIT_BASH,
    Windows,
    command,
    find_bash,
    mixed,
    msys,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.unit

GIT = r"C:\Program Files\Git\bin\bash.exe"
RDIR = r"C:\Users\Ada Lovelace\.jobmesh\runs\wf\r1\job\1"


def job(**spec: object) -> JobReady:
    return JobReady(workflow="wf", run="r1", job="job", attempt=1, pool="local",
                    spec=JobSpec(name="job", **spec),  # type: ignore[arg-type]
                    base_dir=r"C:\Users\Ada Lovelace\work flows", time=time.time())


# -- paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path, native, entry", [
    (r"C:\Users\Ada Lovelace\x", "C:/Users/Ada Lovelace/x", "/c/Users/Ada Lovelace/x"),
    ("d:\\data\\", "d:/data/", "/d/data"),
    ("C:/already/mixed", "C:/already/mixed", "/c/already/mixed"),
    ("E:", "E:", "/e"),
    (r"\\server\share\runs", "//server/share/runs", "//server/share/runs"),
    ("/usr/local/bin", "/usr/local/bin", "/usr/local/bin"),
])
def test_contract_paths_for_git_bash(path: str, native: str, entry: str) -> None:
    assert mixed(path) == native
    assert msys(path) == entry


# -- the command line and its flags --------------------------------------------------------

def test_contract_command_line_runs_the_wrapper_file_under_git_bash() -> None:
    argv = command(GIT, RDIR + r"\wrapper.sh")
    assert argv == [GIT, "-c", '. "$0"', "C:/Users/Ada Lovelace/.jobmesh/runs/wf/r1/job/1/"
                    "wrapper.sh"]
    assert not Windows(bash=GIT).inline  # no bytes environment: the executor writes files
    # subprocess.list2cmdline is what Popen uses on Windows: the spaces stay quoted
    line = subprocess.list2cmdline(argv)
    assert line.startswith('"C:\\Program Files\\Git\\bin\\bash.exe" -c ')
    assert line.endswith('"C:/Users/Ada Lovelace/.jobmesh/runs/wf/r1/job/1/wrapper.sh"')


def test_contract_the_job_starts_detached_in_a_new_process_group() -> None:
    options = Windows(bash=GIT).popen_options()
    assert options == {"creationflags": CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS}
    assert (CREATE_NEW_PROCESS_GROUP, DETACHED_PROCESS) == (0x200, 0x8)  # winbase.h
    if sys.platform == "win32":
        assert CREATE_NEW_PROCESS_GROUP == subprocess.CREATE_NEW_PROCESS_GROUP
        assert DETACHED_PROCESS == subprocess.DETACHED_PROCESS
    assert "start_new_session" not in options


def test_contract_python_and_venvs_use_windows_names() -> None:
    win = Windows(bash=GIT)
    assert win.python == "python"
    assert win.venv_python(r"C:\envs\ml") == Path(r"C:\envs\ml", "Scripts", "python.exe")


# -- finding bash.exe ------------------------------------------------------------------------

def test_contract_bash_on_path_is_used_unless_it_is_wsls() -> None:
    env = {"ProgramFiles": r"C:\Program Files"}
    assert find_bash(env=env, which=lambda _: r"D:\Git\bin\bash.exe",
                     exists=lambda p: False) == r"D:\Git\bin\bash.exe"
    # System32\bash.exe starts WSL: skipped for the usual Git for Windows folder
    assert find_bash(env=env, which=lambda _: r"C:\Windows\System32\bash.exe",
                     exists=lambda p: p == GIT) == GIT


def test_contract_no_git_bash_is_a_clear_error_naming_what_was_tried() -> None:
    env = {"ProgramFiles": r"C:\Program Files", "LOCALAPPDATA": r"C:\Users\a\AppData\Local"}
    with pytest.raises(FileNotFoundError) as err:
        find_bash(env=env, which=lambda _: None, exists=lambda p: False)
    text = str(err.value)
    assert "Git Bash" in text and "JOBMESH_BASH" in text and GIT in text
    assert r"C:\Users\a\AppData\Local\Programs\Git\bin\bash.exe" in text
    with pytest.raises(FileNotFoundError, match="JOBMESH_BASH=X:"):
        find_bash(r"X:\nothing\bash.exe", env=env, exists=lambda p: False)


def test_contract_configured_bash_wins() -> None:
    assert find_bash(r"E:\tools\bash.exe", env={}, which=lambda _: GIT,
                     exists=lambda p: True) == r"E:\tools\bash.exe"
    here = shutil.which("bash")  # a bash that exists, as JOBMESH_BASH would name it
    if here:
        assert Windows(bash=here).argv("C:\\r\\wrapper.sh", inline=True) == [
            here, "-c", '. "$0"', "C:/r/wrapper.sh"]


# -- the wrapper under Git Bash ------------------------------------------------------------

def test_contract_wrapper_paths_and_pid_for_git_bash(tmp_path: Path) -> None:
    text = rundir.wrapper(job(exec="echo hi"), RDIR, python="python",
                          tools=r"C:\jm\.venv\Scripts", pylib=r"C:\jm\runs\.lib",
                          dialect=GIT_BASH)
    assert "cd 'C:/Users/Ada Lovelace/.jobmesh/runs/wf/r1/job/1' || exit 97" in text
    assert "export JOBMESH_WORKFLOW_DIR='C:/Users/Ada Lovelace/work flows'" in text
    assert "export JOBMESH_RUN_DIR='C:/Users/Ada Lovelace/.jobmesh/runs/wf/r1/job/1'" in text
    # a PATH entry with a drive colon would split: Git Bash's /c/ form
    assert "export PATH=\"$PATH\":/c/jm/.venv/Scripts" in text
    assert "export PYTHONPATH=\"${PYTHONPATH:+$PYTHONPATH;}\"C:/jm/runs/.lib" in text
    assert 'echo "$(cat /proc/$$/winpid 2>/dev/null || echo $$)" > pid' in text
    assert "\\" not in text.replace("\\n", "")  # no backslash reaches the shell
    # The wrapper is POSIX sh that bash parses; on a POSIX shell here the winpid
    # fallback gives $$, so the same text runs and writes its pid and exit code.
    script = tmp_path / "w.sh"
    rdir = tmp_path / "run dir"
    rdir.mkdir()
    script.write_text(text.replace(shlex.quote(mixed(RDIR)), shlex.quote(str(rdir))))
    subprocess.run(["bash", str(script)], check=True, timeout=30)
    assert (rdir / "exit").read_text() == "0\n"
    assert (rdir / "pid").read_text().strip().isdigit()
    assert (rdir / "job.log").read_text() == "hi\n"


def test_contract_a_venv_job_runs_scripts_python() -> None:
    text = rundir.wrapper(job(script=r"C:\w\train.py", venv=r"C:\envs\my env"), RDIR,
                          dialect=GIT_BASH)
    assert "'C:/envs/my env'/Scripts/python -u ./script.py" in text
    assert "export PATH='/c/envs/my env/Scripts':\"$PATH\"" in text
    assert "export VIRTUAL_ENV='C:/envs/my env'" in text


# -- cancel: the whole tree ------------------------------------------------------------------

def test_contract_cancel_ends_the_process_tree(tmp_path: Path) -> None:
    """Windows.stop is psutil on the tree: the same calls on Linux, on real processes.
    Soft and hard both end every process (TerminateProcess has no gentler form)."""
    tree = [sys.executable, "-c",
            "import subprocess, sys, time\n"
            "k = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print(k.pid, flush=True)\ntime.sleep(60)\n"]
    parent = subprocess.Popen(tree, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        win = Windows(bash=GIT)
        (tmp_path / "pid").write_text(f"{parent.pid}\n")
        assert win.is_job(parent.pid, tmp_path)
        win.stop(parent.pid, hard=False)
        parent.wait(timeout=10)
        wait_until(lambda: not procs.alive(child), 10, "the grandchild to be gone")
        assert not win.is_job(parent.pid, tmp_path)
        win.stop(parent.pid, hard=True)  # nothing left: no error
    finally:
        parent.kill()
        parent.wait()


def test_contract_is_job_refuses_a_pid_younger_than_its_pid_file(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile = tmp_path / "pid"
        pidfile.write_text(f"{proc.pid}\n")
        win = Windows(bash=GIT)
        assert win.is_job(proc.pid, tmp_path)
        old = time.time() - 3600
        import os

        os.utime(pidfile, (old, old))
        assert not win.is_job(proc.pid, tmp_path)
    finally:
        proc.kill()
        proc.wait()
