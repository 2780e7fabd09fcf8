"""A fake OpenAI API on 127.0.0.1, for running the real Codex and Aider CLIs in tests.

Two wire formats, one queue of scripted turns:

- **Responses API** (`POST /v1/responses`, what Codex speaks): a streamed reply is
  SSE events `response.created`, then per output item `response.output_item.added`
  and `response.output_item.done` (a `message` with `output_text`, a `function_call`
  with JSON `arguments`, or a `custom_tool_call` with free-form `input`, which is how
  Codex's `apply_patch` tool is offered), then `response.completed` with `usage`.
- **Chat Completions** (`POST /v1/chat/completions`, what Aider speaks through
  litellm): streamed `chat.completion.chunk` deltas ending in `data: [DONE]`, or one
  `chat.completion` when the request does not stream. Aider edits files through the
  text of its reply (its edit format), so a chat turn is just text; its code blocks are
  sent in the fence Aider's prompt asked for (``` unless a file in the chat has such lines).

Each request that asks for a model reply takes the next turn; with the script used
up the reply is "done" (no tool call, so the agent's loop ends). `fail(status)`
turns answer with an HTTP error instead. Every request body is kept in `requests`,
every path in `paths`, so a test can read the tools offered and the tool results
sent back.

Test code only: it binds loopback and nothing else.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

_ids = itertools.count(1)


@dataclass
class Turn:
    """One scripted model reply: text, a tool call, or an HTTP error."""

    text: str = ""
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    custom_input: str | None = None  # a free-form (custom) tool call's input
    status: int = 200
    call_id: str = ""


def function_call(name: str, arguments: dict[str, Any]) -> Turn:
    """A Responses-API turn calling function tool `name` with JSON `arguments`."""
    return Turn(tool=name, arguments=arguments, call_id=f"call_fake{next(_ids):06d}")


def custom_call(name: str, tool_input: str) -> Turn:
    """A Responses-API turn calling free-form (custom) tool `name` with `tool_input`."""
    return Turn(tool=name, custom_input=tool_input, call_id=f"call_fake{next(_ids):06d}")


def text(reply: str) -> Turn:
    """A turn that only answers in text (Codex's loop ends; for Aider, the edit itself)."""
    return Turn(text=reply)


def fail(status: int = 500) -> Turn:
    """A turn answered with HTTP `status` and an OpenAI-style error body."""
    return Turn(status=status)


class FakeOpenAI:
    """A scripted OpenAI API server in a thread: `with FakeOpenAI([turns]) as api: api.url`."""

    def __init__(self, turns: list[Turn] | None = None, *, model: str = "fake-model",
                 always_fail: int | None = None) -> None:
        self.turns: deque[Turn] = deque(turns or [])
        self.model = model
        self.always_fail = always_fail
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
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
        """The API base, `/v1` included (what OPENAI_BASE_URL and --openai-api-base take)."""
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def add(self, *turns: Turn) -> None:
        with self._lock:
            self.turns.extend(turns)

    # -- what the CLI sent ---------------------------------------------------------------

    def tool_names(self) -> list[str]:
        """The names of the tools the first Responses request offered."""
        for body in self.requests:
            if body.get("tools"):
                return [t.get("name") or t.get("type", "") for t in body["tools"]]
        return []

    def tool_outputs(self) -> list[dict[str, Any]]:
        """Every `function_call_output` / `custom_tool_call_output` item sent back, once each."""
        found: dict[str, dict[str, Any]] = {}
        for body in self.requests:
            for item in body.get("input") or []:
                if isinstance(item, dict) and str(item.get("type", "")).endswith("call_output"):
                    found[json.dumps(item, sort_keys=True)] = item
        return list(found.values())

    def chat_messages(self) -> list[list[dict[str, Any]]]:
        """The `messages` of every chat completions request."""
        return [body["messages"] for body in self.requests if "messages" in body]

    # -- answering -----------------------------------------------------------------------

    def _next(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            self.requests.append(body)
            if self.always_fail:
                return fail(self.always_fail)
            turn = self.turns.popleft() if self.turns else text("done")
        return _in_asked_fence(turn, body)

    def response_items(self, turn: Turn) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if turn.text or not turn.tool:
            items.append({"type": "message", "id": f"msg_fake{next(_ids):06d}", "role": "assistant",
                          "status": "completed",
                          "content": [{"type": "output_text", "text": turn.text or "done", "annotations": []}]})
        if turn.tool and turn.custom_input is not None:
            items.append({"type": "custom_tool_call", "id": f"ctc_fake{next(_ids):06d}", "status": "completed",
                          "call_id": turn.call_id, "name": turn.tool, "input": turn.custom_input})
        elif turn.tool:
            items.append({"type": "function_call", "id": f"fc_fake{next(_ids):06d}", "status": "completed",
                          "call_id": turn.call_id, "name": turn.tool, "arguments": json.dumps(turn.arguments)})
        return items

    def response_events(self, turn: Turn, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The SSE events of one streamed Responses reply."""
        response_id = f"resp_fake{next(_ids):06d}"
        base = {"id": response_id, "object": "response", "created_at": int(time.time()),
                "model": body.get("model", self.model), "output": []}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"type": "response.created", "response": {**base, "status": "in_progress"}})]
        items = self.response_items(turn)
        for index, item in enumerate(items):
            events.append(("response.output_item.added",
                           {"type": "response.output_item.added", "output_index": index, "item": item}))
            if item["type"] == "message":
                events.append(("response.output_text.delta", {
                    "type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                    "content_index": 0, "delta": item["content"][0]["text"]}))
            events.append(("response.output_item.done",
                           {"type": "response.output_item.done", "output_index": index, "item": item}))
        events.append(("response.completed", {"type": "response.completed", "response": {
            **base, "status": "completed", "output": items,
            "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": 120}}}))
        return events

    def chat_chunks(self, turn: Turn, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The `chat.completion.chunk` objects of one streamed chat reply."""
        chat_id = f"chatcmpl-fake{next(_ids):06d}"
        base = {"id": chat_id, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model", self.model)}
        reply = turn.text or "done"
        return [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {"content": reply}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}},
        ]

    def chat_completion(self, turn: Turn, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"chatcmpl-fake{next(_ids):06d}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", self.model),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.text or "done"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}


def _in_asked_fence(turn: Turn, body: dict[str, Any]) -> Turn:
    """A chat turn's ``` code blocks in the fence Aider asked for, as a model following its prompt
    would write them. Aider asks for ```` (or <source>...</source>) instead of ``` when a file in
    the chat, its `--read` context included, has a line starting with ```, and parses only the
    fence it asked for."""
    prompts = " ".join(str(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict))
    asked = re.search(r"Second line: opening (\S+)", prompts)
    if not asked or not turn.text or asked.group(1) == "```":
        return turn
    opening = asked.group(1)
    closing = opening.replace("<", "</", 1) if opening.startswith("<") else opening
    fenced = re.sub(r"^```\w*\n(.*?)^```", lambda m: f"{opening}\n{m.group(1)}{closing}", turn.text,
                    flags=re.DOTALL | re.MULTILINE)
    return replace(turn, text=fenced)


class _Handler(BaseHTTPRequestHandler):
    api: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.api.paths.append("GET " + self.path)
        if self.path.split("?", 1)[0].endswith("/models"):
            self._json(200, {"object": "list", "data": [
                {"id": self.api.model, "object": "model", "created": 0, "owned_by": "test"}]})
            return
        self._json(404, {"error": {"message": f"not found: {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        self.api.paths.append("POST " + self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        path = self.path.split("?", 1)[0]
        if path.endswith("/responses"):
            turn = self.api._next(body)
            if turn.status != 200:
                self._error(turn.status)
                return
            self._sse([(name, data) for name, data in self.api.response_events(turn, body)])
            return
        if path.endswith("/chat/completions"):
            turn = self.api._next(body)
            if turn.status != 200:
                self._error(turn.status)
                return
            if body.get("stream"):
                self._sse([(None, chunk) for chunk in self.api.chat_chunks(turn, body)], done=True)
            else:
                self._json(200, self.api.chat_completion(turn, body))
            return
        self._json(404, {"error": {"message": f"not found: {self.path}", "type": "invalid_request_error"}})

    def _sse(self, events: list[tuple[str | None, dict[str, Any]]], *, done: bool = False) -> None:
        parts = []
        for name, data in events:
            head = f"event: {name}\n" if name else ""
            parts.append(f"{head}data: {json.dumps(data)}\n\n")
        if done:
            parts.append("data: [DONE]\n\n")
        chunks = "".join(parts).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(chunks)))
        self.end_headers()
        self.wfile.write(chunks)

    def _error(self, status: int) -> None:
        self._json(status, {"error": {"message": f"fake server error {status}", "type": "server_error",
                                      "code": None, "param": None}})

    def _json(self, status: int, value: dict[str, Any]) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
