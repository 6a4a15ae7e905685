"""A running workflow's snapshot, encoded by what changed since its last write.

The snapshot is one KV value, written every ``size / 20000`` s while a run goes on.
Encoding a 20,000-job snapshot whole takes ~60-100 ms of the monitor's CPU (pydantic,
every job every time), most of its share of a big sweep. ``Encoder`` keeps, per running
workflow, each job's encoded ``"name":{...}`` part and the edges' JSON, re-encodes only
the jobs the shell marked (``touch``: a job event folded) and splices them into the
header encoded afresh. The bytes are exactly ``bus.encode(snap)`` (a unit test holds it
to that), so every reader sees the same value.

Small snapshots (below ``BIG`` jobs) are encoded whole: cheap. An ended run's jobs are
encoded afresh, not from the cache, so the value a finished run leaves behind never
depends on it. ``packed`` compresses a big snapshot as it is encoded, so its whole JSON
is never held at once. The cache of a workflow
starts over when its run, its jobs dict or its edges list is another object (a new
submission, a foreach expansion).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydantic_core import to_json

from jobmesh.common import bus
from jobmesh.common.messages import JobStatus, WorkflowSnapshot
from jobmesh.common.packing import pack

BIG = 2000  # jobs: a smaller snapshot encodes whole in a few ms
CHUNK = 256 * 1024  # bytes of JSON compressed at a time
EDGES = 5000  # edges encoded at a time
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
        return b"".join(self._pieces(snap))

    def packed(self, snap: WorkflowSnapshot) -> bytes:
        """``pack(bus.encode(snap))`` in what it reads (``unpack`` gives the same bytes),
        but a big snapshot is compressed as it is encoded (``compressed``): the whole
        JSON of a 100,000-job run (~45 MB, and as much again while it was joined) is
        never held at once. Big snapshots are always compressed."""
        if len(snap.jobs) < BIG:
            self.cache.pop(snap.name, None)
            return pack(bus.encode(snap))
        return compressed(self._pieces(snap))

    def _pieces(self, snap: WorkflowSnapshot) -> Iterator[bytes]:
        """The bytes of ``bus.encode(snap)``, in pieces. A running big snapshot's jobs come
        from (and update) the cache; an ended one's are encoded afresh (``pieces``) and
        the cache is dropped: the value a finished run leaves never depends on it."""
        if len(snap.jobs) < BIG or snap.state.terminal:
            self.cache.pop(snap.name, None)
            yield from pieces(snap)
            return
        parts = self._parts(snap)
        yield from _spliced(snap, parts.parts.values(), (parts.edges_json,))

    def _parts(self, snap: WorkflowSnapshot) -> _Parts:
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
        return parts


def pieces(snap: WorkflowSnapshot) -> Iterator[bytes]:
    """The bytes of ``bus.encode(snap)`` in pieces, a job at a time (no cache)."""
    if len(snap.jobs) < BIG:
        yield bus.encode(snap)
        return
    yield from _spliced(snap, (_part(n, js) for n, js in snap.jobs.items()),
                        _edges_json(snap.edges))


def _spliced(snap: WorkflowSnapshot, jobs: Iterable[bytes], edges: Iterable[bytes]
             ) -> Iterator[bytes]:
    head = bus.encode(snap.model_copy(update={"jobs": {}, "edges": []}))
    at = head.find(_HOLE)
    if at < 0:  # (a field order this splice does not know: encode it whole)
        yield bus.encode(snap)
        return
    yield head[:at] + b',"jobs":{'
    comma = b""
    for part in jobs:
        yield comma + part
        comma = b","
    yield b'},"edges":'
    yield from edges
    yield head[at + len(_HOLE):]


def compressed(chunks: Iterable[bytes]) -> bytes:
    """zlib (level 1, as ``pack``) of the chunks joined, compressed ``CHUNK`` at a time."""
    z = zlib.compressobj(1)
    out: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for piece in chunks:
        batch.append(piece)
        size += len(piece)
        if size >= CHUNK:
            out.append(z.compress(b"".join(batch)))
            batch, size = [], 0
    out.append(z.compress(b"".join(batch)))
    out.append(z.flush())
    return b"".join(out)


def _edges_json(edges: list[tuple[str, str]]) -> Iterator[bytes]:
    """``to_json(edges)`` in pieces of ``EDGES`` edges (a big sweep has 200,000)."""
    if not edges:
        yield b"[]"
        return
    for i in range(0, len(edges), EDGES):
        piece = to_json(edges[i:i + EDGES])
        yield (b"[" if i == 0 else b",") + piece[1:-1]
    yield b"]"
