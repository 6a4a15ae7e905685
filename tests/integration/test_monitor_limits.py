"""A workflow's data never stops the monitor: against a real nats-server whose
``max_payload`` is 64 KB, a workflow whose packed snapshot (random outputs, which do not
compress), grown spec or even trimmed snapshot is larger is logged once, and the monitor
keeps serving other workflows, also after a restart."""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobmesh.common import bus as jbus
from jobmesh.common import subjects
from jobmesh.common.messages import (
    JobsExpanded,
    JobStarted,
    JobSucceeded,
    WorkflowSubmitted,
)
from jobmesh.common.spec import JobSpec, Workflow
from tests.conftest import NATS_TOKEN, Bus, Services, wait_until

pytestmark = pytest.mark.integration
LIMIT = 64 * 1024


@pytest.fixture
def small_nats(tmp_path: Path) -> Iterator[Any]:
    """nats-server with JetStream, the fixtures' token and a 64 KB max_payload (as a
    foreign server might be configured)."""
    from jobmesh.cli import natsserver

    store = tmp_path / "nats"
    store.mkdir()
    conf = store / "nats.conf"
    conf.write_text(f'max_payload: {LIMIT}\nauthorization {{\n  token: "{NATS_TOKEN}"\n}}\n')
    log = store / "nats.log"
    proc = subprocess.Popen(
        [natsserver.find_binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", "-1", "-js",
         "-sd", str(store / "js"), "--ports_file_dir", str(store), "-l", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = natsserver.wait_ready(natsserver.Starting(
        proc, store, NATS_TOKEN, store / f"nats-server_{proc.pid}.ports", log))
    yield server
    server.stop()


def _publish(bus: Bus, *msgs: Any) -> None:
    async def go(js: Any) -> None:
        for msg in msgs:
            subject = (subjects.workflow(msg.workflow) if isinstance(msg, WorkflowSubmitted)
                       else subjects.events(msg.workflow, msg.run))
            await jbus.publish(js, subject, msg)

    bus.call(go)


def _submitted(name: str, jobs: list[str]) -> WorkflowSubmitted:
    spec = Workflow(name=name, jobs={j: JobSpec(name=j) for j in jobs})
    return WorkflowSubmitted(workflow=name, run=f"run-{name}", spec=spec, time=time.time())


def _done(wf: str, job: str, outputs: dict[str, Any] | None = None) -> list[Any]:
    now, run = time.time(), f"run-{wf}"
    return [JobStarted(workflow=wf, run=run, job=job, time=now),
            JobSucceeded(workflow=wf, run=run, job=job, time=now, outputs=outputs)]


def _small_done(bus: Bus, name: str) -> None:
    """Submit a two-job workflow, finish it, and wait for its snapshot to say so."""
    _publish(bus, _submitted(name, ["a", "b"]), *_done(name, "a"), *_done(name, "b"))
    bus.wait(name, lambda s: s.state.value == "SUCCEEDED", 30, f"{name} succeeded")


def _log(tmp_path: Path) -> str:
    return (tmp_path / "monitor.log").read_text()


def test_a_snapshot_over_max_payload_is_stored_trimmed(small_nats: Any, tmp_path: Path
                                                        ) -> None:
    bus = Bus(small_nats.url, NATS_TOKEN)
    home = tmp_path / "home"
    home.mkdir()
    services = Services(small_nats.url, home, tmp_path, NATS_TOKEN)
    try:
        monitor = services.start("monitor")
        _small_done(bus, "before")
        # 40 jobs with 3 KB of random output each: ~120 KB packed, over 64 KB
        jobs = [f"j{i}" for i in range(40)]
        events: list[Any] = [_submitted("big", jobs)]
        for j in jobs:
            events += _done("big", j, {"blob": secrets.token_urlsafe(2250)})
        _publish(bus, *events)
        snap = bus.wait("big", lambda s: s.state.value == "SUCCEEDED", 60, "big succeeded")
        # what the user sees: every job's state, without its outputs
        assert all(j.state.value == "SUCCEEDED" and j.outputs == {} for j in snap.jobs.values())
        assert len(snap.jobs) == 40
        _small_done(bus, "after")  # other workflows go on
        text = _log(tmp_path)
        line = ("the snapshot of workflow big (run run-big) is ")
        assert text.count(line) == 1, text
        assert "over NATS's max_payload of 65,536 bytes: stored without its jobs' outputs" in text
        assert "Traceback" not in text and monitor.poll() is None

        # the run history keeps the run (trimmed as well)
        async def record(js: Any) -> bytes:
            kv = await js.key_value(subjects.KV_RUNS)
            return bytes((await kv.get("big.run-big")).value)

        from services.monitor import history
        old, _ = history.read_record(bus.call(record))
        assert old.state.value == "SUCCEEDED" and len(old.jobs) == 40

        # a restart replays the log, meets the same snapshot, and goes on
        services.kill("monitor", signal.SIGTERM)
        monitor = services.start("monitor")
        _small_done(bus, "later")
        wait_until(lambda: _log(tmp_path).count(line) == 2, 30, "the restart's warning")
        assert "Traceback" not in _log(tmp_path) and monitor.poll() is None
        assert bus.snapshot("big").state.value == "SUCCEEDED"
    finally:
        services.stop()


def test_a_workflow_too_large_even_trimmed_does_not_stop_the_monitor(
        small_nats: Any, tmp_path: Path) -> None:
    bus = Bus(small_nats.url, NATS_TOKEN)
    home = tmp_path / "home"
    home.mkdir()
    services = Services(small_nats.url, home, tmp_path, NATS_TOKEN)
    try:
        monitor = services.start("monitor")
        nodes = [f"f{i}" for i in range(10)]
        _publish(bus, _submitted("huge", nodes))
        bus.wait("huge", lambda s: len(s.jobs) == 10, 30, "huge submitted")
        # each foreach node becomes 100 jobs with long random names: each event fits,
        # the grown spec and even the trimmed snapshot do not
        for node in nodes:
            names = [f"{node}-{secrets.token_urlsafe(75)}" for _ in range(100)]
            _publish(bus, JobsExpanded(workflow="huge", run="run-huge", job=node,
                                       time=time.time(),
                                       jobs={n: JobSpec(name=n) for n in names}))
        wait_until(lambda: "trimmed snapshot of workflow huge" in _log(tmp_path), 60,
                   "the monitor's warning")
        _small_done(bus, "other")
        services.kill("monitor", signal.SIGTERM)
        monitor = services.start("monitor")
        _small_done(bus, "again")
        # the restarted monitor replays 'huge' (it never ended) and warns once more; its
        # log line may come after 'again' is stored
        wait_until(lambda: _log(tmp_path).count(
            "the trimmed snapshot of workflow huge (run run-huge)") >= 2, 30,
            "the restarted monitor's warning")
        text = _log(tmp_path)
        assert text.count("the trimmed snapshot of workflow huge (run run-huge)") == 2, text
        assert "not stored; its last stored snapshot stays until its next run" in text
        assert "the spec of workflow huge (run run-huge)" in text
        assert "Traceback" not in text and monitor.poll() is None
        # what the user sees: the last snapshot that fit
        assert len(bus.snapshot("huge").jobs) < 1000
    finally:
        services.stop()
