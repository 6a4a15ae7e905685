"""Hostile data through the real services (issue 14): a parent's output is never shell
code in its child (D3), and one workflow's bad pool does not stop the scheduler, live or
in the replay after a restart (D4)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from jobmesh.common import ops
from jobmesh.common.loader import load_workflow

from ..conftest import write_workflow

pytestmark = pytest.mark.integration


def test_a_parents_output_is_data_in_the_childs_exec(tmp_path: Path, home: Path, bus,
                                                     services) -> None:
    wf = write_workflow(tmp_path, "inject", {
        "p": {"exec": "echo '# jobmesh output v=$(touch PWN) `touch PWN`; touch PWN'"},
        "c": {"exec": 'echo "got {parents.p.outputs.v}" > got.txt; echo {parents.p.outputs.v}'
                      " >> got.txt"},
    }, ["p,c"])
    services.start("scheduler")
    services.start("monitor")
    services.start("executor")
    bus.submit(wf)
    snap = bus.wait("inject", lambda s: s.state.terminal, 60, "the workflow to end")
    assert snap.state.value == "SUCCEEDED"
    assert not list(home.rglob("PWN")) and not (tmp_path / "PWN").exists()
    (got,) = list(home.glob("runs/inject/*/c/1/got.txt")) or list(tmp_path.rglob("got.txt"))
    value = "$(touch PWN) `touch PWN`; touch PWN"
    assert got.read_text() == f"got {value}\n{value}\n"


def test_a_bad_pool_fails_its_job_and_the_scheduler_goes_on(tmp_path: Path, home: Path, bus,
                                                             services) -> None:
    bad = load_workflow(write_workflow(tmp_path / "b", "badpool", {"a": {"exec": "true"}},
                                       [])).workflow
    bad.jobs["a"].pool = "bad.pool>"  # as an old or forged submission, past the loader
    good = write_workflow(tmp_path / "g", "good", {"x": {"exec": "true"}}, [])
    bus.call(lambda js: ops.submit(js, bad, 1))
    services.start("scheduler")
    services.start("monitor")
    services.start("executor")
    snap = bus.wait("badpool", lambda s: s.state.terminal, 30, "the bad workflow to end")
    assert snap.state.value == "FAILED"
    assert "invalid pool name 'bad.pool>'" in snap.jobs["a"].reason
    bus.submit(good)
    assert bus.wait("good", lambda s: s.state.terminal, 30, "the good one").state.value \
        == "SUCCEEDED"
    # the replay after a restart reads the same events and goes on too
    services.kill("scheduler", signal.SIGKILL)
    services.start("scheduler")
    again = write_workflow(tmp_path / "a", "again", {"y": {"exec": "true"}}, [])
    bus.submit(again)
    assert bus.wait("again", lambda s: s.state.terminal, 30, "a workflow after the "
                    "restart").state.value == "SUCCEEDED"


@pytest.mark.parametrize("field,value", [("run", "../../x"), ("workflow", "a.b>"),
                                         ("job", "")])
def test_a_forged_job_message_is_dropped_and_the_executor_goes_on(
        tmp_path: Path, home: Path, bus, services, field: str, value: str) -> None:
    """A JobReady published past the scheduler with an id that cannot name a subject or
    a run directory is dropped once (not redelivered for ever) with a log line, and the
    executor runs the next workflow."""
    from jobmesh.common import subjects
    from jobmesh.common.messages import JobReady
    from jobmesh.common.spec import JobSpec

    from ..helpers import wait_until

    forged = JobReady(**{"workflow": "w", "run": "20261204T000000-00000000", "job": "a",
                         "attempt": 1, "time": 0.0, "pool": "local",
                         "spec": JobSpec(name="a", kind="local", exec="touch FORGED"),
                         "base_dir": str(tmp_path), field: value})
    services.start("scheduler")
    services.start("monitor")
    services.start("executor")
    bus.call(lambda js: js.publish(subjects.jobs("local"), forged.model_dump_json().encode()))
    log = tmp_path / "executor.log"
    wait_until(lambda: "dropping an unreadable job message" in log.read_text(), 30,
               "the executor to drop the forged message")
    good = write_workflow(tmp_path / "g", "good", {"x": {"exec": "true"}}, [])
    bus.submit(good)
    assert bus.wait("good", lambda s: s.state.terminal, 30, "the good one").state.value \
        == "SUCCEEDED"

    async def left(js):
        info = await js.consumer_info(subjects.STREAM_JOBS, subjects.pool_consumer("local"))
        return info.num_ack_pending + info.num_pending

    assert bus.call(left) == 0
    assert log.read_text().count("dropping an unreadable job message") == 1
    assert not list(tmp_path.rglob("FORGED")) and not list(home.rglob("FORGED"))
