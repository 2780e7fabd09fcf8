"""Following a growing log file from a worker thread: whole lines as they are written."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from loomtui.execution.log_lines import MAX_TAIL_BYTES, LogCursor, whole_lines

if TYPE_CHECKING:
    from loomtui.workspace import Workspace

POLL_S: Final = 0.2
STATUS_LOOK_S: Final = 1.0
"""How often a Log tab waiting on a running agent's first words looks at whether it still runs."""


def follow_lines(path: Path, emit: Callable[[list[str]], object], cancelled: Callable[[], bool],
                 start: int | None = None, *, unfinished: bool = False,
                 each_look: Callable[[], object] | None = None) -> None:
    """Call `emit` with each batch of whole lines written to `path` from byte `start` on (default: its end
    now), until `cancelled()`, across the log's moves aside as it grows (agent.log.1); a file cut back (a
    full disk) is followed from its new end, a missing one waited for. `unfinished`: a line left unfinished
    while nothing more comes is said as it is (an interactive pane: Codex draws its screen without a newline,
    and its Log tab showed nothing until 64 KiB of it had come). `each_look` is called after each look."""
    cursor = LogCursor(path, start)
    pending = waiting = b""  # waiting: an unfinished line as the last look left it
    while not cancelled():
        # What is shown is the newest; more than a tail's worth since the last look is skipped
        # (`sandbox logs` has it all), not read whole into memory.
        skipped = max(0, cursor.unread() - MAX_TAIL_BYTES)
        if skipped:
            cursor.skip(skipped)
            pending = b""
        chunk = cursor.read(MAX_TAIL_BYTES)
        while chunk:
            pending += chunk
            chunk = cursor.read(MAX_TAIL_BYTES) if len(pending) < MAX_TAIL_BYTES else b""
        whole, pending = whole_lines(pending)
        if unfinished and pending and not whole and pending == waiting:  # nothing more for a whole look
            whole, pending = [pending], b""
        waiting = pending
        if whole or skipped:
            said = [f"… {skipped:,} bytes of output skipped (`loomtui sandbox logs` has them)"] if skipped else []
            emit([*said, *(line.decode("utf-8", "replace") for line in whole)])
        if each_look is not None:
            each_look()
        time.sleep(POLL_S)


def follow_sandbox_log(workspace: Workspace, sandbox_id: str, write: Callable[[list[str]], object],
                       clear: Callable[[], object], cancelled: Callable[[], bool]) -> None:
    """A sandbox's log as a person reads it (`readable_log`): its tail, then each line as it comes, given to
    `write` until `cancelled()`; with nothing to show yet, a line saying so and whether more may come, which
    `clear` takes away once there is (a blank tab read as broken)."""
    from loomtui.errors import LoomError
    from loomtui.execution import sandboxes
    from loomtui.execution.readable_log import ReadableLog, readable_tail
    from loomtui.execution.runtimes import OUTPUT_TERMINAL
    from loomtui.tui.sandbox_text import RUNNING_OR_TO_RUN

    path = Path(sandboxes.log_path(workspace, sandbox_id))
    output, worktree = sandboxes.log_format(workspace, sandbox_id)  # Claude's stream-json, read
    # The tail and what follows it from one offset: a line written between the two was lost (the tab
    # waited on "no output yet" for good).
    try:
        position = path.stat().st_size
    except OSError:
        position = 0
    tail, wrote = readable_tail(path, output, worktree, 200, position)
    waiting = not tail
    to_come = False  # the line says its output is still to come
    if waiting:
        record = workspace.store.get_sandbox(sandbox_id)
        live = record is not None and record.status in RUNNING_OR_TO_RUN
        elsewhere = record is not None and not path.exists() and not sandboxes.on_this_host(record)
        to_come = live and not elsewhere and not wrote
        tail = [f"(it {'runs' if live else 'ran'} on {record.host}: its log is there)"
                if elsewhere and record is not None else
                "(nothing to read here yet: its output so far is tool results; `loomtui sandbox logs --raw` "
                "has them)" if wrote else
                "(no output yet: it appears here as the agent writes it)" if live else
                "(the agent wrote no output)"]
    write(tail)
    reading = ReadableLog(output, worktree)  # one for the whole follow: an event's pieces may span batches

    def arrived(lines: list[str]) -> None:
        nonlocal waiting
        shown = list(reading.lines(lines))
        if not shown:
            return
        if waiting:
            waiting = False
            clear()
        write(shown)

    looked = time.monotonic()

    def ended_unheard() -> None:
        """"(no output yet: ...)" stood after the agent had ended (stopped) without a word: said again then (not
        of another machine's agent, whose log is there)."""
        nonlocal to_come, looked
        if not (waiting and to_come) or time.monotonic() - looked < STATUS_LOOK_S:
            return
        looked = time.monotonic()
        try:
            record = workspace.store.get_sandbox(sandbox_id)
        except LoomError:  # the store away: the header says so, and the next look asks again
            return
        if record is None or record.status not in RUNNING_OR_TO_RUN:
            to_come = False
            clear()
            write(["(the agent wrote no output)"])

    follow_lines(path, arrived, cancelled, start=position, unfinished=output == OUTPUT_TERMINAL,
                 each_look=ended_unheard)
