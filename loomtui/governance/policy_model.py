"""The policy model: the facts about a change, a validated policy, the results of evaluating it,
their constants, and the small helpers they share (identities, owners, wording)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

import pathspec

from loomtui.errors import plural
from loomtui.globs import glob_spec
from loomtui.governance.codeowners import CodeOwners

POLICY_PATH: Final = ".loom/policy.yaml"
"""Where the policy lives by default, relative to the repository root."""

ANYONE: Final = "anyone"
"""The built-in group every user belongs to (a reserved name in `groups`)."""

Decision = Literal["auto_approve", "require", "block"]
Stage = Literal["claim", "post-gate"]
RuleStage = Literal["claim", "post-gate", "both"]
DefaultOutcome = Literal["require", "block"]
GateResult = Literal["passed", "failed", "error"]

# Each Literal's members, for `Value.as_choice` (which returns the member, keeping its type).
DECISIONS: Final[tuple[Decision, ...]] = get_args(Decision)
_RULE_STAGES: Final[tuple[RuleStage, ...]] = get_args(RuleStage)
_STAGES: Final[tuple[Stage, ...]] = get_args(Stage)
_DEFAULT_OUTCOMES: Final[tuple[DefaultOutcome, ...]] = get_args(DefaultOutcome)
_GATE_RESULTS: Final[tuple[GateResult, ...]] = get_args(GateResult)
RISKS: Final = ("low", "medium", "high", "critical")
"""Rule risk levels, lowest first. An evaluation no rule gave a risk is "normal"."""
NORMAL_RISK: Final = "normal"
DEFAULT_RULE: Final = "default"
"""The name the policy's default decision appears under in an evaluation."""
MERGE_AUTO: Final = "auto"
MERGE_MANUAL: Final = "manual"
MERGE_MODES: Final = (MERGE_MANUAL, MERGE_AUTO)
_LIST_LIMIT: Final = 3


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
    advisory_gates: frozenset[str] = frozenset()
    """Gates configured `blocking: false`: a glob in `gates_failed` (`*`) does not match them, their name does
    (shown, never failing gate 1: the starter's "red gates block" blocked a change on a lint's advice)."""
    runtime: str | None = None
    labels: tuple[str, ...] = ()
    author: str | None = None
    eval_score: int | None = None
    """Gate 2's score (None: no eval ran)."""
    eval_items: Mapping[str, str] = field(default_factory=dict)
    """Gate 2's item statuses: pass, warn or fail."""
    regressions: tuple[str, ...] = ()
    """Tests gate 1 found broken by the change (PASS_TO_FAIL, or added and failing)."""
    merged_breaks: tuple[str, ...] = ()
    """Other pending sandboxes this change breaks something together with (the merged gate)."""
    unusual: tuple[str, ...] = ()
    """What the change holds that no path rule reads (`governance.unusual`): a link and its target, a
    submodule, a file made executable, Python in an encoding a diff does not show."""

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
    folded: pathspec.GitIgnoreSpec
    """The same globs in lower case, for matching paths in lower case."""

    @classmethod
    def of(cls, patterns: Sequence[str]) -> PathGlobs:
        """Compile already validated patterns."""
        return cls(tuple(patterns), glob_spec(patterns), glob_spec(p.lower() for p in patterns))

    def matching(self, paths: Iterable[str], any_case: bool = False) -> tuple[str, ...]:
        """The paths these globs match, in the order given; with `any_case`, whatever their letter case."""
        if any_case:
            return tuple(path for path in paths if self.spec.match_file(path) or self.folded.match_file(path.lower()))
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
        return cls(pattern, glob_spec([path]), qualname if separator else None)

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
    eval_score_over: int | None = None
    eval_score_under: int | None = None
    eval_items: Mapping[str, str] | None = None
    """Item -> the least bad status that matches (warn matches warn and fail)."""
    regressions: bool | None = None
    merged_breaks: bool | None = None

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


MAX_OVERRIDE_HOURS: Final = 365 * 24
"""The longest an override may hold (a year), the policy's `max_hours` as a lead's `--hours`: a policy's
320-digit `max_hours` ended `escalation override` in an internal error, 10^11 made one for 11 million years."""


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
            plural(len(self.rules), "rule"),
            plural(len(self.groups), "group"),
            f"default: {_describe_default(self)}",
            f"separation of duties {'on' if self.separation_of_duties else 'off'}",
        ]
        if self.codeowners is not None:
            parts.append(f"{self.codeowners.path} ({plural(len(self.codeowners.rules), 'pattern')})")
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
        return f"{plural(self.count, 'approval')} from {self.source()}"


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
    separation_of_duties: bool = True
    """The policy's: whether the author's own approval is left out of `requirements`' counts."""

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


# -- small helpers -----------------------------------------------------------------------


def _identity(user: str) -> str:
    return user.strip().casefold()


def same_person(one: str | None, other: str | None) -> bool:
    """Whether two identities name one person (`Mia@Example.com` is `mia@example.com`), as the groups
    and the approvals' count compare them."""
    return bool(one and other) and _identity(one or "") == _identity(other or "")


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


def _describe_default(policy: Policy) -> str:
    default = policy.default
    if default.decision == "block":
        return "block"
    spec = default.approvals
    return f"{plural(spec.count, 'approval')} from {' or '.join(spec.groups)}"
