"""What an isolated agent's git may read: the objects the repository's branches, tags and remotes
reach, and its own branch's; never the shared object store whole.

The shared store holds more than the history: what the person staged (`git add` writes the blob) or
stashed, every other sandbox's commits (their supervisors bring them in), amended and reset commits
until a gc. Read as an alternate, it let an agent `git cat-file --batch-all-objects` its way to all of
them. So an agent reads two stores instead, both written outside it, by its supervisor:

- the repository's published store (`.git/loom/published-objects`, one for every sandbox): the objects
  the public refs reach (refs/heads but the sandboxes' `loom/`, refs/tags, refs/remotes), packed as a
  fetch packs them, and topped up with what the refs gained when a sandbox starts (under a lock). When
  a commit it holds is no longer public (history rewritten to purge a secret, a branch deleted), the
  next start packs a new generation of it from the refs as they are; a generation no sandbox's store
  names any more is removed;
- the sandbox's own (`sandboxes/ID/git/seen-objects`, whose alternate is the published one): what its
  branch reaches beyond those (a commit loomtui saved its leftovers in, a merge of the target made in
  the worktree).

The price: the published store is a second copy of the public history on disk, packed once and then
only what is new; its first pack takes about as long as a local clone.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from loomtui.execution.gitops import Git
from loomtui.files import write_atomically

PUBLIC_REFS: Final = ("refs/heads", "refs/tags", "refs/remotes")
SANDBOX_BRANCHES: Final = "refs/heads/loom/"
"""The sandboxes' branches: each agent sees its own (from its own store), no other."""

PACK_TIMEOUT_S: Final = 600.0
"""How long one top-up may take at least; a larger history gets longer (`pack_timeout`)."""

PACK_RATE_FLOOR: Final = 20 << 20
"""Bytes of the repository's packs a first pack gets a second for, at the least: Textual's 479 MiB took
2.5 s (190 MiB/s); a slow disk is given ten times longer before the start fails."""

_CURRENT: Final = "current"
"""Under the published root: the name of the generation new sandboxes read (`g1`, `g2`, ...)."""

_TIPS: Final = "loom-tips"
"""In a store: the commits (and tags) whose objects it holds, one per line."""

_EMPTY_PACK: Final = 32
"""The size of a pack without objects (header and checksum): pack-objects writes one when nothing is new."""


def public_tips(repo: Git) -> list[str]:
    """The objects the public refs name: every branch but the sandboxes', every tag and remote branch."""
    listed = repo.out("for-each-ref", "--format=%(objectname) %(refname)", *PUBLIC_REFS)
    return sorted({sha for sha, _, name in (line.partition(" ") for line in listed.splitlines())
                   if sha and not name.startswith(SANDBOX_BRANCHES)})


def publish(repo: Git, objects: Path, root: Path) -> tuple[Path, list[str]]:
    """Top the published store (its current generation under `root`) up with what the public refs reach
    in the repository's `objects`; that store, and the public tips."""
    tips = public_tips(repo)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        current = root / _current_generation(root)
        held = _held(current)
        # Held tips that are all still tips are public: the check (two git runs) only when one moved.
        if held and not held <= set(tips) and _no_longer_public(repo, held, tips):
            current = root / f"g{_generation_number(current.name) + 1}"
            write_atomically(root / _CURRENT, current.name)
        _make_store(current)
        _pack(repo, objects, current, tips, boundary=())
    return current, tips


