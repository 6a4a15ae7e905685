"""bus.kv_watch: the None that ends a watch's current values comes after all of them.
nats-py's own watch sends it first at times (when the server has sent every value before
answering its consumer-info request): 4 to 9 watches in 200 over 1,050 keys here; the
executor's re-attach and marker purge stop reading at that None. Real nats-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytestmark = pytest.mark.integration

KEYS = 1050
WATCHES = 150  # the old watch failed 1 in 20-50 of these: this many fail it nearly always


def test_every_current_value_comes_before_the_end(bus: Any) -> None:
    from jobmesh.common import bus as jbus

    async def go(js: Any) -> list[int]:
        kv = await js.create_key_value(bucket="watchtest", history=1)
        for i in range(KEYS):
            await kv.put(f"a.k{i}", b"x")
            if i % 2:
                await kv.delete(f"a.k{i}")  # markers too, as the executions registry has
        counts = []
        for _ in range(WATCHES):
            watcher = await jbus.kv_watch(kv, "a.>", headers_only=True,
                                          inactive_threshold=jbus.EPHEMERAL_INACTIVE)
            n = 0
            async for entry in watcher:
                if entry is None:
                    break
                n += 1
            await jbus.stop_watch(js, watcher)
            counts.append(n)
        return counts

    counts = bus.call(go)
    short = [n for n in counts if n != KEYS]
    assert not short, f"{len(short)} of {WATCHES} watches ended early, with {short[:5]} values"


def test_an_empty_watch_ends_at_once_and_then_follows(bus: Any) -> None:
    from jobmesh.common import bus as jbus

    async def go(js: Any) -> list[Any]:
        kv = await js.create_key_value(bucket="watchempty", history=1)
        watcher = await jbus.kv_watch(kv, "b.>", inactive_threshold=jbus.EPHEMERAL_INACTIVE)
        seen: list[Any] = [await asyncio.wait_for(watcher.__anext__(), 5)]
        await kv.put("b.one", b"1")
        await kv.put("b.two", b"2")
        for _ in range(2):
            entry = await asyncio.wait_for(watcher.__anext__(), 5)
            seen.append((entry.key, bytes(entry.value)))
        await jbus.stop_watch(js, watcher)
        return seen

    assert bus.call(go) == [None, ("b.one", b"1"), ("b.two", b"2")]


def test_values_then_one_end_then_updates(bus: Any) -> None:
    from jobmesh.common import bus as jbus

    async def go(js: Any) -> list[Any]:
        kv = await js.create_key_value(bucket="watchlive", history=1)
        for i in range(3):
            await kv.put(f"c.k{i}", b"old")
        watcher = await jbus.kv_watch(kv, "c.>", inactive_threshold=jbus.EPHEMERAL_INACTIVE)
        seen: list[Any] = []
        for _ in range(4):
            entry = await asyncio.wait_for(watcher.__anext__(), 5)
            seen.append(entry and entry.key)
        await kv.put("c.k1", b"new")
        entry = await asyncio.wait_for(watcher.__anext__(), 5)  # no second None before it
        seen.append((entry.key, bytes(entry.value)))
        await jbus.stop_watch(js, watcher)
        return seen

    assert bus.call(go) == ["c.k0", "c.k1", "c.k2", None, ("c.k1", b"new")]
