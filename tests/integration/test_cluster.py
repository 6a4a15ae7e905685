"""A real three-node NATS JetStream cluster: jobmesh's streams at R3 survive losing a node.

Three ``nats-server`` processes on loopback ports form one cluster. The services run as
separate processes and connect with the list of all three URLs. A 200-job workflow runs
on two executors of one pool; mid-run we SIGKILL the node that leads the EVENTS stream and
one executor, then start a third executor (it re-attaches the dead one's running jobs).
Every job must run exactly once and the workflow must succeed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NATS_TOKEN, Services
from tests.helpers import anonymous_connect, free_ports, read_log, run_async, write_workflow

pytestmark = pytest.mark.integration

JOBS = 200
ROUTE_PASSWORD = "jobmesh-test-routes"



class Cluster:
    """Three nats-server processes with JetStream, clustered over loopback routes. Their
    clients need the token, as the embedded server's do, and the routes a password (a
    route is a way in as well)."""

    def __init__(self, root: Path, size: int = 3, name: str = "jobmesh-test"):
        from jobmesh.cli.natsserver import find_binary

        self.root, self.size, self.name = root, size, name
        self.exe = find_binary()
        ports = free_ports(2 * size)
        self.client_ports, self.route_ports = ports[:size], ports[size:]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, i: int) -> str:
        return f"nats://127.0.0.1:{self.client_ports[i]}"

    @property
    def urls(self) -> str:
        return ",".join(self.url(i) for i in range(self.size))

    def start(self, i: int) -> None:
        d = self.root / f"n{i}"
        d.mkdir(parents=True, exist_ok=True)
        from jobmesh.cli.natsserver import config

        routes = ", ".join(f'"nats://route:{ROUTE_PASSWORD}@127.0.0.1:{p}"'
                           for j, p in enumerate(self.route_ports) if j != i)
        (d / "nats.conf").write_text(config(NATS_TOKEN) + (
            f"cluster {{\n  name: {self.name}\n  listen: 127.0.0.1:{self.route_ports[i]}\n"
            f'  authorization {{ user: route, password: "{ROUTE_PASSWORD}" }}\n'
            f"  routes: [{routes}]\n}}\n"))
        args = [self.exe, "-c", str(d / "nats.conf"), "-a", "127.0.0.1",
                "-p", str(self.client_ports[i]),
                "--server_name", f"n{i}", "-js", "-sd", str(d / "js"),
                "-l", str(d / "nats.log")]
        self.procs[i] = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_all(self) -> None:
        for i in range(self.size):
            self.start(i)

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()

    def logs(self) -> str:
        out = []
        for i in range(self.size):
            log = self.root / f"n{i}" / "nats.log"
            if log.exists():
                out.append(f"--- n{i}\n" + "\n".join(log.read_text().splitlines()[-15:]))
        return "\n".join(out)


def run(coro_fn: Callable[[Any], Any], urls: str, timeout: float = 15) -> Any:
    """One short connection to the cluster; ``coro_fn(js)``."""
    from jobmesh.common import bus
    from jobmesh.common.settings import Settings

    async def go() -> Any:
        nc = await bus.connect(Settings(nats_url=urls, nats_token=NATS_TOKEN), "jobmesh-test")
        try:
            return await asyncio.wait_for(coro_fn(nc.jetstream()), timeout)
        finally:
            await nc.close()

    return run_async(go())


def until(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.2,
          on_fail: Callable[[], str] | None = None) -> Any:
    """Poll pred (errors count as not yet) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:  # the cluster electing a leader, a node restarting
            last = exc
        time.sleep(every)
    extra = on_fail() if on_fail else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                         f"(last error: {last!r})\n{extra}")


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    c = Cluster(tmp_path / "cluster")
    c.start_all()
    yield c
    c.stop()


