"""What every route needs: the gateway's state, the caller's token, checked names."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel

from jobmesh.common.names import JOB_RE, WORKFLOW_RE

from . import auth
from .store import Store


class ErrorBody(BaseModel):
    """Every error: a message a person can read, and for invalid input the details."""
    detail: str
    errors: list[Any] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (400, "bad request: an unsafe or unreadable upload"),
        (401, "a bearer token is required"),
        (404, "no such workflow or job"),
        (409, "conflicts with the workflow's state (running, exists, not uploaded)"),
        (413, "upload too large"),
        (422, "invalid input; 'detail' names each field"),
        (503, "NATS is unreachable"),
    )}


@dataclass
class Gateway:
    js: Any
    nc: Any
    home: Path
    token: str | None
    store: Store
    executors: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The queues of the open /api/events streams: changes that touch no snapshot (an
    # upload, a job edit, deleting a workflow that never ran) are announced here.
    listeners: set[asyncio.Queue[tuple[str, Any]]] = field(default_factory=set)
    # The wake-up events of the open workflow streams, and whether they should end.
    wakers: set[asyncio.Event] = field(default_factory=set)
    closing: bool = False

    def announce(self, event: str, data: dict[str, Any]) -> None:
        for queue in list(self.listeners):
            queue.put_nowait((event, data))

    def close_streams(self) -> None:
        """End every open event stream (the server is stopping): clients see the stream
        end at once instead of when the server gives up waiting for them."""
        self.closing = True
        for wake in list(self.wakers):
            wake.set()
        self.announce("close", {})


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


STREAMS = ("/events", "/log/stream")  # EventSource sends no headers: ?token= is allowed


def cookie_name(request: Request) -> str:
    """The GUI's cookie, one per port: two services on one host keep their own."""
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    return f"{auth.COOKIE}-{port}"


def token_ok(given: str, token: str) -> bool:
    return bool(given) and secrets.compare_digest(given.encode(), token.encode())


def authorize(request: Request) -> None:
    """With a token set (always, under ``jobmesh up``), every API call needs it: as
    'Authorization: Bearer <token>', as the GUI's cookie, or as ?token=<token> on the
    event streams only (browsers' EventSource cannot set headers)."""
    token = request.app.state.gateway.token
    if not token:
        return
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not given:
        given = request.cookies.get(cookie_name(request), "")
    if not given and request.url.path.endswith(STREAMS):
        given = request.query_params.get("token", "")
    if not token_ok(given, token):
        raise HTTPException(401, "a token is required: send 'Authorization: Bearer <token>' "
                                 "(the token of a 'jobmesh up' is in $JOBMESH_HOME/"
                                 f"{auth.TOKEN_FILE})", headers={"WWW-Authenticate": "Bearer"})


GatewayDep = Annotated[Gateway, Depends(gateway)]
WfName = Annotated[str, PathParam(pattern=WORKFLOW_RE.pattern, max_length=64,
                                  description="workflow name: letters, digits, '-', '_'")]
JobName = Annotated[str, PathParam(pattern=JOB_RE.pattern, max_length=128,
                                   description="job name: letters, digits, '-', '_', '.'")]
