"""Gitignore-style globs from users (claim targets, policy conditions, config): checked before use.

`pathspec` compiles a glob to a regular expression; a malformed one (`[z-a]`) raises
`re.error`, which is no ValueError, and an unreadable one (an unclosed `[`) silently
becomes a pattern that matches nothing. Both are a user's mistake to report in one line.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pathspec

    from loomtui.yamlcheck import Value

__all__ = ["MAX_GLOBS", "checked_globs", "glob_problem", "glob_spec", "matchable", "name_problem", "too_many_globs"]

MAX_GLOBS = 1_000
"""Patterns one list may hold (loom.yaml, the policy). Each is compiled when its file is read, at
~0.06 ms: 70,000 made every command that reads the file take 4 s."""


def glob_spec(patterns: Iterable[str]) -> pathspec.GitIgnoreSpec:
    """`patterns` compiled for matching, on RE2: Python's `re` backtracks, and a glob with a few
    stars against a long name an agent made (`*a*a*a*a*b`, 200 a's) held a supervisor for minutes."""
    import re2  # here, not at the top, as pathspec (`_matchable_spec`): the app's first frame needs no glob

    patterns = list(patterns)
    try:
        with warnings.catch_warnings():  # `re`'s "possible nested set" for `[[`: the answer is below, one line
            warnings.simplefilter("ignore", FutureWarning)
            return _matchable_spec().from_lines(patterns, backend="re2")
    except re2.error:  # not a re.error: RE2 refuses what Python's `re` read as something else
        posix = any("[[:" in pattern for pattern in patterns)
        raise ValueError("RE2 cannot match it" + (" (a POSIX class such as [[:alpha:]]: write [a-zA-Z])"
                                                  if posix else "")) from None


@functools.cache
def _matchable_spec() -> type[pathspec.GitIgnoreSpec]:
    """GitIgnoreSpec matching any name `matchable`: RE2 raised on a name that is not UTF-8 (a file in the
    repository named in Latin-1), and a review that matched the commit's files ended in an error for good."""
    import pathspec  # here, not at the top: its import is 30 ms

    class MatchableSpec(pathspec.GitIgnoreSpec):
        def match_file(self, file: str | os.PathLike[str], separators: Collection[str] | None = None) -> bool:
            return super().match_file(matchable(os.fspath(file)), separators)

        def check_file(self, file: str | os.PathLike[str], separators: Collection[str] | None = None) -> Any:
            return super().check_file(matchable(os.fspath(file)), separators)

    return MatchableSpec


def glob_problem(pattern: str) -> str | None:
    """What is wrong with one gitignore-style glob, or None when it is usable."""
    if pattern.startswith("#"):
        return "it is a comment in gitignore syntax (write \\# for a literal #)"
    if "\0" in pattern or "\n" in pattern or "\r" in pattern:  # no path name holds one: it could never match
        return "it holds a NUL or a line break, which no path name does"
    bare = pattern.removeprefix("!")
    if bare.startswith(("./", "../")) or "/./" in bare or "/../" in bare:  # `./secrets/**` left secrets unblocked
        return (f"a path here never holds . or .. (write {pattern[:len(pattern) - len(bare)]}"
                f"{bare.removeprefix('./')!s} from the repository's top)" if bare.startswith("./")
                else "a path here never holds . or .. (write it from the repository's top)")
    try:
        compiled = glob_spec([pattern])
    except re.error as exc:
        return f"invalid character class or escape ({exc.msg})"
    except ValueError as exc:
        return str(exc)
    if not compiled.patterns or compiled.patterns[0].include is None:
        # pathspec turns what it cannot read (an unclosed `[`, a lone `/`) into a
        # pattern that matches nothing; from a user that is always a mistake.
        return "it can never match a path (an unclosed '['?)"
    return None


def name_problem(path: str) -> str | None:
    """Why loomtui cannot name a repository path (match it, index it, claim it, store it), or None.

    Git and the OS allow any bytes but NUL and `/` in a name; a name that is not UTF-8 (read as
    surrogates) cannot be matched or stored, one with a line break would be two lines wherever
    paths are listed one per line, and one with `::` is not told from a region in it. Such a file is
    left out, and said, rather than failing everything.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not UTF-8"
    if "\n" in path or "\r" in path:
        return "its name holds a line break"
    if "::" in path:  # a region's id is `path::qualname`: `we::ird.py::f` read as the file `we`
        return "its name holds `::`, which region names use"
    return None


def matchable(path: str) -> str:
    """`path` as a glob can match it: a name that is not UTF-8 with its odd bytes as U+FFFD (RE2 takes
    UTF-8 only), so a listing that holds one is still matched, and the name then said, not a crash."""
    if path.isascii():
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def too_many_globs(count: int) -> str | None:
    """What is wrong with a list of `count` globs, or None when it is within MAX_GLOBS."""
    if count <= MAX_GLOBS:
        return None
    return f"at most {MAX_GLOBS:,} patterns (got {count:,}); a directory pattern (`build/`) covers everything under it"


def checked_globs(value: Value, items: Sequence[Value]) -> list[str]:
    """The patterns of a YAML list of globs (`items`, of `value`), each compiled once here so that
    a bad one is reported at its own line."""
    if too_many := too_many_globs(len(items)):
        raise value.error(too_many)
    patterns = []
    for item in items:
        pattern = item.as_str(non_empty=True)
        if problem := glob_problem(pattern):
            raise item.error(f"invalid glob {pattern!r}: {problem}")
        patterns.append(pattern)
    return patterns
