"""Load a cloudmesh-cc workflow YAML into a checked ``Workflow``.

Every problem becomes a ``SpecIssue`` that names the file, the line, the node and the
field, and says how to fix it. ``load_workflow`` collects them all before it raises.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import control
from .expand import HARD_MAX_JOBS, MAX_JOBS, expand_static
from .loadchecks import NodeChecks, bad_path
from .names import InvalidName, check_job, check_workflow
from .placeholders import substitute_vars
from .ranges import expand, expand_one
from .spec import DEFAULT_COLORS, KINDS, SCRIPT_SUFFIXES, JobSpec, Workflow, check_spec
from .yamlread import Lines, YamlProblem, read_yaml, value_problem

UNEXPECTED = "jobmesh could not check this workflow "
TOP_KEYS = {"workflow", "colors", "name", "defaults", "variables", "description",
            "slurm_dependencies"}
WORKFLOW_KEYS = {"nodes", "dependencies", "name", "layout"}  # layout: cloudmesh-cc's, ignored


@dataclass
class SpecIssue:
    file: str
    line: int | None
    message: str
    node: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = ""
        if self.node:
            what += f"node '{self.node}'"
        if self.field:
            what += f"{' ' if what else ''}field '{self.field}'"
        return f"{where}: {what + ': ' if what else ''}{self.message}"


class SpecError(Exception):
    """The workflow has problems; ``issues`` lists each one."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


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
        return builder.build()
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - never a traceback for a user's file
        raise SpecError(builder.issues + [SpecIssue(file, None, UNEXPECTED + (
            f"({type(exc).__name__}: {str(exc)[:200]}); check the values' types, or "
            "report it"))]) from None


class _Builder(NodeChecks):
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
        if self.issues:
            raise SpecError(self._unique())
        self._check_cycles(jobs, edges, edge_lines)
        if self.issues:
            raise SpecError(self.issues)
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
        seen: set[str] = set()
        return [i for i in self.issues if not (str(i) in seen or seen.add(str(i)))]

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

    def _edges(self, deps: Any, raw: dict[str, tuple[str, dict[str, Any]]]
               ) -> tuple[list[tuple[str, str]], dict[tuple[str, str], int | None]]:
        edges: list[tuple[str, str]] = []
        lines: dict[tuple[str, str], int | None] = {}
        if deps is None:
            return edges, lines
        if isinstance(deps, str):
            deps = [deps]
        keys: list[str] = []
        if isinstance(deps, dict):  # cloudmesh-cc's saved form: name -> {source, destination}
            deps, keys = self._edge_map(deps)
        if not isinstance(deps, list):
            self.err("'dependencies:' must be a list of chains such as 'a,b,c'",
                     "workflow", "dependencies")
            return edges, lines
        for i, chain in enumerate(deps):
            line = self.lines.get("workflow", "dependencies", keys[i] if keys else str(i))
            if isinstance(chain, list):
                chain = ",".join(str(x) for x in chain)
            if not isinstance(chain, str):
                self.issues.append(SpecIssue(self.file, line, f"dependency {chain!r} must be a "
                                             "comma-separated chain such as 'a,b,c'",
                                             field="dependencies"))
                continue
            try:
                names = expand(chain, self._name_budget(0))
            except ValueError as exc:
                self.issues.append(SpecIssue(self.file, line, str(exc), field="dependencies"))
                continue
            for n in names:
                if n not in raw:
                    try:
                        check_job(n)
                    except InvalidName as exc:
                        self.issues.append(SpecIssue(self.file, line, str(exc), node=n,
                                                     field="dependencies"))
                        continue
                    raw[n] = (n, {})
                    self.warnings.append(SpecIssue(
                        self.file, line, "appears only in dependencies; it is created "
                        "with default attributes", node=n))
            for a, b in zip(names, names[1:]):
                if (a, b) not in lines:
                    edges.append((a, b))
                    lines[(a, b)] = line
        return edges, lines

    def _edge_map(self, deps: dict[Any, Any]) -> tuple[list[Any], list[str]]:
        """cloudmesh-cc saves edges as ``a-b: {source: a, destination: b, name: a-b}`` (and
        none as ``{}``): each becomes the chain 'a,b'."""
        chains: list[Any] = []
        keys: list[str] = []
        for key, edge in deps.items():
            src = edge.get("source") if isinstance(edge, dict) else None
            dst = edge.get("destination") if isinstance(edge, dict) else None
            if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
                self.err(f"dependency '{key}' needs 'source:' and 'destination:' node names "
                         "(cloudmesh-cc's saved form), or write chains: "
                         "dependencies: ['a,b']", "workflow", "dependencies", str(key),
                         field="dependencies")
                continue
            chains.append([src, dst])
            keys.append(str(key))
        return chains, keys

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
                continue
            cache = merged.get("cache")
            if cache is not None and not isinstance(cache, bool):
                self.err(f"'cache' must be true or false, not {cache!r} (false: always run "
                         "this job)", *path, "cache", node=name, field="cache")
                continue
            script = self._script(name, merged, path)
            if script is False:
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

    def _check_cycles(self, jobs: dict[str, JobSpec], edges: list[tuple[str, str]],
                      lines: dict[tuple[str, str], int | None]) -> None:
        children: dict[str, list[str]] = {n: [] for n in jobs}
        for a, b in edges:
            children[a].append(b)
        WHITE, GREY, BLACK = 0, 1, 2
        color = dict.fromkeys(jobs, WHITE)
        for root in jobs:
            if color[root] != WHITE:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            trail: list[str] = [root]
            color[root] = GREY
            while stack:
                node, i = stack[-1]
                if i < len(children[node]):
                    stack[-1] = (node, i + 1)
                    child = children[node][i]
                    if color[child] == GREY:
                        cycle = trail[trail.index(child):] + [child]
                        self.issues.append(SpecIssue(
                            self.file, lines.get((node, child)),
                            "dependency cycle: " + " -> ".join(cycle) +
                            "; remove one of these edges", field="dependencies"))
                        return
                    if color[child] == WHITE:
                        color[child] = GREY
                        stack.append((child, 0))
                        trail.append(child)
                else:
                    color[node] = BLACK
                    stack.pop()
                    trail.pop()
