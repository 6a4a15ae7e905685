"""Bus helpers: connect, declare streams and buckets, publish and decode typed models."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from pydantic import BaseModel

from . import subjects
from .messages import EVENT_LOG
from .settings import Settings

# JetStream drops a repeated Nats-Msg-Id within this window (seconds).
DUPLICATE_WINDOW = 600.0


class BusError(RuntimeError):
    """The bus cannot be reached or refused us; the message says what to check."""


async def connect(settings: Settings, name: str, retry: bool = False) -> NATS:
    """Connect to NATS. Without ``retry`` a dead server or bad credentials fail at once
    with a BusError a person can read."""
    opts: dict[str, Any] = dict(
        name=name,
        connect_timeout=3,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
    )
    if settings.nats_token:
        opts["token"] = settings.nats_token
    if settings.nats_user:
        opts["user"], opts["password"] = settings.nats_user, settings.nats_password
    if settings.nats_creds:
        opts["user_credentials"] = settings.nats_creds
    if settings.nats_tls_ca:
        import ssl

        opts["tls"] = ssl.create_default_context(cafile=settings.nats_tls_ca)
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc) or type(exc).__name__)

    opts["error_cb"] = on_error
    try:
        return await nats.connect(settings.nats_url, **opts)
    except Exception as exc:  # nats raises several unrelated classes here
        detail = "; ".join(errors[-1:]) or str(exc) or type(exc).__name__
        if "authorization" in detail.lower():
            raise BusError(f"NATS at {settings.nats_url} refused the credentials "
                           f"({detail}); check the token, user or creds file") from None
        raise BusError(f"cannot connect to NATS at {settings.nats_url}: {detail}") from None


async def ensure(js: JetStreamContext, replicas: int = 1) -> None:
    """Declare the streams and buckets jobmesh uses; safe to call from every service."""
    await _stream(js, StreamConfig(
        name=subjects.STREAM_EVENTS, subjects=subjects.EVENTS_SUBJECTS,
        storage=StorageType.FILE, num_replicas=replicas, duplicate_window=DUPLICATE_WINDOW,
        max_msg_size=32 * 1024 * 1024))
    await _stream(js, StreamConfig(
        name=subjects.STREAM_JOBS, subjects=subjects.JOBS_SUBJECTS,
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
        num_replicas=replicas, duplicate_window=DUPLICATE_WINDOW))
    for bucket in (subjects.KV_WORKFLOWS, subjects.KV_SPECS, subjects.KV_EXECUTIONS):
        await _bucket(js, bucket, replicas)
    try:
        await js.object_store(subjects.OBJ_GRAPHS)
    except (NotFoundError, BucketNotFoundError):
        from nats.js.api import ObjectStoreConfig

        try:
            await js.create_object_store(subjects.OBJ_GRAPHS,
                                         config=ObjectStoreConfig(replicas=replicas))
        except Exception:  # another service created it first
            await js.object_store(subjects.OBJ_GRAPHS)


async def _stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.stream_info(config.name)  # type: ignore[arg-type]
    except NotFoundError:
        try:
            await js.add_stream(config)
        except Exception:
            await js.stream_info(config.name)  # type: ignore[arg-type]  # raced: now exists


async def _bucket(js: JetStreamContext, bucket: str, replicas: int) -> None:
    try:
        await js.key_value(bucket)
    except (NotFoundError, BucketNotFoundError):
        try:
            await js.create_key_value(KeyValueConfig(bucket=bucket, history=1,
                                                     replicas=replicas))
        except Exception:
            await js.key_value(bucket)


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_none=True).encode()


def decode_log(data: bytes) -> Any:
    """Bytes from the EVENTS stream -> a typed command or event."""
    return EVENT_LOG.validate_json(data)


async def publish(js: JetStreamContext, subject: str, model: BaseModel,
                  msg_id: str | None = None, attempts: int = 20) -> int:
    """Publish to a stream and wait for its ack, retrying while NATS is away (a cluster
    node restarting, a leader election). Returns the stream sequence; raises BusError
    after the last attempt."""
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    payload = encode(model)
    delay = 0.05
    for i in range(attempts):
        try:
            ack = await js.publish(subject, payload, headers=headers, timeout=5)
            return int(ack.seq)
        except Exception as exc:  # timeouts, no responders while a leader is elected
            if i == attempts - 1:
                raise BusError(f"publish to {subject} failed: {exc!r}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise BusError(f"publish to {subject} failed")


class LogFollower:
    """Replays the EVENTS log from the start, then follows it live, in order.

    ``get`` returns the next batch of (sequence, message) pairs. ``caught_up`` turns true
    once the replay has reached the end of the log as it was when following began.
    Undecodable messages are skipped (and counted) rather than stopping the service.
    """

    def __init__(self, js: JetStreamContext):
        self.js = js
        self.queue: asyncio.Queue[tuple[int, Any, int]] = asyncio.Queue()
        self.caught_up = False
        self.bad = 0
        self.sub: Any = None

    async def start(self) -> None:
        from nats.js.api import DeliverPolicy

        info = await self.js.stream_info(subjects.STREAM_EVENTS)
        if info.state.messages == 0:
            self.caught_up = True

        async def on_msg(msg: Any) -> None:
            meta = msg.metadata
            try:
                item = decode_log(msg.data)
            except Exception:
                self.bad += 1
                item = None
            self.queue.put_nowait((meta.sequence.stream, item, meta.num_pending))

        self.sub = await self.js.subscribe(
            f"{subjects.PREFIX}.>", stream=subjects.STREAM_EVENTS, ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL, cb=on_msg, pending_msgs_limit=-1,
            pending_bytes_limit=-1, inactive_threshold=EPHEMERAL_INACTIVE)

    async def get(self, timeout: float | None) -> list[tuple[int, Any]]:
        """Wait up to ``timeout`` for messages; return all that are queued (maybe none)."""
        out: list[tuple[int, Any]] = []
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return out
        batch = [first]
        while not self.queue.empty() and len(batch) < 5000:
            batch.append(self.queue.get_nowait())
        for seq, item, pending in batch:
            if pending == 0:
                self.caught_up = True
            if item is not None:
                out.append((seq, item))
        return out

    async def stop(self) -> None:
        if self.sub is not None:
            await drop(self.js, self.sub)


async def close(nc: NATS) -> None:
    """Flush what was written and close. (``drain`` can wait out its whole timeout on the
    ordered consumers' flow control; every publish here was acked already.)"""
    try:
        await nc.flush(timeout=2)
    except Exception:
        pass
    try:
        await nc.close()
    except Exception:
        pass


# Ephemeral consumers outlive unsubscribe until their inactivity threshold; a busy API
# would pile them up. Watchers use a short threshold and are deleted when done.
EPHEMERAL_INACTIVE = 30.0


async def drop(js: JetStreamContext, sub: Any) -> None:
    """Unsubscribe and delete the subscription's ephemeral consumer."""
    try:
        info = await sub.consumer_info()
        await js.delete_consumer(info.stream_name, info.name)
    except Exception:
        pass
    try:
        await sub.unsubscribe()
    except Exception:
        pass


async def stop_watch(js: JetStreamContext, watcher: Any) -> None:
    """Stop a KV watcher and delete its consumer."""
    sub = getattr(watcher, "_sub", None)
    if sub is not None:
        await drop(js, sub)
    try:
        await watcher.stop()
    except Exception:
        pass


async def kv_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """The keys of a bucket that hold a value, without creating a consumer."""
    stream = f"KV_{bucket}"
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(stream, subjects_filter=f"{prefix}>")
    subjects_seen = info.state.subjects or {}
    return sorted(s[len(prefix):] for s in subjects_seen)