def test_three_node_cluster_survives_node_and_executor_loss(tmp_path: Path, cluster: Cluster
                                                             ) -> None:
    from jobmesh.common import bus, ops, subjects

    t0 = time.monotonic()
    timings: dict[str, float] = {}

    # The cluster is up once it accepts R3 streams (its meta group has elected a leader).
    until(lambda: run(lambda js: bus.ensure(js, replicas=3), cluster.urls) or True, 30,
          "the cluster to accept R3 streams", every=0.5, on_fail=cluster.logs)

    async def replicas(js: Any) -> dict[str, tuple[int, str]]:
        out = {}
        for stream in (subjects.STREAM_EVENTS, subjects.STREAM_JOBS, "KV_workflows",
                       "KV_executions"):
            info = await js.stream_info(stream)
            out[stream] = (info.config.num_replicas, info.cluster.leader)
        return out

    layout = run(replicas, cluster.urls)
    for i in range(cluster.size):  # only token holders get in
        assert "Authorization Violation" in anonymous_connect(cluster.url(i))
    assert all(r == 3 for r, _ in layout.values()), layout
    timings["cluster up"] = time.monotonic() - t0

    home = tmp_path / "home"
    home.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    services = Services(cluster.urls, home, logs)
    common = ("--replicas", "3")
    try:
        services.start("scheduler", *common)
        services.start("monitor", *common)
        services.start("executor:a", "--pool", "local", "--instance", "exec-a", *common)
        services.start("executor:b", "--pool", "local", "--instance", "exec-b", *common)

        def service_logs() -> str:
            return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                             for p in sorted(logs.glob("*.log"))) + "\n" + cluster.logs()

        nodes = {f"j{i:03d}": {"exec": 'echo x >> "$JOBMESH_WORKFLOW_DIR/count-$JOBMESH_JOB"'
                                       "; sleep 0.3"} for i in range(JOBS)}
        wf_dir = tmp_path / "wf"
        path = write_workflow(wf_dir, "cluster200", nodes, [])
        from jobmesh.common.loader import load_workflow

        wf = load_workflow(path).workflow
        run_id, _ = run(lambda js: ops.submit(js, wf, 16), cluster.urls)

        def counted() -> int:
            return len(list(wf_dir.glob("count-*")))

        until(lambda: counted() >= 50, 40, "50 jobs to run", on_fail=service_logs)
        timings["50 jobs"] = time.monotonic() - t0

        # Kill the node leading the EVENTS stream (every service writes there), and executor a.
        leader = run(replicas, cluster.urls)[subjects.STREAM_EVENTS][1]
        victim = int(leader.lstrip("n"))
        kill_wall = time.time()
        cluster.kill(victim)
        services.kill("executor:a")
        at_kill = counted()
        timings["killed"] = time.monotonic() - t0
        rest = ",".join(cluster.url(i) for i in range(cluster.size) if i != victim)

        # Executor b alone takes the queued work on a two-node cluster ...
        until(lambda: counted() >= at_kill + 30, 40,
              "executor b to go on with the queued work after the node loss",
              on_fail=service_logs)
        timings["b alone +30"] = time.monotonic() - t0

        # a's jobs that ended while no executor watched them: not ended in the snapshot,
        # with an exit file for a while (b reports its own within milliseconds). RUNNING
        # if a's started event was stored before the kill; READY if it was still on its
        # way to the killed EVENTS leader (under load, all of them can be): their JobReady
        # comes back after the ack wait, and whoever takes it attaches to the run.
        def orphans() -> set[str]:
            snap = run(lambda js: ops.snapshot(js, "cluster200"), rest, timeout=5)
            now = time.time()
            return {name for name, job in snap.jobs.items() if not job.state.terminal
                    and any(now - p.stat().st_mtime > 2
                            for p in home.glob(f"runs/cluster200/*/{name}/1/exit"))}

        orphaned = until(orphans, 20, "executor a's orphaned jobs to show", every=0.5,
                         on_fail=service_logs)
        # ... and the next executor of the pool re-attaches a's running jobs.
        services.start("executor:c", "--pool", "local", "--instance", "exec-c", *common)

        def finished() -> Any:
            snap = run(lambda js: ops.snapshot(js, "cluster200"), rest, timeout=5)
            return snap if snap is not None and snap.run == run_id and snap.state.terminal \
                else None

        def stuck() -> str:
            snap = run(lambda js: ops.snapshot(js, "cluster200"), rest, timeout=5)
            lines = [f"counts {snap.counts()}" if snap else "no snapshot"]
            for name, job in (snap.jobs.items() if snap else []):
                if job.state.value != "SUCCEEDED":
                    rdir = next(home.glob(f"runs/cluster200/*/{name}/*"), None)
                    files = sorted(p.name for p in rdir.iterdir()) if rdir else None
                    lines.append(f"{name}: {job.state.value} attempt {job.attempt} "
                                 f"{job.reason or ''} run dir {files}")
            return "\n".join(lines) + "\n" + service_logs()

        # Generous: a JobReady that executor a held unacked comes back after ACK_WAIT (30 s),
        # and under load the cluster's re-election adds to that.
        snap = until(finished, 120, "the workflow to end", every=0.5, on_fail=stuck)
        timings["done"] = time.monotonic() - t0
        if os.environ.get("JOBMESH_DEBUG"):
            starts = sorted(j.started for j in snap.jobs.values() if j.started)
            base = starts[0]
            gaps = sorted(((b - a, a - base) for a, b in zip(starts, starts[1:])), reverse=True)
            print("largest gaps between job starts (gap, at):",
                  [(round(g, 2), round(at, 2)) for g, at in gaps[:8]])
            print("kill at (since first start):", round(kill_wall - base, 2))

            async def timeline(js: Any) -> dict[int, dict[str, int]]:
                out: dict[int, dict[str, int]] = {}
                for _, ev in await read_log(js, "cluster200"):
                    sec = int(ev.time - kill_wall)
                    out.setdefault(sec, {}).setdefault(ev.type, 0)
                    out[sec][ev.type] += 1
                return out

            for sec, counts in sorted(run(timeline, rest, timeout=30).items()):
                print(f"  t={sec:+d}s {counts}")
        bad = {n: (j.state.value, j.attempt, j.reason) for n, j in snap.jobs.items()
               if j.state.value != "SUCCEEDED" or j.attempt != 1}
        assert snap.state.value == "SUCCEEDED" and not bad, f"{bad}\n{service_logs()}"
        for name in nodes:
            lines = (wf_dir / f"count-{name}").read_text().splitlines()
            assert lines == ["x"], f"{name} ran {len(lines)} times"
        assert all(snap.jobs[n].state.value == "SUCCEEDED" for n in orphaned)
        for name, proc in services.procs.items():
            assert proc.poll() is None, f"{name} died:\n{service_logs()}"
    finally:
        services.stop()
        print("timings:", {k: round(v, 1) for k, v in timings.items()},
              f"killed node n{victim if 'victim' in locals() else '?'}",
              f"re-attached {len(orphaned) if 'orphaned' in locals() else '?'} jobs")
        if os.environ.get("JOBMESH_DEBUG"):
            for p in sorted(logs.glob("*.log")):
                print(f"--- {p.name}\n{p.read_text()[-4000:]}")


