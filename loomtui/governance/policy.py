"""The written policy: which changes may proceed, who must approve them, and why.

`.loom/policy.yaml` is versioned with the code. It names groups of people (by
git `user.email`, or `LOOM_USER`), optionally a CODEOWNERS file, and rules. A rule
has conditions (`when`) on facts about a change and a decision: `auto_approve`,
`require` (N approvals from one or more groups, or one from the code owners of
each changed path) or `block`.

Policy runs twice, so a rule says when it applies (`stage`, default `both`):

- at claim time, before an agent writes anything: the facts are the claimed paths
  and regions (and the runtime, labels and author). Conditions on the diff
  (`lines_changed`, `gates_failed`, `gates_passed`, `signature_changed`) are
  unknown then, so a rule that has one never applies at claim time. A claim on a
  file or class counts as a claim on every region inside it. When no rule
  applies, the claim proceeds: the change is judged again after the gates.
- after the gates, on the actual diff and gate results.

Evaluation is explicit: every rule that applies is listed with why. `block` beats
everything; each applying `require` must be met on its own; `auto_approve` holds
only when nothing else requires approval and its rules cover every changed path.
A change no rule applies to after the gates gets the policy's `default` (one
approval), never a silent pass; so do the paths an auto-approving rule does not
cover, and the paths without code owners under a `codeowners: true` rule.

Identities are compared case-insensitively (emails are, in practice).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final, Literal, TypeVar

import pathspec
from yaml.nodes import ScalarNode

from loomtui.errors import ConfigError
from loomtui.globs import glob_problem
from loomtui.governance.codeowners import CodeOwners, load_codeowners
from loomtui.yamlcheck import Fields, Value, closest, compose, read_text

__all__ = [
    "ANYONE",
    "DECISIONS",
    "POLICY_PATH",
    "RISKS",
    "AppliedRule",
    "ApprovalSpec",
    "CaseResult",
    "ChangeFacts",
    "Conditions",
    "DefaultDecision",
    "Evaluation",
    "OverridePolicy",
    "PathGlobs",
    "Policy",
    "PolicyCase",
    "RegionGlob",
    "Requirement",
    "Rule",
    "can_approve",
    "can_override",
    "decision_met",
    "default_policy",
    "evaluate",
    "groups_of",
    "load_policy",
    "load_policy_tests",
    "parse_policy",
    "parse_policy_tests",
    "read_policy_file",
    "requirement_status",
    "run_policy_case",
]

POLICY_PATH: Final = ".loom/policy.yaml"
"""Where the policy lives by default, relative to the repository root."""

ANYONE: Final = "anyone"
"""The built-in group every user belongs to (a reserved name in `groups`)."""

Decision = Literal["auto_approve", "require", "block"]
Stage = Literal["claim", "post-gate"]
RuleStage = Literal["claim", "post-gate", "both"]
DefaultOutcome = Literal["require", "block"]
GateResult = Literal["passed", "failed", "error"]

# Dicts from the spelling in the file to the Literal, so a validated string
# becomes its Literal type without a cast.
DECISIONS: Final[dict[str, Decision]] = {
    "auto_approve": "auto_approve", "require": "require", "block": "block",
}
_RULE_STAGES: Final[dict[str, RuleStage]] = {"claim": "claim", "post-gate": "post-gate", "both": "both"}
_STAGES: Final[dict[str, Stage]] = {"claim": "claim", "post-gate": "post-gate"}
_DEFAULT_OUTCOMES: Final[dict[str, DefaultOutcome]] = {"require": "require", "block": "block"}
_GATE_RESULTS: Final[dict[str, GateResult]] = {"passed": "passed", "failed": "failed", "error": "error"}
RISKS: Final = ("low", "medium", "high", "critical")
"""Rule risk levels, lowest first. An evaluation no rule gave a risk is "normal"."""
NORMAL_RISK: Final = "normal"
DEFAULT_RULE: Final = "default"
"""The name the policy's default decision appears under in an evaluation."""

_TOP_KEYS: Final = (
    "version", "groups", "codeowners", "separation_of_duties", "default", "overrides", "rules",
    "decisions", "merge",
)
MERGE_AUTO: Final = "auto"
MERGE_MANUAL: Final = "manual"
MERGE_MODES: Final = (MERGE_MANUAL, MERGE_AUTO)
_RULE_KEYS: Final = ("name", "description", "stage", "when", "risk", "decision", "approvals")
_WHEN_KEYS: Final = (
    "paths", "regions", "signature_changed", "lines_changed", "gates_failed", "gates_passed",
    "runtime", "labels",
)
# Facts that exist only once there is a diff and gate results.
_POST_GATE_ONLY: Final = frozenset({"signature_changed", "lines_changed", "gates_failed", "gates_passed"})
_LIST_LIMIT: Final = 3

