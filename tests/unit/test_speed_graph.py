"""Which layout a workflow's graph gets: Graphviz while it is quick, the layered layout
when the workflow is large or dense (dot's time grows with the dependencies)."""

from __future__ import annotations

import shutil

import pytest

from jobmesh.monitor.graph import DOT_SIZE_LIMIT, layout

from ._build import workflow
from .test_monitor_graph import snapshot

pytestmark = pytest.mark.unit
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot missing")


def layers(depth: int, width: int) -> list[tuple[str, str]]:
    """Every job after every job of the layer before (bench/run.py's W3)."""
    return [(f"l{d - 1}_{v}", f"l{d}_{w}") for d in range(1, depth)
            for w in range(width) for v in range(width)]


@needs_dot
def test_a_dense_workflow_gets_the_layered_layout_with_a_note() -> None:
    spec = workflow(layers(10, 20))
    assert len(spec.jobs) + len(spec.edges) > DOT_SIZE_LIMIT
    g = layout(spec, snapshot(spec), 0)
    assert g.note == ("200 jobs and 3600 dependencies: simplified layered layout "
                      f"(Graphviz above {DOT_SIZE_LIMIT} jobs plus dependencies)")
    assert set(g.nodes) == set(spec.jobs)
    svg = g.patch(snapshot(spec), 0).decode()
    assert "simplified layered layout" in svg and svg.count('class="node job PENDING"') == 200


@needs_dot
def test_a_fan_out_of_the_same_size_is_drawn_by_graphviz() -> None:
    middle = [f"p{i}" for i in range(200)]
    spec = workflow([("start", p) for p in middle] + [(p, "end") for p in middle])
    assert len(spec.jobs) + len(spec.edges) <= DOT_SIZE_LIMIT
    g = layout(spec, snapshot(spec), 0)
    assert g.note is None and set(g.nodes) == set(spec.jobs)
    svg = g.patch(snapshot(spec), 0).decode()
    assert "simplified" not in svg and svg.count('class="edge"') == 400  # dot's edges
