"""Gate 1 against the baseline, the merged gate and their faults, on real repositories with real pytest runs.

A small repository of its own (two modules, a few tests) keeps each check under a
second; the sample repo's invoices beat is covered by the demo's own checks.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from loomtui.cli import main
from loomtui.guardrails.evals import evaluate, evaluate_baseline
from loomtui.guardrails.gates import run_configured_gates
from loomtui.guardrails.merged import merged_gate
from loomtui.workflow.tasks import create_sandbox
from loomtui.workspace import Workspace, open_workspace
from tests.conftest import git

JUNIT_GATE = """\
  - name: tests
    run: ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml={report}"]
    format: junit
    env: {PYTEST_DISABLE_PLUGIN_AUTOLOAD: "1"}
    timeout: 60
"""
PRICES = "def price(cents):\n    return cents / 100\n\n\ndef label(cents):\n    return f'{price(cents):.2f} EUR'\n"
TESTS = ("from shop.prices import label, price\n\n\n"
         "def test_price():\n    assert price(250) == 2.5\n\n\n"
         "def test_label():\n    assert label(250) == '2.50 EUR'\n")


def make_repo(tmp_path: Path, gates: str = JUNIT_GATE, extra: dict[str, str] | None = None) -> Workspace:
    root = tmp_path / "shop-repo"
    files = {"shop/__init__.py": "", "shop/prices.py": PRICES, "tests/test_prices.py": TESTS,
             ".loom/loom.yaml": "version: 1\ngates:\n" + gates + "eval: {merged_on_review: false}\n",
             ".loom/policy.yaml": "version: 1\nmerge: manual\n", **(extra or {})}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "shop")
    return open_workspace(root)


def sandbox_with(workspace: Workspace, task: str, files: dict[str, str], claims: tuple[str, ...] = ()) -> str:
    """A sandbox (no agent) with one commit of `files` on its branch."""
    script = workspace.root.parent / "noop.yaml"
    script.write_text("- {log: nothing}\n")
    record = create_sandbox(workspace, task, "script", script=script, claims=claims, isolate=False)
    tree = Path(record.worktree)
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", task)
    return record.id


def classes(report_checks: object) -> dict[str, str]:
    checks = list(report_checks)  # type: ignore[call-overload]
    return {t.id: t.cls.value for check in checks if check.tests is not None for t in check.tests.tests}


def test_a_regression_fails_gate_1_what_was_already_broken_does_not_and_the_baseline_runs_once(
        tmp_path: Path) -> None:
    broken_test = "def test_already_broken():\n    assert 1 == 2\n"
    workspace = make_repo(tmp_path, extra={"tests/test_old.py": broken_test})
    careless = sandbox_with(workspace, "labels in cents", {"shop/prices.py": PRICES.replace("/ 100", "// 100")})
    fixer = sandbox_with(workspace, "fix the old test", {"tests/test_old.py": broken_test.replace("1 == 2", "2 == 2"),
                                                         "tests/test_new.py": "def test_new():\n    pass\n"})
    first = evaluate(workspace, careless)
    assert first.gate1 == "failed"
    assert classes(first.checks) == {
        "tests/test_prices.py::test_price": "PASS_TO_FAIL", "tests/test_prices.py::test_label": "PASS_TO_FAIL",
        "tests/test_old.py::test_already_broken": "FAIL_TO_FAIL"}
    assert set(first.regressions) == {"tests/test_prices.py::test_price", "tests/test_prices.py::test_label"}
    second = evaluate(workspace, fixer)
    assert second.gate1 == "passed", second.summary()
    assert classes(second.checks)["tests/test_old.py::test_already_broken"] == "FAIL_TO_PASS"
    assert classes(second.checks)["tests/test_new.py::test_new"] == "ADDED"
    base = workspace.store.shared_gate_runs("baseline", first.base)
    assert [(run.gate, run.status) for run in base] == [("tests", "failed")]  # one run, shared by both
    # Nothing changed: the stored eval, at once, and audited both times.
    again = evaluate(workspace, careless)
    assert again.stored and again.report_id == first.report_id and again.as_dict()["checks"] == first.as_dict()[
        "checks"]
    runs = [e for e in workspace.audit.entries() if e.action == "eval.run" and e.subject == careless]
    assert [e.details["stored"] for e in runs] == [False, True]
    # One gate asked, after both: its part of the stored eval (gate 1 ran its checks again, 3 s, unmarked).
    one, two = evaluate(workspace, careless, which="1"), evaluate(workspace, careless, which="2")
    assert one.stored and one.which == "1" and one.score is None and one.as_dict()["checks"] == first.as_dict()["checks"]
    assert two.stored and two.which == "2" and two.score == first.score
    assert [run.status for run in workspace.store.gate_runs(careless)].count("failed") == 1  # gate 1 ran once


def test_a_test_that_passes_on_its_rerun_is_flaky_not_a_regression(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path)
    flaky = ("from pathlib import Path\n\n\ndef test_sometimes():\n"
             "    marker = Path('.flaky-marker')\n    first = not marker.exists()\n"
             "    marker.write_text('x')\n    assert not first\n")
    sandbox = sandbox_with(workspace, "a flaky test", {"tests/test_flaky.py": flaky})
    report = evaluate(workspace, sandbox, which="1")
    assert report.gate1 == "passed", report.summary()
    assert report.flaky == ("tests/test_flaky.py::test_sometimes",)
    assert "1 flaky" in report.checks[0].summary


def test_a_test_broken_by_what_ran_before_it_is_a_regression_not_flaky(tmp_path: Path) -> None:
    """A change that memoises by one argument: `test_label` fails after `test_price` has run in every whole
    run, and passes alone: its rerun alone read it as flaky, and gate 1 passed the regression."""
    memo = PRICES.replace("def price(cents):\n    return cents / 100\n",
                          "_seen = {}\n\n\ndef price(cents):\n    _seen.setdefault('p', cents / 100)\n"
                          "    return _seen['p']\n")
    workspace = make_repo(tmp_path, extra={"tests/test_prices.py": TESTS.replace("price(250) == 2.5",
                                                                                  "price(100) == 1.0")})
    sandbox = sandbox_with(workspace, "memoise the price", {"shop/prices.py": memo})
    report = evaluate(workspace, sandbox, which="1")
    assert report.gate1 == "failed" and report.flaky == (), report.summary()
    assert "regressed: tests/test_prices.py::test_label" in report.checks[0].summary, report.checks[0].summary


@pytest.mark.parametrize("gate, expected", [
    # Hanging at the base commit too, as "already failing": not the change's doing (every sandbox on a hanging
    # base was blocked by it, each needing an override).
    ('  - name: hangs\n    run: ["sh", "-c", "sleep 60 & sleep 60"]\n    timeout: 1\n',
     "not judged: it times out on the base commit too (timed out after 1s"),
    ('  - name: missing\n    run: ["no-such-checker-xyz"]\n', "'no-such-checker-xyz' is not on PATH"),
])
def test_a_check_that_hangs_or_cannot_run_is_an_error_result(tmp_path: Path, gate: str, expected: str) -> None:
    workspace = make_repo(tmp_path, gates=gate)
    sandbox = sandbox_with(workspace, "anything", {"README.md": "hi\n"})
    started = time.monotonic()
    [result] = run_configured_gates(workspace, sandbox)
    assert result.status == ("passed" if "hangs" in gate else "error") and expected in result.summary, result.summary
    assert time.monotonic() - started < 30  # the whole group was killed, not waited for
    if "hangs" in gate:  # gate 2 says its tests were not judged (it read "no test ... regressed", 90)
        tests_item = evaluate(workspace, sandbox, which="2").score.item("tests")  # type: ignore[union-attr]
        assert tests_item.status == "warn" and "1 check not judged" in tests_item.headline, tests_item
    if "missing" in gate:  # the baseline's JSON says why too, as its text does (it has no result to read)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["-C", str(workspace.root), "eval", "--baseline", "--json"]) == 0
        [check] = json.loads(out.getvalue())["checks"]
        assert check["result"] is None and expected in check["summary"]


def test_a_check_named_by_a_path_runs_from_the_tree_whatever_folder_it_is_asked_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run: ["./scripts/check.sh"]` was looked for from the caller's folder: "not on PATH" in every review
    (the supervisor runs in the sandbox's state folder) and from a subfolder of the checkout."""
    workspace = make_repo(tmp_path, gates='  - name: script\n    run: ["./scripts/check.sh"]\n',
                          extra={"scripts/check.sh": "#!/bin/sh\necho checked\n"})
    (workspace.root / "scripts" / "check.sh").chmod(0o755)
    git(workspace.root, "commit", "-qam", "an executable check")
    sandbox = sandbox_with(workspace, "anything", {"README.md": "hi\n"})
    monkeypatch.chdir(workspace.root / "shop")
    [result] = run_configured_gates(workspace, sandbox)
    assert result.status == "passed", result.summary
    (workspace.root / "scripts" / "check.sh").unlink()
    git(workspace.root, "commit", "-qam", "no check")
    [gone] = run_configured_gates(workspace, sandbox_with(workspace, "again", {"README.md": "ho\n"}))
    assert gone.status == "error" and "'./scripts/check.sh' is no file in the tree the check runs in" in gone.summary


