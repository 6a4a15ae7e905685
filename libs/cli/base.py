"""What the ``jobmesh`` commands share: the consoles, ``UserError``, the home, ``-v``
variables and loading a workflow file. (Split from main.py; ``main.X`` names these too.)"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any

from rich.console import Console

from jobmesh import __version__
from jobmesh.common.loader import load_workflow
from jobmesh.common.settings import default_home
from jobmesh.common.spec import KINDS, Workflow
from jobmesh.common.yamlread import YamlProblem, read_yaml

# Off a terminal (logs, CI) keep tables readable instead of squeezing them to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)  # never break a path in two
# Every kind has an executor (spec.KINDS is the one list); a kind without one goes here
# only once spec.py's Kind names it.
SUPPORTED_KINDS = frozenset(KINDS)


class Output(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _home() -> Path:
    return default_home()


def _variables(pairs: list[str] | None) -> dict[str, Any]:
    """-v NAME=VALUE, VALUE read as YAML: 5 is a number, [a, b] a list, prod a text."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"-v {pair!r}: write NAME=VALUE, e.g. -v epochs=5")
        try:  # bounded like a workflow file: tags, aliases, nesting
            value = read_yaml(text)[0] if text.strip() else ""
        except YamlProblem:
            value = text
        out[key.strip()] = text if isinstance(value, dict) else value
    return out


def __getattr__(name: str) -> Any:
    """``VarOption`` and ``LargeOption`` live in options.py (typer); ``jobmesh run``'s
    quick path (entry.py) uses this module without importing typer."""
    if name in ("VarOption", "LargeOption"):
        from . import options

        return getattr(options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load(path: Path, name: str | None, variables: list[str] | None = None,
          allow_large: bool = False) -> Workflow:
    loaded = load_workflow(path, name, _variables(variables), allow_large)
    for w in loaded.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    wf = loaded.workflow
    unsupported = sorted({j.kind for j in wf.jobs.values()} - SUPPORTED_KINDS)
    if unsupported:
        nodes = [n for n, j in wf.jobs.items() if j.kind in unsupported][:5]
        raise UserError(f"{path}: kind {', '.join(unsupported)} (nodes {', '.join(nodes)}) has "
                        f"no executor in jobmesh {__version__} yet; use kind: local")
    return wf

