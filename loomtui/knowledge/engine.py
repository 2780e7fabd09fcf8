"""The knowledge engine's entry points: the context of a repository, a task's slice, drift.

Whoever creates a sandbox calls `slice_for_task` and, once the sandbox exists,
`record_slice` (its store data and an audit entry, in one transaction), or
`record_unavailable` when there was no slice to give; `drift_report` compares what
each live sandbox got with the context at HEAD (`sandbox_drift_now` for one sandbox,
the same answer), and checks the ADRs and conventions against the working tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from loomtui.config import LoomConfig
from loomtui.coordination.index import RepoIndex, build_index, index_cache_dir
from loomtui.coordination.suggest import suggest_regions
from loomtui.errors import LoomError
from loomtui.globs import glob_spec
from loomtui.knowledge.rules import Finding, check_rules
from loomtui.knowledge.sections import Mention
from loomtui.knowledge.slicing import ClaimInput, Slice, pinned_sections, slice_context
from loomtui.knowledge.sources import (
    Context,
    head_commit,
    load_context,
    resolve_mentions,
)
from loomtui.knowledge.supersession import supersession
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace

__all__ = [
    "CONTEXT_ERROR_KEY",
    "AdrFlag",
    "DriftReport",
    "SandboxDrift",
    "adr_flags",
    "claim_inputs",
    "context_of",
    "convention_findings",
    "drift_context",
    "drift_report",
    "knowledge_index",
    "record_slice",
    "record_unavailable",
    "sandbox_drift_now",
    "slice_for_task",
]

CONTEXT_ERROR_KEY = "context_error"
"""A sandbox's data key: why its agent got the task only (no slice could be made)."""
SUGGESTED_REGIONS = 5


def knowledge_index(workspace: Workspace, config: LoomConfig | None = None) -> RepoIndex:
    """The region index ADR mentions are matched against: every included file, tests too
    (an ADR may name a test), cached with the coordination index's facts."""
    config = config or workspace.load_config()
    return build_index(workspace.root, cache_dir=index_cache_dir(workspace.paths),
                       include=config.coordination.include)


def context_of(workspace: Workspace, *, at: str | None = None, index: RepoIndex | None = None,
               config: LoomConfig | None = None) -> Context:
    """The repository's context at `at` (None: the working tree), mentions matched to `index` (by default the
    repository's `knowledge_index`: without one no mention could be found missing, and the app's context view
    flagged fewer ADRs than `context drift`)."""
    config = config or workspace.load_config()
    context = load_context(workspace.root, config.context, at=at)
    return resolve_mentions(context, index if index is not None else knowledge_index(workspace, config))


def claim_inputs(workspace: Workspace, index: RepoIndex, targets: Sequence[str], task: str = "",
                 config: LoomConfig | None = None) -> list[ClaimInput]:
    """Claim targets resolved to regions like `loomtui claim add` would (errors one line);
    with no targets, the regions coordination suggests for the task, marked as suggested."""
    from loomtui.coordination.claims import Coordinator, nobody_overrides

    if targets:
        coordinator = Coordinator(workspace, index, may_override=nobody_overrides)
        return [ClaimInput(target, tuple(coordinator.resolve(target))) for target in targets]
    if not task.strip():
        return []
    config = config or workspace.load_config()
    excluded = glob_spec(config.coordination.exclude)
    found = [s for s in suggest_regions(index, task, limit=4 * SUGGESTED_REGIONS)
             if not excluded.match_file(s.region.path)][:SUGGESTED_REGIONS]
    return [ClaimInput(s.region.id, (s.region.id,), suggested=True) for s in found]


def slice_for_task(workspace: Workspace, task: str, targets: Sequence[str] = (), *, at: str | None = None,
                   budget: int | None = None, index: RepoIndex | None = None,
                   claims: Sequence[ClaimInput] | None = None) -> tuple[Slice, Context]:
    """The slice for a task (and its claims) from the context at `at` (None: working tree)."""
    config = workspace.load_config()
    index = index if index is not None else knowledge_index(workspace, config)
    context = context_of(workspace, at=at, index=index, config=config)
    if claims is None:
        claims = claim_inputs(workspace, index, targets, task, config)
    return slice_context(context, task, claims, budget=budget, repo_index=index), context


