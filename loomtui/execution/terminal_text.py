"""An interactive agent's pane output (a terminal's byte stream) as lines a person reads.

A full-screen CLI draws by moving the cursor, not by writing spaces and newlines: Claude Code
puts each word at its column (`ESC[8G`), steps down a row (`ESC[1B`) and redraws from the
left (`CR`). With the escape sequences only taken out, `sandbox logs` and the Log tab read
"Quicksafetycheck:Isthis...". Here each line is replayed as far as a log can say it: a move
to a column or forward is spaces, a move to another row or a carriage return before more
text starts a new line, erasing and colours are dropped, and a line drawn again as it was
(a spinner's frame) is said once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

_SEQUENCE: Final = re.compile(
    r"\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~])"  # CSI
    r"|\x1b[\]P^_X][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC (a title), DCS, PM, APC, SOS: said nothing
    r"|\x1b[ -/]*[0-~]?"  # the rest (ESC 7, ESC ( B)
    r"|(?P<control>[\x00-\x08\x0b-\x1f\x7f])"  # a control of its own (CR, BS, BEL, SI)
)
_ROW_MOVES: Final = frozenset("ABEFHfd")
"""CSI finals that move to another row (up, down, next or previous line, a position)."""
MAX_COLUMN: Final = 1000
"""Spaces a column move may add at most (`ESC[99999G` is no reason for a line of blanks)."""


def _count(params: str) -> int:
    first = params.split(";", 1)[0]
    return int(first) if first.isdigit() and len(first) < 6 else 1


class TerminalLines:
    """Replays a pane's lines one at a time; remembers the last line said, to say a redrawn one once."""

    def __init__(self) -> None:
        self.last: str | None = None

    def lines(self, raw: str) -> Iterator[str]:
        """What one line of the pane's output shows, as one or more lines (none for a line drawn again)."""
        for line in self._rows(raw):
            line = line.rstrip()
            if line == self.last or (not line and not self.last):
                continue
            self.last = line
            yield line

    def _rows(self, raw: str) -> list[str]:
        rows: list[str] = []
        current: list[str] = []
        position = 0
        for match in _SEQUENCE.finditer(raw):
            current.append(raw[position:match.start()])
            position = match.end()
            final, control = match.group("final"), match.group("control")
            column = len("".join(current))
            if final in ("G", "`"):  # to a column (1-based): spaces up to it; leftwards, a fresh start
                target = min(_count(match.group("params") or "") - 1, MAX_COLUMN)
                if target >= column:
                    current.append(" " * (target - column))
                else:
                    rows.append("".join(current))
                    current = [" " * max(target, 0)]
            elif final == "C":
                current.append(" " * min(_count(match.group("params") or ""), MAX_COLUMN))
            elif (final is not None and final in _ROW_MOVES) or control == "\r":
                if "".join(current).strip():
                    rows.append("".join(current))
                current = []
            elif control == "\x08" and current:
                text = "".join(current)[:-1]
                current = [text]
        last = "".join(current) + raw[position:]
        if last.strip() or not rows:  # a line's closing CR (the pane writes CR CR LF) starts no row of its own
            rows.append(last)
        return rows
