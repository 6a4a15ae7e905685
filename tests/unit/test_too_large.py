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
