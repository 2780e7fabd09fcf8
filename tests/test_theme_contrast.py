"""Every shipped theme meets WCAG 2.x AA contrast on the colour pairs the app shows.

Thresholds (see loomtui/tui/contrast.py): 4.5:1 for all text, bold status words
included (WCAG 1.4.3: a terminal cell is not "large text", which starts at 14pt
bold); 3:1 for the non-text things one must see to use the app (WCAG 1.4.11):
the cursor bar against the rows, a ticked claim's mark against its box and
against the unticked mark, focus borders, and the theme's error, warning,
success and primary colours, which draw borders.

The pure model of how Textual paints a pair is checked against what Textual
really renders, so the numbers are those of the screen, not of a guess.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.color import Color
from textual.theme import Theme
from textual.widgets import DataTable, Footer, Static

from loomtui.tui.contrast import (
    NON_TEXT_AA,
    STATUS_STYLES,
    TEXT_AA,
    ThemeColours,
    check_theme,
    contrast_problems,
    contrast_ratio,
    status_specs,
)
from loomtui.tui.themes import LoomTheme, load_themes, register_themes
from loomtui.tui.widgets.tick_list import TickList

SHIPPED = load_themes().themes  # before the fixture below: the bundled themes only matter here
SHIPPED_NAMES = [theme.name for theme in SHIPPED]

# Every dict of Rich styles the screens print status-like text with.
SCREEN_STYLES = {
    "loomtui.tui.sandbox_text": ("STATUS_STYLES", "RISK_STYLES", "STEP_STYLES"),
    "loomtui.tui.screens.governance": ("DECISION_STYLES",),
    "loomtui.tui.screens.graph": ("SEVERITY_STYLES",),
    "loomtui.tui.screens.metrics": ("ANSWER_STYLES",),
    "loomtui.tui.evals_text": ("CHECK_STYLES", "ITEM_STYLES", "CLASS_STYLES"),
}


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user config dir, so ~/.config never leaks in."""
    config = tmp_path / "config"
    monkeypatch.setenv("LOOMTUI_CONFIG_DIR", str(config))
    return config


# -- the formula ---------------------------------------------------------------


def test_contrast_ratio_matches_wcag_reference_values() -> None:
    white, black = Color.parse("#FFFFFF"), Color.parse("#000000")
    assert contrast_ratio(white, black) == pytest.approx(21.0)
    assert contrast_ratio(black, white) == pytest.approx(21.0)
    assert contrast_ratio(white, white) == pytest.approx(1.0)
    # #767676 on white is the classic lightest grey that passes AA (4.54:1); #777777 fails (4.48:1).
    assert contrast_ratio(Color.parse("#767676"), white) == pytest.approx(4.54, abs=0.01)
    assert contrast_ratio(Color.parse("#777777"), white) == pytest.approx(4.48, abs=0.01)


# -- the shipped themes ------------------------------------------------------------


def test_the_three_themes_are_shipped() -> None:
    assert set(SHIPPED_NAMES) == {"loom-dark", "loom-light", "loom-high-contrast"}


@pytest.mark.parametrize("theme", SHIPPED, ids=SHIPPED_NAMES)
def test_shipped_theme_meets_wcag_aa(theme: Theme) -> None:
    results = check_theme(theme)
    assert len(results) > 60  # every pair was measured, not a handful
    failing = [result.line() for result in results if not result.ok]
    assert not failing, "below WCAG AA:\n" + "\n".join(failing)


@pytest.mark.parametrize("theme", SHIPPED, ids=SHIPPED_NAMES)
def test_a_ticked_claim_shows_on_its_box(theme: Theme) -> None:
    """The claims form's TickList: the tick must show on its box (an unticked box is empty)."""
    colours = ThemeColours(theme)
    box = colours.paint(("$surface", "$panel"))
    ticked = colours.layer("$text-success", box)
    assert contrast_ratio(ticked, box) >= NON_TEXT_AA, (theme.name, ticked.hex6, box.hex6)


def test_the_checked_status_colours_cover_every_screen_style() -> None:
    """A new colour in a screen's style dict must join STATUS_STYLES (and so the check)."""
    used: set[str] = set()
    for module_name, names in SCREEN_STYLES.items():
        module = importlib.import_module(module_name)
        for name in names:
            used.update(getattr(module, name).values())
    assert used, "no styles found"
    missing = set(status_specs(used).values()) - set(status_specs(STATUS_STYLES).values())
    assert not missing, f"status colours not checked for contrast: {sorted(missing)}"


