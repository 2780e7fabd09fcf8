"""Who is acting: the identity written into audit entries and checked by policy."""

from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path


def current_user(root: Path | None = None) -> str:
    """`LOOM_USER` if set, else git's `user.email` for the repository, else the login name."""
    override = os.environ.get("LOOM_USER", "").strip()
    if override:
        return override
    try:
        email = subprocess.run(
            ["git", "config", "user.email"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        email = ""
    if email:
        return email
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
