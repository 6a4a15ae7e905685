"""The gateway's live event streams against a real stack (`jobmesh up`): closed streams
release their NATS consumers, reconnects resume after the last event id, a stream opened
before a new run sees all of it, uploads are announced, and `jobmesh down` is prompt with
streams open."""

from __future__ import annotations

import io
import json
import queue
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    Bus,
    Services,
    cli,
    home_token,
    read_log,
    run_async,
    wait_until,
    write_workflow,
)

pytestmark = pytest.mark.integration
DONE = ("SUCCEEDED", "FAILED", "CANCELED")


def gateway_auth(home: Path) -> dict[str, str]:
    """What a client of the home sends: the token `jobmesh up` keeps in gateway.token."""
    return {"Authorization": f"Bearer {(home / 'gateway.token').read_text().strip()}"}


class Up:
    """`jobmesh up --port 0` in a private home: the gateway's URL and its NATS URL."""

    def __init__(self, home: Path):
        self.home = home
        res = cli(home, "up", "--port", "0", timeout=90)
        assert res.returncode == 0, res.stderr + res.stdout
        info = json.loads((home / "service.json").read_text())
        self.url, self.nats_url = info["url"], info["nats_url"]
        self.auth = gateway_auth(home)
        Stream.auth[self.url] = self.auth
        self.api = httpx.Client(base_url=self.url, timeout=30, headers=self.auth)

    def down(self) -> subprocess.CompletedProcess[str]:
        self.api.close()
        return cli(self.home, "down", timeout=90)

    def consumers(self) -> dict[str, int]:
        """How many JetStream consumers the EVENTS stream and the snapshot bucket have,
        as the nats-server itself reports them."""
        from jobmesh.common import bus
        from jobmesh.common.settings import Settings

        async def go() -> dict[str, int]:
            nc = await bus.connect(Settings(nats_url=self.nats_url,
                                            nats_token=home_token(self.home)), "jobmesh-test")
            try:
                js = nc.jetstream()
                return {s: (await js.stream_info(s)).state.consumer_count
                        for s in ("EVENTS", "KV_workflows")}
            finally:
                await nc.close()

        return run_async(go())  # type: ignore[no-any-return]

    def job_events(self, wf: str, run: str) -> list[tuple[int, str, str]]:
        """(sequence, job, type) of every job event of one run, read from the EVENTS log
        itself: what a stream should have sent."""
        log = Bus.of_home(self.home).call(lambda js: read_log(js, wf))
        return [(seq, ev.job, ev.type) for seq, ev in log if ev.run == run]



@pytest.fixture
def up(home: Path) -> Iterator[Up]:
    stack = Up(home)
    yield stack
    res = stack.down()
    assert res.returncode == 0, res.stderr + res.stdout


class Stream:
    """An SSE stream read in a thread: parsed events land in a queue; ``close`` drops
    the connection the way a closed browser tab does."""

    auth: dict[str, dict[str, str]] = {}  # the token header of each gateway URL

    def __init__(self, url: str, path: str, headers: dict[str, str] | None = None,
                 params: dict[str, Any] | None = None):
        self.events: queue.Queue[tuple[str, Any, int | None]] = queue.Queue()
        self.status: int | None = None
        self.ended = threading.Event()
        self.opened = threading.Event()
        self.live = threading.Event()  # the stream said ': live'
        self.clean_end = False  # the server ended the response (not cut, not dropped)
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(30, read=None))
        self._cm = self._client.stream("GET", path, params=params,
                                       headers={**self.auth.get(url, {}), **(headers or {})})
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._cm as resp:
                self.status = resp.status_code
                self._sock = resp.extensions["network_stream"].get_extra_info("socket")
                self.opened.set()
                kind, data, ident = "message", None, None
                for line in resp.iter_lines():
                    if line == ": live":
                        self.live.set()
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("id: "):
                        ident = int(line[4:])
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                    elif line == "" and data is not None:
                        self.events.put((kind, data, ident))
                        kind, data, ident = "message", None, None
                self.clean_end = True
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

    def wait_live(self, timeout: float = 60) -> None:
        assert self.live.wait(timeout), f"the stream did not go live within {timeout}s " \
            f"(status {self.status})"

    def close(self) -> None:
        """Drop the connection at once, as a closed tab does (closing the client would
        wait for the reading thread's next line)."""
        self.opened.wait(30)
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
        self._thread.join(15)
        assert not self._thread.is_alive(), "the stream did not close"
        self._client.close()


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


def jobs_of(events: list[tuple[str, Any, int | None]]) -> list[tuple[int, str, str]]:
    return [(i, d["job"], d["type"]) for k, d, i in events if k == "job" and i is not None]


