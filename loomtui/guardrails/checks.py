"""Running one check of gate 1: a command in a tree, its output streamed to disk, its results read.

A check is a configured gate (`gates:` in `.loom/loom.yaml`). `run_check` runs it in
a directory (a sandbox's worktree, or a scratch tree of a commit for a baseline or a
merged gate), wrapped by the caller's confinement, with:

- all of its output written to a log file as it comes (a bounded tail is kept in
  memory, and a progress callback sees it about once a second);
- its timeout killing the whole process group (a test's children too);
- its results read by the gate's `format`: per test case from JUnit XML, per finding
  from ruff/mypy JSON or SARIF, or the exit code alone; a report that is missing or
  malformed is said so, and the exit code is used;
- the failing tests of a JUnit check run once more (pytest), so a pass then can be
  flagged flaky by the comparison.

What the results mean against a baseline is `guardrails.verdicts`' job, not this one's.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from loomtui.config import REPORT_PLACEHOLDER, GateConfig
from loomtui.errors import plural
from loomtui.execution import disk_room
from loomtui.files import remove_tree
from loomtui.guardrails.reports import (
    Finding,
    ReportProblem,
    TestCase,
    read_junit,
    read_mypy_json,
    read_ruff_json,
    read_sarif,
    rerun_argv,
    whole_run_argv,
)

OUTPUT_TAIL_LINES: Final = 40
TIMED_OUT: Final = "timed out after"
"""How a check's run that ran out of time begins its summary."""
PROGRESS_EVERY_S: Final = 1.0
MAX_LOG_BYTES: Final = 256 * 1024 * 1024
"""A check's output kept on disk; beyond it the output is read (the check must not block) and dropped."""
MAX_LINE_BYTES: Final = 4096
"""An unfinished line kept in memory: output with no newline must not grow without end."""
MAX_REPORT_BYTES: Final = 64 * 1024 * 1024
"""A report larger than this is not read (the check's code wrote it: it may be anything)."""

Wrap = Callable[[list[str], Sequence[Path]], list[str]]
"""Confinement: (argv, paths it must be able to write) -> the argv to run."""
Progress = Callable[[dict[str, Any]], None]


def unconfined(argv: list[str], _writable: Sequence[Path]) -> list[str]:
    return argv


