"""Remote-executor benchmarks on a real loopback sshd and a real single-node Slurm.

Usage: cd /work/main && PYTHONPATH=/work/main .venv/bin/python bench/remote.py [--keep]
SSH: logins and sessions for 100 concurrent jobs on one host, sessions per poll, and the
per-job overhead against the local executor. Slurm: squeue/sacct calls per poll with 200
jobs queued, and a chain of 10 jobs against plain `sbatch --dependency=afterok`.
Needs root, sshd, slurmctld/slurmd. Writes bench/results/remote.json.
"""
from __future__ import annotations

import argparse  # noqa: E401
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jobmesh.common.settings import Settings  # noqa: E402
from jobmesh.executor.probe import probe_one  # noqa: E402
from tests.slurmcluster import Slurm  # noqa: E402
from tests.sshhosts import Lab  # noqa: E402

JOBMESH = str(Path(sys.executable).with_name("jobmesh"))
SESSION = re.compile(rb"Starting session: (\S+)")
SPAN = re.compile(rb"(Starting|Close) session: .* port (\d+ id \d+)")
STALL = 30.0  # seconds without a status call that mean the Slurm poller is gone
SHIM = r"""#!/bin/sh
k=other  # a probe is one `sh -s` reading its script on stdin; its pid names the poll
case "$(tr '\0' ' ' < /proc/$PPID/cmdline 2>/dev/null)" in *"sh -s"*) k=probe;; esac
echo "$(date +%s.%N) {name} $PPID $k" >> "$JM_CALLS"
exec /usr/bin/{name} "$@"
"""
console = Console(width=160)


def workflow(folder: Path, name: str, nodes: dict, deps: list[str] | None = None) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "workflow": {"nodes": nodes,
                                                               "dependencies": deps or []}}))
    return path


def log(env: dict) -> str:
    return (Path(env["JOBMESH_HOME"]) / "out.log").read_text(errors="replace")


