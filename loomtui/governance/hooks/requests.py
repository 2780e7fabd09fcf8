"""The request vocabulary of a sandbox's gate: what an agent may ask (`OPERATIONS`), and `dispatch`.

A request is a JSON object with an `op`. Each operation checks the request's fields (a
malformed one is a one-line error, never a traceback) and asks the sandbox's `HookGate`
(`loomtui.governance.hooks.gate`); the sandbox is the gate's, never the request's.
Nothing here decides an escalation, so an agent can ask, never approve: `agent_ops`
adds its cooperating operations (claims, questions to a lead) on the same terms.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from loomtui.errors import LoomError, abridged, escape_controls
from loomtui.governance.hooks.edits import merge_ranges

if TYPE_CHECKING:  # the gate answers the requests: it imports this module, not the reverse
    from loomtui.governance.hooks.gate import HookGate


# -- request fields -----------------------------------------------------------------------


def one_line(value: object, default: str, limit: int = 500) -> str:
    """An agent's text for a one-line field (a reason, a summary): one line (a newline would fake a
    second entry in `audit tail`), control characters escaped, at most `limit` characters."""
    text = escape_controls(" ".join(str(value or "").split())) or default
    return abridged(text, limit)


MAX_TEXT_CHARS: Final = 4096
"""A request's path or name, at most (Linux's PATH_MAX): what an agent sends is recorded, in the shared
store and the audit log, which is kept for good; a 15 MB `path` was 31 MB of log."""
MAX_ITEMS: Final = 1000
"""A request's list (a tool call's targets), at most."""
MAX_ID_CHARS: Final = 200
"""A tool's name or a tool call's id (Claude Code's are ~30 characters), at most."""


def text_field(request: Mapping[str, Any], name: str, limit: int = MAX_TEXT_CHARS) -> str:
    """A request field that must be a non-empty string of at most `limit` characters."""
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise LoomError(f"request field {name!r} must be a non-empty string")
    if len(value) > limit:
        raise LoomError(f"request field {name!r} is longer than {limit} characters")
    return value


def texts_field(request: Mapping[str, Any], name: str) -> list[str]:
    """A request field that must be a list of strings, each at most MAX_TEXT_CHARS."""
    value = request.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LoomError(f"request field {name!r} must be a list of strings")
    if any(len(v) > MAX_TEXT_CHARS for v in value):
        raise LoomError(f"request field {name!r} holds a string longer than {MAX_TEXT_CHARS} characters")
    return value


def named_paths(paths: Sequence[str], name: str) -> list[str]:
    """Paths an agent named, each at most MAX_TEXT_CHARS (a longer one names no file; a 15 MB one was kept in
    the shared store, once a request, and shown in every lead's queue)."""
    if any(len(path) > MAX_TEXT_CHARS for path in paths):
        raise LoomError(f"request field {name!r} holds a path longer than {MAX_TEXT_CHARS} characters")
    return list(paths)


def int_field(value: Any, name: str) -> int:
    """The value of request field `name`, which must be an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LoomError(f"request field {name!r} must be an integer")
    return value


def line_ranges(lines: Any) -> list[tuple[int, int]] | None:
    """`lines` of a request: null (whole file), [start, end], or a list of such pairs."""
    if lines is None:
        return None
    if not isinstance(lines, list):
        raise LoomError("request field 'lines' must be null, [start, end] or a list of them")
    pairs = [lines] if len(lines) == 2 and all(isinstance(n, int) for n in lines) else lines
    ranges = []
    for pair in pairs:
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
                or not 1 <= pair[0] <= pair[1]):
            raise LoomError(f"bad line range {pair!r}: need [start, end] with 1 <= start <= end")
        ranges.append((pair[0], pair[1]))
    return merge_ranges(ranges)


# -- the request vocabulary ---------------------------------------------------------------


def _op_check_edit(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.check_edit(text_field(request, "path"), request.get("lines"),
                           tool=one_line(request.get("tool"), "", 200)).as_dict()


def _op_check_tool(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    targets = request.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, dict) for t in targets):
        raise LoomError("request field 'targets' must be a non-empty list of {path, lines}")
    if len(targets) > MAX_ITEMS:  # (each one's path is checked as the gate reads it)
        raise LoomError(f"request field 'targets' lists more than {MAX_ITEMS}")
    tool_use_id = request.get("tool_use_id") or ""
    if isinstance(tool_use_id, str) and tool_use_id:
        tool_use_id = text_field(request, "tool_use_id", MAX_ID_CHARS)
    return gate.check_tool(text_field(request, "tool", MAX_ID_CHARS), targets,
                           tool_use_id=tool_use_id if isinstance(tool_use_id, str) else "").as_dict()


def _op_confirm_tool_use(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    tool = one_line(request.get("tool"), "", 200)
    return {"confirmed": gate.confirm_tool_use(text_field(request, "tool_use_id", MAX_ID_CHARS), tool)}


def _op_check_commit(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    files = request.get("files") or []
    if not isinstance(files, list):
        raise LoomError("request field 'files' must be a list of {path, old, new}")
    return gate.check_commit(texts_field(request, "paths"), texts_field(request, "regions"), files).as_dict()


def _op_open_permission_request(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    tool_input = request.get("tool_input")
    if not isinstance(tool_input, dict):
        raise LoomError("request field 'tool_input' must be an object")
    extra = request.get("extra")
    return gate.open_permission_request(text_field(request, "tool_name"), tool_input,
                                        extra=extra if isinstance(extra, dict) else None)


def _op_escalation_status(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.escalation_status(request.get("id"))


def _op_withdraw(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.withdraw_permission_request(request.get("id"), one_line(request.get("reason"), "withdrawn"))


OPERATIONS: Final[dict[str, Callable[[HookGate, Mapping[str, Any]], dict[str, Any]]]] = {
    "check_edit": _op_check_edit,
    "check_tool": _op_check_tool,
    "confirm_tool_use": _op_confirm_tool_use,
    "check_commit": _op_check_commit,
    "open_permission_request": _op_open_permission_request,
    "escalation_status": _op_escalation_status,
    "withdraw_permission_request": _op_withdraw,
}
"""Everything an agent may ask (agent_ops' operations join on the first dispatch). Deliberately no decide,
approve, override or policy write."""


def dispatch(gate: HookGate, request: Any) -> dict[str, Any]:
    """Answer one request: `{"ok": true, ...}` or `{"ok": false, "error": "one line"}`."""
    _add_agent_operations()
    if not isinstance(request, dict):
        return {"ok": False, "error": "a request is a JSON object with an 'op'"}
    try:  # JSON's `\ud800` is a lone surrogate: no file name, no text a store or a log holds
        json.dumps(request, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return {"ok": False, "error": "a request's text is not valid Unicode (a lone surrogate, such as \\ud800)"}
    except RecursionError:  # nested near the parser's limit: parsed where the stack was shallower
        return {"ok": False, "error": "a request's values nest too deep"}
    operation = OPERATIONS.get(request.get("op"))  # type: ignore[arg-type]
    if operation is None:
        return {"ok": False, "error": f"unknown operation {request.get('op')!r}; agents may only ask "
                                      f"({', '.join(OPERATIONS)}), never decide"}
    try:
        return {"ok": True, **operation(gate, request)}
    except LoomError as exc:
        return {"ok": False, "error": str(exc)}


_agent_ops_added = False


def _add_agent_operations() -> None:
    """What agents may ask besides the hooks (claims, questions to a lead): asking, never deciding.

    Added on the first dispatch, not while this module loads: `agent_ops` imports the gate's
    modules, and one of them (permissions) imports this one, so at load time either may be
    half-initialised, whichever a process happens to import first.
    """
    global _agent_ops_added
    if not _agent_ops_added:
        try:
            OPERATIONS.update(importlib.import_module("loomtui.governance.agent_ops").AGENT_OPERATIONS)
        except ModuleNotFoundError as exc:  # a checkout without the MCP server's operations yet
            if exc.name != "loomtui.governance.agent_ops":
                raise
        _agent_ops_added = True
