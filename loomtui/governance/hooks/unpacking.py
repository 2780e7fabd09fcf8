"""The files a command writes that its command line does not name: a patch it applies (`git apply`, `patch`)
or an archive it unpacks (`tar -x`, `unzip`), read from the patch or the archive itself, since the hook runs
before the command.

What cannot be told is refused (`CommandNotRead`), never taken as writing nothing: a patch or an archive not
readable before the command runs (piped in, or made earlier in the same command), one past what is read on a
hook's path (`READ_BUDGET` for all of a command's, decompressed: a 153-byte archive of 32 MiB of zeros held the
hook 15 s, past which Claude Code lets a call through), a read that failed part way (the names after it were
left out), and the options that rename what is written (`--strip-components`, `--transform`, `unzip -j`).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import io
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO, Final, cast

from loomtui.files import open_regular
from loomtui.governance.hooks.edits import MAX_TARGETS, CommandNotRead

__all__ = ["READ_BUDGET", "git_apply_writes", "patch_writes", "read_budget", "tar_writes", "unzip_writes"]

READ_BUDGET: Final = 8 << 20
"""The most bytes one command's patches and archives are read for their names, decompressed."""
_LISTED: Final = MAX_TARGETS + 1
"""Names read at most: one more than a command may write, so that one over is refused as too many."""
_left: contextvars.ContextVar[list[int]] = contextvars.ContextVar("loomtui_unpacking_budget")
_HOW_ON: Final = "write it to a file first, in a command of its own, then apply or unpack it"


@contextmanager
def read_budget() -> Iterator[None]:
    """One command's reading: its patches and archives share READ_BUDGET."""
    token = _left.set([READ_BUDGET])
    try:
        yield
    finally:
        _left.reset(token)


def _spend(count: int, what: str) -> None:
    left = _left.get(None)
    if left is None:  # called outside a command's reading (a test of one program): a budget of its own
        left = [READ_BUDGET]
        _left.set(left)
    left[0] -= count
    if left[0] < 0:
        raise CommandNotRead(f"its patches and archives hold more than loomtui reads before a command runs "
                             f"({READ_BUDGET >> 20} MiB, at {what})")


@contextlib.contextmanager
def _open_regular(path: Path, named: str) -> Iterator[BinaryIO]:
    """`path` opened for reading when it is a regular file (a FIFO named as the patch held the hook, and with it
    the broker's only worker, for good: opened without waiting, refused); CommandNotRead otherwise. A link is
    followed, as the command reading it does."""
    stack = contextlib.ExitStack()
    try:
        handle = stack.enter_context(open_regular(path, follow=True))
    except OSError as exc:
        why = "which is no regular file" if exc.errno == errno.EINVAL else \
            f"which loomtui cannot read before it runs ({exc.strerror or exc})"
        raise CommandNotRead(f"it reads {named!r}, {why}: {_HOW_ON}") from None
    with stack:
        yield handle


# -- git apply, patch --------------------------------------------------------------------

_GIT_APPLY_VALUES: Final = frozenset({"-p", "--directory", "--exclude", "--include", "-C", "--whitespace",
                                      "--build-fake-ancestor"})


def git_apply_writes(args: Sequence[str], cwd: Path, stdin: str | None = None) -> list[str]:
    """What `git apply ARGS` run in `cwd` writes: each patch's files, `-p` components stripped (1 by default),
    under `--directory`, from the top of the repository (as git reads them; in a folder it skips those outside
    it, taken here as written all the same). `--stat`, `--numstat`, `--summary` and `--check` alone write
    nothing."""
    if {"--stat", "--numstat", "--summary", "--check"} & set(args) and "--apply" not in args:
        return []
    strip, directory, patches = 1, "", []
    position = 0
    while position < len(args):
        arg = args[position]
        value = args[position + 1] if position + 1 < len(args) else ""
        if arg in _GIT_APPLY_VALUES:  # `-p 0`, `--directory payments`: the value is the next word
            position += 2
            if arg == "-p" and value.isdigit():
                strip = int(value)
            elif arg == "--directory":
                directory = value
            continue
        if arg.startswith("-p") and arg[2:].isdigit():
            strip = int(arg[2:])
        elif arg.startswith("--directory="):
            directory = arg.split("=", 1)[1]
        elif not arg.startswith("-") or arg == "-":
            patches.append(arg)
        position += 1
    if not patches or patches == ["-"]:
        patches = [stdin] if stdin else [""]  # its standard input: `git apply < fix.diff`, or a pipe
    top = _repository_top(cwd)
    names = [name for patch in patches for name in _patch_names(patch, cwd, strip, patch_in=top)]
    return [str(top / directory / name) for name in names]


