"""The policy view (rules, and which fired for a sandbox) and the audit view (entries, verify)."""

from __future__ import annotations

import json
from typing import Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input, OptionList, Select, Static

from loomtui.audit import AuditEntry
from loomtui.errors import LoomError, escape_controls, plural
from loomtui.governance.policy import Policy, Rule
from loomtui.tui.base import LoomScreen, inner_width
from loomtui.tui.keys import KeysFooter
from loomtui.tui.visible import VisibleText, visible_controls
from loomtui.tui.widgets.fields import Field, render_fields
from loomtui.tui.widgets.fitted_table import FitColumn, FittedTable
from loomtui.tui.widgets.status_header import StatusHeader

DECISION_STYLES = {"block": "bold red", "require": "yellow", "auto_approve": "green"}
AUDIT_ROWS = 500
RULE_COLUMNS: Final = (FitColumn("fired", "Fired", 0), FitColumn("name", "Rule", 1), FitColumn("stage", "Stage", 3),
                       FitColumn("decision", "Decision", 2), FitColumn("risk", "Risk", 4),
                       FitColumn("when", "When", 5, flex=True, min_width=10, want=30))


def _when(rule: Rule) -> str:
    """A one-line summary of a rule's conditions."""
    when = rule.when
    parts = []
    if when.paths is not None:
        parts.append("paths " + ", ".join(when.paths.patterns))
    if when.regions is not None:
        parts.append("regions " + ", ".join(glob.pattern for glob in when.regions))
    for label, value in (("signature changed", when.signature_changed), ("lines over", when.lines_over),
                         ("lines under", when.lines_under), ("gates failed", when.gates_failed),
                         ("gates passed", when.gates_passed), ("runtime", when.runtime),
                         ("labels", when.labels), ("eval score over", when.eval_score_over),
                         ("eval score under", when.eval_score_under), ("regressions", when.regressions),
                         ("breaks with another sandbox", when.merged_breaks)):
        if isinstance(value, bool):  # a condition met or not: said in words, not Python's True
            parts.append(label if value else f"not {label}")
        elif value is not None:
            parts.append(f"{label} {', '.join(value) if isinstance(value, tuple) else value}")
    if when.eval_items is not None:
        parts.append("eval items " + ", ".join(f"{name} {status}" for name, status in when.eval_items.items()))
    return "; ".join(parts) or "always"


