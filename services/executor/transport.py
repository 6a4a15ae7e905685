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
