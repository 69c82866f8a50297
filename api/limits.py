"""Refuse request bodies over the configured size before any handler reads them.

Upload routes (`uploads`: a path pattern and its own limit) are streamed through, not buffered,
and refused with the same 413 as soon as they pass their limit.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from companion.text import text_limit


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Also sets the text limit of this app's settings for the request's validation."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        max_text_chars: int,
        uploads: tuple[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_text_chars = max_text_chars
        self.uploads = (re.compile(uploads[0]), uploads[1]) if uploads else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        text_limit.set(self.max_text_chars)
        declared = dict(scope["headers"]).get(b"content-length")
        if self.uploads is not None and self.uploads[0].search(scope["path"]):
            await self._stream(scope, receive, send, declared, self.uploads[1])
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        # Without a declared length, read (bounded) and replay the body to the app.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _stream(
        self, scope: Scope, receive: Receive, send: Send, declared: bytes | None, limit: int
    ) -> None:
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        size = 0
        started = False

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise _TooLarge()
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int | None = None) -> None:
        limit = self.max_bytes if limit is None else limit
        body = json.dumps(
            {"detail": f"The request body is over the limit of {limit} bytes; send less."}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
