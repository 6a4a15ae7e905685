"""Adoption: a surviving executor replica takes over the jobs of a dead peer of its pool.

Every entry of the executions registry (bucket ``executions``, key
``<pool>.<wf>.<job>.<attempt>``) names the executor instance that watches the job
(``owner``, with its ``host`` and ``pid``). Each executor of a pool listens to its peers'
heartbeats (``jobmesh.heartbeat.<pool>.*``, one every HEARTBEAT = 5 s) and watches the
pool's registry entries.

Rule: a peer is dead once it has been silent for ADOPT_BEATS = 4 heartbeats (20 s; the
executor's ``--adopt-after SECONDS``, at least two heartbeats), counted from its last
heartbeat or, for an owner never heard, from when the listener started. Every HEARTBEAT,
each survivor tries to claim each entry of a dead peer with a compare-and-set: a KV
update conditioned on the entry's revision that writes the survivor's name as owner.
Exactly one survivor wins; only the winner attaches to the job, as a restarted executor
does (a local job's pid is watched while it is still the job's wrapper, otherwise the
exit file decides, and without one the job is reported killed). The losers see the new
owner in the registry and do nothing.

At start an executor attaches at once to the entries it owns (a restart with the same
``--instance``), claims (by the same compare-and-set) entries without an owner (written
before owners were recorded) and entries whose owner ran on this host under a pid that is
gone (a restarted executor with a new default instance name); the others wait for the
rule above. A peer that comes back (paused, cut off from NATS) and sees an entry it
watches owned by another instance stops watching that job and leaves it to the owner;
having noticed its own stall (its timer late by over half the timeout), it gives every
peer a fresh window before adopting anything itself.

Timing only decides when a survivor tries; the compare-and-set decides who adopts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from jobmesh.common import bus, subjects
from jobmesh.common.messages import ExecutorHeartbeat, JobReady, Wire
from jobmesh.common.names import check_pool

log = logging.getLogger("jobmesh.executor.adopt")
ADOPT_BEATS = 4  # heartbeats a peer may miss before its jobs are adopted


class Registered(Wire):
    """What the executions bucket holds for one launched attempt. ``owner`` (the instance
    watching it), ``host`` and ``pid`` are empty in entries written before adoption."""
    job: JobReady
    native_id: str = ""
    owner: str = ""
    host: str = ""
    pid: int = 0


def peers_subject(pool: str) -> str:
    """Every instance's heartbeats of one pool. (A wildcard form of
    ``subjects.heartbeat``; the lead may move it to libs/common/subjects.py.)"""
    return f"{subjects.PREFIX}.heartbeat.{check_pool(pool)}.*"


def pid_gone(pid: int) -> bool:
    """Is no process with this pid running here? (A reused pid counts as running: the
    caller then waits for the heartbeat rule.)"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def claimable_at_start(reg: Registered, me: str, host: str) -> bool:
    """May a starting executor claim this entry at once (see the module docstring)?"""
    if reg.owner == me:
        return False  # its own already: attach without a claim
    return not reg.owner or (reg.host == host and pid_gone(reg.pid))


MARKERS_PURGE_AT = 1000  # delete markers in the registry before a starting executor purges
MARKER_AGE = 300.0  # seconds: markers older than this are purged at start (peers saw them)
PURGE_CHUNK = 256  # per-key purges in flight at once


async def purge_markers(js: Any, kv: Any, markers: int, pool: str | None = None,
                        min_age: float | None = None) -> int:
    """Drop the registry's delete markers (one per job that ever ran here) older than
    ``min_age`` seconds (default MARKER_AGE), which every start and every peer's watch
    would read again; keep every entry of a job still running. Run in the background by
    an executor that counted ``markers`` of them at start, and at a clean stop with no
    live peer (``min_age`` 0). Returns how many markers were purged; failures are only
    logged: the markers are harmless, only slow.

    The bulk goes in one request: JetStream purges a subject filter below a sequence, and
    with one message per key (history 1) every message below the lowest sequence of a
    live entry or a young marker is an old marker. Old markers above it (interleaved
    with running jobs) are purged one key at a time."""
    if markers < MARKERS_PURGE_AT:
        return 0
    age = MARKER_AGE if min_age is None else min_age
    stream = f"KV_{subjects.KV_EXECUTIONS}"
    prefix = f"$KV.{subjects.KV_EXECUTIONS}."
    keys = f"{check_pool(pool)}.>" if pool else ">"
    try:
        # Every message up to this sequence is seen by the watch below; later ones (a
        # peer's new entries) are above any bound computed from it, so never purged.
        last = int((await js.stream_info(stream)).state.last_seq)
        watcher = await bus.kv_watch(kv, keys, headers_only=True,
                                     inactive_threshold=bus.EPHEMERAL_INACTIVE)
        now, bound, old = time.time(), last + 1, []
        async for e in watcher:
            if e is None:
                break
            if e.revision > last:
                continue
            if e.operation in ("DEL", "PURGE") and (e.created is None or
                                                    now - e.created.timestamp() >= age):
                old.append((e.revision, e.key))
            else:
                bound = min(bound, e.revision)  # a live entry or a young marker
        await bus.stop_watch(js, watcher)
        below = sum(1 for seq, _ in old if seq < bound)
        if below:
            await js.purge_stream(stream, seq=bound, subject=prefix + keys)
        rest = [key for seq, key in old if seq > bound]
        for i in range(0, len(rest), PURGE_CHUNK):
            await asyncio.gather(*(js.purge_stream(stream, subject=prefix + key)
                                   for key in rest[i:i + PURGE_CHUNK]))
        log.info("purged %d delete markers from the executions registry", below + len(rest))
        return below + len(rest)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("could not purge the executions registry's delete markers: %r", exc)
        return 0


