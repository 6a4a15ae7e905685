"""``jobmesh status``, ``jobmesh list`` and ``jobmesh graph``: a workflow's state, read
through the home's stack once executors and the monitor have caught up."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
import yaml

from jobmesh.common import ops
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.names import check_job, check_workflow
from jobmesh.common.report import job_json, write_status_json
from jobmesh.common.spec import Workflow

from . import view
from .base import Output, UserError, _home, err, out
from .runs_cmd import past_run
from .stack import Stack


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


def status(
    name: str = typer.Argument(..., help="workflow name"),
    output: Output = typer.Option(Output.table, "--output", "-o"),
    job: Optional[str] = typer.Option(None, "--job", "-j", help="one job's details"),
    run: Optional[str] = typer.Option(None, "--run", "-r", help="a past run ('jobmesh runs "
                                      "NAME' lists them); default: the current one"),
) -> None:
    """Show a workflow's state (jobs, progress, exit codes, outputs)."""
    if job is not None:
        check_job(job)
    snap = past_run(name, run) if run is not None else asyncio.run(_current(name))[0]
    if job is not None and job not in snap.jobs:
        raise UserError(f"workflow '{name}' has no job '{job}'", 1)
    if output is Output.json and job is None:  # a job at a time: a big run's is ~1 KB a job
        write_status_json(snap, sys.stdout)
        print()
    elif output in (Output.json, Output.yaml):
        data = view.status_json(snap) if job is None else \
            {"name": snap.name, "run": snap.run, "job": job, **job_json(snap, job)}
        if output is Output.json:
            print(json.dumps(data, indent=2))
        else:
            print(yaml.safe_dump(data, sort_keys=False), end="")
    elif job is not None:
        out.print(view.job_detail(snap, job))
    else:
        out.print(view.final_table(snap, limit=None))


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

