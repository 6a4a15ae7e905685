"""``jobmesh run`` (run a workflow on the embedded stack, live view; the work is in
run_core.py) and ``jobmesh validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .base import _load, out
from .options import LargeOption, VarOption
from .run_core import run_plain


def run(
    file: Path = typer.Argument(..., help="workflow YAML file"),
    parallel: int = typer.Option(0, "--parallel", "-p", help="jobs at once (default: cores)"),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="workflow name"),
    restart: bool = typer.Option(False, "--restart", help="rerun every job, reusing "
                                 "nothing from earlier runs of this workflow"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no live view"),
    var: Optional[list[str]] = VarOption,
    allow_large: bool = LargeOption,
) -> None:
    """Run a workflow on the embedded stack and show its progress live."""
    raise typer.Exit(run_plain(file, parallel, name, restart, quiet, var, allow_large))


# -- validate ----------------------------------------------------------------------------

def validate(file: Path = typer.Argument(..., help="workflow YAML file"),
             name: Optional[str] = typer.Option(None, "--name", "-n"),
             var: Optional[list[str]] = VarOption,
             allow_large: bool = LargeOption) -> None:
    """Check a workflow without running it."""
    wf = _load(file, name, var, allow_large)
    out.print(f"ok: workflow '{wf.name}', {len(wf.jobs)} jobs, {len(wf.edges)} dependencies",
              highlight=False)


