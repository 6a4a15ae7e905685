"""The CLI's live view follows the gateway's event stream with the job-event rule: a
retried job shows its new attempt, not FAILED (the stream's data as the gateway sends it)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from jobmesh.cli import view
from jobmesh.common.messages import JobFailed, JobPending, JobStarted, WorkflowSnapshot
from jobmesh.common.messages import JobStatus as Status
from jobmesh.gateway.events import snap_event

pytestmark = pytest.mark.unit


def shown(tracker: view.Tracker) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(view.live(tracker.snap, tracker.name, now=1000.0))
    return console.export_text()


def job(cls: Any, attempt: int, t: float, **kw: Any) -> dict[str, Any]:
    return cls(workflow="w", run="r1", job="fit", attempt=attempt, time=t,
               **kw).model_dump(mode="json")


def snapshot(**jobs: Status) -> dict[str, Any]:
    return snap_event(WorkflowSnapshot(name="w", run="r1", state="RUNNING", jobs=jobs))


def test_retried_job_shows_its_new_attempt() -> None:
    t = view.Tracker("w")
    assert t.feed("workflow", snapshot(fit=Status(state="RUNNING"), other=Status()))
    assert t.feed("job", job(JobFailed, 1, 10.0, exit_code=3, reason="exit code 3"))
    assert "1 failed" in shown(t)
    t.feed("job", job(JobPending, 2, 11.0, reason="retry 1 of 1"))
    t.feed("job", job(JobStarted, 2, 12.0, host="node1", run_dir="/tmp/fit/2"))
    text = shown(t)
    assert "failed" not in text and "fit" in text and "RUNNING" in text
    fit = t.snap.jobs["fit"]
    assert (fit.attempt, fit.state.value, fit.host) == (2, "RUNNING", "node1")
    assert [h["state"] for h in fit.history] == ["FAILED"]


def test_a_snapshot_behind_the_events_does_not_undo_them() -> None:
    t = view.Tracker("w")
    t.feed("workflow", snapshot(fit=Status(state="RUNNING")))
    t.feed("job", job(JobFailed, 1, 10.0, exit_code=3))
    t.feed("job", job(JobStarted, 2, 12.0))
    t.feed("workflow", snapshot(fit=Status(state="FAILED")))  # written before the retry
    assert (t.snap.jobs["fit"].attempt, t.snap.jobs["fit"].state.value) == (2, "RUNNING")
    t.feed("workflow", snapshot(fit=Status(state="SUCCEEDED", attempt=2, progress=100)))
    assert t.snap.jobs["fit"].state.value == "SUCCEEDED"
    assert t.snap.jobs["fit"].started == 12.0  # the stream's start time is kept


def test_other_runs_and_unknown_events_are_ignored() -> None:
    t = view.Tracker("w")
    assert not t.feed("job", job(JobStarted, 1, 1.0))  # no snapshot yet
    t.feed("workflow", snapshot(fit=Status()))
    other = job(JobStarted, 1, 1.0) | {"run": "r0"}
    assert not t.feed("job", other)
    assert not t.feed("job", {"type": "from_the_future", "run": "r1", "job": "fit"})
    assert not t.feed("job", {"type": "started", "run": "r1", "job": "nope", "time": 1})
    assert not t.feed("job", "garbage")
    assert t.snap.jobs["fit"].state.value == "PENDING"


def test_cli_follow_shows_a_retried_job_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """``jobmesh workflow run --wait`` (workflow_cmd.follow) feeds the stream, as the
    gateway sends it over SSE, through the Tracker: attempt 2 shows RUNNING, not FAILED."""
    import json

    from jobmesh.cli import workflow_cmd
    from jobmesh.client import sse

    def sse_lines(event: str, data: dict[str, Any]) -> list[str]:
        return [f"event: {event}", f"data: {json.dumps(data)}", ""]

    final = snap_event(WorkflowSnapshot(name="w", run="r1", state="SUCCEEDED", jobs={
        "fit": Status(state="SUCCEEDED", attempt=2, progress=100)}))
    stream = [*sse_lines("workflow", snapshot(fit=Status(state="RUNNING"))),
              *sse_lines("job", job(JobFailed, 1, 10.0, exit_code=3, reason="exit code 3")),
              *sse_lines("job", job(JobPending, 2, 11.0, reason="retry 1 of 1")),
              *sse_lines("job", job(JobStarted, 2, 12.0, host="node1")),
              *sse_lines("workflow", final)]

    class Gateway:  # the REST client's two calls follow() makes, answered from `stream`
        def watch(self, name: str) -> Any:
            return sse.parse(iter(stream))

        def show(self, name: str) -> dict[str, Any]:
            return {"status": None}

    frames: list[str] = []
    real_live = view.live

    def recorded(snap: Any, name: str, now: float | None = None) -> Any:
        group = real_live(snap, name, now=1000.0)
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(group)
        frames.append(console.export_text())
        return group

    monkeypatch.setattr(view, "live", recorded)
    monkeypatch.setattr(workflow_cmd, "out", Console(force_terminal=True, file=io.StringIO()))
    assert workflow_cmd.follow(Gateway(), "w")["state"] == "SUCCEEDED"  # type: ignore[arg-type]
    after_retry = frames[-2]  # the frame drawn for attempt 2's 'started'
    assert "fit" in after_retry and "RUNNING" in after_retry, after_retry
    assert "failed" not in after_retry and "FAILED" not in after_retry
    assert any("1 failed" in f for f in frames)  # attempt 1's failure was shown first


def test_a_failed_job_whose_log_is_elsewhere_says_where_and_how(tmp_path: Any) -> None:
    (tmp_path / "job.log").write_text("x" * 9000 + "\nlast words\n")
    snap = WorkflowSnapshot(name="w", run="r1", state="FAILED", jobs={
        "far": Status(state="FAILED", exit_code=3, host="hpc1", run_dir="/scratch/w/far/1"),
        "near": Status(state="FAILED", exit_code=2, run_dir=str(tmp_path)),
        "fine": Status(state="SUCCEEDED", run_dir=str(tmp_path))})
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(view.final_table(snap, now=1000.0))
    text = "\n".join(ln.rstrip() for ln in console.export_text().splitlines())
    assert "far failed (exit code 3); log: hpc1:/scratch/w/far/1/job.log; " \
           "'jobmesh status w --job far' shows it" in text
    assert "near failed (exit code 2); last lines of its log:\n  last words" in text
    assert "fine failed" not in text and "xxxx" not in text  # the cut first line is dropped
