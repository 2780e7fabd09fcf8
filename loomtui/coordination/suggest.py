"""Ranking likely regions for a task's text, so claims can be confirmed before an agent starts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz, utils

from loomtui.coordination.index import RepoIndex
from loomtui.coordination.regions import Region, overlaps

# Words that say what to do rather than where: they match everything equally.
_STOP_WORDS = frozenset(
    "a an and the to of in on for with from into by is are be it this that add fix make "
    "use using update change new support so when should all any".split()
)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


@dataclass(frozen=True)
class Suggestion:
    region: Region
    score: float


def _stem(word: str) -> str:
    # Crude, but enough that "rounding" meets "round", "refunds" meets "refund" and "quotes" meets
    # "quote" (a final e goes too, so both are "quot").
    for suffix in ("ings", "ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def words(text: str) -> str:
    """Lower-case word stems of identifiers and prose: `round_minor_units` -> `round minor unit`."""
    return " ".join(_stem(w.lower()) for w in _WORD.findall(text))


def _name_words(region: Region) -> str:
    return f"{words(region.qualname)} {words(region.path.removesuffix('.py').replace('/', ' '))}"


def suggest_regions(index: RepoIndex, task: str, limit: int = 10) -> list[Suggestion]:
    """The regions a task most likely touches, best first (rapidfuzz over names, paths, docs)."""
    query = " ".join(w for w in words(task).split() if w not in _STOP_WORDS)
    if not query:
        return []
    regions = [r for r in index.regions.values() if r.kind != "file"]
    # A plain loop, not process.cdist: that one needs numpy, which loomtui does not depend on.
    processed = utils.default_process(query)
    by_name = [fuzz.token_set_ratio(processed, utils.default_process(_name_words(r))) for r in regions]
    by_doc = [fuzz.token_set_ratio(processed, utils.default_process(words(r.doc))) for r in regions]
    # Names say where, docstrings say what; an undocumented region leans on its name alone.
    # Private helpers are rarely where a task starts.
    # A region's own name counts beside its path: every method of refunds.py shares "refund".
    by_leaf = [fuzz.token_set_ratio(processed, utils.default_process(words(r.qualname.rpartition(".")[2])))
               if r.kind != "module" else 0 for r in regions]
    # Tests are rarely where a task starts (their long names match everything); a task about tests
    # starts there.
    about_tests = "test" in query.split()
    scores = [
        (0.45 * float(name) + 0.25 * float(leaf) + 0.3 * (float(doc) if region.doc else 0.8 * float(name)))
        * (0.9 if region.qualname.rpartition(".")[2].startswith("_") else 1.0)
        * ((1.15 if about_tests else 0.75) if _in_tests(region) else 1.0)
        for region, name, leaf, doc in zip(regions, by_name, by_leaf, by_doc, strict=False)
    ]
    # Prefer the most specific region among equal scores: a method over its class and module.
    specificity = {"method": 3, "function": 3, "class": 2, "module": 1}
    ordered = sorted(range(len(regions)), key=lambda i: (-scores[i], -specificity.get(regions[i].kind, 0),
                                                         regions[i].id))
    chosen = [i for i in ordered if scores[i] >= 40]
    # One claim per place: a class or module is left out when something inside it is suggested too.
    chosen_ids = [regions[i].id for i in chosen]
    kept = [i for i in chosen if not any(other != regions[i].id and overlaps(other, regions[i].id)
                                         and len(other) > len(regions[i].id) for other in chosen_ids[:limit * 2])]
    return [Suggestion(regions[i], round(scores[i], 1)) for i in kept[:limit]]


def _in_tests(region: Region) -> bool:
    parts = region.path.split("/")
    return "tests" in parts[:-1] or "test" in parts[:-1] or parts[-1].startswith("test_")
