"""Gate 2, behavioural scoring: a sandbox's change scored 0 to 100, with itemised evidence.

`gather_inputs` reads everything from the repository's commits (never the worktree, which
may be gone) into `ScoreInputs`; `score` is pure and deterministic over them. The items,
in `EVAL_ITEMS` order, each pass (full weight), warn (half) or fail (nothing):

- scope: every changed region inside one of the sandbox's exclusive claims (a claimed
  file or class covers what it contains), or under a path coordination excludes: pass.
  Outside them only tests, docs, or module-level lines of a file it holds a region in:
  warn. Any other code outside them: fail, each region listed.
- tests: a test removed (by the diff or the results), newly skipped or xfailed without
  a reason, or regressed: fail. A newly skipped test with a reason, or a changed code
  region no test reaches through the dependency graph: warn. Otherwise pass.
- size: lines added plus removed within `size_budget`: pass; within twice it: warn; fail.
- contracts: a changed signature of a region another live sandbox claims (or whose
  users it claims), or that code in another module uses and this change left as it
  was: fail, naming who. Every such user updated by this change, or a public signature
  nobody else uses: warn. Otherwise pass.
- conventions: a `loom-rule` finding in a changed file that the base commit did not
  have: fail, each with `path:line`, rule, message and where the rule is written.
- task_fit: the share of changed non-test code regions that are, contain or sit inside
  a region suggested for the task text: at least half pass, some warn, none fail. No
  changed code regions: pass; nothing suggested for the task: warn.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, Final, TypeAlias

from loomtui.config import EVAL_ITEMS, EvalConfig, LoomConfig
from loomtui.coordination.claims import claimed_before_writing
from loomtui.coordination.diff import ChangedRegion, changed_files, diff_regions
from loomtui.coordination.index import DEPENDENCY_KINDS, RepoIndex, build_index, index_cache_dir
from loomtui.coordination.regions import ancestors, overlaps, split_id
from loomtui.coordination.suggest import suggest_regions
from loomtui.errors import LoomError, plural
from loomtui.files import make_folders
from loomtui.gitcmd import Git, GitFailed
from loomtui.globs import glob_spec
from loomtui.guardrails.classify import Classification, TestClass
from loomtui.knowledge.rules import Finding, check_rules
from loomtui.knowledge.sources import load_context
from loomtui.knowledge.trees import GitTree
from loomtui.repo import DISTRUSTING_GIT_CONFIG
from loomtui.store import ENDED_STATUSES, ClaimRecord, SandboxRecord
from loomtui.workspace import Workspace

__all__ = ["ItemStatus", "Reach", "Score", "ScoreInputs", "ScoreItem", "SignatureChange", "gather_inputs", "score"]

REACH_HOPS: Final = 3
"""How many dependency edges a test may be from a changed region and still reach it."""
SUGGESTED: Final = 10
"""How many regions suggested for the task text the task_fit item compares with."""
MAX_EVIDENCE: Final = 40
_DOC_SUFFIXES: Final = frozenset({".md", ".rst", ".adoc"})
_USING_KINDS: Final = frozenset({"references", "inherits"})  # an import alone never calls a signature


class ItemStatus(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class ScoreItem:
    """One item's verdict: what it earned of its weight, a one-line headline, the evidence lines."""

    name: str
    status: ItemStatus
    points: float
    weight: int
    headline: str
    evidence: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": str(self.status), "points": self.points, "weight": self.weight,
                "headline": self.headline, "evidence": list(self.evidence)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreItem:
        return cls(str(data["name"]), ItemStatus(data["status"]), float(data["points"]), int(data["weight"]),
                   str(data["headline"]), tuple(str(line) for line in data.get("evidence") or ()))


@dataclass(frozen=True)
class Score:
    """Gate 2's result: the total (0-100), whether it reaches `pass_score`, and the items."""

    total: int
    passed: bool
    items: tuple[ScoreItem, ...]

    def item(self, name: str) -> ScoreItem:
        return {item.name: item for item in self.items}[name]

    def summary(self) -> str:
        """E.g. `82 (scope warn, size fail)`, or `100 (all pass)`."""
        short = [f"{item.name} {item.status}" for item in self.items if item.status != ItemStatus.PASS]
        return f"{self.total} ({', '.join(short) or 'all pass'})"

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "passed": self.passed, "items": [item.as_dict() for item in self.items]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Score:
        return cls(int(data["total"]), bool(data["passed"]),
                   tuple(ScoreItem.from_dict(item) for item in data.get("items") or ()))


