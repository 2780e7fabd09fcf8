"""Claim targets to regions: what a region id, file, directory, glob or `path:10-40` names.

A `TargetResolver` reads one repository's index (and, for files it does not parse,
the work tree): it refuses a target that names nothing, or a path leaving the
repository, with a `BadTarget` saying why. The `Coordinator` (`claims`) resolves
every target through one before it checks or stores a claim.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from loomtui.coordination.index import RepoIndex
from loomtui.errors import LoomError, shown
from loomtui.files import open_regular
from loomtui.globs import glob_problem, glob_spec, name_problem

_LINE_RANGE = re.compile(r"^(?P<path>.+):(?P<start>\d+)(?:-(?P<end>\d+))?$")
# More digits than this is past the end of any file; int() of thousands of digits raises.
_MAX_LINE_DIGITS = 12
_GLOB_CHARS = frozenset("*?[")


def is_line_range(target: str) -> bool:
    """Whether a claim target is a file's lines (`path:10-40`, `path:12`), not a region, file or glob."""
    return _LINE_RANGE.match(target.strip()) is not None and not _GLOB_CHARS & set(target)


class BadTarget(LoomError):
    """A claim target that names no region or file of the repository, or is no target at all
    (an empty one, a bad glob, a path leaving the repository, a line range past the end)."""


