"""Claims on code regions, and the conflicts between them, decided before any code is written.

A sandbox (any agent session) claims targets: a region id, a file, a glob, or
`path:10-40`. Each claim maps to regions of the dependency graph. A new claim is
checked against every live claim of other sandboxes inside one immediate store
transaction, so of any number of racing exclusive claims on a region exactly one
wins. Conflicts:

- overlap: the same region, or one nested in the other, both exclusive: refused;
- shared-vs-exclusive: a read (shared) claim and an exclusive one overlap: warning;
- dependency: an edge (within `dependency_hops`) joins regions claimed by two
  sandboxes: warning, raised to high when one side's signature changed.

Every claim, refusal, override, release and expiry is an audit entry. What a target
names is `loomtui.coordination.targets`' job (`TargetResolver`, `BadTarget`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from loomtui.config import MAX_LEASE_SECONDS, CoordinationConfig
from loomtui.coordination.index import DEPENDENCY_KINDS, ProgressFn, RepoIndex
from loomtui.coordination.regions import ancestors, named_once, overlaps, split_id
from loomtui.coordination.targets import TargetResolver
from loomtui.errors import LoomError, blank, plural, shown
from loomtui.gitcmd import Git
from loomtui.store import ENDED_STATUSES, ClaimRecord, SandboxRecord, Store
from loomtui.workspace import Workspace

MODES = ("exclusive", "shared")
# Sandboxes in ENDED_STATUSES hold no claims: theirs are released with an audit entry.
# An agent that merely exited still holds its claims: its change awaits review.


COMMIT_CLAIM_REASON: Final = "claimed by commit of"
"""The reason of a claim an accepted commit made on what it changed unclaimed (Codex and Aider write
without asking first): held from then on, but not coordinated before the code was written."""


MAX_HELD_BY_NAME: Final = 20
"""The most regions `hold_changed` claims one by one; more are held by one claim."""
CONSTRUCTORS: Final = ("__init__", "__new__")
"""What a call of a class runs: near whatever uses the class."""
MAX_SAME_NAME: Final = 50
"""Definitions of one name looked up as one (overloads): past any a file has by hand."""


def claimed_before_writing(claim: ClaimRecord) -> bool:
    """Whether a claim was made before the code it holds was written (not by the commit of it)."""
    return not claim.reason.startswith(COMMIT_CLAIM_REASON)


def lease_length(ttl: object) -> float:
    """A claim's lease in seconds: a finite number above 0 and at most MAX_LEASE_SECONDS (30 days).

    NaN, infinities, 0 and negatives are refused: a lease must neither be born
    expired nor never expire.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise LoomError(f"a lease (ttl) must be a number of seconds (got {ttl!r})")
    if isinstance(ttl, float) and not math.isfinite(ttl):
        raise LoomError(f"a lease (ttl) must be a finite number of seconds (got {ttl!r})")
    if ttl <= 0:
        raise LoomError(f"a lease (ttl) must be more than 0 seconds (got {ttl!r})")
    if ttl > MAX_LEASE_SECONDS:
        raise LoomError(f"a lease (ttl) may be at most {MAX_LEASE_SECONDS} seconds (30 days; got {ttl!r})")
    return float(ttl)


class ClaimRefused(LoomError):
    """A claim overlaps another sandbox's exclusive claim (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, conflicts: Sequence[Conflict]) -> None:
        super().__init__(message)
        self.conflicts = list(conflicts)


class OverrideNeeded(LoomError):
    """Releasing another sandbox's claim is an override, with a reason (exit code 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Conflict:
    """Two claims that collide, why, and the graph path between their regions."""

    kind: str  # overlap | shared-vs-exclusive | dependency
    severity: str  # error (refused) | high | warning
    sandbox_a: str
    region_a: str
    claim_a: int | None  # None for a proposed claim not yet stored
    sandbox_b: str
    region_b: str
    claim_b: int
    path: tuple[str, ...]
    explanation: str

    @property
    def blocking(self) -> bool:
        return self.severity == "error"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind, "severity": self.severity, "explanation": self.explanation,
            "a": {"sandbox": self.sandbox_a, "region": self.region_a, "claim": self.claim_a},
            "b": {"sandbox": self.sandbox_b, "region": self.region_b, "claim": self.claim_b},
            "path": list(self.path),
        }


@dataclass(frozen=True)
class ClaimResult:
    claim: ClaimRecord
    conflicts: list[Conflict] = field(default_factory=list)
    overridden: bool = False
    already_held: bool = False
    """The sandbox held these regions so already (`claim`): nothing new was claimed."""


@dataclass(frozen=True)
class EditDecision:
    """What the edit hook answers: allow, claim-and-allow, or deny with a reason."""

    verdict: str  # allow | claim | deny
    reason: str
    regions: tuple[str, ...]
    conflicts: tuple[Conflict, ...] = ()