@dataclass(frozen=True)
class Reach:
    """Changed code regions some test reaches through the dependency graph, and those none does."""

    reached: tuple[str, ...] = ()
    unreached: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignatureChange:
    """A region whose signature the change altered (or removed), and who uses it elsewhere."""

    region: str
    claimed_by: tuple[str, ...] = ()  # other live sandboxes' claims on it or on its users
    users: tuple[str, ...] = ()  # regions of other modules using it that the change left as they were
    updated: tuple[str, ...] = ()  # regions of other modules using it that the change also changed


@dataclass(frozen=True)
class ScoreInputs:
    """Everything `score` needs, gathered beforehand (see `gather_inputs`)."""

    task: str = ""
    changed_regions: tuple[str, ...] = ()
    removed_regions: tuple[str, ...] = ()  # those of changed_regions the change removed
    changed_paths: tuple[str, ...] = ()
    lines_changed: int = 0
    lines_by_path: tuple[tuple[str, int], ...] = ()
    claimed: tuple[str, ...] = ()  # region ids and paths the sandbox's exclusive claims hold
    uncoordinated: tuple[str, ...] = ()  # changed paths coordination excludes: nobody can claim them
    tests: Classification | None = None
    tests_reaching: Reach | None = None
    signature_changes: tuple[SignatureChange, ...] = ()
    findings: tuple[Finding, ...] = ()  # new ones only: absent at the base commit
    known_findings: int = 0  # findings in the changed files that the base commit already had
    suggested_regions: tuple[str, ...] = ()
    not_judged: tuple[str, ...] = ()
    """Checks that passed only as not judged (`gate: why`): a change that broke tests read "no test regressed"."""


# -- pure scoring ---------------------------------------------------------------------------


def is_test_path(path: str) -> bool:
    parts = PurePosixPath(path).parts
    name = parts[-1] if parts else ""
    return ("tests" in parts[:-1] or "test" in parts[:-1] or name == "conftest.py"
            or (name.startswith("test_") and name.endswith(".py")) or name.endswith("_test.py"))


def is_doc_path(path: str) -> bool:
    pure = PurePosixPath(path)
    return pure.suffix.lower() in _DOC_SUFFIXES or "docs" in pure.parts[:-1]


def _is_code(region: str) -> bool:
    path = split_id(region)[0]
    return path.endswith(".py") and not is_test_path(path)


def _listed(lines: Sequence[str]) -> tuple[str, ...]:
    if len(lines) <= MAX_EVIDENCE:
        return tuple(lines)
    return (*lines[:MAX_EVIDENCE], f"... and {len(lines) - MAX_EVIDENCE} more")


_Verdict: TypeAlias = tuple[ItemStatus, str, Sequence[str]]


def _scope(inputs: ScoreInputs) -> _Verdict:
    held, free = set(inputs.claimed), set(inputs.uncoordinated)
    claimed_paths = {split_id(region)[0] for region in held}
    outside: list[str] = []
    minor: list[str] = []
    notes: list[str] = []
    for region in inputs.changed_regions:
        path, qualname = split_id(region)
        if {region, *ancestors(region)} & held:  # a claimed file or class covers what it contains
            continue
        if path in free:
            notes.append(f"{region}: not coordinated (coordination excludes it)")
        elif is_test_path(path) or is_doc_path(path):
            minor.append(f"{region}: {'test' if is_test_path(path) else 'doc'} outside the claims")
        elif not qualname and path.endswith(".py") and path in claimed_paths:
            minor.append(f"{region}: module-level lines of a file with a claimed region")
        else:
            outside.append(f"{region}: code outside the claims")
    if outside:
        none = "" if held else " (the sandbox holds no claims)"
        return ItemStatus.FAIL, f"{plural(len(outside), 'region')} changed outside the claims{none}", \
            outside + minor + notes
    if minor:
        return ItemStatus.WARN, f"only tests, docs or module-level lines outside the claims ({len(minor)})", \
            minor + notes
    # What coordination excludes is not inside the claims, only not asked to be: said apart (every changed
    # region excluded read "all 3 changed regions inside the claims" of a sandbox that held none).
    excluded = len(notes)
    inside = len(inputs.changed_regions) - excluded
    if not excluded:
        return ItemStatus.PASS, f"all {plural(inside, 'changed region')} inside the claims", notes
    if not inside:
        return ItemStatus.PASS, f"{plural(excluded, 'changed region')}, none coordinated (excluded)", notes
    return ItemStatus.PASS, f"{plural(inside, 'changed region')} inside the claims, {excluded} not coordinated", notes


