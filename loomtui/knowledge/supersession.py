"""Which ADRs supersede which: one reading for the drift flags and the slices' notes.

An ADR is superseded when its own status names another (`Superseded by ADR 0005`) or
another says it supersedes it. Only a decision that stands supersedes anything: an ADR
naming itself, one that is rejected, proposed or superseded itself, and two that each
supersede the other say nothing of which stands; a number no ADR here has is said so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from loomtui.knowledge.sections import Section
from loomtui.knowledge.sources import Context

NOT_STANDING: Final = ("rejected", "proposed", "superseded", "deprecated", "draft")
"""ADR states that decide nothing now: such an ADR supersedes nothing."""


@dataclass(frozen=True)
class Supersession:
    by: dict[str, dict[int, str]]
    """Section id of each superseded ADR -> number -> title of each standing ADR superseding it."""
    each_other: tuple[tuple[Section, Section], ...]
    """ADRs that each supersede the other: neither stands over the other."""

    def newer(self, section_id: str) -> str:
        """The ADRs superseding this one, in one line ("" when none)."""
        return "; ".join(title for _number, title in sorted(self.by.get(section_id, {}).items()))


def supersession(context: Context) -> Supersession:
    """Which ADRs of `context` supersede which."""
    adrs = [s for s in context.sections if s.adr is not None]
    by_number = {s.adr.number: s for s in adrs if s.adr is not None and s.adr.number is not None}
    newer: dict[str, dict[int, str]] = {}
    for section in adrs:
        adr = section.adr
        assert adr is not None
        if adr.state not in NOT_STANDING:
            for number in adr.supersedes:
                older = by_number.get(number)
                if older is not None and older is not section and adr.number is not None:
                    newer.setdefault(older.id, {})[adr.number] = section.title
        for number in adr.superseded_by:
            named = by_number.get(number)
            if named is section:
                continue
            if named is None:
                newer.setdefault(section.id, {})[number] = f"ADR {number:04d} (not in the repository)"
            elif named.adr is not None and named.adr.state not in NOT_STANDING:
                newer.setdefault(section.id, {})[number] = named.title
    numbers = {s.id: s.adr.number for s in adrs if s.adr is not None}
    sections = {s.id: s for s in adrs}
    both_ways = [(section_id, number) for section_id, by in newer.items() for number in by
                 if numbers.get(section_id) in newer.get(by_number[number].id if number in by_number else "", {})]
    pairs = {tuple(sorted((section_id, by_number[number].id))) for section_id, number in both_ways}
    for section_id, number in both_ways:
        del newer[section_id][number]
    return Supersession({section_id: by for section_id, by in newer.items() if by},
                        tuple((sections[a], sections[b]) for a, b in sorted(pairs)))
