"""Untrusted text (an agent's output, a file it wrote, a request it made) made safe to draw.

Textual draws a string's characters as they are, and Rich strips only a few controls: an escape
sequence in a task, a log line or a diff reached the terminal, coloured it, moved its cursor and
overwrote other widgets (the table's header, the row a lead reads before approving).
"""

from __future__ import annotations

import re
from typing import Any, Final

from rich.style import Style
from rich.text import Text

from loomtui.errors import INVISIBLE_RANGES

_PICTURES: Final[dict[int, int]] = {
    **{code: 0x2400 + code for code in range(0x20) if code not in (0x09, 0x0A)},  # ␛ for ESC, ␍ for CR, ...
    0x7F: 0x2421,  # ␡
    **{code: 0xFFFD for code in range(0x80, 0xA0)},  # C1 controls (0x9b is a CSI by itself)
    # Zero-width, reordering and separator characters (the terminal showed `bidi_\u202eyp.exe` as
    # `bidi_exe.py`, and `'admin\u200b'` as `'admin'`); a line separator as ␤, not a row of its own.
    **{code: 0xFFFD for first, last in INVISIBLE_RANGES for code in range(first, last + 1)},
    0x2028: 0x2424,
}

_ESCAPE_SEQUENCE: Final = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erasing
    # OSC (titles, links), DCS, PM, APC, SOS, to their end; one with no end is not one (the rest of the
    # line is text, shown: taking it all hid what followed an `ESC ]`).
    r"|[\]P^_X][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|[ -/]*[0-~])"  # the rest (ESC 7, ESC c, ESC ( B, ...)
)


def visible_controls(text: str) -> str:
    """`text` with each control character but newline and tab drawn as its symbol (ESC as ␛).

    One character for one: styles laid over `text` (a Rich `Text`'s spans) still fit.
    """
    return text.translate(_PICTURES)


def one_line(value: object) -> str:
    """An agent's field as one line: its newlines drawn as ␊ too (a path or an evidence key holding one
    drew lines of their own on the approval screen: a fake heading, a path that was not asked)."""
    return visible_controls(str(value)).replace("\n", "\u240a").replace("\t", " ")


def without_escape_sequences(text: str) -> str:
    """`text` without terminal escape sequences (an agent's colours and cursor moves say nothing a
    log reader needs), any other control drawn as its symbol."""
    return visible_controls(_ESCAPE_SEQUENCE.sub("", text))


class VisibleText(Text):
    """A Text whose strings, given or appended, show their controls as symbols: Rich's own `Text(...)` and
    `append` drop BEL, BS, CR, VT and FF unseen (an escalation's task showed its ESC as ␛ and its BEL not at
    all; a file `a\rb.py` read as `ab.py`)."""

    def __init__(self, text: str = "", style: str | Style = "", **options: Any) -> None:
        super().__init__(visible_controls(text), style, **options)

    def append(self, text: str | Text, style: str | Style | None = None) -> Text:
        return super().append(visible_controls(text) if isinstance(text, str) else text, style)


def visible_text(text: Text) -> Text:
    """`text` itself when it holds no control character, else a copy with each drawn as its symbol
    (its styles kept: one character for one)."""
    shown = visible_controls(text.plain)
    if shown == text.plain:
        return text
    copy = text.copy()
    copy.plain = shown
    return copy
