"""Helpers shared by the tests (no fixtures: those are in conftest.py). Import from here:
``from tests.helpers import cli, status, wait_until``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def cli(home: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
        **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**(env or os.environ), "JOBMESH_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([JOBMESH, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)


def status(home: Path, name: str, *extra: str, env: dict[str, str] | None = None
           ) -> dict[str, Any]:
    """``jobmesh status NAME -o json``: the document a user's script reads."""
    res = cli(home, "status", name, "--output", "json", *extra, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def free_ports(n: int = 1) -> list[int]:
    """``n`` distinct TCP ports free on loopback now (held together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


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

    sub = await js.subscribe(subjects.workflow_events(wf), stream=subjects.STREAM_EVENTS,
                             ordered_consumer=True)
    out = []
    while True:
        try:
            msg = await sub.next_msg(timeout=timeout)
        except asyncio.TimeoutError:
            break
        event = bus.decode_log(msg.data)
        if job is None or getattr(event, "job", None) == job:
            out.append((msg.metadata.sequence.stream, event))
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


def pid_alive(pid: int) -> bool:
    """Is ``pid`` a live process (not a zombie)? Through psutil, as the executor asks."""
    from jobmesh.common import procs

    return procs.alive(pid)
