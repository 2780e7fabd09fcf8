"""Gate 1, deterministic checks: the configured checks run on a sandbox's branch tip, judged against its base.

Each check of `.loom/loom.yaml`'s `gates:` runs in the sandbox's worktree, confined
as its agent was (the tests it runs are the agent's code), in parallel up to
`eval.parallel`, its output streamed to a log file and its progress to the store.
The same check runs on the sandbox's base commit (`guardrails.baseline`, once per
commit), and `guardrails.verdicts` judges the one against the other. Every check is
a gate run in the store with its verdict, per-test classes and findings, and one
audit entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loomtui.audit import listed_in_entry
from loomtui.config import GateConfig
from loomtui.errors import LoomError
from loomtui.execution.confinement import confined_scratch_argv, sandbox_environment
from loomtui.execution.gitops import Git
from loomtui.execution.isolation import ISOLATION_BWRAP, oom_first
from loomtui.execution.review import measured_from
from loomtui.execution.runtimes import LaunchSpec
from loomtui.execution.sandboxes import get_sandbox
from loomtui.guardrails.baseline import (
    MEASURED_ALONE_KEY,
    baseline,
    fingerprint,
    gate_environment,
    resolved_argv,
    run_dir,
    run_groups,
    scratch_tree,
)
from loomtui.guardrails.checks import CheckRun, run_check
from loomtui.guardrails.classify import Classification, FindingDiff
from loomtui.guardrails.verdicts import Verdict, judge
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace

__all__ = ["GateResult", "deterministic_gates", "run_configured_gates"]


@dataclass(frozen=True)
class GateResult:
    """One check's run, judged: `status` is passed, failed (against the baseline) or error (could not run)."""

    gate: str
    status: str
    run_id: int
    commit: str
    argv: tuple[str, ...]
    exit_code: int | None
    duration_s: float
    summary: str
    failed_tests: tuple[str, ...] = ()
    output_tail: tuple[str, ...] = field(default=(), repr=False)
    blocking: bool = True
    tests: Classification | None = field(default=None, repr=False)
    findings: FindingDiff | None = field(default=None, repr=False)
    baseline_run: int | None = None
    log: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "status": self.status, "run_id": self.run_id, "commit": self.commit,
                "argv": list(self.argv), "exit_code": self.exit_code, "duration_s": self.duration_s,
                "summary": self.summary, "failed_tests": list(self.failed_tests),
                "output_tail": list(self.output_tail), "blocking": self.blocking,
                "tests": None if self.tests is None else self.tests.as_dict(),
                "findings": None if self.findings is None else self.findings.as_dict(),
                "baseline_run": self.baseline_run, "log": self.log}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        tests, findings = data.get("tests"), data.get("findings")
        return cls(gate=data["gate"], status=data["status"], run_id=int(data["run_id"]), commit=data["commit"],
                   argv=tuple(data.get("argv", ())), exit_code=data.get("exit_code"),
                   duration_s=float(data.get("duration_s", 0.0)), summary=data.get("summary", ""),
                   failed_tests=tuple(data.get("failed_tests", ())), output_tail=tuple(data.get("output_tail", ())),
                   blocking=bool(data.get("blocking", True)),
                   tests=None if tests is None else Classification.from_dict(tests),
                   findings=None if findings is None else FindingDiff.from_dict(findings),
                   baseline_run=data.get("baseline_run"), log=data.get("log", ""))

    def describe(self) -> str:
        """E.g. `tests failed (1 regression · 48 unchanged; regressed: tests/test_invoices.py::test_total)`."""
        blocking = "" if self.blocking else ", not blocking"
        return f"{self.gate} {self.status}" + (f" ({self.summary}{blocking})" if self.summary else "")


def deterministic_gates(workspace: Workspace) -> tuple[GateConfig, ...]:
    return tuple(gate for gate in workspace.load_config().gates if gate.kind == "deterministic")


def _sandbox_check(workspace: Workspace, record: SandboxRecord, gate: GateConfig, run_id: int, commit: str,
                   rerun_failed: bool) -> CheckRun:
    """Run a check on exactly the committed tip, in a scratch tree of it: an ignored or uncommitted
    file in the worktree (a conftest that patches the fix back in) never decides what is judged.

    Confined as its agent was (bwrap when the sandbox is isolated; a sandbox run without
    isolation runs its tests as the plain process its agent was), with the agent's environment.
    """
    spec = LaunchSpec.from_data(record.data["launch"])
    env = gate_environment(sandbox_environment(workspace, record, spec), gate)
    directory = run_dir(workspace, run_id)

    def progress(update: dict[str, Any]) -> None:
        workspace.store.update_gate_run(run_id, {"progress": update, "log": str(directory / "output.log")})

    # The agent's tests are the agent's code: in groups limited as its agent was (a fork bomb in a test).
    with scratch_tree(workspace, commit, f"sandbox-{run_id}", record.base_sha or None) as tree, \
            run_groups(workspace, run_id) as joined:
        def wrap(argv: list[str], writable: Sequence[Path]) -> list[str]:
            if record.isolation != ISOLATION_BWRAP:  # as its agent ran, and as it, the OOM killer's first choice
                return joined([*oom_first(), *argv])
            return joined(confined_scratch_argv(workspace, tree, argv, env, writable=list(writable)))

        return run_check(gate, resolved_argv(gate), tree, env, directory, wrap=wrap, progress=progress,
                         rerun_failed=rerun_failed)


