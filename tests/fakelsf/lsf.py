#!/usr/bin/env python3
"""A stand-in for IBM Spectrum LSF 10.1's bsub, bjobs and bkill, for contract tests
(no LSF can run here). It prints LSF's documented formats and really runs the jobs.

bsub < script          -> "Job <N> is submitted to queue <normal>."
bjobs -noheader -o "jobid stat pend_reason exit_code delimiter='|'" IDS
bjobs -noheader -a -o jobid -J NAME
bkill IDS              -> "Job <N> is being terminated"
State lives in $FAKE_LSF_DIR/<id>/ (stat, exit, pid, name).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("FAKE_LSF_DIR", "/tmp/fake-lsf"))


def job_dir(jid: str) -> Path:
    return ROOT / jid


def bsub() -> int:
    script = sys.stdin.read()
    ROOT.mkdir(parents=True, exist_ok=True)
    jid = str(len([p for p in ROOT.iterdir() if p.name.isdigit()]) + 1001)
    d = job_dir(jid)
    d.mkdir()
    (d / "script").write_text(script)
    opts = dict(re.findall(r"^#BSUB\s+(-\w+)\s+(.+)$", script, re.M))
    (d / "name").write_text(opts.get("-J", "NONAME"))
    (d / "stat").write_text("PEND")
    subprocess.Popen([sys.executable, __file__, "_run", jid, opts.get("-o", "/dev/null"),
                      opts.get("-cwd", str(Path.cwd()))], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    print(f"Job <{jid}> is submitted to queue <{opts.get('-q', 'normal')}>.")
    return 0


def run(jid: str, out: str, cwd: str) -> None:
    d = job_dir(jid)
    time.sleep(0.3)  # a pending moment, with a reason bjobs shows
    if (d / "stat").read_text() != "PEND":
        return
    with open(out, "ab") as log:
        proc = subprocess.Popen(["bash", str(d / "script")], cwd=cwd, stdout=log,
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
        for d in sorted(ROOT.glob("[0-9]*")):
            if (d / "name").read_text() == name:
                print(d.name)
        return 0
    ids = [a for a in args if a.isdigit()]
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
        print(f"{jid}|{stat}|{reason}|{code}")
    return 255 if missing and missing == len(ids) else 0


def bkill(args: list[str]) -> int:
    for jid in [a for a in args if a.isdigit()]:
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
        run(*sys.argv[2:5])
        return 0
    return {"bsub": lambda: bsub(), "bjobs": lambda: bjobs(sys.argv[1:]),
            "bkill": lambda: bkill(sys.argv[1:])}[cmd]()


if __name__ == "__main__":
    sys.exit(main())
