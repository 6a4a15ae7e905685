"""The HTTP plumbing under ``Client``: where the service is, the token, error mapping and
Server-Sent Event streams. Every failure becomes an ``ApiError`` a person can read."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from jobmesh.common import credentials
from jobmesh.common.names import InvalidName, check_job, check_workflow
from jobmesh.common.settings import default_home

from . import sse
from .sse import Event

TOKEN_FILE = "gateway.token"  # as jobmesh.gateway.auth.TOKEN_FILE (the client needs no FastAPI)
STREAM_READ = 60.0  # the gateway sends a keep-alive every 15 s; silence this long is a fault
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED")


class ApiError(Exception):
    """The service refused a request or could not be reached. ``status`` is the HTTP
    status (0: no answer); ``message`` is readable as is; ``errors`` lists the workflow's
    problems (file, line, node, field, message) when an upload or job edit is invalid."""

    def __init__(self, status: int, message: str, errors: list[Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r})"


def _home_url() -> str | None:
    try:
        return str(json.loads((default_home() / "service.json").read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _service_url() -> str:
    url = _home_url()
    if url is None:
        raise ApiError(0, f"no jobmesh service to talk to: JOBMESH_URL is not set and "
                       f"{default_home() / 'service.json'} does not exist; start one with "
                       "'jobmesh up' or pass the URL")
    return url


def home_token(url: str) -> str | None:
    """The token of the home's own service (``jobmesh up``), from
    ``$JOBMESH_HOME/gateway.token``, when ``url`` is that service; never for another URL,
    which must not learn it. None when the file is missing, not ours or not private."""
    own = _home_url()
    if own is None or own.rstrip("/") != url.rstrip("/"):
        return None
    path = default_home() / TOKEN_FILE
    try:
        if credentials._check(path) is not None:
            return None
        return credentials._read(path) or None
    except OSError:
        return None


def _wf(name: str) -> str:
    try:
        return quote(check_workflow(name), safe="")
    except InvalidName as exc:
        raise ApiError(422, str(exc)) from None


def _job(name: str) -> str:
    try:
        return quote(check_job(name), safe="")
    except InvalidName as exc:
        raise ApiError(422, str(exc)) from None


class BaseClient:
    """Connection, token and error handling shared by every ``Client`` method."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30):
        self.url = (url or os.environ.get("JOBMESH_URL") or _service_url()).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise ApiError(0, f"'{self.url}' is not an http:// or https:// URL")
        token = token or os.environ.get("JOBMESH_TOKEN") or home_token(self.url)
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._marks: dict[str, tuple[str, dict[str, int]]] = {}  # name -> (run, attempts)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ------------------------------------------------------------------------

    def _fail(self, resp: httpx.Response) -> None:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, list):  # FastAPI's own shape, should a route produce it
            detail = "; ".join(str(d.get("msg", d)) for d in detail)
        message = str(detail) if detail else f"HTTP {resp.status_code} {resp.reason_phrase}"
        if resp.status_code == 401:
            message += (" (pass token=... or set JOBMESH_TOKEN; a 'jobmesh up' of this "
                        f"account keeps it in $JOBMESH_HOME/{TOKEN_FILE})")
        raise ApiError(resp.status_code, message, body.get("errors") if isinstance(body, dict)
                       else None)

    def _unreachable(self, exc: httpx.TransportError) -> ApiError:
        if isinstance(exc, httpx.ConnectError):
            return ApiError(0, f"cannot reach jobmesh at {self.url} ({exc}); is it running? "
                            "Start it with 'jobmesh up'")
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(0, f"jobmesh at {self.url} did not answer in time ({exc!r})")
        return ApiError(0, f"lost the connection to jobmesh at {self.url}: {exc}")

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if not resp.is_success:
            self._fail(resp)
        return resp

    def _stream(self, path: str, params: dict[str, Any] | None = None,
                stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Events of an SSE endpoint, keep-alives included, until the server ends the
        stream, ``stop()`` turns true or the consumer stops iterating."""
        timeout = httpx.Timeout(self.timeout, read=max(STREAM_READ, self.timeout))
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as resp:
                if not resp.is_success:
                    resp.read()
                    self._fail(resp)
                for ev in sse.parse(resp.iter_lines()):
                    yield ev
                    if stop is not None and stop():
                        return
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