_T = TypeVar("_T")


# -- facts about a change ----------------------------------------------------------------


@dataclass(frozen=True)
class ChangeFacts:
    """What the policy knows about a change, at claim time or after the gates.

    Region ids are `path.py::Class.method`; the path of every region counts as a
    changed path too, so callers need not repeat it in `paths`.
    """

    stage: Stage
    paths: tuple[str, ...]
    regions: tuple[str, ...] = ()
    signature_changed: tuple[str, ...] = ()
    lines_changed: int = 0
    gates: Mapping[str, str] = field(default_factory=dict)
    runtime: str | None = None
    labels: tuple[str, ...] = ()
    author: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in _STAGES:
            raise ValueError(f"stage must be 'claim' or 'post-gate' (got {self.stage!r})")
        bad = {name: result for name, result in self.gates.items() if result not in _GATE_RESULTS}
        if bad:
            raise ValueError(f"gate results must be passed, failed or error (got {bad})")

    def all_paths(self) -> tuple[str, ...]:
        """The changed paths together with the paths of the changed regions, sorted."""
        return tuple(sorted({*self.paths, *(_region_path(r) for r in self.regions)}))


# -- the policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class PathGlobs:
    """Gitignore-style globs (`pathspec`), `!` negations included, as one condition."""

    patterns: tuple[str, ...]
    spec: pathspec.GitIgnoreSpec

    @classmethod
    def of(cls, patterns: Sequence[str]) -> PathGlobs:
        """Compile already validated patterns."""
        return cls(tuple(patterns), pathspec.GitIgnoreSpec.from_lines(patterns))

    def matching(self, paths: Iterable[str]) -> tuple[str, ...]:
        """The paths these globs match, in the order given."""
        return tuple(path for path in paths if self.spec.match_file(path))


@dataclass(frozen=True)
class RegionGlob:
    """A region-id glob, `PATH-GLOB::QUALNAME-GLOB` or just `PATH-GLOB`.

    The path part is a gitignore-style glob, exactly as in `paths`. The qualname
    part is an fnmatch glob in which `*` also crosses dots, so `Ledger.*` is every
    method of Ledger and everything nested in them (but not the class's own
    region: list `Ledger` too for that). Without `::`, every region of the
    matching files matches.
    """

    pattern: str
    path_spec: pathspec.GitIgnoreSpec
    qualname: str | None

    @classmethod
    def of(cls, pattern: str) -> RegionGlob:
        """Compile an already validated pattern."""
        path, separator, qualname = pattern.partition("::")
        return cls(pattern, pathspec.GitIgnoreSpec.from_lines([path]), qualname if separator else None)

    def matches(self, region_id: str) -> bool:
        """Whether the glob matches this region id."""
        path, _, qualname = region_id.partition("::")
        if not self.path_spec.match_file(path):
            return False
        return self.qualname is None or (bool(qualname) and fnmatch.fnmatchcase(qualname, self.qualname))

    def covers(self, region_id: str) -> bool:
        """Whether a claim on `region_id` covers a region this glob matches.

        A claim on a region includes everything nested in it: a claim on a file
        may touch any region of it, a claim on a class any of its methods.
        """
        path, _, qualname = region_id.partition("::")
        if not self.path_spec.match_file(path):
            return False
        if self.qualname is None or not qualname:
            return True
        return fnmatch.fnmatchcase(qualname, self.qualname) or _glob_matches_some_extension(
            self.qualname, qualname + "."
        )


@dataclass(frozen=True)
class Conditions:
    """A rule's `when`: every condition given must hold (and each list is any-of)."""

    paths: PathGlobs | None = None
    regions: tuple[RegionGlob, ...] | None = None
    signature_changed: bool | None = None
    lines_over: int | None = None
    lines_under: int | None = None
    gates_failed: tuple[str, ...] | None = None
    gates_passed: tuple[str, ...] | None = None
    runtime: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None

    @property
    def scoped(self) -> bool:
        """Whether the rule speaks for some paths only (it has `paths` or `regions`)."""
        return self.paths is not None or self.regions is not None


@dataclass(frozen=True)
class ApprovalSpec:
    """Who must approve: `count` people from the union of `groups`, and/or code owners."""

    groups: tuple[str, ...] = ()
    count: int = 1
    codeowners: bool = False


