"""cloudmesh range syntax: ``a[1-3]`` is a1,a2,a3 and ``a[1-2,5],a10`` is a1,a2,a5,a10."""

from __future__ import annotations

import re

_GROUP = re.compile(r"^(?P<pre>[^\[\]]*)\[(?P<body>[^\[\]]+)\](?P<post>[^\[\]]*)$")
_SPAN = re.compile(r"^(\d+)-(\d+)$")
MAX_EXPANSION = 100_000


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on sep, but not inside [...]."""
    parts: list[str] = []
    depth, cur = 0, []  # type: tuple[int, list[str]]
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


def _items(name: str) -> list[tuple[str, int, int, int]]:
    """The bracket's items as (text, lo, hi, width); checked, nothing expanded yet."""
    m = _GROUP.match(name)
    if not m:
        raise ValueError(f"bad range in {name!r}: write e.g. a[1-3] or a[1-2,5]")
    out: list[tuple[str, int, int, int]] = []
    for item in m.group("body").split(","):
        item = item.strip()
        span = _SPAN.match(item)
        if span:
            lo, hi = span.group(1), span.group(2)
            if len(lo) > 12 or len(hi) > 12:
                raise ValueError(f"range {item!r} in {name!r} is too large")
            if int(hi) < int(lo):
                raise ValueError(f"bad range {item!r} in {name!r}: the end is below the start")
            if int(hi) - int(lo) > MAX_EXPANSION:
                raise ValueError(f"range {item!r} in {name!r} is too large")
            width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
            out.append((item, int(lo), int(hi), width))
        elif item:
            out.append((item, 0, -1, 0))
        else:
            raise ValueError(f"empty item in range {name!r}")
    return out


def count(text: str) -> int:
    """How many names ``expand(text)`` makes, without making them. Raises ValueError."""
    total = 0
    for part in split_top(text):
        if "[" not in part and "]" not in part:
            total += 1
        else:
            total += sum(1 if hi < 0 else hi - lo + 1 for _, lo, hi, _ in _items(part))
    return total


def _limit(text: str, limit: int | None) -> None:
    if limit is not None:
        n = count(text)
        if n > limit:
            raise ValueError(f"{text[:60]!r} expands into {n} names, more than the limit of "
                             f"{limit} jobs; pass --allow-large (jobmesh run/validate) if "
                             "you mean it")


def expand_one(name: str, limit: int | None = None) -> list[str]:
    """Expand one bracketed name; a name without brackets is itself. ``limit``: refuse,
    before expanding, to make more names than this."""
    if "[" not in name and "]" not in name:
        return [name]
    items = _items(name)
    _limit(name, limit)
    m = _GROUP.match(name)
    assert m is not None  # _items checked it
    out: list[str] = []
    for item, lo, hi, width in items:
        if hi < 0:
            out.append(item)
        else:
            out.extend(str(i).zfill(width) for i in range(lo, hi + 1))
    return [f"{m.group('pre')}{x}{m.group('post')}" for x in out]


def expand(text: str, limit: int | None = None) -> list[str]:
    """Expand a comma-separated list of names with ranges, keeping order. ``limit``:
    refuse, before expanding, to make more names than this."""
    _limit(text, limit)
    out: list[str] = []
    for part in split_top(text):
        out.extend(expand_one(part))
    return out
