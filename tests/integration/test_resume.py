"""Resume: a run after a change reruns only what changed (scheduler/cache.py), on the real
embedded stack, as separate services with a scheduler killed mid-run, and over REST."""

from __future__ import annotations

import io
import json
import signal
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import cli, status, wait_until, write_workflow

pytestmark = pytest.mark.integration


def count(job: str, where: str = "$JOBMESH_WORKFLOW_DIR") -> str:
    return f'echo x >> "{where}/{job}.count"'


def chain(folder: Path, c_cmd: str = "echo C1", b_cache: bool | None = None,
          where: str = "$JOBMESH_WORKFLOW_DIR", **top: Any) -> Path:
    """A -> B -> C; B reads b.in and writes b.out; C uses B's output value."""
    b: dict[str, Any] = {"exec": count("B", where) + '; cat b.in > b.out; echo "# jobmesh output '
                         'size=$(wc -c < b.in)"', "inputs": ["b.in"], "outputs": ["b.out"]}
    if b_cache is not None:
        b["cache"] = b_cache
    if not (folder / "b.in").exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "b.in").write_text("first\n")
    return write_workflow(folder, "chain", {
        "A": {"exec": count("A", where)},
        "B": b,
        "C": {"exec": count("C", where) + f"; {c_cmd} {{parents.B.outputs.size}}"},
    }, ["A,B,C"], **top)


def counts(folder: Path) -> dict[str, int]:
    return {j: len((folder / f"{j}.count").read_text().split()) if (
        folder / f"{j}.count").exists() else 0 for j in "ABC"}



def run_ok(home: Path, wf: Path, *extra: str) -> str:
    res = cli(home, "run", str(wf), "-q", *extra)
    assert res.returncode == 0, res.stderr + res.stdout
    return res.stderr


