"""The slice: the sections one task needs, ranked, within the token budget, each saying why.

Relevance has two sides, scored 0-100 each:

- **terms**: the task's words (stemmed, stop words dropped) found in a section's
  heading (strong) or body (weaker, more so when repeated), each weighted by how
  rare it is across all sections; words one typo away match through rapidfuzz.
- **claims**: the regions the task claims (or, with no claims, the regions the
  coordination layer suggests for the task, counted lower) against what a
  section mentions, by how specifically it names them: the region itself (or
  what holds it) most, then its file, a dependency neighbour, another region
  of its file, the module of a dependency; a directory or package counts by how
  few files it holds, so a claim in `payments/` does not pull every section
  naming `payments`. Also the claimed names in its text, and a `loom-rule` of it
  covering the file.

score = the larger side + 0.3 x the smaller. A section is picked from score 30;
pinned sections always are, first. Picks fill the budget best first (tokens are
estimated as characters / 4); a section that does not fit is left out and
listed, and smaller ones may still fit. A task nothing is picked for gets the
repository's shared conventions file (its root AGENTS.md, else CLAUDE.md) as far as
it fits: the slice takes that file's place for Claude Code and Codex, and an empty
one left their agent with no conventions at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Final

from loomtui.coordination.index import RepoIndex
from loomtui.errors import LoomError
from loomtui.globs import glob_spec
from loomtui.knowledge.sections import CHARS_PER_TOKEN, Section, estimate_tokens
from loomtui.knowledge.sources import REPO_LAYER, Context
from loomtui.knowledge.supersession import Supersession, supersession
from loomtui.knowledge.terms import TermIndex, display_forms, task_terms, term_index

__all__ = ["MIN_SCORE", "ClaimInput", "Pick", "Slice", "pinned_sections", "slice_context"]

MIN_SCORE: Final = 30.0
# -- claims ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimInput:
    """A claim as the slice sees it: what was claimed and the region ids it covers."""

    target: str
    regions: tuple[str, ...]
    suggested: bool = False


def _path_of(target: str) -> str:
    return target.partition("::")[0]


_DIRECTORY: Final = 0.55
"""What a mention of the directory (or package) holding a claimed file is worth when the directory
holds that file alone; a directory of n files is worth this / sqrt(n): `payments/` with ten files
(0.17) pulls nothing by itself, a directory of two (0.39) does."""


def _relation(mention: str, region: str, neighbours: set[str], neighbour_files: set[str],
              size: Callable[[str], int]) -> tuple[float, str]:
    """How specifically a mentioned path/region names a claimed region (strength 0-1, how):
    the region itself 1.0; what holds it or what it holds 0.9; its file 0.85; a region it depends
    on or that depends on it 0.7; another region of its file 0.6; the module of such a dependency
    0.55 (another name in that module 0.25); its directory or package by its size (`_DIRECTORY`);
    a neighbouring file 0.2; the same top-level package 0.1."""
    if mention == region:
        return 1.0, "the claimed region"
    m_path, _, m_symbol = mention.partition("::")
    r_path, _, r_symbol = region.partition("::")
    if m_path == r_path:
        if m_symbol and r_symbol:
            if r_symbol.startswith(m_symbol + "."):
                return 0.9, "it holds the claimed region"
            if m_symbol.startswith(r_symbol + "."):
                return 0.9, "a part of the claimed region"
            return (0.7, "a dependency of it") if mention in neighbours else (0.6, f"the same file {r_path}")
        return (0.85, f"its file {r_path}") if r_symbol else (0.9, "in the claimed file")
    package = m_path.endswith("/__init__.py") and not m_symbol
    directory = m_path.removesuffix("/__init__.py") if package else m_path.rstrip("/")
    if package and r_path.startswith(directory + "/"):
        pass  # a package is named as a directory is, by its size (below), even when its __init__ re-exports
    elif m_symbol and mention in neighbours:
        return 0.7, "a dependency of it"
    elif m_path in neighbour_files:
        return (0.25, f"in {m_path}, the module of a dependency") if m_symbol \
            else (0.55, f"{m_path}, the module of a dependency")
    if r_path.startswith(directory + "/"):
        files = size(directory)
        return (round(_DIRECTORY / math.sqrt(files), 2),
                f"its {'package' if package else 'directory'} {directory}/, {files} file{'' if files == 1 else 's'}")
    m_parts, r_parts = PurePosixPath(m_path).parts, PurePosixPath(r_path).parts
    if len(m_parts) > 1 and len(r_parts) > 1 and m_parts[:-1] == r_parts[:-1]:
        return 0.2, f"the same directory {'/'.join(r_parts[:-1])}/"
    if len(m_parts) > 1 and len(r_parts) > 1 and m_parts[0] == r_parts[0]:
        return 0.1, f"the same package {r_parts[0]}/"
    return 0.0, ""


def _neighbours(repo_index: RepoIndex, region: str) -> set[str]:
    """The regions a claimed region depends on or that depend on it; for a whole file, those of
    everything in it."""
    found = repo_index.neighbours(region)
    if "::" not in region:
        for inner in repo_index.regions_in(region):
            if inner.id != region:
                found |= repo_index.neighbours(inner.id)
    return found


def _normal(target: str) -> str:
    """A claim target or a mentioned path as a comparable name (`payments/`, `payments/__init__.py`: `payments`)."""
    return target.rstrip("/").removesuffix("/__init__.py")


def _sizes(context: Context, repo_index: RepoIndex | None) -> Callable[[str], int]:
    """How many files are under a directory (the region index's files, else the repository's)."""
    files: Iterable[str] = repo_index.files if repo_index is not None else context.repo_files
    known: dict[str, int] = {}

    def size(directory: str) -> int:
        found = known.get(directory)
        if found is None:
            prefix = directory + "/"
            found = known[directory] = max(1, sum(1 for f in files if f.startswith(prefix)))
        return found

    return size


@dataclass(frozen=True)
class _ClaimHit:
    strength: float
    reason: str


def _claim_hits(context: Context, index: TermIndex, claims: Sequence[ClaimInput],
                repo_index: RepoIndex | None) -> dict[int, _ClaimHit]:
    hits: dict[int, _ClaimHit] = {}

    def offer(i: int, strength: float, reason: str) -> None:
        if strength > 0 and (i not in hits or strength > hits[i].strength):
            hits[i] = _ClaimHit(strength, reason)

    rule_sections = _rule_sections(context)
    size = _sizes(context, repo_index)
    for claim in claims:
        factor = 0.6 if claim.suggested else 1.0
        label = f"{'suggested region' if claim.suggested else 'claim'} {claim.target}"
        if not claim.suggested and len(claim.regions) > 1:
            # A directory claimed whole (`notifications/templates/`): a mention of it is exact.
            target = _normal(claim.target)
            for i, section in enumerate(context.sections):
                for mention in section.mentions:
                    if mention.exists is not False and _normal(mention.target) == target:
                        offer(i, 1.0, f"{label}: mentions `{mention.text}` (the claimed directory)")
        for region in claim.regions[:50]:
            neighbours = _neighbours(repo_index, region) if repo_index is not None and not claim.suggested else set()
            neighbour_files = {_path_of(n) for n in neighbours}
            for i, section in enumerate(context.sections):
                for mention in section.mentions:
                    if mention.exists is False:
                        continue
                    strength, how = _relation(mention.target, region, neighbours, neighbour_files, size)
                    # A suggestion is a guess: only a mention of its own file or region counts.
                    if strength >= (0.85 if claim.suggested else 0.0) and strength:
                        offer(i, strength * factor, f"{label}: mentions `{mention.text}` ({how})")
            # The claimed names themselves in a section's words.
            # The claimed name written out (`InvoiceCalculator`, `round_minor_units`): a
            # plain word (`total`) is a term like any other, counted once.
            name = _claimed_name(region)
            if len(name) >= 6 and ("_" in name.strip("_") or any(c.isupper() for c in name[1:])):
                for i, section in enumerate(context.sections):
                    if name in section.text:
                        offer(i, 0.7 * factor, f"{label}: names `{name}`")
            for rule, i in rule_sections:
                if rule.covers(_path_of(region)):
                    # A rule for every file says nothing about this one in particular.
                    broad = any(p.lstrip("/").startswith("*") for p in rule.paths)
                    offer(i, (0.3 if broad else 0.8) * factor,
                          f"{label}: its rule `{rule.id}` covers {_path_of(region)}")
    return hits


def _claimed_name(region: str) -> str:
    """The name a claimed region goes by: `total` for `a.py::Invoice.total`, the package for `__init__.py`."""
    qualname = region.partition("::")[2]
    if qualname:
        name = qualname.rpartition(".")[2]
        return "" if name.startswith("__") else name
    path = PurePosixPath(region)
    return path.parent.name if path.stem == "__init__" else path.stem


def _rule_sections(context: Context) -> list[tuple[Any, int]]:
    found: list[tuple[Any, int]] = []
    for rule in context.rules:
        layer, _, rest = rule.origin.partition(":")
        path, _, line = rest.rpartition(":")
        best: int | None = None
        for i, section in enumerate(context.sections):
            if section.layer == layer and section.source == path and section.line <= int(line or 0) \
                    and (best is None or section.line > context.sections[best].line):
                best = i
        if best is not None:
            found.append((rule, best))
    return found


# -- the slice ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    """One section in a slice and why it is there."""

    section: Section
    score: float
    terms: tuple[str, ...] = ()
    term_score: float = 0.0
    claim_score: float = 0.0
    pulled_by: str = ""
    pinned: bool = False
    superseded_by: str = ""
    """For an ADR another supersedes: which (the agent follows the newer decision)."""

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.section.text)

    def why(self) -> str:
        status = (self.section.adr.status if self.section.adr is not None else "").strip()
        # A rejected or proposed ADR reads as a decision unless said otherwise; so does a superseded one whose
        # successor is not here to name (a bare `status: superseded`).
        unsettled = f"; {status.upper()}: not a decision in force" if status.lower().startswith(NOT_IN_FORCE) else ""
        if not unsettled and not self.superseded_by and status.lower().startswith("superseded"):
            unsettled = "; SUPERSEDED: not a decision in force"
        if self.pinned:
            return "pinned (context.pinned)" + unsettled
        if self.pulled_by == SHARED_REASON:
            return SHARED_REASON + unsettled
        parts = [f"score {self.score:.0f}"]
        if self.terms:
            parts.append("terms: " + ", ".join(self.terms))
        if self.pulled_by:
            parts.append(self.pulled_by)
        if self.superseded_by:
            parts.append(f"SUPERSEDED by {self.superseded_by}: follow that decision where the two differ")
        return "; ".join(parts) + unsettled

    def as_dict(self) -> dict[str, Any]:
        section = self.section
        return {"id": section.id, "layer": section.layer, "source": section.source, "line": section.line,
                "heading": list(section.heading), "title": section.title, "kind": section.kind,
                "hash": section.hash, "tokens": self.tokens, "score": round(self.score, 1),
                "term_score": round(self.term_score, 1), "claim_score": round(self.claim_score, 1),
                "terms": list(self.terms), "pulled_by": self.pulled_by, "pinned": self.pinned,
                "superseded_by": self.superseded_by, "why": self.why()}


@dataclass
class Slice:
    """The sections chosen for one task from one context, and what was left out."""

    task: str
    claims: list[ClaimInput]
    version: str
    commit: str | None
    budget: int
    picks: list[Pick]
    left_out: list[tuple[Pick, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.picks)

    def summary(self) -> str:
        where = f"commit {self.commit[:12]}" if self.commit else "the working tree"
        return (f"context version {self.version} ({where}): {len(self.picks)} section"
                f"{'' if len(self.picks) == 1 else 's'}, ~{self.tokens:,} of {self.budget:,} tokens "
                f"(estimated as characters / {CHARS_PER_TOKEN})")

    def render(self) -> str:
        """The slice as the Markdown file an agent reads."""
        lines = ["# Context for this task", "",
                 (f"Assembled by loomtui from the team's sources: {self.summary()}. "
                  "This is the ground truth on conventions and decisions for this change; "
                  "each section says where it comes from and why it is here."), "",
                 "## Task", "", self.task.strip() or "(no task text)", ""]
        if self.claims:
            kind = "Regions suggested for the task" if all(c.suggested for c in self.claims) else "Claimed regions"
            lines += [f"## {kind}", ""] + [f"- `{c.target}`" for c in self.claims] + [""]
        for pick in self.picks:
            lines += ["---", "", f"> from {pick.section.label}: {pick.why()}", "", pick.section.text.rstrip(), ""]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "version": self.version, "commit": self.commit, "budget_tokens": self.budget,
            "tokens": self.tokens, "chars_per_token": CHARS_PER_TOKEN,
            "claims": [{"target": c.target, "regions": list(c.regions), "suggested": c.suggested}
                       for c in self.claims],
            "sections": [p.as_dict() for p in self.picks],
            "left_out": [{**p.as_dict(), "reason": reason} for p, reason in self.left_out],
            "problems": list(self.problems),
        }


def pinned_sections(context: Context) -> tuple[list[Section], list[str]]:
    """The sections `context.pinned` names, and a problem per selector matching none.

    A selector is `PATH` (every section of the files the glob matches), or
    `PATH#HEADING` (the section whose heading, or heading path `A > B`, it is),
    optionally after `LAYER:`.
    """
    chosen: list[Section] = []
    problems: list[str] = []
    layer_names = {s.layer for s in context.sections}
    for selector in context.config.pinned:
        layer = None
        body = selector
        head, sep, tail = selector.partition(":")
        if sep and head in layer_names:
            layer, body = head, tail
        path, _, heading = body.partition("#")
        spec = glob_spec(["/" + path.lstrip("/")])
        wanted = " ".join(heading.lower().split())
        matched = [
            s for s in context.sections
            if (layer is None or s.layer == layer) and spec.match_file(s.source)
            and (not wanted or wanted in (" ".join(s.heading_path.lower().split()),
                                          " ".join(s.heading[-1].lower().split()) if s.heading else ""))
        ]
        if not matched:
            problems.append(f"context.pinned: {selector!r} matches no section")
        chosen.extend(s for s in matched if s not in chosen)
    return chosen, problems


def context_problems(context: Context) -> list[str]:
    """The context's own problems, and each `context.pinned` selector that matches no section (every
    slice would go without it)."""
    return [*context.problems, *pinned_sections(context)[1]]


def slice_context(context: Context, task: str, claims: Sequence[ClaimInput] = (), *,
                  budget: int | None = None, repo_index: RepoIndex | None = None) -> Slice:
    """Rank every section for `task` and `claims` and fill the budget; raises LoomError when
    the pinned sections alone exceed it."""
    # Where the budget came from, to name what raises it (it said "raise context.budget_tokens" of a --budget).
    where = "context.budget_tokens" if budget is None else "the budget given"
    budget = context.config.budget_tokens if budget is None else budget
    pinned, problems = pinned_sections(context)
    pinned_tokens = sum(estimate_tokens(s.text) for s in pinned)
    if pinned_tokens > budget:
        raise LoomError(f"the context budget of {budget:,} tokens is smaller than the pinned sections "
                        f"({pinned_tokens:,} tokens in {len(pinned)}); raise {where} or pin less")
    index = term_index(context)
    relation = supersession(context)
    ranked = _in_force_first(context, _rank(context, index, task, claims, repo_index), relation)
    picks = [Pick(s, 100.0, pinned=True) for s in pinned]
    used = pinned_tokens
    left_out: list[tuple[Pick, str]] = []
    pinned_ids = {s.id for s in pinned}
    for pick in ranked:
        if pick.section.id in pinned_ids:
            continue
        if pick.score < MIN_SCORE:
            break
        if used + pick.tokens > budget:
            left_out.append((pick, _over_budget(pick, budget - used)))
            continue
        picks.append(pick)
        used += pick.tokens
    if len(picks) == len(pinned):  # nothing scored: the pinned sections, then the shared file in what is left
        shared, over = _shared_conventions(context, budget - used, skip=pinned_ids)
        picks += shared
        said = {pick.section.id for pick, _why in left_out}  # one that scored and did not fit is said already
        left_out += [(pick, why) for pick, why in over if pick.section.id not in said]
    picks = [replace(pick, superseded_by=relation.newer(pick.section.id)) for pick in picks]
    return Slice(task, list(claims), context.version, context.commit, budget, picks, left_out,
                 problems + list(context.problems))


def _in_force_first(context: Context, ranked: list[Pick], relation: Supersession) -> list[Pick]:
    """`ranked`, each superseded ADR preceded by the decisions standing in its place, ranked at least as high:
    the old decision came first (on equal scores, by path) and a tight budget kept it and left the new one out,
    or the task's words matched the old one only and its agent never got the decision in force."""
    by_id = {pick.section.id: pick for pick in ranked}
    placed: set[str] = set()
    ordered: list[Pick] = []
    for pick in ranked:
        for standing_id in relation.standing_for(pick.section.id):
            current, section = by_id.get(standing_id), context.section(standing_id)
            if standing_id in placed or section is None:
                continue
            if current is None or current.score < pick.score:
                current = replace(current or Pick(section, 0.0), score=pick.score, pulled_by=(
                    f"in force in place of {pick.section.title}, which the task matched"))
            ordered.append(current)
            placed.add(standing_id)
        if pick.section.id not in placed:
            ordered.append(pick)
            placed.add(pick.section.id)
    return ordered