def test_a_check_the_change_makes_hang_is_an_error_its_base_passing(tmp_path: Path) -> None:
    gate = '  - name: hangs\n    run: ["sh", "-c", "test -f hang && sleep 60; true"]\n    timeout: 1\n'
    workspace = make_repo(tmp_path, gates=gate)
    [result] = run_configured_gates(workspace, sandbox_with(workspace, "a hang", {"hang": "x\n"}))
    assert result.status == "error" and result.summary.startswith("timed out after 1s"), result.summary


def test_megabytes_of_output_are_all_on_disk_with_a_bounded_tail(tmp_path: Path) -> None:
    chatty = ('  - name: chatty\n    run: ["python", "-c", "import sys\\nfor i in range(200000): '
              'print(i, \'x\' * 40)\\nsys.exit(3)"]\n')
    workspace = make_repo(tmp_path, gates=chatty)
    sandbox = sandbox_with(workspace, "anything", {"README.md": "hi\n"})
    [result] = run_configured_gates(workspace, sandbox)
    assert result.exit_code == 3 and "already failing on the base commit" in result.summary
    log = Path(result.log)
    assert log.stat().st_size > 8_000_000
    assert len(result.output_tail) == 40 and result.output_tail[-1].startswith("199999 ")


def test_a_missing_or_malformed_junit_report_is_said_and_the_exit_code_used(tmp_path: Path) -> None:
    """Broken at the base commit too, the check's own set-up is: the change is judged by the exit code (and the
    report's problem said), not failed for it. Broken by the change alone, the exit code cannot tell the change's
    failures from the base's: failed, saying why."""
    copy = '"import shutil, sys; shutil.copy(\'r.xml\', sys.argv[1])"'
    gates = ('  - name: nojunit\n    run: ["python", "-c", "import sys; sys.exit(1)", "{report}"]\n'
             '    format: junit\n'
             '  - name: badjunit\n    run: ["python", "-c", '
             '"import sys; open(sys.argv[1], \'w\').write(\'<testsuite>\')", "{report}"]\n    format: junit\n'
             f'  - name: copied\n    run: ["python", "-c", {copy}, "{{report}}"]\n    format: junit\n')
    good = '<testsuite><testcase classname="t" name="ok"/></testsuite>\n'
    workspace = make_repo(tmp_path, gates=gates, extra={"r.xml": good})
    sandbox = sandbox_with(workspace, "anything", {"README.md": "hi\n", "r.xml": "<testsuite><testcase name="})
    results = {r.gate: r for r in run_configured_gates(workspace, sandbox)}
    missing, malformed, broken_here = results["nojunit"], results["badjunit"], results["copied"]
    assert missing.status == "passed" and "already failing on the base commit" in missing.summary
    assert "no per-test results at the base commit either (the check wrote no report" in missing.summary
    assert malformed.status == "passed"
    assert "the JUnit report report is not valid XML" in malformed.summary  # its own name, not loomtui's copy's
    assert broken_here.status == "failed" and "no per-test results (the JUnit report" in broken_here.summary


