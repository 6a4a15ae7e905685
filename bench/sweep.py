"""Control-flow benchmark: expand and schedule a 10,000-job foreach sweep.

Usage: .venv/bin/python bench/sweep.py [--size N] [--parallel P] [--e2e M] [--json F]

Pure part (no servers, no processes), each phase timed and its peak Python memory
measured with tracemalloc:
  load      parse + validate + expand a YAML whose `train` node is a foreach of
            N = a x b values (e.g. 100 x 100), between a `prep` and a `report` node;
  schedule  drive the scheduler core to the end: decide, then feed back `ready`,
            `started` and `succeeded` for every released job (P at once), as the shell
            and the executors would;
  fold      fold the same log into the monitor's snapshot;
  dynamic   the same N jobs made by a dynamic foreach: one JobsExpanded event (its size
            on the wire), applied by the core and the fold.
End to end (--e2e M): `jobmesh run` of an M-job sweep of `exec: true` on the embedded
stack (real nats-server, real processes), wall time and peak RSS of the process tree.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from jobmesh.common.loader import parse_workflow
from jobmesh.common.messages import (
    JobReadied,
    JobsExpanded,
    JobStarted,
    JobSucceeded,
    WorkflowSubmitted,
)
from jobmesh.monitor.fold import Fold
from jobmesh.scheduler.core import ExpandJob, ReleaseJob, SchedulerCore

JOBMESH = str(Path(sys.executable).with_name("jobmesh"))


def sweep_yaml(a: int, b: int, dynamic: bool = False) -> str:
    train: dict[str, Any] = {"exec": "true # train {lr} {seed}",
                             "env": {"LR": "{lr}", "SEED": "{seed}"}}
    if dynamic:
        train["foreach"] = {"lr": "{parents.prep.outputs.lrs}", "seed": list(range(b))}
    else:
        train["foreach"] = {"lr": [f"0.{i:04d}" for i in range(a)], "seed": list(range(b))}
    doc = {"name": "sweep", "workflow": {
        "nodes": {"prep": {"exec": "true"}, "train": train, "report": {"exec": "true"}},
        "dependencies": ["prep,train,report"]}}
    return yaml.safe_dump(doc, sort_keys=False)


def measure(label: str, fn: Callable[[], Any], results: dict[str, Any]) -> Any:
    """Run fn twice: timed, then under tracemalloc (which slows it down ~10x) for its
    peak of Python memory. fn must start afresh each time."""
    gc.collect()
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    results[label] = {"seconds": round(seconds, 3), "peak_mb": round(peak / 2**20, 1)}
    return value


def shape(size: int) -> tuple[int, int]:
    """a x b == size with a the largest divisor not above the square root."""
    a = next(d for d in range(math.isqrt(size), 0, -1) if size % d == 0)
    return a, size // a


def drive(core: SchedulerCore, log: list[Any], parallel: int) -> int:
    """Run the workflow to its end through the core; returns the decide rounds."""
    now, rounds = 1.0, 0
    while True:
        out = core.decide(now)
        rounds += 1
        released = []
        for ins in out:
            common = {"workflow": ins.workflow, "run": ins.run, "job": ins.job,
                      "attempt": ins.attempt, "time": now}
            if isinstance(ins, ExpandJob):
                msg: Any = JobsExpanded(jobs=ins.jobs, edges=ins.edges, **common)
            elif isinstance(ins, ReleaseJob):
                msg = JobReadied(pool=ins.pool, **common)
                released.append(common)
            else:
                raise RuntimeError(f"unexpected instruction {ins}")
            log.append(msg)
            core.apply(msg)
        if not released:
            if core.runs["sweep"].finished:
                return rounds
            raise RuntimeError("stuck: nothing released and not finished")
        for common in released:
            for msg in (JobStarted(**common), JobSucceeded(
                    **common, outputs={"lrs": LRS} if common["job"] == "prep" else None)):
                log.append(msg)
                core.apply(msg)
        now += 1


LRS: list[str] = []


def pure(size: int, parallel: int) -> dict[str, Any]:
    a, b = shape(size)
    LRS[:] = [f"0.{i:04d}" for i in range(a)]
    res: dict[str, Any] = {"jobs_in_sweep": a * b, "shape": f"{a} x {b}", "parallel": parallel}
    text = sweep_yaml(a, b)
    wf = measure("load", lambda: parse_workflow(text, "sweep.yaml", "/tmp",
                                                allow_large=True).workflow, res)
    res["jobs"], res["edges"] = len(wf.jobs), len(wf.edges)
    sub = WorkflowSubmitted(workflow="sweep", run="r1", spec=wf, parallel=parallel, time=0.0)
    res["submit_message_mb"] = round(len(sub.model_dump_json()) / 2**20, 2)
    log: list[Any] = [sub]

    def schedule() -> int:
        del log[1:]
        core = SchedulerCore()
        core.apply(sub)
        return drive(core, log, parallel)

    res["decide_rounds"] = measure("schedule", schedule, res)
    res["log_messages"] = len(log)

    def fold() -> Any:
        f = Fold()
        for seq, msg in enumerate(log, 1):
            f.apply(seq, msg)
        return f.snaps["sweep"]

    snap = measure("fold", fold, res)
    assert snap.state.value == "SUCCEEDED" and len(snap.jobs) == len(wf.jobs), snap.state
    res["snapshot_mb"] = round(len(snap.model_dump_json()) / 2**20, 2)

    dyn = parse_workflow(sweep_yaml(a, b, dynamic=True), "sweep.yaml", "/tmp",
                         allow_large=True).workflow
    dsub = WorkflowSubmitted(workflow="sweep", run="r1", spec=dyn, parallel=parallel, time=0.0)
    dlog: list[Any] = [dsub]

    def dynamic() -> Any:
        del dlog[1:]
        core = SchedulerCore()
        core.apply(dsub)
        drive(core, dlog, parallel)
        f = Fold()
        for seq, msg in enumerate(dlog, 1):
            f.apply(seq, msg)
        return f.snaps["sweep"]

    dsnap = measure("dynamic", dynamic, res)
    assert dsnap.state.value == "SUCCEEDED" and len(dsnap.jobs) == len(wf.jobs)
    (exp,) = [m for m in dlog if isinstance(m, JobsExpanded)]
    res["jobs_expanded_event_mb"] = round(len(exp.model_dump_json()) / 2**20, 2)
    return res


def e2e(size: int, parallel: int) -> dict[str, Any]:
    a, b = shape(size)
    with tempfile.TemporaryDirectory(prefix="jobmesh-sweep-") as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(sweep_yaml(a, b))
        env = {**os.environ, "JOBMESH_HOME": str(Path(tmp) / "home")}
        t0 = time.perf_counter()
        proc = subprocess.Popen([JOBMESH, "run", str(path), "--quiet", "--allow-large",
                                 "--parallel", str(parallel)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak = Peak(proc.pid)
        _, err = proc.communicate()
        wall = time.perf_counter() - t0
        peak.end()
        state = json.loads(next((Path(tmp) / "home" / "runs" / "sweep").glob(
            "*/state.json")).read_text()) if proc.returncode in (0, 1) else {}
    return {"jobs": a * b + 2, "parallel": parallel, "returncode": proc.returncode,
            "state": state.get("state"), "wall_s": round(wall, 1),
            "peak_stack_rss_mb": round(peak.total, 1), "peak_rss_mb_by_process": peak.parts,
            "load": os.getloadavg()[0], "stderr_tail": err.strip()[-300:]}


def tree_rss_mb(root: int) -> float:
    """RSS of a process and its descendants, jobs (sh/bash/true) left out."""
    return sum(tree_rss_parts(root).values())


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def tree_rss_parts(root: int) -> dict[str, float]:
    """RSS (MB) of a process and its descendants by process name (``jobmesh``: the CLI
    and the services it runs; ``nats-server``), jobs (sh/bash/true) left out.

    A child that has the same command line as its parent is a fork that has not yet
    exec'd a job: it shares the parent's memory (vfork: the very pages), so counting its
    RSS would count the CLI twice (~1 sample in 12 during a sweep caught one)."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1: stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
        names[int(d)] = name
        parents[int(d)] = ppid
    parts: dict[str, float] = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        if names.get(pid) in ("sh", "bash", "true"):
            continue
        if pid != root and names.get(pid) == names.get(parents.get(pid, 0)) and \
                _cmdline(pid) == _cmdline(parents[pid]):
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        key = names.get(pid, "?")
                        parts[key] = parts.get(key, 0.0) + int(line.split()[1]) / 1024
        except OSError:
            pass
    return parts


class Peak:
    """The peak of a process tree's RSS, sampled every 0.1 s in a thread: the whole and
    each process name's own peak."""

    def __init__(self, root: int) -> None:
        self.root, self.total = root, 0.0
        self.parts: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.is_set():
            parts = tree_rss_parts(self.root)
            self.total = max(self.total, sum(parts.values()))
            for k, v in parts.items():
                self.parts[k] = round(max(self.parts.get(k, 0.0), v), 1)
            time.sleep(0.1)

    def end(self) -> None:
        self.stop.set()
        self.thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=10_000, help="jobs in the sweep (a x b)")
    ap.add_argument("--parallel", type=int, default=256, help="jobs released at once")
    ap.add_argument("--e2e", type=int, default=0, help="also run an M-job sweep end to end")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" /
                    "sweep.json")
    args = ap.parse_args()
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    out["pure"] = pure(args.size, args.parallel)
    out["pure"]["process_max_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out["pure"], indent=2), flush=True)
    if args.e2e:
        out["e2e"] = e2e(args.e2e, os.cpu_count() or 1)
        print(json.dumps(out["e2e"], indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
