"""A running workflow's snapshot, encoded by what changed since its last write.

The snapshot is one KV value, written every ``size / 20000`` s while a run goes on.
Encoding a 20,000-job snapshot whole takes ~60-100 ms of the monitor's CPU (pydantic,
every job every time), most of its share of a big sweep. ``Encoder`` keeps, per running
big workflow, its jobs in blocks of ``BLOCK``, each block's JSON compressed on its own
(raw deflate, flushed to a byte boundary), and the edges' likewise. A write encodes and
compresses again only the blocks of the jobs the shell marked (``touch``: a job event
folded) and joins the segments into one zlib stream around the header encoded afresh
(``_joined``). What it stores unpacks to exactly ``bus.encode(snap)`` (a unit test holds
it to that), so every reader sees the same value. Kept compressed, the cache costs ~50
bytes a job instead of the ~450 of its JSON, and a write no longer compresses the whole
snapshot (~45 MB at 100,000 jobs).

Small snapshots (below ``BIG`` jobs) are encoded whole: cheap. An ended run's jobs are
encoded afresh, not from the cache, so the value a finished run leaves behind never
depends on it; it is compressed as it is encoded (``compressed``), so its whole JSON is
never held at once. The cache of a workflow starts over when its run, its jobs dict or
its edges list is another object (a new submission, a foreach expansion).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain

from pydantic_core import to_json

from jobmesh.common import bus
from jobmesh.common.messages import JobStatus, WorkflowSnapshot
from jobmesh.common.packing import compressed, pack

BIG = 2000  # jobs: a smaller snapshot encodes whole in a few ms
BLOCK = 64  # jobs compressed together: what one touched job costs to encode again
EDGES = 5000  # edges encoded at a time
_HOLE = b',"jobs":{},"edges":[]'
_FINAL = zlib.compressobj(1, zlib.DEFLATED, -15).flush()  # an empty final block


@dataclass(slots=True)
class _Seg:
    """Some bytes of the snapshot's JSON as raw deflate, flushed to a byte boundary and
    not final, so segments compressed apart join into one stream (``_joined``)."""
    raw: bytes
    adler: int  # zlib.adler32 of the JSON bytes
    size: int   # their length


@dataclass
class _Parts:
    run: str
    jobs: dict[str, JobStatus]          # the snapshot's own dict (identity: same shape)
    edges: list[tuple[str, str]]        # likewise
    edges_seg: _Seg                     # b'},"edges":[...]'
    names: list[tuple[str, ...]]        # per block, its jobs in the snapshot's order
    blocks: list[_Seg]                  # per block, its jobs' parts, compressed
    where: dict[str, int]               # job -> its block
    dirty: set[str] = field(default_factory=set)


def _part(name: str, js: JobStatus) -> bytes:
    return to_json(name) + b":" + bus.encode(js)


class Encoder:
    """Per workflow, the compressed blocks of its last written snapshot."""

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
            return b"".join(self._whole(snap))
        return zlib.decompress(self.packed(snap))

    def packed(self, snap: WorkflowSnapshot) -> bytes:
        """``pack(bus.encode(snap))`` in what it reads (``unpack`` gives the same bytes).
        A big running snapshot is joined from its cached compressed blocks, with only the
        blocks of touched jobs encoded and compressed again: its whole JSON (~45 MB at
        100,000 jobs) is neither held nor compressed at each write. A big ended one is
        compressed as it is encoded (``compressed``). Big snapshots are always
        compressed."""
        if len(snap.jobs) < BIG:
            self.cache.pop(snap.name, None)
            return pack(bus.encode(snap))
        if snap.state.terminal:
            return compressed(self._whole(snap))
        head = _head(snap)
        if head is None:
            return compressed(self._whole(snap))
        parts = self._parts(snap)
        return _joined([_seg((head[0],)), *parts.blocks, parts.edges_seg, _seg((head[1],))])

    def _whole(self, snap: WorkflowSnapshot) -> Iterator[bytes]:
        """Encoded afresh, and the cache dropped: the value a finished run leaves never
        depends on it."""
        self.cache.pop(snap.name, None)
        return pieces(snap)

    def _parts(self, snap: WorkflowSnapshot) -> _Parts:
        parts = self.cache.get(snap.name)
        if parts is None or parts.run != snap.run or parts.jobs is not snap.jobs \
                or parts.edges is not snap.edges or len(parts.where) != len(snap.jobs):
            names = list(snap.jobs)
            blocks = [tuple(names[i:i + BLOCK]) for i in range(0, len(names), BLOCK)]
            where: dict[str, int] = {}
            for b, block in enumerate(blocks):
                where.update(dict.fromkeys(block, b))
            parts = self.cache[snap.name] = _Parts(
                snap.run, snap.jobs, snap.edges,
                _seg(chain((b'},"edges":',), _edges_json(snap.edges))), blocks,
                [_block(snap.jobs, b, block) for b, block in enumerate(blocks)], where)
        elif parts.dirty:
            for b in {parts.where[n] for n in parts.dirty if n in parts.where}:
                parts.blocks[b] = _block(snap.jobs, b, parts.names[b])
        parts.dirty.clear()
        return parts


def _block(jobs: dict[str, JobStatus], b: int, names: tuple[str, ...]) -> _Seg:
    """A block's jobs, compressed: ``"a":{...},"b":{...}`` (a comma first after the
    first block)."""
    return _seg((b"," if b else b"", b",".join(_part(n, jobs[n]) for n in names)))


def _seg(pieces: Iterable[bytes]) -> _Seg:
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    out, adler, size = [], 1, 0
    for piece in pieces:
        out.append(z.compress(piece))
        adler = zlib.adler32(piece, adler)
        size += len(piece)
    out.append(z.flush(zlib.Z_SYNC_FLUSH))
    return _Seg(b"".join(out), adler, size)


def _joined(segs: Iterable[_Seg]) -> bytes:
    """One zlib stream of the segments in order (what ``zlib.compress`` of their bytes
    joined decompresses to): header, the raw segments, an empty final block, and the
    Adler-32 of the whole, combined from the segments' (zlib's ``adler32_combine``)."""
    out = [b"\x78\x01"]
    adler = 1
    for s in segs:
        out.append(s.raw)
        adler = _adler_combine(adler, s.adler, s.size)
    out.append(_FINAL)
    out.append(adler.to_bytes(4, "big"))
    return b"".join(out)


def _adler_combine(a1: int, a2: int, len2: int) -> int:
    """The Adler-32 of A + B from that of A, that of B and B's length (zlib's
    ``adler32_combine``)."""
    base = 65521
    rem = len2 % base
    s1 = a1 & 0xFFFF
    s2 = rem * s1 % base
    s1 = (s1 + (a2 & 0xFFFF) + base - 1) % base
    s2 = (s2 + (a1 >> 16) + (a2 >> 16) + base - rem) % base
    return s1 | (s2 << 16)


def _head(snap: WorkflowSnapshot) -> tuple[bytes, bytes] | None:
    """The snapshot's JSON before its jobs (up to ``"jobs":{``) and after its edges;
    None for a field order this splice does not know."""
    head = bus.encode(snap.model_copy(update={"jobs": {}, "edges": []}))
    at = head.find(_HOLE)
    if at < 0:
        return None
    return head[:at] + b',"jobs":{', head[at + len(_HOLE):]


def pieces(snap: WorkflowSnapshot) -> Iterator[bytes]:
    """The bytes of ``bus.encode(snap)`` in pieces, a job at a time (no cache)."""
    if len(snap.jobs) < BIG:
        yield bus.encode(snap)
        return
    yield from _spliced(snap, (_part(n, js) for n, js in snap.jobs.items()),
                        _edges_json(snap.edges))


def _spliced(snap: WorkflowSnapshot, jobs: Iterable[bytes], edges: Iterable[bytes]
             ) -> Iterator[bytes]:
    head = _head(snap)
    if head is None:  # (a field order this splice does not know: encode it whole)
        yield bus.encode(snap)
        return
    yield head[0]
    comma = b""
    for part in jobs:
        yield comma + part
        comma = b","
    yield b'},"edges":'
    yield from edges
    yield head[1]


def _edges_json(edges: list[tuple[str, str]]) -> Iterator[bytes]:
    """``to_json(edges)`` in pieces of ``EDGES`` edges (a big sweep has 200,000)."""
    if not edges:
        yield b"[]"
        return
    for i in range(0, len(edges), EDGES):
        piece = to_json(edges[i:i + EDGES])
        yield (b"[" if i == 0 else b",") + piece[1:-1]
    yield b"]"