def slice_record(piece: Slice, context: Context) -> dict[str, Any]:
    """What a sandbox's store data keeps of its slice (enough to explain it and find drift)."""
    return {
        "version": piece.version, "commit": piece.commit, "budget_tokens": piece.budget, "tokens": piece.tokens,
        "task": piece.task,
        "claims": [{"target": c.target, "regions": list(c.regions[:50]), "suggested": c.suggested}
                   for c in piece.claims],
        "sections": [{k: v for k, v in p.as_dict().items() if k not in ("heading",)} for p in piece.picks],
        "files": context.file_blobs(),
        "layers": {s.name: {"version": s.version, "commit": s.commit, "where": s.where} for s in context.layers},
        "problems": piece.problems[:20],
    }


def record_slice(workspace: Workspace, sandbox_id: str, piece: Slice, context: Context,
                 written: Sequence[str] = ()) -> dict[str, Any]:
    """Store the slice a sandbox got (its data's `context`) and audit it, together."""
    record = {**slice_record(piece, context), "written": list(written)}
    with workspace.store.transaction():
        workspace.store.update_sandbox(sandbox_id, data={"context": record})
        workspace.record("context.sliced", sandbox_id, {
            "version": piece.version, "commit": piece.commit, "tokens": piece.tokens,
            "sections": [p.section.id for p in piece.picks], "written": list(written)})
    return record


def record_unavailable(workspace: Workspace, sandbox_id: str, error: str) -> None:
    """Keep on a sandbox why its agent got the task only, and audit it, together."""
    with workspace.store.transaction():
        workspace.store.update_sandbox(sandbox_id, data={CONTEXT_ERROR_KEY: error})
        workspace.record("context.unavailable", sandbox_id, {"error": error})


# -- drift ------------------------------------------------------------------------------------------


@dataclass
class SandboxDrift:
    """How a live sandbox's context compares with the context now."""

    sandbox: str
    status: str  # fresh | behind (the version moved, its slice did not) | stale | unknown
    recorded: str
    current: str
    changes: list[dict[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sandbox": self.sandbox, "status": self.status, "recorded_version": self.recorded,
                "current_version": self.current, "changes": self.changes, "files": self.files}


@dataclass(frozen=True)
class AdrFlag:
    adr: str
    title: str
    kind: str  # missing | superseded | number
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"adr": self.adr, "title": self.title, "kind": self.kind, "detail": self.detail}


@dataclass
class DriftReport:
    version: str
    commit: str | None
    sandboxes: list[SandboxDrift]
    adrs: list[AdrFlag]
    findings: list[Finding]
    problems: list[str]
    checked_at: str = "worktree"  # where the ADRs and the conventions were checked
    unpinned: list[str] = field(default_factory=list)
    """`context.pinned` selectors that match no section now (a heading renamed, a file moved): every slice
    silently goes without what the team said it must carry."""

    @property
    def flagged(self) -> bool:
        return bool(self.adrs or self.findings or self.unpinned or any(s.status == "stale" for s in self.sandboxes))

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "commit": self.commit, "flagged": self.flagged,
                "sandboxes": [s.as_dict() for s in self.sandboxes], "adrs": [a.as_dict() for a in self.adrs],
                "conventions": [f.as_dict() for f in self.findings], "checked_at": self.checked_at,
                "unpinned": self.unpinned, "problems": self.problems}


def sandbox_drift(sandbox_id: str, recorded: dict[str, Any], current: Context,
                  index: RepoIndex | None) -> SandboxDrift:
    """Compare one sandbox's recorded slice with the current context (and the slice it would get now).

    A front-end wants `sandbox_drift_now`, which picks the current context as `context drift` does."""
    version = str(recorded.get("version", ""))
    if not version:
        error = recorded.get("error")
        why = [{"id": "", "title": "", "change": f"it got its task only: {error}"}] if error else []
        return SandboxDrift(sandbox_id, "unknown", "", current.version, why)
    if version == current.version:
        return SandboxDrift(sandbox_id, "fresh", version, current.version)
    changes: list[dict[str, str]] = []
    had = {str(s.get("id")): s for s in recorded.get("sections", []) if isinstance(s, dict)}
    relation = supersession(current)
    for section_id, old in had.items():
        now = current.section(section_id)
        if now is None:
            changes.append({"id": section_id, "title": str(old.get("title", "")), "change": "removed"})
        elif (newer := relation.newer(section_id)) != (old.get("superseded_by") or ""):
            # An ADR it got, superseded since: said so, whether its own status was edited too (the usual way) or
            # not (a new ADR that supersedes it: it read "behind").
            changes.append({"id": section_id, "title": now.title, "label": now.label,
                            "change": f"superseded by {newer}" if newer else "no longer superseded"})
        elif now.hash != old.get("hash"):
            changes.append({"id": section_id, "title": now.title, "label": now.label, "change": "changed"})
    claims = [ClaimInput(str(c.get("target", "")), tuple(c.get("regions", ())), bool(c.get("suggested")))
              for c in recorded.get("claims", []) if isinstance(c, dict)]
    try:
        fresh = slice_context(current, str(recorded.get("task", "")), claims,
                              budget=int(recorded.get("budget_tokens") or current.config.budget_tokens),
                              repo_index=index)
        for pick in fresh.picks:
            if pick.section.id not in had:
                changes.append({"id": pick.section.id, "title": pick.section.title, "label": pick.section.label,
                                "change": "added",
                                "why": pick.why()})
    except LoomError as exc:
        changes.append({"id": "", "title": "", "change": f"cannot slice now: {exc}"})
    old_files: dict[str, str] = recorded.get("files", {}) or {}
    new_files = current.file_blobs()
    files = sorted(f"{name} ({'removed' if name not in new_files else 'added' if name not in old_files else 'changed'})"
                   for name in set(old_files) | set(new_files) if old_files.get(name) != new_files.get(name))
    return SandboxDrift(sandbox_id, "stale" if changes else "behind", version, current.version, changes, files)