_PATCH_VALUES: Final = {"-p": "--strip", "-i": "--input", "-d": "--directory", "-o": "--output", "-r": "--reject-file",
                        "-F": "--fuzz", "-B": "--prefix", "-z": "--suffix", "-V": "--version-control",
                        "-D": "--ifdef", "-Y": "--basename-prefix", "-g": "--get"}
"""`patch`'s options that take a value, short and long."""


def patch_writes(args: Sequence[str], cwd: Path, stdin: str | None) -> list[str]:
    """What `patch ARGS` writes: the file it is given (`patch FILE PATCH`), else the patch's files (from `-i`,
    its second operand or its standard input), `-p` components stripped, under `-d`; and a reject file (`-r`).
    `-o` is read elsewhere (the file it names is all that is written)."""
    values: dict[str, str] = {}
    operands: list[str] = []
    longs = {long: short for short, long in _PATCH_VALUES.items()}
    position = 0
    while position < len(args):
        arg = args[position]
        following = args[position + 1] if position + 1 < len(args) else ""
        if arg in _PATCH_VALUES or arg in longs:
            values[longs.get(arg, arg)], position = following, position + 2
            continue
        if arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] in longs:
            values[longs[arg.split("=", 1)[0]]] = arg.split("=", 1)[1]
        elif arg[:2] in _PATCH_VALUES and len(arg) > 2:  # `-p1`, `-ifix.diff`
            values[arg[:2]] = arg[2:]
        elif not arg.startswith("-"):
            operands.append(arg)
        position += 1
    if "-o" in values:
        return []  # the output option's file is the one written
    directory = values.get("-d", "")
    rejects = [values["-r"]] if values.get("-r") not in (None, "", "-") else []
    if operands:
        return [os.path.join(directory, operands[0]), *rejects]
    strip = int(values["-p"]) if values.get("-p", "").isdigit() else None
    patch_file = values.get("-i") or (operands[1] if len(operands) > 1 else stdin) or ""
    names = _patch_names(patch_file, cwd, strip, patch_in=cwd / directory)
    return [*(os.path.join(directory, name) for name in names), *rejects]


def _patch_names(patch: str, cwd: Path, strip: int | None, patch_in: Path) -> list[str]:
    """The files a patch names, as `patch` or `git apply` with `strip` finds them (None: `patch` with no
    `-p`: a git diff's `a/`/`b/` go, another path stays whole where its folders exist, else its base name).
    A git diff's header names the file too, for a change with no `---`/`+++` lines (a binary patch, a mode)."""
    if not patch or patch == "-":
        raise CommandNotRead(f"it applies a patch from its standard input, which loomtui cannot read before it runs: "
                             f"{_HOW_ON}")
    with _open_regular(cwd / patch, patch) as file:
        data = file.read(READ_BUDGET + 1)
    _spend(len(data), patch)
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    git_diff = any(line.startswith("diff --git ") for line in lines)
    if strip is None and git_diff:
        strip = 1
    names: dict[str, None] = {}  # in order, each once: a patch of 40,000 `--- a` lines took 19 s as a list
    for line in lines:
        if len(names) >= _LISTED:
            break
        if line.startswith(("--- ", "+++ ")):
            found = [_unquoted(line[4:].split("\t", 1)[0].rstrip())]
        elif line.startswith("diff --git "):
            found = _git_header_names(line[len("diff --git "):])
        elif line.startswith(("rename from ", "rename to ", "copy to ")) and git_diff:
            names[_unquoted(line.split(" ", 2)[2])] = None  # a repository path as it is: no a/ or b/ to strip
            continue
        else:
            continue
        for name in found:
            if name and name != "/dev/null":
                names[_stripped(name, strip, patch_in)] = None
    return [name for name in names if name]


def _git_header_names(rest: str) -> list[str]:
    """The two names of `diff --git a/X b/Y` (quoted where git quoted them); one name where a space in it makes
    the split unclear and both halves are the same file (the usual case); [] where it cannot be told."""
    if rest.startswith('"'):
        end = rest.find('" ', 1)
        if end > 0:
            return [_unquoted(rest[:end + 1]), _unquoted(rest[end + 2:])]
        return []
    # The halves name one file (its usual case): the split is in the middle, tried there alone (every ` b/` of a
    # long line, each sliced, was quadratic).
    middle = len(rest) // 2
    if rest[middle:middle + 3] == " b/" and rest[:middle][2:] == rest[middle + 1:][2:]:
        return [rest[:middle], rest[middle + 1:]]
    return []


