"""A job's cache key: what decides whether an earlier run's result can stand in for it.

Two attempts with the same key ran the same thing on the same inputs, so a succeeded one
can be reused (docs/workflows.md#resume-and-caching). The key is a SHA-256 over:

- the resolved spec (placeholders filled in): ``kind``, ``pool``, ``host``, ``user``,
  ``venv``, ``exec``, ``args``, ``env``, ``parameters``, the foreach ``params``, the
  declared ``inputs:`` and ``outputs:`` patterns, the script's file name, and every
  attribute jobmesh does not know itself (batch resources such as ``partition``,
  ``nodes``, ``gres``, a host's ``workdir`` or ``python``), except the ones in
  ``IGNORED_EXTRAS``;
- the workflow's folder (jobs see it as ``$JOBMESH_WORKFLOW_DIR``);
- the bytes of the script and of every file the ``inputs:`` patterns match (with their
  paths relative to the workflow's folder);
- the parents' keys, so everything downstream of a change gets a new key.

Left out, because they do not change what a job computes: ``timeout``, ``retries``,
``retry_delay``, ``allow_failure``, ``when``, ``label``/``shape``/``style``, the batch
time limit ``time``, ``slurm_dependencies``, ``cache`` itself.

A job has no key (``None``: it always runs, and so do its children) when it says
``cache: false``, when it is part of a ``repeat:`` loop, when a parent has no key, or
when its script or an input cannot be read here.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .spec import JobSpec

VERSION = "jobmesh-cache-1"  # bump when what goes into a key changes
# Node attributes jobmesh does not model that change no result: looks and limits.
IGNORED_EXTRAS = frozenset({
    "label", "label_format", "shape", "style", "color", "fillcolor", "fontcolor",
    "time", "instance", "progress", "status", "created", "modified", "number",
    "slurm_dependencies", "description", "comment",
})
KEYED_FIELDS = ("kind", "pool", "host", "user", "venv", "exec", "args", "env",
                "parameters", "params", "inputs", "outputs")
CHUNK = 1 << 20


class Unkeyable(Exception):
    """This job cannot get a key (a file is missing or unreadable): it runs."""


def material(spec: JobSpec, base_dir: str, parent_keys: Iterable[tuple[str, str]],
             files: Mapping[str, str]) -> dict[str, Any]:
    """Everything that goes into the key, as plain data (pure; shown by tests and docs).
    ``files`` maps each read file (script, inputs) to the SHA-256 of its bytes."""
    fields = {k: getattr(spec, k) for k in KEYED_FIELDS}
    extras = {k: v for k, v in sorted(spec.extras.items()) if k not in IGNORED_EXTRAS}
    return {
        "version": VERSION,
        "spec": fields,
        "extras": extras,
        "job_type": spec.job_type,
        "script": os.path.basename(spec.script) if spec.script else None,
        "base_dir": base_dir,
        "files": dict(sorted(files.items())),
        "parents": sorted(parent_keys),
    }


def digest(doc: Mapping[str, Any]) -> str:
    """SHA-256 of ``doc`` as sorted, compact JSON. A long ``parents`` list (the fan-in
    job of a 100,000-job sweep: ~10 MB of JSON) is hashed a thousand pairs at a time,
    to the same digest, instead of as one text and its bytes."""
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
    parents = doc.get("parents")
    if isinstance(parents, list) and len(parents) > STREAM_PARENTS:
        mark = secrets.token_hex(16)  # stands in for the list; found exactly once
        text = dumps({**doc, "parents": mark})
        head, sep, tail = text.partition(f'"{mark}"')
        if sep and mark not in tail:
            h = hashlib.sha256(head.encode() + b"[")
            for i in range(0, len(parents), STREAM_PARENTS):
                piece = dumps(parents[i:i + STREAM_PARENTS])[1:-1]
                h.update((piece if i == 0 else "," + piece).encode())
            h.update(b"]" + tail.encode())
            return h.hexdigest()
    return hashlib.sha256(dumps(doc).encode()).hexdigest()


STREAM_PARENTS = 1000


class FileDigests:
    """SHA-256 of files, remembered by (path, size, mtime, inode) so a file many jobs
    read (or an unchanged input on the next run of this process) is read once."""

    def __init__(self, limit: int = 10_000):
        self.memo: dict[tuple[str, int, int, int], str] = {}
        self.limit = limit

    def __call__(self, path: Path) -> str:
        try:
            st = path.stat()
            stamp = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
            known = self.memo.get(stamp)
            if known is not None:
                return known
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
        except OSError as exc:
            raise Unkeyable(f"cannot read {path}: {exc.strerror or exc}") from None
        value = h.hexdigest()  # (threads share the memo: never read it back)
        if len(self.memo) >= self.limit:
            self.memo.clear()
        self.memo[stamp] = value
        return value


def input_files(base: Path, patterns: list[str]) -> list[Path]:
    """The files the ``inputs:`` patterns match, relative to ``base`` (as the executors
    stage them). A pattern that matches nothing makes the job unkeyable (it will fail
    when staged)."""
    found: list[Path] = []
    root = base.resolve()
    for pattern in patterns:
        matches = [p for p in sorted(base.glob(pattern)) if p.is_file()]
        if not matches:
            raise Unkeyable(f"input '{pattern}' matches no file in {base}")
        for p in matches:
            if root not in p.resolve().parents:
                raise Unkeyable(f"input '{p}' leaves {base}")
            found.append(p.relative_to(base))
    return found


def job_key(spec: JobSpec, base_dir: str, parent_keys: Iterable[tuple[str, str | None]],
            digests: FileDigests | None = None) -> str | None:
    """The job's key, or None when it has none (see the module's docstring). Reads the
    script and the input files, where the executors stage them from."""
    parents = list(parent_keys)
    if not spec.cache or spec.repeat is not None or spec.group is not None:
        return None
    if any(k is None for _, k in parents):
        return None
    digests = digests or FileDigests()
    files: dict[str, str] = {}
    base = Path(base_dir)
    try:
        if spec.script:
            files["script:" + os.path.basename(spec.script)] = digests(Path(spec.script))
        for rel in input_files(base, spec.inputs):
            files["input:" + rel.as_posix()] = digests(base / rel)
    except Unkeyable:
        return None
    keyed = [(p, k) for p, k in parents if k is not None]
    return digest(material(spec, base_dir, keyed, files))
