"""The compose stack on a real Docker engine, driven as its users drive it.

The engine: ``scripts/start-docker.sh`` finds one that answers, or, on a root Debian
machine, installs and starts jobmesh's own (shared/recipes.md §8); elsewhere these tests
skip with the reason. The images: ``scripts/docker-images.sh`` (what ``make images`` runs;
cached, so a second build takes seconds), so the containers run the code under test.
Every stack is a compose project of its own, published on free ports of 127.0.0.1 and torn
down (containers, network, volumes) even when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "containers: needs a Docker engine (real containers)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.containers)
            # the first test's set-up may install the engine and build every image cold
            item.add_marker(pytest.mark.timeout(1800))


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """``wait_until`` polling every half second: containers change state slowly."""
    return wait_until(pred, timeout, what, every)


@pytest.fixture(scope="session")
def docker_host() -> str:
    """DOCKER_HOST of an engine that answers (started here on a root Linux machine)."""
    try:
        res = subprocess.run(["bash", str(ROOT / "scripts/start-docker.sh")], capture_output=True,
                             text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/start-docker.sh did not finish within 600 s")
    if res.returncode == 2:
        pytest.skip(f"no Docker engine: {res.stderr.strip()}")
    if res.returncode != 0:
        pytest.fail(f"scripts/start-docker.sh failed:\n{res.stderr[-3000:]}")
    host = res.stdout.strip().splitlines()[-1]
    sweep_projects(host)
    return host


PROJECT = re.compile(r"^jmtest(\d+)x[0-9a-f]+$")  # jmtest<session pid>x<random>


def sweep_projects(host: str) -> None:
    """Remove the compose projects (containers, networks, volumes) of test sessions that
    were killed before their fixtures took them down."""
    import psutil

    env = {**os.environ, "DOCKER_HOST": host}

    def docker(*args: str) -> list[str]:
        res = subprocess.run(["docker", *args], env=env, capture_output=True, text=True,
                             timeout=120)
        return res.stdout.split()

    label = "com.docker.compose.project"
    names = set(docker("ps", "-a", "--filter", f"label={label}",
                       "--format", f'{{{{.Label "{label}"}}}}'))
    names |= set(docker("volume", "ls", "--filter", f"label={label}",
                        "--format", f'{{{{.Label "{label}"}}}}'))
    for name in sorted(names):
        m = PROJECT.match(name)
        if not m or psutil.pid_exists(int(m.group(1))):
            continue
        flt = f"label={label}={name}"
        ids = docker("ps", "-aq", "--filter", flt)
        if ids:
            docker("rm", "-f", "-v", *ids)
        nets = docker("network", "ls", "-q", "--filter", flt)
        if nets:
            docker("network", "rm", *nets)
        vols = docker("volume", "ls", "-q", "--filter", flt)
        if vols:
            docker("volume", "rm", "-f", *vols)


@pytest.fixture(scope="session")
def images(docker_host: str) -> None:
    """Build (or bring up to date) every image, as `make images` does."""
    env = {**os.environ, "DOCKER_HOST": docker_host}
    try:
        res = subprocess.run(["bash", str(ROOT / "scripts/docker-images.sh")], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/docker-images.sh did not finish within 1200 s")
    if res.returncode != 0:
        pytest.fail(f"building the images failed:\n{res.stderr[-4000:]}")


class Stack:
    """One compose project of deploy/compose.yml (plus overrides), on free loopback ports."""

    def __init__(self, docker_host: str, files: tuple[str, ...] = ("compose.yml",),
                 env: dict[str, str] | None = None):
        self.project = f"jmtest{os.getpid()}x{secrets.token_hex(3)}"  # see sweep_projects
        self.files = [str(DEPLOY / f) for f in files]  # names in deploy/, or absolute paths
        self.port = free_port()
        self.token = secrets.token_urlsafe(18)
        self.env = {**os.environ, "DOCKER_HOST": docker_host, "COMPOSE_PROJECT_NAME": self.project,
                    "JOBMESH_PORT": f"127.0.0.1:{self.port}", "NATS_PORT": str(free_port()),
                    "NATS_BIND": "127.0.0.1", "JOBMESH_TOKEN": self.token,
                    # a token NATS would misread as a config value, were it not quoted
                    # (deploy/nats-entrypoint.sh); token_urlsafe gave such ones at times
                    "JOBMESH_NATS_TOKEN": f"-12k{secrets.token_urlsafe(18)}"}
        for var in ("JOBMESH_HOME", "JOBMESH_NATS_URL", "JOBMESH_REPLICAS"):
            self.env.pop(var, None)
        self.env.update(env or {})
        self.url = f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 180, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        cmd = ["docker-compose", *[a for f in self.files for a in ("-f", f)], *args]
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd[1:])} failed:\n{res.stderr[-3000:]}")
        return res

    def docker(self, *args: str, timeout: float = 60) -> str:
        res = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

    def up(self, *args: str) -> None:
        # --no-build: the images are built already; a missing one is an error, never a build
        res = self.compose("up", "-d", "--no-build", *args, timeout=300, check=False)
        if res.returncode != 0:  # say which container failed, and what it printed
            ps = self.compose("ps", check=False).stdout
            raise AssertionError(f"docker-compose up failed:\n{res.stderr[-3000:]}\n{ps}\n"
                                 f"{self.logs(tail=15)[-6000:]}")

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "5", timeout=180, check=False)

    def ids(self, service: str) -> list[str]:
        """Container ids of a service (running or not)."""
        out = self.compose("ps", "-q", service).stdout
        return [line for line in out.split() if line]

    def inspect(self, cid: str) -> dict[str, Any]:
        return json.loads(self.docker("inspect", cid))[0]  # type: ignore[no-any-return]

    def crash(self, cid: str) -> None:
        """SIGKILL the container's main process, as a crash would (no `docker kill`,
        which counts as a manual stop, so the restart policy would leave it down)."""
        pid = int(self.inspect(cid)["State"]["Pid"])
        assert pid > 0, f"container {cid} is not running"
        os.kill(pid, signal.SIGKILL)

    def restarted(self, cid: str, before: int) -> bool:
        state = self.inspect(cid)
        return bool(state["RestartCount"] > before and state["State"]["Running"])

    def hostname(self, cid: str) -> str:
        return str(self.inspect(cid)["Config"]["Hostname"])

    def read(self, path: str) -> str:
        """A file of the jobmesh-home volume, read in the gateway container."""
        res = self.compose("exec", "-T", "gateway", "cat", path, check=False)
        return res.stdout if res.returncode == 0 else ""

    def client(self) -> Any:
        from jobmesh.client import Client

        return Client(self.url, token=self.token, timeout=30)

    def healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self, *services: str, tail: int = 40) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), *services,
                            check=False).stdout

    def running(self, cid: str) -> bool:
        return bool(self.inspect(cid)["State"]["Running"])


@pytest.fixture(scope="module")
def stack_factory(docker_host: str, images: None) -> Iterator[Callable[..., Stack]]:
    """Start stacks with ``stack_factory(*up_args, files=...)``; all go down at the end."""
    made: list[Stack] = []

    def make(*up_args: str, files: tuple[str, ...] = ("compose.yml",),
             env: dict[str, str] | None = None) -> Stack:
        stack = Stack(docker_host, files, env)
        made.append(stack)
        stack.up(*up_args)
        try:
            wait_for(stack.healthy, 120, f"the gateway of {stack.project} to answer /healthz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stack.logs()}") from None
        return stack

    yield make
    for stack in made:
        stack.down()


# -- workflows that record where each job ran ------------------------------------------------

LEDGER = "/var/lib/jobmesh/ledger"  # on the jobmesh-home volume: every local job appends to it
RECORD = 'echo "$JOBMESH_WORKFLOW $JOBMESH_JOB $JOBMESH_ATTEMPT $(hostname)"'


def write_spec(folder: Path, name: str, nodes: dict[str, Any],
               dependencies: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "workflow": {
        "nodes": nodes, "dependencies": dependencies or []}}))
    return path


def workflow(folder: Path, name: str, jobs: int, seconds: float, retries: int = 0) -> Path:
    """``jobs`` independent jobs that each record themselves, then sleep ``seconds``."""
    nodes = {f"j{i:02d}": {"exec": f"{RECORD} >> {LEDGER}; echo ran on $(hostname); "
                                   f"sleep {seconds}",
                           **({"retries": retries, "retry_delay": "1s"} if retries else {})}
             for i in range(jobs)}
    return write_spec(folder, name, nodes)


def ledger(stack: Stack, name: str) -> list[tuple[str, int, str]]:
    """(job, attempt, host) of every start of a workflow's jobs, in order."""
    rows = []
    for line in stack.read(LEDGER).splitlines():
        wf, job, attempt, host = line.split()
        if wf == name:
            rows.append((job, int(attempt), host))
    return rows


def submit(stack: Stack, tmp_path: Path, name: str, jobs: int, seconds: float,
           retries: int = 0) -> Any:
    client = stack.client()
    client.add(workflow(tmp_path / name, name, jobs, seconds, retries))
    client.run(name, parallel=jobs)
    return client


def started(client: Any, name: str, count: int) -> bool:
    status = client.show(name)["status"] or {}
    running = [j for j, s in status.get("jobs", {}).items() if s["state"] == "RUNNING"]
    return len(running) >= count


def final(stack: Stack, name: str, timeout: float) -> dict[str, Any]:
    """The workflow's status once it ended, polled over REST; answers that fail while
    the stack heals (a 503 while NATS elects a leader) are asked again."""
    from jobmesh.client import ApiError

    def ended() -> dict[str, Any] | None:
        try:
            status = stack.client().show(name)["status"]
        except (ApiError, OSError, httpx.HTTPError):
            return None
        if status and status["state"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return status  # type: ignore[no-any-return]
        return None

    try:
        return wait_for(ended, timeout, f"workflow {name} to end", every=1)  # type: ignore[no-any-return]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from None
