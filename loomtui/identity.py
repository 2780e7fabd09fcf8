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


def named_by_login(root: Path | None = None) -> bool:
    """Whether `current_user` falls back to the login name: neither LOOM_USER nor git's user.email says
    who this is (a policy's groups and every decision name people by email)."""
    if os.environ.get("LOOM_USER", "").strip():
        return False
    try:
        return not Git(root or Path.cwd()).run("config", "user.email", timeout=5).out.strip()
    except (OSError, LoomError):
        return True


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


SIGNING_CONFIG = ("loom.signingkey", "gpg.format", "user.signingkey")


def _git_config(root: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The values of git config `names` (lower case, as git says them) that are set; one git run."""
    pattern = "^(" + "|".join(name.replace(".", "\\.") for name in names) + ")$"
    try:
        out = Git(root).run("config", "-z", "--get-regexp", pattern, timeout=10).out
    except LoomError:  # none is set (git exits 1), or no git here
        return {}
    values: dict[str, str] = {}
    for item in filter(None, out.split("\0")):
        name, _, value = item.partition("\n")
        values[name.lower()] = value.strip()  # the last one set wins, as for `git config --get`
    return values


def signing_key(root: Path) -> str | None:
    """The key this user signs decisions with (`LOOM_SIGNING_KEY`, git config `loom.signingkey`, else
    `user.signingkey` when `gpg.format` is ssh): a key file, or a `key::` literal; None when none is set."""
    explicit = os.environ.get("LOOM_SIGNING_KEY", "").strip()
    if explicit:
        return explicit
    config = _git_config(root, SIGNING_CONFIG)
    if config.get("loom.signingkey"):
        return config["loom.signingkey"]
    if config.get("gpg.format", "").lower() == "ssh":
        return config.get("user.signingkey") or None
    return None
