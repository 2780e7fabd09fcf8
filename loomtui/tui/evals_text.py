"""What the dashboard's Evals tab says, as Rich text: a check's row, a test's row, gate 1's headline,
gate 2's score, the merged gate; and the reads its workers make (the store, the end of a log). No widget
here: the pane (`widgets/evals.py`) places them. What a check or an agent wrote is untrusted: each line
goes through `one_line` (one printable line) and into a `Text`, never parsed as markup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from rich.text import Text

from loomtui.errors import escape_controls
from loomtui.store import GateRunRecord
from loomtui.tui.keys import shown_key
from loomtui.tui.snapshot import EvalBadge
from loomtui.tui.widgets.fields import hanging
from loomtui.workspace import Workspace

if TYPE_CHECKING:  # the eval engines load when an eval is read (a worker), not with the dashboard
    from loomtui.guardrails.evals import EvalReport
    from loomtui.guardrails.merged import MergedReport

GATE_MARKS: Final = {"passed": "✓", "failed": "✗", "error": "!", "running": "…"}
CHECK_STYLES: Final = {"passed": "green", "failed": "bold red", "error": "bold yellow", "running": "cyan"}
ITEM_STYLES: Final = {"pass": "green", "warn": "yellow", "fail": "bold red"}
CLASS_STYLES: Final = {"FAIL_TO_PASS": "green", "FAIL_TO_FAIL": "yellow", "REMOVED": "yellow", "SKIPPED": "dim",
                       "PASS_TO_PASS": "dim"}
REGRESSION_STYLE: Final = "bold red"
EVIDENCE_SHOWN: Final = 6
OUTCOME_WIDTH: Final = 50
MESSAGE_WIDTH: Final = 80
TEST_WIDTH: Final = 44
"""A test id in the per-test table (its whole is under the table when its row is highlighted)."""

def one_line(text: str, width: int | None = None) -> str:
    """Untrusted text (a test id, a message, a line of output) as one printable line, cut to `width`."""
    line = escape_controls(text.expandtabs(4))
    return line if width is None or len(line) <= width else line[: width - 1] + "…"


def short_test_id(test_id: str, width: int = TEST_WIDTH) -> str:
    """A test id in `width` cells, its name kept: `tests/unit/test_x.py::test_y` loses its folders
    first, then the middle of what is left (cut at the end, every id of one file read the same)."""
    line = one_line(test_id)
    if len(line) <= width:
        return line
    path, sep, name = line.partition("::")
    line = path.rsplit("/", 1)[-1] + sep + name if sep else line
    if len(line) <= width:
        return line
    head = (width - 1) // 3
    if sep and len(line) - len(name) <= (width - 1) // 2:  # the file whole, where it leaves the name room
        head = max(head, len(line) - len(name))
    return line[:head] + "…" + line[len(line) - (width - 1 - head):]


def gates_cell(marks: dict[str, str], badge: EvalBadge | None) -> Text:
    """The sandboxes table's Gates cell: the newest eval's badge (red when gate 1 failed), or each
    check's mark while one runs and where no eval was made."""
    if badge is not None and "running" not in marks.values():
        return Text(badge.text, style="red" if badge.failed else "")
    failed = any(status in ("failed", "error") for status in marks.values())
    return Text(" ".join(f"{name}{GATE_MARKS.get(status, '…')}" for name, status in marks.items()) or "–",
                style="red" if failed else "")


@dataclass(frozen=True)
class EvalsView:
    """What the tab shows of one sandbox (or of none: the merged gate only), read off the UI thread."""

    sandbox_id: str | None
    runs: tuple[GateRunRecord, ...] = ()  # the newest run of each check
    report: EvalReport | None = None
    merged: MergedReport | None = None
    merged_since: tuple[tuple[str, str], ...] = ()
    """The merged gate's sandboxes no longer pending, each with its state now: the gate spoke of them."""

    @property
    def running(self) -> bool:
        return any(run.status == "running" for run in self.runs)

    def run_of(self, gate: str | None) -> GateRunRecord | None:
        return next((run for run in self.runs if run.gate == gate), None)


