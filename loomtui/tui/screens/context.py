"""The context view: every section of the team's context (AGENTS.md, ADRs, conventions, contracts),
browsed and fuzzy-searched, with each section's text and its ADR flags; also offered in the palette."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input, Static

from loomtui.config import ContextConfig
from loomtui.errors import LoomError, plural
from loomtui.tui.base import LoomScreen, loom_app
from loomtui.tui.keys import KeysFooter, shown_key
from loomtui.tui.palette import PaletteEntry, RankedProvider
from loomtui.tui.visible import VisibleText, visible_controls, visible_text
from loomtui.tui.widgets.fields import reflowed
from loomtui.tui.widgets.fitted_table import FitColumn, FittedTable
from loomtui.tui.widgets.status_header import StatusHeader

if TYPE_CHECKING:
    from loomtui.knowledge.sources import Context
    from loomtui.workspace import Workspace

MAX_ROWS = 2000
# Where is cut to fit rather than left out: a long ADR path pushed it out at 80 and 140 columns, and the two
# "Money" rows (a convention and AGENTS.md's) could not be told apart.
SECTION_COLUMNS: Final = (FitColumn("title", "Section", 0, flex=True, min_width=16, want=40),
                          FitColumn("where", "Where", 1, flex=True, min_width=12, want=28),
                          FitColumn("layer", "Layer", 2))
NO_CONTEXT: Final = (
    "No team context yet: no file that context.sources in .loom/loom.yaml names has a section (by default "
    f"{', '.join(ContextConfig().sources)}). Write one, AGENTS.md say, with a heading per topic, and commit it: "
    "each sandbox gets the part of it its task needs.")


def load_team_context(workspace: Workspace) -> Context:
    """The repository's context (working tree), its ADR mentions matched to the region index."""
    from loomtui.knowledge.engine import context_of

    return context_of(workspace)


