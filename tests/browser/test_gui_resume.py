"""The GUI after an upload that changed one job: the run button reruns only that job, and
the table and the graph show the reused jobs as cached (docs/workflows.md#resume-and-caching)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Stack
from tests.conftest import Bus, wait_until

pytestmark = pytest.mark.browser


def chain(counts: Path, c_says: str) -> str:
    def count(job: str) -> str:
        return f"echo x >> {counts}/{job}.count"

    return (f"workflow:\n  nodes:\n    A: {{exec: '{count('A')}'}}\n"
            f"    B: {{exec: '{count('B')}'}}\n"
            f"    C: {{exec: '{count('C')}; echo {c_says}'}}\n"
            "  dependencies: ['A,B,C']\n")


def test_run_button_after_a_changed_upload_shows_cached_jobs(page: Any, stack: Stack,
                                                            tmp_path: Path) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()

    def ran() -> dict[str, int]:
        return {j: len((counts / f"{j}.count").read_text().split()) if (
            counts / f"{j}.count").exists() else 0 for j in "ABC"}

    stack.upload("resume-ui", chain(counts, "one"))
    assert stack.api.post("/api/workflows/resume-ui/run").status_code == 202
    wait_until(lambda: stack.api.get("/api/workflows/resume-ui").json()["status"]["state"]
               == "SUCCEEDED", 60, "the first run")
    stack.upload("resume-ui", chain(counts, "two"))  # C's command changed

    page.goto(stack.url + "/#/wf/resume-ui")
    expect(page.locator("#jobs-rows tr[data-job]")).to_have_count(3)
    page.click("#act-run")
    expect(page.locator("#wf-state")).to_have_text("succeeded", timeout=30_000)
    rows = {j: page.locator(f'#jobs-rows tr[data-job="{j}"] [data-col=state]') for j in "ABC"}
    expect(rows["A"]).to_have_text("cached", timeout=10_000)
    expect(rows["B"]).to_have_text("cached")
    expect(rows["C"]).to_have_text("succeeded")
    assert ran() == {"A": 1, "B": 1, "C": 2}

    page.click("#tab-graph")
    page.wait_for_selector('#graph g[data-job="C"]')
    page.wait_for_function("""() => ['A', 'B'].every(j => document.querySelector(
        `#graph g[data-job="${j}"]`).classList.contains('cached'))""", timeout=10_000)
    assert "cached" not in (page.locator('#graph g[data-job="C"]').get_attribute("class")
                            or "")


def test_a_new_run_in_the_same_second_is_shown_even_when_its_id_sorts_first(
        page: Any, stack: Stack) -> None:
    """Run ids sort by their second only (20261204T120000-3fa2). A run started in the same
    second as the one shown, whose random part sorts lower, was ignored by an open page:
    its events and snapshots looked older, and the page kept the finished run."""
    from jobmesh.common import ops
    from jobmesh.common.loader import parse_workflow

    text = "workflow:\n  nodes:\n    A: {exec: 'sleep 1; echo done'}\n"
    stack.upload("same-second", text)
    wf = parse_workflow(text, "same-second.yaml", base_dir=stack.home, name="same-second").workflow
    bus = Bus.of_home(stack.home)

    def submit(run: str) -> None:
        bus.call(lambda js: ops.submit(js, wf, 1, run=run, cache=False))

    def state() -> tuple[str, str]:
        st = stack.api.get("/api/workflows/same-second").json()["status"] or {}
        return st.get("run", ""), st.get("state", "")

    first, second = "20261204T120000-ffff", "20261204T120000-0000"  # second sorts first
    submit(first)
    wait_until(lambda: state() == (first, "SUCCEEDED"), 60, "the first run")
    page.goto(stack.url + "/#/wf/same-second")
    expect(page.locator("#wf-meta")).to_contain_text(first)
    expect(page.locator("#wf-state")).to_have_text("succeeded")
    submit(second)
    expect(page.locator("#wf-meta")).to_contain_text(second, timeout=20_000)
    expect(page.locator("#wf-state")).to_have_text("succeeded", timeout=30_000)
    expect(page.locator('#jobs-rows tr[data-job="A"] [data-col=state]')).to_have_text(
        "succeeded")
    assert state() == (second, "SUCCEEDED")
