"""``jobmesh run`` writes its final graph from the monitor's layout (Graphviz runs once
per run, beside the jobs): what the user gets is the whole graph in its final state."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import cli, write_workflow

pytestmark = pytest.mark.integration


def _written(res) -> tuple[str, dict]:
    """The SVG and state.json that ``jobmesh run`` names on its last lines."""
    svg = re.search(r"^graph: (.+)$", res.stderr, re.MULTILINE)
    state = re.search(r"^state: (.+)$", res.stderr, re.MULTILINE)
    assert svg and state, res.stderr
    return Path(svg.group(1)).read_text(), json.loads(Path(state.group(1)).read_text())


def test_one_job_run_writes_its_graph_in_the_final_state(home: Path, tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", "solo", {"only": {"exec": "true"}}, [])
    res = cli(home, "run", str(wf), "-q")
    assert res.returncode == 0, res.stderr
    svg, state = _written(res)
    assert state["state"] == "SUCCEEDED"
    assert svg.count('class="node job SUCCEEDED"') == 1 and "only" in svg
    assert "simplified" not in svg  # laid out by Graphviz
    # a second run reuses the job: its graph is the new run's, drawn as reused
    again = cli(home, "run", str(wf), "-q")
    assert again.returncode == 0, again.stderr
    svg2, state2 = _written(again)
    assert state2["run"] != state["run"]
    assert svg2.count('class="node job SUCCEEDED cached"') == 1


def test_dense_workflow_run_draws_every_job_in_the_layered_layout(home: Path,
                                                                  tmp_path: Path) -> None:
    depth, width = 10, 15  # 150 jobs, 2,025 dependencies
    nodes = {f"l{d}_{w}": {"exec": "true"} for d in range(depth) for w in range(width)}
    deps = [f"l{d - 1}_{v},l{d}_{w}" for d in range(1, depth) for w in range(width)
            for v in range(width)]
    wf = write_workflow(tmp_path / "wf", "dense", nodes, deps)
    res = cli(home, "run", str(wf), "-q", "-p", "4", timeout=300)
    assert res.returncode == 0, res.stderr
    svg, state = _written(res)
    assert state["state"] == "SUCCEEDED" and len(state["jobs"]) == 150
    assert "150 jobs and 2025 dependencies: simplified layered layout" in svg
    assert svg.count('class="node job SUCCEEDED"') == 150
