"""The web GUI in Chromium against a real stack: upload, run, watch, cancel, job logs,
errors, a token and a gateway restart. Every wait is a condition with a deadline."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Proxy, Stack, shot
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.browser

DONE_FILL = "#CCFFCC"  # examples/paper/workflow.yaml, colors.status.done

ROWS_STATE = """([jobs, state]) => jobs.every(j =>
    document.querySelector(`#jobs-rows tr[data-job="${j}"]`)?.dataset.state === state)"""
NODES_FILL = """([fill, n]) => { const g = [...document.querySelectorAll('#graph g[data-job]')];
    return g.length === n && g.every(e => e.dataset.state === 'SUCCEEDED' &&
        e.querySelector('polygon, ellipse, path').getAttribute('fill') === fill); }"""


def paper_archive(tmp_path: Path) -> Path:
    path = tmp_path / "paper.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted((ROOT / "examples" / "paper").iterdir()):
            tar.add(f, arcname=f.name)
    return path


# Records, from the moment it is installed, every progress value each table row shows and
# every label line the graph's nodes show: what the user saw, in order.
WATCH = """() => {
  window.__bars = {}; window.__labels = new Set();
  new MutationObserver((muts) => { for (const m of muts) {
    const row = m.target.closest?.('tr[data-job]');
    if (row && m.attributeName === 'aria-valuenow') {
      (__bars[row.dataset.job] ||= []).push(+m.target.getAttribute('aria-valuenow')); }
  } }).observe(document.querySelector('#jobs-rows'), { attributes: true, subtree: true,
                                                        attributeFilter: ['aria-valuenow'] });
  new MutationObserver(() => document.querySelectorAll('#graph g[data-job] text')
    .forEach((t) => __labels.add(t.textContent)))
    .observe(document.querySelector('#graph'),
             { childList: true, characterData: true, subtree: true });
}"""


def test_upload_example_run_and_watch(page: Any, stack: Stack, tmp_path: Path) -> None:
    page.goto(stack.url + "/")
    page.set_input_files("#upload-file", str(paper_archive(tmp_path)))
    page.fill("#upload-name", "paper-ui")
    page.click("#upload-submit")
    page.wait_for_function("location.hash === '#/wf/paper-ui'")
    expect(page.locator("#jobs-rows tr[data-job]")).to_have_count(5)
    jobs = page.eval_on_selector_all("#jobs-rows tr[data-job]", "rs => rs.map(r => r.dataset.job)")
    assert jobs == ["start", "fetch-data", "compute", "analyze", "end"]
    svg_fetches: list[str] = []
    page.on("request", lambda r: svg_fetches.append(r.url) if "graph.svg" in r.url else None)
    page.evaluate(WATCH)

    page.click("#act-run")
    expect(page.locator("#wf-state")).to_have_text("running")
    page.click("#tab-graph")  # watch the graph while it runs
    page.wait_for_selector("#graph g[data-job]")
    page.wait_for_function(NODES_FILL, arg=[DONE_FILL, 5], timeout=30_000)
    expect(page.locator("#wf-state")).to_have_text("succeeded", timeout=10_000)
    expect(page.locator("#wf-meta")).to_contain_text("Ended")
    expect(page.locator('#graph g[data-job="end"] text').last).not_to_have_text("total=N/A")
    assert "progress=100" in page.locator('#graph g[data-job="compute"] text').all_text_contents()
    # the labels changed in place, between the few fetches of the SVG
    labels = page.evaluate("[...window.__labels]")
    assert {"progress=25", "progress=50", "progress=75"} & set(labels), labels
    assert 1 <= len(svg_fetches) <= 4, svg_fetches
    shot(page, "graph", doc=True)

    page.click("#tab-table")
    page.wait_for_function(ROWS_STATE, arg=[jobs, "SUCCEEDED"])
    # the progress bars rose: part-way values, in order, up to 100
    bars = page.evaluate("window.__bars")
    for job in ("fetch-data", "compute", "analyze"):
        seen = bars.get(job, [])
        assert seen and seen[-1] == 100 and seen == sorted(seen), (job, seen)
        assert any(0 < v < 100 for v in seen), (job, seen)
    compute = page.locator('#jobs-rows tr[data-job="compute"]')
    expect(compute.locator("[data-col=state]")).to_have_text("succeeded")
    expect(compute.locator("[data-col=end]")).not_to_be_empty()
    shot(page, "table", doc=True)

    # a click on a node opens its detail
    page.click("#tab-graph")
    page.click('#graph g[data-job="analyze"]')
    expect(page.locator("#detail-title")).to_have_text("analyze")
    expect(page.locator("#d-log")).to_contain_text("analyze ran on", timeout=10_000)
    expect(page.locator("#d-attrs")).to_contain_text("compute")  # its parent
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()

    with page.expect_download() as dl:
        page.click("#act-yaml")
    assert dl.value.suggested_filename == "paper-ui.yaml"
    assert "fetch-data" in Path(dl.value.path()).read_text()
    with page.expect_download() as dl:
        page.click("#act-svg")
    assert Path(dl.value.path()).read_text().lstrip().startswith("<?xml")


def test_load_example_button(page: Any, stack: Stack) -> None:
    page.goto(stack.url + "/")
    page.click("#load-example")
    page.wait_for_function("location.hash === '#/wf/paper'")
    expect(page.locator("#jobs-rows tr[data-job]")).to_have_count(5)
    expect(page.locator("#wf-title")).to_have_text("paper")
    page.goto(stack.url + "/#/")  # a second click finds it loaded and opens it again
    page.click("#load-example")
    expect(page.locator("#toast")).to_contain_text("loaded already")
    page.wait_for_function("location.hash === '#/wf/paper'")


def test_table_sort_filter_and_columns(page: Any, stack: Stack) -> None:
    stack.upload("sorting", "workflow:\n  nodes:\n" + "".join(
        f"    job{i}: {{exec: 'true'}}\n" for i in (1, 2, 10, 3)))
    page.goto(stack.url + "/#/wf/sorting")
    names = ("() => [...document.querySelectorAll('#jobs-rows tr[data-job]')]"
             ".map(r => r.dataset.job)")
    page.wait_for_function(f"({names})().length === 4")
    page.click("#jobs-head [data-col=name] button")
    assert page.evaluate(names) == ["job1", "job2", "job3", "job10"]
    expect(page.locator("#jobs-head [data-col=name]")).to_have_attribute("aria-sort", "ascending")
    page.click("#jobs-head [data-col=name] button")
    assert page.evaluate(names) == ["job10", "job3", "job2", "job1"]
    page.fill("#filter", "job1")
    page.wait_for_function(f"({names})().length === 2")
    expect(page.locator("#row-count")).to_have_text("2 of 4 jobs")
    page.fill("#filter", "")
    page.select_option("#state-filter", "SUCCEEDED")
    page.wait_for_function(f"({names})().length === 0")
    page.select_option("#state-filter", "")
    host = page.locator("#jobs-head [data-col=host]")
    expect(host).to_be_visible()
    page.click("#columns summary")
    page.uncheck("#column-list input[data-col=host]")
    expect(host).to_be_hidden()
    page.reload()  # the choice is kept
    expect(page.locator("#jobs-rows tr[data-job]")).to_have_count(4)
    expect(host).to_be_hidden()
    page.click("#columns summary")
    page.check("#column-list input[data-col=host]")
    expect(host).to_be_visible()


def test_large_table_renders_the_rows_in_view(page: Any, stack: Stack) -> None:
    stack.upload("wide", "workflow:\n  nodes:\n" + "".join(
        f"    w{i:03d}: {{exec: 'true'}}\n" for i in range(300)))
    page.goto(stack.url + "/#/wf/wide")
    expect(page.locator("#row-count")).to_have_text("300 jobs")
    attached = page.locator("#jobs-rows tr[data-job]")
    assert 10 < attached.count() < 150
    page.eval_on_selector(".table-wrap", "w => { w.scrollTop = w.scrollHeight; }")
    expect(page.locator('#jobs-rows tr[data-job="w299"]')).to_be_visible()
    page.fill("#filter", "w29")
    expect(page.locator("#row-count")).to_have_text("10 of 300 jobs")
    expect(attached).to_have_count(10)
    expect(page.locator("#jobs")).to_have_attribute("aria-rowcount", "11")


def test_cancel_retry_and_delete(page: Any, stack: Stack) -> None:
    stack.upload("slow", "workflow:\n  nodes:\n    nap: {exec: 'sleep 120'}\n"
                         "    after-nap: {exec: 'true', after: [nap]}\n")
    page.goto(stack.url + "/#/wf/slow")
    expect(page.locator("#jobs-rows tr[data-job]")).to_have_count(2)
    page.click("#act-run")
    page.wait_for_function(ROWS_STATE, arg=[["nap"], "RUNNING"], timeout=20_000)
    expect(page.locator("#act-cancel")).to_be_enabled()
    page.click("#act-cancel")
    page.wait_for_function(ROWS_STATE, arg=[["nap"], "CANCELED"], timeout=30_000)
    expect(page.locator('#jobs-rows tr[data-job="nap"] [data-col=state]')).to_have_text("canceled")
    expect(page.locator("#wf-state")).to_have_text("canceled", timeout=10_000)
    expect(page.locator("#act-retry")).to_be_enabled()

    page.click("#act-retry")  # the canceled job runs again, as attempt 2
    nap = page.locator('#jobs-rows tr[data-job="nap"]')
    expect(nap.locator("[data-col=attempt]")).to_have_text("2", timeout=20_000)
    expect(nap.locator("[data-col=state]")).to_have_text("running", timeout=20_000)
    expect(page.locator("#wf-state")).to_have_text("running")

    page.click("#act-delete")  # running: deleting it cancels it
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("is running")
    dialog.locator("button[value=cancel]").click()  # keep it
    expect(page.locator("#wf-title")).to_have_text("slow")
    page.click("#act-delete")
    dialog.locator("#confirm-ok").click()
    page.wait_for_function("location.hash === '#/'")
    # A running workflow is canceled first; its row goes once the monitor has dropped its
    # state (the 'deleted' event), which on a busy machine takes more than expect's 5 s.
    expect(page.locator('#wf-rows tr[data-wf="slow"]')).to_have_count(0, timeout=30_000)
    wait_until(lambda: stack.api.get("/api/workflows/slow").status_code == 404, 15,
               "the deleted workflow to be gone")


TRAIN = """#!/usr/bin/env bash
# A job that trains for a while: progress lines, a log line per epoch and an output.
for i in $(seq 1 12); do
  echo "epoch $i/12: loss=$(( 100 - i * 7 ))e-3"
  echo "# jobmesh progress=$(( i * 100 / 12 )) msg=\\"epoch $i of 12\\""
  sleep 0.25
