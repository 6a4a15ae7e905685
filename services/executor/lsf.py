"""LSF's hooks: bsub, bjobs (one call for every job), bkill.

Formats follow IBM Spectrum LSF 10.1's documented output: bsub prints
``Job <123> is submitted to queue <normal>.``; ``bjobs -noheader -o "jobid stat
pend_reason exit_code delimiter='|'"`` prints one line per job; job states are PEND,
PSUSP, RUN, USUSP, SSUSP, DONE, EXIT, UNKWN, WAIT, ZOMBI. No LSF can run here: the tests
are contract tests against stand-in commands that print these formats.
"""

from __future__ import annotations

import re
import shlex

from jobmesh.common.messages import JobReady

from .batch import DONE, FAILED, QUEUED, RUNNING, BatchSystem

OPTIONS = {"queue": "-q", "nodes": None, "ntasks": "-n", "mem": "-M", "account": "-P",
           "project": "-P"}
STATES: dict[str, tuple[str, str | None]] = {
    "PEND": (QUEUED, None), "WAIT": (QUEUED, None), "PSUSP": (QUEUED, "suspended"),
    "RUN": (RUNNING, None), "USUSP": (RUNNING, "suspended by user"),
    "SSUSP": (RUNNING, "suspended by LSF"), "DONE": (DONE, None), "EXIT": (FAILED, None),
    "UNKWN": (RUNNING, "LSF lost contact with the host"), "ZOMBI": (FAILED, "zombie job"),
}
_SUBMITTED = re.compile(r"Job <(\d+)> is submitted")


class LSF(BatchSystem):
    name = "LSF"
    directive = "#BSUB"

    def header(self, job: JobReady, rdir: str, name: str) -> list[str]:
        x = job.spec.extras
        lines = [f"#BSUB {flag} {x[attr]}" for attr, flag in OPTIONS.items()
                 if flag and x.get(attr) not in (None, "")]
        minutes = x.get("time") or (max(1, -(-int(job.spec.timeout) // 60))
                                    if job.spec.timeout else None)
        if minutes:
            lines.append(f"#BSUB -W {minutes}")
        extra = x.get("bsub") or []
        for item in [extra] if isinstance(extra, str) else extra:
            lines.append(f"#BSUB {item}")
        return lines + [f"#BSUB -J {name}", f"#BSUB -o {rdir}/job.log",
                        f"#BSUB -e {rdir}/job.log", f"#BSUB -cwd {rdir}"]

    def submit(self, script: str) -> str:
        return f"bsub < {shlex.quote(script)}"

    def parse_submit(self, out: str) -> str:
        m = _SUBMITTED.search(out)
        if not m:
            raise ValueError(out)
        return m.group(1)

    def status(self, ids: list[str]) -> str:
        return ("bjobs -noheader -o \"jobid stat pend_reason exit_code delimiter='|'\" "
                + " ".join(shlex.quote(i) for i in ids))

    def parse_status(self, out: str) -> dict[str, tuple[str, str | None]]:
        result: dict[str, tuple[str, str | None]] = {}
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 2 and parts[0].isdigit():
                reason = parts[2] if len(parts) > 2 and parts[2] not in ("-", "") else None
                result[parts[0]] = (parts[1], reason)
        return result

    def meaning(self, state: str) -> tuple[str, str | None]:
        return STATES.get(state, (RUNNING, state.lower() or None))

    def find(self, name: str) -> str:
        return f"bjobs -noheader -a -o jobid -J {shlex.quote(name)} 2>/dev/null"

    def cancel(self, ids: list[str]) -> str:
        return f"bkill {' '.join(shlex.quote(i) for i in ids)}"
