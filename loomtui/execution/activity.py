"""Structured agent output turned into activity events ("Edit payments/fx.py", "finished").

The supervisor feeds each output line to the parser its runtime declares; an
activity becomes a `sandbox.activity` event in the store, which the TUI shows.
A line that is not structured output is simply not an activity; parsing never
fails an agent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from loomtui.execution.runtimes import OUTPUT_CLAUDE_STREAM, OUTPUT_SCRIPT_AGENT

Activity = dict[str, Any]
SUMMARY_CHARS = 160

# The script agent announces each step as `[script] ACTION DETAIL` (see script_agent.py).
SCRIPT_STEP = re.compile(r"^\[script\] (?P<action>[a-z]+)(?: (?P<detail>.*))?$")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS - 1] + "…"


def _tool_target(tool_input: Any) -> str:
    if not isinstance(tool_input, dict):
        return ""
    for key in ("file_path", "path", "notebook_path", "command", "pattern", "url", "description"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def parse_claude_stream(line: str) -> list[Activity]:
    """Activities in one line of Claude Code's `--output-format stream-json`."""
    if not line.startswith("{"):
        return []
    try:
        message = json.loads(line)
    except ValueError:
        return []
    if not isinstance(message, dict):
        return []
    kind = message.get("type")
    if kind == "system" and message.get("subtype") == "init":
        model = message.get("model") or "unknown model"
        return [{"kind": "init", "summary": f"session started ({model})"}]
    if kind == "result":
        turns = message.get("num_turns")
        cost = message.get("total_cost_usd")
        outcome = message.get("subtype") or ("error" if message.get("is_error") else "success")
        parts = [str(outcome)]
        if turns is not None:
            parts.append(f"{turns} turns")
        if isinstance(cost, (int, float)):
            parts.append(f"${cost:.4f}")
        return [{"kind": "result", "summary": "finished: " + ", ".join(parts),
                 "turns": turns, "cost_usd": cost, "is_error": bool(message.get("is_error"))}]
    content = (message.get("message") or {}).get("content") if isinstance(message.get("message"), dict) else None
    if not isinstance(content, list):
        return []
    found: list[Activity] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if kind == "assistant" and block.get("type") == "tool_use":
            tool = str(block.get("name") or "tool")
            target = _tool_target(block.get("input"))
            found.append({"kind": "tool", "tool": tool, "summary": _short(f"{tool} {target}".strip())})
        elif kind == "assistant" and block.get("type") == "text" and str(block.get("text", "")).strip():
            found.append({"kind": "text", "summary": _short(str(block["text"]))})
        elif kind == "user" and block.get("type") == "tool_result" and block.get("is_error"):
            found.append({"kind": "error", "summary": _short(f"tool error: {block.get('content', '')}")})
    return found


def parse_script_agent(line: str) -> list[Activity]:
    """Activities in the script agent's step announcements."""
    match = SCRIPT_STEP.match(line)
    if match is None or match["action"] == "log":
        return []
    detail = match["detail"] or ""
    return [{"kind": match["action"], "summary": _short(f"{match['action']} {detail}".strip())}]


PARSERS: dict[str, Callable[[str], list[Activity]]] = {
    OUTPUT_CLAUDE_STREAM: parse_claude_stream,
    OUTPUT_SCRIPT_AGENT: parse_script_agent,
}


def parser_for(output: str) -> Callable[[str], list[Activity]] | None:
    """The parser for a runtime's output format; None for plain output."""
    return PARSERS.get(output)
