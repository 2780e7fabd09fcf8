"""One eval of a sandbox: gate 1's checks against the baseline, then gate 2's score; stored and audited.

`evaluate` is what the CLI (`loomtui eval`), the app (`e`) and the review step call.
An eval is keyed by everything it depends on (the checks' settings, the scoring
settings, base and tip commits, the task and the claims): asked again with nothing
changed, it returns the stored result at once. Every eval, fresh or stored, is an
audit entry (`eval.run`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from loomtui.audit import listed_in_entry
from loomtui.errors import LoomError
from loomtui.execution.gitops import Git
from loomtui.execution.review import measured_from, tip_to_judge
from loomtui.execution.sandboxes import get_sandbox
from loomtui.guardrails.baseline import baseline, fingerprint
from loomtui.guardrails.checks import CheckRun
from loomtui.guardrails.classify import Classification
from loomtui.guardrails.gates import GateResult, deterministic_gates, run_configured_gates
from loomtui.guardrails.score import Score, gather_inputs, score
from loomtui.guardrails.verdicts import NOT_JUDGED
from loomtui.store import GateRunRecord
from loomtui.workspace import Workspace

GateChoice = Literal["1", "2", "all"]
SANDBOX_EVAL: Final = "sandbox"


@dataclass(frozen=True)
class EvalReport:
    """A sandbox's eval at one commit: each check judged against the baseline, and the score."""

    subject: str
    commit: str
    base: str
    which: GateChoice
    checks: tuple[GateResult, ...] = ()
    score: Score | None = None
    stored: bool = field(default=False, compare=False)
    report_id: int = 0

    @property
    def gate1(self) -> str:
        """passed when every blocking check passed; else failed, or error when one could not run."""
        blocking = [c.status for c in self.checks if c.blocking]
        if "failed" in blocking:
            return "failed"
        return "error" if "error" in blocking else "passed"

    @property
    def regressions(self) -> tuple[str, ...]:
        return tuple(test for check in self.checks if check.tests is not None
                     for test in (t.id for t in check.tests.regressions))

    @property
    def flaky(self) -> tuple[str, ...]:
        return tuple(t.id for check in self.checks if check.tests is not None for t in check.tests.tests if t.flaky)

    def tests(self) -> Classification | None:
        """Every JUnit check's classified tests together (None when no check reports tests)."""
        found = [check.tests for check in self.checks if check.tests is not None]
        if not found:
            return None
        return Classification.from_dict({"tests": [t.as_dict() for c in found for t in c.tests]})

    def badge(self) -> str:
        """The dashboard's compact form: `1 regr · 82`, `✓ · 94`."""
        parts = []
        if self.checks:
            count = len(self.regressions)
            parts.append(f"{count} regr" if count else {"passed": "✓", "failed": "✗"}.get(self.gate1, "!"))
        if self.score is not None:
            parts.append(str(self.score.total))
        return " · ".join(parts) or "–"

    def summary(self) -> str:
        gate1 = "; ".join(c.describe() for c in self.checks) or "no checks"
        gate2 = f"; score {self.score.summary()}" if self.score is not None else ""
        return f"gate 1 {self.gate1}: {gate1}{gate2}"

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "commit": self.commit, "base": self.base, "which": self.which,
                "gate1": self.gate1, "regressions": list(self.regressions), "flaky": list(self.flaky),
                "checks": [c.as_dict() for c in self.checks],
                "score": None if self.score is None else self.score.as_dict(), "stored": self.stored,
                "report_id": self.report_id, "badge": self.badge()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, stored: bool = False, report_id: int = 0) -> EvalReport:
        which = data.get("which", "all")
        return cls(subject=data["subject"], commit=data["commit"], base=data.get("base", ""),
                   which=which if which in ("1", "2", "all") else "all",
                   checks=tuple(GateResult.from_dict(c) for c in data.get("checks", ())),
                   score=None if data.get("score") is None else Score.from_dict(data["score"]),
                   stored=stored, report_id=report_id)


