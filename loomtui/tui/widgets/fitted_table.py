"""A DataTable that fits its width, as k9s's tables do: columns shown by priority, one flexible
column takes the width left over (its text cut with …), nothing behind a horizontal scroll."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from loomtui.tui.visible import visible_controls, visible_text

Cell = Text | str
"""A cell as the screens build it: Text for anything untrusted (a str cell is parsed as markup)."""

ELSEWHERE: Final = Coordinate(-2, -2)
"""The cursor or the hover as a row it is not on sees it: on no cell (-1 is the header's row)."""

SCROLLBAR_ROOM: Final = 2
"""Columns kept free for the vertical scrollbar, so a long table never needs a horizontal one."""


TABLE_KEYS: Final = "table."
"""The id prefix of the keys every table has (first and last row): listed after a view's own keys."""


@dataclass(frozen=True)
class FitColumn:
    """One column: its place in the table is its place in the list; `priority` says which
    columns stay when the width runs out (smaller stays longer)."""

    key: str
    label: str
    priority: int = 0
    flex: bool = False
    """Takes the width left over (at least `min_width`), its text cut with … to fit."""
    min_width: int = 8
    want: int = 32
    """A flexible column's claim, made at its priority before the columns after it get room."""
    max_width: int | None = None
    """A cap on a fixed column's width (its longer cells are cut with …)."""
    takes_room: bool = False
    """A flexible column that, short of room, takes its minimum from the flexible columns before it (down to
    theirs) rather than go."""
    shorten: Callable[[str, int], str] | None = None
    """How a cell wider than the column is cut (default: at its end, with …): a test id keeps its name."""


@dataclass(frozen=True)
class Layout:
    """The columns shown, each with its width in cells (padding excluded)."""

    widths: tuple[tuple[str, int], ...]

    def keys(self) -> list[str]:
        return [key for key, _ in self.widths]


def fit_columns(columns: Sequence[FitColumn], natural: Mapping[str, int], width: int,
                padding: int = 1) -> Layout:
    """Which columns fit in `width` cells and how wide each is. `natural` is each column's widest
    cell (its label included). The first column by priority is always shown."""
    pad = 2 * padding
    wanted = {c.key: min(natural.get(c.key, 0), c.max_width or 10**6) for c in columns}

    def need(column: FitColumn) -> int:
        natural_width = wanted[column.key]
        return pad + (min(column.want, natural_width) if column.flex else natural_width)

    def least(column: FitColumn) -> int:
        return min(column.min_width, wanted[column.key])

    sizes: dict[str, int] = {}
    used = 0
    placed: list[FitColumn] = []
    for column in sorted(columns, key=lambda c: c.priority):  # stable: equal priorities keep their order
        size = need(column)
        if column.flex and used + size > width:  # what is left, if that is at least its minimum
            size = max(width - used, pad + least(column))
            # Else room from the flexible columns placed before it, down to their minimum: at 80 columns the
            # next step kept its want and the Task column went, while Risk stayed.
            short = used + size - width if column.takes_room else 0
            for earlier in reversed([c for c in placed if c.flex]):
                given = min(short, sizes[earlier.key] - least(earlier))
                if given > 0:
                    sizes[earlier.key] -= given
                    used -= given
                    short -= given
        if sizes and used + size > width:
            if column.flex:
                break  # the name column gone, none of lower priority stays: not a narrow Age where the Task was
            continue
        sizes[column.key] = size - pad
        used += size
        placed.append(column)
    _share_spare(sizes, [c.key for c in columns if c.flex and c.key in sizes], wanted, max(0, width - used))
    return Layout(tuple((column.key, max(1, sizes[column.key])) for column in columns if column.key in sizes))


def _share_spare(sizes: dict[str, int], flexible: list[str], wanted: Mapping[str, int], spare: int) -> None:
    """The width left over, shared evenly among the flexible columns up to each one's widest cell (the
    first took it all: a long task left the next step cut at its want)."""
    growing = [key for key in flexible if sizes[key] < wanted[key]]
    while spare > 0 and growing:
        share = max(1, spare // len(growing))
        for key in growing:
            grown = min(share, wanted[key] - sizes[key], spare)
            sizes[key] += grown
            spare -= grown
        growing = [key for key in growing if sizes[key] < wanted[key]]


CURSOR_KEYS: Final = frozenset({"up", "down", "home", "end", "pageup", "pagedown"})
"""The keys that move a table's cursor: a row the cursor is put on with them is one the person chose."""


def cut(cell: Cell, width: int) -> Cell:
    """`cell` in at most `width` cells: a longer one ends in …. Styles are kept. A control character
    is drawn as its symbol, whoever built the cell: a task or a summary is an agent's words, and an
    ESC that reached the terminal retitled and cleared it."""
    cell = visible_text(cell) if isinstance(cell, Text) else visible_controls(cell)
    if _cell_width(cell) <= width:  # most cells: measured, not parsed
        return cell
    text = cell.copy() if isinstance(cell, Text) else Text.from_markup(cell)
    text.truncate(width, overflow="ellipsis")
    plain = text.plain
    kept = plain[:-1].rstrip()
    if kept.endswith("…"):  # cut just after an ellipsis of its own (an abridged task): one, not "for… …"
        text.right_crop(len(plain) - len(kept))
    return text


class FittedTable(DataTable[Cell]):
    """A row-cursor table that lays its columns out for its width. Rows are given whole with
    `show_rows` (the table diffs them: changed cells are updated by key); a resize, or a cell wider
    than its column, lays the table out again."""

    # It fits its width, so nothing scrolls sideways: home and end go to the first and last row, and
    # the sideways keys are not offered (not in the footer, the help or the palette).
    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False, id=f"{TABLE_KEYS}first",
                tooltip="Go to the table's first row"),
        Binding("end", "scroll_bottom", "Last row", show=False, id=f"{TABLE_KEYS}last",
                tooltip="Go to the table's last row"),
    ]
    _SIDEWAYS: Final = frozenset({"cursor_left", "cursor_right", "page_left", "page_right", "scroll_left",
                                  "scroll_right", "scroll_home", "scroll_end"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self._SIDEWAYS:
            return False
        return super().check_action(action, parameters)

    def __init__(self, columns: Sequence[FitColumn], **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self.fit_spec = tuple(columns)
        self._shorten = {c.key: c.shorten for c in self.fit_spec if c.shorten is not None}
        self._rows: dict[str, dict[str, Cell]] = {}  # the whole cells, in row order
        self._plain: dict[str, dict[str, str]] = {}  # what each shown cell says, to skip unchanged ones
        self._widest = {c.key: cell_len(c.label) for c in self.fit_spec}  # grows with the cells set
        self.layout_shown = Layout(())
        self._unlaid = False  # rows were given while it had no width
        self._cursor_row_gone: tuple[str, str | None] | None = None  # (the row that went, the row the cursor got)

    def _render_line_in_row(self, row_key: RowKey, line_no: int, base_style: Style, cursor_location: Coordinate,
                            hover_location: Coordinate) -> Any:
        """DataTable's row rendering, cached per row: a row the cursor and the hover are not on is drawn
        the same wherever they are. DataTable keys its row cache on their coordinates, so each cursor key
        that scrolled the table drew every visible row again (four fifths of a key's cost at 200 rows)."""
        row = self._row_locations.get(row_key)
        if self.cursor_type == "row" and row is not None:  # not the header: it is drawn as DataTable does
            if cursor_location.row != row:
                cursor_location = ELSEWHERE
            if hover_location.row != row:
                hover_location = ELSEWHERE
        return super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)

    # -- rows ------------------------------------------------------------------------------

    def show_rows(self, rows: Mapping[str, Mapping[str, Cell]], *, hidden: Collection[str] = ()) -> None:
        """Show exactly these rows, in this order; the cursor stays on its row's key (DataTable keeps its index:
        a row removed above it moved it onto another sandbox, which `p`, `S` or `e` then acted on). `hidden`: keys
        left out though they still exist (a filter's): the cursor's row among them is not gone."""
        narrowed = False
        cursor = self.highlighted_key()
        for key in [k for k in self._rows if k not in rows]:
            narrowed |= self._narrows(self._rows.pop(key), {})
            self._plain.pop(key, None)
            if key in self.rows:
                self.remove_row(key)
        for key, cells in rows.items():
            narrowed |= self._narrows(self._rows.get(key, {}), cells)
            self._rows[key] = dict(cells)
            self._grow(cells)
        if list(self._rows) != list(rows):  # a row came in above others: the table is rebuilt in order
            self._rows = {key: self._rows[key] for key in rows}
            self.lay_out(force=True)
        elif not self.lay_out(remeasure=narrowed):
            for key in rows:
                self._show_row(key)
        if cursor in self._rows and self.highlighted_key() != cursor:
            self.move_cursor(row=list(self._rows).index(cursor), animate=False)
        elif cursor is not None and cursor not in self._rows and cursor not in hidden and self._rows:
            # Where DataTable puts the cursor (its index, kept within the rows), perhaps only once it lays out.
            self._cursor_row_gone = (cursor, self._key_at(min(self.cursor_row, len(self._rows) - 1)))

    def on_key(self, event: events.Key) -> None:
        if event.key in CURSOR_KEYS:  # put on a row by the person, even the one it is on: a row chosen
            self._cursor_row_gone = None

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        gone = self._cursor_row_gone
        if gone is not None and self._key_at(new.row) != gone[1]:
            self._cursor_row_gone = None  # moved since, by the reader: the row under it now is one chosen

    def _key_at(self, row: int) -> str | None:
        keys = list(self._rows)
        return keys[row] if 0 <= row < len(keys) else None

    def row_gone_under_cursor(self) -> str | None:
        """The row the cursor was on when a refresh took it away, while the cursor stays on the row that left it
        on (a key pressed now acts on a row nobody chose: `S` reran the sandbox below an archived one); None
        otherwise. Said once: asked again, None."""
        gone, self._cursor_row_gone = self._cursor_row_gone, None
        return gone[0] if gone is not None and gone[1] == self.highlighted_key() else None

    def cell(self, row: str, column: str) -> Cell:
        """The whole value of a row's cell, whether its column is shown at this width or not."""
        return self._rows[row][column]

    def set_cell(self, row: str, column: str, value: Cell) -> None:
        """Change one cell of a shown row (the Age ticking on), repainting only that cell."""
        if row not in self._rows or str(self._rows[row].get(column, "")) == str(value):
            return  # the same text (most ages, most ticks): nothing to measure or repaint
        narrowed = self._narrows(self._rows[row], {**self._rows[row], column: value})
        self._rows[row][column] = value
        self._grow({column: value})
        if not self.lay_out(remeasure=narrowed):
            self._show_row(row)

    def _cut(self, column: str, cell: Cell, width: int) -> Cell:
        shorten = self._shorten.get(column)
        if shorten is not None and _cell_width(cell) > width:
            plain = cell.plain if isinstance(cell, Text) else cell
            cell = Text(shorten(plain, width), style=cell.style) if isinstance(cell, Text) else shorten(plain, width)
        return cut(cell, width)

    def _show_row(self, key: str) -> None:
        if not self.layout_shown.widths:
            return  # not laid out yet (no width): the first layout adds every row
        cells = {column: self._cut(column, self._rows[key].get(column, ""), width)
                 for column, width in self.layout_shown.widths}
        plain = {column: str(value) for column, value in cells.items()}
        if key not in self.rows:
            self.add_row(*cells.values(), key=key)
        elif self._plain.get(key) != plain:
            shown = self._plain.get(key, {})
            for column, value in cells.items():
                if shown.get(column) != plain[column]:
                    self.update_cell(key, column, value)
        self._plain[key] = plain

    # -- layout ----------------------------------------------------------------------------

    def _narrows(self, before: Mapping[str, Cell], after: Mapping[str, Cell]) -> bool:
        """Whether a row going from `before` to `after` may narrow a column: a cell as wide as its column's
        widest became narrower (a gate's "running…" became "✓ · 80", and the Gates column kept the room
        the task and the next step needed until the terminal was resized)."""
        return any(key in self._widest and _cell_width(old) == self._widest[key]
                   and _cell_width(after.get(key, "")) < self._widest[key] for key, old in before.items())

    def _grow(self, cells: Mapping[str, Cell]) -> None:
        for key, value in cells.items():
            if key in self._widest:
                self._widest[key] = max(self._widest[key], _cell_width(value))

    def lay_out(self, force: bool = False, remeasure: bool = False) -> bool:
        """Lay the columns out for the current width, rebuilding the table only when the layout
        changed (or `force`). Whether it was rebuilt."""
        if not self.size.width:
            # Not on screen now (a hidden tab; one just shown is placed on the next pass): laid out when it is.
            self._unlaid = True
            return False
        self._unlaid = False
        if remeasure or force:  # the widest cells afresh: a column may have narrowed
            self._widest = {c.key: cell_len(c.label) for c in self.fit_spec}
            for cells in self._rows.values():
                self._grow(cells)
        layout = fit_columns(self.fit_spec, self._widest, max(1, self.size.width - SCROLLBAR_ROOM),
                             self.cell_padding)
        if layout == self.layout_shown and not force:
            return False
        cursor = self.highlighted_key()
        self.layout_shown = layout
        self.clear(columns=True)
        self._plain.clear()
        labels = {c.key: c.label for c in self.fit_spec}
        for key, width in layout.widths:
            self.add_column(labels[key], width=width, key=key)
        for key in self._rows:
            self._show_row(key)
        if cursor in self._rows:
            self.move_cursor(row=list(self._rows).index(cursor), animate=False)
        return True

    def highlighted_key(self) -> str | None:
        """The key of the row under the cursor (None: no rows)."""
        if not self.row_count:
            return None
        value = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return str(value) if value is not None else None

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        """The compositor gives the table its size: its columns and rows are laid out for it at once, in
        the pass that draws the frame. Left to the Resize event and DataTable's idle sizing, the first
        frame showed a table with no rows and the rows came two passes later."""
        resized = super()._size_updated(size, virtual_size, container_size, layout)
        # Or rows came while it had no place on screen: the Evals tab shown again got its tests at no width,
        # and its width was what it had been, so no resize said to lay them out (columns a few cells wide).
        if (resized or self._unlaid) and self.lay_out(remeasure=True):
            self._size_rows_now()
        return resized

    def _size_rows_now(self) -> None:
        """What DataTable does on idle for rows just added (their widths, the scrollable height), now."""
        if self._require_update_dimensions:
            self._require_update_dimensions = False
            new_rows = self._new_rows.copy()
            self._new_rows.clear()
            self._update_dimensions(new_rows)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """DataTable measures each new row's cells for its auto-width columns; `lay_out` gives every
        column its width and adds one-line rows without labels, so only the scrollable size is left
        (a row or column made otherwise is measured as DataTable would)."""
        if any(column.auto_width for column in self.columns.values()):
            super()._update_dimensions(new_rows)
            return
        super()._update_dimensions([key for key in new_rows if (row := self.rows.get(key)) is not None
                                    and (row.label is not None or row.auto_height)])


def _cell_width(value: Cell) -> int:
    if isinstance(value, Text):
        return value.cell_len
    return cell_len(value) if "[" not in value else cell_len(Text.from_markup(value).plain)  # plain: no parse
