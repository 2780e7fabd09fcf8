"""`loomtui report`: figures computed from a store and a git history built here with known answers,
the four output formats (Prometheus parsed back), and each kind of bad input."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loomtui.audit import GENESIS, AuditEntry, entry_hash
from loomtui.errors import LoomError
from loomtui.observability.history import Commit, mark_of
from loomtui.observability.metrics import Metrics, compute_metrics
from loomtui.observability.report import render, summary_lines
from loomtui.observability.window import parse_when
from loomtui.store import EscalationRecord, EvalReportRecord, GateRunRecord, SandboxRecord
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import git, run_cli

H = 3600.0
DAY = 86400.0
D0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()
SINCE, UNTIL = D0, D0 + 3 * DAY
DAYS = ("2026-03-02", "2026-03-03", "2026-03-04")
CLAUDE = "\n\nCo-Authored-By: Claude <noreply@anthropic.com>\n"

# (mark, committer time, message, parents, author): main's history; side commits are on other refs.
HISTORY: tuple[tuple[int, float, str, tuple[int, ...], str], ...] = (
    (1, D0 - 10 * DAY, "Initial commit", (), ""),
    (2, D0 + 2 * H, "Work for s1", (1,), "Agent <agent@example.com>"),
    (3, D0 + 2 * H + 700, "Merge loom/s1 into main: task one\n\nTask:\ntask one\n\nLoom-Sandbox: s1\n"
                          "Loom-Runtime: claude\nAssisted-by: Claude Code (via loomtui)\n", (1, 2), ""),
    (4, D0 + 6 * H, "Add retries" + CLAUDE, (3,), ""),
    (5, D0 + 7 * H, "Rename helper", (4,), "Pat (aider) <pat@example.com>"),
    (6, D0 + 8 * H, "aider: fix typo in docs", (5,), ""),
    (7, D0 + 9 * H, "Speed up parser\n\nCo-authored-by: Codex <codex@openai.com>\n", (6,), ""),
    (8, D0 + 10 * H, "Port the exporter\n\nAssisted-by: Gemini:gemini-2.5-pro\n", (7,), ""),
    (9, D0 + DAY + 2 * H, "Bump deps\n\nGenerated-by: renovate-ai\n", (8,), ""),
    (10, D0 + DAY + 3 * H, "Fix docs", (9,), ""),
    (11, D0 - 2 * DAY, "Draft feature" + CLAUDE, (1,), ""),  # older than the window, merged in it
    (12, D0 + DAY + 4 * H, "Merge branch 'feature'", (10, 11), ""),
    (13, D0 + DAY + 4 * H + 60, "Human work", (12,), ""),
    (14, D0 + DAY + 5 * H, "Merge branch 'topic'", (12, 13), ""),
    (15, D0 + DAY + 6 * H, "Pair with Claudia\n\nCo-authored-by: Claudia Smith <claudia@example.com>\n", (14,), ""),
    (16, D0 + 3 * DAY + 2 * H, "Later" + CLAUDE, (15,), ""),  # after the window
)
MAIN_LINE = (1, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16)


def fast_import(root: Path, history: tuple[tuple[int, float, str, tuple[int, ...], str], ...] = HISTORY) -> None:
    """Write commits with exact dates in one `git fast-import`."""
    chunks = []
    for mark, when, message, parents, author in history:
        ref = "refs/heads/main" if mark in MAIN_LINE else f"refs/heads/side{mark}"
        data = message.encode()
        head = f"commit {ref}\nmark :{mark}\n"
        if author:
            head += f"author {author} {int(when)} +0000\n"
        head += f"committer Dev <dev@example.com> {int(when)} +0000\ndata {len(data)}\n"
        links = "".join(f"{'from' if i == 0 else 'merge'} :{p}\n" for i, p in enumerate(parents))
        body = "M 100644 inline README.md\ndata 6\nhello\n" if not parents else ""
        chunks.append(head.encode() + data + b"\n" + links.encode() + body.encode())
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(chunks) + b"done\n", check=True)


def add_entries(workspace: Workspace, items: list[tuple[float, str, str, dict[str, Any]]]) -> None:
    """Audit entries at the given times (in time order, as appends are), chained as the log chains them."""
    store = workspace.store
    with store.transaction():
        seq, prev = store.audit_head() or (0, GENESIS)
        rows = []
        for at, action, subject, details in sorted(items, key=lambda item: item[0]):
            seq += 1
            fields: dict[str, Any] = {"seq": seq, "ts": datetime.fromtimestamp(at, UTC).isoformat(),
                                      "actor": "sam@example.com", "action": action, "subject": subject,
                                      "details": details, "prev": prev}
            prev = entry_hash(fields)
            rows.append((seq, prev, AuditEntry(**fields, hash=prev).line()))
        store.add_audit_entries(rows)


def sandbox(sid: str, runtime: str, created: float, updated: float, **data: Any) -> SandboxRecord:
    return SandboxRecord(id=sid, task=f"task {sid}", runtime=runtime, status="merged", created=created,
                         updated=updated, data=data)


def moved(at: float, sid: str, to: str, source: str, **details: Any) -> tuple[float, str, str, dict[str, Any]]:
    return at, f"sandbox.{to}", sid, {"from": source, "to": to, **details}


ENTRIES = [
    moved(D0 - 9 * DAY, "s0", "merged", "approved"),  # before the window
    (D0 + 10, "plan.scheduled", "run1", {"file": "plan.yaml", "edges": [
        {"kind": "dependency", "before": "a", "after": "b"}, {"kind": "after", "before": "b", "after": "c"},
        {"kind": "overlap", "before": "a", "after": "c"}]}),
    # The same plan run again (the first's tasks still going, or cancelled): the same two kept apart, not four.
    (D0 + 20, "plan.scheduled", "run2", {"file": "plan.yaml", "edges": [
        {"kind": "dependency", "before": "a", "after": "b"}, {"kind": "overlap", "before": "a", "after": "c"}]}),
    (D0 + H, "sandbox.planned", "s1", {}), moved(D0 + H + 60, "s1", "running", "planned"),
    moved(D0 + 2 * H, "s1", "exited", "running"), (D0 + 2 * H + 5, "context.sliced", "s1", {}),
    moved(D0 + 2 * H + 600, "s1", "approved", "awaiting_review"), moved(D0 + 2 * H + 700, "s1", "merged", "approved"),
    moved(D0 + 3 * H + 60, "s2", "running", "planned"), moved(D0 + 4 * H, "s2", "failed", "running"),
    moved(D0 + 4 * H + 1800, "s2", "rejected", "awaiting_review"),
    moved(D0 + DAY + H + 60, "s3", "running", "planned"), moved(D0 + DAY + 2 * H, "s3", "exited", "running"),
    moved(D0 + DAY + 2 * H + 60, "s3", "approved", "gating"), moved(D0 + DAY + 3 * H, "s3", "merged", "approved"),
    moved(D0 + 1800, "s4", "approved", "awaiting_review"), moved(D0 + H, "s4", "merged", "approved"),
    (D0 + DAY + 5 * H, "claim.refused", "s5", {"target": "payments/x.py"}),
    moved(D0 + DAY + 5 * H + 1, "s5", "rejected", "planned", reason="claim on payments/x.py refused: held by s1"),
    moved(D0 + 3.5 * H, "s6", "running", "planned"), moved(D0 + 4.5 * H, "s6", "exited", "running"),
    moved(D0 + 5 * H, "s6", "rejected", "awaiting_review"),
    (D0 + DAY, "escalation.override", "7", {"by": "lead@example.com", "reason": "hotfix, reviewed by phone",
                                            "sandbox": "s6"}),
    moved(D0 + DAY + 10, "s6", "approved", "rejected"), moved(D0 + DAY + H, "s6", "merged", "approved"),
    (D0 + DAY + 6 * H, "agent.claim_refused", "s3", {"target": "billing/y.py"}),
    (D0 + DAY + 6 * H + 0.5, "agent.claim_refused", "s3", {"target": "billing/y.py"}),  # asked again: one conflict
    (D0 + DAY + 6 * H + 1, "hook.commit_refused", "s3", {"paths": ["billing/y.py"]}),
    (D0 + DAY + 7 * H, "sandbox.merge_conflict", "s3", {"target": "main"}),
    (D0 + DAY + 7 * H + 60, "sandbox.merge_conflict", "s3", {"target": "main"}),  # tried again: the same conflict
    moved(D0 + 3 * DAY + H, "s9", "merged", "approved"),  # after the window
]


def build_store(workspace: Workspace) -> None:
    store = workspace.store
    for record in (
        sandbox("s0", "script", D0 - 10 * DAY, D0 - 9 * DAY),
        sandbox("s1", "claude", D0 + H, D0 + 3 * H, ended_at=D0 + 2 * H,
                agent_result={"input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.5}),
        sandbox("s2", "claude", D0 + 3 * H, D0 + 5 * H, ended_at=D0 + 4 * H,
                agent_result={"input_tokens": 3000, "output_tokens": 100, "cost_usd": 0.25}),
        sandbox("s3", "codex", D0 + DAY + H, D0 + DAY + 8 * H, ended_at=D0 + DAY + 2 * H),
        sandbox("s4", "aider", D0 - DAY, D0 + H, ended_at=D0 - H),  # its agent ended before the window
        sandbox("s5", "codex", D0 + DAY + 5 * H, D0 + DAY + 5 * H),
        sandbox("s6", "claude", D0 + 3.5 * H, D0 + DAY + H, ended_at=D0 + 4.5 * H),
    ):
        store.add_sandbox(record)
    add_entries(workspace, ENTRIES)

    def run(sid: str, gate: str, status: str, commit: str, started: float, blocking: bool = True) -> GateRunRecord:
        return GateRunRecord(0, sid, gate, status, commit, started, started + 30, {"blocking": blocking})

    store.bulk_add_gate_runs([
        run("s0", "tests", "passed", "c0", D0 - 9 * DAY), run("s0", "tests", "passed", "c0b", D0 + H),
        run("s1", "tests", "passed", "c1", D0 + 2 * H + 10), run("s1", "compile", "passed", "c1", D0 + 2 * H + 11),
        run("s2", "tests", "failed", "c2a", D0 + 4 * H + 10), run("s2", "tests", "passed", "c2b", D0 + 4 * H + 900),
        run("s3", "tests", "passed", "c3", D0 + DAY + 2 * H + 10),
        run("s3", "lint", "failed", "c3", D0 + DAY + 2 * H + 11, blocking=False),
    ])
    store.bulk_add_eval_reports([
        EvalReportRecord(0, "s0", "sandbox", "c0", "f", D0 - 9 * DAY, {"regressions": ["t::x"]}),
        EvalReportRecord(0, "s1", "sandbox", "c1", "f", D0 + 2 * H + 20, {"regressions": []}),
        EvalReportRecord(0, "s2", "sandbox", "c2a", "f", D0 + 4 * H + 20, {"regressions": ["t::a", "t::b"]}),
        # Its agent told, one fixed then the other: the regressions caught are still two (the newest eval alone
        # was read, and said none), each counted once.
        EvalReportRecord(0, "s2", "sandbox", "c2b", "f", D0 + 4 * H + 900, {"regressions": ["t::a"]}),
        EvalReportRecord(0, "s2", "sandbox", "c2c", "f", D0 + 4 * H + 950, {"regressions": []}),
        # Without the summary field: read whole (EvalReport), which finds none.
        EvalReportRecord(0, "s3", "sandbox", "c3", "f", D0 + DAY + 2 * H + 20, {"subject": "s3", "commit": "c3"}),
    ])
    store.bulk_add_escalations([
        EscalationRecord(0, "s0", "post-gate", "approved", "high", "", D0 - 9 * DAY, D0 - 9 * DAY,
                         {"rules": [{"name": "old-rule"}]}),
        EscalationRecord(0, "s1", "post-gate", "approved", "high", "", D0 + 2 * H + 300, D0 + 2 * H + 600,
                         # Met at the review on code its agent changed unasked: the same rule, one row by rule.
                         {"rules": [{"name": "payments-high-risk (claim stage, not granted before)"}]}),
        EscalationRecord(0, "s2", "post-gate", "rejected", "normal", "", D0 + 4 * H + 300, D0 + 4 * H + 1800,
                         {"rules": [{"name": "payments-high-risk"}, {"name": "failing-gates"}]}),
        # The record a claim override leaves (no one was asked): an override, never an escalation opened.
        EscalationRecord(0, "s2", "conflict-override", "overridden", "high", "", D0 + 5 * H, D0 + 5 * H, {}),
    ])


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Workspace]:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    fast_import(root)
    workspace = open_workspace(root)
    build_store(workspace)
    yield workspace
    workspace.close()


def by_key(rows: tuple[Any, ...]) -> dict[str, Any]:
    return {row.key: row for row in rows}


def test_the_figures_of_a_known_window(scenario: Workspace) -> None:
    m = compute_metrics(scenario, SINCE, UNTIL)
    assert (m.merged, m.rejected, m.decided, m.acceptance_rate) == (4, 1, 5, 0.8)
    assert (m.overridden, m.rejected_before_start) == (1, 1)
    assert (m.total.sandboxes_created, m.total.sandboxes_started, m.total.sandboxes_ended) == (5, 4, 4)
    assert m.total.agents_failed == 1  # s2's agent failed (its change was still reviewed, and rejected)
    assert dict(summary_lines(m))["Sandboxes"] == "5 created, 4 started, 4 ended (1 of them failed)"
    # Agent end to first decision: s1 600, s2 1800, s3 60, s4 5400 (ended before the window), s6 1800.
    # s3's approval by the policy as its review ended is no person's decision: counted apart, not timed.
    assert (m.median_decision_s, m.total.decisions_timed, m.total.decided_by_policy) == (1800, 4, 1)
    assert dict(summary_lines(m))["Decisions"] == ("median 30 min from an agent's end to a person's decision "
                                                   "(4 timed); 1 decided by the policy alone")
    assert (m.total.gated, m.total.first_try_passed, m.first_try_pass_rate) == (3, 2, pytest.approx(2 / 3))
    assert (m.total.regressions_caught, m.sandboxes_with_regressions, m.evals) == (2, 1, 5)
    c = m.conflicts
    assert (c.claims_refused, c.agent_claims_refused, c.commits_refused, c.rejected_at_claim, c.scheduled_apart,
            c.at_merge) == (1, 1, 1, 1, 2, 1)
    # A commit the hook refused too, as the checklist counts it; not an agent's claim refused as too broad: no
    # conflict (it was counted among those prevented).
    assert c.prevented == 4
    said = dict(summary_lines(m))  # one of each said as one ("1 claims or agent edits refused")
    assert said["Conflicts"] == ("4 prevented before they landed (1 claim or agent edit refused, 1 agent commit "
                                 "refused, 2 tasks scheduled apart); 1 met at merge; 1 agent claim refused as too "
                                 "broad or blocked")
    assert said["Acceptance"].endswith("; 1 rejected before it started")
    assert m.escalations.opened == 2
    assert m.escalations.by_risk == {"high": 1, "normal": 1}
    assert m.escalations.by_rule == {"payments-high-risk": 2, "failing-gates": 1}
    assert [(o.by, o.kind, o.sandbox, o.runtime) for o in m.overrides] == [("lead@example.com", "escalation", "s6",
                                                                            "claude")]
    assert m.partial == () and m.damaged_entries == ()


def test_per_runtime_and_per_day(scenario: Workspace) -> None:
    m = compute_metrics(scenario, SINCE, UNTIL)
    runtimes = by_key(m.by_runtime)
    claude, codex, aider = runtimes["claude"], runtimes["codex"], runtimes["aider"]
    assert (claude.merged, claude.rejected, claude.acceptance_rate) == (2, 1, pytest.approx(2 / 3))
    assert (claude.median_decision_s, claude.sandboxes_started, claude.overridden) == (1800, 3, 1)
    assert (claude.input_tokens, claude.output_tokens, claude.cost_usd, claude.agents_reporting) == \
        (4000, 300, 0.75, 2)
    assert (claude.gated, claude.first_try_passed, claude.regressions_caught) == (2, 1, 2)
    assert (claude.agents_failed, codex.agents_failed) == (1, 0)
    assert (codex.merged, codex.median_decision_s, codex.gated, codex.first_try_passed) == (1, None, 1, 1)
    assert codex.decided_by_policy == 1
    assert (aider.merged, aider.median_decision_s, aider.sandboxes_started) == (1, 5400, 0)
    assert "script" not in runtimes or runtimes["script"].merged == 0  # s0 merged before the window
    days = by_key(m.by_day)
    assert tuple(days) == DAYS
    first, second, third = (days[d] for d in DAYS)
    assert (first.sandboxes_started, first.merged, first.rejected, first.median_decision_s) == (3, 2, 1, 1800)
    assert (second.sandboxes_started, second.merged, second.rejected, second.median_decision_s) == (1, 2, 0, None)
    assert (third.merged, third.commits, third.acceptance_rate) == (0, 0, None)
    assert (first.commits, first.agent_commits, second.commits, second.agent_commits) == (6, 6, 5, 1)


def test_markdown_shows_a_commit_subject_and_a_reason_as_written_never_as_markup(scenario: Workspace) -> None:
    """A task `Fix typo <!-- in the runbook`, merged, hid the rest of the weekly note on GitHub."""
    import dataclasses

    m = compute_metrics(scenario, SINCE, UNTIL)
    first, *rest = m.agent_changes
    hostile = dataclasses.replace(m, agent_changes=[
        *rest, dataclasses.replace(first, subject="Fix typo <!-- in the runbook")],
        overrides=[dataclasses.replace(m.overrides[0], reason="**approved** | by [ci](http://127.0.0.1/)")])
    markdown = render(hostile, "markdown")
    assert "<!--" not in markdown and ": Fix typo &lt;!-- in the runbook" in markdown
    assert "\\*\\*approved\\*\\* \\| by \\[ci\\](http://127.0.0.1/)" in markdown
    text = render(hostile, "text")  # a terminal reads no markup: as written
    assert "Fix typo <!-- in the runbook" in text and "**approved** | by [ci]" in text


def test_a_day_the_window_cuts_is_marked_with_the_part_it_holds(scenario: Workspace) -> None:
    """`--since 14:30`: that day's row read as the whole day's figures."""
    m = compute_metrics(scenario, D0 + 14.5 * H, D0 + 2 * DAY + 9 * H)
    text, markdown = render(m, "text"), render(m, "markdown")
    assert "2026-03-02 (from 14:30)" in text and "2026-03-04 (to 09:00)" in text
    assert "| 2026-03-03 |" in markdown and "| 2026-03-02 (from 14:30) |" in markdown
    within = compute_metrics(scenario, D0 + 10 * H, D0 + 11 * H)
    assert "2026-03-02 (from 10:00 to 11:00)" in render(within, "text")
    assert "(from" not in render(compute_metrics(scenario, SINCE, UNTIL), "text")


def test_a_sandbox_run_again_is_one_sandbox_started_and_ended_and_its_tokens_count_once(
        scenario: Workspace) -> None:
    """`sandbox start ID` after a run that made no change: 5 created, 6 started, 6 ended, and the last
    run's tokens and cost twice."""
    scenario.store.add_sandbox(sandbox("s7", "claude", D0 + 2 * DAY, D0 + 2 * DAY + 3 * H,
                                       ended_at=D0 + 2 * DAY + 2 * H,
                                       agent_result={"input_tokens": 500, "output_tokens": 50, "cost_usd": 0.1}))
    add_entries(scenario, [
        (D0 + 2 * DAY, "sandbox.planned", "s7", {}), moved(D0 + 2 * DAY + 60, "s7", "running", "planned"),
        moved(D0 + 2 * DAY + H, "s7", "failed", "running"), moved(D0 + 2 * DAY + H + 60, "s7", "planned", "failed"),
        moved(D0 + 2 * DAY + H + 70, "s7", "running", "planned"), moved(D0 + 2 * DAY + 2 * H, "s7", "exited", "running"),
    ])
    m = compute_metrics(scenario, SINCE, UNTIL)
    assert (m.total.sandboxes_created, m.total.sandboxes_started, m.total.sandboxes_ended) == (6, 5, 5)
    claude = by_key(m.by_runtime)["claude"]
    assert (claude.input_tokens, claude.output_tokens, claude.cost_usd, claude.agents_reporting) == \
        (4500, 350, pytest.approx(0.85), 3)
    assert by_key(m.by_day)[DAYS[2]].sandboxes_started == 1


