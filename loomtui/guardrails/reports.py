"""Gate 1's readers: what a check's report says, per test (JUnit XML) or per finding (ruff, mypy, SARIF).

Pure functions over files and text the checks wrote; comparing them with the base
commit's baseline is `classify`'s job. Reports are written by the agent's code (its
tests run it), so they are untrusted: every malformed one is a `ReportProblem`
with a one-line message, never another exception.

What pytest really writes (8.4, checked by tests/test_eval_reports.py): no `file`
attribute unless `junit_family=xunit1`; an xfail as `<skipped type="pytest.xfail">`;
a non-strict xpass as a plain pass (so `Outcome.xpassed` never comes from pytest's
JUnit) and a strict one as a `<failure>`; a test failing in its call and its teardown
as two `<testcase>`s with one id; a module that cannot be imported as a case with an
empty classname whose name is the module's dotted path.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import unquote, urlparse
from xml.etree import ElementTree

from loomtui.errors import escape_controls, shown
from loomtui.json_text import parse_json

__all__ = ["Finding", "Outcome", "ReportProblem", "TestCase", "read_junit", "read_mypy_json", "read_ruff_json",
           "read_sarif", "rerun_argv"]

MESSAGE_LIMIT: Final = 300
MAX_REPORT_BYTES: Final = 64 << 20
MAX_REPORT_CASES: Final = 50_000
"""A JUnit report past either is not read per test (its check is judged as one with no per-test results:
failed, unless the base's is as big). The agent's tests write it: a 3 KB conftest made 600,000 cases,
and every one is kept in the shared store (366 MB) with its class."""
"""A test's message is the first line of its failure or skip reason, cut to this many characters."""
_XFAIL_TYPE: Final = "pytest.xfail"
_COLLECTION_FAILURE: Final = "collection failure"
_MAX_DOTTED_PARTS: Final = 32  # a longer classname is no module path; do not stat for it
_MAX_LOOKUPS: Final = 256  # directories a classname's path is looked for in (symlinked ones could repeat forever)
_PYTEST_PROGRAMS: Final = frozenset({"pytest", "py.test", "pytest.exe", "py.test.exe"})
# Options that stop a run early or pick tests from the cache: a re-run must run exactly the ids given.
_RERUN_DROPPED: Final = frozenset({"-x", "--exitfirst", "--lf", "--last-failed", "--sw", "--stepwise",
                                   "--sw-skip", "--stepwise-skip"})
_NO_VALUE_SHORT_FLAGS: Final = frozenset("vqslx")  # pytest's short flags that take no value, so `-xq` is -x -q


class Outcome(StrEnum):
    """One test's result in one run."""

    passed = "passed"
    failed = "failed"
    error = "error"
    skipped = "skipped"
    xfailed = "xfailed"
    xpassed = "xpassed"

    @property
    def is_pass(self) -> bool:
        return self in (Outcome.passed, Outcome.xpassed)

    @property
    def is_fail(self) -> bool:
        return self in (Outcome.failed, Outcome.error)

    @property
    def is_skip(self) -> bool:
        return self in (Outcome.skipped, Outcome.xfailed)


class ReportProblem(Exception):
    """A report is missing or malformed; the message is one line naming it."""

    def __init__(self, message: str) -> None:
        super().__init__(escape_controls(message))


@dataclass(frozen=True)
class TestCase:
    """One test's result: `id` is a pytest node id when the report allows making one."""

    __test__: ClassVar[bool] = False  # not a test class, though pytest collects `Test*` names

    id: str
    outcome: Outcome
    duration_s: float = 0.0
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "outcome": self.outcome.value, "duration_s": self.duration_s, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestCase:
        return cls(id=str(data["id"]), outcome=Outcome(data["outcome"]),
                   duration_s=float(data.get("duration_s", 0.0)), message=str(data.get("message", "")))


@dataclass(frozen=True)
class Finding:
    """One problem a linter or type checker reports at a place in the repository."""

    tool: str
    path: str
    line: int
    code: str
    message: str
    severity: str = "error"

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the finding before and after a change, wherever lines moved."""
        return (self.path, self.code, self.message)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(tool=str(data["tool"]), path=str(data["path"]), line=int(data["line"]), code=str(data["code"]),
                   message=str(data["message"]), severity=str(data.get("severity", "error")))


# ----- JUnit XML

if TYPE_CHECKING:
    import junitparser


@cache
def _case_type() -> type[junitparser.TestCase]:
    """junitparser's test case with the `file` attribute pytest writes under junit_family=xunit1 (made on first
    use: junitparser takes ~0.05 s to import, and this module loads with every view of a sandbox's checks)."""
    import junitparser

    class Case(junitparser.TestCase):
        file = junitparser.Attr()

    return Case


def read_junit(path: Path, root: Path | None = None, *, shown_as: str | None = None) -> list[TestCase]:
    """Every test case of a JUnit XML report, in the report's order (an id may repeat).

    `root` is the directory the tests ran in: with it, pytest's dotted classnames become node ids.
    `shown_as`: the name errors give it (the check's own, where `path` is a copy of its report).
    """
    import junitparser

    name = shown(shown_as or path.name)
    try:
        size = path.stat().st_size
        if size == 0:
            raise ReportProblem(f"the JUnit report {name} is empty")
        if size > MAX_REPORT_BYTES:
            raise ReportProblem(f"the JUnit report {name} is {size:,} bytes, more than {MAX_REPORT_BYTES:,}")
        # The standard library's parser, even where lxml is installed: it resolves no external entities.
        xml = junitparser.JUnitXml.fromfile(str(path), parse_func=ElementTree.parse)
        modules: dict[str, tuple[str, list[str]] | None] = {}  # classname -> module file, classes: stat once
        elements = [case for suite in xml for case in suite]
        if len(elements) > MAX_REPORT_CASES:
            raise ReportProblem(f"the JUnit report {name} lists {len(elements):,} tests, more than "
                                f"{MAX_REPORT_CASES:,}")
        cases = [_test_case(_case_type().fromelem(case), root, modules)  # type: ignore[no-untyped-call]  # untyped upstream
                 for case in elements]
    except FileNotFoundError:
        raise ReportProblem(f"the JUnit report {name} is missing") from None
    except OSError as exc:
        raise ReportProblem(f"the JUnit report {name} cannot be read: {exc.strerror or exc}") from None
    except SyntaxError as exc:  # ElementTree.ParseError (lxml's XMLSyntaxError is one too)
        raise ReportProblem(f"the JUnit report {name} is not valid XML: {exc}") from None
    except junitparser.JUnitXmlError:
        raise ReportProblem(f"the JUnit report {name} is not JUnit XML (no <testsuites> or <testsuite> root)") from None
    except RecursionError:  # suites nested 2,000 deep (50 KB): the review ended in an internal error, stuck
        raise ReportProblem(f"the JUnit report {name} nests its suites too deep to read") from None
    return cases


def _test_case(case: junitparser.TestCase, root: Path | None,
               modules: dict[str, tuple[str, list[str]] | None]) -> TestCase:
    import junitparser

    kinds = {type(result): result for result in case.result}
    if junitparser.Error in kinds:
        outcome, result = Outcome.error, kinds[junitparser.Error]
    elif junitparser.Failure in kinds:
        outcome, result = Outcome.failed, kinds[junitparser.Failure]
    elif junitparser.Skipped in kinds:
        result = kinds[junitparser.Skipped]
        outcome = Outcome.xfailed if result.type == _XFAIL_TYPE else Outcome.skipped
    else:
        outcome, result = Outcome.passed, None
    message = ""
    if result is not None:
        message = _first_line(result.message or "") or _first_line(result.text or "")
        if message == _COLLECTION_FAILURE:  # pytest's constant; the traceback's last `E` line says why
            raised = [line[1:].strip() for line in (result.text or "").splitlines() if line.startswith("E ")]
            message = raised[-1][:MESSAGE_LIMIT] if raised and raised[-1] else message
    try:
        duration = float(case.time or 0.0)
    except ValueError:  # junitparser reads the attribute as a float
        duration = 0.0
    return TestCase(id=_case_id(case.classname or "", case.name or "", getattr(case, "file", None), root, modules),
                    outcome=outcome, duration_s=max(duration, 0.0), message=message)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:MESSAGE_LIMIT]
    return ""


