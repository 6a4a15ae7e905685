"""Service mode: ``jobmesh up`` runs the stack and the gateway in the background;
``jobmesh down`` stops it (jobs keep running); ``jobmesh info`` says where it is."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from jobmesh import __version__
from jobmesh.common import procs, signals

from .stack import Stack, service_info


def _healthy(url: str) -> bool:
    """Does it answer ok? Raises RuntimeError when it answers that a service died."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except urllib.error.HTTPError as exc:
        problem = dead_services(exc)
        if problem:
            raise RuntimeError(f"jobmesh is up at {url}, but {problem}; 'jobmesh down' "
                               "stops it") from None
        return False
    except OSError:
        return False


def dead(url: str) -> str | None:
    """What the stack at ``url`` says has died (its /healthz), or None."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5):
            return None
    except urllib.error.HTTPError as exc:
        return dead_services(exc)
    except OSError:
        return None


def dead_services(answer: urllib.error.HTTPError) -> str | None:
    """What a 503 from /healthz says died, if it says so."""
    try:
        body = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    if answer.code != 503 or not isinstance(body, dict) or not body.get("dead"):
        return None
    return str(body.get("detail"))


def up(home: Path, host: str, port: int, token: str | None, timeout: float = 60) -> dict[str, Any]:
    """Start `jobmesh serve` detached and wait until it answers. Returns its info."""
    info = service_info(home)
    if info is not None:
        return info
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "service.log", "ab")
    start = log.tell()  # show only what this start wrote, should it fail
    env = {**os.environ, "JOBMESH_HOME": str(home)}
    if token:
        env["JOBMESH_TOKEN"] = token  # not on the command line, where ps would show it
    exe = Path(sys.executable).parent / "jobmesh"
    cmd = [str(exe) if exe.exists() else "jobmesh", "serve", "--host", host, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(home / "service.log", "rb") as f:
                f.seek(start)
                tail = f.read().decode(errors="replace").strip()[-1500:]
            raise RuntimeError(f"jobmesh serve exited ({proc.returncode}): {tail or '(no output)'}"
                               f"\n(its log: {home / 'service.log'})")
        info = service_info(home)
        if info is not None and _healthy(info["url"]):
            return info
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"jobmesh serve did not answer within {timeout:.0f}s; see "
                       f"{home / 'service.log'}")


def down(home: Path, timeout: float = 60) -> bool:
    """Stop the background stack. Returns False when none was running.

    A zombie (exited, waiting for init to reap it, which can take seconds in containers)
    counts as stopped (``procs.alive``). On Windows SIGTERM is TerminateProcess: the
    stack gets no chance to stop its nats-server, so that is ended here too; jobs, which
    it started detached, run on."""
    info = service_info(home)
    if info is None:
        return False
    pid = int(info["pid"])
    leftovers = procs.children_named(pid, "nats-server") if sys.platform == "win32" else []
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            break
        if hasattr(os, "WNOHANG"):  # reap it if it is our child (it is not, normally)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)
    else:
        raise RuntimeError(f"the stack (pid {pid}) did not stop within {timeout:.0f}s")
    for child in leftovers:
        procs.kill_tree(child)
    (home / "service.json").unlink(missing_ok=True)
    return True


async def serve(home: Path, host: str, port: int, token: str | None) -> None:
    """The background process itself: the embedded stack plus the gateway."""
    import uvicorn

    from jobmesh.gateway.app import close_streams, create_app
    from jobmesh.gateway.entry import CannotListen, listen

    try:  # a port in use: one line and exit 1, before anything starts
        sock = listen(host, port)
    except CannotListen as exc:
        raise SystemExit(f"jobmesh serve: {exc}; choose another with --port") from None

    stop = asyncio.Event()
    signals.on_stop(lambda _sig: stop.set())
    async with Stack(home, use_running=False) as stack:
        app = create_app(stack.settings, token, nc=stack.nc, bind=host)
        # /healthz answers 503 when one has died (naming the error's type; the log has more)
        app.state.dead_services = lambda: stack.dead(detail=False)
        # Open live streams (GUI tabs) must not hold 'jobmesh down' hostage.
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                               lifespan="on", timeout_graceful_shutdown=3))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                await task
                raise RuntimeError(f"the gateway could not listen on {host}:{port}")
            await asyncio.sleep(0.02)
        bound = sock.getsockname()[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        info = {"pid": os.getpid(), "url": f"http://{shown}:{bound}", "host": host,
                "port": bound, "nats_url": stack.settings.nats_url, "version": __version__,
                "token": bool(token), "started": time.time()}
        tmp = home / "service.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(home / "service.json")
        try:
            await stop.wait()
        finally:
            close_streams(app)  # open GUI tabs end at once, not after the timeout
            server.should_exit = True
            await task
            (home / "service.json").unlink(missing_ok=True)
