"""The merged gate: gate 1 on every pending sandbox merged together, to catch changes that break only together.

Two sandboxes can each pass gate 1 on their own base and still break once both are
merged (one changes what a helper returns, the other adds a caller counting on the
old answer). The merged gate merges every sandbox awaiting review (or approved and
not yet merged) onto its target branch's tip in a scratch tree (`git merge-tree`, no
worktree, no ref moved), runs the checks there confined, and judges them against the
tip's own baseline. A regression there that no sandbox causes on its own is pinned
on the smallest set that causes it: each sandbox alone, then each pair, re-running
only the tests in question; what no pair explains is the whole set's.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from loomtui.config import GateConfig
from loomtui.errors import LoomError
from loomtui.execution.gitops import Git
from loomtui.execution.lifecycle import APPROVED, AWAITING_REVIEW
from loomtui.guardrails.baseline import MERGED, baseline, fingerprint, run_in_scratch, scratch_tree
from loomtui.guardrails.checks import CheckRun
from loomtui.guardrails.gates import deterministic_gates
from loomtui.guardrails.reports import rerun_argv
from loomtui.guardrails.scratch import merge_branches
from loomtui.guardrails.verdicts import judge
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace

PENDING: Final = frozenset({AWAITING_REVIEW, APPROVED})
MERGED_EVAL: Final = "merged"
MAX_PAIRS: Final = 45  # ten pending sandboxes; beyond that what pairs do not explain is the set's


@dataclass(frozen=True)
class BreakingSet:
    """Sandboxes that pass alone but break these tests (or this check) once merged together."""

    sandboxes: tuple[str, ...]
    check: str
    tests: tuple[str, ...]
    suspects: tuple[str, ...] = ()
    """Those of `sandboxes` whose own change touches what decides how checks run (`starter.CHECK_SETUP`: a
    conftest.py, the runner's config): the break is theirs. A pending sandbox's conftest that failed only
    beside another's file had that other change, a one-line doc, held for a lead as breaking together."""

    def line(self) -> str:
        what = ", ".join(self.tests[:3]) + (" ..." if len(self.tests) > 3 else "") if self.tests else "its exit code"
        suspects = (f" ({' + '.join(self.suspects)} {'changes' if len(self.suspects) == 1 else 'change'} how the "
                    "checks run: the break is counted against that change alone)" if self.suspects else "")
        return f"{' + '.join(self.sandboxes)} break {self.check} together: {what}{suspects}"

    def counts_against(self, sandbox_id: str) -> bool:
        """Whether the break is `sandbox_id`'s too: it is in the set, and no other member's change decides
        how the checks run while its own does not."""
        return sandbox_id in self.sandboxes and (not self.suspects or sandbox_id in self.suspects)


@dataclass(frozen=True)
class MergedReport:
    """One merged gate: what was merged onto which tip, what conflicted, each check's verdict, who breaks."""

    target: str
    onto: str
    commit: str
    sandboxes: tuple[str, ...]
    conflicting: tuple[tuple[str, str], ...] = ()
    checks: tuple[dict[str, Any], ...] = ()
    breaking: tuple[BreakingSet, ...] = ()
    stored: bool = False

    def unfinished(self) -> list[str]:
        """The checks that could not finish on the merged tree (an error, a timeout): no all-clear."""
        return [str(check["gate"]) for check in self.checks if check.get("status") == "error"]

    def breaks_with(self, sandbox_id: str) -> tuple[str, ...]:
        """The other sandboxes `sandbox_id` breaks something together with (a break another member's change
        to how the checks run explains is not counted against it)."""
        return tuple(sorted({other for found in self.breaking if found.counts_against(sandbox_id)
                             for other in found.sandboxes if other != sandbox_id}))

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "onto": self.onto, "commit": self.commit, "sandboxes": list(self.sandboxes),
                "conflicting": [list(c) for c in self.conflicting], "checks": list(self.checks),
                "breaking": [{"sandboxes": list(b.sandboxes), "check": b.check, "tests": list(b.tests),
                              "suspects": list(b.suspects)} for b in self.breaking], "stored": self.stored}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, stored: bool = False) -> MergedReport:
        return cls(target=data["target"], onto=data["onto"], commit=data["commit"],
                   sandboxes=tuple(data["sandboxes"]),
                   conflicting=tuple((str(a), str(b)) for a, b in data.get("conflicting", ())),
                   checks=tuple(data.get("checks", ())),
                   breaking=tuple(BreakingSet(tuple(b["sandboxes"]), b["check"], tuple(b["tests"]),
                                              tuple(b.get("suspects") or ()))
                                  for b in data.get("breaking", ())), stored=stored)


NOTHING_PENDING = ("no sandbox to merge: none is awaiting review or approved with its own gate 1 passed "
                   "(one whose gate 1 failed is held already)")
