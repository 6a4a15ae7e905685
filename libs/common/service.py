"""Run one service alone: ``python -m jobmesh.<service> --nats URL``.

signal -> asyncio.Event -> the service's ``run(stop)`` returns -> connections drain.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from . import credentials, signals
from .bus import BusError
from .settings import Settings, default_home


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--nats", default=None, help="NATS URL, or several comma-separated for a "
                   "cluster (default nats://127.0.0.1:4222 or JOBMESH_NATS_URL)")
    p.add_argument("--config", default=None, help="YAML file with settings (nats_url, "
                   "nats_token, nats_user, nats_password, nats_creds, nats_nkey, nats_tls_ca, "
                   "nats_tls_cert, nats_tls_key, workdir, replicas)")
    p.add_argument("--token", default=None, help="NATS token")
    p.add_argument("--user", default=None, help="NATS user")
    p.add_argument("--password", default=None, help="NATS password")
    p.add_argument("--creds", default=None, help="NATS credentials (.creds) file")
    p.add_argument("--nkey", default=None, help="file holding an NATS nkey seed (SU...)")
    p.add_argument("--tls-ca", default=None, help="CA file for TLS to NATS")
    p.add_argument("--tls-cert", default=None, help="client certificate for TLS to NATS")
    p.add_argument("--tls-key", default=None, help="client key for TLS to NATS")
    p.add_argument("--workdir", default=None, help="where job run directories go")
    p.add_argument("--replicas", type=int, default=None, help="JetStream replicas (1-5)")
    return p


# Settings the environment may give (after the config file, before the flags).
ENV_VARS = [("nats_url", "JOBMESH_NATS_URL"), ("nats_token", "JOBMESH_NATS_TOKEN"),
            ("nats_user", "JOBMESH_NATS_USER"), ("nats_password", "JOBMESH_NATS_PASSWORD"),
            ("nats_creds", "JOBMESH_NATS_CREDS"), ("nats_nkey", "JOBMESH_NATS_NKEY"),
            ("nats_tls_ca", "JOBMESH_NATS_TLS_CA"), ("nats_tls_cert", "JOBMESH_NATS_TLS_CERT"),
            ("nats_tls_key", "JOBMESH_NATS_TLS_KEY"), ("workdir", "JOBMESH_WORKDIR"),
            ("replicas", "JOBMESH_REPLICAS")]
STOP_GRACE = 20.0  # seconds a service may take to stop after SIGTERM before it is cut short


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Settings from a config file, then environment (JOBMESH_*), then flags."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    if args.config:
        try:
            loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SystemExit(f"error: cannot read config {args.config}: {exc}")
        if not isinstance(loaded, dict):
            raise SystemExit(f"error: config {args.config} must be a mapping")
        values.update(loaded)
    for key, var in ENV_VARS:
        if env.get(var):
            values[key] = env[var]
    for key, flag in [("nats_url", "nats"), ("nats_token", "token"), ("nats_user", "user"),
                      ("nats_password", "password"), ("nats_creds", "creds"),
                      ("nats_nkey", "nkey"), ("nats_tls_ca", "tls_ca"),
                      ("nats_tls_cert", "tls_cert"), ("nats_tls_key", "tls_key"),
                      ("workdir", "workdir"), ("replicas", "replicas")]:
        if getattr(args, flag, None) is not None:
            values[key] = getattr(args, flag)
    known = set(Settings.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise SystemExit(f"error: unknown setting(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(known))}")
    for key in ("replicas",):
        if isinstance(values.get(key), str):
            try:
                values[key] = int(values[key])
            except ValueError:
                raise SystemExit(f"error: {key} must be a number, not {values[key]!r}")
    for key in ("poll_min", "poll_max"):
        if isinstance(values.get(key), str):
            try:
                values[key] = float(values[key])
            except ValueError:
                raise SystemExit(f"error: {key} must be a number, not {values[key]!r}")
    if isinstance(values.get("nats_url"), list):  # a YAML list of cluster URLs
        values["nats_url"] = ",".join(str(u) for u in values["nats_url"])
    if "workdir" in values and values["workdir"]:
        values["workdir"] = Path(str(values["workdir"])).expanduser()
    values.setdefault("home", default_home(env))
    _embedded_token(values)
    try:
        return Settings(**values)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: bad settings: {exc}")


def _embedded_token(values: dict[str, Any]) -> None:
    """A service joining the home's embedded NATS (``jobmesh up``'s URL, as ``jobmesh
    info`` shows it) without credentials of its own uses the home's token."""
    if any(values.get(k) for k in ("nats_token", "nats_user", "nats_creds", "nats_nkey")):
        return
    home = Path(str(values["home"])).expanduser()
    urls = {u.strip() for u in str(values.get("nats_url") or "").split(",") if u.strip()}
    if urls and urls & credentials.embedded_urls(home):
        try:
            values["nats_token"] = credentials.read_token(home)
        except credentials.CredentialsError as exc:
            raise SystemExit(f"error: {exc}") from None


def run_service(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` until SIGINT, SIGTERM or SIGHUP (a lost terminal) sets ``stop``;
    print errors, no traceback."""

    level = getattr(logging, os.environ.get("JOBMESH_LOG_LEVEL", "").upper(), None)
    logging.basicConfig(level=level if isinstance(level, int) else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)

    async def runner() -> None:
        stop = asyncio.Event()
        # (Windows' loop has no signal handlers: Ctrl-C arrives as KeyboardInterrupt,
        # handled below)
        signals.on_stop(lambda _sig: stop.set(), plain_fallback=False)
        task = asyncio.ensure_future(main(stop))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():
            # Stopping: a service that is still connecting (or waiting out NATS) is not
            # watching ``stop``; give it a grace period, then cut it short.
            done, _ = await asyncio.wait({task}, timeout=STOP_GRACE)
            if not done:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                return
        task.result()

    try:
        asyncio.run(runner())
    except BusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1)
    except KeyboardInterrupt:
        pass