done
echo "# jobmesh output accuracy=0.93"
echo "training finished"
"""


def test_job_detail_follows_the_log(page: Any, stack: Stack) -> None:
    stack.upload("training", "workflow:\n  nodes:\n    prepare: {exec: 'echo prepared'}\n"
                 "    train: {script: train.sh, after: [prepare]}\n", {"train.sh": TRAIN})
    page.goto(stack.url + "/#/wf/training")
    expect(page.locator("#jobs-rows tr[data-job]")).to_have_count(2)
    page.click("#act-run")
    page.wait_for_function(ROWS_STATE, arg=[["train"], "RUNNING"], timeout=20_000)
    page.click('#jobs-rows tr[data-job="train"] a')
    expect(page.locator("#detail-title")).to_have_text("train")
    log = page.locator("#d-log")
    expect(log).to_contain_text("epoch 2/12", timeout=10_000)
    # lines keep arriving while the job runs, and the detail follows to the end
    assert "training finished" not in log.text_content()
    expect(log).to_contain_text("epoch 7/12", timeout=10_000)
    expect(log).to_contain_text("training finished", timeout=15_000)
    expect(page.locator("#d-state")).to_have_text("succeeded", timeout=10_000)
    expect(page.locator("#d-outputs")).to_contain_text("0.93", timeout=10_000)
    expect(page.locator("#d-logstate")).to_contain_text("complete")
    assert log.text_content().count("epoch 7/12") == 1  # no line twice
    shot(page, "job", doc=True)


def test_invalid_workflow_shows_a_readable_error(page: Any, stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nworkflow:\n  nodes:\n    a: {exec: 'true'}\n"
                   "    b: {exec: 'true', timeout: forever}\n")
    page.goto(stack.url + "/")
    page.set_input_files("#upload-file", str(bad))
    page.click("#upload-submit")
    error = page.locator("#upload-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not valid")
    expect(error).to_contain_text("'forever' is not a duration")
    assert '"detail"' not in error.text_content() and "{" not in error.text_content()
    shot(page, "upload-error")

    readme = tmp_path / "notes.txt"
    readme.write_text("hello")
    page.set_input_files("#upload-file", str(readme))
    page.click("#upload-submit")
    expect(error).to_contain_text("neither a YAML file")

    page.goto(stack.url + "/#/wf/no-such-flow")
    expect(page.locator("#missing-text")).to_have_text("No workflow named 'no-such-flow'")


def test_a_large_sweep_uploads_only_when_allowed(page: Any, stack: Stack,
                                                  tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"  # 10,100 jobs after expansion
    sweep.write_text("name: big-sweep\nworkflow:\n  nodes:\n    cell:\n"
                     "      exec: 'echo {i} {j}'\n      foreach: {i: '[1-101]', j: '[1-100]'}\n")
    page.goto(stack.url + "/")
    page.set_input_files("#upload-file", str(sweep))
    page.click("#upload-submit")
    error = page.locator("#upload-error")
    expect(error).to_contain_text("10100 jobs is more than 10000")
    expect(error).to_contain_text("Allow more than 10,000 jobs")  # names the checkbox
    assert stack.api.get("/api/workflows/big-sweep").status_code == 404

    page.check("#upload-large")
    page.click("#upload-submit")
    expect(page.locator("#wf-title")).to_have_text("big-sweep", timeout=30_000)
    expect(page.locator("#wf-counts")).to_contain_text("10100 jobs")
    assert len(stack.api.get("/api/workflows/big-sweep").json()["spec"]["jobs"]) == 10100


def test_token_and_gateway_restart(page: Any, tmp_path: Path) -> None:
    """Behind a proxy, with a token: the page asks once, keeps the token and sends it
    (header, and ?token= for SSE). Across a gateway restart (`jobmesh down`, `jobmesh up`)
    the streams reconnect and the state refreshes."""
    stack = Stack(tmp_path / "home", "--token", "t0ps3cret")
    proxy = Proxy(stack.url)
    try:
        stack.upload("again", "workflow:\n  nodes:\n    a: {exec: 'echo one'}\n"
                              "    b: {exec: 'echo two', after: [a]}\n")
        page.goto(proxy.url + "/")
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible()
        page.fill("#token-input", "wrong")
        page.keyboard.press("Enter")
        expect(page.locator("#token-text")).to_contain_text("refused")
        page.fill("#token-input", "t0ps3cret")
        page.keyboard.press("Enter")
        expect(page.locator('#wf-rows tr[data-wf="again"]')).to_be_visible()
        assert page.evaluate("localStorage.getItem('jobmesh.token')") == "t0ps3cret"

        page.click('#wf-rows a[href="#/wf/again"]')
        expect(page.locator("#jobs-rows tr[data-job]")).to_have_count(2)
        expect(page.locator("#conn")).to_have_text("Live")
        proxy.stop()  # the browser's connections drop, as when the gateway stops
        expect(page.locator("#conn")).to_contain_text("reconnecting", timeout=15_000)
        stack.restart()
        assert stack.api.post("/api/workflows/again/run").status_code == 202
        proxy.start(stack.url)
        expect(page.locator("#conn")).to_have_text("Live", timeout=30_000)
        # the state refreshed, and the live stream carries on
        page.wait_for_function(ROWS_STATE, arg=[["a", "b"], "SUCCEEDED"], timeout=30_000)
        expect(page.locator("#wf-state")).to_have_text("succeeded", timeout=10_000)
        expect(dialog).to_be_hidden()  # asked once only
    finally:
        page.goto("about:blank")  # `jobmesh down` waits for open event streams to end
        proxy.stop()
        stack.close()


def test_keyboard_only(page: Any, stack: Stack) -> None:
    """Tabs, table links and graph nodes work from the keyboard, controls have names."""
    stack.upload("keys", "workflow:\n  nodes:\n    first: {exec: 'true'}\n"
                         "    second: {exec: 'true', after: [first]}\n")
    assert stack.api.post("/api/workflows/keys/run").status_code == 202
    page.goto(stack.url + "/#/wf/keys")
    page.wait_for_function(ROWS_STATE, arg=[["first", "second"], "SUCCEEDED"], timeout=20_000)
    unnamed = page.evaluate("""() => [...document.querySelectorAll('button, input, select')]
        .filter(e => e.offsetParent && !(e.labels?.length || e.getAttribute('aria-label')
                 || e.textContent.trim())).map(e => e.outerHTML)""")
    assert unnamed == []
    page.focus("#tab-table")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("location.hash === '#/wf/keys/graph'")
    expect(page.locator("#tab-graph")).to_be_focused()
    page.wait_for_selector('#graph g[data-job="second"]', timeout=60_000)
    page.focus('#graph g[data-job="second"]')
    page.keyboard.press("Enter")
    expect(page.locator("#detail-title")).to_have_text("second")
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()
    page.focus("#graph")
    before = page.get_attribute("#graph svg", "viewBox")
    page.keyboard.press("+")
    assert page.get_attribute("#graph svg", "viewBox") != before
    page.keyboard.press("0")
    assert page.get_attribute("#graph svg", "viewBox") == before


def test_example_archive_is_current() -> None:
    """The shipped example archive holds the paper example (scripts/build-gui-example.sh)."""
    archive = ROOT / "services" / "gateway" / "static" / "example-paper.tar.gz"
    with tarfile.open(archive) as tar:
        names = {Path(n).name for n in tar.getnames()}
        wf = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("workflow.yaml")))
        assert wf is not None
        assert (ROOT / "examples" / "paper" / "workflow.yaml").read_bytes() == wf.read()
    assert {"workflow.yaml", "fetch-data.sh", "compute.sh", "analyze.sh"} <= names
