"""LSF's hooks: bsub (single jobs and job arrays), bjobs (one call for every job), bkill.

Formats follow IBM Spectrum LSF 10.1's documented output: bsub prints
``Job <123> is submitted to queue <normal>.``; ``bjobs -noheader -o "jobid stat
pend_reason exit_code jobindex delimiter='|'"`` prints one line per job (an array
element's index in ``jobindex``, 0 for other jobs); job states are PEND,
PSUSP, RUN, USUSP, SSUSP, DONE, EXIT, UNKWN, WAIT, ZOMBI. Arrays: ``bsub -J
"name[1-N]%K"``, ``%I`` in output paths, ``$LSB_JOBINDEX`` in the job, elements addressed as
``id[index]``. No LSF can run here: the tests are contract tests against stand-in
commands that print these formats.
"""

from __future__ import annotations

import re
import shlex

from jobmesh.common.messages import JobReady

from .batchsys import DONE, FAILED, QUEUED, RUNNING, BatchSystem

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
        return ("bjobs -noheader -o \"jobid stat pend_reason exit_code jobindex "
                "delimiter='|'\" " + " ".join(shlex.quote(i) for i in ids))

    def parse_status(self, out: str) -> dict[str, tuple[str, str | None]]:
        result: dict[str, tuple[str, str | None]] = {}
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 2 and parts[0].isdigit():
                reason = parts[2] if len(parts) > 2 and parts[2] not in ("-", "") else None
                index = parts[4] if len(parts) > 4 else "0"
                jid = f"{parts[0]}[{index}]" if index not in ("0", "-", "") else parts[0]
                result[jid] = (parts[1], reason)
        return result

    def meaning(self, state: str) -> tuple[str, str | None]:
        return STATES.get(state, (RUNNING, state.lower() or None))

    def find(self, name: str) -> str:
        return f"bjobs -noheader -a -o jobid -J {shlex.quote(name)} 2>/dev/null"

    def cancel(self, ids: list[str]) -> str:
        return f"bkill {' '.join(shlex.quote(i) for i in ids)}"

    # -- job arrays (array.py) ----------------------------------------------------------
    arrays = True
    index_var = "LSB_JOBINDEX"
    first_index = 1
    element_format = "%s[%s]"

    def array_header(self, shared: list[str], name: str, group: str) -> list[str]:
        keep = [ln for ln in shared if not ln.startswith(("#BSUB -J ", "#BSUB -o ",
                                                          "#BSUB -e ", "#BSUB -cwd "))]
        return keep + [f"#BSUB -o {group}/%I/job.log", f"#BSUB -e {group}/%I/job.log",
                       f"#BSUB -cwd {group}"]

    def array_submit(self, script: str, name: str, spec: str,
                     limit: int | None) -> str:
        throttle = f"%{limit}" if limit else ""
        return f'bsub -J "{name}[{spec}]{throttle}" < {shlex.quote(script)}'

    def element_id(self, array_id: str, index: int) -> str:
        return f"{array_id}[{index}]"

    def find_array(self, name_expr: str) -> str:
        return f"bjobs -noheader -a -o jobid -J {name_expr} 2>/dev/null | head -n 1"

    def max_array(self) -> str:
        return ("bparams -a 2>/dev/null | "
                "sed -n 's/^ *MAX_JOB_ARRAY_SIZE *= *\\([0-9][0-9]*\\).*/\\1/p'")
