"""Shared fixtures: real git repositories in temporary directories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep tests away from the developer's own config and identity."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOOMTUI_CONFIG_DIR", str(tmp_path_factory.mktemp("userconfig")))
    # Sandboxes' worktrees go under the user's data dir: a throwaway one, never the real ~/.local/share.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("userdata")))
    monkeypatch.delenv("LOOMTUI_WORKTREES", raising=False)
    monkeypatch.delenv("LOOM_USER", raising=False)


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with a fixed identity and return its stdout."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty-ish git repository with one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "README.md").write_text("# test repo\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root
