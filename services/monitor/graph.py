"""Workflow graphs: Graphviz lays a workflow out once; updates patch node colours and
labels in place (no relayout per event). Very large or dense workflows, or a machine
without ``dot``, get a cheaper layered layout drawn here, with a note saying so.
"""

from __future__ import annotations

import functools
import getpass
import os
import platform
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from jobmesh.common.labels import render_label
from jobmesh.common.messages import JobStatus, WorkflowSnapshot
from jobmesh.common.spec import JobSpec, Workflow
from jobmesh.common.states import CLOUDMESH_STATUS, JobState

SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
DOT_LIMIT = 1000   # above this many jobs, dot takes too long: use the layered layout
# ... or above this many jobs plus dependencies: dot's time grows with the edges (10 layers
# of 20 jobs, all-to-all between layers, 3,600 edges: 1.1 s on a quiet machine, 2.7 s under
# load, against 0.2 s for 200 jobs with 400 edges).
DOT_SIZE_LIMIT = 2000
DEFAULT_LABEL = "{name}\\n{status} {progress}%"
COLLAPSE_LIMIT = 500  # above this many jobs, each foreach node's jobs are drawn as one node
GROUP_LABEL = "{name}\\n{msg}"
GROUP_ORDER = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED, JobState.SKIPPED,
               JobState.RUNNING, JobState.QUEUED, JobState.READY, JobState.PENDING)
SHAPES = ("polygon", "ellipse", "path")


def node_attrs(spec: Workflow, snap: WorkflowSnapshot, name: str,
               parents: dict[str, list[str]] | None = None,
               numbers: dict[str, int] | None = None) -> dict[str, Any]:
    """Everything a label may name for one job, as cloudmesh-cc fills a node in: the YAML's
    attributes, then what it adds when the YAML has none (user, script, number,
    label_format), then the run's state. Pass ``parents`` (spec.parents()) and ``numbers``
    (job_numbers(spec)) when labelling many nodes: computing them per node is quadratic."""
    job, st = spec.jobs[name], snap.jobs.get(name) or JobStatus()
    attrs: dict[str, Any] = dict(spec.variables)  # {VAR} in a label_format, as in a label
    attrs.update({k: v for k, v in job.model_dump().items() if v is not None})
    attrs.update(job.extras)
    numbers = numbers if numbers is not None else job_numbers(spec)
    parents = parents if parents is not None else spec.parents()
    attrs.update(script=_script_name(spec, name), user=job.user or _local_user())
    attrs.setdefault("number", numbers.get(name, 0))
    attrs.setdefault("label_format", template(spec, name))
    attrs.update(name=name, status=CLOUDMESH_STATUS[st.state], state=st.state.value,
                 progress=int(st.progress), msg=st.msg, attempt=st.attempt,
                 native_id=st.native_id, exit_code=st.exit_code, reason=st.reason,
                 outputs=st.outputs, host=job.host or st.host or platform.node(),
                 run_host=st.host, workflow=spec.name)
    attrs["parent"] = list(parents.get(name, []))
    attrs["parents"] = {p: {"outputs": (snap.jobs[p].outputs if p in snap.jobs else {})}
                        for p in parents.get(name, [])}
    return attrs


def template(spec: Workflow, name: str) -> str:
    """The label template: label_format wins over label (cloudmesh-cc saves both, and its
    label is only the text rendered last)."""
    job = spec.jobs[name]
    given = job.extras.get("label_format")
    if given not in (None, ""):
        return str(given)
    return job.label or DEFAULT_LABEL


def job_numbers(spec: Workflow) -> dict[str, int]:
    """cloudmesh-cc's ``number``: each node's place in the file, from 0."""
    return {n: i for i, n in enumerate(spec.jobs)}


def _script_name(spec: Workflow, name: str) -> str:
    """The script as the YAML names it (relative to the workflow's folder); cloudmesh-cc
    shows ``<name>.sh`` for a node without one."""
    script = spec.jobs[name].script
    if not script:
        return f"{name}.sh"
    try:
        return Path(script).relative_to(spec.base_dir).as_posix()
    except ValueError:
        return script


@functools.cache
def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        getuid = getattr(os, "getuid", None)  # (Windows has none)
        return str(getuid()) if getuid is not None else "unknown"


