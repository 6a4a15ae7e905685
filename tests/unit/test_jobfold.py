"""The job-event rule (libs/common/jobfold.py) against the shared fixture of event
sequences; the monitor's fold must agree with it case by case. (The GUI's copy in
static/jobstate.js is checked against the same fixture: test_jobfold_js.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobmesh.common import jobfold
from jobmesh.common.messages import EVENT_LOG, JobStatus, WorkflowSubmitted
from jobmesh.monitor.fold import Fold

from ._build import workflow

pytestmark = pytest.mark.unit
CASES = json.loads((Path(__file__).parents[1] / "fixtures" / "job_events.json")
                   .read_text())["cases"]


def event(raw: dict[str, Any]) -> Any:
    return EVENT_LOG.validate_python({"workflow": "w", "run": "r1", "job": "a", **raw})


def seen(js: JobStatus) -> dict[str, Any]:
    out = js.model_dump(mode="json")
    out["history"] = [h["state"] for h in js.history]
    return out


def check(js: JobStatus, expect: dict[str, Any]) -> None:
    got = seen(js)
    assert {k: got[k] for k in expect} == expect


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rule(case: dict[str, Any]) -> None:
    js = JobStatus()
    for raw in case["events"]:
        js = jobfold.apply(js, event(raw)) or js
    check(js, case["expect"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_monitor_agrees(case: dict[str, Any]) -> None:
    fold = Fold()
    fold.apply(1, WorkflowSubmitted(workflow="w", run="r1", spec=workflow(names=["a"]),
                                    parallel=1, time=0.0))
    for seq, raw in enumerate(case["events"], 2):
        fold.apply(seq, event(raw))
    check(fold.snaps["w"].jobs["a"], case["expect"])


def test_nothing_changed_is_none() -> None:
    js = JobStatus(attempt=2)
    assert jobfold.apply(js, event({"type": "failed", "attempt": 1, "time": 1})) is None
    done = jobfold.apply(JobStatus(), event({"type": "succeeded", "attempt": 1, "time": 1}))
    assert done is not None
    assert jobfold.apply(done, event({"type": "progress", "attempt": 1, "time": 2,
                                       "progress": 5})) is None


def test_new_attempt_is_a_new_status_with_history() -> None:
    js = JobStatus(state="FAILED", exit_code=1, outputs={"x": 1}, kind="ssh", host="h1")
    new = jobfold.apply(js, event({"type": "pending", "attempt": 2, "time": 3}))
    assert new is not js and new.attempt == 2 and new.outputs == {}
    assert (new.kind, new.host) == ("ssh", "h1")
    assert new.history == [{"attempt": 1, "state": "FAILED", "exit_code": 1}]
    kept = jobfold.apply(js, event({"type": "pending", "attempt": 2, "time": 3}), repeat=True)
    assert kept.history[-1]["outputs"] == {"x": 1}
