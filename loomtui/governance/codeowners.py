"""CODEOWNERS files, read with GitHub's semantics, as ownership for the policy engine.

GitHub documents CODEOWNERS patterns as gitignore patterns with a few changes,
and this module follows that: each pattern is compiled by `pathspec` (the same
gitignore engine the policy's `paths` conditions use) and these are the
differences, applied on top:

- the last matching pattern wins (its owners replace, never add to, earlier ones);
- a pattern with no owners removes ownership from what it matches;
- a pattern whose last segment is a lone `*` (`docs/*`, `/*`) owns only the files
  directly in that directory, not nested ones (gitignore would match those too,
  through the matched subdirectory);
- `!` negation and `[ ]` character ranges do not exist in CODEOWNERS: they are
  reported as errors instead of being silently misread;
- `#` starts a comment at the start of a line or as an owner-position token
  (`*.js @js-owner # inline comment`).

Owners are `@user`, `@org/team` or an email address. Parsing is syntax only; the
policy maps owners to its groups (see `policy.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

import pathspec

from loomtui.errors import ConfigError
from loomtui.globs import glob_spec
from loomtui.yamlcheck import read_text

__all__ = ["CodeOwners", "OwnershipRule", "load_codeowners", "parse_codeowners"]

# Tokens are separated by whitespace; a backslash escapes the next character,
# which is how a CODEOWNERS path spells a space (`docs/my\ file.md`).
_TOKEN: Final = re.compile(r"(?:\\.|\S)+")
_HANDLE: Final = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9_.-]*)(?:/[A-Za-z0-9_.-]+)?")
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class OwnershipRule:
    """One CODEOWNERS line: a pattern and its owners (empty: ownership removed)."""

    pattern: str
    owners: tuple[str, ...]
    line: int
    spec: pathspec.GitIgnoreSpec

    def matches(self, path: str) -> bool:
        """Whether this line's pattern matches a repository-relative file path."""
        if not self.spec.match_file(path):
            return False
        if _direct_children_only(self.pattern):
            # gitignore matched through a subdirectory (`docs/*` -> `docs/a/b.md`);
            # GitHub owns only direct children, i.e. the pattern must match the
            # whole path itself, not one of its parent directories.
            regex = self.spec.patterns[0].regex
            return regex is not None and regex.fullmatch(path) is not None
        return True


@dataclass(frozen=True)
class CodeOwners:
    """A parsed CODEOWNERS file; `path` is how errors and explanations show it."""

    path: str
    rules: tuple[OwnershipRule, ...]

    def rule_for(self, path: str) -> OwnershipRule | None:
        """The line that decides `path`'s owners: the last one matching, or None."""
        for rule in reversed(self.rules):
            if rule.matches(path):
                return rule
        return None

    def owners_of(self, path: str) -> tuple[str, ...]:
        """The owners of `path`; () when no line matches or the deciding line has no owners."""
        rule = self.rule_for(path)
        return rule.owners if rule else ()

    def all_owners(self) -> frozenset[str]:
        """Every owner named anywhere in the file."""
        return frozenset(owner for rule in self.rules for owner in rule.owners)


def parse_codeowners(text: str, path: str) -> CodeOwners:
    """Parse CODEOWNERS `text`; a line GitHub would reject is a ConfigError `path:line`."""
    rules: list[OwnershipRule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = _TOKEN.findall(raw)
        if not tokens or tokens[0].startswith("#"):
            continue
        pattern, rest = tokens[0], tokens[1:]
        owners: list[str] = []
        for token in rest:
            if token.startswith("#"):
                break  # an inline comment runs to the end of the line
            if not (_HANDLE.fullmatch(token) or _EMAIL.fullmatch(token)):
                raise ConfigError(
                    path, number, f"invalid owner {token!r} (use @user, @org/team or an email address)"
                )
            owners.append(token)
        rules.append(OwnershipRule(pattern, tuple(owners), number, _compile(pattern, path, number)))
    return CodeOwners(path, tuple(rules))


def load_codeowners(root: Path, relative: str) -> CodeOwners:
    """Read and parse `root/relative` (errors show `relative`)."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise ConfigError(relative, None, "CODEOWNERS must be a path inside the repository")
    text = read_text(root / relative, relative)
    return parse_codeowners(text, relative)


def _compile(pattern: str, path: str, line: int) -> pathspec.GitIgnoreSpec:
    if pattern.startswith("!"):
        raise ConfigError(path, line, f"{pattern}: negation (!) is not supported in CODEOWNERS")
    if re.search(r"(?<!\\)\[", pattern):
        raise ConfigError(path, line, f"{pattern}: character ranges ([ ]) are not supported in CODEOWNERS")
    if "***" in pattern:
        raise ConfigError(path, line, f"{pattern}: a pattern cannot contain three consecutive asterisks")
    try:
        spec = glob_spec([pattern])
    except ValueError as exc:
        raise ConfigError(path, line, f"{pattern}: invalid pattern ({exc})") from None
    if not spec.patterns or spec.patterns[0].include is None:
        raise ConfigError(path, line, f"{pattern}: invalid pattern (it can never match a file)")
    return spec


def _direct_children_only(pattern: str) -> bool:
    # `docs/*` and `/*`, but not `*` alone (every file); an escaped `docs/\*` ends in `\*`.
    return pattern.endswith("/*")