def _repository_top(folder: Path) -> Path:
    """The top of the git working tree `folder` is in (a `.git` folder or file there), else `folder`."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder


def _stripped(name: str, strip: int | None, folder: Path) -> str:
    parts = [part for part in name.split("/") if part]
    if not parts:
        return ""
    if strip is None:  # GNU patch with no -p
        whole = "/".join(parts)
        return whole if not name.startswith("/") and (folder / os.path.dirname(whole)).is_dir() else parts[-1]
    return "/".join(parts[strip:])


def _unquoted(name: str) -> str:
    """A name git wrote in C quotes (`"a\\tb.py"`, octal bytes for UTF-8) as it is on disk."""
    if not (len(name) >= 2 and name.startswith('"') and name.endswith('"')):
        return name
    try:
        raw = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
        return raw.encode("latin-1").decode("utf-8", "surrogateescape")
    except (UnicodeError, ValueError):
        return name[1:-1]


# -- tar, unzip ----------------------------------------------------------------------------

_TAR_RENAMING: Final = re.compile(r"^--(strip-components|transform|xform|ignore-zeros|absolute-names|one-top-level)\b")
_TAR_VALUE_LETTERS: Final = "fCbTXKLNgV"
"""tar's one-letter options that take a value (the archive, a folder, a block count, a list file, ...)."""


def tar_writes(args: Sequence[str], cwd: Path) -> list[str]:
    """What `tar` writes: extracting (`-x`, `x`, `--extract`, `--get`), the archive's members (not its
    folders), under `-C`; making or adding to one (`-c`, `-r`, `-u`), the archive."""
    if not args:
        return []
    letters, values, rest = _tar_options(args)
    extracting = "x" in letters or bool({"--extract", "--get"} & set(args))
    making = bool(set("cru") & set(letters)) or bool({"--create", "--append", "--update"} & set(args))
    if not (extracting or making):
        return []
    archive = values.get("f")
    directory = values.get("C", "")
    if archive is None or archive == "-":
        if making:
            return []  # to its standard output
        raise CommandNotRead(f"it unpacks an archive from its standard input, which loomtui cannot read before it "
                             f"runs: {_HOW_ON}")
    if making:
        return [archive]  # a relative name is from where tar starts, before any -C
    renaming = [arg for arg in rest if _TAR_RENAMING.match(arg)]
    renaming += [f"-{letter}" for letter in "iP" if letter in letters]  # --ignore-zeros, --absolute-names
    if renaming:
        raise CommandNotRead(f"its {renaming[0].split('=')[0]} changes which files an archive's members become, "
                             "which loomtui does not follow: unpack it plainly, into a folder of its own")
    return [os.path.join(directory, name) for name in _tar_members(cwd / archive, archive)]


def _tar_options(args: Sequence[str]) -> tuple[str, dict[str, str], list[str]]:
    """tar's one-letter options (old style `xzf a.tgz`, or bundled `-xzfa.tgz`), the values of those that take
    one (`f`: the archive, `C`: the folder), and its other words (long options, names)."""
    letters, values, rest = "", {}, []
    words = list(args)
    if words and not words[0].startswith("-"):  # old style: letters, then the values of those that take one
        first, words = words[0], words[1:]
        letters += first
        for letter in (letter for letter in first if letter in _TAR_VALUE_LETTERS):
            if words:
                values[letter] = words.pop(0)
    position = 0
    while position < len(words):
        word = words[position]
        position += 1
        if word.startswith("--"):
            name, _, value = word.partition("=")
            if name in ("--file", "--directory") and not value and position < len(words):
                value, position = words[position], position + 1
            if name in ("--file", "--directory"):
                values["f" if name == "--file" else "C"] = value
            rest.append(word)
        elif word.startswith("-") and len(word) > 1:
            for index, letter in enumerate(word[1:], 1):
                letters += letter
                if letter in _TAR_VALUE_LETTERS:
                    attached = word[index + 1:]
                    if not attached and position < len(words):
                        attached, position = words[position], position + 1
                    # Each -C goes on from the last (`-C sub -C ../payments` is payments/).
                    values[letter] = os.path.join(values.get("C", ""), attached) if letter == "C" else attached
                    break
        else:
            rest.append(word)
    return letters, values, rest


