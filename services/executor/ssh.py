"""SSH transport on asyncssh: one connection per user@host:port, shared by staging,
launches, probes, log reads and cancels of every job there.

~/.ssh/config is honoured (Host aliases, User, Port, IdentityFile, ProxyJump), known
hosts are checked unless a host opts out, keys and agents work. Keepalives watch the
connection; a lost one is made again with backoff. The channels open at once stay under
sshd's MaxSessions (default 10, per host ``max_sessions``): work beyond waits its turn,
because HPC centres block accounts that open a login per call.

Files travel through the shell (base64 in, ``cat`` out), never SFTP: hosts whose sshd has
no ``Subsystem sftp`` work the same (docs/hosts.md lists what a host needs).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shlex
from typing import Any

import asyncssh

from .transport import HostRefused, HostUnreachable, Result, Transport

CONNECT_TIMEOUT = 5.0
KEEPALIVE = 10.0          # seconds between keepalives; 3 missed ones drop the connection
DEFAULT_MAX_SESSIONS = 10  # OpenSSH sshd's MaxSessions default


class SSHTransport(Transport):
    def __init__(self, host: str, user: str | None = None, port: int | None = None,
                 max_sessions: int = DEFAULT_MAX_SESSIONS, known_hosts: str | None = "default",
                 identity: str | None = None, config: list[str] | None = None):
        self.host, self.user, self.port = host, user, port
        self.known_hosts = known_hosts
        self.identity = identity
        self.config = config
        self.name = f"{user + '@' if user else ''}{host}{':' + str(port) if port else ''}"
        # One session in reserve: sshd frees a closed session a moment after the close.
        self.sessions = asyncio.Semaphore(max(1, max_sessions - 1))
        self.open_channels = 0
        self.peak_channels = 0
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self._logins = 0

    @property
    def logins(self) -> int:
        return self._logins

    async def _connection(self) -> asyncssh.SSHClientConnection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            opts: dict[str, Any] = dict(keepalive_interval=KEEPALIVE, keepalive_count_max=3,
                                        connect_timeout=CONNECT_TIMEOUT)
            if self.user:
                opts["username"] = self.user
            if self.port:
                opts["port"] = self.port
            if self.known_hosts in (None, "ignore", "no", "off", False):
                opts["known_hosts"] = None  # the host's explicit opt-out
            elif self.known_hosts not in ("default", "", True):
                opts["known_hosts"] = os.path.expanduser(str(self.known_hosts))
            if self.identity:
                opts["client_keys"] = [os.path.expanduser(self.identity)]
            if self.config is not None:
                opts["config"] = self.config
            try:
                self._conn = await asyncssh.connect(self.host, **opts)
            except asyncssh.PermissionDenied as exc:
                raise HostRefused(f"authentication failed for {self.name}: {exc.reason}; "
                                  "check the user and key (or ssh-agent)") from None
            except asyncssh.HostKeyNotVerifiable as exc:
                raise HostRefused(f"the host key of {self.name} cannot be verified "
                                  f"({exc.reason}); if the host was reinstalled, fix "
                                  "~/.ssh/known_hosts") from None
            except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
                raise HostUnreachable(f"cannot reach {self.name}: "
                                      f"{exc or type(exc).__name__}") from None
            self._logins += 1
            return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    async def _op(self, what: str, fn: Any, timeout: float = 60) -> Any:
        """Run fn(connection) on one channel slot. A refused channel open ("no more
        sessions": sshd frees a closed session a moment after we see it close) waits and
        tries again on the same connection; a broken connection is dropped, and the next
        operation logs in again."""
        await self.sessions.acquire()
        self.open_channels += 1
        self.peak_channels = max(self.peak_channels, self.open_channels)
        try:
            delay = 0.02
            for _ in range(40):
                conn = await self._connection()
                try:
                    return await asyncio.wait_for(fn(conn), timeout)
                except asyncssh.ChannelOpenError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                except (asyncio.TimeoutError, asyncssh.ConnectionLost, asyncssh.DisconnectError,
                        OSError) as exc:
                    self._drop()
                    raise HostUnreachable(f"lost the connection to {self.name} during {what}: "
                                          f"{exc or type(exc).__name__}") from None
            raise HostUnreachable(f"{self.name} refused every new session for {what}; is its "
                                  "MaxSessions lower than max_sessions here?")
        finally:
            self.open_channels -= 1
            self.sessions.release()

    async def run(self, command: str, stdin: bytes | None = None, timeout: float = 60
                  ) -> Result:
        async def go(conn: asyncssh.SSHClientConnection) -> Result:
            res = await conn.run(command, input=stdin, check=False, encoding=None)
            out, err = res.stdout or b"", res.stderr or b""
            return Result(res.exit_status if res.exit_status is not None else -1,
                          out if isinstance(out, bytes) else out.encode(),
                          err if isinstance(err, bytes) else err.encode())

        return await self._op("a command", go, timeout)  # type: ignore[no-any-return]

    async def put(self, files: dict[str, bytes], mode: dict[str, int] | None = None) -> None:
        """Write files with one shell command (base64 here-documents): no SFTP subsystem
        needed, one session for any number of files."""
        res = await self.run("/bin/sh -s", stdin=put_script(files, mode), timeout=300)
        if res.status != 0:
            why = (res.stderr or res.stdout).decode(errors="replace").strip()[-500:]
            raise HostRefused(f"cannot write files on {self.name}: {why or res.status}")

    async def get(self, path: str) -> bytes:
        """Read one file through ``cat`` (no SFTP subsystem needed)."""
        res = await self.run(f"cat -- {shlex.quote(path)}", timeout=300)
        if res.status != 0:
            why = res.stderr.decode(errors="replace").strip()[-300:]
            raise FileNotFoundError(f"{self.name}:{path}: {why or 'cannot read it'}")
        return res.stdout

    async def close(self) -> None:
        self._drop()


_EOF = "@@JM_EOF"  # never a line of base64 text


def put_script(files: dict[str, bytes], mode: dict[str, int] | None = None) -> bytes:
    """A POSIX sh script writing the files from base64 here-documents (binary-safe; needs
    only sh and base64 there), stopping at the first failure."""
    out = ["set -e"]
    for path, data in files.items():
        q = shlex.quote(path)
        out.append(f"base64 -d > {q} <<'{_EOF}'\n{base64.encodebytes(data).decode()}{_EOF}")
        if mode and path in mode:
            out.append(f"chmod {mode[path]:o} {q}")
    return ("\n".join(out) + "\n").encode()
