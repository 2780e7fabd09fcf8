"""The written policy: which changes may proceed, who must approve them, and why.

`.loom/policy.yaml` is versioned with the code. It names groups of people (by
git `user.email`, or `LOOM_USER`), optionally a CODEOWNERS file, and rules. A rule
has conditions (`when`) on facts about a change and a decision: `auto_approve`,
`require` (N approvals from one or more groups, or one from the code owners of
each changed path) or `block`.

Policy runs twice, so a rule says when it applies (`stage`, default `both`):

- at claim time, before an agent writes anything: the facts are the claimed paths
  and regions (and the runtime, labels and author). Conditions on the diff
  (`lines_changed`, `gates_failed`, `gates_passed`, `signature_changed`, and the
  guardrails' `eval_score`, `eval_items`, `regressions`, `merged_breaks`) are
  unknown then, so a rule that has one never applies at claim time. A claim on a
  file or class counts as a claim on every region inside it. When no rule
  applies, the claim proceeds: the change is judged again after the gates.
- after the gates, on the actual diff and gate results.

Evaluation is explicit: every rule that applies is listed with why. `block` beats
everything; each applying `require` must be met on its own; `auto_approve` holds
only when nothing else requires approval and its rules cover every changed path.
A change no rule applies to after the gates gets the policy's `default` (one
approval), never a silent pass; so does one with a path no applying rule speaks for
(whatever other rules ask of its other paths), and the paths without code owners
under a `codeowners: true` rule.

Identities are compared case-insensitively (emails are, in practice).

This module is where callers import from; the code lives in `policy_model` (the
facts, the policy and evaluation results, constants), `policy_parse` (reading and
validating the file), `policy_eval` (evaluation, approvals, overrides) and
`policy_fixtures` (`loomtui policy test`).
"""

from __future__ import annotations

from loomtui.governance.policy_eval import (
    CLAIM_STAGE_LABEL,
    HELD_ELSEWHERE_RULE,
    UNUSUAL_RULE,
    can_approve,
    can_override,
    combined,
    decision_met,
    evaluate,
    groups_of,
    never_met,
    requirement_status,
    with_a_person,
    with_failed_agent,
    with_held_elsewhere,
)
from loomtui.governance.policy_fixtures import (
    CaseResult,
    PolicyCase,
    load_policy_tests,
    parse_policy_tests,
    run_policy_case,
)
from loomtui.governance.policy_model import (
    ANYONE,
    DECISIONS,
    DEFAULT_RULE,
    MAX_OVERRIDE_HOURS,
    MERGE_AUTO,
    MERGE_MANUAL,
    MERGE_MODES,
    NORMAL_RISK,
    POLICY_PATH,
    RISKS,
    AppliedRule,
    ApprovalSpec,
    ChangeFacts,
    Conditions,
    Decision,
    DecisionSigning,
    DefaultDecision,
    DefaultOutcome,
    Evaluation,
    GateResult,
    OverridePolicy,
    PathGlobs,
    Policy,
    RegionGlob,
    Requirement,
    Rule,
    RuleStage,
    Stage,
    same_person,
)
from loomtui.governance.policy_parse import (
    configured_policy,
    default_policy,
    load_policy,
    parse_policy,
    read_policy_file,
)

__all__ = [
    "ANYONE",
    "DECISIONS",
    "DEFAULT_RULE",
    "MERGE_AUTO",
    "MERGE_MANUAL",
    "MAX_OVERRIDE_HOURS",
    "MERGE_MODES",
    "NORMAL_RISK",
    "POLICY_PATH",
    "RISKS",
    "AppliedRule",
    "ApprovalSpec",
    "CaseResult",
    "ChangeFacts",
    "Conditions",
    "Decision",
    "DecisionSigning",
    "DefaultDecision",
    "DefaultOutcome",
    "Evaluation",
    "GateResult",
    "OverridePolicy",
    "PathGlobs",
    "Policy",
    "PolicyCase",
    "RegionGlob",
    "Requirement",
    "Rule",
    "RuleStage",
    "Stage",
    "can_approve",
    "can_override",
    "combined",
    "decision_met",
    "default_policy",
    "evaluate",
    "groups_of",
    "configured_policy",
    "load_policy",
    "load_policy_tests",
    "parse_policy",
    "parse_policy_tests",
    "read_policy_file",
    "never_met",
    "requirement_status",
    "same_person",
    "run_policy_case",
    "with_a_person",
    "with_failed_agent",
    "with_held_elsewhere",
    "CLAIM_STAGE_LABEL",
    "HELD_ELSEWHERE_RULE",
    "UNUSUAL_RULE",
]
