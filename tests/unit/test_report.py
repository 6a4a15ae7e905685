"""state.json is written a job at a time: the same text as json.dump(indent=2) of the
documented shape, for runs with no jobs, one job, and jobs with nested outputs, history,
quotes and non-ASCII names."""

from __future__ import annotations

import io
import json

import pytest

from jobmesh.common.messages import JobStatus, WorkflowSnapshot
from jobmesh.common.report import status_json, write_status_json
from jobmesh.common.states import JobState


def snapshot(n: int) -> WorkflowSnapshot:
    jobs = {}
    for i in range(n):
        jobs[f"job-{i}" if i % 3 else f'we"ird\\ näme {i}'] = JobStatus(
            state=JobState.SUCCEEDED if i % 2 else JobState.FAILED, attempt=1 + i % 2,
            progress=100.0, msg="line one\nline two" if i == 1 else None, exit_code=i % 2,
            started=1_700_000_000.5 + i, ended=1_700_000_001.25 + i, run_dir=f"/r/{i}",
            outputs={"nested": {"list": [1, {"x": "y"}], "empty": {}}, "e": []} if i else {},
            history=[{"attempt": 1, "state": "FAILED", "exit_code": 3}] if i % 2 else [],
            cached_from={"run": "r0", "seconds": 1.5} if i == 2 else None)
    return WorkflowSnapshot(name="wf", run="20261204-000000-abcd1234",
                            state="SUCCEEDED", created=1_700_000_000.0,
                            started=1_700_000_000.1, ended=None, jobs=jobs)


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_state_json_written_a_job_at_a_time_is_the_same_text(n: int) -> None:
    snap = snapshot(n)
    f = io.StringIO()
    write_status_json(snap, f)
    assert f.getvalue() == json.dumps(status_json(snap), indent=2)
    assert list(json.loads(f.getvalue())["jobs"]) == list(snap.jobs)
