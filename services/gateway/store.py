"""Uploaded workflows on disk: <home>/workflows/<name>/ holds the YAML and its scripts.

The YAML there is the source of truth for uploaded workflows: job edits rewrite it and
every change is validated by the same loader as ``jobmesh validate``.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import yaml

from jobmesh.common.loader import SpecError, parse_workflow
from jobmesh.common.names import check_job, check_workflow
from jobmesh.common.spec import Workflow

from .uploads import UnsafeUpload

META = ".jobmesh.json"


class Exists(Exception):
    pass


class NotUploaded(Exception):
    pass


class Store:
    def __init__(self, home: Path):
        self.root = home / "workflows"
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, tuple[tuple[int, int, int], Workflow]] = {}

    def folder(self, name: str) -> Path:
        return self.root / check_workflow(name)

    def exists(self, name: str) -> bool:
        return (self.folder(name) / META).exists()

    def _meta(self, name: str) -> dict[str, Any]:
        try:
            meta = json.loads((self.folder(name) / META).read_text())
        except (FileNotFoundError, ValueError):
            raise NotUploaded(f"workflow '{name}' was not uploaded to this service; edit its "
                              "YAML file and run it again") from None
        return meta if isinstance(meta, dict) else {}

    def _yaml_path(self, name: str) -> Path:
        return self.folder(name) / str(self._meta(name)["yaml"])

    def allow_large(self, name: str) -> bool:
        """It was uploaded with ``allow_large`` (more than 10,000 jobs after expansion)."""
        return bool(self._meta(name).get("allow_large"))

    def load(self, name: str) -> Workflow:
        """The uploaded workflow, parsed once per version of its YAML file."""
        path = self._yaml_path(name)
        st = path.stat()
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        wf = parse_workflow(path.read_text(), path.name, base_dir=path.parent,
                            name=name, allow_large=self.allow_large(name)).workflow
        self._cache[name] = (key, wf)
        return wf

    def staging(self) -> Path:
        """A new private folder for an upload on its way in (``install`` or ``discard``)."""
        folder = self.root / f".incoming-{secrets.token_hex(6)}"
        folder.mkdir(mode=0o700)
        return folder

    def install(self, staging: Path, rel: str, wf: Workflow, replace: bool,
                allow_large: bool = False) -> Workflow:
        """Move a checked upload (``unpack.check``'s tree in ``staging``) into place as
        workflow ``wf.name``. Raises Exists (409) unless ``replace``. Nothing already
        stored is touched unless all is well."""
        ypath = staging / "tree" / rel
        final = self.folder(wf.name)
        if final.exists() and not replace:
            raise Exists(f"a workflow named '{wf.name}' exists; to replace it, upload with "
                         "replace=true (`jobmesh workflow add FILE --replace`)")
        (ypath.parent / META).write_text(json.dumps({"yaml": ypath.name,
                                                     "allow_large": allow_large}))
        old = None
        if final.exists():
            old = self.root / f".old-{secrets.token_hex(6)}"
            final.rename(old)
        ypath.parent.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.load(wf.name)

    @staticmethod
    def discard(staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def raw(self, name: str) -> dict[str, Any]:
        return yaml.safe_load(self._yaml_path(name).read_text()) or {}

    def put_job(self, name: str, job: str, attrs: dict[str, Any], after: list[str] | None
                ) -> Workflow:
        check_job(job)
        doc = self.raw(name)
        nodes = doc.setdefault("workflow", {}).setdefault("nodes", {}) or {}
        doc["workflow"]["nodes"] = nodes
        nodes[job] = attrs
        if after is not None:
            deps = doc["workflow"].setdefault("dependencies", []) or []
            deps = [d for d in deps if not (isinstance(d, str) and d.endswith(f",{job}")
                                             and d.count(",") == 1)]
            deps += [f"{check_job(a)},{job}" for a in after]
            doc["workflow"]["dependencies"] = deps
        return self._write(name, doc)

    def delete_job(self, name: str, job: str) -> Workflow:
        doc = self.raw(name)
        nodes = (doc.get("workflow") or {}).get("nodes") or {}
        if job not in nodes:
            raise KeyError(job)
        del nodes[job]
        deps: list[str] = []
        for chain in doc["workflow"].get("dependencies") or []:
            parts = [p.strip() for p in str(chain).split(",") if p.strip() and p.strip() != job]
            if len(parts) > 1:
                deps.append(",".join(parts))
        doc["workflow"]["dependencies"] = deps
        return self._write(name, doc)

    def _write(self, name: str, doc: dict[str, Any]) -> Workflow:
        path = self._yaml_path(name)
        text = yaml.safe_dump(doc, sort_keys=False)
        wf = parse_workflow(text, path.name, base_dir=path.parent, name=name,
                            allow_large=self.allow_large(name)).workflow
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return wf

    def remove(self, name: str) -> None:
        folder = self.folder(name)
        if folder.exists():
            trash = self.root / f".old-{secrets.token_hex(6)}"
            folder.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)


__all__ = ["Store", "Exists", "NotUploaded", "UnsafeUpload", "SpecError"]
