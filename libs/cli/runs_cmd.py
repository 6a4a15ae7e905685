"""``jobmesh runs NAME`` and ``jobmesh status NAME --run R``: the run history the monitor
keeps (KV bucket ``runs``, ``jobmesh.monitor.history``), read through the home's stack."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
import yaml
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from rich.table import Table
from rich.text import Text

from jobmesh.common import names, ops
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.names import check_workflow
from jobmesh.common.report import iso
from jobmesh.monitor import history

from . import view

Bars = "▁▂▃▄▅▆▇█"


async def _read(name: str, run: str | None) -> tuple[WorkflowSnapshot | None, list[dict[str, Any]],
                                                     WorkflowSnapshot | None]:
    """(current snapshot, kept run summaries, the record of ``run``) once the monitor has
    folded the whole log."""
    from .main import Stack, _home, _settle

    async with Stack(_home(), services=("executor", "monitor"), take_work=False) as stack:
        if stack.executors:
            await _settle(stack)
        snap = await ops.snapshot(stack.js, name)
        runs: list[dict[str, Any]] = []
        record = None
        try:
            kv = await stack.js.key_value(history.BUCKET)
        except (NotFoundError, BucketNotFoundError):
            kv = None
        if kv is not None:
            try:
                runs = json.loads((await kv.get(history.index_key(name))).value or b"{}")\
                    .get("runs", [])
            except (KeyNotFoundError, NotFoundError):
                pass
            if run is not None and not (snap is not None and snap.run == run):
                try:
                    entry = await kv.get(history.record_key(name, run))
                    record = history.read_record(entry.value)[0] if entry.value else None
                except (KeyNotFoundError, NotFoundError):
                    pass
    return snap, runs, record


def lines(snap: WorkflowSnapshot | None, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every kept run, newest first, the current one with its live state."""
    if snap is not None:
        runs = [r for r in runs if r.get("run") != snap.run] + [history.summary(snap)]
    runs = sorted(runs, key=lambda r: (r.get("created") or 0, r.get("run") or ""), reverse=True)
    current = snap.run if snap else None
    return [{"run": r["run"], "state": r["state"], "current": r["run"] == current,
             "created": iso(r.get("created")), "started": iso(r.get("started")),
             "ended": iso(r.get("ended")), "duration": r.get("duration"),
             "jobs": r.get("jobs", 0), "counts": r.get("counts", {}),
             "replaced_by": r.get("replaced_by")} for r in runs]


def seconds(d: float | None) -> str:
    if d is None:
        return ""
    s = round(d)
    return f"{d:.1f}s" if d < 60 else f"{s // 60}m {s % 60:02d}s" if s < 3600 else \
        f"{s // 3600}h {s // 60 % 60:02d}m"


def spark(durations: list[float | None]) -> str:
    """Run durations, oldest first, as one line of block characters."""
    known = [d for d in durations if d is not None]
    top = max(known, default=0) or 1
    return "".join(" " if d is None else Bars[min(7, int(d / top * 7.999))] for d in durations)


def runs_table(name: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=f"{name}: {len(rows)} runs", title_justify="left")
    for col in ("run", "state", "started", "ended", "duration", "jobs", "done", "failed"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        c = r["counts"]
        label = f"{r['run']} (current)" if r["current"] else r["run"]
        t.add_row(label, Text(r["state"], style=view.STYLE.get(r["state"], "")),
                  (r["started"] or r["created"] or "")[:19].replace("T", " "),
                  (r["ended"] or "")[:19].replace("T", " "), seconds(r["duration"]),
                  str(r["jobs"]), str(c.get("SUCCEEDED", 0)), str(c.get("FAILED", 0)))
    return t


def runs(name: str = typer.Argument(..., help="workflow name"),
         output: str = typer.Option("table", "--output", "-o", help="table, json or yaml")
         ) -> None:
    """List a workflow's runs, newest first: state, times, duration and job counts."""
    from .main import UserError, err, out

    check_workflow(name)
    if output not in ("table", "json", "yaml"):
        raise UserError(f"--output {output!r}: use table, json or yaml")
    snap, kept, _ = asyncio.run(_read(name, None))
    if snap is None and not kept:
        raise UserError(f"no workflow named '{name}'; 'jobmesh list' shows the workflows", 1)
    rows = lines(snap, kept)
    if output == "json":
        print(json.dumps({"name": name, "runs": rows}, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump({"name": name, "runs": rows}, sort_keys=False), end="")
    else:
        out.print(runs_table(name, rows))
        durations = [r["duration"] for r in reversed(rows)]
        if len(durations) > 1:
            err.print(f"durations, oldest to newest: {spark(durations)}", highlight=False)


def past_run(name: str, run: str) -> WorkflowSnapshot:
    """The snapshot of one run (the current one, or a kept one) for ``status --run``."""
    from .main import UserError

    check_workflow(name)
    try:
        names.check_run(run)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    snap, kept, record = asyncio.run(_read(name, run))
    if snap is not None and snap.run == run:
        return snap
    if record is None:
        if snap is None and not kept:
            raise UserError(f"no workflow named '{name}'; 'jobmesh list' shows the workflows", 1)
        raise UserError(f"workflow '{name}' has no run '{run}' (it may be older than the runs "
                        f"kept); 'jobmesh runs {name}' lists them", 1)
    return record