# -- dependency edges ------------------------------------------------------------------


def edge_label(kinds: frozenset[str]) -> str:
    """The dependency kinds of an edge, e.g. `imports+references`."""
    return "+".join(sorted(kind for kind in kinds if kind in DEPENDENCY_KINDS)) or "+".join(sorted(kinds))


# -- the engine ------------------------------------------------------------------------


OverrideCheck = Callable[[str], bool]
"""Whether a user may force a claim another sandbox's claim refuses (the policy decides)."""


WorktreeTree = Callable[[SandboxRecord], str]
"""A live sandbox's worktree as it is now, as a tree id: read from outside, never by git run in it (the
agent writes its `.git` file and admin dir: a planted fsmonitor would run here). Execution knows how."""


class Coordinator:
    """Claims, conflicts, suggestions and edit checks over one repository's index."""

    def __init__(self, workspace: Workspace, index: RepoIndex, *, may_override: OverrideCheck,
                 dependency_hops: int = 1, lease_seconds: int = 3600,
                 worktree_tree: WorktreeTree | None = None, release_lapsed: Callable[[], object] | None = None) -> None:
        self.workspace = workspace
        self.store = workspace.store
        self._failed_said: dict[str, str] = {}  # what a refusal adds of each holder, for one check or sweep
        self.index = index
        self.hops = dependency_hops
        self.lease_seconds = lease_seconds
        self.targets = TargetResolver(index)
        # Who may force a refused claim is governance's call (the policy's override groups): the
        # caller says, every time, so no coordinator quietly lets nobody (or everybody) override.
        self.may_override = may_override
        # How a live sandbox's uncommitted work is read (for its signature changes): the caller says, as
        # for overrides. Without it only what the sandbox committed counts.
        self.worktree_tree = worktree_tree
        # Provisional claims (made for a tool call not yet seen to happen) whose window closed: governance
        # knows them, and lets them go with the stale ones, whoever holds them.
        self.release_lapsed = release_lapsed

    def index_changed(self) -> None:
        """Forget what was derived from the index after it was refreshed in place."""
        self.targets.index_changed()

    # -- targets to regions (`loomtui.coordination.targets`) ------------------------------

    def resolve(self, target: str) -> list[str]:
        """Region ids a target names: region id, file, directory, glob, or `path:10-40`."""
        return self.targets.resolve(target)

    def repo_path(self, raw: str) -> str:
        """A repository-relative posix path; anything escaping the repository is refused."""
        return self.targets.repo_path(raw)

    # -- the graph -----------------------------------------------------------------

    def path_between(self, a: str, b: str) -> tuple[str, ...]:
        """A shortest dependency path between two regions, either direction (or just the pair).

        Searched outwards from `a` through the index a hop at a time, as far as a conflict
        reaches (`dependency_hops`), in sorted order so the same index always gives the
        same path. A direct edge, the common case, is one lookup.
        """
        if a == b:
            return (a,)
        for source, target in ((a, b), (b, a)):
            kinds = self.index.edge_kinds(source, target)
            if kinds is not None and kinds & DEPENDENCY_KINDS:
                return (a, b)
        parents: dict[str, str] = {a: ""}
        frontier = [a]
        for _ in range(self.hops if self.hops > 1 else 0):
            following: list[str] = []
            steps = sorted([(src, dst) for src, dst, kinds in self.index.out_edges(frontier)
                            if kinds & DEPENDENCY_KINDS]
                           + [(dst, src) for src, dst, kinds in self.index.in_edges(frontier)
                              if kinds & DEPENDENCY_KINDS])
            for here, there in steps:
                if there in parents:
                    continue
                parents[there] = here
                following.append(there)
                if there == b:
                    path = [b]
                    while parents[path[-1]]:
                        path.append(parents[path[-1]])
                    return tuple(reversed(path))
            if not following:
                break
            frontier = following
        return (a, b)

    def describe_path(self, path: Sequence[str]) -> str:
        """`a -calls-> b <-imports- c`: each step with its edge kind and direction."""
        text = path[0]
        for left, right in zip(path, path[1:], strict=False):
            forward = self.index.edge_kinds(left, right)
            backward = None if forward is not None else self.index.edge_kinds(right, left)
            if forward is not None:
                text += f" -{edge_label(forward)}-> {right}"
            elif backward is not None:
                text += f" <-{edge_label(backward)}- {right}"
            else:
                text += f" ~ {right}"
        return text

    def _descendants(self, region_id: str) -> list[str]:
        region = self.index.regions.get(region_id)
        if region is None:
            return []
        prefix = region.qualname + "." if region.qualname else ""
        return [r.id for r in self.index.regions_in(region.path, region.start, region.end)
                if r.id != region_id and r.qualname and r.qualname.startswith(prefix)]

    # -- checking ---------------------------------------------------------------------

    def covered(self, region_id: str) -> list[str]:
        """A region and every region nested in it (a module claim covers its functions), and so for each
        definition of its name (`run`, `run#2`: overloads, a property's setter; see `regions.overlaps`)."""
        return list(dict.fromkeys(covered for same in self._same_name(region_id)
                                  for covered in (same, *self._descendants(same))))

    def used_through(self, region_id: str) -> frozenset[str]:
        """The regions a user's dependency edge lands on when it uses this one: what it covers (`covered`), and the
        class of a constructor among them (`Engine()` is an edge to `Engine`, never to `__init__`), as the claim
        checks count them (`_near_map`)."""
        covered = self.covered(region_id)
        return frozenset({*covered, *(cls for region in covered if (cls := self._built_by(region)))})

    def _built_by(self, region_id: str) -> str | None:
        """The class whose constructor (`__init__`, `__new__`) this region is, or None."""
        path, qualname = split_id(named_once(region_id))
        owner, _, name = qualname.rpartition(".")
        return f"{path}::{owner}" if owner and name in CONSTRUCTORS and f"{path}::{owner}" in self.index.regions \
            else None

    def _builders(self, region_id: str) -> list[str]:
        """A class's constructors the index has (`X.__init__`, `X.__new__`); [] for any other region."""
        found = self.index.regions.get(region_id)
        if found is None or found.kind != "class":
            return []
        return [f"{region_id}.{name}" for name in CONSTRUCTORS if f"{region_id}.{name}" in self.index.regions]

    def _same_name(self, region_id: str) -> list[str]:
        path, qualname = split_id(region_id)
        name = qualname.rsplit("#", 1)[0] if "#" in qualname.rsplit(".", 1)[-1] else qualname
        if not name:
            return [region_id]
        found = [region_id]
        for nth in range(1, MAX_SAME_NAME + 1):
            same = f"{path}::{name}" if nth == 1 else f"{path}::{name}#{nth}"
            if same not in self.index.regions:
                break
            found.append(same)
        return list(dict.fromkeys(found))

    def _near_map(self, covering: Mapping[str, list[str]]) -> dict[str, str]:
        """Each region within `hops` of what these claims cover (`covering`: each claimed region's
        `covered`) -> the covered region it touches."""
        near: dict[str, str] = {}
        if self.hops == 0:
            return near
        every = [covered for regions in covering.values() for covered in regions]
        built = {covered: cls for covered in every if (cls := self._built_by(covered))}
        # One query for the whole claim: a class claim covers every method in it.
        around = self.index.neighbours_of_each([*every, *built.values()], hops=self.hops)
        for covered in every:
            # A constructor is near what uses its class (`Engine()` is an edge to `Engine`, never to `__init__`),
            # and a neighbour's other definitions of its name too: a caller's edge leads to the first (an
            # overload's stub), a claim may hold the implementation.
            touching = {*around.get(covered, ()), *around.get(built.get(covered, ""), ())}
            for neighbour in (same for n in sorted(touching) for same in (*self._same_name(n), *self._builders(n))):
                known = near.get(neighbour)
                # Name the most specific region that touches it: the method that
                # calls a helper, not the module that imports it.
                if known is None or len(covered) > len(known):
                    near[neighbour] = covered
        return near

    def _candidates(self, covering: Mapping[str, list[str]], near: Mapping[str, str]) -> list[str]:
        """Every region id a conflicting claim could be stored under."""
        wanted: set[str] = set()
        for rid in (*covering, *near):
            wanted.add(rid)
            wanted.update(ancestors(rid))
        for regions in covering.values():
            wanted.update(regions)
        return sorted(wanted)

    def check(self, sandbox_id: str, region_ids: Sequence[str], mode: str = "exclusive",
              signature_changed: Iterable[str] = (), *, claim_id: int | None = None,
              lookup: Callable[[list[str]], list[ClaimRecord]] | None = None) -> list[Conflict]:
        """Conflicts a claim by `sandbox_id` on these regions has with other sandboxes' live claims."""
        if lookup is None:  # one check on its own (`conflicts` clears it once for all of its own)
            self._failed_said = {}
        covering = {rid: self.covered(rid) for rid in region_ids}
        near = self._near_map(covering)
        find = lookup or self.store.live_claims_on
        found_claims = {c.id: c for c in find(self._candidates(covering, near))}
        # And what is nested in them by name alone: a function another sandbox added on its branch is in no index
        # here, so a claim on its file (or class) was granted over it (the review then flagged the holder's change).
        # Files and classes: a function holding another sandbox's new nested one is left to the review. The whole
        # picture (`conflicts`, a `lookup` given) finds such a pair from the nested claim's side.
        containers = [rid for rid in region_ids if lookup is None and (
            (known := self.index.regions.get(rid)) is None or known.kind in ("module", "class"))]
        if containers:
            found_claims.update((c.id, c) for c in self.store.live_claims_under(containers))
        others = [c for c in found_claims.values() if c.sandbox_id != sandbox_id]
        changed = set(signature_changed)
        near_by_file: dict[str, list[str]] = {}
        for neighbour in near:
            near_by_file.setdefault(split_id(neighbour)[0], []).append(neighbour)
        found: dict[tuple[str, str, str, int], Conflict] = {}
        for other in others:
            for mine in region_ids:
                for theirs in other.region_ids:
                    conflict = self._pair(sandbox_id, claim_id, mine, mode, other, theirs, near, near_by_file,
                                          changed)
                    if conflict is not None:
                        found.setdefault((conflict.kind, conflict.region_a, conflict.region_b, other.id),
                                         conflict)
        order = {"error": 0, "high": 1, "warning": 2}
        return sorted(found.values(), key=lambda c: (order[c.severity], c.region_a, c.region_b))

    def _near_and_covered(self, theirs: str, near_by_file: Mapping[str, list[str]]) -> list[str]:
        """Those of `covered(theirs)` that are near the claim being checked, in `covered`'s order. Found among
        the near regions of its file by id (nesting is in the id), not by asking the index for every region
        nested in each held claim: a query per held claim made a hub's check 50 ms."""
        path, qualname = split_id(theirs)
        inside = f"{path}::{qualname}." if qualname else f"{path}::"
        nested = [rid for rid in near_by_file.get(path, ()) if rid.startswith(inside)]
        if len(nested) > 1:
            nested.sort(key=self._span_order)
        return [theirs, *nested]

    def _kept_by_a_failed_run(self, holder: str) -> str:
        """What a refusal adds when the holder's agent failed without a change: it keeps its claims for a run
        again, until their lease ends (a newcomer's next task was refused for an hour by a run that failed at
        once, unsaid). One that left a change is reviewed as it is: nothing to add."""
        if holder not in self._failed_said:
            record = self.store.get_sandbox(holder)
            tip = Git(self.workspace.root).resolve_commit(record.branch) if record is not None and \
                record.status == "failed" and record.branch else None
            self._failed_said[holder] = "" if tip is None or record is None or tip != record.base_sha else (
                f"; its agent failed without a change and it keeps its claims for a run again: `loomtui sandbox rm "
                f"{holder}` or `loomtui claim release --sandbox {holder} --all` (with `--override REASON` if "
                "someone else started it) lets them go")
        return self._failed_said[holder]

    def _span_order(self, region_id: str) -> tuple[int, int, str]:
        # The index's order of a file's regions: each before those nested in it.
        region = self.index.regions.get(region_id)
        return (region.start, -region.end, region_id) if region is not None else (0, 0, region_id)

    def _pair(self, sandbox_id: str, claim_id: int | None, mine: str, mode: str, other: ClaimRecord,
              theirs: str, near: Mapping[str, str], near_by_file: Mapping[str, list[str]],
              signature_changed: set[str]) -> Conflict | None:
        them = f"sandbox {other.sandbox_id} (claim #{other.id}, {other.mode})"
        if overlaps(mine, theirs):
            path: tuple[str, ...] = (mine, theirs) if mine != theirs else (mine,)
            if mode == "exclusive" and other.mode == "exclusive":
                again = named_once(mine) == named_once(theirs)
                nested = ("" if mine == theirs else " (one name, defined again)" if again
                          else f" (nested in {mine})" if len(theirs) > len(mine) else f" (which contains {mine})")
                held = f"{mine} is held by {them}" if mine == theirs else f"{mine} is held by {them}: {theirs}{nested}"
                held += self._kept_by_a_failed_run(other.sandbox_id)
                return Conflict("overlap", "error", sandbox_id, mine, claim_id, other.sandbox_id, theirs,
                                other.id, path, held)
            if mode != other.mode:
                return Conflict("shared-vs-exclusive", "warning", sandbox_id, mine, claim_id,
                                other.sandbox_id, theirs, other.id, path,
                                f"{mine} ({mode}, sandbox {sandbox_id}) overlaps {theirs} held by {them}; "
                                "the reader may see it change underneath")
            return None
        for touched in self._near_and_covered(theirs, near_by_file):
            source = near.get(touched)
            if source is None or not overlaps(source, mine):
                continue
            path = self.path_between(source, touched)
            severity = "high" if {source, touched} & signature_changed else "warning"
            changed = "; a signature on the path changed" if severity == "high" else ""
            return Conflict("dependency", severity, sandbox_id, source, claim_id, other.sandbox_id, touched,
                            other.id, path,
                            f"{source} (sandbox {sandbox_id}) depends on or is used by {touched} held by "
                            f"{them}: {self.describe_path(path)}{changed}")
        return None

    # -- claiming ---------------------------------------------------------------------

    def claim(self, sandbox_id: str, target: str, *, mode: str = "exclusive", reason: str = "",
              ttl: float | None = None, override_reason: str | None = None, new_file: bool = False) -> ClaimResult:
        """Claim a target atomically; refused on overlap unless overridden with a reason. `new_file`: the
        target is a file's path, written yet or not (`TargetResolver.new_file`)."""
        target = self.targets.as_written(target)  # kept as the repository names it, not one machine's path
        regions = self.targets.new_file(target) if new_file else self.resolve(target)
        return self.claim_regions(sandbox_id, target, regions, mode=mode, reason=reason, ttl=ttl,
                                  override_reason=override_reason)

    def claim_regions(self, sandbox_id: str, target: str, region_ids: Sequence[str], *,
                      mode: str = "exclusive", reason: str = "", ttl: float | None = None,
                      override_reason: str | None = None) -> ClaimResult:
        """Claim already-resolved regions (a new file the index has not seen is its own region)."""
        if mode not in MODES:
            raise LoomError(f"claim mode must be one of {', '.join(MODES)} (got {mode!r})")
        check_holder(sandbox_id)
        if override_reason is not None and blank(override_reason):
            raise LoomError("an override needs a reason")
        sandbox = self.store.get_sandbox(sandbox_id)
        if sandbox is not None and sandbox.status in ENDED_STATUSES:
            # Its claim would be void at the next write (released as "sandbox ended"), yet listed as live till then.
            raise LoomError(f"sandbox {sandbox_id} is {sandbox.status}: an ended sandbox claims nothing", exit_code=1)
        lease = lease_length(self.lease_seconds if ttl is None else ttl)
        # Check and insert in one immediate transaction: racing claims serialise here.
        refused: ClaimRefused | None = None
        with self.store.transaction():
            self.release_stale()
            held = self._held_so(sandbox_id, region_ids, mode) if override_reason is None else None
            if held is not None:  # the same target twice made two claims, each to release on its own
                return ClaimResult(held, already_held=True)
            conflicts = self.check(sandbox_id, region_ids, mode)
            blocking = [c for c in conflicts if c.blocking]
            details: dict[str, object] = {"target": target, "mode": mode, "regions": region_ids,
                                          "conflicts": [c.as_dict() for c in conflicts]}
            if blocking and override_reason is None:
                refused = ClaimRefused(f"claim on {shown(target)} refused: {blocking[0].explanation}", conflicts)
            elif blocking and not self.may_override(self.workspace.actor):
                details["override_denied"] = True
                refused = ClaimRefused(f"claim on {shown(target)} refused: {self.workspace.actor} may not override "
                                       f"(the policy's overrides.groups decide who may)", conflicts)
            if refused is None:
                claim = self.store.add_claim(sandbox_id, target, mode, reason, time.time() + lease, region_ids)
                if blocking:
                    # Recorded as an escalation already decided, so the queue's history shows it.
                    record = self.store.add_escalation(
                        "conflict-override", sandbox_id=sandbox_id, risk="high",
                        summary=f"override of a refused claim on {target}: {override_reason}",
                        data={"claim": claim.id, "by": self.workspace.actor, "reason": override_reason,
                              "conflicts": details["conflicts"]},
                    )
                    self.store.update_escalation(record.id, status="overridden")
                    self.workspace.record("claim.override", sandbox_id,
                                          {**details, "claim": claim.id, "reason": override_reason})
                self.workspace.record("claim.added", sandbox_id, {**details, "claim": claim.id, "reason": reason})
        if refused is not None:
            # A refusal changes nothing, and is recorded even when it rolls back the
            # caller's transaction (the other targets of an all-or-nothing claim).
            self.workspace.record_attempt("claim.refused", sandbox_id, details)
            raise refused
        return ClaimResult(claim, conflicts, overridden=bool(blocking))

    def _held_so(self, sandbox_id: str, region_ids: Sequence[str], mode: str) -> ClaimRecord | None:
        """The sandbox's live claim on exactly these regions in this mode (or exclusive, which covers a read)."""
        wanted = sorted(region_ids)
        return next((c for c in self.store.live_claims(sandbox_id) if sorted(c.region_ids) == wanted
                     and (c.mode == mode or c.mode == "exclusive")), None)

    def release(self, claim_id: int, reason: str = "released") -> bool:
        """Release one claim; False when it was not live."""
        return release_claim(self.workspace, claim_id, reason)

    def release_held(self, claim_id: int, sandbox_id: str, reason: str = "released", *,
                     override_reason: str | None = None, speaks_for: bool = True) -> ClaimRecord | None:
        """Release claim `claim_id` on behalf of `sandbox_id`; the claim, or None when it was not live.

        Another sandbox's claim is released only as an override (`override_reason`), by someone
        the policy lets override, as `add` forces a refused claim: else releasing it and claiming
        the region again would get around that rule. So is one of a sandbox the caller does not
        speak for (`speaks_for` False: a person naming someone else's sandbox as the holder).
        """
        claim = self.store.get_claim(claim_id)
        if claim is None:
            raise LoomError(f"no claim #{claim_id}")
        if claim.released is not None:  # nothing to override: it said "held by sandbox X" of a claim held by none
            return None
        if claim.sandbox_id != sandbox_id or not speaks_for:
            actor = self.workspace.actor
            if override_reason is None and claim.sandbox_id != sandbox_id:
                raise OverrideNeeded(f"claim #{claim_id} is held by sandbox {claim.sandbox_id}, not {sandbox_id}: "
                                     "releasing another sandbox's claim is an override, with a reason")
            if override_reason is None:
                raise OverrideNeeded(f"claim #{claim_id} is held by sandbox {sandbox_id}, which {actor} did not "
                                     "start: releasing it is an override, with a reason")
            if blank(override_reason):
                raise LoomError("an override needs a reason")
            if not self.may_override(actor):
                raise LoomError(f"{actor} may not override (the policy's overrides.groups decide who may)",
                                exit_code=1)
            reason = f"override by {actor} for sandbox {sandbox_id}: {override_reason.strip()}"
        return claim if release_claim(self.workspace, claim_id, reason) else None

    def release_sandbox(self, sandbox_id: str, reason: str = "released") -> int:
        """Release every live claim of a sandbox; returns how many."""
        return release_claims_of(self.workspace, sandbox_id, reason)

    def renew(self, claim_id: int, ttl: float | None = None) -> ClaimRecord:
        """Extend a live claim's lease to `ttl` seconds from now, with an audit entry.

        A renewal never shortens a lease: anyone may renew any claim, and a shortened one would let
        its region be claimed again without the override that releasing another's claim needs.
        """
        lease = lease_length(self.lease_seconds if ttl is None else ttl)
        with self.store.transaction():
            claim = self.store.get_claim(claim_id)
            if claim is None or claim.released is not None:
                raise LoomError(f"claim #{claim_id} is not live")
            now = time.time()
            ended = claim.expires <= now  # though no write swept it yet: others may claim its regions now
            if ended:
                self.release_stale(now)  # said (and audited) as it is, then refused below, after the commit
            else:
                renewed = self._extend(claim, now + lease, lease)
        if ended:
            raise LoomError(f"claim #{claim_id} expired {int(now - claim.expires)}s ago and is released: claim "
                            f"{claim.target} again", exit_code=1)
        return renewed

    def _extend(self, claim: ClaimRecord, expires: float, lease: float) -> ClaimRecord:
        """Within renew's transaction: the new end of a live lease, audited."""
        if expires < claim.expires:
            raise LoomError(f"claim #{claim.id} already expires in {int(claim.expires - time.time())}s, later "
                            f"than a {lease:g}s lease would: a renewal only extends a lease (to end one, "
                            "release it)", exit_code=1)
        return _extend_lease(self.workspace, claim, expires)

    def release_stale(self, now: float | None = None) -> list[ClaimRecord]:
        """Release expired leases and claims of ended sandboxes, each with an audit entry."""
        now = time.time() if now is None else now
        stale = self.store.stale_claims(now, ENDED_STATUSES)
        with self.store.transaction():
            for claim in stale:
                why = "lease expired" if claim.expires < now else "sandbox ended"
                if self.store.release_claim(claim.id, why):
                    self.workspace.record("claim.expired", claim.sandbox_id,
                                          {"claim": claim.id, "target": claim.target, "reason": why})
            if self.release_lapsed is not None:
                self.release_lapsed()
        return stale

    # -- the whole picture ------------------------------------------------------------

    def conflicts(self, signature_changed: Iterable[str] = ()) -> list[Conflict]:
        """Every conflict among live claims, each pair of regions reported once."""
        self._failed_said = {}
        live = self.store.live_claims()
        by_region: dict[str, list[ClaimRecord]] = {}
        for claim in live:
            for rid in claim.region_ids:
                by_region.setdefault(rid, []).append(claim)

        def lookup(region_ids: list[str]) -> list[ClaimRecord]:
            return list({c.id: c for rid in region_ids for c in by_region.get(rid, ())}.values())

        seen: set[tuple[object, ...]] = set()
        found: list[Conflict] = []
        for claim in live:
            for conflict in self.check(claim.sandbox_id, claim.region_ids, claim.mode, signature_changed,
                                       claim_id=claim.id, lookup=lookup):
                key = (conflict.kind, *sorted([(conflict.sandbox_a, conflict.region_a),
                                               (conflict.sandbox_b, conflict.region_b)]))
                if key not in seen:
                    seen.add(key)
                    found.append(conflict)
        return found

    # -- the edit hook ------------------------------------------------------------------

    def not_held(self, sandbox_id: str, region_ids: Sequence[str]) -> list[str]:
        """Those of `region_ids` the sandbox's exclusive claims do not hold (a held file or class
        holds what it contains)."""
        return not_held(self.store, sandbox_id, region_ids)

    def hold_changed(self, sandbox_id: str, region_ids: Sequence[str], reason: str) -> list[ClaimRecord]:
        """Claim, a claim per region, the regions a change made without asking touches that the sandbox
        does not hold yet, all or nothing (raises ClaimRefused): what an agent committed is its to
        finish, and another agent's edit there is then refused before it is written, not found at merge.
        A claim per region, each by its name (one named by its file read as holding all of it), up to
        MAX_HELD_BY_NAME; past them one claim for all (a claim each cost a check each: a commit of 2,000
        files took 30 s, past the hook's wait)."""
        needed = self.not_held(sandbox_id, list(dict.fromkeys(region_ids)))
        with self.store.transaction():
            if len(needed) <= MAX_HELD_BY_NAME:
                return [self.claim_regions(sandbox_id, rid, [rid], reason=f"{reason} {split_id(rid)[0]}").claim
                        for rid in needed]
            files = sorted({split_id(rid)[0] for rid in needed})
            # "21 regions in 1 files", "claimed by commit of gen.py and 0 more": said as counted.
            target = f"{len(needed)} regions in {plural(len(files), 'file')}"
            more = f" and {len(files) - 1} more" if len(files) > 1 else ""
            return [self.claim_regions(sandbox_id, target, needed, reason=f"{reason} {files[0]}{more}").claim]

    def check_edit(self, sandbox_id: str, path: str, lines: tuple[int, int] | None = None, *,
                   reason: str | None = None) -> EditDecision:
        """Allow an edit inside the sandbox's claims, claim free regions (with `reason`), deny others' regions."""
        rel = self.repo_path(path)
        if lines is None or rel not in self.index.files:
            region_ids = [rel]
        else:
            region_ids = self.targets.regions_for_lines(rel, *lines)
        needed = self.not_held(sandbox_id, region_ids)
        if not needed:
            return EditDecision("allow", "inside this sandbox's claims", tuple(region_ids))
        target = needed[0] if len(needed) == 1 else f"{rel}:{lines[0]}-{lines[1]}" if lines else rel
        try:
            result = self.claim_regions(sandbox_id, target, needed, reason=reason or f"claimed by edit of {rel}")
        except ClaimRefused as refused:
            return EditDecision("deny", str(refused), tuple(region_ids), tuple(refused.conflicts))
        warnings = "; ".join(c.explanation for c in result.conflicts)
        reason = f"claimed {', '.join(result.claim.region_ids)}" + (f" (warning: {warnings})" if warnings else "")
        return EditDecision("claim", reason, tuple(region_ids), tuple(result.conflicts))


