"""The files of a local job's run directory, read and staged: declared inputs and outputs,
the helper library jobs import, small readers, and the event a finished job's files
amount to (outcome.py's rule). No processes here (platforms.py) and no watching (local.py)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from jobmesh.common.messages import JobFailed, JobReady, JobSucceeded
from jobmesh.common.progress import LogScan

from .base import InvalidJobError
from .outcome import ended, ids

ABANDONED_AFTER = 10.0  # seconds: a run directory this old without pid or exit never ran


def stage_files(root: Path, patterns: list[str], what: str) -> list[Path]:
    """Files under root matching the patterns, as relative paths. A pattern that matches
    nothing is an error (a declared input or output that is not there)."""
    found: list[Path] = []
    if not patterns:
        return found
    base = root.resolve()
    for pattern in patterns:
        matches = [p for p in sorted(root.glob(pattern)) if p.is_file()]
        if not matches:
            raise InvalidJobError(f"declared {what} '{pattern}' matches no file in {root}")
        for p in matches:
            real = p.resolve()
            if base not in real.parents:
                raise InvalidJobError(f"{what} '{p}' leaves {root}")
            found.append(p.relative_to(root))
    return found


def helper_lib(workdir: Path) -> str:
    """A folder holding only jobmesh's job-side helpers (jobmesh.progress, .output), for
    jobs' PYTHONPATH: any Python, even without jobmesh installed, can import them."""
    import jobmesh

    lib = workdir / ".lib"
    target = lib / "jobmesh" / "__init__.py"
    source = Path(jobmesh.__file__).read_text()
    if not target.exists() or target.read_text() != source:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, target)
    return str(lib)


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def read_int(path: Path) -> int | None:
    text = read_text(path).strip()
    return int(text) if text.isdigit() else None


def read_outputs(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def abandoned(rdir: Path) -> bool:
    """A run directory whose wrapper was never started: its launcher died between mkdir
    and starting it. (A started wrapper writes ``pid`` within milliseconds, and the
    JobReady comes back only after the consumer's ack wait, far longer.)"""
    try:
        age = time.time() - rdir.stat().st_mtime
    except FileNotFoundError:
        return False
    return (age > ABANDONED_AFTER and not (rdir / "pid").exists()
            and not (rdir / "exit").exists())


def terminal_event(job: JobReady, rdir: Path, s: LogScan, code: int | None, now: float) -> Any:
    """The terminal event of a job whose wrapper has ended, from its run directory's
    ``cancel``, ``reason`` and ``outputs.json`` files, its exit ``code`` (None: it was
    killed before writing one) and what its log said, by the rule every executor shares
    (outcome.py). A success copies the declared outputs back to the workflow's folder;
    one that is missing fails the job."""
    cancel = rdir / "cancel"
    mark = read_text(cancel).strip() if cancel.exists() else None
    outputs = dict(s.outputs or {})
    outputs.update(read_outputs(rdir / "outputs.json"))
    told = read_text(rdir / "reason").strip() if code not in (None, 0) else ""
    event = ended(job, code, mark, told, s, outputs, now)
    if event is not None:
        return event
    common: dict[str, Any] = dict(progress=s.progress, msg=s.msg, outputs=outputs or None,
                                  time=now)
    try:
        for rel in stage_files(rdir, job.spec.outputs, "output"):
            dest = Path(job.base_dir) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(rdir / rel, dest)
    except (InvalidJobError, OSError) as exc:
        return JobFailed(**ids(job), exit_code=0, reason=str(exc), **common)
    return JobSucceeded(**ids(job), exit_code=0, **common)
