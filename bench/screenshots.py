"""Remake the GUI screenshots of the docs: docs/images/timeline.png (a run's timeline),
docs/images/runs.png (the run history with its plot of durations) and
docs/images/large-graph.png (a 1,050-job workflow's graph, each foreach node collapsed into
one node with counts per state, one of them expanded).

Usage: .venv/bin/python bench/screenshots.py [--out docs/images] [--keep]

Starts its own stack (`jobmesh up --port 0`, a temporary JOBMESH_HOME), signs the browser in
through the URL `jobmesh up` prints, runs small workflows over REST and takes each picture
in headless Chromium (1280x800) once the page shows what it should. Takes about two minutes.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from gui_latency import ARGS, CHROMIUM, Stack
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
VIEW = {"width": 1280, "height": 800}


def analysis(work: Path) -> dict[str, Any]:
    """A small pipeline; `work` holds the files its jobs read: `gate` (absent: 'check'
    fails), `scale` (how long the jobs sleep) and `flaky` (present: train fails once)."""
    s = f"$(cat {work}/scale)"
    step = 'for i in 1 2 3 4; do sleep {t}; echo "# jobmesh progress=$((i * 25))"; done'
    return {"name": "analysis", "workflow": {"nodes": {
        "fetch": {"exec": f"sleep {s}"},
        "check": {"exec": f"test -e {work}/gate", "after": ["fetch"]},
        "clean-a": {"exec": step.format(t=s), "after": ["check"]},
        "clean-b": {"exec": step.format(t="0.6"), "after": ["check"]},
        "clean-c": {"exec": step.format(t="0.3"), "after": ["check"]},
        "train": {"exec": f"if [ -e {work}/flaky ]; then rm {work}/flaky; sleep 1; exit 1; fi; "
                  + step.format(t=f"{s}"), "after": ["clean-a", "clean-b", "clean-c"],
                  "retries": 1},
        "plot": {"exec": "sleep 1", "after": ["train"]},
        "report": {"exec": "sleep 1.5", "after": ["train"]},
        "publish": {"exec": "sleep 0.5", "after": ["plot", "report"]},
    }}}


def run(stack: Stack, name: str, timeout: float = 180) -> str:
    # every job runs again: by default a job whose cache key matches is reused, not run
    res = stack.api.post(f"/api/workflows/{name}/run", json={"restart": True})
    if res.status_code != 202:
        raise SystemExit(f"run {name}: {res.status_code} {res.text}")
    time.sleep(0.5)  # the POST waits for the snapshot; the state is RUNNING from here
    return stack.wait_state(name, {"SUCCEEDED", "FAILED", "CANCELED"}, timeout)


def snap(page: Any, path: Path, hover: bool = False) -> None:
    page.evaluate("document.querySelector('#toast')?.setAttribute('hidden', '')")
    if not hover:
        page.mouse.move(0, 0)
    page.screenshot(path=str(path))
    print(f"{path}: {path.stat().st_size // 1024} KB", flush=True)


def timeline_and_runs(stack: Stack, ctx: Any, work: Path, out: Path) -> None:
    stack.upload(analysis(work))
    for scale, gate, flaky in (("1", False, False), ("1", True, False), ("2", True, False),
                               ("0.5", True, False), ("1", True, True)):
        (work / "scale").write_text(scale)
        (work / "gate").unlink(missing_ok=True)
        if gate:
            (work / "gate").touch()
        if flaky:
            (work / "flaky").touch()
        print("analysis:", run(stack, "analysis"), flush=True)
    page = ctx.new_page()
    page.goto(f"{stack.url}/#/wf/analysis/timeline")
    expect(page.locator("#timeline g.tl-job")).to_have_count(9, timeout=30_000)
    expect(page.locator('#timeline g.tl-job[data-job="publish"]')).to_have_attribute(
        "data-state", "SUCCEEDED")
    page.locator('#timeline g.tl-job[data-job="train"] rect.tl-run').last.hover()
    expect(page.locator("#tl-tip")).to_be_visible()
    snap(page, out / "timeline.png", hover=True)
    page.click("#tab-runs")
    expect(page.locator("#runs-table tbody tr")).to_have_count(5, timeout=30_000)
    expect(page.locator("svg.run-plot rect")).to_have_count(5)
    snap(page, out / "runs.png")
    page.close()


def large_graph(stack: Stack, ctx: Any, work: Path, out: Path) -> None:
    stack.upload({"name": "sweep", "workflow": {"nodes": {
        "prepare": {"exec": "sleep 1"},
        "simulate": {"exec": "sleep 0.05", "after": ["prepare"],
                     "foreach": {"seed": "s[1-1000]"}},
        "summarize": {"exec": "true", "after": ["simulate"],
                      "foreach": {"part": "p[1-48]"}},
        "paper": {"exec": "true", "after": ["summarize"]},
    }}})
    res = stack.api.post("/api/workflows/sweep/run")
    if res.status_code != 202:
        raise SystemExit(f"run sweep: {res.status_code} {res.text}")
    try:
        page = ctx.new_page()
        page.goto(f"{stack.url}/#/wf/sweep/graph")
        group = page.locator('#graph g[data-group="simulate"]')
        expect(group).to_have_attribute("data-count", "1000", timeout=60_000)
        page.wait_for_function("""() => {
            const t = document.querySelector('#wf-counts').textContent;
            const m = /(\\d+) succeeded/.exec(t); return m && +m[1] > 150; }""", timeout=300_000,
                               polling=500)
        group.focus()
        page.keyboard.press("Enter")  # expanded below the graph: a square per job
        expect(page.locator("#group-panel rect[data-job]")).to_have_count(1000)
        page.evaluate("document.querySelector('#group-panel').scrollIntoView({block: 'end'})")
        snap(page, out / "large-graph.png")
        page.close()
    finally:
        stack.api.post("/api/workflows/sweep/cancel")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--only", choices=["timeline", "large-graph"],
                    help="only timeline.png and runs.png, or only large-graph.png")
    ap.add_argument("--keep", action="store_true", help="keep the temporary JOBMESH_HOME")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="jobmesh-shots-"))
    work = home / "files"
    work.mkdir()
    stack = Stack(home)
    stack.api.timeout = httpx.Timeout(300)  # a loaded machine answers slowly
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            ctx = stack.context(browser, VIEW)
            if args.only != "large-graph":
                timeline_and_runs(stack, ctx, work, args.out)
            if args.only != "timeline":
                large_graph(stack, ctx, work, args.out)
            browser.close()
    finally:
        stack.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
