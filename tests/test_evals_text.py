"""The Evals tab's text (`loomtui.tui.evals_text`): what a check or an agent wrote reaches the screen as
one printable line, and a log's end is read without reading the whole file."""

from __future__ import annotations

from pathlib import Path

from loomtui.tui.evals_text import one_line, tail_lines


def test_one_line_escapes_what_would_drive_the_terminal_and_cuts_to_width() -> None:
    assert one_line("ok\x1b[2J\nnext\tcol") == "ok\\x1b[2J\\nnext    col"
    assert one_line("[bold]not markup[/]") == "[bold]not markup[/]"  # kept as text: Text() never parses it
    assert one_line("abcdefghij", 5) == "abcd…" and one_line("abc", 5) == "abc"


def test_tail_lines_reads_the_end_of_a_log_each_line_printable(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"".join(b"line %d\n" % n for n in range(100_000)) + b"bad \xff byte \x07 bell\n")
    assert tail_lines(log, 3) == ["line 99998", "line 99999", "bad \ufffd byte \\x07 bell"]


def test_tail_lines_of_one_huge_line_reads_at_most_its_last_megabyte(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"x" * (8 << 20) + b"\nlast\n")
    lines = tail_lines(log, 5)
    assert lines[-1] == "last" and len(lines[0]) <= 1 << 20


def test_tail_lines_of_a_missing_or_unreadable_log_is_empty(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "missing.log", 5) == []
    assert tail_lines(tmp_path, 5) == []  # a directory
