"""``jobmesh workflow ...``: service mode. Every command talks to a running stack
(``jobmesh up``, or ``--url``) over its REST API through ``jobmesh.client.Client``.

Exit codes: 0 success; 1 the service refused or failed (or, with --wait, the run did not
succeed); 2 bad input; 130 interrupted (the workflow keeps running). Errors are one line,
``error: <detail>``, on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import view

if TYPE_CHECKING:  # the client (httpx) is imported when a command needs it
    from jobmesh.client import Client

workflow_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Workflows on a running stack ('jobmesh up'), over its API.")
job_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                      help="Add, change or remove a job of an uploaded workflow.")
workflow_app.add_typer(job_app, name="job")
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)

Url = Annotated[Optional[str], typer.Option(
    "--url", help="the API's URL (default: $JOBMESH_URL, else the stack 'jobmesh up' runs)")]
Token = Annotated[Optional[str], typer.Option(
    "--token", help="bearer token (default: $JOBMESH_TOKEN, else the home's gateway.token "
    "for the stack 'jobmesh up' runs)")]
BAD_INPUT = (400, 413, 422)


class Format(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"
    csv = "csv"


class ListFormat(str, Enum):
    table = "table"
    json = "json"


def fail(message: str, code: int) -> NoReturn:
    err.print(Text("error: ", style="red") + Text(message))
    raise typer.Exit(code)


@contextmanager
def client(url: str | None, token: str | None) -> Iterator[Client]:
    """A Client whose errors become ``error: <detail>`` and the exit code."""
    from jobmesh.client import ApiError, Client

    try:
        with Client(url, token) as c:
            yield c
    except ApiError as exc:
        fail(exc.message, 2 if exc.status in BAD_INPUT else 1)


def clock(iso: str | None) -> str:
    return (iso or "")[11:19]  # HH:MM:SS of an ISO time (UTC, as the API gives it)


def status_table(status: dict[str, Any]) -> Table:
    """The jobs of a status document (``jobmesh status -o json``'s shape)."""
    t = Table(title=f"{status['name']} ({status['run']}): {status['state']}",
              title_justify="left")
    for col in ("job", "state", "progress", "attempt", "exit", "started", "ended",
                "reason / message"):
        t.add_column(col, no_wrap=col in ("job", "state"))
    for name, j in status["jobs"].items():
        reason, code = j.get("reason"), j.get("exit_code")
        note = reason if reason and j["state"] not in ("SUCCEEDED", "RUNNING") else j["msg"]
        t.add_row(name, Text(j["state"], style=view.STYLE.get(j["state"], "")),
                  f"{j['progress']:.0f}%", str(j["attempt"]), "" if code is None else str(code),
                  clock(j.get("started")), clock(j.get("ended")), note or "")
    return t


# -- workflows -----------------------------------------------------------------------------

@workflow_app.command()
def add(path: Path = typer.Argument(..., help="a workflow YAML file, a .tar/.tar.gz/.tgz/"
                                    ".zip archive, or a directory (uploaded as .tar.gz)"),
        name: Optional[str] = typer.Option(None, "--name", "-n", help="workflow name"),
        replace: bool = typer.Option(False, "--replace", help="replace a workflow of that "
                                     "name (not while it runs)"),
        allow_large: bool = typer.Option(False, "--allow-large", help="allow more than "
                                         "10,000 jobs after foreach expansion"),
        url: Url = None, token: Token = None) -> None:
    """Upload a workflow with its scripts."""
    with client(url, token) as c:
        try:
            res = c.add(path, name=name, replace=replace, allow_large=allow_large)
        except (OSError, ValueError) as exc:
            fail(str(exc), 2)
    out.print(f"added workflow '{res['name']}': {len(res['jobs'])} jobs", highlight=False)


@workflow_app.command("list")
def list_(output: ListFormat = typer.Option(ListFormat.table, "--output", "-o"),
          url: Url = None, token: Token = None) -> None:
    """List the workflows with their state."""
    with client(url, token) as c:
        rows = c.list()
    if output is ListFormat.json:
        print(json.dumps(rows, indent=2))
        return
    t = Table()
    for col in ("workflow", "state", "run", "jobs", "done", "failed", "started", "ended"):
        t.add_column(col)
    for w in rows:
        t.add_row(w["name"], Text(w["state"], style=view.STYLE.get(w["state"], "")),
                  w["run"] or "", str(w["jobs"]), str(w["counts"].get("SUCCEEDED", 0)),
                  str(w["counts"].get("FAILED", 0)), clock(w["started"]), clock(w["ended"]))
    out.print(t)


@workflow_app.command()
def show(name: str = typer.Argument(..., help="workflow name"),
         output: Format = typer.Option(Format.table, "--output", "-o"),
         run: Optional[str] = typer.Option(None, "--run", "-r", help="a past run ('jobmesh "
                                           "workflow runs NAME' lists them)"),
         url: Url = None, token: Token = None) -> None:
    """Show a workflow's spec and state (json: the API's document)."""
    if run is not None:
        return show_run(name, run, output, url, token)
    with client(url, token) as c:
        doc = c.show(name, "json" if output is Format.table else output.value)
    if output is Format.json:
        print(json.dumps(doc, indent=2))
    elif output is not Format.table:
        sys.stdout.write(doc)
    elif doc["status"]:
        out.print(status_table(doc["status"]))
    else:
        jobs = ", ".join((doc["spec"] or {}).get("jobs", {}))
        out.print(f"{name}: not run yet; jobs: {jobs}", highlight=False)


def _wf_path(name: str) -> str:
    from jobmesh.common.names import check_workflow

    try:
        return f"/api/workflows/{check_workflow(name)}"
    except ValueError as exc:
        fail(str(exc), 2)


def show_run(name: str, run: str, output: Format, url: str | None, token: str | None) -> None:
    """One run (GET /api/workflows/NAME/runs/RUN): its jobs, as ``show`` prints them."""
    from urllib.parse import quote

    if output is Format.csv:
        fail("--run shows a run as table, json or yaml", 2)
    with client(url, token) as c:
        doc = c._call("GET", f"{_wf_path(name)}/runs/{quote(run, safe='')}").json()
    if output is Format.json:
        print(json.dumps(doc, indent=2))
    elif output is Format.yaml:
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    else:
        out.print(status_table(doc["status"]))


@workflow_app.command("runs")
def runs_(name: str = typer.Argument(..., help="workflow name"),
          output: ListFormat = typer.Option(ListFormat.table, "--output", "-o"),
          url: Url = None, token: Token = None) -> None:
    """List a workflow's runs, newest first (GET /api/workflows/NAME/runs)."""
    from .runs_cmd import runs_table, spark

    with client(url, token) as c:
        doc = c._call("GET", f"{_wf_path(name)}/runs").json()
    if output is ListFormat.json:
        print(json.dumps(doc, indent=2))
        return
    out.print(runs_table(name, doc["runs"]))
    if len(doc["runs"]) > 1:
        err.print("durations, oldest to newest: "
                  f"{spark([r['duration'] for r in reversed(doc['runs'])])}", highlight=False)


def follow(c: Client, name: str) -> dict[str, Any]:
    """Show the run live (on a terminal) until it ends; returns its final status."""
    tracker = view.Tracker(name)  # the job-event rule (jobfold): a retry shows at once
    live = Live(view.live(None, name), console=out, refresh_per_second=8, transient=True) \
        if out.is_terminal else None
    if live:
        live.start()
    try:
        for ev in c.watch(name):
            if tracker.feed(ev.event, ev.data) and live:
                live.update(view.live(tracker.snap, name, time.time()))
    finally:
        if live:
            live.stop()
    last = tracker.last
    if last.get("state") not in ("SUCCEEDED", "FAILED", "CANCELED"):
        fail(f"the event stream of '{name}' ended before the run did", 1)
    status = c.show(name)["status"]
    return status if status and status["run"] == last["run"] else last


def _finish(c: Client, name: str) -> None:
    try:
        status = follow(c, name)
    except KeyboardInterrupt:
        err.print(f"interrupted: '{name}' keeps running; 'jobmesh workflow show {name}' "
                  "shows it", highlight=False)
        raise typer.Exit(130) from None
    out.print(status_table(status))

    def read(job: str, run_dir: str | None) -> list[str] | None:  # through the gateway
        try:
            lines = c.log(name, job, tail=view.TAIL_LINES)["data"].splitlines()
        except Exception:  # noqa: BLE001  (a note under the table: the command says more)
            return None
        return [ln[:view.TAIL_WIDTH] for ln in lines]

    notes = view.failure_notes(name, [(n, j["state"], j.get("run_dir"), j.get("host"),
                                       j.get("exit_code")) for n, j in status["jobs"].items()],
                               command="jobmesh workflow log {wf} {job}", read=read)
    if notes is not None:
        out.print(notes)
    raise typer.Exit(0 if status["state"] == "SUCCEEDED" else 1)


@workflow_app.command()
def run(name: str = typer.Argument(..., help="workflow name"),
        wait: bool = typer.Option(False, "--wait", "-w", help="follow the run live; exit 0 "
                                  "only if it succeeds"),
        parallel: Optional[int] = typer.Option(None, "--parallel", "-p", min=1,
                                               help="jobs at once (default: the cores)"),
        url: Url = None, token: Token = None) -> None:
    """Start a new run of an uploaded workflow."""
    with client(url, token) as c:
        res = c.run(name, parallel)
        err.print(f"{name}: run {res['run']} started", highlight=False)
        if wait:
            _finish(c, name)


@workflow_app.command()
def retry(name: str = typer.Argument(..., help="workflow name"),
          wait: bool = typer.Option(False, "--wait", "-w", help="follow it live"),
          url: Url = None, token: Token = None) -> None:
    """Rerun the jobs of the last run that did not succeed."""
    with client(url, token) as c:
        res = c.retry(name)
        err.print(f"{name}: rerunning the jobs of run {res['run']} that did not succeed",
                  highlight=False)
        if wait:
            _finish(c, name)


@workflow_app.command()
def cancel(name: str = typer.Argument(..., help="workflow name"),
           url: Url = None, token: Token = None) -> None:
    """Cancel a running workflow."""
    with client(url, token) as c:
        res = c.cancel(name)
    out.print(f"{name}: cancel requested for run {res['run']}", highlight=False)


@workflow_app.command()
def delete(name: str = typer.Argument(..., help="workflow name"),
           force: bool = typer.Option(False, "--force", help="cancel it first if it runs"),
           url: Url = None, token: Token = None) -> None:
    """Delete a workflow, its state and its upload."""
    with client(url, token) as c:
        c.delete(name, force=force)
    out.print(f"deleted workflow '{name}'", highlight=False)


@workflow_app.command()
def graph(name: str = typer.Argument(..., help="workflow name"),
          output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                help="SVG file (default: NAME.svg)"),
          url: Url = None, token: Token = None) -> None:
    """Save the workflow's graph as SVG, coloured by state."""
    with client(url, token) as c:
        svg = c.graph(name)
    target = output or Path(f"{name}.svg")
    try:
        target.write_bytes(svg)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror}", 1)
    err.print(f"wrote {target}", highlight=False)


