"""Build a workflow in Python and save, submit or run it.

    wf = Workflow("demo")
    wf.add_job("fetch", script="fetch.sh", retries=2)
    wf.add_job("report", exec="echo rows={parents.fetch.outputs.rows}")
    wf.add_dependencies("fetch,report")
    wf.submit(client)          # upload to a running stack ('jobmesh up') and run it
    status = wf.run()          # or run it on the embedded stack, like 'jobmesh run'

The YAML is cloudmesh-cc's format (see ``jobmesh validate``). Relative script and input
paths are relative to ``base_dir`` (default: the current directory when the Workflow is
made); ``submit`` and ``run`` carry those files along next to the YAML.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from jobmesh.common.names import check_job, check_workflow
from jobmesh.common.ranges import expand, expand_one

from .pack import tar_gz

SCRIPT_SUFFIXES = (".sh", ".py", ".ipynb")
TOP_KEYS = ("description", "defaults", "variables", "colors")


class Workflow:
    """A workflow under construction. Names are checked as they are added (ValueError
    for a name jobmesh would refuse); the whole workflow is checked by jobmesh's loader
    when it is submitted or run."""

    def __init__(self, name: str, base_dir: str | os.PathLike[str] | None = None,
                 **top: Any):
        unknown = set(top) - set(TOP_KEYS)
        if unknown:
            raise ValueError(f"unknown workflow keys {sorted(unknown)}; allowed: {TOP_KEYS}")
        self.name = check_workflow(name)
        self.base_dir = Path(base_dir or os.getcwd()).resolve()
        self.top = {k: v for k, v in top.items() if v is not None}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.dependencies: list[str] = []
        self.run_id: str | None = None  # the run ``submit`` started, if any

    def add_job(self, name: str, **attributes: Any) -> Workflow:
        """Add a node; attributes as in the YAML (kind, exec, script, args, env, retries,
        timeout, label, after, inputs, ...); None values are left out. A range name such
        as ``branch[1-4]`` adds four nodes. Returns the workflow, for chaining."""
        for n in expand_one(name):
            check_job(n)
        if name in self.nodes:
            raise ValueError(f"workflow '{self.name}' has a job '{name}' already")
        self.nodes[name] = {k: v for k, v in attributes.items() if v is not None}
        return self

    def add_dependencies(self, chain: str | list[str]) -> Workflow:
        """Add a chain: "a,b,c" (or ["a", "b", "c"]) makes a run before b, b before c.
        cloudmesh ranges work ("prep,b[1-3]"); names only found here become nodes
        with nothing to run (like cloudmesh's start and end)."""
        text = chain if isinstance(chain, str) else ",".join(chain)
        for n in expand(text):
            check_job(n)
        self.dependencies.append(text)
        return self

    # -- files -----------------------------------------------------------------------------

    def _script(self, name: str, attrs: dict[str, Any]) -> Path | None:
        if attrs.get("script") is not None:
            return (self.base_dir / os.path.expanduser(str(attrs["script"]))).resolve()
        if attrs.get("exec") is None and name.endswith(SCRIPT_SUFFIXES):
            return self.base_dir / name
        return None

    def _bundle(self) -> tuple[str, dict[str, Path | bytes]]:
        """(YAML file name, {archive name: file}) with the scripts and inputs placed as
        the YAML refers to them. Raises ValueError when two scripts would collide."""
        files: dict[str, Path | bytes] = {}
        renamed: dict[str, str] = {}
        for name, attrs in self.nodes.items():
            script = self._script(name, attrs)
            if script is None or not script.is_file():
                continue  # a missing script is reported by the loader, with its line
            if script.is_relative_to(self.base_dir):
                arc = script.relative_to(self.base_dir).as_posix()
            else:
                arc = f"scripts/{script.name}"
                if files.get(arc, script) != script:
                    raise ValueError(f"two scripts are called {script.name}; rename one")
            files[arc] = script
            if attrs.get("script") is not None:
                renamed[name] = arc
            for pattern in attrs.get("inputs") or []:
                for match in self.base_dir.glob(str(pattern)):
                    subs = match.rglob("*") if match.is_dir() else [match]
                    for sub in subs:
                        if sub.is_file():
                            files[sub.relative_to(self.base_dir).as_posix()] = sub
        yaml_name = f"{self.name}.yaml"
        if any("/" not in a and a.endswith((".yaml", ".yml")) for a in files):
            yaml_name = "workflow.yaml"  # the gateway picks this one among several
        files[yaml_name] = self._yaml(renamed).encode()
        return yaml_name, files

    def _yaml(self, scripts: dict[str, str]) -> str:
        nodes = {n: {**a, **({"script": scripts[n]} if n in scripts else {})}
                 for n, a in self.nodes.items()}
        doc = {"name": self.name, **self.top,
               "workflow": {"nodes": nodes, "dependencies": list(self.dependencies)}}
        return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))

    # -- output ----------------------------------------------------------------------------

    def to_yaml(self) -> str:
        """The workflow as cloudmesh-cc YAML, script paths as given (relative to
        ``base_dir``)."""
        return self._yaml({})

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the YAML to ``path``, with script paths made relative to its folder so
        ``jobmesh run PATH`` finds them. Returns the path written."""
        target = Path(path)
        folder = target.resolve().parent
        scripts = {}
        for name, attrs in self.nodes.items():
            script = self._script(name, attrs)
            if script is not None and attrs.get("script") is not None:
                scripts[name] = os.path.relpath(script, folder)
        folder.mkdir(parents=True, exist_ok=True)
        target.write_text(self._yaml(scripts))
        return target

    def submit(self, client: Any = None, run: bool = True, replace: bool = False,
               parallel: int | None = None) -> str:
        """Upload to a running stack (``client``, default ``Client()``) as a .tar.gz with
        its scripts and inputs, and start a run unless ``run=False``; returns the
        workflow's name (``run_id`` holds the run's id). Raises ApiError: 409 when the
        name exists (replace=True replaces it), 422 when the workflow is invalid."""
        from .rest import Client

        own = client is None
        client = client or Client()
        try:
            _yaml_name, files = self._bundle()
            client.upload(f"{self.name}.tar.gz", tar_gz(files), replace=replace)
            if run:
                self.run_id = client.run(self.name, parallel)["run"]
        finally:
            if own:
                client.close()
        return self.name

    def run(self, parallel: int | None = None, timeout: float | None = None,
            variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a fresh run on the embedded stack (``jobmesh run --restart``, or the stack
        ``jobmesh up`` runs for ``$JOBMESH_HOME``) and wait for it. Returns the final
        status, as ``jobmesh status NAME -o json`` prints it ("state" is SUCCEEDED,
        FAILED or CANCELED). Raises ValueError when jobmesh refuses the workflow (its
        message names the line and field), TimeoutError after ``timeout`` seconds (the
        jobs keep running), RuntimeError when jobmesh itself fails."""
        folder = Path(tempfile.mkdtemp(prefix=f"jobmesh-{self.name}-"))
        yaml_name, files = self._bundle()
        for arc, src in files.items():
            dest = folder / arc
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, Path):
                shutil.copy2(src, dest)
            else:
                dest.write_bytes(src)
        cmd = ["run", str(folder / yaml_name), "--restart", "--quiet"]
        for key, value in (variables or {}).items():  # -v NAME=VALUE, read as YAML
            cmd += ["-v", f"{key}={json.dumps(value)}"]
        if parallel:
            cmd += ["--parallel", str(parallel)]
        res = _jobmesh(cmd, timeout)
        if res is None:
            raise TimeoutError(f"workflow '{self.name}' did not finish within {timeout}s; "
                               f"its jobs keep running (files in {folder})") from None
        if res.returncode == 2:
            shutil.rmtree(folder, ignore_errors=True)
            raise ValueError(_message(res.stderr))
        if res.returncode not in (0, 1) or "state: " not in res.stderr:
            raise RuntimeError(f"jobmesh run failed ({res.returncode}): {_message(res.stderr)}")
        shutil.rmtree(folder, ignore_errors=True)
        status = _jobmesh(["status", self.name, "-o", "json"], 120)
        if status is None:
            raise RuntimeError(f"jobmesh status gave no answer in 120 s (workflow {self.name})")
        if status.returncode != 0:
            raise RuntimeError(f"jobmesh status failed: {_message(status.stderr)}")
        return json.loads(status.stdout)  # type: ignore[no-any-return]


def _jobmesh(args: list[str], timeout: float | None
             ) -> subprocess.CompletedProcess[str] | None:
    """Run the jobmesh command of this Python with this process's environment; None
    after ``timeout``, once it has stopped as on Ctrl-C (so it stops its own stack and
    leaves the jobs running)."""
    cmd = [sys.executable, "-m", "jobmesh.cli.main", *args]
    with subprocess.Popen(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            return None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _message(stderr: str) -> str:
    lines = [ln.removeprefix("error: ") for ln in stderr.strip().splitlines()
             if ln.strip() and not ln.startswith("warning:")]
    return "; ".join(lines) or "no message"