def _tests(inputs: ScoreInputs) -> _Verdict:
    failing: list[str] = []
    skipped: list[str] = []
    # A test function the diff removed, named as pytest names it (`path::Class::test`).
    removed = {f"{path}::{qualname.replace('.', '::')}" for path, qualname in map(split_id, inputs.removed_regions)
               if is_test_path(path) and qualname.rpartition(".")[2].startswith("test")}
    for test in inputs.tests.tests if inputs.tests is not None else ():
        why = f" ({test.message})" if test.message else ""
        if test.cls is TestClass.REMOVED:
            removed.add(test.id.partition("[")[0])
        elif test.is_regression:
            failing.append(f"{test.id}: regressed ({test.before or 'new'} before, {test.after} now){why}")
        elif test.newly_skipped and not test.message.strip():
            failing.append(f"{test.id}: newly {test.after} without a reason")
        elif test.newly_skipped:
            skipped.append(f"{test.id}: newly {test.after}{why}")
        elif test.flaky and test.before is not None and test.before.is_pass:
            # Passed on the base, failed here, passed alone on its re-run: maybe flaky, maybe broken by
            # what ran before it. A person should look, so it warns rather than passing unseen.
            skipped.append(f"{test.id}: failed, then passed on its re-run (flaky, or broken by test order){why}")
        elif test.flaky and test.cls is TestClass.ADDED:
            # A test the change adds that fails now and then reaches main as passed, unsaid: the same warning.
            skipped.append(f"{test.id}: added, failed, then passed on its re-run (flaky, or broken by test "
                           f"order){why}")
    failing = [f"{test}: removed" for test in sorted(removed)] + failing
    # Nothing ran, so nothing could regress: a change's failing test read "no test ... regressed".
    uncollected = [f"{test.id}: failed collection, here and on the base commit"
                   + (f" ({test.message})" * bool(test.message))
                   for test in (inputs.tests.uncollected if inputs.tests is not None else ())]
    reach = inputs.tests_reaching
    unreached = [f"{region}: changed, and no test reaches it" for region in reach.unreached] if reach else []
    # A check that passed as "not judged" (it hangs on the base commit too): its tests unknown, said as such.
    uncollected += [f"{check}: its tests not judged" for check in inputs.not_judged]
    results = "" if inputs.tests is not None or inputs.not_judged else " (no per-test results: no junit gate ran)"
    if failing:
        return ItemStatus.FAIL, f"{plural(len(failing), 'test')} removed, skipped or regressed{results}", \
            failing + skipped + unreached
    if skipped or unreached or uncollected:
        collection = len(uncollected) - len(inputs.not_judged)
        what = [f"no test ran ({plural(collection, 'file')} failed collection)"] if collection else []
        what += [f"{plural(len(inputs.not_judged), 'check')} not judged"] if inputs.not_judged else []
        what += [f"{plural(len(skipped), 'test')} newly skipped with a reason or flaky"] if skipped else []
        what += [f"{plural(len(unreached), 'changed code region')} no test reaches"] if unreached else []
        return ItemStatus.WARN, "; ".join(what) + results, uncollected + skipped + unreached
    reached = f"; tests reach all {len(reach.reached)} changed code regions" if reach and reach.reached else ""
    return ItemStatus.PASS, f"no test removed, skipped or regressed{reached}{results}", ()


def _size(inputs: ScoreInputs, budget: int) -> _Verdict:
    largest = sorted(inputs.lines_by_path, key=lambda pair: (-pair[1], pair[0]))[:5]
    evidence = [f"{path}: {plural(lines, 'line')}" for path, lines in largest]
    headline = f"{plural(inputs.lines_changed, 'line')} changed (budget {budget})"
    if inputs.lines_changed <= budget:
        return ItemStatus.PASS, headline, evidence
    return (ItemStatus.WARN if inputs.lines_changed <= 2 * budget else ItemStatus.FAIL), headline, evidence


