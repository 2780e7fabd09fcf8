"""An agent's log read in bounded memory: its tail, a follow, the app's follow (`execution.log_lines`)."""

from __future__ import annotations

import threading
from pathlib import Path

from loomtui.execution.log_lines import MAX_LINE_BYTES, MAX_TAIL_BYTES, tail_lines, whole_lines
from loomtui.tui.log_follow import follow_lines
from tests.conftest import wait_until


def test_the_tail_of_a_log_without_newlines_is_read_from_its_end_only(tmp_path: Path) -> None:
    """400 MB with no newline took the app from 86 MB to 1.26 GB: the whole file was one last line."""
    log = tmp_path / "agent.log"
    log.write_bytes(b"early line\n" + b"x" * (5 * MAX_TAIL_BYTES) + b"END")
    [last] = tail_lines(log, 1)
    assert last.endswith("END") and len(last) <= MAX_LINE_BYTES
    assert sum(len(line) for line in tail_lines(log, 10_000)) <= MAX_TAIL_BYTES  # never the early line
    log.write_bytes(b"one\ntwo\nthree\n")
    assert tail_lines(log, 2) == ["two", "three"] and tail_lines(log, 0) == []
    assert tail_lines(tmp_path / "missing.log", 5) == []


def test_a_long_line_is_handed_on_in_pieces_and_what_is_left_stays_short() -> None:
    lines, rest = whole_lines(b"a\n\n" + b"y" * (2 * MAX_LINE_BYTES + 5) + b"\n" + b"z" * (MAX_LINE_BYTES + 3))
    assert lines[:2] == [b"a", b""]
    assert [len(piece) for piece in lines[2:]] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 5, MAX_LINE_BYTES]
    assert rest == b"z" * 3


def test_the_apps_follow_skips_to_the_newest_when_more_than_a_tail_arrives_at_once(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_bytes(b"")
    batches: list[list[str]] = []
    stop = threading.Event()
    follower = threading.Thread(target=follow_lines, args=(log, batches.append, stop.is_set))
    follower.start()

    def ready() -> bool:  # a line at each look until one arrives: the follower reads from where it started
        with log.open("ab") as handle:
            handle.write(b"ready\n")
        return bool(batches)

    try:
        wait_until(ready, what="the follower to start")
        seen = len(batches)
        with log.open("ab") as handle:
            handle.write(b"x" * (3 * MAX_TAIL_BYTES) + b"\nnewest\n")
        wait_until(lambda: any("newest" in batch for batch in batches), what="the newest line")
    finally:
        stop.set()
        follower.join()
    shown = [line for batch in batches[seen:] for line in batch if line != "ready"]
    assert any(line.startswith("… ") and "bytes of output skipped" in line for line in shown)
    # A look may fall while the write is under way (it reads what it sees); never the whole 3 MiB.
    assert shown[-1] == "newest" and sum(len(line) for line in shown) <= 2 * MAX_TAIL_BYTES + 100


def test_a_terminal_s_line_ending_is_a_newline_and_a_carriage_return_inside_a_line_stays() -> None:
    """An interactive agent's pane is logged as its terminal wrote it (`\\r\\n`): once lines broke at `\\n`
    only, every line of it ended in a drawn `␍`."""
    lines, rest = whole_lines(b"one\r\ntwo\rFAKE\r\nthree\r")
    assert (lines, rest) == ([b"one", b"two\rFAKE"], b"three\r")
    assert whole_lines(rest + b"\n") == ([b"three"], b"")  # split across two reads


def test_following_from_where_the_tail_ended_misses_no_line_written_between_the_two(tmp_path: Path) -> None:
    """The Log tab read the tail, then followed from the file's end as it was a moment later: a line written
    in between (an agent's first words, as the tab drew "no output yet") was never shown."""
    log = tmp_path / "agent.log"
    log.write_bytes(b"old\n")
    position = log.stat().st_size
    assert tail_lines(log, 200, position) == ["old"]
    with log.open("ab") as handle:
        handle.write(b"first words\n")  # between the tail and the follow
    batches: list[list[str]] = []
    stop = threading.Event()
    follower = threading.Thread(target=follow_lines, args=(log, batches.append, stop.is_set),
                                kwargs={"start": position})
    follower.start()
    try:
        wait_until(lambda: bool(batches), what="the line written between the tail and the follow")
    finally:
        stop.set()
        follower.join()
    assert batches[0] == ["first words"]


def test_a_reader_goes_on_across_the_log_being_moved_aside_and_misses_nothing(tmp_path: Path) -> None:
    """`logs -f` kept its offset into the new log and went silent for good once the log was moved aside to
    agent.log.1; the app's follower skipped to the new log's end, losing what came between."""
    from loomtui.execution.agent_log import LogWriter
    from loomtui.execution.log_lines import LogCursor

    path = tmp_path / "agent.log"
    writer = LogWriter(path, limit=2000)
    cursor = LogCursor(path)
    read: list[bytes] = []
    for n in range(600):
        writer.write(f"line {n:03}\n".encode())
        if n % 150 == 149:  # a reader's look between the moves (each holds some 180 lines)
            while chunk := cursor.read(512):
                read.append(chunk)
    writer.close()
    while chunk := cursor.read(512):
        read.append(chunk)
    lines = [line for line in b"".join(read).decode().splitlines() if line.startswith("line ")]
    assert lines == [f"line {n:03}" for n in range(600)]
    assert b"".join(read).count("── loomtui: the agent's output before this is in agent.log.1".encode()) == 2


def test_an_interactive_panes_unfinished_line_is_followed_once_nothing_more_comes(tmp_path: Path) -> None:
    """Codex draws its screen without a newline: its Log tab showed nothing until 64 KiB of it had come."""
    log = tmp_path / "agent.log"
    log.write_bytes(b"")
    batches: list[list[str]] = []
    stop = threading.Event()
    follower = threading.Thread(target=follow_lines, args=(log, batches.append, stop.is_set),
                                kwargs={"start": 0, "unfinished": True})
    follower.start()
    try:
        with log.open("ab") as handle:
            handle.write(b"\x1b[10;1H\xe2\x80\xa2 Here it is")
        wait_until(lambda: any("\u2022 Here it is" in line for batch in batches for line in batch),
                   what="the unfinished line")
    finally:
        stop.set()
        follower.join()
