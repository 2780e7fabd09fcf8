"""Which commits that landed on a branch in a window were agent-made, read from git history.

A commit counts as agent-made when it carries a mark, in its trailers or its author:

- loomtui's merge trailers (`Loom-Sandbox:`, `Loom-Runtime:`);
- `Assisted-by:` (loomtui writes it too; so do agents and people following the
  kernel's convention);
- Claude Code's `Co-Authored-By: Claude <noreply@anthropic.com>`;
- Aider's ` (aider)` author-name suffix, `aider: ` subject prefix or
  `Co-authored-by: aider (...)` line;
- a Codex co-author line (`Co-authored-by: Codex ...`, an openai.com address);
- any trailer named on the command line (`--agent-trailer`) or in
  `LOOMTUI_AGENT_TRAILERS` (comma-separated).

What landed is counted along the branch's first-parent line (a merge is one change,
as a pull request is), and a merge counts as agent-made when it, or a commit it
brought in, carries a mark: a person's merge of a branch an agent wrote counts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from loomtui.errors import LoomError, shown
from loomtui.gitcmd import Git, first_line

AGENT_TRAILERS_ENV = "LOOMTUI_AGENT_TRAILERS"
_FORMAT = "%x1e%H%x1f%P%x1f%an%x1f%ae%x1f%ct%x1f%s%x1f%(trailers:only,unfold)"
_PERSON = re.compile(r"^\s*(?P<name>.*?)\s*(?:<(?P<email>[^>]*)>)?\s*$")
_RUNTIME_WORDS = (("claude", "claude"), ("anthropic", "claude"), ("codex", "codex"), ("openai", "codex"),
                  ("gpt", "codex"), ("aider", "aider"), ("copilot", "copilot"), ("gemini", "gemini"),
                  ("cursor", "cursor"))
"""A word in a trailer's value and the runtime it names (`Assisted-by: Claude Code` -> claude)."""


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit as `git log` gave it."""

    sha: str
    parents: tuple[str, ...]
    author: str
    email: str
    committed: float
    subject: str
    trailers: tuple[tuple[str, str], ...]
    """(key, value) pairs; keys as written."""


@dataclass(frozen=True, slots=True)
class Mark:
    """Why a commit counts as agent-made: the marks found (`loomtui`, `claude-code`, `aider`, `codex`,
    `assisted-by`, `trailer:NAME`) and the runtime they name."""

    markers: tuple[str, ...]
    runtime: str


@dataclass(frozen=True, slots=True)
class Landed:
    """A commit on the branch's first-parent line: one change that landed."""

    sha: str
    committed: float
    subject: str
    author: str
    merge: bool
    mark: Mark | None
    """Its own mark, or else that of a commit it brought in; None: made by people."""

    @property
    def agent_made(self) -> bool:
        return self.mark is not None

    def as_dict(self) -> dict[str, object]:
        return {"sha": self.sha, "committed": self.committed, "subject": self.subject, "author": self.author,
                "merge": self.merge, "markers": list(self.mark.markers) if self.mark else [],
                "runtime": self.mark.runtime if self.mark else None}


