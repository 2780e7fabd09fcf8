"""Theme files: the bundled set, validation with file:line problems, user overrides, Textual."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.theme import Theme
from textual.widgets import Footer, Label

from loomtui.tui.themes import (
    DEFAULT_THEME,
    bundled_themes_dir,
    load_themes,
    register_themes,
    user_themes_dir,
)

BUNDLED = {"loom-dark", "loom-light", "loom-high-contrast"}
PROBLEM = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<key>[^:]+): (?P<message>.+)$")


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the user config dir at an empty temp folder so ~/.config never leaks in."""
    config = tmp_path / "config"
    monkeypatch.setenv("LOOMTUI_CONFIG_DIR", str(config))
    return config


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def only_problem(problems: list[str], path: Path) -> re.Match[str]:
    assert len(problems) == 1, problems
    match = PROBLEM.match(problems[0])
    assert match, problems[0]
    assert match["path"] == str(path)
    return match


# -- bundled ----------------------------------------------------------------


def test_bundled_dir_is_the_checkout_themes_folder() -> None:
    folder = bundled_themes_dir()
    assert folder.is_dir()
    assert {p.stem for p in folder.glob("*.yaml")} >= BUNDLED


def test_bundled_themes_load_without_problems() -> None:
    result = load_themes()
    assert result.problems == []
    assert set(result.names) >= BUNDLED
    assert DEFAULT_THEME in result.names
    assert len(result.names) == len(set(result.names))


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_each_bundled_theme_is_a_valid_textual_theme(name: str) -> None:
    theme = load_themes().get(name)
    assert isinstance(theme, Theme)
    assert theme.name == name
    colours = theme.to_color_system().generate()  # raises if Textual dislikes anything
    assert colours
    for key in ("primary", "secondary", "accent", "foreground", "background", "surface", "panel",
                "success", "warning", "error"):
        value = getattr(theme, key)
        assert value, f"{name} should set {key}"
        Color.parse(value)
    assert theme.dark is (name != "loom-light")
    assert "footer-key-foreground" in theme.variables
    assert "block-cursor-background" in theme.variables


