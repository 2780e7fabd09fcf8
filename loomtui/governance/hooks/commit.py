"""The git pre-commit hook's side: what a staged change touches, read with git.

Stdlib only: it runs in the hook process before every commit in a sandbox. It
sends the staged paths and, for Python files, their text at HEAD and as staged;
the gate maps those to regions (`check_commit`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from loomtui.errors import LoomError
from loomtui.gitcmd import Git

NO_SANDBOX: Final = "-"
"""The id a person's own commit is checked under: it holds no claims, so every claim is another's."""
MAX_COMMIT_TEXT: Final = 8 << 20
"""Python text sent with one commit check; a file beyond it counts as a change to all of it."""


def configured_sandbox(tree: Path) -> str | None:
    """The sandbox id `hook install` recorded in this worktree's own git config."""
    value = git(tree, "config", "--get", "loom.sandbox", check=False).strip()
    return value or None


def staged_request(tree: Path | None) -> dict[str, Any] | None:
    """The `check_commit` request for the staged change (the index against HEAD; a merge's, against the
    target merged in: resolving a conflict was refused over another sandbox's claim on code only the
    target had changed); None when empty."""
    merging = bool(git(tree, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).strip())
    base = "MERGE_HEAD" if merging else "HEAD"  # HEAD named only where a first commit has none
    names = git(tree, "diff", "--cached", "--name-only", "--no-renames", "-z", *([base] if merging else [])).split("\0")
    paths = sorted({n for n in names if n})
    if not paths:
        return None
    python = [p for p in paths if p.endswith(".py") and "\n" not in p]
    texts = Git(tree or Path.cwd()).blob_texts([f"{base}:{p}" for p in python] + [f":{p}" for p in python])
    regions = [p for p in paths if p not in python]
    files: list[dict[str, str]] = []
    budget = MAX_COMMIT_TEXT
    for position, path in enumerate(python):
        old, new = texts[position], texts[len(python) + position]
        budget -= len(old) + len(new)
        if budget < 0:
            regions.append(path)  # too much to send: the whole file
        else:
            files.append({"path": path, "old": old, "new": new})
    return {"paths": paths, "regions": regions, "files": files}


def staged_changes(tree: Path) -> tuple[list[str], list[str]]:
    """The paths and regions the staged change (the index against HEAD) touches."""
    from loomtui.coordination.signatures import ParseBudget, changed_regions

    request = staged_request(tree)
    if request is None:
        return [], []
    regions, budget = list(request["regions"]), ParseBudget()
    for item in request["files"]:
        regions.extend(c.region_id for c in changed_regions(item["old"], item["new"], item["path"], budget))
    return request["paths"], list(dict.fromkeys(regions))


def git(tree: Path | None, *args: str, check: bool = True, env: Mapping[str, str] | None = None) -> str:
    """git's stdout exactly as written (a `-z` listing keeps its NULs), "" when it fails and `check` is off."""
    done = Git(tree or Path.cwd()).raw(*args, env=env)
    if check and done.status != 0:
        raise LoomError(f"git {' '.join(args[:2])}: {done.err.decode(errors='replace').strip() or 'failed'}")
    return done.out.decode("utf-8", "replace") if done.status == 0 else ""
