"""Codex and Aider, the real CLIs, end to end through `loomtui sandbox new` (issue #9).

Each runs the built-in runtime against a scripted model on 127.0.0.1 (tests/fake_openai.py),
under bubblewrap and without it, on the bundled sample repo:

- an edit to a free region lands and the agent's own commit is on the sandbox branch;
- an edit to a region another sandbox holds: the agent's commit is refused by the git
  pre-commit hook (through the broker, under bubblewrap) naming the holder; loomtui saves
  the leftover onto the branch and the review (run by the supervisor when the agent ends)
  holds it for people;
- an edit to payments/ledger.py (the claim-stage `ledger-claims` rule: a lead must agree)
  is asked of people at review, nothing merges until every approval is in, and then (the
  sample's `merge: auto`) it merges by itself;
- a model API answering 500 (Codex), unreachable (Codex waits for it without end: stopped
  after the runtime's offline_timeout) or refusing the request (Aider, which exits 0 all
  the same): the agent's own error is in the log and its activity, the sandbox fails, claims kept.

Neither CLI reaches the internet: Codex talks to a provider of its own in CODEX_HOME's
config.toml (no websockets, no plugins, no update check, no analytics); Aider gets the
model's metadata from a warm cache and litellm's bundled price map (~/.env), no update
check or analytics. The CLIs are skipped when they are not installed (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import demo_repo
from loomtui.execution.isolation import isolation_available
from loomtui.execution.sandboxes import get_sandbox, log_path, wait_for_status
from loomtui.governance.policy import load_policy
from loomtui.store import EscalationRecord, SandboxRecord
from loomtui.workflow.engine import wait_until_settled
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import quick_gates, run_cli
from tests.fake_openai import FakeOpenAI, Turn, custom_call, fail, function_call, text

AIDER_VENV = Path("/opt/aider-venv")
CODEX = shutil.which("codex")
AIDER = shutil.which("aider") or (str(AIDER_VENV / "bin" / "aider") if (AIDER_VENV / "bin" / "aider").exists()
                                  else None)

needs_codex = pytest.mark.skipif(CODEX is None, reason="the codex CLI is not installed (npm i -g @openai/codex)")
needs_aider = pytest.mark.skipif(AIDER is None, reason="aider is not installed (.ci/run: /opt/aider-venv)")
needs_bwrap = pytest.mark.skipif(not isolation_available(), reason="bubblewrap does not work here")

RUNTIMES = [pytest.param("codex", marks=needs_codex), pytest.param("aider", marks=needs_aider)]
ISOLATION = [pytest.param(True, id="bwrap", marks=needs_bwrap), pytest.param(False, id="no-isolation")]
ISOLATED_WHERE_POSSIBLE = [pytest.param(isolation_available(), id="default-isolation")]
"""Codex and Aider run their whole flow once, as `sandbox new` would (isolated where bubblewrap
works): their agents behave alike either way, and the hooks without isolation are proven by
Claude Code's run in both modes (test_runtime_claude.py) and by test_hooks.py. The faults keep both."""

FREE = "notifications/formatting.py"
HELD = "customers/validation.py"
LEDGER = "payments/ledger.py"
LEAD, PAYMENTS = "lead@example.com", ("alice@example.com", "bob@example.com")


