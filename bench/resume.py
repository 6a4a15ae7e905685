"""Resume benchmark: a 200-job workflow rerun after changing one leaf, against its first run.

Usage: .venv/bin/python bench/resume.py [--chains 20] [--depth 10] [--work 0.1] [--keep]

The workflow is ``chains`` independent chains of ``depth`` jobs; each job sleeps ``work``
seconds and writes a line to a counter file. Timed with ``jobmesh run -q`` (wall clock,
stack start included): the first run, a rerun after changing the command of the last job
of chain 0 (a leaf: 1 job runs, 199 are reused), and a rerun with nothing changed. The
counter file proves how many jobs really ran each time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
JOBMESH = str(Path(sys.executable).with_name("jobmesh"))


def write(folder: Path, chains: int, depth: int, work: float, leaf: str) -> Path:
    nodes = {}
    for c in range(chains):
        for d in range(depth):
            name = f"c{c}_{d}"
            tag = leaf if (c, d) == (0, depth - 1) else "v1"
            nodes[name] = {
                "exec": f'sleep {work}; echo {name} >> "$JOBMESH_WORKFLOW_DIR/ran"; '
                        f"echo {tag}",
                **({"after": [f"c{c}_{d - 1}"]} if d else {})}
    path = folder / "resume.yaml"
    path.write_text(yaml.safe_dump({"name": "resume", "workflow": {"nodes": nodes}},
                                   sort_keys=False))
    return path


def timed_run(home: Path, wf: Path, parallel: int) -> float:
    env = {**os.environ, "JOBMESH_HOME": str(home)}
    t0 = time.perf_counter()
    res = subprocess.run([JOBMESH, "run", str(wf), "-q", "-p", str(parallel)], env=env,
                         capture_output=True, text=True, timeout=1200, check=False)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"jobmesh run failed ({res.returncode}):\n{res.stderr}")
    return took


def ran(folder: Path) -> int:
    path = folder / "ran"
    n = len(path.read_text().split()) if path.exists() else 0
    path.unlink(missing_ok=True)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=20)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--work", type=float, default=0.1, help="seconds each job sleeps")
    ap.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", action="store_true", help="keep the JOBMESH_HOME")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jobmesh-resume-"))
    home, folder = tmp / "home", tmp / "wf"
    home.mkdir()
    folder.mkdir()
    jobs = args.chains * args.depth
    try:
        wf = write(folder, args.chains, args.depth, args.work, "v1")
        first = timed_run(home, wf, args.parallel)
        ran_first = ran(folder)
        write(folder, args.chains, args.depth, args.work, "v2")
        changed = timed_run(home, wf, args.parallel)
        ran_changed = ran(folder)
        same = timed_run(home, wf, args.parallel)
        ran_same = ran(folder)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "jobs": jobs, "work_s": args.work, "parallel": args.parallel,
        "first_s": round(first, 2), "one_leaf_changed_s": round(changed, 2),
        "nothing_changed_s": round(same, 2),
        "ratio_changed_vs_first": round(changed / first, 3),
        "ran": {"first": ran_first, "one_leaf_changed": ran_changed,
                "nothing_changed": ran_same},
        "loadavg": os.getloadavg(), "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / "resume-latest.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"\n| run | jobs that ran | wall time |\n|---|---|---|\n"
          f"| first | {ran_first} | {first:.2f} s |\n"
          f"| one leaf changed | {ran_changed} | {changed:.2f} s "
          f"({changed / first:.1%} of the first) |\n"
          f"| nothing changed | {ran_same} | {same:.2f} s |")


if __name__ == "__main__":
    main()
