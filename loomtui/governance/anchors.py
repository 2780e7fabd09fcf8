"""Checking the audit log against the heads anchored in the repository's history.

Every merge loomtui makes carries the audit head of that moment (`Loom-Audit: SEQ
HASH log=ID`, see `loomtui.auditanchor`). Those commits are on the main branch and
in every clone that fetched it, so a local rewrite of the log (cut back, recomputed,
deleted, replaced) contradicts them. Anchors are read from the first-parent history
of the main branches (local and remote-tracking `main`/`master`, the branches
sandboxes were merged into, and any `--ref`): first-parent only, and only merges as
loomtui makes them (two parents, a `Loom-Sandbox` trailer, the log's id), so a trailer
an agent wrote into its own commit is never taken for one loomtui wrote, even where a
rebase or squash merge outside loomtui put that commit on the main line (one bogus
`Loom-Audit:` there failed `audit verify` for good).

What this cannot prove is said, not hidden: entries after the newest anchor are
not anchored anywhere yet, and anchors of another audit log (another clone's) are
not checked against this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loomtui.audit import AuditEntry
from loomtui.auditanchor import (
    LOG_ID_KEY,
    TRAILER,
    configured_log_id,
    log_identity,
    parse_anchor,
)
from loomtui.gitcmd import Git, GitResult

DEFAULT_BRANCHES = ("main", "master")
SANDBOX_TRAILER = "Loom-Sandbox"
"""The trailer every merge loomtui makes carries (`execution.review`), beside its anchor."""


@dataclass(frozen=True)
class Anchor:
    commit: str
    seq: int
    hash: str
    log: str | None
    ref: str


@dataclass
class AnchorReport:
    """The anchors found, which were checked against this log, and what fails."""

    refs: list[str]
    log: str | None  # this log's id (its first entry's hash, shortened)
    configured: str | None  # the id this clone anchored with (git config loom.auditlog)
    anchors: list[Anchor] = field(default_factory=list)
    checked: list[dict[str, Any]] = field(default_factory=list)
    foreign: list[Anchor] = field(default_factory=list)
    anchored_through: int = 0
    anchored_by: str | None = None
    entries: int = 0
    problems: list[tuple[int | None, str]] = field(default_factory=list)  # (seq or None, what is wrong)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "refs": self.refs, "log": self.log, "configured_log": self.configured,
            "checked": self.checked, "foreign": [asdict(a) for a in self.foreign],
            "anchored_through": self.anchored_through, "anchored_by": self.anchored_by,
            "unanchored_after": self.anchored_through if self.entries > self.anchored_through else None,
            "unanchored_entries": max(0, self.entries - self.anchored_through),
            "problems": [{"seq": seq, "problem": text} for seq, text in self.problems],
        }


def _git(root: Path, *args: str) -> GitResult:
    return Git(root).run(*args, timeout=60)


def anchor_refs(root: Path, extra: Sequence[str] = (), targets: Iterable[str] = ()) -> list[str]:
    """The refs whose history holds anchors: main branches, merge targets, and `extra`."""
    patterns = [f"refs/heads/{name}" for name in (*DEFAULT_BRANCHES, *targets)]
    patterns += [f"refs/remotes/*/{name}" for name in DEFAULT_BRANCHES]
    listed = _git(root, "for-each-ref", "--format=%(refname)", *patterns)
    refs = [line for line in listed.out.splitlines() if line] if listed.status == 0 else []
    for name in extra:
        # As its full name where it has one: `--ref main` beside the found refs/heads/main was read twice
        # and listed twice ("main, main"). A commit id or an unknown name is kept as given (said if bad).
        full = _git(root, "rev-parse", "--symbolic-full-name", name, "--")
        named = full.out.strip().splitlines()[0] if full.status == 0 and full.out.strip() else ""
        refs.append(named if named.startswith("refs/") else name)
    return list(dict.fromkeys(refs))


def read_anchors(root: Path, refs: Sequence[str]) -> list[Anchor]:
    """Every `Loom-Audit` anchor on the first-parent history of `refs`, newest first, one per commit: of merges
    as loomtui makes them (two parents, `Loom-Sandbox`, a `log=`), never an agent's own commit's trailer."""
    found: dict[str, Anchor] = {}
    for ref in refs:
        done = _git(root, "log", "--first-parent", "--merges", "--no-show-signature",
                    f"--format=%x1e%H%x1f%(trailers:key={SANDBOX_TRAILER},valueonly,separator=%x1d)"
                    f"%x1f%(trailers:key={TRAILER},valueonly,separator=%x1f)", ref, "--")
        if done.status != 0:
            raise _BadRef(ref, (done.err.strip().splitlines() or ["unknown ref"])[-1])
        for record in done.out.split("\x1e"):
            commit, _, rest = record.strip("\n").partition("\x1f")
            sandbox, _, values = rest.partition("\x1f")
            if not commit or commit in found or not sandbox.strip():
                continue
            for value in values.split("\x1f"):
                parsed = parse_anchor(value)
                if parsed is not None and parsed[2] is not None:
                    found[commit] = Anchor(commit, parsed[0], parsed[1], parsed[2], ref)
    return list(found.values())


class _BadRef(Exception):
    def __init__(self, ref: str, why: str) -> None:
        super().__init__(f"{ref}: {why}")


def check_anchors(entries: Sequence[AuditEntry], anchors: Sequence[Anchor], refs: list[str],
                  configured: str | None) -> AnchorReport:
    """Whether the log holds every anchored (seq, hash) of this clone's log."""
    mine = log_identity(entries)
    report = AnchorReport(refs=refs, log=mine, configured=configured, anchors=list(anchors),
                          entries=len(entries))
    own = configured or mine
    by_seq = {entry.seq: entry.hash for entry in entries}
    last = entries[-1].seq if entries else 0
    if configured and mine and configured != mine:
        newest = max((a for a in anchors if a.log == configured), key=lambda a: a.seq, default=None)
        where = f"commit {newest.commit[:12]} anchors seq {newest.seq} of it" if newest else "no anchor names it"
        report.problems.append((1, f"the log was replaced: this clone anchored log {configured} "
                                   f"(git config {LOG_ID_KEY}; {where}), but the log's first entry "
                                   f"makes it log {mine}"))
    for anchor in sorted(anchors, key=lambda a: -a.seq):
        if own is None or (anchor.log is not None and anchor.log != own):
            report.foreign.append(anchor)
            continue
        have = by_seq.get(anchor.seq)
        status = "ok" if have == anchor.hash else ("missing" if have is None else "differs")
        report.checked.append({**asdict(anchor), "status": status})
        if status == "missing":
            report.problems.append((None, f"the log was cut: commit {anchor.commit[:12]} anchors seq {anchor.seq} "
                                          f"= {anchor.hash[:16]}, the log ends at seq {last}"))
        elif status == "differs":
            report.problems.append((anchor.seq, f"the log was rewritten: commit {anchor.commit[:12]} anchors "
                                                f"seq {anchor.seq} = {anchor.hash[:16]}, the log has "
                                                f"{(have or '')[:16]} at seq {anchor.seq}"))
        elif anchor.seq > report.anchored_through:
            report.anchored_through, report.anchored_by = anchor.seq, anchor.commit
    if report.problems:
        return report
    if not report.checked:
        where = ", ".join(_short(r) for r in refs) or "no main branch"
        report.notes.append(f"no entry is anchored in any commit yet ({where}; a merge by loomtui anchors "
                            "the head)" if entries else "the log is empty and nothing anchors it")
    elif last > report.anchored_through:
        report.notes.append(f"entries after seq {report.anchored_through} are not anchored in any commit yet "
                            f"({last - report.anchored_through} of {last} entries)")
    else:
        report.notes.append(f"anchored through seq {report.anchored_through} by commit "
                            f"{(report.anchored_by or '')[:12]}")
    if report.foreign:
        ids = sorted({a.log or "?" for a in report.foreign})
        report.notes.append(
            f"{len(report.foreign)} anchors of another audit log ({', '.join(ids)}) not checked: another "
            f"clone's, or this clone's if both its log and git config {LOG_ID_KEY} were replaced")
    return report


def _short(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/remotes/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def anchor_report(root: Path, entries: Sequence[AuditEntry], extra_refs: Sequence[str] = (),
                  targets: Iterable[str] = ()) -> AnchorReport:
    """Read the anchors of this repository and check the log's entries against them."""
    refs = anchor_refs(root, extra_refs, targets)
    try:
        anchors = read_anchors(root, refs)
    except _BadRef as exc:
        report = AnchorReport(refs=refs, log=None, configured=None, entries=len(entries))
        report.problems.append((None, f"cannot read anchors from {exc}"))
        return report
    return check_anchors(entries, anchors, refs, configured_log_id(root))
