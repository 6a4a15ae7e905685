"""What the CLI shows: the live view while a workflow runs, tables, and the stable JSON
shape of ``jobmesh status --output json``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.progress_bar import ProgressBar
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from jobmesh.common import jobfold
from jobmesh.common.labels import format_duration
from jobmesh.common.messages import EVENT_LOG, JobStatus, WorkflowSnapshot
from jobmesh.common.report import iso, status_json  # noqa: F401  (re-exported)

STYLE = {"PENDING": "dim", "READY": "cyan", "QUEUED": "yellow", "RUNNING": "blue",
         "SUCCEEDED": "green", "FAILED": "bold red", "CANCELED": "magenta", "SKIPPED": "dim"}


class Tracker:
    """The CLI's copy of a run, kept from the gateway's event stream: a ``workflow`` event
    brings the monitor's snapshot, a ``job`` event is applied by the job-event rule
    (``jobfold``), so a retried job shows its new attempt at once, not FAILED."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.snap: WorkflowSnapshot | None = None
        self.last: dict[str, Any] = {}  # the last snapshot event, as sent

    def feed(self, event: str, data: Any) -> bool:
        """Apply one stream event; True when what the user sees changed."""
        if not isinstance(data, dict):
            return False
        if event == "workflow":
            self._snapshot(data)
            return True
        if event != "job" or self.snap is None or data.get("run") != self.snap.run \
                or data.get("type") == "jobs_expanded":  # the next snapshot brings the shape
            return False
        js = self.snap.jobs.get(data.get("job", ""))
        if js is None:
            return False
        try:
            ev = EVENT_LOG.validate_python(data)
        except ValueError:  # an event this CLI does not know: the next snapshot has it
            return False
        new = jobfold.apply(js, ev)
        if new is None:
            return False
        self.snap.jobs[ev.job] = new
        return True

    def _snapshot(self, data: dict[str, Any]) -> None:
        """Take the snapshot, but keep what job events already told of a job when the
        snapshot is behind them (same run, and a newer attempt or a higher state)."""
        self.last = data
        old = self.snap if self.snap is not None and self.snap.run == data.get("run") \
            else None
        jobs: dict[str, JobStatus] = {}
        for n, raw in (data.get("jobs") or {}).items():
            new = JobStatus(**raw)
            was = old.jobs.get(n) if old else None
            if was is not None and (was.attempt, was.state.rank) > (new.attempt,
                                                                     new.state.rank):
                jobs[n] = was
                continue
            if was is not None and was.attempt == new.attempt:  # times the stream told
                new.started, new.ended = was.started, was.ended
                new.host, new.run_dir, new.native_id = was.host, was.run_dir, was.native_id
                new.exit_code, new.reason = was.exit_code, was.reason
            jobs[n] = new
        self.snap = WorkflowSnapshot(name=data.get("name", self.name), run=data["run"],
                                     state=data["state"], jobs=jobs)


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


def live(snap: WorkflowSnapshot | None, name: str, now: float | None = None) -> LiveView:
    """The live view of a run (``jobmesh run``, ``jobmesh workflow run --wait``): a line of
    counts, a bar, and a row per job while every job fits the terminal; a bigger run shows
    its counts per state and only its running and failed jobs (``LiveView``)."""
    return LiveView(snap, name, now)


class LiveView:
    """Rendered at the console's size each time rich draws it (``Live`` redraws at its
    refresh rate, so durations go on and a resized terminal is followed). ``now`` fixes the
    clock (tests); None reads it at each draw."""

    HEAD = 2  # the summary line and the overall bar

    def __init__(self, snap: WorkflowSnapshot | None, name: str, now: float | None = None):
        self.snap, self.name, self.now = snap, name, now

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        snap, now = self.snap, self.now or time.time()
        if snap is None:
            yield Text(f"{self.name}: waiting for the first state...", style="dim")
            return
        height = options.height or options.max_height or console.size.height
        total = max(1, len(snap.jobs))
        finished = sum(1 for j in snap.jobs.values() if j.state.terminal)
        yield summary(snap, now)
        yield ProgressBar(total=total, completed=finished, width=40)
        yield Segment.line()  # a bar ends no line of its own
        if len(snap.jobs) <= height - self.HEAD - 1:  # every job has its line (and one spare)
            yield job_rows(list(snap.jobs.items()), now, options.max_width)
            return
        yield from compact(snap, now, height - self.HEAD, options.max_width)


def state_counts(snap: WorkflowSnapshot) -> Text:
    """Every state a job is in, with how many: ``RUNNING 4 · SUCCEEDED 980 · ...``."""
    t = Text()
    for state, n in snap.counts().items():
        if n:
            if t:
                t.append(" · ", style="dim")
            t.append(f"{state} {n}", style=STYLE[state])
    return t


