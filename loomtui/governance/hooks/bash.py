"""Which files a shell command writes, best effort: the Bash tool's write targets.

Stdlib only: it runs in the hook process, on every Bash call an agent makes.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import glob
import itertools
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from loomtui.errors import quoted
from loomtui.governance.hooks.edits import MAX_TARGETS, CommandNotRead, absolute_path
from loomtui.governance.hooks.shell_folders import Folders
from loomtui.governance.hooks.unpacking import git_apply_writes, patch_writes, read_budget, tar_writes, unzip_writes

MAX_COMMAND_CHARS: Final = 4 << 20
"""The longest command read at all (here-documents' text included): its reading must end well within the hook's
timeout, past which Claude Code runs the call unchecked."""
MAX_WORDS_CHARS: Final = 64 << 10
"""The longest command read word by word (here-documents' text aside): shlex takes time quadratic in a word's
length (a 1.6 MB base64 word took 61 s: the hook timed out and the write it hid went through)."""
_REDIRECTS: Final = frozenset({">", ">>", ">|", "&>", "&>>", ">&", "<>"})
_SEPARATORS: Final = frozenset({";", ";;", "&", "&&", "|", "||", "|&", "(", ")", "\n"})
_PUNCTUATION: Final = re.compile(r"[;&|()<>\n]+")
_OPERATOR: Final = re.compile(r"&>>|<<<|;;|&&|\|\||\|&|>>|>\||&>|>&|<>|<<|[;&|()<>\n]")
"""bash's operators, longest first: a run of punctuation shlex keeps whole (`);`, `;>`) is split into them."""
# Programs that run the command after them, each with its options that take a value, and how many operands of
# its own come before the command (`timeout 5 sed -i ...`): `nice -n 5 sed -i` read `5` as the program.
_WRAPPERS: Final[dict[str, tuple[frozenset[str], int]]] = {
    "sudo": (frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-U", "-r", "-t", "--user", "--group"}), 0),
    "env": (frozenset({"-u", "--unset", "-C", "--chdir"}), 0),  # -S: its value is a command (read as one)
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "-P", "-u", "--class", "--classdata"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "taskset": (frozenset(), 1), "chrt": (frozenset(), 1),
    "command": (frozenset(), 0), "nohup": (frozenset(), 0), "time": (frozenset({"-f", "-o"}), 0),
    "exec": (frozenset({"-a"}), 0), "builtin": (frozenset(), 0), "setsid": (frozenset(), 0),
    "doas": (frozenset({"-u", "-C"}), 0), "chronic": (frozenset(), 0), "unbuffer": (frozenset(), 0),
    "flock": (frozenset({"-w", "--timeout", "-E", "--conflict-exit-code"}), 1),  # its lock file, then the command
}
_CHDIR_OPTIONS: Final = {"env": ("-C", "--chdir"), "sudo": ("-D", "--chdir")}
"""A wrapper's options that run its command in another folder."""
# Words that start a command in a compound one (`if true; then sed -i ...; fi`, `! sed ...`, `{ sed ...; }`).
_KEYWORDS: Final = frozenset({"if", "then", "elif", "else", "while", "until", "do", "!", "{", "coproc"})
_HEREDOC: Final = re.compile(r"(?<!<)<<(-?)\s*(['\"]?)([A-Za-z0-9_.-]+)\2")
_SUBSTITUTION: Final = re.compile(r"\$\(([^()]*)\)|`([^`]*)`")
_ANSI_C: Final = re.compile(r"\$'((?:[^'\\]|\\.)*)'")
_BRACES: Final = re.compile(r"\{([^{}]*,[^{}]*)\}")
_SEQUENCE: Final = re.compile(r"\{(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])\}")


def bash_write_targets(command: str, cwd: Path, *, depth: int = 0, bodies_gone: bool = False) -> list[str]:
    """Absolute paths a shell command writes: redirections, tee, sed/perl -i, cp/mv/ln/install,
    touch, truncate, rm, dd of=, and the same in a literal `bash -c '...'` or `eval '...'`. Best effort:
    a file named through a variable is not seen (the git pre-commit hook and the post-gate policy still
    see the change). `depth`: shells within shells read so far; `bodies_gone`: the here-documents' text was
    taken out already (a command substitution's, read on its own)."""
    if _SET_ASIDE_TEXTS.get() is not None:  # within a command being read: its substitutions' table is shared
        return _read_command(command, cwd, depth, bodies_gone)
    table = _SET_ASIDE_TEXTS.set([])
    try:
        return _read_command(command, cwd, depth, bodies_gone)
    except CommandNotRead as exc:  # said with `$(…)` where a substitution's mark is
        raise CommandNotRead(_SET_ASIDE_SAID.sub("$(…)", _SET_ASIDE.sub("$(…)", str(exc)))) from None
    finally:
        _SET_ASIDE_TEXTS.reset(table)


def _read_command(command: str, cwd: Path, depth: int, bodies_gone: bool) -> list[str]:
    if depth > MAX_SHELL_DEPTH:
        raise CommandNotRead(f"it runs shells within shells more than {MAX_SHELL_DEPTH} deep")
    if len(command) > MAX_COMMAND_CHARS:
        raise CommandNotRead(f"it is {len(command):,} characters long (loomtui reads at most {MAX_COMMAND_CHARS:,})")
    joined = command.replace("\\\n", "")
    plain = _without_comments(_ansi_c_quoted(joined if bodies_gone else _without_heredoc_bodies(joined)))
    plain = plain.replace('$"', '"')
    if len(plain) > MAX_WORDS_CHARS:
        raise CommandNotRead(f"it is {len(plain):,} characters long outside its here-documents (loomtui reads "
                             f"at most {MAX_WORDS_CHARS:,})")
    plain, own = _substitutions_set_aside(plain)
    set_aside = _SET_ASIDE_TEXTS.get() or []
    try:
        tokens = _shell_tokens(plain)
    except ValueError:
        # Unbalanced quotes (a `#` comment's `it's` among them, or a trailing backslash): no files can be
        # told, and none claimed were taken as none written (`echo x >> held.py # it's fine` went through).
        raise CommandNotRead("its quotes do not close") from None
    found: list[str] = []

    def take(paths: Iterable[str]) -> None:
        for path in paths:
            if path not in found:
                if len(found) >= MAX_TARGETS:  # the rest unchecked: a write past the 50th went through
                    raise CommandNotRead(f"it writes more than {MAX_TARGETS} files")
                found.append(path)

    folders = Folders(cwd)
    started_by = ""
    with read_budget() if depth == 0 else contextlib.nullcontext():
        for words, ended_by in _simple_commands(tokens):
            # Its command substitutions first, as bash runs them: in the folder it runs in, each a shell of its own.
            # (A mark of an outer shell's, in a `bash -c "..."` string, was read there; one typed in, nowhere.)
            for index in map(int, _SET_ASIDE.findall(" ".join(words))):
                if index in own:
                    take(_read_command(set_aside[index], folders.where or _NO_FOLDER, depth + 1, True))
            if words == ["("]:
                folders.enter_subshell()
            elif words == [")"]:
                folders.leave_subshell()
            elif not folders.see(words, started_by, ended_by):
                take(_writes_in(words, folders.where, depth))
            started_by = ended_by
    return found


_NO_FOLDER: Final = Path("/nonexistent/a-folder-loomtui-cannot-tell")
"""Where a command is read when the folder it runs in cannot be told: a file it writes there is refused."""


def _writes_in(words: list[str], where: Path | None, depth: int) -> list[str]:
    """The files one simple command writes, run in `where` (None: a folder loomtui cannot tell, where any file
    but one named by an absolute path is refused: a `bash -c` or a `git apply` there read from the old one)."""
    found: list[str] = []
    for name in _command_writes(words, where or _NO_FOLDER, depth):
        for path in _expand(name, where or _NO_FOLDER):
            if path.startswith(f"{_NO_FOLDER}/") or path == str(_NO_FOLDER):
                raise CommandNotRead(f"it writes {quoted(name)} in a folder it changed to that loomtui cannot "
                                     "tell (a variable's, `cd -`, `popd`, a `cd` that may not run)")
            found.append(path)
    return found


def _without_heredoc_bodies(command: str) -> str:
    """The command without its here-documents' text, but for the command substitutions of an unquoted
    one (`<<EOF` expands `$(...)` and backquotes in its body: they run), each kept as a line of its own."""
    kept: list[str] = []
    pending: list[tuple[str, bool, bool]] = []
    taken = 0  # lines taken as a here-document's text
    for line in command.split("\n"):
        if pending:
            taken += 1
            delimiter, strip_tabs, expands = pending[0]
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                pending.pop(0)
            elif expands:
                kept.extend(m.group(1) or m.group(2) for m in _SUBSTITUTION.finditer(line))
            continue
        kept.append(line)
        pending.extend((m.group(3), m.group(1) == "-", not m.group(2)) for m in _HEREDOC.finditer(line))
    if pending and taken:  # `echo '<<EOF'` (quoted: none) or `<<E\OF` (ends at EOF) took the lines after it
        raise CommandNotRead(f"a here-document ({pending[0][0]}) never ends")
    return "\n".join(kept)


def _without_comments(text: str) -> str:
    """`text` without its `#` comments: from a `#` that starts a word outside quotes to the end of its line
    (`echo x >> f # it's fine` is no open quote)."""
    out: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote == '"' and index + 1 < len(text):
                out.append(text[index:index + 2])
                index += 2
                continue
            if char == quote:
                quote = ""
        elif char == "\\" and index + 1 < len(text):
            out.append(text[index:index + 2])
            index += 2
            continue
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1] in " \t\n;&|()<>"):
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _substitutions_set_aside(text: str) -> tuple[str, range]:
    """`text` with each command substitution (`$(cmd)`, `\\`cmd\\``, outside single quotes) replaced by a mark in
    its word, `$\\x01N\\x01`, and the commands, N each: a word keeps its place (`sed -i "s/a/$(cat v)/" f.py`
    read `f.py` as a command of its own), and the command is read on its own, as bash runs it. A file named
    by a mark is named by a command's output; a folder, unknown. The marks' N, in the table the whole command
    shares (`_SET_ASIDE_TEXTS`), are returned."""
    out: list[str] = []
    set_aside = _SET_ASIDE_TEXTS.get()
    if set_aside is None:
        set_aside = []
    first = len(set_aside)
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and quote != "'" and index + 1 < len(text):
            out.append(text[index:index + 2])
            index += 2
            continue
        if quote != "'" and (char == "`" or (text.startswith("$(", index) and not text.startswith("$((", index))):
            start = index + (1 if char == "`" else 2)
            end = _substitution_end(text, start, char)
            out.append(f"$\x01{len(set_aside)}\x01")
            # A backquote's text as bash reads it: \\`, \\$ and \\\\ are unescaped first.
            set_aside.append(text[start:end] if char == "$" else _BACKQUOTE_ESCAPE.sub(r"\1", text[start:end]))
            index = end + 1
            continue
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        out.append(char)
        index += 1
    return "".join(out), range(first, len(set_aside))


_SET_ASIDE: Final = re.compile("\\$\x01(\\d+)\x01")
"""The mark a command substitution leaves in its word (`_substitutions_set_aside`)."""
_SET_ASIDE_TEXTS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("loomtui_set_aside", default=None)
"""The commands the marks of the command being read stand for, by N (shells within it share it)."""
_SET_ASIDE_SAID: Final = re.compile(r"\$\\x01\d+\\x01")
"""A mark as `quoted` says it (its control characters escaped)."""
_BACKQUOTE_ESCAPE: Final = re.compile(r"\\([`$\\])")
_WORD_AT: Final = re.compile(r"[A-Za-z_]+(?=[\s;&|()]|$)")


def _substitution_end(text: str, start: int, opened_by: str) -> int:
    """Where the command substitution whose text starts at `start` ends: its closing backquote, or the `)`
    matching its `$(` (quotes and parentheses inside it counted)."""
    depth, quote, index, cases = 1, "", start, 0
    while index < len(text):
        char = text[index]
        if char == "\\" and quote != "'":
            index += 2
            continue
        starts_word = index == start or text[index - 1] in " \t\n;&|()"
        if opened_by == "`":
            if char == "`":
                return index
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and starts_word:  # a comment: its `)` closes nothing
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        elif starts_word and (word := _WORD_AT.match(text, index)) is not None and word.group() in ("case", "esac"):
            cases += 1 if word.group() == "case" else -1  # `case x in x) ...;; esac`: a pattern's `)` closes nothing
        elif char == ")" and cases > 0 and depth == 1:
            pass
        elif char in "()":
            depth += 1 if char == "(" else -1
            if not depth:
                return index
        index += 1
    raise CommandNotRead("a command substitution in it never closes")


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
    # shlex keeps a run of punctuation as one token: `(cd sub && x); y` gave `);`, a word, and the subshell's
    # folder stood for `y`; `true;>held.py` gave `;>`, and the file went unseen. Each operator is a token.
    return [piece for token in lexer
            for piece in (_OPERATOR.findall(token) if _PUNCTUATION.fullmatch(token) else [token])]


def _simple_commands(tokens: Sequence[str]) -> Iterable[tuple[list[str], str]]:
    """Each simple command's words, with redirection targets as `>` `file` pairs kept in place, and the
    separator that ends it ("" at the end); a subshell's `(` and `)` each as a command of its own."""
    words: list[str] = []
    for token in tokens:
        if token in _SEPARATORS:
            if words:
                yield words, token
            if token in ("(", ")"):
                yield [token], token
            words = []
        else:
            words.append(token)
    if words:
        yield words, ""


def _command_writes(words: list[str], cwd: Path, depth: int = 0) -> list[str]:
    targets: list[str] = []
    argv: list[str] = []
    stdin: str | None = None
    chdir = ""  # where a wrapper runs the command (`env -C DIR`), from the shell's folder
    index = 0
    while index < len(words):
        word = words[index]
        following = words[index + 1] if index + 1 < len(words) else None
        if word in _REDIRECTS or word.startswith("<"):
            if argv and argv[-1].isdigit():
                argv.pop()  # `2>file`: the descriptor number is not an argument
            if word in _REDIRECTS and following is not None and not (word == ">&" and following.isdigit()):
                targets.append(following)
            elif word == "<" and following is not None:
                stdin = following  # `patch -p1 < fix.diff`: the patch it applies
            index += 2
            continue
        argv.append(word)
        index += 1
    while argv and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]) or argv[0] in _WRAPPERS
                    or argv[0] in _KEYWORDS):
        wrapper = argv.pop(0)
        takes_value, operands = _WRAPPERS.get(wrapper, (frozenset(), 0))
        while argv and argv[0].startswith("-") and (len(argv) > 1 or _splits(wrapper, argv[0])):
            option = argv.pop(0)  # the wrapper's own options (`sudo -u x`, `env -i`, `nice -n 5`)
            if _splits(wrapper, option):  # its value is the command
                split = option.partition("=")[2] if option.startswith("--") else option[2:]
                try:
                    argv[:0] = _shell_tokens(split or argv.pop(0))
                except ValueError:
                    raise CommandNotRead("its env -S string's quotes do not close") from None
                break
            if option.startswith("--chdir=") and wrapper in _CHDIR_OPTIONS:
                chdir = os.path.join(chdir, option.partition("=")[2])
            elif option in takes_value and argv:
                value = argv.pop(0)
                if wrapper == "time" and option == "-o":  # its report goes to that file
                    targets.append(value)
                elif option in _CHDIR_OPTIONS.get(wrapper, ()):  # `env -C payments sed -i ...`: there
                    chdir = os.path.join(chdir, value)
        del argv[:operands]  # `timeout 5`: its duration
    if argv[:1] == ["busybox"] and len(argv) > 1 and argv[1] not in _SHELLS:
        argv = argv[1:]  # `busybox sed -i ...`: the applet is the program
    if argv:
        # The command's own files are from the folder a wrapper moved it to; its redirections, the shell's.
        there = (_NO_FOLDER if any(c in chdir for c in "$`~") else Path(absolute_path(chdir, cwd))) if chdir else cwd
        inner = _shell_string(os.path.basename(argv[0]), argv[1:])
        if inner is not None:  # `bash -c 'echo x > held.py'`: the string is a command of its own
            targets.extend(bash_write_targets(inner, there, depth=depth + 1))
        else:
            targets.extend(os.path.join(there, name) if chdir else name
                           for name in _program_writes(os.path.basename(argv[0]), argv[1:], there, stdin))
    return targets


