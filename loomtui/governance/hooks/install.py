"""Installing the hooks in a worktree: Claude Code's settings and the git hooks."""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from loomtui.errors import LoomError
from loomtui.execution.gitops import repository_excludes_file
from loomtui.execution.sandboxes import HOOK_SETTINGS_PATH, LOCAL_SETTINGS_PATH
from loomtui.files import write_atomically
from loomtui.governance.hooks.claude import DEFAULT_PERMISSION_WAIT_S, PRE_TOOL_MATCHER
from loomtui.governance.hooks.commit import git as _git
from loomtui.governance.hooks.edits import read_text as _read_text
from loomtui.json_text import parse_json
from loomtui.repo import DISTRUSTING_GIT_CONFIG
from loomtui.yamlcheck import read_text

if TYPE_CHECKING:
    from loomtui.workspace import Workspace

SETTINGS_PATH: Final = HOOK_SETTINGS_PATH

GIT_HOOKS: Final = ("applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
                    "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout",
                    "post-merge", "pre-push", "post-rewrite", "pre-auto-gc")

# Then the repository's own hook, from the hooks dir in force before this worktree's
# core.hooksPath pointed here: the last core.hooksPath set outside this worktree's own
# config (the shared config's, else the user's, else the system's; one git call lists
# them all with their scopes), else <common dir>/hooks. (${0%/*} and ${0##*/} are dirname
# and basename without two processes per hook: a commit runs four hooks.)
_FORWARD: Final = """\
dir=
while IFS='\t' read -r scope value; do
  case $scope in system|global|local) dir=$value ;; esac
done <<EOF
$(git config --show-scope --get-all core.hooksPath)
EOF
[ -n "$dir" ] || dir="$(git rev-parse --git-common-dir)/hooks"
[ "$dir" = "${0%/*}" ] && exit 0
hook="$dir/${0##*/}"
if [ -x "$hook" ]; then exec "$hook" "$@"; fi
exit 0
"""


@dataclass(frozen=True)
class InstallReport:
    worktree: str
    sandbox_id: str
    settings: str
    settings_tracked: bool
    hooks_dir: str

    def summary(self) -> str:
        kept = "skip-worktree (tracked)" if self.settings_tracked else "excluded for this worktree only"
        return (f"agent hooks installed in {self.worktree} for sandbox {self.sandbox_id}: {self.settings} "
                f"({kept}); git hooks from {self.hooks_dir} via this worktree's core.hooksPath")


def hook_command(*args: str) -> str:
    """The command line that runs `loomtui ARGS` with this very installation (no PATH lookup:
    an agent's reduced PATH or a repository's .python-version cannot pick another one)."""
    return shlex.join([sys.executable, "-m", "loomtui", *args])


@dataclass(frozen=True)
class _TreeGit:
    """git on the worktree being wired. A person's checkout: git as it finds it. A sandbox's (its admin
    dir known from its record): told where the repository is, reading nothing its agent could have
    written to name another one (its `.git` file, the admin dir's `commondir`), and running nothing it
    configured (fsmonitor, hooks): `loomtui hook install --sandbox` ran an agent's fsmonitor as the lead."""

    tree: Path
    env: Mapping[str, str] | None = None

    def __call__(self, *args: str, check: bool = True) -> str:
        options = DISTRUSTING_GIT_CONFIG if self.env is not None else ()
        return _git(self.tree, *options, *args, check=check, env=self.env)


def install_hooks(workspace: Workspace, worktree: Path, sandbox_id: str, *,
                  wait: float = DEFAULT_PERMISSION_WAIT_S, managed: Sequence[str] = (),
                  git_dir: Path | None = None) -> InstallReport:
    """Wire a worktree's Claude Code settings and git pre-commit to loomtui (idempotent).

    `managed` names more files loomtui wrote into the worktree (the agent's context):
    like the settings, they stay out of the sandbox's commits. `git_dir`: a sandbox's admin dir, from
    its record (its worktree is then the agent's: see `_TreeGit`).
    """
    if git_dir is None:
        top, found = _git(worktree, "rev-parse", "--show-toplevel", "--absolute-git-dir").splitlines()[:2]
        tree, git_dir, git = Path(top), Path(found), _TreeGit(Path(top))
    else:
        tree = worktree
        git = _TreeGit(tree, {"GIT_DIR": str(git_dir), "GIT_COMMON_DIR": str(workspace.paths.common_dir),
                              "GIT_WORK_TREE": str(tree)})
    settings = tree / SETTINGS_PATH
    if settings.parent.is_symlink():  # a write there would land wherever it leads
        raise LoomError(f"cannot install the agent hooks in {tree}: {settings.parent.name} is a symlink")
    try:
        merged = merge_settings(_read_settings(settings), wait=wait)
        write_atomically(settings, json.dumps(merged, indent=2) + "\n")
        local = tree / LOCAL_SETTINGS_PATH  # read by Claude Code after the project's: it could switch ours off
        if local.exists() or local.is_symlink():
            current = _read_settings(local)
            gated = _without_gate_bypass(current)
            if gated != current:  # replaced by rename: a symlink there would carry a write elsewhere
                write_atomically(local, json.dumps(gated, indent=2) + "\n")
        hooks_dir = _write_git_hooks(workspace.paths.state_dir / "hooks")
    except OSError as exc:
        raise LoomError(f"cannot install the agent hooks in {tree}: {exc.strerror or exc}") from None
    # `git config --worktree` reads every worktree: one another sandbox's `worktree add` is writing meanwhile
    # (its `commondir` still empty) failed it, and that sandbox's start ("failed to read ...: Success").
    with workspace.paths.worktrees_locked():
        _enable_worktree_config(git)
        ours = [SETTINGS_PATH, LOCAL_SETTINGS_PATH, *managed]
        tracked_files = set(git("ls-files", "-z", "--", *ours).split("\0")) - {""}
        if tracked_files:
            # The index is per worktree, so this hides our edits from this sandbox's commits only.
            git("update-index", "--skip-worktree", "--", *sorted(tracked_files))
        untracked = [name for name in ours if name not in tracked_files]
        if untracked:
            _exclude_for_worktree(git, git_dir, workspace.paths.common_dir, untracked)
        git("config", "--worktree", "core.hooksPath", str(hooks_dir))
        git("config", "--worktree", "loom.sandbox", sandbox_id)
    tracked = SETTINGS_PATH in tracked_files
    return InstallReport(str(tree), sandbox_id, str(settings), tracked, str(hooks_dir))