def _missing_why(mention: Mention) -> str:
    if mention.kind == "path":
        return "no such path"
    return "defined nowhere in the code" if mention.target == mention.text else f"no {mention.target}"


def adr_flags(context: Context) -> list[AdrFlag]:
    """ADRs whose mentioned paths or symbols no longer exist, two of one folder with one number, or whose
    supersession is not as they say: another
    supersedes one whose status does not say so, two supersede each other, or the one said to supersede it is
    not here (one retired as it says, by a decision here that stands, is no flag)."""
    flags: list[AdrFlag] = []
    relation = supersession(context)
    disputed = {one.id: other for pair in relation.each_other for one, other in (pair, pair[::-1])}
    for first, second in relation.same_number:  # which one another ADR names is a guess: said, to renumber one
        flags.append(AdrFlag(second.id, second.title, "number", f"its number is {first.title}'s too "
                                                                f"({first.source}): renumber one"))
    for section in context.sections:
        adr = section.adr
        if adr is None:
            continue
        missing = [m for m in section.mentions if m.exists is False]
        if missing:
            flags.append(AdrFlag(section.id, section.title, "missing", "names what no longer exists: " + ", ".join(
                f"`{m.text}` ({_missing_why(m)})"
                for m in missing)))
        newer = relation.newer(section.id)
        if section.id in disputed:
            flags.append(AdrFlag(section.id, section.title, "superseded",
                                 f"it and {disputed[section.id].title} each supersede the other: say which stands"))
        elif newer and adr.state != "superseded":
            flags.append(AdrFlag(section.id, section.title, "superseded",
                                 f"superseded by {newer} but its status is {adr.status or 'not set'!r}"))
        elif adr.state == "superseded" or adr.superseded_by:
            standing = relation.standing_for(section.id)
            if adr.state == "superseded" and standing and len(standing) == len(relation.by.get(section.id, {})):
                continue  # retired as it says, by decisions here that stand: flagged, drift failed CI for good
            if not newer and (undecided := relation.undecided.get(section.id)):
                # It named no one: "agents should follow the newer decision" of a newer one only proposed.
                flags.append(AdrFlag(section.id, section.title, "superseded", (
                    f"superseded, it says, by {'; '.join(undecided)}, which decides nothing yet: no decision in force "
                    "replaces it (accept the newer one, or say this one's status as it stands)")))
                continue
            by = f" by {newer}" if newer else ""
            flags.append(AdrFlag(section.id, section.title, "superseded",
                                 f"superseded{by}: agents should follow the newer decision"))
    return flags


def convention_findings(root: Path, context: Context, files: Sequence[str] | None = None) -> list[Finding]:
    """Where the code under `root` breaks a machine-checkable convention (gate 2's conventions item).

    `root` may be a sandbox's worktree: files are parsed, never imported or run.
    """
    return check_rules(root, context.rules, files)


def drift_context(workspace: Workspace, *, index: RepoIndex | None = None,
                  config: LoomConfig | None = None) -> Context:
    """The repository's context now: at HEAD (an uncommitted edit is not yet the team's), the working
    tree before any commit; mentions matched to `index`."""
    return context_of(workspace, at=head_commit(workspace.root), index=index, config=config)