def _splits(wrapper: str, option: str) -> bool:
    """Whether `option` is env's `-S`/`--split-string`, whose value is the command it runs, split into words."""
    return wrapper == "env" and option.startswith(("-S", "--split-string"))


_SHELLS: Final = frozenset({"bash", "sh", "dash", "zsh", "ksh", "mksh", "ash", "busybox"})
MAX_SHELL_DEPTH: Final = 4


_SHELL_OPTIONS_WITH_VALUE: Final = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})


def _shell_string(program: str, args: Sequence[str]) -> str | None:
    """The command a shell is given as a string (`sh -c '...'`, `bash -o pipefail -c '...'`, `eval ...`), or
    None for a shell running a script (what the script writes is not in the command)."""
    if program == "eval":
        return " ".join(args)
    if program == "busybox" and args[:1] and args[0] in _SHELLS:
        program, args = args[0], args[1:]
    if program not in _SHELLS:
        return None
    given_c = False
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "--":
            position += 1
            break
        if arg in _SHELL_OPTIONS_WITH_VALUE:  # its value is no script (`-o pipefail`)
            position += 2
            continue
        if arg.startswith("--") or (arg[:1] in "-+" and len(arg) > 1):
            given_c = given_c or (arg[:1] == "-" and not arg.startswith("--") and "c" in arg[1:])
            position += 1
            continue
        break
    if not given_c:
        return None
    if position >= len(args):  # `-c` and no command: nothing runs, or a form not read
        raise CommandNotRead("a shell's -c names no command")
    return args[position]


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
    "tee": frozenset(), "rm": frozenset(), "unlink": frozenset(), "sponge": frozenset(),
    "touch": frozenset({"-r", "-d", "-t", "--reference", "--date"}),
    "truncate": frozenset({"-s", "--size", "-r", "--reference"}),
    "shred": frozenset({"-n", "-s", "--iterations", "--size"}),
}