def test_a_baseline_starved_of_its_report_is_measured_again_not_used_to_excuse_a_change_with_none(
        tmp_path: Path) -> None:
    """An agent's tests filled the disk while the base commit's run went beside them: that run wrote no report,
    kept as the commit's baseline; then a change whose tests exit 1 before any report (its regression with them)
    was judged by exit code, "already failing", and passed gate 1."""
    workspace = make_repo(tmp_path)
    honest = sandbox_with(workspace, "a doc", {"README.md": "hi\n"})
    [kept] = run_configured_gates(workspace, honest)
    assert kept.status == "passed" and kept.baseline_run is not None
    starved = workspace.store.gate_run(kept.baseline_run)
    result = dict(starved.data["result"], cases=None, outcome="failed", exit_code=1,
                  problem="the JUnit report report is empty")
    workspace.store.finish_gate_run(starved.id, "failed", {**starved.data, "result": result})
    silent = "import os, sys\nif any(arg.startswith('--junitxml') for arg in sys.argv):\n    os._exit(1)\n"
    hidden = sandbox_with(workspace, "labels in cents", {"shop/prices.py": PRICES.replace("/ 100", "// 100"),
                                                          "tests/conftest.py": silent})
    [judged] = run_configured_gates(workspace, hidden)
    assert judged.status == "failed" and "no per-test results" in judged.summary, judged.summary
    assert judged.baseline_run != starved.id and workspace.store.gate_run(judged.baseline_run).data["result"]["cases"]
    # A base whose suite truly writes no report is run again once, not at every review.
    runs = len(workspace.store.shared_gate_runs("baseline", starved.commit_sha))
    again = workspace.store.gate_run(judged.baseline_run)
    workspace.store.finish_gate_run(again.id, "failed", {**again.data, "result": result})
    [rejudged] = run_configured_gates(workspace, hidden)
    assert len(workspace.store.shared_gate_runs("baseline", starved.commit_sha)) == runs
    assert rejudged.baseline_run == again.id and rejudged.status == "passed", rejudged.summary


