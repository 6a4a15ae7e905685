"""Job types and policies on the real thing: a venv the test creates, a real Jupyter
kernel, timeouts, retries, outputs passed between jobs, and staged files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.helpers import cli, pid_alive, status, wait_until, write_workflow

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def test_python_job_runs_in_its_venv_and_reports_progress(tmp_path: Path, home: Path,
                                                          venv: Path) -> None:
    script = ("import sys, json\nfrom jobmesh import progress, output\n"
              "progress(50, msg='half way')\nprint('argv', sys.argv[1:])\n"
              "output('prefix', sys.prefix)\noutput('n', 42)\n")
    wf = write_workflow(tmp_path, "pyvenv", {
        "train.py": {"venv": str(venv), "args": ["--epochs", 3], "env": {"MODE": "fast"}},
        "check": {"exec": "echo got {parents.train.py.outputs.n}"},
    }, ["train.py,check"], files={"train.py": script})
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    doc = status(home, "pyvenv")
    job = doc["jobs"]["train.py"]
    assert Path(job["outputs"]["prefix"]).resolve() == venv.resolve()
    assert job["outputs"]["n"] == 42 and job["msg"] == "half way"
    assert "argv ['--epochs', '3']" in Path(job["log"]).read_text()
    assert "got 42" in Path(doc["jobs"]["check"]["log"]).read_text()


# Notebooks run on the first python3 on the job's PATH (it needs ipykernel): here jobmesh's
# own, as for a user who activated jobmesh's venv.
ACTIVATED = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def _notebook(path: Path, cells: list[str]) -> None:
    nb = new_notebook(cells=[new_code_cell(cells[0], metadata={"tags": ["parameters"]}),
                             *(new_code_cell(c) for c in cells[1:])])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def test_notebook_gets_parameters_and_is_saved_next_to_the_log(tmp_path: Path,
                                                               home: Path) -> None:
    _notebook(tmp_path / "analyze.ipynb", [
        "x = 1\nlabel = 'default'",
        "y = x * 2\nprint('answer', y, label)",
        "from jobmesh import output\noutput('y', y)",
    ])
    wf = write_workflow(tmp_path, "nb", {
        "analyze.ipynb": {"parameters": {"x": 21, "label": "run-1"}},
    }, [])
    res = cli(home, "run", str(wf), env=ACTIVATED)
    assert res.returncode == 0, res.stderr
    job = status(home, "nb")["jobs"]["analyze.ipynb"]
    assert job["outputs"]["y"] == 42 and job["progress"] == 100
    assert "answer 42 run-1" in Path(job["log"]).read_text()
    executed = nbformat.read(Path(job["run_dir"]) / "analyze.out.ipynb", as_version=4)
    assert "injected-parameters" in executed.cells[1].metadata["tags"]
    assert any("answer 42" in o.get("text", "") for o in executed.cells[2].outputs)


def test_failing_notebook_cell_fails_the_job_with_the_exception(tmp_path: Path,
                                                                home: Path) -> None:
    _notebook(tmp_path / "broken.ipynb", ["n = 0", "print(1 / n)", "print('never')"])
    wf = write_workflow(tmp_path, "nbfail", {"broken.ipynb": {}}, [])
    res = cli(home, "run", str(wf), env=ACTIVATED)
    assert res.returncode == 1
    job = status(home, "nbfail")["jobs"]["broken.ipynb"]
    assert job["state"] == "FAILED"
    assert "ZeroDivisionError" in job["reason"]
    assert (Path(job["run_dir"]) / "broken.out.ipynb").exists()


def test_timeout_kills_the_process_group(tmp_path: Path, home: Path) -> None:
    wf = write_workflow(tmp_path, "slow", {"sleepy": {
        "exec": 'sleep 30 & echo $! > "$JOBMESH_WORKFLOW_DIR/child.pid"; wait',
        "timeout": "1s"}}, [])
    res = cli(home, "run", str(wf))
    assert res.returncode == 1
    job = status(home, "slow")["jobs"]["sleepy"]
    assert job["state"] == "FAILED" and job["reason"] == "timeout"
    child = int((tmp_path / "child.pid").read_text())
    wait_until(lambda: not pid_alive(child) and not pid_alive(int(job["native_id"])), 10,
               "the timed-out processes to be gone")


def test_retries_end_succeeded_on_attempt_three_with_every_log(tmp_path: Path,
                                                               home: Path) -> None:
    cmd = ('n=$(cat "$JOBMESH_WORKFLOW_DIR/tries" 2>/dev/null || echo 0); n=$((n+1)); '
           'echo $n > "$JOBMESH_WORKFLOW_DIR/tries"; echo "attempt $n"; [ $n -ge 3 ]')
    wf = write_workflow(tmp_path, "flaky", {"flaky": {"exec": cmd, "retries": 2,
                                                      "retry_delay": "0.2s"}}, [])
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    job = status(home, "flaky")["jobs"]["flaky"]
    assert job["state"] == "SUCCEEDED" and job["attempt"] == 3
    assert [a["state"] for a in job["attempts"]] == ["FAILED", "FAILED"]
    run_dir = Path(job["run_dir"]).parent
    for n in (1, 2, 3):
        assert f"attempt {n}" in (run_dir / str(n) / "job.log").read_text()


def test_allow_failure_lets_descendants_run(tmp_path: Path, home: Path) -> None:
    wf = write_workflow(tmp_path, "lenient", {
        "optional": {"exec": "exit 5", "allow_failure": True},
        "next": {"exec": "true"},
    }, ["optional,next"])
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    jobs = status(home, "lenient")["jobs"]
    assert jobs["optional"]["state"] == "FAILED" and jobs["next"]["state"] == "SUCCEEDED"


def test_output_reaches_next_command_and_shell_syntax_is_left_alone(tmp_path: Path,
                                                                    home: Path) -> None:
    wf = write_workflow(tmp_path, "outs", {
        "a": {"exec": "echo '# jobmesh output count=12'; echo '# jobmesh output name=ab cd'"},
        "b": {"exec": 'echo "n={parents.a.outputs.count} s={parents.a.outputs.name} '
                      'h=${HOME:+set} b=$(echo {x,y})"'},
    }, ["a,b"], defaults={"timeout": "60s"})
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    doc = status(home, "outs")
    assert doc["jobs"]["a"]["outputs"] == {"count": 12, "name": "ab cd"}
    # bash itself expands {x,y}: jobmesh left it alone
    assert "n=12 s=ab cd h=set b=x y" in Path(doc["jobs"]["b"]["log"]).read_text()
    detail = cli(home, "status", "outs", "--job", "a")
    assert "output count" in detail.stdout and "12" in detail.stdout


def test_input_and_output_files_are_staged(tmp_path: Path, home: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("1\n2\n3\n")
    wf = write_workflow(tmp_path, "files", {
        "sum": {"exec": "awk '{s+=$1} END {print s}' data/in.csv > total.txt",
                "inputs": ["data/*.csv"], "outputs": ["total.txt"]},
        "use": {"exec": 'cat "$JOBMESH_WORKFLOW_DIR/total.txt"'},
        "lying": {"exec": "true", "outputs": ["never.txt"]},
    }, ["sum,use"])
    res = cli(home, "run", str(wf))
    assert (tmp_path / "total.txt").read_text().strip() == "6"
    jobs = status(home, "files")["jobs"]
    assert jobs["use"]["state"] == "SUCCEEDED"
    assert jobs["lying"]["state"] == "FAILED" and "never.txt" in jobs["lying"]["reason"]
    assert res.returncode == 1


@pytest.mark.parametrize("attrs,needle", [
    ({"exec": "true", "timeout": "forever"}, "'forever' is not a duration"),
    ({"exec": "true", "retries": -1}, "retries cannot be negative"),
    ({"exec": "true", "venv": "/does/not/exist"}, "venv '/does/not/exist' not found"),
    ({"exec": "echo {parents.z.outputs.k}"}, "not a parent of 'a'"),
    ({"exec": "true", "inputs": ["../secret"]}, "inside the workflow's folder"),
])
def test_bad_policy_values_fail_validation(tmp_path: Path, home: Path, attrs: dict,
                                           needle: str) -> None:
    wf = write_workflow(tmp_path, "bad", {"a": attrs, "z": {"exec": "true"}}, [])
    res = cli(home, "validate", str(wf))
    assert res.returncode == 2 and needle in res.stderr and "node 'a'" in res.stderr
    assert "Traceback" not in res.stderr
