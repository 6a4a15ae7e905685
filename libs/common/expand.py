"""``foreach:``: one node becomes one job per combination of values. Pure functions.

A static foreach (lists, ranges, variables) is expanded when the workflow is loaded; a
dynamic one (``{parents.X.outputs.K}``) by the scheduler once X has finished, which
publishes the result as a ``JobsExpanded`` event. Both use ``instances`` and ``wire``.

Names: ``train`` with ``{gpu: [a100], epochs: [10]}`` becomes ``train-gpu_a100-epochs_10``
(job names may hold only ``[A-Za-z0-9_.-]``). When a value cannot appear in a name (a
space, a slash, a mapping, more than 40 characters) or two names would clash, every job
of that node is numbered instead: ``train-1``, ``train-2``, ...

Edges fan out and in: an edge a -> b becomes an edge from every job of a to every job of
b, except that two foreach jobs sharing a key are joined only when their values of the
shared keys are equal (``eval-gpu_a100`` follows ``train-gpu_a100-*`` only).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .names import InvalidName, check_job
from .placeholders import PlaceholderError, substitute_vars
from .ranges import expand as expand_range
from .spec import SHARE_FIELDS_SET_FROM, JobSpec, check_spec

MAX_JOBS = 10_000          # more needs --allow-large
MAX_EDGES = 200_000        # more needs --allow-large
HARD_MAX_JOBS = 500_000    # never, even with --allow-large
HINT_GUI = "'Allow more than 10,000 jobs'"  # the GUI upload form's checkbox
HARD_MAX_EDGES = 5_000_000
DEFAULT_KEY = "item"
RESERVED = {"name", "parents", "outputs", "state", "iteration", "attempt", "exit_code",
            "and", "or", "not", "in", "true", "false", "null", "True", "False", "None"}
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_PARENT_REF = re.compile(r"^\s*\{parents\.([A-Za-z0-9_.-]+?)\.outputs\.([A-Za-z0-9_-]+)\}\s*$")
_VAR_REF = re.compile(r"^\s*\{([A-Za-z_][A-Za-z0-9_]*)\}\s*$")


class ExpandError(ValueError):
    """A foreach that cannot be expanded; ``field`` is the attribute to fix."""

    def __init__(self, message: str, field: str = "foreach"):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Source:
    """One foreach key: its values now, or the parent output that will give them."""
    key: str
    values: tuple[Any, ...] | None = None
    ref: tuple[str, str] | None = None  # (parent job, output key)


def _range_values(items: list[str]) -> list[Any]:
    """Numbers stay numbers, unless a range pads them (08, 09, 10 stay text)."""
    if all(x.isdigit() and (x == "0" or not x.startswith("0")) for x in items):
        return [int(x) for x in items]
    return items


def _source(key: str, raw: Any, variables: dict[str, Any]) -> Source:
    if not _KEY.match(key) or key in RESERVED:
        raise ExpandError(f"foreach key {key!r} must be a name of letters, digits and '_' "
                          f"(and not one of {', '.join(sorted(RESERVED))})")
    where = f"foreach '{key}'" if key != DEFAULT_KEY else "foreach"
    if isinstance(raw, str):
        m = _PARENT_REF.match(raw)
        if m:
            return Source(key, ref=(m.group(1), m.group(2)))
        m = _VAR_REF.match(raw)
        if m:
            if m.group(1) not in variables:
                raise ExpandError(f"{where} uses the unknown variable '{m.group(1)}'; declare "
                                  "it under variables:")
            value = variables[m.group(1)]
            if not isinstance(value, list):
                raise ExpandError(f"{where} needs a list, but variable '{m.group(1)}' is "
                                  f"{type(value).__name__} {value!r}")
            raw = value
        elif "[" in raw:
            try:
                raw = _range_values(expand_range(raw, HARD_MAX_JOBS))  # counted first
            except ValueError as exc:
                raise ExpandError(f"{where}: {exc}") from None
    if not isinstance(raw, list):
        raise ExpandError(f"{where} must be a list (e.g. [a100, v100]), a range such as "
                          "'n[1-3]', a variable '{name}' holding a list, or a parent output "
                          f"'{{parents.JOB.outputs.KEY}}'; got {type(raw).__name__} {raw!r}")
    if not raw:
        raise ExpandError(f"{where} is an empty list")
    return Source(key, values=tuple(raw))


def sources(foreach: Any, variables: dict[str, Any]) -> list[Source]:
    """Read a node's ``foreach:``. Raises ExpandError."""
    if isinstance(foreach, dict):
        if not foreach:
            raise ExpandError("foreach is empty; give at least one key with a list")
        return [_source(str(k), v, variables) for k, v in foreach.items()]
    if isinstance(foreach, (list, str)):
        return [_source(DEFAULT_KEY, foreach, variables)]
    raise ExpandError("foreach must be a mapping of lists, e.g. {gpu: [a100, v100], epochs: "
                      f"[10, 30]}}, or one list; got {type(foreach).__name__} {foreach!r}")


