"""`loomtui serve`: the same app in a browser, for a lead away from a terminal.

textual-serve (Textualize's server for a Textual app) runs `loomtui -C <repo>` once per
browser tab and relays its terminal to xterm.js over a websocket. Whoever drives the page drives
the app as the user who ran `serve` (approves escalations, merges), so it listens on loopback
unless told otherwise, and answers only under the key in the path of the address it printed:
loopback is reachable by every process here, an agent whose runtime has the network among them,
and by any web page the user opens (a page's script may open a websocket to 127.0.0.1).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import re
import secrets
import shlex
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loomtui.cli import add_command, workspace_for
from loomtui.errors import LoomError, shown

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
WILDCARDS = ("", "0.0.0.0", "::")
SHUTDOWN_GRACE = 1.0
"""Seconds Ctrl+C waits for the open tabs before it ends them (each app then quits as on `q`)."""
NO_KEY = ("loomtui serve: open the address `loomtui serve` printed; it holds this page's key "
          "(a new one each time serve starts)\n")


def is_loopback(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback address (a name is not resolved: it may change)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str, public: bool) -> bool:
    """Whether a request's Host header may reach the page: on loopback, a loopback name only (a page of
    another site whose name was made to point at 127.0.0.1, DNS rebinding, sends its own name)."""
    if public:
        return True
    name = urlsplit(f"//{host_header}").hostname or ""
    return is_loopback(name)


_WEB_FONT = re.compile(r"\s*<link[^>]*fonts\.googleapis\.com[^>]*>", re.IGNORECASE)


def offline_templates(into: Path) -> Path:
    """textual-serve's page templates, written into `into`, without the stylesheet it fetches from Google
    Fonts: each page opened told Google of it, and offline the page waited for it; the page's own font list
    falls back to the machine's monospace."""
    import textual_serve

    source = Path(textual_serve.__file__).parent / "templates"
    for template in source.iterdir():
        if template.is_file():
            (into / template.name).write_text(_WEB_FONT.sub("", template.read_text(encoding="utf-8")),
                                              encoding="utf-8")
    return into


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` and listening; a taken port is a one-line LoomError.

    Bound here rather than by the server so the error comes before anything is printed, and
    the port printed is the one held (`--port 0` picks a free one).
    """
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    where = f"{shown(host)}:{port}"
    try:
        return socket.create_server((bare, port), family=family, backlog=128)
    except socket.gaierror:
        raise LoomError(f"cannot listen on {where}: unknown host") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise LoomError(f"port {port} on {shown(host)} is in use: pick another with --port "
                            "(--port 0 picks a free one)") from None
        if exc.errno == errno.EACCES:
            raise LoomError(f"may not listen on {where} (ports below 1024 need root)") from None
        raise LoomError(f"cannot listen on {where}: {exc.strerror or exc}") from None


def page_url(host: str, port: int) -> str:
    """The address a browser opens (on every interface: this machine's name)."""
    bare = host.strip("[]")
    name = socket.gethostname() if bare in WILDCARDS else bare
    return f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"


def port_arg(text: str) -> int:
    """A TCP port: 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number (got {text!r})") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535 (got {port})")
    return port


def cmd_serve(args: argparse.Namespace) -> int:
    host: str = args.host
    if not args.public and not is_loopback(host):
        raise LoomError(f"refusing to serve on {shown(host)}: it is not loopback, and whoever reaches the page "
                        "can start, stop and approve agents as you; add --public to expose it on purpose")
    workspace = workspace_for(args)  # not a repository: one line now, not an app dying in each tab
    root = workspace.root
    workspace.close()
    # The interpreter running this command, so every tab runs this same loomtui.
    command = shlex.join([sys.executable, "-m", "loomtui", "-C", str(root)])
    sock = listen(host, args.port)
    url = page_url(host, sock.getsockname()[1])
    key = secrets.token_urlsafe(18)
    print(f"loomtui: serving {root} at {url}{key}/ (one app per browser tab; Ctrl+C stops)", flush=True)
    with tempfile.TemporaryDirectory(prefix="loomtui-serve-") as templates:
        server = _server(command, sock, title=f"loomtui: {root.name}", url=url.rstrip("/"), key=key,
                         templates=offline_templates(Path(templates)), public=args.public)
        server.serve()
    return 0


def same_origin(origin: str | None, host: str) -> bool:
    """Whether a request's Origin header (absent from a client that is not a browser) names the
    page's own site, `host` being the request's Host header."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def _server(command: str, sock: socket.socket, *, title: str, url: str, key: str, templates: Path,
            public: bool) -> Any:
    """A textual-serve Server on an already bound socket, answering only under /`key`/ (aiohttp loads
    only for this command)."""
    from aiohttp import web
    from textual_serve.server import Server

    @web.middleware
    async def same_site_only(request: web.Request, handler: Any) -> web.StreamResponse:
        if not same_origin(request.headers.get("Origin"), request.host):  # another site's page
            raise web.HTTPForbidden(text="loomtui serve: a page of another site may not drive the app\n")
        if not host_allowed(request.host, public):
            raise web.HTTPForbidden(text="loomtui serve: on loopback the page answers to a loopback name only\n")
        response: web.StreamResponse = await handler(request)
        return response

    async def refuse(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPForbidden(text=NO_KEY)

    class BoundServer(Server):
        async def _make_app(self) -> web.Application:
            # The app lives under /<key>/ only. The key is in the path, not in a cookie: a browser sends
            # a host's cookies to every port on it, an agent's own dev server on another port included.
            app = await super()._make_app()
            app.middlewares.append(same_site_only)
            outer = web.Application()
            outer.add_subapp(f"/{key}/", app)
            outer.router.add_route("*", "/{anything:.*}", refuse)
            return outer

        async def on_startup(self, app: web.Application) -> None:
            """Quiet: our one line says where, not textual-serve's banner."""

        def serve(self, debug: bool = False) -> None:
            # Server.serve binds host:port itself; this runs the same app on our socket. On SIGINT
            # or SIGTERM aiohttp waits shutdown_timeout for open requests, and a tab's websocket
            # stays open until its browser leaves (60 s by default): then it cancels them, and
            # each tab's handler tells its app to quit and waits for it.
            web.run_app(self._make_app(), sock=sock, print=None, access_log=None,
                        shutdown_timeout=SHUTDOWN_GRACE)

    return BoundServer(command, title=title, public_url=url, templates_path=templates)


def register(commands: Any) -> None:
    """`loomtui serve`."""
    serve = add_command(
        commands, "serve", cmd_serve,
        "open the app in a browser: serve it on a local port (textual-serve); each tab runs "
        "`loomtui -C <this repository>` as you, so it listens on loopback only unless --public")
    serve.epilog = ("Open the printed URL. From another machine, prefer a tunnel to --public: "
                    f"`ssh -L {DEFAULT_PORT}:127.0.0.1:{DEFAULT_PORT} HOST`, then the printed address, key "
                    "included, there. The address printed holds a key, new each time serve starts: without it the page "
                    "answers 403 (loopback is open to every process here, agents included, and to any web "
                    "page your browser shows). Decisions made in the page are recorded as the user who ran "
                    "serve.")
    serve.add_argument("--host", default=DEFAULT_HOST, metavar="HOST",
                       help=f"the address to listen on (default {DEFAULT_HOST}); one that is not loopback "
                            "needs --public")
    serve.add_argument("--port", type=port_arg, default=DEFAULT_PORT, metavar="PORT",
                       help=f"the port (default {DEFAULT_PORT}; 0 picks a free one, printed)")
    serve.add_argument("--public", action="store_true",
                       help="allow a HOST other people can reach (e.g. 0.0.0.0): anyone given the printed "
                            "address acts as you, and over plain HTTP its key can be read on the way; put it "
                            "behind an authenticating proxy with TLS")
