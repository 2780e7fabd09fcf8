"""The files a command writes that its command line does not name: a patch it applies (`git apply`, `patch`)
or an archive it unpacks (`tar -x`, `unzip`), read from the patch or the archive itself, since the hook runs
before the command.

Best effort, as the rest of the Bash reading: a patch or an archive that cannot be read now (made by an
earlier part of the same command, or piped in) names nothing here; the pre-commit hook and the review still
see what it wrote.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final

from loomtui.governance.hooks.edits import MAX_TARGETS

__all__ = ["git_apply_writes", "patch_writes", "tar_writes", "unzip_writes"]

MAX_PATCH_BYTES: Final = 16 << 20
"""The most of a patch read for its file names: one larger is read that far."""
MAX_ARCHIVE_BYTES: Final = 256 << 20
"""The most of an archive read (decompressed as it is read) for its members' names."""
_LISTED: Final = MAX_TARGETS + 1
"""Names read at most: one more than a command may write, so that one over is refused as too many."""


def git_apply_writes(args: Sequence[str], cwd: Path) -> list[str]:
    """What `git apply ARGS` run in `cwd` writes: each patch's files, `-p` components stripped (1 by default),
    under `--directory`, from the top of the repository (as git reads them; in a folder it skips those outside
    it, taken here as written all the same). `--stat`, `--numstat`, `--summary` and `--check` alone write
    nothing."""
    if {"--stat", "--numstat", "--summary", "--check"} & set(args) and "--apply" not in args:
        return []
    strip, directory, patches = 1, "", []
    for arg in args:
        if arg.startswith("-p") and arg[2:].isdigit():
            strip = int(arg[2:])
        elif arg.startswith("--directory="):
            directory = arg.split("=", 1)[1]
        elif not arg.startswith("-") or arg == "-":
            patches.append(arg)
    top = _repository_top(cwd)
    names = [name for patch in patches for name in _patch_names(patch, cwd, strip, patch_in=top)]
    return [str(top / directory / name) for name in names]


def patch_writes(args: Sequence[str], cwd: Path, stdin: str | None) -> list[str]:
    """What `patch ARGS` writes: the file it is given (`patch FILE PATCH`), else the patch's files (from `-i`,
    its second operand or its standard input), `-p` components stripped, under `-d`. `-o` is read elsewhere
    (the file it names is all that is written)."""
    strip: int | None = None
    directory, patch_file, operands = "", stdin, []
    position = 0
    while position < len(args):
        arg = args[position]
        following = args[position + 1] if position + 1 < len(args) else ""
        if arg in ("-o", "--output") or arg.startswith(("--output=", "-o")):
            return []  # the output option's file is the one written
        if arg in ("-p", "--strip", "-i", "--input", "-d", "--directory"):
            value, position = following, position + 2
        elif arg.startswith(("--strip=", "--input=", "--directory=")):
            value, position = arg.split("=", 1)[1], position + 1
            arg = arg.split("=", 1)[0]
        elif arg[:2] in ("-p", "-i", "-d") and len(arg) > 2:
            value, position, arg = arg[2:], position + 1, arg[:2]
        else:
            if not arg.startswith("-"):
                operands.append(arg)
            position += 1
            continue
        if arg in ("-p", "--strip") and value.isdigit():
            strip = int(value)
        elif arg in ("-i", "--input"):
            patch_file = value
        elif arg in ("-d", "--directory"):
            directory = value
    if operands:
        if len(operands) > 1:
            patch_file = operands[1]
        return [os.path.join(directory, operands[0])]
    if patch_file is None:
        return []
    names = _patch_names(patch_file, cwd, strip, patch_in=cwd / directory)
    return [os.path.join(directory, name) for name in names]


