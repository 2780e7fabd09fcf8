"""A fake Anthropic Messages API on 127.0.0.1, for running the real Claude Code CLI in tests.

Point the CLI at it with `ANTHROPIC_BASE_URL=server.url` and `ANTHROPIC_API_KEY=test`.
Each `POST /v1/messages` that offers tools (the agent's own loop) takes the next
scripted turn: `tool_use(name, input)` answers with that tool call, `text(...)`
with a reply that ends the turn; with the script used up it answers "done".
Requests without tools (Claude Code's side questions to a small model, such as a
title or a command prefix) get a short text reply and take no turn. Every request
body is kept in `requests` (and the main-loop ones in `turn_requests`), so a test
can read the tool results Claude Code sent back.

Test code only: it binds loopback and nothing else.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

_ids = itertools.count(1)


@dataclass
class Turn:
    """One scripted model reply: text, then optionally one tool call."""

    text: str = ""
    tool: str | None = None
    tool_input: dict[str, Any] = field(default_factory=dict)
    tool_id: str = ""

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.tool else "end_turn"


def tool_use(name: str, tool_input: dict[str, Any], *, text: str = "") -> Turn:
    """A turn that calls tool `name` with `tool_input`."""
    return Turn(text=text, tool=name, tool_input=tool_input, tool_id=f"toolu_fake{next(_ids):06d}")


def text(reply: str) -> Turn:
    """A turn that only answers in text (the agent's loop ends)."""
    return Turn(text=reply)


class FakeAnthropic:
    """A scripted Messages API server in a thread: `with FakeAnthropic([turns]) as api: api.url`."""

    def __init__(self, turns: list[Turn] | None = None, *, model: str = "claude-sonnet-4-5",
                 always_fail: int | None = None) -> None:
        self.turns: deque[Turn] = deque(turns or [])
        self.model = model
        self.always_fail = always_fail  # answer every /v1/messages with this HTTP status
        self.requests: list[dict[str, Any]] = []
        self.turn_requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeAnthropic:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, *turns: Turn) -> None:
        with self._lock:
            self.turns.extend(turns)

    # -- what the CLI sent ---------------------------------------------------------------

    def tool_results(self) -> list[dict[str, Any]]:
        """Each tool call's result as the CLI last sent it back (one per tool_use_id), in order."""
        found: dict[str, dict[str, Any]] = {}
        for body in self.turn_requests:
            for message in body.get("messages", []):
                content = message.get("content")
                if isinstance(content, list):
                    for block in content:
                        if isinstance(block, dict) and block.get("type") == "tool_result":
                            found[str(block.get("tool_use_id"))] = block
        return list(found.values())

    # -- answering -----------------------------------------------------------------------

    def _next(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            self.requests.append(body)
            if not body.get("tools"):
                return text("ok")
            self.turn_requests.append(body)
            return self.turns.popleft() if self.turns else text("done")

    def events(self, turn: Turn, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The SSE events of one streamed reply."""
        message_id = f"msg_fake{next(_ids):06d}"
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": body.get("model", self.model),
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1}}})]
        index = 0
        if turn.text or not turn.tool:
            events += [
                ("content_block_start", {"type": "content_block_start", "index": index,
                                         "content_block": {"type": "text", "text": ""}}),
                ("content_block_delta", {"type": "content_block_delta", "index": index,
                                         "delta": {"type": "text_delta", "text": turn.text or "ok"}}),
                ("content_block_stop", {"type": "content_block_stop", "index": index}),
            ]
            index += 1
        if turn.tool:
            events += [
                ("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": turn.tool_id, "name": turn.tool, "input": {}}}),
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(turn.tool_input)}}),
                ("content_block_stop", {"type": "content_block_stop", "index": index}),
            ]
        events += [
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": turn.stop_reason,
                                                                   "stop_sequence": None},
                               "usage": {"output_tokens": 5}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        return events

    def message(self, turn: Turn, body: dict[str, Any]) -> dict[str, Any]:
        """The same reply, not streamed."""
        content: list[dict[str, Any]] = []
        if turn.text or not turn.tool:
            content.append({"type": "text", "text": turn.text or "ok"})
        if turn.tool:
            content.append({"type": "tool_use", "id": turn.tool_id, "name": turn.tool, "input": turn.tool_input})
        return {"id": f"msg_fake{next(_ids):06d}", "type": "message", "role": "assistant",
                "model": body.get("model", self.model), "content": content, "stop_reason": turn.stop_reason,
                "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}}


class _Handler(BaseHTTPRequestHandler):
    api: FakeAnthropic
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.api.paths.append(self.path)
        self._json(200, {"data": [], "has_more": False})

    def do_POST(self) -> None:
        self.api.paths.append(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {}
        path = self.path.split("?", 1)[0]
        if path.endswith("/count_tokens"):
            self._json(200, {"input_tokens": 10})
            return
        if not path.endswith("/v1/messages"):
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
            return
        if self.api.always_fail:
            with self.api._lock:
                self.api.requests.append(body)
            self._json(self.api.always_fail, {"type": "error", "error": {
                "type": "api_error", "message": f"fake server error {self.api.always_fail}"}})
            return
        turn = self.api._next(body)
        if not body.get("stream"):
            self._json(200, self.api.message(turn, body))
            return
        chunks = b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                          for name, data in self.api.events(turn, body))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(chunks)))
        self.end_headers()
        self.wfile.write(chunks)

    def _json(self, status: int, value: dict[str, Any]) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
