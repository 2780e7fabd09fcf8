"""Handler decorators: required-field checks, error translation, and amount parsing."""

from __future__ import annotations

import functools
import logging
from decimal import Decimal
from typing import Any, Callable

from customers.validation import InvalidCustomerError
from payments.currency import as_decimal
from payments.errors import PaymentError
from storage.repository import NotFoundError

from .requests import Request, Response, json_error

logger = logging.getLogger(__name__)

Handler = Callable[[Request, Any], Response]


def require_fields(*fields: str) -> Callable[[Handler], Handler]:
    """Decorator: reject a request with 400 unless its JSON body has every listed field."""

    def decorator(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(request: Request, services: Any) -> Response:
            missing = [name for name in fields if request.body.get(name) in (None, "", [])]
            if missing:
                return json_error(400, "missing_fields", "missing required fields: " + ", ".join(missing))
            return handler(request, services)

        return wrapper

    return decorator


def handle_errors(handler: Handler) -> Handler:
    """Decorator: translate domain exceptions raised by a handler into JSON error responses."""

    @functools.wraps(handler)
    def wrapper(request: Request, services: Any) -> Response:
        try:
            return handler(request, services)
        except NotFoundError as exc:
            return json_error(404, "not_found", str(exc))
        except PaymentError as exc:
            logger.warning("payment error on %s %s: %s", request.method, request.path, exc)
            return json_error(422, exc.code, str(exc))
        except (InvalidCustomerError, ValueError, TypeError) as exc:
            return json_error(400, "invalid_request", str(exc))

    return wrapper


def parse_amount(value: object, field: str) -> Decimal:
    """Parse a money amount from a request body, accepting strings and ints but never floats."""
    if isinstance(value, float):
        raise ValueError(f"{field} must be sent as a string, not a JSON number with a fraction")
    try:
        return as_decimal(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: {exc}") from None