"""What the merged gate says when it has nothing to merge."""


def pending_sandboxes(workspace: Workspace, include: Sequence[str] = ()) -> list[SandboxRecord]:
    """Sandboxes awaiting review or approved but not merged (and any of `include`), oldest first.

    One whose own gate 1 failed (or could not run) at its tip is left out: it is held already, and
    it would only add its own failures to everyone's merged tree.
    """
    return [s for s in workspace.store.list_sandboxes()
            if (s.status in PENDING or s.id in include) and not _failed_alone(workspace, s)]


def _failed_alone(workspace: Workspace, record: SandboxRecord) -> bool:
    tip = Git(workspace.root).resolve_commit(record.branch) if record.branch else None
    newest: dict[str, str] = {}
    for run in workspace.store.gate_runs(record.id):
        if run.commit_sha == tip and run.status != "running" and run.data.get("blocking", True):
            newest[run.gate] = run.status
    return any(status in ("failed", "error") for status in newest.values())


def latest_merged(workspace: Workspace) -> MergedReport | None:
    row = workspace.store.latest_eval_report(MERGED_EVAL, MERGED_EVAL)
    return MergedReport.from_dict(row.data, stored=True) if row is not None else None


def merged_gate(workspace: Workspace, *, include: Sequence[str] = (), force: bool = False,
                say: Callable[[str], None] | None = None) -> list[MergedReport]:
    """The merged gate for each target branch with pending sandboxes (`include`: count these as pending,
    and look for what they break together with the others only: a review asks about its own sandbox)."""
    by_target: dict[str, list[SandboxRecord]] = {}
    for record in pending_sandboxes(workspace, include):
        if record.target:
            by_target.setdefault(record.target, []).append(record)
    return [_merged_gate(workspace, target, records, force=force, say=say, focus=tuple(include))
            for target, records in sorted(by_target.items())]


def _merged_gate(workspace: Workspace, target: str, records: list[SandboxRecord], *, force: bool,
                 say: Callable[[str], None] | None, focus: tuple[str, ...] = ()) -> MergedReport:
    git = Git(workspace.root)
    onto = git.resolve_commit(target) or ""
    tips = {r.id: git.resolve_commit(r.branch) or "" for r in records}
    checks = deterministic_gates(workspace)
    key = hashlib.sha256(json.dumps([target, onto, sorted(tips.items()), [fingerprint(g) for g in checks],
                                     sorted(focus)])
                         .encode()).hexdigest()[:24]
    if not force:
        row = workspace.store.latest_eval_report(MERGED_EVAL, MERGED_EVAL, key)
        if row is not None:
            return _audited(workspace, MergedReport.from_dict(row.data, stored=True))
    branch_of = {r.branch: r.id for r in records}
    merge = merge_branches(workspace.root, onto, [r.branch for r in records])
    merged_ids = tuple(branch_of[b] for b in merge.merged)
    conflicting = tuple((branch_of.get(b, b), files) for b, files in merge.conflicting)
    if say is not None:
        say(f"merged gate on {target} ({onto[:12]}): {', '.join(merged_ids) or 'nothing'} merged"
            + "".join(f"; {sid} conflicts ({files})" for sid, files in conflicting))
    rerun = workspace.load_config().eval.rerun_failed
    results: list[dict[str, Any]] = []
    breaking: list[BreakingSet] = []
    for gate in checks:
        base_run, _ = baseline(workspace, onto, gate, rerun_failed=rerun)
        run = _run_at(workspace, gate, merge.commit, onto, rerun_failed=rerun)
        verdict = judge(run, base_run, gate.format)
        results.append({"gate": gate.name, "status": verdict.status, "reason": verdict.reason,
                        "verdict": verdict.as_dict(), "log": run.log, "duration_s": run.duration_s})
        # A check that errs on the merged tree (a timeout: one waits for what the other changed) and ran
        # at the base says nothing is fine: it is pinned as a failure is, not read as "nothing breaks".
        unsure = verdict.status == "error" and (base_run is None or base_run.outcome != "error")
        if (verdict.status == "failed" or unsure) and len(merged_ids) > 1:
            breaking += _who_breaks(workspace, gate, onto, records, merged_ids, base_run, verdict.regressions,
                                    focus)
    report = MergedReport(target, onto, merge.commit, merged_ids, conflicting, tuple(results), tuple(breaking))
    workspace.store.add_eval_report(MERGED_EVAL, MERGED_EVAL, merge.commit, key, report.as_dict())
    return _audited(workspace, report)


