"""``jobmesh run``'s work without its command line: the run on the embedded stack, the
live view, the results. No typer here: entry.py calls ``run_plain`` for a plain
``jobmesh run FILE [-q] [-p N] [-n NAME] [--restart]`` without loading typer and the
other commands (~0.1 s of a 1-job run); every other form goes through run_cmd.py."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import zlib
from pathlib import Path

from rich.live import Live

from jobmesh.common import follow, ops, signals
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.packing import unpack
from jobmesh.common.report import write_status_json
from jobmesh.common.spec import Workflow
from jobmesh.common.states import WorkflowState

from . import view
from .base import UserError, _home, _load, err, out
from .stack import Stack


def run_plain(file: Path, parallel: int = 0, name: str | None = None, restart: bool = False,
              quiet: bool = False, var: list[str] | None = None,
              allow_large: bool = False) -> int:
    """``jobmesh run``: its exit code."""
    parallel = parallel or os.cpu_count() or 1
    loaded = [_load(file, name, var, allow_large)]
    if parallel < 1:
        raise UserError("--parallel must be at least 1")
    # (handed over in a list that _run empties: no frame here keeps the parsed spec)
    return asyncio.run(_run(loaded, parallel, restart, quiet))


async def _run(loaded: list[Workflow], parallel: int, restart: bool, quiet: bool) -> int:
    """The run of ``loaded[0]`` (taken out of the list: once it is submitted only the
    services keep a spec, see ``kept`` below)."""
    wf: Workflow | None = loaded.pop()
    assert wf is not None
    interrupted = asyncio.Event()
    stopped_by: list[int] = []  # the signal that stopped the run

    def stop(sig: int) -> None:
        stopped_by.append(sig)
        interrupted.set()

    signals.on_stop(stop)
    async with Stack(_home(), live_graphs=False) as stack:
        snap, old = await asyncio.gather(ops.snapshot(stack.js, wf.name),
                                          ops.spec(stack.js, wf.name))
        changed = old is not None and old.digest() != wf.digest()
        del old  # (the earlier run's spec: ~4 KB a job, not needed again)
        own: tuple[str, str] | None = None  # a submission of ours (follow.submitting)
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
            # Our own scheduler and monitor take this spec for the submission rather
            # than decode a second copy of it from the log (follow.submitting).
            run_id = ops.new_run_id()
            follow.submitting(wf, run_id)
            own = (wf.name, run_id)
            run_id, seq = await ops.submit(stack.js, wf, parallel, run=run_id,
                                           cache=not restart)
            since = f"; reusing what it can from run {snap.run}" \
                if snap is not None and not restart else ""
            err.print(f"[bold]{wf.name}[/]: run {run_id}, {len(wf.jobs)} jobs, up to "
                      f"{parallel} at once{since}", highlight=False)
        before = None if snap is None else (snap.run, snap.state)
        name, dynamic = wf.name, wf.dynamic
        # The in-process monitor and scheduler hold the submitted spec (this very object,
        # or decoded from the log): the command lets go of it and of the old snapshot
        # while the run goes on. A shared stack (``jobmesh up``) has no monitor here: its
        # final graph is laid out from this copy.
        kept = wf if stack.monitor is None else None
        del snap, wf
        try:
            final = await _follow(stack, name, run_id, seq, interrupted, quiet)
        finally:
            if own is not None:  # (no follower of ours took it: a shared stack)
                follow.submitted(*own)
        if final is None:
            err.print(f"\n[yellow]interrupted[/]: jobs keep running. Run the same command "
                      f"again to re-attach, or 'jobmesh status {name}'.")
            # 129 after a lost terminal (SIGHUP), as a shell reports it; 130 otherwise
            hup = getattr(signal, "SIGHUP", None)
            return 129 if hup is not None and hup in stopped_by[:1] else 130
        out.print(view.final_table(final))
        _reused(final, before)
        if dynamic and kept is not None:  # it grew while it ran: draw what ran
            kept = await ops.spec(stack.js, name) or kept
        svg_path, state_path = await _write_results(stack, name, kept, final)
        err.print(f"graph: {svg_path}\nstate: {state_path}", highlight=False)
        return 0 if final.state is WorkflowState.SUCCEEDED else 1


def _reused(final: WorkflowSnapshot, before: tuple[str, WorkflowState] | None) -> None:
    """Say how many jobs were reused from earlier runs and the run time that saved;
    ``before``: the earlier snapshot's run and state."""
    cached = [j.cached_from for j in final.jobs.values() if j.cached_from]
    if not cached:
        return
    saved = sum(c.get("seconds") or 0.0 for c in cached)
    if len(cached) == len(final.jobs) and before is not None and \
            before[1] is WorkflowState.SUCCEEDED:
        err.print(f"{final.name}: nothing changed since run {before[0]}, which already "
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
    raw: list[bytes] = []  # the last snapshot of the run, as stored (maybe packed)
    ended: list[int] = []  # its seq, once it is the run's end
    done = asyncio.Event()

    async def watch() -> None:
        async for value in ops.watch_raw(stack.js, wf, unpacked=False):
            head: tuple[str, str, int | None] | None = _front(value)
            if head is None:  # not our encoding: decode it the slow way
                snap = WorkflowSnapshot.model_validate_json(unpack(value))
                head = (snap.run, snap.state.value, snap.seq)
            if head[0] != run_id:
                continue
            raw[:] = [value]
            if not WorkflowState(head[1]).terminal:
                continue
            last = head[2]
            if last is None:  # the top-level seq follows the jobs: unpack it all, once
                whole = ops.peek(value)
                last = whole[2] if whole is not None else \
                    WorkflowSnapshot.model_validate_json(unpack(value)).seq
            if last >= seq:
                ended[:] = [last]
                done.set()
                return

    def latest() -> WorkflowSnapshot | None:
        return WorkflowSnapshot.model_validate_json(unpack(raw[0])) if raw else None

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
    if not done.is_set():
        return None
    mine = stack.monitor.final_of(wf, run_id, ended[0]) if stack.monitor is not None \
        else None
    return mine or latest()  # the in-process monitor's is what was stored: no decode


_HEAD = re.compile(rb'^\{"name":"[^"]*","run":"([^"]*)","state":"([A-Z]+)"')


def _front(value: bytes) -> tuple[str, str, int | None] | None:
    """(run, state, None) from the first bytes of a stored snapshot, or None when it is not
    laid out as the monitor writes it. A big snapshot is stored zlib-packed (100,000 jobs:
    ~5 MB, ~45 MB unpacked): only its start is unpacked, not the whole at every update."""
    try:
        front = zlib.decompressobj().decompress(value, 4096) if value[:1] == b"x" \
            else value[:4096]
    except zlib.error:
        return None
    m = _HEAD.match(front)
    return None if m is None else (m.group(1).decode(), m.group(2).decode(), None)


async def _write_results(stack: Stack, name: str, wf: Workflow | None,
                         snap: WorkflowSnapshot) -> tuple[Path, Path]:
    """The final graph and state.json. The graph is the monitor's: it laid the run out
    once (Graphviz, in a thread, while the jobs ran); here it is only recoloured. Without
    an in-process monitor (a ``jobmesh up`` stack) it is laid out here from ``wf``; if the
    monitor has no layout, from the spec it folded (or the stored one)."""
    from jobmesh.monitor.graph import layout, layout_key

    folder = _home() / "runs" / name / snap.run
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    graph = None
    if stack.monitor is not None:
        try:
            graph = await stack.monitor.graph_of(name, layout_key(snap))
        except Exception:  # noqa: BLE001  (laid out here instead)
            graph = None
    if graph is None:
        if wf is None and stack.monitor is not None:
            folded: Workflow | None = stack.monitor.fold.specs.get(name)
            wf = folded
        if wf is None:
            wf = await ops.spec(stack.js, name)
        if wf is None:
            raise UserError(f"the spec of workflow '{name}' is gone: no graph drawn", 1)
        graph = await asyncio.to_thread(layout, wf, snap, now)
    svg = graph.patch(snap, now)
    if stack.monitor is not None:  # its run history keeps this final graph
        try:
            await stack.monitor.keep_final(name, snap.run, svg)
        except Exception as exc:  # noqa: BLE001  (the file below is written all the same)
            err.print(f"[yellow]warning:[/] the run's graph was not stored: {exc}")
    (folder / f"{name}.svg").write_bytes(svg)
    with open(folder / "state.json", "w") as f:  # a job at a time (~1 KB a job at once)
        write_status_json(snap, f)
    return folder / f"{name}.svg", folder / "state.json"