def _case_id(classname: str, name: str, file: str | None, root: Path | None,
             modules: dict[str, tuple[str, list[str]] | None]) -> str:
    """`path.py::Class::name` where the report allows it, else `classname::name`.

    pytest's classname is the node id's path with `/` and `.py` turned into dots, then its
    classes (`tests.test_a.TestC`); a module that failed to import has no classname and
    its dotted path as the name.
    """
    if file:
        path = _relative(file, root)
        module = path.removesuffix(".py").replace("/", ".")
        classes = classname[len(module) + 1:].split(".") if classname.startswith(module + ".") else []
        return "::".join([path, *classes, name])
    dotted = classname or name
    if root is not None:
        if dotted not in modules:
            modules[dotted] = _module_path(root, dotted)
        found = modules[dotted]
        if found is not None:
            path, classes = found
            return "::".join([path, *classes, name]) if classname else "::".join([path, *classes])
    return f"{classname}::{name}" if classname else name


def _module_path(root: Path, dotted: str) -> tuple[str, list[str]] | None:
    """The longest dotted prefix of `dotted` that is a `.py` file under `root`, and the parts left.

    A directory or file name may itself hold a dot (`tests/v1.2/test_x.py`), so each
    part may join the next with a dot as well as a slash.
    """
    parts = dotted.split(".")
    if len(parts) > _MAX_DOTTED_PARTS or any(not p or "/" in p or "\\" in p or p == ".." for p in parts):
        return None
    best: tuple[int, str] | None = None
    lookups = 0

    def walk(directory: Path, start: int, prefix: str) -> None:
        nonlocal best, lookups
        lookups += 1
        if lookups > _MAX_LOOKUPS:
            return
        for end in range(start + 1, len(parts) + 1):
            name = ".".join(parts[start:end])
            try:
                if (directory / f"{name}.py").is_file() and (best is None or end > best[0]):
                    best = (end, f"{prefix}{name}.py")
                if end < len(parts) and (directory / name).is_dir():
                    walk(directory / name, end, f"{prefix}{name}/")
            except OSError:  # a name too long for the file system is no module
                continue

    walk(root, 0, "")
    return None if best is None else (best[1], parts[best[0]:])