# Programs that write the file an option names (`sort -o F`, `git diff --output=F`, `find -fprint F`): none of
# these was seen, and each wrote a file another sandbox held with only a lead's generic "may it run?" asked.
_OUTPUT_OPTIONS: Final = {
    "sort": ("-o", "--output"), "patch": ("-o", "--output"), "curl": ("-o", "--output"),
    "wget": ("-O", "--output-document"), "git": ("--output",),
    "cc": ("-o",), "gcc": ("-o",), "g++": ("-o",), "clang": ("-o",), "clang++": ("-o",),
    "find": ("-fprint", "-fprint0", "-fprintf", "-fls"),
    "iconv": ("-o", "--output"), "strace": ("-o", "--output"), "ltrace": ("-o", "--output"),
    "openssl": ("-out",), "script": ("-O", "--log-out"),
}
# Programs whose second operand is the file they write (`uniq IN OUT`, `xxd IN OUT`), with their options that
# take a value.
_WRITES_SECOND_OPERAND: Final = {
    "uniq": frozenset({"-f", "-s", "-w", "--skip-fields", "--skip-chars", "--check-chars"}),
    "xxd": frozenset({"-c", "-g", "-l", "-o", "-s", "-n", "-cols", "-groupsize", "-len", "-offset", "-seek", "-name"}),
}


