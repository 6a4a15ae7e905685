"""The loader's reading of ``nodes:``: range keys to node names, defaults merged, kinds,
cloudmesh-cc's saved forms (``exec: b.py``, ``<name>.sh``), and each node validated into a
``JobSpec``. ``NodeBuilder`` is a mixin of the loader's ``_Builder`` (split from loader.py)."""

from __future__ import annotations

import shlex
from typing import Any

from pydantic import ValidationError

from .expand import HARD_MAX_JOBS, MAX_JOBS
from .loadchecks import NodeChecks, bad_path
from .loadissues import SpecIssue
from .names import InvalidName, check_job
from .ranges import expand_one
from .spec import KINDS, SCRIPT_SUFFIXES, JobSpec, check_spec


class NodeBuilder(NodeChecks):
    issues: list[SpecIssue]
    warnings: list[SpecIssue]
    keys: dict[str, str]
    allow_large: bool

    def _raw_nodes(self, nodes: Any) -> dict[str, tuple[str, dict[str, Any]]]:
        """name -> (key as written, attributes). Range keys expand to several nodes."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        if nodes is None:
            return out
        if not isinstance(nodes, dict):
            self.err("'nodes:' must be a mapping of node name to attributes", "workflow", "nodes")
            return out
        for key, attrs in nodes.items():
            key = str(key)
            if attrs is None:
                attrs = {}
            if not isinstance(attrs, dict):
                self.err("a node's value must be a mapping of attributes", "workflow", "nodes",
                         key, node=key)
                continue
            try:
                names = expand_one(key, self._name_budget(len(out)))
            except ValueError as exc:
                self.err(str(exc), "workflow", "nodes", key, node=key)
                continue
            given = attrs.get("name")
            if given is not None and str(given) != key and len(names) == 1:
                self.err(f"name: '{given}' differs from the node's key; the key is the node's "
                         "name, so remove 'name:' or make them equal",
                         "workflow", "nodes", key, "name", node=key, field="name")
            for n in names:
                try:
                    check_job(n)
                except InvalidName as exc:
                    self.err(str(exc), "workflow", "nodes", key, node=n, field="name")
                    continue
                if n in out:
                    self.err(f"duplicate node name '{n}'", "workflow", "nodes", key, node=n)
                    continue
                out[n] = (key, attrs)
                self.keys[n] = key
        return out

    def _name_budget(self, used: int) -> int:
        """How many more node names ranges may make (counted before expanding)."""
        return (HARD_MAX_JOBS if self.allow_large else MAX_JOBS) - used
    def _jobs(self, raw: dict[str, tuple[str, dict[str, Any]]], defaults: dict[str, Any]
              ) -> dict[str, JobSpec]:
        jobs: dict[str, JobSpec] = {}
        for name, (key, attrs) in raw.items():
            merged = {**defaults, **attrs, "name": name}
            path = ("workflow", "nodes", key)
            kind = merged.get("kind", "local")
            if kind not in KINDS:
                self.err(f"unknown kind '{kind}'; use one of {', '.join(KINDS)}",
                         *path, "kind", node=name, field="kind")
                continue
            ok = self._options(name, kind, attrs, merged, path)
            self._saved_script(name, merged)
            if merged.get("exec") is not None and merged.get("script") is not None:
                self.err("give either 'exec:' or 'script:', not both", *path, "exec",
                         node=name, field="exec")
                continue
            self._exec_file(name, merged, path)
            chain = merged.get("slurm_dependencies")
            if chain is not None and not isinstance(chain, bool):
                self.err(f"'slurm_dependencies' must be true or false, not {chain!r}", *path,
                         "slurm_dependencies", node=name, field="slurm_dependencies")
                ok = False
            cache = merged.get("cache")
            if cache is not None and not isinstance(cache, bool):
                self.err(f"'cache' must be true or false, not {cache!r} (false: always run "
                         "this job)", *path, "cache", node=name, field="cache")
                ok = False
            script = self._script(name, merged, path)  # a missing script: also beside others
            if script is False or not ok:
                continue
            merged["script"] = script
            self._venv(name, merged, path)
            if merged.get("exec") is not None:
                merged["exec"] = str(merged["exec"])
            try:
                job = JobSpec.model_validate(merged)
            except ValidationError as exc:
                for e in exc.errors():
                    fld = ".".join(str(x) for x in e["loc"]) or None
                    msg = e["msg"].removeprefix("Value error, ")
                    top = str(e["loc"][0]) if e["loc"] else ""
                    self.err(msg, *path, top, node=name, field=fld)
                continue
            problems = check_spec(job)  # pool, line breaks in directives, env names, port
            for fld, msg in problems:
                self.err(msg, *path, fld, node=name, field=fld)
            if not problems:
                jobs[name] = job
        return jobs

    def _saved_script(self, name: str, attrs: dict[str, Any]) -> None:
        """A file cloudmesh-cc saved (its nodes carry ``instance:``) names ``<name>.sh`` as
        every node's script, its default, even for a node that runs exec: or nothing:
        that default is no script unless the file is there and there is no exec:."""
        if "instance" not in attrs or attrs.get("script") != f"{name}.sh":
            return
        if attrs.get("exec") is not None or not (self.base / f"{name}.sh").is_file():
            del attrs["script"]

    def _exec_file(self, name: str, attrs: dict[str, Any], path: tuple[str, ...]) -> None:
        """cloudmesh-cc's ``exec: b.py``: a .sh, .py or .ipynb file in the workflow's folder
        runs as that script, by its type; words after it become its args."""
        cmd = attrs.get("exec")
        try:
            words = shlex.split(cmd) if isinstance(cmd, str) else []
        except ValueError:
            return
        if not words or not words[0].endswith(SCRIPT_SUFFIXES) or words[0].startswith(
                ("/", "~")) or ".." in words[0].split("/"):
            return
        if bad_path(words[0]) is not None or not (self.base / words[0]).is_file():
            if len(words) == 1 and "{" not in words[0]:
                self.warnings.append(SpecIssue(
                    self.file, self.lines.get(*path, "exec"), f"'{words[0]}' is not in the "
                    "workflow's folder, so it runs as a command; put the file next to the "
                    "workflow to run it as a script", node=name, field="exec"))
            return
        if len(words) > 1 and attrs.get("args"):
            return
        attrs["script"] = words[0]
        del attrs["exec"]
        if len(words) > 1:
            attrs["args"] = words[1:]
