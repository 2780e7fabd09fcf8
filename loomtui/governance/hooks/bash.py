"""Which files a shell command writes, best effort: the Bash tool's write targets.

Stdlib only: it runs in the hook process, on every Bash call an agent makes.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from loomtui.governance.hooks.edits import MAX_TARGETS, absolute_path

_REDIRECTS: Final = frozenset({">", ">>", ">|", "&>", "&>>", ">&"})
_SEPARATORS: Final = frozenset({";", ";;", "&", "&&", "|", "||", "|&", "(", ")", "\n"})
_WRAPPERS: Final = frozenset({"sudo", "env", "command", "nice", "nohup", "time", "exec", "builtin"})
_HEREDOC: Final = re.compile(r"(?<!<)<<(-?)\s*(['\"]?)([A-Za-z0-9_.-]+)\2")
_SUBSTITUTION: Final = re.compile(r"\$\(([^()]*)\)|`([^`]*)`")
_ANSI_C: Final = re.compile(r"\$'((?:[^'\\]|\\.)*)'")
_BRACES: Final = re.compile(r"\{([^{}]*,[^{}]*)\}")


def bash_write_targets(command: str, cwd: Path) -> list[str]:
    """Absolute paths a shell command writes: redirections, tee, sed/perl -i, cp/mv/ln/install,
    touch, truncate, rm, dd of=. Best effort: a file named through a variable is not seen
    (the git pre-commit hook and the post-gate policy still see the change)."""
    try:
        tokens = _shell_tokens(_ansi_c_quoted(_without_heredoc_bodies(command.replace("\\\n", ""))))
    except ValueError:
        # Unbalanced quotes: a scan of the raw text finds names inside the open quote
        # (`echo "a > x` writes no x) and would claim them. The shell refuses such a
        # command, so claim nothing and leave it to Claude Code's own Bash rules; a write
        # that does happen is still seen by the git pre-commit hook.
        return []
    found: list[str] = []
    for words in _simple_commands(tokens):
        if words[0] == "cd" and len(words) == 2 and "$" not in words[1]:
            cwd = Path(absolute_path(words[1], cwd))  # `cd sub && echo x > f` writes sub/f
            continue
        for name in _command_writes(words, cwd):
            if len(found) >= MAX_TARGETS:
                return found
            for path in _expand(name, cwd):
                if path not in found:
                    found.append(path)
    return found


def _without_heredoc_bodies(command: str) -> str:
    """The command without its here-documents' text, but for the command substitutions of an unquoted
    one (`<<EOF` expands `$(...)` and backquotes in its body: they run), each kept as a line of its own."""
    kept: list[str] = []
    pending: list[tuple[str, bool, bool]] = []
    for line in command.split("\n"):
        if pending:
            delimiter, strip_tabs, expands = pending[0]
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                pending.pop(0)
            elif expands:
                kept.extend(m.group(1) or m.group(2) for m in _SUBSTITUTION.finditer(line))
            continue
        kept.append(line)
        pending.extend((m.group(3), m.group(1) == "-", not m.group(2)) for m in _HEREDOC.finditer(line))
    return "\n".join(kept)


def _ansi_c_quoted(text: str) -> str:
    """`$'...'` (bash's ANSI-C quoting: `\\n`, `\\x41`, ...) as the plain single-quoted word it stands for."""
    def plain(match: re.Match[str]) -> str:
        try:
            word = match.group(1).encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            return match.group(0)
        return shlex.quote(word)

    return _ANSI_C.sub(plain, text)


def _shell_tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>\n")
    lexer.whitespace_split = True
    lexer.whitespace = " \t\r"
    lexer.commenters = ""  # `#` starts a comment only at a word's start; missing one is harmless
    return list(lexer)


def _simple_commands(tokens: Sequence[str]) -> Iterable[list[str]]:
    """Each simple command's words, with redirection targets as `>` `file` pairs kept in place."""
    words: list[str] = []
    for token in tokens:
        if token in _SEPARATORS:
            if words:
                yield words
            words = []
        else:
            words.append(token)
    if words:
        yield words


def _command_writes(words: list[str], cwd: Path) -> list[str]:
    targets: list[str] = []
    argv: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        following = words[index + 1] if index + 1 < len(words) else None
        if word in _REDIRECTS or word.startswith("<"):
            if argv and argv[-1].isdigit():
                argv.pop()  # `2>file`: the descriptor number is not an argument
            if word in _REDIRECTS and following is not None and not (word == ">&" and following.isdigit()):
                targets.append(following)
            index += 2
            continue
        argv.append(word)
        index += 1
    while argv and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]) or argv[0] in _WRAPPERS):
        argv.pop(0)
        while argv and argv[0].startswith("-") and len(argv) > 1:
            argv.pop(0)  # the wrapper's own options (`sudo -u x`, `env -i`)
    if argv:
        targets.extend(_program_writes(os.path.basename(argv[0]), argv[1:], cwd))
    return targets


