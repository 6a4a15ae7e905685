"""The ``jobmesh`` command.

Exit codes: 0 success; 1 the workflow failed or jobmesh could not do its work; 2 bad
input (the message names the file, line and field); 130 interrupted (jobs keep running).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from jobmesh import __version__, progress_line
from jobmesh.common import ops
from jobmesh.common.bus import BusError
from jobmesh.common.loader import SpecError, load_workflow
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.names import InvalidName, check_job, check_workflow
from jobmesh.common.settings import default_home
from jobmesh.common.spec import Workflow
from jobmesh.common.states import WorkflowState
from jobmesh.common.yamlread import YamlProblem, read_yaml
from rich.console import Console
from rich.live import Live

from . import view
from .natsserver import NatsServerError
from .stack import Stack, StackBusy

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="jobmesh: run workflows of jobs here, over SSH, and on Slurm/LSF.")
# Off a terminal (logs, CI) keep tables readable instead of squeezing them to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)  # never break a path in two
SUPPORTED_KINDS = {"local", "ssh", "wsl", "slurm", "lsf"}


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


VarOption = typer.Option(None, "--var", "-v", metavar="NAME=VALUE",
                         help="set a workflow variable: -v NAME=VALUE (repeatable; VALUE is "
                         "read as YAML, e.g. 5, prod, [10, 30])")
LargeOption = typer.Option(False, "--allow-large", help="allow more than 10,000 jobs after "
                           "foreach expansion")


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


# -- run -------------------------------------------------------------------------------

@app.command()
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
    wf = _load(file, name, var, allow_large)
    parallel = parallel or os.cpu_count() or 1
    if parallel < 1:
        raise UserError("--parallel must be at least 1")
    code = asyncio.run(_run(wf, parallel, restart, quiet))
    raise typer.Exit(code)


async def _run(wf: Workflow, parallel: int, restart: bool, quiet: bool) -> int:
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    loop.add_signal_handler(signal.SIGTERM, interrupted.set)
    async with Stack(_home()) as stack:
        snap = await ops.snapshot(stack.js, wf.name)
        old = await ops.spec(stack.js, wf.name)
        changed = old is not None and old.digest() != wf.digest()
        if snap is not None and not snap.state.terminal and not restart:
            if changed:
                raise UserError(f"workflow '{wf.name}' is still running (run {snap.run}) "
                                "from a different spec; run the same file again to "
                                "re-attach, or --restart to cancel it and start afresh", 1)
            run_id, seq = snap.run, 0
            err.print(f"{wf.name}: re-attaching to run {run_id}")
        else:
            # A new run; without --restart every job whose cache key matches a succeeded
            # attempt of an earlier run is reused, not run (docs/workflows.md).
            run_id, seq = await ops.submit(stack.js, wf, parallel, cache=not restart)
            since = f"; reusing what it can from run {snap.run}" \
                if snap is not None and not restart else ""
            err.print(f"[bold]{wf.name}[/]: run {run_id}, {len(wf.jobs)} jobs, up to "
                      f"{parallel} at once{since}", highlight=False)
        final = await _follow(stack, wf.name, run_id, seq, interrupted, quiet)
        if final is None:
            err.print(f"\n[yellow]interrupted[/]: jobs keep running. Run the same command "
                      f"again to re-attach, or 'jobmesh status {wf.name}'.")
            return 130
        out.print(view.final_table(final))
        _reused(final, snap)
        if wf.dynamic:  # it grew while it ran: draw what ran
            wf = await ops.spec(stack.js, wf.name) or wf
        svg_path, state_path = _write_results(wf, final)
        err.print(f"graph: {svg_path}\nstate: {state_path}", highlight=False)
        return 0 if final.state is WorkflowState.SUCCEEDED else 1


def _reused(final: WorkflowSnapshot, before: WorkflowSnapshot | None) -> None:
    """Say how many jobs were reused from earlier runs and the run time that saved."""
    cached = [j.cached_from for j in final.jobs.values() if j.cached_from]
    if not cached:
        return
    saved = sum(c.get("seconds") or 0.0 for c in cached)
    if len(cached) == len(final.jobs) and before is not None and \
            before.state is WorkflowState.SUCCEEDED:
        err.print(f"{final.name}: nothing changed since run {before.run}, which already "
                  f"succeeded: all {len(cached)} jobs reused (saved {saved:.1f}s of run "
                  "time); --restart runs them again", highlight=False)
        return
    err.print(f"{final.name}: {len(cached)} of {len(final.jobs)} jobs reused from earlier "
              f"runs (saved {saved:.1f}s of run time)", highlight=False)


async def _follow(stack: Stack, wf: str, run_id: str, seq: int, interrupted: asyncio.Event,
                  quiet: bool) -> WorkflowSnapshot | None:
    """Show the live view until the run ends (its snapshot) or Ctrl-C (None).

    Snapshot updates are only peeked at (run, state, seq); the full snapshot is decoded
    for the live view at its refresh rate and once at the end, so following a
    5,000-job workflow costs no more than following a small one."""
    raw: list[bytes] = []
    done = asyncio.Event()

    async def watch() -> None:
        async for value in ops.watch_raw(stack.js, wf):
            head = ops.peek(value)
            if head is None:  # not our encoding: decode it the slow way
                snap = WorkflowSnapshot.model_validate_json(value)
                head = (snap.run, snap.state.value, snap.seq)
            if head[0] != run_id:
                continue
            raw[:] = [value]
            if head[2] >= seq and WorkflowState(head[1]).terminal:
                done.set()
                return

    def latest() -> WorkflowSnapshot | None:
        return WorkflowSnapshot.model_validate_json(raw[0]) if raw else None

    watcher = asyncio.create_task(watch())
    live = None if quiet or not out.is_terminal else Live(
        view.live(None, wf), console=out, refresh_per_second=4, transient=True)
    shown: bytes | None = None
    try:
        if live:
            live.start()
        while not done.is_set() and not interrupted.is_set():
            problem = stack.failed()
            if problem:
                raise UserError(f"internal error: {problem}", code=1)
            if watcher.done() and watcher.exception():
                raise UserError(f"lost the workflow state: {watcher.exception()}", code=1)
            waiter = asyncio.create_task(done.wait())
            intr = asyncio.create_task(interrupted.wait())
            await asyncio.wait({waiter, intr}, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            intr.cancel()
            if live and raw and raw[0] is not shown:
                shown = raw[0]
                live.update(view.live(latest(), wf))
            elif live and not raw:
                live.update(view.live(None, wf))
    finally:
        if live:
            live.stop()
        watcher.cancel()
    return latest() if done.is_set() else None


def _write_results(wf: Workflow, snap: WorkflowSnapshot) -> tuple[Path, Path]:
    from jobmesh.monitor.graph import layout

    folder = _home() / "runs" / wf.name / snap.run
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    svg = layout(wf, snap, now).patch(snap, now)
    (folder / f"{wf.name}.svg").write_bytes(svg)
    (folder / "state.json").write_text(json.dumps(view.status_json(snap), indent=2))
    return folder / f"{wf.name}.svg", folder / "state.json"


# -- validate ----------------------------------------------------------------------------

@app.command()
def validate(file: Path = typer.Argument(..., help="workflow YAML file"),
             name: Optional[str] = typer.Option(None, "--name", "-n"),
             var: Optional[list[str]] = VarOption,
             allow_large: bool = LargeOption) -> None:
    """Check a workflow without running it."""
    wf = _load(file, name, var, allow_large)
    out.print(f"ok: workflow '{wf.name}', {len(wf.jobs)} jobs, {len(wf.edges)} dependencies",
              highlight=False)


# -- status / graph ----------------------------------------------------------------------

async def _current(name: str) -> tuple[WorkflowSnapshot, Workflow | None]:
    """The workflow's state brought up to date: executors re-attach and read their jobs'
    files, the monitor folds what they report, and then the snapshot is read."""
    check_workflow(name)
    async with Stack(_home(), services=("executor", "monitor"), take_work=False) as stack:
        if stack.executors:
            await _settle(stack)
        snap = await ops.snapshot(stack.js, name)
        spec = await ops.spec(stack.js, name)
    if snap is None:
        raise UserError(f"no workflow named '{name}'; 'jobmesh list' shows the workflows", 1)
    return snap, spec


async def _settle(stack: Stack, timeout: float = 15) -> None:
    assert stack.monitor is not None
    deadline = time.monotonic() + timeout
    while not all(ex.ready.is_set() for ex in stack.executors) and \
            time.monotonic() < deadline:
        if stack.failed():
            raise UserError(f"internal error: {stack.failed()}", 1)
        await asyncio.sleep(0.02)
    from jobmesh.common import subjects

    info = await stack.js.stream_info(subjects.STREAM_EVENTS)
    target = info.state.last_seq
    while stack.monitor.seen_seq < target and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


@app.command()
def status(
    name: str = typer.Argument(..., help="workflow name"),
    output: Output = typer.Option(Output.table, "--output", "-o"),
    job: Optional[str] = typer.Option(None, "--job", "-j", help="one job's details"),
) -> None:
    """Show a workflow's state (jobs, progress, exit codes, outputs)."""
    if job is not None:
        check_job(job)
    snap, _spec = asyncio.run(_current(name))
    if job is not None and job not in snap.jobs:
        raise UserError(f"workflow '{name}' has no job '{job}'", 1)
    data = view.status_json(snap)
    if job is not None:
        data = {"name": snap.name, "run": snap.run, "job": job, **data["jobs"][job]}
    if output is Output.json:
        print(json.dumps(data, indent=2))
    elif output is Output.yaml:
        print(yaml.safe_dump(data, sort_keys=False), end="")
    elif job is not None:
        out.print(view.job_detail(snap, job))
    else:
        out.print(view.final_table(snap, limit=None))