def compact(snap: WorkflowSnapshot, now: float, lines: int, width: int = 100) -> Iterator[Any]:
    """A run with more jobs than the terminal has lines, in ``lines`` lines: the counts per
    state, then the running and the failed jobs, as many as fit, then how many more
    (``width`` columns)."""
    yield state_counts(snap)
    running = [(n, j) for n, j in snap.jobs.items() if j.state.value == "RUNNING"]
    failed = [(n, j) for n, j in snap.jobs.items() if j.state.value == "FAILED"]
    room = max(2, lines - 2)  # the counts line, and the "... and N more" line
    # failed jobs keep at least half the rows while jobs run; running ones take the rest
    n_failed = min(len(failed), max(room // 2, room - len(running)))
    n_running = min(len(running), room - n_failed)
    rows = running[:n_running] + failed[:n_failed]
    if rows:
        yield job_rows(rows, now, width)
    more = [f"{k} more {word}" for k, word in ((len(running) - n_running, "running"),
                                                (len(failed) - n_failed, "failed")) if k > 0]
    if more:
        yield Text(f"... and {' and '.join(more)}", style="dim")


def job_rows(items: list[tuple[str, JobStatus]], now: float, width: int = 100) -> Table:
    """One line per job, in ``width`` columns: name, state (with the attempt after a
    retry), progress, message, how long it ran. Long names and messages are cut, never
    wrapped; the message gives way first, then the name, then the bar."""
    states = [Text(j.state.value, style=STYLE[j.state.value]) for _, j in items]
    for (_, j), state in zip(items, states):
        if j.attempt > 1:
            state.append(f" (attempt {j.attempt})", style="dim")
    state_w = max((len(t) for t in states), default=7)
    times = [duration(j, now) for _, j in items]
    time_w = max((len(t) for t in times), default=0)
    bar_w = 24 if width >= 90 else 10
    fixed = state_w + bar_w + 4 + time_w + 5  # and the padding between the six columns
    longest = max((len(n) for n, _ in items), default=1)
    name_w = max(1, min(longest, max(8, (width - fixed) // 2), width - fixed - 1))
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, overflow="ellipsis", width=name_w)
    table.add_column(no_wrap=True, width=state_w)
    table.add_column(no_wrap=True, width=bar_w)
    table.add_column(no_wrap=True, justify="right", width=4)
    table.add_column(no_wrap=True, overflow="ellipsis",
                     width=max(1, width - fixed - name_w))
    table.add_column(no_wrap=True, justify="right", width=time_w)
    for (n, j), state, took in zip(items, states, times):
        table.add_row(Text(n, style="bold"), state,
                      ProgressBar(total=100, completed=j.progress, width=bar_w),
                      f"{j.progress:3.0f}%", Text(j.msg or j.reason or "", style="dim"), took)
    return table


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
    notes = failure_notes(snap.name, [(n, j.state.value, j.run_dir, j.host, j.exit_code)
                                      for n, j in snap.jobs.items()])
    if notes is not None:  # under the table: what the failed jobs said (issue 23)
        t.caption_justify, t.caption_style = "left", "none"
        t.caption = Text(str(t.caption) + "\n", style="dim italic") + notes if t.caption \
            else notes
    for name, j in items:
        state = j.state.value + (" (cached)" if j.cached_from else "")
        t.add_row(name, Text(state, style=STYLE[j.state.value]), f"{j.progress:.0f}%",
                  str(j.attempt), "" if j.exit_code is None else str(j.exit_code),
                  clock(j.started), duration(j, now), j.native_id or "",
                  j.reason if j.state.value in ("FAILED", "CANCELED", "SKIPPED", "QUEUED",
                                                "PENDING") and j.reason else (j.msg or ""))
    return t


TAIL_LINES, TAIL_JOBS, TAIL_BYTES, TAIL_WIDTH = 5, 5, 8192, 200


def log_tail(run_dir: str | None, lines: int = TAIL_LINES) -> list[str] | None:
    """The last lines of a job's ``job.log`` when this machine can read it, else None
    (a remote job's directory, or no run directory)."""
    if not run_dir:
        return None
    path = Path(run_dir) / "job.log"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return None
    text = data.decode("utf-8", "replace").splitlines()
    if size > TAIL_BYTES and text:
        text = text[1:]  # the first line read may be cut
    return [ln[:TAIL_WIDTH] for ln in text[-lines:]]


SHOW_JOB = "jobmesh status {wf} --job {job}"


def failure_notes(workflow: str, jobs: list[tuple[str, str, str | None, str | None,
                                                   int | None]],
                  command: str = SHOW_JOB,
                  read: Callable[[str, str | None], list[str] | None] | None = None
                  ) -> Text | None:
    """For each FAILED job (name, state, run_dir, host, exit code): the last lines of its
    log (``read(job, run_dir)``, by default this machine's file), or, when it cannot be
    read, where it is and the ``command`` that shows it. None when no job failed."""
    failed = [j for j in jobs if j[1] == "FAILED"]
    if not failed:
        return None
    t = Text()
    for i, (name, _, run_dir, host, code) in enumerate(failed[:TAIL_JOBS]):
        if i:
            t.append("\n")
        how = f" (exit code {code})" if code is not None else ""
        tail = read(name, run_dir) if read else log_tail(run_dir)
        if tail is not None:
            t.append(f"{name} failed{how}; last lines of its log:", style="bold red")
            for line in tail or ["(the log is empty)"]:
                t.append(f"\n  {line}")
            continue
        t.append(f"{name} failed{how}", style="bold red")
        where = f"{host + ':' if host else ''}{run_dir}/job.log" if run_dir else "no log"
        t.append(f"; log: {where}; '{command.format(wf=workflow, job=name)}' shows it")
    if len(failed) > TAIL_JOBS:
        t.append(f"\n... and {len(failed) - TAIL_JOBS} more failed jobs")
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
