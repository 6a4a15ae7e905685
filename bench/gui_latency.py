"""GUI latency benchmark: how fast the browser shows what jobs report.

Usage: .venv/bin/python bench/gui_latency.py [--updates 20] [--jobs 1000]
       [--shape foreach|nodes] [--keep]

1. Progress latency. One job prints `# jobmesh progress=N msg="t=<epoch>"` every 0.3 s,
   with the time it printed the line. The page (Chromium, through the real GUI) records
   when each message appears in the table's progress cell (a MutationObserver) and, for
   comparison, when the SSE event reaches the browser. Latency = shown - printed, median
   over --updates updates. Target: under 500 ms.
2. A --jobs workflow (start -> N-2 parallel -> end, each job `sleep 0.1`; the parallel
   jobs are one `foreach` node, a sweep, or with --shape nodes N-2 nodes): page load time
   (navigation to the table shown, with its count of all jobs) while it runs, the graph
   tab's render time (above 500 jobs a foreach node is drawn collapsed, as one node), a
   filter keystroke's time to the filtered table, and responsiveness
   over the rest of the run (long tasks, and the worst delay of a 50 ms timer), then the
   load time once it finished.

Starts its own stack (`jobmesh up --port 0`, a temporary JOBMESH_HOME) and signs in as a
user does: API calls carry the home's gateway token as a bearer header, and the browser
opens the URL `jobmesh up` prints (`/?token=...`), which leaves the token as a cookie.
Prints a markdown table (with the load average) for docs/benchmarks.md and writes
bench/results/gui_latency[-N].json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from playwright.sync_api import sync_playwright

BENCH = Path(__file__).resolve().parent
JOBMESH = str(Path(sys.executable).with_name("jobmesh"))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

# Watches one job's progress cell and the SSE stream; both record (now - printed) in seconds.
OBSERVE = """([wf, job]) => {
  window.__shown = []; window.__sse = [];
  const seen = new Set();
  const cell = document.querySelector(`#jobs-rows tr[data-job="${job}"] .bar-text`);
  new MutationObserver(() => {
    const m = /t=([0-9.]+)/.exec(cell.textContent);
    if (!m || seen.has(m[1])) return;
    seen.add(m[1]);
    __shown.push(Date.now() / 1000 - parseFloat(m[1]));
  }).observe(cell, { childList: true, characterData: true, subtree: true });
  const es = new EventSource(`api/workflows/${wf}/events`);
  es.addEventListener('job', (e) => {
    const d = JSON.parse(e.data);
    if (d.type !== 'progress' || !d.msg || !d.msg.startsWith('t=')) return;
    __sse.push(Date.now() / 1000 - parseFloat(d.msg.slice(2)));
  });
}"""

# Long tasks and the worst lateness of a 50 ms timer: how responsive the page stays.
PROBE = """() => {
  window.__long = []; window.__lag = 0;
  new PerformanceObserver((l) => { for (const e of l.getEntries()) __long.push(e.duration); })
    .observe({ type: 'longtask', buffered: true });
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    __lag = Math.max(__lag, now - last - 50);
    last = now;
  }, 50);
}"""


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class Stack:
    def __init__(self, home: Path):
        self.home = home
        self.env = {**os.environ, "JOBMESH_HOME": str(home)}
        res = subprocess.run([JOBMESH, "up", "--port", "0"], env=self.env, capture_output=True,
                             text=True, timeout=120)
        if res.returncode:
            raise SystemExit(f"jobmesh up failed:\n{res.stderr}{res.stdout}")
        self.url = json.loads((home / "service.json").read_text())["url"]
        self.token = (home / "gateway.token").read_text().strip()
        self.api = httpx.Client(base_url=self.url, timeout=60,
                                headers={"Authorization": f"Bearer {self.token}"})

    def context(self, browser: Any, viewport: dict[str, int] | None = None) -> Any:
        """A browser context signed in through the printed URL (the cookie stays in it)."""
        ctx = browser.new_context(viewport=viewport or {"width": 1400, "height": 900})
        page = ctx.new_page()
        page.goto(f"{self.url}/?token={self.token}")
        page.close()
        return ctx

    def upload(self, doc: dict[str, Any]) -> None:
        res = self.api.post("/api/workflows", files={"file": ("wf.yaml", yaml.safe_dump(doc))},
                            data={"replace": "true"})
        if res.status_code != 201:
            raise SystemExit(f"upload failed: {res.status_code} {res.text}")

    def wait_state(self, name: str, states: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = (self.api.get(f"/api/workflows/{name}").json().get("status") or {}).get("state")
            if state in states:
                return str(state)
            time.sleep(0.5)
        raise SystemExit(f"{name} did not reach {states} within {timeout}s")

    def close(self) -> None:
        self.api.close()
        subprocess.run([JOBMESH, "down"], env=self.env, capture_output=True, timeout=120)


def progress_latency(stack: Stack, ctx: Any, updates: int) -> dict[str, Any]:
    loop = (f'for i in $(seq 1 {updates}); do sleep 0.3; '
            f'echo "# jobmesh progress=$((i * 100 / {updates})) msg=\\"t=$(date +%s.%N)\\""; done')
    stack.upload({"name": "latency", "workflow": {"nodes": {"ticker": {"exec": loop}}}})
    page = ctx.new_page()
    page.goto(f"{stack.url}/#/wf/latency")
    page.wait_for_selector('#jobs-rows tr[data-job="ticker"]')
    page.evaluate(OBSERVE, ["latency", "ticker"])
    page.click("#act-run")
    page.wait_for_function(f"window.__shown.length >= {updates}", timeout=updates * 3000 + 30000)
    page.wait_for_function(f"window.__sse.length >= {updates}", timeout=10000)
    shown, sse = page.evaluate("[window.__shown, window.__sse]")
    page.close()
    stack.wait_state("latency", {"SUCCEEDED", "FAILED"}, 60)
    return {"updates": len(shown), "shown_median_ms": ms(statistics.median(shown)),
            "shown_p90_ms": ms(sorted(shown)[int(0.9 * (len(shown) - 1))]),
            "shown_max_ms": ms(max(shown)), "sse_median_ms": ms(statistics.median(sse))}


def big_workflow(stack: Stack, ctx: Any, jobs: int, shape: str) -> dict[str, Any]:
    nodes: dict[str, Any] = {"start": {"exec": "true"}}
    if shape == "foreach":  # a sweep: one node, expanded at load time to jobs-2 jobs
        nodes["sweep"] = {"exec": "sleep 0.1", "after": ["start"],
                          "foreach": {"i": f"n[1-{jobs - 2}]"}}
        nodes["end"] = {"exec": "true", "after": ["sweep"]}
        names = [f"sweep-i_n{i}" for i in range(1, jobs - 1)]
        query = "i_n5"
    else:
        names = [f"j{i:05d}" for i in range(jobs - 2)]
        nodes.update({n: {"exec": "sleep 0.1", "after": ["start"]} for n in names})
        nodes["end"] = {"exec": "true", "after": names}
        query = "j005"
    stack.upload({"name": "big", "workflow": {"nodes": nodes}})
    filtered = sum(query in n for n in names)
    collapsed = shape == "foreach" and jobs > 500  # COLLAPSE_LIMIT in services/monitor/graph.py
    # the graph is drawn: every job's node, or the sweep's one node counting its jobs
    graph = (f"document.querySelector('#graph g[data-group=\"sweep\"]')?.dataset.count === "
             f"'{jobs - 2}'" if collapsed else
             f"document.querySelectorAll('#graph g[data-job]').length === {jobs}")
    out: dict[str, Any] = {"jobs": jobs, "shape": shape, "graph_collapsed": collapsed}
    # the table renders the rows in view (and counts all of them)
    rows = (f"document.querySelector('#row-count').textContent === '{jobs} jobs' && "
            "document.querySelectorAll('#jobs-rows tr[data-job]').length > 10")
    assert stack.api.post("/api/workflows/big/run").status_code == 202
    stack.wait_state("big", {"RUNNING"}, 60)

    page = ctx.new_page()
    page.add_init_script(f"({PROBE})()")
    page.goto(f"{stack.url}/#/wf/big")
    page.wait_for_function(f"{rows} && document.querySelector('#wf-state').textContent !== ''",
                           timeout=60000)
    out["load_running_ms"] = round(page.evaluate("performance.now()"), 1)

    t0 = page.evaluate("performance.now()")
    page.fill("#filter", query)
    page.wait_for_function("document.querySelector('#row-count').textContent === "
                           f"'{filtered} of {jobs} jobs'", timeout=30000)
    out["filter_ms"] = round(page.evaluate("performance.now()") - t0, 1)
    page.fill("#filter", "")

    t0 = page.evaluate("performance.now()")
    page.click("#tab-graph")
    page.wait_for_function(graph, timeout=120000)
    out["graph_running_ms"] = round(page.evaluate("performance.now()") - t0, 1)
    page.click("#tab-table")
    print("while running:", json.dumps(out), flush=True)  # kept if the rest fails

    # responsiveness over the rest of the run, the page loaded and showing the table
    page.evaluate("window.__long = []; window.__lag = 0")
    t0 = time.monotonic()

    page.wait_for_function("document.querySelector('#wf-state').textContent === 'succeeded'",
                           timeout=max(600, jobs * 0.2) * 1000, polling=500)
    counts = f"document.querySelector('#wf-counts').textContent === '{jobs} succeeded'"
    page.wait_for_function(counts, timeout=30000)
    long_tasks, lag = page.evaluate("[window.__long, window.__lag]")
    out["watched_s"] = round(time.monotonic() - t0, 1)
    out.update(long_tasks=len(long_tasks), long_task_max_ms=round(max(long_tasks, default=0), 1),
               long_task_total_ms=round(sum(long_tasks), 1), worst_timer_delay_ms=round(lag, 1))
    page.close()

    page = ctx.new_page()
    page.goto(f"{stack.url}/#/wf/big")
    page.wait_for_function(rows, timeout=60000)
    out["load_finished_ms"] = round(page.evaluate("performance.now()"), 1)
    t0 = page.evaluate("performance.now()")
    page.click("#tab-graph")
    page.wait_for_function(graph, timeout=120000)
    out["graph_finished_ms"] = round(page.evaluate("performance.now()") - t0, 1)
    page.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--shape", choices=["foreach", "nodes"], default="foreach",
                    help="the parallel jobs as one foreach node (a sweep) or as separate nodes")
    ap.add_argument("--keep", action="store_true", help="keep the temporary JOBMESH_HOME")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="jobmesh-gui-bench-"))
    stack = Stack(home)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            ctx = stack.context(browser)
            lat = progress_latency(stack, ctx, args.updates)
            print("progress latency:", json.dumps(lat), flush=True)
            load_before = os.getloadavg()
            big = big_workflow(stack, ctx, args.jobs, args.shape)
            load_after = os.getloadavg()
            browser.close()
    finally:
        stack.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    load = {"before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after]}
    result = {"latency": lat, "big": big, "cpus": os.cpu_count(), "loadavg": load,
              "time": time.time()}
    (BENCH / "results").mkdir(exist_ok=True)
    name = "gui_latency.json" if args.jobs == 1000 else f"gui_latency-{args.jobs}.json"
    (BENCH / "results" / name).write_text(json.dumps(result, indent=2))
    rows = [
        ("progress line -> shown in the table, median", f"{lat['shown_median_ms']} ms "
         f"(p90 {lat['shown_p90_ms']}, max {lat['shown_max_ms']}; {lat['updates']} updates)"),
        ("progress line -> SSE event in the browser, median", f"{lat['sse_median_ms']} ms"),
        (f"{big['jobs']}-job workflow ({big['shape']}), page load while running (table shown)",
         f"{big['load_running_ms']} ms"),
        (f"{big['jobs']}-job workflow, page load when finished", f"{big['load_finished_ms']} ms"),
        ("graph tab render" + (" (collapsed)" if big["graph_collapsed"] else "") +
         ", running / finished",
         f"{big['graph_running_ms']} / {big['graph_finished_ms']} ms"),
        ("filter keystroke -> filtered table (running)", f"{big['filter_ms']} ms"),
        (f"the rest of the run ({big['watched_s']} s): long tasks (count, max, total)",
         f"{big['long_tasks']}, {big['long_task_max_ms']} ms, {big['long_task_total_ms']} ms"),
        ("the rest of the run: worst delay of a 50 ms timer", f"{big['worst_timer_delay_ms']} ms"),
    ]
    print(f"\nGUI latency ({os.cpu_count()} CPUs, headless Chromium; load average "
          f"{' '.join(map(str, load['before']))} before the big workflow, "
          f"{' '.join(map(str, load['after']))} after)\n")
    print("| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    ok = lat["shown_median_ms"] < 500
    print(f"\nprogress latency target (< 500 ms): {'met' if ok else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
