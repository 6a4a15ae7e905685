#!/usr/bin/env python3
"""A stand-in for IBM Spectrum LSF 10.1's bsub, bjobs and bkill, for contract tests
(no LSF can run here). It prints LSF's documented formats and really runs the jobs.

bsub < script          -> "Job <N> is submitted to queue <normal>."
bsub -J "name[1-3,5]%K" < script   a job array: each element runs with $LSB_JOBINDEX,
                        %I in -o/-e is its index (the %K limit is not enforced here)
bjobs -noheader -o "jobid stat pend_reason exit_code jobindex delimiter='|'" IDS
                        (IDS may name elements: N[i]; jobid is the array's, jobindex i)
bjobs -noheader -a -o jobid -J NAME
bkill IDS              -> "Job <N> is being terminated"
State lives in $FAKE_LSF_DIR/<id>/ (stat, exit, pid, name), elements in <id>[<i>]/.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("FAKE_LSF_DIR", "/tmp/fake-lsf"))
ID = re.compile(r"^[0-9]+(\[[0-9]+\])?$")


def job_dir(jid: str) -> Path:
    return ROOT / jid


def indices(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def bsub(args: list[str]) -> int:
    script = sys.stdin.read()
    ROOT.mkdir(parents=True, exist_ok=True)
    jid = str(len([p for p in ROOT.iterdir() if p.name.isdigit()]) + 1001)
    d = job_dir(jid)
    d.mkdir()
    (d / "script").write_text(script)
    opts = dict(re.findall(r"^#BSUB\s+(-\w+)\s+(.+)$", script, re.M))
    if "-J" in args:
        opts["-J"] = args[args.index("-J") + 1]
    m = re.match(r"^(.*)\[([0-9,-]+)\](%\d+)?$", opts.get("-J", ""))
    name = m.group(1) if m else opts.get("-J", "NONAME")
    (d / "name").write_text(name)
    (d / "stat").write_text("PEND")
    elements = [(f"{jid}[{i}]", str(i)) for i in indices(m.group(2))] if m else [(jid, "")]
    for eid, index in elements:
        e = job_dir(eid)
        e.mkdir(exist_ok=True)
        (e / "script").write_text(script)
        (e / "name").write_text(name)
        (e / "stat").write_text("PEND")
        out = opts.get("-o", "/dev/null").replace("%I", index or "0").replace("%J", jid)
        subprocess.Popen([sys.executable, __file__, "_run", eid, out,
                          opts.get("-cwd", str(Path.cwd())), index],
                         start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Job <{jid}> is submitted to queue <{opts.get('-q', 'normal')}>.")
    return 0


def run(jid: str, out: str, cwd: str, index: str = "") -> None:
    d = job_dir(jid)
    time.sleep(0.3)  # a pending moment, with a reason bjobs shows
    if (d / "stat").read_text() != "PEND":
        return
    with open(out, "ab") as log:
        env = {**os.environ, **({"LSB_JOBINDEX": index} if index else {})}
        proc = subprocess.Popen(["bash", str(d / "script")], cwd=cwd, stdout=log, env=env,
                                stderr=subprocess.STDOUT, start_new_session=True)
    (d / "pid").write_text(str(proc.pid))
    (d / "stat").write_text("RUN")
    code = proc.wait()
    if (d / "stat").read_text() == "RUN":
        (d / "exit").write_text(str(code))
        (d / "stat").write_text("DONE" if code == 0 else "EXIT")


def bjobs(args: list[str]) -> int:
    if "-J" in args:
        name = args[args.index("-J") + 1]
        found = [d.name.split("[")[0] for d in sorted(ROOT.glob("[0-9]*"))
                 if (d / "name").read_text() == name]
        for jid in dict.fromkeys(found):  # an array once, by its own id
            print(jid)
        return 0
    ids = [a for a in args if ID.match(a)]
    missing = 0
    for jid in ids:
        d = job_dir(jid)
        if not d.exists():
            print(f"Job <{jid}> is not found", file=sys.stderr)
            missing += 1
            continue
        stat = (d / "stat").read_text()
        reason = "New job is waiting for scheduling;" if stat == "PEND" else "-"
        code = (d / "exit").read_text() if (d / "exit").exists() else "-"
        master, _, index = jid.rstrip("]").partition("[")
        print(f"{master}|{stat}|{reason}|{code}|{index or 0}")
    return 255 if missing and missing == len(ids) else 0


def bkill(args: list[str]) -> int:
    for jid in [a for a in args if ID.match(a)]:
        d = job_dir(jid)
        if not d.exists():
            print(f"Job <{jid}>: No matching job found", file=sys.stderr)
            continue
        if (d / "pid").exists():
            try:
                os.killpg(int((d / "pid").read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
        (d / "exit").write_text("130")
        (d / "stat").write_text("EXIT")
        print(f"Job <{jid}> is being terminated")
    return 0


def main() -> int:
    cmd = Path(sys.argv[0]).name
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        run(*sys.argv[2:6])
        return 0
    return {"bsub": lambda: bsub(sys.argv[1:]), "bjobs": lambda: bjobs(sys.argv[1:]),
            "bkill": lambda: bkill(sys.argv[1:])}[cmd]()


if __name__ == "__main__":
    sys.exit(main())
