"""Gate 1's readers and comparison (loomtui.guardrails.reports, loomtui.guardrails.classify).

The reports read here are written by the real pytest, ruff and mypy on crafted projects
(all started at once, once per module); hand-written ones cover what those tools never write.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from loomtui.guardrails.classify import (
    Classification,
    ClassifiedTest,
    FindingDiff,
    TestClass,
    classify,
    diff_findings,
    with_rerun,
)
from loomtui.guardrails.reports import (
    Finding,
    Outcome,
    ReportProblem,
    TestCase,
    read_junit,
    read_mypy_json,
    read_ruff_json,
    read_sarif,
    rerun_argv,
)

INVOICES = '''\
import os
import time
from pathlib import Path

import pytest

CHANGED = os.environ.get("EVAL_CHANGED") == "1"  # the sandbox's version of the code


@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")


def test_pass():
    time.sleep(0.01)  # a duration JUnit's three decimals do not round to 0 on a fast machine


def test_fail():
    assert 1 == 2, "one is not two"


def test_error(broken):
    pass


@pytest.mark.skip(reason="not on this platform")
def test_skip():
    pass


@pytest.mark.xfail(reason="known bug 12")
def test_xfail():
    assert False


@pytest.mark.xfail(reason="maybe fixed")
def test_xpass():
    pass


@pytest.mark.parametrize("n", [1, 2, "a b", "x.y::z"])
def test_param(n):
    assert n != 2 or not CHANGED


def test_fixed():
    assert CHANGED, "not yet"


def test_flaky():
    mark = Path(os.environ["EVAL_FLAKY_MARK"])
    if CHANGED and not mark.exists():  # fails on its first run in the sandbox only
        mark.touch()
        assert False, "flaked"


if CHANGED:
    def test_new_ok():
        pass

    def test_new_bad():
        assert False, "new and broken"
else:
    def test_gone():
        pass


class TestC:
    def test_y(self):
        pass

    def test_z(self):
        if CHANGED:
            pytest.skip("imperative skip")
'''
DEEP = '''\
class TestD:
    class TestInner:
        def test_n(self):
            pass


def test_deep():
    pass
'''
TEARDOWN = '''\
import pytest


@pytest.fixture
def bad_teardown():
    yield
    raise RuntimeError("teardown boom")


def test_fail_and_teardown(bad_teardown):
    assert False, "call failed"
'''
VERSIONED = '''\
class TestK:
    def test_k(self):
        pass
'''
LINT_BEFORE = '''\
import os


def add(a: int, b: int) -> int:
    return a + b
'''
LINT_AFTER = '''\
"""Three lines
pushed every finding down.
"""
import os
import sys
import json


def add(a: int, b: int) -> int:
    return a + "b"


reveal_type(add)
'''


def inner_env(**extra: str) -> dict[str, str]:
    """This environment without the outer pytest's (and coverage's) variables, plugins not autoloaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    return {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **extra}


def write(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]