def claim_targets(coordinator: Coordinator, sandbox_id: str, targets: Sequence[str], *,
                  mode: str = "exclusive", reason: str = "") -> list[ClaimRecord]:
    """Claim several targets for a sandbox, all or nothing (raises ClaimRefused)."""
    claims: list[ClaimRecord] = []
    with coordinator.store.transaction():
        for target in targets:
            claims.append(coordinator.claim(sandbox_id, target, mode=mode, reason=reason).claim)
    return claims


def release_claim(workspace: Workspace, claim_id: int, reason: str = "released") -> bool:
    """Release one claim, with its audit entry; False when it was not live."""
    with workspace.store.transaction():
        claim = workspace.store.get_claim(claim_id)
        if claim is None:
            raise LoomError(f"no claim #{claim_id}")
        released = workspace.store.release_claim(claim_id, reason)
        if released:
            workspace.record("claim.released", claim.sandbox_id,
                             {"claim": claim_id, "target": claim.target, "reason": reason})
    return released


def _extend_lease(workspace: Workspace, claim: ClaimRecord, expires: float, **said: object) -> ClaimRecord:
    """A live claim's lease moved to end at `expires`, with its audit entry (`said` added to it)."""
    workspace.store.renew_claim(claim.id, expires)
    workspace.record("claim.renewed", claim.sandbox_id, {"claim": claim.id, "target": claim.target, "expires": expires,
                                                          "previous_expires": claim.expires, **said})
    renewed = workspace.store.get_claim(claim.id)
    assert renewed is not None
    return renewed


