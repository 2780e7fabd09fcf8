"""Real agents get the slice where they read it: Claude Code its CLAUDE.md, Codex its AGENTS.md,
Aider the file given with `--read`.

Each built-in runtime runs through `loomtui sandbox new` on the bundled sample repo against a fake
model API on 127.0.0.1 (tests/fake_anthropic.py, tests/fake_openai.py, as tests/test_runtime_claude.py
and tests/test_runtime_codex_aider.py run them), once, isolated where bubblewrap works. What the model
received is the proof: a task on invoice totals reaches it with ADR 0002's own words, a task on the
refund notification template with ADR 0004's and without ADR 0002's. The model only answers "done":
nothing is edited, nothing is reviewed. A CLI that is not installed is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import demo_repo
from loomtui.execution import sandboxes as sb
from loomtui.execution.isolation import isolation_available
from loomtui.workspace import open_workspace
from tests.conftest import agent_ended
from tests.fake_anthropic import FakeAnthropic
from tests.fake_openai import FakeOpenAI
from tests.test_runtime_claude import agent_env as claude_env
from tests.test_runtime_codex_aider import AIDER, CODEX
from tests.test_runtime_codex_aider import agent_env as openai_env

CLAUDE = shutil.which("claude")

INVOICES = "Make invoice totals round each line half-even before summing"
NOTIFICATIONS = "Fix a typo in the refund notification template"
ADR_0002 = "differed (incident INC-2231)"  # a line only ADR 0002 has (its context: why banker's rounding)
ADR_0004 = "An email template helper imported"  # a line only ADR 0004 has
SLICE = "# Context for this task"
ISOLATED = isolation_available()  # as `sandbox new` chooses: one variant keeps this file quick


@pytest.fixture
def scratch() -> Iterator[Path]:
    """Outside /tmp: bubblewrap gives the agent a private /tmp, so its HOME can't live there."""
    path = Path(tempfile.mkdtemp(prefix="loomtui-knowledge-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_agents(repo: Path, runtime: str, tasks: dict[str, tuple[str, dict[str, str]]]) -> dict[str, sb.SandboxRecord]:
    """`loomtui sandbox new --runtime RUNTIME` for every task at once (each with its own model's
    environment); each sandbox once its agent has ended."""
    started = {}
    for name, (task, env) in tasks.items():
        argv = [sys.executable, "-m", "loomtui", "sandbox", "new", "--runtime", runtime, "--task", task, "--json",
                *([] if ISOLATED else ["--no-isolation"])]
        started[name] = subprocess.Popen(argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
    ids = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (name, err)
        ids[name] = json.loads(out)["id"]
    workspace = open_workspace(repo)
    try:
        ended = {name: sb.wait_for_status(workspace, sandbox, {"exited", "failed"}, timeout=120)
                 for name, sandbox in ids.items()}
        for name, record in ended.items():
            log = sb.log_path(workspace, record.id).read_text(errors="replace")
            assert record.status == "exited" and record.exit_code == 0, (name, record.data.get("error"), log[-2000:])
            assert record.isolation == ("bwrap" if ISOLATED else "none")
        return ended
    finally:
        workspace.close()


def sent(requests: list[dict[str, Any]]) -> str:
    """Everything the agent sent the model, as one text."""
    return "\n".join(json.dumps(body) for body in requests)


@pytest.mark.skipif(CLAUDE is None, reason="the claude CLI is not installed (npm i -g @anthropic-ai/claude-code)")
def test_claude_code_reads_the_slice_from_claude_md(tmp_path: Path, scratch: Path) -> None:
    repo = demo_repo(tmp_path)
    with FakeAnthropic() as invoices, FakeAnthropic() as notifications:
        ended = run_agents(repo, "claude", {
            "invoices": (INVOICES, claude_env(scratch, invoices.url)),
            "notifications": (NOTIFICATIONS, claude_env(scratch, notifications.url)),
        })
    assert invoices.turn_requests and notifications.turn_requests, "claude never reached the model"
    got = sent(invoices.turn_requests)
    assert SLICE in got and "CLAUDE.md" in got
    assert ADR_0002 in got  # the team's decision, in the model's own input
    other = sent(notifications.turn_requests)
    assert SLICE in other and ADR_0004 in other
    assert ADR_0002 not in other  # a task on templates is not given the rounding decision
    assert ended["invoices"].data["context"]["sections"]  # what was given is on record


@pytest.mark.skipif(CODEX is None, reason="the codex CLI is not installed (npm i -g @openai/codex)")
def test_codex_reads_the_slice_from_agents_md(tmp_path: Path, scratch: Path) -> None:
    repo = demo_repo(tmp_path)
    # An AGENTS.override.md of the repository's own, which Codex reads in place of AGENTS.md: the slice
    # went to AGENTS.md only, and never reached the model.
    (repo / "AGENTS.override.md").write_text("# Override\n\nInstructions that replace AGENTS.md.\n")
    subprocess.run(["git", "add", "AGENTS.override.md"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "an override"], cwd=repo, check=True)
    with FakeOpenAI() as invoices, FakeOpenAI() as notifications:
        # The sample repo has an AGENTS.md of its own: the slice replaces it in the worktree.
        run_agents(repo, "codex", {
            "invoices": (INVOICES, openai_env("codex", scratch, invoices)),
            "notifications": (NOTIFICATIONS, openai_env("codex", scratch, notifications)),
        })
    assert invoices.requests and notifications.requests, "codex never reached the model"
    got, other = sent(invoices.requests), sent(notifications.requests)
    assert SLICE in got and "AGENTS.md" in got and ADR_0002 in got
    assert SLICE in other and ADR_0004 in other and ADR_0002 not in other


@pytest.mark.skipif(AIDER is None, reason="aider is not installed (.ci/run: /opt/aider-venv)")
def test_aider_reads_the_slice_given_with_read(tmp_path: Path, scratch: Path) -> None:
    repo = demo_repo(tmp_path)
    with FakeOpenAI() as api:
        env = openai_env("aider", scratch, api)
        run_agents(repo, "aider", {"invoices": (INVOICES, env)})
    assert api.requests, "aider never reached the model"
    got = sent(api.requests)
    assert "context.md" in got and SLICE in got and ADR_0002 in got


def test_a_command_gets_the_slice_s_path_as_loom_context(tmp_path: Path) -> None:
    """A command (or script) runtime reads `$LOOM_CONTEXT`: the slice's path, the same as
    `$LOOM_CONTEXT_FILE` (kept for what already reads that)."""
    repo = demo_repo(tmp_path)
    copy = ("import os, shutil; assert os.environ['LOOM_CONTEXT'] == os.environ['LOOM_CONTEXT_FILE'];"
            " shutil.copy(os.environ['LOOM_CONTEXT'], 'got.md')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    done = subprocess.run([sys.executable, "-m", "loomtui", "sandbox", "new", "--runtime", "command", "--task",
                           INVOICES, "--json", "--no-isolation", "--", sys.executable, "-c", copy],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    sandbox = json.loads(done.stdout)["id"]
    workspace = open_workspace(repo)
    try:
        # Settled, not `exited`: its change (got.md) is reviewed and may merge at once, and a poll
        # for `exited` could miss that moment on a loaded machine (it did in CI).
        record = agent_ended(workspace, sandbox, timeout=60)
        assert record is not None and record.exit_code == 0, sb.read_log_tail(workspace, sandbox)
        got = (Path(record.worktree) / "got.md").read_text()
        assert got == sb.sandbox_paths(workspace.paths, sandbox).context.read_text()
        assert got.startswith(SLICE) and ADR_0002 in got
    finally:
        workspace.close()
