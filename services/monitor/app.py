"""The monitor's shell: follows the EVENTS log, folds it, writes snapshots to the
``workflows`` bucket (coalesced) and graphs to the ``graphs`` object store (throttled).

It writes nothing until its replay has caught up, so a restarted monitor never shows an
older state than the one it replaces; then it rewrites every snapshot it rebuilt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from jobmesh.common import bus, subjects
from jobmesh.common.settings import Settings

from .fold import Fold
from .graph import Graph, layout, layout_key

log = logging.getLogger("jobmesh.monitor")
SNAPSHOT_EVERY = 0.05   # seconds: the longest a snapshot change waits before it is written
GRAPH_EVERY = 1.0       # seconds between graph updates of one workflow while it runs


class MonitorService:
    def __init__(self, settings: Settings, nc: Any | None = None, graphs: bool = True):
        self.settings = settings
        self.fold = Fold()
        self._nc = nc
        self.graphs_enabled = graphs
        self.dirty: set[str] = set()
        self.graph_dirty: dict[str, float] = {}
        self.graphs: dict[str, tuple[tuple[str, int], Graph]] = {}
        self.events = 0
        self.seen_seq = 0   # the last log sequence folded and written

    async def run(self, stop: asyncio.Event) -> None:
        nc = self._nc or await bus.connect(self.settings, "jobmesh-monitor")
        js = nc.jetstream()
        await bus.ensure(js, self.settings.replicas)
        self.kv = await bus.retrying(lambda: js.key_value(subjects.KV_WORKFLOWS), "open KV")
        self.specs = await bus.retrying(lambda: js.key_value(subjects.KV_SPECS), "open KV")
        self.obj = await bus.retrying(lambda: js.object_store(subjects.OBJ_GRAPHS),
                                      "open the graph store")
        follower = bus.LogFollower(js)
        await follower.start()
        graph_task = asyncio.create_task(self._graph_loop(stop))
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: follower.wake())  # a stop ends a waiting get
        try:
            while not stop.is_set():
                batch = await follower.get(1.0)
                if stop.is_set():
                    break
                for seq, msg in batch:
                    self.events += 1
                    wf = self.fold.apply(seq, msg)
                    if wf is not None:
                        self.dirty.add(wf)
                        kind = getattr(msg, "type", "")
                        if kind == "workflow_submitted":
                            self.graph_dirty[wf] = 0.0
                            self.graphs.pop(wf, None)
                            await self._put_spec(wf)
                        elif kind == "jobs_expanded":  # new jobs: store the grown spec,
                            self.graph_dirty[wf] = 0.0  # lay the graph out again soon
                            await self._put_spec(wf)
                        elif wf not in self.graph_dirty:
                            self.graph_dirty[wf] = time.monotonic() + GRAPH_EVERY
                if follower.caught_up and self.dirty:
                    size = max((len(self.fold.snaps[w].jobs) for w in self.dirty
                                if w in self.fold.snaps), default=0)
                    await self._flush()
                    # Coalesce the next burst; a big snapshot (5,000 jobs: ~15 ms to
                    # encode) is written at most every 0.25 s.
                    await asyncio.sleep(max(SNAPSHOT_EVERY, size / 20000))
                if follower.caught_up and batch and not self.dirty:
                    self.seen_seq = batch[-1][0]
        finally:
            stopper.cancel()
            graph_task.cancel()
            await follower.stop()
            if self.dirty and follower.caught_up:
                await self._flush()
            if self._nc is None:
                await bus.close(nc)

    async def _put_spec(self, wf: str) -> None:
        spec = self.fold.specs.get(wf)
        if spec is not None:
            await bus.kv_put(self.specs, wf, spec.model_dump_json().encode())

    async def _flush(self) -> None:
        dirty, self.dirty = self.dirty, set()
        for wf in sorted(dirty):
            snap = self.fold.snaps.get(wf)
            try:
                if snap is None:
                    if wf in self.fold.deleted:
                        await self._delete(wf)
                    continue
                await self.kv.put(wf, bus.encode(snap))
                if snap.state.terminal:
                    self.graph_dirty[wf] = 0.0
            except Exception as exc:  # NATS away: try again with the next flush
                log.warning("snapshot write for %s failed: %s", wf, exc)
                self.dirty.add(wf)

    async def _delete(self, wf: str) -> None:
        for op in (self.kv.delete(wf), self.specs.delete(wf), self.obj.delete(wf)):
            try:
                await op
            except Exception:
                pass
        self.graphs.pop(wf, None)
        self.graph_dirty.pop(wf, None)

    async def _graph_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.1)
            if not self.graphs_enabled:
                continue
            now = time.monotonic()
            for wf, due in list(self.graph_dirty.items()):
                if due > now:
                    continue
                del self.graph_dirty[wf]
                try:
                    await self._render(wf)
                except Exception as exc:
                    log.warning("graph for %s failed: %s", wf, exc)

    async def _render(self, wf: str) -> None:
        snap, spec = self.fold.snaps.get(wf), self.fold.specs.get(wf)
        if snap is None or spec is None:
            return
        spec = spec.model_copy()  # its jobs and edges as of now (expansions replace them)
        have = self.graphs.get(wf)
        if have is None or have[0] != layout_key(snap):
            graph = await asyncio.to_thread(layout, spec, snap, time.time())
            self.graphs[wf] = (layout_key(snap), graph)
        else:
            graph = have[1]
        svg = await asyncio.to_thread(graph.patch, snap, time.time())
        await self.obj.put(wf, svg)
        if not snap.state.terminal:
            # Patching costs ~0.15 ms a node, and live viewers recolour nodes from the
            # events themselves: big graphs are refreshed here less often (1,000 jobs:
            # every 10 s), so the monitor keeps up with the events.
            every = max(GRAPH_EVERY, len(snap.jobs) / 100)
            self.graph_dirty.setdefault(wf, time.monotonic() + every)