def _is_public(region: str) -> bool:
    return not any(part.startswith("_") for part in split_id(region)[1].split(".") if part)


def _contracts(inputs: ScoreInputs) -> _Verdict:
    broken: list[str] = []
    minor: list[str] = []
    for change in inputs.signature_changes:
        who = [f"claimed by {claim}" for claim in change.claimed_by]
        who += [f"used by {user}" for user in change.users]
        if who:
            broken.append(f"{change.region}: signature changed; {'; '.join(who)}")
        elif change.updated:
            minor.append(f"{change.region}: signature changed; its users were updated in this change "
                         f"({', '.join(change.updated)})")
        elif _is_public(change.region):
            minor.append(f"{change.region}: public signature changed; nothing else uses it")
    if broken:
        return ItemStatus.FAIL, f"{plural(len(broken), 'changed signature')} other code or sandboxes rely on", \
            broken + minor
    if minor:
        return ItemStatus.WARN, f"{plural(len(minor), 'signature')} changed, no one else affected", minor
    return ItemStatus.PASS, "no signature others use was changed", ()


def _conventions(inputs: ScoreInputs) -> _Verdict:
    known = f" ({inputs.known_findings} already at the base)" if inputs.known_findings else ""
    if not inputs.findings:
        return ItemStatus.PASS, f"no new convention findings{known}", ()
    lines = [f"{f.path}:{f.line}: {f.rule}: {f.what} ({f.message}) [rule at {f.origin}]" for f in inputs.findings]
    return ItemStatus.FAIL, f"{plural(len(inputs.findings), 'new convention finding')}{known}", lines


def _task_fit(inputs: ScoreInputs) -> _Verdict:
    code = [r for r in inputs.changed_regions if _is_code(r)]
    if not code:
        return ItemStatus.PASS, "no code regions changed (tests, docs or data only)", ()
    if not inputs.suggested_regions:
        return ItemStatus.WARN, "nothing is suggested for the task's text, so its fit is unknown", ()
    fits = [r for r in code if any(overlaps(r, s) for s in inputs.suggested_regions)]
    share = len(fits) / len(code)
    evidence = [f"{r}: not among the regions suggested for the task" for r in code if r not in fits]
    evidence += [f"suggested: {s}" for s in inputs.suggested_regions[:5]]
    headline = f"{len(fits)} of {plural(len(code), 'changed code region')} fit the task ({share:.0%})"
    status = ItemStatus.PASS if share >= 0.5 else ItemStatus.WARN if fits else ItemStatus.FAIL
    return status, headline, evidence


def score(inputs: ScoreInputs, config: EvalConfig) -> Score:
    """The six items (each one's rule is in the module's docstring) and the total: the earned points
    scaled to 100 over the sum of the weights, rounded."""
    verdicts: dict[str, _Verdict] = {
        "scope": _scope(inputs), "tests": _tests(inputs), "size": _size(inputs, config.size_budget),
        "contracts": _contracts(inputs), "conventions": _conventions(inputs), "task_fit": _task_fit(inputs),
    }
    items = []
    for name in EVAL_ITEMS:
        status, headline, evidence = verdicts[name]
        weight = config.weight(name)
        points = float(weight) if status == ItemStatus.PASS else weight / 2 if status == ItemStatus.WARN else 0.0
        items.append(ScoreItem(name, status, points, weight, headline, _listed(evidence)))
    weights = sum(item.weight for item in items)
    total = round(100 * sum(item.points for item in items) / weights) if weights else 100
    return Score(total, total >= config.pass_score, tuple(items))


# -- gathering from the repository ---------------------------------------------------------


