"""Declaring jobmesh's streams, KV buckets and object store (idempotent, race-safe)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from . import subjects
from .natsconn import BusError, retrying, transient

if TYPE_CHECKING:
    from nats.js import JetStreamContext

log = logging.getLogger("jobmesh.streams")

# JetStream drops a repeated Nats-Msg-Id within this window (seconds). It must outlast a
# publish's retries (bus.PUBLISH_DEADLINE, 90 s), and no more: at every start nats-server
# rebuilds its dedupe table from every message inside the window, so a 600 s window made
# the first command after a 100,000-job sweep read the sweep's 300,000 events again
# (575 ms). Later repeats (a re-attach reporting a job's end again) are stored and the
# folds drop them: a state never moves back (states.should_apply), and nothing runs
# twice because the run directory is the claim (executor/launch.py).
DUPLICATE_WINDOW = 120.0


async def ensure(js: JetStreamContext, replicas: int = 1) -> None:
    """Declare the streams and buckets jobmesh uses; safe to call from every service.
    Retries while the JetStream cluster is electing a leader (e.g. just after start).
    Services sharing one connection (the embedded stack) declare them once."""
    nc = getattr(js, "_nc", None)
    done = getattr(nc, "_jobmesh_ensured", None)
    if done is not None and done[0] == replicas:
        await asyncio.shield(done[1])
        return
    task = asyncio.ensure_future(_ensure_checked(js, replicas))
    if nc is not None:
        nc._jobmesh_ensured = (replicas, task)
    try:
        await asyncio.shield(task)
    except BaseException:
        if nc is not None and getattr(nc, "_jobmesh_ensured", None) == (replicas, task):
            del nc._jobmesh_ensured  # failed: the next caller tries again
        raise


async def _ensure_checked(js: JetStreamContext, replicas: int) -> None:
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
    """The two streams, three buckets and the object store, declared concurrently (each
    is one or two round trips; one after another they were 13-30 ms of a fresh home's
    start). The first failure cancels the others and is raised as before."""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    await _all([
        _stream(js, StreamConfig(
            name=subjects.STREAM_EVENTS, subjects=subjects.EVENTS_SUBJECTS,
            storage=StorageType.FILE, num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW, max_msg_size=32 * 1024 * 1024)),
        _stream(js, StreamConfig(
            name=subjects.STREAM_JOBS, subjects=subjects.JOBS_SUBJECTS,
            retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
            num_replicas=replicas, duplicate_window=DUPLICATE_WINDOW)),
        *(_bucket(js, bucket, replicas)
          for bucket in (subjects.KV_WORKFLOWS, subjects.KV_SPECS, subjects.KV_EXECUTIONS)),
        _object_store(js, subjects.OBJ_GRAPHS, replicas)])


async def _all(steps: list[Any]) -> None:
    """Run the steps at once; on the first error cancel the rest (so a retry does not
    race its own leftovers) and raise it."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _object_store(js: JetStreamContext, name: str, replicas: int) -> None:
    from nats.js.errors import BucketNotFoundError, NotFoundError

    try:
        await js.object_store(name)
    except (NotFoundError, BucketNotFoundError):
        from nats.js.api import ObjectStoreConfig

        try:
            await js.create_object_store(name, config=ObjectStoreConfig(replicas=replicas))
        except Exception as exc:  # another service created it first?
            if transient(exc):
                raise
            try:
                await js.object_store(name)
            except (NotFoundError, BucketNotFoundError):
                raise exc from None


async def _stream(js: JetStreamContext, config: Any) -> None:
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
        except Exception as exc:
            if transient(exc):
                raise
            try:  # raced with another service: it exists now
                await js.stream_info(config.name)
            except NotFoundError:
                raise exc from None
        return
    await _adopt_window(js, info.config, config.duplicate_window)


async def _adopt_window(js: JetStreamContext, have: Any, want: float | None) -> None:
    """A stream made by an older jobmesh keeps every other setting (replicas an operator
    raised, say) and takes this version's duplicate window."""
    if want is None or have.duplicate_window is None \
            or abs(have.duplicate_window - want) < 0.5:
        return
    from dataclasses import replace

    try:
        await js.update_stream(replace(have, duplicate_window=want))
    except Exception as exc:  # noqa: BLE001 - the old window only costs start-up time
        if transient(exc):
            raise
        log.warning("could not set stream %s's duplicate window to %.0f s: %r",
                    have.name, want, exc)


async def _bucket(js: JetStreamContext, bucket: str, replicas: int) -> None:
    from nats.js.api import KeyValueConfig
    from nats.js.errors import BucketNotFoundError, NotFoundError

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

