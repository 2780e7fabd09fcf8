"""Sandboxes: one git worktree on its own branch per agent task, and its agent's life.

Creating, starting and reading logs; `agent_control` stops, pauses and attaches, `review` has
diff, merge and remove, `recovery` has reconcile. On disk, under the repository's
state dir (`<git common dir>/loom`, shared by every worktree, never tracked):

    sandboxes/<id>/agent.log   everything the agent printed (stdout and stderr)
    sandboxes/<id>/supervisor.log   the supervisor's own diagnostics
    sandboxes/<id>/context.md  the context handed to the agent ({context_file})
    sandboxes/<id>/script.yaml the script of a `script` runtime ({script})

and each sandbox's worktree, on branch loom/<id>, in this repository's worktrees
root (`worktrees_root`): by default
`$XDG_DATA_HOME/loomtui/worktrees/<repo name>-<hash of its git dir>/<id>`
(`~/.local/share` without XDG_DATA_HOME), elsewhere with `worktrees:` in
`.loom/loom.yaml` or `$LOOMTUI_WORKTREES`. Never inside a `.git` directory: Claude
Code refuses every write to a path with a `.git` component, whatever its hooks
answer. Never inside the main working tree either: `git status`, test runners and
editors there would pick them up. The store records each sandbox's worktree, and
everything reads it from there (`record_paths`), so sandboxes made before a move
(older ones live in `.git/loom/worktrees/<id>`) keep working.

Ids are random short slugs (`3fa9c1`): a task's text never becomes a path, a
branch name or part of a shell string.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from loomtui.config import LimitsConfig, RuntimeConfig
from loomtui.errors import LoomError, not_utf8, quoted
from loomtui.execution import disk_room
from loomtui.execution.context_files import AgentContext, worktree_context_files
from loomtui.execution.context_files import assemble as assemble_context
from loomtui.execution.context_files import record as record_context
from loomtui.execution.gitops import AgentTree, Git
from loomtui.execution.isolation import (
    ISOLATION_BWRAP,
    ISOLATION_NONE,
    isolation_available,
)
from loomtui.execution.lifecycle import (
    FAILED,
    LIVE,
    PLANNED,
    transition,
)
from loomtui.execution.log_lines import MAX_TAIL_BYTES, LogCursor, log_tail, whole_lines
from loomtui.execution.mcpconfig import mcp_config_path, write_mcp_config
from loomtui.execution.procs import is_alive
from loomtui.execution.runtimes import (
    OUTPUT_PLAIN,
    OUTPUT_TERMINAL,
    LaunchSpec,
    find_runtime,
    given_env_names,
    prepare_launch,
    uses_placeholder,
)
from loomtui.execution.sandbox_paths import (
    TMUX_PREFIX as TMUX_PREFIX,
)
from loomtui.execution.sandbox_paths import (
    WORKTREES_ENV as WORKTREES_ENV,
)
from loomtui.execution.sandbox_paths import (
    SandboxPaths as SandboxPaths,
)
from loomtui.execution.sandbox_paths import (  # re-exported: where a sandbox's files are
    check_id as check_id,
)
from loomtui.execution.sandbox_paths import (
    configured_worktrees_root as configured_worktrees_root,
)
from loomtui.execution.sandbox_paths import (
    data_home as data_home,
)
from loomtui.execution.sandbox_paths import (
    legacy_worktrees_dir as legacy_worktrees_dir,
)
from loomtui.execution.sandbox_paths import made_worktrees_root
from loomtui.execution.sandbox_paths import (
    record_paths as record_paths,
)
from loomtui.execution.sandbox_paths import (
    repo_slug as repo_slug,
)
from loomtui.execution.sandbox_paths import (
    sandbox_paths as sandbox_paths,
)
from loomtui.execution.sandbox_paths import (
    tmux_session as tmux_session,
)
from loomtui.execution.sandbox_paths import (
    worktree_roots as worktree_roots,
)
from loomtui.execution.sandbox_paths import (
    worktrees_root as worktrees_root,
)
from loomtui.files import write_atomically as write_context_file
from loomtui.identity import current_host
from loomtui.limit_values import file_size_bytes
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace

BRANCH_PREFIX: Final = "loom/"
MAX_TASK_CHARS: Final = 20_000

HOOK_SETTINGS_PATH: Final = ".claude/settings.json"
LOCAL_SETTINGS_PATH: Final = ".claude/settings.local.json"
"""Claude Code's local settings, read after the project's: never the agent's work (it could switch the hooks off)."""
MANAGED_FILES: Final = (HOOK_SETTINGS_PATH, LOCAL_SETTINGS_PATH, ".aider.tags.cache.v4")
"""Files loomtui writes into a worktree (the agent hooks' settings), and a runtime's own caches
(Aider's repository map): never committed as the agent's work."""

