"""An agent's log as a person reads it: Claude Code's stream-json events as what happened."""

from __future__ import annotations

import json
from pathlib import Path

from loomtui.execution.log_lines import tail_lines, whole_lines
from loomtui.execution.readable_log import ReadableLog, readable_lines, readable_tail
from loomtui.execution.runtimes import OUTPUT_CLAUDE_STREAM, OUTPUT_PLAIN


def said(text: str) -> str:
    return json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}})


def tool_result(content: str) -> str:
    return json.dumps({"type": "user", "message": {"content": [{"type": "tool_result", "content": content}]}})


def test_an_event_too_long_for_one_line_is_one_line_saying_so_not_pages_of_json(tmp_path: Path) -> None:
    """Readers hand a line over 64 KiB on in pieces, none of them JSON: a 120 KB Read showed as two pages of
    escaped JSON between "▸ Read data.py" and the model's next words."""
    log = tmp_path / "agent.log"
    log.write_text(f"{said('I read it.')}\n{tool_result('x' * 150_000)}\n{said('Done.')}\n")
    pieces = [line.decode() for line in whole_lines(log.read_bytes())[0]]
    assert len(pieces) == 5  # the long event came as three
    expected = ["I read it.", "… 146 KiB of an event, not shown (`sandbox logs --raw` has it)", "Done."]
    assert readable_lines(OUTPUT_CLAUDE_STREAM, pieces) == expected
    following = ReadableLog(OUTPUT_CLAUDE_STREAM)  # `logs -f` and the app: the pieces may come in two batches
    assert [*following.lines(pieces[:2]), *following.lines(pieces[2:])] == expected
    assert readable_lines(OUTPUT_PLAIN, pieces) == pieces  # another runtime's output: as written


def test_a_tail_reads_further_back_past_events_that_show_nothing(tmp_path: Path) -> None:
    """`sandbox logs -n 20` took 20 lines of the log, then dropped the tool results among them: a run whose
    last events were tool results printed nothing (and no word why), while -n 40 showed the model's words."""
    log = tmp_path / "agent.log"
    log.write_text("".join(f"{line}\n" for line in [said("I will fix it."), *[tool_result("ok")] * 30]))
    shown, wrote = readable_tail(log, OUTPUT_CLAUDE_STREAM, None, 20)
    assert shown == ["I will fix it."] and wrote
    assert len(tail_lines(log, 20)) == 20
    assert readable_tail(tmp_path / "none.log", OUTPUT_CLAUDE_STREAM, None, 20) == ([], False)


def test_a_tail_that_begins_inside_a_long_event_and_one_of_exactly_two_pieces_are_said_by_size(tmp_path: Path) -> None:
    """A tail read from inside a 3 MB tool result printed a mebibyte of its pieces (none starts `{`); an
    event of exactly 128 KiB ended on a full piece, and the event after it was taken for its last piece."""
    log = tmp_path / "agent.log"
    log.write_text(f"{said('Reading.')}\n{tool_result('x' * 3_000_000)}\n{said('Done.')}\n")
    shown, _wrote = readable_tail(log, OUTPUT_CLAUDE_STREAM, None, 5)
    assert shown[-1] == "Done." and len(shown) <= 3 and all(len(line) < 200 for line in shown), shown
    event = tool_result("")
    exact = event.replace('"content": ""', '"content": "' + "y" * (2 * 65536 - len(event)) + '"')
    assert len(exact.encode()) == 2 * 65536
    pieces = [line.decode() for line in whole_lines(f"{said('before')}\n{exact}\n{said('The fix is in.')}\n"
                                                    .encode())[0]]
    assert readable_lines(OUTPUT_CLAUDE_STREAM, pieces) == [
        "before", "… 128 KiB of an event, not shown (`sandbox logs --raw` has it)", "The fix is in."]


def test_an_event_nested_past_the_decoders_recursion_is_said_by_size_and_the_rest_read() -> None:
    """`sandbox logs` ended in an internal error (RecursionError) for one such line anywhere in the tail."""
    nested = '{"type": "assistant", "a": ' + "[" * 3000 + "]" * 3000 + "}"
    assert readable_lines(OUTPUT_CLAUDE_STREAM, [said("Before."), nested, said("After.")]) == [
        "Before.", "… 5 KiB of an event, not shown (`sandbox logs --raw` has it)", "After."]


