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
listed, and smaller ones may still fit.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Final

import pathspec
from rapidfuzz import fuzz, process

from loomtui.coordination.index import RepoIndex, gc_paused
from loomtui.errors import LoomError
from loomtui.knowledge.sections import CHARS_PER_TOKEN, Section, estimate_tokens
from loomtui.knowledge.sources import Context

__all__ = ["MIN_SCORE", "ClaimInput", "Pick", "Slice", "pinned_sections", "slice_context", "task_terms"]

MIN_SCORE: Final = 30.0
_FUZZY_CUTOFF: Final = 85.0
_STOP_WORDS: Final = frozenset(
    ["a", "an", "and", "the", "to", "of", "in", "on", "for", "with", "from", "into", "by", "is", "are", "be", "it",
     "its", "this", "that", "these", "those", "add", "fix", "make", "use", "using", "update", "change", "new",
     "support", "so", "when", "should", "all", "any", "as", "at", "or", "not", "no", "do", "does", "can", "could",
     "we", "our", "you", "your", "they", "them", "their", "there", "here", "was", "were", "has", "have", "had",
     "will", "would", "may", "might", "must", "also", "than", "then", "only", "just", "more", "most", "some",
     "such", "via", "per", "each", "every", "other", "about", "after", "before", "over", "under", "up", "down",
     "out", "off", "get", "got", "let", "lets"]
)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_STEM_CACHE: dict[str, str] = {}


def _suffixes_off(low: str) -> str:
    """A lowercase word without its inflection: `invoices`, `invoiced`, `invoice` are all `invoic`."""
    if low.endswith("ies") and len(low) > 4:
        return low[:-3] + "y"
    found = low
    for suffix in ("ings", "ing", "ed", "s"):
        if low.endswith(suffix) and len(low) - len(suffix) >= 3 and not low.endswith("ss"):
            found = low[: -len(suffix)]
            break
    # "invoice", "invoices" and "invoiced" meet at "invoic".
    if found.endswith("e") and len(found) > 3:
        found = found[:-1]
    return found


_STOP_STEMS: Final = _STOP_WORDS | frozenset(_suffixes_off(w) for w in _STOP_WORDS)
"""The stop words as stems too: "update", "updates" and "updated" all stem to "updat"."""


def _stem(word: str) -> str:
    found = _STEM_CACHE.get(word)
    if found is None:
        found = _suffixes_off(word.lower())
        if len(found) < 2 or found in _STOP_STEMS:
            found = ""
        if len(_STEM_CACHE) < 200_000:
            _STEM_CACHE[word] = found
    return found


def _terms(text: str) -> dict[str, int]:
    """Stemmed words and how often each occurs (identifiers split: `InvoiceCalculator`)."""
    raw = Counter(_WORD.findall(text))
    terms: dict[str, int] = {}
    cache_get = _STEM_CACHE.get
    terms_get = terms.get
    for word, count in raw.items():
        stem = cache_get(word)
        if stem is None:
            stem = _stem(word)
        if stem:
            terms[stem] = terms_get(stem, 0) + count
    return terms


def _display_forms(text: str) -> dict[str, str]:
    """Each stem of `text` -> the first word of it as written (`invoic` -> `invoices`)."""
    forms: dict[str, str] = {}
    for word in _WORD.findall(text):
        if stem := _stem(word):
            forms.setdefault(stem, word.lower())
    return forms


def task_terms(text: str) -> list[str]:
    """The words of a task that say what it is about, stemmed, in order, once each."""
    return list(dict.fromkeys(_terms_in_order(text)))


def _terms_in_order(text: str) -> list[str]:
    stems = (_stem(w) for w in _WORD.findall(text))
    return [s for s in stems if s]


# -- the per-context term index -----------------------------------------------------------


_NOT_LETTER: Final = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalpha()})
"""Every ASCII character but a letter becomes a space: `translate` then `split` cut a text into
runs of letters in C, several times faster than `_WORD.findall` over the whole text."""