class TargetResolver:
    """Resolves claim targets and paths against one repository's index."""

    def __init__(self, index: RepoIndex) -> None:
        self.index = index
        self._repo_files: list[str] | None = None

    def index_changed(self) -> None:
        """Forget the file listing after the index was patched in place."""
        self._repo_files = None

    def resolve(self, target: str) -> list[str]:
        """Region ids a target names: region id, file, directory, glob, or `path:10-40` (any of them by its
        absolute path too)."""
        with _usable(target):
            return self._resolve(self.as_written(target))

    def _resolve(self, target: str) -> list[str]:
        target = target.strip()
        if not target:
            raise BadTarget("empty claim target")
        if "\x00" in target:  # no file is named so: the OS refuses the name
            raise BadTarget(f"{shown(target)}: not a path, region or glob (it holds a NUL)")
        if "::" in target:
            if target in self.index.regions:
                return [target]
            if os.path.lexists(self.index.root / target):
                self.repo_path(target)  # a file named with `::`: refused, saying why
            whole = self.index.regions.get(target.partition("::")[0])
            if whole is not None and whole.kind == "file" and whole.warning:  # "did you mean x.py?" said not why
                raise BadTarget(f"unknown region {shown(target)}: {shown(whole.path)} is not parsed "
                                f"({whole.warning}), so it has no regions: claim the file whole")
            raise BadTarget(f"unknown region {shown(target)}{self._did_you_mean(target)}")
        ranged = _LINE_RANGE.match(target)
        if ranged and is_line_range(target):
            path = self.repo_path(ranged["path"])
            start, end = self._line_span(target, path, ranged["start"], ranged["end"] or ranged["start"])
            return self.regions_for_lines(path, start, end)
        if _GLOB_CHARS & set(target) and (literal := self._existing_file(target)):
            return [literal]  # a file named so (`pages/[id].tsx`): itself, not what the glob would match
        if _GLOB_CHARS & set(target):
            problem = glob_problem(target)
            if problem is not None:
                raise BadTarget(f"{shown(target)}: invalid glob: {problem}")
            spec = glob_spec([target])
            matched = [p for p in self.repo_files() if spec.match_file(p)]
            if not matched:
                raise BadTarget(f"{shown(target)}: the glob matches no file in the repository")
            return self._real_files(matched)
        path = self.repo_path(target)
        if path in self.index.files:
            return [path]
        if (self.index.root / path).is_dir():
            prefix = "" if path == "." else path.rstrip("/") + "/"  # `.` or the root's own path: every file
            inside = [p for p in self.repo_files() if p.startswith(prefix)]
            if inside:
                return self._real_files(inside)
            raise BadTarget(f"{shown(target)}: no file in that directory")
        if (self.index.root / path).is_file():
            return [path]  # a file the index does not parse (a template, a doc): a file region
        if os.path.lexists(self.index.root / path):  # a FIFO, a socket, a device: there, but no code of it
            raise BadTarget(f"{shown(target)}: not a regular file")
        raise BadTarget(f"{shown(target)}: no such file or region in {self.index.root}")

    def as_written(self, target: str) -> str:
        """`target` as the repository names it: an absolute path inside it (a region, a range) relative to its
        root, so `claim list` and every lead's view show `app/x.py`, not one machine's `/home/me/repo/app/x.py`;
        anything else as given."""
        if not target.startswith("/"):
            return target
        for root in (self.index.root, self.index.root.resolve()):
            try:
                return PurePosixPath(target).relative_to(root).as_posix()
            except ValueError:
                continue
        return target

    def new_file(self, target: str) -> list[str]:
        """The one file region a path names, written yet or not (an agent's new module): asked for in so
        many words, since a typo would otherwise claim a file no one writes."""
        target = target.strip()
        if not target or "\x00" in target or "::" in target or _GLOB_CHARS & set(target):
            raise BadTarget(f"{shown(target)}: a new file is claimed by its path (no region, glob or NUL)")
        if _LINE_RANGE.match(target):  # claimed as a file named `x.py:10-20`, which no one writes
            raise BadTarget(f"{shown(target)}: a new file is claimed by its path alone (it has no lines yet)")
        with _usable(target):
            path = self.repo_path(self.as_written(target))
            if path == "." or target.endswith("/") or (self.index.root / path).is_dir():
                raise BadTarget(f"{shown(target)}: a directory, not a new file")
            return [path]

    def _existing_file(self, target: str) -> str | None:
        """The repository path of the file `target` names as it is written, if there is one."""
        try:
            path = self.repo_path(target)
        except (BadTarget, OSError, ValueError):
            return None
        return path if path in self.index.files or (self.index.root / path).is_file() else None

    def _line_span(self, target: str, path: str, first: str, last: str) -> tuple[int, int]:
        """The lines `path:START-END` names, checked against the file's real length."""
        if path not in self.index.files and not (self.index.root / path).is_file():
            raise BadTarget(f"{shown(path)}: no such file in {self.index.root}")
        count = self._line_count(path)
        past = count + 1  # any line number too long to convert is past the end
        start = int(first) if len(first) <= _MAX_LINE_DIGITS else past
        end = int(last) if len(last) <= _MAX_LINE_DIGITS else past
        if start < 1:
            raise BadTarget(f"{shown(target)}: line numbers start at 1")
        if end < start:
            raise BadTarget(f"{shown(target)}: the range ends before it starts")
        if end > count:
            line = end if len(last) <= _MAX_LINE_DIGITS else f"{last[:_MAX_LINE_DIGITS]}..."
            raise BadTarget(f"{shown(target)}: line {line} is past the end of {shown(path)} "
                            f"({count} line{'' if count == 1 else 's'})")
        return start, end

    def _line_count(self, path: str) -> int:
        """How many lines a file has (a last line without a newline counts), read in chunks."""
        if path in self.index.files:
            return len(self._source_lines(path))
        count, last = 0, b"\n"
        try:
            # As looked at: a FIFO an agent swapped in after the index's look hung its broker for good (`open`).
            with open_regular(self.index.root / path, os.path.realpath(self.index.root)) as handle:
                while chunk := handle.read(1 << 20):
                    count += chunk.count(b"\n")
                    last = chunk[-1:]
        except OSError as exc:
            raise LoomError(f"{shown(path)}: cannot read: {exc.strerror or exc}") from None
        return count + (last != b"\n")

    def _source_lines(self, path: str) -> list[str]:
        """A parsed file's lines, split as Python counts them (\\n, \\r\\n or \\r); [] if unreadable."""
        try:
            with open_regular(self.index.root / path, os.path.realpath(self.index.root)) as handle:
                text = handle.read().decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
        except OSError:
            return []
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the newline ending the last line starts no line of its own
        return lines

    def repo_files(self) -> list[str]:
        """Every file of the repository: parsed ones are module regions, the rest file regions."""
        if self._repo_files is None:
            from loomtui.coordination.index import list_files

            listed = (path for path in list_files(self.index.root, include=("*",)) if not name_problem(path))
            self._repo_files = sorted(set(self.index.files) | set(listed))
        return self._repo_files

    def repo_path(self, raw: str) -> str:
        """A repository-relative posix path; anything escaping the repository, or named so that loomtui
        cannot name it (`globs.name_problem`), is refused."""
        path = self._repo_path(raw)
        if PurePosixPath(path).parts[:1] and PurePosixPath(path).parts[0].lower() == ".git":
            # A claim there (`claim add --new .git/config`) was recorded and audited on what no change touches.
            raise BadTarget(f"{shown(raw)}: inside the git directory, never part of a change")
        problem = name_problem(path)
        if problem:
            how = ": rename the file" if os.path.lexists(self.index.root / path) else " (and no file is so named)"
            raise BadTarget(f"{shown(raw)}: {problem}, so loomtui cannot claim it{how}")
        return path

    def _repo_path(self, raw: str) -> str:
        candidate = Path(raw)
        root = self.index.root.resolve()
        if candidate.is_absolute():
            try:
                candidate = _resolved(candidate, raw).relative_to(root)
            except ValueError:
                raise BadTarget(f"{shown(raw)}: outside the repository") from None
        normal = PurePosixPath(candidate.as_posix())
        if ".." in normal.parts:
            raise BadTarget(f"{shown(raw)}: paths may not leave the repository ('..')")
        resolved = _resolved(self.index.root / normal, raw)
        if not resolved.is_relative_to(root):
            raise BadTarget(f"{shown(raw)}: resolves outside the repository (symlink?)")
        if resolved == root:
            return str(normal).removeprefix("./")
        # Through symlinks to the file itself: an alias must not let two sandboxes hold one file.
        return resolved.relative_to(root).as_posix()

    def _real_files(self, paths: list[str]) -> list[str]:
        """Each file a glob or a directory matched, a symlink as the file it links to (as `repo_path`
        gives it: an alias must not let two sandboxes hold one file), each once, sorted. A link
        that leads out of the repository or round in a loop is its own file: it is all that is here."""
        real = set()
        for path in paths:
            # Listings never enter a symlinked directory: only a file that is itself a link can be an alias.
            if not os.path.islink(self.index.root / path):
                real.add(path)
                continue
            try:
                real.add(self.repo_path(path))
            except BadTarget:
                real.add(path)
        return sorted(real)

    def regions_for_lines(self, path: str, start: int, end: int) -> list[str]:
        """The regions lines start..end of a file touch; lines past its end touch the module.

        The work is bounded by the file's length, whatever the range (an edit hook
        or the broker may pass any numbers; `resolve` has refused bad ones already).
        """
        if path not in self.index.files:
            if (self.index.root / path).is_file():
                return [path]
            raise BadTarget(f"{shown(path)}: no such file in {self.index.root}")
        text = self._source_lines(path)
        start = max(start, 1)
        # Blank and comment lines between two methods would otherwise claim their class.
        lines = [n for n in range(start, min(end, len(text)) + 1)
                 if text[n - 1].strip() and not text[n - 1].lstrip().startswith("#")]
        if end > len(text):
            lines.append(max(start, len(text) + 1))  # past the end: no region but the module
        found: list[str] = []
        for line in lines or [start]:
            region = self.index.innermost_at(path, line)
            rid = region.id if region else path
            if rid not in found:
                found.append(rid)
        return found

    def _did_you_mean(self, target: str) -> str:
        from rapidfuzz import process

        match = process.extractOne(target, list(self.index.regions), score_cutoff=70)
        return f" (did you mean {match[0]}?)" if match else ""


@contextmanager
def _usable(target: str) -> Iterator[None]:
    """A name the OS refuses (a component over 255 bytes, a path past PATH_MAX: `is_dir` raises for those) as
    a BadTarget saying so: through the broker it was "internal error", through the MCP server a traceback."""
    try:
        yield
    except BadTarget:
        raise
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadTarget(f"{shown(target)}: not a usable path ({reason})") from None


def _resolved(path: Path, raw: str) -> Path:
    """`path` with its symlinks followed; a loop of them (which `resolve` raises on) is a bad target."""
    try:
        return path.resolve()
    except RuntimeError:  # a loop, before Python 3.13
        raise BadTarget(f"{shown(raw)}: its symlinks form a loop") from None
    except OSError as exc:  # a loop, from Python 3.13 (ELOOP)
        raise BadTarget(f"{shown(raw)}: cannot follow its symlinks ({exc.strerror or exc})") from None