def read_evals(workspace: Workspace, sandbox_id: str | None) -> EvalsView:
    """The sandbox's newest run of each check, its newest eval, and the newest merged gate."""
    from loomtui.guardrails.evals import latest_eval
    from loomtui.guardrails.merged import PENDING, latest_merged

    merged = latest_merged(workspace)
    since = []
    for merged_id in merged.sandboxes if merged is not None else ():
        record = workspace.store.get_sandbox(merged_id)
        if record is None or record.status not in PENDING:
            since.append((merged_id, str(record.status) if record is not None else "removed"))
    if sandbox_id is None:
        return EvalsView(None, merged=merged, merged_since=tuple(since))
    newest: dict[str, GateRunRecord] = {}
    for run in workspace.store.gate_runs(sandbox_id):  # oldest first: a check's last run is its newest
        newest[run.gate] = run
    return EvalsView(sandbox_id, tuple(newest.values()), latest_eval(workspace, sandbox_id), merged, tuple(since))


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a file, read from its end, each one printable line; [] when unreadable."""
    from loomtui.execution.log_lines import tail_lines as read_tail

    try:
        return [one_line(line) for line in read_tail(path, count)]
    except OSError:
        return []


def log_path(workspace: Workspace, run: GateRunRecord) -> Path:
    """Where a gate run's output is: its data says so once it wrote any; else where the engine puts it."""
    from loomtui.guardrails.baseline import run_dir

    given = run.data.get("log")
    return Path(given) if isinstance(given, str) and given else run_dir(workspace, run.id) / "output.log"


def check_cells(run: GateRunRecord, now: float, blocking: bool) -> dict[str, Text]:
    """One check's row: a running one shows its elapsed time and its progress (lines, the last one)."""
    data = run.data
    if run.status == "running":
        progress: dict[str, Any] = data["progress"] if isinstance(data.get("progress"), dict) else {}
        elapsed = max(now - run.started, float(progress.get("elapsed_s") or 0.0))
        tail = [str(line) for line in progress.get("tail") or () if str(line).strip()]
        outcome = (f"{progress.get('lines', 0)} lines" + (f": {tail[-1].strip()}" if tail else "")) if progress \
            else "running…"
        when = f"{elapsed:.0f}s"
    else:
        # The tests it names are in the per-test table below: in a cell, "regressed: tes" was all one saw.
        outcome = str(data.get("summary") or "").split("; regressed: ")[0]
        when = f"{float(data.get('duration_s') or 0.0):.1f}s"
    blocks = bool(data.get("blocking", blocking))
    return {"check": Text(one_line(run.gate), style="bold"),
            "status": Text(run.status, style=CHECK_STYLES.get(run.status, "")), "time": Text(when),
            "blocking": Text("yes" if blocks else "no", style="" if blocks else "dim"),
            "outcome": Text(one_line(outcome, OUTCOME_WIDTH))}


class PerTestRow(NamedTuple):
    """One row of the per-test table, and the whole of it for the line under the table (a test id
    or a message longer than its column is cut there)."""

    cells: dict[str, Text]
    whole: Text


def test_rows(report: EvalReport) -> list[PerTestRow]:
    """Each check's classified tests (regressions first, as classified), then its new findings."""
    rows: list[PerTestRow] = []
    for check in report.checks:
        for test in check.tests.tests if check.tests is not None else ():
            bad = test.is_regression
            cls_style = REGRESSION_STYLE if bad else CLASS_STYLES.get(test.cls, "")
            cells = {"cls": Text(test.cls.value, style=cls_style),
                     "flaky": Text("flaky" if test.flaky else "", style="yellow"),
                     "test": Text(one_line(test.id), style=REGRESSION_STYLE if bad else ""),
                     "message": Text(one_line(test.message, MESSAGE_WIDTH), style="" if bad else "dim")}
            rows.append(PerTestRow(cells, _whole(test.cls.value, cls_style, test.id, test.message)))
        for finding in check.findings.new if check.findings is not None else ():
            where = one_line(f"{finding.path}:{finding.line} {finding.code}")
            cells = {"cls": Text("NEW_FINDING", style=REGRESSION_STYLE), "flaky": Text(""),
                     "test": Text(where, style=REGRESSION_STYLE),
                     "message": Text(one_line(finding.message, MESSAGE_WIDTH))}
            rows.append(PerTestRow(cells, _whole("NEW_FINDING", REGRESSION_STYLE, where, finding.message)))
    return rows


