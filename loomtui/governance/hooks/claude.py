"""The Claude Code adapter: its hook JSON in, its hook JSON out.

`parse_hook_input` checks a hook's stdin against Claude Code's contract,
`edit_targets` works out which files and lines of their *current* text a tool
call writes (the old and new text diffed), and `answer_event` turns one event
into requests on a `Channel` (the sandbox's broker, or a gate in this process)
and the answer Claude Code reads:

- PreToolUse on a write: one `check_tool` request (allow, ask, deny or no opinion);
- PostToolUse: `confirm_tool_use`, the call happened, so its provisional claims hold;
- PermissionRequest: an escalation a lead answers, waited for.

Stdlib only (and `loomtui.errors`): this runs in the hook process, before every
edit an agent makes, and must start in milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from loomtui.errors import LoomError, abridged, escape_controls
from loomtui.governance.hooks.bash import bash_write_targets
from loomtui.governance.hooks.edits import (
    MAX_PATH_CHARS,
    CommandNotRead,
    EditTarget,
    absolute_path,
    changed_ranges,
    read_text,
)
from loomtui.json_text import parse_json

EDIT_TOOLS: Final = ("Edit", "Write", "MultiEdit", "NotebookEdit")
PRE_TOOL_MATCHER: Final = "|".join((*EDIT_TOOLS, "Bash"))
EVENTS: Final = ("PreToolUse", "PostToolUse", "PermissionRequest")
DEFAULT_PERMISSION_WAIT_S: Final = 120.0
_CURLY_QUOTES: Final = str.maketrans("\u2018\u2019\u201c\u201d", "''\"\"")
_ID_CHARS: Final = re.compile(r"[^A-Za-z0-9]")


class HookInputError(LoomError):
    """The hook input is not what the runtime's hook contract promises (refused, exit 2)."""


# -- the hook input --------------------------------------------------------------------


@dataclass(frozen=True)
class HookEvent:
    """The fields of a Claude Code hook input that the answer depends on."""

    event: str
    session_id: str
    cwd: Path
    tool_name: str = ""
    tool_input: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tool_use_id(self) -> str:
        """The id Claude Code gives one tool call, the same in its PreToolUse and PostToolUse."""
        value = self.extra.get("tool_use_id")
        return value if isinstance(value, str) else ""


