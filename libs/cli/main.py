"""The ``jobmesh`` command.

Exit codes: 0 success; 1 the workflow failed or jobmesh could not do its work; 2 bad
input (the message names the file, line and field); 130 interrupted (jobs keep running).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from jobmesh import __version__, progress_line

from .base import (  # noqa: F401  (main.X: the names other modules and tests import)
    SUPPORTED_KINDS,
    Output,
    UserError,
    _home,
    _load,
    _variables,
    err,
    out,
)
from .errors import exit_code
from .options import LargeOption, VarOption  # noqa: F401
from .run_cmd import run, validate
from .runs_cmd import past_run, runs  # noqa: F401
from .stack import Stack, StackBusy  # noqa: F401
from .status_cmd import _current, _settle, graph, list_workflows, status  # noqa: F401
from .up_cmd import down, info, serve, up
from .workflow_cmd import workflow_app

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="jobmesh: run workflows of jobs here, over SSH, and on Slurm/LSF.")

# The commands, in the order --help lists them; each topic's module holds its commands.
app.command()(run)
app.command()(validate)
app.command()(status)
app.command("list")(list_workflows)
app.command()(graph)
app.command()(up)
app.command()(down)
app.command()(info)
app.command(hidden=True)(serve)


# -- helpers for jobs ----------------------------------------------------------------------

@app.command()
def progress(percent: float = typer.Argument(..., help="0-100"),
             msg: Optional[str] = typer.Option(None, "--msg", "-m", help="a short message")
             ) -> None:
    """Print a progress line (for shell jobs: jobmesh progress 50 -m 'half way')."""
    if not 0 <= percent <= 100:
        raise UserError("progress must be between 0 and 100")
    print(progress_line(percent, msg), flush=True)


@app.command()
def output(key: str = typer.Argument(...), value: str = typer.Argument(...)) -> None:
    """Print an output line: later jobs read it as {parents.JOB.outputs.KEY}."""
    if not key.replace("_", "").replace("-", "").isalnum():
        raise UserError("an output key uses letters, digits, '-' and '_'")
    print(f"# jobmesh output {key}={value}", flush=True)


@app.command()
def version() -> None:
    """Print jobmesh's version."""
    print(__version__)


# -- services, run alone -------------------------------------------------------------------

def _service(module: str) -> Any:
    def command(ctx: typer.Context) -> None:
        import importlib

        sys.argv = [f"jobmesh {module}", *ctx.args]
        importlib.import_module(f"jobmesh.{module}.__main__").main()

    return command


for _name, _help in (("scheduler", "Run the scheduler service alone (--nats URL)."),
                     ("executor", "Run an executor service alone (--nats URL --pool P)."),
                     ("monitor", "Run the monitor service alone (--nats URL).")):
    app.command(_name, help=_help, add_help_option=False, context_settings={
        "allow_extra_args": True, "ignore_unknown_options": True})(_service(_name))

app.command()(runs)
app.add_typer(workflow_app, name="workflow")


def main() -> None:
    """Entry point: every error a user can cause is a message, never a traceback."""
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        sys.exit(exit_code(exc))


if __name__ == "__main__":
    main()