def gather_inputs(workspace: Workspace, record: SandboxRecord, base: str, tip: str,
                  tests: Classification | None) -> ScoreInputs:
    """The inputs for `record`'s change from `base` to `tip`, read from commits only."""
    repo = Git(workspace.root)
    base_sha, tip_sha = repo.resolve_commit(base), repo.resolve_commit(tip)
    if base_sha is None or tip_sha is None:
        raise LoomError(f"sandbox {record.id}: no commit {base if base_sha is None else tip!r} to score")
    config = workspace.load_config()
    changes = diff_regions(workspace.root, base_sha, tip_sha)
    paths = changed_files(workspace.root, base_sha, tip_sha)
    by_path = _numstat(repo, base_sha, tip_sha)
    own, others = _claims(workspace, record.id)
    excluded = glob_spec(config.coordination.exclude)
    python = [p for p in paths if p.endswith(".py")]
    common = ScoreInputs(
        task=record.task, changed_regions=tuple(dict.fromkeys(c.region_id for c in changes)),
        removed_regions=tuple(c.region_id for c in changes if c.change == "removed"),
        changed_paths=tuple(paths), lines_changed=sum(by_path.values()), lines_by_path=tuple(sorted(by_path.items())),
        claimed=tuple(sorted({rid for claim in own for rid in claim.region_ids})),
        uncoordinated=tuple(p for p in paths if excluded.match_file(p)), tests=tests,
    )
    if not python:
        # No Python changed: no region to reach, no signature, no convention finding, no code to fit.
        # The trees and their indexes are not built (the review of a docs change stays cheap).
        return replace(common, tests_reaching=Reach())
    with tempfile.TemporaryDirectory(prefix="loomtui-score-") as scratch:
        # Each side's files are written out of git's objects: the index and the rules read a directory.
        # The directory keeps the repository's name, so module names (and the shared caches) match.
        base_tree, tip_tree = (_materialise(workspace.root, sha, Path(scratch, side, workspace.root.name), config,
                                            python) for side, sha in (("base", base_sha), ("tip", tip_sha)))
        cache = index_cache_dir(workspace.paths)
        # Tests included even where coordination excludes them: they are what reaches the code.
        base_index = build_index(base_tree, cache_dir=cache, include=config.coordination.include)
        tip_index = build_index(tip_tree, cache_dir=cache, include=config.coordination.include)
        # The base's rules: deleting a convention in the change does not excuse it from that convention.
        rules = load_context(workspace.root, config.context, at=base_sha).rules
        before, after = check_rules(base_tree, rules, python), check_rules(tip_tree, rules, python)
        new, known = _new_findings(before, after, base_tree, tip_tree)
    suggested = [s.region.id for s in suggest_regions(base_index, record.task, limit=4 * SUGGESTED)
                 if not excluded.match_file(s.region.path)][:SUGGESTED]
    return replace(
        common,
        tests_reaching=_reach(tip_index, changes),
        signature_changes=_signature_changes(base_index, changes, others),
        findings=tuple(new),
        known_findings=known,
        suggested_regions=tuple(suggested),
    )


def _numstat(repo: Git, base: str, tip: str) -> dict[str, int]:
    try:  # a binary file by its size: one NUL byte made 6,000 lines a change of 0
        return repo.lines_changed_by_file(base, tip, DISTRUSTING_GIT_CONFIG)
    except GitFailed as exc:
        raise LoomError(f"git diff {base[:12]}..{tip[:12]}: {exc}") from None


def _claims(workspace: Workspace, sandbox_id: str) -> tuple[list[ClaimRecord], list[ClaimRecord]]:
    """The sandbox's exclusive claims (every one it held, once none is live), and others' live ones."""
    store = workspace.store
    live = store.live_claims()
    own = [c for c in live if c.sandbox_id == sandbox_id]
    if not own:  # scored after its claims were released: what it was allowed still counts
        own = store.sandbox_claims(sandbox_id)
    # The holders' statuses: those not archived in one read, an archived one (whose claims archiving
    # released, so rarely any) alone; never every sandbox the store ever held.
    status = {s.id: s.status for s in store.list_sandboxes()}
    for holder in {c.sandbox_id for c in live} - status.keys():
        record = store.get_sandbox(holder)
        if record is not None:
            status[holder] = record.status
    others = [c for c in live if c.sandbox_id != sandbox_id and status.get(c.sandbox_id) not in ENDED_STATUSES]
    # A claim its commit made holds what was written unasked: not inside the claims, only held since.
    return [c for c in own if c.mode == "exclusive" and claimed_before_writing(c)], others