def unzip_writes(args: Sequence[str], cwd: Path) -> list[str]:
    """What `unzip ARCHIVE` writes: its members (not its folders), under `-d`; listing, testing and piping
    (`-l`, `-t`, `-v`, `-p`, `-c`, `-Z`) write nothing."""
    archive, directory = None, ""
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "-x":
            break  # the names it leaves out follow: what it writes is a subset of every member
        if arg == "-d" and position + 1 < len(args):
            directory, position = args[position + 1], position + 2
            continue
        if arg.startswith("-d") and len(arg) > 2:
            directory = arg[2:]
        elif arg.startswith("-") and set(arg[1:]) & set("ltvpcZ"):
            return []
        elif arg.startswith("-") and "j" in arg[1:]:
            raise CommandNotRead("its -j puts an archive's members in one folder, which loomtui does not follow: "
                                 "unpack it plainly, into a folder of its own")
        elif not arg.startswith("-") and archive is None:
            archive = arg
        position += 1
    if archive is None:
        return []
    if not (cwd / archive).exists() and (cwd / f"{archive}.zip").exists():
        archive = f"{archive}.zip"  # as unzip looks for it
    return [os.path.join(directory, name) for name in _zip_members(cwd / archive, archive)]


class _Bounded(io.RawIOBase):
    """A file that counts what is read of it against the command's budget."""

    def __init__(self, file: IO[bytes], named: str) -> None:
        self._file, self._named = file, named

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._file.read(len(buffer))
        _spend(len(data), self._named)
        buffer[:len(data)] = data
        return len(data)


def _decompressed(raw: IO[bytes], named: str) -> IO[bytes]:
    """The archive's bytes as tar reads them, decompressed here, so that what is counted is what is read (the
    compressed 153 bytes of 32 MiB of zeros counted 153)."""
    import bz2
    import gzip
    import lzma

    magic = raw.read(6)
    raw.seek(0)
    # What is read of the file itself counts too: 200,000 empty gzip members decompressed to nothing, slowly.
    counted = cast(IO[bytes], io.BufferedReader(_Bounded(raw, named)))
    if magic.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=counted))
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(counted)
    if magic.startswith(b"\xfd7zXZ\x00") or magic.startswith(b"\x5d\x00\x00"):
        return lzma.LZMAFile(counted)
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        raise CommandNotRead(f"it unpacks {named!r}, compressed with zstd, which loomtui does not read: "
                             "decompress it first, in a command of its own")
    return counted


def _tar_members(archive: Path, named: str) -> list[str]:
    import lzma
    import tarfile  # here, not at the top: the hook's every Bash call reads this module, few unpack
    import zlib

    names: list[str] = []
    try:
        with _open_regular(archive, named) as raw, _decompressed(raw, named) as plain, \
                tarfile.open(fileobj=io.BufferedReader(_Bounded(plain, named)), mode="r|") as tar:
            for member in tar:  # decompressed as it is read: what lies before a member is read, and spent
                if not member.isdir():
                    names.append(member.name.lstrip("/").removeprefix("./"))
                if len(names) >= _LISTED:
                    break
    except CommandNotRead:
        raise  # past the budget
    except OSError as exc:
        raise CommandNotRead(f"it unpacks {named!r}, which loomtui cannot read before it runs "
                             f"({exc.strerror or exc}): {_HOW_ON}") from None
    except (tarfile.TarError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise CommandNotRead(f"it unpacks {named!r}, which loomtui cannot read to its end ({exc}): the files "
                             "after that are not told") from None
    return names


def _zip_members(archive: Path, named: str) -> list[str]:
    import zipfile

    try:
        with _open_regular(archive, named) as raw, zipfile.ZipFile(raw) as bundle:
            _spend(min(os.fstat(raw.fileno()).st_size, 1 << 20), named)  # its central directory, read whole
            return [name.lstrip("/") for name in bundle.namelist() if not name.endswith("/")][:_LISTED]
    except CommandNotRead:
        raise
    except OSError as exc:
        raise CommandNotRead(f"it unpacks {named!r}, which loomtui cannot read before it runs "
                             f"({exc.strerror or exc}): {_HOW_ON}") from None
    except (zipfile.BadZipFile, ValueError) as exc:
        raise CommandNotRead(f"it unpacks {named!r}, which loomtui cannot read ({exc})") from None
