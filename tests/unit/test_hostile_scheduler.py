"""One workflow's bad data never stops the scheduler (issue 14: D3, D4, D5)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from jobmesh.common.messages import JobSucceeded, WorkflowSubmitted
from jobmesh.common.states import JobState
from jobmesh.scheduler.app import SchedulerService
from jobmesh.scheduler.core import MarkJob, ReleaseJob

from ._build import workflow
from ._schedsim import Sim

pytestmark = pytest.mark.unit


def reasons(out: list[Any]) -> dict[str, str]:
    return {i.job: i.reason for i in out if isinstance(i, MarkJob)}


def test_a_bad_pool_that_bypassed_the_loader_fails_its_job() -> None:
    sim = Sim(workflow(names=["a", "b"], a={"pool": "bad.pool>"}, b={"exec": "true"}),
              parallel=2)
    out = sim.step()
    assert "invalid pool name 'bad.pool>'" in reasons(out)["a"]
    assert [i.job for i in out if isinstance(i, ReleaseJob)] == ["b"]
    assert sim.state("a") is JobState.FAILED and sim.state("b") is JobState.READY


def test_a_pool_from_a_parents_output_fails_the_foreach_with_a_reason() -> None:
    sim = Sim(workflow([("p", "c")], c={"exec": "true", "pool": "{item}",
                                         "foreach": "{parents.p.outputs.pools}"}))
    sim.step()
    sim.done("p", outputs={"pools": ["gpu", "bad.pool>"]})
    out = sim.step()
    assert "invalid pool name 'bad.pool>'" in reasons(out)["c"]
    assert sim.state("c") is JobState.FAILED


def test_a_variable_with_a_line_break_in_a_directive_fails_the_job() -> None:
    spec = workflow(names=["a"], variables={"p": "x\ntouch PWN"},
                    a={"exec": "true", "kind": "slurm", "partition": "{p}"})
    out = Sim(spec).step()
    assert "'partition' holds the control character '\\n'" in reasons(out)["a"]


def test_a_parents_output_is_one_quoted_word_in_exec() -> None:
    sim = Sim(workflow([("p", "c")], c={"exec": "echo got {parents.p.outputs.v}"}))
    sim.step()
    sim.done("p", outputs={"v": "$(touch PWN)"})
    (rel,) = sim.step()
    assert rel.spec.exec == "echo got '$(touch PWN)'"


def test_a_here_document_value_that_would_end_it_fails_the_job() -> None:
    sim = Sim(workflow([("p", "c")], c={"exec": "cat <<EOF\n{parents.p.outputs.v}\nEOF"}))
    sim.step()
    sim.done("p", outputs={"v": "EOF"})
    assert "here-document" in reasons(sim.step())["c"]


def test_a_workflow_whose_decide_raises_is_failed_and_the_others_go_on(monkeypatch) -> None:
    sim = Sim(workflow(names=["a", "b"], name="w"), parallel=2)
    other = workflow(names=["x"], name="ok")
    sim.core.apply(WorkflowSubmitted(workflow="ok", run="r2", spec=other, time=0.0))

    def boom(now: float) -> list[Any]:
        raise KeyError("poison")

    monkeypatch.setattr(sim.core.runs["w"], "decide", boom)
    out = sim.core.decide(1.0)
    assert {i.job: i.workflow for i in out} == {"a": "w", "b": "w", "x": "ok"}
    assert "the scheduler cannot handle this workflow: KeyError" in reasons(out)["a"]
    assert "w" not in sim.core.runs and "ok" in sim.core.runs
    # later events of the dropped workflow are ignored, not an error
    sim.core.apply(JobSucceeded(workflow="w", run="r1", job="a", attempt=1, time=2.0))
    assert sim.core.decide(2.0) == []


def test_an_event_the_core_cannot_apply_is_logged_and_skipped(monkeypatch, caplog) -> None:
    svc = SchedulerService.__new__(SchedulerService)
    svc.poison = []
    svc.core = Sim(workflow(names=["a"], name="w")).core
    real = svc.core.apply

    def apply(msg: Any, seq: int = 0) -> None:
        if getattr(msg, "job", None) == "a":
            raise ValueError("poison")
        real(msg, seq)

    monkeypatch.setattr(svc.core, "apply", apply)
    with caplog.at_level(logging.ERROR, "jobmesh.scheduler"):
        svc._apply(7, JobSucceeded(workflow="w", run="r1", job="a", attempt=1, time=1.0))
    assert "skipping event 7" in caplog.text and "poison" in caplog.text
    assert [(i.job, i.state) for i in svc.poison] == [("a", JobState.FAILED)]
    assert "event 7: ValueError: poison" in svc.poison[0].reason


def test_a_dynamic_foreach_too_big_for_one_bus_message_fails_with_a_reason() -> None:
    big = "echo {item} " + "x" * 4000  # each job's spec is about 4 kB
    sim = Sim(workflow([("p", "c")], c={"exec": big, "foreach": "{parents.p.outputs.l}"}))
    sim.step()
    sim.done("p", outputs={"l": list(range(2000))})
    out = sim.step()
    assert "foreach: its 2000 jobs would be 9.0 MB in one message" in reasons(out)["c"]
    assert "more than 6 MB; expand over fewer values" in reasons(out)["c"]
    assert sim.state("c") is JobState.FAILED


def test_a_release_too_large_for_nats_fails_its_job_and_nats_trouble_still_stops() -> None:
    import asyncio

    from jobmesh.common import bus
    from jobmesh.scheduler.app import _fits

    sim = Sim(workflow(names=["a"], a={"exec": "echo " + "x" * 5000}))
    (rel,) = sim.step()
    with pytest.raises(ValueError, match="more than NATS's max_payload of 0.0 MB"):
        _fits(1000, JobSucceeded(workflow="w", run="r1", job="a", attempt=1, time=0.0,
                                 outputs={"v": "x" * 2000}))
    svc = SchedulerService.__new__(SchedulerService)
    sent: list[Any] = []
    failure: list[Exception] = []

    async def one(nc: Any, js: Any, ins: Any) -> None:
        if isinstance(ins, ReleaseJob):
            raise failure[0]
        sent.append(ins)

    svc._one = one  # type: ignore[method-assign]
    for exc in (ValueError("the message is 9.0 MB, more than NATS's max_payload"),
                bus.BusError("publish failed after 9 attempts: MaxPayloadError()")):
        failure[:] = [exc]
        sent.clear()
        asyncio.run(svc._safe(None, None, rel))
        assert [(i.job, i.state) for i in sent] == [("a", JobState.FAILED)]
        assert sent[0].reason.startswith("cannot start: ")
    failure[:] = [bus.BusError("publish failed after 9 attempts: TimeoutError()")]
    with pytest.raises(bus.BusError):
        asyncio.run(svc._safe(None, None, rel))