def label_lines(spec: Workflow, snap: WorkflowSnapshot, name: str, now: float,
                user_vars: dict[str, Any] | None = None,
                parents: dict[str, list[str]] | None = None,
                numbers: dict[str, int] | None = None) -> list[str]:
    """The rendered label, one string per line (an empty line keeps its place).
    ``{cm.VAR}`` reads the workflow's variables unless ``user_vars`` are given."""
    st = snap.jobs.get(name) or JobStatus()
    times = {"created": snap.created, "t0": snap.started, "t1": snap.ended,
             "tstart": st.started, "tend": st.ended, "modified": st.modified}
    text = render_label(template(spec, name), node_attrs(spec, snap, name, parents, numbers),
                        times, now, spec.variables if user_vars is None else user_vars)
    return text.replace("\\n", "\n").split("\n")


def fill(spec: Workflow, st: JobStatus) -> str:
    word = CLOUDMESH_STATUS[st.state]
    return spec.colors.get(word) or spec.colors.get("ready", "white")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_source(spec: Workflow, snap: WorkflowSnapshot, now: float) -> str:
    ids = {n: f"n{i}" for i, n in enumerate(spec.jobs)}
    out = [f"digraph {_q(spec.name)} {{", '  graph [rankdir=TB, fontname="Helvetica"];',
           '  node [fontname="Helvetica", fontsize=11];']
    parents, numbers = spec.parents(), job_numbers(spec)
    for name, job in spec.jobs.items():
        st = snap.jobs.get(name) or JobStatus()
        shape = job.shape or ("diamond" if name in ("start", "end") else "box")
        # cloudmesh-cc draws every node filled,rounded; style: '' means filled
        style = "filled,rounded" if job.style is None else (job.style or "filled")
        if "filled" not in style:
            style += ",filled"
        # Graphviz writes no text element for an empty line, and later lines would take
        # its slot when patched: a blank keeps it.
        label = "\\n".join((x or " ").replace("\\", "\\\\").replace('"', '\\"')
                           for x in label_lines(spec, snap, name, now, parents=parents,
                                                numbers=numbers))
        out.append(f'  {_q(name)} [id={ids[name]}, label="{label}", shape={_q(shape)}, '
                   f'style={_q(style)}, fillcolor={_q(fill(spec, st))}, '
                   f'class={_q("job " + st.state.value)}];')
    for a, b in spec.edges:
        out.append(f"  {_q(a)} -> {_q(b)};")
    out.append("}")
    return "\n".join(out)


def foreach_groups(spec: Workflow) -> dict[str, list[str]]:
    """The jobs each foreach node became (nodes of two or more jobs), by node name."""
    groups: dict[str, list[str]] = {}
    for name, job in spec.jobs.items():
        if job.foreach_of:
            groups.setdefault(job.foreach_of, []).append(name)
    return {g: m for g, m in groups.items() if len(m) > 1 and g not in spec.jobs}


def collapse(spec: Workflow, limit: int = COLLAPSE_LIMIT
             ) -> tuple[Workflow, dict[str, list[str]]]:
    """Above ``limit`` jobs: the spec to draw, with each foreach node's jobs as one node
    (named as the node in the YAML), and those groups. Else the spec itself and {}."""
    groups = foreach_groups(spec) if len(spec.jobs) > limit else {}
    if not groups:
        return spec, {}
    owner = {m: g for g, members in groups.items() for m in members}
    jobs: dict[str, JobSpec] = {}
    for name, job in spec.jobs.items():
        group = owner.get(name)
        if group is None:
            jobs[name] = job
        elif group not in jobs:
            jobs[group] = JobSpec(name=group, kind=job.kind, label=GROUP_LABEL,
                                  shape="box3d", style="filled,bold")
    edges = list(dict.fromkeys((owner.get(a, a), owner.get(b, b)) for a, b in spec.edges
                               if owner.get(a, a) != owner.get(b, b)))
    return spec.model_copy(update={"jobs": jobs, "edges": edges}), groups


def group_status(members: list[JobStatus]) -> JobStatus:
    """One node for many jobs: running while any runs or some ended and some did not;
    its message counts the jobs per state, its progress is the share that ended."""
    counts: dict[JobState, int] = {}
    for st in members:
        counts[st.state] = counts.get(st.state, 0) + 1
    ended = sum(n for state, n in counts.items() if state.terminal)
    if ended == len(members):
        state = next((s for s in (JobState.FAILED, JobState.CANCELED) if counts.get(s)),
                     JobState.SKIPPED if counts.get(JobState.SKIPPED) == ended
                     else JobState.SUCCEEDED)
    elif counts.get(JobState.RUNNING) or ended:
        state = JobState.RUNNING
    else:
        state = max(counts, key=lambda s: s.rank)
    words: dict[str, int] = {}
    for s in GROUP_ORDER:
        if counts.get(s):
            words[CLOUDMESH_STATUS[s]] = words.get(CLOUDMESH_STATUS[s], 0) + counts[s]
    text = ", ".join(f"{n} {w}" for w, n in words.items())
    return JobStatus(state=state, progress=100.0 * ended / len(members),
                     msg=f"{len(members)} jobs: {text}")


