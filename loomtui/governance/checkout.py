"""Whose policy the checkout holds: loomtui judges by the files in the repository's own checkout, and a
person who put an agent's branch there (checked out, a branch of their own made from it, its policy file
checked out or squash-merged uncommitted) put that agent's policy, gates and config in its place for every
review, decision, hook answer and override check made meanwhile."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

import yaml

from loomtui.errors import ConfigError, LoomError
from loomtui.gitcmd import THE_CHECKOUT_ITSELF, Git
from loomtui.workspace import Workspace

POLICY_FILES: Final = (".loom", "CODEOWNERS", ".github/CODEOWNERS", "docs/CODEOWNERS")
"""Where loomtui's config, the policy and the code owners live in a repository."""
_TRUNKS: Final = ("main", "master")
_CANDIDATES: Final = 50
"""Commits of HEAD's beyond the trunk that touch the policy's files, looked at (beyond them: not judged)."""


def _git(root: Path, *args: str) -> str | None:
    """`git ARGS` on the checkout at `root` itself: its output, or None when git failed."""
    done = Git(root).run(*args, env=THE_CHECKOUT_ITSELF)
    return done.out.strip() if done.status == 0 else None


_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DEFAULT_SIGNERS: Final = ".loom/allowed_signers"
"""Where the policy's signers are when it names none (`DecisionSigning.allowed_signers`)."""
_READ: dict[tuple[str, int, int, int, int], object] = {}
"""What a file said (a few names, never the parsed file), by (path, inode, ctime_ns, mtime_ns, size): the app's
snapshot asks for the policy's files each time it reads (a 1,000-rule policy parsed in pure Python took a snapshot
from 26 ms to 1.3 s). The inode and ctime: a file replaced, or its mtime set back (`cp -p`), is read again."""


def _as_last_read(file: Path, read: Callable[[], object]) -> object:
    """`read()` of `file`, again only once the file changed."""
    info = file.stat()
    key = (str(file), info.st_ino, info.st_ctime_ns, info.st_mtime_ns, info.st_size)
    found = _READ.get(key, _READ)
    if found is _READ:  # (a thread may clear it meanwhile: what was read is returned, not looked up again)
        found = read()
        if len(_READ) > 64:
            _READ.clear()
        _READ[key] = found
    return found


def _named_in(policy_file: Path) -> tuple[str, ...] | None:
    """The paths a policy file names; None when it is no YAML (a typo being fixed)."""
    try:
        top = yaml.load(policy_file.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(top, dict):
        return ()
    decisions = top.get("decisions")
    named = [top.get("codeowners"), decisions.get("allowed_signers") if isinstance(decisions, dict) else None]
    return tuple(name for name in named if isinstance(name, str))


def _policy_file_names(policy_file: Path) -> tuple[str, ...] | None:
    try:
        names = _as_last_read(policy_file, lambda: _named_in(policy_file))
    except OSError:
        return ()  # none there: the built-in default, or loading it says what is wrong
    return names if isinstance(names, tuple) else None


def files_the_policy_names(policy_file: Path) -> list[str]:
    """The paths a policy file names (`codeowners:`, `decisions.allowed_signers`); none for one unread."""
    return list(_policy_file_names(policy_file) or ())


def _policy_named(workspace: Workspace) -> str | None:
    """The policy's path as loom.yaml names it; None while loom.yaml cannot be read."""
    try:
        try:
            named = _as_last_read(workspace.paths.config_path, lambda: workspace.load_config().policy)
        except FileNotFoundError:  # no loom.yaml: the defaults
            named = workspace.load_config().policy
    except (OSError, ConfigError):
        return None
    return str(named)


def policy_paths(workspace: Workspace) -> list[str]:
    """Every file loomtui's judging reads in the checkout: `.loom/`, the CODEOWNERS, and the policy and the
    files it names wherever loom.yaml puts them (`governance/policy.yaml`)."""
    policy = _policy_named(workspace)
    if policy is None:
        return list(POLICY_FILES)
    return _paths_of(policy, files_the_policy_names(workspace.root / policy))


def _paths_of(policy: str, named: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*POLICY_FILES, policy, DEFAULT_SIGNERS, *named]))


POLICY_READ_KEY: Final = "policy_read"
"""Sandbox data: `policy_fingerprint` as its last review read it (an approval is judged again once it changes)."""


