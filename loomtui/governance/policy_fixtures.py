"""`loomtui policy test` fixtures: reading cases (a change and the decision it must get) and running them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loomtui.errors import ConfigError
from loomtui.governance.policy_eval import decision_met, evaluate
from loomtui.governance.policy_model import (
    _GATE_RESULTS,
    _STAGES,
    DECISIONS,
    DEFAULT_RULE,
    NORMAL_RISK,
    RISKS,
    ChangeFacts,
    Decision,
    Evaluation,
    Policy,
)
from loomtui.governance.policy_parse import _one_or_many, _optional
from loomtui.yamlcheck import Value, compose, read_text


@dataclass(frozen=True)
class PolicyCase:
    """One fixture: a change and the decision the policy must give it.

    `rules`, when given, is the exact set of applied rule names (`default`
    included); `approvals` with `met` checks `decision_met`.
    """

    name: str
    facts: ChangeFacts
    outcome: Decision
    risk: str | None = None
    rules: tuple[str, ...] | None = None
    approvals: tuple[str, ...] | None = None
    met: bool | None = None
    line: int = 0


@dataclass(frozen=True)
class CaseResult:
    """A fixture's result: what went wrong (nothing when it passed) and the evaluation."""

    case: PolicyCase
    evaluation: Evaluation
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


_CHANGE_KEYS: Final = (
    "stage", "paths", "regions", "signature_changed", "lines_changed", "gates", "runtime", "labels",
    "author", "eval_score", "eval_items", "regressions", "merged_breaks", "advisory_gates",
)
_EXPECT_KEYS: Final = ("outcome", "risk", "rules", "approvals", "met")


def load_policy_tests(file: Path, shown: str) -> tuple[PolicyCase, ...]:
    """Read and validate a fixtures file (errors name it as `shown`)."""
    text = read_text(file, shown)
    return parse_policy_tests(text, shown)


def parse_policy_tests(text: str, path: str) -> tuple[PolicyCase, ...]:
    """Validate fixtures text: `cases:` a list of {name, change, expect}."""
    document = compose(text, path)
    if document is None:
        raise ConfigError(path, None, "no cases (expected `cases:` with a list of cases)")
    cases_value = document.as_mapping(known=("cases",), required=("cases",))["cases"]
    cases: list[PolicyCase] = []
    first_line: dict[str, int] = {}
    for item in cases_value.as_list():
        fields = item.as_mapping(known=("name", "change", "expect"), required=("name", "change", "expect"))
        name = fields["name"].as_str(non_empty=True)
        if name in first_line:
            raise fields["name"].error(f"duplicate case name {name!r} (first on line {first_line[name]})")
        first_line[name] = item.line
        expect = fields["expect"].as_mapping(known=_EXPECT_KEYS, required=("outcome",))
        approvals = _optional(expect, "approvals", _identities, None)
        met = _optional(expect, "met", Value.as_bool, None)
        cases.append(PolicyCase(
            name=name,
            facts=_parse_change(fields["change"]),
            outcome=expect["outcome"].as_choice(DECISIONS),
            risk=_optional(expect, "risk", lambda v: v.as_choice((*RISKS, NORMAL_RISK)), None),
            rules=_optional(expect, "rules", _identities, None),
            approvals=approvals if approvals is not None or met is None else (),
            met=met if met is not None or approvals is None else True,
            line=item.line,
        ))
    if not cases:
        raise cases_value.error("must list at least one case")
    return tuple(cases)


def run_policy_case(policy: Policy, case: PolicyCase) -> CaseResult:
    """Evaluate one fixture and compare with what it expects."""
    evaluation = evaluate(policy, case.facts)
    failures: list[str] = []
    if evaluation.outcome != case.outcome:
        failures.append(f"outcome: expected {case.outcome}, got {evaluation.outcome}")
    if case.risk is not None and evaluation.risk != case.risk:
        failures.append(f"risk: expected {case.risk}, got {evaluation.risk}")
    if case.rules is not None:
        known = {rule.name for rule in policy.rules} | {DEFAULT_RULE}
        for name in sorted(set(case.rules) - known):
            failures.append(f"rules: the policy has no rule {name!r}")
        if set(case.rules) != set(evaluation.rule_names()):
            failures.append(
                f"rules: expected {', '.join(sorted(case.rules)) or 'none'}, "
                f"got {', '.join(sorted(evaluation.rule_names())) or 'none'}"
            )
    if case.met is not None:
        met, lines = decision_met(policy, evaluation, case.approvals or (), case.facts.author)
        if met != case.met:
            failures.append(f"met: expected {'met' if case.met else 'unmet'}, got {'met' if met else 'unmet'}"
                            f" ({'; '.join(lines)})")
    return CaseResult(case, evaluation, tuple(failures))


def _parse_change(value: Value) -> ChangeFacts:
    fields = value.as_mapping(known=_CHANGE_KEYS)
    gates: dict[str, str] = {}
    gates_value = fields.get("gates")
    if gates_value is not None:
        for name, result in gates_value.as_mapping().items():
            gates[name] = result.as_choice(_GATE_RESULTS)
    return ChangeFacts(
        stage=_optional(fields, "stage", lambda v: v.as_choice(_STAGES), "post-gate"),
        paths=_optional(fields, "paths", _identities, ()),
        regions=_optional(fields, "regions", _identities, ()),
        signature_changed=_optional(fields, "signature_changed", _identities, ()),
        lines_changed=_optional(fields, "lines_changed", lambda v: v.as_int(minimum=0), 0),
        gates=gates,
        advisory_gates=frozenset(_optional(fields, "advisory_gates", _identities, tuple[str, ...]())),
        runtime=_optional(fields, "runtime", lambda v: v.as_str(non_empty=True), None),
        labels=_optional(fields, "labels", _identities, ()),
        author=_optional(fields, "author", lambda v: v.as_str(non_empty=True), None),
        eval_score=_optional(fields, "eval_score", lambda v: v.as_int(minimum=0, maximum=100), None),
        eval_items=_optional(fields, "eval_items", _item_statuses, {}),
        regressions=_optional(fields, "regressions", _identities, ()),
        merged_breaks=_optional(fields, "merged_breaks", _identities, ()),
    )


def _item_statuses(value: Value) -> dict[str, str]:
    return {name: status.as_choice(("pass", "warn", "fail")) for name, status in value.as_mapping().items()}


def _identities(value: Value) -> tuple[str, ...]:
    return tuple(item.as_str(non_empty=True) for item in _one_or_many(value))
