"""Evaluating a policy: the decision for one change at one stage (`evaluate`, `combined`; the
semantics are in `loomtui.governance.policy`'s docstring), and who may approve or override it."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from loomtui.errors import plural
from loomtui.governance.policy_model import (
    ANYONE,
    DEFAULT_RULE,
    NORMAL_RISK,
    RISKS,
    AppliedRule,
    ApprovalSpec,
    ChangeFacts,
    Conditions,
    Decision,
    Evaluation,
    Policy,
    RegionGlob,
    Requirement,
    Rule,
    Stage,
    _identity,
    _is_email,
    _owner_group,
    _region_path,
    _some,
)


def combined(first: Evaluation, second: Evaluation, label: str) -> Evaluation:
    """One decision from two evaluations of one change (at `first`'s stage): a block in either
    blocks, every requirement of both must be met, the higher risk counts. The rules of
    `second` are named with `label`, e.g. `ledger-claims (claim stage)`."""
    def marked(name: str) -> str:
        return f"{name} ({label})"

    def asks(rule: AppliedRule) -> tuple[object, ...]:
        return rule.name, rule.decision, tuple((r.groups, r.count, r.eligible, r.paths) for r in rule.requirements)

    # A rule of both stages that asks the same of the change at each is one requirement, not two: one
    # approval met both, and the escalation listed it twice.
    asked = {asks(rule) for rule in first.applied}
    carried = tuple(dataclasses.replace(rule, name=marked(rule.name),
                                        requirements=tuple(dataclasses.replace(r, rule=marked(r.rule))
                                                           for r in rule.requirements))
                    for rule in second.applied if rule.decision != "auto_approve" and asks(rule) not in asked)
    requirements = first.requirements + tuple(r for rule in carried for r in rule.requirements)
    outcome: Decision = ("block" if "block" in (first.outcome, second.outcome)
                         else "require" if requirements else first.outcome)
    risks = [risk for risk in (first.risk, second.risk) if risk in RISKS]
    risk = max(risks, key=RISKS.index) if risks else first.risk
    return Evaluation(first.stage, outcome, risk, first.applied + carried, requirements,
                      first.notes + tuple(f"{label}: {note}" for note in second.notes), first.separation_of_duties)


CLAIM_STAGE_LABEL = "claim stage, not granted before"
"""How the review names a claim-stage rule it met on what an agent changed unasked (`combined`'s label)."""
FAILED_AGENT_RULE = "agent-failed (built in)"
HELD_ELSEWHERE_RULE = "held-by-another (built in)"
UNUSUAL_RULE = "unusual-files (built in)"


def with_failed_agent(evaluation: Evaluation, failure: str) -> Evaluation:
    """The decision on a change whose agent failed (a non-zero exit, a crash, a kill) or was stopped: its
    work may be half done, so the policy alone never approves it."""
    return with_a_person(evaluation, FAILED_AGENT_RULE,
                         f"the agent did not finish ({failure}): its change may be unfinished")


def with_held_elsewhere(policy: Policy, evaluation: Evaluation, held: str) -> Evaluation:
    """The decision on a change to what other sandboxes' exclusive claims hold (`held`, in words): their
    hooks refused it, yet it reached review (work loomtui saved at the agent's end, a runtime without
    editor hooks). Whatever the policy decided, it is a rule of its own, at least high risk (first in
    the queue), approved by someone who may force a refused claim (the override groups; anyone where
    the policy names none); a block stands."""
    return _with_a_lead(policy, evaluation, HELD_ELSEWHERE_RULE, f"it changes what other sandboxes hold: {held}")


def _with_a_lead(policy: Policy, evaluation: Evaluation, rule_name: str, why: str) -> Evaluation:
    """`evaluation` with a built-in rule of its own, at least high risk, approved by one of the override groups
    (anyone, where the policy names none); a block stands."""
    groups = policy.override_groups or (ANYONE,)
    requirement = _group_requirement(policy, rule_name, groups, 1)
    blocked = evaluation.outcome == "block"
    rule = AppliedRule(rule_name, "require", "high", why, () if blocked else (requirement,))
    risks = [risk for risk in (evaluation.risk, "high") if risk in RISKS]
    return dataclasses.replace(evaluation, outcome="block" if blocked else "require",
                               risk=max(risks, key=RISKS.index), applied=(*evaluation.applied, rule),
                               requirements=evaluation.requirements + rule.requirements)


def with_a_person(evaluation: Evaluation, rule_name: str, note: str) -> Evaluation:
    """`evaluation`, never approved by the policy alone: an auto-approval becomes one approval from anyone;
    any other decision stands, with `note` for whoever decides."""
    if evaluation.outcome != "auto_approve":
        return dataclasses.replace(evaluation, notes=(*evaluation.notes, note))
    requirement = Requirement(rule_name, (ANYONE,), 1, frozenset())
    rule = AppliedRule(rule_name, "require", None, note, (requirement,))
    return dataclasses.replace(evaluation, outcome="require", applied=(*evaluation.applied, rule),
                               requirements=(*evaluation.requirements, requirement))


# -- evaluation --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Match:
    """Why a rule's conditions hold, and the paths it speaks for (None: the whole change)."""

    reasons: tuple[str, ...]
    scope: tuple[str, ...] | None


def evaluate(policy: Policy, facts: ChangeFacts) -> Evaluation:
    """Apply the policy to one change at one stage; see the module docstring for the semantics."""
    paths = facts.all_paths()
    applied: list[AppliedRule] = []
    auto_rules: list[Rule] = []
    default_reasons: list[str] = []
    spoken_for: set[str] = set()  # the paths an applying rule judges (an auto_approve one: vouches for all of)
    for rule in policy.rules:
        if rule.stage not in ("both", facts.stage):
            continue
        # A rule that asks for more reads `Makefile` and `makefile` as one: GNU make reads `makefile`
        # first, and a case-insensitive checkout (macOS) makes them one file. One that grants stays exact.
        match = _match(rule.when, facts, paths, any_case=rule.decision != "auto_approve")
        if match is None:
            continue
        requirements: tuple[Requirement, ...] = ()
        scope = paths if match.scope is None else match.scope
        if rule.decision == "auto_approve":
            spoken_for.update(p for p in paths if _covers(rule.when, p, facts))
        else:
            # A path it matched only in another letter case gets its requirements besides, never instead of the
            # default's: `API/backdoor.py` matched a rule for `api/**` asking one of `platform`, not the leads.
            spoken_for.update(p for p in scope if rule.when.paths is None or rule.when.paths.matching([p]))
        if rule.decision == "require":
            assert rule.approvals is not None  # the parser insists on it
            requirements, unowned = _requirements(policy, rule.name, rule.approvals, scope)
            if unowned:
                default_reasons.append(f"{rule.name} asks for code owners, and {_some(unowned)} "
                                       f"{'has' if len(unowned) == 1 else 'have'} none")
        elif rule.decision == "auto_approve":
            auto_rules.append(rule)
        applied.append(AppliedRule(rule.name, rule.decision, rule.risk, "; ".join(match.reasons), requirements))
    notes: list[str] = []
    if facts.stage == "post-gate":
        # A path no applying rule speaks for gets the default, whatever other rules ask of other paths:
        # a rule for tests/** asking one of `devs` let the production code beside them pass with a dev's
        # approval alone.
        uncovered = [p for p in paths if p not in spoken_for]
        if not applied:
            default_reasons.append("no rule applies to this change")
        elif uncovered:
            only_auto = len(auto_rules) == len(applied)
            default_reasons.append(f"no {'auto_approve ' if only_auto else ''}rule covers {_some(uncovered)}")
    elif not applied:
        notes.append("no rule applies at claim time; the change is evaluated again after the gates")
    if default_reasons:
        applied.append(_apply_default(policy, "; ".join(default_reasons)))
    requirements = tuple(r for rule in applied for r in rule.requirements)
    outcome: Decision
    if any(rule.decision == "block" for rule in applied):
        outcome = "block"
    elif requirements:
        outcome = "require"
    else:
        outcome = "auto_approve"
    if outcome != "auto_approve" and auto_rules:
        held_back = ", ".join(rule.name for rule in auto_rules)
        notes.append(f"auto_approve ({held_back}) does not hold: other rules "
                     f"{'block' if outcome == 'block' else 'require approval'}")
    risks = [rule.risk for rule in applied if rule.risk is not None]
    risk = max(risks, key=RISKS.index) if risks else NORMAL_RISK
    evaluation = Evaluation(facts.stage, outcome, risk, tuple(applied), requirements, tuple(notes),
                            policy.separation_of_duties)
    if facts.unusual:
        # No path rule reads these (a link named docs/*.md to .git/config passed as docs, auto-approved).
        evaluation = _with_a_lead(policy, evaluation, UNUSUAL_RULE,
                                  f"it holds what no path rule reads: {'; '.join(facts.unusual)}")
    return evaluation


def _match(when: Conditions, facts: ChangeFacts, paths: tuple[str, ...], any_case: bool) -> _Match | None:
    """The reasons every condition of `when` holds for `facts`, or None when one does not.

    With `any_case`, `paths` globs match whatever the letter case of a path."""
    if facts.stage == "claim" and _needs_diff(when):
        return None
    reasons: list[str] = []
    scope: set[str] | None = None
    if when.paths is not None:
        matched = when.paths.matching(paths, any_case)
        if not matched:
            return None
        other_case = " (in another letter case)" if len(when.paths.matching(matched)) < len(matched) else ""
        reasons.append(f"paths {_some(when.paths.patterns)} matched {_some(matched)}{other_case}")
        scope = set(matched)
    regions: tuple[str, ...] = ()
    if when.regions is not None:
        test = _region_test(when.regions, facts.stage)
        regions = tuple(region for region in facts.regions if test(region))
        if not regions:
            return None
        verb = "claimed" if facts.stage == "claim" else "changed"
        reasons.append(f"{verb} regions {_some(regions)} match {_some([g.pattern for g in when.regions])}")
        region_paths = {_region_path(region) for region in regions}
        scope = region_paths if scope is None else scope & region_paths
        if not scope:
            return None  # the matching regions lie outside the matching paths
    if when.signature_changed is not None:
        changed = [
            region for region in facts.signature_changed
            if when.regions is None or any(glob.matches(region) for glob in when.regions)
        ]
        if when.signature_changed != bool(changed):
            return None
        reasons.append(f"signature changed: {_some(changed)}" if changed else "no signature changed")
    if when.lines_over is not None or when.lines_under is not None:
        over, under = when.lines_over, when.lines_under
        if (over is not None and facts.lines_changed <= over) or (
            under is not None and facts.lines_changed >= under
        ):
            return None
        bounds = [f"over {over}" if over is not None else "", f"under {under}" if under is not None else ""]
        reasons.append(f"{facts.lines_changed} lines changed ({' and '.join(b for b in bounds if b)})")
    if when.gates_failed is not None:
        failed = [name for name, result in sorted(facts.gates.items())
                  if result != "passed" and (name in when.gates_failed if name in facts.advisory_gates
                                             else _any_glob(name, when.gates_failed))]
        if not failed:
            return None
        reasons.append("gates did not pass: " + ", ".join(f"{n} {facts.gates[n]}" for n in failed))
    if when.gates_passed is not None:
        for wanted in when.gates_passed:
            results = [result for name, result in facts.gates.items() if fnmatch.fnmatchcase(name, wanted)]
            if not results or any(result != "passed" for result in results):
                return None
        reasons.append(f"gates passed: {', '.join(when.gates_passed)}")
    if not _eval_holds(when, facts, reasons):
        return None
    if when.runtime is not None:
        if facts.runtime not in when.runtime:
            return None
        reasons.append(f"runtime {facts.runtime}")
    if when.labels is not None:
        labels = [label for label in facts.labels if label in when.labels]
        if not labels:
            return None
        reasons.append(f"{'label' if len(labels) == 1 else 'labels'} {', '.join(labels)}")
    return _Match(tuple(reasons), tuple(sorted(scope)) if scope is not None else None)


def _eval_holds(when: Conditions, facts: ChangeFacts, reasons: list[str]) -> bool:
    """The guardrails' conditions (score, items, regressions, merged gate); their reasons added."""
    if when.eval_score_over is not None or when.eval_score_under is not None:
        score, over, under = facts.eval_score, when.eval_score_over, when.eval_score_under
        if score is None or (over is not None and score <= over) or (under is not None and score >= under):
            return False
        bounds = [f"over {over}" if over is not None else "", f"under {under}" if under is not None else ""]
        reasons.append(f"eval score {score} ({' and '.join(b for b in bounds if b)})")
    if when.eval_items is not None:
        bad = {"warn": ("warn", "fail"), "fail": ("fail",)}
        hit = [f"{name} {facts.eval_items[name]}" for name, least in when.eval_items.items()
               if facts.eval_items.get(name) in bad[least]]
        if not hit:
            return False
        reasons.append("eval items: " + ", ".join(hit))
    if when.regressions is not None:
        if when.regressions != bool(facts.regressions):
            return False
        reasons.append(f"regressions: {_some(facts.regressions)}" if facts.regressions else "no regressions")
    if when.merged_breaks is not None:
        if when.merged_breaks != bool(facts.merged_breaks):
            return False
        reasons.append(f"breaks together with {_some(facts.merged_breaks)} (merged gate)" if facts.merged_breaks
                       else "breaks nothing together with other pending sandboxes")
    return True


def _needs_diff(when: Conditions) -> bool:
    return (
        when.signature_changed is not None or when.lines_over is not None
        or when.lines_under is not None or when.gates_failed is not None or when.gates_passed is not None
        or when.eval_score_over is not None or when.eval_score_under is not None or when.eval_items is not None
        or when.regressions is not None or when.merged_breaks is not None
    )


def _region_test(globs: tuple[RegionGlob, ...], stage: Stage) -> Callable[[str], bool]:
    # A claim reaches everything nested in what it names; a diff names exact regions.
    if stage == "claim":
        return lambda region: any(glob.covers(region) for glob in globs)
    return lambda region: any(glob.matches(region) for glob in globs)


def _covers(when: Conditions, path: str, facts: ChangeFacts) -> bool:
    """Whether an auto-approving rule vouches for everything changed in `path`.

    An unscoped rule (no `paths`, no `regions`) speaks for the whole change. A
    `regions` rule vouches for a path only when every changed region in it matches.
    """
    if not when.scoped:
        return True
    if when.paths is not None and not when.paths.matching([path]):
        return False
    if when.regions is None:
        return True
    test = _region_test(when.regions, facts.stage)
    in_path = [region for region in facts.regions if _region_path(region) == path]
    return bool(in_path) and all(test(region) for region in in_path)


def _requirements(
    policy: Policy, rule: str, spec: ApprovalSpec, paths: Sequence[str]
) -> tuple[tuple[Requirement, ...], tuple[str, ...]]:
    """The requirements of one approval spec, and the paths left without code owners."""
    requirements: list[Requirement] = []
    if spec.groups:
        requirements.append(_group_requirement(policy, rule, spec.groups, spec.count))
    unowned: list[str] = []
    if spec.codeowners:
        # One requirement per distinct set of owners, so a change touching ten
        # files of one team needs one approval from that team, not ten.
        paths_by_owners: dict[tuple[str, ...], list[str]] = {}
        for path in paths:
            owners = policy.codeowners.owners_of(path) if policy.codeowners else ()
            if owners:
                paths_by_owners.setdefault(owners, []).append(path)
            else:
                unowned.append(path)
        for owners, owned in paths_by_owners.items():
            labels = tuple(_owner_group(owner, policy.groups) or owner for owner in owners)
            eligible = frozenset().union(*(_owner_members(owner, policy.groups) for owner in owners))
            requirements.append(Requirement(rule, labels, 1, eligible, paths=tuple(owned)))
    return tuple(requirements), tuple(unowned)


def _group_requirement(policy: Policy, rule: str, groups: tuple[str, ...], count: int) -> Requirement:
    eligible = frozenset().union(*(policy.groups.get(name, frozenset()) for name in groups))
    return Requirement(rule, groups, count, eligible)


def _apply_default(policy: Policy, why: str) -> AppliedRule:
    default = policy.default
    if default.decision == "block":
        return AppliedRule(DEFAULT_RULE, "block", None, why)
    requirement = _group_requirement(policy, DEFAULT_RULE, default.approvals.groups, default.approvals.count)
    return AppliedRule(DEFAULT_RULE, "require", None, why, (requirement,))


# -- approvals ---------------------------------------------------------------------------


def groups_of(policy: Policy, user: str) -> frozenset[str]:
    """The names of the policy's groups `user` belongs to."""
    key = _identity(user)
    return frozenset(name for name, members in policy.groups.items() if key in members)


def requirement_status(
    req: Requirement, approvals: Iterable[str], author: str | None, separation_of_duties: bool
) -> tuple[bool, str]:
    """Whether `approvals` (approver identities) meet `req`, and a line saying so.

    Each person counts once; people outside the requirement's groups do not
    count; with separation of duties the author's own approval does not count.
    """
    author_key = _identity(author) if author else None
    approvers = sorted({_identity(a) for a in approvals if a.strip()})
    counted = [a for a in approvers if req.admits(a) and not (separation_of_duties and a == author_key)]
    met = len(counted) >= req.count
    text = f"{min(len(counted), req.count)} of {plural(req.count, 'approval')} from {req.source()}"
    if counted:
        text += f" ({', '.join(counted)})"
    if separation_of_duties and author_key in approvers and req.admits(author_key or ""):
        text += "; the author's own approval does not count (separation of duties)"
    if not met and never_met(req, author, separation_of_duties):
        pool = len(req.eligible - ({author_key} if separation_of_duties and author_key else set()))
        text += (f"; it can never be met ({pool} of {req.source()} may approve"
                 f"{' besides the author' if pool < len(req.eligible) else ''}): only an override lets it through")
    return met, text


def never_met(req: Requirement, author: str | None, separation_of_duties: bool) -> bool:
    """Whether no set of approvals can meet `req`: fewer people may approve than it asks for (the author
    not among them under separation of duties)."""
    if req.anyone:
        return False
    author_key = _identity(author) if author else None
    return len(req.eligible - ({author_key} if separation_of_duties and author_key else set())) < req.count


def decision_met(
    policy: Policy, evaluation: Evaluation, approvals: Iterable[str], author: str | None
) -> tuple[bool, list[str]]:
    """Whether the change may proceed with these approvals: every requirement met on its own.

    A block is never met by approvals (only an override lets it through).
    """
    if evaluation.outcome == "block":
        blockers = ", ".join(rule.name for rule in evaluation.applied if rule.decision == "block")
        return False, [f"blocked by {blockers}: approvals cannot lift a block, only an override"]
    if evaluation.outcome == "auto_approve":
        return True, ["auto-approved: no approval needed"]
    given = list(approvals)
    lines: list[str] = []
    all_met = True
    for requirement in evaluation.requirements:
        met, text = requirement_status(requirement, given, author, policy.separation_of_duties)
        lines.append(f"{'met' if met else 'unmet'}: {requirement.rule}: {text}")
        all_met = all_met and met
    return all_met, lines


def can_approve(
    policy: Policy, user: str, evaluation: Evaluation, author: str | None, approvals: Iterable[str] = ()
) -> bool:
    """Whether `user`'s approval would count toward a requirement not yet met.

    Not when the decision needs no approval (auto-approved or blocked), not for
    the author under separation of duties, and not for someone already counted.
    """
    if evaluation.outcome != "require":
        return False
    key = _identity(user)
    if policy.separation_of_duties and author is not None and key == _identity(author):
        return False
    given = list(approvals)
    if key in {_identity(a) for a in given}:
        return False
    return any(
        req.admits(key) and not requirement_status(req, given, author, policy.separation_of_duties)[0]
        for req in evaluation.requirements
    )


def can_override(policy: Policy, user: str) -> bool:
    """Whether `user` is in a group the policy allows to override a block."""
    groups = policy.overrides.groups
    return ANYONE in groups or bool(groups_of(policy, user) & set(groups))


# -- small helpers -----------------------------------------------------------------------


def _owner_members(owner: str, groups: Mapping[str, frozenset[str]]) -> frozenset[str]:
    if _is_email(owner):
        return frozenset({_identity(owner)})
    group = _owner_group(owner, groups)
    return groups[group] if group is not None else frozenset()


def _any_glob(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)
