"""Start-up after history, and a big sweep end to end.

Usage: .venv/bin/python bench/history.py [--size N] [--repeat K] [--retention S] [--json F]

1. fresh: a 1-job workflow, the whole `jobmesh run` command in a new JOBMESH_HOME, K times;
2. sweep: an N-job `foreach` sweep (default 100,000; `exec: true`, `--allow-large`) in
   one home: wall time, ms per job, peak RSS of the whole stack (CLI, services,
   nats-server; jobs left out), sampled every 0.1 s;
3. after: the same 1-job workflow K times in the home the sweep ran in, each beside a
   fresh-home run (pairs: both see the same load).

The ratio after/fresh (median over the pairs) is what the history costs every later
command. With --retention
S, JOBMESH_EVENTS_RETENTION=S is set for the sweep's home (finished runs' events leave
the log S seconds after they end, once the monitor has them). Every figure is printed
with the 1-minute load average; the JSON goes to bench/results/history.json.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import Peak, shape, sweep_yaml  # noqa: E402

JOBMESH = str(Path(sys.executable).with_name("jobmesh"))
ONE = "name: one\nworkflow:\n  nodes:\n    a:\n      exec: 'true'\n"


def env_for(home: Path, retention: float | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["JOBMESH_HOME"] = str(home)
    if retention is not None:
        env["JOBMESH_EVENTS_RETENTION"] = str(retention)
    return env


def one_job(path: Path, home: Path, repeat: int, retention: float | None,
            fresh: bool) -> dict[str, Any]:
    walls, loads = [], []
    for i in range(repeat):
        where = home / f"fresh{i}" if fresh else home
        t0 = time.perf_counter()
        proc = subprocess.run([JOBMESH, "run", str(path), "--quiet", "--restart"],
                              env=env_for(where, retention), capture_output=True, text=True,
                              timeout=300, check=False)
        walls.append(time.perf_counter() - t0)
        loads.append(os.getloadavg()[0])
        if proc.returncode:
            raise RuntimeError(f"1-job run exited {proc.returncode}: {proc.stderr[-1500:]}")
        if fresh:
            shutil.rmtree(where, ignore_errors=True)
    return {"median_s": statistics.median(walls), "runs_s": walls, "load": loads}


def sweep(size: int, home: Path, folder: Path, retention: float | None) -> dict[str, Any]:
    a, b = shape(size)
    path = folder / "sweep.yaml"
    path.write_text(sweep_yaml(a, b))
    t0 = time.perf_counter()
    proc = subprocess.Popen([JOBMESH, "run", str(path), "--quiet", "--allow-large"],
                            env=env_for(home, retention), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peak = Peak(proc.pid)
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    peak.end()
    jobs = a * b + 2
    return {"jobs": jobs, "returncode": proc.returncode, "wall_s": round(wall, 1),
            "ms_per_job": round(1000 * wall / jobs, 2), "peak_stack_rss_mb": round(peak.total),
            "peak_rss_mb_by_process": peak.parts,
            "load": os.getloadavg()[0], "stderr_tail": err.strip()[-300:]}


def main() -> int:
    global JOBMESH
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=100_000, help="jobs in the sweep")
    ap.add_argument("--repeat", type=int, default=5, help="1-job runs before and after")
    ap.add_argument("--retention", type=float, default=None, metavar="S",
                    help="JOBMESH_EVENTS_RETENTION for the sweep's home")
    ap.add_argument("--jobmesh", default=JOBMESH, help="the jobmesh command to time "
                    "(e.g. another checkout's, for a before/after pair)")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" /
                    "history.json")
    ap.add_argument("--keep", action="store_true",
                    help="keep the sweep's home (to profile a start in it); says where")
    args = ap.parse_args()
    JOBMESH = args.jobmesh
    tmp = Path(tempfile.mkdtemp(prefix="jmbench-history-"))
    one = tmp / "one.yaml"
    one.write_text(ONE)
    home = tmp / "home"
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "size": args.size,
                           "retention": args.retention, "cpus": os.cpu_count()}
    try:
        out["fresh"] = one_job(one, tmp, args.repeat, args.retention, fresh=True)
        print(f"1 job, fresh home: {out['fresh']['median_s']:.3f} s (load "
              f"{min(out['fresh']['load']):.2f}-{max(out['fresh']['load']):.2f})", flush=True)
        out["sweep"] = sweep(args.size, home, tmp, args.retention)
        s = out["sweep"]
        print(f"sweep of {s['jobs']} jobs: exit {s['returncode']}, {s['wall_s']} s, "
              f"{s['ms_per_job']} ms/job, peak stack RSS {s['peak_stack_rss_mb']} MB "
              f"{s['peak_rss_mb_by_process']} "
              f"(load {s['load']:.2f})", flush=True)
        if args.retention is not None:
            time.sleep(args.retention)  # let the retention pass (the next start purges)
        # Fresh and after runs side by side (pairs), so both see the same load.
        pairs = [(one_job(one, tmp, 1, args.retention, fresh=True),
                  one_job(one, home, 1, args.retention, fresh=False))
                 for _ in range(args.repeat)]
        out["after"] = {"median_s": statistics.median(a["median_s"] for _, a in pairs),
                        "runs_s": [a["median_s"] for _, a in pairs],
                        "load": [a["load"][0] for _, a in pairs]}
        out["fresh_beside"] = {"median_s": statistics.median(f["median_s"] for f, _ in pairs),
                               "runs_s": [f["median_s"] for f, _ in pairs]}
        ratio = statistics.median(a["median_s"] / f["median_s"] for f, a in pairs)
        out["after_over_fresh"] = ratio
        print(f"1 job after the sweep: {out['after']['median_s']:.3f} s, fresh beside it "
              f"{out['fresh_beside']['median_s']:.3f} s: {ratio:.2f}x (median of {len(pairs)} "
              f"pairs; load {min(out['after']['load']):.2f}-{max(out['after']['load']):.2f})")
    finally:
        if args.keep:
            print(f"kept: {tmp} (JOBMESH_HOME={home})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if out.get("sweep", {}).get("returncode") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
