"""Which ADRs supersede which: one reading for the drift flags and the slices' notes.

An ADR is superseded when its own status names another (`Superseded by ADR 0005`) or
another says it supersedes it. Only a decision that stands, or stood once (superseded
itself), supersedes anything: an ADR naming itself, one that is rejected, proposed or
deprecated, and two that each supersede the other say nothing of which stands; a number
no ADR here has is said so. A chain (2 superseded by 3, 3 by 6) is followed to the
decision that stands now. A number is an ADR's of the same folder (each service of a
monorepo numbers its own log from 1), else the one ADR so numbered anywhere.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Final

from loomtui.knowledge.sections import Section
from loomtui.knowledge.sources import Context

NOT_STANDING: Final = ("rejected", "proposed", "superseded", "deprecated", "draft")
"""ADR states that decide nothing now."""
NEVER_STOOD: Final = tuple(state for state in NOT_STANDING if state != "superseded")
"""ADR states of a decision never taken: such an ADR supersedes nothing (a superseded one did, once)."""


@dataclass(frozen=True)
class Supersession:
    by: dict[str, dict[int, str]]
    """Section id of each superseded ADR -> number -> title of each standing ADR superseding it."""
    each_other: tuple[tuple[Section, Section], ...]
    """ADRs that each supersede the other: neither stands over the other."""
    successors: dict[str, tuple[str, ...]]
    """Section id of each superseded ADR -> the section ids of the decisions standing in its place."""
    same_number: tuple[tuple[Section, Section], ...] = ()
    """ADRs of one folder with one number (two branches' ADR 0007 merged): "supersedes ADR 7" names either."""
    undecided: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Section id of an ADR -> each ADR said to supersede it that decides nothing (`ADR 0002: X (proposed)`)."""

    def newer(self, section_id: str) -> str:
        """The ADRs superseding this one, in one line ("" when none)."""
        return "; ".join(title for _number, title in sorted(self.by.get(section_id, {}).items()))

    def standing_for(self, section_id: str) -> tuple[str, ...]:
        """The section ids of the decisions that stand in this ADR's place (none when it is not superseded)."""
        return self.successors.get(section_id, ())


def _folder(section: Section) -> tuple[str, str]:
    return section.layer, str(PurePosixPath(section.source).parent)


def supersession(context: Context) -> Supersession:
    """Which ADRs of `context` supersede which."""
    adrs = [s for s in context.sections if s.adr is not None]
    here: dict[tuple[tuple[str, str], int], Section] = {}
    anywhere: dict[int, list[Section]] = {}
    same_number: list[tuple[Section, Section]] = []
    for section in adrs:
        number = section.adr.number if section.adr is not None else None
        if number is not None:
            if (taken := here.get((_folder(section), number))) is not None:
                same_number.append((taken, section))
            here[_folder(section), number] = section
            anywhere.setdefault(number, []).append(section)

    def named(by: Section, number: int) -> Section | None:
        found = here.get((_folder(by), number))
        if found is None and len(anywhere.get(number, ())) == 1:
            found = anywhere[number][0]
        return found

    steps: dict[str, dict[str, Section]] = {}  # older id -> newer id -> newer: one step each
    missing: dict[str, set[int]] = {}
    undecided: dict[str, dict[str, str]] = {}  # older id -> newer id -> how it is said, of newer ones deciding nothing

    def step(older: Section, newer: Section) -> None:
        if newer.adr is not None and newer.adr.state in NEVER_STOOD:
            undecided.setdefault(older.id, {})[newer.id] = f"{newer.title} ({newer.adr.state})"
        else:
            steps.setdefault(older.id, {})[newer.id] = newer

    for section in adrs:
        adr = section.adr
        assert adr is not None
        for number in adr.supersedes:
            older = named(section, number)
            if older is not None and older is not section:
                step(older, section)
        for number in adr.superseded_by:
            newer = named(section, number)
            if newer is section:
                continue
            if newer is None:
                missing.setdefault(section.id, set()).add(number)
            else:
                step(section, newer)
    pairs = sorted({(a, b) if a < b else (b, a) for a, newer in steps.items() for b in newer
                    if a in steps.get(b, {})})
    for a, b in pairs:
        del steps[a][b], steps[b][a]
    sections = {s.id: s for s in adrs}
    by: dict[str, dict[int, str]] = {}
    successors: dict[str, tuple[str, ...]] = {}
    for older_id in set(steps) | set(missing):
        said, standing = _standing_ends(older_id, steps, missing)
        if said:
            by[older_id] = said
            successors[older_id] = standing
    return Supersession(by, tuple((sections[a], sections[b]) for a, b in pairs), successors, tuple(same_number),
                        {older: tuple(said.values()) for older, said in undecided.items()})


def _standing_ends(start: str, steps: dict[str, dict[str, Section]],
                   missing: dict[str, set[int]]) -> tuple[dict[int, str], tuple[str, ...]]:
    """What supersedes `start`, followed along the chain to what stands now (number -> title, as said), and
    the section ids of those that stand."""
    said: dict[int, str] = {number: f"ADR {number:04d} (not in the repository)" for number in missing.get(start, ())}
    standing: list[str] = []
    seen = {start}
    frontier: deque[tuple[Section, Section | None]] = deque((newer, None) for newer in steps.get(start, {}).values())
    while frontier:
        node, through = frontier.popleft()
        if node.id in seen or node.adr is None or node.adr.number is None:
            continue
        seen.add(node.id)
        via = f" (through {through.title.split(':')[0]})" if through is not None else ""
        if node.adr.state not in NOT_STANDING:
            said[node.adr.number] = node.title + via
            standing.append(node.id)
        else:  # superseded itself: what stands is further on, or nowhere here (then it names no decision to follow:
            # an ADR "superseded" and "superseding" the team's accepted one had agents follow it)
            frontier.extend((newer, through or node) for newer in steps.get(node.id, {}).values())
    return said, tuple(standing)
