"""Gate 1's comparison: a sandbox's results against its baseline (the base commit's), as SWE-bench does.

A test is judged by how its outcome moved, not by whether it fails: a test that was
already failing on the base commit is not the agent's doing, and one that ran green
(or was skipped) there and fails now is a regression. Findings of linters and type
checkers are matched the same way, by what they say rather than on which line.

Choices made here:
- A skip before counts as "not failing": skipped then failing is PASS_TO_FAIL (a
  regression), skipped then passing is PASS_TO_PASS.
- Without a baseline (`before is None`) nothing can be said about how a test moved:
  every test is ADDED, so a failing one is a regression (`is_regression`), and the
  classification records `baseline=False`. Calling it PASS_TO_FAIL would claim a pass
  that was never seen.
- A test in the after run but not the baseline is ADDED whatever its outcome, even skipped.
- An id reported twice in one run (pytest writes a test that fails in its call and its
  teardown as two cases) keeps its worst outcome.
- A flaky test (failed, then passed on its single re-run) keeps its first failure's message.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from loomtui.guardrails.reports import Finding, Outcome, TestCase

__all__ = [
    "Classification",
    "ClassifiedTest",
    "FindingDiff",
    "TestClass",
    "classify",
    "diff_findings",
    "with_rerun",
]


class TestClass(StrEnum):
    """How one test moved between the baseline and the sandbox."""

    __test__ = False  # not a test class, though pytest collects `Test*` names

    PASS_TO_PASS = "PASS_TO_PASS"
    FAIL_TO_PASS = "FAIL_TO_PASS"
    PASS_TO_FAIL = "PASS_TO_FAIL"
    FAIL_TO_FAIL = "FAIL_TO_FAIL"
    ADDED = "ADDED"
    REMOVED = "REMOVED"
    SKIPPED = "SKIPPED"


# Worst first: which outcome an id reported twice in one run keeps.
_WORST: Final = (Outcome.error, Outcome.failed, Outcome.xpassed, Outcome.passed, Outcome.xfailed, Outcome.skipped)
# The order tests are listed in, after the regressions.
_ORDER: Final = (TestClass.FAIL_TO_FAIL, TestClass.FAIL_TO_PASS, TestClass.ADDED, TestClass.REMOVED,
                 TestClass.SKIPPED, TestClass.PASS_TO_PASS)


@dataclass(frozen=True)
class ClassifiedTest:
    """One test's class, its outcomes before and after (None where it did not run), and why."""

    id: str
    cls: TestClass
    before: Outcome | None
    after: Outcome | None
    flaky: bool = False
    message: str = ""
    newly_skipped: bool = False

    @property
    def is_regression(self) -> bool:
        """It passed (or was skipped) on the baseline and fails now, or it is new and fails."""
        return self.cls is TestClass.PASS_TO_FAIL or (
            self.cls is TestClass.ADDED and self.after is not None and self.after.is_fail)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "cls": self.cls.value, "before": None if self.before is None else self.before.value,
                "after": None if self.after is None else self.after.value,
                "flaky": self.flaky, "message": self.message, "newly_skipped": self.newly_skipped}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifiedTest:
        before, after = data.get("before"), data.get("after")
        return cls(id=str(data["id"]), cls=TestClass(data["cls"]),
                   before=None if before is None else Outcome(before), after=None if after is None else Outcome(after),
                   flaky=bool(data.get("flaky", False)), message=str(data.get("message", "")),
                   newly_skipped=bool(data.get("newly_skipped", False)))


