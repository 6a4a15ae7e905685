"""Unpack and validate an upload in a worker process, off the gateway's event loop.

``jobmesh up`` runs every service on the gateway's event loop, so a big YAML file or an
archive bomb must not be parsed there. Each upload gets a fresh worker process (forked
from a preloaded fork server where there is one, so it starts in milliseconds) with a
memory budget (``RLIMIT_AS``) and a time budget: past either, the worker is killed and
the upload refused with 413. Nothing the worker wrote outside its staging folder exists.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path, PurePosixPath
from typing import Any

from jobmesh.common.loader import SpecError, parse_workflow
from jobmesh.common.spec import Workflow

from .uploads import UnsafeUpload, extract, find_yaml, kind_of

TIME_BUDGET = 60.0               # seconds to unpack and validate one upload
MEMORY_BUDGET = 1536 * 2**20     # address space of the worker process


class OverBudget(Exception):
    """The upload needs more time or memory than its budget (413)."""


@dataclass
class Checked:
    """A valid upload, unpacked under ``staging/tree``: its YAML and its workflow."""
    yaml: str
    workflow: Workflow


def check(staging: Path, filename: str, name: str | None, allow_large: bool = False
          ) -> Checked:
    """Unpack ``staging/upload`` into ``staging/tree`` and validate it, in this process.
    Raises UnsafeUpload (400) or SpecError (422)."""
    kind = kind_of(filename)
    tree = staging / "tree"
    tree.mkdir()
    data = (staging / "upload").read_bytes()
    names = extract(data, filename, tree)
    del data
    rel = find_yaml(names)
    ypath = tree / rel
    text = ypath.read_text(encoding="utf-8", errors="replace")
    stem = PurePosixPath(rel).stem  # a YAML upload: its file name
    if kind != "yaml":  # an archive: its own name, without the extension
        base = PurePosixPath(filename).name
        stem = next((base[: -len(e)] for e in (".tar.gz", ".tgz", ".tar", ".zip")
                     if base.lower().endswith(e)), base)
    wf = parse_workflow(text, rel, base_dir=ypath.parent, name=name, stem=stem,
                        allow_large=allow_large).workflow
    return Checked(rel, wf)


def _worker(conn: Connection, staging: str, filename: str, name: str | None,
            memory: int, allow_large: bool = False) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ImportError, ValueError, OSError):
        pass  # (no RLIMIT_AS on this system: the time budget still holds)
    result: tuple[str, Any]
    try:
        result = ("ok", check(Path(staging), filename, name, allow_large))
    except UnsafeUpload as exc:
        result = ("unsafe", str(exc))
    except SpecError as exc:
        result = ("spec", exc.issues)
    except MemoryError:
        result = ("memory", None)
    except RecursionError:
        result = ("unsafe", "the upload is nested too deeply to read")
    except Exception as exc:  # a bug: say which, never a server path
        result = ("error", type(exc).__name__)
    try:
        conn.send(result)
    except MemoryError:
        conn.send(("memory", None))


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


async def unpack(staging: Path, filename: str, name: str | None,
                 time_budget: float = TIME_BUDGET, memory: int = MEMORY_BUDGET,
                 allow_large: bool = False) -> Checked:
    """``check`` in a fresh worker process within the budgets. Raises what ``check``
    raises, or OverBudget."""
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(child, str(staging), filename, name, memory,
                                             allow_large),
                       daemon=True, name="jobmesh-upload")
    try:
        await asyncio.to_thread(proc.start)
        child.close()
        ready = await asyncio.to_thread(parent.poll, time_budget)
        if not ready:
            raise OverBudget(f"the upload took more than {time_budget:.0f} s to unpack and "
                             "check; make it smaller")
        try:
            kind, value = await asyncio.to_thread(parent.recv)
        except (EOFError, OSError):
            kind, value = "memory", None  # the worker died: the kernel or its limit
    finally:
        if proc.is_alive():
            proc.kill()
        if proc.pid is not None:
            await asyncio.to_thread(proc.join, 10)
        parent.close()
    if kind == "ok":
        assert isinstance(value, Checked)
        return value
    if kind == "unsafe":
        raise UnsafeUpload(value)
    if kind == "spec":
        raise SpecError(list(value))
    if kind == "memory":
        raise OverBudget(f"the upload needs more than {memory // 2**20} MB of memory to "
                         "unpack and check; make it smaller")
    raise UnsafeUpload(f"the upload could not be unpacked ({value})")


__all__ = ["Checked", "OverBudget", "check", "unpack"]
