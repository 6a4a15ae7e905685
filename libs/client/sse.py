"""Server-Sent Events, parsed: the gateway's /events and /log/stream endpoints.

Only what the gateway sends is needed (``event:``, ``id:``, ``data:`` and ``:`` comments
as keep-alives), but the parser follows the SSE rules for those fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """One SSE event. ``data`` is the decoded JSON (the raw text if it is not JSON);
    ``id`` is the gateway's stream sequence for 'job' events, else None."""

    event: str
    data: Any
    id: int | None = None


KEEPALIVE = Event("keep-alive", None)


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Turn the lines of an event stream into events. Comments (the gateway's
    keep-alives) come out as ``KEEPALIVE`` so a reader can check its deadline."""
    name, ident = "message", None
    data: list[str] = []
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    value: Any = json.loads(text)
                except ValueError:
                    value = text
                yield Event(name, value, ident)
            name, data, ident = "message", [], None
            continue
        if line.startswith(":"):
            yield KEEPALIVE
            continue
        field, _, value_text = line.partition(":")
        value_text = value_text.removeprefix(" ")
        if field == "event":
            name = value_text
        elif field == "data":
            data.append(value_text)
        elif field == "id":
            ident = int(value_text) if value_text.isdigit() else None