_CAMEL: Final = re.compile(r"[A-Z](?:(?<=[a-z][A-Z])|(?=[A-Z][a-z]))")
_NOT_ASCII: Final = re.compile(r"[^\x00-\x7f]")
"""Where `_WORD` cuts a run of letters into several words: `InvoiceCalculator`, `HTTPServer` (a
capital after a small letter, or before a capital and a small letter: the pattern starts with a
capital, so the regex engine skips to them) and `café`. Any other run is one word (`invoice`,
`Invoice`, `HTTP`)."""

_IES: Final = re.compile(r"^([a-z]{2,})ies$", re.MULTILINE)
_SUFFIX: Final = re.compile(r"^(?![a-z]*ss$)([a-z]{3,}?)(?:ings|ing|ed|s)$", re.MULTILINE)
_FINAL_E: Final = re.compile(r"^([a-z]{3,})e$", re.MULTILINE)


def _stem_lines(lines: str) -> str:
    """`_suffixes_off` of every line of lowercase ASCII words at once: its three rules as regex
    passes (in C, not a Python call per word); stop words are left in (see `_STOP_STEMS`)."""
    return _FINAL_E.sub(r"\1", _SUFFIX.sub(r"\1", _IES.sub(r"\1y", lines)))


class _TermIndex:
    """Every section's words, counted once per context (see Context.cache).

    Built in C as far as it goes: one Counter per section of its runs of letters
    (`translate` + `split`); the distinct runs that are one word each, lowercased
    and stemmed together as the lines of one string (`_stem_lines`); the few runs
    of several words cut by `_WORD`. A term's family (the runs holding a word of
    that stem) is found in those lines when a task first asks for it, and its
    postings (section -> count) are gathered then and kept.
    """

    def __init__(self, sections: Sequence[Section]) -> None:
        with gc_paused():
            self.count = len(sections)
            self.counters = [Counter(section.text.translate(_NOT_LETTER).split()) for section in sections]
            self.headings: list[frozenset[str]] = []
            for section in sections:
                heading = " ".join(section.heading) or section.title
                if section.adr is not None:
                    heading += " " + section.adr.title
                self.headings.append(frozenset(_terms(heading)))
            runs: set[str] = set().union(*self.counters) if self.counters else set()
            everything = "\n" + "\n".join(runs) + "\n"
            hits = [*_CAMEL.finditer(everything), *([] if everything.isascii() else _NOT_ASCII.finditer(everything))]
            several = {everything[everything.rfind("\n", 0, hit.start()) + 1:everything.find("\n", hit.end())]
                       for hit in hits}
            # Runs of one word each, and their stems: line i of `_lines` is the stem of `_runs[i]`.
            self._runs = list(runs.difference(several)) if several else list(runs)
            stems = _stem_lines("\n".join(self._runs).lower()).split("\n")
            self._lines = "\n" + "\n".join(stems) + "\n"
            self._starts = list(itertools.accumulate(map(operator.add, map(len, stems), itertools.repeat(1)),
                                                     initial=1))
            # Runs of several words: each word's stem -> the runs, once per time the word is in one.
            self._compound: dict[str, list[str]] = {}
            for run in several:
                for word in _WORD.findall(run):
                    if stem := _stem(word):
                        self._compound.setdefault(stem, []).append(run)
            vocabulary = set(stems)
            vocabulary.update(self._compound, *self.headings)
            vocabulary.difference_update(_STOP_STEMS, string.ascii_lowercase, ("",))
            self.vocabulary = frozenset(vocabulary)  # every term some section has
            self._buckets: dict[str, list[str]] = {}
            self._postings: dict[str, dict[int, int]] = {}

    def family(self, term: str) -> list[str]:
        """The runs of letters holding a word of stem `term`, once per time it holds one."""
        if term not in self.vocabulary:
            return []
        found = list(self._compound.get(term, ()))
        needle = f"\n{term}\n"
        lines, at = self._lines, self._lines.find(needle)
        while at != -1:
            found.append(self._runs[bisect.bisect_right(self._starts, at + 1) - 1])
            at = lines.find(needle, at + len(needle) - 1)
        return found

    def bucket(self, letter: str) -> list[str]:
        """The terms starting with `letter` (the candidates for a near spelling)."""
        found = self._buckets.get(letter)
        if found is None:
            found = self._buckets[letter] = sorted(t for t in self.vocabulary if t[0] == letter)
        return found

    def postings(self, term: str) -> dict[int, int]:
        """Section index -> how often `term` (any word of its stem) occurs; heading-only counts 1.

        A run of letters is in a family once per word of that stem in it, so `InvoiceInvoice`
        counts twice, as `_WORD.findall` would."""
        found = self._postings.get(term)
        if found is None:
            found = {}
            for word in self.family(term):
                for i, counter in enumerate(self.counters):
                    n = counter.get(word)
                    if n:
                        found[i] = found.get(i, 0) + n
            for i, heading in enumerate(self.headings):
                if term in heading and i not in found:
                    found[i] = 1
            self._postings[term] = found
        return found

    def idf(self, term: str) -> float:
        df = len(self.postings(term))
        return math.log((self.count + 1) / (df + 0.5)) if df else 0.0

    def expand(self, term: str) -> list[tuple[str, float]]:
        """The term itself if any section has it, and near spellings (similarity 0-1)."""
        found = [(term, 1.0)] if term in self.vocabulary else []
        if len(term) >= 5:
            candidates = [t for t in self.bucket(term[0]) if abs(len(t) - len(term)) <= 2 and t != term]
            for other, similarity, _ in process.extract(term, candidates, scorer=fuzz.ratio,
                                                        score_cutoff=_FUZZY_CUTOFF, limit=3):
                found.append((other, similarity / 100.0))
        return found


