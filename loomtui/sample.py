"""A fresh git repository made from the bundled sample repo (the demo's, the benches').

The demo drives the same engines as real use; all that is special about it is
where the repository comes from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from loomtui.errors import LoomError
from loomtui.resources import bundled

_IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc", ".benchmarks")


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ)
    # A fresh machine may have no git identity; the demo commit must not fail for it.
    env.setdefault("GIT_AUTHOR_NAME", "loomtui demo")
    env.setdefault("GIT_AUTHOR_EMAIL", "demo@loomtui.invalid")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        raise LoomError("git is not installed or not on PATH") from None
    except subprocess.CalledProcessError as exc:
        raise LoomError(f"git {' '.join(args)} failed: {exc.stderr.strip()}") from None
    return done.stdout.strip()


def _has_git_identity(repo: Path) -> bool:
    """Whether git can name an author here (config or environment) without the demo's defaults."""
    done = subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], cwd=repo, capture_output=True, check=False)
    return done.returncode == 0


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