def dead(owner: str, seen: dict[str, float], since: float, now: float, after: float) -> bool:
    """Has ``owner`` been silent for ``after`` seconds (never heard: since ``since``)?"""
    return now - max(seen.get(owner, since), since) >= after


class Adoption:
    """Watches one pool's peers and registry and adopts a dead peer's jobs.

    ``attach(job, native_id)`` starts watching an adopted job; ``release(job)`` stops
    watching a job another instance owns now; ``watching(job)`` says whether we watch it.
    """

    def __init__(self, nc: Any, js: Any, kv: Any, pool: str, instance: str, heartbeat: float,
                 attach: Callable[[JobReady, str], Awaitable[None]],
                 release: Callable[[JobReady], None], watching: Callable[[JobReady], bool],
                 after: float | None = None):
        self.nc, self.js, self.kv, self.pool, self.me = nc, js, kv, pool, instance
        self.every = heartbeat
        self.after = after if after is not None else ADOPT_BEATS * heartbeat
        self.attach, self.release, self.watching = attach, release, watching
        self.host = socket.gethostname()
        self.seen: dict[str, float] = {}  # instance -> monotonic time of its last heartbeat
        self.entries: dict[str, tuple[int, Registered]] = {}  # key -> (revision, entry)
        self.since = time.monotonic()
        self.loaded = asyncio.Event()  # the registry's current entries were read

    async def _on_beat(self, msg: Any) -> None:
        try:
            beat = ExecutorHeartbeat.model_validate_json(msg.data)
        except Exception:
            return
        self.seen[beat.instance] = time.monotonic()

    def peers_alive(self) -> bool:
        """Has another instance of the pool been heard within the adoption window?"""
        now = time.monotonic()
        return any(name != self.me and now - t < self.after for name, t in self.seen.items())

    async def run(self, stop: asyncio.Event) -> None:
        """Listen and adopt until ``stop``; a failure is logged and retried."""
        while not stop.is_set():
            try:
                await self._run(stop)
            except Exception as exc:
                log.error("adoption of dead peers' jobs failed (retrying): %r", exc)
                try:
                    await asyncio.wait_for(stop.wait(), self.every)
                except asyncio.TimeoutError:
                    pass

    async def _run(self, stop: asyncio.Event) -> None:
        self.entries.clear()
        self.loaded.clear()
        sub = await self.nc.subscribe(peers_subject(self.pool), cb=self._on_beat)
        watcher = await bus.retrying(lambda: bus.kv_watch(
            self.kv, f"{self.pool}.>", inactive_threshold=bus.EPHEMERAL_INACTIVE),
            "watch the executions registry")
        reader = asyncio.create_task(self._read(watcher))
        try:
            tick = time.monotonic()
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self.every)
                except asyncio.TimeoutError:
                    pass
                now = time.monotonic()
                if now - tick > self.every + self.after / 2:
                    # We were stalled ourselves (paused, swapped out): the peers' beats
                    # of meanwhile were not heard, so give every peer a fresh window.
                    log.warning("stalled for %.0f s; not adopting before peers are heard",
                                now - tick)
                    self.since = now
                tick = now
                if not stop.is_set() and self.loaded.is_set():
                    await self.sweep()
        finally:
            reader.cancel()
            try:
                await sub.unsubscribe()
            except Exception:
                pass
            await bus.stop_watch(self.js, watcher)

    async def _read(self, watcher: Any) -> None:
        async for e in watcher:
            if e is None:
                self.loaded.set()
                continue
            if e.operation in ("DEL", "PURGE") or not e.value:
                self.entries.pop(e.key, None)
                continue
            try:
                reg = Registered.model_validate_json(e.value)
            except Exception:
                continue
            self.entries[e.key] = (e.revision, reg)
            if reg.owner and reg.owner != self.me and self.watching(reg.job):
                log.warning("%s/%s attempt %s is watched by %s now; leaving it",
                            reg.job.workflow, reg.job.job, reg.job.attempt, reg.owner)
                self.release(reg.job)

    async def sweep(self) -> None:
        """Claim and attach every entry whose owner is dead."""
        now = time.monotonic()
        for key, (revision, reg) in list(self.entries.items()):
            if reg.owner == self.me or not dead(reg.owner, self.seen, self.since, now,
                                                self.after):
                continue
            if await self.claim(key, revision, reg):
                log.warning("adopted %s/%s attempt %s from %s (silent for %.0f s or more)",
                            reg.job.workflow, reg.job.job, reg.job.attempt,
                            reg.owner or "an executor without a name", self.after)
                await self.attach(reg.job, reg.native_id)

    async def claim(self, key: str, revision: int, reg: Registered) -> bool:
        """Make this instance the entry's owner if nobody changed it since ``revision``."""
        mine = reg.model_copy(update={"owner": self.me, "host": self.host,
                                      "pid": os.getpid()})
        try:
            new = await self.kv.update(key, bus.encode(mine), last=revision)
        except Exception as exc:  # another survivor was first, or the job ended
            log.debug("claim of %s lost: %r", key, exc)
            return False
        self.entries[key] = (int(new), mine)
        return True
