"""What the demo scenario's modules share: its agents' names and the sandbox data keys it keeps,
finding its sandboxes in the store, its policy, and how it says a line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from loomtui.coordination.claims import Coordinator
from loomtui.governance.policy import Policy, configured_policy
from loomtui.store import SandboxRecord
from loomtui.workflow.steps import REVIEW_ESCALATION_KEY
from loomtui.workspace import Workspace

AGENT_NAMES: Final = ("refunds", "rounding", "invoices", "templates")
"""The plan's tasks, as the demo names its agents (`.loom/plan.yaml`)."""

# Sandbox data keys the scenario keeps (the engine's own keys are in loomtui.workflow.steps).
AGENT_KEY: Final = "demo_agent"
CONFLICTS_KEY: Final = "demo_conflicts_at_claim"
"""What the claim check showed for a task that waits on others: its claims beside the live ones."""
RAISED_KEY: Final = "demo_conflicts_raised"
"""A signature change: the regions, and the conflicts the claim check of the waiting tasks raised to high."""
TOLD_KEY: Final = "demo_told"
"""The seq of the last audit entry about this sandbox that the scenario has narrated."""
ESCALATION_KEY: Final = REVIEW_ESCALATION_KEY

Say = Callable[[str], None]


class Steps:
    """Collects the lines of a step and passes each on as it happens."""

    def __init__(self, on_step: Say | None = None) -> None:
        self.lines: list[str] = []
        self.on_step = on_step

    def __call__(self, text: str) -> None:
        self.lines.append(text)
        if self.on_step is not None:
            self.on_step(text)

    def heading(self, text: str) -> None:
        self("")
        self(f"== {text} ==")


def demo_sandboxes(workspace: Workspace) -> dict[str, SandboxRecord]:
    """The scenario's sandboxes by agent name (the newest one of each), archived included."""
    found: dict[str, SandboxRecord] = {}
    for record in sorted(workspace.store.list_sandboxes(include_archived=True), key=lambda r: r.created):
        name = record.data.get(AGENT_KEY)
        if name in AGENT_NAMES:
            found[name] = record
    return {name: found[name] for name in AGENT_NAMES if name in found}


def acting_as(workspace: Workspace, actor: str) -> Workspace:
    """The same workspace (store, audit log) acting as someone else; never close it.

    The demo's people are not this machine's user: what one of them does, or the engine
    does for their task, is recorded as them, never as whoever runs the demo.
    """
    return workspace.acting_as(actor)


def demo_policy(workspace: Workspace) -> Policy:
    """The demo repository's policy, as its config names it."""
    return configured_policy(workspace.root, workspace.load_config())


def short_region(region_id: str) -> str:
    """`payments/currency.py::round_minor_units` -> `round_minor_units` (a file's path as it is)."""
    return region_id.split("::", 1)[1] if "::" in region_id else region_id


def agent_names(workspace: Workspace, ids: Sequence[object]) -> list[str]:
    """The agent name of each sandbox id (the id itself for a sandbox not the scenario's)."""
    names = []
    for sandbox_id in ids:
        record = workspace.store.get_sandbox(str(sandbox_id))
        names.append(str(record.data.get(AGENT_KEY) or sandbox_id) if record else str(sandbox_id))
    return names


def conflict_line(workspace: Workspace, conflict: dict[str, Any], coordinator: Coordinator) -> str:
    """A conflict (`Conflict.as_dict()`, as claims record it) from the side of the claim checked."""
    other = str(conflict["b"]["sandbox"])
    path = [str(p) for p in conflict["path"]]
    return (f"  {str(conflict['severity']).upper()}: {conflict['kind']} conflict with "
            f"{agent_names(workspace, [other])[0]} (sandbox {other}): {coordinator.describe_path(path)}")