def parse_hook_input(text: str) -> HookEvent:
    """Validate the JSON on a hook's stdin; HookInputError names what is wrong."""
    try:
        data = parse_json(text)
    except json.JSONDecodeError as exc:
        raise HookInputError(f"hook input is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise HookInputError("hook input must be a JSON object")
    event = _text_field(data, "hook_event_name")
    if event not in EVENTS:
        raise HookInputError(f"unknown hook event {event!r} (expected {', '.join(EVENTS[:-1])} or {EVENTS[-1]})")
    cwd = data.get("cwd") or os.getcwd()
    if not isinstance(cwd, str) or not Path(cwd).is_absolute():
        raise HookInputError("hook input field 'cwd' must be an absolute path")
    if "\x00" in cwd or not _encodable(cwd):  # a lone surrogate (JSON's \ud800): "internal error" where it was used
        raise HookInputError(f"hook input field 'cwd' is no directory name: {escape_controls(abridged(cwd, 200))}")
    session = data.get("session_id", "")
    tool_input = data.get("tool_input")
    if not isinstance(tool_input, dict):
        raise HookInputError("hook input field 'tool_input' must be an object")
    return HookEvent(event, session if isinstance(session, str) else "", Path(cwd),
                     _text_field(data, "tool_name"), tool_input,
                     {k: data[k] for k in ("permission_suggestions", "tool_use_id") if k in data})


def _text_field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise HookInputError(f"hook input field {name!r} is missing or not text")
    return value


def session_sandbox(session_id: str) -> str:
    """The sandbox id a plain Claude Code session claims under: `claude-<first 8>`."""
    slug = _ID_CHARS.sub("", session_id)[:8]
    if not slug:
        raise HookInputError("no sandbox id: not in a sandbox, no --sandbox, and no session_id to derive one")
    return f"claude-{slug}"



# -- from a tool call to files and lines -------------------------------------------------


_NUL_PATH: Final = "a path this call writes holds a NUL byte: no file is named so"
"""Said to the agent (the permission prompt said "cannot check this call (ValueError)", no reason to act on)."""


def _encodable(path: str) -> bool:
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return False
    return True


def _refuse_unnamable(paths: list[str]) -> None:
    """HookInputError for a path no file can have: a NUL in it, or a lone surrogate (JSON's `\ud800`), which
    cannot be encoded (reading the file raised it: "internal error: UnicodeEncodeError")."""
    for path in paths:
        if "\x00" in path:
            raise HookInputError(_NUL_PATH)
        if not _encodable(path):
            raise HookInputError(f"{escape_controls(abridged(path, 200))} is no file name: it cannot be encoded")


def edit_targets(event: HookEvent) -> list[EditTarget] | None:
    """What a PreToolUse call writes; None for tools and commands that write no file."""
    tool, data = event.tool_name, event.tool_input
    if tool == "Bash":
        command = data.get("command")
        if not isinstance(command, str):
            raise HookInputError("Bash tool_input needs a 'command' string")
        try:
            paths = bash_write_targets(command, event.cwd)
        except CommandNotRead as exc:  # judged as unread, never as writing nothing: refused, saying how to go on
            raise HookInputError(f"loomtui cannot tell which files this command writes: {exc}; write files with "
                                 "the Edit or Write tool, or with a plainer command") from None
        _refuse_unnamable(paths)
        return [EditTarget(_as_seen_here(p), None) for p in paths] or None
    if tool not in EDIT_TOOLS:
        return None
    key = "notebook_path" if tool == "NotebookEdit" else "file_path"
    raw = data.get(key)
    if not isinstance(raw, str) or not raw:
        raise HookInputError(f"{tool} tool_input needs a '{key}' string")
    _refuse_unnamable([raw])
    path = _as_seen_here(absolute_path(raw, event.cwd))
    if tool == "NotebookEdit":
        return [EditTarget(path, None)]  # cells are JSON, not lines of code: the notebook is one region
    current = read_text(Path(path))
    if current is None:
        return [EditTarget(path, None)]
    if tool == "Write":
        content = data.get("content")
        if not isinstance(content, str):
            raise HookInputError("Write tool_input needs a 'content' string")
        return [EditTarget(path, changed_ranges(current, content))]
    edits = data.get("edits") if tool == "MultiEdit" else [data]
    if not isinstance(edits, list) or not edits:
        raise HookInputError("MultiEdit tool_input needs a non-empty 'edits' list")
    new = apply_edits(current, edits)
    if new is None:
        # The tool fails on an old_string it cannot find (MultiEdit applies all or none),
        # so it writes nothing: claiming the file would lock it for every other sandbox
        # for nothing. No decision rather than allow: a PreToolUse allow skips Claude
        # Code's own permission rules, and a write that will not happen needs no grant.
        return None
    return [EditTarget(path, changed_ranges(current, new))]




def _as_seen_here(path: str) -> str:
    """`path` through its symlinks as this process sees them: the hook runs inside the sandbox, whose /tmp is
    its own. The broker, outside, cannot see a link there: `/tmp/notes.txt` made a link to a file another
    sandbox holds was this sandbox's scratch space to it, and a Write through it was allowed unasked."""
    if len(path) > MAX_PATH_CHARS:  # no system holds it (the broker refuses it), and a million parts took minutes
        return path
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):  # a loop of links, a NUL: the path as given, for the broker to judge
        return path


def apply_edits(text: str, edits: Sequence[Any]) -> str | None:
    """Apply Edit/MultiEdit replacements in order; None when one cannot be located."""
    for edit in edits:
        if not isinstance(edit, dict):
            raise HookInputError("each edit must be an object with old_string and new_string")
        old, new = edit.get("old_string"), edit.get("new_string")
        if not isinstance(old, str) or not isinstance(new, str):
            raise HookInputError("an edit needs 'old_string' and 'new_string' strings")
        old = _actual_string(text, old)
        if old is None:
            return None
        text = text.replace(old, new) if edit.get("replace_all") else text.replace(old, new, 1)
    return text


def _actual_string(text: str, old: str) -> str | None:
    """The text in `text` that Claude Code's Edit would replace for `old`; None when none."""
    if not old:
        return None  # an empty old_string creates a file: on an existing one the tool fails
    if old in text:
        return old
    # Claude Code also matches with curly quotes read as straight ones; without this a
    # write it does make would go unclaimed. One character for one keeps offsets aligned.
    at = text.translate(_CURLY_QUOTES).find(old.translate(_CURLY_QUOTES))
    return None if at < 0 else text[at : at + len(old)]



# -- the answer ------------------------------------------------------------------------