@dataclass(frozen=True)
class Rule:
    """One rule of the policy; `line` is where it starts in the file."""

    name: str
    decision: Decision
    when: Conditions
    stage: RuleStage = "both"
    risk: str | None = None
    approvals: ApprovalSpec | None = None
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class DefaultDecision:
    """What a change gets when no rule applies after the gates."""

    decision: DefaultOutcome = "require"
    approvals: ApprovalSpec = ApprovalSpec(groups=(ANYONE,), count=1)


@dataclass(frozen=True)
class OverridePolicy:
    """Which groups may override a block, and for how long an override holds."""

    groups: tuple[str, ...] = ()
    max_hours: int = 72


@dataclass(frozen=True)
class DecisionSigning:
    """`decisions:`: whether a person's decision must be signed, and who may sign (an ssh
    allowed_signers file in the repository, read from the main checkout)."""

    require_signature: bool = False
    allowed_signers: str = ".loom/allowed_signers"


@dataclass(frozen=True)
class Policy:
    """A validated policy. `source` is the file as shown in messages; None: the built-in default.

    `groups` maps a group name to its members' identities, casefolded.
    `warnings` are `file:line: message` lines about a valid but doubtful policy.
    """

    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    default: DefaultDecision = DefaultDecision()
    separation_of_duties: bool = True
    overrides: OverridePolicy = OverridePolicy()
    codeowners: CodeOwners | None = None
    source: str | None = None
    decisions: DecisionSigning = DecisionSigning()
    warnings: tuple[str, ...] = ()
    merge: str = MERGE_MANUAL
    """`auto`: the workflow merges a change once it is approved; `manual`: a person merges it."""

    @property
    def override_groups(self) -> tuple[str, ...]:
        """The groups that may override a block (`overrides.groups`)."""
        return self.overrides.groups

    def summary(self) -> str:
        """One line describing the policy, for `policy validate`."""
        if self.source is None:
            return f"no policy file: the built-in default applies (every change: {_describe_default(self)})"
        parts = [
            _plural(len(self.rules), "rule"),
            _plural(len(self.groups), "group"),
            f"default: {_describe_default(self)}",
            f"separation of duties {'on' if self.separation_of_duties else 'off'}",
        ]
        if self.codeowners is not None:
            parts.append(f"{self.codeowners.path} ({_plural(len(self.codeowners.rules), 'pattern')})")
        if self.overrides.groups:
            parts.append(
                f"overrides by {', '.join(self.overrides.groups)} (max {self.overrides.max_hours}h)"
            )
        if self.decisions.require_signature:
            parts.append(f"decisions signed (keys in {self.decisions.allowed_signers})")
        return f"{self.source}: " + "; ".join(parts)


# -- evaluation results ------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """`count` approvals from distinct people in `eligible` (anyone when `groups` names `anyone`).

    `groups` names where the approvers come from (group names, or code owners as
    resolved); `paths` are the paths a code-owner requirement is for.
    """

    rule: str
    groups: tuple[str, ...]
    count: int
    eligible: frozenset[str]
    paths: tuple[str, ...] = ()

    @property
    def anyone(self) -> bool:
        """Whether every user may approve (the built-in group `anyone` is named).

        Derived from `groups` rather than stored, so a requirement rebuilt from
        its groups, count and eligible set (e.g. from the store) keeps it.
        """
        return ANYONE in self.groups

    def admits(self, user: str) -> bool:
        """Whether `user` is among the people who may approve toward this requirement."""
        return self.anyone or _identity(user) in self.eligible

    def source(self) -> str:
        """Who approves, in words: "payments-team or leads", "code owners of x.py (docs)"."""
        who = " or ".join(self.groups) if self.groups else "no one"
        if self.paths:
            return f"the code owners of {_some(self.paths)} ({who})"
        return who

    def describe(self) -> str:
        """E.g. "2 approvals from payments-team"."""
        return f"{_plural(self.count, 'approval')} from {self.source()}"


@dataclass(frozen=True)
class AppliedRule:
    """A rule that applied to the change, and why (`name` "default" for the default)."""

    name: str
    decision: Decision
    risk: str | None
    why: str
    requirements: tuple[Requirement, ...] = ()

    @property
    def requirement(self) -> Requirement | None:
        """The rule's requirement; a code-owner rule may have several (see `requirements`)."""
        return self.requirements[0] if self.requirements else None