@dataclass(frozen=True)
class Reports:
    project: Path
    before_xml: Path
    after_xml: Path
    broken: Path
    broken_xml: Path
    flaky_mark: Path
    lint_before: Path
    lint_after: Path
    output: dict[str, str]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reports]:
    """Every real report, written at once: the base commit's run, the sandbox's, and the linters'."""
    base = tmp_path_factory.mktemp("reports")
    project = write(base / "proj", {
        "pytest.ini": "[pytest]\n", "tests/__init__.py": "", "tests/sub/__init__.py": "",
        "tests/test_invoices.py": INVOICES, "tests/sub/test_deep.py": DEEP,
        "tests/test_teardown.py": TEARDOWN, "tests/v1.2/test_versioned.py": VERSIONED})
    broken = write(base / "broken", {"pytest.ini": "[pytest]\n", "tests/__init__.py": "",
                                     "tests/test_broken.py": "import no_such_module_zz\n"})
    lint_before = write(base / "before", {"pkg/__init__.py": "", "pkg/mod.py": LINT_BEFORE})
    lint_after = write(base / "after", {"pkg/__init__.py": "", "pkg/mod.py": LINT_AFTER,
                                        "pkg/has space.py": "import json\n", "mypy.ini": "[mypy]\n"})
    paths = Reports(project, base / "before.xml", base / "after.xml", broken,
                    base / "broken.xml", base / "flaky.mark", lint_before, lint_after, {})
    ruff = [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "F"]
    commands = {
        # The baseline in pytest's other JUnit flavour, which names each case's file.
        "before": (PYTEST + ["-o", "junit_family=xunit1", f"--junitxml={paths.before_xml}", "tests"], project, {}),
        "after": (PYTEST + [f"--junitxml={paths.after_xml}", "tests"], project,
                  {"EVAL_CHANGED": "1", "EVAL_FLAKY_MARK": str(paths.flaky_mark)}),
        "broken": (PYTEST + [f"--junitxml={paths.broken_xml}", "tests"], broken, {}),
        "ruff_before": (ruff + ["--output-format", "json", "pkg"], lint_before, {}),
        "ruff_after": (ruff + ["--output-format", "json", "pkg"], lint_after, {}),
        "sarif_after": (ruff + ["--output-format", "sarif", "pkg"], lint_after, {}),
        "mypy_after": ([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--output", "json",
                        "--no-incremental", "--cache-dir", os.devnull, "pkg/mod.py"], lint_after, {}),
    }
    env = inner_env(EVAL_FLAKY_MARK=str(base / "unused.mark"))
    running = {name: subprocess.Popen(argv, cwd=cwd, env={**env, **extra}, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
               for name, (argv, cwd, extra) in commands.items()}
    for name, process in running.items():
        paths.output[name] = process.communicate(timeout=60)[0]
    yield paths


# ----- JUnit, as pytest writes it

AFTER_OUTCOMES = {
    "tests/test_invoices.py::test_pass": Outcome.passed,
    "tests/test_invoices.py::test_fail": Outcome.failed,
    "tests/test_invoices.py::test_error": Outcome.error,
    "tests/test_invoices.py::test_skip": Outcome.skipped,
    "tests/test_invoices.py::test_xfail": Outcome.xfailed,
    "tests/test_invoices.py::test_xpass": Outcome.passed,  # pytest's JUnit writes a non-strict xpass as a pass
    "tests/test_invoices.py::test_param[1]": Outcome.passed,
    "tests/test_invoices.py::test_param[2]": Outcome.failed,
    "tests/test_invoices.py::test_param[a b]": Outcome.passed,
    "tests/test_invoices.py::test_param[x.y::z]": Outcome.passed,
    "tests/test_invoices.py::test_fixed": Outcome.passed,
    "tests/test_invoices.py::test_flaky": Outcome.failed,
    "tests/test_invoices.py::test_new_ok": Outcome.passed,
    "tests/test_invoices.py::test_new_bad": Outcome.failed,
    "tests/test_invoices.py::TestC::test_y": Outcome.passed,
    "tests/test_invoices.py::TestC::test_z": Outcome.skipped,
    "tests/sub/test_deep.py::TestD::TestInner::test_n": Outcome.passed,
    "tests/sub/test_deep.py::test_deep": Outcome.passed,
    "tests/test_teardown.py::test_fail_and_teardown": Outcome.error,  # and failed: two cases, one id
    "tests/v1.2/test_versioned.py::TestK::test_k": Outcome.passed,
}


def test_pytest_junit_becomes_node_ids_and_outcomes(reports: Reports) -> None:
    cases = read_junit(reports.after_xml, reports.project)
    assert {c.id: c.outcome for c in cases} == AFTER_OUTCOMES, reports.output["after"]
    by_id = {(c.id, c.outcome): c for c in cases}
    assert by_id["tests/test_invoices.py::test_fail", Outcome.failed].message == "AssertionError: one is not two"
    assert by_id["tests/test_invoices.py::test_error", Outcome.error].message == \
        'failed on setup with "RuntimeError: fixture exploded"'
    assert by_id["tests/test_invoices.py::test_skip", Outcome.skipped].message == "not on this platform"
    assert by_id["tests/test_invoices.py::test_xfail", Outcome.xfailed].message == "known bug 12"
    assert by_id["tests/test_invoices.py::TestC::test_z", Outcome.skipped].message == "imperative skip"
    teardown = [c for c in cases if c.id == "tests/test_teardown.py::test_fail_and_teardown"]
    assert [c.outcome for c in teardown] == [Outcome.failed, Outcome.error]
    assert all(c.duration_s >= 0 for c in cases) and any(c.duration_s > 0 for c in cases)


def test_the_xunit1_file_attribute_gives_the_same_ids(reports: Reports) -> None:
    assert 'file="tests/test_invoices.py"' in reports.before_xml.read_text()
    ids = {c.id for c in read_junit(reports.before_xml)}  # no root needed: the report names each file
    assert ids ^ {c.id for c in read_junit(reports.after_xml, reports.project)} == {
        "tests/test_invoices.py::test_gone", "tests/test_invoices.py::test_new_ok",
        "tests/test_invoices.py::test_new_bad"}


def test_without_a_root_the_ids_are_pytest_classnames(reports: Reports) -> None:
    ids = {c.id for c in read_junit(reports.after_xml)}
    assert "tests.test_invoices::test_pass" in ids and "tests.test_invoices.TestC::test_y" in ids


def test_a_module_that_cannot_be_imported_is_an_error_named_by_its_path(reports: Reports) -> None:
    [case] = read_junit(reports.broken_xml, reports.broken)
    assert case.id == "tests/test_broken.py" and case.outcome is Outcome.error
    assert case.message == "ModuleNotFoundError: No module named 'no_such_module_zz'"


def test_a_file_that_failed_collection_and_runs_now_is_fixed_and_a_stopped_run_is_not_judged(tmp_path: Path) -> None:
    """Real pytest runs: fixing a test file's import read "a test removed" (gate 2 failed the fix), and a run
    that stopped at the base's collection error read "passed (1 already failing)" with the change's failing
    test never run."""
    from loomtui.guardrails.checks import CheckRun
    from loomtui.guardrails.verdicts import judge

    project = write(tmp_path, {"tests/__init__.py": "", "tests/test_a.py": "def test_a():\n    pass\n",
                               "tests/test_b.py": "import no_such_module_zz\n\ndef test_b():\n    pass\n"})

    def run(name: str, *options: str) -> tuple[TestCase, ...]:
        subprocess.run([*PYTEST, *options, f"--junitxml={tmp_path / name}", "tests"], cwd=project, env=inner_env(),
                       capture_output=True, timeout=60, check=False)
        return tuple(read_junit(tmp_path / name, project))

    base_stopped, base_on = run("base.xml"), run("base-on.xml", "--continue-on-collection-errors")
    (project / "tests/test_c.py").write_text("def test_c():\n    assert False\n")
    stopped, went_on = run("c.xml"), run("c-on.xml", "--continue-on-collection-errors")
    (project / "tests/test_b.py").write_text("def test_b():\n    pass\n")
    fixed = run("fixed.xml")
    assert [c.id for c in base_stopped] == ["tests/test_b.py"]  # pytest stopped there: test_a never ran

    classes = {t.id: t.cls for t in classify(base_stopped, fixed).tests}
    assert classes["tests/test_b.py"] is TestClass.FAIL_TO_PASS and TestClass.REMOVED not in classes.values()
    assert classify(base_stopped, fixed).uncollected == ()
    [gone] = classify(base_stopped, [c for c in fixed if not c.id.startswith("tests/test_b.py")]).tests[-1:]
    assert (gone.id, gone.cls) == ("tests/test_b.py", TestClass.REMOVED)  # the broken file deleted: removed

    def check(cases: tuple[TestCase, ...]) -> CheckRun:
        failing = any(c.outcome.is_fail for c in cases)
        return CheckRun("failed" if failing else "passed", 2 if failing else 0, 1.0, "", (), "", cases=cases)

    verdict = judge(check(stopped), check(base_stopped), "junit")
    assert verdict.status == "passed" and verdict.reason.startswith("not judged: no test ran, here nor on the base")
    assert verdict.tests is not None and [t.id for t in verdict.tests.uncollected] == ["tests/test_b.py"]
    verdict = judge(check(went_on), check(base_on), "junit")  # the other files run: the failing test is seen
    assert verdict.status == "failed" and verdict.regressions == ("tests/test_c.py::test_c",)


def test_a_single_testsuite_root_and_other_runners_attributes(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "test_y.py").write_text("")
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuite name="x" tests="4">'
        '<testcase classname="com.acme.BillingTest" name="totals" time="1,234.5"/>'
        f'<testcase classname="src.test_y.TestY" name="t" file="{tmp_path}/src/test_y.py" time="bad"/>'
        '<testcase name="bare"><failure>first\nsecond</failure></testcase>'
        f'<testcase classname="src.test_y" name="long"><skipped message="{"w" * 500}"/></testcase>'
        '</testsuite>')
    cases = read_junit(report, tmp_path)
    assert [c.id for c in cases] == ["com.acme.BillingTest::totals", "src/test_y.py::TestY::t", "bare",
                                     "src/test_y.py::long"]
    assert cases[0].duration_s == 1234.5 and cases[1].duration_s == 0.0
    assert cases[2].outcome is Outcome.failed and cases[2].message == "first"
    assert cases[3].outcome is Outcome.skipped and len(cases[3].message) == 300