def keep_while_running(workspace: Workspace, sandbox_id: str, lease_seconds: float,
                       now: float | None = None) -> list[ClaimRecord]:
    """The claims of a sandbox whose agent runs, each renewed for a whole lease once half of it is gone: none
    were, and an agent at work past the lease (an hour by default) lost its regions to the next sandbox without
    a word, its next commit there refused. The renewed ones."""
    now = time.time() if now is None else now
    lease = lease_length(lease_seconds)
    renewed = []
    with workspace.store.transaction():
        for claim in workspace.store.live_claims(sandbox_id):
            if now < claim.expires < now + lease / 2:  # run out already: released, as any, and claimed again
                renewed.append(_extend_lease(workspace, claim, now + lease, by="its agent runs"))
    return renewed


def check_holder(sandbox_id: str) -> str:
    """A name claims may be held under (a sandbox's id, or a person's or an outside agent's name);
    LoomError for anything else."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", sandbox_id):
        raise LoomError(f"{shown(repr(sandbox_id))} is not a sandbox id (letters, digits, . _ -; at most 64)")
    return sandbox_id


def not_held(store: Store, sandbox_id: str, region_ids: Sequence[str]) -> list[str]:
    """Those of `region_ids` the sandbox's live exclusive claims do not hold (no index needed)."""
    held = {rid for c in store.live_claims(sandbox_id) if c.mode == "exclusive" for rid in c.region_ids}
    return [rid for rid in region_ids if rid not in held and not set(ancestors(rid)) & held]