@dataclass(frozen=True)
class Evaluation:
    """The decision for one change at one stage, with every applied rule and requirement."""

    stage: Stage
    outcome: Decision
    risk: str
    applied: tuple[AppliedRule, ...]
    requirements: tuple[Requirement, ...]
    notes: tuple[str, ...] = ()

    def rule_names(self) -> tuple[str, ...]:
        """The names of the applied rules, in policy order (the default last)."""
        return tuple(rule.name for rule in self.applied)

    def explanation(self) -> list[str]:
        """The decision and, for every applied rule, why it applied and what it needs."""
        lines = [f"{self.outcome} at {self.stage} (risk {self.risk}): {self._headline()}"]
        for rule in self.applied:
            risk = f", risk {rule.risk}" if rule.risk else ""
            lines.append(f"  {rule.name} ({rule.decision}{risk}): {rule.why}")
            lines.extend(f"    needs {requirement.describe()}" for requirement in rule.requirements)
        lines.extend(f"  note: {note}" for note in self.notes)
        return lines

    def _headline(self) -> str:
        if self.outcome == "block":
            blockers = [rule.name for rule in self.applied if rule.decision == "block"]
            return f"blocked by {', '.join(blockers)} (a block beats every other rule)"
        if self.outcome == "require":
            count = len(self.requirements)
            return "1 requirement" if count == 1 else f"{count} requirements, each to be met on its own"
        approvers = [rule.name for rule in self.applied if rule.decision == "auto_approve"]
        return f"auto-approved by {', '.join(approvers)}" if approvers else "no approval needed"


def combined(first: Evaluation, second: Evaluation, label: str) -> Evaluation:
    """One decision from two evaluations of one change (at `first`'s stage): a block in either
    blocks, every requirement of both must be met, the higher risk counts. The rules of
    `second` are named with `label`, e.g. `ledger-claims (claim stage)`."""
    def marked(name: str) -> str:
        return f"{name} ({label})"

    carried = tuple(dataclasses.replace(rule, name=marked(rule.name),
                                        requirements=tuple(dataclasses.replace(r, rule=marked(r.rule))
                                                           for r in rule.requirements))
                    for rule in second.applied if rule.decision != "auto_approve")
    requirements = first.requirements + tuple(r for rule in carried for r in rule.requirements)
    outcome: Decision = ("block" if "block" in (first.outcome, second.outcome)
                         else "require" if requirements else first.outcome)
    risks = [risk for risk in (first.risk, second.risk) if risk in RISKS]
    risk = max(risks, key=RISKS.index) if risks else first.risk
    return Evaluation(first.stage, outcome, risk, first.applied + carried, requirements,
                      first.notes + tuple(f"{label}: {note}" for note in second.notes))


# -- loading -----------------------------------------------------------------------------


def default_policy(source: str | None = None) -> Policy:
    """The policy used when there is no file: every change needs one approval from anyone."""
    return Policy(source=source)


def load_policy(root: Path, relative: str = POLICY_PATH) -> Policy:
    """Read `root/relative`; the built-in default when the usual file does not exist.

    A path named on purpose (`policy:` in loom.yaml) that does not exist is an
    error: a typo must not quietly drop every rule. Raises ConfigError.
    """
    target = root / relative
    if not target.exists():
        if relative != POLICY_PATH:
            raise ConfigError(relative, None, "the policy file named by `policy:` in .loom/loom.yaml "
                                              "does not exist")
        return default_policy()
    return read_policy_file(target, relative, root)


def read_policy_file(file: Path, shown: str, root: Path | None) -> Policy:
    """Read and validate one policy file; errors name it as `shown`."""
    text = read_text(file, shown)
    return parse_policy(text, shown, root)


def parse_policy(text: str, path: str, root: Path | None = None) -> Policy:
    """Validate policy `text` (`path` names it in errors); `root` is where CODEOWNERS is read from."""
    document = compose(text, path)
    if document is None:
        return default_policy(source=path)
    top = document.as_mapping(known=_TOP_KEYS)
    version = top.get("version")
    if version is not None and version.as_int() != 1:
        raise version.error(f"unsupported version {version.as_int()} (only 1 is supported)")
    warnings: list[str] = []
    no_groups: dict[str, frozenset[str]] = {}
    groups = _optional(top, "groups", _parse_groups, no_groups)
    separation = _optional(top, "separation_of_duties", Value.as_bool, True)
    codeowners = _optional(top, "codeowners", lambda v: _parse_codeowners_file(v, root, warnings), None)
    codeowners_named = "codeowners" in top
    context = _Context(groups, separation, codeowners_named, warnings)
    default_section = top.get("default")
    default = (
        _parse_default(default_section, context)
        if default_section is not None and not default_section.is_null()
        else DefaultDecision(approvals=_everyone_in_groups(groups))
    )
    overrides = _optional(top, "overrides", context.parse_overrides, OverridePolicy())
    no_rules: tuple[Rule, ...] = ()
    rules = _optional(top, "rules", context.parse_rules, no_rules)
    decisions = _optional(top, "decisions", _parse_decisions, DecisionSigning())
    merge = _optional(top, "merge", lambda v: v.as_choice(MERGE_MODES), MERGE_MANUAL)
    if codeowners is not None:
        warnings.extend(_unknown_owner_warnings(codeowners, groups, path))
    return Policy(
        groups=groups,
        rules=rules,
        default=default,
        separation_of_duties=separation,
        overrides=overrides,
        codeowners=codeowners,
        source=path,
        decisions=decisions,
        warnings=tuple(warnings),
        merge=merge,
    )


