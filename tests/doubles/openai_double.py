"""A TEST DOUBLE of an OpenAI-compatible chat-completions server, on 127.0.0.1 only.

It is not a model: it answers POST /v1/chat/completions with the replies a test queued, in
order (or "ok" when none is left), streamed in chunks when the request asks for a stream, and
records every request it received.

    with OpenAIDouble() as double:
        double.reply('{"title": "x"}', prompt_tokens=12, completion_tokens=5)
        settings = Settings(llm_base_url=double.url, ...)
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str = "ok"
    status: int = 200
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0  # between streamed chunks: a model that writes slowly
    prompt_tokens: int = 11
    completion_tokens: int = 7
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class OpenAIDouble:
    def __init__(self, *, rejects_json_schema: bool = False) -> None:
        self.replies: deque[Reply] = deque()
        # Answers by request when no reply is queued (a browser test cannot know the order in
        # which the background assistance calls the model): None falls back to "ok".
        self.responder: Callable[[dict[str, Any]], Reply | None] | None = None
        self.received: list[Received] = []
        self.rejects_json_schema = rejects_json_schema
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reply(self, content: str = "ok", **kwargs: Any) -> None:
        self.replies.append(Reply(content, **kwargs))

    def __enter__(self) -> OpenAIDouble:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                double.received.append(Received(self.path, dict(self.headers.items()), body))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if double.rejects_json_schema and "response_format" in body:
                    return self._send(400, {"error": {"message": "response_format unsupported"}})
                if double.replies:
                    reply = double.replies.popleft()
                else:
                    made = double.responder(body) if double.responder else None
                    reply = made or Reply()
                time.sleep(reply.delay_s)
                if reply.status != 200:
                    return self._send(reply.status, {"error": {"message": "scripted"}}, reply)
                if body.get("stream"):
                    return self._stream(body, reply)
                return self._send(200, _completion(body, reply), reply)

            def _stream(self, request: dict[str, Any], reply: Reply) -> None:
                """Server-sent events as OpenAI streams them: the content in small chunks, then
                (with stream_options.include_usage) a chunk with the usage, then [DONE]."""
                events = [_chunk(request, {"role": "assistant", "content": ""}, None)]
                step = 8
                for at in range(0, len(reply.content), step):
                    piece = reply.content[at : at + step]
                    events.append(_chunk(request, {"content": piece}, None))
                events.append(_chunk(request, {}, "stop"))
                if (request.get("stream_options") or {}).get("include_usage"):
                    usage = _completion(request, reply)["usage"]
                    events.append({**_chunk(request, {}, None), "choices": [], "usage": usage})
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for event in events:
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(reply.chunk_delay_s)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                    self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(
                self, status: int, payload: dict[str, Any], reply: Reply | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in (reply.headers if reply else {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler


def _completion(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "id": "chatcmpl-double",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "double"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def _chunk(request: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-double",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model", "double"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
