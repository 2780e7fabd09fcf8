"""An interactive agent's pane output (a terminal's byte stream) as lines a person reads.

A full-screen CLI draws by moving the cursor, not by writing spaces and newlines: Claude Code
puts each word at its column (`ESC[8G`), Codex at its row and column (`ESC[16;8H`), and both
step down rows and redraw from the left. With the escape sequences only taken out, `sandbox
logs` and the Log tab read "Quicksafetycheck:Isthis...". Here each line is replayed as far as a
log can say it without a screen: a move to a column, or forward, or to a column of the same row,
is spaces; a move to another row or a carriage return before more text starts a new line (at
the column it moves to); erasing and colours are dropped. Every line drawn is said, a redrawn
one again (nothing is left out: two equal lines of output are two lines).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

_SEQUENCE: Final = re.compile(
    r"\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~])"  # CSI
    # OSC (a title), DCS, PM, APC, SOS, to their end: said nothing. One never ended is no such string: its ESC and
    # letter go (below) and the rest is shown (it hid the rest of its line, loomtui's own note after it too).
    r"|\x1b[\]P^_X][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[ -/]*[0-~]?"  # the rest (ESC 7, ESC ( B)
    r"|(?P<control>[\x00-\x08\x0b-\x1f\x7f])"  # a control of its own (CR, BS, BEL, SI)
)
_ROW_MOVES: Final = frozenset("ABEFd")
"""CSI finals that move to another row (up, down, next or previous line, a row)."""
_POSITIONS: Final = frozenset("Hf")
"""CSI finals that move to a row and column (`ESC[row;colH`)."""
MAX_COLUMN: Final = 1000
"""Spaces a column move may add at most (`ESC[99999G` is no reason for a line of blanks)."""


def _numbers(params: str) -> tuple[int, int]:
    """A CSI's first two numbers, each 1 when not given (or absurd)."""
    given = (params.split(";") + ["", ""])[:2]
    return tuple(int(n) if n.isdigit() and len(n) < 6 else 1 for n in given)  # type: ignore[return-value]


class TerminalLines:
    """Replays a pane's lines one at a time (the row the cursor was last put on is kept between them)."""

    def __init__(self) -> None:
        self.row: int | None = None  # the row an `ESC[row;colH` last named

    def lines(self, raw: str) -> Iterator[str]:
        """What one line of the pane's output shows, as one or more lines."""
        for line in self._rows(raw):
            yield line.rstrip()

    def _rows(self, raw: str) -> list[str]:
        rows: list[str] = []
        # The blanks moves may add, all rows of the line together: a row's width was capped, not their number, and
        # a staircase of `x ESC[B` read 400 KB of log as 100 MB.
        blanks = _Blanks(len(raw) + MAX_COLUMN)
        row = _Row(blanks)
        position = 0
        for match in _SEQUENCE.finditer(raw):
            row.write(raw[position:match.start()])
            position = match.end()
            final, control = match.group("final"), match.group("control")
            params = match.group("params") or ""
            if final in ("G", "`"):  # to a column (1-based)
                row = row.to_column(_numbers(params)[0] - 1, rows)
            elif final == "C":
                row = row.to_column(row.column + _numbers(params)[0], rows)
            elif final is not None and final in _POSITIONS:
                line, column = _numbers(params)
                if line == self.row:  # the same row: a column move (Codex places each word so)
                    row = row.to_column(column - 1, rows)
                else:
                    self.row = line
                    row = row.to_row(column - 1, rows)
            elif final is not None and final in _ROW_MOVES:
                self.row = None
                row = row.to_row(row.column if final in "AB" else 0, rows)  # up or down keeps the column
            elif control == "\r":
                row = row.to_row(0, rows)
            elif control == "\x08":
                row.back()
        row.write(raw[position:])
        said = row.text()
        # A line's closing CR (the pane writes CR CR LF) starts no row of its own, and a line of set-up sequences
        # alone draws nothing; an empty line of the screen is a blank line.
        if said.strip() or (not rows and "\x1b" not in raw):
            rows.append(said)
        self.row = self.row + 1 if self.row is not None else None  # its newline: the next row
        return rows


class _Blanks:
    """The blanks one line's moves may still add (`_rows`)."""

    def __init__(self, left: int) -> None:
        self.left = left

    def take(self, wanted: int) -> str:
        given = min(max(wanted, 0), self.left)
        self.left -= given
        return " " * given


class _Row:
    """The row being said: its pieces, and its length kept as it grows (joined once, when it is said: joined at
    every escape sequence, a line of 250,000 took seconds)."""

    def __init__(self, blanks: _Blanks, column: int = 0) -> None:
        self.blanks = blanks
        indent = blanks.take(min(column, MAX_COLUMN))
        self.parts = [indent] if indent else []
        self.column = len(indent)

    def write(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.column += len(text)

    def text(self) -> str:
        return "".join(self.parts)

    def back(self) -> None:
        if self.column:
            said = self.text()[:-1]
            self.parts, self.column = [said], len(said)

    def to_column(self, target: int, rows: list[str]) -> _Row:
        """At `target` on this row: spaces up to it; leftwards over what is said, a fresh row from there."""
        target = min(max(target, 0), MAX_COLUMN)
        if target >= self.column:
            self.write(self.blanks.take(target - self.column))
            return self
        said = self.text()
        if said.strip():  # blanks alone are no row (a move to column 40, then back to 1, drew none)
            rows.append(said)
        return _Row(self.blanks, target)

    def to_row(self, column: int, rows: list[str]) -> _Row:
        """Another row, at `column`: this one said if it holds anything."""
        said = self.text()
        if said.strip():
            rows.append(said)
        return _Row(self.blanks, column)
