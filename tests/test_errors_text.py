"""How loomtui writes untrusted text into one line (`loomtui.errors`): escaped, quoted, abridged."""

from __future__ import annotations

from loomtui.errors import abridged, escape_controls, shown

TASK = "Add partial refunds to the refunds API: quote and issue a refund for part of a payment"


def test_a_long_task_ends_at_a_whole_word_with_an_ellipsis() -> None:
    short = abridged(TASK, 70)
    assert short == "Add partial refunds to the refunds API: quote and issue a refund for…"
    assert len(short) <= 70


def test_short_text_is_kept_whitespace_made_one_line() -> None:
    assert abridged("fix\n  the\ttypo ", 70) == "fix the typo"
    assert abridged("x" * 70, 70) == "x" * 70


def test_one_word_longer_than_half_the_room_is_cut_mid_word() -> None:
    path = "payments/" + "very_long_module_name_" * 5 + ".py"
    assert abridged(f"edit {path}", 40) == f"edit {path}"[:39] + "…"


def test_control_characters_are_escaped_and_odd_text_quoted() -> None:
    assert escape_controls("a\x1b[2Jb\n") == "a\\x1b[2Jb\\n"
    assert shown("plain [text]") == "plain [text]" and shown("two\nlines") == "'two\\nlines'"
    # Printable to Python, blank on a screen: a Hangul filler, a grapheme joiner (the CLI's filter alike).
    from loomtui.cli.terminal import escaped

    assert escape_controls("x\u3164y\u034f é ✓") == escaped("x\u3164y\u034f é ✓") == "x\\u3164y\\u034f é ✓"
    smuggled = "a\U000e0101\ufe01 ❤\ufe0f"
    assert escape_controls(smuggled) == escaped(smuggled) == "a\\U000e0101\\ufe01 ❤\ufe0f"


def test_both_ends_of_a_long_text_are_kept_in_the_room_given() -> None:
    from loomtui.errors import both_ends

    assert both_ends("start " + "x" * 300 + " REAL", 40) == "start xxxxxxxxxxxxxxxxxx … xxxxxxxx REAL"
    assert [len(both_ends("y" * 50, n)) for n in (0, 1, 2, 3, 4, 5, 6, 40)] == [0, 1, 2, 3, 4, 5, 6, 40]


def test_a_task_in_the_app_is_one_honest_line() -> None:
    from loomtui.tui.sandbox_text import task_line, task_text

    assert task_line("fix the refund\nthen the ledger") == "fix the refund …"  # more lines follow: said
    assert task_line("invoice\u202egnp.exe") == "invoice\\u202egnp.exe"  # not shown reversed
    assert task_line("") == ""
    assert task_text("one\ntwo\x1b[2J") == "one\ntwo\\x1b[2J"


def test_the_activity_tab_draws_an_agent_s_text_in_an_event_and_leaves_out_the_empty_ones() -> None:
    """A claim's target is an agent's text: its controls never reach the terminal (the Log draws them); a
    data-only update made a row saying `sandbox.updated  abc123` and nothing more."""
    from loomtui.store import Event
    from loomtui.tui.sandbox_text import format_event, is_quiet
    from loomtui.tui.widgets.activity_log import ActivityLog

    claimed = Event(1, 0.0, "claim.added", "abc123", {"target": "a\x1b[2Jb\x07.py", "mode": "write"})
    assert ActivityLog._process_line(format_event(claimed)).endswith("abc123  mode=write target=ab␇.py")
    assert is_quiet(Event(2, 0.0, "sandbox.updated", "abc123", {}))
    assert not is_quiet(Event(3, 0.0, "sandbox.updated", "abc123", {"status": "exited"}))
    assert is_quiet(Event(4, 0.0, "audit.appended", "9", {}))


def test_a_count_is_said_with_its_noun_inflected_and_grouped_in_thousands() -> None:
    """`1167 changes decided` read as a year, next to `$3703703.40`."""
    from loomtui.errors import plural

    assert [plural(n, noun) for n, noun in ((1, "sandbox"), (2, "sandbox"), (3, "entry"), (1167, "change"),
                                            (2, "`claim`"))] == [
        "1 sandbox", "2 sandboxes", "3 entries", "1,167 changes", "2 `claims`"]
