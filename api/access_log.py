"""The access log, with nothing said in it: method, route template, status and time.

The ASGI server's own access log writes each request's full path and query string, and a
memory search puts the question asked in its query string (`…/memory/search?q=…`); ids in a
path say who and what. So the server's log is off (api/cli.py) and this one writes the route
the request matched, as declared (`/api/v1/groups/{group_id}/memory/search`), never the path.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("companion.access")


def template(scope: Scope) -> str:
    """The route the request matched, as declared; "-" when none did (a 404)."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "-"


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            log.info(
                "%s %s %d %.0f ms",
                scope["method"],
                template(scope),
                status,
                (time.perf_counter() - started) * 1000,
            )
