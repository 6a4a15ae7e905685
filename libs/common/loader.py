"""Load a cloudmesh-cc workflow YAML into a checked ``Workflow``.

This module reads the file and its top level (name, variables, defaults, colors, foreach
expansion); ``loadnodes`` reads ``nodes:``, ``loadedges`` reads ``dependencies:``,
``loadchecks`` checks a node's files and values, and ``loadissues`` holds ``SpecIssue``.

Every problem becomes a ``SpecIssue`` that names the file, the line, the node and the
field, and says how to fix it. ``load_workflow`` collects them all before it raises.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import control
from .expand import expand_static
from .loadedges import EdgeBuilder
from .loadissues import SpecError, SpecIssue
from .names import InvalidName, check_workflow
from .placeholders import substitute_vars
from .spec import DEFAULT_COLORS, JobSpec, Workflow, share_fields_set
from .yamlread import Lines, YamlProblem, read_yaml, value_problem

__all__ = ["UNEXPECTED", "Loaded", "SpecError", "SpecIssue", "load_workflow",
           "parse_workflow"]

UNEXPECTED = "jobmesh could not check this workflow "
TOP_KEYS = {"workflow", "colors", "name", "defaults", "variables", "description",
            "slurm_dependencies"}
WORKFLOW_KEYS = {"nodes", "dependencies", "name", "layout"}  # layout: cloudmesh-cc's, ignored



@dataclass
class Loaded:
    workflow: Workflow
    warnings: list[SpecIssue] = field(default_factory=list)


def load_workflow(path: str | os.PathLike[str], name: str | None = None,
                  variables: dict[str, Any] | None = None, allow_large: bool = False
                  ) -> Loaded:
    """Read and check a workflow file. Raises SpecError with every problem found.
    ``variables`` override the file's ``variables:`` (each must be declared there);
    ``allow_large`` allows more than ``expand.MAX_JOBS`` jobs after foreach expansion."""
    p = Path(path)
    shown = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue(shown, None, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([SpecIssue(shown, None, f"cannot read: {exc}")]) from None
    return parse_workflow(text, shown, base_dir=p.resolve().parent, name=name, stem=p.stem,
                          variables=variables, allow_large=allow_large, confine=False)


def parse_workflow(
    text: str,
    file: str,
    base_dir: str | os.PathLike[str],
    name: str | None = None,
    stem: str | None = None,
    variables: dict[str, Any] | None = None,
    allow_large: bool = False,
    confine: bool = True,
) -> Loaded:
    """Check a workflow's text. ``confine``: its scripts must be inside ``base_dir`` (an
    uploaded workflow; the CLI reads the user's own files and passes False)."""
    base = Path(base_dir)
    try:
        data, lines = read_yaml(text)
    except YamlProblem as exc:
        raise SpecError([SpecIssue(file, exc.line, exc.message)]) from None
    builder = _Builder(data, lines, file, base, name, stem)
    builder.overrides, builder.allow_large = dict(variables or {}), allow_large
    builder.confine = confine
    try:
        loaded = builder.build()
        share_fields_set(loaded.workflow.jobs.values())  # a big sweep: ~0.7 KB a job less
        return loaded
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - never a traceback for a user's file
        raise SpecError(builder.issues + [SpecIssue(file, None, UNEXPECTED + (
            f"({type(exc).__name__}: {str(exc)[:200]}); check the values' types, or "
            "report it"))]) from None


