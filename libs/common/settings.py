"""Configuration, validated once and passed explicitly. Nothing reads the environment at
import time, so one process can run several services (the embedded stack, tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("JOBMESH_HOME") or Path.home() / ".jobmesh").expanduser()


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"  # one URL, or several comma-separated (a cluster)
    home: Path = field(default_factory=default_home)
    workdir: Path | None = None  # where jobs' run directories go; default <home>/runs
    replicas: int = 1            # JetStream replicas for streams and buckets
    nats_token: str | None = None
    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds: str | None = None     # a .creds file (JWT + nkey seed): decentralized auth
    nats_nkey: str | None = None      # a file holding an nkey seed (SU...): nkey auth
    nats_tls_ca: str | None = None    # CA to verify the server (tls:// URLs or TLS-only servers)
    nats_tls_cert: str | None = None  # client certificate, for servers that verify clients
    nats_tls_key: str | None = None
    poll_min: float = 0.05      # seconds between polls while things change
    poll_max: float = 2.0       # the cap the interval backs off to

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.replicas > 5:
            raise ValueError("replicas must be between 1 and 5")
        servers = self.servers
        if not servers:
            raise ValueError("no NATS URL given")
        for url in servers:
            if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError(f"NATS URL {url!r} must start with nats:// or tls://")
        if bool(self.nats_tls_cert) != bool(self.nats_tls_key):
            raise ValueError("nats_tls_cert and nats_tls_key go together")

    @property
    def servers(self) -> list[str]:
        """The NATS URLs: ``nats_url`` may list several, comma-separated, for a cluster."""
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    @property
    def tls(self) -> bool:
        return bool(self.nats_tls_ca or self.nats_tls_cert) or any(
            u.startswith(("tls://", "wss://")) for u in self.servers)

    @property
    def runs(self) -> Path:
        return Path(self.workdir) if self.workdir else self.home / "runs"