def test_each_run_s_tokens_and_cost_count_in_the_window_it_ended_in(scenario: Workspace) -> None:
    """A sandbox run again: its second run's $0.80 was counted in a window that closed before that run began
    (read from the record at the first end), and again in the next window: side by side, spent twice."""
    t = D0 + 2 * DAY
    scenario.store.add_sandbox(sandbox("r1", "claude", t, t + 3 * H, ended_at=t + 2 * H,
                                       agent_result={"input_tokens_read": 900, "output_tokens": 90, "cost_usd": 0.8}))
    add_entries(scenario, [
        (t, "sandbox.planned", "r1", {}), moved(t + 60, "r1", "running", "planned"),
        moved(t + H, "r1", "exited", "running", usage={"input_tokens_read": 100, "output_tokens": 10,
                                                        "cost_usd": 0.01}),
        moved(t + H + 60, "r1", "planned", "exited"), moved(t + H + 70, "r1", "running", "planned"),
        moved(t + 2 * H, "r1", "exited", "running", usage={"input_tokens_read": 900, "output_tokens": 90,
                                                            "cost_usd": 0.8}),
    ])

    def claude(since: float, until: float) -> tuple[int, int, float, int]:
        row = by_key(compute_metrics(scenario, since, until).by_runtime)["claude"]
        return row.sandboxes_ended, row.input_tokens, row.cost_usd, row.agents_reporting

    assert claude(t, t + 90 * 60) == (1, 100, 0.01, 1)  # the first run alone
    assert claude(t + 90 * 60, t + 3 * H) == (1, 900, 0.8, 1)  # the second alone
    assert claude(t, t + 3 * H) == (1, 1000, pytest.approx(0.81), 1)  # both: one sandbox, one agent reporting
    # A run that said nothing (its end's usage null) counts nothing: not the other run's, read from the record.
    scenario.store.add_sandbox(sandbox("r2", "codex", t, t + 3 * H, ended_at=t + 2 * H,
                                       agent_result={"input_tokens_read": 500, "output_tokens": 5}))
    add_entries(scenario, [
        moved(t + 2 * H + 10, "r2", "running", "planned"),
        moved(t + 2 * H + 20, "r2", "exited", "running", usage={"input_tokens_read": 500, "output_tokens": 5}),
        moved(t + 2 * H + 30, "r2", "planned", "exited"), moved(t + 2 * H + 40, "r2", "running", "planned"),
        moved(t + 2 * H + 50, "r2", "failed", "running", usage=None)])
    codex = by_key(compute_metrics(scenario, t + 2 * H + 25, t + 3 * H).by_runtime)["codex"]
    assert (codex.sandboxes_ended, codex.input_tokens, codex.agents_reporting) == (1, 0, 0)


