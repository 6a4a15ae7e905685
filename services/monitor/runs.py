"""The monitor's run history store (KV bucket ``runs``, see ``history.py``).

Runs are noted as the log is folded; nothing is written until the monitor's replay has
caught up (``flush``), and a record already stored with the same summary is not written
again, so a restarted monitor rewrites only what changed while it was away.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from nats.js.api import KeyValueConfig
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
)

from jobmesh.common import bus
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.names import InvalidName

from . import history, limits

log = logging.getLogger("jobmesh.monitor")
SAME = ("state", "ended", "counts", "jobs")  # a record with the same summary is the same


def keep_from_env() -> int:
    try:
        return max(1, int(os.environ.get("JOBMESH_KEEP_RUNS", history.KEEP)))
    except ValueError:
        log.warning("JOBMESH_KEEP_RUNS is not a number; keeping %d runs", history.KEEP)
        return history.KEEP


class RunStore:
    def __init__(self, keep: int | None = None):
        self.keep = keep or keep_from_env()
        self.index: dict[str, list[dict[str, Any]]] = {}   # as folded so far
        self.stored: dict[str, dict[str, dict[str, Any]]] = {}  # wf -> run -> stored summary
        self.pending: dict[tuple[str, str], bytes] = {}    # records to write
        self.drop: set[tuple[str, str]] = set()            # records to delete
        self.changed: set[str] = set()                     # indexes to write
        self.purge: set[str] = set()                       # deleted workflows
        self.kv: Any = None
        self.obj: Any = None  # the graph store: a run's final graph goes with its record
        self.nc: Any = None   # its max_payload: a record over it is kept trimmed
        self.refusals = limits.Refusals()

    async def open(self, js: Any, replicas: int, obj: Any = None) -> None:
        self.obj = obj
        try:
            self.kv = await js.key_value(history.BUCKET)
        except (NotFoundError, BucketNotFoundError):
            try:
                self.kv = await js.create_key_value(KeyValueConfig(
                    bucket=history.BUCKET, history=1, replicas=replicas))
            except Exception:  # raced with another monitor
                self.kv = await js.key_value(history.BUCKET)
        for key in await bus.kv_keys(js, history.BUCKET):
            if "." in key or key.startswith("="):  # a run's record; the checkpoint
                continue
            try:
                entry = await self.kv.get(key)
                runs = json.loads(entry.value or b"{}").get("runs", [])
            except (KeyNotFoundError, NotFoundError, ValueError):
                continue
            lines = [r for r in runs if isinstance(r, dict) and "run" in r]
            self.stored[key] = {r["run"]: r for r in lines}
            # runs the log may no longer hold (a stream with a size or age limit) stay
            self.index.setdefault(key, lines)

    def note(self, snap: WorkflowSnapshot, queued: dict[str, float],
             replaced_by: str | None = None, now: float | None = None) -> None:
        """Keep one run (ended, or replaced by ``replaced_by``)."""
        wf = snap.name
        try:
            history.record_key(wf, snap.run)  # a run id fit for a key, or nothing kept
        except InvalidName as exc:
            log.warning("run history: %s; not kept", exc)
            return
        line = history.summary(snap, replaced_by, now)
        runs, dropped = history.merge(self.index.get(wf, []), line, self.keep)
        self.index[wf] = runs
        old = self.stored.get(wf, {}).get(snap.run)
        if old is None or any(old.get(k) != line.get(k) for k in SAME):
            data = history.record(snap, queued)
            limit = limits.max_payload(self.nc)
            if limit and len(data) > limit:  # as the snapshot: without outputs and history
                data = history.record(limits.trimmed(snap), queued)
            self.pending[(wf, snap.run)] = data
            self.changed.add(wf)
        elif old.get("replaced_by") != replaced_by:
            self.changed.add(wf)
        for run in dropped:
            self.pending.pop((wf, run), None)
            if run in self.stored.get(wf, {}):
                self.drop.add((wf, run))
                self.changed.add(wf)

    def forget(self, wf: str) -> None:
        """The workflow was deleted: its history goes with it."""
        self.index.pop(wf, None)
        self.pending = {k: v for k, v in self.pending.items() if k[0] != wf}
        self.drop = {k for k in self.drop if k[0] != wf}
        self.changed.discard(wf)
        self.stored.pop(wf, None)
        self.purge.add(wf)

    async def flush(self, js: Any) -> None:
        if self.kv is None:
            return
        if self.purge:
            keys = await bus.kv_keys(js, history.BUCKET)
            graphs = await self._graphs()
            for wf in sorted(self.purge):
                for key in keys:
                    if key == wf or key.startswith(f"{wf}."):
                        await self.kv.purge(key)
                for name in graphs:
                    if name.startswith(f"{wf}."):
                        await self._drop_graph(name)
        self.purge.clear()
        pending, self.pending = self.pending, {}
        items = list(pending.items())
        for i, ((wf, run), data) in enumerate(items):
            try:
                await self.kv.put(history.record_key(wf, run), data)
            except Exception as exc:
                if limits.too_large(exc):  # never retried; the run list still shows it
                    self.refusals.note("run record", wf, run, len(data),
                                       limits.limit_of(exc, self.nc), "not kept")
                    continue
                log.warning("run history: writing run %s of %s failed: %s", run, wf, exc)
                for later, value in items[i:]:  # this and the rest: with the next flush
                    self.pending.setdefault(later, value)
                return
        drop, self.drop = self.drop, set()
        for wf, run in drop:
            try:
                await self.kv.purge(history.record_key(wf, run))
                await self._drop_graph(history.graph_key(wf, run))
            except Exception as exc:
                log.warning("run history: dropping run %s of %s failed: %s", run, wf, exc)
        changed, self.changed = self.changed, set()
        for wf in sorted(changed):
            runs = self.index.get(wf, [])
            data = json.dumps({"runs": runs}).encode()
            try:
                await self.kv.put(history.index_key(wf), data)
            except Exception as exc:
                if limits.too_large(exc):
                    self.refusals.note("run list", wf, "-", len(data),
                                       limits.limit_of(exc, self.nc), "not kept")
                    continue
                self.changed |= {w for w in changed if w >= wf}  # with the next flush
                raise
            self.stored[wf] = {r["run"]: r for r in runs}

    async def keep_graph(self, wf: str, run: str, svg: bytes) -> None:
        """Store the graph of a run that ended (the graph store keeps ``<wf>`` current)."""
        if self.obj is None:
            return
        try:
            key = history.graph_key(wf, run)
            await self.obj.put(key, svg, limits.chunked(key, self.nc))
        except InvalidName:
            pass

    async def _graphs(self) -> list[str]:
        if self.obj is None:
            return []
        try:
            return [i.name for i in await self.obj.list() if i.name and "." in i.name]
        except (NotFoundError, ObjectNotFoundError):  # an empty store
            return []

    async def _drop_graph(self, name: str) -> None:
        if self.obj is None:
            return
        try:
            await self.obj.delete(name)
        except (NotFoundError, ObjectNotFoundError):
            pass
