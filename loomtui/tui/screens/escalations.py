"""The escalation queue: riskiest and oldest first; `a` approve, `r` reject, `o` override.

Only the decisions the current user may take are offered (the others are hidden
from the footer and refused if pressed); the engine checks again when it records.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

from loomtui.errors import LoomError, blank, plural
from loomtui.governance.escalations import (
    DECIDED_AS,
    DecisionTooLate,
    EscalationStatus,
    allowed_decisions,
    decide,
    overridable,
    status_lines,
    unmet_lines,
    why_not,
)
from loomtui.identity import signing_key
from loomtui.store import EscalationRecord
from loomtui.store.records import RepositoryRecord
from loomtui.store.sql import SqlStore
from loomtui.tui.base import LoomScreen, wrap_width
from loomtui.tui.keys import KeysFooter, is_twin, shown_where_it_applies
from loomtui.tui.sandbox_text import RISK_STYLES, ages_due, format_age
from loomtui.tui.visible import VisibleText, one_line, visible_text
from loomtui.tui.widgets.fields import hanging
from loomtui.tui.widgets.fitted_table import CURSOR_KEYS, FitColumn, FittedTable
from loomtui.tui.widgets.status_header import StatusHeader
from loomtui.workflow.engine import advance

SIGNED_EVENTS: Final = ("approve", "reject", "override")
"""History events that are a person's decision, each shown with its signature's verdict."""
MAX_PATHS_SHOWN: Final = 40
"""Paths of a request or change listed in the detail; past them, how many more and where every one is."""
APPROVE_WITH_NOTE: Final = "approve+note"
"""`A`: an approval that asks for a note first (`a` approves at once)."""

# The summary takes the width left over; the kind and the sandbox go first when it runs out.
COLUMNS: Final = (FitColumn("id", "#", 0), FitColumn("risk", "Risk", 1), FitColumn("kind", "Kind", 4),
                  FitColumn("sandbox", "Sandbox", 3), FitColumn("age", "Age", 5),
                  FitColumn("summary", "Summary", 2, flex=True, min_width=16, want=30))
ELSEWHERE_REFRESH_S: Final = 5.0
"""How often other repositories' open escalations (`R`) are read again while shown."""


class ReasonScreen(ModalScreen[str | None]):
    """Asks for the reason a reject or override needs (or an approval's optional note); esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="reason.cancel", tooltip="Go back without deciding")]
    DEFAULT_CSS = """
    ReasonScreen { align: center middle; }
    ReasonScreen > Vertical { width: 70; max-width: 100%; height: auto; border: round $warning;
                              background: $surface; padding: 1 2; }
    ReasonScreen Horizontal { height: auto; margin-top: 1; }
    """

    def __init__(self, title: str, *, required: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.required = required

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text, style="bold"))
            yield Input(placeholder=f"{'reason (required' if self.required else 'note (optional'}; goes into the "
                                    "audit log)", id="reason")
            with Horizontal():
                yield Button("Record" if self.required else "Approve", variant="warning", id="record")
                yield Button("Cancel", id="cancel")
        yield KeysFooter()  # its own keys: the view below is not active under it

    @on(Input.Submitted)
    @on(Button.Pressed, "#record")
    def _record(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if blank(reason) and self.required:
            self.notify("a reason is required", severity="warning")
            return
        self.dismiss(reason)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def _searched(key: str, escalation: EscalationRecord) -> str:
    """What `/` looks in: the row's number, summary, sandbox, kind, risk and the rules that applied."""
    rules = " ".join(str(rule.get("name") if isinstance(rule, dict) else rule)
                     for rule in escalation.data.get("rules") or [])
    return "\0".join((key, escalation.summary, escalation.sandbox_id or "", escalation.kind, escalation.risk,
                       str(escalation.status), rules)).casefold()


KEY_SETTLE_S: Final = 1.0
"""A decision key within this long of the row decided here leaving the queue is not taken for the row that took
its place: no one has read that one yet."""