SUPERVISOR_MODULE: Final = "loomtui.execution.supervisor"
"""The bare supervisor: runs and records the agent, and nothing else."""



def get_sandbox(workspace: Workspace, sandbox_id: str) -> SandboxRecord:
    """The sandbox with this id, or a unique id prefix; a one-line error otherwise."""
    check_id(sandbox_id)
    record = workspace.store.get_sandbox(sandbox_id)
    if record is not None:
        return record
    matches = workspace.store.sandboxes_with_prefix(sandbox_id)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise LoomError(f"{sandbox_id!r} matches several sandboxes: {', '.join(r.id for r in matches)}")
    raise LoomError(f"no sandbox {sandbox_id!r}")


def on_this_host(record: SandboxRecord) -> bool:
    """Whether a sandbox runs on this machine (a team's store holds other machines' too)."""
    return not record.host or record.host == current_host()


def refuse_elsewhere(record: SandboxRecord, doing: str) -> None:
    """Refuse (one line, exit 1) what only the machine a sandbox runs on can do: its worktree, branch
    and agent are there (a start from another clone of a shared store failed the task there)."""
    if not on_this_host(record):
        raise LoomError(f"sandbox {record.id} is on {record.host}: {doing} there", exit_code=1)


def list_sandboxes(workspace: Workspace, *, include_archived: bool = False) -> list[SandboxRecord]:
    """Sandboxes, newest first."""
    return workspace.store.list_sandboxes(include_archived=include_archived)


def isolation_label(record: SandboxRecord) -> str:
    """How a sandbox is isolated, said plainly (for tables and detail views)."""
    return "isolated (bwrap)" if record.isolation == ISOLATION_BWRAP else "NOT isolated"


def stopped_by(record: SandboxRecord) -> str | None:
    """Who stopped its agent (`sandbox stop`, `s` in the app), else None: such an agent reads
    `exited` too, with SIGTERM's or SIGKILL's exit code."""
    asked = record.data.get("stop_requested")
    return str(asked.get("by") or "someone") if isinstance(asked, dict) and record.status not in LIVE else None


def agent_tree(workspace: Workspace, record: SandboxRecord) -> AgentTree:
    """How loomtui runs git on a sandbox's worktree: never reading what the agent could plant there."""
    paths = record_paths(workspace.paths, record)
    managed = (*MANAGED_FILES, *record.context_files)
    return AgentTree(workspace.paths.common_dir, Path(record.worktree), paths.outside_index, managed,
                     largest_file(workspace))


def branch_tips(workspace: Workspace) -> dict[str, str]:
    """Every local branch's tip, in one git call: what a task's next step may turn on that no record says."""
    return Git(workspace.root).branch_tips()


def largest_file(workspace: Workspace) -> int | None:
    """`limits.file_size` in bytes (None: no limit); the default's under a broken config, which never
    stops an agent's work being saved."""
    try:
        text = workspace.load_config().limits.file_size
    except LoomError:
        text = LimitsConfig().file_size
    return file_size_bytes(text)