_NO_BUNDLES: Final = frozenset({"cc", "gcc", "g++", "clang", "clang++", "find", "git"})
"""Programs whose one-dash words are never bundles of one-letter flags (`-flto`, `-lcrypto`, `-fprint`)."""


def _option_values(program: str, args: Sequence[str], names: Sequence[str]) -> list[str]:
    """The files the options `names` in `args` name: `-o F`, `--output F`, `--output=F`, a one-letter one's value
    attached (`-oF`), and one closing a bundle of letter flags (`sort -uo F`, `curl -sSo F`, `wget -qO F`). Not
    `-`: that is stdout."""
    values: list[str] = []
    letters = {name[1] for name in names if len(name) == 2}
    for position, arg in enumerate(args):
        if arg == "--":
            break
        following = args[position + 1] if position + 1 < len(args) else None
        if arg in names and following is not None:
            values.append(following)
        elif arg.startswith("--"):
            values += [arg.split("=", 1)[1] for name in names if name.startswith("--") and arg.startswith(f"{name}=")]
        elif arg.startswith("-") and len(arg) > 2 and arg[1] in letters:
            values.append(arg[2:])
        elif (program not in _NO_BUNDLES and arg.startswith("-") and len(arg) > 2 and arg[-1] in letters
              and arg[1:-1].isalpha() and following is not None):
            values.append(following)
    return [value for value in values if value != "-"]