@dataclass
class _Context:
    """What parsing a rule needs to know about the rest of the file."""

    groups: Mapping[str, frozenset[str]]
    separation_of_duties: bool
    codeowners_named: bool
    warnings: list[str]

    def parse_rules(self, section: Value) -> tuple[Rule, ...]:
        rules: list[Rule] = []
        first_line: dict[str, int] = {}
        for item in section.as_list():
            fields = item.as_mapping(known=_RULE_KEYS, required=("name", "decision", "when"))
            name = fields["name"].as_str(non_empty=True).strip()
            if name == DEFAULT_RULE:
                raise fields["name"].error(f"{DEFAULT_RULE!r} is reserved for the policy's default decision")
            if name in first_line:
                raise fields["name"].error(
                    f"duplicate rule name {name!r} (first defined on line {first_line[name]})"
                )
            first_line[name] = item.line
            rules.append(self.parse_rule(name, item.line, fields))
        return tuple(rules)

    def parse_rule(self, name: str, line: int, fields: Fields) -> Rule:
        decision = DECISIONS[fields["decision"].as_choice(tuple(DECISIONS))]
        both: RuleStage = "both"
        stage = _optional(fields, "stage", lambda v: _RULE_STAGES[v.as_choice(tuple(_RULE_STAGES))], both)
        when = _parse_when(fields["when"], stage)
        approvals_value = fields.get("approvals")
        if decision == "require" and approvals_value is None:
            raise fields.key("decision").error(
                "a require rule needs `approvals` (groups and count, or codeowners: true)"
            )
        if decision != "require" and approvals_value is not None:
            raise fields.key("approvals").error(f"approvals only apply to decision: require (this rule is {decision})")
        approvals = self.parse_approvals(approvals_value) if approvals_value is not None else None
        return Rule(
            name=name,
            decision=decision,
            when=when,
            stage=stage,
            risk=_optional(fields, "risk", lambda v: v.as_choice(RISKS), None),
            approvals=approvals,
            description=_optional(fields, "description", Value.as_str, ""),
            line=line,
        )

    def parse_approvals(self, value: Value, *, codeowners_allowed: bool = True) -> ApprovalSpec:
        known = ("groups", "count", "codeowners") if codeowners_allowed else ("groups", "count")
        fields = value.as_mapping(known=known)
        codeowners = _optional(fields, "codeowners", Value.as_bool, False)
        if codeowners and not self.codeowners_named:
            raise fields["codeowners"].error(
                "codeowners: true needs a CODEOWNERS file named at the top level (codeowners: CODEOWNERS)"
            )
        groups_value = fields.get("groups")
        if groups_value is None:
            if not codeowners:
                raise value.child(value.node, "groups").error("required key missing")
            if "count" in fields:
                raise fields["count"].error(
                    "count applies to groups; code owners give one approval per changed path"
                )
            return ApprovalSpec(codeowners=True)
        groups = self.group_refs(groups_value)
        count_value = fields.get("count")
        count = count_value.as_int(minimum=1) if count_value is not None else 1
        self.check_size(groups, count, count_value or groups_value)
        return ApprovalSpec(groups=groups, count=count, codeowners=codeowners)

    def parse_overrides(self, value: Value) -> OverridePolicy:
        fields = value.as_mapping(known=("groups", "max_hours"), required=("groups",))
        return OverridePolicy(
            groups=self.group_refs(fields["groups"]),
            max_hours=_optional(fields, "max_hours", lambda v: v.as_int(minimum=1), 72),
        )

    def group_refs(self, value: Value) -> tuple[str, ...]:
        """Group names that must exist (or be the built-in `anyone`)."""
        names: list[str] = []
        for item in _one_or_many(value):
            name = item.as_str(non_empty=True)
            if name != ANYONE and name not in self.groups:
                guess = closest(name, [*self.groups, ANYONE])
                hint = f"; did you mean {guess!r}?" if guess else ""
                defined = ", ".join(sorted(self.groups)) or "none"
                raise item.error(f"unknown group {name!r} (defined: {defined}{hint})")
            names.append(name)
        if not names:
            raise value.error("must name at least one group")
        return tuple(dict.fromkeys(names))

    def check_size(self, groups: tuple[str, ...], count: int, where: Value) -> None:
        """Warn when `count` approvals can never, or never for a member's change, be given."""
        if ANYONE in groups:
            return
        members = frozenset().union(*(self.groups[name] for name in groups))
        who = " and ".join(groups)
        if count > len(members):
            self.warnings.append(
                f"{where.path}:{where.line}: {where.key}: needs {_plural(count, 'approval')} but {who} "
                f"{'has' if len(groups) == 1 else 'have'} {_plural(len(members), 'member')}: "
                "it can never be met (only an override can pass it)"
            )
        elif self.separation_of_duties and count == len(members):
            self.warnings.append(
                f"{where.path}:{where.line}: {where.key}: needs {_plural(count, 'approval')} from {who}, "
                f"{_plural(len(members), 'member')}: a change authored by one of them can never be "
                "met under separation of duties"
            )


