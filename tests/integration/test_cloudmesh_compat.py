"""cloudmesh-cc's files and conventions on the real thing, with small workflows written the
way cloudmesh-cc's docs and tests write them: the format it saves, labels in the SVG that
`jobmesh graph` draws (real Graphviz), `exec:` naming a file, progress lines with prefixes
and in `<script>.log` (local, WSL contract, a real sshd without SFTP, real Slurm), and
notebooks on the job's python3 (a real kernel)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests import slurmcluster, sshhosts
from tests.helpers import cli, status, write_workflow

pytestmark = pytest.mark.integration
SVG = {"s": "http://www.w3.org/2000/svg"}



def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def saved_node(name: str, **attrs: object) -> str:
    """A node as cloudmesh-cc's save_with_state writes it (yaml.dump of its node dict)."""
    base = {"name": name, "label": name, "label_format": "{name}", "kind": "local",
            "user": "gregor", "host": "local", "status": "ready", "progress": 0,
            "created": "2022-10-03 12:00:00.000001", "modified": "2022-10-03 12:00:00.000001",
            "script": f"{name}.sh", "exec": None, "instance": None, "number": 0,
            "parent": [], **attrs}
    lines = "\n".join(f"      {k}: {json.dumps(v) if v is not None else 'null'}"
                      for k, v in base.items())
    return f"    {name}:\n{lines}\n"


# -- the saved format ------------------------------------------------------------------------


def test_saved_format_with_an_edge_mapping_runs_in_order(tmp_path: Path, home: Path) -> None:
    write(tmp_path, "b.sh", 'echo b >> "$JOBMESH_WORKFLOW_DIR/order.txt"\n')
    text = ("workflow:\n  nodes:\n" + saved_node("start") +
            saved_node("a", exec='echo a >> "$JOBMESH_WORKFLOW_DIR/order.txt"', number=1,
                       parent=["start"]) +
            saved_node("b", number=2, parent=["a"]) + saved_node("end", number=3, parent=["b"]) +
            "  dependencies:\n"
            "    start-a: {source: start, destination: a, name: start-a}\n"
            "    a-b: {source: a, destination: b, name: a-b}\n"
            "    b-end: {source: b, destination: end, name: b-end}\n"
            "colors:\n  status: {ready: white, undefined: '#DBFF33', done: '#CCFFCC', "
            "failed: '#FFCCCC', running: '#CCE5FF'}\n")
    wf = write(tmp_path, "saved.yaml", text)
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr + res.stdout
    assert (tmp_path / "order.txt").read_text() == "a\nb\n"  # start.sh/end.sh: the default
    doc = status(home, "saved")
    assert list(doc["jobs"]) == ["start", "a", "b", "end"]
    assert all(j["state"] == "SUCCEEDED" for j in doc["jobs"].values())


