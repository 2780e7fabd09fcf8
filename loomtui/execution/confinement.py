"""What a sandbox's code runs with: its environment and, under isolation, its bwrap command line.

The agent runs so, and so does anything else that runs code the agent wrote (the
gates run its tests, which may hold a hostile `conftest.py`): whatever reads or
executes the worktree's content does it inside the same walls.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import loomtui
from loomtui.execution import privategit
from loomtui.execution.gitops import Git
from loomtui.execution.isolation import (
    ISOLATION_BWRAP,
    PRIVATE_TMP,
    PUBLISHED_OBJECTS,
    Checkout,
    PrivateGit,
    SandboxMounts,
    bwrap_argv,
    checkout_shown,
    credential_free,
    isolation_available,
    oom_first,
    sandbox_process_limit,
    scratch_bwrap_argv,
    secret_paths,
    under_private_dirs,
)
from loomtui.execution.runtime_state import RuntimeState, runtime_state
from loomtui.execution.runtimes import (
    STATE_PATHS,
    VENDOR_ENV,
    LaunchSpec,
    agent_environment,
    expand_path,
    program_files,
)
from loomtui.execution.sandboxes import (
    data_home,
    legacy_worktrees_dir,
    record_paths,
    sandbox_paths,
    worktree_roots,
)
from loomtui.identity import signing_key
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace


def private_git(workspace: Workspace, record: SandboxRecord) -> PrivateGit | None:
    """Where an isolated agent's git writes go (None without isolation)."""
    if record.isolation != ISOLATION_BWRAP:
        return None
    return PrivateGit(sandbox_paths(workspace.paths, record.id).dir / "git")