class Channel(Protocol):
    """Where requests go: the sandbox's broker, or a gate in this process."""

    def request(self, op: str, **fields: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class HookAnswer:
    """What `loomtui hook claude` prints for one event (None decision: no opinion)."""

    event: str
    decision: str  # allow | ask | deny
    reason: str

    def to_claude(self) -> dict[str, Any]:
        if self.event == "PermissionRequest":
            decision: dict[str, Any] = {"behavior": self.decision}
            if self.decision == "deny":
                decision["message"] = self.reason
            return {"hookSpecificOutput": {"hookEventName": self.event, "decision": decision}}
        return {"hookSpecificOutput": {"hookEventName": self.event, "permissionDecision": self.decision,
                                       "permissionDecisionReason": self.reason}}


def answer_event(event: HookEvent, channel: Channel, *, wait: float = DEFAULT_PERMISSION_WAIT_S,
                 poll: float = 0.25) -> HookAnswer | None:
    """The answer to one hook event, or None when loomtui has no opinion on it."""
    if event.event == "PermissionRequest":
        return _answer_permission(event, channel, wait, poll)
    if event.event == "PostToolUse":
        # The call happened: the claims its PreToolUse made hold for their lease. Nothing
        # to say to Claude Code (a PostToolUse answer could only add feedback).
        if event.tool_use_id:
            channel.request("confirm_tool_use", tool_use_id=event.tool_use_id, tool=event.tool_name)
        return None
    targets = edit_targets(event)
    if not targets:
        return None
    answer = channel.request("check_tool", tool=event.tool_name, tool_use_id=event.tool_use_id,
                             targets=[{"path": t.path, "lines": t.lines} for t in targets])
    if answer["decision"] not in ("allow", "ask", "deny"):
        return None  # `none`: the runtime's own permission rules decide
    return HookAnswer(event.event, answer["decision"], f"loomtui: {answer['reason']}")


class _Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _WaitGuard:
    """A signal while the hook asks a lead is noted, never raised from the handler (that could land
    halfway through a broker reply or a store write); the wait checks for it between its polls and
    ends, and the request is withdrawn once it has an id."""

    def __init__(self) -> None:
        self.escalation_id: Any = None
        self.signum: int | None = None

    def on_signal(self, signum: int, _frame: object) -> None:
        if self.signum is None:  # a second one (the whole group signalled) is the same news
            self.signum = signum

    def watch(self, escalation_id: Any) -> None:
        """The request is open: from now on (and for a signal that came while it was opened) `check` ends the wait."""
        self.escalation_id = escalation_id
        self.check()

    def check(self) -> None:
        if self.signum is not None and self.escalation_id is not None:
            raise _Interrupted(self.signum)


@contextlib.contextmanager
def _withdrawn_if_interrupted(channel: Channel) -> Iterator[_WaitGuard]:
    """While the hook asks a lead: killed (SIGTERM, SIGHUP: the agent gave up or was stopped) or
    interrupted, it withdraws its request first, so no lead approves a call nobody is waiting for."""
    guard = _WaitGuard()
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    main = threading.current_thread() is threading.main_thread()  # signals reach the main thread only
    previous = [signal.signal(number, guard.on_signal) for number in handled] if main else []
    try:
        yield guard
    except (_Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, _Interrupted) else signal.SIGINT
        if guard.escalation_id is not None:
            try:
                channel.request("withdraw_permission_request", id=guard.escalation_id,
                                reason=f"the agent's hook was stopped ({signal.Signals(signum).name}) "
                                       "before a decision")
            except LoomError:
                pass  # the broker is gone too: its end withdraws what is left (withdraw_orphans)
        raise SystemExit(128 + signum) from None
    finally:
        for number, handler in zip(handled, previous, strict=False):
            signal.signal(number, handler)


def _answer_permission(event: HookEvent, channel: Channel, wait: float, poll: float) -> HookAnswer:
    with _withdrawn_if_interrupted(channel) as guard:
        opened = channel.request("open_permission_request", tool_name=event.tool_name,
                                 tool_input=dict(event.tool_input), extra=dict(event.extra))
        if opened.get("decision") == "deny":
            return HookAnswer(event.event, "deny", f"loomtui: {opened.get('message', 'refused')}")
        guard.watch(opened["id"])
        deadline = time.monotonic() + wait
        status = opened
        while True:
            status = channel.request("escalation_status", id=opened["id"])
            guard.check()
            if status.get("decision") is not None or time.monotonic() >= deadline:
                break
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
            guard.check()
    if status.get("decision") is None:
        status = channel.request("withdraw_permission_request", id=opened["id"],
                                 reason=f"no decision within {wait:g}s")
        if status.get("decision") != "allow":  # a lead may have approved at the last moment
            return HookAnswer(event.event, "deny", f"loomtui: no lead decided escalation #{opened['id']} "
                                                   f"within {wait:g}s; ask again later")
    return HookAnswer(event.event, status["decision"], f"loomtui: {status['message']}")
