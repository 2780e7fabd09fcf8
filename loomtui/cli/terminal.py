"""What the CLI prints to a terminal: never a control sequence taken from untrusted text.

File names, task text, agent log lines and patches come from agents (or anyone who can
write the repository). Printed raw, an ESC in them moves the cursor, retitles the
terminal or rewrites the clipboard (OSC 52), and a carriage return puts the start of
the line back under what follows (`os.system(...)\\r# fix a typo` shows as the comment).
On a terminal every control character but newline and tab is shown escaped (`\\x1b`,
`\\r`), and so are the bidirectional overrides (U+202E shows text reversed); to a pipe
or a file the bytes go through as they are, so `sandbox diff | git apply` and `--json`
readers get exactly what was there. loomtui's own progress lines, which rewrite
themselves with a carriage return, go to the stream underneath (`unguarded`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TextIO

from loomtui.errors import invisible_class

_CONTROL = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{invisible_class()}]")
"""C0 and C1 controls (cursor moves, titles, OSC 52), and what draws nothing or reorders text
(`errors.INVISIBLE_RANGES`: zero-width spaces, bidirectional overrides, tags)."""


def escaped(text: str) -> str:
    """`text` with every control character but newline and tab written as a Python escape."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class GuardedText:
    """A text stream that escapes control characters on their way to a terminal (`escape`), and keeps the error
    a write met: an OSError from the output (a full disk) is then told from one of the command's own."""

    def __init__(self, stream: TextIO, *, escape: bool) -> None:
        self._stream = stream
        self._escape = escape
        self.failed: OSError | None = None

    def write(self, text: str) -> int:
        try:
            self._stream.write(escaped(text) if self._escape else text)
        except OSError as exc:
            self.failed = exc
            raise
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self.failed = exc
            raise

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: the stream's own
        return getattr(self._stream, name)


def unguarded(stream: TextIO) -> TextIO:
    """The stream under a `GuardedText`: for loomtui's own text only (a progress line's carriage return)."""
    return stream._stream if isinstance(stream, GuardedText) else stream


def write_failed(stream: TextIO) -> bool:
    """Whether a write to `stream` (a `GuardedText`) met an OSError."""
    return isinstance(stream, GuardedText) and stream.failed is not None


def guard(stream: TextIO) -> TextIO:
    """A `GuardedText` over `stream`, escaping what goes to a terminal; None (a closed descriptor: `>&-`) as it is,
    which `print` writes nothing to."""
    if stream is None:
        return stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a file
        tty = False
    return GuardedText(stream, escape=tty)  # type: ignore[return-value]
