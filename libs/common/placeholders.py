"""Substitute the placeholders jobmesh knows, and nothing else.

``{parents.<job>.outputs.<key>}`` and ``{var}`` for known variables are replaced; shell
syntax such as ``${HOME}``, ``{a,b}`` or ``{}`` in a command is left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

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


def var_refs(text: str) -> list[str]:
    """The ``{name}`` placeholders a string holds (variables or foreach keys)."""
    return [m.group(1) for m in _VAR.finditer(text)]


def substitute_vars(text: str, values: Mapping[str, Any]) -> str:
    """Replace ``{name}`` for the names in ``values`` only; everything else stays."""
    if not values or "{" not in text:
        return text
    return _VAR.sub(lambda m: as_text(values[m.group(1)]) if m.group(1) in values
                    else m.group(0), text)


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
        text = substitute_vars(text, variables)
    return _PARENT.sub(parent, text) if "{parents." in text else text
