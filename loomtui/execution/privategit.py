"""An isolated agent's git writes, kept private and copied back by its supervisor.

Inside bubblewrap the agent may not write the shared object store or other
sandboxes' branches, so it commits into its own object directory and its own copy
of `refs/heads/loom` (see isolation.PrivateGit). Its supervisor, outside the
sandbox, prepares those before the agent starts and syncs them back while it runs
and when it ends: the objects its branch needs are packed and indexed into the
shared store as a fetch would do it (each one hashed and checked, never a file
copied), and the real branch moves with a compare-and-swap `update-ref`.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from loomtui.errors import LoomError
from loomtui.execution import seen_objects
from loomtui.execution.gitops import Git
from loomtui.execution.isolation import PrivateGit
from loomtui.files import remove_tree
from loomtui.limit_values import too_large_said, too_large_together

_OBJECT_ID = re.compile(rb"[0-9a-f]{40}")
NAMES_READ_MAX = 16 << 20
"""How much of `rev-list --objects` is read to name a file too large to bring in."""
IMPORT_TIMEOUT_S = 300.0
"""How long one step of bringing an agent's objects in may take."""
TREE_PATHS_ADDED_MAX = 200_000
"""How many more paths than its branch had an agent's commit may bring (a whole vendored SDK is a few ten
thousand; git spent 4 minutes on a snapshot of a tree of a million paths of a few objects)."""
PATHS_COUNTED_MAX = 10_000_000
"""The most paths of a sandbox's base counted to compare with."""
NEW_TREES_COUNTED_MAX = 2_000
"""The most trees of new commits one bring-in looks at (each is listed whole): past it, none comes in."""
TREES_REMEMBERED = 4_096
"""How many trees found within the limit are remembered (the oldest go first): one brought in again is not
listed again."""
_refused: dict[tuple[str, int | None], str] = {}
"""Tips whose commits were too large to bring in under a limit, in this process, and why: not checked (nor said)
again."""
_base_paths: dict[str, int] = {}
"""Each sandbox base's paths, counted once in this process."""
_trees_within: dict[str, None] = {}
"""Trees of new commits found within the limit (in the order looked at): not listed again."""
BEYOND_THE_BRANCHES = ("--not", "--single-worktree", "--all")
"""What the repository's refs reach already. `--single-worktree`: `--all` alone reads every worktree's HEAD, and a
worktree being added meanwhile (its `commondir` still empty) failed the read, and the agent's commits stayed out."""


def prepare(private: PrivateGit, root: Path, common_dir: Path, branch: str, published: Path) -> Path:
    """Create the private directories, the objects the agent may read (the published store under
    `published` topped up, its branch's own: seen_objects), and seed the agent's copy of its branch.
    Returns the published store the agent reads (its current generation)."""
    for directory in (private.objects, private.refs, private.logs, private.shared, private.alternates.parent,
                      common_dir / "logs" / "refs" / "heads" / Path(branch).parent):  # a mount point
        directory.mkdir(parents=True, exist_ok=True)
    _write_alternates(private)
    repo = Git(root)
    tip = repo.resolve_commit(branch)
    try:
        store, public = seen_objects.publish(repo, common_dir / "objects", published)
        seen_objects.show_branch(repo, common_dir / "objects", private.seen, store, tip, public)
        sandboxes = private.root.parent.parent  # sandboxes/<id>/git
        seen_objects.prune_generations(published, {
            Path(line) for alternates in sandboxes.glob("*/git/seen-objects/info/alternates")
            for line in alternates.read_text(encoding="utf-8", errors="replace").split()})
    except OSError as exc:
        raise LoomError(f"cannot make the objects the agent reads: {exc.strerror or exc}") from None
    if tip is not None:
        set_private_tip(private, branch, tip)
    return store


def set_private_tip(private: PrivateGit, branch: str, tip: str) -> None:
    """Point the agent's copy of its branch at `tip`: a new file renamed over the old name, never a
    write through it. The agent may have made that name a symlink (to `refs/heads/main`, say), and a
    write would follow it out of its directory into the repository's other branches."""
    ref = private.refs / Path(branch).name
    fd, temporary = tempfile.mkstemp(dir=private.refs, prefix=".tip-")  # O_EXCL: no name it planted
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(tip + "\n")
        os.replace(temporary, ref)  # replaces a symlink itself, not what it points at
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise LoomError(f"cannot set the sandbox's copy of {branch}: {exc.strerror or exc}") from None