def _materialise(root: Path, commit: str, target: Path, config: LoomConfig, extra: Sequence[str]) -> Path:
    """Write the indexed files (and `extra` paths) of `commit` under `target`, from git's objects."""
    wanted = glob_spec(config.coordination.include)
    tree = GitTree(root, commit, f"{root}@{commit[:12]}")
    try:
        for path, blob in tree.listing().items():
            pure = PurePosixPath(path)
            # A commit an agent made could name anything: nothing may land outside the scratch tree.
            if blob is None or pure.is_absolute() or ".." in pure.parts or ".git" in pure.parts:
                continue
            if path not in extra and not wanted.match_file(path):
                continue
            data, _ = tree.read_blob(blob, sys.maxsize)
            destination = target.joinpath(*pure.parts)
            make_folders(destination.parent)  # a commit's paths: any depth
            destination.write_bytes(data)
    finally:
        tree.close()
    target.mkdir(parents=True, exist_ok=True)
    return target


def _new_findings(before: Sequence[Finding], after: Sequence[Finding], base_tree: Path,
                  tip_tree: Path) -> tuple[list[Finding], int]:
    """Tip findings the base lacks, and how many it had: matched by rule, path, what and the line's code,
    so a finding that only moved is not new, and a second copy of one is."""
    files: dict[Path, list[str]] = {}

    def key(finding: Finding, tree: Path) -> tuple[str, str, str, str]:
        if tree / finding.path not in files:
            files[tree / finding.path] = (tree / finding.path).read_text("utf-8", "replace").splitlines()
        lines = files[tree / finding.path]
        code = lines[finding.line - 1].strip() if 0 < finding.line <= len(lines) else ""
        return finding.rule, finding.path, finding.what, code

    old = Counter(key(f, base_tree) for f in before)
    new: list[Finding] = []
    for finding in after:
        k = key(finding, tip_tree)
        if old[k] > 0:
            old[k] -= 1
        else:
            new.append(finding)
    return new, len(after) - len(new)


def _within(region: str, outer: str) -> bool:
    """`region` is `outer` or nested in it."""
    return region == outer or outer in ancestors(region)


def _reach(index: RepoIndex, changes: Sequence[ChangedRegion]) -> Reach:
    """Which changed code regions a test region depends on, within REACH_HOPS edges.

    A test reaching the class of a changed method reaches it (calls go through
    instances the graph cannot follow), and reaching anything inside a changed module
    or class reaches that module or class.
    """
    reached: list[str] = []
    unreached: list[str] = []
    for region in dict.fromkeys(c.region_id for c in changes if c.change != "removed"):
        if not _is_code(region) or region not in index.regions:
            continue
        path = split_id(region)[0]
        frontier = {region, *(a for a in ancestors(region) if a != path)}
        frontier |= {r.id for r in index.regions_in(path) if _within(r.id, region)}
        seen = set(frontier)
        for _ in range(REACH_HOPS):
            frontier = {user for user, _used, kinds in index.in_edges(sorted(frontier))
                        if kinds & DEPENDENCY_KINDS and user not in seen}
            seen |= frontier
        (reached if any(is_test_path(split_id(r)[0]) for r in seen) else unreached).append(region)
    return Reach(tuple(reached), tuple(unreached))


def _signature_changes(index: RepoIndex, changes: Sequence[ChangedRegion],
                       others: Sequence[ClaimRecord]) -> tuple[SignatureChange, ...]:
    """Each changed signature with its users in other modules at the base (those written against it)."""
    changed = [c.region_id for c in changes]
    found: list[SignatureChange] = []
    for change in changes:
        if not change.signature_changed:
            continue
        region = change.region_id
        path = split_id(region)[0]
        # A removed region breaks its importers too; a changed one only its callers and subclasses.
        kinds = DEPENDENCY_KINDS if change.change == "removed" else _USING_KINDS
        users = sorted(user for user, _used, edge_kinds in index.in_edges([region])
                       if edge_kinds & kinds and split_id(user)[0] != path)
        updated = [u for u in users if any(_within(c, u) for c in changed)]
        claimed_by = sorted({f"{claim.sandbox_id} ({claim.target})" for claim in others
                             if any(overlaps(held, r) for held in claim.region_ids for r in (region, *users))})
        found.append(SignatureChange(region, tuple(claimed_by), tuple(u for u in users if u not in updated),
                                     tuple(updated)))
    return tuple(found)
