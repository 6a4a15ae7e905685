"""Unpack an uploaded workflow safely: a YAML file, or a .tar/.tar.gz/.tgz/.zip archive.

Refused, with the member named: absolute paths, '..', links, devices and FIFOs, names
that cannot be a file here (empty, '.', a part over 255 bytes, a NUL), a file and a
folder of the same name, more than MAX_FILES members, more than MAX_BYTES unpacked, and
archives that are corrupt (bad gzip, truncated tar, bad zip CRC or deflate data). Every
member is checked before anything is written, and nothing is written outside ``dest``.
Messages name members as the archive does, never a path on the server.
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

MAX_FILES = 1000
MAX_BYTES = 200 * 1024 * 1024
MAX_PART = 255       # bytes in one path component (NAME_MAX on Linux and macOS)
MAX_PATH = 1024      # bytes in a member's whole name (well under PATH_MAX)
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
YAMLS = (".yaml", ".yml")
# What a corrupt archive raises while it is read: tarfile and zipfile errors, gzip's
# BadGzipFile (an OSError) and EOFError, zlib's error for bad deflate data, a CRC error
# (BadZipFile), an encrypted or unknown zip method (RuntimeError, NotImplementedError).
CORRUPT = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError,
           RuntimeError, NotImplementedError, ValueError)


class UnsafeUpload(ValueError):
    """The upload is refused; the message says which member and why."""


def kind_of(filename: str) -> str:
    low = filename.lower()
    if low.endswith(YAMLS):
        return "yaml"
    for ext in ARCHIVES:
        if low.endswith(ext):
            return "zip" if ext == ".zip" else "tar"
    raise UnsafeUpload(f"'{filename[:200]}' is neither a YAML file nor a .tar, .tar.gz, .tgz "
                       "or .zip archive")


def _safe_name(name: str, is_dir: bool = False) -> PurePosixPath:
    """The member's relative path; UnsafeUpload when it may not or cannot be written."""
    shown = name[:200]
    if "\x00" in name:
        raise UnsafeUpload(f"archive member '{shown!r}' has a NUL character in its name")
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeUpload(f"archive member '{shown}' has an absolute path")
    if ".." in p.parts:
        raise UnsafeUpload(f"archive member '{shown}' leaves the workflow folder ('..')")
    if not is_dir and str(p) in ("", "."):
        raise UnsafeUpload(f"archive member '{shown}' has no file name")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise UnsafeUpload(f"archive member '{shown}...' has a name longer than {MAX_PATH} "
                           "bytes")
    for part in p.parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_PART:
            raise UnsafeUpload(f"archive member '{shown}' has a name part longer than "
                               f"{MAX_PART} bytes")
    return p


class _Plan:
    """The members to write, checked as a whole before anything is written."""

    def __init__(self) -> None:
        self.files: dict[str, object] = {}
        self.dirs: set[str] = set()
        self.total = 0

    def add(self, rel: PurePosixPath, shown: str, is_dir: bool, size: int, member: object,
            count: int) -> None:
        if count > MAX_FILES:
            raise UnsafeUpload(f"the archive holds more than {MAX_FILES} files")
        self.total += max(0, size)
        if self.total > MAX_BYTES:
            raise UnsafeUpload(f"the archive unpacks to more than {MAX_BYTES // 2**20} MB")
        key = str(rel)
        parents = [str(p) for p in rel.parents if str(p) != "."]
        for parent in parents:
            if parent in self.files:
                raise UnsafeUpload(f"archive member '{shown[:200]}' is inside '{parent}', "
                                   "which is a file")
        if is_dir:
            if key in self.files:
                raise UnsafeUpload(f"archive member '{shown[:200]}' is both a file and a "
                                   "folder")
            if key != ".":
                self.dirs.add(key)
        else:
            if key in self.dirs:
                raise UnsafeUpload(f"archive member '{shown[:200]}' is both a file and a "
                                   "folder")
            self.files[key] = member
        self.dirs.update(parents)


def extract(data: bytes, filename: str, dest: Path) -> list[str]:
    """Unpack into dest (which must exist and be empty); returns the file names."""
    kind = kind_of(filename)
    if kind == "yaml":
        name = _safe_name(PurePosixPath(filename).name)
        (dest / str(name)).write_bytes(data)
        return [str(name)]
    try:
        if kind == "zip":
            return _unzip(data, dest)
        return _untar(data, dest)
    except UnsafeUpload:
        raise
    except CORRUPT as exc:
        what = "zip" if kind == "zip" else "tar"
        raise UnsafeUpload(f"'{PurePosixPath(filename).name[:200]}' is not a readable {what} "
                           f"archive ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    """What went wrong, without the server's paths (an OSError's text names its file)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).split(":", 1)[0] if isinstance(exc, OSError) else str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _copy(src: IO[bytes], target: Path, limit: int, shown: str) -> None:
    with open(target, "wb") as out:
        copied = 0
        while chunk := src.read(1 << 20):
            copied += len(chunk)
            if copied > limit:
                raise UnsafeUpload(f"archive member '{shown[:200]}' is larger than it says")
            out.write(chunk)


def _write(dest: Path, plan: _Plan, opened: Iterator[tuple[str, IO[bytes], int, int]]
           ) -> list[str]:
    for d in sorted(plan.dirs):
        (dest / d).mkdir(parents=True, exist_ok=True)
    names = []
    for rel, src, size, mode in opened:
        target = dest / rel
        with src:
            _copy(src, target, max(size, 0), rel)
        target.chmod(0o755 if mode & 0o111 else 0o644)
        names.append(rel)
    return names


def _untar(data: bytes, dest: Path) -> list[str]:
    tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    with tar:
        members = tar.getmembers()
        plan = _Plan()
        for m in members:
            if m.issym() or m.islnk():
                raise UnsafeUpload(f"archive member '{m.name[:200]}' is a link; links are "
                                   "refused")
            if not (m.isfile() or m.isdir()):
                raise UnsafeUpload(f"archive member '{m.name[:200]}' is a device or FIFO; "
                                   "refused")
            rel = _safe_name(m.name, m.isdir())
            plan.add(rel, m.name, m.isdir(), m.size, m, len(members))

        def opened() -> Iterator[tuple[str, IO[bytes], int, int]]:
            for rel, m in plan.files.items():
                assert isinstance(m, tarfile.TarInfo)
                src = tar.extractfile(m)
                if src is None:
                    raise UnsafeUpload(f"archive member '{m.name[:200]}' cannot be read")
                yield rel, src, m.size, m.mode

        return _write(dest, plan, opened())


def _unzip(data: bytes, dest: Path) -> list[str]:
    zf = zipfile.ZipFile(io.BytesIO(data))
    with zf:
        infos = zf.infolist()
        plan = _Plan()
        for info in infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeUpload(f"archive member '{info.filename[:200]}' is a link; refused")
            kind = stat.S_IFMT(mode)  # 0 when the zip tool recorded only permissions
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeUpload(f"archive member '{info.filename[:200]}' is not a plain "
                                   "file")
            rel = _safe_name(info.filename, info.is_dir())
            plan.add(rel, info.filename, info.is_dir(), info.file_size, info, len(infos))

        def opened() -> Iterator[tuple[str, IO[bytes], int, int]]:
            for rel, info in plan.files.items():
                assert isinstance(info, zipfile.ZipInfo)
                yield rel, zf.open(info), info.file_size, info.external_attr >> 16

        return _write(dest, plan, opened())


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
