"""Modal screens for sandboxes: the new-sandbox form, a diff viewer and a confirmation."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from rich.cells import cell_len
from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from loomtui.coordination.suggest import suggest_regions
from loomtui.runtime_config import PLACEHOLDERS_SAID
from loomtui.tui.base import loom_app
from loomtui.tui.keys import KeysFooter, shown_key
from loomtui.tui.visible import VisibleText, visible_controls
from loomtui.tui.widgets.tick_list import TickList


@dataclass(frozen=True)
class NewSandboxRequest:
    task: str
    runtime: str
    base: str
    claims: tuple[str, ...]
    script: str | None
    after: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    """The program and its arguments, for the `command` runtime."""


class NewSandboxScreen(ModalScreen[NewSandboxRequest | None]):
    """`n`: task, runtime, base and the claims the coordination engine suggests.

    Conflicts of the ticked claims are shown before anything starts, so the
    engineer sees a collision before the agent generates a line.
    """

    BINDINGS = [Binding("ctrl+s", "start", "Start", id="new.start", tooltip="Start the sandbox from any field"),
                Binding("escape", "cancel", "Cancel", id="new.cancel", tooltip="Close the form without starting")]
    DEFAULT_CSS = """
    NewSandboxScreen { align: center middle; }
    NewSandboxScreen > Vertical { width: 100; max-width: 95%; height: 90%; border: round $primary;
                                  background: $surface; padding: 0 1; }
    /* The fields scroll; the buttons stay below them, whatever the terminal's height. */
    NewSandboxScreen #new-fields { height: 1fr; }
    NewSandboxScreen SelectionList { height: auto; min-height: 4; max-height: 14; }
    NewSandboxScreen #claim-check { height: auto; max-height: 8; }
    NewSandboxScreen Horizontal { height: auto; }
    NewSandboxScreen Input, NewSandboxScreen Select { margin-bottom: 0; }
    NewSandboxScreen #runtime { width: 34; }
    NewSandboxScreen #base { width: 18; }
    NewSandboxScreen #after { width: 1fr; }
    """

    def __init__(self, runtimes: list[str], default_runtime: str, marks: Mapping[str, str] | None = None,
                 draft: NewSandboxRequest | None = None) -> None:
        super().__init__()
        self.runtimes = runtimes
        self.default_runtime = draft.runtime if draft is not None and draft.runtime in runtimes else default_runtime
        self.draft = draft
        """A request that failed (a bad base, an unknown `after`): the form opens with it, to mend."""
        self.marks = dict(marks or {})
        """Runtimes that cannot run here, with why (not installed, no credentials): listed, marked, never
        the default."""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("New sandbox", style="bold"))
            with VerticalScroll(id="new-fields"):
                # Not selected when focused: reopened with a refused request's task, the first key replaced it.
                yield Input(placeholder="task: what should the agent do?", id="task", select_on_focus=False)
                with Horizontal():
                    yield Select([(f"{name} ({self.marks[name]})" if name in self.marks else name, name)
                                  for name in self.runtimes], value=self.default_runtime, allow_blank=False,
                                 id="runtime")
                    yield Input(value="HEAD", placeholder="base ref", id="base")
                    # Short enough for the field at 80 columns; the whole meaning in its tooltip.
                    yield Input(placeholder="after: ids", id="after",
                                tooltip="ids of the sandboxes whose change merges before this one starts")
                yield Input(placeholder="script file (script runtime only)", id="script")
                # Every placeholder in its tooltip, from the one list (cut at 80 columns, the hint named three).
                yield Input(placeholder=f"command, e.g. ./fix.sh {{task}} ({PLACEHOLDERS_SAID})",
                            tooltip=f"Substituted in the arguments, never in a shell's -c script: {PLACEHOLDERS_SAID}",
                            id="command")
                yield Label("Claims (suggested from the task; space toggles):")
                yield TickList[str](id="claims")
                yield Static(id="claim-check")
            with Horizontal(id="new-buttons"):
                yield Button("Start", variant="primary", id="start")
                yield Button("Cancel", id="cancel")
        yield KeysFooter()  # its own keys: the view below is not active under it

    def on_mount(self) -> None:
        if (draft := self.draft) is not None:
            for field, value in (("task", draft.task), ("base", draft.base), ("after", " ".join(draft.after)),
                                 ("script", draft.script or ""), ("command", shlex.join(draft.command))):
                self.query_one(f"#{field}", Input).value = value
            claims = self.query_one("#claims", SelectionList)
            for region_id in draft.claims:
                claims.add_option(Selection(VisibleText(region_id), region_id, True))
        self._show_script_field()
        self.query_one("#task", Input).focus()  # not the scrolling container around it: typing goes in

    @on(Select.Changed, "#runtime")
    def _show_script_field(self) -> None:
        runtime = self.query_one("#runtime", Select).value
        self.query_one("#script", Input).display = runtime == "script"
        self.query_one("#command", Input).display = runtime == "command"

    @on(Input.Changed, "#task")
    def _task_changed(self, event: Input.Changed) -> None:
        self._suggest(event.value)

    @work(thread=True, exclusive=True, group="suggest", exit_on_error=False)
    def _suggest(self, task: str) -> None:
        coordinator = loom_app(self.app).coordinator
        if coordinator is None:
            self.app.call_from_thread(self.query_one("#claim-check", Static).update,
                                      Text("Still indexing the repository: suggestions follow.", style="dim"))
            return
        if len(task.strip()) < 3:  # too short to suggest from: the longer text's suggestions go (ticked ones stay)
            self.app.call_from_thread(self._show_suggestions, task, [])
            return
        suggestions = suggest_regions(coordinator.index, task, limit=8)
        self.app.call_from_thread(self._show_suggestions, task, [s.region.id for s in suggestions])

    def _show_suggestions(self, task: str, region_ids: list[str]) -> None:
        if self.query_one("#task", Input).value != task:  # a slower read for what was typed before
            return
        claims = self.query_one("#claims", SelectionList)
        ticked = set(claims.selected)
        claims.clear_options()
        for region_id in dict.fromkeys([*ticked, *region_ids]):
            claims.add_option(Selection(VisibleText(region_id), region_id, region_id in ticked))
        if claims.highlighted is None and claims.option_count:
            claims.highlighted = 0  # else the first space after tabbing in toggled nothing

    @on(SelectionList.SelectedChanged, "#claims")
    def _claims_changed(self) -> None:
        self._check(tuple(self.query_one("#claims", SelectionList).selected))

    @work(thread=True, exclusive=True, group="claim-check", exit_on_error=False)
    def _check(self, region_ids: tuple[str, ...]) -> None:
        coordinator = loom_app(self.app).coordinator
        if coordinator is None:
            return
        conflicts = coordinator.check("(new)", list(region_ids)) if region_ids else []
        text = VisibleText()
        for conflict in conflicts:
            style = "bold red" if conflict.blocking else "yellow"
            text.append(f"{conflict.severity} {conflict.kind}: ", style=style)
            text.append(conflict.explanation.replace("sandbox (new)", "this new sandbox") + "\n")
        if region_ids and not conflicts:
            text.append("No conflicts with live claims.", style="green")
        self.app.call_from_thread(self._show_check, region_ids, text)

    def _show_check(self, region_ids: tuple[str, ...], text: Text) -> None:
        # Only for the claims ticked now: a slower check of an earlier choice, ending after the newer one's,
        # said "No conflicts with live claims." beside a claim that conflicts.
        if tuple(self.query_one("#claims", SelectionList).selected) == region_ids:
            check = self.query_one("#claim-check", Static)
            text.rstrip()
            check.update(text)
            # Below the list, at the fields' foot: at 80x24 it showed its first line only ("... is held by"),
            # and no key scrolled to who holds it. In view once it is laid out with its lines, while the claims
            # are being chosen: a form reopened with its claims scrolled the task field, focused with its text
            # selected, out of sight, and the first key typed replaced the task.
            if self.focused is self.query_one("#claims", SelectionList):
                self.call_after_refresh(check.scroll_visible, animate=False)

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        """The Start button, or ctrl+s from any field (the footer says so)."""
        task = self.query_one("#task", Input).value.strip()
        if not task:
            self.notify("the task is required", severity="warning")
            self.query_one("#task", Input).focus()  # the field the toast names: typing there mends it
            return
        runtime = str(self.query_one("#runtime", Select).value)
        script = self.query_one("#script", Input).value.strip() or None
        try:
            command = tuple(shlex.split(self.query_one("#command", Input).value)) if runtime == "command" else ()
        except ValueError as exc:
            self.notify(f"the program line does not parse: {exc}", severity="warning")
            self.query_one("#command", Input).focus()
            return
        if runtime == "command" and not command:
            self.notify("the command runtime needs a program to run", severity="warning")
            self.query_one("#command", Input).focus()
            return
        if runtime == "script" and not script:
            self.notify("the script runtime needs a script file to replay", severity="warning")
            self.query_one("#script", Input).focus()
            return
        self.dismiss(NewSandboxRequest(
            task=task, runtime=runtime, base=self.query_one("#base", Input).value.strip() or "HEAD",
            claims=tuple(self.query_one("#claims", SelectionList).selected),
            script=script if runtime == "script" else None,
            after=tuple(self.query_one("#after", Input).value.replace(",", " ").split()),
            command=command,
        ))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; `y` confirms, `n` or `esc` declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Yes, do it"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="No, leave it as it is"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 70; max-width: 100%; height: auto; max-height: 100%; border: round $warning;
                               background: $surface; padding: 1 2; }
    /* A long question (an override's reason of 200 words) scrolls: its end and the y/n line were off screen. */
    ConfirmScreen #confirm-question { height: auto; max-height: 60vh; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll(id="confirm-question"):
                yield Static(VisibleText(self.question))
            yield Static(Text(f"{shown_key('confirm.yes', 'y')} yes · {shown_key('confirm.no', 'n')} no", style="dim"))
        yield KeysFooter()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class DiffScreen(ModalScreen[None]):
    """A sandbox's diff, highlighted; `esc` closes."""

    BINDINGS = [Binding("escape,q,d", "dismiss", "Close", id="diff.close", tooltip="Close the diff"),
                Binding("question_mark", "keys", "Keys", id="diff.keys", tooltip="The keys that scroll the diff")]
    DEFAULT_CSS = """
    DiffScreen { align: center middle; }
    /* by id: Textual's Footer is a ScrollableContainer too */
    DiffScreen #diff-scroll { width: 95%; height: 90%; border: round $primary; background: $surface;
                              overflow-x: auto; overflow-y: auto; }
    DiffScreen #diff-body { width: auto; }  /* as wide as its longest line: → and ← scroll to the rest */
    """

    @classmethod
    def open_over(cls, app: App[object], title: str, patch: str) -> None:
        """Show a diff, in place of one shown already: `d d d` pressed before the first was read stacked three,
        each to be closed; the same one is left as it is, another's replaces it (not dropped: the lead
        would read one escalation's diff under another's decision)."""
        shown = app.screen
        if isinstance(shown, cls):
            if shown.title_text == title:
                return
            app.pop_screen()
        app.push_screen(cls(title, patch))

    def __init__(self, title: str, patch: str) -> None:
        super().__init__()
        self.title_text = title
        self.patch = patch

    def compose(self) -> ComposeResult:
        with ScrollableContainer(id="diff-scroll"):
            title = Text(self.title_text, style="bold")
            longest = max((cell_len(line) for line in self.patch.splitlines()), default=0)
            if longest > self.app.size.width * 95 // 100 - 2:  # cut at the frame's right: say how to see the rest
                title.append("   ← → scroll to the rest of long lines", style="dim")
            yield Static(title)
            # Syntax renders the patch as data: nothing in it is read as markup.
            # A control in the change (an escape sequence in a file) is shown as its symbol, never sent.
            yield Static(Syntax(visible_controls(self.patch) or "(no changes)", "diff", word_wrap=False,
                                theme="ansi_dark"), id="diff-body")
        yield KeysFooter()

    def action_keys(self) -> None:
        """`?` here: the keys of a modal the app's help does not cover."""
        self.notify("↑ ↓ PgUp PgDn Home End scroll; ← → (and ctrl+PgUp ctrl+PgDn) scroll sideways to a long line; "
                    "esc, q or d closes", title="diff keys", timeout=8)
