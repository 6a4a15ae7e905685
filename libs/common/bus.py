"""Bus helpers: connect, declare streams and buckets, publish and decode typed models."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from typing import Any
from urllib.parse import urlparse

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

log = logging.getLogger("jobmesh.bus")

# How long a publish keeps retrying while NATS is away before it gives up (seconds).
PUBLISH_DEADLINE = 90.0

# JetStream drops a repeated Nats-Msg-Id within this window (seconds).
DUPLICATE_WINDOW = 600.0


class BusError(RuntimeError):
    """The bus cannot be reached or refused us; the message says what to check."""


class CredentialsRefused(BusError):
    """NATS refused the credentials: retrying cannot help."""


# A failed first connection is retried this often per server before connect gives up
# (a refused TCP connection costs ~0.5 s, a silent host the 3 s connect timeout);
# once connected, the client reconnects forever (to any server of the cluster).
CONNECT_TRIES = 1


def _tls_context(settings: Settings) -> Any:
    import ssl

    ctx = ssl.create_default_context(cafile=settings.nats_tls_ca)
    if settings.nats_tls_cert:
        ctx.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
    return ctx


def _auth_options(settings: Settings) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if settings.nats_token:
        opts["token"] = settings.nats_token
    if settings.nats_user:
        opts["user"], opts["password"] = settings.nats_user, settings.nats_password or ""
    for key, path, what in (("user_credentials", settings.nats_creds, "credentials file"),
                            ("nkeys_seed", settings.nats_nkey, "nkey seed file")):
        if not path:
            continue
        if not os.path.isfile(path):
            raise BusError(f"the NATS {what} {path} does not exist")
        try:
            import nkeys  # noqa: F401  (nats-py signs the server's nonce with it)
        except ImportError:
            raise BusError(f"a NATS {what} needs the 'nkeys' package: pip install nkeys"
                           ) from None
        opts[key] = path
    if settings.tls:
        for path in (settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key):
            if path and not os.path.isfile(path):
                raise BusError(f"the TLS file {path} does not exist")
        try:
            opts["tls"] = _tls_context(settings)
        except Exception as exc:  # ssl.SSLError, OSError: a bad certificate or key
            raise BusError(f"cannot load the TLS files: {exc}") from None
    return opts


def _describe(exc: BaseException | None, errors: list[str]) -> str:
    detail = "; ".join(dict.fromkeys(errors[-3:])) or (str(exc) if exc else "") or (
        type(exc).__name__ if exc else "unknown error")
    return detail


async def connect(settings: Settings, name: str, retry: bool | float = False) -> NATS:
    """Connect to NATS (any server of ``settings.servers``).

    The first connection fails fast with a BusError a person can read: bad credentials at
    once, unreachable servers after ``CONNECT_TRIES`` tries each. With ``retry`` (True, or
    a number of seconds) unreachable servers are waited for; refused credentials never
    are. Once connected, the client reconnects forever, to whichever server is up.
    """
    servers = settings.servers
    where = ", ".join(servers)
    deadline = None if retry is True else time.monotonic() + float(retry or 0)
    while True:
        try:
            return await _connect_once(settings, name, servers)
        except _Unreachable as exc:
            if retry is False or (deadline is not None and time.monotonic() > deadline):
                raise BusError(f"cannot connect to NATS at {where}: {exc}") from None
            log.warning("NATS at %s is not reachable yet (%s); retrying", where, exc)
            await asyncio.sleep(2.0)


class _Unreachable(Exception):
    pass


async def _connect_once(settings: Settings, name: str, servers: list[str]) -> NATS:
    where = ", ".join(servers)
    errors: list[str] = []
    connected = False

    async def on_error(exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        if not connected:
            errors.append(text)
        else:
            log.warning("%s: NATS: %s", name, text)

    async def on_disconnect() -> None:
        if connected and not nc.is_closed:
            log.warning("%s: disconnected from NATS; reconnecting", name)

    async def on_reconnect() -> None:
        url = nc.connected_url
        log.warning("%s: reconnected to NATS at %s", name,
                    url.netloc if url is not None else "?")

    opts: dict[str, Any] = dict(
        name=name,
        connect_timeout=3,
        # The first connection does not retry for ever (so a wrong token or URL is an
        # error at once); allow_reconnect and max_reconnect_attempts are opened up below.
        allow_reconnect=False,
        max_reconnect_attempts=CONNECT_TRIES,
        reconnect_time_wait=0.5,
        # A node that vanishes without closing its sockets is noticed within ~30 s.
        ping_interval=10,
        max_outstanding_pings=3,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    opts.update(_auth_options(settings))
    nc = NATS()
    try:
        await nc.connect(servers, **opts)
    except Exception as exc:  # nats raises several unrelated classes here
        if not nc.is_closed:  # (closing after a failed TLS handshake can hang for ever)
            try:
                await asyncio.wait_for(nc.close(), 2)
            except Exception:
                pass
        detail = _describe(exc, errors)
        low = detail.lower()
        if "authorization" in low or "authentication" in low:
            detail = next((e for e in reversed(errors) if "auth" in e.lower()), detail)
            raise CredentialsRefused(f"NATS at {where} refused the credentials ({detail}); "
                                     "check the token, user and password, nkey or creds "
                                     "file") from None
        if "ssl" in low or "certificate" in low or "tls" in low:
            raise BusError(f"TLS to NATS at {where} failed ({detail}); check the CA, "
                           "certificate and key, and the URL's scheme") from None
        raise _Unreachable(detail) from None
    connected = True
    nc.options["allow_reconnect"] = True
    nc.options["max_reconnect_attempts"] = -1
    # Servers that were down at start were dropped from the pool: put them back.
    known = {s.uri.netloc for s in nc.server_pool}
    missing = [u for u in servers if urlparse(u if "://" in u else f"nats://{u}").netloc
               not in known]
    if missing:
        nc.set_server_pool([s.uri.geturl() for s in nc.server_pool] + missing)
    return nc


def transient(exc: BaseException) -> bool:
    """Is this error NATS being briefly away (a node restarting, a leader election, a
    reconnect) rather than a real answer?"""
    from nats import errors as nerr
    from nats.js import errors as jerr

    if isinstance(exc, jerr.APIError) and exc.err_code in (10039, 10076):
        return False  # JetStream is not enabled (for the server, for the account)
    if isinstance(exc, (asyncio.TimeoutError, nerr.TimeoutError, nerr.NoRespondersError,
                        nerr.ConnectionReconnectingError, nerr.StaleConnectionError,
                        nerr.OutboundBufferLimitError, jerr.NoStreamResponseError,
                        jerr.ServiceUnavailableError, ConnectionError)):
        return True
    if isinstance(exc, jerr.APIError) and not isinstance(exc, (jerr.NotFoundError,
                                                                jerr.BadRequestError)):
        return exc.code in (503, 504)  # (500 is an answer: e.g. R3 on a single server)
    return False


async def retrying(call: Any, what: str, deadline: float = 60.0) -> Any:
    """``await call()`` again while the error is transient (see ``transient``), for up
    to ``deadline`` seconds; other errors, and the last one, propagate."""
    end = time.monotonic() + deadline
    delay = 0.1
    while True:
        try:
            return await call()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay > end:
                raise
            log.info("%s: %r; retrying", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def kv_put(kv: Any, key: str, value: bytes, deadline: float = 60.0) -> int:
    """Put a KV value, retrying while NATS is briefly away; returns the revision."""
    return int(await retrying(lambda: kv.put(key, value), f"write {key}", deadline))


async def ensure(js: JetStreamContext, replicas: int = 1) -> None:
    """Declare the streams and buckets jobmesh uses; safe to call from every service.
    Retries while the JetStream cluster is electing a leader (e.g. just after start)."""
    from nats.js.errors import APIError

    info = getattr(getattr(js, "_nc", None), "_server_info", None) or {}
    if info and not info.get("jetstream"):
        raise BusError(f"JetStream is not enabled on the NATS server "
                       f"{info.get('server_name') or info.get('server_id', '')}; start "
                       "nats-server with -js (or a jetstream block in its config)")
    try:
        await retrying(lambda: _ensure(js, replicas), "declare the streams and buckets")
    except APIError as exc:
        raise BusError(f"NATS refused jobmesh's streams and buckets at {replicas} "
                       f"replica(s): {exc.description or exc}") from None
    except Exception as exc:
        if not transient(exc):
            raise
        raise BusError(f"JetStream did not answer while declaring jobmesh's streams and "
                       f"buckets: {exc!r}; is JetStream enabled (-js)?") from None


async def _ensure(js: JetStreamContext, replicas: int) -> None:
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
        except Exception as exc:  # another service created it first?
            if transient(exc):
                raise
            try:
                await js.object_store(subjects.OBJ_GRAPHS)
            except (NotFoundError, BucketNotFoundError):
                raise exc from None


async def _stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.stream_info(config.name)  # type: ignore[arg-type]
    except NotFoundError:
        try:
            await js.add_stream(config)
        except Exception as exc:
            if transient(exc):
                raise
            try:  # raced with another service: it exists now
                await js.stream_info(config.name)  # type: ignore[arg-type]
            except NotFoundError:
                raise exc from None


async def _bucket(js: JetStreamContext, bucket: str, replicas: int) -> None:
    try:
        await js.key_value(bucket)
    except (NotFoundError, BucketNotFoundError):
        try:
            await js.create_key_value(KeyValueConfig(bucket=bucket, history=1,
                                                     replicas=replicas))
        except Exception as exc:
            if transient(exc):
                raise
            try:  # raced with another service: it exists now
                await js.key_value(bucket)
            except (NotFoundError, BucketNotFoundError):
                raise exc from None


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_none=True).encode()


def decode_log(data: bytes) -> Any:
    """Bytes from the EVENTS stream -> a typed command or event."""
    return EVENT_LOG.validate_json(data)


async def publish(js: JetStreamContext, subject: str, model: BaseModel,
                  msg_id: str | None = None, deadline: float = PUBLISH_DEADLINE) -> int:
    """Publish to a stream and wait for its ack, retrying while NATS is away (a cluster
    node restarting, a leader election: typically 2-10 s). Returns the stream sequence;
    raises BusError once ``deadline`` seconds have passed. With a ``msg_id`` a retry of a
    publish whose ack was lost is dropped by the stream as a duplicate."""
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    payload = encode(model)
    end = time.monotonic() + deadline
    delay = 0.05
    attempt = 0
    while True:
        attempt += 1
        try:
            ack = await js.publish(subject, payload, headers=headers, timeout=5)
            return int(ack.seq)
        except Exception as exc:  # timeouts, no responders while a leader is elected
            log.info("publish to %s: attempt %d failed: %r", subject, attempt, exc)
            if time.monotonic() + delay > end:
                raise BusError(f"publish to {subject} failed after {attempt} attempts: "
                               f"{exc!r}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


# Idle heartbeat of the log followers' ordered consumers (seconds); see LogFollower.start.
FOLLOW_HEARTBEAT = 1.0


class LogFollower:
    """Replays the EVENTS log from the start, then follows it live, in order.

    ``get`` returns the next batch of (sequence, message) pairs. ``caught_up`` turns true
    once the replay has reached the end of the log as it was when following began.
    Undecodable messages are skipped (and counted) rather than stopping the service.
    """

    def __init__(self, js: JetStreamContext):
        self.js = js
        self.queue: collections.deque[tuple[int, Any, int]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None  # a get() waiting for messages
        self.caught_up = False
        self.bad = 0
        self.sub: Any = None

    async def start(self) -> None:
        from nats.js.api import DeliverPolicy

        info = await retrying(lambda: self.js.stream_info(subjects.STREAM_EVENTS),
                              "read the EVENTS stream")
        if info.state.messages == 0:
            self.caught_up = True

        async def on_msg(msg: Any) -> None:
            meta = msg.metadata
            try:
                item = decode_log(msg.data)
            except Exception:
                self.bad += 1
                item = None
            self.queue.append((meta.sequence.stream, item, meta.num_pending))
            self.wake()

        # An ordered consumer is one in-memory replica on one server. If that server goes
        # away, the client notices through missed idle heartbeats (two in a row) and
        # recreates the consumer from the next sequence: with nats-py's default of 5 s a
        # follower could stall for 10-20 s after a node loss; with 1 s it resumes in ~2 s.
        self.sub = await retrying(lambda: self.js.subscribe(
            f"{subjects.PREFIX}.>", stream=subjects.STREAM_EVENTS, ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL, cb=on_msg, pending_msgs_limit=-1,
            pending_bytes_limit=-1, inactive_threshold=EPHEMERAL_INACTIVE,
            idle_heartbeat=FOLLOW_HEARTBEAT), "follow the EVENTS stream")

    async def get(self, timeout: float | None) -> list[tuple[int, Any]]:
        """Wait up to ``timeout`` for messages; return all that are queued (maybe none)."""
        out: list[tuple[int, Any]] = []
        if not self.queue:  # wait on a bare future: no task and no queue per message
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(
                timeout, lambda: waiter.done() or waiter.set_result(None))
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        batch = [self.queue.popleft() for _ in range(min(len(self.queue), 5000))]
        for seq, item, pending in batch:
            if pending == 0:
                self.caught_up = True
            if item is not None:
                out.append((seq, item))
        return out

    def wake(self) -> None:
        """End a waiting ``get`` now (it returns what is queued, maybe nothing)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

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