def test_looking_for_a_classnames_file_is_bounded_in_a_symlink_maze(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(".")
    (tmp_path / "a.a").symlink_to(".")  # `a.a.a...` could be walked in a Fibonacci number of ways
    report = tmp_path / "r.xml"
    report.write_text(f'<testsuite><testcase classname="{".".join(["a"] * 30)}.TestX" name="t"/></testsuite>')
    started = time.monotonic()
    [found] = read_junit(report, tmp_path)
    assert found.id == ".".join(["a"] * 30) + ".TestX::t" and time.monotonic() - started < 2


ENTITY_BOMB = ("<!DOCTYPE t [<!ENTITY a0 'aaaaaaaaaa'>"
               + "".join(f"<!ENTITY a{i + 1} '{f'&a{i};' * 10}'>" for i in range(8))
               + "]><testsuite><testcase name='&a8;'/></testsuite>")
EXTERNAL_ENTITY = ('<!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   '<testsuite><testcase name="t"><failure>&x;</failure></testcase></testsuite>')
BAD_JUNIT = {
    "missing": (None, "is missing"),
    "empty": ("", "is empty"),
    "truncated": ("<testsuites><testsuite>", "is not valid XML: no element found: line 1"),
    "mismatched": ("<testsuites></testsuite>", "is not valid XML: mismatched tag: line 1"),
    "binary": ("\x00\xff binary", "is not valid XML: syntax error: line 1, column 0"),
    "not-junit": ("<html><body>502</body></html>", "is not JUnit XML"),
    "external-entity": (EXTERNAL_ENTITY, "is not valid XML: undefined entity"),
    "entity-bomb": (ENTITY_BOMB, "is not valid XML: limit on input amplification"),
    # 50 KB of suites 2,000 deep: the review ended in an internal error, the sandbox stuck in gating.
    "nested-deep": ("<testsuites>" + "<testsuite name='s'>" * 2000 + "<testcase classname='a' name='t'/>"
                    + "</testsuite>" * 2000 + "</testsuites>", "nests its suites too deep to read"),
}


@pytest.mark.parametrize(("content", "problem"), BAD_JUNIT.values(), ids=BAD_JUNIT.keys())
def test_a_bad_junit_report_is_a_report_problem(tmp_path: Path, content: str | None, problem: str) -> None:
    report = tmp_path / "r.xml"
    if content is not None:
        report.write_text(content)
    with pytest.raises(ReportProblem, match="^the JUnit report r.xml " + re.escape(problem)) as caught:
        read_junit(report, tmp_path)
    assert "\n" not in str(caught.value)


def test_a_directory_where_the_report_should_be_is_a_report_problem(tmp_path: Path) -> None:
    with pytest.raises(ReportProblem, match="^the JUnit report .* cannot be read: Is a directory$"):
        read_junit(tmp_path)


# ----- linters and type checkers

def test_ruff_json_and_sarif_give_the_same_findings(reports: Reports) -> None:
    findings = read_ruff_json(reports.output["ruff_after"], reports.lint_after)
    assert sorted((f.path, f.line, f.code) for f in findings) == [
        ("pkg/has space.py", 1, "F401"), ("pkg/mod.py", 4, "F401"), ("pkg/mod.py", 5, "F401"),
        ("pkg/mod.py", 6, "F401"), ("pkg/mod.py", 13, "F821")]  # ruff does not know mypy's reveal_type
    assert {f.tool for f in findings} == {"ruff"} and "`os` imported but unused" in {f.message for f in findings}
    sarif = read_sarif(reports.output["sarif_after"], reports.lint_after)
    assert sorted(sarif, key=lambda f: (f.path, f.line)) == sorted(findings, key=lambda f: (f.path, f.line))
    assert read_ruff_json("[]", reports.lint_after) == []


def test_mypy_json_gives_errors_and_notes(reports: Reports) -> None:
    findings = read_mypy_json(reports.output["mypy_after"])
    assert [(f.path, f.line, f.code, f.severity) for f in findings] == [
        ("pkg/mod.py", 10, "operator", "error"), ("pkg/mod.py", 13, "misc", "note")], reports.output["mypy_after"]
    assert findings[0].message == 'Unsupported operand types for + ("int" and "str")'
    assert read_mypy_json("") == [] and read_mypy_json("Success: no issues found in 1 source file\n") == []


def test_findings_keep_their_identity_across_shifted_lines(reports: Reports) -> None:
    before = read_ruff_json(reports.output["ruff_before"], reports.lint_before)
    after = read_ruff_json(reports.output["ruff_after"], reports.lint_after)
    diff = diff_findings(before, after)
    assert [(f.path, f.line, f.message) for f in diff.existing] == [("pkg/mod.py", 4, "`os` imported but unused")]
    assert sorted(f.message for f in diff.new) == ["Undefined name `reveal_type`", "`json` imported but unused",
                                                   "`json` imported but unused", "`sys` imported but unused"]
    assert diff.fixed == () and diff.summary() == "4 new · 1 existing"


def test_mypy_paths_and_odd_lines() -> None:
    text = "\n".join([
        "some banner",
        json.dumps({"file": "/repo/src/a.py", "line": 3, "message": "m", "code": None, "severity": "error"}),
        "{not json",
        json.dumps({"file": None, "line": None, "message": "global", "hint": "h"}),
    ])
    assert read_mypy_json(text, Path("/repo")) == [Finding("mypy", "src/a.py", 3, "", "m"),
                                                   Finding("mypy", "", 0, "", "global")]


@pytest.mark.parametrize(("reader", "text", "problem"), [
    ("ruff", "", "the ruff report is empty"),
    ("ruff", "{", "the ruff report is not valid JSON"),
    pytest.param("ruff", "[" * 100_000, "the ruff report is not valid JSON: nested too deep", id="nested"),
    ("ruff", "{}", "the ruff report is not a JSON list"),
    ("ruff", '[{"message": "m"}]', "the ruff report has an entry without filename"),
    ("ruff", '[{"filename": 3, "message": "m"}]', "not text"),
    ("ruff", "[3]", "without filename"),
    ("mypy", "x.py: error: Cannot read file 'x.py': No such file or directory\n",
     "mypy printed no JSON findings but: x.py: error"),
    ("mypy", '{"file": "a.py", "line": 1}', "the mypy report has an entry without message"),
    ("mypy", '{"file": "a.py", "message": ["m"]}', "not text"),
    ("sarif", "", "the SARIF report is empty"),
    ("sarif", "[]", "the SARIF report has no runs list"),
    ("sarif", '{"runs": [{"tool": 3, "results": []}]}', "a run without tool.driver"),
    ("sarif", '{"runs": [{"tool": {"driver": {}}, "results": {}}]}', "a run without tool.driver or a results"),
])
def test_a_bad_findings_report_is_a_report_problem(reader: str, text: str, problem: str) -> None:
    read = {"ruff": lambda t: read_ruff_json(t, Path("/r")), "mypy": read_mypy_json,
            "sarif": lambda t: read_sarif(t, Path("/r"))}[reader]
    with pytest.raises(ReportProblem, match=problem):
        read(text)


def test_sarif_rules_by_index_relative_uris_and_non_failures() -> None:
    log = {"version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "semgrep", "rules": [{"id": "no-eval"}]}},
        "results": [
            {"ruleIndex": 0, "level": "error", "message": {"text": "eval is risky"},
             "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/a%20b.py", "uriBaseId": "%SRC%"},
                                                 "region": {"startLine": 7}}}]},
            {"ruleId": "x", "message": {"text": "no location"}},
            {"ruleId": "ok", "kind": "pass", "message": {"text": "checked"}},
        ]}]}
    assert read_sarif(json.dumps(log), Path("/r")) == [
        Finding("semgrep", "src/a b.py", 7, "no-eval", "eval is risky", "error"),
        Finding("semgrep", "", 0, "x", "no location", "warning")]


