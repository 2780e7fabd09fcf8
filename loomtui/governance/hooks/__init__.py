"""Agent hooks: the edit and permission checks that make "claims before code" real.

An agent runtime (Claude Code) asks before every write; the answer comes from the
coordination engine (claim a free region, refuse one another sandbox holds) and
the claim-stage policy (a `block` refuses, a `require` asks a person). A
permission prompt becomes an escalation a lead decides in the TUI. A git
pre-commit hook repeats the check on the staged change, for runtimes without
hooks and for writes the editor hook did not see.

One module per job, so a sandboxed agent's hook process loads only its half:

- `claude`: the Claude Code adapter (its hook JSON in and out, tool calls to files
  and lines); `edits`: old and new text to changed line ranges; `bash`: the files
  a shell command writes; `commit`: what a staged change touches; `client`: the
  broker client and the stdlib-only fast path (`fast_main`). The agent's side.
- `gate`: `HookGate`, one sandbox's answers against the store, the audit log and
  the policy, and `dispatch`/`OPERATIONS`, the whole request vocabulary (nothing
  in it decides an escalation: an agent can ask, never approve); `holding`: how many
  files one agent's claims may hold.
- `install`: wiring a worktree's Claude Code settings and git hooks to loomtui.

The names below are re-exported lazily: importing this package (as the agent's
side does) loads none of the engines.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loomtui.governance.hooks.bash import bash_write_targets
    from loomtui.governance.hooks.claude import (
        DEFAULT_PERMISSION_WAIT_S,
        EDIT_TOOLS,
        PRE_TOOL_MATCHER,
        Channel,
        HookAnswer,
        HookEvent,
        HookInputError,
        answer_event,
        apply_edits,
        edit_targets,
        parse_hook_input,
        session_sandbox,
    )
    from loomtui.governance.hooks.client import BrokerClient, BrokerError, fast_main
    from loomtui.governance.hooks.commit import (
        NO_SANDBOX,
        configured_sandbox,
        staged_changes,
        staged_request,
    )
    from loomtui.governance.hooks.edits import (
        MAX_DIFF_LINES,
        EditTarget,
        changed_ranges,
        merge_ranges,
    )
    from loomtui.governance.hooks.gate import (
        DEFAULT_CONFIRM_S,
        GRANTING_KINDS,
        NEVER_HAPPENED,
        OPERATIONS,
        PERMISSION_KIND,
        SETTINGS_PATH,
        Answer,
        HookGate,
        dispatch,
        open_permission_request,
        permission_evaluation,
    )
    from loomtui.governance.hooks.install import (
        GIT_HOOKS,
        InstallReport,
        hook_command,
        install_hooks,
        local_sandbox_id,
        merge_settings,
        uninstall_hooks,
    )

_HOME = {
    "bash": ("bash_write_targets",),
    "claude": ("DEFAULT_PERMISSION_WAIT_S", "EDIT_TOOLS", "PRE_TOOL_MATCHER", "Channel", "HookAnswer", "HookEvent",
               "HookInputError", "answer_event", "apply_edits", "edit_targets", "parse_hook_input",
               "session_sandbox"),
    "client": ("BrokerClient", "BrokerError", "fast_main"),
    "commit": ("NO_SANDBOX", "configured_sandbox", "staged_changes", "staged_request"),
    "edits": ("MAX_DIFF_LINES", "EditTarget", "changed_ranges", "merge_ranges"),
    "gate": ("DEFAULT_CONFIRM_S", "GRANTING_KINDS", "NEVER_HAPPENED", "OPERATIONS", "PERMISSION_KIND",
             "SETTINGS_PATH", "Answer", "HookGate", "dispatch", "open_permission_request", "permission_evaluation"),
    "install": ("GIT_HOOKS", "InstallReport", "hook_command", "install_hooks", "local_sandbox_id", "merge_settings",
                "uninstall_hooks"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}
__all__ = [
    "DEFAULT_CONFIRM_S",
    "DEFAULT_PERMISSION_WAIT_S",
    "EDIT_TOOLS",
    "GIT_HOOKS",
    "GRANTING_KINDS",
    "MAX_DIFF_LINES",
    "NEVER_HAPPENED",
    "NO_SANDBOX",
    "OPERATIONS",
    "PERMISSION_KIND",
    "PRE_TOOL_MATCHER",
    "SETTINGS_PATH",
    "Answer",
    "BrokerClient",
    "BrokerError",
    "Channel",
    "EditTarget",
    "HookAnswer",
    "HookEvent",
    "HookGate",
    "HookInputError",
    "InstallReport",
    "answer_event",
    "apply_edits",
    "bash_write_targets",
    "changed_ranges",
    "configured_sandbox",
    "dispatch",
    "edit_targets",
    "fast_main",
    "hook_command",
    "install_hooks",
    "local_sandbox_id",
    "merge_ranges",
    "merge_settings",
    "open_permission_request",
    "parse_hook_input",
    "permission_evaluation",
    "session_sandbox",
    "staged_changes",
    "staged_request",
    "uninstall_hooks",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
