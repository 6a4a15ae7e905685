"""HPC benchmark: a foreach sweep on a real single-node Slurm, as job arrays and as one
sbatch per job, with the controller calls counted.

Usage (root, with slurmctld/slurmd installed, as tests/slurmcluster.py needs):
  nice .venv/bin/python bench/hpc.py [--size 2000] [--interval 30] [--modes arrays,single]
                                     [--cpus 64] [--json FILE]

Per mode it starts a fresh Slurm (slurmctld + slurmd, claiming --cpus CPUs so tiny jobs
run side by side) and a fresh JOBMESH_HOME, puts PATH shims in front of sbatch, squeue,
sacct and scontrol that log each call's time, and runs ``jobmesh run`` of a sweep of
``--size`` elements (each ``echo``) with ``--parallel size`` and ``squeue_interval``.
It reports:
  submit s      first sbatch call to the last one's end;
  total s       the whole ``jobmesh run``;
  sbatch, squeue, other   controller calls (other: sacct, scontrol);
  calls/min     all controller calls per minute of the run;
  detect p50/p95 s        exit file written (its mtime) -> the job's SUCCEEDED time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import slurmcluster  # noqa: E402

JOBMESH = str(Path(sys.executable).with_name("jobmesh"))
COMMANDS = ("sbatch", "squeue", "sacct", "scontrol")


def shims(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for cmd in COMMANDS:
        real = shutil.which(cmd)
        if not real:
            continue
        shim = folder / cmd
        shim.write_text(f"#!/bin/sh\nt=$(date +%s.%N)\n{real} \"$@\"; rc=$?\n"
                        f"echo \"$t $(date +%s.%N)\" >> {folder}/{cmd}.calls\nexit $rc\n")
        shim.chmod(0o755)
    return folder


def calls(folder: Path, cmd: str) -> list[tuple[float, float]]:
    f = folder / f"{cmd}.calls"
    if not f.exists():
        return []
    return [(float(a), float(b)) for a, b in (ln.split() for ln in f.read_text().splitlines())]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def one(mode: str, size: int, interval: float, cpus: int, base: Path) -> dict[str, Any]:
    work = base / mode
    cluster = slurmcluster.Slurm(work / "slurm", cpus=cpus)
    cluster.start()
    try:
        shimdir = shims(work / "shims")
        node: dict[str, Any] = {"kind": "slurm", "workdir": str(work / "runs"),
                                "foreach": {"i": f"[1-{size}]"}, "exec": "echo {i}",
                                "squeue_interval": interval}
        if mode == "single":
            node["array"] = False
        wf = work / "sweep.yaml"
        wf.write_text(yaml.safe_dump({"name": "sweep", "workflow": {
            "nodes": {"sweep": node}, "dependencies": []}}, sort_keys=False))
        home = work / "home"
        env = {**cluster.env, "JOBMESH_HOME": str(home),
               "PATH": f"{shimdir}:{cluster.env['PATH']}"}
        env.pop("JOBMESH_SQUEUE_INTERVAL", None)
        t0 = time.time()
        res = subprocess.run([JOBMESH, "run", str(wf), "--quiet", "--parallel", str(size)],
                             env=env, capture_output=True, text=True, timeout=3600 + 2 * size)
        total = time.time() - t0
        if res.returncode != 0:
            raise RuntimeError(f"{mode}: jobmesh run failed:\n{res.stderr[-2000:]}")
        st = subprocess.run([JOBMESH, "status", "sweep", "-o", "json"], env=env,
                            capture_output=True, text=True, timeout=120)
        jobs = json.loads(st.stdout)["jobs"]
        latency = []
        for job in jobs.values():
            ended = datetime.fromisoformat(job["ended"]).timestamp()
            exit_file = Path(job["run_dir"], "exit")
            latency.append(ended - exit_file.stat().st_mtime)
        sb = calls(shimdir, "sbatch")
        counts = {cmd: len(calls(shimdir, cmd)) for cmd in COMMANDS}
        subprocess.run([JOBMESH, "down"], env=env, capture_output=True, timeout=60)
        return {
            "mode": mode, "size": size, "squeue_interval": interval,
            "submit_s": round(max(b for _, b in sb) - min(a for a, _ in sb), 2) if sb else 0,
            "total_s": round(total, 1), "sbatch": counts["sbatch"],
            "squeue": counts["squeue"], "other": counts["sacct"] + counts["scontrol"],
            "calls_per_min": round(sum(counts.values()) / (total / 60), 1),
            "detect_p50_s": round(statistics.median(latency), 2),
            "detect_p95_s": round(pct(latency, 0.95), 2),
            "succeeded": sum(1 for j in jobs.values() if j["state"] == "SUCCEEDED"),
            "load": os.getloadavg()[0],
        }
    finally:
        cluster.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--cpus", type=int, default=64)
    ap.add_argument("--modes", default="arrays,single")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    why = slurmcluster.available()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="jm-bench-hpc-") as tmp:
        for mode in args.modes.split(","):
            rows.append(one(mode, args.size, args.interval, args.cpus, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    cols = ["mode", "size", "submit_s", "total_s", "sbatch", "squeue", "other",
            "calls_per_min", "detect_p50_s", "detect_p95_s"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
