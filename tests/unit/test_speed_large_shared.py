"""A big log message is decoded once per process and shared by its followers; a small
one, or the same sequence with other bytes (another server), is decoded afresh."""

from __future__ import annotations

import pytest

from jobmesh.common import follow
from jobmesh.common.messages import WorkflowSubmitted

from ._build import workflow

pytestmark = pytest.mark.unit


def submitted(n: int, run: str = "r1") -> bytes:
    spec = workflow(names=[f"job-{i:05d}-with-a-long-name" for i in range(n)])
    msg = WorkflowSubmitted(workflow="w", run=run, spec=spec, parallel=2, time=1.0)
    return msg.model_dump_json().encode()


def test_a_big_message_is_decoded_once_and_shared() -> None:
    data = submitted(3000)
    assert len(data) > follow.SHARE_OVER
    first = follow.decode_shared(7, data)
    again = follow.decode_shared(7, bytes(bytearray(data)))  # another copy of the bytes
    assert again is first
    assert again == follow.decode_log(data)
    other = follow.decode_shared(7, submitted(3000, run="r2"))  # same seq, other server
    assert other is not first and other.run == "r2"
    for seq in range(100, 100 + follow.SHARE_KEEP + 1):  # only the last few are kept
        follow.decode_shared(seq, submitted(3000, run=f"x{seq}"))
    assert follow.decode_shared(7, data) is not first


def test_a_small_message_is_decoded_each_time() -> None:
    data = submitted(3)
    assert len(data) <= follow.SHARE_OVER
    assert follow.decode_shared(1, data) is not follow.decode_shared(1, data)