def sandbox_environment(workspace: Workspace, record: SandboxRecord, spec: LaunchSpec,
                        source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The reduced environment of code run for a sandbox: the runtime's allow-list and loomtui's own."""
    paths = sandbox_paths(workspace.paths, record.id)
    isolated = record.isolation == ISOLATION_BWRAP
    if not isolated:
        paths.tmp.mkdir(parents=True, exist_ok=True)
    private = private_git(workspace, record)
    return agent_environment(spec, os.environ if source is None else source, {
        "LOOM_SANDBOX": record.id,
        "LOOM_REPO": str(workspace.root),
        # The context slice's path, under both names ($LOOM_CONTEXT_FILE came first): a path, not
        # the text, which may be larger than an environment variable can hold (128 KiB on Linux).
        "LOOM_CONTEXT": str(paths.context),
        "LOOM_CONTEXT_FILE": str(paths.context),
        "LOOM_BROKER": str(paths.broker),
        "TMPDIR": str(PRIVATE_TMP) if isolated else str(paths.tmp),
        **(private.environment(workspace.paths.common_dir) if private else {}),
        # The agent's commits name the task's author (`$LOOM_USER` where set), as loomtui's review judges
        # it: a CI gate in a fresh clone reads the head commit's author for separation of duties.
        **({"GIT_AUTHOR_EMAIL": record.created_by} if record.created_by else {}),
    })


def confined_argv(workspace: Workspace, record: SandboxRecord, argv: Sequence[str], env: Mapping[str, str],
                  *, network: bool = False, spec: LaunchSpec | None = None) -> list[str]:
    """`argv` as it runs for this sandbox: under bwrap with the sandbox's mounts when it is isolated.

    `spec`'s runtime gets its state paths (its config and caches) as the sandbox's own copies.
    """
    argv = list(argv)
    if record.isolation != ISOLATION_BWRAP:
        return argv
    repo = workspace.paths
    paths = record_paths(repo, record)
    state = runtime_state(paths.runtime_state, spec, env, keep_out=[
        *_homes(env), workspace.root, repo.common_dir, paths.worktree]) if spec else RuntimeState()
    needed = _needed(workspace, argv, env)
    private = private_git(workspace, record)
    assert private is not None
    published = privategit.prepare(private, workspace.root, repo.common_dir, record.branch,
                                   repo.state_dir / PUBLISHED_OBJECTS)
    configs = _git_configs(workspace, env)  # read once: the credentials they name, and their clean copies
    mounts = SandboxMounts(
        worktree=paths.worktree,
        worktree_git_dir=Path(record.data["git_dir"]),
        common_dir=repo.common_dir,
        state_dir=repo.state_dir,
        branch=record.branch,
        readable=under_private_dirs(needed),
        checkouts=_checkouts(workspace, env, needed),
        own_state=state.own,
        obeyed=state.obeyed,
        network=network,
        private_git=private.root,
        published_objects=published,
        max_processes=sandbox_process_limit(),
        own_dir=paths.dir,
        hidden=_hidden(workspace),
        secrets=_secrets(workspace, env, configs, state.paths, Path(argv[0]).name),
        configs=_credential_free_configs(workspace, configs),
        git_dir_also=git_dir_includes(workspace),
    )
    return bwrap_argv(mounts) + argv


def _needed(workspace: Workspace, argv: Sequence[str], env: Mapping[str, str]) -> list[Path]:
    """What confined code must still read: the repository's git dir, Python and loomtui, the program,
    and the resolver's configuration (those under /tmp or the person's checkout are bound back).

    loomtui's own package too: an editable install (a clone under /tmp, say, or the very
    checkout it manages) imports from there, and the script agent and hooks run this loomtui. The
    program's own files too: a symlink's target (npm links bin/claude into
    lib/node_modules), its package, and the interpreter of a `#!` script.
    """
    repo = workspace.paths
    path_dirs = [Path(p) for p in env.get("PATH", "").split(os.pathsep) if p]
    return [repo.common_dir, Path(sys.prefix), Path(sys.base_prefix),
            Path(loomtui.__file__).resolve().parent, *path_dirs, *program_files(argv[0], env.get("PATH")),
            Path(os.path.realpath("/etc/resolv.conf"))]  # systemd-resolved's lives in /run


def confined_scratch_argv(workspace: Workspace, tree: Path, argv: Sequence[str], env: Mapping[str, str],
                          writable: Sequence[Path] = ()) -> list[str]:
    """`argv` run in a scratch tree (a commit's baseline, a merged gate), confined as an agent is
    when isolation is available: its code may be any sandbox's. Without bwrap it runs as it is."""
    if not isolation_available():
        return [*oom_first(), *argv]  # the OOM killer's first choice still, as under bwrap
    needed = _needed(workspace, argv, env)
    configs = _git_configs(workspace, env)
    # Nor the shared object store (a tree is an export: its code needs no git): the person's staged and
    # stashed work and every sandbox's commits are objects there (see seen_objects).
    return scratch_bwrap_argv(tree, workspace.paths.common_dir, workspace.paths.state_dir,
                              readable=under_private_dirs(needed),
                              hidden=(*_hidden(workspace), workspace.paths.common_dir / "objects"), writable=writable,
                              secrets=_secrets(workspace, env, configs, writable),
                              configs=_credential_free_configs(workspace, configs),
                              checkouts=_checkouts(workspace, env, needed), git_dir_also=git_dir_includes(workspace),
                              max_processes=sandbox_process_limit()) + list(argv)


def _checkouts(workspace: Workspace, env: Mapping[str, str], needed: Sequence[Path]) -> tuple[Checkout, ...]:
    """The person's checkouts of this repository (this one, the main one and its other linked worktrees),
    each shown to confined code as an empty folder but for the `needed` paths in it; not one that holds a
    home (a repository of dotfiles: the home's secrets are hidden anyway). A linked worktree of the
    person's with its work in progress and its `.env` was read whole."""
    homes = _homes(env)
    roots = [root for root in _person_checkouts(workspace) if not any(home.is_relative_to(root) for home in homes)]
    return tuple(checkout_shown(root, needed) for root in roots)


def _person_checkouts(workspace: Workspace) -> list[Path]:
    """This checkout, the main one (when this is a linked worktree) and every other worktree git lists
    for the repository that is no sandbox's (those are hidden with their folders, `_hidden`)."""
    repo = workspace.paths
    found = [workspace.root]
    if repo.common_dir.name == ".git":
        found.append(repo.common_dir.parent)
    # A sandbox's own admin dir is its agent's to write: a `gitdir` it planted there must not make a path
    # of its choosing hidden from every other sandbox. A person's worktree points back at its entry.
    not_theirs = [repo.common_dir, legacy_worktrees_dir(repo), *worktree_roots(workspace)]
    admin = repo.common_dir / "worktrees"
    for entry in sorted(admin.iterdir()) if admin.is_dir() else ():
        try:
            tree = Path((entry / "gitdir").read_text(encoding="utf-8", errors="replace").strip()).parent
            back = (tree / ".git").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        points_back = back.startswith("gitdir: ") and Path(back[8:]).resolve() == entry.resolve()
        if tree.is_absolute() and points_back and not any(tree.is_relative_to(root) for root in not_theirs):
            found.append(tree)
    return [tree for tree in dict.fromkeys(found) if tree.is_dir() and not tree.is_symlink()]


def git_dir_includes(workspace: Workspace) -> tuple[Path, ...]:
    """The files in the repository's git dir its config includes (`include.path`, `includeIf.*.path`,
    relative to the config): the git dir confined code sees holds what git needs only, and an alias or
    `user.name` from `.git/extra.cfg` was silently gone."""
    common = workspace.paths.common_dir
    done = Git(workspace.root).run("config", "--file", str(common / "config"), "--null", "--get-regexp",
                                   r"^include(if\..*)?\.path$")
    found = []
    for entry in done.out.split("\0") if done.status == 0 else []:
        value = entry.partition("\n")[2]
        path = Path(os.path.expanduser(value)) if value.startswith("~") else common / value
        resolved = Path(os.path.normpath(path))
        if value and resolved.is_relative_to(common) and resolved != common and resolved.exists():
            found.append(resolved)
    return tuple(found)


def _homes(env: Mapping[str, str]) -> list[Path]:
    """This user's home and the one confined code is given: where its credentials and configs live."""
    return sorted({Path.home(), *([Path(env["HOME"])] if env.get("HOME") else [])})


def _git_configs(workspace: Workspace, env: Mapping[str, str]) -> dict[Path, str]:
    """The git config files confined code's git reads, with their text: the repository's, and the user's
    own (~/.gitconfig, $XDG_CONFIG_HOME/git/config) under each of `_homes`; those that can be read."""
    xdg = [Path(env["XDG_CONFIG_HOME"]) / "git" / "config"] if env.get("XDG_CONFIG_HOME") else []
    texts = {}
    for config in dict.fromkeys([workspace.paths.common_dir / "config", *xdg, *(
            path for home in _homes(env) for path in (home / ".gitconfig", home / ".config" / "git" / "config"))]):
        try:
            texts[config] = config.read_text("utf-8", "surrogateescape")
        except OSError:
            continue
    return texts


def _credential_free_configs(workspace: Workspace, configs: Mapping[Path, str]) -> tuple[tuple[Path, Path], ...]:
    """A copy of each git config confined code reads without its credentials, where it holds any
    (`credential_free`: a token in a URL, an `http.extraheader`; a user's `[url "https://TOKEN@..."]`
    was read whole): (the copy, the config). Written anew each time (renamed into place: others read it)."""
    found = []
    for config, text in configs.items():
        cleaned = credential_free(text)
        if cleaned == text:
            continue
        name = "repo-config" if config == workspace.paths.common_dir / "config" else \
            "git-config-" + hashlib.sha256(os.fsencode(config)).hexdigest()[:12]
        copy = workspace.paths.state_dir / name
        fd, temporary = tempfile.mkstemp(dir=workspace.paths.state_dir, prefix=f".{name}-")
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(cleaned)
        os.replace(temporary, copy)
        found.append((copy, config))
    return tuple(found)


_STORED_CREDENTIALS: Final = re.compile(r"(?im)^\s*helper\s*=\s*[\"']?store\s+--file[= ]\s*[\"']?([^\s\"']+)")


def _credential_stores(workspace: Workspace, env: Mapping[str, str], configs: Mapping[Path, str]) -> list[Path]:
    """The files git's `store` credential helper keeps passwords in where a config names its own
    (`helper = store --file ~/.my-git-creds`): only the default ~/.git-credentials was hidden."""
    found = []
    home = Path(env.get("HOME") or Path.home())
    for text in configs.values():
        for named in _STORED_CREDENTIALS.findall(text):
            path = home / named[2:] if named.startswith("~/") else Path(named)
            found.append(path if path.is_absolute() else workspace.root / path)
    return found


def _secrets(workspace: Workspace, env: Mapping[str, str], configs: Mapping[Path, str],
             writable: Sequence[Path] = (), program: str = "") -> tuple[Path, ...]:
    """The user's credentials that confined code must not read: under this user's home and the one
    the code is given (but a cloud's login its runtime is told to use), the key decisions are signed
    with (what it reads it could send away), and every agent runtime's state but what it writes (`writable`:
    its own runtime's state, given to it as the sandbox's own copy):
    a command or Codex agent read Claude Code's login token in ~/.claude/.credentials.json; and every
    other vendor CLI's login files (`VendorEnv.logins`) but those of the agent's own `program`: a Claude
    Code agent read the OpenAI key Aider keeps in ~/.env."""
    homes = _homes(env)
    key = signing_key(workspace.root) or ""
    extra: list[Path] = []
    if key and not key.startswith("key::"):
        named = workspace.root / os.path.expanduser(key)  # a relative one, as ssh-keygen run there reads it
        # A `.pub` named (git's usual `user.signingkey`): ssh-keygen signs with the private key beside it.
        extra = [named, named.with_name(named.name.removesuffix("-cert.pub").removesuffix(".pub"))]
    extra += _credential_stores(workspace, env, configs)
    for vendor, spec in VENDOR_ENV.items():
        if vendor != program:
            extra += [path for home in homes for raw in spec.logins
                      if (path := expand_path(raw, {**env, "HOME": str(home)})) is not None]
    own = [Path(path) for path in writable]
    for home in homes:
        for raw in (raw for paths in STATE_PATHS.values() for raw in paths):
            path = expand_path(raw, {**env, "HOME": str(home)})
            if path is None or any(path == mine or path.is_relative_to(mine) or mine.is_relative_to(path)
                                   for mine in own):
                continue
            # A $CODEX_HOME or $CLAUDE_CONFIG_DIR set to a home or the repository is no runtime's own folder.
            if any(place.is_relative_to(path) for place in (*homes, workspace.root)) or \
                    path.is_relative_to(workspace.root):
                continue
            extra.append(path)
    return secret_paths(homes, extra, env)


def _hidden(workspace: Workspace) -> tuple[Path, ...]:
    """What no sandbox sees: every sandbox's state dir, git admin dir and worktree (its own are bound
    back on top), wherever this repository's worktrees live; only folders that exist (the
    filesystem is read-only, so bwrap could not make a mount point for one that does not)."""
    repo = workspace.paths
    # First the folder every repository's worktrees share by default (one per repository in it): an agent
    # in one repository read another's sandboxes, their work in progress and their task files.
    shared = data_home() / "loomtui" / "worktrees"
    folders = [shared, repo.state_dir / "sandboxes", repo.common_dir / "worktrees", legacy_worktrees_dir(repo),
               *worktree_roots(workspace)]
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique and folder.is_dir():
            unique.append(folder)
    return tuple(unique)
