"""The gateway against a real stack started with `jobmesh up`: security, SSE, service
restarts, and schemathesis over its OpenAPI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, cli, wait_until, write_workflow

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"


def _up(home: Path, *extra: str) -> str:
    res = cli(home, "up", "--port", "0", *extra, timeout=90)
    assert res.returncode == 0, res.stderr + res.stdout
    return json.loads((home / "service.json").read_text())["url"]


def auth(home: Path) -> dict[str, str]:
    """The header a client of the home sends: `jobmesh up` keeps its token in gateway.token."""
    return {"Authorization": f"Bearer {(home / 'gateway.token').read_text().strip()}"}


@pytest.fixture
def api(home: Path) -> Iterator[httpx.Client]:
    url = _up(home)
    with httpx.Client(base_url=url, timeout=30, headers=auth(home)) as client:
        yield client
    assert cli(home, "down", timeout=90).returncode == 0


def tar_bytes(members: list[tuple[str, Any]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, spec in members:
            info = tarfile.TarInfo(name)
            if isinstance(spec, bytes):
                info.size = len(spec)
                tar.addfile(info, io.BytesIO(spec))
            else:
                kind, target = spec
                info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                             "dev": tarfile.CHRTYPE}[kind]
                info.linkname = target
                tar.addfile(info)
    return buf.getvalue()


WF = b"workflow:\n  nodes:\n    a: {exec: 'echo hi'}\n"


@pytest.mark.parametrize("members,why", [
    ([("wf.yaml", WF), ("../evil", b"x")], "'..'"),
    ([("wf.yaml", WF), ("/etc/x-jobmesh-test", b"x")], "absolute path"),
    ([("wf.yaml", WF), ("link", ("sym", "/etc/passwd"))], "link"),
    ([("wf.yaml", WF), ("hard", ("hard", "/etc/passwd"))], "link"),
    ([("wf.yaml", WF), ("dev", ("dev", ""))], "device"),
])
def test_unsafe_tar_is_refused_and_nothing_escapes(api: httpx.Client, home: Path,
                                                   tmp_path: Path, members: list,
                                                   why: str) -> None:
    before = sorted(p.name for p in home.parent.iterdir())
    r = api.post("/api/workflows", files={"file": ("evil.tar.gz", tar_bytes(members))})
    assert r.status_code == 400, r.text
    assert why in r.json()["detail"]
    assert sorted(p.name for p in home.parent.iterdir()) == before
    assert not Path("/etc/x-jobmesh-test").exists()
    assert not (home / "workflows" / "evil").exists()
    assert [p.name for p in (home / "workflows").iterdir()] == []


def test_unsafe_zip_is_refused(api: httpx.Client, home: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("wf.yaml", WF)
        zf.writestr("../../outside.txt", b"x")
    r = api.post("/api/workflows", files={"file": ("evil.zip", buf.getvalue())})
    assert r.status_code == 400 and "'..'" in r.json()["detail"]
    assert not (home.parent / "outside.txt").exists() and not (home / "outside.txt").exists()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("wf.yaml", WF)
        link = zipfile.ZipInfo("link")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    r = api.post("/api/workflows", files={"file": ("links.zip", buf.getvalue())})
    assert r.status_code == 400 and "link" in r.json()["detail"]


def test_injected_names_are_refused(api: httpx.Client, home: Path, tmp_path: Path) -> None:
    r = api.post("/api/workflows", files={"file": ("wf.yaml", WF)},
                 data={"name": "x;touch PWNED"})
    assert r.status_code == 422 and "invalid workflow name" in r.json()["detail"]
    assert api.get("/api/workflows/x;touch PWNED").status_code == 422
    assert api.post("/api/workflows/x%3Btouch%20PWNED/run").status_code == 422
    bad_node = b"workflow:\n  nodes:\n    'a;touch PWNED': {exec: 'true'}\n"
    r = api.post("/api/workflows", files={"file": ("wf.yaml", bad_node)})
    assert r.status_code == 422 and "invalid job name" in r.json()["detail"]
    for where in (Path.cwd(), home, tmp_path, home / "workflows"):
        assert not (where / "PWNED").exists()


def test_invalid_workflow_gets_validate_messages_and_conflicts(api: httpx.Client,
                                                               home: Path,
                                                               tmp_path: Path) -> None:
    bad = tmp_path / "cyc.yaml"
    bad.write_text("workflow:\n  nodes:\n    a: {exec: 'true'}\n  dependencies:\n"
                   "    - a,b,a\n")
    r = api.post("/api/workflows", files={"file": ("cyc.yaml", bad.read_bytes())})
    assert r.status_code == 422
    validate = cli(home, "validate", str(bad))
    expected = validate.stderr.split("cyc.yaml:", 1)[1].strip()
    assert expected in r.json()["detail"]
    assert r.json()["errors"][0]["line"] == 5
    assert api.post("/api/workflows", files={"file": ("ok.yaml", WF)}).status_code == 201
    again = api.post("/api/workflows", files={"file": ("ok.yaml", WF)})
    assert again.status_code == 409 and "replace=true" in again.json()["detail"]
    assert api.post("/api/workflows", files={"file": ("ok.yaml", WF)},
                    data={"replace": "true"}).status_code == 201
    assert api.get("/api/workflows/nope").status_code == 404


def test_sse_gets_every_job_event_in_order_and_ends_with_success(api: httpx.Client,
                                                                 tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, "sse", {
        "a": {"exec": "for p in 30 60 90; do echo \"# cloudmesh progress=$p\"; sleep 0.1; "
                      "done"},
        "b": {"exec": "true"}, "c": {"exec": "true"}}, ["a,b", "a,c"])
    assert api.post("/api/workflows", files={"file": ("sse.yaml", wf.read_bytes())}
                    ).status_code == 201
    events: list[tuple[str, dict]] = []
    with httpx.Client(base_url=str(api.base_url), timeout=60,
                      headers=dict(api.headers)) as stream_client:
        with stream_client.stream("GET", "/api/workflows/sse/events") as resp:
            assert resp.status_code == 200
            assert api.post("/api/workflows/sse/run").status_code == 202
            kind = None
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind:
                    data = json.loads(line[6:])
                    events.append((kind, data))
                    if kind == "workflow" and data["state"] in ("SUCCEEDED", "FAILED"):
                        break
    jobs = [d for k, d in events if k == "job"]
    for name in "abc":
        types = [d["type"] for d in jobs if d["job"] == name]
        assert types[0] == "ready" and types[-1] == "succeeded", types
        assert types.index("started") < types.index("succeeded")
    progress = [d["progress"] for d in jobs if d["job"] == "a" and d["type"] == "progress"]
    assert progress == [30, 60, 90]
    assert events[-1][0] == "workflow" and events[-1][1]["state"] == "SUCCEEDED"
    last_job = max(i for i, (k, _) in enumerate(events) if k == "job")
    assert last_job < len(events) - 1


def test_token_required_and_loopback_rule(home: Path, tmp_path: Path) -> None:
    refused = cli(home, "up", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2 and "token" in refused.stderr
    assert not (home / "service.json").exists()
    url = _up(home, "--token", TOKEN)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/api/workflows").status_code == 401
            assert c.get("/api/workflows", headers={"Authorization": "Bearer wrong"}
                         ).status_code == 401
            assert c.get("/metrics").status_code == 401
            assert c.get("/healthz").status_code == 200
            ok = c.get("/api/workflows", headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200 and ok.json() == []
            # ?token= only where EventSource needs it: the event streams
            assert c.get(f"/api/workflows?token={TOKEN}").status_code == 401
            with c.stream("GET", f"/api/events?token={TOKEN}") as events:
                assert events.status_code == 200
        info = cli(home, "info")
        assert info.returncode == 0 and "token required" in info.stdout
    finally:
        assert cli(home, "down", timeout=90).returncode == 0


def test_down_while_running_then_up_finishes_without_rerunning(home: Path,
                                                               tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, "restart", {
        "slow": {"exec": 'echo x >> "$JOBMESH_WORKFLOW_DIR/count-slow"; '
                         'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done'},
        "then": {"exec": 'echo x >> "$JOBMESH_WORKFLOW_DIR/count-then"'}}, ["slow,then"])
    url = _up(home)
    with httpx.Client(base_url=url, timeout=30, headers=auth(home)) as c:
        assert c.post("/api/workflows", files={"file": ("restart.yaml", wf.read_bytes())}
                      ).status_code == 201
        assert c.post("/api/workflows/restart/run").status_code == 202
    folder = home / "workflows" / "restart"
    wait_until(lambda: (folder / "count-slow").exists(), 30, "the slow job to start")
    assert cli(home, "down", timeout=90).returncode == 0
    (folder / "go").touch()
    url = _up(home)
    try:
        with httpx.Client(base_url=url, timeout=30, headers=auth(home)) as c:
            def done() -> bool:
                st = c.get("/api/workflows/restart").json()["status"]
                return st["state"] in ("SUCCEEDED", "FAILED")
            wait_until(done, 60, "the workflow to finish after the restart")
            st = c.get("/api/workflows/restart").json()["status"]
            assert st["state"] == "SUCCEEDED"
        assert (folder / "count-slow").read_text() == "x\n"
        assert (folder / "count-then").read_text() == "x\n"
    finally:
        cli(home, "down", timeout=90)


def test_logs_tail_incrementally_and_metrics(api: httpx.Client, tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, "logs", {"talk": {"exec": "for i in 1 2 3 4 5; do echo "
                                                           "line$i; done"}}, [])
    api.post("/api/workflows", files={"file": ("logs.yaml", wf.read_bytes())})
    api.post("/api/workflows/logs/run")
    wait_until(lambda: api.get("/api/workflows/logs").json()["status"]["state"] == "SUCCEEDED",
               30, "the run")
    first = api.get("/api/workflows/logs/jobs/talk/log", params={"limit": 12}).json()
    assert first["data"] == "line1\nline2\n" and first["next_offset"] == 12
    rest = api.get("/api/workflows/logs/jobs/talk/log",
                   params={"offset": first["next_offset"]}).json()
    assert rest["data"] == "line3\nline4\nline5\n" and rest["done"] is True
    tail = api.get("/api/workflows/logs/jobs/talk/log", params={"tail": 2}).json()
    assert tail["data"] == "line4\nline5\n"
    metrics = api.get("/metrics").text
    assert 'jobmesh_jobs{state="SUCCEEDED"} 1' in metrics
    assert "jobmesh_jobs_queue_depth 0" in metrics and 'jobmesh_executors{pool="local"} 1' \
        in metrics
    csv_text = api.get("/api/workflows/logs", params={"format": "csv"}).text
    assert csv_text.splitlines()[1].startswith("talk,SUCCEEDED,100.0")
    svg = api.get("/api/workflows/logs/graph.svg")
    assert svg.status_code == 200 and "data-job=\"talk\"" in svg.text


def test_delete_running_needs_force(api: httpx.Client, tmp_path: Path) -> None:
    wf = write_workflow(tmp_path, "busy", {"wait": {"exec": "sleep 60"}}, [])
    api.post("/api/workflows", files={"file": ("busy.yaml", wf.read_bytes())})
    api.post("/api/workflows/busy/run")
    wait_until(lambda: api.get("/api/workflows/busy").json()["status"]["jobs"]["wait"]
               ["state"] == "RUNNING", 30, "the job to run")
    assert api.delete("/api/workflows/busy").status_code == 409
    assert api.put("/api/workflows/busy/jobs/x", json={"attributes": {"exec": "true"}}
                   ).status_code == 409
    assert api.delete("/api/workflows/busy", params={"force": "true"}).status_code == 200
    wait_until(lambda: api.get("/api/workflows/busy").status_code == 404, 30,
               "the workflow to be gone")


def test_jobs_can_be_edited_while_not_running(api: httpx.Client, tmp_path: Path) -> None:
    api.post("/api/workflows", files={"file": ("edit.yaml", WF)})
    r = api.put("/api/workflows/edit/jobs/b", json={"attributes": {"exec": "echo b"},
                                                    "after": ["a"]})
    assert r.status_code == 200 and r.json()["parents"] == ["a"]
    cyc = api.put("/api/workflows/edit/jobs/a", json={"attributes": {"exec": "true"},
                                                      "after": ["b"]})
    assert cyc.status_code == 422 and "cycle" in cyc.json()["detail"]
    assert [j["name"] for j in api.get("/api/workflows/edit/jobs").json()] == ["a", "b"]
    assert api.delete("/api/workflows/edit/jobs/b").status_code == 200
    assert [j["name"] for j in api.get("/api/workflows/edit/jobs").json()] == ["a"]


def test_schemathesis_finds_no_server_error(api: httpx.Client, tmp_path: Path) -> None:
    paper = tmp_path / "paper.tar.gz"
    with tarfile.open(paper, "w:gz") as tar:
        tar.add(ROOT / "examples" / "paper", arcname=".")
    api.post("/api/workflows", files={"file": ("paper.tar.gz", paper.read_bytes())})
    exe = Path(sys.executable).parent / "schemathesis"
    res = subprocess.run(
        [str(exe), "run", f"{str(api.base_url).rstrip('/')}/openapi.json",
         "-H", f"Authorization: {api.headers['authorization']}", "--checks",
         "not_a_server_error,response_schema_conformance,status_code_conformance",
         "--exclude-path-regex", "stream|events", "--max-time", "45", "--warnings", "off",
         "--phases", "examples,coverage,fuzzing", "--seed", "1"],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
