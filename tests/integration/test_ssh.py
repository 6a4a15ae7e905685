"""The SSH executor against real sshd hosts: two network-namespace hosts and one on
loopback. And the WSL executor as a contract test with a stand-in wsl.exe."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import sshhosts
from tests.conftest import cli, write_workflow
from tests.helpers import status

why = sshhosts.available()
pytestmark = [pytest.mark.integration, pytest.mark.ssh]
if why:  # make test installs sshd and runs as root; a plain developer run may not
    pytestmark.append(pytest.mark.skip(reason=why))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshhosts.Lab]:
    lab = sshhosts.Lab(tmp_path_factory.mktemp("ssh"))
    lab.namespaces(2)
    lab.loopback("loop")
    lab.loopback("small", max_sessions=4)
    yield lab
    lab.stop()



def test_hybrid_local_host1_host2_local_passes_a_file(lab: sshhosts.Lab, tmp_path: Path,
                                                      home: Path) -> None:
    h1, h2 = lab.hosts["host1"], lab.hosts["host2"]
    step = 'echo "$1 $(echo $SSH_CONNECTION | cut -d" " -f3)" >> data.txt; cat data.txt'
    wf = write_workflow(tmp_path, "hybrid", {
        "make": {"exec": "echo 'start local' > data.txt", "outputs": ["data.txt"]},
        "one": lab.node(h1, exec=f"set -- h1; {step}", inputs=["data.txt"],
                        outputs=["data.txt"]),
        "two": lab.node(h2, exec=f"set -- h2; {step}; jobmesh progress 100 -m remote",
                        inputs=["data.txt"], outputs=["data.txt"]),
        "check": {"exec": 'echo "end local" >> "$JOBMESH_WORKFLOW_DIR/data.txt"'},
    }, ["make,one,two,check"])
    res = cli(home, "run", str(wf), timeout=180)
    assert res.returncode == 0, res.stderr + res.stdout
    lines = (tmp_path / "data.txt").read_text().splitlines()
    assert lines[0] == "start local"
    assert lines[1].split()[0] == "h1" and h1.address in lines[1]
    assert lines[2].split()[0] == "h2" and h2.address in lines[2]
    assert lines[-1] == "end local"
    jobs = status(home, "hybrid")["jobs"]
    assert jobs["two"]["msg"] == "remote" and h2.address in jobs["two"]["host"]
    assert jobs["one"]["native_id"].startswith(f"root@{h1.address}")


def test_executor_sigkill_reattaches_remote_jobs_once(lab: sshhosts.Lab, tmp_path: Path,
                                                      home: Path, bus, services) -> None:
    h1 = lab.hosts["host1"]
    gate = tmp_path / "go"
    nodes = {f"r{i}": lab.node(h1, exec=f'echo x >> {tmp_path}/count-r{i}; '
                                        f'while [ ! -e {gate} ]; do sleep 0.05; done; '
                                        'echo finished')
             for i in range(4)}
    wf = write_workflow(tmp_path, "sshkill", nodes, [])
    services.start("scheduler")
    services.start("monitor")
    services.start("executor:ssh", "--kind", "ssh")
    bus.submit(wf)
    bus.wait("sshkill", lambda s: all(j.state.value == "RUNNING" for j in s.jobs.values()),
             60, "all remote jobs to run")
    services.kill("executor:ssh", signal.SIGKILL)
    gate.touch()
    services.start("executor:ssh", "--kind", "ssh")
    snap = bus.wait("sshkill", lambda s: s.state.terminal, 60, "the workflow to end")
    assert snap.state.value == "SUCCEEDED"
    for i in range(4):
        assert (tmp_path / f"count-r{i}").read_text() == "x\n", f"r{i} ran more than once"
        assert snap.jobs[f"r{i}"].attempt == 1


def test_link_down_for_five_seconds_then_job_completes(lab: sshhosts.Lab, tmp_path: Path,
                                                       home: Path, bus, services) -> None:
    h1 = lab.hosts["host1"]
    gate = tmp_path / "go"
    wf = write_workflow(tmp_path, "flap", {"net": lab.node(
        h1, exec=f"echo before; while [ ! -e {gate} ]; do sleep 0.05; done; echo after")}, [])
    services.start("scheduler")
    services.start("monitor")
    services.start("executor:ssh", "--kind", "ssh")
    bus.submit(wf)
    bus.wait("flap", lambda s: s.jobs["net"].state.value == "RUNNING", 60, "the job to run")
    lab.link(h1, up=False)
    try:
        gate.touch()  # the job ends while its host is cut off
        time.sleep(5)  # the outage itself: five seconds with the link down
    finally:
        lab.link(h1, up=True)
    snap = bus.wait("flap", lambda s: s.state.terminal, 90, "the job to be seen finished")
    assert snap.state.value == "SUCCEEDED", snap.jobs["net"].reason
    log = Path(snap.jobs["net"].run_dir, "job.log").read_text()
    assert log == "before\nafter\n"


@pytest.mark.timeout(400)  # an unreachable host costs three connect timeouts per try
def test_bad_host_key_and_unreachable_host_fail_only_their_job(lab: sshhosts.Lab,
                                                               tmp_path: Path,
                                                               home: Path) -> None:
    h1 = lab.hosts["host1"]
    wf = write_workflow(tmp_path, "badhosts", {
        "wrongkey": lab.node(h1, exec="echo never", known_hosts=str(lab.wrong_known_hosts)),
        "nobody": lab.node(h1, exec="echo never", host=f"198.18.{lab.subnet}.99"),
        "fine": lab.node(h1, exec="echo fine"),
        "local": {"exec": "true"},
    }, [])
    res = cli(home, "run", str(wf), timeout=240)
    assert res.returncode == 1
    jobs = status(home, "badhosts")["jobs"]
    assert jobs["fine"]["state"] == "SUCCEEDED" and jobs["local"]["state"] == "SUCCEEDED"
    assert jobs["wrongkey"]["state"] == "FAILED"
    assert "host key" in jobs["wrongkey"]["reason"]
    assert jobs["nobody"]["state"] == "FAILED"
    assert "cannot reach" in jobs["nobody"]["reason"] and "198.18." in jobs["nobody"]["reason"]


def test_missing_remote_python_is_a_clear_failure(lab: sshhosts.Lab, tmp_path: Path,
                                                  home: Path) -> None:
    wf = write_workflow(tmp_path, "nopython", {
        "job.py": lab.node(lab.hosts["loop"], python="/nonexistent/python3")},
        [], files={"job.py": "print('hi')\n"})
    res = cli(home, "run", str(wf), timeout=120)
    assert res.returncode == 1
    reason = status(home, "nopython")["jobs"]["job.py"]["reason"]
    assert "/nonexistent/python3 is not installed on" in reason


def test_max_sessions_four_runs_twenty_jobs_on_one_connection(lab: sshhosts.Lab,
                                                              tmp_path: Path,
                                                              home: Path) -> None:
    host = lab.hosts["small"]
    before = host.logins()
    nodes = {f"j{i:02d}": lab.node(host, exec=f"sleep 0.5; echo job {i}", max_sessions=4)
             for i in range(20)}
    wf = write_workflow(tmp_path, "sessions", nodes, [])
    res = cli(home, "run", str(wf), "--parallel", "20", timeout=240)
    assert res.returncode == 0, res.stderr
    jobs = status(home, "sessions")["jobs"]
    assert all(j["state"] == "SUCCEEDED" for j in jobs.values())
    assert host.logins() - before == 1, "jobs on one host must share one SSH login"
    assert "refused" not in host.log.read_text().lower()


def test_ssh_config_alias_is_honoured(lab: sshhosts.Lab, tmp_path: Path, home: Path) -> None:
    host = lab.hosts["loop"]
    fake_home = tmp_path / "user"
    (fake_home / ".ssh").mkdir(parents=True)
    (fake_home / ".ssh" / "config").write_text(
        f"Host workstation\n  HostName {host.address}\n  Port {host.port}\n  User root\n"
        f"  IdentityFile {lab.client_key}\n  UserKnownHostsFile {lab.known_hosts}\n")
    wf = write_workflow(tmp_path, "alias", {"hello": {
        "kind": "ssh", "host": "workstation", "exec": "echo via alias",
        "workdir": str(lab.root / "remote" / "alias")}}, [])
    res = cli(home, "run", str(wf), timeout=120, env={**os.environ, "HOME": str(fake_home),
                                                     "JOBMESH_HOME": str(home)})
    assert res.returncode == 0, res.stderr
    job = status(home, "alias")["jobs"]["hello"]
    assert Path(job["run_dir"], "job.log").read_text() == "via alias\n"


def test_wsl_contract_with_a_stand_in_wsl_exe(tmp_path: Path, home: Path) -> None:
    """Contract test: no WSL can run here, so a stand-in wsl.exe runs sh as WSL would."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "wsl.exe"
    stub.write_text('#!/bin/sh\n# stand-in for wsl.exe: [-d DISTRO] -e sh -c CMD\n'
                    'echo "$@" >> "$(dirname "$0")/calls"\n'
                    'while [ $# -gt 0 ]; do case "$1" in -d) shift 2;; -e) shift; break;; '
                    '*) shift;; esac; done\nexec "$@"\n')
    stub.chmod(0o755)
    wf = write_workflow(tmp_path, "wsl", {
        "inwsl": {"kind": "wsl", "distribution": "Ubuntu", "exec": "echo hello from wsl; "
                  "jobmesh progress 100", "workdir": str(tmp_path / "wslruns")},
        "slow": {"kind": "wsl", "exec": "sleep 30", "timeout": "1s",
                 "workdir": str(tmp_path / "wslruns")},
    }, [])
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "JOBMESH_HOME": str(home)}
    res = cli(home, "run", str(wf), timeout=120, env=env)
    jobs = status(home, "wsl")["jobs"]
    assert jobs["inwsl"]["state"] == "SUCCEEDED" and jobs["inwsl"]["progress"] == 100
    assert Path(jobs["inwsl"]["run_dir"], "job.log").read_text().startswith("hello from wsl")
    assert jobs["slow"]["state"] == "FAILED" and jobs["slow"]["reason"] == "timeout"
    assert "-d Ubuntu -e sh -c" in (bindir / "calls").read_text()
    assert res.returncode == 1
