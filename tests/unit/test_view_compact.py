"""The CLI's live view of a run with more jobs than the terminal has lines (issue 20): the
counts per state, then only the running and failed jobs, as many as fit, and "... and N
more". Rendered with a rich Console of a fixed size; the assertions are on its text."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from rich.console import Console
from rich.live import Live

from jobmesh.cli import view
from jobmesh.common.messages import JobFailed, JobPending, JobStarted, WorkflowSnapshot
from jobmesh.common.messages import JobStatus as Status
from jobmesh.gateway.events import snap_event

pytestmark = pytest.mark.unit
NOW = 1000.0


def screen(renderable: Any, height: int, width: int = 100) -> list[str]:
    """The lines a terminal of width x height shows for the renderable."""
    console = Console(width=width, height=height, record=True, file=io.StringIO(),
                      color_system=None)
    console.print(renderable)
    return [ln.rstrip() for ln in console.export_text().splitlines()]


def sweep(running: int, failed: int, succeeded: int, pending: int,
          state: str = "RUNNING") -> WorkflowSnapshot:
    jobs: dict[str, Status] = {}
    for kind, n, extra in (("run", running, {"state": "RUNNING", "started": NOW - 65,
                                             "progress": 40, "msg": "step 4/10"}),
                           ("bad", failed, {"state": "FAILED", "exit_code": 3,
                                            "reason": "exit code 3", "started": NOW - 9,
                                            "ended": NOW - 5}),
                           ("ok", succeeded, {"state": "SUCCEEDED", "progress": 100}),
                           ("wait", pending, {"state": "PENDING"})):
        for i in range(n):
            jobs[f"{kind}-{i:04d}"] = Status(**extra)
    return WorkflowSnapshot(name="sweep", run="r1", state=state, started=NOW - 100,
                            jobs=jobs)


def names(lines: list[str], prefix: str) -> list[str]:
    return [m.group(0) for ln in lines for m in re.finditer(rf"\b{prefix}-\d{{4}}\b", ln)]


def test_a_run_that_fits_the_terminal_lists_every_job() -> None:
    snap = sweep(running=2, failed=1, succeeded=3, pending=4)
    lines = screen(view.live(snap, "sweep", now=NOW), height=30)
    assert len(names(lines, "run") + names(lines, "bad") + names(lines, "ok")
               + names(lines, "wait")) == 10
    text = "\n".join(lines)
    assert "sweep RUNNING  3/10 done · 2 running · 1 failed · 4 pending" in text
    assert re.search(r"run-0000 +RUNNING .* 40% step 4/10 +00:01:05", text), text
    assert re.search(r"bad-0000 +FAILED .* exit code 3", text), text


def test_a_larger_run_shows_counts_and_only_running_and_failed_jobs() -> None:
    snap = sweep(running=3, failed=2, succeeded=150, pending=45)
    lines = screen(view.live(snap, "sweep", now=NOW), height=20)
    assert len(lines) <= 20
    text = "\n".join(lines)
    assert "PENDING 45 · RUNNING 3 · SUCCEEDED 150 · FAILED 2" in text
    assert names(lines, "run") == ["run-0000", "run-0001", "run-0002"]
    assert names(lines, "bad") == ["bad-0000", "bad-0001"]
    assert not names(lines, "ok") and not names(lines, "wait")
    assert "more" not in text  # all of them fit


def test_many_running_and_failed_jobs_are_bounded_with_how_many_more() -> None:
    snap = sweep(running=50, failed=30, succeeded=900, pending=20)
    for height in (24, 12, 6):
        lines = screen(view.live(snap, "sweep", now=NOW), height=height)
        assert len(lines) <= height, (height, lines)
        run, bad = names(lines, "run"), names(lines, "bad")
        assert run and bad, lines  # both kinds keep rows, however few
        assert f"... and {50 - len(run)} more running and {30 - len(bad)} more failed" \
            == lines[-1], lines
        assert "FAILED 30" in lines[2] and "RUNNING 50" in lines[2]


def test_only_failed_jobs_left_take_every_row() -> None:
    snap = sweep(running=0, failed=40, succeeded=960, pending=0, state="FAILED")
    lines = screen(view.live(snap, "sweep", now=NOW), height=15)
    assert len(lines) <= 15
    bad = names(lines, "bad")
    assert len(bad) == 15 - 4  # summary, bar, counts, and the last line
    assert lines[-1] == f"... and {40 - len(bad)} more failed"


def test_the_same_view_follows_the_terminal_size() -> None:
    shown = view.live(sweep(running=2, failed=0, succeeded=40, pending=0), "sweep", now=NOW)
    assert len(names(screen(shown, height=60), "ok")) == 40  # every job: a row each
    small = screen(shown, height=10)
    assert not names(small, "ok") and names(small, "run") == ["run-0000", "run-0001"]


def test_long_names_and_messages_are_cut_not_wrapped() -> None:
    snap = sweep(running=0, failed=0, succeeded=100, pending=0)
    snap.jobs["x" * 80] = Status(state="RUNNING", msg="m" * 300, started=NOW - 1)
    lines = screen(view.live(snap, "sweep", now=NOW), height=10, width=80)
    assert len(lines) == 4 and all(len(ln) <= 80 for ln in lines)
    assert re.fullmatch(r"x+… RUNNING +0% m+… 00:00:01", lines[3]), lines[3]


def event(cls: Any, job: str, attempt: int, t: float, **kw: Any) -> dict[str, Any]:
    return cls(workflow="sweep", run="r1", job=job, attempt=attempt, time=t,
               **kw).model_dump(mode="json")


def test_a_retried_job_shows_its_new_attempt_not_failed() -> None:
    """Through the Tracker, as the gateway's stream feeds it: attempt 1 fails (listed as
    failed), attempt 2 starts (listed as running, with its attempt), none failed."""
    t = view.Tracker("sweep")
    t.feed("workflow", snap_event(sweep(running=1, failed=0, succeeded=300, pending=0)))
    t.feed("job", event(JobFailed, "run-0000", 1, 990.0, exit_code=3, reason="exit code 3"))
    lines = screen(view.live(t.snap, "sweep", now=NOW), height=12)
    assert "FAILED 1" in lines[2] and names(lines, "bad") == []
    assert any(re.search(r"run-0000 +FAILED", ln) for ln in lines), lines
    t.feed("job", event(JobPending, "run-0000", 2, 991.0, reason="retry 1 of 1"))
    t.feed("job", event(JobStarted, "run-0000", 2, 992.0, host="node1"))
    lines = screen(view.live(t.snap, "sweep", now=NOW), height=12)
    text = "\n".join(lines)
    assert "FAILED" not in text and "failed" not in text, text
    assert re.search(r"run-0000 +RUNNING \(attempt 2\) .* 00:00:08", text), text
    assert "RUNNING 1 · SUCCEEDED 300" in lines[2]


def test_in_a_live_display_the_compact_view_is_not_cropped() -> None:
    """rich's Live crops what is taller than the terminal; the compact view fits it."""
    out = io.StringIO()
    console = Console(width=100, height=16, file=out, force_terminal=True, color_system=None)
    snap = sweep(running=30, failed=5, succeeded=500, pending=100)
    with Live(view.live(snap, "sweep", now=NOW), console=console, auto_refresh=False,
              transient=False) as live:
        live.refresh()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "... and" in text and "more running" in text
    assert "⋮" not in text and "..." not in text.replace("... and", "")  # no crop marker
