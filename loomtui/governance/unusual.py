"""What a change holds that no path rule reads: a symbolic link and where it points, a submodule, a file made
executable, Python source declared in an encoding that hides code from a diff, text git shows as binary.

Path rules judge a change by its files' names. A link named `docs/architecture.md` pointing at `.git/config`
passed as a docs edit, auto-approved, and the gates never saw it (they export no links); a `# coding: utf-7`
line made `+AAo-Ledger.post +AD0- ...` in a comment code Python runs. Each is said to a person
(`policy_eval.UNUSUAL_RULE`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, NamedTuple

from loomtui.errors import LoomError, escape_controls
from loomtui.gitcmd import Git, GitFailed

__all__ = ["unusual_entries"]

_LINK: Final = "120000"
_SUBMODULE: Final = "160000"
_EXECUTABLE: Final = "100755"
_ABSENT: Final = "000000"
_CODING: Final = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.MULTILINE)
"""PEP 263's declaration, on one of a file's first two lines."""
_COMPILED: Final = (".pyc", ".pyo", ".so", ".pyd")
"""Files Python imports before, or in place of, the source beside them (an unchecked-hash `.pyc`)."""
_HIDDEN_BREAK: Final = re.compile(rb"\r(?!\n)|\f")
_BINARY_PROBE: Final = 8000
"""Git calls a file binary when a NUL is among its first this many bytes (and its diff shows none of it)."""
_TEXT_WITH_NUL: Final = "{path} is text with a NUL byte in it, which git shows as a binary file: none of it is in " \
    "the diff"
_NOT_TEXT: Final = re.compile(rb"[\x01-\x08\x0e-\x1a\x1c-\x1f\x7f]")
"""Control bytes no text file holds (tab, line breaks, form feed and escape aside)."""


class _Head(NamedTuple):
    """What is kept of a blob read: its first two lines (a link's target whole), whether it breaks lines
    unseen, and whether it is text git shows as binary for a NUL in it."""

    opening: bytes = b""
    hidden_break: bool = False
    text_with_nul: bool = False
MAX_LISTED: Final = 20
MAX_BLOB_READ: Final = 1 << 20
"""The largest link or Python file read whole (a declaration is on its first two lines)."""


def unusual_entries(root: Path, base: str, head: str) -> tuple[str, ...]:
    """What the change from `base` to `head` holds that no path rule reads, one phrase each (at most
    MAX_LISTED, then how many more): `symlink A -> B`, `submodule S at C`, `made executable: F`,
    `F declares coding utf-7`."""
    git = Git(root)
    raw = git.raw("diff", "--raw", "-z", "--no-renames", "--no-abbrev", base, head)
    if raw.status != 0:
        return ()  # said by the facts' other readers
    fields = raw.out.split(b"\0")
    found: list[str] = []
    links: list[tuple[str, str]] = []
    python: list[tuple[str, str]] = []
    written: list[bytes] = []
    for header, name in zip(fields[0::2], fields[1::2], strict=False):
        parts = header.lstrip(b":").split()
        if len(parts) < 5:
            continue
        old_mode, new_mode, new_sha = parts[0].decode(), parts[1].decode(), parts[3].decode()
        path = escape_controls(name.decode("utf-8", "surrogateescape"))
        if new_mode == _LINK:
            links.append((path, new_sha))
        elif new_mode == _SUBMODULE:
            found.append(f"submodule {path} at {new_sha[:12]}")
        elif new_mode == _EXECUTABLE and old_mode != _EXECUTABLE:
            found.append(f"{'made executable' if old_mode != _ABSENT else 'an executable new file'}: {path}")
        if old_mode == _ABSENT and path.endswith(_COMPILED):
            found.append(f"compiled code Python may run in place of its source: {path}")
        if new_mode not in (_LINK, _SUBMODULE, _ABSENT) and not path.endswith(_COMPILED):
            python.append((path, new_sha))  # another suffix: a script, if it starts `#!...python`
        if old_mode == _ABSENT and new_mode != _ABSENT:
            written.append(name)  # added: a file tracked before though ignored now is no one's new doing
    found += [f"committed though .gitignore ignores it: {path}" for path in _ignored(git, written)]
    sizes = _blob_sizes(git, [sha for _path, sha in links + python])
    blobs = _blob_heads(git, [sha for _path, sha in links + python if sizes.get(sha, 0) <= MAX_BLOB_READ])
    for path, sha in links:
        target = escape_controls(blobs.get(sha, _Head()).opening.decode("utf-8", "surrogateescape"))
        found.append(f"symlink {path} -> {target or '?'}")
    for path, sha in python:
        if sizes.get(sha, 0) > MAX_BLOB_READ:
            if _text_with_nul(_blob_start(git, sha)):  # as git judges it: from its first 8,000 bytes
                found.append(_TEXT_WITH_NUL.format(path=path))
            if path.endswith((".py", ".pyw", ".pyi")):
                found.append(f"{path} is {sizes[sha]:,} bytes of Python, its declared encoding not read")
            continue
        opening, hidden_break, text_with_nul = blobs.get(sha, _Head())
        if text_with_nul:  # `# notes\0` then `curl ... | sh`: "Binary files differ" to a lead, run by bash
            found.append(_TEXT_WITH_NUL.format(path=path))
        first, second = (opening.split(b"\n", 2) + [b"", b""])[:2]
        if not path.endswith((".py", ".pyw", ".pyi")) and not (first.startswith(b"#!") and b"python" in first):
            continue  # not Python
        declared = _CODING.search(first + b"\n" + second)
        coding = declared.group(1).decode("ascii", "replace") if declared else ""
        if coding and not _plain_coding(coding):
            found.append(f"{path} declares coding {escape_controls(coding.lower())}")
        if hidden_break:  # `# note\r    x = x * 100`: a comment in a diff, code to Python
            found.append(f"{path} holds a carriage return or form feed Python reads as a line break or an "
                         "indentation, which a diff does not show")
    if len(found) > MAX_LISTED:
        found = [*found[:MAX_LISTED], f"and {len(found) - MAX_LISTED} more"]
    return tuple(found)


def _plain_coding(name: str) -> bool:
    """Whether Python reads source declared in `name` as it shows: UTF-8, ASCII or Latin-1, under any of their
    names (Python reads `utf-8-unix`, Emacs's, as UTF-8)."""
    import codecs

    normal = name.lower().replace("_", "-")
    if normal == "utf-8" or normal.startswith("utf-8-"):
        return True
    if any(normal == latin or normal.startswith(latin + "-") for latin in ("latin-1", "iso-8859-1", "iso-latin-1")):
        return True
    try:
        return codecs.lookup(normal).name in ("utf-8", "ascii", "iso8859-1", "latin-1")
    except LookupError:
        return False  # an encoding Python does not know: the file does not run, said all the same


def _ignored(git: Git, paths: list[bytes]) -> list[str]:
    """Those of `paths` the checkout's `.gitignore` files ignore: force-added (a `__pycache__/*.pyc` that runs
    other code than its `.py` shows, a diff showing only "Bin")."""
    if not paths:
        return []
    done = git.raw("check-ignore", "--no-index", "-z", "--stdin", data=b"\0".join(paths) + b"\0")
    if done.status not in (0, 1):  # 1: none is ignored
        return []
    return [escape_controls(p.decode("utf-8", "surrogateescape")) for p in done.out.split(b"\0") if p]


def _blob_sizes(git: Git, shas: list[str]) -> dict[str, int]:
    """Each blob's size (`Git.object_sizes`: one `cat-file --batch-check`)."""
    try:
        return {sha: size for sha, (kind, size) in git.object_sizes(list(dict.fromkeys(shas))).items()
                if kind == "blob"}
    except GitFailed:
        return {}


def _blob_heads(git: Git, shas: list[str]) -> dict[str, _Head]:
    """Each blob whole (at most MAX_BLOB_READ each), read by `git cat-file --batch` a few at a time:
    thousands of files of a megabyte each were all in memory at once."""
    heads: dict[str, _Head] = {}
    wanted = list(dict.fromkeys(shas))
    for start in range(0, len(wanted), _BLOBS_AT_ONCE):
        heads.update(_batch(git, wanted[start:start + _BLOBS_AT_ONCE]))
    return heads


_BLOBS_AT_ONCE: Final = 32
"""Blobs one `cat-file --batch` reads: at most 32 MiB in memory at once."""


_BINARY_MAGIC: Final = (
    b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"7z\xbc\xaf",
    b"!<arch>\n", b"\xde\x12\x04\x95", b"\x95\x04\x12\xde", b"SQLite format 3\0", b"\x7fELF", b"\0asm", b"wOFF",
    b"wOF2", b"OTTO", b"\0\x01\0\0", b"RIFF", b"II*\0", b"MM\0*", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe",
    b"\xce\xfa\xed\xfe", b"ID3", b"OggS", b"fLaC", b"\x00\x00\x00\x18ftyp", b"\x00\x00\x00\x20ftyp", b"BM")
"""How formats that are binary by design begin (images, archives, gettext catalogues, `ar` and object files,
databases, fonts, media): their metadata (an image's XMP, a catalogue's strings) reads as text with NULs, and
an agent's logo went to a lead as "text with a NUL byte"."""


def _text_with_nul(blob: bytes) -> bool:
    """Whether git shows `blob` as binary for NUL bytes in what is otherwise text: a few NULs among bytes nearly
    all printable (a UTF-16 file, which decodes as such, is not). One Latin-1 `é`, one control byte or a
    byte-order mark in front hid a script bash runs whole (strict UTF-8 and no control byte were asked)."""
    head = blob[:_BINARY_PROBE]
    if b"\0" not in head or head.startswith(_BINARY_MAGIC):
        return False
    if blob.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            blob.decode("utf-16")
            return False
        except UnicodeDecodeError:
            pass
    nuls = head.count(b"\0")
    rest = head.replace(b"\0", b"")
    # Text: NULs are few (UTF-16 without its mark is half NULs) and what is left is nearly all printable (a
    # compiled file or an image is not: control bytes throughout).
    return nuls * 10 <= len(head) and len(_NOT_TEXT.findall(rest)) <= 2 + len(rest) // 100


def _blob_start(git: Git, sha: str) -> bytes:
    """The first _BINARY_PROBE bytes of a blob (a large one is not read whole), b"" when it cannot be read."""
    try:
        process = git.pipe("cat-file", "blob", sha)
    except LoomError:
        return b""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    start = process.stdout.read(_BINARY_PROBE)
    process.kill()
    process.stdout.close()
    process.wait()
    return start


def _batch(git: Git, shas: list[str]) -> dict[str, _Head]:
    try:
        out = git.feed("cat-file", "--batch", data="".join(f"{sha}\n" for sha in shas).encode())
    except GitFailed:
        return {}
    heads: dict[str, _Head] = {}
    position = 0
    while position < len(out):
        end = out.find(b"\n", position)
        if end < 0:
            break
        header = out[position:end].split()
        position = end + 1
        if len(header) != 3 or header[1] != b"blob":
            continue  # `<sha> missing`: nothing follows
        length = int(header[2])
        blob = out[position:position + length]
        heads[header[0].decode()] = _Head(b"\n".join(blob.split(b"\n", 2)[:2]), bool(_HIDDEN_BREAK.search(blob)),
                                          _text_with_nul(blob))
        position += length + 1
    return heads