def _parse_decisions(value: Value) -> DecisionSigning:
    fields = value.as_mapping(known=("require_signature", "allowed_signers"))
    return DecisionSigning(
        require_signature=_optional(fields, "require_signature", Value.as_bool, False),
        allowed_signers=_optional(fields, "allowed_signers", lambda v: v.as_str(non_empty=True),
                                  DecisionSigning.allowed_signers),
    )


def _parse_groups(section: Value) -> dict[str, frozenset[str]]:
    groups: dict[str, frozenset[str]] = {}
    entries = section.as_mapping()
    for name, value in entries.items():
        if name == ANYONE:
            raise entries.key(name).error(f"{ANYONE!r} is built in (every user); choose another name")
        if not name.strip() or any(ch.isspace() for ch in name):
            raise entries.key(name).error("a group name must be non-empty and contain no spaces")
        members = [item.as_str(non_empty=True) for item in value.as_list()]
        groups[name] = frozenset(_identity(member) for member in members)
    return groups


def _everyone_in_groups(groups: Mapping[str, frozenset[str]]) -> ApprovalSpec:
    """The default's approvals when not written: anyone listed in any group, else anyone."""
    return ApprovalSpec(groups=tuple(sorted(groups)) or (ANYONE,), count=1)


def _parse_default(value: Value, context: _Context) -> DefaultDecision:
    fields = value.as_mapping(known=("decision", "approvals"))
    decision_value = fields.get("decision")
    decision: DefaultOutcome = (
        _DEFAULT_OUTCOMES[decision_value.as_choice(tuple(_DEFAULT_OUTCOMES))]
        if decision_value is not None else "require"
    )
    approvals_value = fields.get("approvals")
    if decision == "block" and approvals_value is not None:
        raise fields.key("approvals").error("approvals only apply to decision: require")
    approvals = (
        context.parse_approvals(approvals_value, codeowners_allowed=False)
        if approvals_value is not None else _everyone_in_groups(context.groups)
    )
    return DefaultDecision(decision=decision, approvals=approvals)


def _parse_when(value: Value, stage: RuleStage) -> Conditions:
    fields = value.as_mapping(known=_WHEN_KEYS)
    if not len(fields):
        raise value.error(
            "must name at least one condition (changes no rule matches get the `default`)"
        )
    if stage == "claim":
        for name in _WHEN_KEYS:
            if name in _POST_GATE_ONLY and name in fields:
                raise fields.key(name).error(
                    "is not known at claim time (there is no diff yet); use stage: post-gate or both"
                )
    lines = fields.get("lines_changed")
    lines_over, lines_under = _parse_lines_changed(lines) if lines is not None else (None, None)
    return Conditions(
        paths=_optional(fields, "paths", _parse_path_globs, None),
        regions=_optional(fields, "regions", _parse_region_globs, None),
        signature_changed=_optional(fields, "signature_changed", Value.as_bool, None),
        lines_over=lines_over,
        lines_under=lines_under,
        gates_failed=_optional(fields, "gates_failed", _names, None),
        gates_passed=_optional(fields, "gates_passed", _names, None),
        runtime=_optional(fields, "runtime", _names, None),
        labels=_optional(fields, "labels", _names, None),
    )


def _parse_lines_changed(value: Value) -> tuple[int | None, int | None]:
    fields = value.as_mapping(known=("over", "under"))
    if not len(fields):
        raise value.error("name `over: N` (more than N lines) and/or `under: N` (fewer than N)")
    over = _optional(fields, "over", lambda v: v.as_int(minimum=0), None)
    under = _optional(fields, "under", lambda v: v.as_int(minimum=1), None)
    if over is not None and under is not None and under - over < 2:
        raise fields["under"].error(f"no number of lines is over {over} and under {under}")
    return over, under


