"""The monitor's shell: follows the EVENTS log, folds it, writes snapshots to the
``workflows`` bucket (coalesced) and graphs to the ``graphs`` object store (throttled).

It writes nothing until its replay has caught up, so a restarted monitor never shows an
older state than the one it replaces; then it rewrites every snapshot it rebuilt.

A value NATS refuses for its size is never retried (``limits``): it is logged once per
workflow and run, the workflow's snapshot is stored trimmed (or not at all), and every
other workflow goes on. Other failed writes (NATS away) are retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from jobmesh.common import bus, subjects
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.packing import pack
from jobmesh.common.settings import Settings

from . import limits, resume
from .encode import Encoder
from .fold import Fold
from .graph import Graph, layout, layout_key
from .runs import RunStore

log = logging.getLogger("jobmesh.monitor")
SNAPSHOT_EVERY = 0.05   # seconds: the longest a snapshot change waits before it is written
SLICE = 0.005           # seconds: while coalescing, how often queued events are folded
GRAPH_EVERY = 1.0       # seconds between graph updates of one workflow while it runs
RETRY_AFTER = 5.0       # seconds before a snapshot write that failed for another reason


class MonitorService:
    def __init__(self, settings: Settings, nc: Any | None = None, graphs: bool = True,
                 live_graphs: bool = True):
        self.settings = settings
        self.fold = Fold()
        self.encoder = Encoder()  # big running snapshots: re-encode what changed
        self._nc = nc
        self.graphs_enabled = graphs
        # Without live graphs a running workflow's graph is laid out but stored only when
        # its run ends: ``jobmesh run``'s private stack, which no other process can reach.
        self.live_graphs = live_graphs
        self.dirty: set[str] = set()
        self.graph_dirty: dict[str, float] = {}
        self.graphs: dict[str, tuple[tuple[str, int], Graph]] = {}
        # Layouts under way (in a thread), per wf: the graph loop and ``graph_of`` share one.
        self.laying: dict[str, tuple[tuple[str, int], asyncio.Future[Graph]]] = {}
        self.events = 0
        self.seen_seq = 0   # the last log sequence folded and written
        self.runs = RunStore()
        self.recorded: dict[str, tuple[str, float | None, str]] = {}  # last run kept, per wf
        # Runs a new submission replaced before their final graph was kept: (wf, run) ->
        # (their last snapshot, their spec, their laid-out graph if any).
        self.owed: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self.kept: dict[str, str] = {}  # per wf, the last run whose final graph is stored
        # Per wf, the run whose snapshot NATS refused for its size: stored trimmed, or
        # (refused) not at all; a new run tries again. Writes to retry later: wf -> when.
        self.trim: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self.later: dict[str, float] = {}
        self.refusals = limits.Refusals()
        self.nc: Any = nc
        self.caught_up = False  # the replay reached the log's end: graphs may be drawn
        self.spec_revs: dict[str, int] = {}  # wf -> revision of the spec stored for it
        self.snap_revs: dict[str, int] = {}  # wf -> revision of the snapshot stored for it

    async def run(self, stop: asyncio.Event) -> None:
        nc = self._nc or await bus.connect(self.settings, "jobmesh-monitor")
        self.nc = nc
        js = nc.jetstream()
        await bus.ensure(js, self.settings.replicas)
        self.kv = await bus.retrying(lambda: js.key_value(subjects.KV_WORKFLOWS), "open KV")
        self.specs = await bus.retrying(lambda: js.key_value(subjects.KV_SPECS), "open KV")
        self.obj = await bus.retrying(lambda: js.object_store(subjects.OBJ_GRAPHS),
                                      "open the graph store")
        self.js = js
        self.runs.refusals, self.runs.nc = self.refusals, nc
        await bus.retrying(lambda: self.runs.open(js, self.settings.replicas, self.obj),
                           "open the run history")
        # Seeded from the checkpoint a clean stop left (every run ended): the log is
        # followed from there, not replayed from the start (resume.py).
        last = await resume.load(js, self.runs.kv, self.kv, self.specs, self.fold,
                                 self.spec_revs, self.snap_revs)
        if last:
            log.info("resumed from the checkpoint at sequence %d (%d workflows seeded)",
                     last, len(self.fold.snaps))
        for name in self.fold.snaps:
            seeded = self.fold.snaps.head(name)  # (its jobs stay undecoded)
            self.kept[name] = seeded.run
            self.recorded[name] = (seeded.run, seeded.ended, seeded.state.value)
        self.seen_seq = last
        follower = bus.LogFollower(js)
        await follower.start(last + 1)
        self._caught_up(follower.caught_up)
        graph_task = asyncio.create_task(self._graph_loop(stop))
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: follower.wake())  # a stop ends a waiting get
        try:
            due = 0.0  # when the next coalesced snapshot write may go
            while not stop.is_set():
                live = follower.caught_up  # (a replay's submissions wait for the graph loop)
                if follower.caught_up and self.dirty:
                    # Coalescing: fold what came in short slices, so a run that ends is
                    # written at once and a stop is not held up by the wait.
                    wait = due - time.monotonic()
                    if wait > 0 and not follower.queue:
                        await asyncio.sleep(min(wait, SLICE))
                        continue
                    batch = await follower.get(0) if follower.queue else []
                else:
                    batch = await follower.get(1.0)
                if stop.is_set():
                    break
                ended, submitted = False, set()
                for seq, msg in batch:
                    self.events += 1
                    wf, end = self._fold(seq, msg)
                    ended = ended or end
                    if wf is not None and getattr(msg, "type", "") in (
                            "workflow_submitted", "jobs_expanded"):
                        await self._put_spec(wf)  # the submitted or grown spec
                        submitted.add(wf)
                    last = seq
                self._caught_up(follower.caught_up)  # (after the batch: it may end a replay)
                if self.graphs_enabled and live:
                    for wf in submitted:  # lay out now, beside the jobs, not at the
                        self._lay_out(wf)  # graph loop's next turn
                self._due()
                if follower.caught_up and self.dirty and (ended or time.monotonic() >= due):
                    size = max((len(self.fold.snaps[w].jobs) for w in self.dirty
                                if w in self.fold.snaps), default=0)
                    await self._flush()
                    # Coalesce the next burst; a big snapshot (5,000 jobs: ~15 ms to
                    # encode) is written at most every 0.25 s.
                    due = time.monotonic() + max(SNAPSHOT_EVERY, size / 20000)
                if follower.caught_up and not self.dirty and last > self.seen_seq:
                    self.seen_seq = last
        finally:
            stopper.cancel()
            graph_task.cancel()
            await follower.stop()
            if self.dirty and follower.caught_up:
                await self._flush()
            if self._resumable(follower.caught_up):
                await resume.save(self.runs.kv, self.fold, last, self.spec_revs,
                                  self.snap_revs)
            if self._nc is None:
                await bus.close(nc)

    def _fold(self, seq: int, msg: Any) -> tuple[str | None, bool]:
        """Fold one message: the workflow it changed, and whether it ended that
        workflow's run (then its snapshot is written at once, not coalesced)."""
        name = getattr(msg, "workflow", None)
        old_run = self.fold.snaps.get(name) if name is not None and getattr(
            msg, "type", "") == "workflow_submitted" else None
        # (a kept run needs no spec to draw it: a seeded spec stays undecoded)
        before = (self.fold.specs.get(old_run.name), self.graphs.get(old_run.name)) if (
            old_run is not None and self.kept.get(old_run.name) != old_run.run
        ) else (None, None)
        snap = self.fold.snaps.get(name) if name is not None else None
        was = snap.state.terminal if snap is not None else True
        wf = self.fold.apply(seq, msg)
        job = getattr(msg, "job", None)
        if wf is not None and isinstance(job, str):
            self.encoder.touch(wf, job)
        for old, queued, new in self.fold.superseded:
            self.runs.note(old, queued, new, getattr(msg, "time", None))
            self.recorded.pop(old.name, None)
            if before[0] is not None and self.kept.get(old.name) != old.run:
                self.owed[(old.name, old.run)] = (old, before[0], before[1])
        self.fold.superseded.clear()
        if wf is not None and wf in self.fold.deleted and wf not in self.fold.snaps:
            self.runs.forget(wf)
        if wf is None:
            return None, False
        self.dirty.add(wf)
        kind = getattr(msg, "type", "")
        if kind == "workflow_submitted":
            self.graph_dirty[wf] = 0.0
            self.graphs.pop(wf, None)
            self.laying.pop(wf, None)
        elif kind == "jobs_expanded":  # new jobs: lay the graph out again soon
            self.graph_dirty[wf] = 0.0
        elif wf not in self.graph_dirty:
            self.graph_dirty[wf] = time.monotonic() + GRAPH_EVERY
        now = self.fold.snaps.get(wf)
        return wf, now is not None and now.state.terminal and not was

    def _caught_up(self, now: bool) -> None:
        """Note the replay's end. Without live graphs (``jobmesh run``'s private stack) the
        runs that had ended before are not drawn again: their graphs were stored as they
        ended (``keep_final``); a run that ended without one keeps none in its history."""
        if now and not self.caught_up and not self.live_graphs:
            for wf in self.fold.snaps:
                head = self.fold.snaps.head(wf)
                if head.state.terminal and wf not in self.laying:
                    self.graph_dirty.pop(wf, None)
                    self.kept[wf] = head.run
            self.owed.clear()
        self.caught_up = self.caught_up or now

    def _resumable(self, caught_up: bool) -> bool:
        """Everything folded is written, every run ended and its final graph is kept: the
        next monitor may start from here (resume.py)."""
        graphs_done = not self.graphs_enabled or (not self.owed and all(
            self.kept.get(wf) == self.fold.snaps.head(wf).run for wf in self.fold.snaps))
        # A snapshot stored trimmed (or refused) for its size is not the fold's state:
        # the next monitor replays the log rather than seed from it.
        return (caught_up and not self.dirty and not self.later and graphs_done
                and not self.trim and not self.refused
                and not self.runs.pending and not self.runs.changed
                and resume.wanted(self.fold))

    def final_of(self, wf: str, run: str, seq: int) -> WorkflowSnapshot | None:
        """The fold's snapshot of ``run`` if it is the one stored last, whole, at ``seq``
        and ended (what ``jobmesh run`` would decode from the bucket at its end; a
        20,000-job one decodes to ~50 MB more); else None."""
        snap: WorkflowSnapshot | None = self.fold.snaps.get(wf)
        if snap is None or snap.run != run or snap.seq != seq or not snap.state.terminal \
                or wf in self.dirty or self.trim.get(wf) == run or \
                self.refused.get(wf) == run:
            return None
        return snap

    async def keep_final(self, wf: str, run: str, svg: bytes) -> None:
        """Store a run's final graph drawn elsewhere from this monitor's layout
        (``jobmesh run``'s, as it ends), as the graph loop would have stored it."""
        snap = self.fold.snaps.get(wf)
        if snap is None or snap.run != run or not snap.state.terminal:
            return
        await self.obj.put(wf, svg, limits.chunked(wf, self.nc))
        await self.runs.keep_graph(wf, run, svg)
        self.kept[wf] = run
        self.graph_dirty.pop(wf, None)

    async def _put_spec(self, wf: str) -> None:
        spec, snap = self.fold.specs.get(wf), self.fold.snaps.get(wf)
        if spec is None or snap is None:
            return
        # (a big spec streamed into zlib: its whole JSON is never held; ops.spec unpacks)
        data = spec.packed()
        self.spec_revs.pop(wf, None)  # (known again once stored)
        try:
            self.spec_revs[wf] = await bus.kv_put(self.specs, wf, data)
        except Exception as exc:  # the fold goes on with its own copy
            if limits.too_large(exc):
                self.refusals.note("spec", wf, snap.run, len(data),
                                   limits.limit_of(exc, self.nc),
                                   "not stored; the stored spec stays as it was")
            else:
                log.warning("spec write for %s failed: %s", wf, exc)

    def _due(self) -> None:
        """Writes that failed for a reason other than NATS being away, due again."""
        now = time.monotonic()
        for wf, when in list(self.later.items()):
            if when <= now:
                del self.later[wf]
                self.dirty.add(wf)

    async def _put_snapshot(self, wf: str, snap: Any) -> None:
        """Store the snapshot; trimmed if NATS refuses it for its size, and not at all
        (for the rest of its run) if NATS refuses even that."""
        if self.refused.get(wf) == snap.run:
            return
        trim = self.trim.get(wf) == snap.run
        while True:
            data = pack(bus.encode(limits.trimmed(snap))) if trim else self.encoder.packed(snap)
            self.snap_revs.pop(wf, None)  # (known again once stored)
            try:
                self.snap_revs[wf] = int(await self.kv.put(wf, data))
                return
            except Exception as exc:
                if not limits.too_large(exc):
                    raise
                limit = limits.limit_of(exc, self.nc)
                if trim:
                    self.refusals.note(
                        "trimmed snapshot", wf, snap.run, len(data), limit,
                        "not stored; its last stored snapshot stays until its next run")
                    self.refused[wf] = snap.run
                    return
                self.refusals.note("snapshot", wf, snap.run, len(data), limit,
                                   "stored without its jobs' outputs, messages and "
                                   "attempt history until its next run")
                self.trim[wf], trim = snap.run, True

    async def _flush(self) -> None:
        dirty, self.dirty = self.dirty, set()
        for wf in sorted(dirty):
            snap = self.fold.snaps.get(wf)
            try:
                if snap is None:
                    if wf in self.fold.deleted:
                        await self._delete(wf)
                    continue
                await self._put_snapshot(wf, snap)
                if snap.state.terminal:
                    self.graph_dirty[wf] = 0.0
                    mark = (snap.run, snap.ended, snap.state.value)
                    if self.recorded.get(wf) != mark:  # a run ended: keep it in the history
                        self.runs.note(snap, self.fold.queued.get(wf, {}))
                        self.recorded[wf] = mark
            except Exception as exc:
                if bus.transient(exc):  # NATS away: try again with the next flush
                    log.warning("snapshot write for %s failed: %s", wf, exc)
                    self.dirty.add(wf)
                else:  # not NATS away: not in a hot loop
                    log.warning("snapshot write for %s failed: %r; trying again in %.0f s",
                                wf, exc, RETRY_AFTER)
                    self.later[wf] = time.monotonic() + RETRY_AFTER
        try:
            await self.runs.flush(self.js)
        except Exception as exc:
            log.warning("run history write failed: %s", exc)

    async def _delete(self, wf: str) -> None:
        self.encoder.forget(wf)
        self.runs.forget(wf)
        self.recorded.pop(wf, None)
        self.trim.pop(wf, None)
        self.refused.pop(wf, None)
        self.later.pop(wf, None)
        self.refusals.forget(wf)
        self.spec_revs.pop(wf, None)
        self.snap_revs.pop(wf, None)
        for op in (self.kv.delete(wf), self.specs.delete(wf), self.obj.delete(wf)):
            try:
                await op
            except Exception:
                pass
        self.graphs.pop(wf, None)
        self.graph_dirty.pop(wf, None)
        self.kept.pop(wf, None)
        self.owed = {k: v for k, v in self.owed.items() if k[0] != wf}

    async def _graph_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.1)
            if not self.graphs_enabled or not self.caught_up:
                continue  # (a graph drawn mid-replay would show an older state)
            for (wf, run), (snap, spec, have) in list(self.owed.items()):
                del self.owed[(wf, run)]
                try:  # a run replaced before the loop drew its end: draw it now
                    graph = have[1] if have and have[0] == layout_key(snap) else (
                        await asyncio.to_thread(layout, spec, snap, time.time()))
                    svg = await asyncio.to_thread(graph.patch, snap, time.time())
                    await self.runs.keep_graph(wf, run, svg)
                    self.kept[wf] = run
                except Exception as exc:
                    log.warning("graph of run %s of %s failed: %s", run, wf, exc)
            now = time.monotonic()
            for wf, due in list(self.graph_dirty.items()):
                if due > now:
                    continue
                del self.graph_dirty[wf]
                try:
                    await self._render(wf)
                except Exception as exc:
                    log.warning("graph for %s failed: %s", wf, exc)

    async def graph_of(self, wf: str, key: tuple[str, int]) -> Graph | None:
        """The laid-out graph of ``wf`` for ``key`` (``layout_key`` of a snapshot), laid
        out now unless the graph loop has it or is laying it out (then that one is
        awaited: Graphviz runs once per run). None when the monitor has no such run.
        ``jobmesh run`` patches its final graph from it instead of laying it out again."""
        have = self.graphs.get(wf)
        if have is not None and have[0] == key:
            return have[1]
        busy = self._lay_out(wf, key)
        if busy is None:
            return None
        try:
            graph = await asyncio.shield(busy[1])
        finally:
            if self.laying.get(wf) is busy and busy[1].done():
                del self.laying[wf]
        if (self.graphs.get(wf) or (None,))[0] != key:
            self.graphs[wf] = (key, graph)
        return graph

    def _lay_out(self, wf: str, key: tuple[str, int] | None = None
                 ) -> tuple[tuple[str, int], asyncio.Future[Graph]] | None:
        """Start laying ``wf`` out in a thread (Graphviz runs beside the jobs), unless that
        layout is under way already; None when the monitor has no such run."""
        snap, spec = self.fold.snaps.get(wf), self.fold.specs.get(wf)
        if snap is None or spec is None or (key is not None and layout_key(snap) != key):
            return None
        busy = self.laying.get(wf)
        if busy is None or busy[0] != layout_key(snap):
            spec = spec.model_copy()  # its jobs and edges as of now (expansions replace them)
            future = asyncio.ensure_future(asyncio.to_thread(layout, spec, snap, time.time()))
            future.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen
            busy = self.laying[wf] = (layout_key(snap), future)
        return busy

    async def _render(self, wf: str) -> None:
        snap, spec = self.fold.snaps.get(wf), self.fold.specs.get(wf)
        if snap is None or spec is None:
            return
        graph = await self.graph_of(wf, layout_key(snap))
        if graph is None or not (self.live_graphs or snap.state.terminal):
            return
        svg = await asyncio.to_thread(graph.patch, snap, time.time())
        await self.obj.put(wf, svg, limits.chunked(wf, self.nc))
        if snap.state.terminal:  # the run's own copy, for its page in the run history
            await self.runs.keep_graph(wf, snap.run, svg)
            self.kept[wf] = snap.run
        if not snap.state.terminal:
            # Patching costs ~0.15 ms a node, and live viewers recolour nodes from the
            # events themselves: big graphs are refreshed here less often (1,000 nodes:
            # every 10 s), so the monitor keeps up with the events. A collapsed graph
            # (graph.collapse) has few nodes, and counting its groups' jobs is cheap.
            every = max(GRAPH_EVERY, len(graph.nodes) / 100 + len(snap.jobs) / 5000)
            self.graph_dirty.setdefault(wf, time.monotonic() + every)
