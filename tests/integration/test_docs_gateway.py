"""What docs/deploy.md promises about starting the gateway alone (issue 23): a start that
cannot work is one line on stderr and exit 1, never uvicorn's traceback and exit 3."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def gateway(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBMESH_")}
    env["JOBMESH_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "jobmesh.gateway", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_refused_credentials_are_one_line_and_exit_1(nats: Any, tmp_path: Path) -> None:
    r = gateway(tmp_path, "--nats", nats.url, "--token", "wrong", "--port", "0")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"error: NATS at {nats.url} refused the credentials (nats: 'Authorization "
        "Violation'); check the token, user and password, nkey or creds file"]


def test_a_port_in_use_is_one_line_and_exit_1(nats: Any, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = gateway(tmp_path, "--nats", nats.url, "--token", nats.token, "--port", str(port))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: Address "
                                     "already in use"]
