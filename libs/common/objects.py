"""Reading a stored object (the scheduler's checkpoint, a workflow's graph) in one batch.

nats-py's ``ObjectStore.get`` reads an object's chunks through a push consumer and
appends each to a growing bytes value: a 3.5 MB checkpoint of 27 chunks took ~300 ms
here, most of a 1-job run's start after a 10,000-job sweep. ``get`` asks for every chunk
in one pull request and joins them once (~30 ms), and checks the digest as nats-py does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Any

from .follow import EPHEMERAL_INACTIVE, drop

FETCH_TIMEOUT = 10.0  # seconds for the chunks of one object to arrive
CHECK_EVERY = 0.5  # seconds without chunks after which the object's info is looked at again


class ObjectError(RuntimeError):
    """A stored object that cannot be read whole (chunks missing, digest wrong)."""


async def get(js: Any, bucket: str, name: str) -> bytes | None:
    """The object ``name`` of the object store ``bucket``; None if it (or the store) does
    not exist. Raises ObjectError if it changed while read (a new version purges the old
    one's chunks: found within CHECK_EVERY), TimeoutError if chunks stop coming for
    FETCH_TIMEOUT otherwise."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError

    try:
        store = await js.object_store(bucket)
        info = await store.get_info(name)
    except (BucketNotFoundError, NotFoundError, ObjectNotFoundError):
        return None
    if info.is_link():  # not made by jobmesh: nats-py follows links
        return bytes((await store.get(name)).data or b"")
    if not info.size:
        return b""
    psub = await js.pull_subscribe(
        f"$O.{bucket}.C.{info.nuid}", stream=f"OBJ_{bucket}",
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                              inactive_threshold=EPHEMERAL_INACTIVE))
    parts: list[bytes] = []
    deadline = time.monotonic() + FETCH_TIMEOUT
    try:
        while len(parts) < info.chunks:
            left = deadline - time.monotonic()
            try:
                msgs = await psub.fetch(info.chunks - len(parts),
                                        timeout=max(0.05, min(CHECK_EVERY, left)))
            except asyncio.TimeoutError:
                if left <= CHECK_EVERY:
                    raise
                if await _replaced(store, name, info.nuid):
                    raise ObjectError(f"object {bucket}/{name} was replaced while read") from None
                continue
            parts.extend(m.data for m in msgs)
    finally:
        await drop(js, psub)
    data = b"".join(parts)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    if len(data) != info.size or not (info.digest or "").endswith(digest):
        raise ObjectError(f"object {bucket}/{name}: {len(data)} of {info.size} bytes read, "
                          "or its digest does not match (written while read?)")
    return data


async def _replaced(store: Any, name: str, nuid: str) -> bool:
    """Is the object now another version than the one being read (or gone)?"""
    try:
        return bool((await store.get_info(name)).nuid != nuid)
    except Exception:  # noqa: BLE001  (not found, or the store went away)
        return True
