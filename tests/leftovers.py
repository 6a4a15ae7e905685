"""What a test session makes outside its tmp folders (sshd and Slurm daemons, network
namespaces, bridges) is written down in ``/run/jobmesh-tests/<session pid>.json`` (the
system's temporary folder when not root) as it is made, and crossed out as it is removed.

A session ends its own resources in its fixtures' finalizers, which also run on Ctrl-C
and, through ``conftest.py``'s SIGTERM handler, on SIGTERM. A session killed outright
(SIGKILL, a lost terminal) leaves its record behind, and the next session sweeps it at
start: daemons whose process still runs the same program are stopped, namespaces and
bridges deleted. Records of sessions that still run are left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil

DIR = Path("/run/jobmesh-tests") if os.geteuid() == 0 else \
    Path(tempfile.gettempdir()) / f"jobmesh-tests-{os.getuid()}"


def _file(pid: int | None = None) -> Path:
    return DIR / f"{pid or os.getpid()}.json"


def _read(path: Path) -> list[list[str]]:
    try:
        return [list(map(str, item)) for item in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _write(items: list[list[str]]) -> None:
    DIR.mkdir(parents=True, exist_ok=True)
    path, tmp = _file(), _file().with_suffix(".tmp")
    if not items:
        path.unlink(missing_ok=True)
        return
    tmp.write_text(json.dumps(items))
    tmp.replace(path)


def note(kind: str, *what: object) -> None:
    """Record a resource: ("process", pid, program), ("netns", name), ("link", name)."""
    items = _read(_file())
    items.append([kind, *map(str, what)])
    _write(items)


def forget(kind: str, *what: object) -> None:
    entry = [kind, *map(str, what)]
    _write([i for i in _read(_file()) if i != entry])


def _remove(item: list[str]) -> None:
    kind = item[0]
    if kind == "process" and len(item) == 3:
        try:
            proc = psutil.Process(int(item[1]))
            if item[2] in " ".join(proc.cmdline()) or item[2] in proc.name():
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
        except (psutil.Error, ValueError):
            pass  # gone already, or another program now has that pid
    elif kind == "netns":
        subprocess.run(["ip", "netns", "del", item[1]], capture_output=True)
    elif kind == "link":
        subprocess.run(["ip", "link", "del", item[1]], capture_output=True)


def sweep() -> list[list[str]]:
    """Remove what sessions that no longer run left behind; returns what was swept."""
    swept: list[list[str]] = []
    if not DIR.is_dir():
        return swept
    for path in DIR.glob("*.json"):
        try:
            pid = int(path.stem)
        except ValueError:
            continue
        if pid == os.getpid() or psutil.pid_exists(pid):
            continue
        items = _read(path)
        # daemons first, then the namespaces they ran in, then the bridges
        order = {"process": 0, "netns": 1, "link": 2}
        for item in sorted(items, key=lambda i: order.get(i[0], 3)):
            _remove(item)
            swept.append(item)
        path.unlink(missing_ok=True)
    return swept
