"""Control flow shared by the loader, the scheduler core and the monitor fold. Pure.

- ``check``: load-time checks of ``when:``, ``repeat:``, ``group:`` and dynamic
  ``foreach:`` (syntax, names, parents, groups), as (node, field, message) issues.
- ``scope``: the names an expression sees for one job.
- ``repeat_done``: has a repeat loop finished after this iteration?
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .expand import ExpandError, sources
from .expr import JOB_FIELDS, ExprError, compile_expr, resolver, split_job_path
from .placeholders import parent_refs
from .spec import JobSpec

Issue = tuple[str, str, str]  # (node, field, message)


def _node(spec: JobSpec) -> str:
    return spec.foreach_of or spec.name


def _check_expr(spec: JobSpec, field: str, text: str, parents: list[str],
                variables: Mapping[str, Any], all_jobs: Mapping[str, Any],
                expanded: Mapping[str, list[str]], until: bool) -> list[Issue]:
    try:
        expr = compile_expr(text)
    except ExprError as exc:
        return [(_node(spec), field, f"syntax error in {text!r}: {exc}")]
    jobs = dict.fromkeys([spec.name] if until else parents)
    bare = set(variables) | set(spec.params) | ({"iteration", "outputs"} if until else set())
    out: list[Issue] = []
    for path in expr.names:
        hit = split_job_path(path, jobs)
        if hit is not None and all_jobs[hit[0]].foreach is not None:
            out.append((_node(spec), field, f"in {text!r}: '{hit[0]}' is a foreach over a "
                        "parent's output, so its jobs get their names when it expands; "
                        "a condition cannot name it"))
            continue
        if hit is not None:
            rest = hit[1]
            if rest[0] not in JOB_FIELDS or (rest[0] == "outputs" and len(rest) < 2):
                out.append((_node(spec), field, f"'{path}': a job offers outputs.KEY, "
                            f"{', '.join(f for f in JOB_FIELDS if f != 'outputs')}"))
            continue
        head = path.split(".")[0]
        if head in bare:
            if head == "outputs" and "." not in path:
                out.append((_node(spec), field, "'outputs' needs a key: outputs.KEY"))
            continue
        other = split_job_path(path, all_jobs)
        prefix = path.rsplit(".", 1)[0] if "." in path else path
        template = next((t for t in expanded if path.startswith(t + ".")), None)
        if template is not None:
            msg = (f"'{template}' was expanded by foreach into {len(expanded[template])} "
                   f"jobs; name one of them (e.g. '{expanded[template][0]}') and make it a "
                   "parent")
        elif other is not None:
            msg = (f"'{other[0]}' is not a parent of '{spec.name}'; add a dependency "
                   f"{other[0]},{spec.name}")
        elif "." in path:
            msg = f"'{prefix}' is neither a parent of '{spec.name}' nor a variable"
        else:
            msg = f"unknown variable '{head}'; declare it under variables:"
        out.append((_node(spec), field, f"in {text!r}: {msg}"))
    return out


def check(jobs: Mapping[str, JobSpec], edges: list[tuple[str, str]],
          variables: Mapping[str, Any], expanded: Mapping[str, list[str]]) -> list[Issue]:
    """Every control-flow problem of an expanded workflow, one issue per node and field."""
    parents: dict[str, list[str]] = {n: [] for n in jobs}
    children: dict[str, list[str]] = {n: [] for n in jobs}
    for a, b in edges:
        parents[b].append(a)
        children[a].append(b)
    issues: list[Issue] = []
    seen: set[tuple[str | None, str, str]] = set()  # one check per foreach node and text
    for name, spec in jobs.items():
        texts = [spec.exec or "", *spec.args, *spec.env.values()]
        for ref, key in {r for t in texts if "{parents." in t for r in parent_refs(t)}:
            if ref in parents[name] and jobs[ref].foreach is not None:
                issues.append((_node(spec), "exec", f"{{parents.{ref}.outputs.{key}}}: '{ref}' "
                               "is a foreach over a parent's output, so its jobs get their "
                               "names when it expands; no single output can be named"))
        for field, text, until in (("when", spec.when, False),
                                   ("repeat.until", spec.repeat.until if spec.repeat else None,
                                    True)):
            if text is None:
                continue
            once = (spec.foreach_of, field, text)
            if spec.foreach_of and once in seen:
                continue
            seen.add(once)
            issues += _check_expr(spec, field, text, parents[name], variables, jobs,
                                  expanded, until)
        if spec.foreach is not None:
            try:
                for s in sources(spec.foreach, dict(variables)):
                    if s.ref is None:
                        continue
                    if s.ref[0] not in parents[name]:
                        issues.append((name, "foreach", f"{{parents.{s.ref[0]}.outputs."
                                       f"{s.ref[1]}}} refers to '{s.ref[0]}', which is not a "
                                       f"parent of '{name}'; add a dependency "
                                       f"{s.ref[0]},{name}"))
                    elif jobs[s.ref[0]].foreach is not None:
                        issues.append((name, "foreach", f"'{s.ref[0]}' is a foreach node "
                                       "itself; expand over the output of a single job"))
            except ExpandError as exc:
                issues.append((name, exc.field, str(exc)))
    return issues + _check_groups(jobs, parents, children)


def _check_groups(jobs: Mapping[str, JobSpec], parents: dict[str, list[str]],
                  children: dict[str, list[str]]) -> list[Issue]:
    groups: dict[str, list[str]] = {}
    for name, spec in jobs.items():
        if spec.group is not None:
            groups.setdefault(spec.group, []).append(name)
    issues: list[Issue] = []
    for group, members in groups.items():
        heads = [m for m in members if jobs[m].repeat is not None]
        first = _node(jobs[members[0]])
        if not heads:
            issues.append((first, "group", f"group '{group}' has no node with repeat:; give "
                           "repeat: {until: ..., max: N} to its last node"))
            continue
        if len(heads) > 1:
            shown = ", ".join(sorted({_node(jobs[h]) for h in heads}))
            issues.append((_node(jobs[heads[0]]), "repeat", f"group '{group}' has more than "
                           f"one job with repeat: ({shown}); one node repeats the group"))
            continue
        head = heads[0]
        above: set[str] = set()
        stack = [head]
        while stack:
            for p in parents[stack.pop()]:
                if p not in above:
                    above.add(p)
                    stack.append(p)
        inside = set(members)
        for m in members:
            node = _node(jobs[m])
            if jobs[m].foreach is not None:
                issues.append((node, "group", "a foreach over a parent's output cannot be in "
                               "a repeat group"))
                continue
            if m != head and m not in above:
                issues.append((node, "group", f"'{m}' is in group '{group}', but '{head}' "
                               "(which repeats it) does not depend on it"))
            if m != head:
                out = [c for c in children[m] if c not in inside]
                if out:
                    issues.append((node, "group", f"'{out[0]}' depends on '{m}' of group "
                                   f"'{group}' but is not in it; make it depend on '{head}'"))
    return list(dict.fromkeys(issues))  # without repeats, in order


def scope(spec: JobSpec, variables: Mapping[str, Any], jobs: dict[str, dict[str, Any]],
          outputs: dict[str, Any] | None = None, iteration: int | None = None) -> Any:
    """The lookup for a job's expressions: its foreach values, then variables; ``jobs``
    maps its parents (and itself) to {"outputs", "state", "exit_code", "attempt"}."""
    values: dict[str, Any] = {**variables, **spec.params}
    if outputs is not None:
        values["outputs"] = outputs
    if iteration is not None:
        values["iteration"] = iteration
    return resolver(values, jobs)


def repeat_done(spec: JobSpec, variables: Mapping[str, Any], outputs: dict[str, Any],
                iteration: int) -> tuple[bool, str]:
    """(done, why) after a successful iteration of a repeat node. A condition that cannot
    be evaluated (e.g. the output is not there yet) counts as not done; ``max`` ends the
    loop anyway."""
    assert spec.repeat is not None
    if iteration >= spec.repeat.max:
        return True, f"repeat: max {spec.repeat.max} iterations reached"
    me = {"outputs": outputs, "state": "SUCCEEDED", "iteration": iteration}
    lookup = scope(spec, variables, {spec.name: me}, outputs, iteration)
    try:
        if compile_expr(spec.repeat.until).test(lookup):
            return True, f"repeat: until holds after iteration {iteration}"
        return False, f"repeat (iteration {iteration + 1}): until is false"
    except ExprError as exc:
        return False, f"repeat (iteration {iteration + 1}): until could not be evaluated: {exc}"
