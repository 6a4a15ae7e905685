"""Run history in Chromium against a real stack: the Runs tab lists the runs with a plot of
their durations, and an older run opens with its own table, graph and timeline (issue 20).
Every wait is a condition with a deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Stack, shot
from tests.conftest import wait_until

pytestmark = pytest.mark.browser

ROWS_STATE = """([job, state]) => document.querySelector(
    `#jobs-rows tr[data-job="${job}"]`)?.dataset.state === state"""


def _run(stack: Stack, name: str, restart: bool = False) -> str:
    r = stack.api.post(f"/api/workflows/{name}/run", json={"restart": restart})
    assert r.status_code == 202, r.text
    run = r.json()["run"]

    def ended() -> bool:
        status = stack.api.get(f"/api/workflows/{name}").json()["status"]
        return status["run"] == run and status["state"] in ("SUCCEEDED", "FAILED")
    wait_until(ended, 60, f"run {run} to end")
    return str(run)


def test_runs_tab_lists_two_runs_and_opens_the_older(page: Any, stack: Stack,
                                                     tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    flag.write_text("")
    stack.upload("twice", "workflow:\n  nodes:\n    fetch: {exec: 'echo fetched'}\n"
                 f"    check: {{exec: 'test ! -e {flag}', after: [fetch]}}\n")
    old = _run(stack, "twice")          # check fails
    flag.unlink()
    new = _run(stack, "twice", restart=True)  # both succeed

    page.goto(stack.url + "/#/wf/twice/runs")
    expect(page.locator("#tab-runs")).to_have_attribute("aria-selected", "true")
    rows = page.locator("#runs-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-run", new)  # newest first
    expect(rows.nth(0)).to_contain_text("(current)")
    expect(rows.nth(0).locator(".badge")).to_have_text("succeeded")
    expect(rows.nth(1)).to_have_attribute("data-run", old)
    expect(rows.nth(1).locator(".badge")).to_have_text("failed")
    expect(rows.nth(1)).to_contain_text("1 failed")
    plot = page.locator("svg.run-plot a")
    expect(plot).to_have_count(2)
    expect(plot.nth(0)).to_have_attribute("data-run", old)  # the plot: oldest on the left
    shot(page, "runs", doc=True)

    rows.nth(1).locator("a").click()  # open the older run
    page.wait_for_function(f"location.hash === '#/wf/twice?run={old}'")
    banner = page.locator("#run-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(old)
    expect(banner).to_contain_text("failed")
    page.wait_for_function(ROWS_STATE, arg=["check", "FAILED"])
    page.wait_for_function(ROWS_STATE, arg=["fetch", "SUCCEEDED"])
    expect(page.locator("#wf-state")).to_have_text("failed")
    expect(page.locator("#wf-meta")).to_contain_text(old)

    page.click("#tab-timeline")  # its timeline, from the kept record
    page.wait_for_function(f"location.hash === '#/wf/twice/timeline?run={old}'")
    bars = page.locator("#timeline g.tl-job")
    expect(bars).to_have_count(2)
    expect(page.locator('#timeline g.tl-job[data-job="check"]')).to_have_attribute(
        "data-state", "FAILED")
    expect(page.locator('#timeline g.tl-job[data-job="check"] rect.tl-queue')).to_have_count(1)

    page.click("#tab-graph")  # its graph: the nodes in that run's colours
    page.wait_for_function("""() => document.querySelector('#graph g[data-job="check"]')
        ?.dataset.state === 'FAILED'""")

    page.click("#tab-table")
    page.click('#jobs-rows tr[data-job="check"] a')
    expect(page.locator("#detail-title")).to_have_text("check")
    expect(page.locator("#d-state")).to_have_text("failed")
    expect(page.locator("#d-logstate")).to_contain_text("a past run")
    page.keyboard.press("Escape")

    page.click("#run-current")  # back to the current run, live again
    page.wait_for_function("location.hash === '#/wf/twice'")
    expect(banner).to_be_hidden()
    page.wait_for_function(ROWS_STATE, arg=["check", "SUCCEEDED"])
    expect(page.locator("#wf-meta")).to_contain_text(new)