def free_to_hold(store: Store, sandbox_id: str, region_ids: Sequence[str]) -> list[str]:
    """Those of `region_ids` the sandbox does not hold and no other sandbox's live exclusive claim
    overlaps: what `hold_changed` may take of a change (what another holds stays its own)."""
    theirs: dict[str, list[str]] = {}  # by file: a team's thousands of claims are each looked up once
    for claim in store.live_claims():
        if claim.sandbox_id != sandbox_id and claim.mode == "exclusive":
            for region in claim.region_ids:
                theirs.setdefault(split_id(region)[0], []).append(region)
    return [region for region in not_held(store, sandbox_id, list(dict.fromkeys(region_ids)))
            if not any(overlaps(region, other) for other in theirs.get(split_id(region)[0], ()))]


def hold_changed_code(store: Store, sandbox_id: str, region_ids: Sequence[str], settings: CoordinationConfig,
                      coordinator: Callable[[], Coordinator]) -> list[ClaimRecord]:
    """Hold for the sandbox the code a change made without asking touched (`COMMIT_CLAIM_REASON`): only what
    coordination covers (`settings.include` less `exclude`: a `.gitignore` every agent touches is no one's),
    not what it holds, nor what another sandbox holds (that stays its own). `coordinator` is made only when
    there is something to hold; one claimed meanwhile leaves the change unheld (its review says so)."""
    from loomtui.coordination.index_files import selector

    coordinated = selector(settings.include, settings.exclude)
    wanted = free_to_hold(store, sandbox_id, [r for r in region_ids if coordinated(split_id(r)[0])])
    if not wanted:
        return []
    try:
        return coordinator().hold_changed(sandbox_id, wanted, COMMIT_CLAIM_REASON)
    except ClaimRefused:
        return []


