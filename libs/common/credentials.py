"""The embedded NATS server's token: one per home, in ``$JOBMESH_HOME/nats.token``.

The file is created with mode 0600 from the start (a private temporary file renamed into
place), so no other account ever sees it. The process that starts the embedded server
replaces a token whose file other accounts could read; a client refuses to use one.
Commands and services of the same home read it; nothing else needs to know it.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path

from .bus import BusError

TOKEN_FILE = "nats.token"


class CredentialsError(BusError):
    """The home's credentials cannot be used (missing, readable by others, not ours)."""


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


# Windows has no O_NOFOLLOW (os.open does not follow symlinks' targets the same way there,
# and _check refuses a link before it is read), no fchmod before 3.13 and no uids: 0 and
# guards keep the same code working, with the POSIX checks where they mean something.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600: into a new private file, then renamed
    over ``path``, so that neither a reader nor a crash ever sees a partial or open file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, text.encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _check(path: Path) -> str | None:
    """Why the file must not be used, or None. Raises FileNotFoundError."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if not hasattr(os, "geteuid"):  # Windows: no uids, and mode bits are not access rights
        return None
    if st.st_uid != os.geteuid():
        return f"belongs to another account (uid {st.st_uid})"
    if st.st_mode & 0o077:
        return f"can be read by other accounts (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _read(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    with os.fdopen(fd) as f:
        return f.read().strip()


def ensure_token(home: Path) -> tuple[str, str | None]:
    """The token for a server this process is about to start: the stored one, or a new
    one when there is none or when other accounts could have read it. Returns (token,
    a warning to show or None). Call it only while holding the home's stack lock."""
    path = token_path(home)
    try:
        try:
            problem = _check(path)
            token = _read(path) if problem is None else ""
        except FileNotFoundError:
            problem, token = None, ""
        if token and problem is None:
            return token, None
        warning = None
        if problem is not None:
            warning = (f"{path} {problem}: replaced it with a new token (mode 0600); "
                       "anything that used the old one must read the new one")
            path.unlink()  # another account's file may not be renamed over in a sticky dir
        token = secrets.token_urlsafe(32)
        write_private(path, token + "\n")
    except OSError as exc:
        raise CredentialsError(f"cannot write the NATS token {path}: {exc.strerror}; check "
                               f"that {home} is yours and writable") from None
    return token, warning


def read_token(home: Path) -> str:
    """The token of the home's running embedded server, for a client. Refuses a file
    other accounts can read or replace, with how to fix it."""
    path = token_path(home)
    restart = "'jobmesh down' and 'jobmesh up' make a new one"
    try:
        problem = _check(path)
        if problem is None:
            token = _read(path)
            if token:
                return token
            problem = "is empty"
    except FileNotFoundError:
        raise CredentialsError(f"the NATS token {path} is missing; {restart}") from None
    except OSError as exc:
        raise CredentialsError(f"cannot read the NATS token {path}: {exc.strerror}") from None
    raise CredentialsError(f"the NATS token {path} {problem}; {restart}")


def embedded_urls(home: Path) -> set[str]:
    """The client URLs of the home's running embedded NATS server (for ``jobmesh up`` from
    service.json, for any embedded server from its ports file), empty if none runs."""
    urls: set[str] = set()
    try:
        urls.add(str(json.loads((home / "service.json").read_text())["nats_url"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for ports in (home / "nats").glob("nats-server_*.ports"):
        try:
            pid = int(ports.stem.rsplit("_", 1)[1])
            os.kill(pid, 0)
            urls.update(str(u) for u in json.loads(ports.read_text()).get("nats", []))
        except (OSError, ValueError, IndexError, AttributeError):
            continue
    return urls
