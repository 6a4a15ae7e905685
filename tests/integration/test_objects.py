"""Reading stored objects in one batch (libs/common/objects.py) against a real
nats-server: what nats-py wrote comes back byte for byte, over many chunks; a missing
object or store is None; a changed object is an error, never a mix of two versions."""

from __future__ import annotations

import os
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_a_many_chunk_object_reads_back_whole(bus: Any) -> None:
    from jobmesh.common import objects

    data = os.urandom(1_000_000) + b"end"  # 8 chunks of nats-py's 128 KB

    async def go(js: Any) -> tuple[bytes | None, bytes | None, bytes | None, bytes | None]:
        store = await js.create_object_store("objtest")
        await store.put("big", data)
        await store.put("empty", b"")
        return (await objects.get(js, "objtest", "big"),
                await objects.get(js, "objtest", "empty"),
                await objects.get(js, "objtest", "missing"),
                await objects.get(js, "nostore", "big"))

    big, empty, missing, nostore = bus.call(go)
    assert big == data
    assert empty == b""
    assert missing is None and nostore is None


def test_an_object_replaced_while_read_is_not_mixed(bus: Any) -> None:
    """Chunks of the old version purged under the reader: it fails at once (and ops.graph
    reads again), never returns parts of two versions, nor waits out FETCH_TIMEOUT."""
    import time

    from jobmesh.common import objects

    old, new = b"a" * 400_000, b"b" * 300_000

    async def go(js: Any) -> str:
        store = await js.create_object_store("objtest2")
        await store.put("g", old)
        info = await store.get_info("g")
        real_fetch_owner = js.pull_subscribe

        async def pull_subscribe(*args: Any, **kw: Any) -> Any:
            sub = await real_fetch_owner(*args, **kw)
            await store.put("g", new)  # the old chunks are purged now
            return sub

        js.pull_subscribe = pull_subscribe
        began = time.monotonic()
        try:
            got = await objects.get(js, "objtest2", "g")
        except (objects.ObjectError, TimeoutError) as exc:
            took = time.monotonic() - began
            return f"{type(exc).__name__}{' within FETCH_TIMEOUT' if took < 5 else ''}"
        finally:
            del js.pull_subscribe
        return f"read {len(got or b'')} bytes of {info.size}"

    assert bus.call(go) == "ObjectError within FETCH_TIMEOUT"
