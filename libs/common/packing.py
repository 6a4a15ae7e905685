"""Large stored values, compressed: snapshots and run records.

A workflow's snapshot is one KV value, and NATS refuses a value over its ``max_payload``
(8 MB on the embedded server, 1 MB by default). A 20,000-job sweep's snapshot is ~9 MB of
JSON, which zlib makes ~10x smaller. Values over ``PACK_OVER`` are stored compressed;
every reader passes what it got through ``unpack``. A zlib stream starts with the byte
``x`` (0x78) and JSON never does, so old, uncompressed values still read as they are.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

CHUNK = 256 * 1024  # bytes of JSON compressed at a time by ``compressed``
PACK_OVER = 256_000  # bytes; smaller values stay plain JSON (cheaper, readable with `nats kv`)


def pack(data: bytes, over: int = PACK_OVER) -> bytes:
    """``data`` as stored: compressed (level 1: ~40 ms for 8 MB) when it is large."""
    return zlib.compress(data, 1) if len(data) > over else data


def unpack(data: bytes) -> bytes:
    """What ``pack`` was given."""
    return zlib.decompress(data) if data[:1] == b"x" else data


def compressed(chunks: Iterable[bytes]) -> bytes:
    """zlib (level 1, as ``pack``) of the chunks joined, compressed ``CHUNK`` at a time:
    a big value made in pieces (a snapshot, a run record, a spec) is never held whole."""
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