UNGATED_MODES: Final = frozenset({"bypassPermissions"})
"""Claude Code permission modes in which nobody is asked: taken out of a sandbox's settings."""


def merge_settings(current: dict[str, Any], *, wait: float = DEFAULT_PERMISSION_WAIT_S) -> dict[str, Any]:
    """Claude Code settings with loomtui's hooks in place of any earlier ones; the rest kept."""
    ours = {
        "PreToolUse": (PRE_TOOL_MATCHER, hook_command("hook", "claude"), 60),
        # The tool call happened: it confirms the claims its PreToolUse made.
        "PostToolUse": (PRE_TOOL_MATCHER, hook_command("hook", "claude"), 60),
        # Claude Code stops a hook after its `timeout`: give the wait for a lead some slack.
        "PermissionRequest": ("*", hook_command("hook", "claude", "--timeout", f"{wait:g}"), int(wait) + 30),
    }
    settings = dict(current)
    hooks = settings.get("hooks", {})
    if not isinstance(hooks, dict):
        raise LoomError(f"{SETTINGS_PATH}: 'hooks' is not an object; fix it by hand before installing")
    hooks = dict(hooks)
    for event, (matcher, command, timeout) in ours.items():
        kept = _without_ours(hooks, event, "installing")
        kept.append({"matcher": matcher, "hooks": [{"type": "command", "command": command, "timeout": timeout}]})
        hooks[event] = kept
    settings["hooks"] = hooks
    return _without_gate_bypass(settings)


