"""What the CLI shows: the live view while a workflow runs, tables, and the stable JSON
shape of ``jobmesh status --output json``."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from jobmesh.common.labels import format_duration
from jobmesh.common.messages import JobStatus, WorkflowSnapshot
from jobmesh.common.report import iso, status_json  # noqa: F401  (re-exported)
from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

STYLE = {"PENDING": "dim", "READY": "cyan", "QUEUED": "yellow", "RUNNING": "blue",
         "SUCCEEDED": "green", "FAILED": "bold red", "CANCELED": "magenta", "SKIPPED": "dim"}
MAX_LIVE_ROWS = 12


def clock(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S") if t else ""


def duration(js: JobStatus, now: float) -> str:
    if js.started is None:
        return ""
    return format_duration((js.ended or now) - js.started)


def summary(snap: WorkflowSnapshot, now: float) -> Text:
    c = snap.counts()
    total = len(snap.jobs)
    done = c["SUCCEEDED"]
    t = Text()
    t.append(f"{snap.name} ", style="bold")
    t.append(snap.state.value, style=STYLE.get(snap.state.value, ""))
    t.append(f"  {done}/{total} done")
    for key, word in (("RUNNING", "running"), ("QUEUED", "queued"), ("FAILED", "failed"),
                      ("SKIPPED", "skipped"), ("CANCELED", "canceled")):
        if c[key]:
            t.append(f" · {c[key]} {word}", style=STYLE[key])
    waiting = c["PENDING"] + c["READY"]
    if waiting:
        t.append(f" · {waiting} pending", style="dim")
    if snap.started:
        t.append(f"  {format_duration((snap.ended or now) - snap.started)}", style="dim")
    return t


def live(snap: WorkflowSnapshot | None, name: str, now: float | None = None) -> Group:
    now = now or time.time()
    if snap is None:
        return Group(Text(f"{name}: waiting for the first state...", style="dim"))
    total = max(1, len(snap.jobs))
    finished = sum(1 for j in snap.jobs.values() if j.state.terminal)
    overall = ProgressBar(total=total, completed=finished, width=40)
    running = [(n, j) for n, j in snap.jobs.items() if j.state.value in ("RUNNING", "QUEUED")]
    table = Table.grid(padding=(0, 1))
    for n, j in running[:MAX_LIVE_ROWS]:
        table.add_row(Text(n, style="bold"), Text(j.state.value, style=STYLE[j.state.value]),
                      ProgressBar(total=100, completed=j.progress, width=24),
                      f"{j.progress:3.0f}%", Text(j.msg or j.reason or "", style="dim"),
                      duration(j, now))
    more = len(running) - MAX_LIVE_ROWS
    parts: list[Any] = [summary(snap, now), overall, table]
    if more > 0:
        parts.append(Text(f"... and {more} more running", style="dim"))
    return Group(*parts)


FINAL_ROWS = 40  # a bigger workflow's table lists the jobs that did not succeed first


def final_table(snap: WorkflowSnapshot, now: float | None = None,
                limit: int | None = FINAL_ROWS) -> Table:
    now = now or time.time()
    t = Table(title=f"{snap.name} ({snap.run}): {snap.state.value}", title_justify="left")
    for col in ("job", "state", "progress", "attempt", "exit", "started", "duration",
                "native id", "reason / message"):
        t.add_column(col, no_wrap=col in ("job", "state"))
    items = list(snap.jobs.items())
    hidden = 0
    if limit is not None and len(items) > limit:
        items.sort(key=lambda kv: kv[1].state.value == "SUCCEEDED")  # stable: others first
        hidden = len(items) - limit
        items = items[:limit]
    if hidden:
        t.caption = (f"... and {hidden} more jobs ({summary(snap, now).plain}); "
                     f"'jobmesh status {snap.name} -o json' lists them all")
    reused = [j.cached_from for j in snap.jobs.values() if j.cached_from]
    if reused:  # docs/workflows.md#resume-and-caching
        saved = sum(c.get("seconds") or 0.0 for c in reused)
        t.caption = (t.caption + "\n" if t.caption else "") + (
            f"{len(reused)} of {len(snap.jobs)} jobs reused from earlier runs (cached), "
            f"saving {saved:.1f}s of run time")
    for name, j in items:
        state = j.state.value + (" (cached)" if j.cached_from else "")
        t.add_row(name, Text(state, style=STYLE[j.state.value]), f"{j.progress:.0f}%",
                  str(j.attempt), "" if j.exit_code is None else str(j.exit_code),
                  clock(j.started), duration(j, now), j.native_id or "",
                  j.reason if j.state.value in ("FAILED", "CANCELED", "SKIPPED", "QUEUED",
                                                "PENDING") and j.reason else (j.msg or ""))
    return t


def job_detail(snap: WorkflowSnapshot, job: str) -> Table:
    j = snap.jobs[job]
    t = Table(show_header=False, title=f"{snap.name} / {job}", title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    rows: list[tuple[str, Any]] = [
        ("state", Text(j.state.value, style=STYLE[j.state.value])),
        ("progress", f"{j.progress:.0f}%" + (f"  {j.msg}" if j.msg else "")),
        ("attempt", str(j.attempt)), ("kind", j.kind), ("host", j.host or ""),
        ("native id", j.native_id or ""),
        ("exit code", "" if j.exit_code is None else str(j.exit_code)),
        ("reason", j.reason or ""), ("started", iso(j.started) or ""),
        ("ended", iso(j.ended) or ""), ("run dir", j.run_dir or ""),
        ("log", f"{j.run_dir}/job.log" if j.run_dir else ""),
    ]
    for k, v in j.outputs.items():
        rows.append((f"output {k}", repr(v) if not isinstance(v, str) else v))
    for h in j.history:
        rows.append((f"attempt {h.get('attempt')}", f"{h.get('state')} "
                     f"{h.get('reason') or ''} {h.get('run_dir') or ''}".strip()))
    for k, v in rows:
        t.add_row(k, v)
    return t