def _eval_key(workspace: Workspace, record_id: str, task: str, base: str, tip: str, which: GateChoice) -> str:
    config = workspace.load_config()
    claims = sorted((c.sandbox_id, c.target, c.mode, sorted(c.region_ids)) for c in workspace.store.live_claims())
    # The baselines it was judged against: `eval --baseline --force` makes the next eval fresh.
    baselines = max((r.id for r in workspace.store.shared_gate_runs("baseline", base)), default=0)
    text = json.dumps([which, base, tip, task, [fingerprint(g) for g in deterministic_gates(workspace)],
                       repr(config.eval), repr(config.coordination), repr(config.context), record_id, claims,
                       baselines], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def latest_eval(workspace: Workspace, sandbox_id: str) -> EvalReport | None:
    """The newest stored eval of a sandbox (whatever commit it was at)."""
    row = workspace.store.latest_eval_report(sandbox_id, SANDBOX_EVAL)
    return EvalReport.from_dict(row.data, stored=True, report_id=row.id) if row is not None else None


def evaluate(workspace: Workspace, sandbox_id: str, *, which: GateChoice = "all", force: bool = False,
             on_gate: Callable[[GateResult], None] | None = None) -> EvalReport:
    """Eval a sandbox at its branch tip: gate 1 (`which` 1 or all), gate 2 (2 or all).

    With nothing changed since a stored eval, that eval is returned (`stored`) unless
    `force`. Gate 2 alone scores with the tests of the newest gate 1 at this tip.
    """
    record = get_sandbox(workspace, sandbox_id)
    repo = Git(workspace.root)
    tip = tip_to_judge(repo, record, "evaluate")
    base = measured_from(repo, record, tip)  # what a merge would bring in, as the review's facts
    if tip == base:
        # A planned sandbox, or one whose agent has committed nothing yet: its target's code was evaluated
        # and shown in its row as "✓ · 100" through its run, as if its work had passed.
        raise LoomError(f"sandbox {record.id} has no change to evaluate: its branch has no commit beyond where it "
                        f"meets {record.target or 'its target'} ({base[:12]})", exit_code=1)
    key = _eval_key(workspace, record.id, record.task, base, tip, which)
    if not force:
        row = workspace.store.latest_eval_report(record.id, SANDBOX_EVAL, key)
        part_of_whole = row is None and which != "all"  # one gate asked of an eval of both, nothing changed since
        if part_of_whole:
            row = workspace.store.latest_eval_report(
                record.id, SANDBOX_EVAL, _eval_key(workspace, record.id, record.task, base, tip, "all"))
        if row is not None:
            report = EvalReport.from_dict(row.data, stored=True, report_id=row.id)
            if part_of_whole:
                report = replace(report, which=which, score=None if which == "1" else report.score)
            _audit(workspace, report)
            return report
    if which == "2":
        checks = _checks_at(workspace, record.id, tip)
    else:
        checks = tuple(run_configured_gates(workspace, record.id, on_gate=on_gate))
    report = EvalReport(record.id, tip, base, which, checks)
    if which != "1":
        config = workspace.load_config()
        inputs = replace(gather_inputs(workspace, record, base, tip, report.tests()), not_judged=tuple(
            f"{check.gate} ({check.summary.removeprefix(NOT_JUDGED)})" for check in checks
            if check.status == "passed" and check.summary.startswith(NOT_JUDGED)
            and not (check.tests is not None and check.tests.uncollected)))  # those said per file already
        report = EvalReport(record.id, tip, base, which, checks, score(inputs, config.eval))
    # Keyed as it stands now: the baseline this eval ran (when it was the first) is part of it.
    key = _eval_key(workspace, record.id, record.task, base, tip, which)
    with workspace.store.transaction():  # the eval and its audit entry land together
        row = workspace.store.add_eval_report(record.id, SANDBOX_EVAL, tip, key, report.as_dict())
        report = EvalReport.from_dict(row.data, report_id=row.id)
        _audit(workspace, report)
    return report


def _checks_at(workspace: Workspace, sandbox_id: str, tip: str) -> tuple[GateResult, ...]:
    """The newest finished run of each check at `tip` (gate 1 already run there)."""
    newest: dict[str, GateRunRecord] = {}
    for run in workspace.store.gate_runs(sandbox_id):
        if run.commit_sha == tip and run.status != "running":
            newest[run.gate] = run
    return tuple(_from_run(run) for run in newest.values())


def _from_run(run: GateRunRecord) -> GateResult:
    data = run.data
    verdict = data.get("verdict") or {}
    return GateResult.from_dict({
        "gate": run.gate, "status": run.status, "run_id": run.id, "commit": run.commit_sha,
        "argv": data.get("argv", ()), "exit_code": data.get("exit_code"), "duration_s": data.get("duration_s", 0),
        "summary": data.get("summary", ""), "failed_tests": data.get("failed_tests", ()),
        "output_tail": data.get("output_tail", ()), "blocking": data.get("blocking", True),
        "tests": verdict.get("tests"), "findings": verdict.get("findings"),
        "baseline_run": data.get("baseline_run"), "log": data.get("log", "")})


def _audit(workspace: Workspace, report: EvalReport) -> None:
    workspace.record("eval.run", report.subject, {
        "commit": report.commit, "which": report.which, "stored": report.stored, "report": report.report_id,
        "gate1": report.gate1 if report.checks else None, **listed_in_entry("regressions", list(report.regressions)),
        **listed_in_entry("flaky", list(report.flaky)),
        "score": report.score.total if report.score is not None else None})


BaselineCheck = tuple[str, CheckRun | None, GateRunRecord]
"""One check of a baseline: its name, its result (None when it could not run), its gate run."""


def evaluate_baseline(workspace: Workspace, ref: str = "HEAD", *, force: bool = False,
                      on_start: Callable[[str, str], None] | None = None,
                      on_check: Callable[[BaselineCheck], None] | None = None) -> list[BaselineCheck]:
    """Gate 1's checks at a commit (the baseline every sandbox on it shares), run once and stored.

    Returns (check, its result or None when it could not run, its gate run) per check; `on_start`
    hears each check's name and the commit as it starts, `on_check` each as it ends.
    """
    commit = Git(workspace.root).resolve_commit(ref)
    if commit is None:
        raise LoomError(f"{ref!r} names no commit", exit_code=2)
    rerun = workspace.load_config().eval.rerun_failed
    results = []
    for gate in deterministic_gates(workspace):
        if on_start is not None:
            on_start(gate.name, commit)
        run, record = baseline(workspace, commit, gate, rerun_failed=rerun, fresh=force)
        results.append((gate.name, run, record))
        if on_check is not None:
            on_check(results[-1])
    workspace.record("eval.baseline", commit, {
        "ref": ref, "checks": {name: (record.status, record.id) for name, _, record in results}})
    return results