def test_a_job_whose_executor_died_before_starting_it_runs_once(tmp_path: Path) -> None:
    """An executor killed between creating a run directory and starting the wrapper leaves
    a directory without ``pid``. The JobReady comes back (after the ack wait) and must be
    run, not attached to (which would wait for ever, or report a failure)."""
    from jobmesh.common.messages import JobReady
    from jobmesh.common.spec import JobSpec
    from jobmesh.executor import rundir
    from jobmesh.executor.local import LocalExecutor

    async def go() -> list[str]:
        events: list[str] = []

        async def emit(event: Any) -> None:
            events.append(event.type)

        ex = LocalExecutor(emit, tmp_path / "runs")
        await ex.start()
        job = JobReady(workflow="w", run="r1", job="j", attempt=1, pool="local",
                       spec=JobSpec(name="j", exec='echo x >> "$JOBMESH_WORKFLOW_DIR/count"'),
                       base_dir=str(tmp_path), time=time.time())
        rdir = Path(rundir.run_dir(str(tmp_path / "runs"), job))
        rdir.mkdir(parents=True)
        ex._stage(job, rdir)  # staged, then the executor died: no pid, no exit
        old = time.time() - 60
        os.utime(rdir, (old, old))
        await ex.submit(job)
        deadline = time.monotonic() + 10
        while "succeeded" not in events and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await ex.close()
        return events

    assert run_async(go()) == ["started", "succeeded"]
    assert (tmp_path / "count").read_text() == "x\n"
