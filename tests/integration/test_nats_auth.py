"""The embedded NATS requires the home's token (issue 14 D2), a refused token is one line
(issue 23), and a service task that dies inside `jobmesh up` shows in /healthz and
`jobmesh info` (issue 14 D4).

The attacks are real: another client on the machine connects to the embedded server's
port with nats-py, or with a raw socket that sends a JobReady straight after CONNECT."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    JOBMESH,
    Bus,
    anonymous_connect,
    cli,
    home_token,
    run_async,
    wait_until,
    write_workflow,
)

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw_publish_job(url: str, token: str | None = None) -> bytes:
    """A client that ignores the protocol's answers: CONNECT, then at once PUB a JobReady
    that would create a file, then PING. Returns everything the server sent."""
    from jobmesh.common import bus, subjects
    from jobmesh.common.messages import JobReady
    from jobmesh.common.spec import JobSpec

    job = JobReady(workflow="evil", run="r1", job="j", attempt=1, pool="local",
                   spec=JobSpec(name="j", exec="touch PWN"), base_dir="/tmp", time=0.0)
    payload = bus.encode(job)
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    connect = {"verbose": False, "pedantic": False, "lang": "raw", "version": "0",
               "protocol": 1, **({"auth_token": token} if token else {})}
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.recv(4096)  # INFO
        s.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\n"
                  + f"PUB {subjects.jobs('local')} {len(payload)}\r\n".encode() + payload
                  + b"\r\nPING\r\n")
        got = b""
        while b"PONG" not in got:
            try:
                chunk = s.recv(4096)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break  # the server hung up
            got += chunk
        return got


def jobs_stream_seq(url: str, token: str) -> int:
    """The JOBS stream's last sequence: a stored JobReady, run or not, raises it."""
    from jobmesh.common import subjects

    return int(Bus(url, token).call(
        lambda js: js.stream_info(subjects.STREAM_JOBS)).state.last_seq)