@dataclass(frozen=True)
class Classification:
    """Every test of a run, classified; `baseline` is False when there was none to compare with."""

    tests: tuple[ClassifiedTest, ...]
    baseline: bool = True

    @property
    def regressions(self) -> tuple[ClassifiedTest, ...]:
        return tuple(test for test in self.tests if test.is_regression)

    @property
    def uncollected(self) -> tuple[ClassifiedTest, ...]:
        """When every result of the run is a file pytest could not collect (it stops there unless told
        `--continue-on-collection-errors`), those: no test ran, so none could regress. Else empty."""
        ran = [test for test in self.tests if test.after is not None]
        return tuple(ran) if ran and all(is_collection_failure(t.id, t.after) for t in ran) else ()

    def counts(self) -> dict[str, int]:
        """Tests per class (every class, zeros too), and how many were flaky."""
        counts = {cls.value: 0 for cls in TestClass}
        for test in self.tests:
            counts[test.cls.value] += 1
        counts["flaky"] = sum(test.flaky for test in self.tests)
        return counts

    def summary(self) -> str:
        """E.g. `2 regressions · 1 fixed · 3 already failing · 45 unchanged · 1 flaky`."""
        if not self.tests:
            return "no tests"
        counts = self.counts()
        added = sum(test.cls is TestClass.ADDED and not test.is_regression for test in self.tests)
        regressions = len(self.regressions)
        parts = [(regressions, "regression" if regressions == 1 else "regressions"),
                 (counts[TestClass.FAIL_TO_PASS], "fixed"), (counts[TestClass.FAIL_TO_FAIL], "already failing"),
                 (added, "added"), (counts[TestClass.REMOVED], "removed"), (counts[TestClass.SKIPPED], "skipped"),
                 (counts[TestClass.PASS_TO_PASS], "unchanged"), (counts["flaky"], "flaky")]
        text = " · ".join(f"{number} {label}" for number, label in parts if number)
        return text if self.baseline else f"{text} (no baseline)"

    def as_dict(self) -> dict[str, Any]:
        return {"tests": [test.as_dict() for test in self.tests], "baseline": self.baseline,
                "counts": self.counts(), "summary": self.summary()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Classification:
        return cls(tests=tuple(ClassifiedTest.from_dict(test) for test in data["tests"]),
                   baseline=bool(data.get("baseline", True)))


def _by_id(cases: Iterable[TestCase]) -> dict[str, TestCase]:
    """The run's cases by id; an id reported more than once keeps its worst outcome."""
    found: dict[str, TestCase] = {}
    for case in cases:
        kept = found.get(case.id)
        if kept is None or _WORST.index(case.outcome) < _WORST.index(kept.outcome):
            found[case.id] = case
    return found


def _class_of(before: Outcome, after: Outcome) -> TestClass:
    if after.is_skip:
        return TestClass.SKIPPED
    if before.is_fail:
        return TestClass.FAIL_TO_FAIL if after.is_fail else TestClass.FAIL_TO_PASS
    return TestClass.PASS_TO_FAIL if after.is_fail else TestClass.PASS_TO_PASS


def is_collection_failure(test_id: str, outcome: Outcome | None) -> bool:
    """pytest's record of a file (or a folder's conftest) it could not collect: a failing id naming no test."""
    return outcome is not None and outcome.is_fail and "::" not in test_id


def _collected_now(test_id: str, now: Iterable[str]) -> bool:
    """Whether a file that failed collection (or a folder whose conftest did) has tests run now."""
    return any(path == test_id or path.startswith(test_id + "/") for path in {i.partition("::")[0] for i in now})


def _sort_key(test: ClassifiedTest) -> tuple[int, str]:
    return (0 if test.is_regression else 1 + _ORDER.index(test.cls), test.id)


def classify(before: Sequence[TestCase] | None, after: Sequence[TestCase]) -> Classification:
    """Classify each test of `after` (and each of the baseline `before` that is gone).

    `before` None means no baseline: every test is ADDED (see the module's notes).
    """
    then = _by_id(before or ())
    now = _by_id(after)
    tests = []
    for test_id, case in now.items():
        old = then.get(test_id)
        if old is None:
            tests.append(ClassifiedTest(test_id, TestClass.ADDED, None, case.outcome, message=case.message))
            continue
        cls = _class_of(old.outcome, case.outcome)
        tests.append(ClassifiedTest(test_id, cls, old.outcome, case.outcome, message=case.message or old.message,
                                    newly_skipped=cls is TestClass.SKIPPED and not old.outcome.is_skip))
    for test_id, old in then.items():
        if test_id in now:
            continue
        if is_collection_failure(test_id, old.outcome) and _collected_now(test_id, now):
            # The file failed collection on the base and its tests run now: fixed, not a test removed (gate 2
            # failed a change that fixed an import for "a test removed"). Its tests are each ADDED.
            tests.append(ClassifiedTest(test_id, TestClass.FAIL_TO_PASS, old.outcome, Outcome.passed,
                                        message=f"collected now (it failed collection: {old.message})"))
            continue
        tests.append(ClassifiedTest(test_id, TestClass.REMOVED, old.outcome, None, message=old.message))
    return Classification(tests=tuple(sorted(tests, key=_sort_key)), baseline=before is not None)


def with_rerun(classification: Classification, rerun: Sequence[TestCase]) -> Classification:
    """Flag as flaky each failing test that passed on its single re-run, classed as if it had passed.

    A flaky PASS_TO_FAIL becomes PASS_TO_PASS (flaky), so it is no regression; a test
    failing again, or missing from the re-run, stays as it was.
    """
    again = _by_id(rerun)
    tests = []
    for test in classification.tests:
        retry = again.get(test.id)
        if test.after is None or not test.after.is_fail or retry is None or not retry.outcome.is_pass:
            tests.append(test)
            continue
        cls = TestClass.ADDED if test.before is None else _class_of(test.before, retry.outcome)
        tests.append(replace(test, cls=cls, after=retry.outcome, flaky=True))
    return Classification(tests=tuple(sorted(tests, key=_sort_key)), baseline=classification.baseline)


# ----- findings

@dataclass(frozen=True)
class FindingDiff:
    """Findings after a change: `new` ones, `existing` ones (as they are now), and `fixed` ones (as they were)."""

    new: tuple[Finding, ...]
    existing: tuple[Finding, ...]
    fixed: tuple[Finding, ...]
    baseline: bool = True

    def summary(self) -> str:
        """E.g. `2 new · 14 existing · 1 fixed`."""
        parts = [f"{len(found)} {label}" for found, label in
                 ((self.new, "new"), (self.existing, "existing"), (self.fixed, "fixed")) if found]
        text = " · ".join(parts) or "no findings"
        return text if self.baseline else f"{text} (no baseline)"

    def as_dict(self) -> dict[str, Any]:
        return {"new": [f.as_dict() for f in self.new], "existing": [f.as_dict() for f in self.existing],
                "fixed": [f.as_dict() for f in self.fixed], "baseline": self.baseline, "summary": self.summary()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FindingDiff:
        return cls(new=tuple(Finding.from_dict(f) for f in data["new"]),
                   existing=tuple(Finding.from_dict(f) for f in data["existing"]),
                   fixed=tuple(Finding.from_dict(f) for f in data["fixed"]), baseline=bool(data.get("baseline", True)))


def diff_findings(before: Sequence[Finding] | None, after: Sequence[Finding]) -> FindingDiff:
    """Match findings by `Finding.key` as a multiset: two alike before and three after is one new.

    Among findings alike, those on the same line pair first, then the rest in line order,
    so the extra one is the one that appeared where none was. `before` None: all are new.
    """
    if before is None:
        return FindingDiff(new=tuple(after), existing=(), fixed=(), baseline=False)
    then: dict[tuple[str, str, str], list[Finding]] = defaultdict(list)
    now: dict[tuple[str, str, str], list[Finding]] = defaultdict(list)
    for finding in before:
        then[finding.key].append(finding)
    for finding in after:
        now[finding.key].append(finding)
    new: list[Finding] = []
    existing: list[Finding] = []
    fixed: list[Finding] = []
    for key in {**then, **now}:
        old, current = sorted(then.get(key, ()), key=_line), sorted(now.get(key, ()), key=_line)
        for finding in list(current):
            match = next((o for o in old if o.line == finding.line), None)
            if match is not None:
                old.remove(match)
                current.remove(finding)
                existing.append(finding)
        paired = min(len(old), len(current))
        existing.extend(current[:paired])
        new.extend(current[paired:])
        fixed.extend(old[paired:])
    return FindingDiff(new=tuple(sorted(new, key=_place)), existing=tuple(sorted(existing, key=_place)),
                       fixed=tuple(sorted(fixed, key=_place)))


def _line(finding: Finding) -> int:
    return finding.line


def _place(finding: Finding) -> tuple[str, int, str, str]:
    return (finding.path, finding.line, finding.code, finding.message)
