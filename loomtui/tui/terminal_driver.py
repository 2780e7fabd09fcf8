"""The driver that draws the app on a Linux or macOS terminal: Textual's own, made safe for a terminal
that goes away.

When the terminal closes (its window, `tmux kill-server`, a dropped ssh link) the kernel hangs it up
and sends SIGHUP, often with a SIGCONT. Textual's driver took that SIGCONT for a return from Ctrl+Z and
started application mode again, a second output thread beside the first; an output thread died on its
first write to the hung-up terminal (EIO); and the app's next 30 writes filled the dead thread's queue,
so the app blocked for ever in its shutdown and the demo's cleanup never ran (its agents and its copy
of the repository were left behind).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import sys
from codecs import getincrementaldecoder
from typing import Any, TextIO

from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver


class TerminalOutput:
    """The terminal's stream, where output to a terminal that has gone is dropped, not raised: there is
    no one left to read it, and the app must still end."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._stream.write(text)
            except (OSError, ValueError):  # EIO: hung up; ValueError: already closed
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.gone = True

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding: the stream's own
        return getattr(self._stream, name)


class TerminalDriver(LinuxDriver):
    """Textual's Linux and macOS driver, whose output survives a hung-up terminal and which resumes
    application mode on SIGCONT only after it suspended it (Ctrl+Z), not on every SIGCONT."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._file is not None:
            # Textual types it as the stream it finds; its output thread only writes, flushes and asks fileno.
            self._file = TerminalOutput(self._file)  # type: ignore[assignment]
        self._suspended = False

    def suspend_application_mode(self) -> None:
        self._suspended = True
        super().suspend_application_mode()

    def resume_application_mode(self) -> None:
        self._suspended = False
        super().resume_application_mode()

    def run_input_thread(self) -> None:
        """Textual's input loop, but a terminal that reads as hung up (nothing, or EIO) ends the app as
        the SIGHUP that comes with it does. Textual's read nothing again and again at full speed until the
        SIGHUP was handled (for ever where none came), and took EIO for a crash (exit 1, not 128 + SIGHUP).
        The app runs only on a terminal (`loomtui` refuses a pipe), where a raw-mode read of nothing
        means the other end has gone."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode

        def take_input(timeout: float, final: bool = False) -> bool:
            """Dispatch what the terminal sent within `timeout`; False once it has hung up."""
            if selector.select(timeout):
                try:
                    data = os.read(self.fileno, 4096)
                except OSError as error:
                    if error.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    return False
                for event in parser.feed(decode(data, final=final)):
                    self.process_message(event)
            for event in parser.tick():
                self.process_message(event)
            return True

        try:
            while not self.exit_event.is_set():
                if not take_input(0.1):
                    self._app.call_later(self._app.exit, return_code=128 + signal.SIGHUP)
                    return
            selector.unregister(self.fileno)
            take_input(0.1, final=True)
        finally:
            selector.close()
            with contextlib.suppress(EOFError, ParseError):
                for _event in parser.feed(""):
                    pass

    def _sigcont_application(self, *args: object) -> None:
        if self._suspended:
            super()._sigcont_application(*args)

    def _get_terminal_size(self) -> tuple[int, int]:
        """The terminal's own size: Textual's asks `shutil`, which prefers $COLUMNS and $LINES where they
        are exported, so the app kept drawing at their size through every resize."""
        for stream in (self._file, sys.__stdin__):
            try:
                size = os.get_terminal_size(stream.fileno()) if stream is not None else None
            except (AttributeError, ValueError, OSError):
                continue
            if size is not None and size.columns and size.lines:
                return size.columns, size.lines
        return super()._get_terminal_size()
