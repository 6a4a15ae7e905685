"""cloudmesh range syntax: ``a[1-3]`` is a1,a2,a3 and ``a[1-2,5],a10`` is a1,a2,a5,a10."""

from __future__ import annotations

import re

_GROUP = re.compile(r"^(?P<pre>[^\[\]]*)\[(?P<body>[^\[\]]+)\](?P<post>[^\[\]]*)$")
_SPAN = re.compile(r"^(\d+)-(\d+)$")
MAX_EXPANSION = 100_000


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on sep, but not inside [...]."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def expand_one(name: str) -> list[str]:
    """Expand one bracketed name; a name without brackets is itself."""
    if "[" not in name and "]" not in name:
        return [name]
    m = _GROUP.match(name)
    if not m:
        raise ValueError(f"bad range in {name!r}: write e.g. a[1-3] or a[1-2,5]")
    out: list[str] = []
    for item in m.group("body").split(","):
        item = item.strip()
        span = _SPAN.match(item)
        if span:
            lo, hi = span.group(1), span.group(2)
            if int(hi) < int(lo):
                raise ValueError(f"bad range {item!r} in {name!r}: the end is below the start")
            if int(hi) - int(lo) > MAX_EXPANSION:
                raise ValueError(f"range {item!r} in {name!r} is too large")
            width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
            out.extend(str(i).zfill(width) for i in range(int(lo), int(hi) + 1))
        elif item:
            out.append(item)
        else:
            raise ValueError(f"empty item in range {name!r}")
    return [f"{m.group('pre')}{x}{m.group('post')}" for x in out]


def expand(text: str) -> list[str]:
    """Expand a comma-separated list of names with ranges, keeping order."""
    out: list[str] = []
    for part in split_top(text):
        out.extend(expand_one(part))
    return out
