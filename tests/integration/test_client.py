"""The Python client, the workflow builder and `jobmesh workflow` against a real stack
started with `jobmesh up --port 0` (a real nats-server, gateway and services)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobmesh.client import ApiError, Client, Workflow
from tests.conftest import JOBMESH, cli, wait_until, write_workflow

pytestmark = pytest.mark.integration

HELLO = "#!/bin/bash\necho \"hello from $JOBMESH_JOB\"\n"
CALC = "print('# jobmesh output n=42', flush=True)\nprint('calc done')\n"
NODES = {"hello": {"script": "hello.sh"},
         "calc": {"script": "sub/calc.py", "retries": 1},
         "report": {"exec": "echo n={parents.calc.outputs.n}"}}
DEPS = ["hello,calc,report"]


@pytest.fixture
def client(stack: dict[str, Any]) -> Iterator[Client]:
    with Client(stack["url"], timeout=30) as c:
        yield c


def scripted(folder: Path, name: str | None = None) -> Path:
    """A workflow folder: a .sh job, a .py job in a subfolder that publishes an output,
    and an exec job reading it. Without a name the upload's own name names it."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "sub" / "calc.py").write_text(CALC)
    path = write_workflow(folder, name or "workflow", NODES, DEPS, files={"hello.sh": HELLO})
    if name is None:
        text = path.read_text().replace("name: workflow\n", "")
        path.write_text(text)
    return path


def archive(folder: Path, target: Path, prefix: str = "") -> Path:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    if target.name.endswith(".zip"):
        with zipfile.ZipFile(target, "w") as zf:
            for p in files:
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    else:
        mode = "w" if target.name.endswith(".tar") else "w:gz"
        with tarfile.open(target, mode) as tf:
            for p in files:
                tf.add(p, prefix + p.relative_to(folder).as_posix())
    return target


def upload_source(tmp: Path, kind: str) -> tuple[Path, str]:
    """(what to upload, the workflow name it must get)."""
    src = tmp / "src"
    if kind == "yaml":  # nothing but exec jobs: uploaded as the YAML itself
        path = write_workflow(tmp / "plain", "up-yaml", {"a": {"exec": "echo hello from a"},
                                                       "report": {"exec": "echo n=42"}},
                              ["a,report"])
        return path, "up-yaml"
    scripted(src)
    if kind == "yaml+scripts":  # the client packs the scripts the YAML uses
        return (src / "workflow.yaml").rename(src / "up-scripts.yaml"), "up-scripts"
    if kind == "dir":
        return src.rename(tmp / "up-dir"), "up-dir"
    stem = "up-" + kind.replace(".", "-")
    prefix = "wf/" if kind == "tar.gz" else ""  # one folder at the top is fine too
    return archive(src, tmp / f"{stem}.{kind}", prefix), stem


@pytest.mark.parametrize("kind", ["yaml", "yaml+scripts", "dir", "tar", "tar.gz", "tgz",
                                  "zip"])
def test_every_upload_kind_runs_to_completion(client: Client, tmp_path: Path,
                                              kind: str) -> None:
    path, name = upload_source(tmp_path, kind)
    added = client.add(path)
    assert added["name"] == name
    assert "report" in added["jobs"]
    assert client.show(name)["status"] is None  # uploaded, not run
    with pytest.raises(ApiError, match="has not run yet"):
        client.wait(name, timeout=5)
    run = client.run(name, parallel=2)
    assert run["state"] == "RUNNING"
    final = client.wait(name, timeout=60)
    assert final["state"] == "SUCCEEDED", final
    assert final["run"] == run["run"]
    assert all(j["state"] == "SUCCEEDED" for j in final["jobs"].values())
    assert "n=42" in client.log(name, "report")["data"]
    if kind != "yaml":
        assert "hello from hello" in client.log(name, "hello")["data"]
        assert final["jobs"]["calc"]["outputs"] == {"n": 42}


def test_curl_and_client_see_the_same_json(client: Client, stack: dict[str, Any],
                                           tmp_path: Path) -> None:
    client.add(scripted(tmp_path / "same", "same"))
    client.run("same")
    client.wait("same", timeout=60)
    for path, mine in (("/api/workflows/same", client.show("same")),
                       ("/api/workflows", client.list()),
                       ("/api/workflows/same/jobs/calc", client.job("same", "calc"))):
        token = (Path(os.environ["JOBMESH_HOME"]) / "gateway.token").read_text().strip()
        res = subprocess.run(["curl", "-sS", "-f", "-H", f"Authorization: Bearer {token}",  # noqa: PLW1510
                              stack["url"] + path], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout) == mine, path
    csv = client.show("same", format="csv")
    assert csv.splitlines()[0].startswith("job,state,progress")
    assert "calc,SUCCEEDED" in csv
    assert "name: same" in client.show("same", format="yaml")


