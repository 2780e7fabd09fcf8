"""The dashboard's sandboxes table: its columns, and the cells of one sandbox's row."""

from __future__ import annotations

from typing import Final

from rich.text import Text

from loomtui.store import SandboxRecord
from loomtui.tui.evals_text import gates_cell
from loomtui.tui.sandbox_text import RISK_STYLES, STATUS_STYLES, STEP_STYLES, app_step_hints, format_age, task_line
from loomtui.tui.snapshot import DashboardSnapshot
from loomtui.tui.visible import VisibleText
from loomtui.tui.widgets.fitted_table import FitColumn

# In table order; `priority` says which stay as the width runs out (k9s-style): the rest are in
# the detail pane anyway. The next step and the task share the width left over. The risk is claimed
# before them: a long next step took its want and dropped Risk just when a change waited for a decision.
# Their want comes before Runtime and Isolation (the same on most rows): at 120 columns both kept their
# place while the next step read "waits for 961e7a (aw…". Short of room the task takes its minimum from the
# next step: at 80 columns with a review waiting and a critical risk, Task went and Risk stayed.
SANDBOX_COLUMNS: Final = (
    FitColumn("id", "ID", 0), FitColumn("status", "Status", 1),
    FitColumn("next", "Next", 3, flex=True, min_width=12, want=28, max_width=60),
    FitColumn("task", "Task", 4, flex=True, min_width=12, want=28, takes_room=True), FitColumn("gates", "Gates", 5),
    FitColumn("risk", "Risk", 2), FitColumn("claims", "Claims", 7), FitColumn("age", "Age", 6),
    FitColumn("runtime", "Runtime", 8, max_width=16), FitColumn("isolation", "Isolation", 9),
)


def matches_filter(sandbox: SandboxRecord, filter_text: str) -> bool:
    """Whether the `/` filter keeps `sandbox`: its id, task, runtime or status contains the text."""
    needle = filter_text.lower()
    return not needle or any(
        needle in value.lower() for value in (sandbox.id, sandbox.task, sandbox.runtime, sandbox.status))


def sandbox_row(sandbox: SandboxRecord, snapshot: DashboardSnapshot, now: float) -> dict[str, Text | str]:
    """One sandbox's cells, by column key."""
    gates = gates_cell(snapshot.gates_by_sandbox.get(sandbox.id, {}), snapshot.eval_badges.get(sandbox.id))
    risk = snapshot.risk_by_sandbox.get(sandbox.id, "–")
    step = snapshot.steps.get(sandbox.id)
    return {
        "next": Text(step.line(app_step_hints(), hint_first=True) if step and str(step.step) != "done" else "–",
                     style=STEP_STYLES.get(str(step.step), "") if step else ""),
        "id": sandbox.id,
        "runtime": VisibleText(sandbox.runtime),
        "task": Text(task_line(sandbox.task)),
        "status": Text(sandbox.status, style=STATUS_STYLES.get(sandbox.status, "")),
        "age": format_age(now - sandbox.created),
        "isolation": Text("bwrap" if sandbox.isolation == "bwrap" else "NONE",
                          style="" if sandbox.isolation == "bwrap" else "bold yellow"),
        "claims": str(snapshot.claim_counts.get(sandbox.id, 0)),
        "gates": gates,
        "risk": Text(risk, style=RISK_STYLES.get(risk, "")),
    }
