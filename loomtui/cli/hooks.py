"""`loomtui hook claude | install | git-pre-commit`: the agent hooks.

Inside a sandbox (`$LOOM_BROKER`) the two hooks an agent waits for never get
here: `hooks.client.fast_main` answers them before this parser is built. Both
paths run the same `claude_hook` and `pre_commit_hook`, so they answer alike.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loomtui.cli import add_command, add_group, nonempty_arg, print_json, seconds_arg
from loomtui.errors import LoomError
from loomtui.governance import hooks
from loomtui.governance.broker import channel_for, event_channel
from loomtui.governance.hooks.client import MAX_WAIT_S, claude_hook, pre_commit_hook
from loomtui.repo import find_repo
from loomtui.workspace import Workspace, open_workspace


def cmd_claude(args: argparse.Namespace) -> int:
    return claude_hook(lambda event: event_channel(event, args.sandbox), wait=args.timeout,
                       exit_code=args.exit_code)


def cmd_install(args: argparse.Namespace) -> int:
    from loomtui.execution.sandboxes import get_sandbox

    workspace = open_workspace(args.path or args.repo)
    try:
        worktree = find_repo(args.path or args.repo).root  # the workspace's root is the repository's own checkout
        found = args.sandbox or _sandbox_of(workspace, worktree)
        git_dir = None
        if found:  # a sandbox's worktree is its agent's: wired from its record, never from what is in it
            record = get_sandbox(workspace, found)
            if not record.worktree or not Path(record.worktree).is_dir() or not record.data.get("git_dir"):
                raise LoomError(f"sandbox {record.id} has no worktree")
            worktree, sandbox_id, git_dir = Path(record.worktree), record.id, Path(record.data["git_dir"])
        else:
            sandbox_id = hooks.local_sandbox_id(worktree)
        report = hooks.install_hooks(workspace, worktree, sandbox_id, wait=args.timeout, git_dir=git_dir)
    finally:
        workspace.close()
    if args.json:
        print_json(asdict(report))
    else:
        print(report.summary())
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    workspace = open_workspace(args.path or args.repo)
    worktree = find_repo(args.path or args.repo).root  # the workspace's root is the repository's own checkout
    try:
        if _sandbox_of(workspace, worktree) is not None:
            raise LoomError(f"{worktree} is a sandbox's worktree: its agent's hooks stay while it lives "
                            "(`loomtui sandbox rm` removes it)")
        done = hooks.uninstall_hooks(worktree)
    finally:
        workspace.close()
    if args.json:
        print_json({"worktree": str(worktree), "undone": done})
    else:
        print("\n".join(done) or f"no loomtui hooks installed in {worktree}")
    return 0


def _sandbox_of(workspace: Workspace, worktree: Path) -> str | None:
    for record in workspace.store.list_sandboxes(include_archived=True):
        if record.worktree and Path(record.worktree).resolve() == worktree.resolve():
            return str(record.id)
    return None


def cmd_git_pre_commit(args: argparse.Namespace) -> int:
    try:
        tree = find_repo(args.repo).root
        # Outside any sandbox (no id recorded for this worktree) it is a person's commit:
        # every sandbox's claims count as someone else's.
        sandbox = os.environ.get("LOOM_SANDBOX") or hooks.configured_sandbox(tree) or hooks.NO_SANDBOX
    except LoomError as exc:
        print(f"loomtui: commit refused: {exc}", file=sys.stderr)
        return 1
    return pre_commit_hook(tree, lambda: channel_for(tree, sandbox=sandbox))


def register(commands: Any) -> None:
    """Add `loomtui hook ...` to the top-level parser."""
    hook = add_group(commands, "hook", "agent hooks: Claude Code's edit and permission checks, git pre-commit")
    claude = add_command(
        hook, "claude", cmd_claude,
        "answer one Claude Code hook event (JSON on stdin): PreToolUse on a write claims and allows, "
        "asks (policy requires approval) or denies (another sandbox's region, policy block); "
        "PostToolUse confirms the claims of a call that happened; "
        "PermissionRequest waits for a lead's decision in loomtui")
    claude.add_argument("--sandbox", help="the sandbox to claim for outside a sandbox "
                                          "(default: set by `hook install`, else claude-<session>)")
    claude.add_argument("--timeout", type=seconds_arg(MAX_WAIT_S),
                        default=hooks.DEFAULT_PERMISSION_WAIT_S, metavar="SECONDS",
                        help="how long a permission request waits for a lead (default 120); then deny")
    claude.add_argument("--exit-code", action="store_true",
                        help="answer a deny with exit 2 and the reason on stderr instead of JSON")
    install = add_command(
        hook, "install", cmd_install,
        "wire a worktree's .claude/settings.json and git pre-commit to loomtui (kept out of its commits)",
        json_flag=True)
    install.add_argument("path", nargs="?", type=nonempty_arg, default=None, metavar="PATH",
                         help="a worktree (default: the current one)")
    install.add_argument("--sandbox", metavar="ID", help="the worktree of this sandbox")
    install.add_argument("--timeout", type=seconds_arg(MAX_WAIT_S),
                        default=hooks.DEFAULT_PERMISSION_WAIT_S, metavar="SECONDS",
                         help="how long permission requests wait for a lead (default 120)")
    uninstall = add_command(
        hook, "uninstall", cmd_uninstall,
        "undo `hook install` in your own checkout: loomtui's hooks out of .claude/settings.json (the rest "
        "kept), its git settings unset", json_flag=True)
    uninstall.add_argument("path", nargs="?", type=nonempty_arg, default=None, metavar="PATH",
                           help="a worktree (default: the current one)")
    add_command(hook, "git-pre-commit", cmd_git_pre_commit,
                "refuse a commit whose staged change touches another sandbox's claimed region or a "
                "region the policy blocks (exit 1)")
