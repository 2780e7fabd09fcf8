"""The `:` palette runs the app: every binding of the screen it was opened on, every sandbox and
open escalation by its id or text, and every claimed region, ranked with rapidfuzz (typos and word
order forgiven). The context view's sections and the metrics view's figures have providers of their
own, in those views' modules, ranked the same way (`ranked_hits`).

Labels are plain `Text`, never markup: a task or a summary is an agent's words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from rich.text import Text
from textual.command import Hit, Hits, Provider

from loomtui.errors import abridged, escape_controls
from loomtui.tui.base import loom_app
from loomtui.tui.widgets.fitted_table import TABLE_KEYS

THRESHOLD = 60.0
"""The least rapidfuzz score (of 100) a label needs to be offered."""


def _score(query: str, label: str) -> tuple[float, float]:
    """How well `query` matches `label`, 0 to 1: the better of a weighted whole-label match and a
    word-set match (every word of the query in the label). Not a best-substring match: "refunds"
    would find "end". And, among labels that match as well, how much of the label the query is (the
    whole-label match alone): `merge` is all of "Merge (m)", a word of a checklist item's sentence."""
    if not query.strip():
        return 0.5, 0.0
    words = label.split(maxsplit=2)
    if len(words) > 1 and words[1].strip("#:").lower() == query.strip().lstrip("#").lower():
        return 1.0, 1.0  # the record's own id (`sandbox 7a3948: ...`): it, before a region its sandbox holds
    from rapidfuzz import fuzz  # when the palette is first typed in, not before the app's first frame

    query, label = query.lower(), label.lower()
    whole = fuzz.WRatio(query, label) / 100
    return max(whole, fuzz.token_set_ratio(query, label) / 100), whole


PaletteEntry = tuple[str, Callable[[], Any], str]
"""A line of the palette: its label, what choosing it runs, and its help."""


def ranked_hits(query: str, entries: Iterable[PaletteEntry]) -> list[Hit]:
    """The entries that match `query`, best first."""
    found = []
    for label, run, help_text in entries:
        score, whole = _score(query, label)
        if score * 100 >= THRESHOLD:  # ranked by the score, ties by how much of the label the query is
            found.append(Hit(0.9 * score + 0.1 * whole, Text(escape_controls(label)), run, text=label,
                             help=help_text))
    return sorted(found, reverse=True)


class RankedProvider(Provider):
    """A provider whose lines (`entries`) are matched and ranked with `ranked_hits`."""

    def entries(self) -> list[PaletteEntry]:
        return []

    async def search(self, query: str) -> Hits:
        for hit in ranked_hits(query, self.entries()):
            yield hit


class BindingCommands(RankedProvider):
    """Every key of the screen the palette was opened on (and the app's), by what it does."""

    def _bindings(self) -> list[tuple[PaletteEntry, bool]]:
        """Each key's entry, and whether it is loomtui's own (it has an id) or a widget's (cursor keys)."""
        found: list[tuple[PaletteEntry, bool]] = []
        seen = set()
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if not active.enabled or not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            shown = binding.key_display or self.app.get_key_display(binding)
            run = partial(self.app.run_action, binding.action, active.node)
            own = binding.id is not None and not binding.id.startswith(TABLE_KEYS)
            found.append(((f"{binding.description} ({shown})", run, binding.tooltip), own))
        return found

    def entries(self) -> list[PaletteEntry]:
        return [entry for entry, _own in self._bindings()]

    async def discover(self) -> Hits:
        """The empty palette: loomtui's own keys (new, approve, the views) before the widgets' cursor keys."""
        for (label, run, help_text), own in sorted(self._bindings(), key=lambda found: not found[1]):
            yield Hit(0.6 if own else 0.4, Text(escape_controls(label)), run, text=label, help=help_text)


class SandboxesAndEscalations(RankedProvider):
    """Jump to a sandbox or an open escalation by its id, task or summary."""

    def entries(self) -> list[PaletteEntry]:
        app = loom_app(self.app)
        snapshot = app.latest_snapshot
        if snapshot is None:
            return []
        entries: list[PaletteEntry] = []
        for sandbox in snapshot.sandboxes:
            task = abridged(sandbox.task, 70)
            entries.append((f"sandbox {sandbox.id}: {task} ({sandbox.status}, {sandbox.runtime})",
                            partial(app.show_sandbox, sandbox.id), "open it in the sandboxes view"))
        for escalation in snapshot.escalations_to_decide:
            summary = abridged(escalation.summary, 70)
            entries.append((f"escalation #{escalation.id} ({escalation.risk}): {summary}",
                            partial(app.show_escalation, escalation.id),
                            "open it in the escalations view to approve, reject or override"))
        return entries


class ClaimedRegions(RankedProvider):
    """Every live claim by its region: choosing one draws the claims graph filtered to its sandbox."""

    def entries(self) -> list[PaletteEntry]:
        app = loom_app(self.app)
        picture = app.coordination
        if picture is None:  # not indexed yet: nothing claimed is known
            return []
        return [(f"region {' '.join(claim.target.split())} (claim #{claim.id} {claim.mode}, "
                 f"sandbox {claim.sandbox_id})", partial(app.show_claims_of, claim.sandbox_id),
                 "draw its sandbox's claims and their neighbours in the claims view")
                for claim in picture.claims]


def context_sections() -> type[Provider]:
    """The context view's sections, its module loaded when the palette first opens."""
    from loomtui.tui.screens.context import ContextSections

    return ContextSections


def metrics_figures() -> type[Provider]:
    """The metrics view's figures, loaded as `context_sections` is."""
    from loomtui.tui.screens.metrics import MetricsFigures

    return MetricsFigures
