"""Request bodies are bounded before they are read: a Content-Length over the limit is
refused at once (413), and a body sent without one (chunked) is counted as it arrives
and cut off at the limit. Nothing past the limit is read, kept in memory or spooled to
disk."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_UPLOAD = 50 * 1024 * 1024      # an uploaded YAML file or archive
FORM_OVERHEAD = 64 * 1024           # multipart boundaries and the small form fields
MAX_BODY = 1024 * 1024              # any other request (JSON job edits, run options)
UPLOAD_PATH = "/api/workflows"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit. An HTTPException, so that
    FastAPI's form and JSON parsing pass it on (as a 413) instead of calling it a parse
    error."""

    def __init__(self, limit: int):
        super().__init__(413, too_large(limit))


def too_large(limit: int) -> str:
    if limit > MAX_BODY:
        return f"the upload is larger than {MAX_UPLOAD // 2**20} MB"
    return f"the request body is larger than {limit // 1024} KB"


def limit_for(scope: Scope) -> int:
    if scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == UPLOAD_PATH:
        return MAX_UPLOAD + FORM_OVERHEAD
    return MAX_BODY


class BodyLimit:
    """ASGI middleware bounding every request body (see the module's docstring)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope)
        length = None
        for key, value in scope.get("headers", []):
            if key.lower() == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _answer(send, 400, "the Content-Length header is not a number")
                    return
        if length is not None and length > limit:
            await _answer(send, 413, too_large(limit))
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await _answer(send, 413, too_large(limit))


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
