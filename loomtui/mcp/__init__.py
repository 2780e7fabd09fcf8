"""The MCP server agents talk to (`loomtui mcp`): permission prompts, claims, questions to a lead.

A front-end, like the CLI and the TUI: it may use any layer, and nothing imports it.
The server itself is in `loomtui.mcp.server`; importing this package loads nothing else.
"""

from __future__ import annotations

SERVER_NAME = "loomtui"
PERMISSION_TOOL = "permission_prompt"
PERMISSION_TOOL_ID = f"mcp__{SERVER_NAME}__{PERMISSION_TOOL}"
"""What Claude Code's `--permission-prompt-tool` names."""
