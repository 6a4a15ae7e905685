"""cloudmesh-cc label templates, rendered with ``str.format`` rules as cloudmesh-cc does.

``{attr}`` is a node attribute, with format specs (``{progress:>4}``), conversions,
indexing (``{parent[0]}``) and literal braces (``{{x}}``); ``{t0.%H--%M}`` is a time with
a strftime pattern; ``--`` stands for ``:`` (which would end a format field) and is
rendered as ``:``. Missing data renders as ``N/A``, never as an error. Durations keep
their days.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from datetime import datetime
from typing import Any

TIME_FMT = "%m/%d/%Y, %H:%M:%S"
DURATION_FMT = "%H:%M:%S"
NA = "N/A"
TIMES = {"now", "created", "t0", "t1", "tstart", "tend", "modified"}
DURATIONS = {"dt0", "dt1", "dt"}
_FIELD = re.compile(r"\{([^{}]*)\}")
_FORMATTER = string.Formatter()


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
    """Render a label as cloudmesh-cc does, with Python's ``str.format`` rules: format
    specs (``{progress:>4}``), conversions (``{name!r}``), indexing (``{parent[0]}``) and
    literal braces (``{{x}}``). ``times`` holds epoch seconds for created, t0, t1, tstart,
    tend and modified (None when unknown); ``now`` is passed in so rendering stays pure.
    ``user_vars`` are what ``{cm.VAR}`` reads. Nothing raises: what is missing or does
    not fit its format renders as ``N/A`` or as plain text."""
    environ = os.environ if environ is None else environ
    user_vars = user_vars or {}

    def field(expr: str, spec: str, conv: str | None) -> str:
        expr = expr.replace("--", ":")
        if "{" in spec:  # a nested field in the spec: {progress:>{width}}
            spec = render_label(spec, attrs, times, now, user_vars, environ)
        head, dot, fmt = expr.partition(".")
        if head == "os" and dot:
            return _apply(environ.get(fmt), spec, conv)
        if head == "cm" and dot:
            return _apply(user_vars.get(fmt), spec, conv)
        if head in ("created", "modified") and not dot and attrs.get(head) not in (None, ""):
            return _apply(attrs[head], spec, conv)  # the node's own string from the YAML
        if head in TIMES or head in DURATIONS:
            # the strftime pattern may hold a real ':' (it splits off as a format spec)
            pattern = (fmt + (":" + spec if spec else "")).replace("--", ":") if dot else ""
            return _timed(head, pattern, times, now)
        return _apply(_lookup(attrs, expr), spec, conv)

    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError:  # a lone '{' or '}': render the fields that are whole, keep the rest
        return _FIELD.sub(lambda m: field(m.group(1), "", None), template.replace("--", ":"))
    out: list[str] = []
    for literal, expr, spec, conv in parts:
        out.append(literal.replace("--", ":"))
        if expr is not None:
            out.append(field(expr, spec or "", conv))
    return "".join(out)


def _apply(value: Any, spec: str, conv: str | None) -> str:
    """format(value, spec) as str.format would; N/A for no value; never an error."""
    if value is None or value == "":
        value = NA
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if conv == "r":
        value = repr(value)
    elif conv == "a":
        value = ascii(value)
    elif conv == "s":
        value = str(value)
    if not spec:
        return str(value)
    for candidate in (value, str(value)):
        try:
            return format(candidate, spec)
        except (ValueError, TypeError):
            continue
    return str(value)


def _plain(value: Any) -> str:
    return _apply(value, "", None)


_MISSING = object()
_INDEXED = re.compile(r"^([^\[\]]*)((?:\[[^\[\]]*\])*)$")


def _lookup(attrs: Mapping[str, Any], expr: str) -> Any:
    """A value by name, dotted path (``parents.train.py.outputs.n``: keys may hold dots)
    and indexes (``parent[0]``, ``outputs[n]``); None when there is none. Only mappings
    and sequences are entered: never an object's attributes."""
    m = _INDEXED.match(expr)
    if not m:
        return None
    base, indexes = m.group(1), m.group(2)
    cur = _walk(attrs, base.split(".")) if base else _MISSING
    for key in re.findall(r"\[([^\[\]]*)\]", indexes):
        if cur is _MISSING:
            break
        cur = _index(cur, key)
    return None if cur is _MISSING else cur


def _walk(cur: Any, parts: list[str]) -> Any:
    if not parts:
        return cur
    if isinstance(cur, Mapping):
        for n in range(len(parts), 0, -1):  # the longest key first: 'train.py'
            key = ".".join(parts[:n])
            if key in cur:
                found = _walk(cur[key], parts[n:])
                if found is not _MISSING:
                    return found
    return _MISSING


def _index(cur: Any, key: str) -> Any:
    if isinstance(cur, Mapping):
        if key in cur:
            return cur[key]
        return cur[int(key)] if key.lstrip("-").isdigit() and int(key) in cur else _MISSING
    if isinstance(cur, (list, tuple)) and key.lstrip("-").isdigit():
        i = int(key)
        return cur[i] if -len(cur) <= i < len(cur) else _MISSING
    return _MISSING


def _timed(head: str, fmt: str, times: Mapping[str, float | None], now: float) -> str:
    if head in TIMES:
        t = now if head == "now" else times.get(head)
        if t is None:
            return NA
        return datetime.fromtimestamp(t).strftime(fmt or TIME_FMT)
    start: float | None
    end: float | None
    if head == "dt0":
        start, end = times.get("t0"), now
    elif head == "dt1":
        start, end = times.get("t0"), times.get("t1")
    else:  # dt: the job's duration, growing while it runs
        start, end = times.get("tstart"), times.get("tend") or now
    if start is None or end is None:
        return NA
    return format_duration(end - start, fmt or DURATION_FMT)
