"""Judging a check's run against its baseline: gate 1 fails on what the change broke, not on what was broken.

- per test (JUnit): each test classed as SWE-bench's harness does; the check fails on
  regressions (a test that passed and now fails, or an added test that fails), after
  the failing tests' one re-run (a pass then is flaky, not a failure);
- per finding (ruff, mypy, SARIF): fails on new findings, not those already there;
- by exit code: fails on a non-zero exit, unless the base commit failed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from loomtui.guardrails.checks import TIMED_OUT, CheckRun, exit_said
from loomtui.guardrails.classify import Classification, FindingDiff, classify, diff_findings, with_rerun

NOT_JUDGED: Final = "not judged: "
"""How a check's verdict begins when it passed only because the base commit could not be judged either."""


@dataclass(frozen=True)
class Verdict:
    """One check's status against the baseline (passed, failed, error) and why, in one line."""

    status: str
    reason: str
    tests: Classification | None = None
    findings: FindingDiff | None = None

    @property
    def regressions(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tests.regressions) if self.tests is not None else ()

    @property
    def flaky(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tests.tests if t.flaky) if self.tests is not None else ()

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason,
                "tests": None if self.tests is None else self.tests.as_dict(),
                "findings": None if self.findings is None else self.findings.as_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        tests, findings = data.get("tests"), data.get("findings")
        return cls(str(data.get("status", "error")), str(data.get("reason", "")),
                   None if tests is None else Classification.from_dict(tests),
                   None if findings is None else FindingDiff.from_dict(findings))


def judge(run: CheckRun, base: CheckRun | None, form: str = "exit") -> Verdict:
    """The verdict on a check's run, given the same check's run at the base commit (None: none could run).

    `form` is the check's format. A check that reports per test or per finding and whose
    report could not be read fails: its exit code alone cannot tell the change's failures
    from the base's (a conftest that no longer imports, a report deleted). By exit code
    alone, a failure is "already failing" only when the base failed with the same code.
    """
    if run.outcome == "error":
        if _timed_out(run) and base is not None and _timed_out(base):
            # As a failure already failing: the check hangs at the base commit too, not by the change's doing
            # (every sandbox on a hanging base was blocked, each needing an override).
            return Verdict("passed", f"{NOT_JUDGED}it times out on the base commit too ({run.summary})")
        return Verdict("error", run.summary)
    if form == "junit":
        if run.cases is None and base is not None and base.cases is None and base.outcome != "error":
            # The check's own set-up is broken (its report unreadable at the base commit too): not the
            # change's doing, so its exit code is all there is to judge by, as for a plain check.
            note = f"no per-test results at the base commit either ({run.problem})"
            exit_verdict = judge(run, base, "exit")
            return Verdict(exit_verdict.status, f"{exit_verdict.reason}; {note}")
        if run.cases == () and base is not None and base.cases == () and _same_failure(run, base):
            # No test yet, here nor at the base (pytest's exit 5): every change that added none was blocked.
            return Verdict("passed", f"no test ran, nor at the base commit ({exit_said(run.exit_code)} there too)")
        if run.cases is None or (not run.cases and run.outcome == "failed"):
            why = run.problem or "it reported no test"
            return Verdict("failed", f"no per-test results ({why}); {exit_said(run.exit_code)}")
        before = base.cases if base is not None else None
        tests = with_rerun(classify(before, run.cases), run.rerun)
        regressions = tests.regressions
        if regressions:
            named = ", ".join(t.id for t in regressions[:3]) + (" ..." if len(regressions) > 3 else "")
            return Verdict("failed", f"{tests.summary()}; regressed: {named}", tests=tests)
        if uncollected := tests.uncollected:
            # The base stops at the same files (a new one would be a regression): no test of the change ran, and
            # "passed (1 already failing)" read as if the change's new failing test had been run and passed.
            named = ", ".join(t.id for t in uncollected[:3]) + (" ..." if len(uncollected) > 3 else "")
            return Verdict("passed", f"{NOT_JUDGED}no test ran, here nor on the base commit: {named} failed "
                           "collection (pytest's --continue-on-collection-errors runs the other files)", tests=tests)
        failing = any(case.outcome.is_fail for case in run.cases)
        if run.outcome == "failed" and not failing and not _same_failure(run, base):
            return Verdict("failed", f"{exit_said(run.exit_code)} though no test failed ({tests.summary()})",
                           tests=tests)
        return Verdict("passed", tests.summary(), tests=tests)
    if form != "exit":
        if run.findings is None and base is not None and base.findings is None and _same_failure(run, base):
            # The tool fails the same way at the base commit (its config broken there): not the change's doing.
            return Verdict("passed", f"already failing on the base commit ({exit_said(run.exit_code)} there too, "
                                     f"{run.problem})")
        if run.findings is None:
            return Verdict("failed", f"no findings could be read ({run.problem}); {exit_said(run.exit_code)}")
        diff = diff_findings(base.findings if base is not None else None, run.findings)
        return Verdict("failed" if diff.new else "passed", diff.summary(), findings=diff)
    if run.outcome == "passed":
        return Verdict("passed", run.summary)
    if _same_failure(run, base):
        return Verdict("passed", f"already failing on the base commit ({exit_said(run.exit_code)} there too)")
    said = exit_said(run.exit_code)  # the summary is that very line where the output said nothing else
    return Verdict("failed", said if run.summary in ("", said) else f"{said}: {run.summary}")


def _timed_out(run: CheckRun) -> bool:
    return run.outcome == "error" and run.summary.startswith(TIMED_OUT)


def _same_failure(run: CheckRun, base: CheckRun | None) -> bool:
    return base is not None and base.outcome == "failed" and base.exit_code == run.exit_code
