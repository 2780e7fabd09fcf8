"""`policy explain SANDBOX`: which rules apply to a sandbox and why, at both stages."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loomtui.coordination.regions import split_id
from loomtui.execution.gitops import Git
from loomtui.execution.review import measured_from, sandbox_tip
from loomtui.execution.sandboxes import agent_tree, get_sandbox, on_this_host
from loomtui.governance.gitfacts import change_facts
from loomtui.governance.policy import ChangeFacts, Evaluation, Policy, evaluate
from loomtui.workspace import Workspace

if TYPE_CHECKING:
    from loomtui.guardrails.evals import EvalReport
    from loomtui.store import Store


def _summary(evaluation: Evaluation) -> dict[str, Any]:
    return {"outcome": evaluation.outcome, "risk": evaluation.risk,
            "rules": list(evaluation.rule_names()), "explanation": evaluation.explanation()}


def claim_facts(workspace: Workspace, sandbox_id: str, author: str | None = None) -> ChangeFacts:
    """The claim-stage facts of a sandbox: the paths and regions its live claims hold."""
    regions = sorted({rid for c in workspace.store.live_claims(sandbox_id) for rid in c.region_ids})
    return ChangeFacts(stage="claim", paths=tuple(sorted({split_id(r)[0] for r in regions})),
                       regions=tuple(regions), author=author)


def with_eval_facts(facts: ChangeFacts, store: Store, sandbox_id: str, tip: str) -> ChangeFacts:
    """`facts` with gate 2's score and items and gate 1's regressions, as the sandbox's stored eval at `tip` has
    them (the review judges with them: `policy explain`, the policy view and `loomtui gate` said "no rule
    applies" of a change the review had held for its low behaviour score)."""
    from loomtui.guardrails.evals import SANDBOX_EVAL, EvalReport

    reports = [EvalReport.from_dict(row.data, stored=True, report_id=row.id)
               for row in store.eval_reports_at(sandbox_id, SANDBOX_EVAL, tip)]
    if not reports:
        return facts
    # Each from the newest eval at this tip that has it: after `eval --gate 1 --force` the newest has no score,
    # and the change read "no rule applies" where the review had held it for its score.
    scored = next((report for report in reports if report.score is not None), reports[0])
    tested = next((report for report in reports if report.checks), reports[0])
    return replace(facts, **{**eval_fields(scored), "regressions": tested.regressions})


def eval_fields(report: EvalReport) -> dict[str, Any]:
    """The facts an eval gives the policy: gate 2's score and items, gate 1's regressions."""
    score = report.score
    return {"eval_score": score.total if score is not None else None,
            "eval_items": {item.name: str(item.status) for item in score.items} if score is not None else {},
            "regressions": report.regressions}


def explain_sandbox(workspace: Workspace, policy: Policy, sandbox_id: str) -> dict[str, Any]:
    """Both policy runs for a sandbox: on its claims, and on its diff with its gate results."""
    record = get_sandbox(workspace, sandbox_id)
    claim = _summary(evaluate(policy, claim_facts(workspace, record.id)))
    repo = Git(workspace.root)
    tip = sandbox_tip(repo, record)
    base = repo.resolve_commit(str(record.base_sha or record.base_ref))
    if tip is not None and base is not None:
        base = measured_from(repo, record, tip)  # as the review measures it
    if tip is None or base is None:  # refused at its claims before any branch, or removed with it
        missing = f"base {record.base_sha or record.base_ref} does not exist" if tip is not None else \
            f"branch {record.branch} does not exist" if on_this_host(record) else \
            f"branch {record.branch} is on {record.host}, not here (explained there, or here once fetched)"
        return {"sandbox": record.id, "claim": claim,
                "post-gate": {"outcome": "none", "risk": "none", "rules": [],
                              "explanation": [f"no change to evaluate: {missing}"],
                              "paths": [], "lines_changed": 0}}
    runs = workspace.store.gate_runs(record.id)
    gates = {run.gate: run.status for run in runs}
    head = tip
    if Path(record.worktree).is_dir():
        head = agent_tree(workspace, record).snapshot(tip)[0]  # the worktree as it is, seen from outside
    facts = change_facts(workspace.root, base, head, gates=gates, runtime=record.runtime,
                         author=record.created_by or None,
                         onto=repo.resolve_commit(f"refs/heads/{record.target}") if record.target else None,
                         advisory_gates=[run.gate for run in runs if run.advisory])  # as its review reads them
    facts = with_eval_facts(facts, workspace.store, record.id, tip)
    return {
        "sandbox": record.id,
        "claim": claim,
        "post-gate": {**_summary(evaluate(policy, facts)), "paths": list(facts.paths),
                      "lines_changed": facts.lines_changed},
    }