def _operands(args: Sequence[str], takes_value: frozenset[str] = frozenset()) -> list[str]:
    operands: list[str] = []
    skip = False
    only_operands = False
    for arg in args:
        if skip:
            skip = False
        elif only_operands or not arg.startswith("-") or arg == "-":
            operands.append(arg)
        elif arg == "--":
            only_operands = True
        elif arg in takes_value:
            skip = True
    return operands


# Programs whose operands are the files they write, with their options that take a value.
_WRITES_OPERANDS: Final = {
    "tee": frozenset(), "rm": frozenset(), "unlink": frozenset(),
    "touch": frozenset({"-r", "-d", "-t", "--reference", "--date"}),
    "truncate": frozenset({"-s", "--size", "-r", "--reference"}),
    "shred": frozenset({"-n", "-s", "--iterations", "--size"}),
}


def _program_writes(program: str, args: list[str], cwd: Path) -> list[str]:
    if program in _WRITES_OPERANDS:
        return _operands(args, _WRITES_OPERANDS[program])
    if program in ("sed", "perl"):
        return _in_place_files(args)
    if program in ("cp", "mv", "ln", "install", "rsync"):
        return _copy_targets(program, args, cwd)
    if program == "dd":
        return [a[3:] for a in args if a.startswith("of=")]
    return []


def _in_place_files(args: Sequence[str]) -> list[str]:
    """Files `sed -i` / `perl -i` rewrites: the operands after the script."""
    in_place = False
    script_given = False
    operands: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.startswith("--in-place"):
            in_place = True
        elif arg in ("-e", "-f", "--expression", "--file"):
            script_given, skip = True, True
        elif arg.startswith(("--expression=", "--file=")):
            script_given = True
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            for position, flag in enumerate(arg[1:]):
                if flag == "i":
                    in_place = True
                    break  # the rest is the backup suffix
                if flag in "ef":
                    script_given = True
                    skip = position == len(arg) - 2
                    break
        elif not arg.startswith("-"):
            operands.append(arg)
    if not in_place:
        return []
    return operands if script_given else operands[1:]


def _copy_targets(program: str, args: Sequence[str], cwd: Path) -> list[str]:
    target_dir = None
    for position, arg in enumerate(args):
        if arg == "-t" and position + 1 < len(args):
            target_dir = args[position + 1]
        elif arg.startswith("--target-directory="):
            target_dir = arg.split("=", 1)[1]
    operands = _operands(args, frozenset({"-t", "-S", "--suffix", "-m", "--mode", "-o", "-g"}))
    if target_dir is None:
        if len(operands) < 2:
            return []
        *sources, destination = operands
        if destination.endswith("/") or len(sources) > 1 or (cwd / destination).is_dir():
            target_dir = destination
        else:
            return [*(sources if program == "mv" else []), destination]
    else:
        sources = operands
    written = [os.path.join(target_dir, os.path.basename(s.rstrip("/"))) for s in sources]
    return [*(sources if program == "mv" else []), *written]


def _expand(name: str, cwd: Path) -> list[str]:
    if not name or "$" in name or "`" in name:
        return []  # a variable's value is unknown here
    found = dict.fromkeys(path for word in _brace_words(name) for path in _expand_path(word, cwd))
    return list(found)[:MAX_TARGETS]


def _brace_words(name: str) -> list[str]:
    """`tax{,_old}.py` as bash makes its words (before anything else), at most MAX_TARGETS of them at
    every step: each group expanded over the words so far, never every word of every group first (six
    groups of fifty were 50**6 words, hours of one broker's only worker)."""
    words = [name]
    while any(_BRACES.search(word) for word in words):
        grown: list[str] = []
        for word in words:
            braces = _BRACES.search(word)
            if braces is None:
                grown.append(word)
            else:
                grown += [word[:braces.start()] + part + word[braces.end():] for part in braces.group(1).split(",")]
            if len(grown) >= MAX_TARGETS:
                break
        words = list(dict.fromkeys(grown))[:MAX_TARGETS]
    return words


def _expand_path(word: str, cwd: Path) -> list[str]:
    path = absolute_path(word, cwd)
    if path.startswith("/dev/") or path == "/dev":
        return []
    if glob.has_magic(path):  # the first matches found, not every match of `/*/*/*/*` sorted first
        return sorted(itertools.islice(glob.iglob(path), MAX_TARGETS)) or [path]
    return [path]