@dataclass(frozen=True)
class CheckRun:
    """What one run of a check did. `outcome` is passed or failed by exit code, or error (could not run,
    timed out); `cases` and `findings` are None when the format has none or its report could not be read."""

    outcome: str
    exit_code: int | None
    duration_s: float
    summary: str
    output_tail: tuple[str, ...]
    log: str
    cases: tuple[TestCase, ...] | None = None
    findings: tuple[Finding, ...] | None = None
    problem: str = ""
    rerun: tuple[TestCase, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome, "exit_code": self.exit_code, "duration_s": self.duration_s,
            "summary": self.summary, "output_tail": list(self.output_tail), "log": self.log,
            "cases": None if self.cases is None else [c.as_dict() for c in self.cases],
            "findings": None if self.findings is None else [f.as_dict() for f in self.findings],
            "problem": self.problem, "rerun": [c.as_dict() for c in self.rerun],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckRun:
        cases, findings = data.get("cases"), data.get("findings")
        return cls(
            outcome=str(data.get("outcome", "error")), exit_code=data.get("exit_code"),
            duration_s=float(data.get("duration_s", 0.0)), summary=str(data.get("summary", "")),
            output_tail=tuple(data.get("output_tail", ())), log=str(data.get("log", "")),
            cases=None if cases is None else tuple(TestCase.from_dict(c) for c in cases),
            findings=None if findings is None else tuple(Finding.from_dict(f) for f in findings),
            problem=str(data.get("problem", "")), rerun=tuple(TestCase.from_dict(c) for c in data.get("rerun", ())),
        )


@dataclass(frozen=True)
class _Process:
    exit_code: int | None
    timed_out: bool
    tail: tuple[str, ...]
    error: str = ""
    stderr: bytes = b""
    """Its stderr, kept apart (`_stream`'s `stderr_apart`), at most MAX_STDERR_BYTES of it."""


MAX_STDERR_BYTES: Final = 1 << 20
"""What a findings check's stderr keeps, apart from its report (a tool's warnings, its error); the rest is drained
unkept: 600 MiB of it was a file of its own per run, base and change alike, never removed."""


DISK_LOOK_EVERY_S: Final = 1.0
"""How often a running check's disks are looked at for the room left (`disk_room`)."""


def _lost(found: disk_room.Shortage, free_at_start: Mapping[str, int | None]) -> int:
    """What the disk `found` is about lost since the check began: what the check wrote, as far as can be told."""
    return max(0, (free_at_start.get(str(found.path)) or found.free) - found.free)


def _stream(argv: list[str], cwd: Path, env: Mapping[str, str], timeout: float, log: Path, *,
            mode: str, progress: Progress | None, started: float, stderr_apart: bool = False) -> _Process:
    """Run argv, appending every line of its output to `log` (with `stderr_apart`, its stdout alone: its stderr
    is kept in `_Process.stderr`); kill its group at the timeout."""
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    lines = 0
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE if stderr_apart else subprocess.STDOUT,
                                   start_new_session=True)
    except OSError as exc:
        return _Process(None, False, (), f"cannot run {argv[0]}: {exc.strerror or exc}")
    assert process.stdout is not None
    said: list[bytes] = []

    def drain() -> None:
        kept = 0
        while chunk := process.stderr.read1(65536):  # type: ignore[union-attr]
            if kept < MAX_STDERR_BYTES:
                said.append(chunk[: MAX_STDERR_BYTES - kept])
            kept += len(chunk)

    def pump() -> None:
        # Chunks, not lines: a test runner's progress dots come without a newline for a while.
        nonlocal lines
        last, size, partial = 0.0, log.stat().st_size if mode == "a" and log.exists() else 0, b""
        with log.open(mode + "b", buffering=0) as out:
            while chunk := process.stdout.read1(65536):  # type: ignore[union-attr]
                if size < MAX_LOG_BYTES:
                    out.write(chunk[: MAX_LOG_BYTES - size])
                    if size + len(chunk) >= MAX_LOG_BYTES:
                        out.write(f"\n--- loomtui: output beyond {MAX_LOG_BYTES >> 20} MiB not kept ---\n".encode())
                size += len(chunk)
                *complete, partial = (partial + chunk).split(b"\n")
                partial = partial[-MAX_LINE_BYTES:]
                for raw in complete[-OUTPUT_TAIL_LINES:]:
                    tail.append(raw.decode("utf-8", "replace").rstrip("\r"))
                lines += len(complete)
                now = time.monotonic()
                if progress is not None and now - last >= PROGRESS_EVERY_S:
                    last = now
                    shown = [*list(tail)[-4:], partial.decode("utf-8", "replace")[-200:]]
                    progress({"lines": lines, "bytes": size, "tail": [line for line in shown if line],
                              "elapsed_s": round(now - started, 1)})
            if partial:
                tail.append(partial.decode("utf-8", "replace").rstrip("\r"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    drainer = threading.Thread(target=drain, daemon=True) if stderr_apart else None
    if drainer is not None:
        drainer.start()
    timed_out = False
    short = None
    places = (("the check's run", log.parent), ("its tree", cwd))
    free_at_start = {str(path): disk_room.free_bytes(path) for _what, path in places}
    deadline = time.monotonic() + timeout
    while process.poll() is None and not timed_out and short is None:
        try:
            process.wait(timeout=max(0.0, min(DISK_LOOK_EVERY_S, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            timed_out = time.monotonic() >= deadline
            # A check runs the change's code, as its agent did: one filling the disk filled the store's and the
            # audit log's with it, and starved the base commit's run beside it of its report (a baseline with
            # none excused the change's own failure). Stopped as the agent's supervisor stops an agent: what
            # it wrote is what the disk lost since it began (a disk already short stops no check that writes
            # nothing).
            found = disk_room.shortage(places)
            if found is not None and disk_room.stops(found, functools.partial(_lost, found, free_at_start)):
                short = None if process.poll() is not None else found  # it ended meanwhile: as it ended
    if timed_out or short is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: a test's children too
        process.wait()
    # What the check left running in its group (a server a test started) ends with it, and
    # lets go of the pipe; one that left the group may still hold it: not waited on for ever.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    reader.join(timeout=5)
    if not reader.is_alive():
        process.stdout.close()
    if drainer is not None:
        drainer.join(timeout=5)
        if not drainer.is_alive():
            process.stderr.close()  # type: ignore[union-attr]
    stderr = b"".join(said)
    if short is not None:
        return _Process(process.returncode, False, tuple(tail), f"stopped: {short.said()}", stderr)
    return _Process(process.returncode, timed_out, tuple(tail), stderr=stderr)


def read_report(report: Path) -> bytes:
    """A report the check wrote, read as a regular file only: not through a link, not a FIFO or a
    device (either could hang or flood the reader), not beyond MAX_REPORT_BYTES."""
    try:
        fd = os.open(report, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ReportProblem("the check wrote no report") from None
    except OSError as exc:
        raise ReportProblem(f"its report cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ReportProblem("its report is not a regular file")
        if info.st_size > MAX_REPORT_BYTES:
            raise ReportProblem(f"its report is {info.st_size >> 20} MiB, over the {MAX_REPORT_BYTES >> 20} MiB read")
        return handle.read(MAX_REPORT_BYTES + 1)[:MAX_REPORT_BYTES]


def exit_said(code: int | None) -> str:
    """`exit N`, naming the signal that ended the check where N says one (negative, or 128 + n as a shell and
    bubblewrap report it): `exit 137` read as one more failing test, not as a check killed (its memory limit)."""
    if code is None:
        return "no exit code"
    number = -code if code < 0 else code - 128 if 128 < code <= 192 else 0
    try:
        name = signal.Signals(number).name if number else ""
    except ValueError:
        name = ""
    killed = ": killed, as by its memory limit" if name == "SIGKILL" else ""
    return f"exit {code}" + (f" ({name}{killed})" if name else "")


def _summary(tail: Sequence[str], exit_code: int | None) -> str:
    """The last non-decorative line of the output (pytest's `1 failed, 20 passed in 0.5s`)."""
    for line in reversed(tail):
        text = line.strip().strip("=").strip()
        if text and not set(text) <= set("!-=. "):
            return text[:200]
    return "" if exit_code == 0 else exit_said(exit_code)


def _case_summary(cases: Sequence[TestCase]) -> str:
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.outcome] = counts.get(case.outcome, 0) + 1
    order = ("failed", "error", "passed", "skipped", "xfailed", "xpassed")
    return ", ".join(f"{counts[o]} {o}" for o in order if counts.get(o)) or "no tests"


def _private_copy(report: Path, run_dir: Path) -> Path:
    """The report, checked by `read_report`, copied where the check cannot write (it parses from there)."""
    copy = run_dir / f"{report.name}.read"
    copy.write_bytes(read_report(report))
    return copy


def _substitute(argv: Sequence[str], report: Path) -> list[str]:
    return [arg.replace(REPORT_PLACEHOLDER, str(report)) for arg in argv]


def _read_findings(gate: GateConfig, text: str, root: Path) -> list[Finding]:
    if gate.format == "ruff-json":
        return read_ruff_json(text, root)
    if gate.format == "mypy-json":
        return read_mypy_json(text)
    return read_sarif(text, root)


def run_check(gate: GateConfig, argv: Sequence[str], cwd: Path, env: Mapping[str, str], run_dir: Path, *,
              wrap: Wrap = unconfined, progress: Progress | None = None, rerun_failed: bool = True) -> CheckRun:
    """Run one check in `cwd`; its log and report files go to `run_dir` (created here).

    `argv` is the gate's command as it runs here (a bare `python` already resolved);
    `wrap` confines it, and is told which paths the check must be able to write. What it wrote there goes
    once read (a private copy of its report stays): 300 MB a test wrote beside its report stayed in
    `.git/loom/evals` after the sandbox's removal, each review adding its own.
    """
    try:
        return _run_check(gate, argv, cwd, env, run_dir, wrap=wrap, progress=progress, rerun_failed=rerun_failed)
    finally:
        with contextlib.suppress(OSError):
            remove_tree(run_dir / "reports")


def _run_check(gate: GateConfig, argv: Sequence[str], cwd: Path, env: Mapping[str, str], run_dir: Path, *,
               wrap: Wrap, progress: Progress | None, rerun_failed: bool) -> CheckRun:
    run_dir.mkdir(parents=True, exist_ok=True)
    reports = run_dir / "reports"
    reports.mkdir(exist_ok=True)
    log = run_dir / "output.log"
    report = reports / "report"
    uses_report = any(REPORT_PLACEHOLDER in arg for arg in argv)
    started = time.monotonic()
    # A program named by a path (`./scripts/check.sh`) is the tree's, where it runs: read from the caller's
    # folder, it was "not on PATH" in every review (the supervisor's folder) and from a subfolder.
    if not argv or ("/" in argv[0] and not (cwd / argv[0]).is_file()) or (
            "/" not in argv[0] and shutil.which(argv[0], path=env.get("PATH")) is None):
        why = (f"{argv[0]!r} is no file in the tree the check runs in" if argv and "/" in argv[0] else
               f"{argv[0] if argv else '(nothing)'!r} is not on PATH: is it installed?")
        log.write_text(why + "\n")
        return CheckRun("error", None, 0.0, why, (), str(log), problem=why)
    # A report read from the output is stdout's alone: a warning on stderr (ruff's about its config) made
    # the JSON unreadable and failed every sandbox. Its stderr follows it in the log, once read.
    stderr_apart = gate.format not in ("exit", "junit") and not uses_report
    done = _stream(wrap(_substitute(argv, report), [reports]), cwd, env, gate.timeout, log, mode="w",
                   progress=progress, started=started, stderr_apart=stderr_apart)
    stdout_only = log.read_bytes()[:MAX_REPORT_BYTES] if stderr_apart and log.exists() else b""
    if done.stderr:
        with contextlib.suppress(OSError), log.open("ab") as out:
            out.write(b"\n--- loomtui: its stderr ---\n" + done.stderr)
        # What a lead sees of it: the tool's error was in the log file alone ("the ruff report is empty; exit 2").
        said_lines = [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        done = replace(done, tail=(*done.tail, *said_lines)[-OUTPUT_TAIL_LINES:])
    duration = round(time.monotonic() - started, 2)
    if done.error:
        return CheckRun("error", None, duration, done.error, (), str(log), problem=done.error)
    if done.timed_out:
        why = f"{TIMED_OUT} {gate.timeout:g}s; its whole process group was killed"
        return CheckRun("error", None, duration, why, done.tail, str(log), problem=why)
    outcome = "passed" if done.exit_code == 0 else "failed"
    summary = _summary(done.tail, done.exit_code)
    if gate.format == "exit":
        return CheckRun(outcome, done.exit_code, duration, summary, done.tail, str(log))
    try:
        if gate.format == "junit":
            cases = tuple(read_junit(_private_copy(report, run_dir), cwd, shown_as=report.name))
            run = CheckRun(outcome, done.exit_code, duration, _case_summary(cases), done.tail, str(log), cases=cases)
            return _with_rerun(gate, argv, cwd, env, run_dir, wrap, run) if rerun_failed else run
        text = (read_report(report) if uses_report else stdout_only).decode("utf-8", "replace")
        findings = tuple(_read_findings(gate, text, cwd))
        if not findings and done.exit_code not in (0, None):
            # The tool failed rather than found (mypy's exit 2: a plugin that does not import, said on stderr): "no
            # findings" of a check that never ran passed gate 1.
            raise ReportProblem(f"it exited {done.exit_code} reporting no finding ({summary})")
        counted = f"{len(findings)} finding{'s' if len(findings) != 1 else ''}"
        return CheckRun(outcome, done.exit_code, duration, counted, done.tail, str(log), findings=findings)
    except (ReportProblem, OSError) as exc:
        problem = str(exc)
        return CheckRun(outcome, done.exit_code, duration, summary, done.tail, str(log), problem=problem)


def _with_rerun(gate: GateConfig, argv: Sequence[str], cwd: Path, env: Mapping[str, str], run_dir: Path,
                wrap: Wrap, run: CheckRun) -> CheckRun:
    """The failing tests run once more (pytest): a pass then makes them flaky, not failed. One that passes alone is
    flaky only if it passes in the whole check run again too: one that fails whenever the others run first (state
    they share: a cache, a global) is broken by the change, and read as flaky it passed gate 1."""
    failing = [case.id for case in run.cases or () if case.outcome.is_fail]
    again = rerun_argv(argv, failing) if failing else None
    if again is None:
        return run
    rerun = _run_again(gate, again, cwd, env, run_dir, wrap, "rerun",
                       f"{plural(len(failing), 'failing test')} run once more")
    alone = {case.id for case in rerun if case.outcome.is_pass}
    if alone:
        whole = _run_again(gate, whole_run_argv(argv), cwd, env, run_dir, wrap, "rerun-whole",
                           f"{plural(len(alone), 'test')} passed alone: the whole check run once more")
        rerun = tuple(case for case in whole if case.id in alone)  # flaky only where they passed here too
    return CheckRun(run.outcome, run.exit_code, run.duration_s, run.summary, run.output_tail, run.log,
                    cases=run.cases, rerun=rerun)


def _run_again(gate: GateConfig, argv: Sequence[str], cwd: Path, env: Mapping[str, str], run_dir: Path,
               wrap: Wrap, name: str, said: str) -> tuple[TestCase, ...]:
    """The test cases of one more run of `argv` into the report `name` (none when it could not finish)."""
    reports = run_dir / "reports"
    report = reports / name
    with (run_dir / "output.log").open("ab") as out:
        out.write(f"\n--- loomtui: {said} ---\n".encode())
    done = _stream(wrap(_substitute(argv, report), [reports]), cwd, env, gate.timeout, run_dir / "output.log",
                   mode="a", progress=None, started=time.monotonic())
    try:
        ran = not done.timed_out and not done.error
        return tuple(read_junit(_private_copy(report, run_dir), cwd, shown_as=report.name)) if ran else ()
    except (ReportProblem, OSError):
        return ()
