"""Workflow graphs: dot source, the layered fallback and in-place patching."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from jobmesh.common.messages import JobStatus, WorkflowSnapshot
from jobmesh.common.states import JobState
from jobmesh.monitor import graph
from jobmesh.monitor.graph import DOT_LIMIT, Graph, dot_source, layered_svg, layout

from ._build import workflow

pytestmark = pytest.mark.unit
NS = {"s": graph.SVG_NS}
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot missing")


def snapshot(spec, **states: JobState) -> WorkflowSnapshot:
    jobs = {}
    for n in spec.jobs:
        st = states.get(n, JobState.PENDING)
        jobs[n] = JobStatus(state=st, progress=100.0 if st is JobState.SUCCEEDED else 0.0)
    return WorkflowSnapshot(name=spec.name, run="r1", jobs=jobs, edges=spec.edges,
                            created=1000.0)


def paper_spec():
    spec = workflow([("start", "fetch"), ("fetch", "end")], fetch={
        "label": "{name}\\nprogress={progress} by {owner}", "shape": "ellipse",
        "style": "dashed", "owner": "gregor"})
    spec.colors["done"] = "#00FF00"
    return spec


def node_line(src: str, name: str) -> str:
    return next(line for line in src.splitlines() if line.strip().startswith(f'"{name}" ['))


def test_dot_source_labels_shapes_and_colors() -> None:
    spec = paper_spec()
    snap = snapshot(spec, start=JobState.SUCCEEDED, fetch=JobState.RUNNING)
    snap.jobs["fetch"].progress = 50
    src = dot_source(spec, snap, now=2000)
    assert src.startswith('digraph "w" {')
    start = node_line(src, "start")
    assert 'id=n0' in start and 'label="start\\ndone 100%"' in start
    assert 'shape="diamond"' in start and 'style="filled,rounded"' in start  # no style:
    assert 'fillcolor="#00FF00"' in start and 'class="job SUCCEEDED"' in start
    fetch = node_line(src, "fetch")
    assert 'label="fetch\\nprogress=50 by gregor"' in fetch
    assert 'shape="ellipse"' in fetch and 'style="dashed,filled"' in fetch
    assert 'fillcolor="#CCE5FF"' in fetch and 'class="job RUNNING"' in fetch
    end = node_line(src, "end")
    assert 'shape="diamond"' in end and 'fillcolor="white"' in end
    assert '"start" -> "fetch";' in src and '"fetch" -> "end";' in src
    assert src.rstrip().endswith("}")


def test_dot_source_default_shape_and_status_colors() -> None:
    spec = workflow(names=["a", "b", "c", "d"])
    snap = snapshot(spec, a=JobState.FAILED, b=JobState.SKIPPED, c=JobState.CANCELED,
                    d=JobState.QUEUED)
    src = dot_source(spec, snap, now=0)
    fills = dict(re.findall(r'"(\w)" \[.*fillcolor="([^"]+)"', src))
    assert fills == {"a": "#FFCCCC", "b": "#F2F2F2", "c": "#E0E0E0", "d": "#FFF2CC"}
    assert all('shape="box"' in node_line(src, n) for n in "abcd")
    assert 'label="a\\nfailed 0%"' in node_line(src, "a")


def test_dot_source_escapes_quotes_and_uses_parent_outputs() -> None:
    spec = workflow([("a", "b")], b={"label": 'say "hi" n={parents.a.outputs.n}'})
    snap = snapshot(spec)
    snap.jobs["a"].outputs = {"n": 7}
    assert 'label="say \\"hi\\" n=7"' in node_line(dot_source(spec, snap, 0), "b")


@needs_dot
def test_layout_and_patch_recolor_nodes_in_place() -> None:
    spec = paper_spec()
    g = layout(spec, snapshot(spec), now=2000)
    assert g.note is None
    assert list(g.nodes) == ["start", "fetch", "end"]
    first = ET.fromstring(g.patch(snapshot(spec), now=2000))
    geometry = [p.get("points") or p.get("d") for p in first.iter()]

    snap = snapshot(spec, start=JobState.SUCCEEDED, fetch=JobState.FAILED)
    snap.jobs["fetch"].progress = 30
    root = ET.fromstring(g.patch(snap, now=2000))
    nodes = {el.get("data-job"): el for el in root.iterfind(".//s:g[@data-job]", NS)}
    assert set(nodes) == {"start", "fetch", "end"}
    start, fetch, end = nodes["start"], nodes["fetch"], nodes["end"]
    assert start.get("data-state") == "SUCCEEDED"
    assert start.get("class") == "node job SUCCEEDED"
    assert start.find("s:path", NS).get("fill") == "#00FF00"  # rounded: a path
    assert fetch.find("s:ellipse", NS).get("fill") == "#FFCCCC"
    assert [t.text for t in fetch.findall("s:text", NS)] == ["fetch", "progress=30 by gregor"]
    assert [t.text for t in start.findall("s:text", NS)] == ["start", "done 100%"]
    assert end.get("data-state") == "PENDING"
    assert end.find("s:path", NS).get("fill") == "white"
    # no relayout: the geometry is the same
    assert [p.get("points") or p.get("d") for p in root.iter()] == geometry


def test_fallback_when_dot_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    spec = paper_spec()
    g = layout(spec, snapshot(spec), now=0)
    assert "Graphviz 'dot' is not installed" in g.note
    assert list(g.nodes) == ["start", "fetch", "end"]
    root = ET.fromstring(g.patch(snapshot(spec, end=JobState.SUCCEEDED), now=0))
    note = root.find("s:text[@class='note']", NS)
    assert note is not None and "simplified layout" in note.text
    end = root.find(".//s:g[@data-job='end']", NS)
    assert end.find("s:polygon", NS).get("fill") == "#00FF00"
    assert [t.text for t in end.findall("s:text", NS)] == ["end", "done 100%"]


def test_large_workflow_uses_the_layered_layout() -> None:
    n = DOT_LIMIT + 1
    names = [f"j{i}" for i in range(n)]
    spec = workflow([("j0", f"j{i}") for i in range(1, n)], names=names)
    g = layout(spec, snapshot(spec), now=0)
    assert g.note == f"{n} jobs: simplified layered layout (Graphviz above {DOT_LIMIT})"
    assert len(g.nodes) == n
    root = ET.fromstring(g.patch(snapshot(spec, j5=JobState.RUNNING), now=0))
    j5 = root.find(".//s:g[@data-job='j5']", NS)
    assert j5.get("data-state") == "RUNNING"
    assert j5.find("s:polygon", NS).get("fill") == "#CCE5FF"
    assert len(root.findall("s:line", NS)) == n - 1  # edges are drawn


def rows(svg: str) -> dict[str, float]:
    root = ET.fromstring(svg)
    out = {}
    for g in root.iterfind("s:g", NS):
        name = g.find("s:title", NS).text
        out[name] = float(g.find("s:polygon", NS).get("points").split(",")[1].split()[0])
    return out


def test_layered_svg_puts_children_below_parents() -> None:
    spec = workflow([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], names=["solo"])
    y = rows(layered_svg(spec, snapshot(spec), 0, note=None))
    assert y["a"] == y["solo"] < y["b"] == y["c"] < y["d"]


def test_layered_svg_escapes_the_note() -> None:
    spec = workflow(names=["a"])
    svg = layered_svg(spec, snapshot(spec), 0, note='<b> & "x"')
    assert "&lt;b&gt; &amp; &quot;x&quot;" in svg
    assert ET.fromstring(svg).find("s:text", NS).text == '<b> & "x"'


def test_patch_joins_extra_label_lines_into_the_last_text() -> None:
    spec = workflow(names=["a"], a={"label": "{name}\\nl2\\nl3\\nl4"})
    g = Graph(spec, layered_svg(spec, snapshot(spec), 0, None).encode())
    root = ET.fromstring(g.patch(snapshot(spec), 0))
    texts = [t.text for t in root.find(".//s:g[@data-job='a']", NS).findall("s:text", NS)]
    assert texts == ["a", "l2 l3 l4"]


def test_patch_blanks_unused_text_lines() -> None:
    spec = workflow(names=["a"], a={"label": "{name}"})
    g = Graph(spec, layered_svg(spec, snapshot(spec), 0, None).encode())
    root = ET.fromstring(g.patch(snapshot(spec), 0))
    texts = [t.text or "" for t in root.find(".//s:g[@data-job='a']", NS).findall("s:text", NS)]
    assert texts == ["a", ""]


# -- cloudmesh-cc labels ------------------------------------------------------------------


def texts(root: ET.Element, job: str) -> list[str]:
    g = root.find(f".//s:g[@data-job='{job}']", NS)
    return [t.text or "" for t in g.findall("s:text", NS)]


@needs_dot
def test_an_empty_label_line_keeps_its_place_in_the_svg() -> None:
    spec = workflow(names=["fetch-data"], **{"fetch-data": {
        "label": "\\n{name}\\nx={progress}\\ny={status}"}})
    g = layout(spec, snapshot(spec), now=0)
    root = ET.fromstring(g.patch(snapshot(spec), now=0))
    assert texts(root, "fetch-data") == ["", "fetch-data", "x=0", "y=ready"]
    els = root.find(".//s:g[@data-job='fetch-data']", NS).findall("s:text", NS)
    ys = [float(t.get("y")) for t in els]
    assert ys == sorted(ys) and len(set(ys)) == 4  # four lines, top to bottom


def test_label_format_wins_over_the_label_cloudmesh_cc_saved() -> None:
    spec = workflow(names=["a"], a={"label": "a\nprogress=0",  # the last rendered text
                                    "label_format": "{name}\\nprogress={progress:>3}"})
    snap = snapshot(spec)
    snap.jobs["a"].progress = 7
    assert graph.label_lines(spec, snap, "a", 0) == ["a", "progress=  7"]


def test_attributes_cloudmesh_cc_fills_in(tmp_path) -> None:
    spec = workflow([("start", "b"), ("c", "b")], names=["start", "c"],
                    b={"label": "{user} {script} {parent} {parent[1]} {number} {label_format}",
                       "script": str(tmp_path / "sub" / "b.py")})
    spec.base_dir = str(tmp_path)
    import getpass
    line = graph.label_lines(spec, snapshot(spec), "b", 0)[0]
    assert line == (f"{getpass.getuser()} sub/b.py ['start', 'c'] c 2 "
                    "{user} {script} {parent} {parent[1]} {number} {label_format}")
    assert graph.label_lines(workflow(names=["x"], x={"label": "{script}"}), snapshot(
        workflow(names=["x"])), "x", 0) == ["x.sh"]  # cloudmesh-cc's default script name


def test_yaml_values_win_over_what_cloudmesh_cc_fills_in() -> None:
    spec = workflow(names=["a"], a={"label": "{user}|{number}|{created}|{modified}",
                                    "user": "gregor", "number": 9, "created": "2022-10-01",
                                    "modified": "2022-10-02"})
    assert graph.label_lines(spec, snapshot(spec), "a", 0) == ["gregor|9|2022-10-01|2022-10-02"]


def test_host_is_the_yaml_host_and_run_host_the_machine() -> None:
    spec = workflow(names=["a", "b"], a={"label": "{host} on {run_host}", "host": "local"},
                    b={"label": "{host}"})
    snap = snapshot(spec)
    snap.jobs["a"].host = snap.jobs["b"].host = "node7"
    assert graph.label_lines(spec, snap, "a", 0) == ["local on node7"]
    assert graph.label_lines(spec, snap, "b", 0) == ["node7"]  # no YAML host: where it ran


def test_cm_variables_come_from_the_workflow() -> None:
    spec = workflow(names=["a"], variables={"epochs": 5, "name": "v"},
                    a={"label_format": "{cm.epochs} {cm.none} {epochs} {name}"})
    assert graph.label_lines(spec, snapshot(spec), "a", 0) == ["5 N/A 5 a"]  # attrs win


def test_style_empty_means_filled_and_none_means_filled_rounded() -> None:
    spec = workflow(names=["a", "b", "c"], a={"style": ""}, c={"style": "dashed"})
    src = dot_source(spec, snapshot(spec), 0)
    assert 'style="filled"' in node_line(src, "a")
    assert 'style="filled,rounded"' in node_line(src, "b")
    assert 'style="dashed,filled"' in node_line(src, "c")


# -- large workflows: each foreach node drawn as one node ---------------------------------

def sweep(n: int):
    """prep -> train-i_<k> (n jobs, from the foreach node 'train') -> report"""
    members = [f"train-i_{k}" for k in range(n)]
    spec = workflow([("prep", m) for m in members] + [(m, "report") for m in members],
                    **{m: {"foreach_of": "train", "params": {"i": k}}
                       for k, m in enumerate(members)})
    return spec, members


def test_small_workflows_are_not_collapsed() -> None:
    spec, _ = sweep(10)
    assert graph.collapse(spec) == (spec, {})
    assert graph.collapse(spec, limit=5)[1] == {"train": [f"train-i_{k}" for k in range(10)]}


@pytest.mark.parametrize("dot", [True, False])
def test_a_big_foreach_is_one_node_with_counts(monkeypatch: pytest.MonkeyPatch,
                                               dot: bool) -> None:
    if not dot:
        monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    elif shutil.which("dot") is None:
        pytest.skip("Graphviz dot missing")
    spec, members = sweep(graph.COLLAPSE_LIMIT + 10)
    g = layout(spec, snapshot(spec), now=0)
    assert list(g.nodes) == ["prep", "train", "report"]
    states = {m: JobState.SUCCEEDED for m in members[:100]}
    states.update({m: JobState.RUNNING for m in members[100:103]})
    states[members[103]] = JobState.FAILED
    root = ET.fromstring(g.patch(snapshot(spec, prep=JobState.SUCCEEDED, **states), now=0))
    nodes = {el.get("data-job"): el for el in root.iterfind(".//s:g[@data-job]", NS)}
    assert set(nodes) == {"prep", "train", "report"}
    train = nodes["train"]
    assert (train.get("data-group"), train.get("data-count")) == ("train", str(len(members)))
    assert train.get("data-state") == "RUNNING"
    texts = [t.text for t in train.findall("s:text", NS)]
    assert texts[0] == "train"
    assert texts[-1] == f"{len(members)} jobs: 100 done, 1 failed, 3 running, 406 ready"
    assert "data-group" not in nodes["prep"].attrib
    # every job ended: the group is done; one failure makes it failed
    done = snapshot(spec, **{m: JobState.SUCCEEDED for m in members})
    root = ET.fromstring(g.patch(done, now=0))
    assert root.find(".//s:g[@data-job='train']", NS).get("data-state") == "SUCCEEDED"
    done.jobs[members[0]].state = JobState.FAILED
    root = ET.fromstring(g.patch(done, now=0))
    assert root.find(".//s:g[@data-job='train']", NS).get("data-state") == "FAILED"


def test_group_edges_are_drawn_once() -> None:
    spec, _ = sweep(graph.COLLAPSE_LIMIT + 1)
    view, groups = graph.collapse(spec)
    assert view.edges == [("prep", "train"), ("train", "report")]
    assert list(view.jobs) == ["prep", "train", "report"] and spec.jobs.keys() != view.jobs.keys()