def policy_fingerprint(workspace: Workspace) -> str | None:
    """A digest of the files `policy_paths` names as the checkout has them now (the folders among them aside):
    a review records it, and a change approved under another policy is judged again before it merges (a policy
    tightened after the approval merged it, unsaid; CI's gate then said NEEDS APPROVAL). None while loom.yaml
    cannot be read, or the policy is no YAML (a typo there, fixed, had every approval asked again)."""
    policy = _policy_named(workspace)
    named = _policy_file_names(workspace.root / policy) if policy is not None else None
    if policy is None or named is None:
        # Nor while the policy is no YAML: a typo saved with the app open had every approved change's review
        # fail on it, left failed once it was fixed.
        return None
    digest = hashlib.sha256()
    for path in _paths_of(policy, named):
        file = workspace.root / path
        try:
            content = file.read_bytes() if file.is_file() else b""
        except OSError as exc:  # unreadable now: said as such, never as the same policy
            content = f"unreadable: {exc.strerror}".encode()
        digest.update(f"{path}\0{len(content)}\0".encode() + content)
    return digest.hexdigest()


def policy_changed(workspace: Workspace, data: Mapping[str, object], now: str | None = None) -> bool:
    """Whether the policy's files differ from those the review that wrote `data` read (`now`: the fingerprint,
    when the caller has read it). A review from before reviews recorded it is not judged again, nor is anything
    while loom.yaml cannot be read."""
    read = data.get(POLICY_READ_KEY)
    if not isinstance(read, str):
        return False
    now = now or policy_fingerprint(workspace)
    return now is not None and read != now


def refuse_an_agents_policy(workspace: Workspace) -> None:
    """Raise LoomError (exit 1) when the checkout holds a sandbox's change to the files `policy_paths` names:
    a commit its agent made (after its branch's base) that the trunk lacks, or a file as a sandbox's branch
    has it, uncommitted. Judged by it, an agent's change approved itself, and another agent's too."""
    root, paths = workspace.root, policy_paths(workspace)
    for commit in _commits_beyond_the_trunk(root, paths):
        branch = _made_on(workspace, commit)
        if branch:
            raise LoomError(f"the checkout at {root} holds {branch}'s change to loomtui's config or policy "
                            f"(commit {commit[:12]}): no change is judged by an agent's own policy; check out "
                            "your branch again (`git switch -`), then do it", exit_code=1)
    for path, branch in _files_as_a_sandbox_has_them(root, paths):
        raise LoomError(f"the checkout at {root} holds {branch}'s version of {path}, uncommitted: no change is "
                        f"judged by an agent's own policy; put yours back (`git restore -- {path}`), then do it",
                        exit_code=1)


def _commits_beyond_the_trunk(root: Path, paths: list[str]) -> list[str]:
    """HEAD's commits touching `paths` that the trunk lacks (with no trunk: that no person's branch has)."""
    trunk = next((name for name in _TRUNKS if _git(root, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")),
                 None)
    beyond = [f"^{trunk}"] if trunk else ["--not", "--exclude=loom/*", "--branches", "--exclude=*/loom/*",
                                          "--remotes"]
    found = _git(root, "rev-list", "-n", str(_CANDIDATES), "HEAD", *beyond, "--", *paths)
    return (found or "").split()


def _made_on(workspace: Workspace, commit: str) -> str | None:
    """The sandbox branch `commit` was made on (after its base), or None when no sandbox made it."""
    listed = _git(workspace.root, "for-each-ref", "--contains", commit, "--format=%(refname:short)",
                  "refs/heads/loom/") or ""
    for branch in listed.split():
        record = workspace.store.get_sandbox(branch.removeprefix("loom/"))
        base = record.base_sha if record is not None else ""
        # Its base's commits are the branch it started from, not its agent's (a task on release has them).
        if not base or _git(workspace.root, "merge-base", "--is-ancestor", commit, base) is None:
            return branch
    return None


def _files_as_a_sandbox_has_them(root: Path, paths: list[str]) -> list[tuple[str, str]]:
    """Each of `paths` changed in the working tree whose content is a sandbox branch tip's (checked out from
    it, or squash-merged), with that branch."""
    git = Git(root)
    listed = git.run("status", "--porcelain", "-z", "--no-renames", "--untracked-files=all", "--", *paths,
                     env=THE_CHECKOUT_ITSELF).out
    changed = [entry[3:] for entry in listed.split("\0") if len(entry) > 3]  # `XY path`, its status kept whole
    if not changed:
        return []
    tips = [line.split(" ", 1) for line in (_git(
        root, "for-each-ref", "--format=%(objectname) %(refname:short)", "refs/heads/loom/") or "").splitlines()]
    found = []
    for path in changed:
        here = _git(root, "hash-object", "--", path)
        # Every tip's blob at once (one process), then, for one that matches, which branch it is.
        if not here or here not in git.object_sizes([f"{sha}:{path}" for sha, _name in tips], env=THE_CHECKOUT_ITSELF):
            continue
        branch = next(name for sha, name in tips
                      if _git(root, "rev-parse", "--verify", "--quiet", f"{sha}:{path}") == here)
        found.append((path, branch))
    return found