def _without_gate_bypass(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings without what would have Claude Code skip loomtui's hooks (`disableAllHooks`) or ask
    nobody (a bypassing permission mode): a repository's own settings, or an agent's, have no say over
    the gate an agent works behind."""
    settings = {k: v for k, v in settings.items() if k != "disableAllHooks"}
    permissions = settings.get("permissions")
    if isinstance(permissions, dict) and permissions.get("defaultMode") in UNGATED_MODES:
        settings["permissions"] = {k: v for k, v in permissions.items() if k != "defaultMode"}
    return settings


def _without_ours(hooks: dict[str, Any], event: str, doing: str) -> list[Any]:
    """An event's hook groups with loomtui's hooks taken out (a group left empty goes too)."""
    groups = hooks.get(event, [])
    if not isinstance(groups, list):
        raise LoomError(f"{SETTINGS_PATH}: hooks.{event} is not a list; fix it by hand before {doing}")
    kept = []
    for group in groups:
        if isinstance(group, dict) and isinstance(group.get("hooks"), list):
            others = [h for h in group["hooks"] if not _is_ours(h)]
            if others:
                kept.append({**group, "hooks": others})
        else:
            kept.append(group)  # not ours to judge: kept as it is
    return kept


def uninstall_hooks(worktree: Path) -> list[str]:
    """Undo `install_hooks` in a person's checkout: loomtui's hooks out of the Claude Code settings (the
    rest kept; a file left empty and untracked removed), the worktree's git settings unset. What was
    undone, a line each (none when nothing was installed)."""
    top, git_dir = _git(worktree, "rev-parse", "--show-toplevel", "--absolute-git-dir").splitlines()[:2]
    tree = Path(top)
    done = []
    settings_file = tree / SETTINGS_PATH
    current = _read_settings(settings_file, "uninstalling")
    hooks = current.get("hooks")
    kept = {event: _without_ours(hooks, event, "uninstalling") for event in hooks} if isinstance(hooks, dict) else {}
    if isinstance(hooks, dict) and kept != hooks:
        left = {event: groups for event, groups in kept.items() if groups}
        settings = {key: value for key, value in current.items() if key != "hooks"} | ({"hooks": left} if left else {})
        tracked = bool(_git(tree, "ls-files", "--", SETTINGS_PATH).strip())
        try:
            if settings or tracked:
                write_atomically(settings_file, json.dumps(settings, indent=2) + "\n")
            else:
                settings_file.unlink()
                if not any(settings_file.parent.iterdir()):
                    settings_file.parent.rmdir()  # .claude/, made for it
        except OSError as exc:
            raise LoomError(f"cannot rewrite {settings_file}: {exc.strerror or exc}") from None
        if tracked:  # its changes show in this checkout's status again
            _git(tree, "update-index", "--no-skip-worktree", "--", SETTINGS_PATH)
        done.append(f"{SETTINGS_PATH}: loomtui's hooks removed" + ("" if settings or tracked else " (and the file)"))
    exclude = Path(git_dir) / "loom-exclude"
    for key in ("core.hooksPath", "loom.sandbox", "core.excludesFile"):
        value = _git(tree, "config", "--worktree", "--get", key, check=False).strip()
        if value and (key != "core.excludesFile" or value == str(exclude)):
            _git(tree, "config", "--worktree", "--unset", key)
            done.append(f"git config --worktree {key} unset")
    exclude.unlink(missing_ok=True)
    return done


def _is_ours(hook: Any) -> bool:
    command = hook.get("command", "") if isinstance(hook, dict) else ""
    return isinstance(command, str) and "loomtui" in command and " hook claude" in command


def _read_settings(path: Path, doing: str = "installing") -> dict[str, Any]:
    if not path.exists() and not path.is_symlink():
        return {}
    text = read_text(path, str(path))  # one line for a non-UTF-8, huge, unreadable or special file
    try:
        data = parse_json(text)
    except json.JSONDecodeError as exc:
        raise LoomError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix it before {doing} hooks") \
            from None
    if not isinstance(data, dict):
        raise LoomError(f"{path}: settings must be a JSON object")
    return data


def _write_git_hooks(folder: Path) -> Path:
    """The shared hooks dir sandboxes point at: our pre-commit, then the repository's own hooks."""
    check = f"{hook_command('hook', 'git-pre-commit')} || exit 1\n"
    for name in GIT_HOOKS:
        body = "#!/bin/sh\n# Installed by loomtui (`loomtui hook install`).\n"
        body += (check if name == "pre-commit" else "") + _FORWARD
        target = folder / name
        if not target.exists() or target.read_text() != body:
            write_atomically(target, body, 0o755)
    return folder


def _exclude_for_worktree(git: _TreeGit, git_dir: Path, common_dir: Path, names: Sequence[str]) -> None:
    """Ignore these files (loomtui's own) in this worktree only.

    `info/exclude` lives in git's common dir, shared by every worktree (check:
    `git rev-parse --git-path info/exclude`), so it would hide the file in the main
    checkout too. Instead this worktree's own `core.excludesFile` names a file in its
    git dir, which carries on the user's global excludes that setting replaces.
    """
    exclude = git_dir / "loom-exclude"
    # Never one the worktree's own config names: for a sandbox, the agent's (a file's text copied here).
    previous = repository_excludes_file(common_dir)
    inherited = _read_text(Path(previous)) or ""
    lines = ["# loomtui: keep the files loomtui wrote (hook settings, context) out of this sandbox's commits",
             *(f"/{name}" for name in names), f"# carried over from {previous}", inherited]
    try:
        write_atomically(exclude, "\n".join(lines) + "\n")
    except OSError as exc:
        raise LoomError(f"cannot write {exclude}: {exc.strerror or exc}") from None
    git("config", "--worktree", "core.excludesFile", str(exclude))


def _enable_worktree_config(git: _TreeGit) -> None:
    """Turn on per-worktree config (`git config --worktree`), once per repository.

    It changes nothing for the other worktrees. Two sandboxes created at once race
    for the shared config's lock, hence the retries.
    """
    for _attempt in range(20):
        if git("config", "--get", "extensions.worktreeConfig", check=False).strip() == "true":
            return
        try:
            _keep_the_main_worktree_s_own(git)
            git("config", "extensions.worktreeConfig", "true")
            return
        except LoomError:
            time.sleep(0.05)
    git("config", "extensions.worktreeConfig", "true")


def _keep_the_main_worktree_s_own(git: _TreeGit) -> None:
    """Move `core.bare` and `core.worktree` from the shared config to the main worktree's `config.worktree`, as
    git asks before `extensions.worktreeConfig` is on: a bare repository used through linked worktrees otherwise
    has every worktree read as bare (`git status` there: "must be run in a work tree")."""
    common = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    shared = ["--file", str(common / "config")]
    for key in ("core.bare", "core.worktree"):
        value = git("config", *shared, "--get", key, check=False).strip()
        if not value or (key == "core.bare" and value != "true"):
            continue  # false, or not set: the shared config may keep it
        git("config", "--file", str(common / "config.worktree"), key, value)
        git("config", *shared, "--unset", key)


def local_sandbox_id(tree: Path) -> str:
    """A stable id for a checkout that is not a loomtui sandbox (a person's own clone)."""
    return "local-" + hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:8]
