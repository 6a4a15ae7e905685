"""Service mode: ``jobmesh up``, ``down``, ``info`` and the hidden ``serve`` (the
background process ``up`` starts)."""

from __future__ import annotations

import asyncio
import os
from typing import Optional

import typer

from jobmesh import __version__

from .base import UserError, _home, out


def up(host: str = typer.Option("127.0.0.1", help="address for the API and GUI"),
       port: int = typer.Option(8000, help="port (0 picks a free one)"),
       token: Optional[str] = typer.Option(None, help="the API's token (or JOBMESH_TOKEN); "
                                           "required beyond loopback; default: the home's "
                                           "gateway.token, made up on first use"),
       allow_host: Optional[list[str]] = typer.Option(
           None, "--allow-host", metavar="NAME", help="a host name a reverse proxy reaches "
           "the service by (repeatable; or JOBMESH_ALLOW_HOSTS=a,b)")) -> None:
    """Start the stack and the gateway in the background."""
    from jobmesh.gateway.auth import TokenRequired, check_bind, read_home_token

    from . import service

    token = token or os.environ.get("JOBMESH_TOKEN") or None
    try:
        check_bind(host, token)  # (serve checks again: the one rule is auth.resolve)
    except TokenRequired as exc:
        raise UserError(str(exc)) from None
    if allow_host:
        os.environ["JOBMESH_ALLOW_HOSTS"] = ",".join(
            [*allow_host, *filter(None, os.environ.get("JOBMESH_ALLOW_HOSTS", "").split(","))])
    try:
        info = service.up(_home(), host, port, token)
    except RuntimeError as exc:
        raise UserError(str(exc), 1) from None
    secret = read_home_token(_home())
    entry = f"{info['url']}/?token={secret}" if secret else info["url"]
    out.print(f"jobmesh is up at {entry} (GUI; API docs at /docs; the API's token is in "
              f"{_home() / 'gateway.token'}); 'jobmesh down' stops it", highlight=False,
              soft_wrap=True)


def down() -> None:
    """Stop the background stack. Jobs keep running; 'jobmesh up' picks them up again."""
    from . import service

    try:
        stopped = service.down(_home())
    except RuntimeError as exc:
        raise UserError(str(exc), 1) from None
    out.print("stopped; jobs keep running" if stopped else "jobmesh is not running")


def info() -> None:
    """Is the background stack up? Its URL and version."""
    from .stack import service_info

    data = service_info(_home())
    if data is None:
        out.print(f"jobmesh {__version__}: not running (home {_home()}); 'jobmesh up' starts it",
                  highlight=False)
        raise typer.Exit(1)
    out.print(f"jobmesh {data['version']}: up at {data['url']} (pid {data['pid']}, NATS "
              f"{data['nats_url']}, token {'required' if data['token'] else 'not set'})",
              highlight=False)
    from .service import dead

    problem = dead(data["url"])
    if problem:
        raise UserError(f"{problem}; its traceback is in {_home() / 'service.log'}; "
                        "'jobmesh down' and 'jobmesh up' restart it", 1)


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """The background process that 'jobmesh up' starts."""
    from jobmesh.gateway.auth import TokenRequired, resolve

    from . import service

    try:  # the same rule as up and python -m jobmesh.gateway: auth.resolve
        token = resolve(_home(), host, os.environ.get("JOBMESH_TOKEN") or None)
    except TokenRequired as exc:
        raise UserError(str(exc)) from None
    asyncio.run(service.serve(_home(), host, port, token))