class PolicyScreen(LoomScreen[None]):
    """The rules of `.loom/policy.yaml`, and which of them fire for the chosen sandbox."""

    VIEW_NAME = "Policy"

    AUTO_FOCUS = "#rules"
    BINDINGS = [
        Binding("s", "pick_sandbox", "Sandbox", id="policy.pick_sandbox",
                tooltip="Choose the sandbox the rules are evaluated for"),
        Binding("escape", "back", "Back", id="policy.back", tooltip="Back to the sandboxes"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.explanation: list[str] = []
        self.fired: frozenset[str] = frozenset()  # the rules the chosen sandbox's explanation names
        self.sandbox_options: list[str] = []

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield Static(id="policy-source")
        yield Select[str]([], prompt="choose a sandbox to see which rules fire", id="policy-sandbox")
        with Horizontal(id="policy-body"):
            yield FittedTable(RULE_COLUMNS, id="rules")
            with VerticalScroll(id="policy-detail-pane"):
                yield Static(id="policy-detail")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.loom.update_header(self.query_one(StatusHeader))
        self.show_policy()

    def on_screen_resume(self) -> None:
        self.show_policy()

    def show_policy(self, fired: frozenset[str] | None = None, explanation: list[str] | None = None) -> None:
        """The policy's rules; with `fired` and `explanation`, a sandbox's evaluation (else the last one stays)."""
        if fired is not None:
            self.fired = fired
        fired = self.fired
        policy: Policy | None = self.loom.policy
        source = self.query_one("#policy-source", Static)
        if policy is None:
            source.update(Text("No policy loaded.", style="bold red"))
            return
        text = Text(f" {policy.summary()}")
        for warning in policy.warnings:
            text.append(f"\n warning: {warning}", style="yellow")
        problem = self.loom.config_problem
        if problem:
            text.append(f"\n {problem} (showing the last good policy)", style="bold red")
        source.update(text)
        self.query_one("#rules", FittedTable).show_rows({rule.name: {
            "fired": Text("●" if rule.name in fired else "", style="bold green"), "name": VisibleText(rule.name),
            "stage": rule.stage, "decision": Text(rule.decision, style=DECISION_STYLES.get(rule.decision, "")),
            "risk": rule.risk or "–", "when": VisibleText(_when(rule)),
        } for rule in policy.rules})
        sandboxes = self.loom.latest_snapshot.sandboxes if self.loom.latest_snapshot else []
        select = self.query_one("#policy-sandbox", Select)
        options = [(Text(f"{s.id}  {escape_controls(' '.join(s.task.split()))}"), s.id) for s in sandboxes]
        if [value for _, value in options] != self.sandbox_options:
            self.sandbox_options = [value for _, value in options]
            chosen = select.value
            if isinstance(chosen, str) and chosen in self.sandbox_options:
                # New options clear the pick, and its Changed cleared the explanation: a new sandbox anywhere
                # (another shell, an agent's plan) undid the lead's pick. Kept, unsaid, while it is still there.
                with self.prevent(Select.Changed):
                    select.set_options(options)
                    select.value = chosen
            else:
                select.set_options(options)
        if explanation is not None:
            self.explanation = explanation
        self._show_rule()

    @on(DataTable.RowHighlighted, "#rules")
    def _show_rule(self) -> None:
        """The highlighted rule in full, then the chosen sandbox's evaluation."""
        policy: Policy | None = self.loom.policy
        table = self.query_one("#rules", DataTable)
        text = VisibleText()
        if policy is not None and table.row_count:
            name = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            rule = next((r for r in policy.rules if r.name == name), None)
            if rule is not None:
                text.append(f"{rule.name}", style="bold")
                text.append(f"  ({policy.source}:{rule.line})\n" if rule.line else "\n", style="dim")
                if rule.description:
                    text.append(rule.description + "\n")
                text.append(f"when: {_when(rule)}\n")
                text.append(f"stage {rule.stage}, decision ")
                text.append(rule.decision, style=DECISION_STYLES.get(rule.decision, ""))
                if rule.approvals is not None:
                    who = "code owners" if rule.approvals.codeowners else " or ".join(rule.approvals.groups)
                    text.append(f", {plural(rule.approvals.count, 'approval')} from {who}")
                text.append("\n\n")
        if self.explanation:
            text.append("\n".join(self.explanation))
        else:
            text.append("Pick a sandbox above (s): its claims and its diff are evaluated, and the rules "
                        "that fire are marked ●.", style="dim")
        self.query_one("#policy-detail", Static).update(text)

    def action_pick_sandbox(self) -> None:
        """`s`: the sandbox picker, open (Tab order put it behind the rules table)."""
        picker = self.query_one("#policy-sandbox", Select)
        picker.focus()
        picker.expanded = True
        if picker.is_blank() and self.sandbox_options:
            # On the first sandbox: the first ↓ only reached the prompt row, and Enter on it cleared the pick.
            picker.query_one(OptionList).highlighted = 1

    @on(Select.Changed, "#policy-sandbox")
    def _sandbox_chosen(self, event: Select.Changed) -> None:
        if not isinstance(event.value, str):  # the prompt row (Select.NULL), or the options changed under it
            self.show_policy(frozenset(), [])
            return
        self._explain(event.value)
        self.query_one("#rules", DataTable).focus()  # the keys go back to the rules (and the views)

    @work(thread=True, exclusive=True, group="explain", exit_on_error=False)
    def _explain(self, sandbox_id: str) -> None:
        from loomtui.governance.explain import explain_sandbox

        policy = self.loom.policy
        if policy is None:  # it did not load: the screen shows why
            self.app.call_from_thread(self.app.notify, "no policy loaded", title="explain", severity="warning")
            return
        try:
            explained = explain_sandbox(self.loom.workspace, policy, sandbox_id)
        except LoomError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), title="explain", severity="error")
            return
        fired = frozenset(explained["claim"]["rules"]) | frozenset(explained["post-gate"]["rules"])
        lines = [f"sandbox {sandbox_id}", ""]
        for stage in ("claim", "post-gate"):
            section = explained[stage]
            lines.append(f"{stage}: {section['outcome']} (risk {section['risk']})")
            lines += [f"  {line}" for line in section["explanation"]]
            lines.append("")
        self.app.call_from_thread(self._show_explained, sandbox_id, fired, lines)

    def _show_explained(self, sandbox_id: str, fired: frozenset[str], lines: list[str]) -> None:
        # Only for the sandbox picked now: an earlier pick's slower explanation marked its rules under this one.
        if self.query_one("#policy-sandbox", Select).value == sandbox_id:
            self.show_policy(fired, lines)

    def action_back(self) -> None:
        self.back_out()