def worktree_tree(workspace: Workspace, record: SandboxRecord) -> str:
    """A sandbox's worktree as it is now (untracked files included) as a tree id, read from outside."""
    if not record.base_sha:
        raise LoomError(f"sandbox {record.id} has no base commit")
    return agent_tree(workspace, record).snapshot(record.base_sha)[0]


def is_sandbox_worktree(workspace: Workspace, path: Path) -> bool:
    """Whether `path` is (inside) some sandbox's worktree rather than a person's checkout.

    By the store's records first (wherever each worktree was made), then by the folders
    worktrees live in (a stray one no record owns is still not a person's checkout).
    """
    place = Path(path).resolve()
    for record in workspace.store.list_sandboxes(include_archived=True):
        if record.worktree and place.is_relative_to(Path(record.worktree).resolve()):
            return True
    return any(place.is_relative_to(root.resolve()) for root in worktree_roots(workspace))


def is_person_checkout(workspace: Workspace, path: Path) -> bool:
    """Whether `path`, which git lists as a working tree, is a person's: the main checkout, or a linked
    worktree whose admin dir is no sandbox's. git takes a linked worktree's path from a file in its admin
    dir, which a sandbox's agent writes: it can name a repository of its own making (its hooks, its
    fsmonitor) as the one that has the target checked out."""
    if is_sandbox_worktree(workspace, path):
        return False
    common = workspace.paths.common_dir.resolve()
    if Path(path).resolve().is_relative_to(common / "worktrees"):
        # A folder an agent made in its worktree's admin dir (and named in its `gitdir`), whose `.git` links to
        # the repository: the merge fast-forwarded the branch HEAD there named, a person's own, and not main.
        # (A bare repository's own worktree, `repo.git/main`, is a person's.)
        return False
    dot_git = Path(path) / ".git"
    if dot_git.is_dir():  # the main checkout (its `.git` may be a link to the git dir kept elsewhere)
        return dot_git.resolve() == common
    try:
        named = dot_git.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    if not named.startswith("gitdir: "):
        return False
    admin = (Path(path) / named[len("gitdir: "):]).resolve()
    sandboxes = {Path(r.data["git_dir"]).resolve() for r in workspace.store.list_sandboxes(include_archived=True)
                 if r.data.get("git_dir")}
    # The main checkout of a `--separate-git-dir` repository names the git dir itself.
    return admin == common or (admin.parent == common / "worktrees" and admin not in sandboxes)


def _paths(workspace: Workspace, record: SandboxRecord) -> SandboxPaths:
    return record_paths(workspace.paths, record)


# -- creating and starting ------------------------------------------------------------


def _merge_target(repo: Git, base: str) -> str | None:
    """The branch a sandbox's work goes back into: its base if that is a branch, else HEAD's."""
    if base != "HEAD" and repo.local_branch_exists(base):
        return base
    return repo.current_branch()


class MissingRuntimeInput(LoomError):
    """A runtime needs what the sandbox was not given: the program to run (`command`) or a script."""

    def __init__(self, runtime: str, what: str) -> None:
        self.runtime, self.what = runtime, what
        needs = "runs the program given for each sandbox" if what == "command" else "replays a script"
        super().__init__(f"runtime {runtime!r} {needs}, and none was given")


def _checked_task(task: str) -> str:
    task = task.strip()
    if not task:
        raise LoomError("the task is empty; say what the agent should do")
    if "\0" in task or len(task) > MAX_TASK_CHARS:
        raise LoomError(f"the task must be text of at most {MAX_TASK_CHARS} characters")
    try:
        task.encode("utf-8")
    except UnicodeEncodeError as exc:  # a byte no UTF-8 text has (the shell's $'\x9b'), or JSON's lone \ud800
        raise LoomError(f"the task is not UTF-8 text ({not_utf8(task[exc.start:exc.end])} at character "
                        f"{exc.start + 1})") from None
    return task


