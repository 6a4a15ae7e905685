"""Connecting to NATS, and retrying while it is briefly away (errors a person can read)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .settings import Settings

if TYPE_CHECKING:  # imported where used: ``credentials`` (BusError) stays light
    from nats.aio.client import Client as NATS

log = logging.getLogger("jobmesh.bus")


class BusError(RuntimeError):
    """The bus cannot be reached or refused us; the message says what to check."""


class MessageTooLarge(BusError):
    """A message over NATS's size limit: the same message is refused again, so it is
    never retried (bad input, not an outage)."""


class CredentialsRefused(BusError):
    """NATS refused the credentials: retrying cannot help."""


# A failed first connection is retried this often per server before connect gives up
# (a refused TCP connection costs ~0.5 s, a silent host the 3 s connect timeout);
# once connected, the client reconnects forever (to any server of the cluster).
CONNECT_TRIES = 1


def _tls_context(settings: Settings) -> Any:
    import ssl

    ctx = ssl.create_default_context(cafile=settings.nats_tls_ca)
    if settings.nats_tls_cert:
        ctx.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
    return ctx


def _auth_options(settings: Settings) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if settings.nats_token:
        opts["token"] = settings.nats_token
    if settings.nats_user:
        opts["user"], opts["password"] = settings.nats_user, settings.nats_password or ""
    for key, path, what in (("user_credentials", settings.nats_creds, "credentials file"),
                            ("nkeys_seed", settings.nats_nkey, "nkey seed file")):
        if not path:
            continue
        if not os.path.isfile(path):
            raise BusError(f"the NATS {what} {path} does not exist")
        try:
            import nkeys  # noqa: F401  (nats-py signs the server's nonce with it)
        except ImportError:
            raise BusError(f"a NATS {what} needs the 'nkeys' package: pip install nkeys"
                           ) from None
        opts[key] = path
    if settings.tls:
        for path in (settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key):
            if path and not os.path.isfile(path):
                raise BusError(f"the TLS file {path} does not exist")
        try:
            opts["tls"] = _tls_context(settings)
        except Exception as exc:  # ssl.SSLError, OSError: a bad certificate or key
            raise BusError(f"cannot load the TLS files: {exc}") from None
    return opts


def _describe(exc: BaseException | None, errors: list[str]) -> str:
    detail = "; ".join(dict.fromkeys(errors[-3:])) or (str(exc) if exc else "") or (
        type(exc).__name__ if exc else "unknown error")
    return detail


async def connect(settings: Settings, name: str, retry: bool | float = False) -> NATS:
    """Connect to NATS (any server of ``settings.servers``).

    The first connection fails fast with a BusError a person can read: bad credentials at
    once, unreachable servers after ``CONNECT_TRIES`` tries each. With ``retry`` (True, or
    a number of seconds) unreachable servers are waited for; refused credentials never
    are. Once connected, the client reconnects forever, to whichever server is up.
    """
    servers = settings.servers
    where = ", ".join(servers)
    deadline = None if retry is True else time.monotonic() + float(retry or 0)
    while True:
        try:
            return await _connect_once(settings, name, servers)
        except _Unreachable as exc:
            if retry is False or (deadline is not None and time.monotonic() > deadline):
                raise BusError(f"cannot connect to NATS at {where}: {exc}") from None
            log.warning("NATS at %s is not reachable yet (%s); retrying", where, exc)
            await asyncio.sleep(2.0)


class _Unreachable(Exception):
    pass


async def _connect_once(settings: Settings, name: str, servers: list[str]) -> NATS:
    where = ", ".join(servers)
    errors: list[str] = []
    connected = False

    async def on_error(exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        if not connected:
            errors.append(text)
        else:
            log.warning("%s: NATS: %s", name, text)

    async def on_disconnect() -> None:
        if connected and not nc.is_closed:
            log.warning("%s: disconnected from NATS; reconnecting", name)

    async def on_reconnect() -> None:
        url = nc.connected_url
        log.warning("%s: reconnected to NATS at %s", name,
                    url.netloc if url is not None else "?")

    opts: dict[str, Any] = dict(
        name=name,
        connect_timeout=3,
        # The first connection does not retry for ever (so a wrong token or URL is an
        # error at once); allow_reconnect and max_reconnect_attempts are opened up below.
        allow_reconnect=False,
        max_reconnect_attempts=CONNECT_TRIES,
        reconnect_time_wait=0.5,
        # A node that vanishes without closing its sockets is noticed within ~30 s.
        ping_interval=10,
        max_outstanding_pings=3,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    opts.update(_auth_options(settings))
    from nats.aio.client import Client as NATS

    nc = NATS()
    try:
        await nc.connect(servers, **opts)
    except Exception as exc:  # nats raises several unrelated classes here
        if not nc.is_closed:  # (closing after a failed TLS handshake can hang for ever)
            try:
                await asyncio.wait_for(nc.close(), 2)
            except Exception:
                pass
        detail = _describe(exc, errors)
        low = detail.lower()
        if "authorization" in low or "authentication" in low:
            detail = next((e for e in reversed(errors) if "auth" in e.lower()), detail)
            raise CredentialsRefused(f"NATS at {where} refused the credentials ({detail}); "
                                     "check the token, user and password, nkey or creds "
                                     "file") from None
        if "ssl" in low or "certificate" in low or "tls" in low:
            raise BusError(f"TLS to NATS at {where} failed ({detail}); check the CA, "
                           "certificate and key, and the URL's scheme") from None
        raise _Unreachable(detail) from None
    connected = True
    nc.options["allow_reconnect"] = True
    nc.options["max_reconnect_attempts"] = -1
    # Servers that were down at start were dropped from the pool: put them back.
    known = {s.uri.netloc for s in nc.server_pool}
    missing = [u for u in servers if urlparse(u if "://" in u else f"nats://{u}").netloc
               not in known]
    if missing:
        nc.set_server_pool([s.uri.geturl() for s in nc.server_pool] + missing)
    return nc


STREAM_MSG_TOO_LARGE = 10054  # JSStreamMessageExceedsMaximumErr


def too_large(exc: BaseException) -> bool:
    """Was a write refused for the size of its value (the server's max_payload, or a
    stream's maximum message size)? Deterministic: the same write fails again."""
    from nats import errors as nerr
    from nats.js import errors as jerr

    if isinstance(exc, nerr.MaxPayloadError):
        return True
    return isinstance(exc, jerr.APIError) and (
        exc.err_code == STREAM_MSG_TOO_LARGE
        or "exceeds maximum" in (exc.description or "").lower())


def transient(exc: BaseException) -> bool:
    """Is this error NATS being briefly away (a node restarting, a leader election, a
    reconnect) rather than a real answer?"""
    from nats import errors as nerr
    from nats.js import errors as jerr

    if isinstance(exc, jerr.APIError) and exc.err_code in (10039, 10076):
        return False  # JetStream is not enabled (for the server, for the account)
    if isinstance(exc, (asyncio.TimeoutError, nerr.TimeoutError, nerr.NoRespondersError,
                        nerr.ConnectionReconnectingError, nerr.StaleConnectionError,
                        nerr.OutboundBufferLimitError, jerr.NoStreamResponseError,
                        jerr.ServiceUnavailableError, ConnectionError)):
        return True
    if isinstance(exc, jerr.APIError) and not isinstance(exc, (jerr.NotFoundError,
                                                                jerr.BadRequestError)):
        return exc.code in (503, 504)  # (500 is an answer: e.g. R3 on a single server)
    return False


async def retrying(call: Any, what: str, deadline: float = 60.0) -> Any:
    """``await call()`` again while the error is transient (see ``transient``), for up
    to ``deadline`` seconds; other errors, and the last one, propagate."""
    end = time.monotonic() + deadline
    delay = 0.1
    while True:
        try:
            return await call()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay > end:
                raise
            log.info("%s: %r; retrying", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def kv_put(kv: Any, key: str, value: bytes, deadline: float = 60.0) -> int:
    """Put a KV value, retrying while NATS is briefly away; returns the revision."""
    return int(await retrying(lambda: kv.put(key, value), f"write {key}", deadline))



async def close(nc: NATS) -> None:
    """Flush what was written and close. (``drain`` can wait out its whole timeout on the
    ordered consumers' flow control; every publish here was acked already.)"""
    try:
        await nc.flush(timeout=2)
    except Exception:
        pass
    try:
        await nc.close()
    except Exception:
        pass