@dataclass(frozen=True)
class History:
    """What landed on a branch in a window, oldest first."""

    branch: str
    tip: str
    landed: tuple[Landed, ...] = ()
    partial: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def agent_trailer_names(extra: Sequence[str] = (), environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The configured trailers that mark agent-made commits: `extra` (the command line), then the
    environment's comma-separated list; lower case, each once."""
    from loomtui.config import trailer_name_problem

    listed = [n.strip().removesuffix(":") for n in environ.get(AGENT_TRAILERS_ENV, "").split(",") if n.strip()]
    for name in listed:  # `--agent-trailer` is checked by its parser; a mistake here matched nothing, silently
        if problem := trailer_name_problem(name):
            raise LoomError(f"${AGENT_TRAILERS_ENV}: {problem}", exit_code=2)
    return tuple(dict.fromkeys(n.lower() for n in (*extra, *listed)))


def _person(value: str) -> tuple[str, str]:
    match = _PERSON.match(value)
    if match is None:
        return value.strip(), ""
    return match["name"], (match["email"] or "").strip().lower()


def _runtime_in(text: str) -> str:
    lowered = text.lower()
    for word, runtime in _RUNTIME_WORDS:
        if word in lowered:
            return runtime
    return ""


def _first_word(value: str) -> str:
    """`Assisted-by: AGENT:MODEL` (the kernel's form) or a product name: its first word, lower case."""
    words = value.replace(":", " ").split()
    return words[0].lower() if words else ""


def mark_of(commit: Commit, agent_trailers: Sequence[str] = ()) -> Mark | None:
    """The agent marks a commit carries itself (None: none)."""
    found: dict[str, str] = {}  # marker -> the runtime it names ("" when it names none)
    configured = set(agent_trailers)
    for key, value in commit.trailers:
        lowered = key.lower()
        if lowered == "loom-runtime":
            found["loomtui"] = value.strip()
        elif lowered == "loom-sandbox":
            found.setdefault("loomtui", "")
        elif lowered == "assisted-by":
            found.setdefault("assisted-by", _runtime_in(value) or _first_word(value))
        elif lowered == "co-authored-by":
            name, email = _person(value)
            if email == "noreply@anthropic.com" or re.match(r"claude\b", name, re.I):
                found["claude-code"] = "claude"
            elif email == "noreply@aider.chat" or re.match(r"aider\b", name, re.I):
                found["aider"] = "aider"
            elif "codex" in name.lower() or "codex" in email or email.endswith("@openai.com"):
                found["codex"] = "codex"
        if lowered in configured:
            found.setdefault(f"trailer:{key}", _runtime_in(value))
    if commit.author.rstrip().endswith("(aider)") or commit.subject.lower().startswith("aider:"):
        found["aider"] = "aider"
    if "codex" in commit.author.lower() and "[bot]" in commit.author:
        found["codex"] = "codex"
    if not found:
        return None
    # The most specific name wins: loomtui's own record of the runtime, then an agent's signature.
    for marker in ("loomtui", "claude-code", "aider", "codex", "assisted-by"):
        if found.get(marker):
            return Mark(tuple(found), found[marker])
    runtime = next((r for r in found.values() if r), "unknown")
    return Mark(tuple(found), runtime)


def parse_log(out: bytes) -> dict[str, Commit]:
    """Commits of `git log --format=_FORMAT` output, by sha."""
    commits: dict[str, Commit] = {}
    for record in out.decode("utf-8", "replace").split("\x1e"):
        fields = record.split("\x1f")
        if len(fields) < 7:
            continue
        sha, parents, author, email, stamp, subject, trailer_text = fields[:7]
        trailers = tuple((k.strip(), v.strip()) for k, sep, v in
                         (line.partition(":") for line in trailer_text.splitlines()) if sep and k.strip())
        try:
            committed = float(stamp)
        except ValueError:
            continue
        commits[sha] = Commit(sha, tuple(parents.split()), author, email, committed, subject, trailers)
    return commits


def _log(git: Git, *args: str) -> bytes:
    done = git.raw("-c", "log.showSignature=false", *args)
    if done.status != 0:
        raise LoomError(f"git {args[0]} failed: {first_line(done.err.decode('utf-8', 'replace'))}")
    return done.out


OLDER_IN_A_ROW: Final = 200
"""The first-parent line is read back until this many commits in a row are older than the window: a commit
dated earlier than it was made (a rebase keeping author dates, a wrong clock) is passed, not taken for the
window's start (`git rev-list --since` stops at it, and the window's earlier commits went uncounted)."""


def _first_parent_line(git: Git, tip: str, since: float, until: float) -> tuple[list[list[str]], set[str]]:
    """The first-parent line from `tip` back, each commit with its parents, committed in [since, until); and every
    commit of the line read (those dated outside the window among them: a back-dated one between two in it is
    the line's own, never what a merge brought)."""
    walk = git.pipe("rev-list", "--first-parent", "--parents", "--timestamp", tip)
    assert walk.stdout is not None and walk.stdin is not None
    walk.stdin.close()
    rows: list[list[str]] = []
    read: set[str] = set()
    older = 0
    whole = False  # the line read to its first commit (not left once the window was behind it)
    try:
        for raw in walk.stdout:
            stamp, *row = raw.decode("ascii", "replace").split()
            at = int(stamp)
            read.add(row[0])
            older = older + 1 if at < since else 0
            if older >= OLDER_IN_A_ROW:
                break
            if since <= at < until:
                rows.append(row)
        else:
            whole = True
    finally:
        if not whole:
            walk.kill()
        status = walk.wait()
        walk.stdout.close()
    if whole and status != 0:
        raise LoomError(f"git rev-list failed on {tip[:12]} (exit {status}): is the repository intact?")
    return rows, read


class NoSuchBranch(LoomError):
    """The branch to report on is not in the repository."""


def resolve_branch(git: Git, branch: str | None) -> tuple[str, str | None]:
    """(name, commit) of the branch to report on; commit None in a repository with no commits.

    Without a name: main, then master, then the branch origin/HEAD names, then git's
    init.defaultBranch, then the one checked out (a repository whose main line is `trunk`).
    A name that resolves to no commit (in a repository that has some) is an input error.
    """
    candidates = [branch] if branch else ["main", "master"]
    for name in candidates:
        if sha := git.resolve_commit(name):
            return name, sha
    if not branch:
        origin = git.raw("symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD").out.decode().strip()
        default = git.raw("config", "--get", "init.defaultBranch").out.decode().strip()
        for name in [*([origin.split("/", 1)[-1], origin] if origin else []), default, git.current_branch() or ""]:
            if name and (sha := git.resolve_commit(name)):
                return name, sha
    if not git.raw("for-each-ref", "--count=1", "--format=%(objectname)").out.strip():
        # No commits yet: the branch the first will make (it said "main" where HEAD names master).
        return branch or git.current_branch() or candidates[0], None
    raise NoSuchBranch(f"branch {shown(candidates[0])} not found in {git.cwd}", exit_code=2)


def _shallow_note(git: Git, since: float) -> tuple[str, bool]:
    """What a shallow clone means for the window: (note, whether it cuts the window short)."""
    path = git.raw("rev-parse", "--git-path", "shallow").out.decode().strip()
    shallow = Path(path) if Path(path).is_absolute() else git.cwd / path
    try:
        roots = shallow.read_text().split()
    except OSError:
        roots = []
    stamps = [float(s) for s in _log(git, "log", "--no-walk", "--format=%ct", *roots).decode().split()] \
        if roots else []
    start = max(stamps, default=0.0)
    day = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if start > since:
        return f"shallow clone: history before {day} is missing, so commits before it are not counted", True
    return f"shallow clone (history from {day}), which covers the window", False


def read_history(root: Path, branch: str | None, since: float, until: float,
                 agent_trailers: Sequence[str] = ()) -> History:
    """The commits that landed on `branch` during [since, until), each marked agent-made or not."""
    git = Git(root)
    name, tip = resolve_branch(git, branch)
    if tip is None:
        return History(name, "", partial=("the repository has no commits yet, so there is no history to count",))
    partial: list[str] = []
    notes: list[str] = []
    if git.raw("rev-parse", "--is-shallow-repository").out.strip() == b"true":
        note, cut = _shallow_note(git, since)
        (partial if cut else notes).append(note)
    rows, on_the_line = _first_parent_line(git, tip, since, until + 1)
    line = [row[0] for row in rows if row]
    if not line:
        return History(name, tip, partial=tuple(partial), notes=tuple(notes))
    # Everything that landed in the window, whatever its own date: reachable from the window's
    # newest first-parent commit, not from the one before the window.
    before = rows[-1][1] if len(rows[-1]) > 1 else None
    commits = parse_log(_log(git, "log", f"--format={_FORMAT}", line[0], *([f"^{before}"] if before else []),
                             "--"))
    line_set = on_the_line
    on_line = {sha for sha in line if sha in commits and since <= commits[sha].committed < until}
    marks = {sha: mark_of(c, agent_trailers) for sha, c in commits.items()}
    seen: set[str] = set()
    landed: list[Landed] = []
    for sha in reversed(line):  # oldest first: a side commit belongs to the first merge that brought it
        commit = commits.get(sha)
        if commit is None:
            continue
        brought: list[Mark] = []
        stack = list(commit.parents[1:])
        while stack:
            side = stack.pop()
            if side in seen or side not in commits or side in line_set:
                continue
            seen.add(side)
            stack.extend(commits[side].parents)
            if (side_mark := marks.get(side)) is not None:
                brought.append(side_mark)
        if sha not in on_line:
            continue
        mark = marks.get(sha)
        if mark is None and brought:
            mark = Mark(tuple(dict.fromkeys(m for b in brought for m in b.markers)), brought[0].runtime)
        landed.append(Landed(sha, commit.committed, commit.subject, commit.author, len(commit.parents) > 1, mark))
    return History(name, tip, tuple(landed), tuple(partial), tuple(notes))
