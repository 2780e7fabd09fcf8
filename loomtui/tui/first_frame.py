"""Time to first frame: a fresh interpreter on a pseudo-terminal, timed from its start until the first
frame that shows a table's rows is written to the terminal.

Two programs are started the same way (this interpreter, `python -c`, the same pty size and TERM):
a bare Textual app with a DataTable and a Footer, the floor any Textual app pays, and `loomtui`
itself opening the dashboard on a repository. Each stamps the frame from inside (App._display,
where a frame goes to the terminal), reports it on a pipe and exits.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

COLUMNS, LINES = 160, 45
"""The pseudo-terminal's size."""
FRAME_TIMEOUT_S = 120.0

# Wraps App._display in the child: a frame counts once a table on its screen shows rows (laid out:
# the table sizes new rows when idle, and a frame before that shows none). Private names of
# Textual's: this is a measurement, kept out of the app.
_STAMP = """
import os, resource, sys, time
from textual.app import App
from textual.widgets import DataTable
_report = int(sys.argv[1])
_display = App._display
def _stamped(self, screen, renderable):
    _display(self, screen, renderable)
    if renderable is None or getattr(self, "_bench_stamped", False):
        return
    for table in screen.query(DataTable):
        if table.row_count and table.display and not table._require_update_dimensions \\
                and table.virtual_size.height > table.header_height:
            self._bench_stamped = True
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            os.write(_report, f"{time.monotonic()} {rss}\\n".encode())
            self.exit(0)
            return
App._display = _stamped
"""

_BARE = _STAMP + """
from textual.widgets import Footer
class Bare(App):
    def compose(self):
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)
    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns(*(f"column {n}" for n in range(10)))
        for row in range(int(sys.argv[2])):
            table.add_row(*(f"cell {row}.{n}" for n in range(10)), key=str(row))
Bare().run()
"""

_LOOMTUI = _STAMP + """
from loomtui.cli import main
raise SystemExit(main(["-C", sys.argv[2]]))
"""


@dataclass(frozen=True)
class FirstFrame:
    """One start: seconds from spawning the interpreter to its first frame with rows, and its peak RSS."""

    seconds: float
    rss_kb: int


def _drain(master: int, kept: bytearray) -> None:
    """Read the terminal's output as a terminal would (a child whose pty fills up blocks); keep the tail."""
    while True:
        try:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(master, 65536)
        except OSError:
            return  # EIO: every writer has closed the pty
        if not chunk:
            return
        kept.extend(chunk)
        del kept[:-4000]


def end_process(proc: subprocess.Popen[bytes]) -> None:
    """End a start once its frame is reported: its process group (its index workers too). A clean exit
    would wait for the work the app started in threads, seconds that measure nothing."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session and group: start_new_session
        except ProcessLookupError:
            pass
    proc.wait(10)


def start_once(script: str, argument: str, *, cwd: Path | None = None) -> FirstFrame:
    """Start `python -c script <fd> argument` on a fresh pty; time its first frame with rows."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    report_read, report_write = os.pipe()
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "TEXTUAL")}
    env["TERM"] = "xterm-256color"
    kept = bytearray()
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(report_write), argument], stdin=slave, stdout=slave, stderr=slave,
            pass_fds=(report_write,), cwd=cwd, env=env, start_new_session=True)
    finally:
        os.close(slave)
        os.close(report_write)
    reader = threading.Thread(target=_drain, args=(master, kept), daemon=True)
    reader.start()
    line = b""
    try:
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([report_read], [], [], max(0.0, started + FRAME_TIMEOUT_S - time.monotonic()))
            chunk = os.read(report_read, 256) if ready else b""
            if not chunk:
                break  # the child ended, or the time ran out
            line += chunk
        if not line.endswith(b"\n"):
            proc.kill()
            proc.wait(10)
            tail = bytes(kept).decode("utf-8", "replace")[-800:]
            raise RuntimeError(f"no first frame with rows within {FRAME_TIMEOUT_S:g}s (exit {proc.returncode}): "
                               f"{tail!r}")
    finally:
        os.close(report_read)
        end_process(proc)
        reader.join(5)
        os.close(master)
    at, rss = line.split()
    return FirstFrame(seconds=float(at) - started, rss_kb=int(rss))


def bare_first_frame(rows: int) -> FirstFrame:
    """The bare Textual app with `rows` rows in its DataTable."""
    return start_once(_BARE, str(rows))


def loomtui_first_frame(repo: Path) -> FirstFrame:
    """`loomtui` opening the dashboard on `repo`."""
    return start_once(_LOOMTUI, str(repo), cwd=repo)


def median_seconds(frames: list[FirstFrame]) -> float:
    """The median start, in seconds."""
    return statistics.median(frame.seconds for frame in frames)
