"""The executor service: pulls JobReady messages for one pool from the JOBS work queue,
hands them to its executor, publishes what happens, and re-attaches after a restart.

It acks a message only after the launch (or a permanent failure). The executions bucket
remembers what this pool launched and which instance watches it, so a restarted executor
finds its running jobs even while the monitor is down, and a surviving replica adopts the
jobs of a dead one (adopt.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from jobmesh.common import bus, subjects
from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import (
    CancelJob,
    ExecutorHeartbeat,
    JobCanceled,
    JobFailed,
    JobReady,
)
from jobmesh.common.names import check_pool
from jobmesh.common.settings import Settings
from jobmesh.common.spec import BATCH_KINDS, KINDS  # the one list of kinds (the Kind literal)

from .adopt import Adoption, Registered, claimable_at_start, purge_markers
from .base import Executor, InvalidJobError, SubmitError
from .local import LocalExecutor

if TYPE_CHECKING:
    from .transport import Transport

log = logging.getLogger("jobmesh.executor")
HEARTBEAT = 5.0
ACK_WAIT = 30.0  # seconds before an unacked JobReady is handed to another executor
INFLIGHT, BATCH_INFLIGHT = 64, 1000  # launches in flight per executor (local/ssh, batch)
DELETE_EVERY = 0.2  # seconds: finished jobs' registry entries are removed in batches
# A local job that ends within QUICK seconds of its launch is never written to the registry:
# its started event is held back meanwhile and published just before its terminal event,
# and its JobReady is acked once both are stored. A crash in the window leaves the
# JobReady unacked: it is redelivered (ACK_WAIT) and attaches to the run directory. A
# started event is thus only ever stored with the registry entry or the terminal event,
# so every job an observer saw running can be re-attached. Saves a registry write, its
# delete marker, and their delivery to every executor of the pool, for each short job.
QUICK = 0.2


def make_executor(kind: str, emit: Any, settings: Settings, on_done: Any) -> Executor:
    """The executor for a kind. Remote kinds share one transport per host."""
    if kind == "local":
        return LocalExecutor(emit, settings.runs, on_done=on_done, poll_min=settings.poll_min,
                             poll_max=settings.poll_max)
    # Remote kinds are imported when such an executor starts (not by `jobmesh progress`
    # or a local-only service).
    from .remote import RemoteExecutor
    from .transport import LocalTransport

    transports: dict[tuple[Any, ...], Transport] = {}

    def transport_for(spec: Any) -> Transport:
        x = spec.extras
        if kind in BATCH_KINDS and not spec.host:
            return transports.setdefault(("local",), LocalTransport())
        if kind in ("ssh", "slurm", "lsf"):
            from .ssh import DEFAULT_MAX_SESSIONS, SSHTransport

            if not spec.host:
                raise InvalidJobError(f"kind {kind} needs host:")
            key: tuple[Any, ...] = ("ssh", spec.user, spec.host, x.get("port"),
                                    x.get("known_hosts", "default"), x.get("identity"),
                                    x.get("max_sessions", DEFAULT_MAX_SESSIONS))
            if key not in transports:
                transports[key] = SSHTransport(
                    spec.host, user=spec.user, port=int(x["port"]) if x.get("port") else None,
                    max_sessions=int(key[-1]), known_hosts=key[4], identity=x.get("identity"))
            return transports[key]
        from .wsl import WSLTransport

        key = ("wsl", x.get("wsl_exe", "wsl.exe"), x.get("distribution"))
        if key not in transports:
            transports[key] = WSLTransport(exe=str(key[1]), distribution=key[2])
        return transports[key]

    poll_min = max(settings.poll_min, 0.2)  # a probe is a round trip: do not hammer hosts
    if kind in BATCH_KINDS:
        from .batch import BatchExecutor

        system: Any
        if kind == "slurm":
            from .slurm import Slurm

            system = Slurm()
        else:
            from .lsf import LSF

            system = LSF()
        return BatchExecutor(kind, system, emit, transport_for, on_done=on_done,
                             poll_min=max(poll_min, 0.5), poll_max=max(settings.poll_max, 5.0))
    return RemoteExecutor(kind, emit, transport_for, on_done=on_done, poll_min=poll_min,
                          poll_max=settings.poll_max)


_Registered = Registered  # what the executions bucket holds (adopt.py)


def _registered(job_json: bytes, native_id: str, owner: str = "") -> bytes:
    """A ``Registered`` entry, built around the JobReady as it came (no re-encoding)."""
    tail = b"" if not native_id else b',"native_id":' + json.dumps(native_id).encode()
    if owner:
        tail += (b',"owner":' + json.dumps(owner).encode() + b',"host":'
                 + json.dumps(socket.gethostname()).encode() + b',"pid":'
                 + str(os.getpid()).encode())
    return b'{"job":' + bytes(job_json) + tail + b"}"


class ExecutorService:
    def __init__(self, settings: Settings, pool: str = "local", kind: str = "local",
                 instance: str | None = None, nc: Any | None = None, batch: int | None = None,
                 take_work: bool = True, adopt_after: float | None = None):
        if kind not in KINDS:
            raise ValueError(f"executor kind {kind!r} is not available; use one of "
                             f"{', '.join(KINDS)}")
        self.settings, self.pool, self.kind = settings, check_pool(pool), kind
        self.instance = check_pool(instance or f"{socket.gethostname()[:40]}-{os.getpid()}"
                                   .replace(".", "-"))
        self._nc = nc
        # Launches in flight at once. A batch kind's launch is a wait for its sbatch/bsub
        # (array elements gathered into one submission), so it may hold a whole array's
        # worth (Slurm's default MaxArraySize is 1001); a local or ssh launch starts a process.
        self.batch = batch or (BATCH_INFLIGHT if kind in BATCH_KINDS else INFLIGHT)
        self.jobs: dict[AttemptKey, JobReady] = {}
        self.started: dict[AttemptKey, asyncio.Future[int]] = {}  # in flight
        # quick launches (QUICK): their held-back started events, and their ends awaited
        self.quick = kind == "local"
        self.held: dict[AttemptKey, Any] = {}
        self.ending: dict[AttemptKey, asyncio.Future[None]] = {}
        self.putting: dict[AttemptKey, asyncio.Future[Any]] = {}  # registry writes in flight
        self.deletes: list[str] = []  # registry keys of finished jobs, removed in batches
        self.tombstones: OrderedDict[AttemptKey, str] = OrderedDict()
        self.executor: Executor | None = None
        self.take_work = take_work  # False: only re-attach and report (jobmesh status)
        self.ready = asyncio.Event()  # set once re-attached jobs were looked at
        self.adopt_after = adopt_after  # None: adopt.ADOPT_BEATS heartbeats
        self.purging: asyncio.Task[int] | None = None  # adopt.purge_markers, at start
        self.markers = 0  # delete markers in the registry: counted at start, then written

    async def run(self, stop: asyncio.Event) -> None:
        nc = self._nc or await bus.connect(self.settings, f"jobmesh-executor-{self.pool}")
        self.nc = nc
        js = self.js = nc.jetstream()
        await bus.ensure(js, self.settings.replicas)
        self.kv = await bus.retrying(lambda: js.key_value(subjects.KV_EXECUTIONS),
                                     "open the executions registry")

        async def emit(event: Any) -> None:
            key = AttemptKey.of(event)
            ident = None
            if event.type in ("succeeded", "failed", "canceled", "started"):
                ident = key.event_id(event.type)
            if event.type == "started" and key in self.ending:
                self.held[key] = event  # a quick launch's: published with what follows
                return
            self._publish_held(key)
            publish = bus.publish(js, subjects.events(event.workflow, event.run), event, ident)
            if event.type == "started":
                # Not awaited here: its ack is awaited together with the registry write,
                # before the JobReady is acked (see _handle); both go out in one write.
                self.started[key] = asyncio.ensure_future(publish)
                return
            before = self.started.pop(key, None)
            if before is not None:  # events of one job stay in order: started first
                await asyncio.gather(before, return_exceptions=True)
            await publish

        self.emit = emit
        self.executor = make_executor(self.kind, emit, self.settings, self._forget)
        await self.executor.start()
        await self._reattach()
        sweep = getattr(self.executor, "sweep", None)  # local and remote executors
        if sweep is not None:
            await sweep(timeout=10)
        self.ready.set()
        if not self.take_work:
            await stop.wait()
            await self.executor.close()
            await self._flush_deletes()
            return
        cancel_sub = await nc.subscribe(subjects.cancel(self.pool), cb=self._on_cancel)
        psub = await bus.retrying(lambda: js.pull_subscribe(
            subjects.jobs(self.pool), durable=subjects.pool_consumer(self.pool),
            stream=subjects.STREAM_JOBS,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT,
                                  max_ack_pending=20000, deliver_policy=DeliverPolicy.ALL,
                                  max_deliver=-1)), "subscribe to the job queue")
        beat = asyncio.create_task(self._heartbeat(nc, stop))
        adoption = Adoption(nc, js, self.kv, self.pool, self.instance, HEARTBEAT,
                            self._adopt, self._release, self._watching, after=self.adopt_after)
        adopting = asyncio.create_task(adoption.run(stop))
        clean = False
        try:
            slots = asyncio.Semaphore(self.batch)
            handling: set[asyncio.Task[None]] = set()

            async def handle(m: Any) -> None:
                try:
                    await self._handle(m)
                finally:
                    slots.release()

            stopper = asyncio.create_task(stop.wait())
            while not stop.is_set():
                # One message per fetch: a lingering fetch of one returns as soon as work
                # arrives (a batched one waits for its whole batch), and queued work comes
                # back at one round trip each. Launches run concurrently, up to ``batch``.
                await slots.acquire()
                fetch = asyncio.create_task(psub.fetch(1, timeout=1.0))
                await asyncio.wait({fetch, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    fetch.cancel()
                    break
                try:
                    msgs = fetch.result()
                except asyncio.TimeoutError:
                    slots.release()
                    continue
                except Exception as exc:  # NATS away: keep trying, jobs run on meanwhile
                    slots.release()
                    if stop.is_set():
                        break
                    log.log(logging.INFO if bus.transient(exc) else logging.WARNING,
                            "fetch failed: %r", exc)  # transient: NATS electing a leader
                    await asyncio.sleep(0.5)
                    continue
                for m in msgs:
                    task = asyncio.create_task(handle(m))
                    handling.add(task)
                    task.add_done_callback(handling.discard)
            stopper.cancel()
            if handling:
                await asyncio.wait(handling, timeout=10)
            clean = True
        finally:
            beat.cancel()
            if self.purging is not None:
                self.purging.cancel()
            await asyncio.gather(adopting, return_exceptions=True)
            await cancel_sub.unsubscribe()
            await self.executor.close()
            await self._flush_deletes()
            if clean and not adoption.peers_alive():
                await self._purge_at_stop()
            if self._nc is None:
                await bus.close(nc)

    async def _handle(self, msg: Any) -> None:
        try:
            job = JobReady.model_validate_json(msg.data)
            # its ids name the subject of its events, its registry key and its run
            # directory: a forged one can be neither run nor failed, only dropped
            subjects.events(job.workflow, job.run)
            subjects.execution_key(self.pool, job.workflow, job.job)
        except Exception as exc:
            log.error("dropping an unreadable job message: %s", exc)
            await msg.term()
            return
        key = AttemptKey.of(job)
        assert self.executor is not None
        if key in self.tombstones:
            await self.emit(JobCanceled(workflow=job.workflow, run=job.run, job=job.job,
                                        attempt=job.attempt, reason=self.tombstones[key],
                                        time=time.time()))
            await msg.ack()
            return
        self.jobs[key] = job
        ended = None
        if self.quick and key not in self.ending:
            ended = self.ending[key] = asyncio.get_running_loop().create_future()
        try:
            native = await self.executor.submit(job)
            if ended is not None and key in self.jobs:
                await asyncio.wait({ended}, timeout=QUICK)  # ended: its events are stored
        except InvalidJobError as exc:
            self._unhold(key, ended)
            self.jobs.pop(key, None)
            await self.emit(JobFailed(workflow=job.workflow, run=job.run, job=job.job,
                                      attempt=job.attempt, reason=str(exc), time=time.time()))
            await msg.ack()
            return
        except SubmitError as exc:
            self._unhold(key, ended)
            self.jobs.pop(key, None)
            log.warning("%s/%s: %s; will retry", job.workflow, job.job, exc)
            await msg.nak(delay=2)
            return
        except BaseException:
            self._unhold(key, ended)
            raise
        self._unhold(key, ended)  # still running after QUICK: its started event goes now
        # The registry entry and the started event must be stored before the ack: after
        # a crash, the entry (or a redelivery) is how a new executor finds the job.
        writes: list[Awaitable[Any]] = [self.started[key]] if key in self.started else []
        if key in self.jobs:  # not finished already (a quick job, or a no-op one)
            put = asyncio.ensure_future(bus.kv_put(self.kv, self._kv_key(job),
                                                   _registered(msg.data, native, self.instance)))
            self.putting[key] = put  # its delete waits for it (a retried put would revive it)
            put.add_done_callback(lambda _f: self.putting.pop(key, None))
            writes.append(put)
        await asyncio.gather(*writes)
        await msg.ack()

    def _unhold(self, key: AttemptKey, ended: asyncio.Future[None] | None) -> None:
        """End a quick launch's window: its held started event (if any) is published."""
        if ended is None or self.ending.get(key) is not ended:
            return
        del self.ending[key]
        self._publish_held(key)

    def _publish_held(self, key: AttemptKey) -> None:
        """Publish a quick launch's held-back started event (awaited as ``started``)."""
        held = self.held.pop(key, None)
        if held is not None:
            self.started[key] = asyncio.ensure_future(bus.publish(
                self.js, subjects.events(held.workflow, held.run), held,
                key.event_id("started")))

    def _kv_key(self, job: JobReady) -> str:
        return AttemptKey.of(job).registry_key(self.pool)

    async def _forget(self, job: JobReady) -> None:
        key = AttemptKey.of(job)
        self.jobs.pop(key, None)
        self.started.pop(key, None)
        ended = self.ending.get(key)
        if ended is not None:  # ended in its quick window: stored, and never registered
            if not ended.done():
                ended.set_result(None)
            return
        put = self.putting.get(key)
        if put is not None:  # the entry is still being written: delete it after
            put.add_done_callback(lambda _f: self._delete_entry(job))
        else:
            self._delete_entry(job)

    def _delete_entry(self, job: JobReady) -> None:
        self.deletes.append(self._kv_key(job))
        if len(self.deletes) == 1:
            asyncio.get_running_loop().call_later(
                DELETE_EVERY, lambda: asyncio.ensure_future(self._flush_deletes()))

    async def _flush_deletes(self) -> None:
        """Remove finished jobs' registry entries: KV delete markers, gathered into one
        socket write and published without waiting for acks. A lost one leaves a stale
        entry, which is harmless (attach finds the exit file and reports again)."""
        keys, self.deletes = self.deletes, []
        self.markers += len(keys)
        try:
            for k in keys:
                await self.nc.publish(f"$KV.{subjects.KV_EXECUTIONS}.{k}",
                                      headers={"KV-Operation": "DEL"})
        except Exception as exc:
            log.debug("registry delete failed: %s", exc)

    async def _purge_at_stop(self) -> None:
        """The last executor of its pool stops cleanly: drop its finished jobs' delete
        markers now, so that the next start (of any command in this home) does not read
        them again; entries of jobs still running are kept (adopt.purge_markers)."""
        try:
            await self.nc.flush(timeout=2)  # the last delete markers reach the server
            await asyncio.wait_for(purge_markers(self.js, self.kv, self.markers, self.pool,
                                                 min_age=0), 30)
        except Exception as exc:
            log.info("delete markers left for the next start to purge: %r", exc)

    async def _reattach(self) -> None:
        """Attach to the jobs this pool launched that have not ended: all of them for
        ``jobmesh status`` (take_work False), else this instance's own and the ones it may
        claim at once (adopt.py); a live peer's stay with it."""
        assert self.executor is not None
        try:
            watcher = await bus.retrying(lambda: bus.kv_watch(
                self.kv, f"{self.pool}.>", inactive_threshold=bus.EPHEMERAL_INACTIVE),
                "read the executions registry")
        except Exception as exc:
            log.warning("cannot read the executions registry: %s", exc)
            return
        entries, markers = [], 0
        async for entry in watcher:
            if entry is None:
                break
            if entry.value:
                entries.append((entry.key, entry.revision, entry.value))
            else:
                markers += 1  # a finished job's delete marker
        await bus.stop_watch(self.js, watcher)
        if self.take_work:  # old markers slow every start and watch: drop them meanwhile
            self.markers = markers
            self.purging = asyncio.create_task(purge_markers(self.js, self.kv, markers,
                                                             self.pool))
        host = socket.gethostname()
        for key, revision, value in entries:
            try:
                reg = _Registered.model_validate_json(value)
            except Exception:
                continue
            if self.take_work and reg.owner != self.instance:
                if not claimable_at_start(reg, self.instance, host):
                    continue  # a peer's: adopted only once it is silent (adopt.py)
                mine = reg.model_copy(update={"owner": self.instance, "host": host,
                                              "pid": os.getpid()})
                try:
                    await self.kv.update(key, bus.encode(mine), last=revision)
                except Exception as exc:  # another replica claimed it first
                    log.debug("claim of %s lost: %r", key, exc)
                    continue
            await self._adopt(reg.job, reg.native_id)

    async def _adopt(self, job: JobReady, native_id: str) -> None:
        assert self.executor is not None
        self.jobs[AttemptKey.of(job)] = job
        await self.executor.attach(job, native_id)

    def _watching(self, job: JobReady) -> bool:
        return AttemptKey.of(job) in self.jobs

    def _release(self, job: JobReady) -> None:
        """Stop watching a job another instance adopted (we were taken for dead)."""
        key = AttemptKey.of(job)
        self.jobs.pop(key, None)
        self.started.pop(key, None)
        for name in ("tracked", "jobs"):  # local; remote and batch
            watched = getattr(self.executor, name, None)
            t = watched.pop(key, None) if isinstance(watched, dict) else None
            if t is not None and hasattr(t, "done"):
                t.done = True  # a pending finish of ours reports nothing

    async def _on_cancel(self, msg: Any) -> None:
        try:
            req = CancelJob.model_validate_json(msg.data)
        except Exception:
            return
        key = AttemptKey.of(req)
        job = self.jobs.get(key)
        if job is not None and self.executor is not None:
            await self.executor.cancel(job, req.reason)
        else:
            self.tombstones[key] = req.reason
            while len(self.tombstones) > 10000:
                self.tombstones.popitem(last=False)

    async def _heartbeat(self, nc: Any, stop: asyncio.Event) -> None:
        subject = subjects.heartbeat(self.pool, self.instance)
        while not stop.is_set():
            beat = ExecutorHeartbeat(pool=self.pool, instance=self.instance, kind=self.kind,
                                     host=socket.gethostname(),
                                     active=self.executor.active() if self.executor else 0,
                                     # poll/status/submit calls per target, for /metrics
                                     counters=dict(getattr(self.executor, "calls", {})),
                                     time=time.time())
            try:
                await nc.publish(subject, bus.encode(beat))
            except Exception:
                pass
            await asyncio.sleep(HEARTBEAT)