SHARED_CONVENTIONS: Final = ("AGENTS.md", "CLAUDE.md")
"""The repository's own instructions file, at its root: what every agent gets when nothing else is
picked for its task (the first of these that is a source)."""
SHARED_REASON: Final = "the shared conventions file: nothing scored 30 for this task"
NOT_IN_FORCE: Final = ("rejected", "proposed", "deprecated", "withdrawn", "draft")
"""ADR statuses that are no decision to follow (a superseded one says what replaced it)."""


def _over_budget(pick: Pick, left: int) -> str:
    return f"over budget ({pick.tokens:,} tokens; {left:,} left)"


def _shared_conventions(context: Context, budget: int,
                        skip: Collection[str] = ()) -> tuple[list[Pick], list[tuple[Pick, str]]]:
    """The sections of the repository's shared conventions file (`SHARED_CONVENTIONS`) that fit
    `budget`, in order: a slice with nothing scored for its task is not left empty while that file
    fits (it takes the place of the file itself for Claude Code and Codex); and those that did not fit, with
    why (said, as any section left out: an agent without its conventions should not be a surprise). `skip`: those
    given already (pinned: a pin took the place of the whole file, and the rest of AGENTS.md was lost)."""
    for name in SHARED_CONVENTIONS:
        sections = [s for s in context.sections if s.layer == REPO_LAYER and s.source == name]
        if not sections:
            continue
        sections = [s for s in sections if s.id not in skip]
        picks: list[Pick] = []
        over: list[tuple[Pick, str]] = []
        used = 0
        for section in sections:
            pick = Pick(section, 0.0, pulled_by=SHARED_REASON)
            if used + pick.tokens <= budget:
                picks.append(pick)
                used += pick.tokens
            else:
                over.append((pick, _over_budget(pick, budget - used)))
        return picks, over
    return [], []


