"""The streams' duplicate window: short (nats-server rebuilds its dedupe table from every
message inside it at each start), and taken over by homes an older jobmesh made with the
old 600 s window, keeping what an operator changed. Real nats-server."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_a_stream_made_with_the_old_window_takes_the_new_one_and_keeps_the_rest(
        bus: Any) -> None:
    from jobmesh.common import bus as jbus
    from jobmesh.common import subjects

    async def age(js: Any) -> None:  # as an older jobmesh (and an operator) left it
        for name in (subjects.STREAM_EVENTS, subjects.STREAM_JOBS):
            info = await js.stream_info(name)
            await js.update_stream(replace(info.config, duplicate_window=600.0,
                                           description="edited by hand"))
        assert (await js.stream_info(subjects.STREAM_EVENTS)).config.duplicate_window == 600

    async def read(js: Any) -> list[tuple[float, str | None]]:
        return [((c := (await js.stream_info(n)).config).duplicate_window, c.description)
                for n in (subjects.STREAM_EVENTS, subjects.STREAM_JOBS)]

    bus.call(age)
    after = bus.call(read)  # a new connection declares the streams again
    assert after == [(jbus.DUPLICATE_WINDOW, "edited by hand")] * 2
    assert jbus.DUPLICATE_WINDOW <= 180 and jbus.DUPLICATE_WINDOW > jbus.PUBLISH_DEADLINE


def test_a_repeated_message_id_is_still_dropped_within_the_window(bus: Any) -> None:
    from jobmesh.common import bus as jbus
    from jobmesh.common import subjects

    async def go(js: Any) -> int:
        subject = subjects.events("wfdup", "20261204-000000-abcd1234")
        for _ in range(3):
            await jbus.publish(js, subject, None, msg_id="wfdup.x.1.started", payload=b"{}")
        return (await js.stream_info(subjects.STREAM_EVENTS)).state.messages

    assert bus.call(go) == 1
