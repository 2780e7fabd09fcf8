"""`loomtui doctor`: is this machine and repository ready to run agents, and how isolated.

Each check says ok, warning (works, with a limit the user should know: no
isolation, no tmux, a runtime not installed) or error (something is broken: no
git, a damaged store or audit log).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from loomtui.config import GENERIC_COMMAND, LimitsConfig, LoomConfig, load_config
from loomtui.errors import LoomError, NotARepository, StoreError
from loomtui.execution import cgroup_limits, disk_room
from loomtui.execution.gitops import MERGE_TREE_MIN_VERSION, Git, git_version
from loomtui.execution.isolation import PUBLISHED_OBJECTS, isolation_status
from loomtui.execution.runtimes import runtime_report
from loomtui.files import file_size
from loomtui.identity import current_user, named_by_login
from loomtui.json_text import parse_json
from loomtui.limit_values import file_size_bytes
from loomtui.repo import find_repo
from loomtui.workspace import Workspace, open_workspace

OK: Final = "ok"
WARNING: Final = "warning"
ERROR: Final = "error"


@dataclass(frozen=True)
class Check:
    name: str
    level: str  # ok | warning | error
    detail: str


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.level != ERROR for check in self.checks)

    def add(self, name: str, level: str, detail: str) -> None:
        self.checks.append(Check(name, level, detail))

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def _check_tools(report: DoctorReport) -> None:
    version = git_version()
    if version is None:
        report.add("git", ERROR, "git is not installed or not on PATH")
    else:
        shown = ".".join(map(str, version))
        if version < MERGE_TREE_MIN_VERSION:
            needed = ".".join(map(str, MERGE_TREE_MIN_VERSION))
            report.add("git", WARNING, f"git {shown}: sandboxes work, merging needs {needed} or newer")
        else:
            report.add("git", OK, f"git {shown}")
    isolation = isolation_status()
    report.add("isolation", OK if isolation.available else WARNING, isolation.detail)
    tmux = shutil.which("tmux")
    report.add("tmux", OK if tmux else WARNING,
               f"tmux at {tmux}" if tmux else "tmux is not installed: interactive runtimes cannot run")
    _check_claude_user_settings(report)


def _check_claude_user_settings(report: DoctorReport) -> None:
    """Your own Claude Code settings, which every sandbox's Claude Code reads too: one that switches hooks
    off, or asks nobody, takes loomtui's gate (claims, the policy, the audit of each edit) out of them all."""
    path = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude") / "settings.json"
    try:
        settings = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # none, or one Claude Code itself will complain about
    if not isinstance(settings, dict):
        return
    permissions = settings.get("permissions")
    mode = permissions.get("defaultMode") if isinstance(permissions, dict) else None
    if settings.get("disableAllHooks"):
        report.add("claude settings", WARNING, f"{path} has disableAllHooks: every sandbox's Claude Code runs "
                                               "without loomtui's hooks (claims, the policy, the audit of each edit)")
    elif mode == "bypassPermissions":
        report.add("claude settings", WARNING, f"{path} has defaultMode bypassPermissions: a sandbox's Claude "
                                               "Code asks nobody, a lead never sees what the policy sends them")


def _check_runtimes(report: DoctorReport, config: LoomConfig, root: Path | None) -> None:
    """Each runtime's program, found or not, its permissions and its credentials."""
    for row in runtime_report(config, root=root):
        name = f"runtime {row['runtime']}"
        if row["program"] == GENERIC_COMMAND:  # a placeholder, not a program: nothing to find
            report.add(name, OK, "runs the program given after `--`")
        elif row["found"]:
            report.add(name, OK, f"{row['program']} -> {row['found']} ({row['mode']})")
        else:
            report.add(name, WARNING, f"{row['program']} is not on PATH")
        if row["unasked"]:
            report.add(f"{name} permissions", WARNING, row["unasked"])
        credentials = row["credentials"]
        if credentials["needs_one_of"]:
            # A vendor CLI without its credentials starts, then fails at its first request.
            report.add(f"{name} credentials", OK if credentials["ok"] else WARNING, credentials["summary"])


def _check_files(report: DoctorReport, root: Path) -> LoomConfig | None:
    """What needs no store: who you are to git, the config, its runtimes, gates and limits; the config read."""
    if Git(root).run("var", "GIT_AUTHOR_IDENT", timeout=5).status != 0:
        # `init` warned once; its next step (`git commit`) then failed unsaid, with LOOM_USER set too. Asked as a
        # commit asks (user.email, EMAIL, GIT_AUTHOR_EMAIL): not where git can name the author another way.
        who = (f"loomtui records you as {current_user(root)!r}, whom no policy group names, and "
               if named_by_login(root) else "")
        report.add("identity", WARNING, f"git cannot name you as a commit's author: {who}`git commit` stops at "
                                        "\"Author identity unknown\" (`git config --global user.email "
                                        "you@example.com`)")
    try:
        config = load_config(root)
    except LoomError as exc:
        report.add("config", ERROR, str(exc))
        return None
    _check_runtimes(report, config, root)
    # With no gates an agent's change reaches review untested: a change that breaks the tests passed.
    if config.gates:
        report.add("gates", OK, "gate 1 runs " + ", ".join(g.name for g in config.gates))
    else:
        report.add("gates", WARNING, "no gates in .loom/loom.yaml: agents' changes reach review untested "
                                     "(`loomtui init` finds a repository's tests; README: Guardrails)")
    _check_limits(report, config.limits)
    return config