@app.command("list")
def list_workflows() -> None:
    """List the workflows this home knows, with their states."""

    async def go() -> list[WorkflowSnapshot]:
        async with Stack(_home(), services=()) as stack:
            return await ops.snapshots(stack.js)

    snaps = asyncio.run(go())
    from rich.table import Table

    t = Table()
    for col in ("workflow", "run", "state", "jobs", "done", "failed", "started", "ended"):
        t.add_column(col)
    for s in snaps:
        c = s.counts()
        t.add_row(s.name, s.run, s.state.value, str(len(s.jobs)), str(c["SUCCEEDED"]),
                  str(c["FAILED"]), view.clock(s.started), view.clock(s.ended))
    out.print(t)


@app.command()
def graph(name: str = typer.Argument(..., help="workflow name"),
          output: Path = typer.Option(None, "-o", "--output", help="SVG file to write "
                                      "(default: NAME.svg)")) -> None:
    """Write a workflow's graph as SVG, coloured by the current state."""
    snap, spec = asyncio.run(_current(name))
    if spec is None:
        raise UserError(f"workflow '{name}' has no stored spec", 1)
    from jobmesh.monitor.graph import layout

    now = time.time()
    svg = layout(spec, snap, now).patch(snap, now)
    target = output or Path(f"{name}.svg")
    target.write_bytes(svg)
    err.print(f"wrote {target}")