_GIT_GLOBAL_WITH_VALUE: Final = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--exec-path"})


def _git_subcommand(args: list[str]) -> tuple[list[str], str]:
    """`git`'s arguments from its subcommand on, its own options before it skipped (`git -c a=b mv x y`), and the
    folder its paths are from (`git -C sub rm x.py` removes sub/x.py)."""
    position, folder = 0, ""
    while position < len(args) and args[position].startswith("-"):
        if args[position] == "-C" and position + 1 < len(args):
            folder = os.path.join(folder, args[position + 1])
        position += 2 if args[position] in _GIT_GLOBAL_WITH_VALUE else 1
    return args[position:], folder


def _program_writes(program: str, args: list[str], cwd: Path, stdin: str | None = None) -> list[str]:
    if program in _WRITES_OPERANDS:
        return _operands(args, _WRITES_OPERANDS[program])
    if program == "git":
        sub, folder = _git_subcommand(args)
        if sub[:1] in (["mv"], ["rm"]):  # as mv and rm: `git mv` moved a held file unseen
            return [os.path.join(folder, path) for path in _program_writes(sub[0], sub[1:], cwd / folder)]
        if sub[:1] == ["apply"]:  # the files its patches name
            return git_apply_writes(sub[1:], cwd / folder, stdin)
    if program == "patch":
        return _option_values(program, args, _OUTPUT_OPTIONS[program]) + patch_writes(args, cwd, stdin)
    if program == "tar":
        return tar_writes(args, cwd)
    if program == "unzip":
        return unzip_writes(args, cwd)
    if program in _OUTPUT_OPTIONS:
        return _option_values(program, args, _OUTPUT_OPTIONS[program])
    if program in _WRITES_SECOND_OPERAND:
        return _operands(args, _WRITES_SECOND_OPERAND[program])[1:2]
    if program in ("sed", "perl"):
        return _in_place_files(args)
    if program in ("cp", "mv", "ln", "install", "rsync"):
        return _copy_targets(program, args, cwd)
    if program == "dd":
        return [a[3:] for a in args if a.startswith("of=")]
    if program in _DECOMPRESSORS:  # `gunzip payments/x.py.gz` writes payments/x.py
        if {"-c", "--stdout", "-l", "--list", "-t", "--test"} & set(args):
            return []
        suffix = _DECOMPRESSORS[program]
        return [name.removesuffix(suffix) for name in _operands(args, frozenset({"-S", "--suffix"}))
                if name.endswith(suffix)]
    return []