def test_what_a_check_writes_beside_its_report_goes_once_it_is_read(tmp_path: Path) -> None:
    """300 MB a test wrote beside its report stayed in `.git/loom/evals` after the sandbox was removed."""
    junk = ("import os, sys\nfolder = os.path.dirname(sys.argv[1])\nopen(os.path.join(folder, 'junk'), 'w')"
            ".write('x' * 1000)\nopen(os.path.join(os.environ['TMPDIR'], 'junk'), 'w').write('x')\n"
            "open(sys.argv[1], 'w').write('<testsuite><testcase classname=\\'t\\' name=\\'ok\\'/></testsuite>')\n")
    gate = '  - name: writes\n    run: ["python", "writer.py", "{report}"]\n    format: junit\n'
    workspace = make_repo(tmp_path, gates=gate, extra={"writer.py": junk})
    sandbox = sandbox_with(workspace, "a doc", {"README.md": "hi\n"})
    [result] = run_configured_gates(workspace, sandbox)
    assert result.status == "passed", result.summary
    for run_id in (result.run_id, result.baseline_run):
        folder = Path(result.log).parent.parent / str(run_id)
        assert (folder / "output.log").is_file() and (folder / "report.read").is_file()
        assert not (folder / "reports").exists() and not (folder / "tmp").exists()


def test_a_check_is_stopped_once_its_disk_runs_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change's tests filling the disk filled the store's and the audit log's with it: stopped as an agent is."""
    from loomtui.execution import disk_room
    from loomtui.guardrails import checks

    workspace = make_repo(tmp_path, gates='  - name: fills\n    run: ["sleep", "30"]\n    timeout: 60\n')
    sandbox = sandbox_with(workspace, "a doc", {"README.md": "hi\n"})
    monkeypatch.setattr(checks.disk_room, "shortage", lambda places: disk_room.Shortage(
        "the check's run", Path(next(iter(places))[1]), 10 << 20, 1 << 30))
    started = time.monotonic()
    [result] = run_configured_gates(workspace, sandbox)
    assert result.status == "error" and "stopped: the disk holding the check's run" in result.summary
    assert "10.0 MiB free, under 1.0 GiB" in result.summary, result.summary
    assert time.monotonic() - started < 20
    # A disk short already when it began, which it does not fill: it runs, as an agent would (every check on a
    # disk with less than 1 GiB free was an error, every review blocked).
    workspace = make_repo(tmp_path / "short", gates='  - name: quiet\n    run: ["sleep", "2"]\n    timeout: 60\n')
    sandbox = sandbox_with(workspace, "a doc", {"README.md": "hi\n"})
    monkeypatch.setattr(checks.disk_room, "shortage", lambda places: disk_room.Shortage(
        "the check's run", Path(next(iter(places))[1]), 700 << 20, 1 << 30))
    monkeypatch.setattr(checks.disk_room, "free_bytes", lambda path: 700 << 20)
    [quiet] = run_configured_gates(workspace, sandbox)
    assert quiet.status == "passed", quiet.summary


def test_a_findings_report_read_from_the_output_is_stdout_alone(tmp_path: Path) -> None:
    """`ruff check --output-format json .` with a warning on stderr (its config's deprecated key): the JSON read
    from stdout and stderr together was no JSON, and every sandbox failed ("no findings could be read")."""
    lint = ('  - name: lint\n    run: ["python", "-c", "import sys; sys.stderr.write(\'warning: select is '
            'deprecated\\\\n\'); print(\'[]\')"]\n    format: ruff-json\n')
    workspace = make_repo(tmp_path, gates=lint)
    [result] = run_configured_gates(workspace, sandbox_with(workspace, "anything", {"README.md": "hi\n"}))
    assert (result.status, result.summary) == ("passed", "no findings"), result.summary
    assert "warning: select is deprecated" in Path(result.log).read_text()  # said in the log all the same
    assert not (Path(result.log).parent / "stderr.log").exists()


def test_a_findings_check_that_fails_reporting_nothing_fails_saying_why_and_keeps_its_stderr_bounded(
        tmp_path: Path) -> None:
    """mypy exits 2 with its error on stderr (a plugin that does not import, an agent's mypy.ini): read as "no
    findings", gate 1 passed a check that never ran, its error in the log file alone; and 600 MiB on stderr was a
    file of its own per run, never removed."""
    from loomtui.guardrails import checks

    broken = ('  - name: types\n    run: ["python", "-c", "import sys, os; sys.stderr.write(\'error: no plugin\\\\n\' '
              '+ \'x\' * (3 << 20)) if os.path.exists(\'broken\') else None; print(\'\'); '
              'sys.exit(2 if os.path.exists(\'broken\') else 0)"]\n    format: mypy-json\n')
    workspace = make_repo(tmp_path, gates=broken)
    [result] = run_configured_gates(workspace, sandbox_with(workspace, "anything", {"broken": "1\n"}))
    assert result.status == "failed" and "exited 2 reporting no finding" in result.summary, result.summary
    assert any("error: no plugin" in line for line in result.output_tail), result.output_tail
    log = Path(result.log)
    assert log.stat().st_size < 2 * checks.MAX_STDERR_BYTES and not (log.parent / "stderr.log").exists()
    # Failing so at the base commit too: not the change's (every sandbox was blocked by a broken base).
    git(workspace.root, "commit", "-q", "--allow-empty", "-m", "x")
    (workspace.root / "broken").write_text("1\n")
    git(workspace.root, "add", "broken")
    git(workspace.root, "commit", "-qm", "the base breaks the tool")
    [result] = run_configured_gates(workspace, sandbox_with(workspace, "again", {"README.md": "hi\n"}))
    assert result.status == "passed" and "already failing on the base commit" in result.summary, result.summary


