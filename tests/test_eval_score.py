"""Gate 2's behavioural score (loomtui.guardrails.score): each item's rule, the total, and the inputs
gathered from a real repository's commits."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from loomtui.config import EVAL_ITEMS, EvalConfig
from loomtui.execution.sandboxes import plan_sandbox
from loomtui.guardrails import classify
from loomtui.guardrails.reports import Outcome
from loomtui.guardrails.score import (
    ItemStatus,
    Reach,
    Score,
    ScoreInputs,
    SignatureChange,
    gather_inputs,
    score,
)
from loomtui.knowledge.rules import Finding
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import git

CONFIG = EvalConfig()
INVOICES = "payments/invoices.py"
TOTAL = f"{INVOICES}::InvoiceCalculator.total"

# A change every item passes: one claimed method, reached by a test, fitting its task.
CLEAN = ScoreInputs(
    task="Fix invoice totals",
    changed_regions=(TOTAL,),
    changed_paths=(INVOICES,),
    lines_changed=12,
    lines_by_path=((INVOICES, 12),),
    claimed=(f"{INVOICES}::InvoiceCalculator",),
    tests=classify.Classification(tests=()),
    tests_reaching=Reach(reached=(TOTAL,)),
    suggested_regions=(TOTAL,),
)


def item(inputs: ScoreInputs, name: str, config: EvalConfig = CONFIG) -> tuple[ItemStatus, str, tuple[str, ...]]:
    found = score(inputs, config).item(name)
    return found.status, found.headline, found.evidence


def case(test_id: str, cls: classify.TestClass, before: Outcome | None, after: Outcome | None, *,
         message: str = "", newly_skipped: bool = False) -> classify.ClassifiedTest:
    return classify.ClassifiedTest(id=test_id, cls=cls, before=before, after=after, flaky=False, message=message,
                                   newly_skipped=newly_skipped)


def with_tests(*tests: classify.ClassifiedTest) -> ScoreInputs:
    return replace(CLEAN, tests=classify.Classification(tests=tests))


# -- the total --------------------------------------------------------------------------------


def test_a_clean_change_scores_100_with_every_item_in_order() -> None:
    result = score(CLEAN, CONFIG)
    assert (result.total, result.passed, result.summary()) == (100, True, "100 (all pass)")
    assert [i.name for i in result.items] == list(EVAL_ITEMS)
    assert all(i.points == i.weight for i in result.items)


def test_the_total_scales_earned_points_to_100_and_a_warn_earns_half() -> None:
    bloated = replace(CLEAN, lines_changed=500, changed_regions=(TOTAL, "api/app.py::main", "api/app.py::serve"))
    result = score(bloated, CONFIG)
    assert result.item("size").points == 5.0 and result.item("scope").points == 0.0
    assert result.total == 100 - 20 - 5 - 5  # scope fails, size and task_fit warn
    assert result.summary() == "70 (scope fail, size warn, task_fit warn)" and result.passed
    weights = EvalConfig(weights=(("scope", 50), ("tests", 0), ("size", 50), ("contracts", 0),
                                  ("conventions", 0), ("task_fit", 0)), pass_score=80)
    weighted = score(bloated, weights)
    assert (weighted.total, weighted.passed) == (25, False)  # (0 + 25) of 100 points


def test_a_score_round_trips_through_its_dict() -> None:
    result = score(replace(CLEAN, lines_changed=900), CONFIG)
    assert Score.from_dict(result.as_dict()) == result
    assert result.as_dict()["items"][2] == {"name": "size", "status": "fail", "points": 0.0, "weight": 10,
                                            "headline": "900 lines changed (budget 400)",
                                            "evidence": ["payments/invoices.py: 12 lines"]}
    with pytest.raises(KeyError):
        result.item("speed")


# -- scope ------------------------------------------------------------------------------------


def test_scope_passes_inside_a_claimed_class_or_file() -> None:
    inputs = replace(CLEAN, changed_regions=(TOTAL, "payments/tax.py::apply_tax"),
                     claimed=(f"{INVOICES}::InvoiceCalculator", "payments/tax.py"))
    assert item(inputs, "scope")[0] == ItemStatus.PASS


def test_scope_warns_for_tests_docs_and_module_lines_of_a_claimed_file() -> None:
    for extra in ("tests/test_invoices.py::test_total", "docs/runbook.md", INVOICES):
        status, _, evidence = item(replace(CLEAN, changed_regions=(TOTAL, extra)), "scope")
        assert status == ItemStatus.WARN and evidence[0].startswith(extra), extra


def test_scope_fails_listing_each_code_region_outside_the_claims() -> None:
    inputs = replace(CLEAN, changed_regions=(TOTAL, "api/handlers.py::get_balance", "payments/tax.py"))
    status, headline, evidence = item(inputs, "scope")
    assert status == ItemStatus.FAIL and headline == "2 regions changed outside the claims"
    assert evidence == ("api/handlers.py::get_balance: code outside the claims",
                        "payments/tax.py: code outside the claims")
    assert "holds no claims" in item(replace(inputs, claimed=()), "scope")[1]


def test_scope_does_not_judge_paths_coordination_excludes() -> None:
    inputs = replace(CLEAN, changed_regions=(TOTAL, "vendor/lib.py::f"), uncoordinated=("vendor/lib.py",))
    status, headline, evidence = item(inputs, "scope")
    assert status == ItemStatus.PASS and evidence == ("vendor/lib.py::f: not coordinated (coordination excludes it)",)
    assert headline == "1 changed region inside the claims, 1 not coordinated"
    # Every change excluded, no claim held: not "all inside the claims".
    alone = replace(inputs, changed_regions=("vendor/lib.py::f", "vendor/lib.py::g"), claimed=())
    assert item(alone, "scope")[:2] == (ItemStatus.PASS, "2 changed regions, none coordinated (excluded)")


# -- tests ------------------------------------------------------------------------------------


def test_tests_fail_for_a_removed_test_in_the_results_or_the_diff() -> None:
    removed = with_tests(case("tests/test_invoices.py::test_total[1]", classify.TestClass.REMOVED,
                              Outcome.passed, None))
    assert item(removed, "tests")[:2] == (ItemStatus.FAIL, "1 test removed, skipped or regressed")
    assert item(removed, "tests")[2] == ("tests/test_invoices.py::test_total: removed",)
    # Without per-test results the diff still shows a test function deleted.
    diff = replace(CLEAN, tests=None, removed_regions=("tests/test_refunds.py::TestRefund.test_window",
                                                       "tests/test_refunds.py::helper"))
    status, headline, evidence = item(diff, "tests")
    assert status == ItemStatus.FAIL and "no junit gate ran" in headline
    assert evidence == ("tests/test_refunds.py::TestRefund::test_window: removed",)


def test_tests_warn_that_no_test_ran_when_collection_failed_here_and_on_the_base() -> None:
    """It read "no test removed, skipped or regressed" of a run in which pytest stopped at collection."""
    stopped = with_tests(case("tests/test_b.py", classify.TestClass.FAIL_TO_FAIL, Outcome.error, Outcome.error,
                              message="ModuleNotFoundError: No module named 'zz'"))
    assert item(stopped, "tests") == (ItemStatus.WARN, "no test ran (1 file failed collection)", (
        "tests/test_b.py: failed collection, here and on the base commit (ModuleNotFoundError: No module named 'zz')",))
    # A check that hangs on the base commit too passed "not judged": its tests unknown, said (gate 2 read 90).
    hung = replace(CLEAN, tests=None, not_judged=("tests (it times out on the base commit too (timed out))",))
    assert item(hung, "tests") == (ItemStatus.WARN, "1 check not judged", (
        "tests (it times out on the base commit too (timed out)): its tests not judged",))
    fixed = with_tests(case("tests/test_b.py", classify.TestClass.FAIL_TO_PASS, Outcome.error, Outcome.passed),
                       case("tests/test_b.py::test_b", classify.TestClass.ADDED, None, Outcome.passed))
    assert item(fixed, "tests")[0] == ItemStatus.PASS


def test_tests_fail_for_a_skip_without_a_reason_and_warn_with_one() -> None:
    silent = with_tests(case("tests/t.py::test_a", classify.TestClass.SKIPPED, Outcome.passed, Outcome.xfailed,
                             newly_skipped=True))
    assert item(silent, "tests")[0] == ItemStatus.FAIL
    assert item(silent, "tests")[2] == ("tests/t.py::test_a: newly xfailed without a reason",)
    explained = with_tests(case("tests/t.py::test_a", classify.TestClass.SKIPPED, Outcome.passed, Outcome.skipped,
                                message="needs network", newly_skipped=True))
    assert item(explained, "tests")[0] == ItemStatus.WARN
    assert item(explained, "tests")[2] == ("tests/t.py::test_a: newly skipped (needs network)",)


def test_tests_fail_for_a_regression_but_not_for_a_fixed_or_added_test() -> None:
    fine = with_tests(case("tests/t.py::test_a", classify.TestClass.FAIL_TO_PASS, Outcome.failed, Outcome.passed),
                      case("tests/t.py::test_b", classify.TestClass.ADDED, None, Outcome.passed))
    assert item(fine, "tests")[0] == ItemStatus.PASS
    broken = with_tests(case("tests/t.py::test_c", classify.TestClass.PASS_TO_FAIL, Outcome.passed, Outcome.failed,
                             message="assert 1 == 2"))
    assert item(broken, "tests")[2] == ("tests/t.py::test_c: regressed (passed before, failed now) (assert 1 == 2)",)


def test_tests_warn_for_a_test_that_passed_on_the_base_and_only_on_its_rerun_here() -> None:
    flaky = replace(case("tests/t.py::test_a", classify.TestClass.PASS_TO_PASS, Outcome.passed, Outcome.passed,
                         message="assert 1 == 2"), flaky=True)
    status, headline, evidence = item(with_tests(flaky), "tests")
    assert status == ItemStatus.WARN and "flaky" in headline
    assert evidence == ("tests/t.py::test_a: failed, then passed on its re-run (flaky, or broken by test order) "
                        "(assert 1 == 2)",)
    # A test the change adds, flaky as soon as it is written: it passed unsaid.
    added = replace(case("tests/t.py::test_new", classify.TestClass.ADDED, None, Outcome.passed), flaky=True)
    status, headline, evidence = item(with_tests(added), "tests")
    assert status == ItemStatus.WARN and "flaky" in headline
    assert evidence == ("tests/t.py::test_new: added, failed, then passed on its re-run (flaky, or broken by test "
                        "order)",)


def test_tests_warn_for_changed_code_no_test_reaches() -> None:
    inputs = replace(CLEAN, tests_reaching=Reach(reached=(TOTAL,), unreached=("api/app.py::main",)))
    assert item(inputs, "tests")[0] == ItemStatus.WARN
    assert item(inputs, "tests")[2] == ("api/app.py::main: changed, and no test reaches it",)
    assert item(CLEAN, "tests")[1] == "no test removed, skipped or regressed; tests reach all 1 changed code regions"


# -- size -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lines", "status"), [(400, ItemStatus.PASS), (401, ItemStatus.WARN),
                                               (800, ItemStatus.WARN), (801, ItemStatus.FAIL)])
def test_size_against_the_budget_and_twice_it(lines: int, status: ItemStatus) -> None:
    assert item(replace(CLEAN, lines_changed=lines), "size")[0] == status


def test_size_lists_the_largest_files_first() -> None:
    inputs = replace(CLEAN, lines_changed=60, lines_by_path=(("a.py", 1), ("b.py", 50), ("c.py", 9)))
    assert item(inputs, "size", EvalConfig(size_budget=20))[2] == ("b.py: 50 lines", "c.py: 9 lines", "a.py: 1 line")


# -- contracts --------------------------------------------------------------------------------


def test_contracts_fail_naming_who_relies_on_a_changed_signature() -> None:
    claimed = replace(CLEAN, signature_changes=(SignatureChange(TOTAL, claimed_by=("sb-2 (api/handlers.py)",)),))
    assert item(claimed, "contracts")[2] == (f"{TOTAL}: signature changed; claimed by sb-2 (api/handlers.py)",)
    used = replace(CLEAN, signature_changes=(SignatureChange(TOTAL, users=("api/handlers.py::create_invoice",)),))
    status, headline, evidence = item(used, "contracts")
    assert status == ItemStatus.FAIL and headline == "1 changed signature other code or sandboxes rely on"
    assert evidence == (f"{TOTAL}: signature changed; used by api/handlers.py::create_invoice",)


def test_contracts_warn_when_every_user_was_updated_or_a_public_one_has_none() -> None:
    updated = replace(CLEAN, signature_changes=(SignatureChange(TOTAL, updated=("api/handlers.py::f",)),))
    assert item(updated, "contracts")[0] == ItemStatus.WARN
    assert "its users were updated in this change (api/handlers.py::f)" in item(updated, "contracts")[2][0]
    unused = replace(CLEAN, signature_changes=(SignatureChange(TOTAL),))
    assert item(unused, "contracts")[2] == (f"{TOTAL}: public signature changed; nothing else uses it",)


def test_contracts_pass_for_a_private_signature_nobody_else_uses() -> None:
    for region in (f"{INVOICES}::_helper", f"{INVOICES}::_Cache.get"):
        assert item(replace(CLEAN, signature_changes=(SignatureChange(region),)), "contracts")[0] == ItemStatus.PASS


# -- conventions ------------------------------------------------------------------------------


FLOAT = Finding("no-float-for-money", "payments/refunds.py", 28, 12, "calls float()",
                "money is decimal.Decimal, never float (ADR 0001)", "repo:docs/conventions/money.md:12")


def test_conventions_fail_for_a_new_finding_with_its_place_rule_and_source() -> None:
    status, headline, evidence = item(replace(CLEAN, findings=(FLOAT,), known_findings=2), "conventions")
    assert (status, headline) == (ItemStatus.FAIL, "1 new convention finding (2 already at the base)")
    assert evidence == ("payments/refunds.py:28: no-float-for-money: calls float() (money is decimal.Decimal, "
                        "never float (ADR 0001)) [rule at repo:docs/conventions/money.md:12]",)


def test_conventions_pass_when_findings_were_already_there() -> None:
    assert item(replace(CLEAN, known_findings=3), "conventions")[:2] == (
        ItemStatus.PASS, "no new convention findings (3 already at the base)")


# -- task fit ---------------------------------------------------------------------------------


def test_task_fit_counts_regions_inside_or_containing_a_suggestion() -> None:
    inside = replace(CLEAN, suggested_regions=(f"{INVOICES}::InvoiceCalculator",))
    assert item(inside, "task_fit")[0] == ItemStatus.PASS
    containing = replace(CLEAN, changed_regions=(INVOICES,), suggested_regions=(TOTAL,))
    assert item(containing, "task_fit")[0] == ItemStatus.PASS


def test_task_fit_warns_for_a_minority_and_fails_for_none() -> None:
    half = replace(CLEAN, changed_regions=(TOTAL, "api/app.py::main", "api/app.py::serve"))
    status, headline, evidence = item(half, "task_fit")
    assert (status, headline) == (ItemStatus.WARN, "1 of 3 changed code regions fit the task (33%)")
    assert evidence[:2] == ("api/app.py::main: not among the regions suggested for the task",
                            "api/app.py::serve: not among the regions suggested for the task")
    none = replace(CLEAN, suggested_regions=("notifications/sms.py::send_sms",))
    assert item(none, "task_fit")[0] == ItemStatus.FAIL
    assert item(replace(CLEAN, changed_regions=(TOTAL, "api/app.py::main")), "task_fit")[0] == ItemStatus.PASS


def test_task_fit_passes_without_code_and_warns_without_suggestions() -> None:
    tests_only = replace(CLEAN, changed_regions=("tests/test_invoices.py::test_total", "docs/runbook.md"))
    assert item(tests_only, "task_fit")[:2] == (ItemStatus.PASS, "no code regions changed (tests, docs or data only)")
    assert item(replace(CLEAN, suggested_regions=()), "task_fit")[0] == ItemStatus.WARN


def test_long_evidence_is_cut_saying_how_much_more() -> None:
    many = tuple(f"api/m{n:03d}.py::f" for n in range(45))
    evidence = item(replace(CLEAN, changed_regions=many), "scope")[2]
    assert len(evidence) == 41 and evidence[-1] == "... and 5 more"


# -- gathering from a real repository ---------------------------------------------------------


@pytest.fixture
def workspace(billing: Path) -> Iterator[Workspace]:
    opened = open_workspace(billing)
    yield opened
    opened.close()


def sandbox(workspace: Workspace, task: str, *claims: str) -> SandboxRecord:
    """A planned sandbox (no worktree is ever made: scoring reads commits only) holding `claims`."""
    record = plan_sandbox(workspace, task, "command", command=["true"], isolate=False)
    for target in claims:
        workspace.store.add_claim(record.id, target, "exclusive", "", time.time() + 3600, [target])
    return record


def commit_on_branch(repo: Path, branch: str, edits: dict[str, tuple[str, str]], *, remove: str = "") -> str:
    """Commit `edits` (path -> (old text, new text)) on a new branch off main; the main checkout is left as it was."""
    git(repo, "switch", "-q", "-c", branch)
    for path, (old, new) in edits.items():
        text = (repo / path).read_text()
        assert old in text, (path, old)
        (repo / path).write_text(text.replace(old, new, 1))
    if remove:
        git(repo, "rm", "-q", remove)
    git(repo, "commit", "-qam", branch)
    tip = git(repo, "rev-parse", "HEAD")
    git(repo, "switch", "-q", "main")
    return tip


AS_DECIMAL = "def as_decimal(value: AmountLike) -> Decimal:"
UNUSED_DAYS = "    unused_days = max(days_total - days_used, 0)\n"
BALANCE = 'def get_balance(request: Request, services: "Services") -> Response:\n'


def test_a_change_outside_its_claim_with_a_float_and_a_broken_signature_fails_three_items(
        workspace: Workspace) -> None:
    record = sandbox(workspace, "Fix prorated refund rounding", "payments/refunds.py")
    tip = commit_on_branch(workspace.root, "work", {
        "payments/refunds.py": (UNUSED_DAYS, UNUSED_DAYS + "    ratio = float(unused_days)\n"),
        "payments/currency.py": (AS_DECIMAL, AS_DECIMAL.replace("AmountLike", "AmountLike, strict: bool")),
        "api/handlers.py": (BALANCE, BALANCE + "    services = services\n"),
    })
    inputs = gather_inputs(workspace, record, record.base_sha, tip, None)
    assert inputs.claimed == ("payments/refunds.py",) and inputs.lines_changed == 4
    result = score(inputs, CONFIG)
    conventions = result.item("conventions")
    assert conventions.status == ItemStatus.FAIL and len(conventions.evidence) == 1
    line = (workspace.root / "payments/refunds.py").read_text().splitlines().index(UNUSED_DAYS.rstrip()) + 2
    assert conventions.evidence[0].startswith(f"payments/refunds.py:{line}: no-float-for-money: calls float()")
    assert "docs/conventions/money.md" in conventions.evidence[0]
    assert result.item("scope").status == ItemStatus.FAIL
    assert result.item("scope").evidence == ("api/handlers.py::get_balance: code outside the claims",
                                             "payments/currency.py::as_decimal: code outside the claims")
    contracts = result.item("contracts")
    assert contracts.status == ItemStatus.FAIL
    assert contracts.evidence[0].startswith("payments/currency.py::as_decimal: signature changed; used by "
                                            "api/middleware.py::parse_amount; ")
    assert inputs.tests_reaching == Reach(reached=("payments/currency.py::as_decimal",
                                                   "payments/refunds.py::prorated_refund"),
                                          unreached=("api/handlers.py::get_balance",))
    assert "payments/refunds.py::prorated_refund" in inputs.suggested_regions
    assert not result.passed
    # Its commit claiming what it changed outside the claim (a runtime without edit hooks) is no excuse:
    # those regions are held since, not coordinated before they were written.
    workspace.store.add_claim(record.id, "api/handlers.py", "exclusive", "claimed by commit of api/handlers.py",
                              time.time() + 3600, ["api/handlers.py"])
    assert gather_inputs(workspace, record, record.base_sha, tip, None).claimed == ("payments/refunds.py",)


def test_old_findings_removed_rules_and_deleted_tests_are_read_from_the_base(workspace: Workspace) -> None:
    """A float already on main is not the change's; deleting the rule's doc does not excuse a new one;
    a test deleted is seen without any test results; another sandbox's claim on a caller is named."""
    repo = workspace.root
    (repo / "payments/fx.py").write_text((repo / "payments/fx.py").read_text() + "\nLEGACY = float('1.5')\n")
    git(repo, "commit", "-qam", "a float already on main")
    record = sandbox(workspace, "Refuse booleans in as_decimal", "payments/currency.py", "tests/test_currency.py")
    other = sandbox(workspace, "Tidy amount parsing", "api/middleware.py")
    tip = commit_on_branch(repo, "work", {
        "payments/fx.py": ("LEGACY = float('1.5')", "LEGACY = float('1.5')\nRATE = float('2')"),
        "payments/currency.py": (AS_DECIMAL, AS_DECIMAL.replace("-> Decimal", "-> Decimal | None")),
    }, remove="docs/conventions/money.md")
    inputs = gather_inputs(workspace, record, "main", tip, None)
    rate_line = (repo / "payments/fx.py").read_text().count("\n") + 1  # RATE follows LEGACY, the last line
    assert [(f.path, f.line) for f in inputs.findings] == [("payments/fx.py", rate_line)]
    assert inputs.known_findings == 1
    (change,) = inputs.signature_changes
    assert change.claimed_by == (f"{other.id} (api/middleware.py)",)
    assert "api/middleware.py::parse_amount" in change.users
    result = score(inputs, CONFIG)
    assert result.item("contracts").status == ItemStatus.FAIL
    assert result.item("scope").status == ItemStatus.FAIL  # fx.py and the doc are not claimed
    assert "docs/conventions/money.md: doc outside the claims" in result.item("scope").evidence

    removed = commit_on_branch(repo, "drop-test", {"tests/test_currency.py": (
        "def test_floats_are_refused_as_money", "def _was_test_floats_are_refused_as_money")})
    tests = score(gather_inputs(workspace, record, "main", removed, None), CONFIG).item("tests")
    assert tests.status == ItemStatus.FAIL
    assert tests.evidence == ("tests/test_currency.py::test_floats_are_refused_as_money: removed",)


def test_a_file_name_that_is_not_utf8_elsewhere_in_the_repository_is_scored_around(workspace: Workspace) -> None:
    """A Latin-1 file name anywhere in the repository (not in the change): RE2 raised on it as the score matched
    the commit's files, and every review of a Python change failed, the sandbox stuck in `gating`."""
    odd = os.fsencode(workspace.root) + b"/payments/caf\xe9.py"
    with open(odd, "wb") as handle:
        handle.write(b"X = 1\n")
    git(workspace.root, "add", "-A")
    git(workspace.root, "commit", "-qm", "a Latin-1 name")
    record = sandbox(workspace, "Fix prorated refund rounding", "payments/refunds.py")
    tip = commit_on_branch(workspace.root, "odd", {"payments/refunds.py": (UNUSED_DAYS, UNUSED_DAYS + "    # kept\n")})
    inputs = gather_inputs(workspace, record, record.base_sha, tip, None)
    assert inputs.claimed == ("payments/refunds.py",)
    assert score(inputs, CONFIG).item("scope").status == ItemStatus.PASS