def _parse_path_globs(value: Value) -> PathGlobs:
    patterns: list[str] = []
    for item in _one_or_many(value):
        pattern = item.as_str(non_empty=True)
        problem = glob_problem(pattern)
        if problem:
            raise item.error(f"invalid glob {pattern!r}: {problem}")
        patterns.append(pattern)
    if not patterns:
        raise value.error("must list at least one glob")
    if all(pattern.startswith("!") for pattern in patterns):
        raise value.error("every glob is a negation (!), so no path can match")
    return PathGlobs.of(patterns)


def _parse_region_globs(value: Value) -> tuple[RegionGlob, ...]:
    globs: list[RegionGlob] = []
    for item in _one_or_many(value):
        pattern = item.as_str(non_empty=True)
        path, separator, qualname = pattern.partition("::")
        problem = glob_problem(path) if path else "no path before '::'"
        if "::" in qualname:
            problem = "'::' may appear once"
        elif separator and not qualname:
            problem = "nothing after '::'"
        elif "[" in qualname or "]" in qualname:
            problem = "use only * and ? after '::' (no [ ] classes)"
        elif path.startswith("!"):
            problem = "negation (!) is for `paths` only"
        if problem:
            raise item.error(f"invalid region glob {pattern!r}: {problem}")
        globs.append(RegionGlob.of(pattern))
    if not globs:
        raise value.error("must list at least one region glob")
    return tuple(globs)


def _names(value: Value) -> tuple[str, ...]:
    names = tuple(item.as_str(non_empty=True) for item in _one_or_many(value))
    if not names:
        raise value.error("must list at least one name")
    return names


def _parse_codeowners_file(value: Value, root: Path | None, warnings: list[str]) -> CodeOwners | None:
    relative = value.as_str(non_empty=True)
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise value.error(f"must be a path inside the repository, relative to its root (got {relative!r})")
    if root is None:
        warnings.append(f"{value.path}:{value.line}: codeowners: {relative} not read (no repository root given)")
        return None
    if not (root / relative).is_file():
        raise value.error(f"{relative}: file not found")
    return load_codeowners(root, relative)


def _unknown_owner_warnings(
    codeowners: CodeOwners, groups: Mapping[str, frozenset[str]], policy_path: str
) -> list[str]:
    warned: set[str] = set()
    warnings: list[str] = []
    for rule in codeowners.rules:
        for owner in rule.owners:
            if owner in warned or _is_email(owner) or _owner_group(owner, groups) is not None:
                continue
            warned.add(owner)
            warnings.append(
                f"{codeowners.path}:{rule.line}: owner {owner} is not a group in {policy_path}, "
                "so no one can approve as it"
            )
    return warnings


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
    for rule in policy.rules:
        if rule.stage not in ("both", facts.stage):
            continue
        match = _match(rule.when, facts, paths)
        if match is None:
            continue
        requirements: tuple[Requirement, ...] = ()
        if rule.decision == "require":
            assert rule.approvals is not None  # the parser insists on it
            scope = paths if match.scope is None else match.scope
            requirements, unowned = _requirements(policy, rule.name, rule.approvals, scope)
            if unowned:
                default_reasons.append(f"{rule.name} asks for code owners, and {_some(unowned)} "
                                       f"{'has' if len(unowned) == 1 else 'have'} none")
        elif rule.decision == "auto_approve":
            auto_rules.append(rule)
        applied.append(AppliedRule(rule.name, rule.decision, rule.risk, "; ".join(match.reasons), requirements))
    notes: list[str] = []
    if facts.stage == "post-gate":
        if not applied:
            default_reasons.append("no rule applies to this change")
        elif len(auto_rules) == len(applied):
            uncovered = [p for p in paths if not any(_covers(r.when, p, facts) for r in auto_rules)]
            if uncovered:
                default_reasons.append(f"no auto_approve rule covers {_some(uncovered)}")
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
    return Evaluation(facts.stage, outcome, risk, tuple(applied), requirements, tuple(notes))