# ----- re-running failed tests

def test_rerun_argv_keeps_the_command_and_drops_what_stops_early() -> None:
    ids = ["tests/test_a.py::test_x[1]", "tests/test_a.py::TestC::test_y", "tests.test_a::test_z", "collected"]
    assert rerun_argv(["python", "-x", "-m", "pytest", "-x", "-q", "--lf", "--maxfail", "2", "-rx", "tests"], ids) \
        == ["python", "-x", "-m", "pytest", "-q", "-rx", "tests", ids[0], ids[1]]
    assert rerun_argv(["/venv/bin/py.test", "-xvs", "--exitfirst", "--last-failed", "--maxfail=1", "--sw",
                       "--junitxml={report}"], ids[:1]) == ["/venv/bin/py.test", "-vs", "--junitxml={report}", ids[0]]
    assert rerun_argv(["uv", "run", "pytest", "-n", "auto"], ids[:1]) == ["uv", "run", "pytest", "-n", "auto", ids[0]]
    assert rerun_argv(["python", "-mpytest"], ids[:1]) == ["python", "-mpytest", ids[0]]
    # The whole check run again (a test that passed alone): with `-x` the tests after the first failure did not.
    from loomtui.guardrails.reports import whole_run_argv

    assert whole_run_argv(["python", "-m", "pytest", "-x", "--maxfail=1", "-q", "--junitxml={report}"]) == [
        "python", "-m", "pytest", "-q", "--junitxml={report}"]
    assert whole_run_argv(["npm", "test"]) == ["npm", "test"]


