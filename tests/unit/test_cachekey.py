"""What goes into a job's cache key and what does not (jobmesh.common.cachekey)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobmesh.common.cachekey import FileDigests, job_key, material
from jobmesh.common.spec import JobSpec

pytestmark = pytest.mark.unit


def spec(folder: Path, **kw: Any) -> JobSpec:
    return JobSpec(name="b", **{"script": str(folder / "b.sh"), "inputs": ["data/*.csv"],
                                **kw})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "b.sh").write_text("echo b\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "one.csv").write_text("1,2\n")
    return tmp_path


def key(folder: Path, parents: tuple[tuple[str, str | None], ...] = (("a", "k1"),),
        **kw: Any) -> str | None:
    return job_key(spec(folder, **kw), str(folder), parents, FileDigests())


def test_the_same_job_gets_the_same_key(folder: Path) -> None:
    first = key(folder)
    assert first is not None and len(first) == 64
    assert key(folder) == first


@pytest.mark.parametrize("change", [
    {"timeout": 30}, {"retries": 3}, {"retry_delay": 5}, {"allow_failure": True},
    {"label": "{name} {progress}"}, {"time": "01:00:00"}, {"shape": "box"},
    {"when": "true"}, {"label_format": "{name}"},
])
def test_limits_and_looks_leave_the_key_alone(folder: Path, change: dict[str, Any]) -> None:
    assert key(folder, **change) == key(folder)


@pytest.mark.parametrize("change", [
    {"args": ["--fast"]}, {"env": {"MODE": "x"}}, {"kind": "ssh", "host": "h1"},
    {"venv": "/opt/venv"}, {"parameters": {"epochs": 2}}, {"params": {"gpu": 1}},
    {"outputs": ["b.out"]}, {"partition": "gpu"}, {"pool": "big"},
])
def test_what_changes_results_changes_the_key(folder: Path, change: dict[str, Any]) -> None:
    assert key(folder, **change) != key(folder)


def test_script_bytes_and_input_contents_are_in_the_key(folder: Path) -> None:
    before = key(folder)
    (folder / "b.sh").write_text("echo b changed\n")
    after_script = key(folder)
    assert after_script != before
    (folder / "data" / "one.csv").write_text("1,3\n")
    after_input = key(folder)
    assert after_input != after_script
    (folder / "data" / "two.csv").write_text("new file\n")  # the glob matches one more
    assert key(folder) != after_input


def test_a_parents_key_is_in_the_key(folder: Path) -> None:
    assert key(folder, parents=(("a", "k2"),)) != key(folder, parents=(("a", "k1"),))


@pytest.mark.parametrize("why", ["cache false", "keyless parent", "repeat", "missing input",
                                 "missing script"])
def test_no_key_means_the_job_always_runs(folder: Path, why: str) -> None:
    kw: dict[str, Any] = {}
    parents: tuple[tuple[str, str | None], ...] = (("a", "k1"),)
    if why == "cache false":
        kw["cache"] = False
    elif why == "keyless parent":
        parents = (("a", None),)
    elif why == "repeat":
        kw["repeat"] = {"until": "outputs.done == 1", "max": 3}
    elif why == "missing input":
        kw["inputs"] = ["nothing/*.csv"]
    else:
        (folder / "b.sh").unlink()
    assert key(folder, parents, **kw) is None


def test_material_names_what_went_in(folder: Path) -> None:
    doc = material(spec(folder, timeout=9), str(folder), [("a", "k1")],
                   {"script:b.sh": "s", "input:data/one.csv": "d"})
    assert doc["script"] == "b.sh" and doc["job_type"] == "sh"
    assert doc["files"] == {"input:data/one.csv": "d", "script:b.sh": "s"}
    assert doc["parents"] == [("a", "k1")]
    assert "timeout" not in doc["spec"] and doc["spec"]["inputs"] == ["data/*.csv"]


def test_file_digests_are_remembered_until_the_file_changes(folder: Path) -> None:
    digests = FileDigests()
    path = folder / "b.sh"
    first = digests(path)
    assert digests(path) == first and len(digests.memo) == 1
    path.write_text("echo something else, longer\n")
    assert digests(path) != first


# -- the durable check before a reuse (services/scheduler/cache.py) -----------------------

def earlier(tmp_path: Path, exit_text: str = "0\n", recorded: str = "k",
            kind: str = "local", output: bool = True) -> Any:
    from jobmesh.scheduler.cache import Entry

    rdir = tmp_path / "runs" / "w" / "r1" / "b" / "1"
    rdir.mkdir(parents=True)
    (rdir / "exit").write_text(exit_text)
    (rdir / "job.json").write_text(json.dumps({"cache_key": recorded}))
    if output:
        (rdir / "out").mkdir()
        (rdir / "out" / "b.csv").write_text("result\n")
    return Entry("k", "r1", 1, kind, run_dir=str(rdir))


@pytest.mark.parametrize("case", ["ok", "failed exit", "no exit", "other key",
                                  "output gone"])
def test_a_reuse_needs_exit_0_the_same_key_and_the_outputs(tmp_path: Path, case: str) -> None:
    from jobmesh.scheduler.cache import _usable

    entry = earlier(tmp_path, exit_text={"failed exit": "1\n", "no exit": ""}.get(case, "0\n"),
                    recorded="other" if case == "other key" else "k",
                    output=case != "output gone")
    base = tmp_path / "wf"
    base.mkdir()
    job = JobSpec(name="b", exec="true", outputs=["out/*.csv"])
    assert _usable(entry, job, str(base)) is (case == "ok")
    if case == "ok":  # the output is staged back into the workflow's folder
        assert (base / "out" / "b.csv").read_text() == "result\n"


def test_a_run_directory_on_another_host_is_trusted_only_without_outputs(
        tmp_path: Path) -> None:
    from jobmesh.scheduler.cache import Entry, _usable

    gone = str(tmp_path / "elsewhere")
    ssh = Entry("k", "r1", 1, "ssh", run_dir=gone)
    assert _usable(ssh, JobSpec(name="b", kind="ssh", host="h"), str(tmp_path)) is True
    assert _usable(ssh, JobSpec(name="b", kind="ssh", host="h", outputs=["x"]),
                   str(tmp_path)) is False
    local = Entry("k", "r1", 1, "local", run_dir=gone)  # deleted: the job runs
    assert _usable(local, JobSpec(name="b"), str(tmp_path)) is False