# -- it can fail ------------------------------------------------------------------


def test_a_deliberately_bad_theme_fails_naming_theme_pair_and_ratio() -> None:
    murky = Theme(name="murky", primary="#555555", foreground="#6A6A6A", background="#505050",
                  surface="#505050", panel="#585858", success="#5A5A5A", dark=True)
    failing = contrast_problems(murky)
    assert failing
    body = next(line for line in failing if "body text on background" in line)
    ratio = contrast_ratio(Color.parse("#6A6A6A"), Color.parse("#505050"))
    assert body.startswith("murky: body text on background: ")
    assert f"{ratio:.2f}:1 < {TEXT_AA:g}:1" in body
    assert any(line.startswith("murky: focus border on background: ") for line in failing)  # a 3:1 pair


def test_an_ansi_palette_can_fail_a_theme_that_is_otherwise_fine() -> None:
    dark = next(theme for theme in SHIPPED if theme.name == "loom-dark")
    assert isinstance(dark, LoomTheme)
    dull_red = LoomTheme(**{**dark.__dict__, "name": "dull", "ansi_colors": {**dark.ansi_colors, "red": "#802020"}})
    failing = contrast_problems(dull_red)
    assert failing and all("status red" in line for line in failing), failing


# -- a user's theme ------------------------------------------------------------------


