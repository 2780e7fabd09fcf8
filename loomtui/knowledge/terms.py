"""The words of tasks and sections as the slice compares them: stems with stop words dropped, and a
per-context index of every section's terms (postings, rarity, near spellings through rapidfuzz)."""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Final

from rapidfuzz import fuzz, process

from loomtui.coordination.index import gc_paused
from loomtui.knowledge.sections import Section
from loomtui.knowledge.sources import Context

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
# An acronym's plural is one word (`PDFs`, `URLs`, `APIs`: read as `pd`, `fs`, `ur`, `ls`, `ap` a task matched nowhere).
WORD = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
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


def stem_of(word: str) -> str:
    found = _STEM_CACHE.get(word)
    if found is None:
        # An acronym's plural is its acronym (`PRs` is `pr`): the suffix rules keep three letters of a word.
        found = _suffixes_off(word[:-1].lower() if len(word) > 2 and word[-1] == "s" and word[:-1].isupper()
                              else word.lower())
        if len(found) < 2 or found in _STOP_STEMS:
            found = ""
        if len(_STEM_CACHE) < 200_000:
            _STEM_CACHE[word] = found
    return found


def _terms(text: str) -> dict[str, int]:
    """Stemmed words and how often each occurs (identifiers split: `InvoiceCalculator`)."""
    raw = Counter(WORD.findall(text))
    terms: dict[str, int] = {}
    cache_get = _STEM_CACHE.get
    terms_get = terms.get
    for word, count in raw.items():
        stem = cache_get(word)
        if stem is None:
            stem = stem_of(word)
        if stem:
            terms[stem] = terms_get(stem, 0) + count
    return terms


def display_forms(text: str) -> dict[str, str]:
    """Each stem of `text` -> the first word of it as written (`invoic` -> `invoices`)."""
    forms: dict[str, str] = {}
    for word in WORD.findall(text):
        if stem := stem_of(word):
            forms.setdefault(stem, word.lower())
    return forms


def task_terms(text: str) -> list[str]:
    """The words of a task that say what it is about, stemmed, in order, once each."""
    return list(dict.fromkeys(_terms_in_order(text)))


def _terms_in_order(text: str) -> list[str]:
    stems = (stem_of(w) for w in WORD.findall(text))
    return [s for s in stems if s]


# -- the per-context term index -----------------------------------------------------------


_NOT_LETTER: Final = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalpha()})
"""Every ASCII character but a letter becomes a space: `translate` then `split` cut a text into
runs of letters in C, several times faster than `WORD.findall` over the whole text."""

_CAMEL: Final = re.compile(r"[A-Z](?:(?<=[a-z][A-Z])|(?=[A-Z][a-z]))")
_NOT_ASCII: Final = re.compile(r"[^\x00-\x7f]")
"""Where `WORD` cuts a run of letters into several words: `InvoiceCalculator`, `HTTPServer` (a
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


class TermIndex:
    """Every section's words, counted once per context (see Context.cache).

    Built in C as far as it goes: one Counter per section of its runs of letters
    (`translate` + `split`); the distinct runs that are one word each, lowercased
    and stemmed together as the lines of one string (`_stem_lines`); the few runs
    of several words cut by `WORD`. A term's family (the runs holding a word of
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
                for word in WORD.findall(run):
                    if stem := stem_of(word):
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
        counts twice, as `WORD.findall` would."""
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


def term_index(context: Context) -> TermIndex:
    found = context.cache.get("terms")
    if not isinstance(found, TermIndex):
        found = TermIndex(context.sections)
        context.cache["terms"] = found
    return found