def checked_runtime(workspace: Workspace, name: str, script: Path | str | None,
                     command: Sequence[str] = ()) -> RuntimeConfig:
    """The runtime, once its script (if it takes one) and its tools check out."""
    from loomtui.config import GENERIC_COMMAND
    from loomtui.execution.script_agent import load_script

    runtime = find_runtime(workspace.load_config(), name)
    if runtime.argv == (GENERIC_COMMAND,):
        if not command or not command[0]:
            raise MissingRuntimeInput(name, "command")
        runtime = dataclasses.replace(runtime, argv=tuple(command))
    elif command:
        raise LoomError(f"runtime {name!r} has its own argv; a command after `--` is only for `command`")
    wants_script = uses_placeholder(runtime, "script")
    if wants_script and script is None:
        raise MissingRuntimeInput(name, "script")
    if script is not None and not wants_script:
        raise LoomError(f"runtime {name!r} takes no script (its argv has no {{script}})")
    if script is not None:
        load_script(script)  # file:line errors now, before anything exists
    if runtime.mode == "interactive" and shutil.which("tmux") is None:
        raise LoomError(f"runtime {name!r} is interactive and needs tmux, which is not on PATH")
    return runtime


def _chosen_isolation(isolate: bool | None) -> str:
    """bwrap when asked for or (isolate=None) when it works here; a plain process otherwise."""
    if isolate and not isolation_available():
        raise LoomError("isolation was requested but bubblewrap (bwrap) does not work here")
    use_bwrap = isolation_available() if isolate is None else isolate
    return ISOLATION_BWRAP if use_bwrap else ISOLATION_NONE


def _run_from_worktree(workspace: Workspace, launch: LaunchSpec, base: str, base_sha: str, worktree: Path,
                       isolation: str) -> LaunchSpec:
    """A program in the repository (`-- ./my-agent.sh`) run as its worktree has it, committed: the person's
    checkout is an empty folder in bubblewrap but for what confined code needs from it, which is never the
    checkout's own top folder (it failed with exit 127, "No such file or directory"). One not committed at
    `base` runs from the checkout (its folder shown), but for one in that top folder under bubblewrap: refused."""
    program = Path(launch.argv[0])
    inside = next((program.relative_to(root) for root in dict.fromkeys((workspace.root, workspace.root.resolve()))
                   if program.is_relative_to(root)), None)
    if inside is None:
        return launch
    if Git(workspace.root).ok("cat-file", "-e", f"{base_sha}:{inside.as_posix()}"):
        return dataclasses.replace(launch, argv=(str(worktree / inside), *launch.argv[1:]))
    if isolation == ISOLATION_BWRAP and len(inside.parts) == 1:
        raise LoomError(f"{inside.as_posix()} is not committed at {base}: the agent runs in its own worktree, made "
                        f"from {base}, and your checkout is not visible to it (commit the program, or give one "
                        "outside the repository)")
    return launch


REPO_ROOT_KEY: Final = "repo_root"
"""The repository's own checkout the sandbox was stated from: where loomtui run in its worktree acts from (git
cannot say it of a clone whose git dir is kept apart)."""
GIVEN_ENV_KEY: Final = "given_env"
"""The names of the variables its agent would have been given, started as it was made (`given_env_names`)."""