GATED = {  # 'a' reports progress, then waits for a file the test creates
    "a": {"exec": 'for p in 25 50; do echo "# cloudmesh progress=$p"; done; '
                  'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done; '
                  'echo "# cloudmesh progress=75"'},
    "b": {"exec": "true"}, "c": {"exec": "echo '# cloudmesh progress=50'"}}


def test_reconnect_resumes_after_the_last_event_id(up: Up, home: Path,
                                                   tmp_path: Path) -> None:
    upload(up.api, write_workflow(tmp_path, "resume", GATED, ["a,b", "a,c"]))
    first = Stream(up.url, "/api/workflows/resume/events")
    first.wait_live()
    r = up.api.post("/api/workflows/resume/run")
    assert r.status_code == 202, r.text
    run = r.json()["run"]
    # Read until 'a' reported progress 50, then drop the connection mid-run.
    got = first.until(lambda ev: ev[0] == "job" and ev[1]["job"] == "a"
                      and ev[1].get("progress") == 50)
    first.close()
    seen = jobs_of(got)
    last = seen[-1][0]
    assert [t for _, j, t in seen if j == "a"][-1] == "progress"
    (home / "workflows" / "resume" / "go").touch()
    wait_until(lambda: up.api.get("/api/workflows/resume").json()["status"]["state"]
               in DONE, 60, "the run to end while nobody listened")
    truth = up.job_events("resume", run)
    assert [e[0] for e in truth] == sorted(e[0] for e in truth)
    assert seen == [e for e in truth if e[0] <= last]  # nothing lost before the drop

    # EventSource's own reconnect: the Last-Event-ID header.
    again = Stream(up.url, "/api/workflows/resume/events", headers={"Last-Event-ID": str(last)})
    rest = again.until(final(run))
    again.close()
    assert rest[-1][1]["state"] == "SUCCEEDED"
    assert jobs_of(rest) == [e for e in truth if e[0] > last], "only the later events"
    assert seen + jobs_of(rest) == truth
    assert all(k == "workflow" for k, _, _ in rest[rest.index(next(
        e for e in rest if e[0] == "job" and e[2] == truth[-1][0])) + 1:])

    # A manual reconnect: ?since=; and the header wins over it (EventSource keeps the
    # URL it was opened with, and sends a newer id in the header).
    for params, headers in (({"since": last}, None),
                            ({"since": 0}, {"Last-Event-ID": str(last)})):
        s = Stream(up.url, "/api/workflows/resume/events", params=params, headers=headers)
        assert jobs_of(s.until(final(run))) == [e for e in truth if e[0] > last], params
        s.close()

    # A fresh connection (or an id that is no number, or from beyond the log's end)
    # replays the current run.
    for headers in (None, {"Last-Event-ID": "not-a-number"}, {"Last-Event-ID": "999999"}):
        s = Stream(up.url, "/api/workflows/resume/events", headers=headers)
        assert jobs_of(s.until(final(run))) == truth
        s.close()


def test_stream_open_before_a_new_run_sees_all_of_it(up: Up, tmp_path: Path) -> None:
    """A stream that follows a workflow which ran before gets every job event of the next
    run from its very first one, before the run's first snapshot is stored."""
    roots = {f"r{i}": {"exec": "true"} for i in range(6)}
    upload(up.api, write_workflow(tmp_path, "again", {**roots, "end": {"exec": "true"}},
                                  [f"r{i},end" for i in range(6)]))
    r1 = up.api.post("/api/workflows/again/run").json()["run"]
    wait_until(lambda: up.api.get("/api/workflows/again").json()["status"]["state"]
               in DONE, 60, "the first run to end")
    stream = Stream(up.url, "/api/workflows/again/events")
    old = stream.until(final(r1))  # the replay of the first run
    assert {d["run"] for k, d, _ in old if k == "job"} == {r1}
    for _ in range(2):  # twice: the second time the first run's replay is not fresh
        # restart: every job runs again (else the cache reuses them, with no 'started')
        r = up.api.post("/api/workflows/again/run", json={"restart": True})
        assert r.status_code == 202, r.text
        run = r.json()["run"]
        got = stream.until(final(run))
        assert got[-1][1]["state"] == "SUCCEEDED"
        jobs = [(i, d) for k, d, i in got if k == "job"]
        assert {d["run"] for _, d in jobs} == {run}, "another run's events"
        truth = up.job_events("again", run)
        assert [(i, d["job"], d["type"]) for i, d in jobs] == truth
        for job in [*roots, "end"]:
            types = [d["type"] for _, d in jobs if d["job"] == job]
            assert types[0] == "ready" and types[-1] == "succeeded", (job, types)
            assert types.index("started") < types.index("succeeded")
        last_job = max(n for n, ev in enumerate(got) if ev[0] == "job")
        assert last_job < len(got) - 1, "the final state comes after every job event"
    stream.close()


