"""Browser fixtures: a real stack (`jobmesh up --port 0`) and Debian's Chromium driven by
Playwright's sync API. Playwright never downloads a browser here: it launches
/usr/bin/chromium (see shared/recipes.md, section 6)."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, cli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = ROOT / "test-artifacts"
DOC_IMAGES = ROOT / "docs" / "images"


class Stack:
    """`jobmesh up --port 0` in a private JOBMESH_HOME (extra: more `up` options), and a
    REST client for setting up what a test does not do through the GUI."""

    def __init__(self, home: Path, *extra: str):
        self.home, self.extra = home, extra
        self.url = self.up()
        self.api = httpx.Client(base_url=self.url, timeout=30, headers=self._auth())

    def _auth(self) -> dict[str, str]:
        if "--token" in self.extra:
            return {"Authorization": f"Bearer {self.extra[self.extra.index('--token') + 1]}"}
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def token(self) -> str:
        """The home's gateway token (`jobmesh up` makes one up unless --token is given)."""
        return (self.home / "gateway.token").read_text().strip()

    @property
    def entry(self) -> str:
        """The URL `jobmesh up` prints: opening it gives the browser the token's cookie."""
        return f"{self.url}/?token={self.token}"

    def up(self) -> str:
        res = cli(self.home, "up", "--port", "0", *self.extra, timeout=90)
        assert res.returncode == 0, res.stderr + res.stdout
        return str(json.loads((self.home / "service.json").read_text())["url"])

    def down(self) -> None:
        res = cli(self.home, "down", timeout=90)
        assert res.returncode == 0, res.stderr + res.stdout

    def restart(self) -> None:
        """`jobmesh down` then `jobmesh up`; the new gateway may listen on another port."""
        self.down()
        self.url = self.up()
        self.api.close()
        self.api = httpx.Client(base_url=self.url, timeout=30, headers=self._auth())

    def upload(self, name: str, text: str, files: dict[str, str] | None = None) -> None:
        """Upload a workflow over REST (tests of the upload form use the form)."""
        if files:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                for fname, body in {"workflow.yaml": text, **files}.items():
                    data = body.encode()
                    info = tarfile.TarInfo(fname)
                    info.size, info.mode = len(data), 0o755
                    tar.addfile(info, io.BytesIO(data))
            upload = ("wf.tar.gz", buf.getvalue())
        else:
            upload = ("wf.yaml", text.encode())
        res = self.api.post("/api/workflows", files={"file": upload},
                            data={"name": name, "replace": "true"})
        assert res.status_code == 201, res.text

    def close(self) -> None:
        self.api.close()
        self.down()


class Proxy:
    """A TCP proxy in front of the gateway, as a browser behind a reverse proxy sees it.
    `stop()` drops every connection and stops listening (the service looks down);
    `start(url)` listens again on the same port and forwards to `url`."""

    def __init__(self, url: str):
        self.sock: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.port = 0
        self.start(url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, upstream: str) -> None:
        host, port = upstream.split("//")[1].split(":")
        self.target = (host, int(port))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        sock.listen(64)
        self.sock = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()  # the gateway is down: the browser sees the connection drop
                continue
            with self.lock:
                if self.sock is not listener:  # stopped meanwhile: drop it
                    client.close()
                    server.close()
                    return
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        with self.lock:
            sock, self.sock = self.sock, None
            conns, self.conns = self.conns, []
        if sock is not None:
            # close() alone does not wake a thread blocked in accept() on Linux: the socket
            # would keep listening and start() could not bind the port again (EADDRINUSE).
            # shutdown() wakes accept() with EINVAL and ends the listening state.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


def warm_graphviz() -> None:
    """The first `dot` on a fresh machine builds fontconfig's cache, which can take longer
    than a page's wait for the graph; build it once before any page waits for one."""
    dot = shutil.which("dot")
    if dot:
        subprocess.run([dot, "-Tsvg"], input=b"digraph { a -> b }", capture_output=True,
                       timeout=300, check=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    warm_graphviz()
    s = Stack(tmp_path_factory.mktemp("home"))
    yield s
    s.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context per test; the test fails on any uncaught page error, and a
    screenshot of the last state is kept in test-artifacts/ when it fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 880}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    if "stack" in request.fixturenames:  # signed in as a user is: through the printed URL
        pg.goto(request.getfixturevalue("stack").entry)
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed and not pg.is_closed():
        shot(pg, f"failed-{request.node.name}")
    context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


def shot(page: Any, name: str, doc: bool = False) -> Path:
    """Save a screenshot to test-artifacts/. With doc=True and JOBMESH_DOC_IMAGES=1 it also
    replaces docs/images/NAME.png (`JOBMESH_DOC_IMAGES=1 pytest tests/browser` refreshes the
    README's images); a plain test run never changes a tracked file."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.evaluate("document.querySelector('#toast')?.setAttribute('hidden', '')")  # transient
    page.screenshot(path=str(path))
    if doc and os.environ.get("JOBMESH_DOC_IMAGES") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / f"{name}.png")
    return path