def plan_sandbox(
    workspace: Workspace, task: str, runtime: str, *, base: str = "HEAD", claims: Sequence[str] = (),
    script: Path | str | None = None, isolate: bool | None = None, command: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
) -> SandboxRecord:
    """Check a task's inputs and record it as a `planned` sandbox (no worktree yet: `make_worktree`).

    Nothing is recorded when an input is wrong (unknown runtime, program not on
    PATH, missing base ref, bad script). `claims` are recorded, not taken: claiming
    is coordination's, through the workflow. `isolate=None` uses bubblewrap when it
    works here. `data` is kept on the record (the workflow's own fields).
    """
    task = _checked_task(task)
    runtime_config = checked_runtime(workspace, runtime, script, command)
    repo = Git(workspace.root)
    base_sha = repo.resolve_commit(base)
    if base_sha is None:
        raise LoomError(f"base ref {quoted(base)} does not exist in {workspace.root}"
                        + (" (the repository has no commits yet)" if base == "HEAD" else ""))
    isolation = _chosen_isolation(isolate)
    root = made_worktrees_root(configured_worktrees_root(workspace))
    sandbox_id = _unused_id(workspace, root)
    paths = sandbox_paths(workspace.paths, sandbox_id, root / sandbox_id)
    launch = prepare_launch(runtime_config, {
        "task": task, "sandbox": sandbox_id, "worktree": str(paths.worktree),
        "context_file": str(paths.context), "script": str(paths.script),
        "mcp_config": str(mcp_config_path(paths.dir)),
    }, root=None if command else workspace.root)  # a program given after `--` is the shell's: from where it ran
    launch = _run_from_worktree(workspace, launch, base, base_sha, paths.worktree, isolation)
    target = _merge_target(repo, base)
    if base == "HEAD" and target and target.startswith(BRANCH_PREFIX) and \
            workspace.store.get_sandbox(target.removeprefix(BRANCH_PREFIX)) is not None:
        # Run from a sandbox's worktree, the task went into that sandbox's branch, which can be deleted.
        raise LoomError(f"HEAD here is {quoted(target)}, a sandbox's branch (this is its worktree): state tasks from "
                        f"your own checkout, or give --base {target} to build on its work on purpose")
    now = time.time()
    record = workspace.store.add_sandbox(SandboxRecord(
        id=sandbox_id, task=task, runtime=runtime, status=PLANNED, created=now, updated=now,
        base_ref=base, branch=BRANCH_PREFIX + sandbox_id, worktree=str(paths.worktree), isolation=isolation,
        host=current_host(),
        data={"base_sha": base_sha, "target": target, "launch": launch.to_data(), "claims": list(claims),
              "created_by": workspace.actor, REPO_ROOT_KEY: str(workspace.root),
              # What its agent would be given, started now: a task that waits starts where another's step moves
              # it on, and is not started where these are missing (see workflow.engine).
              GIVEN_ENV_KEY: given_env_names(launch, os.environ), **(data or {})},
    ))
    workspace.record("sandbox.planned", sandbox_id, {
        "runtime": runtime, "base": base, "base_sha": base_sha, "target": target,
        "isolation": isolation, "claims": list(claims), **(data or {}),
    })
    if script is not None:
        try:
            paths.dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(script, paths.script)  # the script as it was when the task was stated
        except OSError as exc:
            message = exc.strerror or str(exc)
            mark_failed(workspace, sandbox_id, f"cannot copy the script: {message}")
            raise LoomError(f"sandbox {sandbox_id}: cannot copy the script {script}: {message}") from None
    return record


