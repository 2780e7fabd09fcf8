"""Which folder a shell command's later words run in, as its `cd`s move it: the Bash hook checks a relative write
where it lands. Where loomtui cannot tell (`cd "$dir"`, `popd`, a `cd` that may not run), the folder is unknown,
and a relative write there is refused rather than checked at the wrong place (`cd -- payments && sed -i ...`
was checked at the top of the tree)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from loomtui.governance.hooks.edits import absolute_path

__all__ = ["Folders"]

_ASSIGNMENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")
_CD: Final = frozenset({"cd", "pushd", "popd"})
_PLAIN_PREFIXES: Final = frozenset({"builtin", "command", "time", "!", "{"})
"""Words before a `cd` that leave it a `cd` of the shell, run for sure."""
_CONDITIONAL_PREFIXES: Final = frozenset({"then", "else", "elif", "do", "if", "while", "until"})
"""Words before a `cd` that make whether it runs a matter of a condition."""
_PIPES: Final = frozenset({"|", "|&"})
_CONDITIONS: Final = frozenset({"&&", "||"})


_REDIRECTIONS: Final = frozenset({">", ">>", ">|", "&>", "&>>", ">&", "<>", "<", "<<", "<<<"})


def _without_redirections(words: Sequence[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in _REDIRECTIONS:
            skip = True
            if kept and kept[-1].isdigit():
                kept.pop()  # `2>/dev/null`: the descriptor's number
        else:
            kept.append(word)
    return kept


class Folders:
    """The folder a command's words run in, word by word: the known one (a Path), or None (unknown)."""

    def __init__(self, cwd: Path) -> None:
        self.where: Path | None = cwd
        self._previous: Path | None = None
        self._outer: list[tuple[Path | None, Path | None, bool]] = []  # where each open subshell `(` began
        self._cdpath = bool(os.environ.get("CDPATH"))  # a relative `cd` may land anywhere it names
        self._chained = False  # where is so only while the `&&` chain of a `cd` that may not have run goes on
        self._stack: list[Path | None] = []  # pushd's: popd goes back to the last

    def enter_subshell(self) -> None:
        # Its commands run only where the shell got to it: a `cd` chain outside says nothing of them.
        self._outer.append((self.where, self._previous, self._chained))
        self._chained = False

    def leave_subshell(self) -> None:
        # As it was before, chain and all: `x=$(cd new && ...); echo y > f` wrote f where the shell was.
        if self._outer:
            self.where, self._previous, self._chained = self._outer.pop()

    def see(self, words: Sequence[str], started_by: str, ended_by: str) -> bool:
        """Follow one simple command, begun after `started_by` and ended by `ended_by` (separators, "" for none);
        True when it was a `cd`, `pushd` or `popd` (or sets CDPATH), which writes nothing itself."""
        redirected = len(words)
        words = _without_redirections(words)  # `pushd x >/dev/null` is `pushd x`
        redirected -= len(words)
        if self._chained and started_by != "&&":
            # `make && cd ..; echo x > f`: past the chain, the cd ran or did not.
            self.where, self._chained = None, False
        leading = next((index for index, word in enumerate(words) if not _ASSIGNMENT.fullmatch(word)), len(words))
        assignments, rest = list(words[:leading]), list(words[leading:])
        if not rest or rest[0] in ("export", "declare", "typeset", "local"):
            if any(word.startswith("CDPATH=") for word in (*assignments, *rest)):
                self._cdpath = True  # `CDPATH=payments; cd sub` lands in payments/sub
            return not rest and not redirected  # `>u.py` alone writes u.py
        conditional = started_by == "||"
        chained = started_by == "&&"
        while rest and (rest[0] in _PLAIN_PREFIXES or rest[0] in _CONDITIONAL_PREFIXES):
            conditional |= rest.pop(0) in _CONDITIONAL_PREFIXES
        if not rest or rest[0] not in _CD:
            return False
        if started_by in _PIPES or ended_by in _PIPES or ended_by == "&":
            return True  # in a pipeline or a job: a shell of its own, the folder here unchanged
        moved = self._moved_to(rest, cdpath=self._cdpath or any(a.startswith("CDPATH=") for a in assignments))
        if rest[0] == "pushd" and moved is not None:
            self._stack.append(self.where)
        # A folder that is not there now fails the cd, the shell going on where it was, unless a `&&` after it
        # says the rest runs only once it did (`mkdir -p b && cd b && ...`): `cd nowhere; sed -i ... held.py`.
        missing = moved is not None and not moved.is_dir()
        conditional |= missing and ended_by != "&&"
        chained |= missing and ended_by == "&&"
        if conditional and moved != self.where:
            moved = None  # it may or may not have run (`false || cd docs; echo x > Makefile`)
        elif chained and moved != self.where:
            self._chained = True  # `false && cd docs && x`: x runs in docs; after `;`, either
        self._previous, self.where = self.where, moved
        return True

    def _moved_to(self, words: list[str], *, cdpath: bool) -> Path | None:
        command, args = words[0], words[1:]
        if command == "popd":
            return self._stack.pop() if self._stack and not args else None
        while args and args[0].startswith("-") and args[0] not in ("-", "--") and set(args[0][1:]) <= set("LPe@"):
            args = args[1:]
        if args[:1] == ["--"]:
            args = args[1:]
        if len(args) != 1:
            return None  # $HOME, pushd's swap, or too many arguments (it fails): not told here
        target = args[0]
        if command == "pushd" and (target[:1] in "+-" and target[1:].isdigit() or target == "-n"):
            return None  # a place in its stack
        if target == "-":
            return self._previous
        if "$" in target or "`" in target or target.startswith("~"):
            return None
        if target.startswith("/"):
            return Path(absolute_path(target, Path("/")))  # wherever the shell was
        if self.where is None or (cdpath and not target.startswith(("./", "../"))):
            return None
        return Path(absolute_path(target, self.where))
