"""How a remote executor reaches a host: run a command, put and get files.

Transports raise ``HostUnreachable`` for trouble that may pass (network, a host that is
down) and ``HostRefused`` for trouble that will not (authentication, a changed host key).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class HostUnreachable(Exception):
    """Transient: the host could not be reached now."""


class HostRefused(Exception):
    """Permanent: the host answered but will not let us in (auth, host key)."""


@dataclass
class Result:
    status: int
    stdout: bytes
    stderr: bytes


class Transport(ABC):
    """One remote host (or WSL distribution) as seen by an executor."""

    name: str  # for messages: user@host:port, wsl:Ubuntu

    @abstractmethod
    async def run(self, command: str, stdin: bytes | None = None, timeout: float = 60
                  ) -> Result:
        """Run a shell command line there. Raises HostUnreachable/HostRefused."""

    @abstractmethod
    async def put(self, files: dict[str, bytes], mode: dict[str, int] | None = None) -> None:
        """Write files (absolute remote paths; their folders exist)."""

    @abstractmethod
    async def get(self, path: str) -> bytes:
        """Read one file."""

    async def close(self) -> None:
        return None

    @property
    def logins(self) -> int:
        """How many times this transport logged in (connections made)."""
        return 0


class LocalTransport(Transport):
    """This machine, for batch systems whose commands are installed here."""

    name = "localhost"

    async def run(self, command: str, stdin: bytes | None = None, timeout: float = 60
                  ) -> Result:
        import asyncio

        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)  # a command still running survives our own death
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            raise HostUnreachable(f"a command on this machine took over {timeout:.0f}s") from None
        return Result(proc.returncode or 0, out, err)

    async def put(self, files: dict[str, bytes], mode: dict[str, int] | None = None) -> None:
        import os
        from pathlib import Path

        for path, data in files.items():
            Path(path).write_bytes(data)
            if mode and path in mode:
                os.chmod(path, mode[path])

    async def get(self, path: str) -> bytes:
        from pathlib import Path

        return Path(path).read_bytes()
