"""Who may talk to the gateway: its token, the Host it is reached by, the Origin of a
browser's state-changing request. One rule for ``jobmesh up``, ``jobmesh serve`` and
``python -m jobmesh.gateway`` (see docs/security.md).

* **Token.** Every API call needs the gateway's token, on loopback too: as
  ``Authorization: Bearer <token>``, as the GUI's cookie (set by opening the URL
  ``jobmesh up`` prints, ``/?token=...``), or, on the event streams only (a browser's
  EventSource sends no headers), as ``?token=``. Without an explicit token the home's
  ``gateway.token`` (mode 0600) is used, made up on first use; the CLI and the Python
  client of the same home read it from there.
* **Host.** A request whose ``Host`` is a name other than this machine's, ``localhost`` or
  one allowed with ``--allow-host``/``JOBMESH_ALLOW_HOSTS`` is refused (403): that is a
  DNS-rebinding page. IP addresses are fine (a rebinding page always uses its own name).
* **Origin.** A browser's POST, PUT, PATCH or DELETE whose ``Origin`` (or ``Referer``) is
  not the gateway's own is refused (403): that is another site's page (a ``no-cors``
  upload or ``text/plain`` POST needs no preflight). Requests without either header
  (curl, the CLI, the client) are judged by their token alone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from jobmesh.common import credentials

TOKEN_FILE = "gateway.token"
COOKIE = "jobmesh-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class TokenRequired(ValueError):
    pass


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


def check_bind(host: str, token: str | None) -> None:
    """Binding beyond loopback requires a token."""
    if not token and not is_loopback(host):
        raise TokenRequired(f"binding the API to {host} exposes it beyond this machine; "
                            "set a token with --token (or JOBMESH_TOKEN)")


def home_token(home: Path, given: str | None = None) -> str:
    """The token a gateway of ``home`` requires: ``given`` (--token, JOBMESH_TOKEN) when
    set, else the home's stored one, else a new one. It is kept in ``gateway.token``
    (mode 0600), so that the CLI and the client of the same account find it."""
    path = token_path(home)
    stored = read_home_token(home)
    token = given or stored or secrets.token_urlsafe(32)
    if token != stored:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            if path.exists() or path.is_symlink():
                path.unlink()  # (another account's file may not be renamed over)
            credentials.write_private(path, token + "\n")
        except OSError as exc:
            if given:  # (a container's read-only home: its clients get the token elsewhere)
                return token
            raise TokenRequired(f"cannot write the gateway token {path}: {exc.strerror}; "
                                f"check that {home} is yours and writable") from None
    return token


def read_home_token(home: Path) -> str | None:
    """The home's gateway token, when the file is ours and private; else None."""
    path = token_path(home)
    try:
        if credentials._check(path) is not None:
            return None
        return credentials._read(path) or None
    except OSError:
        return None


def resolve(home: Path, host: str, given: str | None) -> str:
    """The one rule, for every way a gateway starts: beyond loopback an explicit token
    (TokenRequired without one); on loopback the given token or the home's. Returns the
    token, kept in the home's ``gateway.token`` for the CLI and the client."""
    check_bind(host, given)
    return home_token(home, given)


def proxy_hosts(extra: Iterable[str] = ()) -> set[str]:
    """The allow-list (``--allow-host``, ``JOBMESH_ALLOW_HOSTS``), lower case: names a
    reverse proxy in front of the gateway is reached by. ``*`` allows any host name;
    ``.example.org`` allows that domain and its sub-domains."""
    env = os.environ.get("JOBMESH_ALLOW_HOSTS", "").split(",")
    return {h.strip().lower().rstrip(".") for h in [*extra, *env] if h.strip()}


def allowed_hosts(bind: str, proxies: set[str]) -> set[str]:
    """Host names the gateway answers to, besides IP addresses and ``localhost``: the
    allow-list, the name it was bound to and this machine's name."""
    name = socket.gethostname().lower()
    return {n for n in {*proxies, bind.lower(), name, name.split(".")[0]} if n}


def split_host(value: str) -> str:
    """The host part of a Host header value (no port, no IPv6 brackets), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def listed(host: str, names: set[str]) -> bool:
    host = host.rstrip(".")
    return "*" in names or host in names or any(
        n.startswith(".") and (host.endswith(n) or host == n[1:]) for n in names)


def host_ok(host: str, allowed: set[str]) -> bool:
    if not host:
        return True  # (HTTP/1.0; a browser always sends Host)
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return host == "localhost" or host.endswith(".localhost") or listed(host, allowed)


def _netloc(url: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port


def origin_ok(origin: str, host_header: str, scheme: str, proxies: set[str]) -> bool:
    """Is a browser's Origin (or Referer) the gateway itself, as the request reached it,
    or a name on the allow-list (a reverse proxy's public name; not ``*``)?"""
    seen = _netloc(origin)
    if seen is None:
        return False  # "null" (a sandboxed frame, file://) or garbage
    own = _netloc(f"{scheme}://{host_header}")
    if own is not None and seen[0] == own[0]:
        # Behind a TLS proxy the scheme, and so the default port, differ.
        if seen[1] == own[1] or urlsplit(origin).scheme != scheme:
            return True
    return listed(seen[0], proxies - {"*"})


class Guard:
    """ASGI middleware: refuse foreign Host headers and cross-site state changes (403),
    before any route, body parsing or static file sees the request."""

    def __init__(self, app: ASGIApp, bind: str = "127.0.0.1", allow: Iterable[str] = ()):
        self.app = app
        self.proxies = proxy_hosts(allow)
        self.allowed = allowed_hosts(bind, self.proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        host_header = headers.get("host", "")
        host = split_host(host_header)
        if not host_ok(host, self.allowed):
            await refuse(send, f"this jobmesh service does not answer to the host name "
                         f"'{host[:100]}'; if it is the name of a reverse proxy in front of it, "
                         "allow it with --allow-host NAME (or JOBMESH_ALLOW_HOSTS)")
            return
        method = scope.get("method", "GET")
        source = headers.get("origin") or headers.get("referer")
        if method in UNSAFE_METHODS and source is not None and not origin_ok(
                source, host_header, scope.get("scheme", "http"), self.proxies):
            await refuse(send, "a page from another site may not change this jobmesh "
                         "service: the request's Origin is not the service's own")
            return
        await self.app(scope, receive, send)


async def refuse(send: Send, detail: str, status: int = 403) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
