"""Unpack an uploaded workflow safely: a YAML file, or a .tar/.tar.gz/.tgz/.zip archive.

Refused, with the member named: absolute paths, '..', links, devices and FIFOs, more than
MAX_FILES members, more than MAX_BYTES unpacked. Nothing is written outside ``dest``.
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

MAX_FILES = 1000
MAX_BYTES = 200 * 1024 * 1024
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
YAMLS = (".yaml", ".yml")


class UnsafeUpload(ValueError):
    """The upload is refused; the message says which member and why."""


def kind_of(filename: str) -> str:
    low = filename.lower()
    if low.endswith(YAMLS):
        return "yaml"
    for ext in ARCHIVES:
        if low.endswith(ext):
            return "zip" if ext == ".zip" else "tar"
    raise UnsafeUpload(f"'{filename}' is neither a YAML file nor a .tar, .tar.gz, .tgz or .zip "
                       "archive")


def _safe_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeUpload(f"archive member '{name}' has an absolute path")
    if ".." in p.parts:
        raise UnsafeUpload(f"archive member '{name}' leaves the workflow folder ('..')")
    return p


def extract(data: bytes, filename: str, dest: Path) -> list[str]:
    """Unpack into dest (which must exist and be empty); returns the file names."""
    kind = kind_of(filename)
    if kind == "yaml":
        name = _safe_name(PurePosixPath(filename).name)
        (dest / str(name)).write_bytes(data)
        return [str(name)]
    if kind == "zip":
        return _unzip(data, dest)
    return _untar(data, dest)


def _check_budget(count: int, total: int) -> None:
    if count > MAX_FILES:
        raise UnsafeUpload(f"the archive holds more than {MAX_FILES} files")
    if total > MAX_BYTES:
        raise UnsafeUpload(f"the archive unpacks to more than {MAX_BYTES // 2**20} MB")


def _untar(data: bytes, dest: Path) -> list[str]:
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as exc:
        raise UnsafeUpload(f"not a readable tar archive: {exc}") from None
    names: list[str] = []
    with tar:
        members = tar.getmembers()
        total = 0
        for m in members:
            rel = _safe_name(m.name)
            if m.issym() or m.islnk():
                raise UnsafeUpload(f"archive member '{m.name}' is a link; links are refused")
            if not (m.isfile() or m.isdir()):
                raise UnsafeUpload(f"archive member '{m.name}' is a device or FIFO; refused")
            total += max(0, m.size)
            _check_budget(len(members), total)
            if str(rel) in ("", "."):
                continue
            target = dest / str(rel)
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            if src is None:
                raise UnsafeUpload(f"archive member '{m.name}' cannot be read")
            with src, open(target, "wb") as out:
                out.write(src.read())
            target.chmod(0o755 if m.mode & 0o111 else 0o644)
            names.append(str(rel))
    return names


def _unzip(data: bytes, dest: Path) -> list[str]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UnsafeUpload(f"not a readable zip archive: {exc}") from None
    names: list[str] = []
    with zf:
        infos = zf.infolist()
        total = 0
        for info in infos:
            rel = _safe_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeUpload(f"archive member '{info.filename}' is a link; refused")
            kind = stat.S_IFMT(mode)  # 0 when the zip tool recorded only permissions
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeUpload(f"archive member '{info.filename}' is not a plain file")
            total += info.file_size
            _check_budget(len(infos), total)
            target = dest / str(rel)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                out.write(src.read(MAX_BYTES + 1))
            target.chmod(0o755 if mode & 0o111 else 0o644)
            names.append(str(rel))
    return names


def find_yaml(names: list[str]) -> str:
    """The workflow file inside an upload: the only YAML at the top (or in one folder),
    or the one called workflow.yaml."""
    yamls = [n for n in names if n.lower().endswith(YAMLS)]
    top = [n for n in yamls if len(PurePosixPath(n).parts) == 1]
    if not top:
        dirs = {PurePosixPath(n).parts[0] for n in names}
        if len(dirs) == 1:
            top = [n for n in yamls if len(PurePosixPath(n).parts) == 2]
    if len(top) == 1:
        return top[0]
    named = [n for n in top if PurePosixPath(n).name in ("workflow.yaml", "workflow.yml")]
    if len(named) == 1:
        return named[0]
    if not top:
        raise UnsafeUpload("the archive holds no workflow YAML file at its top level")
    raise UnsafeUpload(f"the archive holds several YAML files ({', '.join(sorted(top))}); "
                       "name the workflow's file workflow.yaml")
