"""The monitor's incremental snapshot encoder gives exactly the bytes of a whole encode,
through a big run's life: submission, job events, a foreach expansion, a new run, the end;
and its compressed-as-encoded value unpacks to the same bytes."""

from __future__ import annotations

from typing import Any

import pytest

from jobmesh.common import bus
from jobmesh.common.messages import (
    JobFailed,
    JobProgressed,
    JobReadied,
    JobsExpanded,
    JobStarted,
    JobSucceeded,
    WorkflowCancelRequested,
    WorkflowSubmitted,
)
from jobmesh.common.packing import unpack
from jobmesh.common.spec import JobSpec
from jobmesh.monitor.encode import BIG, Encoder
from jobmesh.monitor.fold import Fold

from ._build import workflow

pytestmark = pytest.mark.unit
N = BIG + 50


class Run:
    """A fold and an encoder, fed as the monitor's shell feeds them."""

    def __init__(self) -> None:
        self.fold, self.enc, self.seq = Fold(), Encoder(), 0

    def put(self, msg: Any) -> None:
        self.seq += 1
        wf = self.fold.apply(self.seq, msg)
        job = getattr(msg, "job", None)
        if wf is not None and isinstance(job, str):
            self.enc.touch(wf, job)

    def check(self) -> bytes:
        snap = self.fold.snaps["w"]
        data = self.enc.encode(snap)
        assert data == bus.encode(snap)
        packed = self.enc.packed(snap)  # what the monitor stores: compressed as encoded
        assert unpack(packed) == data
        if len(snap.jobs) >= BIG:
            assert packed[:1] == b"x"
        return data


def ev(cls: Any, job: str, run: str = "r1", attempt: int = 1, **kw: Any) -> Any:
    return cls(workflow="w", run=run, job=job, attempt=attempt, time=200.0 + attempt, **kw)


def big() -> Any:
    names = [f"j{i}" for i in range(N)]
    return workflow(edges=[("prep", n) for n in names] + [("prep", "dyn")],
                    names=["prep", *names], **{"dyn": {"exec": "true"}})


def test_encodes_what_a_whole_encode_gives_through_a_run() -> None:
    r = Run()
    r.put(WorkflowSubmitted(workflow="w", run="r1", spec=big(), parallel=4, time=100.0))
    r.check()
    assert "w" in r.enc.cache  # big and running: encoded by parts
    r.put(ev(JobReadied, "prep"))
    r.check()
    r.put(ev(JobStarted, "prep", host="h", run_dir="/tmp/x \"q\" é"))
    r.put(ev(JobProgressed, "prep", progress=50, msg="half\nway",
             outputs={"k": [1, "ü"]}))
    r.check()
    r.put(ev(JobSucceeded, "prep", outputs={"lrs": ["a", "b"]}))
    for i in range(0, N, 7):
        r.put(ev(JobReadied, f"j{i}"))
        r.put(ev(JobStarted, f"j{i}"))
    r.check()
    for i in range(0, N, 14):
        r.put(ev(JobFailed, f"j{i}", exit_code=3, reason="boom"))
    r.put(ev(JobReadied, "j0", attempt=2))  # a fresh attempt: a new JobStatus object
    r.check()
    new = {f"d{i}": JobSpec(name=f"d{i}") for i in range(3)}
    r.put(ev(JobsExpanded, "dyn", jobs=new, edges=[("prep", n) for n in new]))
    assert "dyn" not in r.fold.snaps["w"].jobs
    r.check()
    r.put(ev(JobStarted, "d1"))
    r.check()
    r.put(WorkflowCancelRequested(workflow="w", run="r1", time=300.0))
    r.check()
    # a new run of the same workflow starts the cache over
    r.put(WorkflowSubmitted(workflow="w", run="r2", spec=big(), parallel=4, time=400.0))
    r.check()
    r.put(ev(JobStarted, "prep", run="r2"))
    r.check()


def test_an_ended_or_small_run_is_encoded_whole() -> None:
    r = Run()
    small = workflow(edges=[("a", "b")])
    r.put(WorkflowSubmitted(workflow="w", run="r1", spec=small, parallel=1, time=1.0))
    r.check()
    assert "w" not in r.enc.cache
    r.put(WorkflowSubmitted(workflow="w", run="r2", spec=big(), parallel=4, time=2.0))
    r.check()
    r.put(WorkflowCancelRequested(workflow="w", run="r2", time=3.0))
    for name in r.fold.snaps["w"].jobs:
        r.put(ev(JobSucceeded, name, run="r2"))
    assert r.fold.snaps["w"].state.terminal
    r.check()
    assert "w" not in r.enc.cache


@pytest.mark.parametrize("n", [0, 1, 4999, 5000, 12001])
def test_edges_encoded_in_pieces_are_the_whole_encode(n: int) -> None:
    from pydantic_core import to_json

    from jobmesh.monitor.encode import _edges_json

    edges = [(f"a{i}", f'b"{i}é') for i in range(n)]
    assert b"".join(_edges_json(edges)) == to_json(edges)


def test_a_write_encodes_again_only_the_blocks_of_touched_jobs() -> None:
    from jobmesh.monitor.encode import BLOCK

    r = Run()
    r.put(WorkflowSubmitted(workflow="w", run="r1", spec=big(), parallel=4, time=100.0))
    r.check()
    before = list(r.enc.cache["w"].blocks)
    r.put(ev(JobStarted, f"j{3 * BLOCK + 5}", host="h"))  # block 3 (prep is first)
    r.check()
    after = r.enc.cache["w"].blocks
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a is not b]
    assert changed == [3]
    assert len(after) == len(before) == -(-(N + 2) // BLOCK)


@pytest.mark.parametrize("sizes", [[0], [5, 0, 7], [1 << 17, 3, 70000], [0, 0], [65521, 65522]])
def test_segments_compressed_apart_join_into_one_zlib_stream(sizes: list[int]) -> None:
    import random
    import zlib

    from jobmesh.monitor.encode import _joined, _seg

    rnd = random.Random(len(sizes))
    datas = [bytes(rnd.choice(b"ab{}\",:0123") for _ in range(n)) for n in sizes]
    packed = _joined([_seg((d[: len(d) // 2], d[len(d) // 2:])) for d in datas])
    assert zlib.decompress(packed) == b"".join(datas)  # (checks the Adler-32 too)
    assert unpack(packed) == b"".join(datas)
