"""`loomtui eval` (gate 1 against the baseline, gate 2's score, the merged gate) and `loomtui bench evals`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from loomtui.cli import add_command, positive_int_arg, print_json, workspace_for
from loomtui.errors import LoomError, plural
from loomtui.errors import escape_controls as safe

if TYPE_CHECKING:
    from loomtui.guardrails.evals import BaselineCheck, EvalReport
    from loomtui.guardrails.gates import GateResult
    from loomtui.guardrails.merged import MergedReport

CLASS_ORDER = ("PASS_TO_FAIL", "ADDED", "FAIL_TO_FAIL", "FAIL_TO_PASS", "REMOVED", "SKIPPED")
SHOWN_TESTS = 20


def _progress(result: GateResult) -> None:
    print(f"  {safe(result.describe())} [{result.duration_s:.1f}s]", file=sys.stderr, flush=True)


def _print_report(report: EvalReport) -> None:
    stored = " (stored: nothing changed since it ran)" if report.stored else ""
    print(f"eval of {report.subject} at {report.commit[:12]} (base {report.base[:12]}){stored}")
    if not report.checks and report.which != "2":  # gate 1 asked for ran nothing, which is not a pass
        print("gate 1: no checks configured (`gates:` in .loom/loom.yaml; `loomtui init` finds a repository's tests)")
    if report.checks:
        print(f"gate 1 {report.gate1}")
        for check in report.checks:
            # Test ids, messages and summaries come from the agent's code: never raw to the terminal.
            print(f"  {safe(check.describe())}  [{check.duration_s:.1f}s, run #{check.run_id}]")
            if check.tests is not None:
                shown = [t for t in check.tests.tests if t.cls in CLASS_ORDER or t.flaky][:SHOWN_TESTS]
                for test in shown:
                    flaky = " (flaky)" if test.flaky else ""
                    reason = f"  {safe(test.message)}" if test.message and test.is_regression else ""
                    print(f"    {test.cls:<13} {safe(test.id)}{flaky}{reason}")
            if check.findings is not None:
                for finding in check.findings.new[:SHOWN_TESTS]:
                    print(f"    new {safe(finding.path)}:{finding.line} {safe(finding.code)} {safe(finding.message)}")
    if report.score is not None:
        print(f"gate 2 score {report.score.total} ({'passed' if report.score.passed else 'below the pass score'})")
        for item in report.score.items:
            print(f"  {item.status:<4} {item.name:<11} {safe(item.headline)}")
            for line in item.evidence[:8]:
                print(f"         - {safe(line)}")


def _print_merged(report: MergedReport) -> None:
    stored = " (stored: nothing changed since it ran)" if report.stored else ""
    print(f"merged gate on {report.target} ({report.onto[:12]}): {plural(len(report.sandboxes), 'sandbox')} merged "
          f"({', '.join(report.sandboxes) or 'none'}){stored}")
    for sandbox, files in report.conflicting:
        print(f"  {sandbox} does not merge with the others: {safe(files)}")
    for check in report.checks:
        reason = f" ({safe(check['reason'])})" if check["reason"] else ""  # a pass has none to say
        print(f"  {check['gate']} {check['status']}{reason}")
    for found in report.breaking:
        print(f"  ! {safe(found.line())}")
    unsure = report.unfinished()
    if unsure and not report.breaking:
        print(f"  whether they break anything together is not known: {', '.join(unsure)} could not finish")
    elif not report.breaking and report.sandboxes:
        print("  no two pending sandboxes break anything together")


def cmd_eval(args: argparse.Namespace) -> int:
    modes = [name for name, given in (("SANDBOX", args.sandbox), ("--baseline", args.baseline is not None),
                                      ("--merged", args.merged)) if given]
    if len(modes) > 1:  # said before the repository is opened; none is guessed
        raise LoomError(f"{' and '.join(modes)} ask for different evals; give one", exit_code=2)
    if args.gate != "all" and not args.sandbox:  # the gates are a sandbox's; a baseline or the merged gate has none
        raise LoomError(f"--gate {args.gate} picks a gate of a sandbox's eval: name a SANDBOX", exit_code=2)
    if args.baseline is not None and not args.baseline.strip():  # an empty ref is a mistake, not HEAD
        raise LoomError("--baseline '': name a commit, or give --baseline alone for HEAD", exit_code=2)
    workspace = workspace_for(args)
    if args.baseline is not None:
        return _eval_baseline(args, workspace)
    if args.merged:
        from loomtui.guardrails.merged import NOTHING_PENDING, merged_gate

        # What it merged is progress (stderr, as each check's is): the report below says it again.
        reports = merged_gate(workspace, force=args.force,
                              say=None if args.json else lambda line: print(line, file=sys.stderr, flush=True))
        if args.json:
            print_json({"merged": [r.as_dict() for r in reports]})
        else:
            for merged in reports:
                _print_merged(merged)
            if not reports:
                print(NOTHING_PENDING)
        # A check that could not finish on the merged tree is no all-clear.
        return 1 if any(r.breaking or r.unfinished() for r in reports) else 0
    if not args.sandbox:
        raise LoomError("name a SANDBOX, or give --baseline [REF] or --merged", exit_code=2)
    from loomtui.guardrails.evals import evaluate

    report = evaluate(workspace, args.sandbox, which=args.gate, force=args.force,
                      on_gate=None if args.json else _progress)
    if args.json:
        print_json(report.as_dict())
    else:
        _print_report(report)
    failed = (report.checks and report.gate1 != "passed") or (report.score is not None and not report.score.passed)
    return 1 if failed else 0


def _print_baseline_check(check: BaselineCheck) -> None:
    name, run, record = check
    where = record.commit_sha[:12]
    if run is None:
        print(f"{name} at {where}: could not run ({safe(str(record.data.get('summary', 'error')))})", flush=True)
        return
    failing = [c.id for c in run.cases or () if c.outcome.is_fail]
    problem = f"; {safe(run.problem)}" if run.problem else ""  # a report it could not read, said here too
    said = f"{safe(run.summary)}{problem}".removeprefix("; ")  # a check with no tests says nothing
    print(f"{name} at {where}: {record.status}{f' ({said})' if said else ''} [run #{record.id}]")
    for test in failing[:SHOWN_TESTS]:
        print(f"  already failing: {safe(test)}")
    sys.stdout.flush()


def _eval_baseline(args: argparse.Namespace, workspace: Any) -> int:
    from loomtui.guardrails.evals import evaluate_baseline

    if args.json:
        results = evaluate_baseline(workspace, args.baseline or "HEAD", force=args.force)
        print_json({"ref": args.baseline or "HEAD", "checks": [
            {"gate": name, "status": record.status, "run": record.id, "commit": record.commit_sha,
             # why a check could not run, as the text says it (there is no result to read it from)
             "summary": run.summary if run is not None else str(record.data.get("summary", "error")),
             "result": run.as_dict() if run is not None else None} for name, run, record in results]})
        return 0
    # Each check said as it starts (stderr) and as it ends: a suite of minutes was silence until all ended.
    results = evaluate_baseline(workspace, args.baseline or "HEAD", force=args.force, on_check=_print_baseline_check,
                                on_start=lambda name, commit: print(f"  running {name} at {commit[:12]}...",
                                                                    file=sys.stderr, flush=True))
    if not results:
        print("no deterministic checks are configured (`gates:` in .loom/loom.yaml)")
    return 0


def register(commands: Any) -> None:
    """`loomtui eval`."""
    evaluation = add_command(
        commands, "eval", cmd_eval,
        "gate 1 (the configured checks, judged against the base commit's baseline) and gate 2 (a score with "
        "itemised evidence) on a sandbox; or a commit's baseline; or the merged gate across pending sandboxes. "
        "Exit 1 when a gate fails or two sandboxes break together", json_flag=True)
    evaluation.add_argument("sandbox", metavar="SANDBOX", nargs="?", help="the sandbox id (or a unique prefix)")
    evaluation.add_argument("--gate", choices=("1", "2", "all"), default="all",
                            help="which gate (default all; 2 alone scores with gate 1's latest tests at this tip)")
    evaluation.add_argument("--baseline", nargs="?", const="HEAD", metavar="REF",
                            help="run (or show the stored) checks at REF (default HEAD): the baseline sandboxes on "
                                 "it are judged against")
    evaluation.add_argument("--merged", action="store_true",
                            help="gate 1 on every pending sandbox merged together; names sets that break together")
    evaluation.add_argument("--force", action="store_true",
                            help="run again even when nothing changed since the stored result")


def register_bench(bench: Any) -> None:
    """`loomtui bench evals`."""
    from loomtui.cli.eval_bench import cmd_bench_evals

    evals = add_command(bench, "evals", cmd_bench_evals,
                        "the eval harness on a copy of the sample repo: its wall time over the bare pytest command "
                        "(target 1.3x), a stored re-run (target 0.2 s), six sandboxes gated at once",
                        json_flag=True)
    evals.add_argument("--sandboxes", type=positive_int_arg, default=6,
                       metavar="N", help="sandboxes gated at once (default 6)")