def _whole(cls: str, style: str, name: str, message: str) -> Text:
    text = Text.assemble((cls, style), "  ", (one_line(name), "bold"))
    if message:
        text.append("\n" + one_line(message))
    return text


def tests_title(report: EvalReport | None, shown: int, total: int) -> Text:
    text = Text("per test  ", style="bold")
    if report is None:
        return text.append("no eval yet", style="dim")
    parts = [f"{c.gate}: {c.tests.summary()}" for c in report.checks if c.tests is not None]
    parts += [f"{c.gate}: {c.findings.summary()}" for c in report.checks if c.findings is not None]
    text.append(one_line("; ".join(parts)) if parts else "no per-test results (no junit or findings check)")
    if shown < total:
        text.append(f" (the first {shown} of {total})", style="dim")
    return text


def summary_text(view: EvalsView | None, sandbox_id: str | None, evaluating: bool) -> Text:
    """The eval's headline: its badge, commits, and gate 1's verdict."""
    if sandbox_id is None:
        return Text("Select a sandbox to see its evals.", style="dim")
    text = Text()
    key = shown_key("dashboard.eval", "e")
    if evaluating:
        text.append(f"eval running ({key}): gate 1's checks against the baseline, then gate 2's score…\n",
                    style="cyan")
    if view is None or view.sandbox_id != sandbox_id:
        return text.append("reading…", style="dim")
    report = view.report
    if report is None and view.running:  # its review's checks (the supervisor's): "e runs gate 1" read as idle
        return text.append("No eval yet: gate 1's checks are running (below); gate 2's score follows.", style="dim")
    if report is None:
        return text.append(f"No eval yet: {key} runs gate 1 (the checks, judged against the base commit) and "
                           "gate 2 (a score with its evidence).", style="dim")
    failed = bool(report.checks) and report.gate1 != "passed"
    text.append("eval ", style="bold")
    text.append(report.badge(), style="bold red" if failed else "bold green")
    text.append(f"  at {report.commit[:8]} (base {report.base[:8]})", style="dim")
    if report.checks:
        text.append("\ngate 1 ")
        text.append(report.gate1, style=CHECK_STYLES.get(report.gate1, ""))
        text.append(": " + ", ".join(f"{one_line(c.gate)} {c.status}" for c in report.checks))
    return text


def score_text(report: EvalReport | None, width: int | None = None) -> Text:
    """Gate 2: the total, then each item's status, name, headline and first evidence lines, wrapped
    under themselves for a pane `width` cells wide (a long test id broke mid-word at column 0)."""
    score = report.score if report is not None else None
    if score is None:
        return Text("gate 2 ", style="bold").append(
            "no score yet" if report is None else "not run in this eval (gate 1 only)", style="dim")
    text = Text("gate 2 ", style="bold")
    text.append(f"score {score.total}", style="bold green" if score.passed else "bold red")
    text.append("  passes\n" if score.passed else "  below the pass score\n", style="dim")
    for item in score.items:
        text.append(f" {str(item.status).upper():<4} ", style=ITEM_STYLES.get(str(item.status), ""))
        text.append(f"{item.name:<11} ", style="bold")
        text.append(one_line(item.headline) + "\n")
        for line in item.evidence[:EVIDENCE_SHOWN]:  # indented, no bullet: a long first word wraps whole
            shown = f"      {one_line(line)}"
            # Two cells short of the pane: a scrollbar that comes later does not fold the lines again.
            text.append((hanging(shown, width - 2) if width else shown) + "\n", style="dim")
        if len(item.evidence) > EVIDENCE_SHOWN:
            text.append(f"      ... and {len(item.evidence) - EVIDENCE_SHOWN} more\n", style="dim")
    text.rstrip()
    return text