def make_worktree(workspace: Workspace, sandbox_id: str, *, base_sha: str | None = None,
                  context: str | None = None) -> SandboxRecord:
    """Create a planned sandbox's worktree and branch (from `base_sha`, else its recorded base), with
    the context handed to its agent written in. A failure marks the sandbox failed (one-line error)."""
    record = get_sandbox(workspace, sandbox_id)
    if record.status != PLANNED:
        raise LoomError(f"sandbox {record.id} is {record.status}; only a planned sandbox gets a worktree",
                        exit_code=1)
    base_sha = base_sha or record.base_sha
    paths = _paths(workspace, record)
    launch_argv = (record.data.get("launch") or {}).get("argv") or []
    try:
        paths.dir.mkdir(parents=True, exist_ok=True)
        paths.worktree.parent.mkdir(parents=True, exist_ok=True)
        given = (AgentContext(context) if context is not None
                 else assemble_context(workspace, record.task, list(record.claim_targets), base_sha))
        paths.context.write_text(given.text, encoding="utf-8")
        # loomtui's MCP server ({mcp_config}), with what reaches its broker, whatever the host passes on
        write_mcp_config(mcp_config_path(paths.dir), paths.worktree, env={
            "LOOM_BROKER": str(paths.broker), "LOOM_SANDBOX": record.id, "LOOM_REPO": str(workspace.root)})
        with workspace.paths.worktrees_locked():
            if not has_worktree(record):
                _clear_half_made(workspace, record, paths.worktree, base_sha)
            Git(workspace.root).out("worktree", "add", "--quiet", "-b", record.branch, str(paths.worktree),
                                    base_sha)
        git_dir = Git(paths.worktree).out("rev-parse", "--absolute-git-dir").strip()
        context_files = worktree_context_files(launch_argv, paths.worktree)  # where the agent reads: CLAUDE.md…
        # Named before they are written: a snapshot of the worktree meanwhile (the app's, woken by any store
        # write) took the slice as the agent's own AGENTS.md, and it was committed with its work.
        workspace.store.update_sandbox(sandbox_id, data={"context_files": context_files})
        for name in context_files:
            write_context_file(paths.worktree / name, given.text)
    except (OSError, LoomError) as exc:
        message = getattr(exc, "strerror", None) or str(exc)
        mark_failed(workspace, sandbox_id, f"cannot create the worktree: {message}")
        raise LoomError(f"sandbox {sandbox_id}: cannot create the worktree: {message}") from None
    record_context(workspace, sandbox_id, given, [str(paths.context), *context_files])
    return workspace.store.update_sandbox(sandbox_id, data={
        "git_dir": git_dir, "context_files": context_files, "base_sha": base_sha, "worktree_made": True})


def _clear_half_made(workspace: Workspace, record: SandboxRecord, worktree: Path, base_sha: str) -> None:
    """A prepare killed between making the worktree and recording it left its branch (and worktree): the
    agent never ran, so they hold nothing of its; they go, and are made again. A branch that moved past
    its base holds someone's commits: that is said, not deleted."""
    git = Git(workspace.root)
    tip = git.resolve_commit(f"refs/heads/{record.branch}")
    if tip is None:
        return
    if tip not in (base_sha, record.base_sha):
        raise LoomError(f"{record.branch} exists already, with commits of its own ({tip[:12]}); nothing of it "
                        "was changed")
    if worktree.exists():
        git.run("worktree", "remove", "--force", str(worktree))
    git.run("worktree", "prune")
    git.out("branch", "-D", record.branch)


def has_worktree(record: SandboxRecord) -> bool:
    """Whether a sandbox's worktree was made (a task waiting on others gets its own later)."""
    return bool(record.data.get("worktree_made", record.data.get("git_dir")))


def has_commits(workspace: Workspace, record: SandboxRecord) -> bool:
    """Whether the sandbox's branch moved past the commit it started from."""
    base = record.base_sha
    tip = Git(workspace.root).resolve_commit(record.branch) if record.branch and has_worktree(record) else None
    return bool(tip and base and tip != base)


def _unused_id(workspace: Workspace, root: Path) -> str:
    for _attempt in range(100):
        sandbox_id = secrets.token_hex(3)
        if (workspace.store.get_sandbox(sandbox_id) is None and not _branch_taken(workspace, sandbox_id)
                and not (root / sandbox_id).exists()):
            return sandbox_id
    raise LoomError("could not find an unused sandbox id")


def _branch_taken(workspace: Workspace, sandbox_id: str) -> bool:
    """Whether loom/<id> already exists (say, left from a store that was moved aside)."""
    return Git(workspace.root).local_branch_exists(BRANCH_PREFIX + sandbox_id)


