"""A fresh git repository made from the bundled sample repo (the demo's, the benches').

The demo drives the same engines as real use; all that is special about it is
where the repository comes from.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from loomtui.errors import LoomError
from loomtui.gitcmd import Git
from loomtui.resources import bundled

_IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc", ".benchmarks")


def _git(cwd: Path, *args: str) -> str:
    # A fresh machine may have no git identity; the demo commit must not fail for it. Only the
    # defaults go in `env` (Git lays it over the environment, after its C locale).
    name = os.environ.get("GIT_AUTHOR_NAME", "loomtui demo")
    email = os.environ.get("GIT_AUTHOR_EMAIL", "demo@loomtui.invalid")
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
           "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", name),
           "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", email)}
    result = Git(cwd).run(*args, env=env)
    if result.status != 0:
        raise LoomError(f"git {' '.join(args)} failed: {result.err.strip()}")
    return result.out.strip()


def _has_git_identity(repo: Path) -> bool:
    """Whether git can name an author here (config or environment) without the demo's defaults."""
    return Git(repo).ok("var", "GIT_COMMITTER_IDENT")


def prepare_demo_repo(parent: Path | None = None) -> Path:
    """Copy the sample repo into a new temporary directory and commit it on `main`."""
    source = bundled("sample_repo")
    if not (source / ".loom").is_dir():
        raise LoomError(f"the bundled sample repo is missing or incomplete at {source}")
    try:
        base = Path(tempfile.mkdtemp(prefix="loomtui-demo-", dir=parent))
    except OSError as exc:
        raise LoomError(f"cannot create the demo directory: {exc.strerror}") from None
    repo = base / "billing-service"
    shutil.copytree(source, repo, ignore=_IGNORED)
    _git(repo, "init", "-q", "-b", "main")
    if not _has_git_identity(repo):
        # The scenario's merge commits need an identity too; this one stays in the demo repository.
        _git(repo, "config", "user.name", "loomtui demo")
        _git(repo, "config", "user.email", "demo@loomtui.invalid")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "Initial commit of the billing service")
    return repo
