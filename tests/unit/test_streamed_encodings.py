"""Big values made a piece at a time give exactly the bytes of the whole: ``Workflow.packed``
(the specs bucket) and the cache key digest of a job with many parents."""

from __future__ import annotations

import zlib

import pytest
from pydantic_core import to_json

from jobmesh.common.packing import unpack
from jobmesh.common.spec import STREAM_FROM, JobSpec, Repeat, Workflow

pytestmark = pytest.mark.unit


def _workflow(n: int, name: str = "sweep") -> Workflow:
    jobs = {"prep": JobSpec(name="prep", exec="true", label="a \"quoted\" {name}",
                            repeat=Repeat(until="outputs.x > 1", max=3), custom={"k": [1]})}
    for i in range(n):
        jobs[f"t-é-{i}"] = JobSpec(name=f"t-é-{i}", exec=f"echo {i} \u2603", env={"I": str(i)},
                                   params={"i": i}, foreach_of="t")
    edges = [("prep", j) for j in jobs if j != "prep"]
    # A variable that looks like the jobs field must not confuse the splice.
    return Workflow(name=name, jobs=jobs, edges=edges, base_dir="/tmp/x",
                    variables={"jobs": {}, "s": '"jobs":{}'}, source="name: x\n")


@pytest.mark.parametrize("n", [0, 5, STREAM_FROM - 2, STREAM_FROM, 256 * 4 + 1, 3000])
def test_packed_unpacks_to_the_whole_json(n: int) -> None:
    wf = _workflow(n)
    data = wf.packed()
    assert unpack(data) == to_json(wf) == wf.model_dump_json().encode()
    assert Workflow.model_validate_json(unpack(data)) == wf


def test_big_spec_is_compressed_in_pieces() -> None:
    wf = _workflow(3000, name='odd "name" \u00e9')
    data = wf.packed()
    assert data[:1] == b"x"  # a zlib stream, as packing.unpack expects
    assert zlib.decompress(data) == to_json(wf)
    assert len(data) < len(to_json(wf)) // 5


@pytest.mark.parametrize("n", [0, 1, 999, 1000, 1001, 2000, 2500])
def test_cache_key_digest_streams_long_parent_lists(n: int) -> None:
    """A fan-in job's key: hashed in pieces, to the very digest of the whole text."""
    import hashlib
    import json

    from jobmesh.common.cachekey import digest, material

    spec = JobSpec(name="report", exec="true", env={"A": "\u00e9"}, params={"parents": "x"})
    parents = [(f"t-\u00e9-{i}", f"{i:064x}") for i in range(n)]
    doc = material(spec, "/tmp/w", parents, {"input:a": "00"})
    whole = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    assert digest(doc) == hashlib.sha256(whole.encode()).hexdigest()
