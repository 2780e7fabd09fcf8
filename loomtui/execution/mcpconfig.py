"""The MCP config a sandbox's Claude Code reads (`--mcp-config {mcp_config}`): loomtui's own server.

Written into the sandbox's state dir when it is created (visible to its agent, not
writable by it). The server runs this very installation's Python (no PATH
lookup, as for the hooks); inside the sandbox it reaches loomtui through the
broker (`$LOOM_BROKER`, in the agent's environment, which Claude Code passes on).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from loomtui.files import write_atomically

FILE_NAME: Final = "mcp.json"
DEFAULT_WAIT_S: Final = 120.0


def mcp_config_path(sandbox_dir: Path) -> Path:
    """Where a sandbox's MCP config lives, in its state dir (`{mcp_config}`)."""
    return sandbox_dir / FILE_NAME


def mcp_config(worktree: Path, *, wait: float = DEFAULT_WAIT_S,
               env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Claude Code's `--mcp-config` JSON for one sandbox.

    `alwaysLoad`: Claude Code waits for this server before the agent's first step (it
    connects other servers in the background under `-p`, and a permission prompt tool
    that is not connected yet is "not found": the write fails). `timeout` (ms) bounds
    a tool call a little beyond loomtui's own wait, which answers first. `env`: the sandbox's own variables
    (its broker): an MCP host need not pass the agent's environment on (the official SDK's stdio client passes
    HOME, PATH and a few more), and without them every tool failed on the read-only store.
    """
    return {"mcpServers": {"loomtui": {
        "type": "stdio",
        "command": sys.executable,
        "args": ["-m", "loomtui", "-C", str(worktree), "mcp", "--timeout", f"{wait:g}"],
        "alwaysLoad": True,
        "timeout": int((wait + 60) * 1000),
        **({"env": dict(env)} if env else {}),
    }}}


def write_mcp_config(path: Path, worktree: Path, *, wait: float = DEFAULT_WAIT_S,
                     env: Mapping[str, str] | None = None) -> Path:
    """Write the config (atomically, read-only for everyone but its owner); returns its path."""
    write_atomically(path, json.dumps(mcp_config(worktree, wait=wait, env=env), indent=2) + "\n")
    return path