def _audited(workspace: Workspace, report: MergedReport) -> MergedReport:
    workspace.record("eval.merged", report.target, {
        "onto": report.onto, "commit": report.commit, "sandboxes": list(report.sandboxes), "stored": report.stored,
        "conflicting": [sid for sid, _ in report.conflicting],
        "checks": {c["gate"]: c["status"] for c in report.checks},
        "breaking": [list(b.sandboxes) for b in report.breaking],
        # Beside each breaking set, the members it is counted against (empty: all of them).
        "suspects": [list(b.suspects) for b in report.breaking]})
    return report


def _run_at(workspace: Workspace, gate: GateConfig, commit: str, onto: str, *, rerun_failed: bool,
            only: Sequence[str] = ()) -> CheckRun:
    """A check at a (merge) commit of sandboxes onto `onto` in a scratch tree; `only`: these tests alone."""
    run = workspace.store.add_gate_run("", gate.name, commit, scope=MERGED, fingerprint=fingerprint(gate))
    if only:
        narrowed = rerun_argv(list(gate.run), list(only))
        gate = replace(gate, run=tuple(narrowed)) if narrowed is not None else gate
    try:
        with scratch_tree(workspace, commit, f"merged-{run.id}", onto) as tree:
            result = run_in_scratch(workspace, gate, tree, run.id, rerun_failed=rerun_failed)
    except (LoomError, OSError) as exc:
        result = CheckRun("error", None, 0.0, f"the merged tree could not be checked: {exc}", (), "")
    workspace.store.finish_gate_run(run.id, result.outcome, {"result": result.as_dict(), "summary": result.summary})
    return result


def _who_breaks(workspace: Workspace, gate: GateConfig, onto: str, records: Sequence[SandboxRecord],
                merged_ids: Sequence[str], base_run: CheckRun | None, regressions: Sequence[str],
                focus: Sequence[str] = ()) -> list[BreakingSet]:
    """Pin the merged tree's regressions on the smallest set of sandboxes that causes them (with `focus`,
    only pairs holding one of those sandboxes are tried)."""
    branch = {r.id: r.branch for r in records}
    left = set(regressions)

    def failing_with(ids: Sequence[str]) -> set[str]:
        merge = merge_branches(workspace.root, onto, [branch[i] for i in ids])
        if merge.conflicting:
            return set()
        verdict = judge(_run_at(workspace, gate, merge.commit, onto, rerun_failed=True, only=sorted(left)), base_run,
                        gate.format)
        return set(verdict.regressions) if regressions else \
            ({"(exit code)"} if verdict.status in ("failed", "error") else set())

    if not regressions:
        left = {"(exit code)"}
    # What one sandbox breaks on its own (on today's tip) is not a pair's doing: each is tried alone
    # first, the one under review first, so that a pair is never blamed for one member's breakage.
    ordered = sorted(merged_ids, key=lambda s: s not in focus)
    for sandbox in ordered[:MAX_PAIRS]:
        if not left:
            break
        left -= failing_with([sandbox])
    found: list[BreakingSet] = []
    pairs = [pair for pair in itertools.combinations(merged_ids, 2) if not focus or set(pair) & set(focus)]
    setup = _changing_check_setup(workspace, gate.name, onto, [r for r in records if r.id in merged_ids])
    for pair in pairs[:MAX_PAIRS]:
        if not left:
            break
        broken = failing_with(list(pair)) & left
        if broken:
            found.append(BreakingSet(tuple(pair), gate.name, tuple(sorted(broken - {"(exit code)"})),
                                     tuple(s for s in pair if s in setup)))
            left -= broken
    if left:
        found.append(BreakingSet(tuple(merged_ids), gate.name, tuple(sorted(left - {"(exit code)"})),
                                 tuple(s for s in merged_ids if s in setup)))
    return found


def _changing_check_setup(workspace: Workspace, gate: str, onto: str, records: Sequence[SandboxRecord]) -> set[str]:
    """The sandboxes whose change (onto's tip to their branch) touches what decides how `gate`'s checks run:
    a gate `init` wrote by its own files (a `pyproject.toml` bump is not suspect for `go-test`'s break),
    another by every kind's (what runs it is not known here)."""
    from loomtui.globs import glob_spec
    from loomtui.starter import CHECK_SETUP

    globs = CHECK_SETUP.get(gate) or tuple(glob for kind in CHECK_SETUP.values() for glob in kind)
    spec = glob_spec(dict.fromkeys(globs))
    repo = Git(workspace.root)
    changing = set()
    for record in records:
        # From where it forked (`...`): what the target changed since is not the sandbox's change.
        done = repo.raw("diff", "--name-only", "--no-renames", "-z", f"{onto}...{record.branch or ''}")
        names = done.out.decode("utf-8", "surrogateescape").split("\0") if done.status == 0 else []
        if any(name and spec.match_file(name) for name in names):
            changing.add(record.id)
    return changing
