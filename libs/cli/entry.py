"""The ``jobmesh`` entry point. Jobs call ``jobmesh progress N`` and ``jobmesh output K V``
often, so those two answer with the standard library alone (no typer, NATS or pydantic
imports: a few milliseconds instead of a few hundred)."""

from __future__ import annotations

import sys


def _fast(argv: list[str]) -> int | None:
    if len(argv) < 2 or argv[1] not in ("progress", "output") or "--help" in argv:
        return None
    from jobmesh import progress_line

    if argv[1] == "progress":
        rest = argv[2:]
        msg = None
        for flag in ("-m", "--msg"):
            if flag in rest:
                i = rest.index(flag)
                if i + 1 >= len(rest):
                    return None
                msg = rest[i + 1]
                rest = rest[:i] + rest[i + 2:]
        if len(rest) != 1:
            return None
        try:
            value = float(rest[0])
        except ValueError:
            return None
        if not 0 <= value <= 100:
            print("error: progress must be between 0 and 100", file=sys.stderr)
            return 2
        print(progress_line(value, msg), flush=True)
        return 0
    if len(argv) != 4 or not argv[2].replace("_", "").replace("-", "").isalnum():
        return None  # let the full command explain the problem
    print(f"# jobmesh output {argv[2]}={argv[3]}", flush=True)
    return 0


# Commands that start the embedded stack: their nats-server is started before the rest
# of jobmesh is imported, so it gets ready on the other core meanwhile.
_STACK_COMMANDS = ("run", "status")


def _prestart(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] not in _STACK_COMMANDS or "--help" in argv:
        return
    from jobmesh.common.settings import default_home

    from .natsserver import prestart

    prestart(default_home())


# Commands that leave the interpreter with os._exit once their output is flushed: tearing
# down the ~500 modules a stack command loaded (pydantic's schemas, nats-py, rich) costs
# ~0.1 s of CPU after the work is done. By then asyncio.run has joined its threads, the
# stack has stopped its services and asked its nats-server to stop.
_QUICK_EXIT = ("run", "status", "list", "graph", "validate", "runs")


def _plain_run(argv: list[str]) -> tuple[str, int, str | None, bool, bool] | None:
    """(file, parallel, name, restart, quiet) of a plain ``jobmesh run FILE [-q] [-p N]
    [-n NAME] [--restart]`` (in any order, each once); None for any other command line
    (help, ``--var``, ``--parallel=N``, joined flags, a value that looks like an
    option), which the full command line parses."""
    if len(argv) < 3 or argv[1] != "run":
        return None
    names = {"-q": "quiet", "--quiet": "quiet", "--restart": "restart",
             "-p": "parallel", "--parallel": "parallel", "-n": "name", "--name": "name"}
    opts: dict[str, str] = {}
    files: list[str] = []
    rest = iter(argv[2:])
    for a in rest:
        key = names.get(a)
        if key in opts:
            return None
        if key in ("quiet", "restart"):
            opts[key] = ""
        elif key is not None:
            value = next(rest, "")
            if not value or value.startswith("-"):
                return None
            opts[key] = value
        elif a and not a.startswith("-") and not files:
            files.append(a)
        else:
            return None
    parallel = opts.get("parallel", "0")
    if not files or not (parallel.isascii() and parallel.isdigit()):
        return None
    return files[0], int(parallel), opts.get("name"), "restart" in opts, "quiet" in opts


def _run_quick(file: str, parallel: int, name: str | None, restart: bool,
               quiet: bool) -> int:
    """A plain ``jobmesh run`` without typer and the other commands' modules (~0.1 s of
    a 1-job run): the same work (run_core.py), messages and exit codes."""
    from pathlib import Path

    from .errors import exit_code
    from .run_core import run_plain

    _settled()
    try:
        return run_plain(Path(file), parallel, name, restart, quiet)
    except (Exception, KeyboardInterrupt) as exc:
        return exit_code(exc)


def _settled() -> None:
    """The imports are done: their objects are set aside from the cyclic garbage
    collector (``gc.freeze``), which was off while they loaded. Importing ~470 modules
    ran ~100 collections (~50 ms of a 1-job run) for next to no garbage, and each later
    full collection walked them all again."""
    import gc

    gc.freeze()
    gc.enable()


def main() -> None:
    code = _fast(sys.argv)
    if code is not None:
        sys.exit(code)
    if len(sys.argv) > 1 and sys.argv[1] in _QUICK_EXIT:
        import gc

        gc.disable()  # until _settled
    _prestart(sys.argv)
    plain = _plain_run(sys.argv)
    if plain is not None:
        _leave(_run_quick(*plain))
    from .main import main as full

    _settled()
    if len(sys.argv) < 2 or sys.argv[1] not in _QUICK_EXIT:
        full()
        return
    try:
        full()
        status: object = 0
    except SystemExit as exc:
        status = exc.code
    _leave(status)


def _leave(status: object) -> None:
    """Exit as ``sys.exit(status)`` would, without the interpreter's teardown."""
    import os

    if status is not None and not isinstance(status, int):
        print(status, file=sys.stderr)
        status = 1
    import atexit

    atexit._run_exitfuncs()  # what exit does first: e.g. stop a prestarted, unused nats-server
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()  # flush log handlers, as the normal exit does
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head): nothing more to say
            pass
    os._exit(status or 0)


if __name__ == "__main__":
    main()
