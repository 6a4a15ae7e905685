"""Substitute the placeholders jobmesh knows, and nothing else.

``{parents.<job>.outputs.<key>}`` and ``{var}`` for known variables are replaced; shell
syntax such as ``${HOME}``, ``{a,b}`` or ``{}`` in a command is left alone.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

_PARENT = re.compile(r"(?<!\$)\{parents\.([A-Za-z0-9_.-]+?)\.outputs\.([A-Za-z0-9_-]+)\}")
_VAR = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingOutput(KeyError):
    def __init__(self, job: str, key: str):
        super().__init__(f"{job}.outputs.{key}")
        self.job, self.key = job, key


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def parent_refs(text: str) -> list[tuple[str, str]]:
    """The (job, key) pairs a string refers to."""
    return [(m.group(1), m.group(2)) for m in _PARENT.finditer(text)]


def substitute(text: str, outputs: Mapping[str, Mapping[str, Any]],
               variables: Mapping[str, Any] | None = None) -> str:
    """Replace known placeholders. Raises MissingOutput when a parent has no such output."""

    def parent(m: re.Match[str]) -> str:
        job, key = m.group(1), m.group(2)
        if job not in outputs or key not in outputs[job]:
            raise MissingOutput(job, key)
        return as_text(outputs[job][key])

    # Variables first, so text a parent published is never read as a placeholder.
    if variables:
        text = _VAR.sub(lambda m: as_text(variables[m.group(1)]) if m.group(1) in variables
                        else m.group(0), text)
    return _PARENT.sub(parent, text)
