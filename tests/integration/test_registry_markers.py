"""The executions registry's delete markers (one per finished job) do not pile up: an
executor that starts and counts many of them purges the old ones in the background
(adopt.purge_markers), and keeps the entries of jobs still running. Real nats-server."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_old_delete_markers_are_purged_and_live_entries_kept(bus: Any,
                                                              monkeypatch: Any) -> None:
    from jobmesh.common import subjects
    from jobmesh.executor import adopt

    monkeypatch.setattr(adopt, "MARKER_AGE", 0.0)  # every marker counts as old here
    finished = adopt.MARKERS_PURGE_AT + 50

    async def go(js: Any) -> tuple[int, int, list[str]]:
        kv = await js.key_value(subjects.KV_EXECUTIONS)
        for i in range(finished):
            await kv.put(f"local.wf.job{i}.1", b'{"x": 1}')
            await kv.delete(f"local.wf.job{i}.1")
        await kv.put("local.wf.running.1", b'{"still": "running"}')
        stream = f"KV_{subjects.KV_EXECUTIONS}"
        before = (await js.stream_info(stream)).state.messages
        await adopt.purge_markers(js, kv, finished)
        after = (await js.stream_info(stream)).state.messages
        return before, after, await kv.keys()

    before, after, keys = bus.call(go)
    assert before >= finished + 1
    assert after == 1, f"{after} messages left in the registry, want the running job's"
    assert keys == ["local.wf.running.1"]


def test_few_markers_are_left_alone(bus: Any) -> None:
    from jobmesh.common import subjects
    from jobmesh.executor import adopt

    async def go(js: Any) -> int:
        kv = await js.key_value(subjects.KV_EXECUTIONS)
        for i in range(5):
            await kv.put(f"local.wf.j{i}.1", b"{}")
            await kv.delete(f"local.wf.j{i}.1")
        await adopt.purge_markers(js, kv, 5)
        return int((await js.stream_info(f"KV_{subjects.KV_EXECUTIONS}")).state.messages)

    assert bus.call(go) == 5
