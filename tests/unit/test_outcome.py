"""The one rule that turns an ended job into its terminal event (executor/outcome.py)."""

from __future__ import annotations

import pytest

from jobmesh.common.messages import JobReady
from jobmesh.common.progress import LogScan, scan
from jobmesh.common.spec import JobSpec
from jobmesh.executor import outcome

pytestmark = pytest.mark.unit
JOB = JobReady(workflow="w", run="r1", job="a", attempt=2, pool="local", spec=JobSpec(name="a"),
               base_dir="/tmp", time=0.0)


def said(text: str = "") -> LogScan:
    s = LogScan()
    scan(text, s)
    return s


def test_success_is_left_to_the_outputs() -> None:
    assert outcome.ended(JOB, 0, None, "", said(), {}, 1.0) is None


@pytest.mark.parametrize("code,cancel,told,log,kind,reason", [
    (143, "timeout", "", "", "failed", "timeout"),
    (143, "canceled by the user", "", "", "canceled", "canceled by the user"),
    (None, "", "", "", "canceled", "canceled"),
    (None, None, "", "", "failed", "the job's process on h1 was killed before it could "
     "record an exit code"),
    (2, None, "", "", "failed", "exit code 2"),
    (1, None, "script not found", "", "failed", "script not found"),
    (0, None, "", "# cloudmesh status=failed\n", "failed", "the job reported status=failed"),
])
def test_terminal_events(code: int | None, cancel: str | None, told: str, log: str,
                         kind: str, reason: str) -> None:
    ev = outcome.ended(JOB, code, cancel, told, said(log), {"x": 1}, 5.0, "h1")
    assert (ev.type, ev.reason, ev.attempt, ev.time) == (kind, reason, 2, 5.0)
    if kind == "failed":
        assert ev.outputs == {"x": 1}