def grouped(snap: WorkflowSnapshot, groups: dict[str, list[str]]) -> WorkflowSnapshot:
    """The snapshot as a collapsed graph shows it: one status per group."""
    if not groups:
        return snap
    jobs = dict(snap.jobs)
    for group, members in groups.items():
        jobs[group] = group_status([snap.jobs.get(m) or JobStatus() for m in members])
    return snap.model_copy(update={"jobs": jobs})


class Graph:
    """A laid-out graph whose nodes can be recoloured and relabelled in place. With
    ``groups`` (see ``collapse``) a group's node shows its jobs' states, counted."""

    def __init__(self, spec: Workflow, svg: bytes, note: str | None = None,
                 groups: dict[str, list[str]] | None = None):
        self.spec = spec
        self.note = note
        self.groups = groups or {}
        self.root = ET.fromstring(svg)
        ids = {f"n{i}": n for i, n in enumerate(spec.jobs)}
        self.nodes: dict[str, tuple[ET.Element, ET.Element | None, list[ET.Element]]] = {}
        for g in self.root.iter(f"{{{SVG_NS}}}g"):
            name = ids.get(g.get("id", ""))
            if name is None:
                continue
            shape = next((c for c in g if c.tag.split("}")[-1] in SHAPES
                          and c.get("fill") not in (None, "none")), None)
            texts = [c for c in g if c.tag == f"{{{SVG_NS}}}text"]
            g.set("data-job", name)
            if name in self.groups:  # the GUI lists its jobs on a click
                g.set("data-group", name)
                g.set("data-count", str(len(self.groups[name])))
            self.nodes[name] = (g, shape, texts)
        # Serialize once with a numbered marker in every value a patch sets; a patch then
        # only joins the fixed pieces with the new values (ElementTree's serializer costs
        # ~0.1 ms a node, and runs while the event loop waits for the GIL).
        slot = iter(range(1 << 30))
        for g, shape, texts in self.nodes.values():
            for el, key in [(g, "class"), (g, "data-state"), (shape, "fill")]:
                if el is not None:
                    el.set(key, f"\ue000{next(slot)}\ue001")
            for el in texts:
                el.text = f"\ue000{next(slot)}\ue001"
        pieces = _SLOT.split(ET.tostring(self.root, encoding="utf-8", xml_declaration=True))
        self.fixed, self.slots = pieces[0::2], [int(n) for n in pieces[1::2]]

    def patch(self, snap: WorkflowSnapshot, now: float) -> bytes:
        snap = grouped(snap, self.groups)
        parents, numbers = self.spec.parents(), job_numbers(self.spec)
        values: list[bytes] = []  # in the order the markers were numbered
        for name, (_g, shape, texts) in self.nodes.items():
            st = snap.jobs.get(name) or JobStatus()
            cached = " cached" if st.cached_from else ""  # reused from an earlier run
            values += [_attr(f"node job {st.state.value}{cached}"), _attr(st.state.value)]
            if shape is not None:
                values.append(_attr(fill(self.spec, st)))
            if texts:
                lines = label_lines(self.spec, snap, name, now, parents=parents,
                                    numbers=numbers)
                if len(lines) > len(texts):
                    lines = lines[: len(texts) - 1] + [" ".join(lines[len(texts) - 1:])]
                values += [_text(line) for line in lines + [""] * (len(texts) - len(lines))]
        out = [self.fixed[0]]
        for n, piece in zip(self.slots, self.fixed[1:]):
            out += [values[n], piece]
        return b"".join(out)


_SLOT = re.compile("\ue000([0-9]+)\ue001".encode())


def _text(value: str) -> bytes:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").encode()


def _attr(value: str) -> bytes:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;")
            .replace("\t", "&#09;").encode())


def layout_key(snap: WorkflowSnapshot) -> tuple[str, int]:
    """What a cached layout is good for: one run, until a foreach expansion adds jobs."""
    return snap.run, snap.expansions


