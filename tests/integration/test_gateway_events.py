"""The gateway's live event streams against a real stack (`jobmesh up`): closed streams
release their NATS consumers, reconnects resume after the last event id, a stream opened
before a new run sees all of it, uploads are announced, and `jobmesh down` is prompt with
streams open."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import cli, run_async, wait_until, write_workflow

pytestmark = pytest.mark.integration
DONE = ("SUCCEEDED", "FAILED", "CANCELED")


class Up:
    """`jobmesh up --port 0` in a private home: the gateway's URL and its NATS URL."""

    def __init__(self, home: Path):
        self.home = home
        res = cli(home, "up", "--port", "0", timeout=90)
        assert res.returncode == 0, res.stderr + res.stdout
        info = json.loads((home / "service.json").read_text())
        self.url, self.nats_url = info["url"], info["nats_url"]
        self.api = httpx.Client(base_url=self.url, timeout=30)

    def down(self) -> subprocess.CompletedProcess[str]:
        self.api.close()
        return cli(self.home, "down", timeout=90)

    def consumers(self) -> dict[str, int]:
        """How many JetStream consumers the EVENTS stream and the snapshot bucket have,
        as the nats-server itself reports them."""
        from jobmesh.common import bus
        from jobmesh.common.settings import Settings

        async def go() -> dict[str, int]:
            nc = await bus.connect(Settings(nats_url=self.nats_url), "jobmesh-test")
            try:
                js = nc.jetstream()
                return {s: (await js.stream_info(s)).state.consumer_count
                        for s in ("EVENTS", "KV_workflows")}
            finally:
                await nc.close()

        return run_async(go())  # type: ignore[no-any-return]



@pytest.fixture
def up(home: Path) -> Iterator[Up]:
    stack = Up(home)
    yield stack
    res = stack.down()
    assert res.returncode == 0, res.stderr + res.stdout


class Stream:
    """An SSE stream read in a thread: parsed events land in a queue; ``close`` drops
    the connection the way a closed browser tab does."""

    def __init__(self, url: str, path: str, headers: dict[str, str] | None = None,
                 params: dict[str, Any] | None = None):
        self.events: queue.Queue[tuple[str, Any, int | None]] = queue.Queue()
        self.status: int | None = None
        self.ended = threading.Event()
        self.opened = threading.Event()
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=None))
        self._cm = self._client.stream("GET", path, headers=headers, params=params)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._cm as resp:
                self.status = resp.status_code
                self.opened.set()
                kind, data, ident = "message", None, None
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("id: "):
                        ident = int(line[4:])
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                    elif line == "" and data is not None:
                        self.events.put((kind, data, ident))
                        kind, data, ident = "message", None, None
        except Exception:  # closed by us, or by the server going away
            pass
        finally:
            self.opened.set()
            self.ended.set()

    def next(self, timeout: float = 60) -> tuple[str, Any, int | None]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout}s") from None

    def until(self, pred: Any, timeout: float = 90) -> list[tuple[str, Any, int | None]]:
        """Every event up to and including the first that satisfies pred."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s; got {out[-5:]}")
            ev = self.next(left)
            out.append(ev)
            if pred(ev):
                return out

    def close(self) -> None:
        self._client.close()  # closes the socket under the reading thread
        self._thread.join(15)


def final(run: str | None = None) -> Any:
    def pred(ev: tuple[str, Any, int | None]) -> bool:
        kind, data, _ = ev
        return kind == "workflow" and data["state"] in DONE and (run is None
                                                                  or data["run"] == run)
    return pred


def upload(api: httpx.Client, path: Path) -> None:
    r = api.post("/api/workflows", files={"file": (path.name, path.read_bytes())})
    assert r.status_code == 201, r.text


def test_closed_streams_release_their_consumers(up: Up, tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, "leak", {"a": {"exec": "true"}}, [])
    upload(up.api, wf)
    assert up.api.post("/api/workflows/leak/run").status_code == 202
    wait_until(lambda: up.api.get("/api/workflows/leak").json()["status"]["state"]
               == "SUCCEEDED", 60, "the run to end")
    base = up.consumers()
    streams = [Stream(up.url, "/api/workflows/leak/events") for _ in range(4)]
    streams += [Stream(up.url, "/api/events") for _ in range(2)]
    for s in streams:  # every stream is live: it sent the current state
        s.until(lambda ev: ev[0] == "workflow", 60)
    more = up.consumers()
    assert more["EVENTS"] >= base["EVENTS"] + 4, (base, more)
    assert more["KV_workflows"] >= base["KV_workflows"] + 6, (base, more)
    for s in streams:
        s.close()
    # The server would drop an ephemeral consumer nobody listens to after 30 s; these
    # must go at once, so the deadline stays well below that.
    seen: list[dict[str, int]] = []
    try:
        wait_until(lambda: seen.append(up.consumers()) or seen[-1] == base, 15,
                   f"the consumers to go back to {base}", every=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; they stayed at {seen[-1]}") from None
