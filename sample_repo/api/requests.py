"""Request and response types for the plain-Python API layer (no web framework)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Mapping


@dataclass(frozen=True)
class Request:
    """An incoming API call: method, path, JSON body, headers and matched path parameters."""

    method: str
    path: str
    body: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)

    def with_params(self, params: Mapping[str, str]) -> "Request":
        """Return a copy of the request carrying the path parameters matched by the router."""
        return replace(self, params=dict(params))

    @property
    def actor(self) -> str:
        """Who made the call, from the ``X-Actor`` header (``anonymous`` if missing)."""
        return self.headers.get("X-Actor", "anonymous")


@dataclass(frozen=True)
class Response:
    """An API response: HTTP status code and a JSON-serialisable body."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Tell whether the status is a 2xx success."""
        return 200 <= self.status < 300

    def to_json(self) -> str:
        """Serialise the body, turning Decimals and other values into strings."""
        return json.dumps(self.body, default=str, sort_keys=True)


def json_ok(body: dict[str, Any], status: int = 200) -> Response:
    """Build a success response."""
    return Response(status, body)


def json_error(status: int, code: str, message: str) -> Response:
    """Build an error response with a machine-readable code and a human message."""
    return Response(status, {"error": {"code": code, "message": message}})
