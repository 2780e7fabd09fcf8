"""The git operations sandboxes need: loomtui's own view of an agent's worktree.

The runner itself (`Git`: argv only, C locale, one-line errors) is `loomtui.gitcmd`,
so the layers below execution run git the same way; its names are re-exported here.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Final

from loomtui.errors import listed, quoted
from loomtui.gitcmd import (
    MERGE_TREE_MIN_VERSION,
    Git,
    GitFailed,
    GitResult,
    RawResult,
    default_excludes_file,
    excludes_files,
    first_line,
    git_version,
)
from loomtui.limit_values import too_large_said
from loomtui.repo import DISTRUSTING_GIT_CONFIG

__all__ = ["MERGE_TREE_MIN_VERSION", "AgentTree", "Git", "GitFailed", "GitResult", "RawResult", "first_line",
           "git_version"]


@functools.lru_cache(maxsize=16)
def repository_excludes_file(common_dir: Path) -> str:
    """The ignore file of a plain worktree of this repository: the last `core.excludesFile` of the
    system, global or repository config, else git's default. Not a worktree's own setting: with
    `GIT_DIR` at the common dir git reads the main checkout's `config.worktree`, where `hook install`
    points it at a file that also lists that checkout's hook settings; naming one of those in an
    exclude pathspec then fails `git add` ("paths are ignored"). Read once per process."""
    values = [value for scope, value in excludes_files(common_dir) if scope != "worktree"]
    return (values[-1] if values else "") or default_excludes_file()


LISTED_ADD_MAX: Final = 64
"""Past this many changed paths a snapshot adds the whole tree: git matches each path given against every
entry (1,000 paths in a 20,000-file tree: 204 ms, where adding it all takes 51; 60,000 deleted: 37 s)."""
UNKNOWN_SIZE: Final = -1
"""A file's size in `AgentTree.too_large` when it could not be read."""
FileStamp = tuple[int, int, int]
"""A worktree file as `AgentTree` sized it: (size, inode, change time in ns)."""
REFUSED_MAX: Final = 16
"""How many files git refuses to read (see `_REFUSED`) a snapshot leaves out, one `add` each, before it fails."""
_REFUSED: Final = re.compile(r"^(?:fatal|error): ((?:BOM is (?:prohibited|required) in|failed to encode) '(.+)'"
                             r"(?: if encoded as | from ).*)$", re.MULTILINE)
"""git's refusal of one file, which fails the whole `add`: its content does not convert as the `.gitattributes`
of the change (which the agent writes) say (`working-tree-encoding`)."""


def _file_or_link(path: Path) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISLNK(mode)


