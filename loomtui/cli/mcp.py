"""`loomtui mcp`: the MCP server an agent's runtime starts (permission prompts, claims, questions)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loomtui.cli import add_command, seconds_arg

MAX_WAIT_S = 24 * 3600
DEFAULT_WAIT_S = 120.0  # as the PermissionRequest hook's --timeout


def cmd_mcp(args: argparse.Namespace) -> int:
    if args.sandbox is not None:  # said now, not at the agent's first claim
        from loomtui.coordination.claims import check_holder

        check_holder(args.sandbox)
    from loomtui.mcp.server import Settings, run  # the MCP SDK loads only here

    return run(Settings(cwd=Path(args.repo or ".").resolve(), wait=args.timeout, poll=args.poll,
                        sandbox=args.sandbox))


def register(commands: Any) -> None:
    """Add `loomtui mcp` to the top-level parser."""
    mcp = add_command(
        commands, "mcp", cmd_mcp,
        "serve MCP on stdin/stdout for an agent: Claude Code's permission prompt "
        "(--permission-prompt-tool mcp__loomtui__permission_prompt), claims, conflicts, questions to a lead")
    mcp.add_argument("--timeout", type=seconds_arg(MAX_WAIT_S), default=DEFAULT_WAIT_S, metavar="SECONDS",
                     help="how long a permission request or question waits for a person (default 120); "
                          "then it is withdrawn and the answer is no")
    mcp.add_argument("--poll", type=seconds_arg(60), default=0.5, metavar="SECONDS",
                     help="how often a wait looks for the decision (default 0.5)")
    mcp.add_argument("--sandbox", metavar="ID",
                     help="outside a sandbox: the sandbox id to claim for (default: as `hook claude`)")
