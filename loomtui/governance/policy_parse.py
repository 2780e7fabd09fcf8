"""Reading and validating `.loom/policy.yaml` into a `Policy`; errors and warnings name `file:line`.

Every problem in the file is collected, not only the first one met: the parser
reads sections in its own order (groups before rules, a rule's decision before
its conditions), so stopping at the first would name a later line than the
user's first mistake. They are raised together, in line order (`PolicyErrors`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final, TypeVar

from yaml.nodes import ScalarNode

from loomtui.errors import ConfigError, plural
from loomtui.globs import checked_globs, glob_problem
from loomtui.governance.codeowners import CodeOwners, load_codeowners
from loomtui.governance.policy_model import (
    _DEFAULT_OUTCOMES,
    _RULE_STAGES,
    ANYONE,
    DECISIONS,
    DEFAULT_RULE,
    MAX_OVERRIDE_HOURS,
    MERGE_MANUAL,
    MERGE_MODES,
    POLICY_PATH,
    RISKS,
    ApprovalSpec,
    Conditions,
    DecisionSigning,
    DefaultDecision,
    DefaultOutcome,
    OverridePolicy,
    PathGlobs,
    Policy,
    RegionGlob,
    Rule,
    RuleStage,
    _identity,
    _is_email,
    _owner_group,
)
from loomtui.yamlcheck import ConfigErrors, Fields, Problems, Value, check_version, closest, compose, present, read_text

PolicyErrors = ConfigErrors
"""Several problems in one policy file, each with its line (`policy validate` lists them)."""

if TYPE_CHECKING:
    from loomtui.config import LoomConfig

__all__ = ["PolicyErrors", "default_policy", "load_policy", "parse_policy", "read_policy_file"]

_TOP_KEYS: Final = (
    "version", "groups", "codeowners", "separation_of_duties", "default", "overrides", "rules",
    "decisions", "merge",
)
_RULE_KEYS: Final = ("name", "description", "stage", "when", "risk", "decision", "approvals")
_WHEN_KEYS: Final = (
    "paths", "regions", "signature_changed", "lines_changed", "gates_failed", "gates_passed",
    "runtime", "labels", "eval_score", "eval_items", "regressions", "merged_breaks",
)
# Facts that exist only once there is a diff and gate results.
_POST_GATE_ONLY: Final = frozenset({"signature_changed", "lines_changed", "gates_failed", "gates_passed",
                                    "eval_score", "eval_items", "regressions", "merged_breaks"})
_ITEM_STATUSES: Final = ("warn", "fail")

_T = TypeVar("_T")


# -- loading -----------------------------------------------------------------------------


def default_policy(source: str | None = None) -> Policy:
    """The policy used when there is no file: every change needs one approval from anyone."""
    return Policy(source=source)


def load_policy(root: Path, relative: str = POLICY_PATH, *, named: bool = False) -> Policy:
    """Read `root/relative`; the built-in default when the usual file does not exist.

    A path named on purpose (`policy:` in loom.yaml, `named`) that does not exist is an
    error, the usual path included: a typo or a deleted file must not quietly drop
    every rule. Raises ConfigError.
    """
    target = root / relative
    if not present(target):
        if named or relative != POLICY_PATH:
            raise ConfigError(relative, None, "the policy file named by `policy:` in .loom/loom.yaml "
                                              "does not exist")
        committed = _committed_on(root, relative)
        if committed is not None:
            # Deleted, not committed (or a branch from before the team adopted loomtui checked out): the default,
            # one approval from anyone, judged a change the committed policy gives to two people.
            raise ConfigError(relative, None, f"the policy file is missing from this checkout but committed on "
                                              f"{committed}, so nothing is judged until it is back (never by the "
                                              f"built-in default): `git checkout {committed} -- {relative}`, or "
                                              "commit its deletion to the main branch")
        return default_policy()
    return read_policy_file(target, relative, root)


def _committed_on(root: Path, relative: str) -> str | None:
    """HEAD, or the main branch, where the checkout at `root` holds `relative` committed; None where neither
    does. Asked of the checkout itself: in a sandbox's git hook, HEAD was the agent's branch."""
    from loomtui.gitcmd import THE_CHECKOUT_ITSELF, Git

    git = Git(root)
    for rev in ("HEAD", "main", "master"):
        if git.run("cat-file", "-e", f"{rev}:{relative}", env=THE_CHECKOUT_ITSELF).status == 0:
            return rev
    return None


def configured_policy(root: Path, config: LoomConfig) -> Policy:
    """The policy `config` (the repository's loom.yaml at `root`) names."""
    return load_policy(root, config.policy, named=config.policy_named)


def read_policy_file(file: Path, shown: str, root: Path | None) -> Policy:
    """Read and validate one policy file; errors name it as `shown`."""
    text = read_text(file, shown)
    return parse_policy(text, shown, root)


def parse_policy(text: str, path: str, root: Path | None = None) -> Policy:
    """Validate policy `text` (`path` names it in errors); `root` is where CODEOWNERS is read from."""
    document = compose(text, path)
    if document is None or document.is_null():
        # An emptied file must not quietly drop every rule (its blocks among them) for the default.
        raise ConfigError(path, 1, "the policy is empty: give at least `version: 1` and its rules (with no policy "
                                   "file at all, every change needs one approval)")
    problems = Problems()
    top = problems.mapping(document, _TOP_KEYS)
    version = top.get("version")
    if version is not None:
        problems.read(lambda: check_version(version), None)
    warnings: list[str] = []
    no_groups: dict[str, frozenset[str]] = {}
    before = len(problems.errors)
    groups = problems.optional(top, "groups", lambda v: _parse_groups(v, problems), no_groups)
    # Unreadable groups: references to them are not checked (each would be a second, false error).
    groups_known = len(problems.errors) == before
    separation = problems.optional(top, "separation_of_duties", Value.as_bool, True)
    codeowners = problems.optional(
        top, "codeowners", lambda v: _parse_codeowners_file(v, root, warnings), None
    )
    codeowners_named = "codeowners" in top
    context = _Context(groups, separation, codeowners_named, warnings, problems, groups_known)
    default_section = top.get("default")
    default = DefaultDecision(approvals=_everyone_in_groups(groups))
    if default_section is not None and not default_section.is_null():
        default = problems.read(lambda: _parse_default(default_section, context), default)
    overrides = problems.optional(top, "overrides", context.parse_overrides, OverridePolicy())
    no_rules: tuple[Rule, ...] = ()
    rules = problems.optional(top, "rules", context.parse_rules, no_rules)
    decisions = problems.optional(top, "decisions", lambda v: _parse_decisions(v, root), DecisionSigning())
    merge = problems.optional(top, "merge", lambda v: v.as_choice(MERGE_MODES), MERGE_MANUAL)
    problems.raise_any()
    if codeowners is not None:
        warnings.extend(_unknown_owner_warnings(codeowners, groups, path))
    warnings.extend(_same_rule_warnings(rules, path))
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
    problems: Problems
    groups_known: bool = True

    def parse_rules(self, section: Value) -> tuple[Rule, ...]:
        rules: list[Rule] = []
        first_line: dict[str, int] = {}
        for item in section.as_list():
            rule = self.problems.read(partial(self.parse_rule, item, first_line), None)
            if rule is not None:
                rules.append(rule)
        return tuple(rules)

    def parse_rule(self, item: Value, first_line: dict[str, int]) -> Rule | None:
        """One rule, or None when it has errors (each kept, the rest of the rule still read)."""
        problems = self.problems
        before = len(problems.errors)
        fields = problems.mapping(item, _RULE_KEYS, required=("name", "decision", "when"))
        name = problems.optional(fields, "name", lambda v: self.rule_name(v, item.line, first_line), "")
        decision = problems.optional(fields, "decision", lambda v: v.as_choice(DECISIONS), None)
        both: RuleStage = "both"
        stage = problems.optional(fields, "stage", lambda v: v.as_choice(_RULE_STAGES), both)
        when = problems.optional(fields, "when", lambda v: _parse_when(v, stage, problems), None)
        approvals_value = fields.get("approvals")
        if decision == "require" and approvals_value is None:
            problems.errors.append(fields.key("decision").error(
                "a require rule needs `approvals` (groups and count, or codeowners: true)"
            ))
        if decision is not None and decision != "require" and approvals_value is not None:
            problems.errors.append(fields.key("approvals").error(
                f"approvals only apply to decision: require (this rule is {decision})"
            ))
        # A rule that may not have approvals is not checked further for them (one error is enough).
        approvals = (
            problems.optional(fields, "approvals", self.parse_approvals, None)
            if decision in ("require", None) else None
        )
        risk = problems.optional(fields, "risk", lambda v: v.as_choice(RISKS), None)
        description = problems.optional(fields, "description", Value.as_str, "")
        if len(problems.errors) > before or decision is None or when is None:
            return None
        return Rule(
            name=name,
            decision=decision,
            when=when,
            stage=stage,
            risk=risk,
            approvals=approvals if decision == "require" else None,
            description=description,
            line=item.line,
        )

    def rule_name(self, value: Value, line: int, first_line: dict[str, int]) -> str:
        name = value.as_str(non_empty=True).strip()
        if name == DEFAULT_RULE:
            raise value.error(f"{DEFAULT_RULE!r} is reserved for the policy's default decision")
        if name in first_line:
            raise value.error(f"duplicate rule name {name!r} (first defined on line {first_line[name]})")
        first_line[name] = line
        return name

    def parse_approvals(self, value: Value, *, codeowners_allowed: bool = True) -> ApprovalSpec:
        known = ("groups", "count", "codeowners") if codeowners_allowed else ("groups", "count")
        fields = self.problems.mapping(value, known)
        codeowners = self.problems.optional(fields, "codeowners", Value.as_bool, False)
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
        fields = self.problems.mapping(value, ("groups", "max_hours"), required=("groups",))
        return OverridePolicy(
            groups=self.problems.optional(fields, "groups", self.group_refs, ()),
            max_hours=self.problems.optional(fields, "max_hours",
                                             lambda v: v.as_int(minimum=1, maximum=MAX_OVERRIDE_HOURS), 72),
        )

    def group_refs(self, value: Value) -> tuple[str, ...]:
        """Group names that must exist (or be the built-in `anyone`)."""
        names: list[str] = []
        for item in _one_or_many(value):
            name = item.as_str(non_empty=True)
            if name != ANYONE and name not in self.groups and self.groups_known:
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
        if ANYONE in groups or not all(name in self.groups for name in groups):
            return
        members = frozenset().union(*(self.groups[name] for name in groups))
        who = " and ".join(groups)
        if count > len(members):
            self.warnings.append(
                f"{where.path}:{where.line}: {where.key}: needs {plural(count, 'approval')} but {who} "
                f"{'has' if len(groups) == 1 else 'have'} {plural(len(members), 'member')}: "
                "it can never be met (only an override can pass it)"
            )
        elif self.separation_of_duties and count == len(members):
            self.warnings.append(
                f"{where.path}:{where.line}: {where.key}: needs {plural(count, 'approval')} from {who}, "
                f"{plural(len(members), 'member')}: a change authored by one of them can never be "
                "met under separation of duties"
            )


def _parse_decisions(value: Value, root: Path | None) -> DecisionSigning:
    """`decisions:`; its allowed_signers file read once here, so a missing or unreadable one is said at
    its line (it passed, and then every decision was refused, or every signature unlisted)."""
    fields = value.as_mapping(known=("require_signature", "allowed_signers"))
    required = _optional(fields, "require_signature", Value.as_bool, False)
    named = fields.get("allowed_signers")
    relative = named.as_str(non_empty=True) if named is not None else DecisionSigning.allowed_signers
    where = named or fields.get("require_signature") or value
    _check_inside_repository(where, relative)
    if root is not None and (required or named is not None):
        problem = _allowed_signers_problem(root / relative)
        if problem:
            raise where.error(f"{relative}: {problem}" + ("; every decision would be refused (require_signature)"
                                                          if required else ""))
    return DecisionSigning(require_signature=required, allowed_signers=relative)


_KEY_TYPES: Final = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")
MAX_ALLOWED_SIGNERS_BYTES: Final = 1024 * 1024


def _allowed_signers_problem(path: Path) -> str | None:
    """What makes an ssh allowed_signers file unusable (missing, unreadable, a line with no key), or None."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ALLOWED_SIGNERS_BYTES + 1)
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if len(data) > MAX_ALLOWED_SIGNERS_BYTES:
        return f"over {MAX_ALLOWED_SIGNERS_BYTES // 1024} KiB: not an allowed_signers file"
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        typed = [at for at, word in enumerate(words[1:], start=1) if word.startswith(_KEY_TYPES)]
        if not typed or typed[0] + 1 >= len(words):
            return f"line {number}: not an allowed_signers line (who, then a key type and the key)"
    return None


def _parse_groups(section: Value, problems: Problems) -> dict[str, frozenset[str]]:
    groups: dict[str, frozenset[str]] = {}
    entries = section.as_mapping()
    for name, value in entries.items():
        if name == ANYONE:
            problems.errors.append(
                entries.key(name).error(f"{ANYONE!r} is built in (every user); choose another name")
            )
        elif not name.strip() or any(ch.isspace() for ch in name):
            problems.errors.append(entries.key(name).error("a group name must be non-empty and contain no spaces"))
        no_members: list[Value] = []
        members = problems.read(value.as_list, no_members)
        names = [problems.read(partial(item.as_str, non_empty=True), "") for item in members]
        groups[name] = frozenset(_identity(member) for member in names if member)
    return groups


def _everyone_in_groups(groups: Mapping[str, frozenset[str]]) -> ApprovalSpec:
    """The default's approvals when not written: anyone listed in any group, else anyone."""
    return ApprovalSpec(groups=tuple(sorted(groups)) or (ANYONE,), count=1)


def _parse_default(value: Value, context: _Context) -> DefaultDecision:
    problems = context.problems
    fields = problems.mapping(value, ("decision", "approvals"))
    require: DefaultOutcome = "require"
    decision = problems.optional(fields, "decision", lambda v: v.as_choice(_DEFAULT_OUTCOMES), require)
    approvals = _everyone_in_groups(context.groups)
    if decision == "block" and "approvals" in fields:
        problems.errors.append(fields.key("approvals").error("approvals only apply to decision: require"))
    else:
        approvals = problems.optional(
            fields, "approvals", partial(context.parse_approvals, codeowners_allowed=False), approvals
        )
    return DefaultDecision(decision=decision, approvals=approvals)


def _parse_when(value: Value, stage: RuleStage, problems: Problems) -> Conditions:
    before = len(problems.errors)
    fields = problems.mapping(value, _WHEN_KEYS)
    if not len(fields) and len(problems.errors) == before:
        raise value.error(
            "must name at least one condition (changes no rule matches get the `default`)"
        )
    if stage == "claim":
        for name in _WHEN_KEYS:
            if name in _POST_GATE_ONLY and name in fields:
                problems.errors.append(fields.key(name).error(
                    "is not known at claim time (there is no diff yet); use stage: post-gate or both"
                ))
    no_bounds: tuple[int | None, int | None] = (None, None)
    lines_over, lines_under = problems.optional(fields, "lines_changed", _parse_lines_changed, no_bounds)
    score_over, score_under = problems.optional(
        fields, "eval_score", lambda v: _parse_bounds(v, "points", 100), no_bounds
    )
    return Conditions(
        paths=problems.optional(fields, "paths", _parse_path_globs, None),
        regions=problems.optional(fields, "regions", _parse_region_globs, None),
        signature_changed=problems.optional(fields, "signature_changed", Value.as_bool, None),
        lines_over=lines_over,
        lines_under=lines_under,
        gates_failed=problems.optional(fields, "gates_failed", _names, None),
        gates_passed=problems.optional(fields, "gates_passed", _names, None),
        runtime=problems.optional(fields, "runtime", _names, None),
        labels=problems.optional(fields, "labels", _names, None),
        eval_score_over=score_over,
        eval_score_under=score_under,
        eval_items=problems.optional(fields, "eval_items", _parse_eval_items, None),
        regressions=problems.optional(fields, "regressions", Value.as_bool, None),
        merged_breaks=problems.optional(fields, "merged_breaks", Value.as_bool, None),
    )


def _parse_lines_changed(value: Value) -> tuple[int | None, int | None]:
    return _parse_bounds(value, "lines", None)


def _parse_bounds(value: Value, unit: str, maximum: int | None) -> tuple[int | None, int | None]:
    fields = value.as_mapping(known=("over", "under"))
    if not len(fields):
        raise value.error(f"name `over: N` (more than N {unit}) and/or `under: N` (fewer than N)")
    over = _optional(fields, "over", lambda v: v.as_int(minimum=0, maximum=maximum), None)
    under = _optional(fields, "under", lambda v: v.as_int(minimum=1, maximum=maximum), None)
    if over is not None and under is not None and under - over < 2:
        raise fields["under"].error(f"no number of {unit} is over {over} and under {under}")
    return over, under


def _parse_eval_items(value: Value) -> dict[str, str]:
    """`eval_items: {scope: fail, tests: warn}`: gate 2 items at least that bad (warn matches a fail too)."""
    from loomtui.config import EVAL_ITEMS

    entries = value.as_mapping()
    if not len(entries):
        raise value.error(f"name at least one gate 2 item ({', '.join(EVAL_ITEMS)}) and warn or fail")
    items: dict[str, str] = {}
    for name, status in entries.items():
        if name not in EVAL_ITEMS:
            guess = closest(name, EVAL_ITEMS)
            hint = f" (did you mean {guess}?)" if guess else f" (items: {', '.join(EVAL_ITEMS)})"
            raise entries.key(name).error(f"unknown gate 2 item {name!r}{hint}")
        items[name] = status.as_choice(_ITEM_STATUSES)
    return items


def _parse_path_globs(value: Value) -> PathGlobs:
    patterns = checked_globs(value, _one_or_many(value))
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


def _check_inside_repository(where: Value, relative: str) -> None:
    """A file the policy names must be the repository's own (`codeowners`, `allowed_signers`)."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise where.error(f"must be a path inside the repository, relative to its root (got {relative!r})")


def _parse_codeowners_file(value: Value, root: Path | None, warnings: list[str]) -> CodeOwners | None:
    relative = value.as_str(non_empty=True)
    _check_inside_repository(value, relative)
    if root is None:
        warnings.append(f"{value.path}:{value.line}: codeowners: {relative} not read (no repository root given)")
        return None
    if not (root / relative).is_file():
        raise value.error(f"{relative}: file not found")
    return load_codeowners(root, relative)


def _same_rule_warnings(rules: Sequence[Rule], path: str) -> list[str]:
    """One rule written twice under two names (a copy left after an edit): each fires, and a change is
    explained by both, as if two things held it."""
    first: dict[str, Rule] = {}
    warnings: list[str] = []
    for rule in rules:
        # Compared as written: its fields' reprs (its conditions hold lists, which do not hash).
        earlier = first.setdefault(repr((rule.decision, rule.when, rule.stage, rule.risk, rule.approvals)), rule)
        if earlier is not rule:
            warnings.append(f"{path}:{rule.line}: rules: {rule.name} is {earlier.name} (line {earlier.line}) "
                            "again under another name: keep one")
    return warnings


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


# -- small helpers -----------------------------------------------------------------------


def _optional(fields: Fields, name: str, read: Callable[[Value], _T], default: _T) -> _T:
    value = fields.get(name)
    return default if value is None else read(value)


def _one_or_many(value: Value) -> list[Value]:
    """A list's items, or a lone string as a one-item list (`runtime: claude`)."""
    return [value] if isinstance(value.node, ScalarNode) and not value.is_null() else value.as_list()
