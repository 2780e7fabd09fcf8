"""The sample repo's fixture pair: two agents' changes that pass alone and break together, caught at review."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import demo_repo
from loomtui.execution.lifecycle import AWAITING_REVIEW
from loomtui.guardrails.merged import latest_merged
from loomtui.workflow.engine import wait_until_settled
from loomtui.workflow.tasks import create_sandbox, start
from loomtui.workspace import open_workspace
from tests.test_review import merge_mode

PAIR = Path(".loom/demo/pair")


def test_the_second_of_a_pair_that_breaks_together_is_held_for_a_lead_naming_the_first(tmp_path: Path) -> None:
    root = merge_mode(demo_repo(tmp_path), "manual")
    workspace = open_workspace(root)
    ids = []
    for script, task in (("oregon-out.yaml", "Only regions that charge sales tax are tax regions"),
                         ("oregon-orders.yaml", "Order tax by billing region")):
        record = create_sandbox(workspace, task, "script", script=root / PAIR / script)
        start(workspace, record.id)
        wait_until_settled(workspace, record.id, timeout=120)
        ids.append(record.id)
    out, orders = ids
    for sandbox in ids:  # each passes gate 1 on its own
        record = workspace.store.get_sandbox(sandbox)
        assert record is not None and record.status == AWAITING_REVIEW
        assert {run.gate: run.status for run in workspace.store.gate_runs(sandbox)}["tests"] == "passed"
    merged = latest_merged(workspace)
    assert merged is not None and set(merged.sandboxes) == {out, orders}
    [found] = merged.breaking
    assert set(found.sandboxes) == {out, orders}
    assert found.tests == ("tests/test_orders.py::test_orders_in_oregon_pay_no_sales_tax",)
    policy = [e.details for e in workspace.audit.entries()
              if e.action == "policy.evaluated" and e.subject == orders and e.details.get("stage") == "post-gate"]
    assert "breaks-with-another-change" in policy[-1]["rules"]
    escalation = workspace.store.get_escalation(int(workspace.store.get_sandbox(orders).data["review_escalation"]))
    assert escalation is not None and escalation.data["evidence"]["eval"]["breaks_with"] == [out]