def _rank(context: Context, index: TermIndex, task: str, claims: Sequence[ClaimInput],
          repo_index: RepoIndex | None) -> list[Pick]:
    words = task_terms(task)
    forms = display_forms(task)
    max_idf = math.log((index.count + 1) / 0.5) or 1.0
    weights: dict[str, float] = {}
    strengths: dict[int, dict[str, tuple[float, str]]] = {}
    for word in words:
        expansions = index.expand(word)
        # A word no section has ("rename", "quickly") says nothing of which section the task needs: at the
        # rarest word's weight it divided every match down ("rename the logger" lost the logging sections).
        weights[word] = 0.3 + 0.7 * min(index.idf(expansions[0][0]) / max_idf, 1.0) if expansions else 0.3
        for term, similarity in expansions:
            shown_term = forms.get(word, word) + ("" if term == word else f"~{term}")
            for i, count in index.postings(term).items():
                strength = 1.0 if term in index.headings[i] else 0.5 + 0.3 * min(count, 3) / 3
                strength *= similarity if similarity == 1.0 else similarity * 0.9
                current = strengths.setdefault(i, {}).get(word)
                if current is None or strength > current[0]:
                    strengths[i][word] = (strength, shown_term)
    total_weight = sum(weights.values()) or 1.0
    hits = _claim_hits(context, index, claims, repo_index) if claims else {}
    picks: list[Pick] = []
    for i in set(strengths) | set(hits):
        matched = strengths.get(i, {})
        term_score = 100.0 * sum(weights[w] * s for w, (s, _) in matched.items()) / total_weight
        hit = hits.get(i)
        claim_score = 100.0 * hit.strength if hit else 0.0
        score = min(100.0, max(term_score, claim_score) + 0.3 * min(term_score, claim_score))
        terms = tuple(shown for _, (_, shown) in sorted(matched.items(), key=lambda kv: -kv[1][0]))
        picks.append(Pick(context.sections[i], score, terms, term_score, claim_score, hit.reason if hit else ""))
    picks.sort(key=lambda p: (-p.score, p.section.source, p.section.line))
    return picks