_DECOMPRESSORS: Final = {"gunzip": ".gz", "unxz": ".xz", "bunzip2": ".bz2", "unzstd": ".zst", "unlzma": ".lzma"}
"""Programs that write each FILE.SUFFIX they are given as FILE."""


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
        if arg in ("-t", "--target-directory") and position + 1 < len(args):
            target_dir = args[position + 1]
        elif arg.startswith("--target-directory="):
            target_dir = arg.split("=", 1)[1]
        elif arg.startswith("-t") and len(arg) > 2:  # `cp -tpayments x.py`
            target_dir = arg[2:]
    operands = _operands(args, frozenset({"-t", "--target-directory", "-S", "--suffix", "-m", "--mode", "-o", "-g"}))
    if target_dir is None:
        if program == "ln" and len(operands) == 1:  # `ln -sf ../x/held.py`: a link named as its target, here
            return [os.path.basename(operands[0].rstrip("/"))]
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
    if "$(" in name or "`" in name or name.endswith("$") or _SET_ASIDE.search(name):  # `> ledger.py$(true)`
        shown = _SET_ASIDE.sub("$(…)", name)
        raise CommandNotRead(f"a file it writes is named by a command's output ({quoted(shown)})")
    if not name or "$" in name:
        return []  # a variable's value is unknown here
    found = dict.fromkeys(path for word in _brace_words(name) for path in _expand_path(word, cwd))
    return list(found)[:MAX_TARGETS]


