"""Your own keys (keymap.yaml in loomtui's config folder): checked line by line, the good lines
applied in the app, its hints and help, and listed by `loomtui keys`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomtui.tui.keymap import load_keymap
from loomtui.tui.keys import use_keymap
from loomtui.tui.sandbox_text import app_step_hints
from tests.conftest import run_cli, wait_for


@pytest.fixture
def keymap_file() -> Iterator[Path]:
    """The user's keymap.yaml (in the test's own config folder); the hints' keys are the defaults after."""
    yield Path(os.environ["LOOMTUI_CONFIG_DIR"]) / "keymap.yaml"
    use_keymap({})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_each_bad_line_is_named_and_left_out_and_the_good_ones_apply(keymap_file: Path) -> None:
    write(keymap_file, "dashboard.new: a\n"
                       "dashbord.stop: x\n"
                       "app.quit: [ctrl+x, Q]\n"
                       "dashboard.diff: s\n"
                       "dashboard.zoom: ctlr+z\n"
                       "escalations.approve: tab\n"
                       "graph.zoom: f5\n"
                       "context.reload: '?'\n"
                       "plan.back: ''\n"
                       "app.mode.metrics: 0\n")  # a digit is a key, not a number
    loaded = load_keymap()
    assert loaded.keymap == {"dashboard.new": "a", "app.quit": "ctrl+x,Q", "graph.zoom": "f5", "app.mode.metrics": "0"}
    where = f"{keymap_file}:"
    assert [problem.split(": ", 2)[:2] for problem in loaded.problems] == [
        [f"{where}2", "dashbord.stop"], [f"{where}4", "dashboard.diff"], [f"{where}5", "dashboard.zoom"],
        [f"{where}6", "escalations.approve"], [f"{where}8", "context.reload"], [f"{where}9", "plan.back"]]
    said = "\n".join(loaded.problems)
    assert "did you mean 'dashboard.stop'?" in said
    assert "s already answers as Stop (dashboard.stop)" in said  # Textual would have kept only one
    assert "'ctlr+z' is not a key" in said and "tab moves the focus" in said
    assert "? already answers as Help (app.help)" in said  # the app's keys answer in every view


def test_keys_moved_together_do_not_clash_and_keys_of_two_views_never_do(keymap_file: Path) -> None:
    write(keymap_file, "dashboard.stop: k\ndashboard.diff: s\nescalations.approve: y\ngraph.reindex: m\n")
    loaded = load_keymap()
    assert loaded.problems == []
    assert loaded.keymap == {"dashboard.stop": "k", "dashboard.diff": "s", "escalations.approve": "y",
                             "graph.reindex": "m"}


def test_an_id_named_twice_is_said_at_its_second_line_and_the_rest_still_applies(keymap_file: Path) -> None:
    """A repeated key failed the whole file (YAML's duplicate-key check): nothing applied, one line said."""
    write(keymap_file, "escalations.approve: Y\nescalations.approve: Z\napp.quit: []\ndashboard.new: [a, a]\n")
    loaded = load_keymap()
    assert loaded.keymap == {"escalations.approve": "Y", "dashboard.new": "a"}
    assert loaded.problems == [
        f"{keymap_file}:2: escalations.approve: named again (first at line 1) (this line is left out)",
        f"{keymap_file}:3: app.quit: expected a key, or a list of keys (got an empty list) (this line is left out)"]


def test_a_keymap_that_is_not_a_mapping_is_one_line_and_nothing_applies(keymap_file: Path) -> None:
    write(keymap_file, "dashboard.new: [a\n")
    loaded = load_keymap()
    assert loaded.keymap == {} and len(loaded.problems) == 1 and loaded.problems[0].startswith(f"{keymap_file}:")
    write(keymap_file, "- dashboard.new\n")
    assert load_keymap().problems == [f"{keymap_file}:1: top level: expected a mapping (got a list) (the whole "
                                      "file is left out: every key is its default)"]
    keymap_file.unlink()
    assert load_keymap().keymap == {} and load_keymap().problems == []  # none: every key is its default