def _relative(file: str, root: Path | None) -> str:
    """A report's path as a repo-relative posix path when it lies under `root`, else as given."""
    path = file
    if root is not None and os.path.isabs(path):
        for base in (root, root.resolve()):
            try:
                return Path(path).relative_to(base).as_posix()
            except ValueError:
                continue
    return str(PurePosixPath(path)) if path else path


# ----- findings: ruff, mypy, SARIF

def _loads(text: str, what: str) -> Any:
    if not text.strip():
        raise ReportProblem(f"the {what} report is empty")
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        raise ReportProblem(f"the {what} report is not valid JSON: {exc}") from None


def _field(data: Any, what: str, *keys: str) -> Any:
    """`data[keys[0]][keys[1]]...`, or ReportProblem naming the path that is missing."""
    for depth, key in enumerate(keys):
        if not isinstance(data, dict) or key not in data:
            raise ReportProblem(f"the {what} report has an entry without {'.'.join(keys[:depth + 1])}")
        data = data[key]
    return data


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def read_ruff_json(text: str, root: Path) -> list[Finding]:
    """Findings of `ruff check --output-format json` (absolute file names made relative to `root`)."""
    data = _loads(text, "ruff")
    if not isinstance(data, list):
        raise ReportProblem("the ruff report is not a JSON list")
    findings = []
    for entry in data:
        filename, message = _field(entry, "ruff", "filename"), _field(entry, "ruff", "message")
        if not isinstance(filename, str) or not isinstance(message, str):
            raise ReportProblem("the ruff report has an entry whose filename or message is not text")
        severity = entry.get("severity")
        findings.append(Finding(
            tool="ruff", path=_relative(filename, root), line=_int(_dict(entry.get("location")).get("row")),
            code=str(entry.get("code") or ""),  # older ruff wrote null for a syntax error
            message=message, severity=severity if isinstance(severity, str) else "error"))
    return findings


def read_mypy_json(text: str, root: Path | None = None) -> list[Finding]:
    """Findings of `mypy --output json`: one object a line; other lines (summaries) are skipped.

    A clean run prints nothing. mypy's own errors (a file it cannot read, a bad option) are
    plain text: with no JSON line, such an error is a ReportProblem, not a clean report.
    """
    findings, text_errors = [], []
    for line in text.splitlines():
        line = line.strip()
        try:
            entry = parse_json(line) if line.startswith("{") else None
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            if re.search(r"\berrors?\b", line):
                text_errors.append(line)
            continue
        message = _field(entry, "mypy", "message")
        if not isinstance(message, str):
            raise ReportProblem("the mypy report has an entry whose message is not text")
        file, severity = entry.get("file"), entry.get("severity")
        findings.append(Finding(
            tool="mypy", path=_relative(file, root) if isinstance(file, str) else "", line=_int(entry.get("line")),
            code=str(entry.get("code") or ""), message=message,
            severity=severity if isinstance(severity, str) else "error"))
    if not findings and text_errors:
        raise ReportProblem(f"mypy printed no JSON findings but: {text_errors[0][:200]}")
    return findings


