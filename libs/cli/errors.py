"""How ``jobmesh`` commands end on an error: a message, never a traceback, and the exit
code (2 bad input, 1 jobmesh could not do its work, 130 interrupted). Without typer, so
``jobmesh run``'s quick path (entry.py) shares it."""

from __future__ import annotations

import os

from jobmesh.common.bus import BusError, MessageTooLarge
from jobmesh.common.loader import SpecError
from jobmesh.common.names import InvalidName

from .base import UserError, err
from .natsserver import NatsServerError, StackBusy


def exit_code(exc: BaseException) -> int:
    """Print what the user needs to know of ``exc``; the command's exit code. An
    unforeseen error is re-raised under JOBMESH_DEBUG."""
    if isinstance(exc, SpecError):
        for issue in exc.issues:
            err.print(f"[red]error:[/] {issue}", highlight=False)
        return 2
    if isinstance(exc, UserError):
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return exc.code
    if isinstance(exc, InvalidName):
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    if isinstance(exc, MessageTooLarge):  # bad input: the message says what to change
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    if isinstance(exc, (BusError, StackBusy, NatsServerError)):
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 1
    if isinstance(exc, KeyboardInterrupt):
        err.print("interrupted")
        return 130
    # click usage errors and anything unforeseen
    # Usage errors: typer vendors its own click, so match by behaviour, not class.
    if type(exc).__name__ == "Abort":
        return 130
    show = getattr(exc, "show", None)
    if show is not None and isinstance(getattr(exc, "exit_code", None), int):
        show()
        return 2
    if os.environ.get("JOBMESH_DEBUG"):
        raise exc
    err.print(f"[red]internal error:[/] {type(exc).__name__}: {exc}\n"
              "(set JOBMESH_DEBUG=1 to see the traceback, and please report it)",
              highlight=False)
    return 1
