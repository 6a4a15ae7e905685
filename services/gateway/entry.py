"""The gateway's entry points: its listening socket, the GUI's entry URL, and the answers
for API paths no route takes.

``listen`` binds the port before uvicorn starts (``python -m jobmesh.gateway``; ``jobmesh
serve`` can do the same), so a port in use is one line and exit 1, not uvicorn's
traceback and exit 3.

``/?token=<token>`` (the URL ``jobmesh up`` prints) trades the token for an HttpOnly,
SameSite=Strict cookie and redirects to the clean URL, as Jupyter does: the token leaves
the address bar and the history, and no page script can read it.

Any method an API path does not have is answered here (405 with ``Allow``; OPTIONS: 204
with ``Allow``), unknown API paths get a JSON 404: not the static files' answers. There
are no CORS headers: no other site's page may read the API.
"""

from __future__ import annotations

import socket
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute

from . import events, jobs, workflows
from .deps import cookie_name, token_ok

router = APIRouter(include_in_schema=False)
INDEX = Path(__file__).parent / "static" / "index.html"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.get("/")
async def index(request: Request) -> Response:
    given = request.query_params.get("token")
    if given is None:
        return FileResponse(INDEX, headers={"Cache-Control": "no-cache"})
    resp = RedirectResponse("./", status_code=303)  # the same page, without ?token=
    token = request.app.state.gateway.token
    if token and token_ok(given, token):
        https = request.url.scheme == "https" or request.headers.get(
            "x-forwarded-proto", "") == "https"
        resp.set_cookie(cookie_name(request), token, httponly=True, samesite="strict",
                        secure=https, path="/")
    return resp


def allowed_methods(path: str) -> set[str]:
    methods: set[str] = set()
    for api in (workflows.router, jobs.router, events.router):
        for route in api.routes:
            if isinstance(route, APIRoute) and route.path_regex.match(path):
                methods |= route.methods or set()
    return methods


@router.api_route("/api/{rest:path}", methods=ALL_METHODS)
async def other_methods(request: Request, rest: str) -> Response:
    methods = allowed_methods(request.url.path)
    if not methods:
        return JSONResponse(status_code=404, content={"detail": f"no API path "
                                                      f"'{request.url.path[:200]}'"})
    allow = ", ".join(sorted(methods | {"OPTIONS"}))
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    return JSONResponse(status_code=405, headers={"Allow": allow}, content={
        "detail": f"{request.method} is not allowed here; allowed: {allow}"})


class CannotListen(Exception):
    """The port is in use, or the address is not this machine's (permanent: say it in one
    line, exit 1)."""


def listen(host: str, port: int) -> socket.socket:
    """The gateway's listening socket (non-blocking, for ``uvicorn.Server.serve(sockets=
    [sock])``), bound before uvicorn starts. Raises CannotListen, whose message names
    the address and the reason."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                           ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(2048)  # uvicorn's default backlog
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                           ) from None
    return sock