def test_a_retry_after_no_answer_says_so() -> None:
    """A model API that never answered read "model API unknown: retry 1 of 1" (Claude Code's `error: unknown`)."""
    retry = {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 1}
    lines = [json.dumps({**retry, "error_status": None, "error": "unknown"}),
             json.dumps({**retry, "error_status": 529, "error": "overloaded"})]
    assert readable_lines(OUTPUT_CLAUDE_STREAM, lines) == ["! model API gave no answer: retry 1 of 1",
                                                           "! model API HTTP 529: retry 1 of 1"]


def test_a_search_says_what_it_looked_for_and_where() -> None:
    """`▸ Grep storage` named the folder searched, not what for."""
    grep = {"type": "assistant", "message": {"content": [
        {"type": "tool_use", "name": "Grep", "input": {"pattern": "def save", "path": "storage"}}]}}
    assert readable_lines(OUTPUT_CLAUDE_STREAM, [json.dumps(grep)]) == ["▸ Grep def save in storage"]


def test_an_interactive_agents_pane_reads_as_its_screen_showed_it() -> None:
    """Claude Code's TUI puts each word at its column and steps down rows: with the escapes only taken out, the
    Log tab and `sandbox logs` read "Quicksafetycheck:Isthis" (and `sandbox logs` printed the escapes escaped)."""
    from loomtui.execution.runtimes import OUTPUT_TERMINAL

    pane = [
        "\x1b7\x1b[r\x1b8\x1b[?25h\x1b[?2004h\r\r",
        "\x1b[2G\x1b[93m\x1b[1mAccessing\x1b[12Gworkspace:\x1b[22m\x1b[39m\r\r",
        "\r\r",
        "\x1b[2GQuick\x1b[8Gsafety\x1b[15Gcheck:\x1b[22GIs\x1b[25Gthis?\r\r",
        "\x1b]0;\u2733 Claude Code\x07\x1b[1A\x1b[2K\x1b[31m\u25cf\x1b[39m Reading 1 file\r\x1b[1B\x1b[3C\u23bf  notes.py\r\r",
        "\x1b[1A\x1b[2K\x1b[31m\u25cf\x1b[39m Reading 1 file\r\x1b[1B\x1b[3C\u23bf  notes.py\r\r",  # drawn again
        "typo\x08\x08od\r\r",
        "\x1b[99999Gfar",
    ]
    shown = readable_lines(OUTPUT_TERMINAL, pane)
    assert shown == [" Accessing workspace:", "", " Quick safety check: Is this?", "\u25cf Reading 1 file",
                     "   \u23bf  notes.py", "\u25cf Reading 1 file", "   \u23bf  notes.py",
                     "tyod",  # two backspaces, then "od" over "po"
                     " " * 1000 + "far"], shown  # a column past any screen's: at most MAX_COLUMN blanks
    # Two equal lines of output are two lines (a redrawn spinner's frame was dropped, and with it a repeated
    # list item or test line); Codex places each word at its row and column; a move down keeps the column.
    assert readable_lines(OUTPUT_TERMINAL, ["\x1b[3G-\x1b[5Gtwo\r\r", "\x1b[3G-\x1b[5Gtwo\r\r"]) == [
        "  - two", "  - two"]
    assert readable_lines(OUTPUT_TERMINAL, [
        "\x1b[10;1H\u2022 Here\x1b[10;8Hit\x1b[10;11His:\x1b[16;3Hword\x1b[16;8Hword\x1b[17;3HEND"]) == [
        "\u2022 Here it is:", "  word word", "  END"]
    assert readable_lines(OUTPUT_TERMINAL, ["  Second paragraph:\x1b[K\r\x1b[2C\x1b[1B- one\r\r"]) == [
        "  Second paragraph:", "  - one"]
    # A title never ended hides nothing after it (it hid the rest of its line); moves cannot widen a line past
    # MAX_COLUMN however many (an agent's 900 KB of `ESC[999C` read as 150 MB).
    assert readable_lines(OUTPUT_TERMINAL, ["bye\x1b]0;still shown"]) == ["bye0;still shown"]
    assert readable_lines(OUTPUT_TERMINAL, ["\x1b[999C" * 5000 + "x"]) == [" " * 1000 + "x"]
    # Nor can rows: a staircase of `x ESC[B` adds at most a line's length and one row's width of blanks in all.
    staircase = readable_lines(OUTPUT_TERMINAL, ["x\x1b[B" * 4000])
    assert sum(len(line) for line in staircase) <= 4 * 4000 + 1000 + 4000
    # Moves that draw nothing draw no blank line; a newline goes to the next row (`baz` is on foo's row).
    assert readable_lines(OUTPUT_TERMINAL, ["\x1b[16;40H\x1b[K\x1b[16;1Hhello"]) == ["hello"]
    assert readable_lines(OUTPUT_TERMINAL, ["\x1b[5;1Hfoo\r", "bar\x1b[5;5Hbaz"]) == ["foo", "bar", "    baz"]