def mark_failed(workspace: Workspace, sandbox_id: str, error: str, **data: Any) -> SandboxRecord:
    """Move a sandbox to failed, keeping the reason."""
    return transition(workspace, sandbox_id, FAILED, reason=error, data={"error": error, **data})


STARTED_BY_ENV: Final = "LOOM_STARTED_BY"
"""Who started the agent, for its supervisor's `sandbox.running` entry (which acts for the task's author)."""


def start(workspace: Workspace, sandbox_id: str, *, supervisor: str = SUPERVISOR_MODULE) -> SandboxRecord:
    """Start a planned sandbox's agent under a detached supervisor; returns once it is launched.

    The supervisor runs in its own session (not a child of the caller), so the
    agent keeps running when the TUI or the shell that started it goes away.
    `supervisor` is the module run as it (`python -m`): the workflow passes its own,
    which serves the agent's hooks and advances the sandbox when the agent ends.
    Whether the sandbox may start (approvals, other tasks) is the workflow's to say.
    """
    record = get_sandbox(workspace, sandbox_id)
    refuse_elsewhere(record, "start it")
    if record.status != PLANNED:
        raise LoomError(f"sandbox {record.id} is {record.status}; only a planned sandbox starts", exit_code=1)
    if is_alive(record.pid, record.pid_start):
        raise LoomError(f"sandbox {record.id} is already starting (supervisor pid {record.pid})", exit_code=1)
    paths = _paths(workspace, record)
    if not paths.worktree.is_dir():
        raise LoomError(f"sandbox {record.id}: its worktree {paths.worktree} is missing", exit_code=1)
    paths.dir.mkdir(parents=True, exist_ok=True)
    # Its supervisor stops an agent under the floor on its first beat, but what it does before (packing the history
    # its git reads) filled the disk: it died with nothing written, and was said "killed, or the machine restarted".
    short = disk_room.shortage((("its worktree", paths.worktree), ("its log", paths.dir),
                                ("the store", workspace.paths.store_path.parent)))
    if short is not None:
        raise LoomError(f"sandbox {record.id} not started: {short.said()}; free some room, then start it again",
                        exit_code=1)
    command = [sys.executable, "-m", supervisor, str(workspace.root), record.id]
    try:
        with open(paths.supervisor_log, "ab") as diagnostics:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=diagnostics,
                cwd=paths.dir, start_new_session=True, close_fds=True,
                env={**os.environ, STARTED_BY_ENV: workspace.actor},
            )
    except OSError as exc:
        raise LoomError(f"cannot start the supervisor of {record.id}: {exc.strerror or exc}") from None
    assert process.stdout is not None
    # The supervisor forks itself away and answers once its pid is in the store;
    # the process we started exits at once, so nothing is left for us to reap.
    ready = process.stdout.readline()
    process.stdout.close()
    process.wait()
    refused = _refusal(ready)
    if refused:  # another caller's start won the race
        raise LoomError(refused, exit_code=1)
    if not ready.strip():
        try:
            said = [line for line in paths.supervisor_log.read_text("utf-8", "replace").splitlines() if line.strip()]
        except OSError:
            said = []
        why = f" ({said[-1].strip()})" if said else ""
        raise LoomError(f"the supervisor of {record.id} did not start{why}; see {paths.supervisor_log}")
    return get_sandbox(workspace, record.id)


def started_by_another(workspace: Workspace, sandbox_id: str) -> bool:
    """After a refused start: whether another caller's start of the sandbox won (its agent runs, or its
    supervisor is starting it), so nothing failed: the app's own advance lost the race to a person's `S`
    and showed "start failed: already running" for the whole run."""
    record = workspace.store.get_sandbox(sandbox_id)
    return record is not None and (record.status in LIVE or (
        record.status == PLANNED and is_alive(record.pid, record.pid_start)))