class EscalationsScreen(LoomScreen[None]):
    """The queue a tech lead triages with a few keys."""

    VIEW_NAME = "Escalations"

    AUTO_FOCUS = "#queue"
    BINDINGS = [
        *shown_where_it_applies(Binding("a", "decide('approve')", "Approve", id="escalations.approve",
                                        tooltip="Approve the escalation (signed if the policy asks)")),
        *shown_where_it_applies(Binding("A", f"decide('{APPROVE_WITH_NOTE}')", "Approve with a note",
                                        id="escalations.approve_note", show=False,
                                        tooltip="Approve, with a note the audit log keeps")),
        *shown_where_it_applies(Binding("r", "decide('reject')", "Reject", id="escalations.reject",
                                        tooltip="Reject the selected escalation, with a reason")),
        *shown_where_it_applies(Binding("o", "decide('override')", "Override", id="escalations.override",
                                        tooltip="Override a block, with a reason the audit log keeps")),
        *shown_where_it_applies(Binding("d", "diff", "Diff", id="escalations.diff",
                                        tooltip="The selected escalation's sandbox diff")),
        # One key, its label what it does now: "Decided too" while only open ones show, then "Open only".
        Binding("h", "toggle_history", "Decided too", id="escalations.history",
                tooltip="Every escalation, superseded ones too, or only open"),
        Binding("h", "toggle_history(1)", "Open only", id="escalations.history",
                tooltip="Every escalation, superseded ones too, or only open"),
        *shown_where_it_applies(Binding("R", "toggle_repositories", "All repos", id="escalations.all_repos",
                                        tooltip="Add other repositories' escalations (a team store)")),
        Binding("slash", "filter", "Filter", key_display="/", id="escalations.filter", show=False,
                tooltip="Those whose summary, sandbox or rules hold the text"),
        Binding("escape", "back", "Back", id="escalations.back",
                show=False, tooltip="From the detail to the queue, then to the sandboxes"),  # esc backs out everywhere
    ]

    def __init__(self) -> None:
        super().__init__()
        self.escalations: list[EscalationRecord] = []
        self._ages_at = 0.0  # when the Age column was last brought up to date
        self.show_decided = False
        self._open_seen: set[str] = set()  # the open escalations the queue last showed
        self.can_sign = True  # whether a signing key is set (read with the queue): said beside what you may do
        self.all_repositories = False
        self._labels: dict[str, str] = {}  # another repository's row key: how its row named it
        self.elsewhere: dict[str, tuple[RepositoryRecord, EscalationRecord]] = {}
        """Other repositories' open escalations (a team store), by row key; shown, never decided here."""
        self._detail_key: str | None = None  # whose detail is shown: another's starts at its top
        self._deciding: set[int] = set()  # escalations whose decision is being recorded now
        self._decided_here: set[str] = set()  # rows decided from this queue: their going is no surprise
        self._went_here: tuple[str, float] | None = None  # the last of them to leave the queue, and when
        self.filter_text = ""

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield self.filter_box("escalations whose summary, sandbox or rules hold this (esc clears)", "esc-filter")
        with Horizontal(id="esc-body"):
            yield FittedTable(COLUMNS, id="queue")
            with VerticalScroll(id="esc-detail-pane"):
                yield Static(id="esc-detail")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.loom.update_header(self.query_one(StatusHeader))
        self.reload()
        self.set_interval(1.0, self._tick_ages)
        self.set_interval(ELSEWHERE_REFRESH_S, self._reload_elsewhere)

    def on_screen_resume(self) -> None:
        self.reload()

    def _tick_ages(self) -> None:
        created = [e.created for e in self.escalations] + [e.created for _repo, e in self.elsewhere.values()]
        if ages_due(created, self.loom.clock(), self._ages_at):
            self.refresh_ages()

    def refresh_ages(self) -> None:
        """An escalation waiting is news: its Age moves on though nothing about it changes."""
        if not self.is_current:
            return
        table, now = self.query_one("#queue", FittedTable), self.loom.clock()
        self._ages_at = now
        for key, escalation in [*((str(e.id), e) for e in self.escalations),
                                *((key, e) for key, (_repo, e) in self.elsewhere.items())]:
            table.set_cell(key, "age", format_age(now - escalation.created))

    def _reload_elsewhere(self) -> None:
        """Other repositories' escalations, read again while they are shown: the app hears only its own
        repository's events, so theirs would otherwise stay as they were when `R` was pressed."""
        if self.is_current and self.all_repositories:
            self.reload()

    # -- data ----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="escalations", exit_on_error=False)
    def reload(self) -> None:
        """Read the queue off the UI thread."""
        from loomtui.governance.escalations import OPEN, queue

        # `h`: the whole history, the superseded (a new commit was reviewed) and withdrawn with the decided.
        asked = (self.show_decided, self.all_repositories)
        statuses = tuple(EscalationStatus) if self.show_decided else (OPEN,)
        try:
            found = queue(self.loom.workspace, statuses)
        except LoomError as exc:  # an empty queue read as nothing to decide while the store was away
            self.app.call_from_thread(self._unread, str(exc))
            return
        self.can_sign = signing_key(self.loom.workspace.root) is not None  # git config: read here, off the UI
        elsewhere = self.loom.workspace.store.open_escalations_elsewhere() if self.all_repositories else []
        self.app.call_from_thread(self._show_if_still_asked, asked, found, elsewhere)

    def _show_if_still_asked(self, asked: tuple[bool, bool], escalations: list[EscalationRecord],
                             elsewhere: Sequence[tuple[RepositoryRecord, EscalationRecord]]) -> None:
        # A read begun before `h` (or `R`) was pressed, ending after the one it started: its rows (every
        # escalation) replaced the open ones asked for, and stayed until the next change.
        if asked == (self.show_decided, self.all_repositories):
            self.show_queue(escalations, elsewhere)

    def show_queue(self, escalations: list[EscalationRecord],
                   elsewhere: Sequence[tuple[RepositoryRecord, EscalationRecord]] = ()) -> None:
        # Rows this view's own choice leaves out (`R` back to this repository, `h` back to the open ones) are not
        # gone: `a` said "#loom_91ad...:1, the one selected, is gone (decided or withdrawn)" of a row `R` hid.
        chosen_away = {*([] if self.all_repositories else self.elsewhere),
                       *([] if self.show_decided else
                         (str(e.id) for e in self.escalations if e.status != EscalationStatus.OPEN))}
        self._labels.update({key: f"{repo.name}#{e.id}" for key, (repo, e) in self.elsewhere.items()})
        still_open = {str(e.id) for e in escalations if e.status == EscalationStatus.OPEN}
        left = [str(e.id) for e in self.escalations if e.status == EscalationStatus.OPEN
                and str(e.id) not in still_open and str(e.id) in self._decided_here]
        if left:
            self._went_here = (left[-1], time.monotonic())
        self.escalations = escalations
        self.elsewhere = {f"{repo.namespace}:{e.id}": (repo, e) for repo, e in elsewhere}
        wanted = {str(e.id): e for e in escalations}  # the queue's order: the engine's
        wanted.update({key: e for key, (_repo, e) in self.elsewhere.items()})
        now = self.loom.clock()
        wanted_text = self.filter_text.casefold()
        self.query_one("#queue", FittedTable).show_rows({key: {
            "id": VisibleText(f"{self.elsewhere[key][0].name}#{escalation.id}") if key in self.elsewhere else key,
            "risk": Text(escalation.risk, style=RISK_STYLES.get(escalation.risk, "")),
            "kind": escalation.kind,
            "sandbox": VisibleText(escalation.sandbox_id or "–"),
            "age": format_age(now - escalation.created),
            # Its status styled apart from its summary: a task whose own text began "[approved]" read as decided.
            "summary": VisibleText(escalation.summary) if escalation.status == EscalationStatus.OPEN
            else VisibleText().append(f"[{escalation.status}] ", "italic dim").append(escalation.summary),
        } for key, escalation in wanted.items() if wanted_text in _searched(key, escalation)},
            hidden={*wanted, *chosen_away})  # the filter hides a row: it is not gone
        self._to_new_open(escalations)
        self.show_detail()
        self.refresh_bindings()

    def _to_new_open(self, escalations: list[EscalationRecord]) -> None:
        """The cursor on a decided escalation (`h` shows them) goes to one newly waiting: a toast said
        "press 3", and `a` there answered "already approved" of the decided one under the cursor."""
        open_now = [str(e.id) for e in escalations if e.status == EscalationStatus.OPEN]
        new = [key for key in open_now if key not in self._open_seen]
        self._open_seen = set(open_now)
        selected = self.selected()
        if new and selected is not None and selected.status != EscalationStatus.OPEN:
            table = self.query_one("#queue", FittedTable)
            table.move_cursor(row=table.get_row_index(new[0]))

    def selected(self) -> EscalationRecord | None:
        """The highlighted escalation of this repository (None for none, or another repository's)."""
        key = self._selected_key()
        return next((e for e in self.escalations if str(e.id) == key), None) if key else None

    def _selected_key(self) -> str | None:
        table = self.query_one("#queue", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _unread(self, why: str) -> None:
        """The queue could not be read: said where its escalations would be (read again once the store answers)."""
        if not self.escalations:
            self.query_one("#esc-detail", Static).update(Text(f"The escalations could not be read: {why} (read "
                                                              "again when the store answers)"))

    @on(DataTable.RowHighlighted, "#queue")
    def show_detail(self) -> None:
        detail = self.query_one("#esc-detail", Static)
        if self._selected_key() != self._detail_key:  # a live update of the same one keeps its place
            self._detail_key = self._selected_key()
            self.query_one("#esc-detail-pane", VerticalScroll).scroll_home(animate=False)
        escalation = self.selected()
        other = self.elsewhere.get(self._selected_key() or "")
        if other is not None:
            repo, record = other
            detail.update(visible_text(Text.assemble(
                (f"#{record.id} {record.kind}", "bold"), f"  in {repo.name}, another repository of this store",
                "\n", record.summary, "\n\n", ("Decide it from that repository: its policy judges it.", "dim"))))
            self.refresh_bindings()
            return
        if escalation is None and self.filter_text and (self.escalations or self.elsewhere):
            # "No escalations." read as an empty queue while the filter hid them all.
            detail.update(Text(f"No escalation shown holds {self.filter_text!r} (esc clears the filter)."))
            self.refresh_bindings()
            return
        if escalation is None:
            detail.update(Text("No open escalations. Changes that need a person's decision "
                               "appear here live." if not self.show_decided else "No escalations."))
            self.refresh_bindings()
            return
        data = escalation.data
        text = VisibleText()
        text.append(f"#{escalation.id} {escalation.kind}", style="bold")
        text.append(f"  risk {escalation.risk}  status {escalation.status}\n",
                    style=RISK_STYLES.get(escalation.risk, ""))
        text.append(escalation.summary + "\n")
        # Long lines wrap under themselves, not at column 0, and leave the scrollbar its room.
        width = wrap_width(detail, self.query_one("#esc-detail-pane", VerticalScroll), 60)
        snapshot = self.loom.latest_snapshot  # the summary abridges the task: here it is whole
        task = next((s.task for s in snapshot.sandboxes if s.id == escalation.sandbox_id), "") if snapshot else ""
        if task and task not in escalation.summary:
            text.append(hanging(f"task: {task}", width) + "\n", style="dim")
        text.append("\nWhy\n", style="bold underline")
        for line in data.get("explanation", []):
            text.append(hanging(f"  {line}", width) + "\n")
        text.append("\nApprovals\n", style="bold underline")
        for line in status_lines(escalation):
            text.append(hanging(f"  {line}", width) + "\n")
        facts = data.get("facts", {})
        if facts.get("paths"):
            if facts.get("stage") == "claim":  # asked before the agent starts: there is no diff yet
                text.append("\nClaims\n", style="bold underline")
                text.append(f"  {plural(len(facts['paths']), 'path')} it would work on, before any change\n")
            else:
                text.append("\nChange\n", style="bold underline")
                text.append(f"  {plural(len(facts['paths']), 'path')}, {plural(facts.get('lines_changed', 0), 'line')}"
                            + (" (d shows the diff)" if escalation.sandbox_id else "") + "\n")
            # Every path (what an approval grants): a list cut at 12 hid `payments/refunds.py`, 15th of 15.
            shown = facts["paths"][:MAX_PATHS_SHOWN]
            for path in shown:
                text.append(hanging(f"    {one_line(path)}", width) + "\n")
            if len(facts["paths"]) > len(shown):
                text.append(f"    and {len(facts['paths']) - len(shown)} more (`loomtui escalation show "
                            f"{escalation.id}` lists every one)\n", style="yellow")
            for region in facts.get("signature_changed", [])[:6]:
                text.append(f"    signature changed: {one_line(region)}\n", style="yellow")
        evidence = data.get("evidence", {})
        if isinstance(evidence, dict) and evidence:
            text.append("\nEvidence\n", style="bold underline")
            for key, value in evidence.items():
                if value in ([], {}, None, ""):
                    continue  # an empty list says nothing a reader needs
                # Evidence may come from an agent's request, in any shape JSON has: each key and value one
                # line (`one_line`), however many newlines it holds.
                text.append(f"  {one_line(key)}: ", style="dim")
                if isinstance(value, dict):
                    # e.g. gates: name -> {status, summary, failed_tests}
                    text.append("\n")
                    for name, item in value.items():
                        if isinstance(item, list):
                            text.append(f"    {one_line(name)}:\n" if item else "")
                            for entry in item:
                                text.append(hanging(f"      {one_line(entry)}", width) + "\n")
                            continue
                        result = item.get("status", item) if isinstance(item, dict) else item
                        summary = item.get("summary", "") if isinstance(item, dict) else ""
                        said = f"    {one_line(name)}: {one_line(result)} {one_line(summary)}".rstrip()
                        text.append(hanging(said, width) + "\n")
                        failed_tests = item.get("failed_tests") if isinstance(item, dict) else None
                        for failed in failed_tests if isinstance(failed_tests, list) else []:
                            text.append(f"      ✗ {one_line(failed)}\n", style="red")
                elif isinstance(value, list):  # one per line, not a Python list
                    text.append("\n")
                    for entry in value:
                        text.append(hanging(f"    {one_line(entry)}", width) + "\n")
                else:
                    text.append(hanging(one_line(value), width - len(str(key)) - 4).lstrip() + "\n")
        text.append("\nHistory\n", style="bold underline")
        for event in data.get("history", []):
            stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(event.get("at", 0)))
            reason = f" — {event['reason']}" if event.get("reason") else ""
            signed = str(event.get("signature", "unsigned")) if event.get("event") in SIGNED_EVENTS else ""
            tag = f"[{signed}]" if signed else ""
            # Wrapped under itself, as the lines above are (a long name went on at column 0).
            said = f"  {stamp} {event.get('event')} by {event.get('by', '?')}"
            line = hanging(f"{said} {tag}{reason}" if tag else f"{said}{reason}", width)
            start = len(text)
            text.append(line + "\n")
            if tag:
                at = start + line.find(tag)
                text.stylize("green" if signed == "verified" else "yellow", at, at + len(tag))
        policy = self.loom.policy
        if policy is not None:
            offered = [d for d in allowed_decisions(policy, escalation, self.loom.workspace.actor)
                       if d != "override" or overridable(escalation)]
            text.append(f"\nYou ({self.loom.workspace.actor}) may: ", style="bold")
            text.append(", ".join(offered) or "nothing here")
            if offered and policy.decisions.require_signature and not self.can_sign:
                text.append(" — once you have a signing key (the policy requires signed decisions)", style="yellow")
        detail.update(visible_text(text))  # an agent's request, evidence included: never a control
        self.refresh_bindings()

    # -- decisions -------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_history":  # the binding whose label says what `h` does now
            return bool(parameters) == self.show_decided
        if action == "toggle_repositories":  # a team store holds other repositories; a file, this one only
            return is_twin(parameters) or self._team_store()
        if action == "diff" and not is_twin(parameters):  # only an escalation about a sandbox has a change
            selected = self.selected()
            return selected is not None and bool(selected.sandbox_id)
        if action != "decide" or is_twin(parameters):  # a twin answers where the key does not apply: why not
            return True
        escalation = self.selected()
        policy = self.loom.policy
        if escalation is None or policy is None:
            return False
        if parameters[0] == "override" and not overridable(escalation):
            return False  # the app offers an override where approving cannot help; `escalation override` can
        if parameters[0] in ("approve", APPROVE_WITH_NOTE) and escalation.data.get("outcome") == "block":
            return False  # no one can approve a block (override or reject it): the footer offered `a` all the same
        # Offered where this user may take it, as the detail's "You may:" says (the footer offered `a` to the
        # change's own author and to someone in no group); pressed anyway, its twin says why not. A rejection
        # is overruled by an override alone (a reviewer's; a lead's stands).
        decision = "approve" if parameters[0] == APPROVE_WITH_NOTE else str(parameters[0])
        return decision in allowed_decisions(policy, escalation, self.loom.workspace.actor)

    def on_key(self, event: events.Key) -> None:
        if event.key in CURSOR_KEYS:  # the cursor put on a row by the person: one chosen, whatever left before
            self._went_here = None

    def action_decide(self, decision: str, _twin: int = 1) -> None:
        with_note = decision == APPROVE_WITH_NOTE
        decision = "approve" if with_note else decision
        escalation, policy = self.selected(), self.loom.policy
        gone = self.query_one("#queue", FittedTable).row_gone_under_cursor()
        went_here, self._went_here = self._went_here, None
        if escalation is not None and went_here is not None and went_here[0] != str(escalation.id) \
                and time.monotonic() - went_here[1] < KEY_SETTLE_S:
            gone, went = went_here[0], "decided here, has left the queue"
        elif escalation is not None and gone is not None and gone not in self._decided_here:
            went = "the one selected, is gone (decided or withdrawn)"
        else:
            gone = None
        if escalation is not None and gone is not None:
            # Decided elsewhere or withdrawn (a hook's request after its wait): the cursor fell on the next row,
            # and `a` approved that one, never chosen. Decided here a moment ago: `a a` (a key held or pressed
            # twice) approved and merged the next change as well, never shown.
            self.app.notify(f"{self._labels.get(gone, '#' + gone)}, {went}; the cursor is on #{escalation.id} now: "
                            f"press again to {decision} it", title=f"not {DECIDED_AS[decision]}", severity="warning")
            return
        if escalation is None or policy is None:  # the empty queue: said, not a key that does nothing
            self.app.notify("no escalation selected" if escalation is None else "the policy is not read yet",
                            title=f"cannot {decision}", severity="warning")
            return
        if escalation.id in self._deciding:  # `a a`: the second said "not recorded: already approved" first
            self.app.notify(f"#{escalation.id}: a decision is being recorded", title="decision", timeout=3)
            return
        if self.loom.config_problem:  # the last good policy is for showing; a decision goes by the files as they are
            self.app.notify(f"fix it first (`loomtui escalation` refuses too): {self.loom.config_problem}",
                            title=f"cannot decide #{escalation.id} while the config is broken", severity="error")
            return
        allowed = allowed_decisions(policy, escalation, self.loom.workspace.actor)
        # Who may, first: carol, in no group, was told to approve it or to override it from the command line.
        if decision == "override" and "override" not in allowed:
            self.app.notify(why_not(policy, escalation, self.loom.workspace.actor, decision),
                            title=f"cannot {decision} #{escalation.id}", severity="warning")
            return
        if decision == "override" and escalation.status == EscalationStatus.OPEN and not overridable(escalation):
            self.app.notify(f"#{escalation.id} waits for approvals: approve or reject it (an override is for a "
                            "block, a claim conflict or approvals no one can give; `loomtui escalation override` "
                            "overrides it anyway)",
                            title=f"cannot override #{escalation.id} here", severity="warning")
            return
        if decision not in allowed:
            self.app.notify(why_not(policy, escalation, self.loom.workspace.actor, decision),
                            title=f"cannot {decision} #{escalation.id}", severity="warning")
            return
        if decision == "approve" and not with_note:
            self._record_decision(escalation.id, decision, "")
            return
        if policy.decisions.require_signature and not self.can_sign:
            # Said before the reason is asked for: typed, then refused for the key, it was lost.
            self.app.notify("the policy requires signed decisions, and you have no signing key (set git's "
                            "user.signingkey with gpg.format=ssh, git config loom.signingkey, or LOOM_SIGNING_KEY)",
                            title=f"cannot {decision} #{escalation.id}", severity="warning")
            return
        title = f"{decision.capitalize()} escalation #{escalation.id}: {'a note?' if with_note else 'why?'}"

        def recorded(reason: str | None) -> None:
            if reason and decision == "override":
                self._confirm_override(escalation, reason)
            elif reason is not None:  # a reason (required: never empty), or a note (optional)
                self._record_decision(escalation.id, decision, reason)

        self.app.push_screen(ReasonScreen(title, required=not with_note), recorded)

    def _confirm_override(self, escalation: EscalationRecord, reason: str) -> None:
        """An override lets a change the policy holds back go on (a blocked change merges): asked
        once more, saying what it lets through, as `m` asks before a merge."""
        from loomtui.tui.screens.sandbox_forms import ConfirmScreen

        # Every rule it lets through named (the first two lines left out `failing-gates`, the one overridden).
        headline = str(next(iter(escalation.data.get("explanation") or []), escalation.summary)).strip()
        named = [str(rule.get("name")) for rule in escalation.data.get("rules") or []
                 if isinstance(rule, dict) and rule.get("decision") != "auto_approve"]
        why = headline + (f"; rules: {', '.join(named)}" if named else "")
        target = f"sandbox {escalation.sandbox_id}'s change" if escalation.sandbox_id else "this change"
        hours = self.loom.policy.overrides.max_hours if self.loom.policy else 0
        # A rejection it overrules, with its reason: the question named the rules only, and a colleague's "no"
        # was overruled unseen.
        rejected = [f"{entry.get('by')}'s rejection ({entry.get('reason') or 'no reason given'})"
                    for entry in escalation.data.get("history") or []
                    if isinstance(entry, dict) and entry.get("event") == "reject"]
        overrules = f" It overrules {'; '.join(rejected)}." if rejected else ""
        question = (f"Override escalation #{escalation.id}? {target} goes on as if approved (it may merge into "
                    f"its target) for at most {hours:g}h, despite: {why}.{overrules} Reason: {reason}")

        def answered(yes: bool | None) -> None:
            if yes:
                self._record_decision(escalation.id, "override", reason)
            else:
                self.app.notify(f"#{escalation.id}: not overridden", title="decision")

        self.app.push_screen(ConfirmScreen(question), answered)

    def _record_decision(self, escalation_id: int, decision: str, reason: str) -> None:
        """Record it in a worker; until it is, another key on the same escalation is answered that it is."""
        self._deciding.add(escalation_id)
        self._decided_here.add(str(escalation_id))
        self._record(escalation_id, decision, reason)

    @work(thread=True, group="decide", exit_on_error=False)
    def _record(self, escalation_id: int, decision: str, reason: str) -> None:
        try:
            self._record_now(escalation_id, decision, reason)
        finally:
            self.app.call_from_thread(self._decided, escalation_id)

    def _still_open(self, escalation_id: int) -> None:
        # One approval of two given here, the second elsewhere: the row's going was not this lead's doing, and
        # their next `a` approved the row that took its place.
        self._decided_here.discard(str(escalation_id))

    def _decided(self, escalation_id: int) -> None:
        # A method of ours, not `set.discard`: Textual's call_from_thread fails on a builtin method.
        self._deciding.discard(escalation_id)

    def _record_now(self, escalation_id: int, decision: str, reason: str) -> None:
        app = self.loom
        policy = app.policy
        if policy is None:  # not reached: check_action offers no decision without a policy, and none unloads
            return
        try:
            updated = decide(app.workspace, policy, escalation_id, decision,
                             reason=reason)
        except DecisionTooLate as exc:  # noted in its history: "not recorded" over "your override is noted" read false
            app.call_from_thread(app.notify, str(exc), title="too late: noted only", severity="warning")
            return
        except LoomError as exc:
            app.call_from_thread(app.notify, str(exc), title="not recorded", severity="error")
            return
        if updated.status == EscalationStatus.OPEN:  # still open: whoever decides it next, its going is theirs
            app.call_from_thread(self._still_open, escalation_id)
        # "approve recorded (open)" read as if the approval had not counted: how far it is, then what is left.
        noun = {"approve": "approval", "reject": "rejection", "override": "override"}.get(decision, decision)
        progress = "; ".join(unmet_lines(updated)) if updated.status == EscalationStatus.OPEN else ""
        said = f"#{escalation_id}: {noun} recorded, " + (f"still open: {progress}" if progress else
                                                           str(updated.status))
        if updated.data.get("note_problem"):  # in the store only: a CI gate in a fresh clone does not see it
            said += f"; a decision on it is not published as a git note for CI: {updated.data['note_problem']}"
        if updated.sandbox_id:
            # The decision may let its sandbox move on (start, merge, reject): the workflow says, in
            # the same toast (one per decision, not one per step over the detail pane).
            try:
                moved = advance(app.workspace, updated.sandbox_id, policy=app.policy)
            except LoomError as exc:
                app.call_from_thread(app.notify, str(exc), title="workflow", severity="error")
            else:
                if moved.done:
                    said += f"; sandbox {moved.sandbox_id}: " + "; ".join(moved.done)
        app.call_from_thread(app.notify, said, title="decision")
        self.reload()

    @work(thread=True, group="diff", exit_on_error=False)
    def action_diff(self, *_twin: int) -> None:
        from loomtui.execution.review import diff
        from loomtui.tui.screens.sandbox_forms import DiffScreen

        escalation = self.app.call_from_thread(self.selected)
        if escalation is None or not escalation.sandbox_id:  # the key's twin: said, not a key that does nothing
            said = "no escalation selected" if escalation is None else f"#{escalation.id} is about no sandbox's change"
            self.app.call_from_thread(self.app.notify, said, title="diff", severity="warning")
            return
        try:
            found = diff(self.loom.workspace, escalation.sandbox_id)
        except LoomError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), title="diff", severity="error")
            return
        title = f"escalation #{escalation.id}, sandbox {escalation.sandbox_id}: {found.stats}"
        self.app.call_from_thread(DiffScreen.open_over, self.app, title, found.patch)

    def _team_store(self) -> bool:
        return self.loom.workspace.store.namespace != SqlStore.namespace

    def action_toggle_repositories(self, *_any: int) -> None:
        """Show the open escalations of every repository in the team's database, or this one's only."""
        if not self._team_store():  # the hidden twin of the key: said, not a key that does nothing
            self.notify("this repository's store is a file of its own: other repositories' escalations are "
                        "in a team's store (PostgreSQL, `loomtui store copy`)", title="escalations", timeout=6)
            return
        self.all_repositories = not self.all_repositories
        self.notify("every repository in this store" if self.all_repositories else "this repository only",
                    title="escalations", timeout=3)
        self.reload()

    def action_toggle_history(self, _showing_decided: int = 0) -> None:
        self.show_decided = not self.show_decided
        self.refresh_bindings()
        self.reload()

    def action_filter(self) -> None:
        """`/`: a lead looking for one sandbox's, one rule's or one area's escalations in a long queue."""
        self.open_filter("#esc-filter")

    @on(Input.Changed, "#esc-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.show_queue(self.escalations, [entry for entry in self.elsewhere.values()])

    @on(Input.Submitted, "#esc-filter")
    def _filter_set(self) -> None:
        self.query_one("#queue", FittedTable).focus()

    def action_back(self) -> None:
        if not self.close_filter("#esc-filter"):
            self.back_out()
