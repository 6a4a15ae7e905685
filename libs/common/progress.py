"""Parse the lines jobs print into their logs.

cloudmesh-cc:  ``# cloudmesh status=running progress=50 pid=123``
jobmesh:       ``# jobmesh progress=50 msg="epoch 3"`` and ``# jobmesh output key=value``
The marker may appear anywhere in a line, as cloudmesh-cc reads it: ``0: # cloudmesh ...``
(``srun --label``), ``[INFO] # cloudmesh ...`` (a logger), ``# # cloudmesh ...``
(cloudmesh-common's banner). The last progress line wins. Anything else in the log is
plain output.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

_PREFIXES = ("# cloudmesh ", "# jobmesh ")


def _marked(line: str) -> str | None:
    """The line from its first progress marker on, or None. A marker is ``# cloudmesh``
    or ``# jobmesh`` followed by a blank (``# cloudmeshx`` is not one)."""
    found = [at for at in (line.find(p) for p in _PREFIXES) if at >= 0]
    return line[min(found):] if found else None


@dataclass(frozen=True)
class ProgressLine:
    progress: float | None = None
    status: str | None = None
    msg: str | None = None
    pid: int | None = None


@dataclass(frozen=True)
class OutputLine:
    key: str
    value: Any


def json_or_text(text: str) -> Any:
    """A value that is valid JSON (number, list, object, true...) stays JSON; else text."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return text


def parse_line(line: str) -> ProgressLine | OutputLine | None:
    """One log line -> what it reports, or None for ordinary output."""
    marked = _marked(line.strip() + " ")
    if marked is None:
        return None
    line = marked.strip()
    body = line.split(" ", 2)[2] if line.count(" ") >= 2 else ""
    if line.startswith("# jobmesh output "):
        key, eq, value = body.partition(" ")[2].partition("=")
        key = key.strip()
        if not eq or not key or not key.replace("_", "").replace("-", "").isalnum():
            return None
        return OutputLine(key, json_or_text(value.strip()))
    try:
        words = shlex.split(body)
    except ValueError:
        words = body.split()
    fields: dict[str, str] = {}
    for word in words:
        k, eq, v = word.partition("=")
        if eq:
            fields[k] = v
    if not fields:
        return None
    pct: float | None = None
    if "progress" in fields:
        try:
            pct = max(0.0, min(100.0, float(fields["progress"])))
        except ValueError:
            pct = None
    pid = int(fields["pid"]) if fields.get("pid", "").isdigit() else None
    status = fields.get("status")
    if pct is None and status is None and "msg" not in fields:
        return None
    return ProgressLine(pct, status, fields.get("msg"), pid)


@dataclass
class LogScan:
    """What a stretch of log said: the last progress, the outputs, a reported failure."""

    progress: float | None = None
    msg: str | None = None
    status: str | None = None
    outputs: dict[str, Any] | None = None
    lines: int = 0
    updates: list[tuple[float | None, str | None]] = field(default_factory=list)


def scan(text: str, into: LogScan | None = None) -> LogScan:
    """Fold whole lines of log text into a LogScan (the last line wins)."""
    result = into or LogScan()
    for raw in text.splitlines():
        result.lines += 1
        if "# cloudmesh" not in raw and "# jobmesh" not in raw:
            continue
        parsed = parse_line(raw)
        if isinstance(parsed, ProgressLine):
            if parsed.progress is not None:
                result.progress = parsed.progress
            if parsed.msg is not None:
                result.msg = parsed.msg
            if parsed.status is not None:
                result.status = parsed.status
            if parsed.progress is not None or parsed.msg is not None:
                result.updates.append((result.progress, result.msg))
        elif isinstance(parsed, OutputLine):
            result.outputs = {**(result.outputs or {}), parsed.key: parsed.value}
    return result
