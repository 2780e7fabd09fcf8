"""The app's driver on a terminal that goes away: the installed `loomtui` on a real pseudo-terminal,
and Textual's own output thread writing to a stream that fails."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from textual.drivers._writer_thread import MAX_QUEUED_WRITES, WriterThread

from loomtui.tui.terminal_driver import TerminalOutput

LOOMTUI = shutil.which("loomtui") or "loomtui"
ENTER_ALTERNATE_SCREEN = b"\x1b[?1049h"


class HungUpTerminal:
    """A stream whose every write fails as one to a hung-up terminal does."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise OSError(errno.EIO, "Input/output error")

    def flush(self) -> None:
        raise OSError(errno.EIO, "Input/output error")


def test_the_output_thread_outlives_a_terminal_that_hung_up() -> None:
    """Textual's output thread died on the first write that failed; the next 30 writes filled its
    queue and the app's shutdown blocked for ever on the 31st."""
    terminal = HungUpTerminal()
    output = TerminalOutput(terminal)  # type: ignore[arg-type]
    writer = WriterThread(output)  # type: ignore[arg-type]
    writer.start()
    for _ in range(MAX_QUEUED_WRITES * 3):
        writer.write("\x1b[?1049l")
    writer.stop()  # returns: the thread drained its queue and ended
    assert not writer.is_alive() and output.gone
    assert terminal.writes == 1  # after the first failure nothing more is tried


def _take_the_terminal(hang_up_signal: bool) -> None:
    """In the child: the pseudo-terminal becomes its controlling terminal; without `hang_up_signal`, the
    SIGHUP of its hanging up stays blocked (a blocked signal stays so through exec, whatever handler
    Python installs) and never reaches the app."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if not hang_up_signal:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})


class PseudoTerminal:
    """The installed command as the session leader on a pseudo-terminal of 120x30, as a terminal window
    runs a shell's command: closing the terminal hangs it up."""

    def __init__(self, cwd: Path, *argv: str, hang_up_signal: bool = True) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
        self.process = subprocess.Popen(
            [LOOMTUI, *argv], cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"},
            start_new_session=True, preexec_fn=lambda: _take_the_terminal(hang_up_signal))
        os.close(slave)
        self.output = b""

    def read(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and select.select([self.master], [], [], left)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            self.output += chunk

    def wait_for(self, text: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} never came; the output ended {self.output[-300:]!r}"
            self.read(0.2)

    def hang_up(self) -> None:
        os.close(self.master)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def app_on_a_terminal(repo: Path):  # type: ignore[no-untyped-def]
    term = PseudoTerminal(repo)
    yield term
    term.end()


def test_a_sigcont_the_app_did_not_ask_for_does_not_start_it_again(app_on_a_terminal: PseudoTerminal) -> None:
    """Textual took any SIGCONT (the kernel sends one with the SIGHUP of a closed terminal) for a return
    from Ctrl+Z: it entered the alternate screen again and started a second output thread."""
    term = app_on_a_terminal
    term.wait_for(ENTER_ALTERNATE_SCREEN)
    term.read(1.0)  # the first frame
    term.process.send_signal(signal.SIGCONT)
    term.process.send_signal(signal.SIGTERM)  # handled after the SIGCONT's handler, whichever came first
    assert term.process.wait(timeout=60) == 128 + signal.SIGTERM
    term.read(1.0)
    assert term.output.count(ENTER_ALTERNATE_SCREEN) == 1


def test_a_terminal_that_closes_ends_the_app(app_on_a_terminal: PseudoTerminal) -> None:
    """The session leader of a hung-up terminal gets SIGHUP and SIGCONT; writes to it fail with EIO.
    The app ends as on `q`, with 128 + SIGHUP."""
    term = app_on_a_terminal
    term.wait_for(ENTER_ALTERNATE_SCREEN)
    term.read(1.0)
    term.hang_up()
    assert term.process.wait(timeout=60) == 128 + signal.SIGHUP


def test_a_terminal_that_reads_as_hung_up_ends_the_app(repo: Path) -> None:
    """A hung-up terminal reads as nothing (or fails, EIO): Textual's input thread read it again and
    again at full speed until the SIGHUP was handled, and took EIO for a crash (exit 1, a CI run's
    failure). Here the SIGHUP never comes, so only the reads can end the app, as a hang-up does."""
    term = PseudoTerminal(repo, hang_up_signal=False)
    try:
        term.wait_for(ENTER_ALTERNATE_SCREEN)
        term.read(1.0)
        term.hang_up()
        assert term.process.wait(timeout=60) == 128 + signal.SIGHUP
    finally:
        term.end()


def test_the_size_is_the_terminals_own_whatever_columns_and_lines_say(monkeypatch: pytest.MonkeyPatch) -> None:
    """With COLUMNS=80 LINES=24 exported, the app drew at 80x24 through every resize (`shutil` prefers them)."""
    from types import SimpleNamespace

    from loomtui.tui.terminal_driver import TerminalDriver

    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        monkeypatch.setenv("COLUMNS", "80")
        monkeypatch.setenv("LINES", "24")
        with os.fdopen(os.dup(slave), "w") as stream:
            driver = SimpleNamespace(_file=TerminalOutput(stream))
            assert TerminalDriver._get_terminal_size(driver) == (120, 40)  # type: ignore[arg-type]
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # resized
            assert TerminalDriver._get_terminal_size(driver) == (100, 30)  # type: ignore[arg-type]
    finally:
        os.close(master)
        os.close(slave)