@pytest.mark.parametrize("argv", [["python", "-m", "unittest"], ["ruff", "check"], ["npm", "test"],
                                  ["python", "-m", "pytest_like"], ["make", "pytest-all"]])
def test_rerun_argv_is_none_for_other_runners(argv: list[str]) -> None:
    assert rerun_argv(argv, ["tests/test_a.py::test_x"]) is None


def test_rerun_argv_is_none_without_a_node_id() -> None:
    assert rerun_argv(["pytest"], ["tests.test_a::test_x", "tests/test_a.py"]) is None


def test_a_real_rerun_of_the_failures_flags_the_flaky_one(reports: Reports) -> None:
    before = read_junit(reports.before_xml, reports.project)
    after = read_junit(reports.after_xml, reports.project)
    classification = classify(before, after)
    failing = [t.id for t in classification.tests if t.after is not None and t.after.is_fail]
    argv = rerun_argv(PYTEST + ["-x", f"--junitxml={reports.project / 'rerun.xml'}", "tests"], failing)
    assert argv is not None and "-x" not in argv
    subprocess.run(argv, cwd=reports.project, capture_output=True, timeout=60, check=False,
                   env=inner_env(EVAL_CHANGED="1", EVAL_FLAKY_MARK=str(reports.flaky_mark)))
    rerun = read_junit(reports.project / "rerun.xml", reports.project)
    assert {c.id for c in rerun} == set(failing)  # only the failures ran again
    final = with_rerun(classification, rerun)
    flaky = {t.id: t for t in final.tests if t.flaky}
    assert list(flaky) == ["tests/test_invoices.py::test_flaky"]
    assert flaky["tests/test_invoices.py::test_flaky"].cls is TestClass.PASS_TO_PASS
    assert flaky["tests/test_invoices.py::test_flaky"].message == "AssertionError: flaked"
    assert {t.id for t in final.regressions} == {"tests/test_invoices.py::test_param[2]",
                                                 "tests/test_invoices.py::test_new_bad"}


