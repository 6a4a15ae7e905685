"""The gateway under attack (issue 14): foreign Host names (DNS rebinding), other sites'
state-changing requests, the token on loopback, bodies past the limit, uploads that
would stall the event loop, unwritable and corrupt archives, replacing a running
workflow, garbage Last-Event-IDs, wrong methods, server paths in errors, and NATS that
stops answering. Each test reproduces the attack against a real `jobmesh up` (or a
standalone gateway on a real nats-server) and checks what the attacker gets."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import NATS_TOKEN, cli, wait_until, write_workflow

pytestmark = pytest.mark.integration
WF = b"workflow:\n  nodes:\n    a: {exec: 'echo hi'}\n"
MB = 2**20


@dataclass
class Gw:
    home: Path
    url: str
    token: str
    printed: str  # what `jobmesh up` printed

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, headers=self.auth, **kw)

    @property
    def hostport(self) -> tuple[str, int]:
        host, port = self.url.split("//")[1].split(":")
        return host, int(port)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    """`jobmesh up` as a user starts it: no --token, no JOBMESH_TOKEN."""
    home = tmp_path_factory.mktemp("sec") / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("JOBMESH_TOKEN",
                                                             "JOBMESH_ALLOW_HOSTS")}
    res = cli(home, "up", "--port", "0", env=env, timeout=90)
    assert res.returncode == 0, res.stderr + res.stdout
    url = json.loads((home / "service.json").read_text())["url"]
    token = (home / "gateway.token").read_text().strip()
    yield Gw(home, url, token, res.stdout)
    assert cli(home, "down", timeout=90).returncode == 0


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "workflows").iterdir() if p.name.startswith("."))


# -- D1: DNS rebinding and cross-site requests ---------------------------------------------

def test_foreign_host_name_is_refused(gw: Gw) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: its Host is refused
    before anything else (even with a token, which such a page would not have)."""
    port = gw.hostport[1]
    with gw.api() as c:
        for headers in ({"Host": "attacker.example"}, {"Host": f"attacker.example:{port}"},
                        {"Host": "127.0.0.1.attacker.example"}):
            r = c.get("/api/workflows", headers=headers)
            assert r.status_code == 403, r.text
            assert "--allow-host" in r.json()["detail"]
            assert c.post("/api/workflows", headers=headers,
                          files={"file": ("rebound.yaml", WF)}).status_code == 403
        assert c.get("/", headers={"Host": "attacker.example"}).status_code == 403
        for ok in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}",
                   f"app.localhost:{port}", socket.gethostname()):
            assert c.get("/api/workflows", headers={"Host": ok}).status_code == 200, ok
        assert "rebound" not in [w["name"] for w in c.get("/api/workflows").json()]


def test_other_sites_cannot_upload_run_or_delete(gw: Gw) -> None:
    """A page elsewhere (another host, or another port of this one) sends a no-cors
    upload or a text/plain POST: refused even when the browser adds a valid cookie."""
    port = gw.hostport[1]
    with gw.api() as c:
        assert c.post("/api/workflows", files={"file": ("victim.yaml", WF)}).status_code == 201
        cookie = {"Cookie": f"jobmesh-token-{port}={gw.token}"}
        for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}",
                       f"http://localhost:{port}", "null"):
            hdr = {"Origin": origin}
            r = c.post("/api/workflows", headers=hdr, files={"file": ("evil.yaml", WF)})
            assert r.status_code == 403 and "another site" in r.json()["detail"], r.text
            r = httpx.post(f"{gw.url}/api/workflows/victim/run", content=b"{}",
                           headers={**hdr, **cookie, "Content-Type": "text/plain"})
            assert r.status_code == 403, r.text
            assert c.delete("/api/workflows/victim", headers=hdr).status_code == 403
            assert c.put("/api/workflows/victim/jobs/x", headers=hdr,
                         json={"attributes": {"exec": "touch PWNED"}}).status_code == 403
        # no Origin, a Referer from elsewhere: refused too
        r = c.post("/api/workflows/victim/run", headers={"Referer": "http://evil.example/x"})
        assert r.status_code == 403
        names = [w["name"] for w in c.get("/api/workflows").json()]
        assert "evil" not in names and "victim" in names
        victim = c.get("/api/workflows/victim").json()
        assert victim["status"] is None and list(victim["spec"]["jobs"]) == ["a"]
        # The GUI itself (same origin) and clients without Origin (curl, the CLI) may.
        same = c.post("/api/workflows", headers={"Origin": gw.url},
                      files={"file": ("mine.yaml", WF)})
        assert same.status_code == 201, same.text
        assert c.delete("/api/workflows/mine", headers={"Referer": f"{gw.url}/#/"}
                        ).status_code == 200


