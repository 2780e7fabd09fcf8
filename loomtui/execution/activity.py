"""Structured agent output turned into activity events ("Edit payments/fx.py", "finished").

The supervisor feeds each output line to the parser its runtime declares; an
activity becomes a `sandbox.activity` event in the store, which the TUI shows.
A line that is not structured output is simply not an activity; parsing never
fails an agent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Final

from loomtui.errors import abridged
from loomtui.execution.runtimes import OUTPUT_CLAUDE_STREAM, OUTPUT_CODEX_JSON, OUTPUT_SCRIPT_AGENT
from loomtui.json_text import parse_json
from loomtui.rates import TokenBucket

Activity = dict[str, Any]
SUMMARY_CHARS = 160
AGENT_RESULT_KEYS = ("turns", "cost_usd", "is_error", "error", "input_tokens", "output_tokens", "cache_read_tokens",
                     "cache_creation_tokens", "input_tokens_read", "denials")
"""What the supervisor keeps of an agent's closing report. `input_tokens_read`: every input token the model read,
its cache's included, whichever way the vendor counts (Anthropic's `input_tokens` leaves the cache's out, OpenAI's
holds them): one figure `report` can add up across runtimes (Claude's 12 tokens in had read 53,012)."""
"""What a sandbox keeps of its agent's own closing report (`agent_result` in its data)."""

# The script agent announces each step as `[script] ACTION DETAIL` (see script_agent.py).
SCRIPT_STEP = re.compile(r"^\[script\] (?P<action>[a-z]+)(?: (?P<detail>.*))?$")


ACTIVITY_BURST: Final = 200
ACTIVITY_RATE: Final = 20.0
"""Activities recorded a second once a burst of ACTIVITY_BURST is spent (an agent's busiest turns make a few)."""
MAX_ACTIVITIES: Final = 20_000
"""Activities recorded in one run at most: the rest are counted (each is in the agent's log)."""
MAX_RESULTS: Final = 100
"""Closing reports recorded in one run at most, whatever the rate (an agent makes one a run, an interactive one a
few): a program printing result lines was a row each, 200,000 in one run."""


class ActivityBudget:
    """Which of an agent's activities become store rows: a burst, then a steady rate, at most MAX_ACTIVITIES a
    run; the rest are counted. A program printing tool-call lines as fast as it could (911,000 in 25 s) was a
    row each, queued without bound in the supervisor's memory, which no agent's memory limit covers. Its
    closing reports are kept, up to MAX_RESULTS (its tokens and cost are read from the last, kept or not)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = TokenBucket(ACTIVITY_BURST, ACTIVITY_RATE, clock)
        self.kept = 0
        self.dropped = 0
        self.results = 0

    def admit(self, activity: Activity) -> bool:
        """Whether to record `activity` (else it is counted in `dropped`)."""
        if activity.get("kind") == "result":
            if self.results < MAX_RESULTS:
                self.results += 1
                return True
            self.dropped += 1
            return False
        if self.kept < MAX_ACTIVITIES and self.rate.take():
            self.kept += 1
            return True
        self.dropped += 1
        return False

    def first_dropped(self) -> Activity | None:
        """The note that says activities are being left out, when the last one `admit` refused was the first."""
        if self.dropped != 1:
            return None
        why = (f"more than {MAX_ACTIVITIES:,} this run" if self.kept >= MAX_ACTIVITIES
               else f"faster than {ACTIVITY_RATE:g} a second")
        return {"kind": "note", "summary": f"the agent's activities came {why}: the rest are counted, not each "
                                           "recorded (all are in its log)"}


def turns_said(turns: object) -> str:
    """An agent's turns as a phrase: "1 turn", "4 turns" (it said "1 turns")."""
    return f"{turns} turn" if turns == 1 else f"{turns} turns"


def shorten(text: str) -> str:
    """One line of at most SUMMARY_CHARS characters (an activity's summary)."""
    return abridged(text, SUMMARY_CHARS)


def _tool_target(tool_input: Any) -> str:
    if not isinstance(tool_input, dict):
        return ""
    pattern, path = tool_input.get("pattern"), tool_input.get("path")
    if isinstance(pattern, str) and pattern and isinstance(path, str) and path:  # Grep, Glob: what, and where
        return f"{pattern} in {path}"
    for key in ("file_path", "path", "notebook_path", "command", "pattern", "url", "description"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def json_event(line: str) -> dict[str, Any] | None:
    """A line of an agent's structured output as its event (one JSON object), or None."""
    if not line.startswith("{"):
        return None
    try:
        event = parse_json(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def parse_claude_stream(line: str, *, whole_text: bool = False) -> list[Activity]:
    """Activities in one line of Claude Code's `--output-format stream-json` (with `whole_text`,
    what the model said is its summary whole, for a person reading the log, not cut to a line)."""
    message = json_event(line)
    if message is None:
        return []
    kind = message.get("type")
    if kind == "system" and message.get("subtype") == "init":
        model = message.get("model") or "unknown model"
        return [{"kind": "init", "summary": f"session started ({model})"}]
    if kind == "system" and message.get("subtype") == "api_retry":
        # The model API failed (unreachable, 5xx, overloaded): Claude Code waits and tries again.
        status, error = message.get("error_status"), str(message.get("error") or "")
        # No status and "unknown": no answer at all (a timeout, a dropped connection), not an unknown error.
        why = f"HTTP {status}" if status else "gave no answer" if error in ("", "unknown") else error
        return [{"kind": "retry", "summary": shorten(f"model API {why}: retry {message.get('attempt')} of "
                                                     f"{message.get('max_retries')}")}]
    if kind == "result":
        return _result(message)
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
            found.append({"kind": "tool", "tool": tool, "summary": shorten(f"{tool} {target}".strip())})
        elif kind == "assistant" and block.get("type") == "text" and str(block.get("text", "")).strip():
            said = str(block["text"]).strip()
            found.append({"kind": "text", "summary": said if whole_text else shorten(said)})
        elif kind == "user" and block.get("type") == "tool_result" and block.get("is_error"):
            found.append({"kind": "error", "summary": shorten(f"tool error: {block.get('content', '')}")})
    return found


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


USAGE_KEYS: Final = ("input_tokens_read", "input_tokens", "output_tokens", "cost_usd")
"""What of an agent's closing report its end's audit entry keeps (`usage`): each run's tokens and cost counted in
the window it ended in (read from the sandbox's record, a run again moved the first run's cost to the second's
end, and two windows side by side counted it twice)."""


def usage_of(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The tokens and cost of an agent's closing report, or None when it said none."""
    if not result:
        return None
    usage = {key: result[key] for key in USAGE_KEYS if result.get(key) is not None}
    return usage or None


def _result(message: dict[str, Any]) -> list[Activity]:
    """Claude Code's closing `result`: outcome, turns, cost, tokens, and every refused tool call."""
    turns = message.get("num_turns")
    cost = message.get("total_cost_usd")
    outcome = message.get("subtype") or ("error" if message.get("is_error") else "success")
    result = message.get("result")
    said = shorten(result) if message.get("is_error") and isinstance(result, str) and result.strip() else None
    if message.get("is_error") and outcome == "success":
        # Claude Code ends an API failure with subtype "success" and is_error: it is an error.
        outcome = f"error ({result})" if said else "error"
    raw_usage = message.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    tokens = {"input_tokens": _count(usage.get("input_tokens")),
              "output_tokens": _count(usage.get("output_tokens")),
              "cache_read_tokens": _count(usage.get("cache_read_input_tokens")),
              "cache_creation_tokens": _count(usage.get("cache_creation_input_tokens"))}
    tokens["input_tokens_read"] = tokens["input_tokens"] + tokens["cache_read_tokens"] + tokens["cache_creation_tokens"]
    raw = message.get("permission_denials")
    denials = [{"tool": str(d.get("tool_name") or "tool"), "target": shorten(_tool_target(d.get("tool_input")))}
               for d in (raw if isinstance(raw, list) else []) if isinstance(d, dict)]
    parts = [str(outcome)]
    if turns is not None:
        parts.append(turns_said(turns))
    if isinstance(cost, (int, float)):
        parts.append(f"${cost:.4f}")
    if tokens["input_tokens"] or tokens["output_tokens"]:
        parts.append(f"{tokens['input_tokens']} in / {tokens['output_tokens']} out tokens")
    if denials:
        # A run that was refused what it tried is not plain success: say so in the summary.
        parts.append(f"{len(denials)} permission denial{'s' if len(denials) != 1 else ''}")
    found: list[Activity] = [{"kind": "denied", "summary": shorten(f"denied: {d['tool']} {d['target']}".strip()),
                              **d} for d in denials]
    found.append({"kind": "result", "summary": "finished: " + ", ".join(parts), "turns": turns,
                  "cost_usd": cost if isinstance(cost, (int, float)) else None,
                  "is_error": bool(message.get("is_error")), "error": said, "denials": denials, **tokens})
    return found


def is_stream_json(line: str) -> bool:
    """Whether a line of `stream-json` output is what the format promises (one JSON object, or
    blank); anything else is skipped and counted as unparsed."""
    if not line.strip():
        return True
    try:
        return isinstance(parse_json(line), dict)
    except ValueError:
        return False


# Codex's `exec --json` events, as Codex 0.171 writes them: `thread.started`, `turn.started`, `item.started` and
# `item.completed` (an `agent_message`, a `command_execution`, a `file_change`, an `mcp_tool_call`, a `web_search`,
# an `error`...), `turn.completed` with the turn's `usage`, `turn.failed` with its `error`, and `error` for a model
# API that failed (each of its reconnects too). Read rather than its plain output: the tokens it used are said in
# numbers, and an `ERROR:` a command printed is the command's, never taken for the API's.


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_codex_json(line: str, *, whole_text: bool = False) -> list[Activity]:
    """Activities in one line of `codex exec --json` (with `whole_text`, what the model said whole, for a
    person reading the log, not cut to a line)."""
    event = json_event(line)
    if event is None:
        return []
    kind = event.get("type")
    if kind == "thread.started":
        return [{"kind": "init", "summary": "session started"}]
    if kind == "error":
        return [{"kind": "error", "summary": shorten(f"model API: {_text(event.get('message'))}")}]
    if kind == "turn.completed":
        return [_turn_end(event.get("usage"), None)]
    if kind == "turn.failed":
        error = event.get("error")
        said = _text(error.get("message")) if isinstance(error, dict) else ""
        return [_turn_end(None, said or "the turn failed")]
    item = event.get("item")
    if kind not in ("item.started", "item.completed") or not isinstance(item, dict):
        return []
    return _item(item, started=kind == "item.started", whole_text=whole_text)


def _item(item: dict[str, Any], *, started: bool, whole_text: bool) -> list[Activity]:
    """A command when it starts (and as an error when it ends failing), anything else once it is done."""
    kind = item.get("type")
    if kind == "command_execution":
        command = _text(item.get("command"))
        if started:
            return [{"kind": "tool", "tool": "exec", "summary": shorten(f"exec {command}".strip())}]
        code = item.get("exit_code")
        if isinstance(code, int) and code != 0:
            # What it said, last: a commit refused by the pre-commit hook read "exit 1" alone, whose sandbox
            # held the file only in the raw log.
            output = [line.strip() for line in _text(item.get("aggregated_output")).splitlines() if line.strip()]
            why = f" ({output[-1]})" if output else ""
            return [{"kind": "error", "summary": shorten(f"tool error: exit {code}{why}: {command}")}]
        return []
    if started:
        return []
    if kind == "agent_message" and _text(item.get("text")).strip():
        said = _text(item.get("text")).strip()
        return [{"kind": "text", "summary": said if whole_text else shorten(said)}]
    if kind == "file_change":
        changes = item.get("changes")
        paths = [_text(c.get("path")) for c in changes if isinstance(c, dict)] if isinstance(changes, list) else []
        named = ", ".join(p for p in paths if p)
        if item.get("status") == "failed":
            return [{"kind": "error", "summary": shorten(f"tool error: Edit {named}".strip())}]
        return [{"kind": "tool", "tool": "Edit", "summary": shorten(f"Edit {named}".strip())}]
    if kind == "mcp_tool_call":
        name = ".".join(part for part in (_text(item.get("server")), _text(item.get("tool"))) if part) or "tool"
        return [{"kind": "tool", "tool": name, "summary": shorten(name)}]
    if kind == "web_search":
        return [{"kind": "tool", "tool": "WebSearch", "summary": shorten(f"WebSearch {_text(item.get('query'))}")}]
    if kind == "error" and _text(item.get("message")):
        return [{"kind": "error", "summary": shorten(_text(item.get("message")))}]
    return []


def _turn_end(usage: Any, error: str | None) -> Activity:
    """A Codex turn's end as the closing `result` the supervisor keeps (`agent_result`): its tokens, or its error."""
    used: dict[str, Any] = usage if isinstance(usage, dict) else {}
    tokens: dict[str, int | None] = {
        "input_tokens": _count(used.get("input_tokens")), "output_tokens": _count(used.get("output_tokens")),
        "cache_read_tokens": _count(used.get("cached_input_tokens")),
        "cache_creation_tokens": _count(used.get("cache_write_input_tokens"))}
    tokens["input_tokens_read"] = tokens["input_tokens"]  # OpenAI's input holds its cached part
    if not isinstance(usage, dict):
        # A failed turn says no usage: its tokens are not known (a reply served before a 500 read as 0 in / 0 out,
        # and the agent as one reporting, where the report says "not said").
        tokens = dict.fromkeys(tokens)
    parts = ["success" if error is None else f"error ({shorten(error)})"]
    if tokens["input_tokens"] or tokens["output_tokens"]:
        parts.append(f"{tokens['input_tokens']} in / {tokens['output_tokens']} out tokens")
    return {"kind": "result", "summary": "finished: " + ", ".join(parts), "turns": None, "cost_usd": None,
            "is_error": error is not None, "error": shorten(error) if error else None, "denials": [], **tokens}


def parse_script_agent(line: str) -> list[Activity]:
    """Activities in the script agent's step announcements."""
    match = SCRIPT_STEP.match(line)
    if match is None or match["action"] == "log":
        return []
    detail = match["detail"] or ""
    return [{"kind": match["action"], "summary": shorten(f"{match['action']} {detail}".strip())}]


PARSERS: dict[str, Callable[[str], list[Activity]]] = {
    OUTPUT_CLAUDE_STREAM: parse_claude_stream,
    OUTPUT_CODEX_JSON: parse_codex_json,
    OUTPUT_SCRIPT_AGENT: parse_script_agent,
}


CHECKS: dict[str, Callable[[str], bool]] = {
    OUTPUT_CLAUDE_STREAM: is_stream_json,
}


def parser_for(output: str) -> Callable[[str], list[Activity]] | None:
    """The parser for a runtime's output format; None for plain output."""
    return PARSERS.get(output)


def checker_for(output: str) -> Callable[[str], bool] | None:
    """Whether a line is well-formed in a runtime's output format; None when any line is."""
    return CHECKS.get(output)