def _refusal(answer: bytes) -> str:
    """Why the supervisor would not run the sandbox (`{"refused": ...}` on its first line), or ""."""
    try:
        said = json.loads(answer or b"{}")
    except ValueError:
        return ""
    return str(said.get("refused") or "") if isinstance(said, dict) else ""


# -- logs --------------------------------------------------------------------------------


def log_path(workspace: Workspace, sandbox_id: str) -> Path:
    """The agent's output log (which may not exist yet)."""
    return sandbox_paths(workspace.paths, get_sandbox(workspace, sandbox_id).id).log


def mark_log(workspace: Workspace, sandbox_id: str, note: str) -> None:
    """A line of loomtui's own in the agent's log, between two runs of its agent (no agent is writing)."""
    path = log_path(workspace, sandbox_id)
    try:
        with open(path, "a+b") as log:
            # On a line of its own: after an agent's unfinished last line, the note was read as part of it.
            ended = log.seek(0, os.SEEK_END) == 0
            if not ended:
                log.seek(-1, os.SEEK_END)
                ended = log.read(1) == b"\n"
            log.write(("" if ended else "\n").encode() + f"── loomtui: {note} ──\n".encode())
    except OSError:
        pass  # the note is a courtesy: the run is recorded in the audit log all the same


def log_format(workspace: Workspace, sandbox_id: str) -> tuple[str, str | None]:
    """The format its runtime writes the agent's output in (`runtimes.OUTPUT_*`), and the worktree
    the paths in it are under."""
    record = get_sandbox(workspace, sandbox_id)
    launch = record.data.get("launch") or {}
    if launch.get("mode") == "interactive":  # what its pane drew: a terminal's stream, cursor moves and all
        return OUTPUT_TERMINAL, record.worktree
    return str(launch.get("output") or OUTPUT_PLAIN), record.worktree


def read_log_tail(workspace: Workspace, sandbox_id: str, lines: int = 50) -> list[str]:
    """The last `lines` lines of a sandbox's log (cheap on large logs)."""
    return log_tail(log_path(workspace, sandbox_id), lines)


def follow_log(workspace: Workspace, sandbox_id: str, *, last: int = 0, poll: float = 0.2) -> Iterator[str]:
    """The last `last` lines, then each new line as it is written, until the agent has ended.

    Both parts are read from one offset, so no line is skipped or repeated between them.
    """
    record = get_sandbox(workspace, sandbox_id)
    path = sandbox_paths(workspace.paths, record.id).log
    cursor = LogCursor(path)  # across the log's moves aside (agent.log.1) as it grows
    yield from log_tail(path, last, cursor.offset)
    pending = b""
    # An interactive pane's unfinished line is said once nothing more comes (Codex draws without a newline).
    unfinished = (record.data.get("launch") or {}).get("mode") == "interactive"
    while True:
        ended = get_sandbox(workspace, record.id).status not in LIVE | {PLANNED}
        chunk = cursor.read(MAX_TAIL_BYTES)  # a piece at a time: the agent may have written GBs
        complete, pending = whole_lines(pending + chunk)
        if unfinished and pending and not complete and not chunk:
            complete, pending = [pending], b""
        for line in complete:
            yield line.decode("utf-8", errors="replace")
        if ended and not chunk:
            if pending:
                yield pending.decode("utf-8", errors="replace")
            return
        if not chunk:
            time.sleep(poll)


def wait_for_status(workspace: Workspace, sandbox_id: str, statuses: Collection[str], *,
                    timeout: float = 60.0, interval: float = 0.1) -> SandboxRecord:
    """Poll until the sandbox reaches one of `statuses`; LoomError when `timeout` passes first."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    while True:
        record = get_sandbox(workspace, sandbox_id)
        if record.status in wanted:
            return record
        if time.monotonic() >= deadline:
            raise LoomError(f"sandbox {sandbox_id} is still {record.status} after {timeout:g}s", exit_code=1)
        time.sleep(interval)