# -- the agent's world: a HOME, the CLI's config, the fake model -------------------------------


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory outside /tmp: bubblewrap gives the agent a private /tmp, so HOME can't live there."""
    path = Path(tempfile.mkdtemp(prefix="loomtui-e2e-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def codex_home(base: Path, api_url: str) -> Path:
    """CODEX_HOME with a model provider on loopback. Codex 0.171 does not read OPENAI_BASE_URL."""
    home = base / f"codex-{len(list(base.glob('codex-*')))}"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "gpt-5.5"\n'  # a catalog model with the classic tools: exec_command + apply_patch
        'model_provider = "loopback"\n'
        "check_for_update_on_startup = false\n"
        "[model_providers.loopback]\n"
        'name = "loopback"\n'
        f'base_url = "{api_url}"\n'
        'wire_api = "responses"\n'
        'env_key = "OPENAI_API_KEY"\n'
        "supports_websockets = false\n"
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
        "[analytics]\nenabled = false\n"
        "[features]\nplugins = false\napps = false\nremote_plugin = false\n"
    )
    return home


def aider_home(home: Path) -> None:
    """Aider's model-metadata cache warm (else it fetches litellm's price list from GitHub) and
    litellm told to use its bundled price map (~/.env: aider loads it before importing litellm)."""
    caches = home / ".aider" / "caches"
    caches.mkdir(parents=True, exist_ok=True)
    (caches / "model_prices_and_context_window.json").write_text(json.dumps({"fake-model": {
        "max_input_tokens": 128000, "max_output_tokens": 4096, "input_cost_per_token": 0,
        "output_cost_per_token": 0, "litellm_provider": "openai", "mode": "chat"}}))
    (home / ".env").write_text("LITELLM_LOCAL_MODEL_COST_MAP=True\n")


@dataclass
class Agent:
    """One sandbox's agent: its scripted model and the environment `sandbox new` runs with."""

    api: FakeOpenAI
    env: dict[str, str]
    sandbox: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def agent_env(runtime: str, scratch: Path, api: FakeOpenAI) -> dict[str, str]:
    home = scratch / "home"
    home.mkdir(exist_ok=True)
    # A user's git identity (Aider writes one into the repository's .git/config when git has
    # none, and under bubblewrap that file is read-only: it would die).
    (home / ".gitconfig").write_text("[user]\n\tname = Agent User\n\temail = agent@example.com\n")
    env = {**os.environ, "HOME": str(home), "OPENAI_API_KEY": "test"}
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "CODEX_HOME", "PYTHONPATH"):
        env.pop(name, None)
    if runtime == "codex":
        env["CODEX_HOME"] = str(codex_home(scratch, api.url))
    else:
        aider_home(home)
        env.update({"OPENAI_API_BASE": api.url, "AIDER_MODEL": "openai/fake-model", "AIDER_EDIT_FORMAT": "whole"})
        env["PATH"] = f"{Path(str(AIDER)).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def edit_turns(runtime: str, repo: Path, path: str, message: str) -> list[Turn]:
    """The model's replies for: change the first line (the docstring) of `path`, then commit."""
    old = (repo / path).read_text()
    first = old.splitlines()[0]
    changed = first.replace('"""', '"""Edited by the agent. ', 1)
    if runtime == "codex":
        patch = f"*** Begin Patch\n*** Update File: {path}\n@@\n-{first}\n+{changed}\n*** End Patch\n"
        return [custom_call("apply_patch", patch),
                function_call("exec_command", {"cmd": f"git add -A && git commit -q -m '{message}'"}),
                text("done")]
    # Aider: the whole file in its `whole` edit format; then the commit message it asks for.
    new = old.replace(first, changed, 1)
    return [text(f"Editing {path}.\n\n{path}\n```python\n{new}```\n"), text(message)]


def billing(tmp_path: Path) -> Path:
    """The sample repo with quick gates: these tests are about the runtimes, not the sample's tests."""
    return quick_gates(demo_repo(tmp_path))