def test_empty_dependency_mapping_and_a_bad_edge(tmp_path: Path, home: Path) -> None:
    wf = write(tmp_path, "single.yaml", """
        workflow:
          nodes:
            only:
              exec: echo alone
          dependencies: {}
        """)
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    assert status(home, "single")["jobs"]["only"]["state"] == "SUCCEEDED"
    bad = write(tmp_path, "bad.yaml", """
        workflow:
          nodes:
            a: {exec: 'true'}
          dependencies:
            a-b: {source: a, name: a-b}
        """)
    res = cli(home, "validate", str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "bad.yaml:5" in res.stderr and "dependency 'a-b' needs 'source:' and " \
        "'destination:'" in res.stderr


# -- labels ----------------------------------------------------------------------------------


def test_labels_render_as_cloudmesh_cc_renders_them(tmp_path: Path, home: Path) -> None:
    template = (r"\n{name}\nprogress={progress:>4}\n{{literal}} {cm.epochs} {parent[0]} "
                r"{cm.nope}\nby {user} on {host} #{number}")
    wf = write(tmp_path, "labels.yaml", r"""
        variables: {epochs: 3}
        workflow:
          nodes:
            start:
              exec: echo start
            fetch-data:
              label: 'fetch-data progress=0'
              label_format: 'TEMPLATE'
              kind: local
              host: local
              exec: echo fetched
          dependencies:
            - start,fetch-data
        """.replace("TEMPLATE", template))
    res = cli(home, "run", str(wf))
    assert res.returncode == 0, res.stderr
    out = tmp_path / "labels.svg"
    res = cli(home, "graph", "labels", "-o", str(out))
    assert res.returncode == 0, res.stderr
    node = next(g for g in ET.parse(out).getroot().iterfind(".//s:g", SVG)
                if g.findtext("s:title", namespaces=SVG) == "fetch-data")
    texts = node.findall("s:text", SVG)
    assert [t.text or "" for t in texts] == [
        "", "fetch-data", "progress= 100", "{literal} 3 start N/A",
        f"by {getpass.getuser()} on local #1"]
    ys = [float(t.get("y")) for t in texts]
    assert ys == sorted(ys) and len(set(ys)) == 5  # the empty first line kept its slot
    shape = node.find("s:path", SVG)  # filled,rounded: Graphviz draws a path
    assert shape is not None and shape.get("fill") == "#CCFFCC"


# -- exec: naming a file, notebooks on the job's python3 -------------------------------------


def kernel_venv(path: Path, with_ipykernel: bool) -> Path:
    """A venv of its own; with_ipykernel makes this interpreter's packages (ipykernel)
    importable in it through a .pth file."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    if with_ipykernel:
        site = next(path.glob("lib/python*/site-packages"))
        (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return path


def notebook(path: Path, *cells: str) -> None:
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def test_exec_naming_a_file_runs_it_as_its_type(tmp_path: Path, home: Path) -> None:
    venv = kernel_venv(tmp_path / "kernelenv", with_ipykernel=True)
    write(tmp_path, "b.py", """
        import sys
        from jobmesh import output
        output("lang", "python")
        output("argv", sys.argv[1:])
        """)
    write(tmp_path, "c.sh", '[ -n "$BASH_VERSION" ] && jobmesh output lang bash\n')
    notebook(tmp_path / "a.ipynb", "import sys\nfrom jobmesh import output",
             "output('lang', 'notebook')\noutput('prefix', sys.prefix)")
    # as cloudmesh-cc's tests/workflow-exec/source-exec-all.yaml writes it
    wf = write(tmp_path, "source-exec-all.yaml", """
        workflow:
          nodes:
            start: {label: start, kind: local, host: local, exec: "echo start"}
            a: {label: a.ipynb, kind: local, host: local, exec: a.ipynb}
            b: {label: b.py, kind: local, host: local, exec: b.py --n 2}
            c: {label: c.sh, kind: local, host: local, exec: c.sh}
            end: {label: end, kind: local, host: local, exec: "echo end"}
          dependencies:
            - start,a,b,c,end
        """)
    env = {**os.environ, "PATH": f"{venv}/bin:{os.environ['PATH']}"}  # python3: the venv's
    res = cli(home, "run", str(wf), env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    jobs = status(home, "source-exec-all")["jobs"]
    assert jobs["a"]["outputs"]["lang"] == "notebook"
    assert Path(jobs["a"]["outputs"]["prefix"]).resolve() == venv.resolve()
    assert jobs["b"]["outputs"] == {"lang": "python", "argv": ["--n", "2"]}
    assert jobs["c"]["outputs"] == {"lang": "bash"}


def test_notebook_on_a_python3_without_ipykernel_fails_saying_so(tmp_path: Path,
                                                                 home: Path) -> None:
    bare = kernel_venv(tmp_path / "bare", with_ipykernel=False)
    notebook(tmp_path / "nb.ipynb", "print('never')")
    wf = write_workflow(tmp_path, "nbbare", {"nb.ipynb": {}}, [])
    env = {**os.environ, "PATH": f"{bare}/bin:{os.environ['PATH']}"}
    res = cli(home, "run", str(wf), env=env)
    assert res.returncode == 1
    job = status(home, "nbbare")["jobs"]["nb.ipynb"]
    assert job["state"] == "FAILED"
    assert f"{bare}/bin/python3" in job["reason"] and "has no ipykernel" in job["reason"]
    assert "first python3 on the job's PATH" in job["reason"]


# -- progress lines --------------------------------------------------------------------------


def test_progress_lines_with_prefixes_are_read(tmp_path: Path, home: Path) -> None:
    write(tmp_path, "prefixed.sh", """
        echo "0: # cloudmesh status=running progress=40 pid=$$"
        echo "# # cloudmesh status=running progress=70 pid=$$"
        echo "[INFO] # cloudmesh status=failed progress=75 pid=$$"
        """)
    wf = write_workflow(tmp_path, "prefixes", {"prefixed": {"script": "prefixed.sh"}}, [])
    res = cli(home, "run", str(wf))
    assert res.returncode == 1
    job = status(home, "prefixes")["jobs"]["prefixed"]
    assert job["state"] == "FAILED" and job["progress"] == 75
    assert job["reason"] == "the job reported status=failed"


SIDE_PY = """
    from pathlib import Path
    # what cloudmesh-common's progress(filename=...) appends (stdout=False, stderr=False)
    with open({target}, "a") as f:
        f.write("# cloudmesh status=running progress=30 pid=1\\n")
        f.write("# cloudmesh status={final} progress=60 pid=1 msg=from-{tag}\\n")
    print("nothing on stdout about progress")
    """


def side_scripts(folder: Path) -> None:
    # cloudmesh-cc's docs: the log is named after the script, next to it
    write(folder, "fetch.py", SIDE_PY.format(target='"./fetch.log"', final="running",
                                             tag="fetch.log"))
    # the same through __file__ (the script is staged as script.py in its run directory)
    write(folder, "train.py", SIDE_PY.format(
        target='Path(__file__).with_suffix(".log")', final="failed", tag="file"))


def test_progress_from_the_script_log_locally(tmp_path: Path, home: Path) -> None:
    side_scripts(tmp_path)
    wf = write_workflow(tmp_path, "sidelocal", {"fetch.py": {}, "train.py": {}}, [])
    res = cli(home, "run", str(wf))
    assert res.returncode == 1
    jobs = status(home, "sidelocal")["jobs"]
    assert jobs["fetch.py"]["state"] == "SUCCEEDED" and jobs["fetch.py"]["msg"] == "from-fetch.log"
    assert jobs["train.py"]["state"] == "FAILED" and jobs["train.py"]["progress"] == 60
    assert jobs["train.py"]["reason"] == "the job reported status=failed"


def test_progress_from_the_script_log_in_wsl_contract(tmp_path: Path, home: Path) -> None:
    """Contract test (no WSL here): a stand-in wsl.exe runs sh as WSL would."""
    bindir = tmp_path / "bin"
    stub = write(bindir, "wsl.exe", """
        #!/bin/sh
        while [ $# -gt 0 ]; do case "$1" in -d) shift 2;; -e) shift; break;; *) shift;; esac; done
        exec "$@"
        """)
    stub.chmod(0o755)
    side_scripts(tmp_path)
    where = {"kind": "wsl", "workdir": str(tmp_path / "wslruns")}
    wf = write_workflow(tmp_path, "sidewsl", {"fetch.py": where, "train.py": where}, [])
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    res = cli(home, "run", str(wf), env=env)
    assert res.returncode == 1, res.stderr
    jobs = status(home, "sidewsl")["jobs"]
    assert jobs["fetch.py"]["state"] == "SUCCEEDED" and jobs["fetch.py"]["msg"] == "from-fetch.log"
    assert jobs["train.py"]["state"] == "FAILED" and jobs["train.py"]["progress"] == 60


# -- an SSH host without an SFTP subsystem ---------------------------------------------------

ssh_skip = pytest.mark.skipif(bool(sshhosts.available()), reason=sshhosts.available() or "")


@pytest.fixture(scope="module")
def nosftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sshhosts.Lab,
                                                                        sshhosts.SSHHost]]:
    lab = sshhosts.Lab(tmp_path_factory.mktemp("nosftp"))
    host = lab.loopback("nosftp", sftp=False)
    yield lab, host
    lab.stop()


@ssh_skip
@pytest.mark.ssh
def test_ssh_host_without_sftp_stages_runs_and_fetches(nosftp, tmp_path: Path,
                                                       home: Path) -> None:
    lab, host = nosftp
    probe = subprocess.run(
        ["ssh", "-p", str(host.port), "-i", str(lab.client_key), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={lab.known_hosts}", "-s", "root@127.0.0.1", "sftp"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert probe.returncode != 0 and "subsystem request failed" in probe.stderr  # really none
    side_scripts(tmp_path)
    write(tmp_path, "data.txt", "payload\n")
    write(tmp_path, "copy.sh", "cp data.txt result.txt; echo copied >> result.txt\n"
          "jobmesh progress 50 -m halfway\n")
    venv = kernel_venv(tmp_path / "kernelenv", with_ipykernel=True)
    notebook(tmp_path / "nb.ipynb", "import sys\nfrom jobmesh import output",
             "output('prefix', sys.prefix)")
    wf = write_workflow(tmp_path, "nosftp", {
        "copy.sh": lab.node(host, inputs=["data.txt"], outputs=["result.txt"]),
        "fetch.py": lab.node(host), "train.py": lab.node(host),
        # jobmesh is not installed there: the notebook runner is shipped with the helpers
        "nb.ipynb": lab.node(host, venv=str(venv))}, [])
    res = cli(home, "run", str(wf), timeout=90)
    assert res.returncode == 1, res.stderr + res.stdout  # train.py reports failed
    jobs = status(home, "nosftp")["jobs"]
    assert jobs["copy.sh"]["state"] == "SUCCEEDED", jobs["copy.sh"]
    assert (tmp_path / "result.txt").read_text() == "payload\ncopied\n"
    assert jobs["fetch.py"]["msg"] == "from-fetch.log"
    assert jobs["train.py"]["state"] == "FAILED" and jobs["train.py"]["progress"] == 60
    assert jobs["nb.ipynb"]["state"] == "SUCCEEDED", jobs["nb.ipynb"]
    assert Path(jobs["nb.ipynb"]["outputs"]["prefix"]).resolve() == venv.resolve()


# -- Slurm: srun --label prefixes and <script>.log -------------------------------------------

slurm_skip = pytest.mark.skipif(bool(slurmcluster.available()),
                                reason=slurmcluster.available() or "")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurmcluster.Slurm]:
    cluster = slurmcluster.Slurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


@slurm_skip
@pytest.mark.slurm
def test_slurm_reads_srun_label_prefixes_and_the_script_log(slurm, tmp_path: Path,
                                                            home: Path) -> None:
    write(tmp_path, "labelled.sh", """
        #!/bin/bash
        srun --label echo "# cloudmesh status=failed progress=45 pid=1"
        """)
    write(tmp_path, "side.sh", """
        #!/bin/bash
        echo "# cloudmesh status=running progress=60 pid=1 msg=from-side.log" >> side.log
        """)
    where = {"kind": "slurm", "workdir": str(tmp_path / "slurm-runs")}
    wf = write_workflow(tmp_path, "slurmcc", {"labelled.sh": where, "side.sh": where}, [])
    env = {**slurm.env, "JOBMESH_HOME": str(home)}
    res = cli(home, "run", str(wf), timeout=240, env=env)
    assert res.returncode == 1, res.stderr + res.stdout
    jobs = status(home, "slurmcc", env=env)["jobs"]
    log = Path(jobs["labelled.sh"]["run_dir"], "job.log").read_text()
    assert "0: # cloudmesh status=failed" in log
    assert jobs["labelled.sh"]["state"] == "FAILED" and jobs["labelled.sh"]["progress"] == 45
    assert jobs["side.sh"]["state"] == "SUCCEEDED" and jobs["side.sh"]["msg"] == "from-side.log"


def test_layout_key_and_which_exec_values_name_a_file(tmp_path: Path) -> None:
    from jobmesh.common.loader import load_workflow

    write(tmp_path, "b.py", "print('b')\n")
    wf = write(tmp_path, "style.yaml", """
        workflow:
          layout: 'dummy'
          nodes:
            file: {exec: b.py}
            withargs: {exec: "./b.py --n 2"}
            missing: {exec: nothere.py}
            command: {exec: "python3 b.py"}
            echo: {exec: "echo b.py"}
          dependencies: []
        """)
    loaded = load_workflow(wf)
    jobs = loaded.workflow.jobs
    assert jobs["file"].job_type == "py" and jobs["file"].script == str(tmp_path / "b.py")
    assert jobs["withargs"].job_type == "py" and jobs["withargs"].args == ["--n", "2"]
    for name in ("missing", "command", "echo"):  # stay command lines for bash
        assert jobs[name].job_type == "exec" and jobs[name].script is None
    [warning] = [w for w in loaded.warnings if w.node == "missing"]
    assert "'nothere.py' is not in the workflow's folder, so it runs as a command" in str(warning)
    assert str(warning).startswith(f"{wf}:6: node 'missing' field 'exec'")


def test_progress_from_the_script_log_on_lsf_contract(tmp_path: Path, home: Path) -> None:
    """Contract test (no LSF here): tests/fakelsf's bsub/bjobs print LSF's documented
    formats and really run the jobs."""
    from tests.conftest import ROOT

    bindir = tmp_path / "lsfbin"
    bindir.mkdir()
    for cmd in ("bsub", "bjobs", "bkill"):
        (bindir / cmd).symlink_to(ROOT / "tests" / "fakelsf" / "lsf.py")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "FAKE_LSF_DIR": str(tmp_path / "lsfstate"), "JOBMESH_HOME": str(home)}
    side_scripts(tmp_path)
    where = {"kind": "lsf", "workdir": str(tmp_path / "lsf-runs")}
    wf = write_workflow(tmp_path, "sidelsf", {"fetch.py": where, "train.py": where}, [])
    res = cli(home, "run", str(wf), env=env, timeout=180)
    assert res.returncode == 1, res.stderr
    jobs = status(home, "sidelsf", env=env)["jobs"]
    assert jobs["fetch.py"]["state"] == "SUCCEEDED" and jobs["fetch.py"]["msg"] == "from-fetch.log"
    assert jobs["train.py"]["state"] == "FAILED" and jobs["train.py"]["progress"] == 60