# What happened first; who did it last, and cut (the detail pane has it whole): a long email
# must not push Action and Subject off the screen.
# The time before the subject takes its want: at 120 columns the subject's want pushed Time (and
# Actor) out, then took the room they left, so a wider terminal showed less than 80 columns did.
# The subject before who acted, but claiming little at its turn: with the demo's longer actions the actor
# (kept first) left it no room at 80 columns, and a row did not say what it was about; Actor is kept while
# the subject's least fits beside it (two approvals read the same with Actor dropped for the subject's want).
AUDIT_COLUMNS: Final = (FitColumn("seq", "#", 0), FitColumn("ts", "Time (UTC)", 2), FitColumn("action", "Action", 1),
                        FitColumn("subject", "Subject", 3, flex=True, min_width=8, want=8),
                        FitColumn("actor", "Actor", 4, max_width=20))


def _holds(entry: AuditEntry, wanted: str) -> bool:
    """Whether the entry's action, subject or actor holds `wanted` (casefolded)."""
    return wanted in f"{entry.action}\0{entry.subject}\0{entry.actor}".casefold()


class AuditScreen(LoomScreen[None]):
    """The newest audit entries, live, with the chain's verify status."""

    VIEW_NAME = "Audit"

    AUTO_FOCUS = "#audit"
    BINDINGS = [
        Binding("v", "verify", "Verify", id="audit.verify",
                tooltip="Verify the audit log's hash chain again"),
        Binding("slash", "filter", "Filter", key_display="/", id="audit.filter",
                tooltip="Entries holding the text (enter: in the whole log)"),
        Binding("escape", "back", "Back", id="audit.back", tooltip="Out of the filter, then back to the sandboxes"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.entries: dict[int, AuditEntry] = {}
        self.found: dict[int, AuditEntry] = {}
        """The newest entries in the whole log that hold `searched` (the filter's text when enter was pressed)."""
        self.searched = ""
        self._verified: tuple[Text, int] | None = None  # the last verify's line, and the newest entry then

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield Static(id="verify")
        yield self.filter_box("entries whose action, subject or actor hold this (enter searches the whole log; "
                              "esc clears)", "audit-filter")
        with Horizontal(id="audit-body"):
            yield FittedTable(AUDIT_COLUMNS, id="audit")
            with VerticalScroll(id="audit-detail-pane"):
                yield Static(id="audit-detail")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.loom.update_header(self.query_one(StatusHeader))
        self.reload()
        self.action_verify()

    def on_screen_resume(self) -> None:
        self.reload()

    @work(thread=True, exclusive=True, group="audit-read", exit_on_error=False)
    def reload(self) -> None:
        tail = self.loom.workspace.audit.tail(AUDIT_ROWS)
        self.app.call_from_thread(self._show_entries, tail)

    def _show_entries(self, tail: list[AuditEntry]) -> None:
        table = self.query_one("#audit", FittedTable)
        at_end = table.cursor_row >= table.row_count - 1
        for entry in tail:
            self.entries.setdefault(entry.seq, entry)
        for oldest in sorted(self.entries)[:-AUDIT_ROWS]:  # bounded, like every log here
            del self.entries[oldest]
        wanted = self.filter_text.casefold()
        shown = {**self.found, **self.entries} if self.searched == self.filter_text else self.entries
        table.show_rows({str(seq): {
            "seq": str(seq), "ts": entry.ts[:19].replace("T", " "), "action": VisibleText(entry.action),
            "subject": VisibleText(entry.subject), "actor": VisibleText(entry.actor),
        } for seq, entry in sorted(shown.items()) if _holds(entry, wanted)},
            hidden={str(seq) for seq in (*self.entries, *self.found)})  # the filter hides a row: it is not gone
        if at_end and table.row_count:
            table.move_cursor(row=table.row_count - 1)
        self._show_entry()
        self._show_verified()

    def _show_verified(self) -> None:
        """The last verify's result, and how many entries came after it: it speaks for those before."""
        if self._verified is None:
            return
        shown, newest = self._verified
        newer = sum(seq > newest for seq in self.entries)
        if newer:
            shown = shown.copy()
            shown.append(f"  ({newer} newer entr{'y' if newer == 1 else 'ies'} since; v verifies again)",
                         style="dim")
        self.query_one("#verify", Static).update(shown)

    @on(DataTable.RowHighlighted, "#audit")
    def _show_entry(self) -> None:
        table = self.query_one("#audit", DataTable)
        if not table.row_count:
            if self.filter_text and self.searched == self.filter_text:
                said = f"No entry in the whole log holds {self.filter_text!r} (esc clears the filter)."
            elif self.filter_text:
                said = (f"No entry of the newest {len(self.entries)} holds {self.filter_text!r} (enter searches "
                        "the whole log; esc clears the filter).")
            else:
                said = "The audit log is empty."
            self.query_one("#audit-detail", Static).update(Text(said))
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        entry = self.entries.get(int(key or 0)) or self.found.get(int(key or 0))
        if entry is None:
            return
        detail = self.query_one("#audit-detail", Static)
        text = Text(f"#{entry.seq} {entry.action}\n", style="bold")
        # Each value wrapped under itself (a 64-character hash ran back to the pane's edge).
        text.append_text(render_fields([Field(label, str(value)) for label, value in (
            ("time", entry.ts), ("actor", entry.actor), ("subject", entry.subject), ("hash", entry.hash),
            ("prev", entry.prev))], inner_width(detail) or 40))
        # As written (a reason's 漢字 read \u6f22\u5b57), what JSON leaves unescaped then (C1 controls, a bidi
        # override) drawn as symbols.
        text.append("\n" + visible_controls(json.dumps(entry.details, indent=2, sort_keys=True, default=str,
                                                       ensure_ascii=False)))
        detail.update(text)

    def action_filter(self) -> None:
        """`/`: a lead looking for one sandbox's, one action's or one person's entries among the newest."""
        self.open_filter("#audit-filter")

    @on(Input.Changed, "#audit-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self._show_entries([])

    @on(Input.Submitted, "#audit-filter")
    def _filter_set(self) -> None:
        self.query_one("#audit", DataTable).focus()
        if self.filter_text and self.filter_text != self.searched:
            self._search(self.filter_text)

    @work(thread=True, exclusive=True, group="audit-search", exit_on_error=False)
    def _search(self, text: str) -> None:
        """The newest entries of the whole log that hold `text`: the view keeps only the newest 500."""
        wanted = text.casefold()
        found = self.loom.workspace.audit.tail(AUDIT_ROWS, lambda entry: _holds(entry, wanted))
        self.app.call_from_thread(self._show_found, text, found)

    def _show_found(self, text: str, found: list[AuditEntry]) -> None:
        if text != self.filter_text:  # typed on since: this answers an older question
            return
        self.found, self.searched = {entry.seq: entry for entry in found}, text
        self._show_entries([])

    @work(thread=True, exclusive=True, group="audit-verify", exit_on_error=False)
    def action_verify(self) -> None:
        """The whole check `loomtui audit verify` makes: the chain, the anchors in the
        repository's history, and every decision's signature; and what it cannot prove."""
        from loomtui.errors import LoomError
        from loomtui.governance.auditproof import verify_audit

        workspace = self.loom.workspace
        try:
            report = verify_audit(workspace)
        except LoomError as exc:  # a broken policy or config: say so, keep the screen
            shown = Text(f" cannot verify: {exc}", style="bold red")
        else:
            lines = report.lines(workspace.audit.path)
            shown = Text(f" {lines[0]}", style="bold green" if report.ok else "bold red")
            for line in lines[1:]:
                shown.append(f"\n {line}", style="red")
            if not report.chain.ok:
                from loomtui.auditrestore import restore_hint

                shown.append(f"\n next: {restore_hint(workspace.audit)}")
        newest = workspace.audit.tail(1)
        self._verified = (shown, newest[-1].seq if newest else 0)
        self.app.call_from_thread(self._show_verified)
        # Said where the eye is too: an intact log changes nothing else on the screen. Briefly when intact
        # (its line with the log's path stood four rows high over the next views for seconds).
        intact = shown.style == "bold green"
        self.app.call_from_thread(self.notify, "intact" if intact else shown.plain.strip().splitlines()[0],
                                  title="audit verify", severity="information" if intact else "error",
                                  timeout=3 if intact else None)

    def action_back(self) -> None:
        if not self.close_filter("#audit-filter"):
            self.back_out()
