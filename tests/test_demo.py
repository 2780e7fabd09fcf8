"""The demo repository is a real git repository whose own test suite passes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loomtui.demo import prepare_demo_repo
from tests.conftest import git

LOOMTUI = shutil.which("loomtui") or "loomtui"


def test_demo_copy_is_a_committed_git_repository_whose_tests_pass(tmp_path: Path) -> None:
    repo = prepare_demo_repo(tmp_path)
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "status", "--porcelain") == ""
    tracked = git(repo, "ls-files").splitlines()
    assert {".loom/loom.yaml", ".loom/policy.yaml", "AGENTS.md", "CODEOWNERS"} <= set(tracked)
    assert not any("__pycache__" in name for name in tracked)
    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=repo, capture_output=True, text=True, timeout=120)
    assert suite.returncode == 0, suite.stdout[-2000:]
    assert " passed" in suite.stdout


def test_sample_repo_is_big_enough_for_an_interesting_graph(tmp_path: Path) -> None:
    import ast

    repo = prepare_demo_repo(tmp_path)
    modules = [p for p in repo.rglob("*.py") if "tests" not in p.parts and p.name != "conftest.py"]
    definitions = sum(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for path in modules for node in ast.walk(ast.parse(path.read_text()))
    )
    assert len(modules) >= 15 and definitions >= 60


def test_the_demos_sandboxes_live_inside_its_folder_so_deleting_it_leaves_nothing(tmp_path: Path) -> None:
    """`loomtui demo` (and every bench built on the sample) deletes its folder when it ends: the
    sandboxes' worktrees must be in it, not in the user's data dir pointing at a deleted repository."""
    from loomtui.workflow.tasks import create_sandbox
    from loomtui.workspace import open_workspace

    repo = prepare_demo_repo(tmp_path)
    workspace = open_workspace(repo)
    try:
        record = create_sandbox(workspace, "document the ledger", "command", command=["true"])
    finally:
        workspace.close()
    worktree = Path(record.worktree)
    assert worktree.is_dir() and worktree.is_relative_to(repo.parent)
    assert not worktree.is_relative_to(repo)  # never inside the working tree itself
    shutil.rmtree(repo.parent)
    assert not worktree.exists()


def test_demo_json_runs_headless_never_the_full_screen_app(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` is read by a script: drawing the app there put terminal codes on its stdout."""
    import loomtui.demo.headless
    import loomtui.tui.app
    from loomtui.cli import main

    ran: list[str] = []
    monkeypatch.setattr(loomtui.demo.headless, "run_headless",
                        lambda workspace, on_step: ran.append("headless") or {"ok": True})
    monkeypatch.setattr(loomtui.tui.app, "run_app", lambda *a, **k: ran.append("app") or 0)
    assert main(["demo", "--json"]) == 0
    # `kept`: its `repo` is removed as the command ends unless --keep (a script read a path that was gone).
    assert ran == ["headless"] and json.loads(capsys.readouterr().out) == {"ok": True, "kept": False}