def write_theme(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


LOW_CONTRAST = """\
name: low-contrast
dark: true
primary: "#777777"
foreground: "#888888"
background: "#666666"
"""


def test_a_user_theme_below_aa_is_loaded_with_one_warning(isolated_config: Path) -> None:
    path = write_theme(isolated_config / "themes", "low.yaml", LOW_CONTRAST)
    result = load_themes()
    assert "low-contrast" in result.names and result.problems == []
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    theme = result.get("low-contrast")
    assert theme is not None
    worst = min((r for r in check_theme(theme) if not r.ok), key=lambda r: r.ratio / r.pair.minimum)
    prefix = f"{path}: theme 'low-contrast' is below WCAG AA contrast: "
    assert warning.startswith(prefix + worst.line().removeprefix("low-contrast: ") + "; "), warning
    assert warning.endswith(" more")  # the rest are counted, not listed


def test_the_app_warns_once_and_switches_ansi_palettes(isolated_config: Path) -> None:
    write_theme(isolated_config / "themes", "low.yaml", LOW_CONTRAST)
    result = load_themes()
    app = Probe()

    async def run() -> None:
        async with app.run_test() as pilot:
            register_themes(app, result)
            for name in ("loom-dark", "textual-dark", "loom-light", "low-contrast"):
                app.theme = name
                await pilot.pause()
                theme = app.current_theme
                want = ThemeColours(theme).ansi
                shown = app.ansi_theme_dark if theme.dark else app.ansi_theme_light
                assert shown.ansi_colors[1] == want.ansi_colors[1], name  # red
            warned = [note for note in app._notifications if note.title == "theme contrast"]
            assert [note.message for note in warned] == result.warnings

    asyncio.run(run())


def test_a_user_theme_that_passes_has_no_warning(isolated_config: Path) -> None:
    write_theme(isolated_config / "themes", "ok.yaml", 'name: copy\n' + (
        Path(load_themes().sources["loom-dark"]).read_text(encoding="utf-8").split("name: loom-dark", 1)[1]))
    result = load_themes()
    assert "copy" in result.names and result.warnings == [] and result.problems == []


def test_unknown_ansi_colour_name_is_a_problem_with_a_suggestion(isolated_config: Path) -> None:
    path = write_theme(isolated_config / "themes", "bad.yaml",
                       'name: bad\nprimary: "#336699"\nansi_colors:\n  rde: "#ff0000"\n  green: "notacolour"\n')
    result = load_themes()
    assert "bad" not in result.names
    problems = result.problems
    assert any(line.startswith(f"{path}:4: ") and "did you mean 'red'" in line for line in problems), problems
    assert any(line.startswith(f"{path}:5: ") and "not a colour" in line for line in problems), problems


# -- the model is what Textual paints ----------------------------------------------------

STATUS_PROBE = ("red", "green", "yellow", "cyan", "blue", "dim green", "dim")


class Probe(App[None]):
    """The widgets whose colours the pairs describe, each showing known text."""

    BINDINGS = [("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        text = Text()
        for style in ("", *STATUS_PROBE):
            text.append(f"<{style or 'plain'}>", style=style)
        yield Static(text, id="line")
        for table_id in ("focused", "blurred"):
            table: DataTable[Text] = DataTable(id=table_id, cursor_type="row", zebra_stripes=True)
            table.add_columns(*(f"c{i}" for i in range(len(STATUS_PROBE) + 1)))
            for row in range(3):
                table.add_row(Text(f"{table_id[0]}{row}"),
                              *(Text(f"{table_id[0]}:{style}.{row}", style=style) for style in STATUS_PROBE))
            yield table
        yield TickList[str](("ticked", "t", True), ("unticked", "u", False), id="claims")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#focused", DataTable).focus()


def _cells(app: App[None]) -> dict[tuple[int, str], Style]:
    """Each piece of text on the screen, by (row, stripped text), with its rendered style."""
    cells: dict[tuple[int, str], Style] = {}
    for y, strip in enumerate(app.screen._compositor.render_strips()):
        for segment in strip:
            if segment.text.strip() and segment.style is not None:
                cells.setdefault((y, segment.text.strip()), segment.style)
    return cells


def _rgb(colour: object) -> tuple[int, int, int]:
    triplet = getattr(colour, "triplet", None)
    assert triplet is not None, colour
    return (triplet.red, triplet.green, triplet.blue)


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_the_model_matches_what_textual_renders(name: str) -> None:
    """Each modelled pair's colours equal the rendered ones (to one step per channel)."""
    theme = next(theme for theme in SHIPPED if theme.name == name)
    colours = ThemeColours(theme)
    stripe = "$surface-darken-1 40%" if theme.dark else "$surface-lighten-1 50%"
    focused_row, blurred_row = ("$surface", "$foreground 5%"), ("$surface",)
    expected: dict[str, tuple[str, tuple[str, ...]]] = {}  # rendered text -> (fg spec, background layers)
    for style in STATUS_PROBE:
        spec = status_specs([style]).popitem()[1]
        expected[f"<{style}>"] = (spec, ("$background",))
        for prefix, row in (("f", focused_row), ("b", blurred_row)):
            expected[f"{prefix}:{style}.1"] = (spec, row)  # rows 1 and 2: odd, then striped
            expected[f"{prefix}:{style}.2"] = (spec, (*row, stripe))
    expected["<plain>"] = ("$foreground", ("$background",))
    expected["f0"] = ("$block-cursor-foreground", (*focused_row, "$block-cursor-background"))
    expected["b0"] = ("$block-cursor-blurred-foreground", (*blurred_row, "$block-cursor-blurred-background"))
    expected["ticked"] = ("$foreground", ("$surface", "$block-cursor-blurred-background"))
    expected["unticked"] = ("$foreground", ("$surface",))
    expected["q"] = ("$footer-key-foreground", ("$footer-background",))
    expected["Quit"] = ("$footer-description-foreground", ("$footer-background",))
    tick = ("$text-success", ("$surface", "$panel"))

    async def render() -> dict[tuple[int, str], Style]:
        app = Probe()
        async with app.run_test(size=(150, 24)) as pilot:
            register_themes(app, load_themes())
            app.theme = name
            await pilot.pause()
            await pilot.pause()
            return _cells(app)

    cells = asyncio.run(render())
    by_text: dict[str, Style] = {}
    for (_y, text), style in sorted(cells.items()):
        by_text.setdefault(text, style)
    mismatches: list[str] = []

    def compare(label: str, rendered: Style, fg_spec: str, layers: tuple[str, ...]) -> None:
        background = colours.paint(layers)
        foreground = colours.layer(fg_spec, background)
        want = (foreground.rgb, background.rgb)
        got = (_rgb(rendered.color), _rgb(rendered.bgcolor))
        if any(abs(a - b) > 1 for pair in zip(want, got, strict=True) for a, b in zip(*pair, strict=True)):
            mismatches.append(f"{label}: model {want}, rendered {got}")

    for text, (fg_spec, layers) in expected.items():
        assert text in by_text, f"{text!r} not on screen: {sorted(by_text)[:40]}"
        compare(text, by_text[text], fg_spec, layers)
    # The TickList's mark: an "X" on the ticked row alone (the unticked box is empty).
    mark_rows = sorted(y for (y, text) in cells if text == "X")
    assert len(mark_rows) == 1, mark_rows
    compare("ticked mark", cells[(mark_rows[0], "X")], *tick)
    assert not mismatches, "\n".join(mismatches)
