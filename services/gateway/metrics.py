"""Prometheus metrics of one gateway app, on a registry of its own (never the global one:
tests and several apps in one process must not clash).

* Current state (``jobmesh_jobs``, ``jobmesh_workflows``, ``jobmesh_events_total``,
  ``jobmesh_jobs_queue_depth``, ``jobmesh_executors``): read from NATS at each scrape.
* Job events (queue and run time histograms, end and retry counters): the gateway follows
  the EVENTS stream's job events from the moment it starts (``DeliverPolicy.NEW``) with an
  ordered consumer, so each event is counted once per gateway process: the counters start
  at 0 when the gateway starts (Prometheus' ``rate``/``increase`` handle the reset), and
  nothing that happened before is replayed. An event whose stream sequence was already
  handled (a consumer re-created after a NATS hiccup) is ignored, and each attempt's queue
  and run time is observed at most once. An attempt released before the gateway started
  has no queue time here, one started before it has no run time: they are left out of the
  histograms (never guessed), though their ends are counted.
* Executors' calls (``jobmesh_executor_calls_total``): the cumulative ``counters`` of the
  latest heartbeat of each executor instance (keys ``poll.<cluster>``,
  ``submit.<cluster>``). The instance's label is ``executor``, not ``instance``: that one
  Prometheus sets to the scraped target (ours would become ``exported_instance``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import (
    JobCanceled,
    JobFailed,
    JobQueued,
    JobReadied,
    JobSkipped,
    JobStarted,
    JobSucceeded,
)
from jobmesh.common.states import JobState

log = logging.getLogger("jobmesh.gateway.metrics")
EXECUTOR_FRESH = 30.0  # seconds a heartbeat counts for (the executors gauge)
# Seconds: from a local job's fraction of a second to a batch queue's day.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
           7200, 21600, 86400)
ENDS: dict[type, JobState] = {JobSucceeded: JobState.SUCCEEDED, JobFailed: JobState.FAILED,
                               JobCanceled: JobState.CANCELED, JobSkipped: JobState.SKIPPED}
MAX_OPEN = 100_000  # attempts remembered between release and end (bounded memory)


@dataclass
class Attempt:
    pool: str = ""
    kind: str = ""
    released: float | None = None  # the 'ready' event's time
    queued: float | None = None    # the first 'queued' event's time
    started: float | None = None


@dataclass
class Current:
    """What a scrape read from NATS; the collector turns it into gauges."""
    jobs: dict[str, int] = field(default_factory=dict)
    workflows: dict[str, int] = field(default_factory=dict)
    events: int = 0
    queue_depth: int = 0


class Metrics:
    """The metrics of one gateway. ``apply`` folds job events in (no I/O); ``render``
    is what /metrics answers."""

    def __init__(self, executors: dict[str, dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.executors = executors  # the gateway's latest heartbeat per pool/instance
        self.current = Current()
        self.done = 0  # the last EVENTS sequence handled
        self.open: dict[AttemptKey, Attempt] = {}
        self.queue = Histogram("jobmesh_job_queue_seconds", "Seconds from a job attempt's "
                               "release to its pool until it started, by pool and kind.",
                               ["pool", "kind"], buckets=BUCKETS, registry=self.registry)
        self.run = Histogram("jobmesh_job_run_seconds", "Seconds from a job attempt's start "
                             "until it ended, by pool and kind.", ["pool", "kind"],
                             buckets=BUCKETS, registry=self.registry)
        self.ends = Counter("jobmesh_job_ends", "Job attempts that ended, by end state "
                            "(counted since the gateway started).", ["state", "pool"],
                            registry=self.registry)
        self.retries = Counter("jobmesh_job_retries", "Job attempts after the first that "
                               "started (counted since the gateway started).", ["pool"],
                               registry=self.registry)
        for state in ENDS.values():
            self.ends.labels(state=state.value, pool="")  # every state shows, even at 0
        self.registry.register(_Collector(self))

    def apply(self, seq: int, ev: Any) -> None:
        """Fold one job event (its EVENTS sequence ``seq``). Sequences at or below one
        already handled are ignored, so a replay never counts twice."""
        if seq <= self.done:
            return
        self.done = seq
        key = AttemptKey(getattr(ev, "workflow", ""), getattr(ev, "run", ""),
                         getattr(ev, "job", ""), getattr(ev, "attempt", 1))
        if isinstance(ev, JobReadied):
            if ev.cached_from is not None:
                return  # reused from an earlier run: not run, never queued
            if len(self.open) >= MAX_OPEN:
                self.open.pop(next(iter(self.open)))
            pool = ev.pool or "unknown"
            kind = self.pool_kind(pool) or "unknown"  # the pool's executors' kind
            self.open[key] = Attempt(pool=pool, kind=kind, released=ev.time)
        elif isinstance(ev, JobQueued):
            att = self.open.get(key)
            if att is not None and att.queued is None:
                att.queued = ev.time
        elif isinstance(ev, JobStarted):
            att = self.open.get(key)
            if ev.attempt > 1:
                self.retries.labels(pool=att.pool if att else "unknown").inc()
            if att is None or att.started is not None:
                return  # released before the gateway started, or a second 'started'
            att.started = ev.time
            since = att.released if att.released is not None else att.queued
            if since is not None:
                self.queue.labels(pool=att.pool, kind=att.kind).observe(max(0.0,
                                                                            ev.time - since))
        elif (end := ENDS.get(type(ev))) is not None:
            att = self.open.pop(key, None)
            self.ends.labels(state=end.value, pool=att.pool if att else "").inc()
            if att is not None and att.started is not None:
                self.run.labels(pool=att.pool, kind=att.kind).observe(
                    max(0.0, ev.time - att.started))

    def pool_kind(self, pool: str) -> str:
        for beat in self.executors.values():
            if beat.get("pool") == pool and beat.get("kind"):
                return str(beat["kind"])
        return ""

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _Collector:
    """The gauges read at each scrape, and the executors' call counters."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []  # names are not known before a scrape (no clash checks needed)

    def collect(self) -> Iterator[Metric]:
        cur = self.m.current
        jobs = GaugeMetricFamily("jobmesh_jobs", "Jobs by state, over every workflow's "
                                 "current run.", labels=["state"])
        for state, n in cur.jobs.items():
            jobs.add_metric([state], n)
        yield jobs
        wfs = GaugeMetricFamily("jobmesh_workflows", "Workflows by state.", labels=["state"])
        for state, n in sorted(cur.workflows.items()):
            wfs.add_metric([state], n)
        yield wfs
        yield CounterMetricFamily("jobmesh_events", "Messages in the EVENTS log.",
                                  value=cur.events)
        yield GaugeMetricFamily("jobmesh_jobs_queue_depth", "Jobs waiting in the JOBS work "
                                "queue.", value=cur.queue_depth)
        now = time.time()
        pools: dict[str, int] = {}
        calls = CounterMetricFamily("jobmesh_executor_calls", "Executors' calls to their "
                                    "clusters (cumulative per instance, from its latest "
                                    "heartbeat).",
                                    labels=["pool", "executor", "cluster", "call"])
        for beat in list(self.m.executors.values()):
            pool, instance = str(beat.get("pool", "")), str(beat.get("instance", ""))
            if now - float(beat.get("time", 0)) < EXECUTOR_FRESH:
                pools[pool] = pools.get(pool, 0) + 1
            counters = beat.get("counters")
            if not isinstance(counters, dict):
                continue
            for name, n in sorted(counters.items()):
                call, sep, cluster = str(name).partition(".")
                if sep and isinstance(n, int | float) and not isinstance(n, bool):
                    calls.add_metric([pool, instance, cluster, call], n)
        execs = GaugeMetricFamily("jobmesh_executors", "Executor instances seen in the last "
                                  "30 s, by pool.", labels=["pool"])
        for pool, n in sorted(pools.items()):
            execs.add_metric([pool], n)
        yield execs
        yield calls
