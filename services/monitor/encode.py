"""A running workflow's snapshot, encoded by what changed since its last write.

The snapshot is one KV value, written every ``size / 20000`` s while a run goes on.
Encoding a 20,000-job snapshot whole takes ~60-100 ms of the monitor's CPU (pydantic,
every job every time), most of its share of a big sweep. ``Encoder`` keeps, per running
workflow, each job's encoded ``"name":{...}`` part and the edges' JSON, re-encodes only
the jobs the shell marked (``touch``: a job event folded) and splices them into the
header encoded afresh. The bytes are exactly ``bus.encode(snap)`` (a unit test holds it
to that), so every reader sees the same value.

Small snapshots (below ``BIG`` jobs) and ended runs are encoded whole: cheap, and the
value a finished run leaves behind never depends on this cache. The cache of a workflow
starts over when its run, its jobs dict or its edges list is another object (a new
submission, a foreach expansion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json

from jobmesh.common import bus
from jobmesh.common.messages import JobStatus, WorkflowSnapshot

BIG = 2000  # jobs: a smaller snapshot encodes whole in a few ms
_HOLE = b',"jobs":{},"edges":[]'


@dataclass
class _Parts:
    run: str
    jobs: dict[str, JobStatus]          # the snapshot's own dict (identity: same shape)
    edges: list[tuple[str, str]]        # likewise
    edges_json: bytes
    parts: dict[str, bytes]             # job -> b'"name":{...}', in the snapshot's order
    dirty: set[str] = field(default_factory=set)


def _part(name: str, js: JobStatus) -> bytes:
    return to_json(name) + b":" + js.model_dump_json(exclude_none=True).encode()


class Encoder:
    """Per workflow, the encoded parts of its last written snapshot."""

    def __init__(self) -> None:
        self.cache: dict[str, _Parts] = {}

    def touch(self, wf: str, job: str) -> None:
        """A job's status may have changed since the last encode."""
        parts = self.cache.get(wf)
        if parts is not None:
            parts.dirty.add(job)

    def forget(self, wf: str) -> None:
        self.cache.pop(wf, None)

    def encode(self, snap: WorkflowSnapshot) -> bytes:
        """``bus.encode(snap)``, re-encoding only the jobs touched since the last call."""
        if len(snap.jobs) < BIG or snap.state.terminal:
            self.cache.pop(snap.name, None)
            return bus.encode(snap)
        parts = self.cache.get(snap.name)
        if parts is None or parts.run != snap.run or parts.jobs is not snap.jobs \
                or parts.edges is not snap.edges or len(parts.parts) != len(snap.jobs):
            parts = self.cache[snap.name] = _Parts(
                snap.run, snap.jobs, snap.edges, to_json(snap.edges),
                {n: _part(n, js) for n, js in snap.jobs.items()})
        else:
            for name in parts.dirty:
                js = snap.jobs.get(name)
                if js is not None:
                    parts.parts[name] = _part(name, js)
            parts.dirty.clear()
        head = bus.encode(snap.model_copy(update={"jobs": {}, "edges": []}))
        at = head.find(_HOLE)
        if at < 0:  # (a field order this splice does not know: encode it whole)
            return bus.encode(snap)
        out: list[Any] = [head[:at], b',"jobs":{', b",".join(parts.parts.values()),
                          b'},"edges":', parts.edges_json, head[at + len(_HOLE):]]
        return b"".join(out)