def tar_writes(args: Sequence[str], cwd: Path) -> list[str]:
    """What `tar` writes: extracting (`-x`, `x`, `--extract`, `--get`), the archive's members (not its
    folders), under `-C`; making or adding to one (`-c`, `-r`, `-u`), the archive."""
    if not args:
        return []
    first = args[0]
    old_style = not first.startswith("-")  # `tar xzf a.tgz`: letters, then the values of those that take one
    letters = first if old_style else ""
    def mode(letters: str, words: tuple[str, ...]) -> bool:
        return (old_style and bool(set(letters) & set(first))) or any(
            arg in words or (arg.startswith("-") and not arg.startswith("--") and bool(set(letters) & set(arg)))
            for arg in args)

    extracting = mode("x", ("--extract", "--get"))
    making = mode("cru", ("--create", "--append", "--update"))
    if not (extracting or making):
        return []
    archive, directory = None, ""
    rest = list(args[1:] if old_style else args)
    if old_style and "f" in letters:
        values = [letter for letter in letters if letter in "fCbT"]  # the old style's letters that take a value
        for letter, value in zip(values, rest, strict=False):
            if letter == "f":
                archive = value
            elif letter == "C":
                directory = value
        rest = rest[len(values):]
    for position, arg in enumerate(rest):
        following = rest[position + 1] if position + 1 < len(rest) else None
        if arg.startswith("--file="):
            archive = arg.split("=", 1)[1]
        elif arg.startswith("--directory="):
            directory = arg.split("=", 1)[1]
        elif arg in ("--file", "--directory", "-C") and following is not None:
            archive, directory = (following, directory) if arg == "--file" else (archive, following)
        elif arg.startswith("-") and not arg.startswith("--") and following is not None and arg.endswith("f"):
            archive = following  # `-xzf a.tgz`
        elif arg.startswith("-") and not arg.startswith("--") and following is not None and arg.endswith("C"):
            directory = following
    if archive is None or archive == "-":
        return []
    if making:
        return [archive]  # a relative name is from where tar starts, before any -C
    return [os.path.join(directory, name) for name in _tar_members(cwd / archive)]


def unzip_writes(args: Sequence[str], cwd: Path) -> list[str]:
    """What `unzip ARCHIVE` writes: its members (not its folders), under `-d`; listing, testing and piping
    (`-l`, `-t`, `-v`, `-p`, `-c`, `-Z`) write nothing."""
    archive, directory = None, ""
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "-d" and position + 1 < len(args):
            directory = args[position + 1]
            position += 2
            continue
        if arg == "-x":
            break  # the names it leaves out follow: what it writes is a subset of every member
        if arg.startswith("-") and set(arg[1:]) & set("ltvpcZ"):
            return []
        if not arg.startswith("-") and archive is None:
            archive = arg
        position += 1
    if archive is None:
        return []
    return [os.path.join(directory, name) for name in _zip_members(cwd / archive)]


# -- reading -----------------------------------------------------------------------------


def _patch_names(patch: str, cwd: Path, strip: int | None, patch_in: Path | None = None) -> list[str]:
    """The files a patch names, as `patch` or `git apply` with `strip` finds them (None: `patch` with no
    `-p`: a git diff's `a/`/`b/` go, another path stays whole where its folders exist, else its base name)."""
    try:
        with open(cwd / patch, "rb") as file:
            text = file.read(MAX_PATCH_BYTES).decode("utf-8", "surrogateescape")
    except (OSError, ValueError):
        return []
    lines = text.splitlines()
    git_diff = any(line.startswith("diff --git ") for line in lines)
    if strip is None and git_diff:
        strip = 1
    names: list[str] = []
    for line in lines:
        if line.startswith(("--- ", "+++ ")):
            name = _unquoted(line[4:].split("\t", 1)[0].rstrip())
            if name == "/dev/null":
                continue
            name = _stripped(name, strip, patch_in or cwd)
        elif line.startswith(("rename from ", "rename to ", "copy to ")) and git_diff:
            name = _unquoted(line.split(" ", 2)[2])  # a repository path as it is: no a/ or b/ to strip
        else:
            continue
        if name and name not in names:
            names.append(name)
            if len(names) >= _LISTED:
                break
    return names


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


class _Bounded(io.RawIOBase):
    """A file that reads as ended after `limit` bytes: an archive's names are read so far and no further."""

    def __init__(self, file: IO[bytes], limit: int) -> None:
        self._file, self._left = file, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        count = self._file.readinto(view)  # type: ignore[attr-defined]
        self._left -= count or 0
        return count or 0


def _tar_members(archive: Path) -> list[str]:
    import tarfile  # here, not at the top: the hook's every Bash call reads this module, few unpack

    names: list[str] = []
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=io.BufferedReader(_Bounded(raw, MAX_ARCHIVE_BYTES)),
                                                       mode="r|*") as tar:
            for member in tar:
                if not member.isdir():
                    names.append(member.name.lstrip("/").removeprefix("./"))
                if len(names) >= _LISTED:
                    break
    except (OSError, tarfile.TarError, EOFError, ValueError):
        pass  # what was read so far (nothing, for no archive)
    return names


def _zip_members(archive: Path) -> list[str]:
    import zipfile

    try:
        with zipfile.ZipFile(archive) as bundle:
            return [name.lstrip("/") for name in bundle.namelist() if not name.endswith("/")][:_LISTED]
    except (OSError, zipfile.BadZipFile, ValueError):
        return []