def test_tokens_in_are_every_input_token_read_and_a_cost_no_agent_said_is_not_known(scenario: Workspace) -> None:
    """Claude's cache reads were left out of its tokens in (12 in, of 53,012 read) while Codex's counted them,
    and Codex, which reports no cost, read "$0.00", as if free."""
    from loomtui.execution.activity import parse_claude_stream, parse_codex_json

    [claude] = parse_claude_stream(json.dumps({"type": "result", "subtype": "success", "total_cost_usd": 0.05,
                                               "usage": {"input_tokens": 12, "output_tokens": 800,
                                                         "cache_read_input_tokens": 48000,
                                                         "cache_creation_input_tokens": 5000}}))
    [codex] = parse_codex_json(json.dumps({"type": "turn.completed", "usage": {
        "input_tokens": 24000, "cached_input_tokens": 20000, "output_tokens": 900}}))
    for sid, runtime, result in (("c1", "claude", claude), ("x1", "codex", codex)):
        scenario.store.add_sandbox(sandbox(sid, runtime, D0 + 2 * DAY, D0 + 2 * DAY + 3 * H,
                                           ended_at=D0 + 2 * DAY + 2 * H, agent_result=result))
        add_entries(scenario, [(D0 + 2 * DAY, "sandbox.planned", sid, {}),
                               moved(D0 + 2 * DAY + 60, sid, "running", "planned"),
                               moved(D0 + 2 * DAY + 2 * H, sid, "exited", "running")])
    m = compute_metrics(scenario, D0 + 2 * DAY, UNTIL)
    rows = by_key(m.by_runtime)
    assert (rows["claude"].input_tokens, rows["claude"].cost_usd, rows["claude"].agents_costing) == (53012, 0.05, 1)
    assert (rows["codex"].input_tokens, rows["codex"].agents_reporting, rows["codex"].agents_costing) == (24000, 1, 0)
    text = render(m, "text")
    codex_row = next(line for line in text.splitlines() if line.lstrip().startswith("codex"))
    assert "n/a" in codex_row and "$0.00" not in codex_row, codex_row
    assert dict(summary_lines(m))["Tokens"] == ("77,012 in (caches' included) / 1,700 out tokens, $0.05 (1 of 2 said "
                                                "a cost) (2 agents reporting)")
    # A cost under a cent is said so: a run's $0.00105 read "$0.00", free.
    from loomtui.observability.report import dollars

    assert [dollars(c) for c in (0.0, 0.00105, 0.005, 0.05, 1234.5)] == ["$0.00", "<$0.01", "$0.01", "$0.05",
                                                                         "$1,234.50"]
    prometheus = render(m, "prometheus")
    assert 'loomtui_agent_cost_usd{runtime="claude"} 0.05' in prometheus
    assert 'agent_cost_usd{runtime="codex"}' not in prometheus


