"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Final

_SHOWN_LIMIT = 200

INVISIBLE_RANGES: Final = ((0xAD, 0xAD), (0x34F, 0x34F), (0x61C, 0x61C), (0x115F, 0x1160), (0x17B4, 0x17B5),
                           (0x180B, 0x180F), (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F),
                           (0x2800, 0x2800), (0x3164, 0x3164), (0xFE00, 0xFE0E), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0),
                           (0xFFF9, 0xFFFB), (0xE0000, 0xE007F), (0xE0100, 0xE01EF))
"""Characters that draw nothing, or draw other text in another order, beside the controls: zero-width
spaces and joiners (`'admin\u200b'` reads as `'admin'`), fillers that show as blanks (Hangul's, Braille's
blank), bidirectional overrides and isolates (`gnp.exe` as `exe.png`: "Trojan Source"), line and paragraph
separators, tags, variation selectors (a run of them after one letter carries hidden bytes). U+FE0F stays:
it asks for an emoji's colour form (`❤️`), and a run of one selector carries nothing. What an agent wrote
shows them escaped."""


def invisible_class() -> str:
    """INVISIBLE_RANGES as the inside of a regular expression's character class."""
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in INVISIBLE_RANGES)


_MARKS: Final = frozenset({"Mn", "Me", "Mc"})
"""Combining marks: drawn on the character before them, nothing alone."""
_INVISIBLE_CHARS: Final = frozenset(chr(code) for first, last in INVISIBLE_RANGES for code in range(first, last + 1))


def not_utf8(characters: str) -> str:
    """What a UTF-8 encoder refused in `characters`, said plainly: the bytes a shell's `$'\\x9b'` gave (held as
    surrogates, as Python decodes argv), or a lone surrogate JSON's `\\ud800` gave."""
    try:
        return "byte " + " ".join(f"0x{b:02x}" for b in characters.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return ", ".join(f"U+{ord(c):04X}" for c in characters)


def escape_controls(text: str) -> str:
    """`text` with every unprintable or invisible character escaped (`\\n`, `\\x1b`, `\\u200b`, ...): it
    stays one line, and shows all it holds."""
    if text.isprintable() and _INVISIBLE_CHARS.isdisjoint(text):
        return text
    # A set lookup per character, not a regex match: long text (an agent's command) is escaped on the broker's path.
    return "".join(ch if ch.isprintable() and ch not in _INVISIBLE_CHARS
                   else ch.encode("unicode_escape").decode("ascii") for ch in text)


_MARKDOWN_SAID: Final = str.maketrans({"|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;", "`": "\\`", "*": "\\*",
                                       "_": "\\_", "[": "\\[", "]": "\\]", "\\": "\\\\", "\n": " ", "\r": " "})


def markdown_said(text: str) -> str:
    """Text from a change or a person (a path, a rule's why, a commit's subject, a reason) as markdown shows it,
    never read as markdown: a path `a|b<!--/conftest.py` added a column and hid the rest of a comment."""
    return escape_controls(text).translate(_MARKDOWN_SAID)


def blank(text: str) -> bool:
    """Whether `text` shows nothing: only spaces, controls, invisible characters and marks with no letter to
    sit on (a reason of zero-width spaces, or of one combining accent, read as given, and said nothing)."""
    return all(ch.isspace() or not ch.isprintable() or ch in _INVISIBLE_CHARS
               or unicodedata.category(ch) in _MARKS for ch in text)


def listed(items: Sequence[str], limit: int = 5) -> str:
    """The first `limit` items joined by commas, then `and N more` for the rest."""
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def plural(count: int, noun: str) -> str:
    """`1 sandbox`, `2 sandboxes`, `3 entries`, `1,167 changes`: only the last word is inflected (a closing
    backtick kept); a count in the thousands is grouped ("1167 changes decided" read as a year)."""
    if count == 1:
        return f"{count} {noun}"
    head, _, last = noun.rpartition(" ")
    tail = last.rstrip("`")
    if tail.endswith(("s", "x", "ch", "sh")):
        inflected = tail + "es"
    elif tail.endswith("y") and tail[-2:-1] not in ("a", "e", "o", "u"):
        inflected = tail[:-1] + "ies"
    else:
        inflected = tail + "s"
    inflected += last[len(tail):]
    return f"{count:,} {head + ' ' if head else ''}{inflected}"


def both_ends(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, its start and its end kept (` … ` between): what an agent
    asks must not hide its point past a harmless first stretch (`git status`, 3,000 spaces, `; sed -i`)."""
    if len(text) <= limit:
        return text
    if limit < 5:  # no room for both ends and the ` … ` between them
        return text[:limit - 1] + "…" if limit > 0 else ""
    tail = max(1, (limit - 3) * 3 // 8)
    return f"{text[:max(0, limit - 3 - tail)]} … {text[-tail:]}"


def abridged(text: str, limit: int) -> str:
    """`text` on one line (whitespace runs made one space) in at most `limit` characters: a longer one
    ends at the last whole word that fits, then `…` (mid-word only when a word is half the room)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def shown(text: str) -> str:
    """Untrusted text (a target, a path, a value) as it appears in a one-line message.

    Printable text is shown as is; text with a newline or another control character
    is shown as a Python literal (quoted, escaped), so it cannot break the line or
    drive the terminal. Very long text is cut.
    """
    if len(text) > _SHOWN_LIMIT:
        return repr(text[:_SHOWN_LIMIT]) + f"... ({len(text)} characters)"
    return text if text.isprintable() else repr(text)


def quoted(text: str) -> str:
    """Untrusted text in quotes, escaped (`'main'`, `'a\\nb'`), cut when very long as `shown` cuts it."""
    return repr(text) if len(text) <= _SHOWN_LIMIT else shown(text)


class LoomError(Exception):
    """A user-facing error: its message is one clear line; `exit_code` is what the CLI returns.

    Control characters in the message are escaped, so whatever text it quotes, it
    is one line on a terminal (callers should still quote untrusted text with `shown`).
    """

    exit_code = 2
    recorded_sandbox: str | None = None
    """The sandbox a refusal still left recorded (a task refused at its claims is kept, `rejected`), if any."""

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(escape_controls(message))
        if exit_code is not None:
            self.exit_code = exit_code


class NotARepository(LoomError):
    """The working directory is not inside a git repository."""


class ConfigError(LoomError):
    """A config, policy or theme file is malformed; the message starts with file:line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{shown(path)}:{line}" if line else shown(path)
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.detail = message


class StoreError(LoomError):
    """The state store cannot be opened or written (corrupt, locked, unwritable)."""


class StoreUnreachable(StoreError):
    """The store's server cannot be reached now (down, restarting, the network): trying again later may
    work, and nothing of the failed write was saved."""


class StoreBusy(StoreUnreachable):
    """The server answered, but another writer held the store's lock longer than this one waits: as
    transient as an unreachable server (trying again may work, nothing was saved), said for what it is."""


class AuditError(LoomError):
    """The audit log cannot be written or read."""