class _Builder(EdgeBuilder):
    def __init__(self, data: Any, lines: Lines, file: str, base: Path, name: str | None,
                 stem: str | None):
        self.data, self.lines, self.file, self.base = data, lines, file, base
        self.name, self.stem = name, stem
        self.issues: list[SpecIssue] = []
        self.warnings: list[SpecIssue] = []
        self.overrides: dict[str, Any] = {}
        self.allow_large = False
        self.confine = True  # scripts must be inside the workflow's folder
        self.keys: dict[str, str] = {}  # node name -> its key as written (ranges)

    def err(self, message: str, *path: str, node: str | None = None,
            field: str | None = None) -> None:
        self.issues.append(SpecIssue(self.file, self.lines.get(*path), message, node, field))

    def build(self) -> Loaded:
        data = self.data
        if not isinstance(data, dict) or not isinstance(data.get("workflow"), dict):
            self.err("the file must hold a mapping with a 'workflow:' section "
                     "(with 'nodes:' and 'dependencies:')")
            raise SpecError(self.issues)
        for dup_path, line in self.lines.duplicates:
            node = dup_path[2] if dup_path[:2] == ("workflow", "nodes") and len(
                dup_path) == 3 else None
            what = f"duplicate node name '{node}'" if node else \
                f"duplicate key '{dup_path[-1]}' under {'.'.join(dup_path[:-1]) or 'the top'}"
            self.issues.append(SpecIssue(self.file, line, what + "; each may appear once",
                                         node=node))
        for key in data:
            if key not in TOP_KEYS:
                self.err(f"unknown top-level key '{key}'; allowed: {', '.join(sorted(TOP_KEYS))}",
                         str(key))
        wf = data["workflow"]
        for key in wf:
            if key not in WORKFLOW_KEYS:
                self.err(f"unknown key '{key}' under workflow:; allowed: nodes, dependencies, "
                         "name, layout",
                         "workflow", str(key))
        name = self._workflow_name(data)
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            self.err("'defaults:' must be a mapping of node attributes", "defaults")
            defaults = {}
        if "slurm_dependencies" in data:  # the whole workflow's default (docs/hpc.md)
            chain = data["slurm_dependencies"]
            if isinstance(chain, bool):
                defaults = {"slurm_dependencies": chain, **defaults}
            else:
                self.err(f"'slurm_dependencies' must be true or false, not {chain!r}",
                         "slurm_dependencies")
        variables = self._variables(data.get("variables"))
        raw_nodes = self._raw_nodes(wf.get("nodes"))
        edges, edge_lines = self._edges(wf.get("dependencies"), raw_nodes)
        jobs = self._jobs(raw_nodes, defaults)
        for job in jobs.values():
            for parent in job.after:
                if parent not in jobs:
                    self.err(f"unknown dependency '{parent}': no node has that name",
                             "workflow", "nodes", job.name, "after", node=job.name, field="after")
                elif (parent, job.name) not in edge_lines:
                    edges.append((parent, job.name))
                    edge_lines[(parent, job.name)] = self.lines.get(
                        "workflow", "nodes", job.name, "after")
        final_jobs, final_edges = self._expand(raw_nodes, jobs, edges, variables)
        parents_of: dict[str, set[str]] = {n: set() for n in final_jobs}
        for a, b in final_edges:
            if b in parents_of:
                parents_of[b].add(a)
        for job in final_jobs.values():
            self._check_refs(job, parents_of[job.name])
            self._check_filled(job, variables)
        colors = dict(DEFAULT_COLORS)
        colors.update(self._colors(data.get("colors")))
        # Cycles among the nodes that loaded, also when others have errors: every
        # problem at once.
        self._check_cycles(jobs, [e for e in edges if e[0] in jobs and e[1] in jobs],
                           edge_lines)
        if self.issues:
            raise SpecError(self._unique())
        for job in final_jobs.values():
            if job.label and "{" in job.label and variables:
                job.label = substitute_vars(job.label, {k: v for k, v in variables.items()
                                                        if k not in job.params})
        workflow = Workflow(name=name, jobs=final_jobs, edges=final_edges, colors=colors,
                            base_dir=str(self.base), source=self.file, variables=variables,
                            allow_large=self.allow_large)
        return Loaded(workflow, self.warnings)

    def _expand(self, raw: dict[str, Any], jobs: dict[str, JobSpec],
                edges: list[tuple[str, str]], variables: dict[str, Any]
                ) -> tuple[dict[str, JobSpec], list[tuple[str, str]]]:
        """Expand static foreach nodes and check control flow. Nodes with errors of their
        own stand in as plain nodes, so one mistake is not reported twice."""
        ok = not self.issues
        some = {n: jobs.get(n) or JobSpec(name=n) for n in raw}
        static = expand_static(some, [e for e in edges if e[0] in some and e[1] in some],
                               variables, self.allow_large)
        for node, fld, msg in static.issues:
            self.err(msg, *self._where(node, fld), node=node, field=fld)
        if not static.complete:
            return jobs, edges
        for node, fld, msg in control.check(static.jobs, static.edges, variables,
                                            static.expanded):
            self.err(msg, *self._where(node, fld), node=node, field=fld)
        return (static.jobs, static.edges) if ok else (jobs, edges)

    def _unique(self) -> list[SpecIssue]:
        return list({str(i): i for i in self.issues}.values())  # first place, same text

    def _where(self, node: str, fld: str) -> tuple[str, ...]:
        return ("workflow", "nodes", self.keys.get(node, node), fld.split(".")[0])

    def _variables(self, given: Any) -> dict[str, Any]:
        """The file's variables with the caller's overrides (-v NAME=VALUE)."""
        variables = given or {}
        if not isinstance(variables, dict):
            self.err("'variables:' must be a mapping of names to values", "variables")
            variables = {}
        variables = {str(k): v for k, v in variables.items()}
        for key, value in self.overrides.items():
            if key not in variables:
                known = ", ".join(sorted(variables)) or "none"
                self.err(f"unknown variable '{key}' given to override; declare it under "
                         f"variables: (declared: {known})", "variables", field="variables")
            else:
                bad = value_problem(value)
                if bad:
                    self.err(f"variable '{key}' given to override: {bad}", "variables",
                             field="variables")
                    continue
                variables[key] = value
        return variables

    def _workflow_name(self, data: dict[str, Any]) -> str:
        candidates = [self.name, data.get("name"), data["workflow"].get("name"), self.stem]
        name = next((c for c in candidates if c), None)
        where = ("name",) if data.get("name") else ("workflow", "name")
        if name is None:
            self.err("the workflow has no name; set 'name:' in the file or pass one",
                     field="name")
            return "invalid"
        try:
            return check_workflow(str(name))
        except InvalidName as exc:
            hint = "" if self.name or data.get("name") else "; set 'name:' or use --name"
            self.err(f"{exc}{hint}", *where, field="name")
            return "invalid"