def archive(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_uploads_edits_and_deletes_are_announced(up: Up) -> None:
    stream = Stream(up.url, "/api/events")
    stream.wait_live()
    data = archive({"flow.yaml": "workflow:\n  nodes:\n    one: {script: one.sh}\n"
                                 "    two: {exec: 'true'}\n  dependencies:\n"
                                 "    - one,two\n",
                    "one.sh": "echo one\n"})
    r = up.api.post("/api/workflows", files={"file": ("shipped.tar.gz", data)})
    assert r.status_code == 201, r.text
    kind, info, _ = stream.next()
    assert kind == "workflow", (kind, info)
    assert (info["name"], info["state"], info["jobs"], info["uploaded"]) == (
        "shipped", "NEW", 2, True)
    r = up.api.put("/api/workflows/shipped/jobs/three",
                   json={"attributes": {"exec": "true"}, "after": ["two"]})
    assert r.status_code == 200, r.text
    kind, info, _ = stream.next()
    assert (kind, info["name"], info["jobs"]) == ("workflow", "shipped", 3)
    r = up.api.post("/api/workflows", files={"file": ("shipped.tar.gz", data)},
                    data={"replace": "true"})
    assert r.status_code == 201, r.text
    kind, info, _ = stream.next()
    assert (kind, info["name"], info["jobs"]) == ("workflow", "shipped", 2)
    assert up.api.delete("/api/workflows/shipped").status_code == 200
    assert stream.next() == ("deleted", {"name": "shipped"}, None)
    # A workflow that ran is announced by its snapshots, and its deletion by the monitor.
    r = up.api.post("/api/workflows", files={"file": ("ran.tar.gz", data)})
    assert r.status_code == 201, r.text
    assert stream.next()[1]["name"] == "ran"
    assert up.api.post("/api/workflows/ran/run").status_code == 202
    got = stream.until(lambda ev: ev[0] == "workflow" and ev[1]["state"] in DONE)
    assert got[-1][1]["state"] == "SUCCEEDED"
    assert up.api.delete("/api/workflows/ran").status_code == 200
    stream.until(lambda ev: ev == ("deleted", {"name": "ran"}, None))
    stream.close()
    # A stream opened just after a deletion still says so: a page that listed the
    # workflow a moment before (GET /api/workflows) must drop its row.
    wait_until(lambda: up.api.get("/api/workflows/ran").status_code == 404, 30,
               "the monitor to drop the deleted workflow's state")
    late = Stream(up.url, "/api/events")
    late.wait_live()
    late.until(lambda ev: ev == ("deleted", {"name": "ran"}, None), 15)
    late.close()


def test_down_with_open_streams_is_prompt(home: Path, tmp_path: Path) -> None:
    stack = Up(home)
    try:
        upload(stack.api, write_workflow(tmp_path, "quiet", {"a": {"exec": "true"}}, []))
        streams = [Stream(stack.url, "/api/workflows/quiet/events"),
                   Stream(stack.url, "/api/events")]
        for s in streams:
            s.wait_live()
        began = time.monotonic()
        res = stack.down()
        took = time.monotonic() - began
        assert res.returncode == 0, res.stderr + res.stdout
        # uvicorn gives open responses 3 s to end, then cancels them
        print(f"'jobmesh down' took {took:.1f}s with two streams open")
        assert took < 20, f"'jobmesh down' took {took:.1f}s with two streams open"
        for s in streams:
            assert s.ended.wait(10), "the stream is still open after 'jobmesh down'"
            s.close()
        assert not (home / "service.json").exists()
    finally:
        cli(home, "down", timeout=90)


def test_standalone_gateway_ends_its_streams_when_stopped(services: Services, home: Path,
                                                          tmp_path: Path) -> None:
    """`python -m jobmesh.gateway` (as in a container) on SIGTERM ends its open streams
    itself: each response ends properly, rather than being cut off when uvicorn stops
    waiting for it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = services.start("gateway", "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 60, "the gateway to answer")
    Stream.auth[url] = gateway_auth(home)  # standalone on loopback: the home's token too
    with httpx.Client(base_url=url, timeout=30, headers=Stream.auth[url]) as api:
        upload(api, write_workflow(tmp_path, "idle", {"a": {"exec": "true"}}, []))
    streams = [Stream(url, "/api/workflows/idle/events"), Stream(url, "/api/events")]
    for s in streams:
        s.wait_live()
    began = time.monotonic()
    gateway.terminate()
    for s in streams:
        assert s.ended.wait(30), "the stream is still open after SIGTERM"
    assert gateway.wait(30) == 0
    took = time.monotonic() - began
    assert all(s.clean_end for s in streams), "a stream was cut off instead of ended"
    assert took < 20, f"the gateway took {took:.1f}s to stop"
    services.procs.pop("gateway")
    for s in streams:
        s.close()
