"""The timeline tab in Chromium against a real stack: one bar per job, grouped by where it
ran, queue time apart from run time, times on hover and focus, live while the run goes on
(issue 20). Every wait is a condition with a deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Stack, shot

pytestmark = pytest.mark.browser

SVG_WIDTH = "+document.querySelector('#timeline svg').getAttribute('width')"
BAR_STATE = """([job, state]) => document.querySelector(
    `#timeline g.tl-job[data-job="${job}"]`)?.dataset.state === state"""


def test_timeline_shows_a_bar_per_job_and_follows_the_run(page: Any, stack: Stack,
                                                        tmp_path: Path) -> None:
    gate = tmp_path / "open-the-gate"
    stack.upload("gantt", "workflow:\n  nodes:\n"
                 "    prepare: {exec: 'sleep 0.3'}\n"
                 f"    train: {{exec: 'while [ ! -e {gate} ]; do sleep 0.1; done', "
                 "after: [prepare]}\n"
                 "    report: {exec: 'echo done', after: [train]}\n")
    page.goto(stack.url + "/#/wf/gantt/timeline")
    expect(page.locator("#tab-timeline")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-timeline")).to_be_visible()
    expect(page.locator("#timeline")).to_contain_text("Not run yet")

    page.click("#act-run")
    bars = page.locator("#timeline g.tl-job")
    expect(bars).to_have_count(3, timeout=20_000)
    page.wait_for_function(BAR_STATE, arg=["train", "RUNNING"], timeout=20_000)
    page.wait_for_function(BAR_STATE, arg=["prepare", "SUCCEEDED"], timeout=20_000)
    prepare = page.locator('#timeline g.tl-job[data-job="prepare"]')
    expect(prepare.locator("rect.tl-run")).to_have_count(1)
    expect(prepare.locator("rect.tl-queue")).to_have_count(1)  # released, then started
    report = page.locator('#timeline g.tl-job[data-job="report"]')
    expect(report.locator("rect.tl-run")).to_have_count(0)  # waits for train
    expect(page.locator("#timeline text.tl-group")).to_contain_text(["(3)"])

    # the running bar grows while the page is left alone: it is live, not a picture
    train_run = page.locator('#timeline g.tl-job[data-job="train"] rect.tl-run')
    width = float(train_run.get_attribute("width"))
    page.wait_for_function(
        """(w) => +document.querySelector('#timeline g.tl-job[data-job="train"] rect.tl-run')
             ?.getAttribute('width') > w""", arg=width, timeout=15_000)

    # hover gives the job's times
    prepare.locator("rect.tl-run").hover()
    tip = page.locator("#tl-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("prepare: succeeded")
    expect(tip).to_contain_text("queued")
    expect(tip).to_contain_text("ran")
    shot(page, "timeline", doc=True)

    # + stretches the time axis (the chart scrolls sideways), Fit brings it back
    wide = float(page.locator("#timeline svg").get_attribute("width"))
    page.click("#tl-zoom-in")
    page.wait_for_function(f"(w) => {SVG_WIDTH} > w * 1.5", arg=wide)
    page.click("#tl-fit")
    page.wait_for_function(f"(w) => {SVG_WIDTH} <= w", arg=wide)

    gate.write_text("")
    page.wait_for_function(BAR_STATE, arg=["report", "SUCCEEDED"], timeout=30_000)
    page.wait_for_function(BAR_STATE, arg=["train", "SUCCEEDED"], timeout=5_000)
    expect(report.locator("rect.tl-run")).to_have_count(1)
    expect(bars).to_have_count(3)
    expect(page.locator("#wf-state")).to_have_text("succeeded", timeout=10_000)

    # keyboard alone: focus a bar, read its times, open the job with Enter
    page.mouse.move(0, 0)
    page.focus('#timeline g.tl-job[data-job="train"]')
    expect(tip).to_contain_text("train: succeeded")
    page.keyboard.press("ArrowDown")
    expect(tip).to_contain_text("report: succeeded")
    page.keyboard.press("Enter")
    expect(page.locator("#detail-title")).to_have_text("report")
    assert page.evaluate("location.hash") == "#/wf/gantt/timeline?job=report"


def test_timeline_keeps_an_earlier_attempt_on_the_row(page: Any, stack: Stack,
                                                      tmp_path: Path) -> None:
    mark = tmp_path / "tried"
    stack.upload("flaky", "workflow:\n  nodes:\n"
                 f"    flaky: {{exec: 'if [ -e {mark} ]; then sleep 0.3; else touch {mark}; "
                 "sleep 0.3; exit 1; fi', retries: 1}\n")
    page.goto(stack.url + "/#/wf/flaky/timeline")
    page.click("#act-run")
    expect(page.locator("#wf-state")).to_have_text("succeeded", timeout=30_000)
    row = page.locator('#timeline g.tl-job[data-job="flaky"]')
    expect(row).to_have_attribute("data-state", "SUCCEEDED")
    expect(row.locator("rect.tl-past")).to_have_count(1)  # attempt 1, failed
    expect(row.locator("rect.tl-run")).to_have_count(1)   # attempt 2
    row.locator("rect.tl-run").hover()
    expect(page.locator("#tl-tip")).to_contain_text("flaky: succeeded, attempt 2")
    expect(page.locator("#tl-tip")).to_contain_text("attempt 1: failed")
    page.reload()  # the same from the stored state, not only from live events
    expect(row.locator("rect.tl-past")).to_have_count(1)
    expect(row).to_have_attribute("data-state", "SUCCEEDED")