def test_a_report_that_is_not_a_regular_file_is_not_read(tmp_path: Path) -> None:
    fifo = ('  - name: fifo\n    run: ["python", "-c", "import os, sys; os.mkfifo(sys.argv[1])", "{report}"]\n'
            '    format: ruff-json\n    timeout: 10\n')
    workspace = make_repo(tmp_path, gates=fifo)
    sandbox = sandbox_with(workspace, "anything", {"README.md": "hi\n"})
    started = time.monotonic()
    [result] = run_configured_gates(workspace, sandbox)
    assert result.status == "failed" and "is not a regular file" in result.summary
    assert time.monotonic() - started < 20  # never blocked opening the FIFO


def test_a_repository_with_no_test_yet_does_not_fail_every_change(tmp_path: Path) -> None:
    """pytest configured and no test yet: the base's run and every change's exit 5 with no test, and each change
    that added none was failed (and blocked by the red-gates rule); one that adds a failing test still fails."""
    workspace = make_repo(tmp_path)
    git(workspace.root, "rm", "-q", "tests/test_prices.py")
    git(workspace.root, "commit", "-qm", "no tests yet")
    sandbox = sandbox_with(workspace, "a note", {"shop/notes.py": "NOTE = 1\n"})
    [result] = run_configured_gates(workspace, sandbox)
    assert (result.status, result.summary) == ("passed", "no test ran, nor at the base commit (exit 5 there too)")
    failing = sandbox_with(workspace, "a failing test", {"tests/test_new.py": "def test_new():\n    assert False\n"})
    [result] = run_configured_gates(workspace, failing)
    assert result.status == "failed" and "tests/test_new.py::test_new" in result.summary, result.summary


