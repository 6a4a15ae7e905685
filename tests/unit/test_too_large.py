"""A message over NATS's size limit is refused again on every retry: it fails at once,
with its size and the limit, as MessageTooLarge (bad input), never as an outage."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from nats import errors as nerr

from jobmesh.common import bus, ops
from jobmesh.common.messages import WorkflowCancelRequested
from jobmesh.common.spec import JobSpec, Workflow


class RefusingJS:
    """The JetStream context at the process boundary: refuses every publish for size."""

    def __init__(self, max_payload: int = 1024) -> None:
        self._nc = SimpleNamespace(max_payload=max_payload)
        self.calls = 0

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise nerr.MaxPayloadError()


def test_publish_does_not_retry_a_message_over_the_limit() -> None:
    js = RefusingJS()
    msg = WorkflowCancelRequested(workflow="w", run="r", reason="x" * 2000, time=0.0)
    with pytest.raises(bus.MessageTooLarge) as err:
        asyncio.run(bus.publish(js, "jobmesh.workflows.w", msg))  # type: ignore[arg-type]
    assert js.calls == 1
    assert "max_payload 1,024 bytes" in str(err.value)
    assert isinstance(err.value, bus.BusError)  # callers that handle BusError still do


def test_submit_names_the_size_the_limit_and_what_to_change() -> None:
    js = RefusingJS(max_payload=4096)
    jobs = {f"j{i}": JobSpec(name=f"j{i}", exec=f"echo {'x' * 100} {i}") for i in range(100)}
    wf = Workflow(name="big", jobs=jobs)
    with pytest.raises(bus.MessageTooLarge) as err:
        asyncio.run(ops.submit(js, wf, parallel=1))
    text = str(err.value)
    assert js.calls == 0  # checked before it is sent
    assert "workflow 'big'" in text and "100 jobs" in text and "max_payload" in text
    assert "dynamic foreach" in text


class CapturingJS:
    """The JetStream context at the process boundary: keeps what was published."""

    def __init__(self, max_payload: int = 8 * 2**20) -> None:
        self._nc = SimpleNamespace(max_payload=max_payload)
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> Any:
        self.sent.append((subject, payload))
        return SimpleNamespace(seq=len(self.sent))


def test_a_big_sweep_goes_on_the_log_compressed_and_decodes_whole() -> None:
    """A 30,000-job sweep with per-job env is ~7 MB of JSON; on the log it is zlib-packed
    (a 100,000-job one, 25 MB, fits the 8 MB max_payload the same way), and every reader
    of the log (decode_log) gets the same submission back."""
    from jobmesh.common.messages import WorkflowSubmitted

    jobs = {f"train-{i}": JobSpec(name=f"train-{i}", exec=f"true # {i}",
                                  env={"SEED": str(i), "LR": f"0.{i % 250:04d}"})
            for i in range(30_000)}
    wf = Workflow(name="sweep", jobs=jobs)
    js = CapturingJS(max_payload=2 * 2**20)
    asyncio.run(ops.submit(js, wf, parallel=2))
    (subject, payload), = js.sent
    assert subject == "jobmesh.workflows.sweep"
    assert len(payload) < 2 * 2**20 and payload[:1] == b"x"
    got = bus.decode_log(payload)
    assert isinstance(got, WorkflowSubmitted) and got.spec.digest() == wf.digest()
    assert got.spec.jobs["train-29999"].env == {"SEED": "29999", "LR": "0.0249"}


def test_small_messages_and_other_streams_stay_plain_json() -> None:
    msg = WorkflowCancelRequested(workflow="w", run="r", reason="x" * 300_000, time=0.0)
    big = bus.encode(msg)
    assert bus.log_payload("jobmesh.workflows.w", big)[:1] == b"x"
    assert bus.log_payload("jobmesh.jobs.local", big) == big  # JOBS: read as JSON
    small = bus.encode(WorkflowCancelRequested(workflow="w", run="r", reason="x", time=0.0))
    assert bus.log_payload("jobmesh.events.w.j", small) == small
    assert bus.decode_log(bus.log_payload("jobmesh.workflows.w", big)) == msg