def count(lists: Sequence[tuple[str, Iterable[Any]]], mode: str) -> int:
    sizes = [len(list(v)) for _, v in lists]
    if mode == "zip":
        if len(set(sizes)) > 1:
            shown = ", ".join(f"{k} has {n}" for (k, _), n in zip(lists, sizes))
            raise ExpandError(f"foreach_mode zip needs lists of the same length: {shown}",
                              "foreach_mode")
        return sizes[0] if sizes else 0
    return math.prod(sizes)


def combinations(lists: Sequence[tuple[str, Iterable[Any]]], mode: str
                 ) -> list[dict[str, Any]]:
    """Every combination (product) or the lists paired up (zip), as {key: value}."""
    count(lists, mode)  # checks zip lengths
    keys = [k for k, _ in lists]
    rows = zip(*(v for _, v in lists)) if mode == "zip" else itertools.product(
        *(v for _, v in lists))
    return [dict(zip(keys, row)) for row in rows]


def _safe(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        text = str(value)
        return text if _SAFE.match(text) and ".." not in text else None
    return None


def instance_names(node: str, combos: list[dict[str, Any]]) -> list[str]:
    """``node-k1_v1-k2_v2`` per combination, or ``node-1``... when that is not possible."""
    names: list[str] = []
    for combo in combos:
        parts = [_safe(v) for v in combo.values()]
        if any(p is None for p in parts):
            break
        names.append(node + "".join(f"-{k}_{p}" for k, p in zip(combo, parts)))
    if len(names) == len(combos) and len(set(names)) == len(names):
        try:
            for n in names:
                check_job(n)
            return names
        except InvalidName:
            pass
    return [f"{node}-{i}" for i in range(1, len(combos) + 1)]


def _sub(value: Any, params: dict[str, Any], shell: bool = False) -> Any:
    if isinstance(value, str):
        return substitute_vars(value, params, shell)
    if isinstance(value, list):
        return [_sub(v, params) for v in value]
    if isinstance(value, dict):
        return {k: _sub(v, params) for k, v in value.items()}
    return value


BAKED = ("exec", "host", "user", "label", "pool", "venv")
BAKED_LISTS = ("args", "inputs", "outputs")
NOT_BAKED = {"name", "script", "when", "repeat", "foreach", "foreach_mode", "params",
             "foreach_of", "group", "after"}


def instances(spec: JobSpec, combos: list[dict[str, Any]]) -> dict[str, JobSpec]:
    """One JobSpec per combination, with the values put into its fields: ``{gpu}`` in
    exec, args, env, host, user, pool, label, inputs, outputs, notebook parameters and any
    other text attribute (e.g. a Slurm partition)."""
    out: dict[str, JobSpec] = {}
    base = spec.model_dump(exclude={"foreach", "foreach_mode"})
    # Every instance is given the same fields: a big foreach's share one pydantic
    # ``model_fields_set`` (a set of ~27 names, ~2 KB a job; spec.share_fields_set).
    share = len(combos) >= SHARE_FIELDS_SET_FROM
    given: set[str] | None = None
    for name, combo in zip(instance_names(spec.name, combos), combos):
        params = {**spec.params, **combo}
        try:  # exec is a shell command: a value goes in as one quoted word
            data = {k: (v if k in NOT_BAKED else _sub(v, params, k == "exec"))
                    for k, v in base.items()}
            data.update(name=name, params=params, foreach_of=spec.name)
            job = JobSpec.model_validate(data)
            if share:
                if given is None or job.__pydantic_fields_set__ != given:
                    given = job.__pydantic_fields_set__
                else:
                    object.__setattr__(job, "__pydantic_fields_set__", given)
        except PlaceholderError as exc:
            raise ExpandError(f"job '{name}': {exc}", "exec") from None
        except ValidationError as exc:
            e = exc.errors()[0]
            fld = ".".join(str(x) for x in e["loc"]) or "foreach"
            raise ExpandError(f"job '{name}': {fld}: {e['msg'].removeprefix('Value error, ')}",
                              str(e["loc"][0]) if e["loc"] else "foreach") from None
        problems = check_spec(job)  # e.g. a pool or a partition a value made invalid
        if problems:
            raise ExpandError(f"job '{name}': {problems[0][1]}", problems[0][0])
        out[name] = job
    return out


def _group_key(params: dict[str, Any], keys: list[str]) -> str:
    return json.dumps([params.get(k) for k in keys], sort_keys=True, default=str)


def pairs(a: list[tuple[str, dict[str, Any]]], b: list[tuple[str, dict[str, Any]]]
          ) -> Iterable[tuple[str, str]]:
    """Edges between two sets of jobs (name, params): all pairs, or, when the two sides
    share foreach keys, the pairs whose shared values are equal."""
    shared = sorted(set(a[0][1]) & set(b[0][1])) if a and b else []
    if not shared:
        return ((x, y) for x, _ in a for y, _ in b)
    groups: dict[str, list[str]] = {}
    for y, p in b:
        groups.setdefault(_group_key(p, shared), []).append(y)
    return ((x, y) for x, p in a for y in groups.get(_group_key(p, shared), ()))


def count_pairs(a: list[tuple[str, dict[str, Any]]], b: list[tuple[str, dict[str, Any]]]
                ) -> int:
    shared = sorted(set(a[0][1]) & set(b[0][1])) if a and b else []
    if not shared:
        return len(a) * len(b)
    sizes: dict[str, int] = {}
    for _, p in b:
        k = _group_key(p, shared)
        sizes[k] = sizes.get(k, 0) + 1
    return sum(sizes.get(_group_key(p, shared), 0) for _, p in a)


def too_large(jobs: int, edges: int, allow_large: bool) -> str | None:
    """Why a workflow of this size is refused, or None."""
    if jobs > HARD_MAX_JOBS:
        return f"{jobs} jobs is more than jobmesh's limit of {HARD_MAX_JOBS}"
    if edges > HARD_MAX_EDGES:
        return f"{edges} dependencies is more than jobmesh's limit of {HARD_MAX_EDGES}"
    if allow_large:
        return None
    if jobs > MAX_JOBS:
        return (f"{jobs} jobs is more than {MAX_JOBS}; pass --allow-large (jobmesh run/"
                f"validate; allow_large in the REST API and the Python client; {HINT_GUI} "
                "in the web GUI's upload form) if you mean it")
    if edges > MAX_EDGES:
        return (f"{edges} dependencies is more than {MAX_EDGES}; pass --allow-large (or "
                f"allow_large, or {HINT_GUI} in the GUI) if you mean it")
    return None


def dynamic_values(srcs: list[Source], outputs: dict[str, dict[str, Any]]) -> list[
        tuple[str, list[Any]]]:
    """The lists of a dynamic foreach, now that its parents have finished. Raises
    ExpandError when a parent has no such output or it is not a list."""
    lists: list[tuple[str, list[Any]]] = []
    for s in srcs:
        if s.ref is None:
            lists.append((s.key, list(s.values or ())))
            continue
        job, key = s.ref
        if key not in outputs.get(job, {}):
            raise ExpandError(f"parent '{job}' has no output '{key}' to expand over")
        value = outputs[job][key]
        if not isinstance(value, list):
            raise ExpandError(f"foreach over {{parents.{job}.outputs.{key}}} needs a list, "
                              f"got {type(value).__name__} {value!r}")
        lists.append((s.key, value))
    return lists


def expand_node(spec: JobSpec, lists: list[tuple[str, list[Any]]], parents: list[
        tuple[str, dict[str, Any]]], children: list[tuple[str, dict[str, Any]]]
                ) -> tuple[dict[str, JobSpec], list[tuple[str, str]]]:
    """A dynamic foreach node's jobs and edges: its parents fan out to the new jobs, the
    new jobs fan in to its children."""
    jobs = instances(spec, combinations(lists, spec.foreach_mode))
    new = [(n, j.params) for n, j in jobs.items()]
    edges: list[tuple[str, str]] = []
    for p in parents:
        edges.extend(pairs([p], new))
    for c in children:
        edges.extend(pairs(new, [c]))
    return jobs, edges


@dataclass
class Static:
    """The result of expanding a workflow's static foreach nodes at load time."""
    jobs: dict[str, JobSpec]
    edges: list[tuple[str, str]]
    expanded: dict[str, list[str]]           # foreach node -> its jobs
    issues: list[tuple[str, str, str]]       # (node, field, message)
    complete: bool = True                    # False: too large or a clash, not expanded


def expand_static(jobs: dict[str, JobSpec], edges: list[tuple[str, str]],
                  variables: dict[str, Any], allow_large: bool = False) -> Static:
    """Expand every foreach whose lists are known now; dynamic ones stay one node. The
    size is checked before anything is built, so a typo cannot make a million jobs. A
    node whose foreach is wrong is reported and stays a plain node."""
    issues: list[tuple[str, str, str]] = []
    jobs = dict(jobs)
    plans: dict[str, list[tuple[str, list[Any]]]] = {}
    sizes: dict[str, int] = {}
    total = 0
    for name, spec in jobs.items():
        if spec.foreach is None:
            total += 1
            continue
        try:
            srcs = sources(spec.foreach, variables)
            if any(s.ref for s in srcs):
                total += 1  # dynamic: grows when its parent has finished
                continue
            lists = [(s.key, list(s.values or ())) for s in srcs]
            sizes[name] = count(lists, spec.foreach_mode)
        except ExpandError as exc:
            issues.append((name, exc.field, str(exc)))
            jobs[name] = JobSpec(name=name)
            total += 1
            continue
        plans[name] = lists
        total += sizes[name]
    why = too_large(total, 0, allow_large)
    if why:
        big = max(sizes, key=lambda n: sizes[n]) if sizes else next(iter(jobs), "")
        issues.append((big, "foreach", f"expands into {sizes.get(big, 1)} jobs, so the "
                       f"workflow would have {why}"))
        return Static(jobs, edges, {}, issues, complete=False)
    out: dict[str, JobSpec] = {}
    expanded: dict[str, list[str]] = {}
    clash = False
    for name, spec in jobs.items():
        if name not in plans:
            out[name] = spec
            continue
        try:
            made = instances(spec, combinations(plans[name], spec.foreach_mode))
        except ExpandError as exc:
            issues.append((name, exc.field, str(exc)))
            clash = True
            continue
        expanded[name] = list(made)
        for n, job in made.items():
            if n in jobs or n in out:
                issues.append((name, "foreach", f"makes a job named '{n}', which exists "
                               "already; rename one of them"))
                clash = True
            out[n] = job
    if clash:
        return Static(jobs, edges, {}, issues, complete=False)
    if not expanded:
        return Static(out, edges, expanded, issues)

    def side(n: str) -> list[tuple[str, dict[str, Any]]]:
        return [(x, out[x].params) for x in expanded[n]] if n in expanded else [
            (n, out[n].params)]

    n_edges = sum(count_pairs(side(a), side(b)) for a, b in edges)
    why = too_large(len(out), n_edges, allow_large)
    if why:
        big = max(sizes, key=lambda n: sizes[n])
        issues.append((big, "foreach", f"the expanded workflow would have {why}"))
        return Static(jobs, edges, {}, issues, complete=False)
    new_edges: list[tuple[str, str]] = []
    for a, b in edges:
        if a in expanded or b in expanded:
            new_edges.extend(pairs(side(a), side(b)))
        else:
            new_edges.append((a, b))
    return Static(out, new_edges, expanded, issues)