def test_codex_events_read_as_what_it_did_with_its_tokens() -> None:
    """`codex exec --json`, as Codex 0.171 wrote it against a model API on loopback (its plain output said its
    tokens as one total after the error that ended it, and `report` counted none)."""
    from loomtui.execution.activity import parse_codex_json
    from loomtui.execution.runtimes import OUTPUT_CODEX_JSON

    run = [
        '{"type":"thread.started","thread_id":"01a24dcd-04af-7c13-9e2f-6f56a74ac6a4"}',
        '{"type":"turn.started"}',
        '{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc '
        "'echo hi > /w/tree/hello.txt'\",\"aggregated_output\":\"\",\"exit_code\":null,\"status\":\"in_progress\"}}",
        '{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"/bin/bash -lc '
        "'echo hi > /w/tree/hello.txt'\",\"aggregated_output\":\"\",\"exit_code\":0,\"status\":\"completed\"}}",
        '{"type":"item.completed","item":{"id":"item_1","type":"file_change","changes":[{"path":"/w/tree/a.py",'
        '"kind":"update"}],"status":"completed"}}',
        '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"Done, wrote hello.txt\\nand a.py"}}',
        '{"type":"turn.completed","usage":{"input_tokens":200,"cached_input_tokens":50,"cache_write_input_tokens":0,'
        '"output_tokens":40,"reasoning_output_tokens":0}}',
    ]
    assert readable_lines(OUTPUT_CODEX_JSON, ["Reading additional input from stdin...", *run], "/w/tree") == [
        "Reading additional input from stdin...", "· session started", "▸ exec /bin/bash -lc 'echo hi > hello.txt'",
        "▸ Edit a.py", "Done, wrote hello.txt", "and a.py", "■ finished: success, 200 in / 40 out tokens"]
    result = parse_codex_json(run[-1])[0]
    assert (result["kind"], result["input_tokens"], result["output_tokens"], result["cache_read_tokens"]) == (
        "result", 200, 40, 50)
    failed = [*run[:2], '{"type":"error","message":"We\\u2019re currently experiencing high demand"}',
              '{"type":"turn.failed","error":{"message":"We\\u2019re currently experiencing high demand"}}']
    assert readable_lines(OUTPUT_CODEX_JSON, failed)[-2:] == [
        "✗ model API: We’re currently experiencing high demand",
        "■ finished: error (We’re currently experiencing high demand)"]
    ended = parse_codex_json(failed[-1])[0]
    assert ended["is_error"] and ended["error"] == "We’re currently experiencing high demand"
    # No usage said: its tokens are not known, not 0 (the agent counted as reporting, its replies as none).
    from loomtui.execution.activity import usage_of
    assert ended["input_tokens"] is None and usage_of(ended) is None
    broken = '{"type":"item.completed","item":{"type":"command_execution","command":"pytest","exit_code":2}}'
    assert parse_codex_json(broken) == [{"kind": "error", "summary": "tool error: exit 2: pytest"}]
    # What it said last, first: a commit the pre-commit hook refused read "exit 1" alone, the holder unsaid.
    refused = json.dumps({"type": "item.completed", "item": {
        "type": "command_execution", "command": "git commit -qm x", "exit_code": 1,
        "aggregated_output": "loomtui: commit refused: a.py is held by sandbox 10793e (claim #1, exclusive)\n"}})
    assert parse_codex_json(refused) == [{"kind": "error", "summary": "tool error: exit 1 (loomtui: commit refused: "
                                          "a.py is held by sandbox 10793e (claim #1, exclusive)): git commit -qm x"}]
    assert parse_codex_json("[1]") == parse_codex_json('{"type":"item.completed","item":"x"}') == []
