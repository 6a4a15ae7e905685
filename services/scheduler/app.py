"""The scheduler's shell: follows the EVENTS log, feeds the core, publishes its
instructions. The only part of the scheduler that touches NATS or the clock."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from jobmesh.common import bus
from jobmesh.common.settings import Settings
from jobmesh.common.states import JobState

from . import checkpoint, outbox
from .cache import Reuse
from .checkpointer import Checkpointer
from .core import CancelRunning, ExpandJob, Instruction, MarkJob, ReleaseJob, SchedulerCore

log = logging.getLogger("jobmesh.scheduler")


class SchedulerService:
    def __init__(self, settings: Settings, nc: Any | None = None):
        self.settings = settings
        self.core = SchedulerCore()
        self.reuse = Reuse(self.core.cache)
        self._nc = nc
        self.replayed = False
        self.reused = False  # a job was reused in the last _execute
        self.poison: list[Instruction] = []  # failures of workflows the core dropped
        self.max_payload: int | None = None  # the server's, once connected

    async def run(self, stop: asyncio.Event) -> None:
        nc = self._nc or await bus.connect(self.settings, "jobmesh-scheduler")
        self.max_payload = getattr(nc, "max_payload", None)
        js = nc.jetstream()
        await bus.ensure(js, self.settings.replicas)
        self.ckpt = Checkpointer(js, self.core, self.settings.replicas)
        start = await self.ckpt.restore()
        follower = bus.LogFollower(js)
        await follower.start(start)
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: follower.wake())  # a stop ends a waiting get
        try:
            while not stop.is_set():
                wake = self.core.next_wakeup()
                timeout = 1.0 if wake is None else max(0.0, min(1.0, wake - time.time()))
                timeout = min(timeout, self.ckpt.due_in(time.monotonic()))
                batch = await follower.get(timeout)
                if stop.is_set():
                    break
                for seq, msg in batch:
                    if self.ckpt.covers(seq, msg):
                        continue
                    await self.ckpt.fetch(msg)
                    stub = checkpoint.needs_rebuild(self.core, msg)
                    if stub is not None:
                        await self.ckpt.rebuild(msg.workflow, stub, seq)
                    self._apply(seq, msg)
                    self.ckpt.seen(seq, msg)
                if not follower.caught_up:
                    continue
                if not self.replayed:
                    self.replayed = True
                    self.core.reconcile()
                instructions = self.core.decide(time.time())
                while instructions or self.poison:
                    self.reused = False
                    await self._execute(nc, js, instructions)
                    # A reused job ended at once: decide again now, without waiting for
                    # its events to come back through the log (a chain of them is quick).
                    instructions = self.core.decide(time.time()) if self.reused else []
                # Every decision so far is on the log: a checkpoint may be taken now.
                await self.ckpt.after_decide(time.monotonic(), quiet=not self.poison)
        finally:
            stopper.cancel()
            await follower.stop()
            if self.replayed and not self.poison:
                await self.ckpt.final()
            if self._nc is None:
                await bus.close(nc)

    def _apply(self, seq: int, msg: Any) -> None:
        """Feed one event to the core. An event the core cannot take (one workflow's bad
        data) is logged and skipped, and its workflow's unfinished jobs fail with the
        reason; the scheduler goes on with every other workflow, in a replay too."""
        try:
            self.core.apply(msg, seq)
        except Exception as exc:  # noqa: BLE001 - poison: never stop the scheduler
            wf = getattr(msg, "workflow", None)
            why = f"{type(exc).__name__}: {exc}"
            log.exception("skipping event %d (%s) of workflow %s: %s", seq,
                          getattr(msg, "type", type(msg).__name__), wf, why)
            if isinstance(wf, str):
                self.poison += self.core.poisoned(wf, f"event {seq}: {why}")

    async def _execute(self, nc: Any, js: Any, instructions: list[Instruction]) -> None:
        # New jobs must be on the log before any event about them: expansions go first,
        # one by one (each publish waits for JetStream's ack), the rest concurrently.
        expansions, rest = outbox.expansions_first(self.poison + instructions)
        self.poison = []
        for ins in expansions:
            await self._safe(nc, js, ins)
        await asyncio.gather(*(self._safe(nc, js, i) for i in rest))

    async def _safe(self, nc: Any, js: Any, ins: Instruction) -> None:
        """``_one``; an instruction that cannot be published (e.g. a pool that is not a
        subject token, or a message larger than NATS's max_payload) fails its job with the
        reason instead of stopping the scheduler. NATS being away (BusError) still stops
        it: the service restarts and replays."""
        try:
            await self._one(nc, js, ins)
        except Exception as exc:  # noqa: BLE001 - one job's data, not the scheduler
            if isinstance(exc, bus.BusError) and "MaxPayload" not in str(exc):
                raise  # NATS is away: not this job's fault
            why = f"{type(exc).__name__}: {exc}"
            log.error("workflow %s job %s: cannot %s (%s)", ins.workflow, ins.job,
                      type(ins).__name__, why)
            if isinstance(ins, MarkJob) and ins.state is JobState.FAILED:
                return  # failing it is what failed; nothing better to publish
            try:
                await self._one(nc, js, MarkJob(ins.workflow, ins.run, ins.job, ins.attempt,
                                                JobState.FAILED, f"cannot start: {why}"[:500]))
            except bus.BusError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("workflow %s job %s: cannot record its failure", ins.workflow,
                              ins.job)

    async def _release(self, js: Any, ins: ReleaseJob, now: float) -> None:
        key, cached_from = ins.recorded or (None, None)
        if ins.recorded is None and ins.keyed:
            key = await self.reuse.key(ins.spec, ins.base_dir, ins.parent_keys)
        # A decision in the log stands (a replay must not turn a job sent to run into a
        # cached one): only a fresh release, or a recorded reuse, looks in the cache.
        fresh = ins.recorded is None and ins.reuse
        hit = await self.reuse.find(ins.workflow, ins.job, key, ins.spec, ins.base_dir) \
            if key and (fresh or cached_from) else None
        if key and hit is not None and (fresh or hit.run == cached_from):
            self.core.released(ins.workflow, ins.run, ins.job, ins.attempt, key, hit.run,
                               ins.spec.kind)
            ready, done = outbox.reused(ins, now, key, hit.run, hit.outputs, hit.described(),
                                        time.time())
            await self._publish(js, ready)
            await self._publish(js, done)
            # Stored: the core may know it now (applying it again from the log is a no-op).
            self.core.apply(done.msg)
            self.reused = True
            return
        self.core.released(ins.workflow, ins.run, ins.job, ins.attempt, key, None,
                           ins.spec.kind)
        ready, work = outbox.released(ins, now, key)
        data = _fits(self.max_payload, work.msg)  # too large: this job fails, now (_safe)
        # Both at once (one write, acks awaited together). Either order is safe: a
        # replay re-sends a READY job's JobReady, and one without its ready event is
        # released again under the same message id.
        await asyncio.gather(self._publish(js, ready), self._publish(js, work, data))

    @staticmethod
    async def _publish(js: Any, out: outbox.Outgoing, data: bytes | None = None) -> None:
        await bus.publish(js, out.subject, out.msg, msg_id=out.msg_id, payload=data)

    async def _one(self, nc: Any, js: Any, ins: Instruction) -> None:
        now = time.time()
        if isinstance(ins, ReleaseJob):
            await self._release(js, ins, now)
        elif isinstance(ins, (MarkJob, ExpandJob)):
            (out,) = outbox.outgoing(ins, now)
            data = _fits(self.max_payload, out.msg) if isinstance(ins, ExpandJob) else None
            await self._publish(js, out, data)
        elif isinstance(ins, CancelRunning):
            (out,) = outbox.outgoing(ins, now)
            await nc.publish(out.subject, bus.encode(out.msg))


def _fits(limit: Any, msg: Any) -> bytes:
    """The encoded message. One larger than the server's max_payload is refused at once
    (ValueError: its job fails), not retried until the publish deadline."""
    data = bus.encode(msg)
    if isinstance(limit, int) and limit > 0 and len(data) > limit:
        raise ValueError(f"the message is {len(data) / 1e6:.1f} MB, more than NATS's "
                         f"max_payload of {limit / 1e6:.1f} MB")
    return data