def _check_repository(report: DoctorReport, workspace: Workspace) -> None:
    if _check_files(report, workspace.root) is not None:
        _check_worktrees(report, workspace)
    store = workspace.store
    try:
        problems = store.integrity_problems()
        status = store.status()
    except LoomError as exc:
        report.add("store", ERROR, str(exc))
    else:
        if problems:
            report.add("store", ERROR, f"{status.path}: integrity check failed: {problems[0]}")
        else:
            report.add("store", OK, f"{status.path} (schema {status.schema_version}, {status.journal_mode}, "
                                    f"{status.counts.get('sandboxes', 0)} sandboxes)")
    verify = workspace.audit.verify()
    report.add("audit", OK if verify.ok else ERROR, verify.summary(workspace.audit.path))
    from loomtui.execution.recovery import reconcile

    try:
        found = reconcile(workspace)
    except StoreError as exc:  # a write refused (a full disk): said as this check's finding, the rest still run
        report.add("sandboxes", ERROR, f"cannot mark what changed since (an agent that ended with its supervisor): "
                                       f"{exc}")
        return
    lines = found.lines()
    report.add("sandboxes", WARNING if lines else OK,
               "; ".join(lines) if lines else f"{len(found.alive)} running, all accounted for")


def _check_worktrees(report: DoctorReport, workspace: Workspace) -> None:
    from loomtui.execution.sandboxes import configured_worktrees_root

    try:
        root = configured_worktrees_root(workspace)
    except LoomError as exc:
        report.add("worktrees", ERROR, str(exc))
        return
    report.add("worktrees", OK, f"new sandboxes' worktrees go in {root}")
    published = workspace.paths.state_dir / PUBLISHED_OBJECTS
    if published.is_dir():  # what isolation costs on disk, said where a full disk is looked into
        size = sum(file_size(path) for path in published.rglob("*") if path.is_file() and not path.is_symlink())
        report.add("published history", OK, f"{size / (1 << 20):,.1f} MiB in {published}: the public history "
                                            "isolated agents' git reads, a second copy of it (README: isolation)")
    there = next((folder for folder in (root, *root.parents) if folder.is_dir()), root)
    short = disk_room.shortage((("the worktrees", there), ("the store", workspace.paths.store_path.parent)))
    if short is not None:
        report.add("disk room", WARNING, f"{short.said()}: an agent is stopped as soon as it runs (free some room)")


def _check_limits(report: DoctorReport, limits: LimitsConfig) -> None:
    """Whether each agent runs in control groups of its own, limited as `limits:` asks."""
    asked = cgroup_limits.Limits.of(limits)
    why = cgroup_limits.unavailable(asked.controllers())
    # Held whatever the control groups: loomtui itself saves and writes out a sandbox's files.
    files = ("; a file over " + limits.file_size + " is neither saved from a worktree nor checked (limits.file_size)"
             if file_size_bytes(limits.file_size) is not None else "; files of any size are saved (limits.file_size)")
    if why is None:
        report.add("limits", OK, f"each agent and all it starts: at most {asked.said()} (control groups of "
                                 f"its sandbox's; `limits:` in .loom/loom.yaml){files}")
    else:
        what = "memory, processes and CPU" if asked.cpus is not None else "memory and processes"
        report.add("limits", WARNING, f"agents' {what} are not limited per sandbox: {why}; "
                                      f"an agent past the machine's memory is the OOM killer's first choice{files}")


def _check_committed(report: DoctorReport, workspace: Workspace) -> None:
    """Whether `.loom/` is as committed: here loomtui reads the files as they are, the CI gate and the
    team's other machines read the committed ones (`loomtui init` leaves them to be committed)."""
    listed = Git(workspace.root).run("status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all",
                                     "--", ".loom")
    changed = sorted({entry[3:] for entry in listed.out.split("\0") if entry[3:]} if listed.status == 0 else ())
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        report.add("committed", WARNING, f"{shown} not as committed: the CI gate and your team's machines read "
                                         "the committed .loom/ (git add .loom && git commit)")


def run_doctor(start: Path | str | None = None) -> DoctorReport:
    """Check the tools, then (inside a repository) its config, runtimes, store, audit log and sandboxes."""
    report = DoctorReport()
    _check_tools(report)
    try:
        workspace = open_workspace(start)
    except NotARepository as exc:  # the machine is checked still (a new user's first question); said so
        report.add("repository", WARNING, f"{exc}; only this machine's tools and the built-in runtimes were "
                                          "checked: run it inside a repository for its config, store, audit log "
                                          "and sandboxes")
        _check_runtimes(report, LoomConfig(), None)  # whether the agents are installed: asked before adopting
        return report
    except LoomError as exc:  # a repository whose store cannot be opened (a team's store away)
        if not isinstance(exc, StoreError):  # loom.yaml's own error: said once
            report.add("repository", ERROR, str(exc))
            return report
        report.add("store", ERROR, str(exc))
        try:
            root = find_repo(start).root
        except LoomError:
            return report
        _check_files(report, root)  # the rest needs no store: it was all left out
        return report
    try:
        if Git(workspace.root).resolve_commit("HEAD") is None:
            report.add("repository", WARNING, f"{workspace.root} has no commit yet: a sandbox starts from one "
                                               "(commit something first)")
        else:
            report.add("repository", OK, str(workspace.root))
            _check_committed(report, workspace)
        _check_repository(report, workspace)
    finally:
        workspace.close()
    return report