def merged_text(merged: MergedReport | None, running: bool, since: Sequence[tuple[str, str]] = ()) -> Text:
    """The merged gate's line: what was merged onto which tip, who breaks together, who conflicts, and
    which of its sandboxes have moved on since (`since`: id and state now)."""
    key = shown_key("dashboard.merged_gate", "M")
    if running:
        return Text("merged gate running: every pending sandbox merged together, its checks run…", style="cyan")
    if merged is None:
        return Text(f"merged gate: not run yet ({key} runs it over the sandboxes awaiting review or approved)",
                    style="dim")
    text = Text("merged gate ", style="bold")
    text.append(f"on {one_line(merged.target)} ({merged.onto[:8]}): {len(merged.sandboxes)} merged "
                f"({', '.join(merged.sandboxes) or 'none'})")
    for found in merged.breaking:
        text.append("\n ! " + one_line(found.line()), style="bold red")
    for sandbox, files in merged.conflicting:
        text.append(f"\n {sandbox} does not merge with the others: {one_line(files, OUTCOME_WIDTH)}", style="yellow")
    unsure = merged.unfinished()
    if unsure and not merged.breaking:
        text.append(f"\n whether they break anything together is not known: {', '.join(unsure)} could not finish",
                    style="yellow")
    elif not merged.breaking and len(merged.sandboxes) > 1:
        text.append("\n no two of them break anything together", style="green")
    if since:
        moved = ", ".join(f"{sandbox} {state}" for sandbox, state in since)
        text.append(f"\n since then: {one_line(moved)} ({key} runs it again over what is pending now)",
                    style="yellow")
    return text


def banner_text(merged: MergedReport | None, sandbox_id: str | None,
                since: Sequence[tuple[str, str]] = ()) -> Text | None:
    """A warning when the selected sandbox breaks something together with another, or does not merge
    (an other that has moved on since, `since`, is named with its state now)."""
    if merged is None or sandbox_id is None:
        return None
    now = dict(since)
    lines = []
    for found in merged.breaking:
        if sandbox_id in found.sandboxes:
            others = " + ".join(f"{s} ({now[s]} since)" if s in now else s for s in found.sandboxes if s != sandbox_id)
            what = ", ".join(found.tests[:3]) + (" ..." if len(found.tests) > 3 else "") if found.tests \
                else "its exit code"
            if found.counts_against(sandbox_id):
                lines.append(f"{sandbox_id} breaks {found.check} together with {others}: {what}")
            else:  # another's change to how the checks run: said, not held against this one
                lines.append(f"{found.check} fails beside {others}, whose change decides how the checks run: {what} "
                             f"(not counted against {sandbox_id})")
    lines += [f"{sandbox_id} does not merge with the other pending sandboxes: {files}"
              for sandbox, files in merged.conflicting if sandbox == sandbox_id]
    return Text("\n".join(one_line(line) for line in lines), style="bold") if lines else None


def merged_lines(reports: Sequence[MergedReport]) -> list[str]:
    """What a merged gate found, one line each (the notification when `M` ends)."""
    if not reports:
        from loomtui.guardrails.merged import NOTHING_PENDING

        return [NOTHING_PENDING]
    lines = []
    for report in reports:
        lines += [found.line() for found in report.breaking]
        lines += [f"{sandbox} does not merge with the others ({files})" for sandbox, files in report.conflicting]
        if report.unfinished() and not report.breaking:
            lines.append(f"on {report.target}: {', '.join(report.unfinished())} could not finish on the merged tree")
        elif not report.breaking:
            lines.append(f"on {report.target}: {len(report.sandboxes)} merged, nothing breaks together")
    return lines