async def test_the_app_answers_your_keys_names_them_in_its_hints_and_help_and_says_a_bad_line(
        repo: Path, keymap_file: Path) -> None:
    from textual.widgets import Static

    from loomtui.tui.app import LoomApp
    from loomtui.tui.screens.dashboard import DashboardScreen
    from loomtui.tui.screens.help import HelpScreen
    from loomtui.tui.screens.sandbox_forms import ConfirmScreen, NewSandboxScreen
    from loomtui.workspace import open_workspace

    write(keymap_file, "dashboard.new: a\napp.mode.escalations: ctrl+e\ndashboard.start: ctrl+s\nnope: b\n"
                       "confirm.yes: Y\nnope2: b\nnope3: b\nnope4: b\n")
    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        said = [n.message for n in app._notifications if n.title == "keymap"]
        # One toast for the file's four problems (a toast each covered the whole screen), the rest counted.
        assert len(said) == 1 and said[0].startswith(f"{keymap_file}:4: nope: no key has this id"), said
        assert said[0].count("\n") == 3 and said[0].endswith("\nand 1 more"), said
        await pilot.press("n")  # not New any more
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, NewSandboxScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert app_step_hints()["decide"] == "press ctrl+e" and app_step_hints()["rerun"] == "ctrl+s runs it again"
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        keys = {binding_id: key for key, _what, _where, binding_id in app.screen.rows}
        assert keys["dashboard.new"] == "a" and keys["app.mode.escalations"] == "^e"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        answers: list[bool | None] = []
        app.push_screen(ConfirmScreen("archive it?"), answers.append)
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause()
        said = " ".join(str(static.visual) for static in app.screen.query(Static))
        assert "Y yes · n no" in said, said  # the dialog names the key you chose, which answers it
        await pilot.press("Y")
        await wait_for(pilot, lambda: answers == [True])


def test_loomtui_keys_lists_every_key_with_yours_marked_and_fails_on_a_bad_line(repo: Path, keymap_file: Path) -> None:
    done = run_cli(repo, "keys", "--json")
    listed = json.loads(done.stdout)
    assert done.returncode == 0 and listed["problems"] == [] and len(listed["keys"]) > 50
    new = next(key for key in listed["keys"] if key["id"] == "dashboard.new")
    assert new == {"id": "dashboard.new", "keys": ["n"], "default": ["n"], "yours": False, "label": "New",
                   "what": new["what"]} and new["what"]
    write(keymap_file, "dashboard.new: a\n\napp.quit: tab\n")
    done = run_cli(repo, "keys")
    assert done.returncode == 1
    assert next(line for line in done.stdout.splitlines() if line.startswith("dashboard.new ")).split()[1] == "a*"
    assert done.stderr == (f"{keymap_file}:3: app.quit: tab moves the focus: pick another key "
                           "(this line is left out)\n")
    # Not YAML at all: nothing of it applies, and its one line says so (it said "this line is left out").
    write(keymap_file, "dashboard.new: a\napp.quit: tab\n: bad\n")
    done = run_cli(repo, "keys")
    assert done.returncode == 1
    assert next(line for line in done.stdout.splitlines() if line.startswith("dashboard.new ")).split()[1] == "n"
    [said] = done.stderr.splitlines()
    assert said.startswith(f"{keymap_file}:3") and said.endswith("(the whole file is left out: every key is its "
                                                                  "default)"), said


def test_the_palette_ranks_a_key_named_whole_above_a_sentence_that_mentions_it() -> None:
    """`:merge` ranked "checklist 9: ... conflicts at merge time" above `Merge (m)` (both matched every word)."""
    from loomtui.tui.palette import ranked_hits

    entries = [("checklist 9: multiple agents' changes don't produce conflicts at merge time", print, ""),
               ("Merge (m)", print, ""), ("Reject (r)", print, "")]
    assert [hit.text for hit in ranked_hits("merge", entries)][:2] == [
        "Merge (m)", "checklist 9: multiple agents' changes don't produce conflicts at merge time"]


def test_the_palette_puts_a_record_named_by_its_id_first() -> None:
    """A sandbox's exact id ranked a region its sandbox holds (whose label names the id too) above the sandbox."""
    from loomtui.tui.palette import ranked_hits

    entries = [("region api/routing.py (claim #1 exclusive, sandbox 7a3948)", print, ""),
               ("sandbox 7a3948: route the refunds (running, claude)", print, ""),
               ("escalation #12 (high): 7a3948 asks: Bash rm -rf build", print, "")]
    assert ranked_hits("7a3948", entries)[0].text.startswith("sandbox 7a3948:")
    assert ranked_hits("#12", entries)[0].text.startswith("escalation #12")


def test_a_key_written_as_a_keyboard_labels_it_is_named_as_textual_binds_it() -> None:
    """`F1` was offered '1', and `ESC` nothing: Textual's names are lower case, and not the labels on keys."""
    from loomtui.tui.keymap import key_problem

    for written, meant in (("F1", "f1"), ("ESC", "escape"), ("Enter", "enter"), ("ctrl+PgUp", "ctrl+pageup")):
        said = key_problem(written)
        assert said is not None and said.endswith(f"(did you mean {meant!r}?)"), said
    assert key_problem("f1") is None and key_problem("escape") is None