def start(wf: Path, env: dict, parallel: int) -> tuple[subprocess.Popen, float, dict]:
    home = wf.with_suffix(".home")
    home.mkdir()
    env = {**env, "JOBMESH_HOME": str(home)}
    with open(home / "out.log", "w") as out:
        proc = subprocess.Popen([JOBMESH, "run", str(wf), "--quiet", "--parallel", str(parallel)],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, time.time(), env


def finish(proc: subprocess.Popen, t0: float, env: dict, name: str, timeout: float,
           tick=None) -> dict:
    """Wait for `jobmesh run` (its process group is stopped on a timeout or when tick()
    raises); the workflow's timings from `jobmesh status`."""
    try:
        while proc.poll() is None:
            if time.time() - t0 > timeout:
                raise RuntimeError(f"{name}: jobmesh run timed out after {timeout:.0f}s")
            if tick:
                tick()
            time.sleep(0.2)
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
                time.sleep(10)
        raise
    wall = time.time() - t0
    st = subprocess.run([JOBMESH, "status", name, "-o", "json"], env=env, capture_output=True,
                        text=True, timeout=120)
    if st.returncode:
        raise RuntimeError(f"{name}: jobmesh status failed: {st.stderr[-800:]}")
    s = json.loads(st.stdout)
    bad = {j: (v["state"], v.get("reason")) for j, v in s["jobs"].items()
           if v["state"] != "SUCCEEDED"}
    if proc.returncode or bad:
        raise RuntimeError(f"{name}: rc {proc.returncode}, not succeeded: "
                           f"{dict(list(bad.items())[:3])}\n{log(env)[-1500:]}")
    ts = lambda v: datetime.fromisoformat(v).timestamp()  # noqa: E731
    end = max(ts(j["ended"]) for j in s["jobs"].values())
    return {"wall_s": wall, "workflow_s": end - min(ts(j["started"]) for j in s["jobs"].values()),
            "submit_to_end_s": end - ts(s["created"]), "jobs": len(s["jobs"])}


def watch(path: Path, seconds: float) -> list[list]:
    """[opened, closed] (seconds from the window's start) of the sessions sshd starts in it."""
    pos, buf, t0, open_, spans = path.stat().st_size, b"", time.monotonic(), {}, []
    while (now := time.monotonic()) - t0 < seconds:
        with open(path, "rb") as f:
            f.seek(pos)
            buf += f.read()
            pos = f.tell()
        *lines, buf = buf.split(b"\n")
        for what, key in (m.groups() for m in map(SPAN.search, lines) if m):
            if what == b"Starting":
                open_[key] = len(spans)
                spans.append([round(now - t0, 3), None])
            elif key in open_:
                spans[open_.pop(key)][1] = round(now - t0, 3)
        time.sleep(0.01)
    return spans


def bench_ssh(tmp: Path, rows: list, out: dict) -> None:
    lab = Lab(tmp / "lab")
    try:
        host = lab.loopback("loop")
        poll_max, env = Settings().poll_max, dict(os.environ)
        # 1a: 100 concurrent `sleep 1` jobs on one host: logins and sessions.
        l0, s0 = host.logins(), len(SESSION.findall(host.log.read_bytes()))
        wf = workflow(tmp, "sshsleep", {f"j{i:03d}": lab.node(host, exec="sleep 1")
                                        for i in range(100)})
        r = finish(*start(wf, env, 100), "sshsleep", 900)
        kinds = Counter(k.decode() for k in SESSION.findall(host.log.read_bytes())[s0:])
        n = sum(kinds.values())
        out["ssh_sleep"] = {**r, "logins": host.logins() - l0, "sessions": n,
                            "sessions_per_job": n / 100, "session_kinds": dict(kinds)}
        lab_ = "SSH 100 x sleep 1, 1 host"
        rows += [(lab_, "SSH logins", str(host.logins() - l0)),
                 (lab_, "SSH sessions opened: total (kinds) / per job",
                  f"{n} ({', '.join(f'{k} {v}' for k, v in kinds.items())}) / {n / 100:.2f}"),
                 (lab_, "workflow / wall s", f"{r['workflow_s']:.1f} / {r['wall_s']:.1f}")]
        # 1b: 100 jobs wait on a gate; count the sessions sshd opens while they all wait.
        gate, window, l0 = tmp / "gate", 12.0, host.logins()
        wf = workflow(tmp, "sshgate", {f"g{i:03d}": lab.node(
            host, exec=f"while [ ! -e {gate} ]; do sleep 0.5; done") for i in range(100)})
        proc, t0, env2 = start(wf, env, 100)
        try:
            while len(list((lab.root / "remote" / host.name / "sshgate").glob("*/*/*/pid"))) < 100:
                if proc.poll() is not None or time.time() - t0 > 600:
                    raise RuntimeError("sshgate: the 100 gated jobs did not all start")
                time.sleep(0.1)
            time.sleep(1.5)  # let the last launches' sessions close
            spans = watch(host.log, window)
        finally:
            gate.touch()
        finish(proc, t0, env2, "sshgate", 600)
        # One session per poll: sessions never overlap, and the executor sleeps its poll
        # interval (>= 0.2 s, backing off to poll_max) between one closing and the next.
        idle = [round(b[0] - a[1], 3) for a, b in zip(spans, spans[1:], strict=False) if a[1]]
        one = bool(spans) and all(s[1] for s in spans[:-1]) and all(g >= 0.2 for g in idle)
        out["ssh_gate"] = {"window_s": window, "sessions": spans, "idle_between_s": idle,
                           "poll_max_s": poll_max, "one_session_per_poll": one,
                           "logins": host.logins() - l0}
        lab_ = "SSH poll, 100 jobs waiting"
        rows += [(lab_, f"sessions in a {window:.0f} s window: [opened, closed] s",
                  f"{len(spans)}: {spans}"),
                 (lab_, "idle between sessions s (poll interval, cap "
                  f"{poll_max:.1f})", ", ".join(f"{x:.2f}" for x in idle) or "-"),
                 (lab_, "sessions per poll of all 100 jobs", "1" if one else "MORE THAN 1"),
                 (lab_, "SSH logins", str(host.logins() - l0))]
        # 1c: per-job overhead, 100 x `true` over SSH vs local.
        res = {}
        for kind, node in (("local", {"exec": "true"}), ("ssh", lab.node(host, exec="true"))):
            wf = workflow(tmp, f"true{kind}", {f"t{i:03d}": node for i in range(100)})
            res[kind] = finish(*start(wf, env, 100), f"true{kind}", 900)
        out["ssh_vs_local"] = res
        for key, label in (("workflow_s", "workflow (first start→last end)"),
                           ("wall_s", "end-to-end command")):
            s, lo = res["ssh"][key], res["local"][key]
            rows.append(("100 x true: ssh vs local", label,
                         f"ssh {s:.2f} s ({1000 * s / 100:.0f} ms/job) vs local {lo:.2f} s "
                         f"({1000 * lo / 100:.0f} ms/job), ratio {s / lo:.1f}x"))
    finally:
        lab.stop()


def queue_run(slurm: Slurm, tmp: Path, n: int, shims: Path) -> dict:
    """n independent `sleep 2` Slurm jobs at once; every squeue/sacct call is logged."""
    calls = tmp / f"calls{n}.log"
    calls.touch()
    env = {**slurm.env, "PATH": f"{shims}:{slurm.env['PATH']}", "JM_CALLS": str(calls)}
    wf = workflow(tmp, f"slurm{n}", {f"s{i:03d}": {
        "kind": "slurm", "exec": "sleep 2", "workdir": str(tmp / "slurm-runs")} for i in range(n)})
    depth, res = [0, 0.0], {}

    def tick() -> None:  # queue depth (real squeue, not counted); a dead poller
        if time.time() - depth[1] > 2:
            q = slurm.run("/usr/bin/squeue", "-h", "-t", "PENDING,RUNNING", "-o", "%i")
            depth[:] = [max(depth[0], len(q.stdout.split())), time.time()]
        if time.time() - max(calls.stat().st_mtime, t0 + 30) > STALL:
            dirs = sorted((tmp / "slurm-runs" / f"slurm{n}").glob("*/*/1"))
            size = sum(len(probe_one(i, SimpleNamespace(rdir=str(d), offset=0))) + 1
                       for i, d in enumerate(dirs))  # the probe jobmesh would send now
            raise RuntimeError(f"jobmesh stalled: no squeue call for {STALL:.0f} s ({STALL / 5:.0f}"
                               f"x the 5 s poll cap); its probe script for {len(dirs)} jobs is "
                               f"{size} bytes (Linux limits one argv string to 131072 bytes, "
                               "MAX_ARG_STRLEN). " + " | ".join(set(re.findall(
                                   r"\w*Error: .*", log(env)))))
    proc, t0, env = start(wf, env, n)
    try:
        res = finish(proc, t0, env, f"slurm{n}", 1500, tick)
    except RuntimeError as exc:
        res = {"error": str(exc)}
        slurm.run("scancel", "--user=root")
    ev = [(float(t), c, p, k) for t, c, p, k in map(str.split, calls.read_text().splitlines())]
    polls = sorted({p: t for t, _, p, k in reversed(ev) if k == "probe"}.values())  # 1 shell=1 poll
    edges = polls + [float("inf")]
    per = [sum(edges[i] <= t < edges[i + 1] for t, *_ in ev) for i in range(len(polls))]
    gaps = [b - a for a, b in zip(polls, polls[1:], strict=False)]
    return {**res, "jobs": n, "max_queue_depth": depth[0],
            "calls": dict(Counter(c for _, c, _, _ in ev)), "polls": len(polls),
            "squeue_per_probe_shell_max": max(Counter(p for *_, p, k in ev if k == "probe")
                                              .values(), default=0),
            "calls_per_poll_hist": dict(Counter(per)), "calls_per_poll_max": max(per, default=0),
            "calls_per_poll_mean": statistics.mean(per) if per else 0,
            "poll_gap_s": [min(gaps, default=0), statistics.median(gaps or [0]),
                           max(gaps, default=0)]}


CHAIN_ONLY = False


def bench_slurm(tmp: Path, rows: list, out: dict) -> None:
    slurm = Slurm(tmp / "slurm")
    try:
        slurm.start()
        (shims := tmp / "shims").mkdir()
        for name in ("squeue", "sacct"):
            (shims / name).write_text(SHIM.format(name=name))
            (shims / name).chmod(0o755)
        # 2a: 200 queued jobs; if jobmesh stalls there, also the largest size that probes.
        for n in () if CHAIN_ONLY else (200, 150):
            s = out[f"slurm_{n}"] = queue_run(slurm, tmp, n, shims)
            lab = f"Slurm {n} x sleep 2"
            rows += [(lab, "max jobs in queue (sampled) / polls",
                      f"{s['max_queue_depth']} / {s['polls']}"),
                     (lab, "squeue / sacct calls", f"{s['calls'].get('squeue', 0)} / "
                                                   f"{s['calls'].get('sacct', 0)}"),
                     (lab, "calls per poll interval: max / mean",
                      f"{s['calls_per_poll_max']} / {s['calls_per_poll_mean']:.2f} "
                      f"(histogram {s['calls_per_poll_hist']})"),
                     (lab, "poll gap s: min / median / max",
                      " / ".join(f"{v:.2f}" for v in s["poll_gap_s"])),
                     (lab, "result", s.get("error", "")[:300] or
                      f"SUCCEEDED, workflow {s['workflow_s']:.1f} s, wall {s['wall_s']:.1f} s")]
            if "error" not in s:
                break
        # 2b: chain of 10 trivial jobs, jobmesh (waiting in jobmesh, and with native
        # dependencies) vs plain sbatch --dependency=afterok.
        names = [f"c{i}" for i in range(10)]
        runs = {}
        for name, native in (("chain10", False), ("chain10native", True)):
            wf = workflow(tmp, name, {n: {"kind": "slurm", "exec": "true", "workdir": str(
                tmp / "slurm-runs"), "slurm_dependencies": native} for n in names},
                [",".join(names)])
            runs[name] = finish(*start(wf, slurm.env, 10), name, 600)
        jm = runs["chain10"]
        ids, t0 = [], time.time()
        for _ in range(10):
            dep = [f"--dependency=afterok:{ids[-1]}"] if ids else []
            res = slurm.run("sbatch", "--parsable", *dep, f"--output={tmp}/%j.out", "--wrap=true")
            if res.returncode:
                raise RuntimeError(f"sbatch failed: {res.stderr}")
            ids.append(res.stdout.strip().split(";")[0])
        while True:
            q = slurm.run("squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i %T")
            states = dict(line.split() for line in q.stdout.splitlines() if line.strip())
            if len(states) == 10 and set(states.values()) == {"COMPLETED"}:
                break
            if set(states.values()) & {"FAILED", "CANCELLED", "TIMEOUT"} or time.time() - t0 > 300:
                raise RuntimeError(f"plain sbatch chain did not complete: {states}")
            time.sleep(0.1)
        plain = time.time() - t0
        out["slurm_chain10"] = {"jobmesh": jm, "jobmesh_native": runs["chain10native"],
                                "plain_sbatch_s": plain}
        for run, how in (("chain10", ""), ("chain10native", " (slurm_dependencies)")):
            for key, lab in (("submit_to_end_s", "jobmesh submit→last end"),
                             ("wall_s", "jobmesh end-to-end command")):
                v = runs[run][key]
                rows.append(("Slurm chain of 10 x true", f"{lab}{how} vs plain sbatch",
                             f"{v:.2f} s ({1000 * v / 10:.0f} ms/job) vs {plain:.2f} s "
                             f"({1000 * plain / 10:.0f} ms/job), ratio {v / plain:.2f}x"))
    finally:
        slurm.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--only", choices=("ssh", "slurm", "chain"),
                    help="one part: ssh, slurm, or only the Slurm chain")
    args = ap.parse_args()
    global CHAIN_ONLY
    CHAIN_ONLY = args.only == "chain"
    tmp = Path(tempfile.mkdtemp(prefix="jmbench-remote-"))
    rows: list[tuple[str, str, str]] = []
    out: dict = {"date": datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                 "loadavg_at_start": os.getloadavg()}
    errors = {}
    for name, fn in (("ssh", bench_ssh), ("slurm", bench_slurm)):
        if args.only and name != {"chain": "slurm"}.get(args.only, args.only):
            continue
        console.print(f"[bold]{name}[/] benchmarks (work in {tmp})")
        try:
            fn(tmp, rows, out)
        except Exception as exc:  # report and go on with the other part
            console.print(f"[red]{name} FAILED:[/] {exc}")
            errors[name] = str(exc)
    table = Table("benchmark", "metric", "value", title="jobmesh remote executors")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    md = "\n".join(["| benchmark | metric | value |", "|---|---|---|"]
                   + [f"| {a} | {b} | {c} |" for a, b, c in rows])
    print(f"\nMarkdown:\n\n{md}\n")
    out.update(errors=errors, markdown=md)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    result = ROOT / "bench" / "results" / f"remote{'-' + args.only if args.only else ''}.json"
    result.write_text(json.dumps(out, indent=2))
    console.print(f"results: {result}")
    if args.keep or errors:
        console.print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
