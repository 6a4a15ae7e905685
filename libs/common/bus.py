"""The bus: publish typed models; the one import for connecting, declaring and following.

Connecting and retrying live in ``natsconn``, the stream and bucket declarations in
``streams``, and reading the EVENTS log in ``follow``; ``bus.X`` names them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from . import subjects
from .follow import (  # noqa: F401  (bus.X is the public name)
    EPHEMERAL_INACTIVE,
    FOLLOW_HEARTBEAT,
    KvWatch,
    LogFollower,
    decode_log,
    drop,
    kv_keys,
    kv_watch,
    stop_watch,
)
from .natsconn import (  # noqa: F401
    CONNECT_TRIES,
    BusError,
    CredentialsRefused,
    MessageTooLarge,
    close,
    connect,
    kv_put,
    retrying,
    too_large,
    transient,
)
from .packing import pack
from .streams import DUPLICATE_WINDOW, ensure  # noqa: F401

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from pydantic import BaseModel

log = logging.getLogger("jobmesh.bus")

# How long a publish keeps retrying while NATS is away before it gives up (seconds).
PUBLISH_DEADLINE = 90.0


def encode(model: BaseModel) -> bytes:
    """The model as compact JSON bytes (``model_dump_json(exclude_none=True)``, without
    its text copy: a 100,000-job submission's ~40 MB of JSON is made once, not thrice)."""
    return model.__pydantic_serializer__.to_json(model, exclude_none=True)


def log_payload(subject: str, payload: bytes) -> bytes:
    """What goes on the EVENTS log for ``payload``: a large message (a submission or a
    foreach expansion of many thousand jobs) zlib-packed, ~10-25x smaller, so a
    100,000-job sweep (25 MB of JSON) fits NATS's max_payload; ``decode_log`` unpacks.
    Other streams' messages (JOBS) are left as they are."""
    if subject.startswith(subjects.LOG_PREFIXES):
        return pack(payload)
    return payload


async def publish(js: JetStreamContext, subject: str, model: BaseModel,
                  msg_id: str | None = None, deadline: float = PUBLISH_DEADLINE,
                  payload: bytes | None = None) -> int:
    """Publish to a stream and wait for its ack, retrying while NATS is away (a cluster
    node restarting, a leader election: typically 2-10 s). Returns the stream sequence;
    raises BusError once ``deadline`` seconds have passed. With a ``msg_id`` a retry of a
    publish whose ack was lost is dropped by the stream as a duplicate."""
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    if payload is None:  # (a caller that encoded the model already passes it)
        payload = log_payload(subject, encode(model))
    end = time.monotonic() + deadline
    delay = 0.05
    attempt = 0
    while True:
        attempt += 1
        try:
            ack = await js.publish(subject, payload, headers=headers, timeout=5)
            return int(ack.seq)
        except Exception as exc:  # timeouts, no responders while a leader is elected
            if too_large(exc):  # the same message is refused again: say so at once
                raise MessageTooLarge(f"publish to {subject} refused: the message is "
                               f"{len(payload):,} bytes, over NATS's limit "
                               f"({_limit(js)}); {exc!r}") from None
            log.info("publish to %s: attempt %d failed: %r", subject, attempt, exc)
            if time.monotonic() + delay > end:
                raise BusError(f"publish to {subject} failed after {attempt} attempts: "
                               f"{exc!r}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def _limit(js: JetStreamContext) -> str:
    try:  # the connection's max_payload (the server's setting); a stream may be lower
        return f"max_payload {int(js._nc.max_payload):,} bytes"
    except (AttributeError, TypeError, ValueError):
        return "max_payload"
