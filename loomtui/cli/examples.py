"""Examples each command's `--help` ends with: a newcomer read 82 help pages and found a whole command line
in two (tests/test_cli_output.py parses every one, so none goes stale)."""

from __future__ import annotations

from typing import Final

EXAMPLES: Final[dict[str, tuple[str, ...]]] = {
    "loomtui demo": (
        "loomtui demo                      # the sample repo, its agents and the app",
        "loomtui demo --keep               # keep the sample repo afterwards, to look around",
    ),
    "loomtui init": ("loomtui init && git add .loom && git commit -m 'Adopt loomtui'",),
    "loomtui sandbox new": (
        "loomtui sandbox new --runtime claude --task 'Round invoice totals per line' "
        "--claim payments/invoices.py",
        "loomtui sandbox new --runtime command --task 'Fix the typo in the README' -- ./my-agent.sh {task}",
        "loomtui sandbox new --runtime codex --task 'Use the new rounding' --after 3f2a1c --no-start",
    ),
    "loomtui sandbox list": ("loomtui sandbox list --json | jq -r '.sandboxes[] | [.id, .status] | @tsv'",),
    "loomtui sandbox logs": ("loomtui sandbox logs 3f2a1c -f",),
    "loomtui sandbox merge": ("loomtui sandbox merge 3f2a1c", "loomtui sandbox merge 3f2a1c --into release"),
    "loomtui sandbox rm": ("loomtui sandbox rm 3f2a1c", "loomtui sandbox rm --done   # every merged or rejected one"),
    "loomtui claim add": (
        "loomtui claim add payments/invoices.py::InvoiceCalculator.subtotal --sandbox 3f2a1c "
        "--reason 'rounding per line'",
        "loomtui claim add 'docs/**' --shared --sandbox alice",
    ),
    "loomtui claim suggest": ("loomtui claim suggest 'round invoice totals per line' --limit 5",),
    "loomtui escalation list": ("loomtui escalation list --json",),
    "loomtui escalation approve": ("loomtui escalation approve 4 --reason 'read the diff; tests cover it'",),
    "loomtui escalation reject": ("loomtui escalation reject 4 --reason 'floats for money (ADR 0001)'",),
    "loomtui escalation override": ("loomtui escalation override 4 --reason 'hotfix for INC-212' --hours 4",),
    "loomtui plan run": (
        "loomtui plan run            # states .loom/plan.yaml's tasks, in order (see `plan show`)",
        "loomtui plan run --again    # every task once more",
    ),
    "loomtui plan show": ("loomtui plan show --json",),
    "loomtui report": ("loomtui report --since 7d", "loomtui report --since 2026-11-01 --format markdown"),
    "loomtui audit tail": ("loomtui audit tail --action 'escalation.*' --since 7d",
                           "loomtui audit tail --actor lead@example.com -n 50 --json"),
    "loomtui context slice": ("loomtui context slice --task 'Round invoice totals' --claim payments/invoices.py",),
    "loomtui gate": ("loomtui gate --base origin/main --format markdown",),
}
"""Per command (its `prog`, as `--help` names it): example command lines, a `#` comment after one."""


def examples_epilog(prog: str) -> str | None:
    """The `examples:` block for a command's help, or None where it has none."""
    lines = EXAMPLES.get(prog)
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) if lines else None