def context_commit(workspace: Workspace, sandbox: SandboxRecord) -> str | None:
    """The commit a sandbox's context is compared with and sliced again from: its target's tip (one for
    `release` started from release, where main's newer ADRs are not in force: it read stale at once, and
    a refresh handed it main's), HEAD's for one with no target here; None before any commit."""
    tip = head_commit(workspace.root, f"refs/heads/{sandbox.target}") if sandbox.target else None
    return tip or head_commit(workspace.root)


class _ContextsAt:
    """Contexts by commit, each read once (most sandboxes share their target's tip)."""

    def __init__(self, workspace: Workspace, index: RepoIndex, config: LoomConfig, *known: Context) -> None:
        self.workspace, self.index, self.config = workspace, index, config
        self.read: dict[str | None, Context] = {context.commit: context for context in known}

    def __call__(self, at: str | None) -> Context:
        if at not in self.read:
            self.read[at] = context_of(self.workspace, at=at, index=self.index, config=self.config)
        return self.read[at]


def _recorded(data: dict[str, Any]) -> dict[str, Any] | None:
    """What drift compares for a sandbox: its recorded slice, or why it got none (None: neither)."""
    recorded = data.get("context")
    if isinstance(recorded, dict):
        return recorded
    error = data.get(CONTEXT_ERROR_KEY)
    return {"error": str(error)} if error else None


def sandbox_drift_now(workspace: Workspace, sandbox_id: str, *, index: RepoIndex | None = None) -> SandboxDrift:
    """One sandbox's drift exactly as `loomtui context drift` reports it (the context at HEAD, the
    region index): what the app's Context tab shows. Raises LoomError for an unknown sandbox."""
    record = workspace.store.get_sandbox(sandbox_id)
    if record is None:
        raise LoomError(f"no sandbox {sandbox_id}")
    config = workspace.load_config()
    index = index if index is not None else knowledge_index(workspace, config)
    current = context_of(workspace, at=context_commit(workspace, record), index=index, config=config)
    return sandbox_drift(record.id, _recorded(record.data) or {}, current, index)


def drift_report(workspace: Workspace, *, index: RepoIndex | None = None) -> DriftReport:
    """Live sandboxes, each against the context at its target's tip (`context_commit`); the ADRs and the
    conventions' rules against the code, both as they are in the working tree (what the engineer is changing,
    as the app's context view and the checklist see it)."""
    config = workspace.load_config()
    index = index if index is not None else knowledge_index(workspace, config)
    current = drift_context(workspace, index=index, config=config)
    at = _ContextsAt(workspace, index, config, current)
    sandboxes = []
    for record in workspace.store.list_sandboxes():
        if record.ended_for_good:  # no agent of it reads a context again
            continue
        recorded = _recorded(record.data)
        if recorded is not None:
            sandboxes.append(sandbox_drift(record.id, recorded, at(context_commit(workspace, record)), index))
    worktree = current if current.commit is None else context_of(workspace, index=index, config=config)
    problems = list(dict.fromkeys([*current.problems, *worktree.problems]))
    unpinned = list(dict.fromkeys([*pinned_sections(current)[1], *pinned_sections(worktree)[1]]))
    return DriftReport(current.version, current.commit, sandboxes, adr_flags(worktree),
                       convention_findings(workspace.root, worktree), problems, unpinned=unpinned)


# -- search ------------------------------------------------------------------------------------------


MIN_SEARCH_SCORE: Final = 20.0
"""Below this (of 100) a section shares no more with a query than any text does (`zqzqzq` scored 5.8)."""


def search_sections(context: Context, query: str, limit: int = 5) -> list[dict[str, Any]]:
    """The sections that best match `query`, best first, with an excerpt: fuzzy on the title and
    source (weighted most) and on the text, so "bankers rounding" finds "Banker's rounding per line item"."""
    from rapidfuzz import fuzz, utils

    wanted = utils.default_process(query)
    if not wanted:
        return []
    scored = []
    for section in context.sections:
        named = fuzz.token_set_ratio(wanted, utils.default_process(f"{section.title} {section.source}"))
        in_text = fuzz.partial_token_set_ratio(wanted, utils.default_process(section.text[:4000]))
        scored.append((0.65 * named + 0.35 * in_text, section))
    scored.sort(key=lambda pair: -pair[0])
    results = []
    for score, section in scored[:max(1, min(limit, 50))]:
        if score < MIN_SEARCH_SCORE:  # noise: a query matching nothing answered the first sections anyway
            break
        body = " ".join(section.text.split())
        results.append({"id": section.id, "title": section.title, "where": f"{section.source}:{section.line}",
                        "layer": section.layer, "score": round(score, 1), "excerpt": body[:300]})
    return results