def read_sarif(text: str, root: Path) -> list[Finding]:
    """Findings of a SARIF 2.1.0 log: each run's results, named by its tool's driver."""
    data = _loads(text, "SARIF")
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list):
        raise ReportProblem("the SARIF report has no runs list")
    findings: list[Finding] = []
    for run in runs:
        driver = _dict(_dict(run).get("tool")).get("driver")
        results = _dict(run).get("results", [])
        if not isinstance(driver, dict) or not isinstance(results, list):
            raise ReportProblem("the SARIF report has a run without tool.driver or a results list")
        rules = driver["rules"] if isinstance(driver.get("rules"), list) else []
        tool = str(driver.get("name") or "sarif")
        findings.extend(_sarif_result(result, tool, rules, root) for result in results
                        if isinstance(result, dict) and result.get("kind", "fail") == "fail")
    return findings


def _sarif_result(result: dict[str, Any], tool: str, rules: list[Any], root: Path) -> Finding:
    code, index = result.get("ruleId"), result.get("ruleIndex")
    if not isinstance(code, str) and isinstance(index, int) and 0 <= index < len(rules):
        code = rules[index].get("id") if isinstance(rules[index], dict) else None
    message = _dict(result.get("message"))
    text = message.get("text") or message.get("markdown") or message.get("id")
    path, line = "", 0
    locations = result.get("locations")
    if isinstance(locations, list) and locations:
        physical = _dict(_dict(locations[0]).get("physicalLocation"))
        uri = _dict(physical.get("artifactLocation")).get("uri")
        if isinstance(uri, str):
            path = _relative(_uri_path(uri), root)
        line = _int(_dict(physical.get("region")).get("startLine"))
    level = result.get("level")
    return Finding(tool=tool, path=path, line=line, code=code if isinstance(code, str) else "",
                   message=str(text or ""), severity=level if isinstance(level, str) else "warning")


def _uri_path(uri: str) -> str:
    """A file path from a SARIF artifact URI: `file:///abs/a%20b.py` or a relative `src/a.py`."""
    return unquote(urlparse(uri).path if uri.startswith("file:") else uri)


# ----- re-running failed tests

def rerun_argv(argv: Sequence[str], test_ids: Sequence[str]) -> list[str] | None:
    """A pytest command run again on just `test_ids` (node ids), or None if it cannot select tests.

    Options that stop early or select from pytest's cache (`-x`, `--lf`, `--maxfail`, ...) go;
    the other arguments stay (pytest 8.4 narrows a directory argument to the node ids given inside it).
    None for a runner other than pytest, or when no id is a node id (`path.py::name`).
    """
    start = _pytest_index(argv)
    ids = [test_id for test_id in test_ids if _is_node_id(test_id)]
    if start is None or not ids:
        return None
    return _without_early_stops(argv, start) + ids


def whole_run_argv(argv: Sequence[str]) -> list[str]:
    """A check's command to run all of it once more: a pytest one without the options that stop early or
    select from pytest's cache (with `-x`, the tests after the first failure did not run again)."""
    start = _pytest_index(argv)
    return list(argv) if start is None else _without_early_stops(argv, start)


def _without_early_stops(argv: Sequence[str], start: int) -> list[str]:
    command = list(argv[:start])
    rest = iter(argv[start:])
    for arg in rest:
        if arg in _RERUN_DROPPED or arg.startswith("--maxfail="):
            continue
        if arg == "--maxfail":
            next(rest, None)
            continue
        if re.fullmatch(r"-[a-z]+", arg) and "x" in arg and set(arg[1:]) <= _NO_VALUE_SHORT_FLAGS:
            arg = arg.replace("x", "")
            if arg == "-":
                continue
        command.append(arg)
    return command


def _pytest_index(argv: Sequence[str]) -> int | None:
    """The index just after the argument naming pytest (`-m pytest`, or a program named pytest)."""
    for index, arg in enumerate(argv):
        if arg in ("-mpytest", "-mpy.test") or (arg == "-m" and index + 1 < len(argv)
                                                  and argv[index + 1] in ("pytest", "py.test")):
            return index + (1 if arg != "-m" else 2)
        if not arg.startswith("-") and PurePosixPath(arg.replace("\\", "/")).name in _PYTEST_PROGRAMS:
            return index + 1
    return None


def _is_node_id(test_id: str) -> bool:
    path, sep, _ = test_id.partition("::")
    return bool(sep) and path.endswith(".py") and not path.startswith("-")