# ----- classification of the real runs

def test_the_real_runs_classify_as_swe_bench_would(reports: Reports) -> None:
    result = classify(read_junit(reports.before_xml, reports.project), read_junit(reports.after_xml, reports.project))
    classes = {t.id.removeprefix("tests/test_invoices.py::"): t.cls for t in result.tests}
    assert {k: v for k, v in classes.items() if v is not TestClass.PASS_TO_PASS} == {
        "test_param[2]": TestClass.PASS_TO_FAIL, "test_flaky": TestClass.PASS_TO_FAIL,
        "test_new_bad": TestClass.ADDED, "test_new_ok": TestClass.ADDED,
        "test_fail": TestClass.FAIL_TO_FAIL, "test_error": TestClass.FAIL_TO_FAIL,
        "tests/test_teardown.py::test_fail_and_teardown": TestClass.FAIL_TO_FAIL,
        "test_fixed": TestClass.FAIL_TO_PASS, "test_gone": TestClass.REMOVED,
        "test_skip": TestClass.SKIPPED, "test_xfail": TestClass.SKIPPED, "TestC::test_z": TestClass.SKIPPED}
    skipped = {t.id: t.newly_skipped for t in result.tests if t.cls is TestClass.SKIPPED}
    assert skipped == {"tests/test_invoices.py::TestC::test_z": True, "tests/test_invoices.py::test_skip": False,
                       "tests/test_invoices.py::test_xfail": False}
    assert [t.id for t in result.tests[:3]] == ["tests/test_invoices.py::test_flaky",
                                                "tests/test_invoices.py::test_new_bad",
                                                "tests/test_invoices.py::test_param[2]"]
    assert result.summary() == "3 regressions · 1 fixed · 3 already failing · 1 added · 1 removed · 3 skipped · " \
                               "9 unchanged"


# ----- classification, crafted

def case(test_id: str, outcome: str, message: str = "") -> TestCase:
    return TestCase(f"t.py::{test_id}", Outcome(outcome), 0.1, message)


BEFORE = [case("p2p", "passed"), case("p2f", "passed"), case("s2f", "skipped"), case("f2f", "failed", "old"),
          case("f2p", "error"), case("gone", "passed", "was here"), case("p2s", "passed"), case("s2s", "xfailed"),
          case("s2p", "skipped"), case("dup", "passed"), case("dup", "passed")]
