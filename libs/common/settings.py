"""Configuration, validated once and passed explicitly. Nothing reads the environment at
import time, so one process can run several services (the embedded stack, tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("JOBMESH_HOME") or Path.home() / ".jobmesh").expanduser()


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    home: Path = field(default_factory=default_home)
    workdir: Path | None = None  # where jobs' run directories go; default <home>/runs
    replicas: int = 1            # JetStream replicas for streams and buckets
    nats_token: str | None = None
    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds: str | None = None
    nats_tls_ca: str | None = None
    poll_min: float = 0.05      # seconds between polls while things change
    poll_max: float = 2.0       # the cap the interval backs off to

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.replicas > 5:
            raise ValueError("replicas must be between 1 and 5")
        if not self.nats_url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError(f"NATS URL {self.nats_url!r} must start with nats:// or tls://")

    @property
    def runs(self) -> Path:
        return Path(self.workdir) if self.workdir else self.home / "runs"
