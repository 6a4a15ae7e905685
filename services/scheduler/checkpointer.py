"""The scheduler shell's side of the checkpoint (``checkpoint.py`` has the format): when
to take one, what a restart skips, rebuilding a compacted run for a retry, and purging
the events of deleted workflows and of runs past the retention."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from jobmesh.common import subjects
from jobmesh.common.messages import WorkflowDeleted, WorkflowSubmitted

from . import checkpoint
from .core import SchedulerCore

log = logging.getLogger("jobmesh.scheduler.checkpoint")


class Checkpointer:
    def __init__(self, js: Any, core: SchedulerCore, replicas: int):
        self.js, self.core, self.replicas = js, core, replicas
        self.store: Any = None
        self.seq = 0          # the last log sequence applied
        self.saved_seq = 0    # ... in the stored checkpoint
        self.skip: set[str] = set()  # workflows compacted in the loaded checkpoint
        self.skip_upto = 0           # ... whose messages up to here it holds
        self.last_of: dict[str, int] = {}  # workflow -> the last sequence about it
        self.purge: dict[str, list[Any]] = {}  # workflow -> [run, last seq, compacted at]
        self.deleted: list[tuple[str, int]] = []  # deletions whose events are to go
        self.pending = False  # compacted or purged since the last save
        self.stored = checkpoint.Stored()  # big workflow caches, objects of their own
        self.last_save = 0.0
        self.last_expire = 0.0
        try:
            self.retention = checkpoint.retention()
        except ValueError as exc:
            log.error("%s; keeping every event", exc)
            self.retention = None

    async def restore(self) -> int:
        """Load the stored checkpoint; the sequence to follow the log from."""
        try:
            self.store = await checkpoint.open_store(self.js, self.replicas, create=False)
            if self.store is None:  # a new home: the first save creates the store
                return 1
            data = await checkpoint.read(self.js)
            info = await self.js.stream_info(subjects.STREAM_EVENTS)
        except Exception as exc:  # noqa: BLE001 - no checkpoint: replay the whole log
            log.warning("cannot read the checkpoint (%r); replaying the whole log", exc)
            return 1
        if not data:
            return 1
        try:
            seq, start, purge = checkpoint.restore(self.core, data, self.stored)
            if seq > info.state.last_seq:
                raise ValueError(f"it is at sequence {seq}, the log ends at "
                                 f"{info.state.last_seq} (a new log)")
        except ValueError as exc:
            log.warning("ignoring the checkpoint: %s; replaying the whole log", exc)
            self.core.finished, self.core.cache.done = {}, {}
            self.core.cache.encoded, self.core.cache.unread = {}, {}
            self.stored = checkpoint.Stored()
            return 1
        self.seq = self.saved_seq = self.skip_upto = seq
        self.skip, self.purge = set(self.core.finished), purge
        log.info("checkpoint at %d: %d finished runs; following the log from %d", seq,
                 len(self.skip), start)
        return start

    async def fetch(self, msg: Any) -> None:
        """Before a message of a workflow is applied: read that workflow's cache if the
        checkpoint keeps it apart and it was not read yet (``checkpoint.fetch``)."""
        wf = getattr(msg, "workflow", None)
        if isinstance(wf, str) and wf in self.stored.unfetched:
            await checkpoint.fetch(self.js, self.core, self.stored, wf)

    def covers(self, seq: int, msg: Any) -> bool:
        """Is this message in the loaded checkpoint already?"""
        return seq <= self.skip_upto and getattr(msg, "workflow", None) in self.skip

    def seen(self, seq: int, msg: Any) -> None:
        self.seq = seq
        wf = getattr(msg, "workflow", None)
        if not isinstance(wf, str):
            return
        self.last_of[wf] = seq
        if isinstance(msg, WorkflowDeleted):
            self.deleted.append((wf, seq))
            self.purge.pop(wf, None)

    async def rebuild(self, wf: str, stub: tuple[str, int], upto: int) -> None:
        """Bring a compacted run back (for a retry) from its messages in the log."""
        msgs = await checkpoint.replay_run(self.js, wf, stub[1], upto)
        if not any(isinstance(m, WorkflowSubmitted) and m.run == stub[0] for _, m in msgs):
            log.warning("workflow %s: run %s finished and its events left the log "
                        "(retention); it cannot be retried, run the workflow again",
                        wf, stub[0])
            return
        del self.core.finished[wf]
        self.purge.pop(wf, None)
        for seq, msg in msgs:
            try:
                self.core.apply(msg, seq)
            except Exception:  # noqa: BLE001 - as in a replay: skip what cannot apply
                log.exception("workflow %s: skipping event %d while rebuilding", wf, seq)

    def due_in(self, now: float) -> float:
        """Seconds until a pending checkpoint is due (for the loop's wait)."""
        if not (self.pending or self.deleted):
            return 1.0
        return max(0.0, self.last_save + checkpoint.EVERY - now)

    async def after_decide(self, now: float, quiet: bool) -> None:
        """Called when every decision so far is on the log."""
        if self.deleted:
            await self._purge_deleted()
        if quiet and not self.core.stale:
            for wf in checkpoint.compact(self.core):
                run = self.core.finished[wf][0]
                self.purge[wf] = [run, self.last_of.get(wf, self.seq), time.time()]
                self.pending = True
        if self.pending and now - self.last_save >= checkpoint.EVERY:
            await self._save(now)
        if self.retention is not None and self.purge and \
                now - self.last_expire >= checkpoint.EVERY:
            self.last_expire = now
            await self._expire()

    async def final(self) -> None:
        """At stop: compact what finished and save, if anything changed."""
        try:
            await asyncio.wait_for(self._final(), 5)
        except Exception as exc:  # noqa: BLE001 - the next start replays a little more
            log.warning("final checkpoint not written: %r", exc)

    async def _final(self) -> None:
        if not self.core.stale:
            if checkpoint.compact(self.core):
                self.pending = True
        if self.pending or (self.seq > self.saved_seq and self.core.finished):
            await self._save(time.monotonic())

    async def _save(self, now: float) -> None:
        if self.core.stale:
            return
        data = checkpoint.dump(self.core, self.seq, self.purge, self.stored)
        self.last_save = now
        try:
            if self.store is None:
                self.store = await checkpoint.open_store(self.js, self.replicas)
            await checkpoint.write_caches(self.store, self.stored)  # before the document
            await checkpoint.write(self.store, data)
        except Exception as exc:  # noqa: BLE001 - NATS away: the next one
            log.warning("checkpoint not written: %r", exc)
            return
        self.saved_seq, self.pending = self.seq, False
        if self.stored.dropped:
            await checkpoint.drop_caches(self.store, self.stored)

    async def _purge_deleted(self) -> None:
        """A deleted workflow's events go; its ``deleted`` command stays, so followers
        that are behind still see it."""
        todo, self.deleted = self.deleted, []
        for wf, seq in todo:
            try:
                await checkpoint.purge(self.js, wf, seq)
            except Exception as exc:  # noqa: BLE001 - harmless leftovers
                log.warning("workflow %s: events not purged: %r", wf, exc)
        self.pending = True

    async def _expire(self) -> None:
        """Purge the events of runs compacted longer ago than the retention, once the
        monitor's snapshot has folded all of them."""
        from jobmesh.common.ops import peek

        limit = time.time() - (self.retention or 0.0)
        try:
            kv = await self.js.key_value(subjects.KV_WORKFLOWS)
        except Exception:  # noqa: BLE001 - next time
            return
        for wf, (run, last, at) in list(self.purge.items()):
            if at > limit:
                continue
            try:
                entry = await kv.get(wf)
                head = peek(bytes(entry.value or b""))
            except Exception:  # noqa: BLE001 - no snapshot (yet): keep the events
                continue
            if head is None or head[2] < last:
                continue  # the monitor has not folded them all
            try:
                await checkpoint.purge(self.js, wf, last + 1)
            except Exception as exc:  # noqa: BLE001 - next time
                log.warning("workflow %s: events not purged: %r", wf, exc)
                continue
            log.info("workflow %s: events of run %s purged (retention)", wf, run)
            del self.purge[wf]
            self.pending = True
