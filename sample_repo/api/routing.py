"""A tiny router: maps (method, path pattern) to handler functions and dispatches requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .requests import Request, Response, json_error

if TYPE_CHECKING:
    from .app import Services

Handler = Callable[[Request, "Services"], Response]


def _split(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.strip("/").split("/") if part)


def match_path(pattern: tuple[str, ...], path: tuple[str, ...]) -> dict[str, str] | None:
    """Match path segments against a pattern like ``invoices/{invoice_id}``; return the parameters."""

    def parameter_name(segment: str) -> str | None:
        if segment.startswith("{") and segment.endswith("}"):
            return segment[1:-1]
        return None

    if len(pattern) != len(path):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, path):
        name = parameter_name(expected)
        if name is not None:
            params[name] = actual
        elif expected != actual:
            return None
    return params


class Router:
    """Maps HTTP methods and path patterns to handlers and dispatches requests to them."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, tuple[str, ...], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator registering a handler for a method and a path pattern such as ``/invoices/{id}``."""

        def register(handler: Handler) -> Handler:
            self._routes.append((method.upper(), _split(pattern), handler))
            return handler

        return register

    def routes(self) -> list[tuple[str, str]]:
        """Return ``(method, pattern)`` for every registered route, in registration order."""
        return [(method, "/" + "/".join(parts)) for method, parts, _ in self._routes]

    def dispatch(self, request: Request, services: Any) -> Response:
        """Call the handler whose pattern matches the request; 404 or 405 when none does."""
        path = _split(request.path)
        method_mismatch = False
        for method, pattern, handler in self._routes:
            params = match_path(pattern, path)
            if params is None:
                continue
            if method != request.method.upper():
                method_mismatch = True
                continue
            return handler(request.with_params(params), services)
        if method_mismatch:
            return json_error(405, "method_not_allowed", f"{request.method} not allowed on {request.path}")
        return json_error(404, "not_found", f"no route for {request.path}")