def _contrast(a: str, b: str) -> float:
    def luminance(colour: Color) -> float:
        def channel(v: int) -> float:
            c = v / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(colour.r) + 0.7152 * channel(colour.g) + 0.0722 * channel(colour.b)

    hi, lo = sorted((luminance(Color.parse(a)), luminance(Color.parse(b))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_high_contrast_meets_wcag_aaa_on_its_background() -> None:
    theme = load_themes().get("loom-high-contrast")
    assert theme is not None
    assert Color.parse(theme.background) == Color.parse("#000000")
    assert Color.parse(theme.foreground) == Color.parse("#FFFFFF")
    for key in ("foreground", "primary", "secondary", "accent", "success", "warning", "error"):
        assert _contrast(getattr(theme, key), theme.background) >= 7.0, key


# -- validation ---------------------------------------------------------------


def test_bad_colour_is_skipped_with_file_and_line(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    path = write(extra, "bad.yaml", 'name: bad\nprimary: "#123456"\naccent: not-a-colour\n')
    result = load_themes([extra])
    match = only_problem(result.problems, path)
    assert match["line"] == "3"
    assert match["key"] == "accent"
    assert "not-a-colour" in match["message"]
    assert "bad" not in result.names
    assert set(result.names) >= BUNDLED


def test_malformed_yaml_is_skipped(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    path = write(extra, "broken.yaml", 'name: broken\nprimary: "#123456\ndark: [true\n')
    good = write(extra, "fine.yaml", 'name: fine\nprimary: "#336699"\n')
    result = load_themes([extra])
    assert len(result.problems) == 1, result.problems
    assert result.problems[0].startswith(f"{path}:")
    assert "invalid YAML" in result.problems[0]
    assert "broken" not in result.names
    assert result.sources["fine"] == good


def test_every_problem_in_a_file_is_reported_one_line_each(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    path = write(
        extra,
        "many.yaml",
        "\n".join(
            [
                "name: many",  # 1
                "primry: '#123456'",  # 2 unknown key (and primary missing)
                "dark: maybe",  # 3 not a bool
                "background: '#zzzzzz'",  # 4 bad colour
                "variables:",  # 5
                "  footer-key-foreground: [1, 2]",  # 6 not a string
                "",
            ]
        ),
    )
    result = load_themes([extra])
    assert "many" not in result.names
    found = {}
    for line in result.problems:
        assert "\n" not in line
        match = PROBLEM.match(line)
        assert match and match["path"] == str(path), line
        found[match["key"]] = (int(match["line"]), match["message"])
    assert found["primry"][0] == 2 and "did you mean 'primary'" in found["primry"][1]
    assert "primary" in found and "required" in found["primary"][1]
    assert found["dark"][0] == 3
    assert found["background"][0] == 4
    assert found["variables.footer-key-foreground"][0] == 6


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('primary: "#123456"\n', "name"),
        ("name: x\n", "primary"),
        ('name: "has space"\nprimary: "#123456"\n', "name"),
        ('name: x\nprimary: "#123456"\ndark: "yes please"\n', "dark"),
        ('name: x\nprimary: "#123456"\nprimary: "#654321"\n', "primary"),
        ('name: x\nprimary: "#123456"\ntext_alpha: 3\n', "text_alpha"),
        ('- name: x\n', "top level"),
    ],
)
def test_invalid_files_are_skipped_never_fatal(tmp_path: Path, text: str, key: str) -> None:
    extra = tmp_path / "extra"
    path = write(extra, "t.yaml", text)
    result = load_themes([extra])
    match = only_problem(result.problems, path)
    assert match["key"] == key
    assert "x" not in result.names


def test_empty_and_non_utf8_files_are_skipped(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    write(extra, "empty.yaml", "# nothing here\n")
    extra.mkdir(exist_ok=True)
    (extra / "latin1.yaml").write_bytes(b"name: caf\xe9\nprimary: '#123456'\n")
    result = load_themes([extra])
    assert len(result.problems) == 2, result.problems
    assert all(p.startswith(str(extra)) for p in result.problems)
    assert set(result.names) == set(load_themes().names)


def test_duplicate_name_in_one_folder_keeps_the_first(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    first = write(extra, "a.yaml", 'name: twin\nprimary: "#111111"\n')
    second = write(extra, "b.yaml", 'name: twin\nprimary: "#222222"\n')
    result = load_themes([extra])
    match = only_problem(result.problems, second)
    assert match["key"] == "name"
    assert result.sources["twin"] == first


# -- user themes ----------------------------------------------------------------


def test_user_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOOMTUI_CONFIG_DIR", str(tmp_path / "a"))
    assert user_themes_dir() == tmp_path / "a" / "themes"
    monkeypatch.delenv("LOOMTUI_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert user_themes_dir() == tmp_path / "xdg" / "loomtui" / "themes"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert user_themes_dir() == Path.home() / ".config" / "loomtui" / "themes"


def test_user_theme_overrides_bundled_and_adds_new(isolated_config: Path) -> None:
    themes = isolated_config / "themes"
    override = write(
        themes, "mine.yaml", 'name: loom-dark\nprimary: "#FF00FF"\nbackground: "#000000"\n'
    )
    write(themes, "extra.yaml", 'name: my-own\nprimary: "#00AA00"\ndark: false\n')
    result = load_themes()
    assert result.problems == []
    assert result.names.count("loom-dark") == 1
    dark = result.get("loom-dark")
    assert dark is not None and dark.primary == "#FF00FF"
    assert result.sources["loom-dark"] == override
    # bundled first, user-only themes after
    assert result.names.index("my-own") > max(result.names.index(n) for n in BUNDLED)


def test_bad_user_theme_leaves_bundled_one_in_place(isolated_config: Path) -> None:
    path = write(isolated_config / "themes", "oops.yaml", 'name: loom-dark\nprimary: "#GGGGGG"\n')
    result = load_themes()
    only_problem(result.problems, path)
    dark = result.get("loom-dark")
    assert dark is not None and dark.primary == "#6CA8FF"


# -- Textual --------------------------------------------------------------------


class TinyApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Label("hello")
        yield Footer()


def test_register_and_switch_to_each_theme(isolated_config: Path) -> None:
    write(isolated_config / "themes", "u.yaml", 'name: user-theme\nprimary: "#00AA00"\n')
    result = load_themes()
    assert result.problems == []
    app = TinyApp()
    register_themes(app, result)
    seen: list[str] = []

    async def switch_all() -> None:
        async with app.run_test() as pilot:
            for theme in result.themes:
                app.theme = theme.name
                await pilot.pause()
                assert app.theme == theme.name
                assert app.current_theme is theme
                if theme.background:
                    assert app.screen.styles.background == Color.parse(theme.background)
                seen.append(theme.name)

    asyncio.run(switch_all())
    assert seen == result.names
    assert "user-theme" in seen and set(seen) >= BUNDLED