def release_claims_of(workspace: Workspace, sandbox_id: str, reason: str = "released") -> int:
    """Release every live claim of a sandbox (no index needed); returns how many."""
    count = 0
    with workspace.store.transaction():
        for claim in workspace.store.live_claims(sandbox_id):
            count += release_claim(workspace, claim.id, reason)
    return count


def nobody_overrides(user: str) -> bool:
    """The override check of a coordinator that never forces a claim (reads, benches, crash tests)."""
    return False


def open_coordinator(workspace: Workspace, index: RepoIndex | None = None, *,
                     may_override: OverrideCheck, settings: CoordinationConfig | None = None,
                     progress: ProgressFn | None = None, worktree_tree: WorktreeTree | None = None,
                     release_lapsed: Callable[[], object] | None = None) -> Coordinator:
    """A coordinator over the repository's (cached) index, configured from loom.yaml (or `settings`,
    the coordination section a caller already holds); `progress` follows an index being built."""
    from loomtui.coordination.index import build_index, index_cache_dir

    config = settings or workspace.load_config().coordination
    if index is None:
        index = build_index(workspace.root, cache_dir=index_cache_dir(workspace.paths),
                            include=config.include, exclude=config.exclude, progress=progress)
    return Coordinator(workspace, index, may_override=may_override, dependency_hops=config.dependency_hops,
                       lease_seconds=config.lease_seconds, worktree_tree=worktree_tree, release_lapsed=release_lapsed)