def test_allowed_proxy_name(tmp_path: Path) -> None:
    """Behind a reverse proxy: its name is allowed as Host and as the GUI's Origin."""
    home = tmp_path / "home"
    res = cli(home, "up", "--port", "0", "--allow-host", "jobs.example.org", timeout=90)
    assert res.returncode == 0, res.stderr
    try:
        url = json.loads((home / "service.json").read_text())["url"]
        token = (home / "gateway.token").read_text().strip()
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            proxied = {"Host": "jobs.example.org", "Origin": "https://jobs.example.org",
                       "X-Forwarded-Proto": "https"}
            assert c.get("/api/workflows", headers=proxied).status_code == 200
            assert c.post("/api/workflows", headers=proxied,
                          files={"file": ("p.yaml", WF)}).status_code == 201
            assert c.get("/api/workflows", headers={"Host": "other.example.org"}
                         ).status_code == 403
            assert c.post("/api/workflows", headers={"Origin": "https://other.example.org"},
                          files={"file": ("q.yaml", WF)}).status_code == 403
    finally:
        assert cli(home, "down", timeout=90).returncode == 0


# -- the token on loopback, the GUI's cookie, the CLI and the client ----------------------

def test_token_is_on_by_default_and_found_by_cli_and_client(gw: Gw) -> None:
    path = gw.home / "gateway.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(gw.token) >= 32
    assert f"{gw.url}/?token={gw.token}" in gw.printed
    with httpx.Client(base_url=gw.url, timeout=30) as anon:
        for p in ("/api/workflows", "/metrics", "/api/workflows/x/jobs"):
            assert anon.get(p).status_code == 401, p
        assert anon.post("/api/workflows", files={"file": ("anon.yaml", WF)}
                         ).status_code == 401
        assert anon.get("/api/workflows", headers={"Authorization": "Bearer nope"}
                        ).status_code == 401
        assert anon.get("/healthz").status_code == 200
        # ?token= is for the event streams only (EventSource sends no headers)
        assert anon.get(f"/api/workflows?token={gw.token}").status_code == 401
        assert anon.get(f"/metrics?token={gw.token}").status_code == 401
        with anon.stream("GET", f"/api/events?token={gw.token}") as ev:
            assert ev.status_code == 200
        with anon.stream("GET", "/api/events?token=nope") as ev:
            assert ev.status_code == 401
    # The GUI's entry URL: the token becomes an HttpOnly SameSite=Strict cookie, and the
    # browser is sent on to the clean URL.
    with httpx.Client(base_url=gw.url, timeout=30) as browser:
        r = browser.get(f"/?token={gw.token}")
        assert r.status_code == 303 and r.headers["location"] == "./"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert browser.get("/api/workflows").status_code == 200  # the cookie
        wrong = httpx.get(f"{gw.url}/?token=nope")
        assert wrong.status_code == 303 and "set-cookie" not in wrong.headers
    # The CLI and the client of the same home find the token by themselves.
    env = {k: v for k, v in os.environ.items() if k not in ("JOBMESH_TOKEN", "JOBMESH_URL")}
    res = cli(gw.home, "workflow", "list", "-o", "json", env=env)
    assert res.returncode == 0, res.stderr
    code = ("from jobmesh.client import Client\n"
            "with Client() as c: print(len(c.list()))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "JOBMESH_HOME": str(gw.home)}, timeout=60)
    assert run.returncode == 0, run.stderr
    # ... but never send it to another URL.
    code = ("from jobmesh.client import Client\n"
            "c = Client('http://127.0.0.1:9')\n"
            "print(dict(c._http.headers).get('authorization'))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "JOBMESH_HOME": str(gw.home)}, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "None", run.stdout + run.stderr


def test_serve_beyond_loopback_needs_a_token_as_up_does(home: Path) -> None:
    """D11: the process `jobmesh up` starts enforces the same rule when run by hand."""
    env = {k: v for k, v in os.environ.items() if k != "JOBMESH_TOKEN"}
    try:
        res = cli(home, "serve", "--host", "0.0.0.0", "--port", "0", env=env, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("jobmesh serve --host 0.0.0.0 started without a token")
    assert res.returncode == 2 and "--token" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not (home / "service.json").exists()
    res = subprocess.run([sys.executable, "-m", "jobmesh.gateway", "--nats",
                          "nats://127.0.0.1:9", "--host", "0.0.0.0"], env={
                              **env, "JOBMESH_HOME": str(home)},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "--token" in res.stderr, res.stderr
    refused = cli(home, "up", "--host", "0.0.0.0", "--port", "0", env=env)
    assert refused.returncode == 2 and "--token" in refused.stderr


# -- D8/D9: bodies past the limit, uploads off the event loop ----------------------------

def _connect(gw: Gw) -> socket.socket:
    return socket.create_connection(gw.hostport, timeout=30)


def _head(gw: Gw, extra: str) -> bytes:
    host, port = gw.hostport
    return (f"POST /api/workflows HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {gw.token}\r\n"
            "Content-Type: multipart/form-data; boundary=jobmeshbound\r\n"
            f"{extra}\r\n").encode()


def _status(sock: socket.socket) -> tuple[int, str]:
    """The answer's status and body: the body may come in a later segment than the
    head, so read it up to its Content-Length (or until the server closes)."""
    data = b""
    want: int | None = None
    try:
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and want is None:
                want = next((int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                             if ln.lower().startswith(b"content-length:")), 0)
            if sep and len(body) >= (want or 0):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:  # closed while we were still sending: keep what came
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def test_declared_body_over_the_limit_is_refused_before_it_is_read(gw: Gw) -> None:
    with _connect(gw) as sock:
        sock.sendall(_head(gw, f"Content-Length: {200 * MB}\r\n"))
        code, _ = _status(sock)  # answered without a byte of the body
    assert code == 413
    with _connect(gw) as sock:  # a job edit: far smaller bodies
        host, port = gw.hostport
        sock.sendall((f"PUT /api/workflows/x/jobs/y HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Authorization: Bearer {gw.token}\r\nContent-Type: application/json"
                      f"\r\nContent-Length: {5 * MB}\r\n\r\n").encode())
        assert _status(sock)[0] == 413


def test_streamed_body_is_cut_off_at_the_limit(gw: Gw) -> None:
    """Chunked, with no Content-Length: the gateway counts and answers 413 once the
    limit (50 MB) is passed; it never reads (or spools) the 200 MB being sent."""
    chunk = b"x" * MB
    sent = 0
    answered_after = None
    with _connect(gw) as sock:
        sock.sendall(_head(gw, "Transfer-Encoding: chunked\r\n"))
        part = (b"--jobmeshbound\r\nContent-Disposition: form-data; name=\"file\"; "
                b"filename=\"big.yaml\"\r\n\r\n")
        sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sock.settimeout(60)
        while sent < 200 * MB:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answered_after = sent
                break
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:  # the server closed the connection after its answer
                answered_after = sent
                break
            sent += len(chunk)
        code, body = _status(sock)
    assert code == 413 and "50 MB" in body, body
    # ``sent`` counts what the kernel took, not what the gateway read: the socket buffers
    # of both ends (loopback autotuning: up to ~10 MB more) sit between the two.
    assert answered_after is not None and answered_after < 100 * MB, \
        f"the client sent {answered_after or sent} bytes before the gateway answered"
    assert leftovers(gw.home) == []


def _bomb(files: int, size: int) -> bytes:
    """A valid workflow with many big, highly compressible files: small to send, slow
    to unpack."""
    buf = io.BytesIO()
    zeros = bytes(size)
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("workflow.yaml")
        info.size = len(WF)
        tar.addfile(info, io.BytesIO(WF))
        for i in range(files):
            info = tarfile.TarInfo(f"data/{i:04d}.bin")
            info.size = size
            tar.addfile(info, io.BytesIO(zeros))
    return buf.getvalue()


def test_upload_is_unpacked_off_the_event_loop(gw: Gw) -> None:
    """While a large archive is unpacked, the gateway (and with it every service of
    `jobmesh up`, on the same event loop) keeps answering."""
    data = _bomb(600, 256 * 1024)  # 150 MB unpacked
    result: dict[str, Any] = {}

    def upload() -> None:
        with gw.api() as c:
            result["r"] = c.post("/api/workflows", files={"file": ("bomb.tar.gz", data)},
                                 data={"name": "bomb"})

    worker = threading.Thread(target=upload)
    worker.start()
    root = gw.home / "workflows"

    def unpacking() -> bool:
        return any(p.is_file() and p.name.endswith(".bin") for p in root.glob(".incoming-*/**/*"))

    wait_until(unpacking, 60, "the upload to be unpacked")
    with httpx.Client(base_url=gw.url, timeout=120) as c:
        assert c.get("/healthz").status_code == 200
    busy = worker.is_alive()  # /healthz answered while the upload was still being unpacked
    worker.join(120)
    assert result["r"].status_code == 201, result["r"].text
    assert busy, "/healthz waited for the upload: it was unpacked on the event loop"
    with gw.api() as c:
        assert c.delete("/api/workflows/bomb").status_code == 200


def test_unpack_budgets_kill_the_worker(tmp_path: Path) -> None:
    """Past its time (or memory) budget the worker process is killed and the upload is
    refused; nothing is left running."""
    import asyncio

    from jobmesh.gateway.unpack import OverBudget, unpack

    staging = tmp_path / "slow"
    staging.mkdir()
    (staging / "upload").write_bytes(_bomb(800, 256 * 1024))
    with pytest.raises(OverBudget, match="more than 0 s"):
        asyncio.run(unpack(staging, "bomb.tar.gz", None, time_budget=0.05))
    big = tmp_path / "big"
    big.mkdir()
    text = b"workflow:\n  nodes:\n    a: {exec: '" + b"x" * (100 * MB) + b"'}\n"
    (big / "upload").write_bytes(text)
    with pytest.raises(OverBudget, match="MB of memory"):
        asyncio.run(unpack(big, "big.yaml", None, memory=200 * MB))
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.name == "jobmesh-upload"]


# -- D10: replace=true without a name -----------------------------------------------------

def test_replace_without_a_name_keeps_a_running_workflow(gw: Gw, tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, "busy", {
        "wait": {"exec": 'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done'},
        "then": {"script": "then.sh"}}, ["wait,then"], files={"then.sh": "echo original\n"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(wf, "busy.yaml")
        tar.add(tmp_path / "then.sh", "then.sh")
    with gw.api() as c:
        assert c.post("/api/workflows", files={"file": ("busy.tar.gz", buf.getvalue())}
                      ).status_code == 201
        assert c.post("/api/workflows/busy/run").status_code == 202
        wait_until(lambda: c.get("/api/workflows/busy").json()["status"]["jobs"]["wait"]
                   ["state"] == "RUNNING", 60, "the first job to run")
        evil = io.BytesIO()
        with tarfile.open(fileobj=evil, mode="w:gz") as tar:
            tar.add(wf, "busy.yaml")
            body = b"touch PWNED\n"
            info = tarfile.TarInfo("then.sh")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for form in ({"replace": "true"}, {"replace": "true", "name": "busy"}):
            r = c.post("/api/workflows", files={"file": ("busy.tar.gz", evil.getvalue())},
                       data=form)
            assert r.status_code == 409 and "running" in r.json()["detail"], r.text
        folder = gw.home / "workflows" / "busy"
        assert (folder / "then.sh").read_text() == "echo original\n"
        (folder / "go").touch()
        wait_until(lambda: c.get("/api/workflows/busy").json()["status"]["state"]
                   == "SUCCEEDED", 60, "the run to end")
        assert not (folder / "PWNED").exists()
        assert c.delete("/api/workflows/busy").status_code == 200
    assert leftovers(gw.home) == []


# -- D12/D13: archives the extractor cannot write, corrupt archives -----------------------

def _tar(members: list[tuple[str, bytes | None]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _corrupt_zip(where: str) -> bytes:
    data = bytearray(_zip([("wf.yaml", WF), ("data.txt", b"hello world " * 2000)]))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("data.txt")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    if where == "crc":  # the CRC in both headers no longer fits the data
        zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
        crc = zf.getinfo("data.txt").CRC.to_bytes(4, "little")
        bad = (zf.getinfo("data.txt").CRC ^ 0xFFFF).to_bytes(4, "little")
        data = bytearray(bytes(data).replace(crc, bad))
    else:  # the deflate stream itself is garbage
        data[start:start + 16] = b"\xff" * 16
    return bytes(data)


LONG = "x" * 300
GOOD = _tar([("wf.yaml", WF), ("data.txt", b"y" * 100_000)])
CASES = {
    "long name": ("a.tar.gz", _tar([("wf.yaml", WF), (LONG, b"x")]), "longer than 255"),
    "long folder": ("a.tar.gz", _tar([("wf.yaml", WF), (f"{LONG}/f", b"x")]),
                    "longer than 255"),
    "long zip name": ("a.zip", _zip([("wf.yaml", WF), (LONG, b"x")]), "longer than 255"),
    "empty name": ("a.tar.gz", _tar([("wf.yaml", WF), ("", b"x")]), "no file name"),
    "dot": ("a.tar.gz", _tar([("wf.yaml", WF), (".", b"x")]), "no file name"),
    "zip dot": ("a.zip", _zip([("wf.yaml", WF), ("./", b"")]), None),
    "file then folder": ("a.tar.gz", _tar([("wf.yaml", WF), ("d", b"x"), ("d/f", b"y")]),
                         "which is a file"),
    "folder then file": ("a.tar.gz", _tar([("wf.yaml", WF), ("d/f", b"y"), ("d", b"x")]),
                         "both a file and a folder"),
    "zip file and folder": ("a.zip", _zip([("wf.yaml", WF), ("d", b"x"), ("d/f", b"y")]),
                            "which is a file"),
    "bad gzip": ("a.tar.gz", GOOD[:10] + b"\x00" * 50 + GOOD[60:], "not a readable tar"),
    "truncated tar": ("a.tar.gz", GOOD[: len(GOOD) // 2], "not a readable tar"),
    "truncated plain tar": ("a.tar", _tar([("wf.yaml", WF), ("d.txt", b"z" * 50_000)],
                                          "w")[:20_000], "not a readable tar"),
    "zip crc": ("a.zip", _corrupt_zip("crc"), "not a readable zip"),
    "zip deflate": ("a.zip", _corrupt_zip("deflate"), "not a readable zip"),
    "not a zip": ("a.zip", b"PK\x03\x04" + b"\x00" * 100, "not a readable zip"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unwritable_and_corrupt_archives_are_refused_cleanly(gw: Gw, case: str) -> None:
    filename, data, why = CASES[case]
    before = sorted(p.name for p in gw.home.parent.iterdir())
    with gw.api() as c:
        r = c.post("/api/workflows", files={"file": (filename, data)}, data={"name": "arc"})
        if why is None:  # harmless: a zip's own "./" folder entry
            assert r.status_code == 201, r.text
            assert c.delete("/api/workflows/arc").status_code == 200
        else:
            assert r.status_code == 400, r.text
            detail = r.json()["detail"]
            assert why in detail and str(gw.home) not in detail, detail
            assert c.get("/api/workflows/arc").status_code == 404
    assert sorted(p.name for p in gw.home.parent.iterdir()) == before
    assert leftovers(gw.home) == []


# -- D15, methods, paths in errors ----------------------------------------------------------

def test_garbage_last_event_id_is_ignored(gw: Gw) -> None:
    with gw.api() as c:
        assert c.post("/api/workflows", files={"file": ("ids.yaml", WF)}).status_code == 201
        # b"\xb2" is '²' as a server reads headers (latin-1): str.isdigit() says yes
        for bad in (b"\xb2", b"9" * 5000, b"-1", b"1e9", "٣".encode()):
            with c.stream("GET", "/api/workflows/ids/events",
                          headers={"Last-Event-ID": bad}) as r:
                assert r.status_code == 200, bad
                assert next(r.iter_lines()) == ": live"
        assert c.get("/api/workflows/ids/events", params={"since": "9" * 5000}
                     ).status_code == 422
        assert c.delete("/api/workflows/ids").status_code == 200


def test_other_methods_are_answered_by_the_api(gw: Gw) -> None:
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        r = c.options("/api/workflows")
        assert r.status_code == 204 and set(r.headers["allow"].split(", ")) == {
            "GET", "POST", "OPTIONS"}
        assert "access-control-allow-origin" not in r.headers
        r = c.options("/api/workflows/x/jobs/y")
        assert set(r.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE", "OPTIONS"}
        r = c.patch("/api/workflows", headers=gw.auth)
        assert r.status_code == 405 and "POST" in r.headers["allow"]
        assert "not allowed" in r.json()["detail"]
        r = c.get("/api/no-such-thing", headers=gw.auth)
        assert r.status_code == 404 and "no API path" in r.json()["detail"]


def test_errors_name_no_server_path(gw: Gw, tmp_path: Path) -> None:
    with gw.api() as c:
        for doc in (b"workflow:\n  nodes:\n    a: {script: missing.sh}\n",
                    b"workflow:\n  nodes:\n    a: {script: ../../etc/passwd}\n",
                    b"workflow:\n  nodes:\n    a: {exec: 'true', inputs: [/etc/passwd]}\n"):
            r = c.post("/api/workflows", files={"file": ("paths.yaml", doc)})
            assert 400 <= r.status_code < 500, r.text
            assert str(gw.home) not in r.text and str(tmp_path) not in r.text, r.text
        assert c.post("/api/workflows", files={"file": ("edit.yaml", WF)}).status_code == 201
        r = c.put("/api/workflows/edit/jobs/b", json={"attributes": {"script": "nope.sh"}})
        assert 400 <= r.status_code < 500 and str(gw.home) not in r.text, r.text
        assert c.delete("/api/workflows/edit").status_code == 200


# -- NATS that does not answer ------------------------------------------------------------

def test_nats_that_stops_answering_gives_503(tmp_path: Path, home: Path) -> None:
    from jobmesh.cli import natsserver

    server = natsserver.start(tmp_path / "nats", NATS_TOKEN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path / "gateway.log", "wb")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "jobmesh.gateway", "--nats", server.url, "--port", str(port),
         "--api-token", "t0k"], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "JOBMESH_HOME": str(home), "JOBMESH_NATS_TOKEN": NATS_TOKEN})
    stopped = False
    try:
        url = f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=url, timeout=60, headers={"Authorization": "Bearer t0k"})

        def up() -> bool:
            try:
                return api.get("/api/workflows").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the gateway to answer")
        assert api.post("/api/workflows", files={"file": ("n.yaml", WF)}).status_code == 201
        os.kill(server.proc.pid, signal.SIGSTOP)
        stopped = True
        for method, path in (("GET", "/api/workflows/n"), ("GET", "/api/workflows"),
                             ("POST", "/api/workflows/n/run"), ("GET", "/metrics")):
            r = api.request(method, path)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert int(r.headers["retry-after"]) > 0 and "NATS" in r.json()["detail"]
        os.kill(server.proc.pid, signal.SIGCONT)
        stopped = False
        wait_until(lambda: api.get("/api/workflows/n").status_code == 200, 60,
                   "the gateway to answer again")
        api.close()
    finally:
        if stopped:
            os.kill(server.proc.pid, signal.SIGCONT)
        gateway.terminate()
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()
        server.stop()
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()

