"""Gitignore-style globs from users (claim targets, policy conditions, config): checked before use.

`pathspec` compiles a glob to a regular expression; a malformed one (`[z-a]`) raises
`re.error`, which is no ValueError, and an unreadable one (an unclosed `[`) silently
becomes a pattern that matches nothing. Both are a user's mistake to report in one line.
"""

from __future__ import annotations

import re

__all__ = ["glob_problem"]


def glob_problem(pattern: str) -> str | None:
    """What is wrong with one gitignore-style glob, or None when it is usable."""
    if pattern.startswith("#"):
        return "it is a comment in gitignore syntax (write \\# for a literal #)"
    import pathspec  # here, not at the top: the app's first frame needs no glob (its import is 30 ms)

    try:
        compiled = pathspec.GitIgnoreSpec.from_lines([pattern])
    except re.error as exc:
        return f"invalid character class or escape ({exc.msg})"
    except ValueError as exc:
        return str(exc)
    if not compiled.patterns or compiled.patterns[0].include is None:
        # pathspec turns what it cannot read (an unclosed `[`, a lone `/`) into a
        # pattern that matches nothing; from a user that is always a mistake.
        return "it can never match a path (an unclosed '['?)"
    return None