# -- service mode ------------------------------------------------------------------------

@app.command()
def up(host: str = typer.Option("127.0.0.1", help="address for the API and GUI"),
       port: int = typer.Option(8000, help="port (0 picks a free one)"),
       token: Optional[str] = typer.Option(None, help="the API's token (or JOBMESH_TOKEN); "
                                           "required beyond loopback; default: the home's "
                                           "gateway.token, made up on first use"),
       allow_host: Optional[list[str]] = typer.Option(
           None, "--allow-host", metavar="NAME", help="a host name a reverse proxy reaches "
           "the service by (repeatable; or JOBMESH_ALLOW_HOSTS=a,b)")) -> None:
    """Start the stack and the gateway in the background."""
    from jobmesh.gateway.auth import TokenRequired, check_bind, read_home_token

    from . import service

    token = token or os.environ.get("JOBMESH_TOKEN") or None
    try:
        check_bind(host, token)  # (serve checks again: the one rule is auth.resolve)
    except TokenRequired as exc:
        raise UserError(str(exc)) from None
    if allow_host:
        os.environ["JOBMESH_ALLOW_HOSTS"] = ",".join(
            [*allow_host, *filter(None, os.environ.get("JOBMESH_ALLOW_HOSTS", "").split(","))])
    try:
        info = service.up(_home(), host, port, token)
    except RuntimeError as exc:
        raise UserError(str(exc), 1) from None
    secret = read_home_token(_home())
    entry = f"{info['url']}/?token={secret}" if secret else info["url"]
    out.print(f"jobmesh is up at {entry} (GUI; API docs at /docs; the API's token is in "
              f"{_home() / 'gateway.token'}); 'jobmesh down' stops it", highlight=False,
              soft_wrap=True)


@app.command()
def down() -> None:
    """Stop the background stack. Jobs keep running; 'jobmesh up' picks them up again."""
    from . import service

    try:
        stopped = service.down(_home())
    except RuntimeError as exc:
        raise UserError(str(exc), 1) from None
    out.print("stopped; jobs keep running" if stopped else "jobmesh is not running")


@app.command()
def info() -> None:
    """Is the background stack up? Its URL and version."""
    from .stack import service_info

    data = service_info(_home())
    if data is None:
        out.print(f"jobmesh {__version__}: not running (home {_home()}); 'jobmesh up' starts it",
                  highlight=False)
        raise typer.Exit(1)
    out.print(f"jobmesh {data['version']}: up at {data['url']} (pid {data['pid']}, NATS "
              f"{data['nats_url']}, token {'required' if data['token'] else 'not set'})",
              highlight=False)
    from .service import dead

    problem = dead(data["url"])
    if problem:
        raise UserError(f"{problem}; its traceback is in {_home() / 'service.log'}; "
                        "'jobmesh down' and 'jobmesh up' restart it", 1)


@app.command(hidden=True)
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """The background process that 'jobmesh up' starts."""
    from jobmesh.gateway.auth import TokenRequired, resolve

    from . import service

    try:  # the same rule as up and python -m jobmesh.gateway: auth.resolve
        token = resolve(_home(), host, os.environ.get("JOBMESH_TOKEN") or None)
    except TokenRequired as exc:
        raise UserError(str(exc)) from None
    asyncio.run(service.serve(_home(), host, port, token))


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


from .workflow_cmd import workflow_app  # noqa: E402

app.add_typer(workflow_app, name="workflow")


def main() -> None:
    """Entry point: every error a user can cause is a message, never a traceback."""
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SpecError as exc:
        for issue in exc.issues:
            err.print(f"[red]error:[/] {issue}", highlight=False)
        sys.exit(2)
    except UserError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.code)
    except InvalidName as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except (BusError, StackBusy, NatsServerError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # click usage errors and anything unforeseen
        # Usage errors: typer vendors its own click, so match by behaviour, not class.
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(2)
        if os.environ.get("JOBMESH_DEBUG"):
            raise
        err.print(f"[red]internal error:[/] {type(exc).__name__}: {exc}\n"
                  "(set JOBMESH_DEBUG=1 to see the traceback, and please report it)",
                  highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