def _term_index(context: Context) -> _TermIndex:
    found = context.cache.get("terms")
    if not isinstance(found, _TermIndex):
        found = _TermIndex(context.sections)
        context.cache["terms"] = found
    return found


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


def _claim_hits(context: Context, index: _TermIndex, claims: Sequence[ClaimInput],
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

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.section.text)

    def why(self) -> str:
        if self.pinned:
            return "pinned (context.pinned)"
        parts = [f"score {self.score:.0f}"]
        if self.terms:
            parts.append("terms: " + ", ".join(self.terms))
        if self.pulled_by:
            parts.append(self.pulled_by)
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        section = self.section
        return {"id": section.id, "layer": section.layer, "source": section.source, "line": section.line,
                "heading": list(section.heading), "title": section.title, "kind": section.kind,
                "hash": section.hash, "tokens": self.tokens, "score": round(self.score, 1),
                "term_score": round(self.term_score, 1), "claim_score": round(self.claim_score, 1),
                "terms": list(self.terms), "pulled_by": self.pulled_by, "pinned": self.pinned, "why": self.why()}


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
        spec = pathspec.GitIgnoreSpec.from_lines(["/" + path.lstrip("/")])
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


def slice_context(context: Context, task: str, claims: Sequence[ClaimInput] = (), *,
                  budget: int | None = None, repo_index: RepoIndex | None = None) -> Slice:
    """Rank every section for `task` and `claims` and fill the budget; raises LoomError when
    the pinned sections alone exceed it."""
    budget = context.config.budget_tokens if budget is None else budget
    pinned, problems = pinned_sections(context)
    pinned_tokens = sum(estimate_tokens(s.text) for s in pinned)
    if pinned_tokens > budget:
        raise LoomError(f"the context budget of {budget:,} tokens is smaller than the pinned sections "
                        f"({pinned_tokens:,} tokens in {len(pinned)}); raise context.budget_tokens or pin less")
    index = _term_index(context)
    ranked = _rank(context, index, task, claims, repo_index)
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
            left_out.append((pick, f"over budget ({pick.tokens:,} tokens; {budget - used:,} left)"))
            continue
        picks.append(pick)
        used += pick.tokens
    return Slice(task, list(claims), context.version, context.commit, budget, picks, left_out,
                 problems + list(context.problems))


def _rank(context: Context, index: _TermIndex, task: str, claims: Sequence[ClaimInput],
          repo_index: RepoIndex | None) -> list[Pick]:
    words = task_terms(task)
    forms = _display_forms(task)
    max_idf = math.log((index.count + 1) / 0.5) or 1.0
    weights: dict[str, float] = {}
    strengths: dict[int, dict[str, tuple[float, str]]] = {}
    for word in words:
        expansions = index.expand(word)
        idf = index.idf(expansions[0][0]) if expansions else math.log(index.count + 1)
        weights[word] = 0.3 + 0.7 * min(idf / max_idf, 1.0)
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