def _match(when: Conditions, facts: ChangeFacts, paths: tuple[str, ...]) -> _Match | None:
    """The reasons every condition of `when` holds for `facts`, or None when one does not."""
    if facts.stage == "claim" and _needs_diff(when):
        return None
    reasons: list[str] = []
    scope: set[str] | None = None
    if when.paths is not None:
        matched = when.paths.matching(paths)
        if not matched:
            return None
        reasons.append(f"paths {_some(when.paths.patterns)} matched {_some(matched)}")
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
                  if result != "passed" and _any_glob(name, when.gates_failed)]
        if not failed:
            return None
        reasons.append("gates did not pass: " + ", ".join(f"{n} {facts.gates[n]}" for n in failed))
    if when.gates_passed is not None:
        for wanted in when.gates_passed:
            results = [result for name, result in facts.gates.items() if fnmatch.fnmatchcase(name, wanted)]
            if not results or any(result != "passed" for result in results):
                return None
        reasons.append(f"gates passed: {', '.join(when.gates_passed)}")
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


def _needs_diff(when: Conditions) -> bool:
    return (
        when.signature_changed is not None or when.lines_over is not None
        or when.lines_under is not None or when.gates_failed is not None or when.gates_passed is not None
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
    text = f"{min(len(counted), req.count)} of {_plural(req.count, 'approval')} from {req.source()}"
    if counted:
        text += f" ({', '.join(counted)})"
    if separation_of_duties and author_key in approvers and req.admits(author_key or ""):
        text += "; the author's own approval does not count (separation of duties)"
    return met, text


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


# -- `loomtui policy test` fixtures ------------------------------------------------------


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
    "author",
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
            outcome=DECISIONS[expect["outcome"].as_choice(tuple(DECISIONS))],
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
            gates[name] = result.as_choice(tuple(_GATE_RESULTS))
    return ChangeFacts(
        stage=_optional(fields, "stage", lambda v: _STAGES[v.as_choice(tuple(_STAGES))], "post-gate"),
        paths=_optional(fields, "paths", _identities, ()),
        regions=_optional(fields, "regions", _identities, ()),
        signature_changed=_optional(fields, "signature_changed", _identities, ()),
        lines_changed=_optional(fields, "lines_changed", lambda v: v.as_int(minimum=0), 0),
        gates=gates,
        runtime=_optional(fields, "runtime", lambda v: v.as_str(non_empty=True), None),
        labels=_optional(fields, "labels", _identities, ()),
        author=_optional(fields, "author", lambda v: v.as_str(non_empty=True), None),
    )


def _identities(value: Value) -> tuple[str, ...]:
    return tuple(item.as_str(non_empty=True) for item in _one_or_many(value))


# -- small helpers -----------------------------------------------------------------------


def _optional(fields: Fields, name: str, read: Callable[[Value], _T], default: _T) -> _T:
    value = fields.get(name)
    return default if value is None else read(value)


def _one_or_many(value: Value) -> list[Value]:
    """A list's items, or a lone string as a one-item list (`runtime: claude`)."""
    return [value] if isinstance(value.node, ScalarNode) and not value.is_null() else value.as_list()


def _identity(user: str) -> str:
    return user.strip().casefold()


def _region_path(region_id: str) -> str:
    return region_id.partition("::")[0]


def _is_email(owner: str) -> bool:
    return not owner.startswith("@") and "@" in owner


def _owner_group(owner: str, groups: Mapping[str, frozenset[str]]) -> str | None:
    """The policy group a CODEOWNERS owner stands for: `@name`, or `@org/team` as `org/team` or `team`."""
    if not owner.startswith("@"):
        return None
    name = owner[1:]
    if name in groups:
        return name
    team = name.rpartition("/")[2]
    return team if "/" in name and team in groups else None


def _owner_members(owner: str, groups: Mapping[str, frozenset[str]]) -> frozenset[str]:
    if _is_email(owner):
        return frozenset({_identity(owner)})
    group = _owner_group(owner, groups)
    return groups[group] if group is not None else frozenset()


def _any_glob(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


def _glob_matches_some_extension(pattern: str, prefix: str) -> bool:
    """Whether some string starting with `prefix` matches the glob (only `*` and `?`).

    Any such string splits the pattern into a head matching exactly `prefix` and a
    tail matching the rest, and a tail of `*`, `?` and literals can always be
    matched by something; so it is enough to try every head.
    """
    return any(fnmatch.fnmatchcase(prefix, pattern[:cut]) for cut in range(len(pattern) + 1))


def _some(items: Sequence[str]) -> str:
    """`a, b, c` or `a, b, c and 4 more`: explanations stay one readable line."""
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown if len(items) <= _LIST_LIMIT else f"{shown} and {len(items) - _LIST_LIMIT} more"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _describe_default(policy: Policy) -> str:
    default = policy.default
    if default.decision == "block":
        return "block"
    spec = default.approvals
    return f"{_plural(spec.count, 'approval')} from {' or '.join(spec.groups)}"
