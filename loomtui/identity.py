"""Who is acting: the identity written into audit entries and checked by policy."""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

from loomtui.errors import LoomError
from loomtui.gitcmd import Git


def current_user(root: Path | None = None) -> str:
    """`LOOM_USER` if set, else git's `user.email` for the repository, else the login name."""
    override = os.environ.get("LOOM_USER", "").strip()
    if override:
        return _plain(override, "LOOM_USER")
    try:
        email = Git(root or Path.cwd()).run("config", "user.email", timeout=5).out.strip()
    except (OSError, LoomError):  # OSError: the current directory is gone
        email = ""
    if email:
        return _plain(email, "git's user.email")
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _plain(name: str, source: str) -> str:
    """`name`, refused when it holds a control character: it goes into audit entries and every
    listing of who did what, where a newline or an escape sequence could pass for another line."""
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise LoomError(f"{source} {name!r} holds a control character; a person's name is one plain line")
    return name


def current_host() -> str:
    """This machine's name, as sandboxes record where they run: `LOOMTUI_HOST` if set (two
    containers with one hostname), else the hostname."""
    return os.environ.get("LOOMTUI_HOST", "").strip() or socket.gethostname()
