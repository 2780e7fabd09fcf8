"""API layer: plain-Python request handlers over the billing services (stdlib only)."""

from .app import BillingApp, Services, build_services, create_app
from .requests import Request, Response

__all__ = ["BillingApp", "Request", "Response", "Services", "build_services", "create_app"]
