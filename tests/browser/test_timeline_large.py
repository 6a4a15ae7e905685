"""A 10,000-job workflow in Chromium against a real stack (issue 20): its page holds a
bounded number of table rows, filters them, draws the graph with the foreach node
collapsed into one node that expands on click (or Enter), and draws the timeline's rows
in view.
No timing is asserted (bench/ measures speed). Every wait is a condition with a deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Stack, shot
from tests.conftest import wait_until

pytestmark = pytest.mark.browser
N = 9999  # the sweep's jobs; with 'hold', 10,000 jobs (the most without --allow-large)


def test_ten_thousand_jobs_table_graph_and_timeline(page: Any, stack: Stack,
                                                    tmp_path: Path) -> None:
    gate = tmp_path / "never"  # 'hold' runs until the test cancels the workflow
    stack.upload("big", "workflow:\n  nodes:\n"
                 f"    hold: {{exec: 'while [ ! -e {gate} ]; do sleep 0.2; done'}}\n"
                 f"    sweep: {{exec: 'true', after: [hold], foreach: {{i: 'n[1-{N}]'}}}}\n")
    r = stack.api.post("/api/workflows/big/run")
    assert r.status_code == 202, r.text
    try:
        page.goto(stack.url + "/#/wf/big")
        expect(page.locator("#row-count")).to_have_text(f"{N + 1} jobs", timeout=30_000)
        rows = page.locator("#jobs-rows tr[data-job]")
        assert 10 < rows.count() < 150  # the rows in view, not ten thousand
        expect(page.locator('#jobs-rows tr[data-job="hold"]')).to_have_attribute(
            "data-state", "RUNNING", timeout=30_000)
        page.fill("#filter", "i_n9998")
        expect(page.locator("#row-count")).to_have_text(f"1 of {N + 1} jobs")
        expect(rows).to_have_count(1)
        page.fill("#filter", "")
        expect(page.locator("#row-count")).to_have_text(f"{N + 1} jobs")
        page.click('#jobs-head th[data-col=name] button')  # sort by name, descending next
        page.click('#jobs-head th[data-col=name] button')
        expect(rows.first).to_have_attribute("data-job", f"sweep-i_n{N}")
        assert 10 < rows.count() < 150

        page.click("#tab-graph")  # one node for the sweep, with its jobs counted
        group = page.locator('#graph g[data-group="sweep"]')
        expect(group).to_have_attribute("data-count", str(N), timeout=30_000)
        expect(page.locator("#graph g[data-job]")).to_have_count(2)
        expect(group).to_contain_text(f"{N} jobs: {N} ready")
        expect(page.locator("#group-note")).to_contain_text("each foreach node is drawn as one")
        group.focus()
        page.keyboard.press("Enter")  # expand it
        panel = page.locator("#group-panel")
        expect(panel).to_be_visible()
        expect(page.locator("#group-title")).to_have_text(f"sweep: {N} jobs")
        expect(panel.locator("rect[data-job]")).to_have_count(N)
        expect(group).to_have_attribute("aria-expanded", "true")
        shot(page, "graph-collapsed", doc=True)
        panel.locator('rect[data-job="sweep-i_n5"]').click()  # a square opens its job
        expect(page.locator("#detail-title")).to_have_text("sweep-i_n5")
        page.keyboard.press("Escape")
        page.click("#group-table")  # its jobs in the table
        expect(page.locator("#row-count")).to_have_text(f"{N} of {N + 1} jobs")
        assert rows.count() < 150

        page.click("#tab-timeline")  # the bars in view are drawn, the others when scrolled to
        expect(page.locator('#timeline g.tl-job[data-job="hold"] rect.tl-run')).to_have_count(
            1, timeout=30_000)
        bars = page.locator("#timeline g.tl-job")
        assert 10 < bars.count() < 200
        expect(page.locator("#timeline text.tl-group")).to_have_text(f"local executor ({N + 1})")
        page.eval_on_selector("#timeline", "t => { t.scrollTop = t.scrollHeight; }")
        expect(page.locator("#timeline g.tl-job").last).to_have_attribute(
            "data-job", f"sweep-i_n{N}")  # the last of the jobs (pending: in file order)
        assert 10 < bars.count() < 200
        assert page.locator('#timeline g.tl-job[data-job="hold"]').count() == 0
    finally:
        stack.api.post("/api/workflows/big/cancel")

        def canceled() -> bool:  # a busy gateway may answer 503 meanwhile
            r = stack.api.get("/api/workflows/big")
            return r.status_code == 200 and r.json()["status"]["state"] != "RUNNING"
        wait_until(canceled, 180, "the big workflow to be canceled")