def test_wait_follows_retry_and_cancel(client: Client, tmp_path: Path) -> None:
    marker, gate = tmp_path / "second-time", tmp_path / "gate"
    flaky = f"if [ -f {marker} ]; then echo ok; else touch {marker}; exit 3; fi"
    write_workflow(tmp_path / "f", "flaky", {"a": {"exec": flaky}, "b": {"exec": "echo b"}},
                   ["a,b"])
    client.add(tmp_path / "f" / "flaky.yaml")
    client.run("flaky")
    first = client.wait("flaky", timeout=60)
    assert first["state"] == "FAILED"
    assert first["jobs"]["a"]["exit_code"] == 3
    assert first["jobs"]["b"]["state"] == "SKIPPED"
    # retry: the same run id, so wait must not take the old ending for the new one
    marker.unlink(missing_ok=True)
    client.run("flaky")
    assert client.wait("flaky", timeout=60)["state"] == "FAILED"
    again = client.retry("flaky")
    final = client.wait("flaky", timeout=60)
    assert final["run"] == again["run"]
    assert final["state"] == "SUCCEEDED", final
    assert final["jobs"]["a"]["attempt"] == 2
    # a deadline that passes raises TimeoutError; cancel then ends the run
    write_workflow(tmp_path / "s", "slow", {"wait": {
        "exec": f"while [ ! -f {gate} ]; do sleep 0.1; done"}}, [])
    client.add(tmp_path / "s" / "slow.yaml")
    client.run("slow")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="slow"):
        client.wait("slow", timeout=1.5)
    assert 1.5 <= time.monotonic() - t0 < 15  # the timeout is honoured, not waited past
    with pytest.raises(ApiError) as exc:
        client.run("slow")
    assert (exc.value.status, exc.value.message) == (409, "workflow 'slow' is already running")
    wait_until(lambda: client.job("slow", "wait").get("status", {}).get("state") == "RUNNING",
               30, "the slow job to start")
    assert client.cancel("slow")["cancel_requested"] is True
    assert client.wait("slow", timeout=60)["state"] == "CANCELED"