@workflow_app.command()
def log(name: str = typer.Argument(..., help="workflow name"),
        job: str = typer.Argument(..., help="job name"),
        follow_: bool = typer.Option(False, "--follow", "-f", help="keep printing as the "
                                     "log grows, until the job ends"),
        tail: Optional[int] = typer.Option(None, "--tail", "-n", min=1, help="last N lines"),
        url: Url = None, token: Token = None) -> None:
    """Print a job's log (of its current attempt)."""
    with client(url, token) as c:
        offset = 0
        while True:
            chunk = c.log(name, job, offset=offset, tail=tail)
            sys.stdout.write(chunk["data"])
            offset, tail = chunk["next_offset"], None
            if offset >= chunk["size"] or not chunk["data"]:
                break
        sys.stdout.flush()
        if follow_:
            for text in c.follow_log(name, job, offset=offset):
                sys.stdout.write(text)
                sys.stdout.flush()


# -- jobs ------------------------------------------------------------------------------------

def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """key=value pairs; a value is read as a YAML scalar (retries=2 is a number, a
    quoted or plain text is a string), or a flow collection when it starts with { or [."""
    attrs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            fail(f"'{pair}' is not key=value (e.g. exec='echo hi' or retries=2)", 2)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        if isinstance(value, (dict, list)) and not text.lstrip().startswith(("{", "[")):
            value = text
        attrs[key.strip()] = value
    return attrs


@job_app.command("add")
def job_add(name: str = typer.Argument(..., help="workflow name"),
            job: str = typer.Argument(..., help="job name"),
            attributes: Optional[list[str]] = typer.Argument(
                None, help="key=value attributes, as in the YAML: exec='echo hi' retries=2"),
            after: Optional[str] = typer.Option(None, "--after", help="its parents: a,b"),
            url: Url = None, token: Token = None) -> None:
    """Add or replace a job (while the workflow is not running)."""
    attrs = parse_assignments(attributes or [])
    with client(url, token) as c:
        res = c.put_job(name, job, attrs, after=after)
    parents = ", ".join(res.get("parents") or []) or "none"
    out.print(f"job '{job}' of '{name}' set (parents: {parents})", highlight=False)


@job_app.command("delete")
def job_delete(name: str = typer.Argument(..., help="workflow name"),
               job: str = typer.Argument(..., help="job name"),
               url: Url = None, token: Token = None) -> None:
    """Remove a job and its edges (while the workflow is not running)."""
    with client(url, token) as c:
        c.delete_job(name, job)
    out.print(f"job '{job}' removed from '{name}'", highlight=False)