def run_configured_gates(workspace: Workspace, sandbox_id: str, *,
                         on_gate: Callable[[GateResult], None] | None = None) -> list[GateResult]:
    """Gate 1 on a sandbox: every deterministic check at its branch tip, judged against its base commit.

    Every check runs (a failed one does not stop the next). Returns the results in
    the configured order; raises LoomError when the sandbox has no worktree or branch.
    """
    record = get_sandbox(workspace, sandbox_id)
    worktree = Path(record.worktree)
    if not worktree.is_dir():
        raise LoomError(f"sandbox {record.id}: its worktree {worktree} is missing; no gate can run", exit_code=1)
    commit = Git(workspace.root).resolve_commit(record.branch)
    if commit is None:
        raise LoomError(f"sandbox {record.id}: branch {record.branch} does not exist", exit_code=1)
    config = workspace.load_config()
    for gate in config.gates:
        if gate.kind != "deterministic":
            workspace.record("gate.skipped", record.id, {"gate": gate.name, "kind": gate.kind,
                                                        "reason": "a behavioural gate is gate 2's score"})
    checks = deterministic_gates(workspace)
    # Judged against where its tip and target meet (its base, unless it merged the target in): a regression is
    # one the merge would bring.
    base = measured_from(Git(workspace.root), record, commit) if record.base_sha else ""
    runs = {}
    for gate in checks:
        run = workspace.store.add_gate_run(record.id, gate.name, commit, fingerprint=fingerprint(gate))
        workspace.store.update_gate_run(run.id, {"log": str(run_dir(workspace, run.id) / "output.log")})
        runs[gate.name] = run.id
    rerun = config.eval.rerun_failed
    # Two pools: a check waits for its baseline, which must never queue behind the checks waiting for it.
    with ThreadPoolExecutor(max_workers=config.eval.parallel) as baselines, \
            ThreadPoolExecutor(max_workers=config.eval.parallel) as pool:
        theirs = {g.name: baselines.submit(baseline, workspace, base, g, rerun_failed=rerun) for g in checks if base}

        def check(gate: GateConfig) -> GateResult:
            """Run, judge and record one check as soon as it and its baseline are done."""
            base_record = None
            try:  # whatever happens is recorded as what happened: a run is never left `running`
                result = _sandbox_check(workspace, record, gate, runs[gate.name], commit, rerun)
                base_run, base_record = theirs[gate.name].result() if gate.name in theirs else (None, None)
                if gate.format == "junit" and result.outcome != "error" and result.cases is None and \
                        base_run is not None and base_run.outcome != "error" and base_run.cases is None and \
                        base_record is not None and \
                        not base_record.data.get(MEASURED_ALONE_KEY):
                    # Neither wrote its report: judged by exit code, "already failing" passes. The base's run
                    # beside this one's, of the change's code, could be starved of its report (a full disk, kept
                    # as the commit's baseline): measured again now that the change's check has stopped, once
                    # (a base whose suite writes no report is not run again at every review).
                    base_run, base_record = baseline(workspace, base, gate, rerun_failed=rerun, fresh=True,
                                                     alone=True)
                if base_run is None and base_record is not None and isinstance(base_record.data.get("result"), dict):
                    base_run = CheckRun.from_dict(base_record.data["result"])  # its error: timed out there too?
                verdict = judge(result, base_run, gate.format)
            except (LoomError, OSError) as exc:
                result = CheckRun("error", None, 0.0, f"the check could not run: {exc}", (), "")
                verdict = Verdict("error", result.summary)
            except Exception as exc:  # noqa: BLE001 - an input no check foresaw: an error, never a run left running
                result = CheckRun("error", None, 0.0, f"the check could not be judged: internal error: "
                                                      f"{type(exc).__name__}: {exc}", (), "")
                verdict = Verdict("error", result.summary)
            if not worktree.is_dir():
                verdict = Verdict("error", "the sandbox was removed while the check ran")
            judged = _record(workspace, record.id, gate, runs[gate.name], commit, result, verdict,
                             base_record.id if base_record is not None else None)
            if on_gate is not None:
                on_gate(judged)
            return judged

        futures = [pool.submit(check, gate) for gate in checks]
        return [future.result() for future in futures]


def _record(workspace: Workspace, sandbox_id: str, gate: GateConfig, run_id: int, commit: str, run: CheckRun,
            verdict: Verdict, baseline_run: int | None) -> GateResult:
    argv = tuple(resolved_argv(gate))
    failing = verdict.regressions or (tuple(c.id for c in run.cases if c.outcome.is_fail) if run.cases else ())
    result = GateResult(gate=gate.name, status=verdict.status, run_id=run_id, commit=commit, argv=argv,
                        exit_code=run.exit_code, duration_s=run.duration_s, summary=verdict.reason,
                        failed_tests=failing, output_tail=run.output_tail, blocking=gate.blocking,
                        tests=verdict.tests, findings=verdict.findings, baseline_run=baseline_run, log=run.log)
    with workspace.store.transaction():  # the run's result and its audit entry land together
        workspace.store.finish_gate_run(run_id, verdict.status, {
            "argv": list(argv), "exit_code": run.exit_code, "duration_s": run.duration_s, "summary": verdict.reason,
            "failed_tests": list(failing), "output_tail": list(run.output_tail), "log": run.log,
            "blocking": gate.blocking, "format": gate.format, "baseline_run": baseline_run, "problem": run.problem,
            "verdict": verdict.as_dict(), "outcome": run.outcome,
            "runner": "loomtui.guardrails.gates (gate 1: deterministic, against the base commit)",
        })
        workspace.record(f"gate.{verdict.status}", sandbox_id, {
            "gate": gate.name, "run": run_id, "commit": commit, "exit_code": run.exit_code,
            "summary": verdict.reason, **listed_in_entry("failed_tests", list(failing)),
            **listed_in_entry("regressions", list(verdict.regressions)),
            **listed_in_entry("flaky", list(verdict.flaky)), "baseline_run": baseline_run, "blocking": gate.blocking,
        })
    return result