class ContextScreen(LoomScreen[None]):
    """All sections, a `/` fuzzy filter, and the highlighted section in full."""

    VIEW_NAME = "Context"

    AUTO_FOCUS = "#sections"
    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/", id="context.filter",
                tooltip="Show only the sections that match what you type"),
        Binding("r", "reload", "Reload", id="context.reload",
                tooltip="Read the team context from the repository again"),
        Binding("escape", "back", "Back", id="context.back", tooltip="Out of the filter, then back to the sandboxes"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.context: Context | None = None
        self.flags: dict[str, str] = {}
        self.pending: str | None = None  # a section the palette asked for before the context was read

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        yield self.filter_box(f"search the context ({shown_key('context.back', 'esc')} clears)", "context-filter")
        yield Static("", id="context-summary")
        with Horizontal(id="context-body"):
            yield FittedTable(SECTION_COLUMNS, id="sections")
            with VerticalScroll(id="section-pane"):
                yield Static("", id="section")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.loom.update_header(self.query_one(StatusHeader))
        self.action_reload(said=False)

    @work(thread=True, exclusive=True, group="context-load", exit_on_error=False)
    def action_reload(self, said: bool = True) -> None:
        """Read the team's context again (`r`: said in a toast once read, the summary line alone looked unchanged)."""
        from loomtui.knowledge.engine import adr_flags

        try:
            context = load_team_context(self.loom.workspace)
            flags = {flag.adr: f"{flag.kind}: {flag.detail}" for flag in adr_flags(context)}
        except LoomError as exc:
            self.app.call_from_thread(self.query_one("#context-summary", Static).update,
                                      Text(f" cannot read the context: {exc}", style="bold red"))
            return
        self.app.call_from_thread(self._loaded, context, flags, said)

    def _loaded(self, context: Context, flags: dict[str, str], said: bool = False) -> None:
        from loomtui.knowledge.slicing import context_problems

        self.context, self.flags = context, flags
        found = context_problems(context)  # a pin that matches nothing among them
        problems = f"; {plural(len(found), 'problem')}: {found[0]}" if found else ""
        self.query_one("#context-summary", Static).update(Text(
            f" context version {context.version[:12]}: {len(context.sections)} sections from "
            f"{plural(len(context.files), 'file')}, {plural(len(flags), 'ADR')} flagged{problems}", style="dim"))
        self._fill(self.query_one("#context-filter", Input).value)
        if self.pending is not None:
            self.show_section(self.pending)
        if said:
            self.app.notify(f"version {context.version[:12]}, {plural(len(context.sections), 'section')}",
                            title="context read again", timeout=3)

    def _fill(self, query: str) -> None:
        """Rows for every section, or the best matches for `query` (rapidfuzz), best first."""
        from loomtui.knowledge.engine import search_sections

        if self.context is None:
            return
        by_id = self.context.by_id()
        ids = ([hit["id"] for hit in search_sections(self.context, query, limit=50)] if query.strip()
               else [section.id for section in self.context.sections[:MAX_ROWS]])
        flagged = {s for s in ids if s in self.flags or by_id[s].source in self.flags}
        table = self.query_one("#sections", FittedTable)
        table.show_rows({section_id: {
            "title": VisibleText(by_id[section_id].title, style="bold yellow" if section_id in flagged else ""),
            "where": VisibleText(f"{by_id[section_id].source}:{by_id[section_id].line}"),
            "layer": VisibleText(by_id[section_id].layer),
        } for section_id in ids})
        table.move_cursor(row=0)  # the best match (or the first section) is where the eye goes
        self._show()

    @on(DataTable.RowHighlighted, "#sections")
    def _show(self) -> None:
        table = self.query_one("#sections", DataTable)
        pane = self.query_one("#section", Static)
        if self.context is not None and not self.context.sections:
            # A fresh repository read "No section matches." with no filter set, as if the filter had emptied it.
            pane.update(Text(NO_CONTEXT))
            return
        if self.context is None or not table.row_count:
            pane.update(Text("No section matches." if self.context else "Reading the context..."))
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        section = self.context.section(str(key))
        if section is None:
            return
        text = VisibleText()
        # Drawn before Rich sees them: it drops BEL, BS, CR, VT and FF without a trace.
        text.append(f"{visible_controls(section.title)}\n", style="bold")
        text.append(f"{section.source}:{section.line}  layer {section.layer}  ~{section.tokens} tokens\n",
                    style="dim")
        flag = self.flags.get(section.id) or self.flags.get(section.source)
        if flag:
            text.append(f"flagged: {flag}\n", style="bold yellow")
        text.append("\n" + visible_controls(reflowed(section.text)))  # never as markup; paragraphs rewrapped
        pane.update(visible_text(text))  # nor as the terminal's controls (an ESC ]0; retitled it)

    def show_section(self, section_id: str) -> None:
        """Jump to one section (from the palette)."""
        if self.context is None:
            self.pending = section_id
            return
        self.pending = None
        table = self.query_one("#sections", DataTable)
        self.query_one("#context-filter", Input).value = ""
        self._fill("")
        if section_id in {str(key.value) for key in table.rows}:
            table.move_cursor(row=table.get_row_index(section_id))

    def action_filter(self) -> None:
        self.open_filter("#context-filter")

    @on(Input.Changed, "#context-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#context-filter")
    def _filter_submitted(self) -> None:
        # To the sections, as the other views' filters do: the arrows stayed in the box, and keys typed went into it.
        self.query_one("#sections", DataTable).focus()

    def action_back(self) -> None:
        if not self.close_filter("#context-filter"):
            self.back_out()


class ContextSections(RankedProvider):
    """Palette: jump to any section of the team's context by its title or source."""

    async def startup(self) -> None:
        worker = self.app.run_worker(partial(load_team_context, loom_app(self.app).workspace),
                                     thread=True, exit_on_error=False)
        await worker.wait()
        self.sections = [] if worker.result is None else [(s.id, f"context: {s.title} ({s.source})")
                                                           for s in worker.result.sections]

    def entries(self) -> list[PaletteEntry]:
        return [(label, partial(self._open, section_id), "open in the context view")
                for section_id, label in getattr(self, "sections", [])]

    def _open(self, section_id: str) -> None:
        self.app.switch_mode("context")
        screen = self.app.screen
        if isinstance(screen, ContextScreen):
            screen.call_after_refresh(screen.show_section, section_id)
