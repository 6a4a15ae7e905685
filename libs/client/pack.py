"""Pack workflows for upload: an in-memory .tar.gz holding the YAML and its files.

The gateway unpacks an archive into the workflow's folder and loads the YAML from there,
so every script a node names, and every file its ``inputs`` stage, must travel with it.
Archives hold plain files only (links are refused by the gateway, so their targets are
copied instead).
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

YAMLS = (".yaml", ".yml")
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
SKIP_DIRS = {"__pycache__", "node_modules"}


def tar_gz(members: dict[str, Path | bytes]) -> bytes:
    """A .tar.gz of ``{name in the archive: file path or content}``. Executable files
    stay executable; everything else is 0644."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for arcname, src in sorted(members.items()):
            if isinstance(src, Path):
                data = src.read_bytes()
                mode = 0o755 if os.access(src, os.X_OK) else 0o644
                mtime = src.stat().st_mtime
            else:
                data, mode, mtime = src, 0o644, now
            info = tarfile.TarInfo(arcname)
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pack_dir(folder: Path) -> tuple[str, bytes]:
    """Every plain file under ``folder`` (hidden files and folders, ``__pycache__`` and
    ``node_modules`` left out), as ``<folder name>.tar.gz``."""
    folder = folder.resolve()
    members: dict[str, Path | bytes] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for f in files:
            path = Path(root) / f
            if f.startswith(".") or not path.is_file():
                continue
            members[path.relative_to(folder).as_posix()] = path
    if not any(n.lower().endswith(YAMLS) for n in members):
        raise ValueError(f"{folder} holds no workflow YAML file")
    return f"{folder.name}.tar.gz", tar_gz(members)


def files_of(yaml_path: Path) -> dict[str, Path]:
    """The files a workflow YAML uses that live under its folder: scripts (named with
    ``script:``, by a node name ending in .sh/.py/.ipynb, or the ``<node>.sh`` default)
    and the files its ``inputs`` stage. An invalid workflow uses none (the gateway then
    reports the problem)."""
    from jobmesh.common.loader import SpecError, load_workflow

    base = yaml_path.resolve().parent
    try:
        wf = load_workflow(yaml_path).workflow
    except SpecError:
        return {}
    found: dict[str, Path] = {}

    def add(path: Path) -> None:
        path = path.resolve()
        if path.is_file() and path.is_relative_to(base) and path != yaml_path.resolve():
            found[path.relative_to(base).as_posix()] = path

    for job in wf.jobs.values():
        if job.script:
            add(Path(job.script))
        for pattern in job.inputs:
            for match in base.glob(pattern):
                if match.is_dir():
                    for sub in match.rglob("*"):
                        add(sub)
                else:
                    add(match)
    return found


def prepare(path: Path) -> tuple[str, bytes]:
    """(file name, bytes) to upload for a YAML file, an archive or a directory. A YAML
    file that uses scripts or input files goes up as ``<stem>.tar.gz`` with them, so the
    workflow keeps the name its file gives it. Raises FileNotFoundError or ValueError."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        return pack_dir(path)
    low = path.name.lower()
    if low.endswith(YAMLS):
        extra = files_of(path)
        if not extra:
            return path.name, path.read_bytes()
        stem = path.name[: -len(".yaml")] if low.endswith(".yaml") else path.name[:-4]
        inner = path.name
        if any("/" not in n and n.lower().endswith(YAMLS) for n in extra):
            inner = "workflow.yaml"  # the name the gateway picks among several YAML files
        members: dict[str, Path | bytes] = {inner: path.read_bytes(), **extra}
        return f"{stem}.tar.gz", tar_gz(members)
    if low.endswith(ARCHIVES):
        return path.name, path.read_bytes()
    raise ValueError(f"{path}: not a workflow; give a .yaml file, a .tar, .tar.gz, .tgz or "
                     ".zip archive, or a directory")
