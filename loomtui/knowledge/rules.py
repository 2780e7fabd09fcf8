"""Machine-checkable conventions: `loom-rule` blocks in the conventions, checked against the code.

A convention that code can visibly break is written next to its prose, in a fenced
block of YAML in any Markdown source::

    ```loom-rule
    id: no-float-for-money
    message: Money is decimal.Decimal, never float (ADR 0001)
    paths: ["payments/**", "api/**"]        # gitignore-style; default every .py file
    exclude: ["tests/**"]
    forbid:
      calls: ["float", "*.quantize"]        # dotted callee names; * matches any receiver
      imports: ["payments.ledger"]          # a module and everything under it
    ```

`check_rules` parses the Python files the rules cover (ast only: nothing is run or
imported) and returns one Finding per forbidden call or import. Gate 2's
conventions item reads these findings.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pathspec

from loomtui.errors import ConfigError
from loomtui.globs import glob_problem, glob_spec
from loomtui.yamlcheck import Value, compose

__all__ = ["MAX_CHECKED_BYTES", "Finding", "Rule", "check_rules", "parse_rules"]

MAX_CHECKED_BYTES = 2 * 1024 * 1024
"""Python files larger than this (2 MiB) are not parsed by the convention check."""

_RULE_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*loom-rule\s*$")
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*")


@dataclass(frozen=True)
class Rule:
    """One machine-checkable convention and where it is written."""

    id: str
    message: str
    paths: tuple[str, ...]
    exclude: tuple[str, ...]
    calls: tuple[str, ...]
    imports: tuple[str, ...]
    origin: str  # `layer:path:line` of the block

    def covers(self, path: str) -> bool:
        """Whether the rule applies to a repository path."""
        return _spec(self.paths).match_file(path) and not _spec(self.exclude).match_file(path)

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "message": self.message, "paths": list(self.paths),
                "exclude": list(self.exclude), "calls": list(self.calls), "imports": list(self.imports),
                "origin": self.origin}


@dataclass(frozen=True)
class Finding:
    """A place where the code breaks a rule."""

    rule: str
    path: str
    line: int
    column: int
    what: str
    message: str
    origin: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column + 1}: {self.rule}: {self.what} ({self.message})"

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "path": self.path, "line": self.line, "column": self.column + 1,
                "what": self.what, "message": self.message, "origin": self.origin}


def parse_rules(layer: str, path: str, text: str) -> tuple[list[Rule], list[str]]:
    """The `loom-rule` blocks of one Markdown text, and a `path:line: problem` per bad block."""
    rules: list[Rule] = []
    problems: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = _RULE_FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        fence, start = opened.group(1), i + 1
        end = start
        while end < len(lines) and not (lines[end].strip().startswith(fence[0] * len(fence))
                                        and not lines[end].strip().strip(fence[0])):
            end += 1
        block = "\n".join(lines[start:end])
        # Blank lines keep the block's own line numbers equal to the file's.
        padded = "\n" * start + block + "\n"
        try:
            rules.append(_rule(compose(padded, path), f"{layer}:{path}:{start}"))
        except ConfigError as exc:
            problems.append(str(exc))
        i = end + 1
    return rules, problems


def _rule(root: Value | None, origin: str) -> Rule:
    if root is None:
        raise ConfigError(origin.split(":", 1)[1].rsplit(":", 1)[0], int(origin.rsplit(":", 1)[1]),
                          "empty loom-rule block")
    fields = root.as_mapping(known=("id", "message", "paths", "exclude", "forbid"), required=("id", "forbid"))
    rule_id = fields["id"].as_str(non_empty=True)
    if not _RULE_ID.fullmatch(rule_id):
        raise fields["id"].error("use lowercase letters, digits, '-', '_' and '.'")
    forbid = fields["forbid"].as_mapping(known=("calls", "imports"))
    calls = forbid["calls"].as_str_list(items_non_empty=True) if forbid.get("calls") else ()
    imports = forbid["imports"].as_str_list(items_non_empty=True) if forbid.get("imports") else ()
    if not calls and not imports:
        raise fields["forbid"].error("forbid at least one call or import")
    message = fields["message"].as_str() if fields.get("message") else rule_id
    return Rule(rule_id, message, _globs(fields.get("paths"), ("**/*.py",)), _globs(fields.get("exclude"), ()),
                calls, imports, origin)


def _globs(value: Value | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    for item in value.as_list():
        pattern = item.as_str(non_empty=True)
        if problem := glob_problem(pattern):
            raise item.error(f"invalid glob {pattern!r}: {problem}")
    return value.as_str_list(items_non_empty=True)


@functools.lru_cache(maxsize=512)
def _spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    return glob_spec(patterns)


# -- checking ---------------------------------------------------------------------


def _dotted(node: ast.expr) -> str:
    """`a.b.c` for a chain of attributes on a name, `<expr>.c` on anything else.

    A loop, not recursion: a committed chain may be thousands of attributes long.
    """
    attributes: list[str] = []
    while isinstance(node, ast.Attribute):
        attributes.append(node.attr)
        node = node.value
    head = node.id if isinstance(node, ast.Name) else "<expr>"
    return ".".join([head, *reversed(attributes)])


def _call_matches(name: str, pattern: str) -> bool:
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


def _import_matches(module: str, pattern: str) -> bool:
    return module == pattern or module.startswith(pattern + ".") or fnmatch.fnmatchcase(module, pattern)


def _imported_modules(node: ast.Import | ast.ImportFrom, path: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = path.removesuffix(".py").split("/")[:-1]
        if node.level > 1:
            package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]


def check_file(rules: Sequence[Rule], path: str, source: str) -> list[Finding]:
    """The findings of `rules` (already known to cover `path`) in one file's source."""
    try:
        tree = ast.parse(source, path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []  # code the parser cannot hold: no rule can be checked on it (the index reports it)
    findings: list[Finding] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            for rule in rules:
                for pattern in rule.calls:
                    if _call_matches(name, pattern):
                        findings.append(Finding(rule.id, path, node.lineno, node.col_offset,
                                                f"calls {name}()", rule.message, rule.origin))
                        break
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = _imported_modules(node, path)
            for rule in rules:
                hit = next((m for m in modules for p in rule.imports if _import_matches(m, p)), None)
                if hit:
                    findings.append(Finding(rule.id, path, node.lineno, node.col_offset,
                                            f"imports {hit}", rule.message, rule.origin))
    return findings


def check_rules(root: Path, rules: Sequence[Rule], files: Iterable[str] | None = None) -> list[Finding]:
    """Every place the Python files under `root` break one of `rules`, by path and line.

    `files` are repository-relative paths (default: git's listing of `**/*.py`). A
    file is read only if it is a regular file inside `root` (a symlink out is skipped)
    and at most MAX_CHECKED_BYTES; it is parsed, never imported or run.
    """
    if not rules:
        return []
    if files is None:
        from loomtui.coordination.index import list_files

        files = list_files(root, include=("**/*.py",))
    real_root = os.path.realpath(root)
    findings: list[Finding] = []
    for path in sorted(files):
        covering = [rule for rule in rules if rule.covers(path)]
        if not covering:
            continue
        full = os.path.join(root, path)
        real = os.path.realpath(full)
        if not real.startswith(real_root + os.sep) or not os.path.isfile(real):
            continue
        try:
            if os.path.getsize(real) > MAX_CHECKED_BYTES:
                continue
            with open(real, "rb") as handle:
                source = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        findings.extend(check_file(covering, path, source))
    findings.sort(key=lambda f: (f.path, f.line, f.column, f.rule))
    return findings