def test_agent_made_commits_by_each_kind_of_trailer(scenario: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOMTUI_AGENT_TRAILERS", raising=False)
    m = compute_metrics(scenario, SINCE, UNTIL)
    # Landed on main's first-parent line in the window: marks 3-10, 12, 14, 15 (not 1, nor 16 after it).
    assert (m.commits, m.agent_commits, m.agent_share) == (11, 7, pytest.approx(7 / 11))
    assert m.agent_by_marker == {"loomtui": 1, "assisted-by": 2, "claude-code": 2, "aider": 2, "codex": 1}
    subjects = [c.subject for c in m.agent_changes]
    assert "Merge branch 'feature'" in subjects  # a person's merge of a commit Claude co-wrote before the window
    assert "Merge branch 'topic'" not in subjects and "Pair with Claudia" not in subjects
    runtimes = by_key(m.by_runtime)
    assert {k: runtimes[k].commits for k in ("claude", "aider", "codex", "gemini")} == \
        {"claude": 3, "aider": 2, "codex": 1, "gemini": 1}
    configured = compute_metrics(scenario, SINCE, UNTIL, agent_trailers=["Generated-by"])
    assert configured.agent_commits == 8 and configured.agent_by_marker["trailer:Generated-by"] == 1
    monkeypatch.setenv("LOOMTUI_AGENT_TRAILERS", "x-ai, generated-by")
    assert compute_metrics(scenario, SINCE, UNTIL).agent_commits == 8


def test_marks_one_commit_at_a_time() -> None:
    def commit(subject: str = "change", author: str = "Dev", *trailers: tuple[str, str]) -> Commit:
        return Commit("a" * 40, (), author, "dev@example.com", 0.0, subject, trailers)

    assert mark_of(commit()) is None
    assert mark_of(commit("x", "Dev", ("Co-Authored-By", "Claude Opus 4 <noreply@anthropic.com>"))) is not None
    assert mark_of(commit("x", "Dev", ("Co-authored-by", "Claudette <c@example.com>"))) is None
    assert mark_of(commit("x", "Dev", ("Co-authored-by", "aider (gpt-4o) <noreply@aider.chat>"))).runtime == "aider"
    assert mark_of(commit("x", "Dev", ("Loom-Runtime", "codex"), ("Assisted-by", "Codex CLI"))).runtime == "codex"
    assert mark_of(commit("x", "Dev", ("Assisted-by", "Claude:claude-3-opus"))).runtime == "claude"
    assert mark_of(commit("x", "Dev", ("X-Agent", "bot"))) is None
    assert mark_of(commit("x", "Dev", ("X-Agent", "bot")), ["x-agent"]).markers == ("trailer:X-Agent",)


def test_a_new_entry_or_merge_changes_the_next_report(scenario: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    until = D0 + 4 * DAY
    before = compute_metrics(scenario, SINCE, until)
    later = D0 + 3 * DAY + 3 * H  # after every entry so far: appends are in time order
    scenario.store.add_sandbox(sandbox("s7", "codex", later - H, later + H, ended_at=later - 60))
    add_entries(scenario, [moved(later, "s7", "approved", "awaiting_review"),
                           moved(later + 60, "s7", "merged", "approved")])
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{int(later)} +0000")
    git(scenario.root, "commit", "-q", "--allow-empty", "-m", "Later still\n\nAssisted-by: Codex CLI")
    after = compute_metrics(scenario, SINCE, until)
    assert (after.merged, after.decided) == (before.merged + 1, before.decided + 1)
    assert (after.commits, after.agent_commits) == (before.commits + 1, before.agent_commits + 1)
    assert by_key(after.by_runtime)["codex"].median_decision_s == 60


def test_a_damaged_audit_entry_is_reported_and_the_rest_counted(scenario: Workspace) -> None:
    total = scenario.store.audit_bounds()
    assert total is not None
    rejected_s2 = next(i for i, e in enumerate(sorted(ENTRIES, key=lambda e: e[0]), start=1)
                       if e[1] == "sandbox.rejected" and e[2] == "s2")
    damaged = sorted({rejected_s2, (total[0] + total[1]) // 2, total[1] - 1})  # the middle: a binary search probe
    connection = sqlite3.connect(scenario.store.path)
    with connection:
        connection.executemany("UPDATE audit SET entry = ? WHERE seq = ?", [("{not json", s) for s in damaged])
    connection.close()
    m = compute_metrics(scenario, SINCE, UNTIL)
    assert list(m.damaged_entries) == damaged
    assert any(f"seq {', '.join(map(str, damaged))}" in why for why in m.partial)
    assert m.rejected == 0 and m.merged >= 3  # s2's rejection is lost; the others still count
    assert "PARTIAL" in render(m, "text") and "not a valid audit record" in render(m, "markdown")


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A small parser of the text exposition format: every sample must follow its family's HELP and TYPE."""
    helped: set[str] = set()
    typed: dict[str, str] = {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert help_text and name not in helped
            helped.add(name)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("gauge", "counter") and name in helped
            typed[name] = kind
        else:
            match = sample.match(line)
            assert match, line
            name, labels_text, value = match.groups()
            assert name in typed, f"{name} has no TYPE line"
            labels = dict(label.findall(labels_text or ""))
            samples.setdefault(name, []).append(({k: v.replace('\\"', '"') for k, v in labels.items()}, float(value)))
    assert all(name.startswith("loomtui_") for name in typed)
    return samples


def test_the_prometheus_format_parses_back(scenario: Workspace) -> None:
    samples = parse_prometheus(render(compute_metrics(scenario, SINCE, UNTIL), "prometheus"))

    def value(name: str, **labels: str) -> float:
        found = [v for got, v in samples[f"loomtui_{name}"] if got == labels]
        assert len(found) == 1, (name, labels, samples.get(f"loomtui_{name}"))
        return found[0]

    assert value("changes_merged", runtime="claude") == 2
    assert sum(v for _, v in samples["loomtui_changes_merged"]) == 4
    assert value("acceptance_ratio") == 0.8
    assert value("runtime_acceptance_ratio", runtime="codex") == 1
    assert value("decision_seconds_median") == 1800
    assert value("commits", branch="main") == 11
    assert value("agent_commit_ratio", branch="main") == pytest.approx(7 / 11)
    assert value("agent_cost_usd", runtime="claude") == 0.75
    assert value("conflicts_prevented", kind="scheduled_apart") == 2
    assert value("overrides_by_person", by="lead@example.com", kind="escalation") == 1
    assert value("escalations_opened", risk="normal") == 1
    assert value("report_partial") == 0
    assert value("report_window_seconds") == 3 * DAY


def test_json_markdown_and_text_through_the_command(scenario: Workspace) -> None:
    window = ("--since", "2026-03-02", "--until", "2026-03-05")
    done = run_cli(scenario.root, "report", *window, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    both = run_cli(scenario.root, "report", *window, "--json", "--format", "json")  # one format, said twice
    assert (both.returncode, json.loads(both.stdout)) == (0, data)
    assert (data["total"]["merged"], data["total"]["acceptance_rate"], data["branch"]) == (4, 0.8, "main")
    assert [d["key"] for d in data["by_day"]] == list(DAYS)
    markdown = run_cli(scenario.root, "report", *window, "--format", "markdown").stdout
    assert markdown.startswith("## Agent work: 2026-03-02 00:00 to 2026-03-05 00:00 UTC, branch main")
    assert "| claude | 3 | 3 | 2 | 1 | 67% |" in markdown
    assert "**lead@example.com** overrode escalation 7" in markdown
    text = run_cli(scenario.root, "report", *window, "--agent-trailer", "Generated-by").stdout
    assert "5 changes decided: 4 merged, 1 rejected (acceptance 80%)" in text
    # The marks add up to more than the changes (one carries several), and the merge is one change: said.
    assert "8 of 11 commits that landed on main (73%; a merge and what it brought count as one); marked aider 2, " \
           "assisted-by 2, claude-code 2, codex 1, loomtui 1, trailer:Generated-by 1 (a change may carry several)" in text
    assert "2 regressions caught in 1 sandbox (5 evals)" in text
    aider = next(line.split() for line in text.splitlines() if line.startswith("aider "))
    assert aider[-3:] == ["n/a", "n/a", "n/a"]  # it reported no usage: not "$0.00", which reads as free


def test_an_empty_store_says_why_everything_is_zero(repo: Path) -> None:
    workspace = open_workspace(repo)
    m = compute_metrics(workspace, time.time() - 7 * DAY)
    workspace.close()
    assert (m.decided, m.merged, m.acceptance_rate, m.agent_commits, m.commits) == (0, 0, None, 0, 1)
    assert m.partial == () and any("store is empty" in note for note in m.notes)
    done = run_cli(repo, "report")
    assert done.returncode == 0 and "store is empty" in done.stdout and "acceptance n/a" in done.stdout
    # The default window is the 7 days before its end, exactly (the end was read from the clock again: 7 days
    # and 16 ms).
    week = json.loads(run_cli(repo, "report", "--json").stdout)
    assert week["until"] - week["since"] == 7 * 24 * 3600


def test_a_repository_with_no_history_is_partial(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    done = run_cli(tmp_path, "report", "--format", "prometheus")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n") and not done.stdout.endswith("\n\n")  # a textfile collector's file
    assert parse_prometheus(done.stdout)["loomtui_report_partial"] == [({}, 1.0)]
    text = run_cli(tmp_path, "report").stdout
    assert "PARTIAL: the repository has no commits yet" in text


def test_a_shallow_clone_is_partial_when_it_cuts_the_window(scenario: Workspace, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "3", "--branch", "main", f"file://{scenario.root}", str(clone))
    workspace = open_workspace(clone)
    cut = compute_metrics(workspace, SINCE, UNTIL)
    covered = compute_metrics(workspace, D0 + DAY + 5.5 * H, UNTIL)
    workspace.close()
    assert any(why.startswith("shallow clone: history before") for why in cut.partial)
    assert cut.commits < 11
    assert covered.commits == 1 and covered.partial == () and any("shallow clone" in note for note in covered.notes)


def test_a_branch_that_cannot_be_found(scenario: Workspace, tmp_path: Path) -> None:
    done = run_cli(scenario.root, "report", "--branch", "nope")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nope" in done.stderr
    # Given --branch already: the branches there are, not "name the main branch with --branch".
    assert "with --branch" not in done.stderr and "; local branches: main, side11, " in done.stderr, done.stderr
    trunk = tmp_path / "trunk"
    trunk.mkdir()
    git(trunk, "init", "-q", "-b", "trunk")
    git(trunk, "commit", "-q", "--allow-empty", "-m", "first")
    # A main line named otherwise is the one checked out: found without --branch.
    assert compute_metrics(open_workspace(trunk), time.time() - DAY).commits == 1
    git(trunk, "checkout", "-q", "--detach")
    with pytest.raises(LoomError, match=r"^branch main not found in .*trunk$") as raised:  # no front-end's flag
        compute_metrics(open_workspace(trunk), time.time() - DAY)
    assert raised.value.exit_code == 2
    assert compute_metrics(open_workspace(trunk), time.time() - DAY, branch="trunk").commits == 1


@pytest.mark.parametrize("given", ["garbage", "7x", "-3d", "2026-13-40", ""])
def test_a_bad_since_is_one_line_and_exit_2(repo: Path, given: str) -> None:
    done = run_cli(repo, "report", "--since", given)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--since" in done.stderr and "Traceback" not in done.stderr
    if given and not given.startswith("-"):  # what was given, quoted as every other error quotes it
        assert done.stderr.rstrip().endswith(f"(got {given!r})"), done.stderr


def test_the_accepted_forms_of_a_time() -> None:
    now = D0 + 5 * DAY
    assert parse_when("7d", now) == now - 7 * DAY
    assert parse_when("12h", now) == now - 12 * H
    assert parse_when("2w", now) == now - 14 * DAY
    for odd in ("1\nd", "\u0661d", "1d\n"):  # a newline, an Arabic-Indic digit: were read as 1 day
        with pytest.raises(LoomError):
            parse_when(odd, now)
    assert parse_when("2026-03-02", now) == D0
    assert parse_when("2026-03-02T01:00:00+01:00", now) == D0
    done = run_cli(Path("/"), "report", "--since", "2026-03-09", "--until", "2026-03-08")
    assert done.returncode == 2 and "is not before --until" in done.stderr
    # A date no window can say in UTC (year 1 at +14:00 is year 0 there): one line, not an internal error.
    for odd in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        with pytest.raises(LoomError, match="is no date in UTC"):
            parse_when(odd, now)


def test_a_share_is_never_rounded_to_all_or_none() -> None:
    """293 merged of 294 decided read "acceptance 100%"."""
    from loomtui.observability.report import percent

    assert (percent(293 / 294), percent(1 / 500), percent(1.0), percent(0.0), percent(0.5)) == (
        ">99%", "<1%", "100%", "0%", "50%")


def test_a_commit_dated_before_the_window_does_not_hide_the_commits_under_it(repo: Path) -> None:
    """`git rev-list --since` stops at the first commit older than the window: one dated back (a rebase keeping
    its dates, a wrong clock) hid every commit the window had under it ("1 of 1" for 2 of 3)."""
    git(repo, "commit", "-q", "--allow-empty", "-m", "Agent work\n\nAssisted-by: Claude Code")
    env = {"GIT_COMMITTER_DATE": "2020-11-01T00:00:00"}
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "back-dated"], cwd=repo, check=True,
                   env={**os.environ, **env})
    git(repo, "commit", "-q", "--allow-empty", "-m", "More agent work\n\nAssisted-by: Claude Code")
    workspace = open_workspace(repo)
    m = compute_metrics(workspace, time.time() - 3600)
    workspace.close()
    assert (m.agent_commits, m.commits) == (2, 3)  # the repository's first commit, made now, is the third


def test_a_back_dated_commit_of_the_main_line_is_not_taken_for_what_a_merge_brought(repo: Path) -> None:
    """Left out of the window, a back-dated agent commit between two in it was walked as a side commit of the merge
    after it: the merge counted agent-made."""
    from loomtui.observability.history import read_history

    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "back-dated\n\nAssisted-by: Claude Code"],
                   cwd=repo, check=True, env={**os.environ, "GIT_COMMITTER_DATE": "2020-11-01T00:00:00"})
    git(repo, "checkout", "-q", "-b", "side")
    git(repo, "commit", "-q", "--allow-empty", "-m", "a person's work")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "side", "-m", "merge the person's work")
    landed = read_history(repo, None, time.time() - 3600, time.time() + 5).landed
    assert [(c.subject, c.mark) for c in landed][-1] == ("merge the person's work", None)


def test_until_alone_reports_the_week_before_it(repo: Path) -> None:
    done = run_cli(repo, "report", "--until", "2026-03-09")  # since stayed at 7 days before now: refused
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("loomtui report: 2026-03-02 00:00 to 2026-03-09 00:00 UTC")
    # A time ago is counted back from --until, as the default is (it was 7 days before now: a window of hours).
    ago = run_cli(repo, "report", "--since", "2d", "--until", "2026-03-09")
    assert ago.stdout.startswith("loomtui report: 2026-03-07 00:00 to 2026-03-09 00:00 UTC"), ago.stdout
    # A window inside one minute is said to the second ("00:00 to 00:00" read as an empty window).
    short = run_cli(repo, "report", "--since", "2026-03-09T00:00:05", "--until", "2026-03-09T00:00:45")
    assert short.stdout.startswith("loomtui report: 2026-03-09 00:00:05 to 2026-03-09 00:00:45 UTC"), short


def test_metrics_is_what_the_checklist_reads() -> None:
    fields = Metrics.__dataclass_fields__
    assert {"since", "until", "branch", "partial"} <= set(fields)
    for name in ("decided", "merged", "acceptance_rate", "agent_commits", "commits"):
        assert hasattr(Metrics, name)
    from loomtui.guardrails.evals import SANDBOX_EVAL
    from loomtui.observability import metrics

    assert metrics.SANDBOX_EVAL == SANDBOX_EVAL  # kept apart so a report does not load the eval harness


def test_the_bench_builds_and_reports_a_small_store(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "bench", "report", "--audit", "300", "--sandboxes", "40", "--commits", "50",
                   "--days", "10", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["audit_entries"], figures["sandboxes"], figures["commits"], figures["cli_exit_code"]) == \
        (300, 40, 50, 0)
    assert figures["window"]["decided"] > 0 and figures["window"]["agent_commits"] > 0


def test_a_window_from_the_first_years_is_written_with_four_digit_years(repo: Path) -> None:
    done = run_cli(repo, "report", "--since", "0001-01-01", "--until", "0999-01-01")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("loomtui report: 0001-01-01 00:00 to 0999-01-01 00:00 UTC")


@pytest.mark.parametrize("since", ["1970-01-01", "1973-03-03", "20000d"])
def test_a_window_from_before_1973_still_counts_every_commit(repo: Path, since: str) -> None:
    """`--since=@N` is seconds since the epoch to git only from N = 100000000 (1973-03-03): a longer window
    counted "0 of 0 commits" with nothing said, while the same report listed its merges."""
    git(repo, "commit", "-q", "--allow-empty", "-m", "Agent work\n\nAssisted-by: Claude Code")
    workspace = open_workspace(repo)
    m = compute_metrics(workspace, parse_when(since, time.time()))
    workspace.close()
    assert (m.agent_commits, m.commits) == (1, 2)


@pytest.mark.parametrize(("name", "where"), [("Bad Name:", "--agent-trailer"), ("", "--agent-trailer"),
                                             ("a\nb", "--agent-trailer"), ("ok-one,bad name", "env")])
def test_a_trailer_name_that_is_none_is_one_line_not_a_silent_non_match(
        repo: Path, monkeypatch: pytest.MonkeyPatch, name: str, where: str) -> None:
    """Checked in loom.yaml, not here: `--agent-trailer "Bad Name:"` exited 0 and matched nothing."""
    if where == "env":
        monkeypatch.setenv("LOOMTUI_AGENT_TRAILERS", name)
        done = run_cli(repo, "report")
    else:
        done = run_cli(repo, "report", "--agent-trailer", name)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert "is not a trailer name" in done.stderr


def test_a_broken_config_leaves_the_report_partial_not_refused(repo: Path) -> None:
    """The history is readable: `report` refused to give any figure (exit 2) where `checklist` degraded."""
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text("version: 1\ngates: [\n")
    done = run_cli(repo, "report", "--json")
    assert done.returncode == 0, done.stderr
    partial = json.loads(done.stdout)["partial"]
    assert any(p.startswith(".loom/loom.yaml:2: invalid YAML") and "agent_trailers are not read" in p
               for p in partial), partial


def test_a_claim_override_is_named_by_its_claim_and_not_counted_as_an_escalation_opened(tmp_path: Path) -> None:
    """`lead overrode claim c5b186` named the sandbox as the claim, and its record counted as an escalation
    opened, which no one was asked to decide."""
    from loomtui.governance.coordinator import governed_coordinator
    from tests.conftest import demo_repo

    workspace = open_workspace(demo_repo(tmp_path))
    try:
        workspace.actor = "lead@example.com"
        coordinator = governed_coordinator(workspace)
        coordinator.claim("first", "payments/refunds.py")
        with pytest.raises(LoomError):
            coordinator.claim("second", "payments/refunds.py")  # refused, then overridden: no conflict prevented
        taken = coordinator.claim("second", "payments/refunds.py", override_reason="hotfix").claim
        m = compute_metrics(workspace, time.time() - 3600)
        assert [(o.kind, o.subject, o.sandbox) for o in m.overrides] == [
            ("claim", f"#{taken.id} payments/refunds.py", "second")]
        assert m.escalations.opened == 0
        # It counted as "1 prevented", though both now hold the file (the same override untried: none).
        assert (m.conflicts.claims_refused, m.conflicts.prevented) == (0, 0)
    finally:
        workspace.close()


def test_the_text_report_says_how_many_overrides_it_leaves_out() -> None:
    """Past 20, the Overrides list stopped at 20 lines under "Overrides 25" with no word of the rest (the
    agent-made commits' list says it)."""
    from loomtui.observability.metrics import Breakdown, Metrics, Override

    overrides = tuple(Override(D0 + n, "lead@example.com", "claim", f"#{n} a.py", "s1", "script", f"reason {n}")
                      for n in range(25))
    text = render(Metrics(since=D0, until=D0 + DAY, branch="main", total=Breakdown(key="all"), overrides=overrides),
                  "text")
    assert "reason 24" in text and "reason 4" not in text.replace("reason 24", "")
    assert "  ... and 5 older (--format json lists all)" in text


def test_a_merge_counts_over_another_s_claim_only_when_the_review_it_followed_said_so() -> None:
    """A change held for `held-by-another` was reviewed again once the holder let go (no such rule then) and
    approved: the report said a lead had approved a merge over another's claim, and left its refusals out."""
    from loomtui.observability.metrics import merged_over_claims
    from loomtui.observability.window import Entry

    held = ["held-by-another (built in)"]

    def opened(seq: int, sandbox: str, rules: list[str], kind: str = "post-gate") -> Entry:
        return Entry(seq, float(seq), "a", "escalation.opened", str(seq), {"kind": kind, "sandbox": sandbox,
                                                                            "rules": rules})

    def merged(seq: int, sandbox: str) -> Entry:
        return Entry(seq, float(seq), "a", "sandbox.merged", sandbox, {})

    entries = [opened(1, "again", held), opened(2, "again", ["default"]), merged(3, "again"),
               opened(4, "over", held), opened(5, "over", [], kind="conflict-override"), merged(6, "over")]
    assert merged_over_claims(entries) == {"over"}


def test_a_refused_commit_that_met_its_holder_at_merge_anyway_is_not_also_prevented(tmp_path: Path) -> None:
    """The holder merged first and let go, so the refused sandbox's review flagged nothing and its change met the
    holder's at merge: counted as prevented and as met at merge, one conflict read as two."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    workspace = open_workspace(root)
    add_entries(workspace, [
        (D0 + H, "hook.commit_refused", "s6", {"paths": ["billing/z.py"]}),
        (D0 + H + 1, "hook.commit_refused", "s7", {"paths": ["billing/w.py"]}),  # kept off: never met at merge
        (D0 + H + 60, "sandbox.merge_conflict", "s6", {"target": "main", "paths": ["billing/z.py"]})])
    conflicts = compute_metrics(workspace, SINCE, UNTIL).conflicts
    assert (conflicts.commits_refused, conflicts.prevented, conflicts.at_merge) == (1, 1, 1)
    workspace.close()
