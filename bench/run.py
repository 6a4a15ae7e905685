"""jobmesh overhead benchmark: `jobmesh run` against a plain-subprocess floor runner.

Usage: .venv/bin/python bench/run.py [--quick] [--repeat K] [--big N] [--only W1,W2]
                                     [--settle S] [--keep] [--vs OTHER_JOBMESH]
Every job is `true`, so all measured time is orchestration and process-spawn overhead.
Each workload also runs through bench/bus_floor.py, the least the fixed architecture does
(a Python process with the same libraries, one durable JetStream message each way per job):
its ratio to the floor is what no change inside jobmesh can go below.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import networkx as nx
import yaml
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
JOBMESH = str(Path(sys.executable).with_name("jobmesh"))
JOB_PROCS = {"sh", "bash", "true"}  # short-lived job processes; everything else is the stack
FAILURES = (RuntimeError, OSError, ValueError, KeyError, subprocess.SubprocessError)
console = Console(width=max(150, shutil.get_terminal_size().columns))


# ---------------------------------------------------------------- workloads: {job: [parents]}
def chain(n):
    return {f"j{i}": [f"j{i - 1}"] if i else [] for i in range(n)}


def fanout(n):
    middle = [f"p{i}" for i in range(n)]
    return {"start": [], **{p: ["start"] for p in middle}, "end": middle}


def layers(depth, width):
    return {f"l{d}_{w}": [f"l{d - 1}_{v}" for v in range(width)] if d else []
            for d in range(depth) for w in range(width)}


def write_yaml(name, parents, folder):
    """cloudmesh-cc style workflow; dependencies as `after:` lists."""
    nodes = {j: {"exec": "true", **({"after": ps} if ps else {})} for j, ps in parents.items()}
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "workflow": {"nodes": nodes}}, sort_keys=False))
    return path


# ---------------------------------------------------------------- floor runner
def run_floor(parents, workers):
    """N threads run `bash -c true` per job; a job starts once all its parents finished."""
    g = nx.DiGraph([(p, j) for j, ps in parents.items() for p in ps])
    g.add_nodes_from(parents)
    order = {j: i for i, j in enumerate(nx.topological_sort(g))}
    missing = {j: g.in_degree(j) for j in g}
    ready, lock, done, failed = queue.PriorityQueue(), threading.Lock(), [0], []
    for j in g:
        if not missing[j]:
            ready.put((order[j], j))

    def worker():
        while (job := ready.get()[1]) is not None:
            if subprocess.run(["bash", "-c", "true"], timeout=60, check=False).returncode:
                failed.append(job)
            with lock:
                done[0] += 1
                for c in g.successors(job):
                    missing[c] -= 1
                    if not missing[c]:
                        ready.put((order[c], c))
                if done[0] == len(g):  # all done: one stop marker per worker
                    for _ in range(workers):
                        ready.put((-1, None))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise RuntimeError(f"floor runner: jobs failed: {failed[:5]}")
    return time.perf_counter() - t0


# ---------------------------------------------------------------- jobmesh runner
def proc_tree(root):
    """{pid: comm} of root and all its descendants, from /proc/*/stat."""
    kids, comm = {}, {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            head, rest = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        comm[int(d)] = head.split("(", 1)[1]
        kids.setdefault(int(rest.split()[1]), []).append(int(d))
    tree, todo = {}, [root]
    while todo:
        p = todo.pop()
        if p in comm:
            tree[p] = comm[p]
            todo += kids.get(p, [])
    return tree


def rss_kb(pid):
    try:
        m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


def sample_memory(proc, peak, stop):
    """Every 50 ms sum VmRSS over the jobmesh process tree; keep the peak."""
    while proc.poll() is None and not stop.is_set():
        tree = proc_tree(proc.pid)
        rss = {p: rss_kb(p) for p in tree}
        stack = [p for p in tree if tree[p] not in JOB_PROCS]
        peak["stack_kb"] = max(peak.get("stack_kb", 0), sum(rss[p] for p in stack))
        peak["tree_kb"] = max(peak.get("tree_kb", 0), sum(rss.values()))
        peak["procs"] = sorted(set(peak.get("procs", [])) | {tree[p] for p in stack})
        time.sleep(0.05)


def kill_tree(proc):
    """Stop our jobmesh child and its descendants (nats-server lives in its own session)."""
    pids = list(proc_tree(proc.pid))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


def cpu_idle(seconds=1.0):
    """The share of CPU time the whole machine spent idle over the next ``seconds``."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return f[3] + f[4], sum(f)
    (i0, t0), _ = sample(), time.sleep(seconds)
    i1, t1 = sample()
    return (i1 - i0) / max(1, t1 - t0)


def settle(max_wait, idle=0.9):
    """Wait (up to max_wait s) for two seconds in which the machine is at least ``idle``
    idle, so other sessions' bursts do not land in the measurement; returns the idle
    share seen last."""
    end, seen = time.monotonic() + max_wait, cpu_idle(2.0)
    while seen < idle and time.monotonic() < end:
        seen = cpu_idle(2.0)
    return seen


def ts(s):
    return datetime.fromisoformat(s).timestamp()


def jobmesh_env(home):
    """jobmesh's environment: its own home, and bytecode caching on (an installed jobmesh
    has its .pyc files; PYTHONDONTWRITEBYTECODE would recompile ~50 modules every run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "JOBMESH_HOME": str(home)}


def run_startup(path, repeat, vs=None):
    """A 1-job workflow, whole `jobmesh run` command in a fresh home, against a Python
    process that runs `bash -c true` (the floor of any Python workflow manager). With
    ``vs`` (another jobmesh command) that one runs after each pair too: (floors, walls,
    loads, its walls)."""
    floor_cmd = [sys.executable, "-c", "import subprocess; subprocess.run(['bash', '-c', 'true'])"]
    walls, floors, loads, others = [], [], [], []
    for cmd in [JOBMESH] + ([vs] if vs else []):  # warm: compile bytecode once
        subprocess.run([cmd, "--help"], env=jobmesh_env(tempfile.gettempdir()), check=False,
                       capture_output=True)

    def one(cmd):
        home = tempfile.mkdtemp(prefix="jmbench-home-")
        t0 = time.perf_counter()
        proc = subprocess.run([cmd, "run", str(path), "--quiet"], env=jobmesh_env(home),
                              capture_output=True, text=True, timeout=120, check=False)
        wall = time.perf_counter() - t0
        for ports in Path(home, "nats").glob("nats-server_*.ports"):
            wait_gone(int(ports.stem.rsplit("_", 1)[1]))
        shutil.rmtree(home, ignore_errors=True)
        if proc.returncode:
            raise RuntimeError(f"{cmd} run (1 job) exited {proc.returncode}: "
                               f"{proc.stderr[-2000:]}")
        return wall

    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(floor_cmd, check=True)
        floors.append(time.perf_counter() - t0)
        walls.append(one(JOBMESH))
        loads.append(os.getloadavg()[0])
        if vs:
            others.append(one(vs))
    return floors, walls, loads, others


def run_bus_floor(path, workers):
    """Whole-command wall of bench/bus_floor.py: the workflow run over JetStream by the
    least the fixed architecture needs (the same libraries, one durable message each way
    per job), nothing of jobmesh's own."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(BENCH / "bus_floor.py"), str(path),
                           "--parallel", str(workers)], capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode:
        raise RuntimeError(f"bus floor exited {proc.returncode}: {proc.stderr[-2000:]}")
    wall = time.perf_counter() - t0
    m = re.search(r"server pid (\d+)", proc.stderr)
    if m:
        wait_gone(int(m.group(1)))
    return wall


def wait_gone(pid, timeout=10):
    """(Untimed) wait until a command's nats-server, which it asked to stop and did not
    wait for, has exited (or is a zombie), so the next measurement has the cores."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except (OSError, IndexError):
            return
        time.sleep(0.02)


def run_jobmesh(path, name, workers, timeout, keep, memory=False, jobmesh=None):
    home = tempfile.mkdtemp(prefix="jmbench-home-")
    env = jobmesh_env(home)
    cmd = [jobmesh or JOBMESH, "run", str(path), "--quiet", "--parallel", str(workers)]
    peak, stop = {}, threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if memory:
        threading.Thread(target=sample_memory, args=(proc, peak, stop), daemon=True).start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        _, err = proc.communicate()
        raise RuntimeError(f"jobmesh timed out after {timeout}s on {name} (JOBMESH_HOME {home})"
                           f"\n--- stderr:\n{err[-3000:]}") from None
    finally:
        stop.set()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"jobmesh exited {proc.returncode} on {name} (JOBMESH_HOME {home})"
                           f"\n--- stderr:\n{err[-3000:]}\n--- stdout (tail):\n{out[-1500:]}")
    for ports in Path(home, "nats").glob("nats-server_*.ports"):
        wait_gone(int(ports.stem.rsplit("_", 1)[1]))
    m = re.search(r"^state: (.+)$", err + out, re.MULTILINE)
    if m and Path(m.group(1)).exists():
        st = json.loads(Path(m.group(1)).read_text())
    else:  # fall back to the status command
        st = json.loads(subprocess.run([JOBMESH, "status", name, "-o", "json"], env=env, check=True,
                                       capture_output=True, text=True, timeout=120).stdout)
    bad = [j for j, v in st["jobs"].items() if v["state"] != "SUCCEEDED"]
    if st["state"] != "SUCCEEDED" or bad:
        raise RuntimeError(f"jobmesh run {name} ended {st['state']}; not succeeded: {bad[:5]}")
    jobs = st["jobs"].values()
    end = max(ts(j["ended"]) for j in jobs)
    res = {"wall": wall, "workflow": end - min(ts(j["started"]) for j in jobs),
           "submit_to_end": end - ts(st["created"]), "jobs": len(st["jobs"]),
           "load_avg_1min": os.getloadavg()[0]}
    if memory:
        res.update(peak_stack_mb=peak.get("stack_kb", 0) / 1024,
                   peak_tree_mb=peak.get("tree_kb", 0) / 1024,
                   stack_processes=peak.get("procs", []))
    if keep:
        res["home"] = home
    else:
        shutil.rmtree(home, ignore_errors=True)
    return res


def retry_once(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except FAILURES as e:  # jobmesh is under active development: one retry, then report
        console.print(f"[yellow]run failed, retrying once:[/] {e}")
        return fn(*args, **kw)


# ---------------------------------------------------------------- report
COLS = {"workload": "workload", "jobs": "jobs", "floor_s": "floor s", "wall_s": "jobmesh wall s",
        "workflow_s": "jobmesh workflow s", "submit_to_end_s": "submit→end s",
        "floor_ms_job": "floor ms/job", "wall_ms_job": "jm wall ms/job",
        "workflow_ms_job": "jm workflow ms/job", "ratio_workflow": "ratio workflow",
        "ratio_wall": "ratio wall", "bus_s": "bus floor s", "ratio_bus": "bus floor ratio",
        "wall_over_bus": "jm wall / bus floor", "load": "load 1 min"}


def fmt(key, v):
    if key in ("workload", "jobs"):
        return str(v)
    if v is None or (isinstance(v, float) and v != v):  # not measured for this row
        return "-"
    if key == "vs_pair":
        return f"{v:.2f}x"
    if key.startswith(("ratio", "vs_ratio", "wall_over")):
        return f"{v:.1f}x"
    if key == "load":
        return f"{min(v):.1f}-{max(v):.1f}" if min(v) != max(v) else f"{v[0]:.1f}"
    return f"{v:.1f}" if key.endswith("ms_job") else f"{v:.2f}"


def bus_cols(bus, floor, wall):
    """The bus floor's columns: its median wall, its ratio to the floor, jobmesh's to it."""
    if not bus:
        return {}
    b = statistics.median(bus)
    return {"bus_s": b, "ratio_bus": b / floor, "wall_over_bus": wall / b, "bus_runs": bus}


def summarize(label, parents, floor, jm, vs=(), bus=()):
    k, f = len(parents), statistics.median(floor)
    w, wf, se = (statistics.median(r[key] for r in jm)
                 for key in ("wall", "workflow", "submit_to_end"))
    row = {"workload": label, "jobs": k, "floor_s": f, "wall_s": w, "workflow_s": wf,
           "submit_to_end_s": se, "floor_ms_job": 1000 * f / k, "wall_ms_job": 1000 * w / k,
           "workflow_ms_job": 1000 * wf / k, "ratio_workflow": wf / f, "ratio_wall": w / f,
           "load": [r["load_avg_1min"] for r in jm], "floor_runs": floor, "jobmesh_runs": jm,
           **bus_cols(bus, f, w)}
    if vs:
        row.update(vs_pairs([r["wall"] for r in jm], [r["wall"] for r in vs], f))
        row["vs_runs"] = list(vs)
    return row


def vs_pairs(walls, others, floor):
    """The --vs columns: the other command's median wall, its ratio to the floor, and the
    median of the pair by pair ratios jobmesh / other (pairs ran back to back)."""
    pairs = [a / b for a, b in zip(walls, others)]
    return {"vs_wall_s": statistics.median(others),
            "vs_ratio_wall": statistics.median(others) / floor,
            "vs_pair": statistics.median(pairs), "vs_pair_range": [min(pairs), max(pairs)]}


VS_COLS = {"vs_wall_s": "--vs wall s", "vs_ratio_wall": "--vs ratio wall",
           "vs_pair": "wall / --vs wall (pairs)"}


def report(rows, big, n, repeat):
    """Print the rich table and the markdown version; return the markdown."""
    cols = {**COLS, **(VS_COLS if any("vs_pair" in r for r in rows) else {})}
    cells = [[fmt(k, r.get(k)) for k in cols] for r in rows]
    t = Table(title=f"jobmesh vs plain-subprocess floor ({n} workers, median of {repeat}; "
                    "ratio wall is the whole `jobmesh run` command)")
    for h in cols.values():
        t.add_column(h, justify="left" if h == "workload" else "right")
    for c in cells:
        t.add_row(*c)
    console.print(t)
    if big["completed"] is None:
        line = "Big fan-out: not run (--big 0)."
    elif big["completed"]:
        line = (f"Fan-out start -> {big['size']} -> end: completed in {big['wall']:.1f} s end to "
                f"end ({big['workflow']:.1f} s in-workflow, floor {big['floor_s']:.1f} s); "
                f"peak RSS of {' + '.join(big['stack_processes'])}: {big['peak_stack_mb']:.0f} MB.")
    else:
        line = f"Fan-out start -> {big['size']} -> end: FAILED ({big['error'].splitlines()[0]})"
    console.print(line)
    md = ["| " + " | ".join(cols.values()) + " |", "|" + "---|" * len(cols)]
    md = "\n".join(md + ["| " + " | ".join(c) + " |" for c in cells] + ["", line])
    print(f"\nMarkdown (for docs/benchmarks.md):\n\n{md}\n")
    return md


# ---------------------------------------------------------------- main
def main():
    global JOBMESH
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repeat, 1,000-job fan-out")
    ap.add_argument("--repeat", type=int, help="repeats per measurement (default 3, quick 1)")
    ap.add_argument("--big", type=int, help="size of the big fan-out (default 5000, quick "
                    "1000; 0 skips it)")
    ap.add_argument("--keep", action="store_true", help="keep each run's JOBMESH_HOME")
    ap.add_argument("--jobmesh", default=JOBMESH, help="the jobmesh command to time (e.g. "
                    "another checkout's, for a before/after pair)")
    ap.add_argument("--only", help="comma-separated workload ids to run, e.g. W1,W2,1job")
    ap.add_argument("--vs", metavar="OTHER_JOBMESH", help="a second jobmesh command (e.g. the "
                    "tree before a change) run right after each jobmesh run, for pair by pair "
                    "ratios in the same conditions")
    ap.add_argument("--settle", type=float, default=0, metavar="S",
                    help="before each measurement wait up to S s for a mostly idle machine "
                    "(a shared machine's bursts otherwise dominate; idle share recorded)")
    args = ap.parse_args()
    JOBMESH = args.jobmesh
    repeat = args.repeat or (1 if args.quick else 3)
    big_n = args.big if args.big is not None else (1000 if args.quick else 5000)
    n = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="jmbench-")
    console.print(f"jobmesh bench: {n} workers, {repeat} repeat(s), big fan-out {big_n}, "
                  f"workflows in {tmp}")

    rows, errors = [], {}
    workloads = {"W1 chain 50": chain(50), "W2 fan-out 200": fanout(200),
                 "W3 layers 10x20": layers(10, 20)}
    only = {w.strip().upper() for w in args.only.split(",")} if args.only else None
    for label, parents in workloads.items():
        if only and label.split()[0] not in only:
            continue
        name = label.split()[0].lower()
        path, floor, jm, vs, bus = write_yaml(name, parents, tmp), [], [], [], []
        timeout = 120 + 2 * len(parents)
        try:
            for i in range(repeat):
                idle = settle(args.settle) if args.settle else None
                floor.append(run_floor(parents, n))
                jm.append(retry_once(run_jobmesh, path, name, n, timeout, args.keep))
                jm[-1]["idle_before"] = idle
                bus.append(run_bus_floor(path, n))
                other = ""
                if args.vs:
                    vs.append(retry_once(run_jobmesh, path, name, n, timeout, args.keep,
                                         jobmesh=args.vs))
                    other = f", --vs wall {vs[-1]['wall']:.2f}s"
                console.print(f"  {label} #{i + 1}: floor {floor[-1]:.2f}s, bus floor "
                              f"{bus[-1]:.2f}s, jobmesh wall "
                              f"{jm[-1]['wall']:.2f}s, workflow {jm[-1]['workflow']:.2f}s, "
                              f"ratio {jm[-1]['workflow'] / floor[-1]:.1f}x{other}, "
                              f"load {jm[-1]['load_avg_1min']:.2f}")
        except FAILURES as e:
            console.print(f"[red]{label} FAILED:[/] {e}")
            errors[label] = str(e)
            continue
        rows.append(summarize(label, parents, floor, jm, vs, bus))

    if not only or "1JOB" in only:
        path = write_yaml("one", {"a": []}, tmp)
        try:
            if args.settle:
                settle(args.settle)
            floors, walls, loads, others = run_startup(path, max(5, repeat), args.vs)
            bus = [run_bus_floor(path, n) for _ in range(max(5, repeat))]
            f, w = statistics.median(floors), statistics.median(walls)
            rows.append({"workload": "1 job (start-up)", "jobs": 1, "floor_s": f, "wall_s": w,
                         "workflow_s": float("nan"), "submit_to_end_s": float("nan"),
                         "floor_ms_job": 1000 * f, "wall_ms_job": 1000 * w,
                         "workflow_ms_job": float("nan"), "ratio_workflow": float("nan"),
                         "ratio_wall": w / f, "load": loads, "floor_runs": floors,
                         "jobmesh_runs": walls, **bus_cols(bus, f, w),
                         **(vs_pairs(walls, others, f) if others else {})})
            console.print(f"  1 job: floor {f:.3f}s, bus floor {statistics.median(bus):.3f}s, "
                          f"jobmesh {w:.3f}s ({w / f:.1f}x), "
                          f"load {min(loads):.2f}-{max(loads):.2f}")
        except FAILURES as e:
            console.print(f"[red]1-job start-up FAILED:[/] {e}")
            errors["1 job"] = str(e)

    if big_n > 0:
        console.print(f"big fan-out: start -> {big_n} -> end (once, sampling RSS every 50 ms)")
        path = write_yaml("big", fanout(big_n), tmp)
        if args.settle:
            settle(args.settle)
        try:
            big = retry_once(run_jobmesh, path, "big", n, 600 + big_n, args.keep, memory=True)
            big.update(completed=True, floor_s=run_floor(fanout(big_n), n))
        except FAILURES as e:
            console.print(f"[red]big fan-out FAILED:[/] {e}")
            big = {"completed": False, "error": str(e)}
    else:
        big = {"completed": None}
    big["size"] = big_n

    md = report(rows, big, n, repeat)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=BENCH, check=False,
                         capture_output=True, text=True)
    out = {"date": datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
           "cpus": n, "load_avg": os.getloadavg(), "python": platform.python_version(),
           "commit": git.stdout.strip(), "quick": args.quick, "settle": args.settle,
           "repeat": repeat, "vs": args.vs, "workloads": rows, "big_fanout": big,
           "errors": errors, "markdown": md}
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S") + ("-quick" if args.quick else "")
    for f in (results / "latest.json", results / f"{stamp}.json"):  # latest + a kept copy
        f.write_text(json.dumps(out, indent=2))
    console.print(f"results: {results / 'latest.json'} (copy: {stamp}.json)")
    return 1 if errors or big["completed"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
