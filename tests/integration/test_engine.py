"""The core engine against a real nats-server: parallel branches, failure, cancel,
progress, and crash recovery of the executor and the monitor."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import termios
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import (
    JOBMESH,
    cli,
    pid_alive,
    run_async,
    status,
    wait_until,
    write_workflow,
)

pytestmark = pytest.mark.integration



def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_diamond_middle_jobs_overlap(tmp_path: Path, home: Path) -> None:
    wf = write_workflow(tmp_path, "diamond", {
        "a": {"exec": "true"},
        "b": {"exec": "sleep 1"},
        "c": {"exec": "sleep 1"},
        "d": {"exec": "true"},
    }, ["a,b,d", "a,c,d"])
    res = cli(home, "run", str(wf), "--parallel", "4")
    assert res.returncode == 0, res.stderr
    jobs = status(home, "diamond")["jobs"]
    assert {j["state"] for j in jobs.values()} == {"SUCCEEDED"}
    b0, b1 = ts(jobs["b"]["started"]), ts(jobs["b"]["ended"])
    c0, c1 = ts(jobs["c"]["started"]), ts(jobs["c"]["ended"])
    assert max(b0, c0) < min(b1, c1), "b and c did not run at the same time"
    assert ts(jobs["d"]["started"]) >= max(b1, c1) - 0.05
    assert ts(jobs["a"]["ended"]) <= min(b0, c0) + 0.05


def test_failure_skips_descendants_and_unrelated_branch_finishes(tmp_path: Path,
                                                                 home: Path) -> None:
    wf = write_workflow(tmp_path, "failing", {
        "bad": {"exec": "echo about to fail; exit 3"},
        "after-bad": {"exec": "touch should-not-exist"},
        "last": {"exec": "true"},
        "other": {"exec": "sleep 0.5"},
        "other2": {"exec": "true"},
    }, ["bad,after-bad,last", "other,other2"])
    res = cli(home, "run", str(wf))
    assert res.returncode == 1, res.stderr
    doc = status(home, "failing")
    jobs = doc["jobs"]
    assert doc["state"] == "FAILED"
    assert jobs["bad"]["state"] == "FAILED" and jobs["bad"]["exit_code"] == 3
    assert "exit code 3" in jobs["bad"]["reason"]
    assert jobs["after-bad"]["state"] == "SKIPPED" and jobs["last"]["state"] == "SKIPPED"
    assert jobs["other"]["state"] == "SUCCEEDED" and jobs["other2"]["state"] == "SUCCEEDED"
    assert "FAILED" in res.stdout and "SKIPPED" in res.stdout
    log = Path(jobs["bad"]["log"]).read_text()
    assert "about to fail" in log


def test_progress_values_arrive_in_order_and_status_shows_them(tmp_path: Path, home: Path,
                                                               nats, bus, services) -> None:
    script = "for p in 10 20 30 40 50 60 70 80 90 100; do jobmesh progress $p -m step$p; " \
             "sleep 0.05; done\n"
    wf = write_workflow(tmp_path, "prog", {"count.sh": {}}, [], files={"count.sh": script})
    services.start("scheduler")
    services.start("monitor")
    services.start("executor")
    bus.submit(wf)
    bus.wait("prog", lambda s: s.state.terminal, 30, "the workflow to end")
    values = [e.progress for e in bus.events("prog", "count.sh") if e.type == "progress"]
    assert values == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    snap = bus.snapshot("prog")
    job = snap.jobs["count.sh"]
    assert job.state.value == "SUCCEEDED" and job.progress == 100 and job.msg == "step100"


def test_cancel_leaves_no_process_behind(tmp_path: Path, home: Path, bus, services) -> None:
    script = ("sleep 300 &\necho $! > $JOBMESH_WORKFLOW_DIR/child.pid\n"
              "echo $$ > $JOBMESH_WORKFLOW_DIR/job.pid\nwait\n")
    wf = write_workflow(tmp_path, "cancelme", {"long.sh": {}, "next": {"exec": "true"},
                                               "quick": {"exec": "true"}},
                        ["long.sh,next"], files={"long.sh": script})
    services.start("scheduler")
    services.start("monitor")
    services.start("executor")
    run, _ = bus.submit(wf)
    wait_until(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "job.pid").exists(),
               30, "the job to start its child")
    child = int((tmp_path / "child.pid").read_text())
    job_pid = int((tmp_path / "job.pid").read_text())
    # 'quick' must have ended before the cancel, or the cancel rightly catches it too
    snap = bus.wait("cancelme", lambda s: s.jobs["long.sh"].state.value == "RUNNING"
                    and s.jobs["quick"].state.value == "SUCCEEDED", 30,
                    "the job to show RUNNING and 'quick' to succeed")
    wrapper = int(snap.jobs["long.sh"].native_id)
    assert pid_alive(child) and pid_alive(wrapper)
    from jobmesh.common import ops

    bus.call(lambda js: ops.cancel(js, "cancelme", run))
    snap = bus.wait("cancelme", lambda s: s.state.terminal, 30, "the workflow to end")
    assert snap.state.value == "CANCELED"
    assert snap.jobs["long.sh"].state.value == "CANCELED"
    assert snap.jobs["next"].state.value in ("CANCELED", "SKIPPED")
    assert snap.jobs["quick"].state.value == "SUCCEEDED"
    wait_until(lambda: not any(pid_alive(p) for p in (child, job_pid, wrapper)), 10,
               "every process of the job to be gone")


def test_executor_sigkill_reattaches_and_job_runs_once(tmp_path: Path, home: Path, bus,
                                                       services) -> None:
    script = ('echo x >> "$JOBMESH_WORKFLOW_DIR/counter"\n'
              'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done\n'
              'jobmesh progress 100\n')
    wf = write_workflow(tmp_path, "survive", {"work.sh": {}, "after": {"exec": "true"}},
                        ["work.sh,after"], files={"work.sh": script})
    services.start("scheduler")
    services.start("monitor")
    services.start("executor")
    bus.submit(wf)
    bus.wait("survive", lambda s: s.jobs["work.sh"].state.value == "RUNNING", 30,
             "the job to run")
    services.kill("executor", signal.SIGKILL)
    (tmp_path / "go").touch()  # the job finishes while no executor watches it
    wait_until(lambda: list(home.glob("runs/survive/*/work.sh/1/exit")), 10,
               "the orphaned job to write its exit file")
    services.start("executor")
    snap = bus.wait("survive", lambda s: s.state.terminal, 30, "the workflow to end")
    assert snap.state.value == "SUCCEEDED"
    assert (tmp_path / "counter").read_text() == "x\n", "the job ran more than once"
    assert snap.jobs["work.sh"].attempt == 1


def test_monitor_restart_rebuilds_the_snapshot(tmp_path: Path, home: Path, bus,
                                               services) -> None:
    wf = write_workflow(tmp_path, "rebuild", {
        "a": {"exec": "echo '# jobmesh output n=7'"},
        "b": {"exec": 'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done'},
        "c": {"exec": "exit 4"},
    }, ["a,b", "c"])
    services.start("scheduler")
    services.start("monitor")
    services.start("executor")
    bus.submit(wf)
    bus.wait("rebuild", lambda s: s.jobs["b"].state.value == "RUNNING", 30, "b to run")
    services.kill("monitor", signal.SIGKILL)
    (tmp_path / "go").touch()
    # Without a monitor the stored snapshot stays behind ...
    time_limit = time.monotonic() + 20
    while time.monotonic() < time_limit:
        events = [e for e in bus.events("rebuild", "b") if e.type == "succeeded"]
        if events:
            break
        time.sleep(0.1)
    assert bus.snapshot("rebuild").jobs["b"].state.value == "RUNNING"
    # ... and a new monitor rebuilds it from the log, with nothing missing.
    services.start("monitor")
    snap = bus.wait("rebuild", lambda s: s.state.terminal, 30, "the rebuilt final state")
    assert snap.state.value == "FAILED"
    assert snap.jobs["a"].state.value == "SUCCEEDED" and snap.jobs["a"].outputs == {"n": 7}
    assert snap.jobs["b"].state.value == "SUCCEEDED" and snap.jobs["b"].progress == 100
    assert snap.jobs["c"].state.value == "FAILED" and snap.jobs["c"].exit_code == 4


def test_ctrl_c_leaves_jobs_running_and_rerun_reattaches(tmp_path: Path, home: Path) -> None:
    script = ('echo x >> "$JOBMESH_WORKFLOW_DIR/counter"\n'
              'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done\n')
    wf = write_workflow(tmp_path, "laptop", {"slow.sh": {}, "done": {"exec": "true"}},
                        ["slow.sh,done"], files={"slow.sh": script})
    env = {**os.environ, "JOBMESH_HOME": str(home)}
    proc = subprocess.Popen([JOBMESH, "run", str(wf)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_until(lambda: (tmp_path / "counter").exists(), 30, "the job to start")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "jobs keep running" in stderr
    pid = int(next(home.glob("runs/laptop/*/slow.sh/1/pid")).read_text())
    assert pid_alive(pid), "Ctrl-C killed the job"
    (tmp_path / "go").touch()
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    assert "re-attaching" in res.stderr or "rerunning" in res.stderr
    assert (tmp_path / "counter").read_text() == "x\n"
    assert status(home, "laptop")["state"] == "SUCCEEDED"


def _controlling_terminal() -> None:
    """(In the child, after setsid) make stdin's pty the session's controlling terminal:
    closing its other end then hangs the session up, as a closed terminal window does.
    SIGHUP as a terminal's shell leaves it, even if these tests run under nohup."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def test_a_lost_terminal_stops_the_run_cleanly_and_rerun_reattaches(tmp_path: Path,
                                                                     home: Path) -> None:
    script = ('echo x >> "$JOBMESH_WORKFLOW_DIR/counter"\n'
              'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done\n')
    wf = write_workflow(tmp_path, "hangup", {"slow.sh": {}, "done": {"exec": "true"}},
                        ["slow.sh,done"], files={"slow.sh": script})
    env = {**os.environ, "JOBMESH_HOME": str(home), "TERM": "xterm"}
    master, slave = pty.openpty()
    proc = subprocess.Popen([JOBMESH, "run", str(wf)], env=env, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True,
                            preexec_fn=_controlling_terminal)  # noqa: PLW1509 - test only
    os.close(slave)
    shown, reading = bytearray(), threading.Event()
    reading.set()

    def read() -> None:  # the terminal: what the live view draws (a full pty would block)
        while reading.is_set():
            if select.select([master], [], [], 0.05)[0]:
                try:
                    shown.extend(os.read(master, 65536))
                except OSError:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: (tmp_path / "counter").exists(), 30, "the job to start")
        ports = wait_until(lambda: list((home / "nats").glob("nats-server_*.ports")), 10,
                           "the private nats-server's ports file")
        server = int(ports[0].stem.rsplit("_", 1)[1])
        wait_until(lambda: b"slow.sh" in shown, 10, "the live view to show the job")
    finally:
        reading.clear()
        reader.join(5)
        os.close(master)  # the window closes: the kernel hangs the session up (SIGHUP)
    try:
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 129, f"jobmesh run ended with {code} after its terminal went away"
    wait_until(lambda: not pid_alive(server), 15, "the command's nats-server to stop")
    pid = int(next(home.glob("runs/hangup/*/slow.sh/1/pid")).read_text())
    assert pid_alive(pid), "losing the terminal killed the job"
    (tmp_path / "go").touch()
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    assert "re-attaching" in res.stderr
    assert (tmp_path / "counter").read_text() == "x\n"
    assert status(home, "hangup")["state"] == "SUCCEEDED"