def loom(repo: Path, *args: str, env: dict[str, str] | None = None, user: str | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real `loomtui` command in its own process (the lead's approval that lets the ledger merge)."""
    run_env = dict(env or os.environ)
    if user:
        run_env["LOOM_USER"] = user
    return subprocess.run([sys.executable, "-m", "loomtui", *args], cwd=repo, capture_output=True, text=True,
                          env=run_env, timeout=timeout, check=False)


def start_agents(repo: Path, runtime: str, isolated: bool, agents: dict[str, Agent]) -> None:
    """`sandbox new` for every agent at once; each gets its own model (its own environment)."""
    running = {}
    for name, agent in agents.items():
        args = ["sandbox", "new", "--runtime", runtime, "--task", agent.extra["task"], "--json",
                *agent.extra.get("args", ()), *([] if isolated else ["--no-isolation"])]
        running[name] = subprocess.Popen([sys.executable, "-m", "loomtui", *args], cwd=repo, env=agent.env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (name, process.returncode, out, err)
        agents[name].sandbox = json.loads(out)["id"]


def audit(workspace: Workspace) -> list[dict[str, Any]]:
    return [json.loads(line) for line in workspace.paths.audit_path.read_text().splitlines() if line.strip()]


def settled(workspace: Workspace, sandbox: str, timeout: float = 120) -> SandboxRecord:
    """The sandbox once its agent has ended and the supervisor has advanced it as far as it goes."""
    wait_until_settled(workspace, sandbox, timeout=timeout)
    return get_sandbox(workspace, sandbox)


def reviewed(workspace: Workspace, record: SandboxRecord, *rules: str) -> EscalationRecord:
    """The review the supervisor ran once the agent ended: the quick gates passed on the branch tip and
    the policy asks people (`rules` among its rules): an open post-gate escalation, `awaiting_review`."""
    assert record.status == "awaiting_review", (record.status, record.data)
    tip = subprocess.run(["git", "rev-parse", record.branch or ""], cwd=workspace.root, capture_output=True,
                         text=True, check=True).stdout.strip()
    post = workspace.store.get_escalation(int(record.data["review_escalation"]))
    assert post is not None and post.kind == "post-gate" and post.status == "open", post
    assert post.sandbox_id == record.id and post.data["commit"] == tip and post.data["outcome"] == "require"
    names = [rule["name"] for rule in post.data["rules"]]
    assert set(rules) <= set(names), names
    runs = sorted((r.gate, r.status, r.commit_sha) for r in workspace.store.gate_runs(record.id))
    assert runs == [("compile", "passed", tip), ("tests", "passed", tip)], runs
    assert {g: v["status"] for g, v in post.data["evidence"]["gates"].items()} == {"compile": "passed",
                                                                                    "tests": "passed"}
    actions = [e["action"] for e in audit(workspace) if e["subject"] == record.id]
    assert actions.index("sandbox.exited") < actions.index("sandbox.gating") < actions.index(
        "policy.evaluated") < actions.index("sandbox.awaiting_review"), actions
    return post


def branch_files(repo: Path, branch: str, base: str = "main") -> set[str]:
    out = subprocess.run(["git", "diff", "--name-only", f"{base}...{branch}"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def commit_subjects(repo: Path, branch: str, base: str = "main") -> list[str]:
    out = subprocess.run(["git", "log", "--format=%s", f"{base}..{branch}"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    return out.splitlines()


# -- the runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("isolated", ISOLATED_WHERE_POSSIBLE)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_real_agent_free_edit_lands_held_region_refused_ledger_waits_for_people(
        runtime: str, isolated: bool, tmp_path: Path, scratch: Path) -> None:
    repo = billing(tmp_path)
    workspace = open_workspace(repo)
    # Another sandbox holds the validation module (its agent never started).
    held = run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "hold validation", "--no-start",
                "--claim", HELD, "--json", "--", "true")
    assert held.returncode == 0, held.stderr
    holder = json.loads(held.stdout)["id"]

    agents: dict[str, Agent] = {}
    try:
        for name, path in (("free", FREE), ("held", HELD), ("ledger", LEDGER)):
            api = FakeOpenAI(edit_turns(runtime, repo, path, f"Edit the {name} docstring")).start()
            agents[name] = Agent(api, agent_env(runtime, scratch, api),
                                 extra={"task": f"edit the docstring of {path} and commit"})
        start_agents(repo, runtime, isolated, agents)
        ended = {name: settled(workspace, agent.sandbox) for name, agent in agents.items()}
    finally:
        for agent in agents.values():
            agent.api.stop()

    for name, record in ended.items():
        log = log_path(workspace, record.id).read_text(errors="replace")
        actions = [e["action"] for e in audit(workspace) if e["subject"] == record.id]
        assert record.exit_code == 0 and "sandbox.exited" in actions and "sandbox.failed" not in actions, (
            name, record.status, record.data.get("error"), log[-3000:])
        assert record.isolation == ("bwrap" if isolated else "none") or not isolated, record.isolation
        assert agents[name].api.requests, f"{name}: the agent never reached the model"
        # It reads back its own commits (Aider's GitPython opens .git/objects itself, ignoring
        # GIT_OBJECT_DIRECTORY: under bubblewrap that is the agent's private store).
        assert "BadObject" not in log and "repo corrupted" not in log, (name, log[-2000:])
        if runtime == "codex":
            assert "apply_patch" in agents[name].api.tool_names()
            assert "exec_command" in agents[name].api.tool_names()
            # Its own system skills installed in the sandbox's folder (read-only, it said it could not).
            assert "failed to install system skills" not in log, log[:2000]
            # Its tokens, from its --json events (`report` counted none for Codex).
            used = record.data["agent_result"]
            assert used["input_tokens"] > 0 and used["output_tokens"] > 0 and not used["is_error"], used
            # And its end's audit entry says this run's, for `report` to count in the window it ended in.
            [end] = [e for e in audit(workspace) if e["subject"] == record.id and e["action"] == "sandbox.exited"]
            assert end["details"]["usage"] == {"input_tokens_read": used["input_tokens_read"],
                                               "input_tokens": used["input_tokens"],
                                               "output_tokens": used["output_tokens"]}, end["details"]

    # The free edit: in the worktree, committed by the agent itself on its branch.
    free = ended["free"]
    assert "Edited by the agent." in (Path(free.worktree) / FREE).read_text()
    assert "Edit the free docstring" in commit_subjects(repo, free.branch)
    assert FREE in branch_files(repo, free.branch)
    if runtime == "codex":
        outputs = [o["output"] for o in agents["free"].api.tool_outputs()]
        assert any("Success" in o for o in outputs), outputs

    # The held region: the agent's commit refused by the pre-commit hook, naming the holder.
    entries = audit(workspace)
    refusals = [e for e in entries if e["action"] == "hook.commit_refused"
                and e["subject"].endswith(ended["held"].id)]
    assert refusals, [e["action"] for e in entries]
    assert holder in json.dumps(refusals[0]["details"]), refusals[0]
    held_log = log_path(workspace, ended["held"].id).read_text(errors="replace")
    if runtime == "codex":
        outputs = " ".join(o["output"] for o in agents["held"].api.tool_outputs())
        assert holder in outputs, outputs  # what the model was told
    else:
        assert holder in held_log, held_log[-2000:]
    held_subjects = commit_subjects(repo, ended["held"].branch)
    assert "Edit the held docstring" not in held_subjects
    # loomtui saved what the agent left uncommitted: the branch holds all of its work...
    assert ended["held"].data.get("saved_commit"), ended["held"].data
    assert HELD in branch_files(repo, ended["held"].branch)
    assert any(s.startswith("loomtui: work left uncommitted") for s in held_subjects), held_subjects
    # ...and the holder's claim is untouched.
    assert [c.target for c in workspace.store.live_claims(holder)] == [HELD] or \
        any(HELD in c.target for c in workspace.store.live_claims(holder))

    # Review, by the supervisor when each agent ended: the free and the held changes wait for the
    # platform group (notifications/*.py, customers/**); nothing merges.
    reviewed(workspace, free, "api-and-services")
    reviewed(workspace, ended["held"], "api-and-services")
    main_before = subprocess.run(["git", "rev-parse", "main"], cwd=repo, capture_output=True, text=True,
                                 check=True).stdout
    refused = run_cli(repo, "sandbox", "merge", ended["held"].id)
    assert refused.returncode == 1 and "not approved" in refused.stderr, refused.stderr

    # The ledger: a lead must agree (claim stage) and two payments reviewers (post-gate).
    escalation = reviewed(workspace, ended["ledger"], "ledger-claims (claim stage, not granted before)",
                          "payments-high-risk")
    assert load_policy(repo, ".loom/policy.yaml").merge == "auto"  # an approved change merges by itself
    for reviewer in PAYMENTS:
        assert run_cli(repo, "escalation", "approve", str(escalation.id), user=reviewer).returncode == 0
    assert get_sandbox(workspace, ended["ledger"].id).status == "awaiting_review"
    refused = run_cli(repo, "sandbox", "merge", ended["ledger"].id)
    assert refused.returncode == 1, "two payments reviewers are not the lead the ledger asks for"
    assert subprocess.run(["git", "rev-parse", "main"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout == main_before
    approved = loom(repo, "escalation", "approve", str(escalation.id), user=LEAD)
    assert approved.returncode == 0, approved.stderr
    merged = get_sandbox(workspace, ended["ledger"].id)
    assert merged.status == "merged", (merged.status, approved.stdout)
    main_after = subprocess.run(["git", "rev-parse", "main"], cwd=repo, capture_output=True,
                                text=True, check=True).stdout
    assert main_after != main_before and merged.data["merged_commit"] == main_after.strip()
    assert "Edited by the agent." in subprocess.run(["git", "show", f"main:{LEDGER}"], cwd=repo,
                                                    capture_output=True, text=True, check=True).stdout
    message = subprocess.run(["git", "log", "-1", "--format=%B", "main"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout
    assert f"Loom-Escalation: #{escalation.id}" in message and "Loom-Approved-by: " in message, message
    assert workspace.store.live_claims(merged.id) == []  # released by the merge
    # The other changes still wait for people.
    assert {get_sandbox(workspace, ended[n].id).status for n in ("free", "held")} == {"awaiting_review"}


# -- faults -------------------------------------------------------------------------------------


@needs_codex
@pytest.mark.parametrize("isolated", ISOLATION)
def test_codex_model_api_answering_500_fails_the_sandbox_with_its_exit_code_claims_kept(
        isolated: bool, tmp_path: Path, scratch: Path) -> None:
    repo = billing(tmp_path)
    workspace = open_workspace(repo)
    with FakeOpenAI(always_fail=500) as api:
        agent = Agent(api, agent_env("codex", scratch, api), extra={"task": "edit", "args": ["--claim", FREE]})
        start_agents(repo, "codex", isolated, {"agent": agent})
        sandbox = agent.sandbox
        record = wait_for_status(workspace, sandbox, {"exited", "failed"}, timeout=60)
    assert api.requests, "codex never reached the model"
    assert record.status == "failed" and record.exit_code == 1, (record.status, record.exit_code, record.data)
    log = log_path(workspace, sandbox).read_text(errors="replace")
    error = str(record.data.get("error"))  # with the API's error Codex said: a code alone said nothing
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]  # its --json events
    said = [event["message"] for event in events if event.get("type") == "error"]
    assert said and error == f"exited with code 1: {said[-1]}", (error, said)
    assert record.data["agent_result"]["is_error"], record.data  # its turn failed, as it said
    assert [c.target for c in workspace.store.live_claims(sandbox)], "claims are kept for a retry"
    actions = [e["action"] for e in audit(workspace) if e["subject"].endswith(sandbox)]
    assert "sandbox.failed" in actions, actions


@needs_codex
def test_codex_waiting_for_an_unreachable_model_api_is_stopped_after_the_offline_timeout(
        tmp_path: Path, scratch: Path) -> None:
    """Codex (exec) waits for an unreachable API without end ("Reconnecting... waiting for network"):
    after the runtime's offline_timeout of only that, loomtui stops it and the sandbox fails, saying why."""
    repo = billing(tmp_path)
    config = repo / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace("runtimes:\n", "runtimes:\n  codex:\n    offline_timeout: 3\n", 1))
    subprocess.run(["git", "commit", "-qam", "codex gives up sooner"], cwd=repo, check=True)
    workspace = open_workspace(repo)
    with FakeOpenAI([]) as gone:
        env = agent_env("codex", scratch, gone)
    # The server is closed now: its port refuses every connection.
    agent = Agent(gone, env, extra={"task": "edit", "args": ["--claim", FREE]})
    start_agents(repo, "codex", isolation_available(), {"agent": agent})
    record = wait_for_status(workspace, agent.sandbox, {"exited", "failed"}, timeout=90)
    assert record.status == "failed", (record.status, record.data)
    assert "the model API did not answer for 3 s" in str(record.data.get("error")), record.data
    log = log_path(workspace, agent.sandbox).read_text(errors="replace")
    assert "waiting for network" in log, log[-2000:]  # the agent's own words
    events = [e for e in workspace.store.events_since(0) if e.subject == agent.sandbox]
    assert any(e.kind == "sandbox.activity" and str(e.data.get("summary", "")).startswith("model API: Reconnecting")
               for e in events), [e.data for e in events if e.kind == "sandbox.activity"]
    assert [c.target for c in workspace.store.live_claims(agent.sandbox)], "claims are kept for a retry"
    actions = [e["action"] for e in audit(workspace) if e["subject"] == agent.sandbox]
    assert actions[-2:] == ["sandbox.offline", "sandbox.failed"], actions


@needs_aider
def test_aider_model_api_refusing_the_request_fails_the_sandbox_though_aider_exits_0(
        tmp_path: Path, scratch: Path) -> None:
    """Aider retries a 5xx or an unreachable server for about a minute, and with --message it exits 0
    whatever happened: loomtui reads its words, and an agent that reported an API error and changed
    nothing has failed. A 404 (a model the API does not know) is not retried, which keeps this test fast."""
    repo = billing(tmp_path)
    workspace = open_workspace(repo)
    with FakeOpenAI([fail(404)]) as api:
        agent = Agent(api, agent_env("aider", scratch, api), extra={"task": "edit", "args": ["--claim", FREE]})
        start_agents(repo, "aider", False, {"agent": agent})
        sandbox = agent.sandbox
        record = wait_for_status(workspace, sandbox, {"exited", "failed"}, timeout=60)
    assert api.requests, "aider never reached the model"
    log = log_path(workspace, sandbox).read_text(errors="replace")
    assert "fake server error 404" in log or "NotFoundError" in log, log[-2000:]
    assert record.status == "failed" and record.exit_code == 0, (record.status, record.exit_code)
    error = str(record.data.get("error"))
    assert error.startswith("the agent exited 0 but reported a model API error and changed nothing: litellm."), error
    assert error.rstrip(".").endswith("404"), error  # read whole, though Aider wraps its lines at 80 columns
    assert not commit_subjects(repo, record.branch), "nothing was written"
    assert [c.target for c in workspace.store.live_claims(sandbox)], "claims are kept for a retry"
