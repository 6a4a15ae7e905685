"""The probe: one shell script per host and poll that reports every job there (exit
file, pid liveness, cancel and reason files, the log bytes past each job's stored offset,
outputs), so watching N jobs costs one round trip, not N."""

from __future__ import annotations

import shlex
from typing import Any, Protocol


class Watched(Protocol):
    rdir: str    # the job's run directory there
    offset: int  # log bytes already read
    side: Any    # a sidelog.SideLogs or None: <script>.log files to read as well

PROBE_BYTES = 256 * 1024   # log bytes per job per probe


# The probe: a shell function defined once per probe, then one short line per job. The
# script goes to `sh -s` on standard input: one argument may not exceed 128 KiB on Linux.
PROBE_FN = (
    "p() { printf '\\n@@J %s\\n' \"$1\"; d=$2\n"
    'if [ -d "$d" ]; then\n'
    '  [ -s "$d/exit" ] && { read -r x < "$d/exit"; printf "exit=%s\\n" "$x"; }\n'
    '  if [ -s "$d/pid" ]; then echo pid=1; read -r x < "$d/pid"; kill -0 "$x" 2>/dev/null '
    "&& echo alive=1; fi\n"
    '  [ -f "$d/started" ] && echo started=1\n'
    '  [ -f "$d/cancel" ] && printf "cancel=%s\\n" "$(head -c 300 "$d/cancel" | tr "\\n" " '
    '" | sed "s/ *$//")"\n'
    '  [ -f "$d/reason" ] && printf "reason=%s\\n" "$(head -c 2000 "$d/reason" | tr "\\n" '
    '" ")"\n'
    # Only a log that grew past the stored offset is read (most polls read none).
    '  n=$(wc -c < "$d/job.log" 2>/dev/null); [ "${n:-0}" -ge "$3" ] && { printf "log="; '
    f'tail -c +"$3" "$d/job.log" | head -c {PROBE_BYTES} | base64 | tr -d "\\n"; echo; }}\n'
    # Then the side logs (sidelog.py): "name first-byte" pairs after the log's offset.
    '  shift 3; while [ $# -ge 2 ]; do n=$(wc -c < "$d/$1" 2>/dev/null); '
    '[ "${n:-0}" -ge "$2" ] && { printf "side:%s=" "$1"; '
    f'tail -c +"$2" "$d/$1" | head -c {PROBE_BYTES} | base64 | tr -d "\\n"; echo; }}; '
    "shift 2; done\n"
    '  if [ -s "$d/exit" ] && [ -f "$d/outputs.json" ]; then printf "outputs="; '
    'head -c 65536 "$d/outputs.json" | base64 | tr -d "\\n"; echo; fi\n'
    "else echo missing=1; fi; }\n"
)


def probe_one(i: int, rj: Watched) -> str:
    side = getattr(rj, "side", None)
    extra = "".join(f" {shlex.quote(name)} {first}" for name, first in
                    (side.probe_args() if side is not None else []))
    return f"p {i} {shlex.quote(rj.rdir)} {rj.offset + 1}{extra}"


def probe_script(jobs: list[Any], before: str = "") -> bytes:
    return (before + PROBE_FN + "\n".join(probe_one(i, rj) for i, rj in enumerate(jobs))
            + "\n").encode()


def parse(out: bytes) -> dict[int, dict[str, str]]:
    result: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in out.decode("utf-8", "replace").splitlines():
        if raw.startswith("@@J "):
            current = result.setdefault(int(raw[4:].strip()), {})
        elif current is not None and "=" in raw:
            k, _, v = raw.partition("=")
            current[k] = v
    return result