@pytest.fixture
def up(home: Path) -> Iterator[dict[str, Any]]:
    res = cli(home, "up", "--port", "0", timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    yield json.loads((home / "service.json").read_text())
    res = cli(home, "down", timeout=90)
    assert res.returncode == 0, res.stderr


def test_up_stack_refuses_anonymous_nats_clients(home: Path, up: dict[str, Any],
                                                 tmp_path: Path) -> None:
    url = up["nats_url"]
    token_file = home / "nats.token"
    assert mode(token_file) == 0o600 and mode(home / "nats" / "nats.conf") == 0o600
    assert mode(home / "nats") == 0o700
    token = home_token(home)
    assert len(token) >= 32 and token not in (home / "service.json").read_text()

    assert "Authorization Violation" in anonymous_connect(url)
    before = jobs_stream_seq(url, token)
    answer = raw_publish_job(url)
    assert b"-ERR 'Authorization Violation'" in answer and b"PONG" not in answer, answer
    assert b"-ERR 'Authorization Violation'" in raw_publish_job(url, "a-guess")
    # Nothing reached the work queue, so nothing ran (it would have run in its run
    # directory under the home).
    assert jobs_stream_seq(url, token) == before
    assert not list(home.glob("runs/evil/**/PWN"))

    # The server opens no other port: no monitoring (-m) endpoint, nothing beyond loopback.
    ports = json.loads(next((home / "nats").glob("nats-server_*.ports")).read_text())
    assert set(ports) == {"nats"} and ports["nats"] == [url], ports
    pid = int(next((home / "nats").glob("nats-server_*.ports")).stem.rsplit("_", 1)[1])
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert token.encode() not in b" ".join(argv)
    assert not {b"-m", b"--http_port", b"-ms", b"--https_port"} & set(argv), argv

    # Every command of the home uses the token without being told.
    assert cli(home, "list").returncode == 0
    info = cli(home, "info")
    assert info.returncode == 0 and url in info.stdout, info.stderr


def test_run_stack_refuses_anonymous_clients(home: Path, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    path = write_workflow(tmp_path / "wf", "gated", {
        "wait": {"exec": f"while [ ! -e {gate} ]; do sleep 0.05; done; echo done"}}, [])
    env = {**os.environ, "JOBMESH_HOME": str(home)}
    proc = subprocess.Popen([JOBMESH, "run", str(path), "-q"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ports = wait_until(lambda: [p for p in (home / "nats").glob("nats-server_*.ports")
                                    if p.stat().st_size], 60, "the embedded server's port")
        url = json.loads(ports[0].read_text())["nats"][0]
        assert "Authorization Violation" in anonymous_connect(url)
        assert b"Authorization Violation" in raw_publish_job(url)
        # The home's token is the key: with it, the same server answers.
        wait_until(lambda: Bus(url, home_token(home)).snapshot("gated"), 60,
                   "the workflow to be submitted")
        gate.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert not list(home.glob("runs/evil/**"))


def test_token_file_readable_by_others_is_replaced_or_refused(home: Path) -> None:
    res = cli(home, "list")
    assert res.returncode == 0, res.stderr
    token_file = home / "nats.token"
    first = home_token(home)

    # Starting a server from a token others could read: a new token, with a warning.
    token_file.chmod(0o644)
    res = cli(home, "list")
    assert res.returncode == 0, res.stderr
    assert f"warning: {token_file} can be read by other accounts (mode 0644)" in res.stderr
    assert mode(token_file) == 0o600 and home_token(home) != first

    # A client of a running stack refuses one, and says how to fix it.
    assert cli(home, "up", "--port", "0", timeout=90).returncode == 0
    try:
        token_file.chmod(0o640)
        res = cli(home, "list")
        assert res.returncode == 1, res.stdout
        assert res.stderr.strip() == (
            f"error: the NATS token {token_file} can be read by other accounts (mode 0640); "
            "'jobmesh down' and 'jobmesh up' make a new one")
        token_file.chmod(0o600)

        # A token that changed under a running stack: refused, one line, what to do.
        token_file.write_text("not-the-token\n")
        res = cli(home, "list")
        assert res.returncode == 1 and "Traceback" not in res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused the NATS token in" in lines[0] \
            and str(token_file) in lines[0] and "'jobmesh down' and 'jobmesh up'" in lines[0]
    finally:
        assert cli(home, "down", timeout=90).returncode == 0
    res = cli(home, "list")  # a new server, a new token: works again
    assert res.returncode == 0, res.stderr


def test_a_service_joining_the_embedded_server_uses_the_home_token(
        home: Path, up: dict[str, Any], tmp_path: Path) -> None:
    """`jobmesh executor --nats <the URL jobmesh info shows>` needs no token flag."""
    from jobmesh.common import bus, subjects
    from jobmesh.common.settings import Settings

    async def first_beat() -> dict[str, Any]:
        nc = await bus.connect(Settings(nats_url=up["nats_url"],
                                        nats_token=home_token(home)), "jobmesh-test")
        try:
            sub = await nc.subscribe(subjects.HEARTBEATS)
            proc = subprocess.Popen([JOBMESH, "executor", "--nats", up["nats_url"], "--pool",
                                     "extra", "--kind", "local"],
                                    env={**os.environ, "JOBMESH_HOME": str(home)},
                                    stderr=subprocess.PIPE, text=True)
            try:
                deadline = asyncio.get_running_loop().time() + 60
                while True:
                    assert proc.poll() is None, proc.communicate()[1]
                    try:
                        msg = await sub.next_msg(timeout=0.5)
                    except asyncio.TimeoutError:
                        assert asyncio.get_running_loop().time() < deadline, "no heartbeat"
                        continue
                    beat: dict[str, Any] = json.loads(msg.data)
                    if beat["pool"] == "extra":
                        return beat
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        finally:
            await nc.close()

    assert run_async(first_beat())["pool"] == "extra"


def test_gateway_refused_credentials_is_one_line_and_exit_1(nats: Any, home: Path) -> None:
    for extra in (["--token", "wrong"], []):
        res = subprocess.run([sys.executable, "-m", "jobmesh.gateway", "--nats", nats.url,
                              "--port", "0", *extra], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "JOBMESH_HOME": str(home)})
        assert res.returncode == 1, res.stderr
        assert res.stderr.splitlines() == [
            f"error: NATS at {nats.url} refused the credentials (nats: 'Authorization "
            "Violation'); check the token, user and password, nkey or creds file"], res.stderr


def test_gateway_against_nats_without_jetstream_is_one_line_and_exit_1(
        tmp_path: Path, home: Path) -> None:
    from jobmesh.cli.natsserver import find_binary

    proc = subprocess.Popen([find_binary(), "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir",
                             str(tmp_path), "-l", str(tmp_path / "nats.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ports = wait_until(lambda: [p for p in tmp_path.glob("*.ports") if p.stat().st_size],
                           30, "nats-server to start")
        url = json.loads(ports[0].read_text())["nats"][0]
        res = subprocess.run([sys.executable, "-m", "jobmesh.gateway", "--nats", url,
                              "--port", "0"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "JOBMESH_HOME": str(home)})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: JetStream is not enabled"), lines


FAULT = """
import asyncio, os
from pathlib import Path

if os.environ.get("FAULT_TRIGGER"):
    try:
        from jobmesh.scheduler.app import SchedulerService
    except ImportError:  # a job's own python
        SchedulerService = None
    if SchedulerService is not None:
        real = SchedulerService.run

        async def run(self, stop):  # the scheduler's loop breaks once the trigger exists
            task = asyncio.create_task(real(self, stop))
            trigger = Path(os.environ["FAULT_TRIGGER"])
            while not trigger.exists() and not task.done():
                await asyncio.sleep(0.05)
            if task.done():
                return await task
            task.cancel()
            raise RuntimeError("injected fault in the scheduler loop")

        SchedulerService.run = run
"""


def health(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def faulty(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Fault injection at a function boundary (nothing real makes the scheduler's loop
    raise once poison events are skipped): with this environment, the scheduler task of
    `jobmesh serve` raises once the trigger file exists."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAULT)
    trigger = tmp_path / "trigger"
    env = {**os.environ, "PYTHONPATH": str(site), "FAULT_TRIGGER": str(trigger)}
    return env, trigger


def test_healthz_and_info_report_a_dead_service_task(
        home: Path, faulty: tuple[dict[str, str], Path]) -> None:
    env, trigger = faulty
    res = cli(home, "up", "--port", "0", env=env, timeout=90)
    assert res.returncode == 0, res.stderr
    try:
        info = json.loads((home / "service.json").read_text())
        code, body = health(info["url"])
        assert code == 200 and body["status"] == "ok" and "dead" not in body, body
        assert cli(home, "info").returncode == 0

        trigger.touch()
        code, body = wait_until(lambda: (lambda h: h if h[0] != 200 else None)(
            health(info["url"])), 30, "/healthz to report the dead scheduler")
        assert code == 503 and body["status"] == "failed", body
        # Which service, and the error's type: its text (paths, data) stays in the log.
        assert body["dead"] == {"scheduler": "RuntimeError"}, body
        assert body["detail"] == "the scheduler stopped: RuntimeError"

        res = cli(home, "info")
        assert res.returncode == 1
        assert "error: the scheduler stopped: RuntimeError; its traceback is in " \
            f"{home / 'service.log'}" in res.stderr, res.stderr
        text = (home / "service.log").read_text()
        assert "the scheduler stopped: RuntimeError('injected fault in the scheduler loop')" \
            in text and "Traceback" in text, text
    finally:
        assert cli(home, "down", timeout=90).returncode == 0


def test_up_fails_when_a_service_dies_at_start(
        home: Path, faulty: tuple[dict[str, str], Path]) -> None:
    env, trigger = faulty
    trigger.touch()
    try:
        res = cli(home, "up", "--port", "0", env=env, timeout=90)
        assert res.returncode == 1, res.stdout
        info = json.loads((home / "service.json").read_text())
        assert res.stderr.strip() == (
            f"error: jobmesh is up at {info['url']}, but the scheduler stopped: RuntimeError; "
            "'jobmesh down' stops it")
    finally:
        assert cli(home, "down", timeout=90).returncode == 0


def test_the_test_fixtures_nats_requires_the_token(nats: Any, bus: Bus) -> None:
    """The suite runs against authenticated NATS, as deployments and the embedded one."""
    assert "Authorization Violation" in anonymous_connect(nats.url)
    assert bus.snapshot("nothing") is None  # the fixtures' clients hold the token
