"""What a coordination view shows: live claims, their conflicts, and each claimed region's
dependency neighbourhood with the owner of every neighbour. Plain data for any UI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loomtui.coordination.claims import Conflict, Coordinator, edge_label
from loomtui.coordination.diff import sandbox_signature_changes
from loomtui.coordination.index import DEPENDENCY_KINDS, RepoIndex
from loomtui.coordination.regions import ancestors, ast_regions, split_id
from loomtui.gitcmd import Git
from loomtui.store import ClaimRecord, Store


@dataclass(frozen=True)
class Edge:
    """One dependency edge seen from a claimed region."""

    neighbour: str
    kind: str
    outgoing: bool  # True: the claimed region uses the neighbour
    owners: tuple[str, ...]  # sandboxes whose claims cover the neighbour


@dataclass(frozen=True)
class CoordinationPicture:
    claims: list[ClaimRecord]
    conflicts: list[Conflict]
    neighbourhoods: dict[str, list[Edge]] = field(default_factory=dict)
    files: int = 0
    regions: int = 0
    edges: int = 0
    stale: tuple[str, ...] = ()  # files that no longer parse: their regions are their last good version's
    gone: dict[int, list[str]] = field(default_factory=dict)  # by claim: its regions the code no longer has

    def index_line(self) -> str:
        """`Index: N files, R regions, E edges` and which files are stale, for a status line."""
        line = f"Index: {self.files} files, {self.regions} regions, {self.edges} edges."
        if self.stale:
            more = f" and {len(self.stale) - 3} more" if len(self.stale) > 3 else ""
            shown_files = ", ".join(self.stale[:3]) + more
            line += f" Stale (no longer parse, last good regions kept): {shown_files}."
        return line


def owners_of(region_id: str, claims: list[ClaimRecord]) -> tuple[str, ...]:
    """Sandboxes whose live claims cover a region (directly or through an enclosing region)."""
    covering = {region_id, *ancestors(region_id)}
    return tuple(sorted({c.sandbox_id for c in claims if covering & set(c.region_ids)}))


def gone_regions(claims: list[ClaimRecord], index: RepoIndex,
                 made_on_branch: Callable[[ClaimRecord, str], bool] | None = None) -> dict[int, list[str]]:
    """Each claim's regions the code no longer has (renamed, moved or deleted since it was made, as by a
    merge): a name that protects nothing. Regions inside files only: a file claimed may be one its agent
    has yet to create; and a region its holder's branch made (`made_on_branch`: a commit there claims it, a
    function added to a file the code has too) is new, not gone."""
    def new_on_branch(claim: ClaimRecord, rid: str) -> bool:
        return made_on_branch is not None and made_on_branch(claim, rid)

    gone = {}
    for claim in claims:
        missing = [rid for rid in claim.region_ids
                   if "::" in rid and rid not in index.regions and not new_on_branch(claim, rid)]
        if missing:
            gone[claim.id] = missing
    return gone


def made_on_branch(store: Store, root: Path) -> Callable[[ClaimRecord, str], bool]:
    """Whether a claim's region is one its holder's branch made: its sandbox's base commit has no such file,
    or the file there has no such region (a function the agent added was said "gone from the code: claim
    again")."""
    base_regions: dict[tuple[str, str], set[str] | None] = {}  # (base, path): its regions; None: no such file

    def regions_at(base: str, path: str) -> set[str] | None:
        if (base, path) not in base_regions:
            done = Git(root).raw("show", f"{base}:{path}")
            base_regions[base, path] = None if done.status != 0 else {
                region.id for region in ast_regions(done.out.decode("utf-8", "surrogateescape"), path)}
        return base_regions[base, path]

    def made(claim: ClaimRecord, region_id: str) -> bool:
        sandbox = store.get_sandbox(claim.sandbox_id)
        if sandbox is None or not sandbox.base_sha:  # a person's claim, or a task not started: not on a branch
            return False
        found = regions_at(sandbox.base_sha, split_id(region_id)[0])
        return found is None or region_id not in found
    return made


def coordination_picture(coordinator: Coordinator) -> CoordinationPicture:
    """Claims, conflicts and the one-hop dependency neighbourhood of every claimed region."""
    claims = coordinator.store.live_claims()
    index = coordinator.index
    neighbourhoods: dict[str, list[Edge]] = {}
    for claim in claims:
        for region_id in claim.region_ids:
            if region_id in neighbourhoods or region_id not in index.regions:
                continue
            edges = [Edge(n, edge_label(kinds), True, owners_of(n, claims))
                     for _, n, kinds in index.out_edges([region_id]) if kinds & DEPENDENCY_KINDS]
            edges += [Edge(n, edge_label(kinds), False, owners_of(n, claims))
                      for n, _, kinds in index.in_edges([region_id]) if kinds & DEPENDENCY_KINDS]
            neighbourhoods[region_id] = sorted(edges, key=lambda e: (not e.owners, e.neighbour))
    return CoordinationPicture(
        claims=claims, neighbourhoods=neighbourhoods,
        conflicts=coordinator.conflicts(signature_changed=sandbox_signature_changes(coordinator)),
        files=len(index.files), regions=index.region_count(), edges=index.edge_count(), stale=tuple(index.stale),
        gone=gone_regions(claims, index, made_on_branch(coordinator.store, coordinator.workspace.root)),
    )