class AgentTree:
    """loomtui's own view of an agent's worktree, from outside the sandbox.

    An agent can write its worktree's git admin dir (HEAD, index, `config.worktree`,
    a `.git` file pointing anywhere), so git run *in* the worktree would read the
    agent's config and run its fsmonitor or hooks outside the sandbox. Here git is
    told exactly where the repository is (`GIT_DIR` = the common dir, which the
    agent cannot write under isolation), where the files are (`GIT_WORK_TREE`), and
    to use an index only loomtui writes; HEAD is never read, only the sandbox's
    branch ref. Hooks, fsmonitor and the untracked cache are forced off.
    """

    def __init__(self, common_dir: Path, worktree: Path, index: Path, managed: tuple[str, ...] = (),
                 largest_file: int | None = None) -> None:
        self.common_dir = Path(common_dir)
        self.worktree = Path(worktree)
        self.index = Path(index)  # loomtui's own, outside anything the agent can write
        self.managed = managed  # files loomtui itself keeps in the worktree: never part of the work
        self.largest_file = largest_file  # `limits.file_size`: larger files are left out (None: none are)
        self.too_large: list[tuple[str, int]] = []
        """What the last snapshot left out as larger than `largest_file`: (path, size)."""
        self.refused: list[tuple[str, str]] = []
        """What the last snapshot left out because git would not read it: (path, git's reason)."""
        self.repo = Git(self.common_dir)
        self._tree = Git(self.worktree)

    def _env(self, index: Path) -> dict[str, str]:
        return {"GIT_DIR": str(self.common_dir), "GIT_WORK_TREE": str(self.worktree),
                "GIT_INDEX_FILE": str(index), "GIT_OPTIONAL_LOCKS": "0"}

    def _git(self, index: Path, *args: str) -> str:
        excludes = ("-c", f"core.excludesFile={repository_excludes_file(self.common_dir)}")
        return self._tree.out(*DISTRUSTING_GIT_CONFIG, *excludes, *args, env=self._env(index))

    def snapshot(self, base: str) -> tuple[str, list[str]]:
        """The worktree as a tree (untracked files included), and the paths that differ from `base`.

        `base` is a commit id. loomtui's index keeps its stat cache between calls (with
        the index's own time, which git's racy-entry check reads), so unchanged files are
        not read again; it is replaced atomically, so two callers at once each get a whole answer.
        A new or changed file larger than `largest_file` is left out (as `too_large`): git would read
        all of it, outside the sandbox's limits (a sparse 3 GB file costs nothing to make).
        """
        try:
            self.index.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".index-", dir=self.index.parent)
            kept = True
        except OSError:
            # loomtui's folder is read-only here (a reader's mount, a colleague's repository): the snapshot is
            # made in a scratch index of its own and not kept (`conflicts` ended in an internal error).
            fd, name = tempfile.mkstemp(prefix="loomtui-index-")
            kept = False
        os.close(fd)
        scratch = Path(name)
        try:
            cached = self.index.is_file()
            if cached:
                # With its time: git trusts an entry's stat data only if the file changed before the index
                # was written. A copy stamped now made a file written in the same second as the last
                # snapshot (same size) look unchanged, and a change was missed.
                shutil.copy2(self.index, scratch)
            else:
                scratch.unlink()
                self._git(scratch, "read-tree", base)
            # Listed for the size check; without a limit one `add` of the whole tree is quicker than a listing.
            changed_here = self._changed(scratch) if self.largest_file is not None else None
            sized = self._sizes(changed_here or [])
            self.too_large = self._past_limit(sized)
            left_out = (*self.managed, *(path for path, _size in self.too_large))
            added: set[str] | None = None  # what `add` took: None for the whole tree
            listed = [p for p in changed_here or [] if not self._is_left_out(p, left_out)]
            if cached and changed_here is not None and len(listed) <= LISTED_ADD_MAX:
                # The listing walked the tree already: `add` takes just what it found (a second walk of a
                # 20,000-file tree: 97 ms a snapshot where this takes 71), and nothing when nothing is new.
                added = set(listed) if self._add_listed(scratch, listed) else None
            # A fresh index (its stat data is empty: the whole tree is added to fill it), no listing, more paths
            # than LISTED_ADD_MAX, or a listed one gone: the whole tree.
            self.refused = []
            if added is None:
                self.refused = self._add_all(scratch, left_out)
            changed, new_here, gone = self._changed_blobs(scratch, base)
            kept_tracked = self._keep_tracked(scratch, gone, (*left_out, *(p for p, _why in self.refused)))
            if kept_tracked:
                if added is not None:
                    added |= kept_tracked
                changed, new_here, gone = self._changed_blobs(scratch, base)
            for path in self._drop_ignored(scratch, changed, new_here):
                del changed[path]
            # loomtui's own files (the slice written as AGENTS.md) that a snapshot taken before they were named
            # managed put in the kept index: as the base has them, never the agent's work (they were committed).
            stale = [path for path in changed if self._is_left_out(path, self.managed)]
            if stale:
                self._as_in(scratch, base, stale)
                for path in stale:
                    del changed[path]
            if self.largest_file is not None:
                # A file can grow between its size check and git's read of it (an agent running as the app
                # looks): what git took past the limit is put back too, never left in loomtui's index.
                taken = self._too_large_blobs({p: blob for p, blob in changed.items() if added is None or p in added})
                self.too_large = sorted({*self.too_large, *self._grew(taken, sized)})
            if self.unsaved:  # as `base` has them: left out, dropped, a file the agent had committed was deleted
                self._as_in(scratch, base, self.unsaved)
            tree = self._git(scratch, "write-tree").strip()
            if kept:
                os.replace(scratch, self.index)
        finally:
            scratch.unlink(missing_ok=True)
            # A git that died on it (a file truncated as it read it) leaves its lock behind, one a snapshot.
            scratch.with_name(scratch.name + ".lock").unlink(missing_ok=True)
        put_back = set(self.unsaved)
        return tree, [p for p in changed if p not in put_back]

    @property
    def unsaved(self) -> list[str]:
        """The paths the last snapshot left out (too large, or refused by git), in the worktree still."""
        return sorted({*(path for path, _size in self.too_large), *(path for path, _why in self.refused)})

    def _changed_blobs(self, index: Path, base: str) -> tuple[dict[str, str], set[str], list[str]]:
        """Each path of `index` that differs from `base`, with its blob there ('' for a deletion or a gitlink),
        in git's order; those of them `base` does not have; and those `index` does not have."""
        raw = self._git(index, "diff-index", "--cached", "--no-renames", "-z", base, "--")
        fields = raw.split("\0")
        found: dict[str, str] = {}
        new_here: set[str] = set()
        gone: list[str] = []
        for header, path in zip(fields[0::2], fields[1::2], strict=False):
            if not path:
                continue
            _old_mode, new_mode, _old, new, status = header.lstrip(":").split(" ")
            found[path] = new if new_mode in ("100644", "100755", "120000") and new.strip("0") else ""
            if status == "A":
                new_here.add(path)
            elif status == "D":
                gone.append(path)
        return found, new_here, gone

    def _keep_tracked(self, index: Path, gone: list[str], left_out: tuple[str, ...]) -> set[str]:
        """Put in `index` the files `base` tracks that it lacks while the worktree has them: ones a `.gitignore`
        ignores, which `add --all` never takes into an index begun from an older commit (an agent's committed
        `tests/data/access.log` under `*.log` was saved as deleted, "work left uncommitted"). Those put in."""
        # A file or a link only: a folder where the file was (`config` made `config/db.secret`) is new work, its
        # ignored files no one's to add.
        missing = [path for path in gone
                   if not self._is_left_out(path, left_out) and _file_or_link(self.worktree / path)]
        if not missing:
            return set()
        too_large = self._past_limit(self._sizes(missing))  # as any other file: left out, said, kept in the worktree
        self.too_large = sorted({*self.too_large, *too_large})
        wanted = [path for path in missing if path not in {path for path, _size in too_large}]
        if not wanted:
            return set()
        listed = ("\0".join(wanted) + "\0").encode("utf-8", "surrogateescape")
        done = self._tree.raw(*DISTRUSTING_GIT_CONFIG, "--literal-pathspecs", "add", "--force",
                              "--pathspec-from-file=-", "--pathspec-file-nul", env=self._env(index), data=listed)
        if done.status != 0:
            raise GitFailed(f"git add failed: {first_line(done.err.decode('utf-8', 'replace'))}")
        return set(wanted)

    def _drop_ignored(self, index: Path, changed: dict[str, str], new_here: set[str]) -> set[str]:
        """Take out of `index` the files new since the base that a `.gitignore` of the change now ignores (they
        were added by an earlier snapshot, before it did): what a fresh index would hold. The ones taken out."""
        if not any(path == ".gitignore" or path.endswith("/.gitignore") for path in changed):
            return set()
        listed = self._git(index, "ls-files", "--cached", "--ignored", "--exclude-standard", "-z")
        dropped = {path for path in listed.split("\0") if path in new_here}
        if dropped:
            done = self._tree.raw(*DISTRUSTING_GIT_CONFIG, "update-index", "--force-remove", "-z", "--stdin",
                                  env=self._env(index),
                                  data=("\0".join(sorted(dropped)) + "\0").encode("utf-8", "surrogateescape"))
            if done.status != 0:
                raise GitFailed(f"git update-index failed: {first_line(done.err.decode('utf-8', 'replace'))}")
        return dropped

    def _too_large_blobs(self, blobs: dict[str, str]) -> list[tuple[str, int]]:
        """Those of `blobs` (path: blob id) larger than `largest_file`."""
        named = {path: blob for path, blob in blobs.items() if blob}
        if not named or self.largest_file is None:
            return []
        sizes = self.repo.object_sizes(list(dict.fromkeys(named.values())))
        found = [(path, sizes.get(blob, ("", UNKNOWN_SIZE))[1]) for path, blob in named.items()]  # missing: unsized
        return [(path, size) for path, size in found if size > self.largest_file or size == UNKNOWN_SIZE]

    def _add_all(self, index: Path, left_out: tuple[str, ...]) -> list[tuple[str, str]]:
        """`git add` of the whole tree but `left_out`; and what git refused to read, left out too (one file it
        cannot convert fails the whole `add`: the rest of the work would not be saved): (path, git's reason)."""
        refused: list[tuple[str, str]] = []
        excludes = ("-c", f"core.excludesFile={repository_excludes_file(self.common_dir)}")
        while True:
            skipped = (*left_out, *(path for path, _why in refused))
            done = self._tree.run(*DISTRUSTING_GIT_CONFIG, *excludes, "add", "--all", "--", ".",
                                  *(f":(exclude,literal){m}" for m in skipped), env=self._env(index))
            if done.status == 0:
                return refused
            found = _REFUSED.search(done.err)
            if found is None or found[2] in skipped or len(refused) == REFUSED_MAX:
                said = found[1] if found else first_line(done.err or done.out)
                more = f" (and {len(refused)} other files git would not read)" if refused else ""
                raise GitFailed(f"git add failed: {said}{more}")
            refused.append((found[2], found[1]))

    def _add_listed(self, index: Path, paths: list[str]) -> bool:
        """`git add` of `paths` only (new, changed or deleted), without walking the rest of the tree; False when
        git refused (a file listed is gone since: git refuses a path that names nothing)."""
        if not paths:
            return True
        listed = ("\0".join(paths) + "\0").encode("utf-8", "surrogateescape")
        excludes = ("-c", f"core.excludesFile={repository_excludes_file(self.common_dir)}")
        done = self._tree.raw(*DISTRUSTING_GIT_CONFIG, *excludes, "--literal-pathspecs", "add", "--all",
                              "--pathspec-from-file=-", "--pathspec-file-nul", env=self._env(index), data=listed)
        return done.status == 0

    @staticmethod
    def _is_left_out(path: str, left_out: tuple[str, ...]) -> bool:
        """`path` is one of `left_out`, or inside one (a folder such as aider's tags cache)."""
        return any(path == out or path.startswith(out.rstrip("/") + "/") for out in left_out)

    def _changed(self, index: Path) -> list[str]:
        """Paths new, changed or deleted in the worktree against `index` (its stat data, else content)."""
        listed = self._git(index, "ls-files", "--modified", "--others", "--exclude-standard", "-z")
        return list(dict.fromkeys(p for p in listed.split("\0") if p))  # a changed file is listed twice

    def _sizes(self, paths: list[str]) -> dict[str, FileStamp]:
        """Each of `paths` in the worktree now: its size, inode and change time (UNKNOWN_SIZE where it cannot be
        read; one gone is left out: git sees that too), loomtui's own files aside."""
        if self.largest_file is None or not paths:
            return {}
        found: dict[str, FileStamp] = {}
        folder = os.open(self.worktree, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for path in paths:
                if self._is_left_out(path, self.managed):
                    continue
                try:  # relative to the worktree, as git reads it: the whole path may pass PATH_MAX
                    info = os.lstat(path, dir_fd=folder)
                    found[path] = (info.st_size, info.st_ino, info.st_ctime_ns)
                except FileNotFoundError:
                    continue
                except OSError:
                    found[path] = (UNKNOWN_SIZE, 0, 0)  # one git can read and loomtui cannot size is not saved
        finally:
            os.close(folder)
        return found

    def _past_limit(self, sizes: dict[str, FileStamp]) -> list[tuple[str, int]]:
        """Those of `sizes` larger than `largest_file` (or not sized), as (path, size)."""
        limit = self.largest_file
        return [] if limit is None else sorted((path, stamp[0]) for path, stamp in sizes.items()
                                               if stamp[0] > limit or stamp[0] == UNKNOWN_SIZE)

    def _grew(self, taken: list[tuple[str, int]], sized: dict[str, FileStamp]) -> list[tuple[str, int]]:
        """Those of `taken` (git stored them past the limit) but a file sized before the add and untouched since
        (size, inode and change time as they were: a write between, even one put back, moves the change time,
        which no one can set). A filter or an encoding (`working-tree-encoding`) stores a file larger than it
        is, and that alone is no reason to leave it out."""
        now = self._sizes([path for path, _size in taken])
        return [(path, size) for path, size in taken
                if path not in sized or now.get(path) != sized[path] or sized[path][0] == UNKNOWN_SIZE]

    def _as_in(self, index: Path, base: str, paths: list[str]) -> None:
        """Put `paths` in `index` as `base` has them (gone where it has none)."""
        listed = self._git(index, "ls-tree", "-z", base, "--", *(f":(literal){p}" for p in paths))
        kept = {record.partition("\t")[2]: record for record in listed.split("\0") if record}
        lines = [kept.get(path, f"0 {'0' * len(base)}\t{path}") for path in paths]  # mode 0: removed
        done = self._tree.raw(*DISTRUSTING_GIT_CONFIG, "update-index", "-z", "--index-info", env=self._env(index),
                              data=("\0".join(lines) + "\0").encode("utf-8", "surrogateescape"))
        if done.status != 0:
            raise GitFailed(f"git update-index failed: {first_line(done.err.decode('utf-8', 'replace'))}")

    def unsaved_said(self) -> str:
        """What the last snapshot left out (too large, refused by git), for a person ('' for nothing)."""
        said = []
        if self.too_large and self.largest_file is not None:
            said.append(too_large_said(self.too_large, self.largest_file))
        if self.refused:
            files = listed([f"{quoted(path)} ({why})" for path, why in self.refused])
            said.append(f"git cannot store {files} as the .gitattributes of the change ask")
        return "; ".join(said)

    def ignored_paths(self) -> list[str]:
        """What git ignores in the worktree (build output, logs, local settings), a folder once with its
        trailing slash: what a save leaves out. Read against loomtui's index, so after a snapshot."""
        if not self.index.is_file():
            return []
        out = self._git(self.index, "ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z")
        return [p for p in out.split("\0") if p and p.rstrip("/") not in self.managed]

    def dirty_paths(self, branch: str) -> list[str]:
        """Paths whose content in the worktree differs from the tip of `branch`."""
        tip = self.repo.resolve_commit(f"refs/heads/{branch}")
        if tip is None:
            raise GitFailed(f"branch {branch} does not exist")
        return self.snapshot(tip)[1]

    def commit_all(self, branch: str, message: str, identity: tuple[str, ...] = (), author: str = "") -> str | None:
        """Commit the worktree as it is onto `branch` (compare-and-swap); None when nothing changed.
        `author`: the author's e-mail (the task's author; else git's own identity).

        Plumbing only (`commit-tree`, `update-ref`), so no hook of any kind runs.
        """
        ref = f"refs/heads/{branch}"
        tip = self.repo.resolve_commit(ref)
        if tip is None:
            raise GitFailed(f"branch {branch} does not exist")
        tree, changed = self.snapshot(tip)
        if not changed:
            return None
        commit = self.repo.out(*DISTRUSTING_GIT_CONFIG, *identity, "commit-tree", tree, "-p", tip, "-m", message,
                               env={"GIT_AUTHOR_EMAIL": author} if author else None).strip()
        self.repo.out("update-ref", "-m", "loomtui: save the work an agent left", ref, commit, tip)
        return commit

    def reset_index(self, worktree_index: Path, commit: str) -> None:
        """Point the worktree's own index at `commit` (after a commit made from outside), so
        `git status` there agrees; git replaces the file by rename, never writing through a link.
        What was marked skip-worktree stays so: loomtui's own files there (the agent's context, its
        hook settings) read as modified again, and the next `git add -A` committed them."""
        listed = self._git(worktree_index, "ls-files", "-v", "-z") if worktree_index.is_file() else ""
        hidden = [entry[2:] for entry in listed.split("\0") if entry.startswith("S ")]
        self._git(worktree_index, "read-tree", commit)
        kept = [path for path in self._git(worktree_index, "ls-files", "-z", "--", *hidden).split("\0") if path] \
            if hidden else []
        if kept:
            self._git(worktree_index, "update-index", "--skip-worktree", "--", *kept)
