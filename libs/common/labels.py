"""cloudmesh-cc label templates.

``{attr}`` is a node attribute; ``{t0.%H--%M}`` a time with a strftime pattern; ``--``
stands for ``:`` (which would end a format field) and is rendered as ``:``. Missing data
renders as ``N/A``, never as an error. Durations keep their days.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

TIME_FMT = "%m/%d/%Y, %H:%M:%S"
DURATION_FMT = "%H:%M:%S"
NA = "N/A"
TIMES = {"now", "created", "t0", "t1", "tstart", "tend", "modified"}
DURATIONS = {"dt0", "dt1", "dt"}
_FIELD = re.compile(r"\{([^{}]*)\}")


def format_duration(seconds: float, fmt: str = DURATION_FMT) -> str:
    """strftime-like for a span: %d days, %H hours (0-23), %M, %S. Days are never dropped:
    a pattern without %d gets them as a 'Nd ' prefix."""
    total = int(max(0, seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if "%d" not in fmt and days:
        fmt = f"{days}d " + fmt
    return (fmt.replace("%d", str(days)).replace("%H", f"{hours:02d}")
            .replace("%M", f"{minutes:02d}").replace("%S", f"{secs:02d}"))


def render_label(template: str, attrs: Mapping[str, Any], times: Mapping[str, float | None],
                 now: float, user_vars: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> str:
    """Render a label. ``times`` holds epoch seconds for created, t0, t1, tstart, tend and
    modified (None when unknown); ``now`` is passed in so rendering stays pure."""
    environ = os.environ if environ is None else environ
    user_vars = user_vars or {}

    def field(m: re.Match[str]) -> str:
        expr = m.group(1).replace("--", ":")
        head, dot, fmt = expr.partition(".")
        if head == "os" and dot:
            return str(environ.get(fmt, NA))
        if head == "cm" and dot:
            value = user_vars.get(fmt)
            return NA if value is None else str(value)
        if head in TIMES or head in DURATIONS:
            return _timed(head, fmt if dot else "", times, now)
        value = _lookup(attrs, expr)
        return NA if value is None or value == "" else _plain(value)

    return _FIELD.sub(field, template.replace("--", ":"))


def _plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _lookup(attrs: Mapping[str, Any], expr: str) -> Any:
    """Attribute lookup with dotted paths, e.g. parents.a.outputs.n."""
    if expr in attrs:
        return attrs[expr]
    cur: Any = attrs
    for part in expr.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def _timed(head: str, fmt: str, times: Mapping[str, float | None], now: float) -> str:
    if head in TIMES:
        t = now if head == "now" else times.get(head)
        if t is None:
            return NA
        return datetime.fromtimestamp(t).strftime(fmt or TIME_FMT)
    if head == "dt0":
        start, end = times.get("t0"), now
    elif head == "dt1":
        start, end = times.get("t0"), times.get("t1")
    else:  # dt: the job's duration, growing while it runs
        start, end = times.get("tstart"), times.get("tend") or now
    if start is None or end is None:
        return NA
    return format_duration(end - start, fmt or DURATION_FMT)