AFTER = [case("p2p", "passed"), case("p2f", "failed", "boom"), case("s2f", "error"), case("f2f", "failed"),
         case("f2p", "xpassed"), case("p2s", "skipped", "why"), case("s2s", "skipped"), case("s2p", "passed"),
         case("new_ok", "passed"), case("new_bad", "error", "new"), case("new_skip", "xfailed"),
         case("dup", "passed"), case("dup", "failed", "second"), case("dup", "skipped")]


def test_every_class_and_its_order() -> None:
    result = classify(BEFORE, AFTER)
    assert [(t.id.removeprefix("t.py::"), t.cls.value) for t in result.tests] == [
        ("dup", "PASS_TO_FAIL"), ("new_bad", "ADDED"), ("p2f", "PASS_TO_FAIL"), ("s2f", "PASS_TO_FAIL"),
        ("f2f", "FAIL_TO_FAIL"), ("f2p", "FAIL_TO_PASS"), ("new_ok", "ADDED"), ("new_skip", "ADDED"),
        ("gone", "REMOVED"), ("p2s", "SKIPPED"), ("s2s", "SKIPPED"), ("p2p", "PASS_TO_PASS"),
        ("s2p", "PASS_TO_PASS")]
    tests = {t.id.removeprefix("t.py::"): t for t in result.tests}
    assert tests["dup"].after is Outcome.failed and tests["dup"].message == "second"  # the worst of three
    assert tests["f2f"].message == "old" and tests["p2f"].message == "boom"  # after's message, else before's
    assert tests["gone"] == ClassifiedTest("t.py::gone", TestClass.REMOVED, Outcome.passed, None, message="was here")
    assert tests["p2s"].newly_skipped and not tests["s2s"].newly_skipped
    assert [t.id for t in result.regressions] == ["t.py::dup", "t.py::new_bad", "t.py::p2f", "t.py::s2f"]
    assert result.counts() == {"PASS_TO_PASS": 2, "FAIL_TO_PASS": 1, "PASS_TO_FAIL": 3, "FAIL_TO_FAIL": 1,
                               "ADDED": 3, "REMOVED": 1, "SKIPPED": 2, "flaky": 0}
    assert result.summary() == ("4 regressions · 1 fixed · 1 already failing · 2 added · 1 removed · 2 skipped · "
                                "2 unchanged")


def test_without_a_baseline_every_test_is_added_and_failing_ones_are_regressions() -> None:
    result = classify(None, AFTER)
    assert {t.cls for t in result.tests} == {TestClass.ADDED} and not result.baseline
    assert all(t.before is None for t in result.tests)
    assert [t.id for t in result.regressions] == ["t.py::dup", "t.py::f2f", "t.py::new_bad", "t.py::p2f",
                                                  "t.py::s2f"]
    assert result.summary() == "5 regressions · 7 added (no baseline)"
    assert classify([], AFTER).baseline  # an empty baseline is still one
    assert classify(BEFORE, []).summary() == "10 removed" and classify(None, []).summary() == "no tests"


def test_a_rerun_passing_makes_a_failure_flaky_and_nothing_else() -> None:
    result = classify(BEFORE, AFTER)
    rerun = [case("p2f", "passed"), case("s2f", "failed"), case("f2f", "passed"), case("new_bad", "passed"),
             case("p2p", "failed"), case("p2s", "passed"), case("dup", "skipped")]
    final = with_rerun(result, rerun)
    tests = {t.id.removeprefix("t.py::"): t for t in final.tests}
    assert tests["p2f"] == ClassifiedTest("t.py::p2f", TestClass.PASS_TO_PASS, Outcome.passed, Outcome.passed,
                                          flaky=True, message="boom")
    assert tests["f2f"].cls is TestClass.FAIL_TO_PASS and tests["f2f"].flaky
    assert tests["new_bad"].cls is TestClass.ADDED and tests["new_bad"].flaky and not tests["new_bad"].is_regression
    assert not any(tests[name].flaky for name in ("s2f", "p2p", "p2s", "dup", "gone"))
    assert tests["p2p"].cls is TestClass.PASS_TO_PASS  # a passing test is not judged by its re-run
    assert [t.id for t in final.regressions] == ["t.py::dup", "t.py::s2f"]
    assert final.counts()["flaky"] == 3 and final.summary().endswith("3 unchanged · 3 flaky")
    assert with_rerun(classify(None, AFTER), rerun).summary() == "2 regressions · 10 added · 3 flaky (no baseline)"