def _write_alternates(private: PrivateGit) -> None:
    """The private store's alternate is the (outside: empty) mount point of the shared one, and
    nothing else: git follows alternates when the supervisor reads the private store, so an
    entry the agent could choose would let it name objects from anywhere.

    Every name below the private `objects` folder is the agent's to plant: `info` moved aside and
    made a symlink to another repository's `objects/info` had this write rewrite that repository's
    alternates (corrupting it), and a FIFO at `alternates` hung the supervisor and every `sandbox
    list` after it. So no name is followed: the folders are opened with O_NOFOLLOW, and whatever is
    not a real folder or a regular file there is removed and made again.
    """
    wanted = f"{private.shared}\n".encode()
    objects = os.open(private.objects, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        info = _own_folder_fd(objects, "info")
        try:
            handle = _own_file_fd(info, "alternates")
            try:
                current = os.read(handle, 65536)
                if current != wanted:
                    # In place, never by rename: inside the sandbox this file is a read-only bind of its inode.
                    os.ftruncate(handle, 0)
                    os.pwrite(handle, wanted, 0)
            finally:
                os.close(handle)
        finally:
            os.close(info)
    finally:
        os.close(objects)


def _own_folder_fd(parent: int, name: str) -> int:
    """The real folder `name` in the folder `parent` (a descriptor), opened; anything else of that name
    (a symlink, a file, a FIFO) is removed and the folder made."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError:  # a symlink (ELOOP), a file or FIFO (ENOTDIR), nothing (ENOENT)
        _remove(parent, name)
        os.mkdir(name, 0o755, dir_fd=parent)
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)


def _own_file_fd(parent: int, name: str) -> int:
    """The regular file `name` in the folder `parent`, opened to read and write (made when missing);
    anything else of that name is removed first. Never blocks: a FIFO opened non-blocking is seen
    for what it is."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        handle = os.open(name, flags, 0o644, dir_fd=parent)
    except OSError:  # a symlink (ELOOP), a folder (EISDIR), a socket
        _remove(parent, name)
        handle = os.open(name, flags | os.O_EXCL, 0o644, dir_fd=parent)
    if stat.S_ISREG(os.fstat(handle).st_mode):
        os.set_blocking(handle, True)
        return handle
    os.close(handle)
    _remove(parent, name)
    return os.open(name, flags | os.O_EXCL, 0o644, dir_fd=parent)


def _remove(parent: int, name: str) -> None:
    """Remove `name` from the folder `parent`, whatever it is, never following a link out of it."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        # Through this process's handle on the folder (what `rm` sees as its own /proc/self is its own); rm
        # never follows a link, and walks any depth (shutil's recursion did not: an agent's folder chain).
        remove_tree(Path(f"/proc/{os.getpid()}/fd/{parent}", name))
    else:
        os.unlink(name, dir_fd=parent)


class TooLargeToBringIn(LoomError):
    """The agent's commits carry a file past `limits.file_size` (or too many near it): left out. `again`: the
    same tip was refused before in this process (said already)."""

    def __init__(self, message: str, *, again: bool = False) -> None:
        super().__init__(message)
        self.again = again


def _import_objects(repo: Git, private: PrivateGit, tip: str, base: str, largest_file: int | None = None) -> None:
    """Bring the objects `tip` needs from the agent's directory into the shared store, verified.

    Never a file copy: the agent wrote those files, and one named for an object it
    does not hold would corrupt the shared store. They are packed and indexed as a
    fetch would be (`index-pack --strict` hashes and checks every object), so only
    well-formed objects under their true names arrive. A blob past `largest_file` (the agent
    committed a sparse 3 GB file: its object costs it 3 MB) is never packed, nor a commit whose tree holds many
    more paths than the sandbox's `base`: TooLargeToBringIn.
    """
    _write_alternates(private)
    reading = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(private.objects)}
    # Bounded: git reads files the agent made, and one of them a FIFO would hold it (and this) for ever. Ids
    # only: with their paths a tree 2,000 folders deep made 100 KB of objects 500 MB of output here.
    wanted = repo.feed("rev-list", "--objects", "--no-object-names", tip, *BEYOND_THE_BRANCHES, data=b"", env=reading,
                       timeout=IMPORT_TIMEOUT_S)
    if not wanted.strip():
        return
    _refuse_many_paths(repo, tip, base, reading)
    if largest_file is not None:
        _refuse_large_blobs(repo, tip, wanted, reading, largest_file)
    # Through a pipe: the pack held here was the size of everything the agent committed, outside its limits.
    repo.feed_through(("pack-objects", "--stdout", "-q"), ("index-pack", "--stdin", "--strict"), data=wanted,
                      env_first=reading, timeout=IMPORT_TIMEOUT_S)


def _refuse_many_paths(repo: Git, tip: str, base: str, reading: dict[str, str]) -> None:
    """TooLargeToBringIn when a commit `tip` brings (any of them: one in the middle stays in the branch's
    history) has a tree of more than TREE_PATHS_ADDED_MAX paths beyond the sandbox's `base`, a bound for its
    whole life (counted from the branch's last tip, a bomb grew by that much each sync): 16 entries naming one
    tree, six levels deep, are 8 objects of 32 KB and 16.7 million paths, and every git that read the tree (a
    snapshot's `read-tree` and `add`, the gates' export, a diff, a person's `git log --stat`) spent hours and
    gigabytes of memory on them outside the sandbox's limits."""
    if base not in _base_paths:
        _base_paths[base] = _paths_in(repo, base, reading, PATHS_COUNTED_MAX) if base else 0
    allowed = _base_paths[base] + TREE_PATHS_ADDED_MAX
    listed = repo.feed("rev-list", "--no-commit-header", "--format=%H %T", tip, *BEYOND_THE_BRANCHES, data=b"",
                       env=reading, timeout=IMPORT_TIMEOUT_S).decode("ascii", "replace").split()
    commits = dict(zip(listed[0::2], listed[1::2], strict=False))
    if len(set(commits.values())) > NEW_TREES_COUNTED_MAX:
        raise TooLargeToBringIn(f"its commits were not brought in: {len(commits):,} commits at once, more than "
                                f"{NEW_TREES_COUNTED_MAX:,} trees to look at")
    for commit, tree in commits.items():
        if tree not in _trees_within and _paths_in(repo, tree, reading, allowed) > allowed:
            raise TooLargeToBringIn(f"its commits were not brought in: commit {commit[:12]} holds more than "
                                    f"{TREE_PATHS_ADDED_MAX:,} paths more than its base (a few objects can name "
                                    "millions of paths)")
        _trees_within[tree] = None
    while len(_trees_within) > TREES_REMEMBERED:
        del _trees_within[next(iter(_trees_within))]


def _refuse_large_blobs(repo: Git, tip: str, wanted: bytes, reading: dict[str, str], largest_file: int) -> None:
    """TooLargeToBringIn when an object of `wanted` (ids, a line each) is past `largest_file` (a blob, or a
    commit with a 300 MB message), or they come to more than EXPORT_TOTAL_FILES times it together, or one is
    not there to be sized (sizes read from the objects' headers)."""
    ids = [line.decode("ascii") for line in wanted.split(b"\n") if _OBJECT_ID.fullmatch(line)]
    sizes = repo.object_sizes(ids, env=reading, timeout=IMPORT_TIMEOUT_S)
    unsized = next((object_id for object_id in ids if object_id not in sizes), None)
    if unsized is not None:  # "missing" (gone as it was sized): nothing unsized comes in
        raise TooLargeToBringIn(f"its commits were not brought in: object {unsized[:12]} could not be sized")
    too_large = [(f"{sizes[i][0]} {i[:12]}", sizes[i][1]) for i in ids if sizes[i][1] > largest_file]
    if too_large:
        named = _paths_of(repo, tip, reading, {label.split(" ")[1] for label, _size in too_large})
        too_large = [(named.get(label.split(" ")[1], label), size) for label, size in too_large]
        raise TooLargeToBringIn(f"its commits were not brought in: {too_large_said(sorted(too_large), largest_file)}")
    together = too_large_together(sum(sizes[i][1] for i in ids), largest_file, "their objects")
    if together:
        raise TooLargeToBringIn(f"its commits were not brought in: {together}")


def sync(private: PrivateGit, root: Path, branch: str, largest_file: int | None = None, base: str = "") -> str | None:
    """Bring the agent's new commits into the shared store and move its branch; returns the tip. Commits
    carrying a file past `largest_file`, or naming far more paths than the sandbox's `base` commit (else the
    branch's tip), stay out (the branch where it was): TooLargeToBringIn, once a tip."""
    new = _read_ref(private.refs / Path(branch).name)
    repo = Git(root)
    old = repo.resolve_commit(branch) or ""
    if not old:  # deleted (the sandbox removed with its branch): never made again from the agent's ref
        return None
    if new and new != old and _OBJECT_ID.fullmatch(new.encode()):
        if (new, largest_file) in _refused:  # not checked again: the supervisor syncs every beat
            raise TooLargeToBringIn(_refused[new, largest_file], again=True)
        try:
            _import_objects(repo, private, new, base or old, largest_file)
        except TooLargeToBringIn as exc:
            _refused[new, largest_file] = str(exc)
            raise
        except LoomError:
            return old  # objects missing or malformed: the branch stays where it was
        result = repo.run("update-ref", f"refs/heads/{branch}", new, old)
        return new if result.status == 0 else old
    return old


def _paths_of(repo: Git, tip: str, reading: dict[str, str], prefixes: set[str]) -> dict[str, str]:
    """A path for each object whose id starts with one of `prefixes`, in what `tip` brings: read a line at a
    time, at most NAMES_READ_MAX bytes, so a tree thousands of folders deep costs no more (by prefix, as named)."""
    found: dict[str, str] = {}
    read = 0
    with _output(repo, ("rev-list", "--objects", tip, *BEYOND_THE_BRANCHES), reading) as process:
        for line in process.stdout or ():
            read += len(line)
            object_id, _, path = line.rstrip(b"\n").partition(b" ")
            prefix = object_id[:12].decode("ascii", "replace")
            if prefix in prefixes and path:
                found.setdefault(prefix, path.decode("utf-8", "replace"))
            if len(found) == len(prefixes) or read > NAMES_READ_MAX:
                break
    return found


def _paths_in(repo: Git, commit: str, reading: Mapping[str, str], cap: int) -> int:
    """How many paths `commit`'s tree holds, its folders among them, counted up to `cap` + 1 at most (read as
    git lists them: a tree of a few objects can name millions); TooLargeToBringIn when git could not list them
    in time. Folders count: empty ones, 16 to a folder eight deep, are no file to list, and were counted as
    none while every git reading the tree walked 16 ** 8 of them; a count cut short by the time limit was
    taken as the whole."""
    count = 0
    with _output(repo, ("ls-tree", "-r", "-t", "-z", "--name-only", commit), reading) as process:
        assert process.stdout is not None
        while count <= cap and (chunk := process.stdout.read(1 << 16)):
            count += chunk.count(b"\0")
        if count <= cap and process.wait() != 0:
            raise TooLargeToBringIn(f"its commits were not brought in: the tree of {commit[:12]} could not be "
                                    f"listed in {IMPORT_TIMEOUT_S:g} s (a few objects can name millions of paths)")
    return count


@contextlib.contextmanager
def _output(repo: Git, args: tuple[str, ...], reading: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`git ARGS` running, its output to read as far as needed: git is ended when the reader is done, and after
    IMPORT_TIMEOUT_S (it reads files the agent made)."""
    process = repo.pipe(*args, env=reading)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    timer = threading.Timer(IMPORT_TIMEOUT_S, process.kill)
    timer.start()
    try:
        yield process
    finally:
        timer.cancel()
        process.kill()
        process.wait()


def _read_ref(ref: Path) -> str:
    """The commit id the agent's ref file names ('' for anything else): its first bytes only, never through a
    link and never waiting on a FIFO (a sparse 1 GB ref file was read whole, every beat)."""
    try:
        fd = os.open(ref, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, 128).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    finally:
        os.close(fd)
