"""Policy at claim time, before generation: may this sandbox's agent even start?

A `block` on the claimed regions rejects the sandbox; a `require` opens a pre-start
escalation, and the agent does not start until it is approved (or overridden).
"""

from __future__ import annotations

from loomtui.errors import LoomError
from loomtui.governance.checkout import refuse_an_agents_policy
from loomtui.governance.escalations import PRESTART_ESCALATION_KEY, open_escalation
from loomtui.governance.explain import claim_facts
from loomtui.governance.policy import configured_policy, evaluate
from loomtui.store import EscalationRecord
from loomtui.workspace import Workspace


def prestart_check(workspace: Workspace, sandbox_id: str) -> EscalationRecord | None:
    """Evaluate the policy on a planned sandbox's claims; returns the escalation it waits on."""
    # The author is whoever stated the task, not whoever happens to prepare it (a task that
    # waited on others is prepared later, by a supervisor or a reviewer's app).
    record = workspace.store.get_sandbox(sandbox_id)
    author = str(record.created_by or workspace.actor) if record else workspace.actor
    facts = claim_facts(workspace, sandbox_id, author=author)
    if not facts.regions:
        return None
    refuse_an_agents_policy(workspace)
    policy = configured_policy(workspace.root, workspace.load_config())
    evaluation = evaluate(policy, facts)
    if evaluation.outcome == "auto_approve" or (evaluation.outcome == "require" and not evaluation.requirements):
        return None
    if evaluation.outcome == "block":
        blockers = ", ".join(a.name for a in evaluation.applied if a.decision == "block")
        raise PrestartBlocked(f"sandbox {sandbox_id}: the policy blocks its claims ({blockers})")
    escalation = open_escalation(
        workspace, "pre-start", evaluation, facts, sandbox_id=sandbox_id,
        summary=f"start of sandbox {sandbox_id} on {', '.join(facts.regions[:3])}"
                + ("…" if len(facts.regions) > 3 else ""),
    )
    workspace.store.update_sandbox(sandbox_id, data={PRESTART_ESCALATION_KEY: escalation.id})
    return escalation


class PrestartBlocked(LoomError):
    """The policy blocks a sandbox's claims outright (exit code 1)."""

    exit_code = 1
