"""A detail pane's `label  value` lines, each value wrapped under itself for the pane's width:
prose at its spaces, paths after a `/`, so nothing is broken mid-word that need not be."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, NamedTuple

from rich.cells import cell_len, chop_cells
from rich.text import Text

from loomtui.tui.visible import visible_controls

LABEL_WIDTH: Final = 10
GAP: Final = "  "
_BREAKS = re.compile(r"(?<=[/ ])")  # a line may end after a space or after a path's separator


class Field(NamedTuple):
    """One line of a detail pane: a dim label, then the value (plain text, never markup)."""

    label: str
    value: str
    style: str = ""


def wrap_value(value: str, width: int) -> list[str]:
    """`value` in lines of at most `width` cells, broken after spaces or `/` where it can be,
    and hard only inside a part longer than the whole width."""
    width = max(1, width)
    lines: list[str] = []
    for paragraph in value.splitlines() or [""]:
        line = ""
        for part in _BREAKS.split(paragraph):
            if cell_len(part) > width:  # a part wider than the pane: cut where it must be, by cells (CJK is 2)
                if line:
                    lines.append(line.rstrip())
                    line = ""
                *whole, part = chop_cells(part, width)
                lines.extend(whole)
            if cell_len(line + part.rstrip()) > width:
                lines.append(line.rstrip())
                line = part.lstrip()
            else:
                line += part
        lines.append(line.rstrip())
    return lines


def hanging(line: str, width: int) -> str:
    """`line` wrapped to `width` cells, each wrapped part indented four past the line's own indent (an
    item nested under it is indented two), so a long line reads as one item of a list."""
    lead = " " * (len(line) - len(line.lstrip(" ")))
    parts = wrap_value(line.strip(), max(8, width - len(lead) - 4))
    return "\n".join([lead + parts[0], *(lead + "    " + part for part in parts[1:])])


def render_fields(fields: Iterable[Field], width: int) -> Text:
    """The fields as Text for a pane `width` cells wide: values wrapped in their own column."""
    indent = " " * (LABEL_WIDTH + len(GAP))
    room = width - len(indent)
    text = Text()
    for field in fields:
        field = field._replace(value=visible_controls(field.value))  # an agent's words: no control reaches the terminal
        text.append(f"{field.label:>{LABEL_WIDTH}}{GAP}", style="dim")
        if room < 12:  # too narrow for a column of its own: the value goes under its label
            text.append("\n" + field.value + "\n", style=field.style)
            continue
        for number, line in enumerate(wrap_value(field.value, room)):
            text.append((indent if number else "") + line + "\n", style=field.style)
    return text


_BLOCK_START = re.compile(r"^(\s{4,}|\s*([#>|]|[-*+]\s|\d+[.)]\s))")
_FENCE = re.compile(r"^\s*(```|~~~)")


def reflowed(markdown: str) -> str:
    """Markdown with each paragraph's lines joined into one (the pane wraps it to its width), so a
    source's own line breaks do not leave a ragged column. Headings, list items, quotes, tables,
    indented and fenced code keep their lines."""
    out: list[str] = []
    fenced = joinable = False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            out.append(line)
            joinable = False
        elif fenced or not line.strip() or _BLOCK_START.match(line):
            out.append(line)
            joinable = False
        elif joinable:
            out[-1] = out[-1].rstrip() + " " + line.strip()
        else:
            out.append(line)
            joinable = True
    return "\n".join(out)