def publishing(root: Path) -> bool:
    """Whether a supervisor is packing the published store under `root` now (holds its lock): a first
    pack of a large history takes as long as a local clone, and its sandbox's agent waits for it."""
    try:
        fd = os.open(root / ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def prune_generations(root: Path, in_use: set[Path]) -> None:
    """Remove the published store's past generations that no sandbox's store names (`in_use`)."""
    with _locked(root / ".lock"):
        current = root / _current_generation(root)
        for generation in root.glob("g*"):
            if generation != current and generation not in in_use and generation.is_dir():
                shutil.rmtree(generation, ignore_errors=True)


def _current_generation(root: Path) -> str:
    try:
        name = (root / _CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return "g1"
    return name if _generation_number(name) else "g1"


def _generation_number(name: str) -> int:
    return int(name[1:]) if name.startswith("g") and name[1:].isdigit() else 0


def _no_longer_public(repo: Git, held: set[str], tips: list[str]) -> bool:
    """Whether a commit the store was packed for is gone or no public ref reaches it any more."""
    found = _existing(repo, sorted(held))
    if len(found) < len(held):
        return True  # gone: rewritten away, then collected
    commits = [name for name, kind in found if kind == "commit"]
    if not commits:
        return False
    beyond = repo.feed("rev-list", "--max-count=1", "--stdin",
                       data="".join([*(f"{c}\n" for c in commits), *(f"^{t}\n" for t in tips)]).encode())
    return bool(beyond.strip())


def show_branch(repo: Git, objects: Path, seen: Path, published: Path, tip: str | None, public: list[str]) -> None:
    """Make `seen` (the sandbox's own store, its alternate `published`) hold what `tip` reaches beyond
    the `public` tips."""
    _make_store(seen)
    alternates = seen / "info" / "alternates"
    if not alternates.is_file() or alternates.read_text(encoding="utf-8") != f"{published}\n":
        write_atomically(alternates, f"{published}\n")
    if tip is not None:
        _pack(repo, objects, seen, [tip], boundary=public)


def pack_timeout(objects: Path) -> float:
    """How long packing from the object store `objects` may take: a monorepo's first pack (tens of GiB)
    outlasted a fixed 10 minutes, and its every start failed."""
    size = 0
    for pack in (objects / "pack").glob("*.pack"):
        try:
            size += pack.stat().st_size
        except OSError:
            continue
    return PACK_TIMEOUT_S + size / PACK_RATE_FLOOR


def _pack(repo: Git, objects: Path, store: Path, tips: list[str], boundary: Sequence[str]) -> None:
    """Pack into `store` what `tips` reach beyond what it holds already (and beyond `boundary`)."""
    held = _held(store)
    new = [tip for tip in tips if tip not in held]
    if not new:
        return
    known = [name for name, _ in _existing(repo, [*held, *boundary])]  # one gone since bounds nothing
    revs = "".join(f"{tip}\n" for tip in new) + "".join(f"^{tip}\n" for tip in known)
    # Run as if `store` were the repository's objects (the real ones its alternate): git makes the pack
    # in its object directory, then renames it into place, which must be on the same filesystem.
    # A partial clone lacks some objects by design: they are missing for the agent too (never fetched here).
    env = {"GIT_OBJECT_DIRECTORY": str(store), "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects)}
    name = repo.feed("pack-objects", "--revs", "-q", "--missing=allow-any", str(store / "pack" / "pack"),
                     data=revs.encode(), env=env, timeout=pack_timeout(objects)).decode().strip()
    pack = store / "pack" / f"pack-{name}.pack"
    if name and pack.is_file() and pack.stat().st_size <= _EMPTY_PACK:
        pack.unlink()
        pack.with_suffix(".idx").unlink(missing_ok=True)
    write_atomically(store / _TIPS, "".join(f"{tip}\n" for tip in sorted({*held, *new})))


def _held(store: Path) -> set[str]:
    try:
        return set((store / _TIPS).read_text(encoding="utf-8").split())
    except OSError:
        return set()


def _existing(repo: Git, names: list[str]) -> list[tuple[str, str]]:
    """Those of `names` that are objects of the repository, each with its type."""
    if not names:
        return []
    found = repo.feed("cat-file", "--batch-check=%(objectname) %(objecttype)",
                      data="".join(f"{n}\n" for n in names).encode())
    return [(name, kind) for name, _, kind in (line.partition(" ") for line in found.decode().split("\n"))
            if name and kind != "missing"]


def _make_store(store: Path) -> None:
    for folder in (store / "pack", store / "info"):
        folder.mkdir(parents=True, exist_ok=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Held by one supervisor at a time: two packing the same tips would pack them twice."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