def layout(spec: Workflow, snap: WorkflowSnapshot, now: float, timeout: float = 60,
           collapse_above: int = COLLAPSE_LIMIT) -> Graph:
    """Lay the workflow out: Graphviz when it can, the layered fallback when it cannot.
    Above ``collapse_above`` jobs each foreach node's jobs become one node."""
    spec, groups = collapse(spec, collapse_above)
    snap = grouped(snap, groups)
    dot = shutil.which("dot")
    note = None
    if dot is None:
        note = "Graphviz 'dot' is not installed: simplified layout (apt-get install graphviz)"
    elif len(spec.jobs) > DOT_LIMIT:
        note = f"{len(spec.jobs)} jobs: simplified layered layout (Graphviz above {DOT_LIMIT})"
    elif len(spec.jobs) + len(spec.edges) > DOT_SIZE_LIMIT:
        note = (f"{len(spec.jobs)} jobs and {len(spec.edges)} dependencies: simplified "
                f"layered layout (Graphviz above {DOT_SIZE_LIMIT} jobs plus dependencies)")
    else:
        try:
            proc = subprocess.run([dot, "-Tsvg"], input=dot_source(spec, snap, now).encode(),
                                  capture_output=True, timeout=timeout, check=True)
            return Graph(spec, proc.stdout, groups=groups)
        except (subprocess.SubprocessError, OSError, ET.ParseError) as exc:
            note = f"Graphviz failed ({type(exc).__name__}): simplified layout"
    return Graph(spec, layered_svg(spec, snap, now, note).encode(), note, groups)


def layered_svg(spec: Workflow, snap: WorkflowSnapshot, now: float, note: str | None) -> str:
    """A cheap layout: one row per dependency depth, nodes side by side, edges drawn
    only while there are few enough to read."""
    parents = spec.parents()
    depth: dict[str, int] = {}
    order = _topo(spec)
    for n in order:
        depth[n] = 1 + max((depth[p] for p in parents[n]), default=-1)
    rows: dict[int, list[str]] = {}
    for n in order:
        rows.setdefault(depth[n], []).append(n)
    w, h, gx, gy, per_row = 120, 36, 14, 50, 40
    pos: dict[str, tuple[float, float]] = {}
    y = 40.0
    for d in sorted(rows):
        names = rows[d]
        for i, n in enumerate(names):
            r, c = divmod(i, per_row)
            pos[n] = (10 + c * (w + gx), y + r * (h + 12))
        y += ((len(names) - 1) // per_row + 1) * (h + 12) + gy
    width = 20 + min(per_row, max((len(v) for v in rows.values()), default=1)) * (w + gx)
    parts = [f'<svg xmlns="{SVG_NS}" width="{width}pt" height="{y:.0f}pt" '
             f'viewBox="0 0 {width} {y:.0f}">']
    if note:
        parts.append(f'<text x="10" y="20" font-size="13" font-family="Helvetica" '
                     f'class="note">{_x(note)}</text>')
    if len(spec.edges) <= 3000:
        for a, b in spec.edges:
            (x1, y1), (x2, y2) = pos[a], pos[b]
            parts.append(f'<line x1="{x1 + w / 2:.0f}" y1="{y1 + h:.0f}" x2="{x2 + w / 2:.0f}" '
                         f'y2="{y2:.0f}" stroke="#999" stroke-width="0.6"/>')
    for i, n in enumerate(spec.jobs):
        x, yy = pos[n]
        st = snap.jobs.get(n) or JobStatus()
        parts.append(f'<g id="n{i}" class="node"><title>{_x(n)}</title>'
                     f'<polygon fill="{_x(fill(spec, st))}" stroke="black" points="{x},{yy} '
                     f'{x + w},{yy} {x + w},{yy + h} {x},{yy + h}"/>'
                     f'<text x="{x + w / 2}" y="{yy + 15}" text-anchor="middle" font-size="10" '
                     f'font-family="Helvetica">{_x(n)}</text>'
                     f'<text x="{x + w / 2}" y="{yy + 28}" text-anchor="middle" font-size="9" '
                     f'font-family="Helvetica"></text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _x(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _topo(spec: Workflow) -> list[str]:
    children, indeg = spec.children(), {n: 0 for n in spec.jobs}
    for _, b in spec.edges:
        indeg[b] += 1
    order = [n for n, d in indeg.items() if d == 0]
    for n in order:
        for c in children[n]:
            indeg[c] -= 1
            if indeg[c] == 0:
                order.append(c)
    return order
