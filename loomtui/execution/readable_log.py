"""An agent's log as a person reads it (`sandbox logs`, the app's Log tab): Claude Code's stream-json as
what happened in each event, an interactive agent's pane as its screen showed it (terminal_text), any
other output as written."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

from loomtui.execution.activity import Activity, is_stream_json, parse_claude_stream, parse_codex_json
from loomtui.execution.log_lines import MAX_LINE_BYTES, log_tail
from loomtui.execution.runtimes import OUTPUT_CLAUDE_STREAM, OUTPUT_CODEX_JSON, OUTPUT_TERMINAL
from loomtui.execution.terminal_text import TerminalLines

READING_MARKS: Final = {"init": "·", "retry": "!", "tool": "▸", "error": "✗", "denied": "✗", "result": "■"}
"""The mark before each kind of activity in a log as a person reads it (what the model said has none)."""
_PIECE: Final = MAX_LINE_BYTES - 8
"""A line this long (in bytes, as decoded and encoded again) is a piece of a longer one (log_lines)."""
_FRAGMENT: Final = 4096
"""A line this long that is no event is part of one (a tail that began inside a tool's output, or a skip
ahead): said by its size, as a whole event's pieces are, never printed (a tail printed 1 MiB of it)."""
MAX_TAIL_LINES: Final = 100_000
_EVENTS: Final[dict[str, Callable[..., list[Activity]]]] = {
    OUTPUT_CLAUDE_STREAM: parse_claude_stream, OUTPUT_CODEX_JSON: parse_codex_json}
"""Structured output, one JSON event a line, each read as what happened in it."""


class ReadableLog:
    """Renders a log's lines in order, keeping what one line says of the next (an event over 64 KiB comes
    in pieces, the first starting `{` but none of them JSON: they showed as pages of escaped JSON)."""

    def __init__(self, output: str, worktree: str | None = None) -> None:
        self.output = output
        # Cut from the event before it is read: a summary is cut to a line, and the path took most of it.
        self.inside = f"{worktree.rstrip('/')}/" if worktree else None
        self.piece_bytes = 0  # of a long event read so far in pieces
        self.terminal = TerminalLines() if output == OUTPUT_TERMINAL else None
        self.events = _EVENTS.get(output)

    def lines(self, lines: Iterable[str]) -> Iterator[str]:
        """Claude Code's stream-json (and Codex's --json) as what happened in each event (the model's words
        whole, each tool it called, errors, denials, its closing result; a path in the worktree as the
        repository names it) and nothing for an event that tells a reader nothing (a tool's output, a hook
        starting); any other line (loomtui's own notes, what the agent wrote to stderr) as written."""
        for line in lines:
            if self.terminal is not None:  # an interactive agent's pane, as the screen showed it
                yield from self.terminal.lines(line.removesuffix("\r"))
                continue
            if self.events is None:
                yield line
                continue
            size = len(line.encode("utf-8", "replace"))
            event = line.startswith("{") and is_stream_json(line)
            if self.piece_bytes and event:  # the long one ended at a piece's end (a multiple of 64 KiB)
                yield self._long_one_said()
            if not event and (self.piece_bytes or size >= _FRAGMENT):
                self.piece_bytes += size
                if size < _PIECE:  # its last piece
                    yield self._long_one_said()
                continue
            if not event:
                yield line
                continue
            for activity in self.events(line.replace(self.inside, "") if self.inside else line, whole_text=True):
                mark = READING_MARKS.get(activity["kind"])
                yield from [f"{mark} {activity['summary']}"] if mark else activity["summary"].splitlines()

    def _long_one_said(self) -> str:
        said = f"… {max(1, self.piece_bytes >> 10)} KiB of an event, not shown (`sandbox logs --raw` has it)"
        self.piece_bytes = 0
        return said


def readable_lines(output: str, lines: Iterable[str], worktree: str | None = None) -> list[str]:
    """`lines` of a log in `output`'s format as a person reads them (`ReadableLog`)."""
    return list(ReadableLog(output, worktree).lines(lines))


def readable_tail(path: Path, output: str, worktree: str | None, count: int,
                  end: int | None = None) -> tuple[list[str], bool]:
    """The last `count` lines of a log as a person reads them, read further back while events that show
    nothing (a tool's output) leave fewer (`-n 20` printed nothing after a run of tool results); and whether
    the log holds any line at all."""
    ask = count
    while True:
        raw = log_tail(path, ask, end)
        shown = readable_lines(output, raw, worktree)
        if len(shown) >= count or len(raw) < ask or ask >= MAX_TAIL_LINES:
            return (shown[-count:] if count > 0 else []), bool(raw)
        ask *= 4