def test_a_check_that_cannot_be_judged_is_an_error_never_a_run_left_running(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An input no check foresaw (a report nested past the parser's depth) ended the review in an internal error,
    the sandbox stuck in gating and its gate runs `running` for good."""
    from loomtui.guardrails import gates

    def cannot(*_args: object) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(gates, "judge", cannot)
    workspace = make_repo(tmp_path)
    sandbox = sandbox_with(workspace, "anything", {"README.md": "hi\n"})
    [result] = run_configured_gates(workspace, sandbox)
    assert result.status == "error" and result.summary == (
        "the check could not be judged: internal error: RecursionError: maximum recursion depth exceeded"), result
    assert [run.status for run in workspace.store.gate_runs(sandbox)] == ["error"]


def test_a_sandbox_removed_while_its_gate_runs_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    slow = '  - name: slow\n    run: ["python", "-c", "import time; time.sleep(2)"]\n'
    workspace = make_repo(tmp_path, gates=slow)
    sandbox = sandbox_with(workspace, "anything", {"README.md": "hi\n"})
    worktree = Path(workspace.store.get_sandbox(sandbox).worktree)  # type: ignore[union-attr]
    remover = threading.Timer(0.8, lambda: git(workspace.root, "worktree", "remove", "--force", str(worktree)))
    remover.start()
    try:
        [result] = run_configured_gates(workspace, sandbox)
    finally:
        remover.join()
    assert result.status == "error" and "removed while the check ran" in result.summary


def test_two_changes_that_hang_together_are_named_not_read_as_breaking_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One waits for a file the other adds: each passes alone, merged the check times out. An error there
    read as "no two pending sandboxes break anything together" (exit 0), and the review saw no break."""
    workspace = make_repo(tmp_path, JUNIT_GATE.replace("timeout: 60", "timeout: 3"))
    waits = sandbox_with(workspace, "waits while the marker exists", {"tests/test_wait.py": (
        "import os, time\n\n\ndef test_wait():\n    while os.path.exists('shop/marker.py'):\n"
        "        time.sleep(0.2)\n")})
    marker = sandbox_with(workspace, "adds the marker", {"shop/marker.py": "MARK = 1\n"})
    for sandbox in (waits, marker):
        workspace.store.update_sandbox(sandbox, status="awaiting_review")
    [report] = merged_gate(workspace)
    assert report.unfinished() == ["tests"]
    assert [set(b.sandboxes) for b in report.breaking] == [{waits, marker}]
    assert report.breaks_with(waits) == (marker,)  # what a review of either reads: a person looks
    assert main(["-C", str(workspace.root), "eval", "--merged"]) == 1
    out = capsys.readouterr().out
    assert "break tests together" in out and "no two pending sandboxes" not in out


def test_the_merged_gates_report_has_one_header_and_a_passed_check_no_empty_brackets(
        repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import loomtui.guardrails.merged as merged
    from loomtui.cli import main

    def gate(workspace: object, *, force: bool, say: Any) -> list[merged.MergedReport]:
        say("merged gate on main (abc): a1, b2 merged")  # as it goes: progress
        return [merged.MergedReport("main", "abc", "def", ("a1", "b2"), checks=(
            {"gate": "compile", "status": "passed", "reason": ""},
            {"gate": "tests", "status": "passed", "reason": "3 passed"}))]

    monkeypatch.setattr(merged, "merged_gate", gate)
    assert main(["-C", str(repo), "eval", "--merged"]) == 0
    said = capsys.readouterr()
    assert said.out.splitlines() == ["merged gate on main (abc): 2 sandboxes merged (a1, b2)", "  compile passed",
                                     "  tests passed (3 passed)", "  no two pending sandboxes break anything together"]
    assert said.err == "merged gate on main (abc): a1, b2 merged\n"


def test_the_merged_gate_names_two_changes_that_pass_alone_but_break_together(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path)
    # One makes prices whole cents (and updates its tests); the other adds a caller that counts on euros.
    cents = sandbox_with(workspace, "prices in cents", {
        "shop/prices.py": PRICES.replace("cents / 100", "cents").replace("price(cents):.2f", "price(cents) / 100:.2f"),
        "tests/test_prices.py": TESTS.replace("== 2.5", "== 250")})
    basket = "from shop.prices import price\n\n\ndef total(items):\n    return sum(price(c) for c in items)\n"
    test = "from shop.basket import total\n\n\ndef test_total():\n    assert total([100, 250]) == 3.5\n"
    total = sandbox_with(workspace, "basket total", {"shop/basket.py": basket, "tests/test_basket.py": test})
    unrelated = sandbox_with(workspace, "docs", {"README.md": "shop\n"})
    for sandbox in (cents, total, unrelated):
        assert evaluate(workspace, sandbox, which="1").gate1 == "passed"
        workspace.store.update_sandbox(sandbox, status="awaiting_review")
    [report] = merged_gate(workspace)
    assert set(report.sandboxes) == {cents, total, unrelated}
    assert [(set(b.sandboxes), b.tests) for b in report.breaking] == [
        ({cents, total}, ("tests/test_basket.py::test_total",))]
    assert report.breaks_with(cents) == (total,) and report.breaks_with(unrelated) == ()
    assert merged_gate(workspace)[0].stored
    entries = [e for e in workspace.audit.entries() if e.action == "eval.merged"]
    assert [[set(found) for found in e.details["breaking"]] for e in entries] == [[{cents, total}]] * 2


def test_a_pending_change_to_how_the_checks_run_takes_the_blame_for_what_breaks_beside_it(tmp_path: Path) -> None:
    """A hostile agent's conftest.py failing only when another sandbox's file is there had that change (a one-line
    doc) held for a lead as breaking together with it."""
    workspace = make_repo(tmp_path)
    trap = ("import os\n\nimport pytest\n\n\n@pytest.fixture(autouse=True)\ndef _trap():\n"
            "    assert not os.path.exists('docs/victim.md')\n")
    attacker = sandbox_with(workspace, "a fixture", {"conftest.py": trap})
    victim = sandbox_with(workspace, "a doc", {"docs/victim.md": "a line\n"})
    for sandbox in (attacker, victim):
        assert evaluate(workspace, sandbox, which="1").gate1 == "passed"
        workspace.store.update_sandbox(sandbox, status="awaiting_review")
    [report] = merged_gate(workspace)
    [found] = report.breaking
    assert set(found.sandboxes) == {attacker, victim} and found.suspects == (attacker,)
    assert report.breaks_with(victim) == () and report.breaks_with(attacker) == (victim,)
    assert found.line().endswith(f"({attacker} changes how the checks run: the break is counted against that "
                                 "change alone)")
    assert merged_gate(workspace)[0].breaking[0].suspects == (attacker,)  # kept with the stored report
    audited = [e.details for e in workspace.audit.entries() if e.action == "eval.merged"]
    assert [entry["suspects"] for entry in audited] == [[[attacker]]] * 2  # whom the record blames, as the gate did
    # A conftest.py decides how pytest runs, not how `compile` does; a gate init did not write could be either.
    from loomtui.guardrails.merged import _changing_check_setup

    records = [workspace.store.get_sandbox(s) for s in (attacker, victim)]
    assert [_changing_check_setup(workspace, gate, report.onto, records) for gate in ("tests", "compile", "lint")] == [
        {attacker}, set(), {attacker}]


def test_eval_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = make_repo(tmp_path, JUNIT_GATE + '  - name: quiet\n    run: ["true"]\n')
    sandbox = sandbox_with(workspace, "labels in cents", {"shop/prices.py": PRICES.replace("/ 100", "// 100")})
    root = str(workspace.root)
    assert main(["-C", root, "eval", sandbox]) == 1
    out = capsys.readouterr().out
    assert "gate 1 failed" in out and "PASS_TO_FAIL  tests/test_prices.py::test_price" in out
    assert "gate 2 score" in out
    assert main(["-C", root, "eval", "--baseline"]) == 0
    out, err = capsys.readouterr()
    assert "  running tests at " in err and "  running quiet at " in err  # a suite of minutes was silence
    assert "tests at " in out and re.search(r"^quiet at \w+: passed \[run #\d+\]$", out, re.M), out  # no "()"
    assert main(["-C", root, "eval", "--merged", "--json"]) == 0
    assert '"merged": []' in capsys.readouterr().out
    assert main(["-C", root, "eval"]) == 2
    assert "name a SANDBOX" in capsys.readouterr().err
    assert main(["-C", root, "eval", "--baseline", "--gate", "2"]) == 2  # a gate is a sandbox's: not ignored
    assert "--gate 2 picks a gate of a sandbox's eval: name a SANDBOX" in capsys.readouterr().err
    assert main(["-C", root, "eval", "zzzzzz"]) != 0
    capsys.readouterr()
    # A sandbox with nothing committed yet: its target's code was evaluated, and its row read "✓ · 100".
    script = workspace.root.parent / "noop.yaml"
    idle = create_sandbox(workspace, "nothing yet", "script", script=script, isolate=False).id
    assert main(["-C", root, "eval", idle]) == 1
    assert capsys.readouterr().err.startswith(f"loomtui: error: sandbox {idle} has no change to evaluate: its "
                                              "branch has no commit beyond where it meets main (")
    assert workspace.store.latest_eval_report(idle, "sandbox") is None  # nothing stored, nothing for its row
    heard: list[str] = []
    baseline = evaluate_baseline(workspace, force=True, on_start=lambda name, _commit: heard.append(f"start {name}"),
                                 on_check=lambda check: heard.append(f"end {check[0]}"))
    assert [(name, record.status) for name, _, record in baseline] == [("tests", "passed"), ("quiet", "passed")]
    assert heard == ["start tests", "end tests", "start quiet", "end quiet"]  # each said as it ends, not at the end


def test_an_eval_with_no_gates_says_gate_1_ran_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A change that broke two tests showed only "gate 2 score 80 (passed)": no word that nothing ran."""
    workspace = make_repo(tmp_path, "  []\n")
    sandbox = sandbox_with(workspace, "labels in cents", {"shop/prices.py": PRICES.replace("/ 100", "// 100")})
    main(["-C", str(workspace.root), "eval", sandbox])
    out = capsys.readouterr().out
    assert "gate 1: no checks configured (`gates:` in .loom/loom.yaml" in out and "gate 2 score" in out


def test_inits_compile_gate_fails_a_new_syntax_error_where_the_base_has_a_file_that_does_not_compile(
        tmp_path: Path) -> None:
    """`compileall -q .` was judged by its exit code: with one py2 file on the base (a monorepo's fixtures),
    a new syntax error read "already failing on the base commit" and passed."""
    import json

    from loomtui.starter import starter

    workspace = make_repo(tmp_path, gates="", extra={"legacy/old.py": 'print "py2"\n'})
    config = starter(workspace.root, "lead@example.com").files[".loom/loom.yaml"]
    compile_gate = config[config.index("  - name: compile"):config.index("    timeout: 120")] + "    timeout: 120\n"
    (workspace.root / ".loom/loom.yaml").write_text("version: 1\ngates:\n" + compile_gate +
                                                     "eval: {merged_on_review: false}\n")
    git(workspace.root, "commit", "-qam", "the gate init writes")
    broken = sandbox_with(workspace, "a typo", {"shop/new.py": "def total(:\n"})
    fine = sandbox_with(workspace, "a comment", {"shop/prices.py": PRICES + "# prices in cents\n"})
    [failed] = run_configured_gates(workspace, broken)
    assert failed.status == "failed" and failed.findings is not None
    assert [(f.path, f.code) for f in failed.findings.new] == [("shop/new.py", "SyntaxError")]
    [kept] = run_configured_gates(workspace, fine)
    assert kept.status == "passed" and kept.findings is not None
    assert [f.path for f in kept.findings.existing] == ["legacy/old.py"], json.dumps(kept.summary)


def test_a_lint_check_fails_on_new_findings_only(tmp_path: Path) -> None:
    lint = ('  - name: lint\n    run: ["python", "-m", "ruff", "check", "--isolated", "--select", "F", '
            '"--output-format", "json", "--output-file", "{report}", "."]\n    format: ruff-json\n')
    workspace = make_repo(tmp_path, gates=lint, extra={"shop/old.py": "import os\n"})
    clean = sandbox_with(workspace, "a comment", {"shop/prices.py": PRICES + "# prices in cents\n"})
    # Its own file: the first sandbox's commit holds shop/prices.py, so a second agent's commit there is refused.
    sloppy = sandbox_with(workspace, "an unused import", {"shop/rates.py": "import sys\nRATE = 1\n"})
    [kept] = run_configured_gates(workspace, clean)
    assert kept.status == "passed" and kept.findings is not None
    assert [(f.path, f.code) for f in kept.findings.existing] == [("shop/old.py", "F401")] and not kept.findings.new
    [added] = run_configured_gates(workspace, sloppy)
    assert added.status == "failed" and added.findings is not None
    assert [(f.path, f.line, f.code) for f in added.findings.new] == [("shop/rates.py", 1, "F401")]


def test_gate_1_judges_the_committed_tip_not_what_the_worktree_leaves_lying_around(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path)
    sandbox = sandbox_with(workspace, "labels in cents", {"shop/prices.py": PRICES.replace("/ 100", "// 100"),
                                                          ".gitignore": "tests/conftest.py\n"})
    # Ignored, never committed: a conftest that patches the committed breakage back out.
    tree = Path(workspace.store.get_sandbox(sandbox).worktree)  # type: ignore[union-attr]
    (tree / "tests" / "conftest.py").write_text(
        "import shop.prices\nshop.prices.price = lambda cents: cents / 100\n")
    [result] = run_configured_gates(workspace, sandbox)
    assert result.status == "failed" and "tests/test_prices.py::test_price" in result.failed_tests


def test_a_gate_of_a_sandbox_run_without_isolation_is_the_oom_killer_s_first_choice(tmp_path: Path) -> None:
    """The agent's tests, as the agent: out of memory, they go before the person's editor or the store."""
    gate = ('  - name: oom\n    run: ["python", "-c", "import sys; score = open(\'/proc/self/oom_score_adj\').read(); '
            'print(score); sys.exit(score.strip() != \'1000\')"]\n    format: exit\n    timeout: 60\n')
    workspace = make_repo(tmp_path, gates=gate)
    sandbox = sandbox_with(workspace, "a change", {"shop/extra.py": "X = 1\n"})
    report = evaluate(workspace, sandbox, which="1")
    assert report.gate1 == "passed", report.summary()


def test_a_committed_file_past_the_largest_file_is_not_written_out_and_the_gate_says_so(tmp_path: Path) -> None:
    """A file of zeros is a few KB in git and all of its size on disk in every scratch tree (and it was read
    whole into memory to be written): past `limits.file_size` the check cannot run, and says why, and its
    sandbox is kept out of the merged gate, as a failed one is."""
    workspace = make_repo(tmp_path, gates=JUNIT_GATE + "limits: {file_size: 1M}\n")
    sandbox = sandbox_with(workspace, "a fixture", {"shop/extra.py": "X = 1\n"})
    tree = Path(workspace.store.get_sandbox(sandbox).worktree)  # type: ignore[union-attr]
    (tree / "fixture.bin").write_bytes(b"\0" * (2 << 20))
    git(tree, "add", "fixture.bin")
    git(tree, "commit", "-qm", "fixture")
    other = sandbox_with(workspace, "docs", {"README.md": "shop\n"})
    [result] = run_configured_gates(workspace, sandbox)
    assert result.status == "error"
    assert "'fixture.bin' (2.0 MiB) is larger than limits.file_size allows (1.0 MiB)" in result.summary
    for pending in (sandbox, other):
        workspace.store.update_sandbox(pending, status="awaiting_review")
    [report] = merged_gate(workspace)
    assert report.sandboxes == (other,) and report.checks[0]["status"] == "passed"



def test_a_large_file_the_base_has_is_checked_and_many_files_just_under_the_limit_are_not(tmp_path: Path) -> None:
    """One asset over the limit committed on main made every sandbox's gate err (the base's own files
    are the team's); 400 files just under it (sparse, nothing on the agent's disk) filled 500 MB at
    each export."""
    asset = "\0" * (2 << 20)
    workspace = make_repo(tmp_path, gates=JUNIT_GATE + "limits: {file_size: 1M}\n", extra={"model.bin": asset})
    fine = sandbox_with(workspace, "a small change", {"shop/extra.py": "X = 1\n"})
    many = sandbox_with(workspace, "many files", {f"data/f{n}.txt": "x" * 1_000_000 for n in range(11)})
    by_id = {r.gate: r for r in run_configured_gates(workspace, fine)}
    assert by_id["tests"].status == "passed", by_id["tests"].summary
    [result] = run_configured_gates(workspace, many)
    assert result.status == "error" and "more than 10 times limits.file_size (1.0 MiB) together" in result.summary
