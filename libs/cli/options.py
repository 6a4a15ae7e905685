"""The typer options several commands share (kept out of base.py, which ``jobmesh run``'s
quick path in entry.py uses without importing typer)."""

from __future__ import annotations

import typer

VarOption = typer.Option(None, "--var", "-v", metavar="NAME=VALUE",
                         help="set a workflow variable: -v NAME=VALUE (repeatable; VALUE is "
                         "read as YAML, e.g. 5, prod, [10, 30])")
LargeOption = typer.Option(False, "--allow-large", help="allow more than 10,000 jobs after "
                           "foreach expansion")