def test_events_and_follow_log(client: Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    write_workflow(tmp_path / "e", "ev", {"talk": {"exec": f"echo first; while [ ! -f {gate} ]"
                                                   "; do sleep 0.05; done; echo second"}}, [])
    client.add(tmp_path / "e" / "ev.yaml")
    client.run("ev")
    wait_until(lambda: "first" in _log_or_empty(client, "ev", "talk"), 30, "the first line")
    chunks = client.follow_log("ev", "talk")
    seen = next(chunks)
    assert "first" in seen
    gate.touch()
    seen += "".join(chunks)  # ends by itself when the job ends
    assert seen.splitlines() == ["first", "second"]
    kinds, ids = [], []
    for ev in client.events("ev"):
        kinds.append((ev.event, ev.data.get("type") or ev.data.get("state")))
        ids += [ev.id] if ev.event == "job" else []
        if ev.event == "workflow" and ev.data["state"] == "SUCCEEDED":
            break
    assert ("job", "started") in kinds and ("job", "succeeded") in kinds
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    rest = client.events("ev", last_event_id=ids[-1])
    assert next(rest).event == "workflow"  # every job event was seen already
    rest.close()
    assert client.log("ev", "talk", tail=1)["data"] == "second\n"


def _log_or_empty(client: Client, wf: str, job: str) -> str:
    try:
        return str(client.log(wf, job)["data"])
    except ApiError as exc:
        assert exc.status == 404, exc  # not started yet
        return ""


def test_jobs_edit_through_the_client(client: Client, tmp_path: Path) -> None:
    client.add(scripted(tmp_path / "ed", "ed"))
    assert [j["name"] for j in client.jobs("ed")] == ["hello", "calc", "report"]
    added = client.put_job("ed", "extra", {"exec": "echo extra $X", "env": {"X": 7}},
                           after="report")
    assert added["parents"] == ["report"]
    with pytest.raises(ApiError) as exc:
        client.put_job("ed", "broken", {"retries": -1})
    assert exc.value.status == 422
    assert "retries cannot be negative" in exc.value.message
    assert exc.value.errors and exc.value.errors[0]["node"] == "broken"
    client.run("ed")
    assert client.wait("ed", timeout=60)["state"] == "SUCCEEDED"
    assert client.log("ed", "extra")["data"] == "extra 7\n"
    assert client.delete_job("ed", "extra")["deleted"] is True
    with pytest.raises(ApiError) as exc:
        client.job("ed", "nope")
    assert exc.value.status == 404 and "no job 'nope'" in exc.value.message
    svg = client.graph("ed")
    assert svg.lstrip().startswith(b"<") and b"<svg" in svg


def test_an_edit_after_a_run_is_visible_at_once(client: Client, tmp_path: Path) -> None:
    write_workflow(tmp_path / "v", "vis", {"a": {"exec": "true"}}, [])
    client.add(tmp_path / "v" / "vis.yaml")
    client.run("vis")
    client.wait("vis", timeout=60)
    client.put_job("vis", "b", {"exec": "echo b"}, after=["a"])
    assert client.job("vis", "b")["parents"] == ["a"]


def test_run_history_through_the_client(client: Client, tmp_path: Path) -> None:
    write_workflow(tmp_path / "h", "hist", {"a": {"exec": "echo a"}}, [])
    client.add(tmp_path / "h" / "hist.yaml")
    first = client.run("hist")["run"]
    client.wait("hist", timeout=60, run=first)
    second = client.run("hist", restart=True)["run"]
    client.wait("hist", timeout=60, run=second)
    runs = wait_until(lambda: r if len(r := client.runs("hist")) == 2 else None, 30,
                      "two runs in the history")
    assert [r["run"] for r in runs] == [second, first]
    assert [r["current"] for r in runs] == [True, False]
    old = client.past_run("hist", first)
    assert (old["run"], old["state"], old["current"]) == (first, "SUCCEEDED", False)
    assert old["status"]["jobs"]["a"]["state"] == "SUCCEEDED"
    with pytest.raises(ApiError) as exc:
        client.past_run("hist", "20200101T000000-dead")
    assert exc.value.status == 404
    with pytest.raises(ApiError) as exc:
        client.past_run("hist", "../x")
    assert exc.value.status in (404, 422)


def test_errors_are_readable(client: Client, stack: dict[str, Any], tmp_path: Path) -> None:
    path = scripted(tmp_path / "dup", "dup")
    client.add(path)
    with pytest.raises(ApiError) as exc:
        client.add(path)
    assert exc.value.status == 409
    assert str(exc.value) == ("a workflow named 'dup' exists; to replace it, upload with "
                              "replace=true (`jobmesh workflow add FILE --replace`)")
    assert client.add(path, replace=True)["name"] == "dup"
    assert client.add(path, name="dup2")["name"] == "dup2"
    with pytest.raises(ApiError) as exc:
        client.show("nope")
    assert (exc.value.status, exc.value.message) == (404, "no workflow named 'nope'")
    with pytest.raises(ApiError) as exc:
        client.show("../etc")
    assert exc.value.status == 422 and "invalid workflow name" in exc.value.message
    bad = tmp_path / "bad.yaml"
    bad.write_text("workflow:\n  nodes:\n    a: {kind: sssh, exec: 'true'}\n")
    with pytest.raises(ApiError) as exc:
        client.add(bad)
    assert exc.value.status == 422
    assert "bad.yaml:3" in exc.value.message and "unknown kind 'sssh'" in exc.value.message
    assert exc.value.errors[0]["line"] == 3
    with pytest.raises(FileNotFoundError):
        client.add(tmp_path / "missing.yaml")
    with pytest.raises(ApiError) as exc:
        client.retry("dup")
    assert exc.value.status == 409 and "has not run yet" in exc.value.message
    # nothing listening: the hint says how to start it
    with Client("http://127.0.0.1:9") as dead, pytest.raises(ApiError) as exc:
        dead.list()
    assert exc.value.status == 0 and "jobmesh up" in exc.value.message


def test_client_finds_the_stack_and_token(stack: dict[str, Any], home: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with Client() as c:  # from $JOBMESH_HOME/service.json
        assert c.url == stack["url"] and c.list() == []
    monkeypatch.setenv("JOBMESH_URL", "http://127.0.0.1:9")
    with Client() as c:
        assert c.url == "http://127.0.0.1:9"
    monkeypatch.delenv("JOBMESH_URL")
    monkeypatch.setenv("JOBMESH_HOME", str(home / "elsewhere"))
    with pytest.raises(ApiError, match="jobmesh up"):
        Client()


def test_token_is_sent(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMESH_TOKEN", "s3cret")
    res = cli(home, "up", "--port", "0")
    assert res.returncode == 0, res.stderr
    try:
        url = json.loads((home / "service.json").read_text())["url"]
        with Client(url) as c:  # the token from $JOBMESH_TOKEN
            assert c.list() == []
        monkeypatch.delenv("JOBMESH_TOKEN")
        with Client(url) as c, pytest.raises(ApiError) as exc:
            c.list()
        assert exc.value.status == 401 and "JOBMESH_TOKEN" in exc.value.message
        with Client(url, token="s3cret") as c:
            assert c.list() == []
    finally:
        assert cli(home, "down").returncode == 0


def builder(base: Path, outside: Path) -> Workflow:
    base.mkdir(parents=True, exist_ok=True)
    (base / "prep.sh").write_text("echo preparing; jobmesh progress 50 2>/dev/null || true\n")
    (base / "data").mkdir(exist_ok=True)
    (base / "data" / "input.txt").write_text("3 4\n")
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "sum.py").write_text(
        "a, b = map(int, open('data/input.txt').read().split())\n"
        "print(f'# jobmesh output total={a + b}')\n")
    wf = Workflow("built", base_dir=base, description="made in Python")
    wf.add_job("prep", script="prep.sh", label="{name}")
    wf.add_job("sum", script=str(outside / "sum.py"), inputs=["data/input.txt"], retries=1)
    wf.add_job("report", exec="echo total={parents.sum.outputs.total}", timeout="1m")
    wf.add_dependencies("start,prep,sum,report,end")
    return wf


def test_builder_submit(client: Client, tmp_path: Path) -> None:
    wf = builder(tmp_path / "b", tmp_path / "elsewhere")
    assert wf.submit(client) == "built"
    final = client.wait("built", timeout=60)
    assert final["state"] == "SUCCEEDED", final
    assert final["run"] == wf.run_id
    assert final["jobs"]["sum"]["outputs"] == {"total": 7}
    assert client.log("built", "report")["data"] == "total=7\n"
    spec = client.show("built")["spec"]
    assert list(spec["jobs"]) == ["prep", "sum", "report", "start", "end"]
    with pytest.raises(ApiError) as exc:
        wf.submit(client, run=False)
    assert exc.value.status == 409
    assert wf.submit(client, replace=True, run=False) == "built"


def test_builder_run_and_save(stack: dict[str, Any], tmp_path: Path, home: Path) -> None:
    wf = builder(tmp_path / "b", tmp_path / "elsewhere")
    status = wf.run(parallel=2, timeout=120)  # through the stack `jobmesh up` runs
    assert status["state"] == "SUCCEEDED", status
    assert status["jobs"]["sum"]["outputs"] == {"total": 7}
    again = wf.run(timeout=120)
    assert again["state"] == "SUCCEEDED" and again["run"] != status["run"]
    saved = wf.save(tmp_path / "saved" / "built.yaml")
    res = cli(home, "validate", str(saved))
    assert res.returncode == 0, res.stderr
    assert "sum.py" in saved.read_text() and "../" in saved.read_text()
    broken = Workflow("broken", base_dir=tmp_path)
    broken.add_job("a", script="missing.sh")
    with pytest.raises(ValueError, match="missing.sh"):
        broken.run(timeout=60)
    with pytest.raises(ValueError):
        Workflow("no good")
    with pytest.raises(ValueError):
        Workflow("ok").add_job("x;rm")


def test_builder_run_on_the_embedded_stack(home: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMESH_HOME", str(home))
    assert not (home / "service.json").exists()
    wf = Workflow("solo").add_job("a", exec="echo solo").add_job("b", exec="exit 4")
    wf.add_dependencies(["a", "b"])
    status = wf.run(timeout=120)
    assert status["state"] == "FAILED"
    assert status["jobs"]["b"]["exit_code"] == 4
    assert Path(status["jobs"]["a"]["log"]).read_text() == "solo\n"


def test_cli_workflow_commands(stack: dict[str, Any], home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "clidemo"
    scripted(folder)
    res = cli(home, "workflow", "add", str(folder))
    assert res.returncode == 0, res.stderr
    assert "added workflow 'clidemo': 3 jobs" in res.stdout
    again = cli(home, "workflow", "add", str(folder))
    assert again.returncode == 1 and again.stderr.startswith("error: a workflow named")
    res = cli(home, "workflow", "run", "clidemo", "--wait", "--parallel", "2")
    assert res.returncode == 0, res.stderr
    assert "SUCCEEDED" in res.stdout
    shown = cli(home, "workflow", "show", "clidemo", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["status"]["state"] == "SUCCEEDED" and doc["uploaded"] is True
    res = cli(home, "workflow", "log", "clidemo", "hello")
    assert res.returncode == 0 and res.stdout == "hello from hello\n", res.stderr
    res = cli(home, "workflow", "job", "add", "clidemo", "extra", "exec=echo hi $X",
              "retries=2", "env={X: 1}", "--after", "report,hello")
    assert res.returncode == 0, res.stderr
    assert "job 'extra' of 'clidemo' set (parents: report, hello)" in res.stdout
    bad = cli(home, "workflow", "job", "add", "clidemo", "x", "retries")
    assert bad.returncode == 2 and "is not key=value" in bad.stderr
    res = cli(home, "workflow", "run", "clidemo", "--wait")
    assert res.returncode == 0, res.stderr
    assert cli(home, "workflow", "log", "clidemo", "extra").stdout == "hi 1\n"
    doc = json.loads(cli(home, "workflow", "show", "clidemo", "-o", "json").stdout)
    assert doc["spec"]["jobs"]["extra"]["retries"] == 2
    assert doc["spec"]["jobs"]["extra"]["exec"] == "echo hi $X"
    assert ["report", "extra"] in doc["spec"]["edges"]
    svg = tmp_path / "g.svg"
    assert cli(home, "workflow", "graph", "clidemo", "-o", str(svg)).returncode == 0
    assert b"<svg" in svg.read_bytes()
    listed = cli(home, "workflow", "list", "-o", "json")
    assert [w["name"] for w in json.loads(listed.stdout)] == ["clidemo"]
    res = cli(home, "workflow", "delete", "clidemo")
    assert res.returncode == 0, res.stderr
    gone = cli(home, "workflow", "show", "clidemo")
    assert gone.returncode == 1
    assert gone.stderr == "error: no workflow named 'clidemo'\n"


def test_cli_failures_and_follow(stack: dict[str, Any], home: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    write_workflow(tmp_path / "w", "fails", {"ok": {"exec": "echo fine"},
                                             "boom": {"exec": "echo bad; exit 5"}}, ["ok,boom"])
    write_workflow(tmp_path / "w", "slowlog", {"talk": {
        "exec": f"echo one; while [ ! -f {gate} ]; do sleep 0.05; done; echo two"}}, [])
    assert cli(home, "workflow", "add", str(tmp_path / "w" / "fails.yaml")).returncode == 0
    res = cli(home, "workflow", "run", "fails", "--wait")
    assert res.returncode == 1, res.stderr
    assert "FAILED" in res.stdout and "Traceback" not in res.stderr
    assert cli(home, "workflow", "add", str(tmp_path / "w" / "slowlog.yaml")).returncode == 0
    assert cli(home, "workflow", "run", "slowlog").returncode == 0
    with Client(stack["url"]) as c:
        wait_until(lambda: "one" in _log_or_empty(c, "slowlog", "talk"), 30, "the first line")
    follower = subprocess.Popen([JOBMESH, "workflow", "log", "slowlog", "talk", "-f"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "JOBMESH_HOME": str(home)})
    try:
        assert follower.stdout is not None
        wait_until(lambda: select.select([follower.stdout], [], [], 0)[0], 30,
                   "the follower to print the first line")
        assert follower.stdout.readline() == "one\n"  # while the job still waits
        gate.touch()
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    assert out == "two\n"
    for args, code, needle in (
            (("workflow", "show", "a b"), 2, "error: invalid workflow name 'a b'"),
            (("workflow", "add", str(tmp_path / "nothing.yaml")), 2, "no such file"),
            (("workflow", "retry", "slowlog", "--url", "http://127.0.0.1:9"), 1, "jobmesh up"),
            (("workflow", "cancel", "fails"), 1, "error: workflow 'fails' is not running")):
        res = cli(home, *args)
        assert res.returncode == code, (args, res.stdout, res.stderr)
        assert needle in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)


def test_run_overrides_variables(client: Client, tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "vars", "vars", {"say": {"exec": "echo n={n}"}}, [],
                        variables={"n": 1})
    client.add(wf)
    client.run("vars", variables={"n": 7})
    final = client.wait("vars", timeout=60)
    assert final["state"] == "SUCCEEDED"
    assert client.log("vars", "say")["data"] == "n=7\n"
    with pytest.raises(ApiError) as exc:
        client.run("vars", variables={"nope": 1})
    assert exc.value.status == 422 and "nope" in exc.value.message