async def _registered(url: str, home: Path) -> int:
    """How many jobs the executions registry of the home's private server holds."""
    import nats

    from jobmesh.common import credentials, subjects

    nc = await nats.connect(url, token=credentials.read_token(home))
    try:
        kv = await nc.jetstream().key_value(subjects.KV_EXECUTIONS)
        try:
            return len(await kv.keys())
        except nats.js.errors.NoKeysError:
            return 0
    finally:
        await nc.close()


def test_a_killed_command_leaves_no_nats_server_and_rerun_reattaches(tmp_path: Path,
                                                                    home: Path) -> None:
    script = ('echo x >> "$JOBMESH_WORKFLOW_DIR/counter"\n'
              'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done\n')
    wf = write_workflow(tmp_path, "killed", {"slow.sh": {}, "done": {"exec": "true"}},
                        ["slow.sh,done"], files={"slow.sh": script})
    env = {**os.environ, "JOBMESH_HOME": str(home)}
    proc = subprocess.Popen([JOBMESH, "run", str(wf)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (tmp_path / "counter").exists(), 30, "the job to start")
        ports = wait_until(lambda: list((home / "nats").glob("nats-server_*.ports")), 10,
                           "the private nats-server's ports file")
        server = int(ports[0].stem.rsplit("_", 1)[1])
        url = json.loads(ports[0].read_text())["nats"][0]
        # a job that outlives its launch's first 0.2 s is registered: a new command finds
        # it there at once (killed before that, its JobReady comes back after ack_wait)
        wait_until(lambda: run_async(_registered(url, home)), 15,
                   "the job's executions registry entry")
        proc.kill()  # SIGKILL: no handler, no clean-up of its own
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_until(lambda: not pid_alive(server), 15, "the killed command's nats-server to stop")
    pid = int(next(home.glob("runs/killed/*/slow.sh/1/pid")).read_text())
    assert pid_alive(pid), "killing the command killed the job"
    (tmp_path / "go").touch()
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    assert "re-attaching" in res.stderr
    assert (tmp_path / "counter").read_text() == "x\n"
    assert status(home, "killed")["state"] == "SUCCEEDED"


def test_rerun_of_succeeded_workflow_runs_nothing_and_restart_runs_again(tmp_path: Path,
                                                                         home: Path) -> None:
    wf = write_workflow(tmp_path, "again", {"count": {
        "exec": 'echo x >> "$JOBMESH_WORKFLOW_DIR/counter"'}}, [])
    assert cli(home, "run", str(wf)).returncode == 0
    second = cli(home, "run", str(wf))
    assert second.returncode == 0 and "already succeeded" in second.stderr
    assert (tmp_path / "counter").read_text() == "x\n"
    assert cli(home, "run", str(wf), "--restart").returncode == 0
    assert (tmp_path / "counter").read_text() == "x\nx\n"


def test_failed_workflow_rerun_keeps_succeeded_jobs(tmp_path: Path, home: Path) -> None:
    wf = write_workflow(tmp_path, "fixme", {
        "ok": {"exec": 'echo x >> "$JOBMESH_WORKFLOW_DIR/ok-count"'},
        "flaky": {"exec": 'test -e "$JOBMESH_WORKFLOW_DIR/fixed"'},
        "end": {"exec": "true"},
    }, ["ok,flaky,end"])
    assert cli(home, "run", str(wf)).returncode == 1
    (tmp_path / "fixed").touch()
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    doc = status(home, "fixme")
    # a new run: 'ok' is reused from the failed one (test_resume.py), 'flaky' runs again
    assert doc["jobs"]["ok"]["reason"] == "cached"
    assert doc["jobs"]["flaky"]["state"] == "SUCCEEDED" and doc["jobs"]["flaky"]["reason"] is None
    assert doc["jobs"]["end"]["state"] == "SUCCEEDED"
    assert (tmp_path / "ok-count").read_text() == "x\n"


def test_paper_example_succeeds_with_done_colours(home: Path) -> None:
    from tests.conftest import ROOT

    res = cli(home, "run", str(ROOT / "examples" / "paper" / "workflow.yaml"))
    assert res.returncode == 0, res.stderr
    svg_path = next(home.glob("runs/paper/*/paper.svg"))
    svg = svg_path.read_text()
    for job in ("start", "fetch-data", "compute", "analyze", "end"):
        assert f'data-job="{job}"' in svg
    assert svg.count('fill="#CCFFCC"') >= 5 and "#CCE5FF" not in svg
    assert "progress=100" in svg and "total=" in svg
    graph = cli(home, "graph", "paper", "-o", str(home / "out.svg"))
    assert graph.returncode == 0 and (home / "out.svg").read_text().count("#CCFFCC") >= 5


def test_run_directory_files_small_and_large_jobs(tmp_path: Path, home: Path) -> None:
    """The wrapper's shell writes job.json and wrapper.sh for ordinary jobs; a job too
    big for the environment gets them from the executor. Either way the run directory
    holds them, the wrapper's pid, and the job sees none of the staging variables."""
    check = 'env | grep -c JOBMESH_STAGE || true; printf "%s" "${#B1}"'
    big = {f"B{i}": "x" * 40_000 for i in range(1, 4)}  # wrapper.sh > 100 kB
    wf = write_workflow(tmp_path, "rundirs", {
        "small": {"exec": check},
        "large": {"exec": check, "env": big},
    }, ["small,large"])
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    jobs = status(home, "rundirs")["jobs"]
    for name, size in (("small", "0"), ("large", "40000")):
        rdir = Path(jobs[name]["run_dir"])
        assert (rdir / "job.log").read_text() == f"0\n{size}"
        assert json.loads((rdir / "job.json").read_text())["job"] == name
        assert (rdir / "wrapper.sh").read_text().startswith("#!/bin/sh")
        assert (rdir / "pid").read_text().strip() == jobs[name]["native_id"]