def _brace_words(name: str) -> list[str]:
    """`tax{,_old}.py` as bash makes its words (before anything else), at most MAX_TARGETS of them at
    every step: each group expanded over the words so far, never every word of every group first (six
    groups of fifty were 50**6 words, hours of one broker's only worker)."""
    words = [_SEQUENCE.sub(_sequence_as_list, name)]
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


def _sequence_as_list(match: re.Match[str]) -> str:
    """`{1..3}` or `{a..c}` as the `{1,2,3}` it stands for, at most MAX_TARGETS (`{s..s}` is `{s,s}`)."""
    first, last = match.group(1), match.group(2)
    if first.lstrip("-").isdigit() and last.lstrip("-").isdigit():
        start, end = int(first), int(last)
        step = 1 if end >= start else -1
        items = [str(n) for n in itertools.islice(range(start, end + step, step), MAX_TARGETS)]
    elif first.isalpha() and last.isalpha():
        step = 1 if ord(last) >= ord(first) else -1
        items = [chr(n) for n in range(ord(first), ord(last) + step, step)][:MAX_TARGETS]
    else:
        return match.group(0)
    return "{" + ",".join(items + items[:1] if len(items) == 1 else items) + "}"


def _expand_path(word: str, cwd: Path) -> list[str]:
    if word == "~+" or word.startswith("~+/"):  # bash's: the folder it is in
        word = str(cwd) + word[2:]
    elif word == "~-" or word.startswith("~-/"):  # the folder it was in: not told here
        raise CommandNotRead(f"it writes {quoted(word)}, in the folder the shell was in before (~-)")
    path = absolute_path(word, cwd)
    if path.startswith("/dev/") or path == "/dev":
        return []
    if glob.has_magic(path):  # the first matches found, not every match of `/*/*/*/*` sorted first
        return sorted(_bounded_glob(path)) or [path]
    return [path]


GLOB_ENTRIES_READ_MAX: Final = 20_000
"""Directory entries a glob may read before its command is judged unreadable: a quoted glob the shell never
expands, through ten links to `.` eight deep, read 10**8 of them and the hook was killed at its timeout
(Claude Code then lets the call through)."""


def _bounded_glob(pattern: str) -> list[str]:
    """The first MAX_TARGETS paths `pattern` matches, as `glob` finds them, reading at most
    GLOB_ENTRIES_READ_MAX directory entries (CommandNotRead past that)."""
    parts = pattern.split("/")
    found = ["/" if pattern.startswith("/") else "."]
    read = 0
    for depth, part in enumerate(parts[1:] if pattern.startswith("/") else parts, start=1):
        last = depth == len(parts) - (1 if pattern.startswith("/") else 0)
        grown: list[str] = []
        for base in found:
            if not glob.has_magic(part):
                candidate = os.path.join(base, part)
                if last or os.path.isdir(candidate):
                    grown.append(candidate)
                continue
            try:
                with os.scandir(base) as entries:
                    for entry in entries:
                        read += 1
                        if read > GLOB_ENTRIES_READ_MAX:
                            raise CommandNotRead(f"a glob in it reads more than {GLOB_ENTRIES_READ_MAX:,} names")
                        if (entry.name.startswith(".") and not part.startswith(".")) or \
                                not fnmatch.fnmatchcase(entry.name, part):
                            continue
                        if last or entry.is_dir():
                            grown.append(os.path.join(base, entry.name))
            except OSError:
                continue
        found = grown
    return [path for path in found if os.path.lexists(path)][:MAX_TARGETS]