def test_chain_reruns_only_what_changed(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "wf"
    wf = chain(folder)
    run_ok(home, wf)
    first = status(home, "chain")
    assert counts(folder) == {"A": 1, "B": 1, "C": 1}

    chain(folder, c_cmd="echo C2")  # C's command changed: only C runs
    said = run_ok(home, wf)
    assert counts(folder) == {"A": 1, "B": 1, "C": 2}
    assert "2 of 3 jobs reused" in said
    doc = status(home, "chain")
    for job in "AB":
        assert doc["jobs"][job]["state"] == "SUCCEEDED"
        assert doc["jobs"][job]["reason"] == "cached"
        assert doc["jobs"][job]["cached_from"]["run"] == first["run"]
        assert doc["jobs"][job]["run_dir"] == first["jobs"][job]["run_dir"]
    assert doc["jobs"]["B"]["outputs"] == {"size": 6}  # B's output value passed on
    assert doc["jobs"]["C"]["reason"] is None and doc["jobs"]["C"]["cached_from"] is None
    assert doc["reused"]["jobs"] == 2
    table = cli(home, "status", "chain").stdout
    assert "SUCCEEDED (cached)" in table and "2 of 3 jobs reused from earlier runs" in table

    (folder / "b.in").write_text("second!\n")  # B's input changed: B and C run
    run_ok(home, wf)
    assert counts(folder) == {"A": 1, "B": 2, "C": 3}
    assert (folder / "b.out").read_text() == "second!\n"

    (folder / "b.out").unlink()  # nothing changed: nothing runs, B's file is staged back
    said = run_ok(home, wf)
    assert counts(folder) == {"A": 1, "B": 2, "C": 3}
    assert "already succeeded" in said and "all 3 jobs reused" in said
    assert (folder / "b.out").read_text() == "second!\n"

    run_ok(home, wf, "--restart")  # reruns all three
    assert counts(folder) == {"A": 2, "B": 3, "C": 4}
    assert status(home, "chain")["reused"]["jobs"] == 0


def test_cache_false_on_a_node_or_in_defaults_always_reruns(tmp_path: Path,
                                                           home: Path) -> None:
    folder = tmp_path / "wf"
    wf = chain(folder, b_cache=False)
    run_ok(home, wf)
    run_ok(home, wf)
    assert counts(folder) == {"A": 1, "B": 2, "C": 2}
    wf = chain(folder, defaults={"cache": False})
    run_ok(home, wf)
    run_ok(home, wf)
    assert counts(folder) == {"A": 3, "B": 4, "C": 4}


def test_cache_must_be_true_or_false(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "wf"
    wf = chain(folder)
    data = yaml.safe_load(wf.read_text())
    data["workflow"]["nodes"]["B"]["cache"] = "sometimes"
    wf.write_text(yaml.safe_dump(data))
    res = cli(home, "validate", str(wf))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "node 'B' field 'cache': 'cache' must be true or false" in res.stderr


def test_failed_jobs_are_never_reused_retried_successes_are(tmp_path: Path,
                                                            home: Path) -> None:
    flaky = count("A") + '; [ "$(wc -l < "$JOBMESH_WORKFLOW_DIR/A.count")" -ge 2 ]'
    wf = write_workflow(tmp_path, "chain", {
        "A": {"exec": flaky, "retries": 1},
        "B": {"exec": count("B") + '; test -e "$JOBMESH_WORKFLOW_DIR/fixed"'},
        "C": {"exec": count("C")},
    }, ["A,B,C"])
    assert cli(home, "run", str(wf), "-q").returncode == 1
    assert counts(tmp_path) == {"A": 2, "B": 1, "C": 0}
    (tmp_path / "fixed").touch()
    run_ok(home, wf)
    assert counts(tmp_path) == {"A": 2, "B": 2, "C": 1}  # A's second attempt reused
    doc = status(home, "chain")
    assert doc["jobs"]["A"]["reason"] == "cached" and doc["jobs"]["A"]["cached_from"][
        "attempt"] == 2


def test_a_hit_needs_the_earlier_run_directory_to_agree(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "wf"
    wf = chain(folder)
    run_ok(home, wf)
    a_dir = Path(status(home, "chain")["jobs"]["A"]["run_dir"])
    (a_dir / "exit").write_text("1\n")  # the durable record says A did not succeed
    run_ok(home, wf)
    # A runs again (same key), so B and C, whose keys did not change, are still reused.
    assert counts(folder) == {"A": 2, "B": 1, "C": 1}


def test_a_scheduler_killed_mid_run_reruns_nothing_twice(tmp_path: Path, bus: Any,
                                                         services: Any) -> None:
    folder = tmp_path / "wf"
    wait = 'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done'
    wf = chain(folder, c_cmd=wait + "; echo")
    for name in ("scheduler", "monitor", "executor"):
        services.start(name)
    (folder / "go").touch()
    bus.submit(wf)
    first = bus.wait("chain", lambda s: s.state.terminal, 60, "the first run")
    assert first.state.value == "SUCCEEDED" and counts(folder) == {"A": 1, "B": 1, "C": 1}
    (folder / "go").unlink()
    chain(folder, c_cmd=wait + "; echo changed")
    bus.submit(wf)
    wait_until(lambda: counts(folder)["C"] == 2, 60, "C to run again")
    services.kill("scheduler", signal.SIGKILL)
    services.start("scheduler")
    (folder / "go").touch()
    snap = bus.wait("chain", lambda s: s.run != first.run and s.state.terminal, 60,
                    "the second run")
    assert snap.state.value == "SUCCEEDED"
    assert counts(folder) == {"A": 1, "B": 1, "C": 2}
    assert [snap.jobs[j].reason for j in "ABC"] == ["cached", "cached", None]
    # The restarted scheduler rebuilt its index from the log: a third run reuses all.
    bus.submit(wf)
    third = bus.wait("chain", lambda s: s.run not in (first.run, snap.run)
                     and s.state.terminal, 60, "the third run")
    assert third.state.value == "SUCCEEDED" and counts(folder) == {"A": 1, "B": 1, "C": 2}
    assert all(third.jobs[j].cached_from for j in "ABC")


def test_a_run_over_rest_after_an_upload_reuses_what_it_can(tmp_path: Path,
                                                            home: Path) -> None:
    res = cli(home, "up", "--port", "0", timeout=90)
    assert res.returncode == 0, res.stderr + res.stdout
    url = json.loads((home / "service.json").read_text())["url"]
    folder = tmp_path / "wf"
    where = tmp_path / "counts"  # an upload that replaces the workflow replaces its folder
    where.mkdir()
    try:
        token = home / "gateway.token"  # a 'jobmesh up' may ask for one (on loopback too)
        headers = {"Authorization": f"Bearer {token.read_text().strip()}"} \
            if token.exists() else {}
        with httpx.Client(base_url=url, timeout=30, headers=headers) as api:
            def run_and_wait() -> dict[str, Any]:
                r = api.post("/api/workflows/chain/run")
                assert r.status_code == 202, r.text
                run = r.json()["run"]

                def ended() -> dict[str, Any] | None:
                    doc = api.get("/api/workflows/chain").json()["status"]
                    return doc if doc and doc["run"] == run and doc["state"] in (
                        "SUCCEEDED", "FAILED") else None
                return wait_until(ended, 60, "the run to end")

            for c_cmd, replace in (("echo C1", "false"), ("echo C2", "true")):
                wf = chain(folder, c_cmd=c_cmd, where=str(where))
                buf = io.BytesIO()
                with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                    tar.add(wf, "chain.yaml")
                    tar.add(folder / "b.in", "b.in")
                r = api.post("/api/workflows", files={"file": ("chain.tar.gz", buf.getvalue())},
                             data={"replace": replace})
                assert r.status_code == 201, r.text
                doc = run_and_wait()
                assert doc["state"] == "SUCCEEDED"
    finally:
        assert cli(home, "down", timeout=90).returncode == 0
    assert counts(where) == {"A": 1, "B": 1, "C": 2}
    assert [doc["jobs"][j]["reason"] for j in "ABC"] == ["cached", "cached", None]
    assert doc["reused"]["jobs"] == 2


@pytest.mark.ssh
def test_an_ssh_job_takes_part(tmp_path: Path, home: Path) -> None:
    from tests import sshhosts

    why = sshhosts.available()
    if why:
        pytest.skip(why)
    lab = sshhosts.Lab(tmp_path / "ssh")
    try:
        host = lab.loopback("loop")
        folder = tmp_path / "wf"
        folder.mkdir()
        (folder / "in.txt").write_text("data\n")
        wf = write_workflow(folder, "chain", {
            "A": lab.node(host, exec=f"{count('A', str(folder))}; tr a-z A-Z < in.txt > up.txt",
                          inputs=["in.txt"], outputs=["up.txt"]),
            "B": {"exec": count("B") + '; cat "$JOBMESH_WORKFLOW_DIR/up.txt"'},
        }, ["A,B"])
        run_ok(home, wf)
        (folder / "up.txt").unlink()
        said = run_ok(home, wf)
        assert "all 2 jobs reused" in said
        assert (folder / "up.txt").read_text() == "DATA\n"  # fetched from its run directory
        (folder / "in.txt").write_text("other\n")  # hashed here, where it is staged from
        run_ok(home, wf)
        assert (folder / "up.txt").read_text() == "OTHER\n"
        assert counts(folder) == {"A": 2, "B": 2, "C": 0}
    finally:
        lab.stop()


@pytest.mark.slurm
def test_a_slurm_job_takes_part(tmp_path: Path, home: Path) -> None:
    from tests import slurmcluster

    why = slurmcluster.available()
    if why:
        pytest.skip(why)
    cluster = slurmcluster.Slurm(tmp_path / "slurm")
    cluster.start()
    try:
        env = {**cluster.env, "JOBMESH_HOME": str(home)}
        folder = tmp_path / "wf"
        folder.mkdir()
        (folder / "sim.sh").write_text(
            f"#!/bin/bash\n#SBATCH --ntasks=1\n{count('A', str(folder))}\n"
            "echo result > result.txt\n")
        wf = write_workflow(folder, "chain", {
            "A": {"kind": "slurm", "script": "sim.sh", "outputs": ["result.txt"],
                  "workdir": str(tmp_path / "slurm-runs"), "time": "00:05:00"},
            "B": {"exec": count("B") + '; cat "$JOBMESH_WORKFLOW_DIR/result.txt"'},
        }, ["A,B"])
        for _ in range(2):
            res = cli(home, "run", str(wf), "-q", env=env, timeout=240)
            assert res.returncode == 0, res.stderr + res.stdout
            (folder / "result.txt").unlink()
        assert counts(folder) == {"A": 1, "B": 1, "C": 0}
        doc = status(home, "chain")
        assert doc["jobs"]["A"]["reason"] == "cached" and doc["jobs"]["A"]["kind"] == "slurm"
        # its output came back from the Slurm job's run directory on the second run
        assert "/slurm-runs/" in doc["jobs"]["A"]["cached_from"]["run_dir"]
        wf.write_text(wf.read_text().replace("00:05:00", "00:09:00"))  # a limit: no rerun
        res = cli(home, "run", str(wf), "-q", env=env, timeout=240)
        assert res.returncode == 0 and (folder / "result.txt").read_text() == "result\n"
        assert counts(folder) == {"A": 1, "B": 1, "C": 0}
        (folder / "sim.sh").write_text((folder / "sim.sh").read_text() + "echo more\n")
        res = cli(home, "run", str(wf), "-q", env=env, timeout=240)  # the script's bytes
        assert res.returncode == 0, res.stderr
        assert counts(folder) == {"A": 2, "B": 2, "C": 0}
    finally:
        cluster.stop()