def test_outcomes_group_as_pass_fail_and_skip() -> None:
    assert {o for o in Outcome if o.is_pass} == {Outcome.passed, Outcome.xpassed}
    assert {o for o in Outcome if o.is_fail} == {Outcome.failed, Outcome.error}
    assert {o for o in Outcome if o.is_skip} == {Outcome.skipped, Outcome.xfailed}
    assert [c.value for c in TestClass] == ["PASS_TO_PASS", "FAIL_TO_PASS", "PASS_TO_FAIL", "FAIL_TO_FAIL",
                                            "ADDED", "REMOVED", "SKIPPED"]


def test_everything_survives_a_json_round_trip() -> None:
    result = with_rerun(classify(BEFORE, AFTER), [case("p2f", "passed")])
    assert Classification.from_dict(json.loads(json.dumps(result.as_dict()))) == result
    assert Classification.from_dict(json.loads(json.dumps(classify(None, AFTER).as_dict()))).baseline is False
    assert all(TestCase.from_dict(json.loads(json.dumps(c.as_dict()))) == c for c in AFTER)
    diff = diff_findings([finding("a.py", 1, "X1")], [finding("a.py", 2, "X1"), finding("b.py", 1, "Y2")])
    assert FindingDiff.from_dict(json.loads(json.dumps(diff.as_dict()))) == diff
    assert Finding.from_dict(finding("a.py", 1, "X1").as_dict()) == finding("a.py", 1, "X1")


# ----- finding diffs, crafted

def finding(path: str, line: int, code: str, message: str = "msg") -> Finding:
    return Finding("ruff", path, line, code, message)


def test_findings_match_as_a_multiset_and_alike_ones_pair_by_line_first() -> None:
    before = [finding("a.py", 10, "E1"), finding("a.py", 30, "E1"), finding("a.py", 5, "E2"), finding("b.py", 1, "E1")]
    after = [finding("a.py", 12, "E1"), finding("a.py", 20, "E1"), finding("a.py", 30, "E1"),
             finding("a.py", 5, "E2", "other message")]
    diff = diff_findings(before, after)
    assert diff.existing == (finding("a.py", 12, "E1"), finding("a.py", 30, "E1"))
    assert diff.new == (finding("a.py", 5, "E2", "other message"), finding("a.py", 20, "E1"))
    assert diff.fixed == (finding("a.py", 5, "E2"), finding("b.py", 1, "E1"))
    assert diff.summary() == "2 new · 2 existing · 2 fixed"
    same = diff_findings([finding("a.py", 1, "E1")] * 2, [finding("a.py", 1, "E1")] * 3)
    assert len(same.new) == 1 and len(same.existing) == 2 and same.fixed == ()
    assert finding("a.py", 1, "E1").key == finding("a.py", 99, "E1").key == ("a.py", "E1", "msg")


def test_without_a_baseline_every_finding_is_new() -> None:
    diff = diff_findings(None, [finding("a.py", 1, "E1")])
    assert diff.new == (finding("a.py", 1, "E1"),) and not diff.baseline
    assert diff.summary() == "1 new (no baseline)" and diff_findings([], []).summary() == "no findings"


def test_a_junit_report_past_its_size_or_count_is_not_read_per_test(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's tests write the report: a 3 KB conftest made 600,000 cases, each kept in the shared store."""
    from loomtui.guardrails import reports as module

    cases = "".join(f'<testcase classname="t" name="test_{n}"/>' for n in range(module.MAX_REPORT_CASES + 1))
    report = tmp_path / "report.xml"
    report.write_text(f"<testsuites><testsuite name='s'>{cases}</testsuite></testsuites>")
    with pytest.raises(ReportProblem, match="lists 50,001 tests, more than 50,000"):
        read_junit(report)
    monkeypatch.setattr(module, "MAX_REPORT_BYTES", 1000)
    with pytest.raises(ReportProblem, match="bytes, more than 1,000"):
        read_junit(report)


def test_a_check_killed_by_a_signal_says_so() -> None:
    """A check the memory limit killed read `exit 137: exit 137`, as one more failing test."""
    from loomtui.guardrails.checks import CheckRun, exit_said
    from loomtui.guardrails.verdicts import judge

    killed = CheckRun("failed", 137, 1.0, exit_said(137), (), "log")
    assert judge(killed, None).reason == "exit 137 (SIGKILL: killed, as by its memory limit)"
    assert exit_said(-15) == "exit -15 (SIGTERM)" and exit_said(1) == "exit 1" and exit_said(None) == "no exit code"
    plain = CheckRun("failed", 1, 1.0, "1 failed, 3 passed", (), "log")
    assert judge(plain, None).reason == "exit 1: 1 failed, 3 passed"
