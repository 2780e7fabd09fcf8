"""Load colour themes from YAML files and register them with the Textual app.

A theme file maps onto :class:`textual.theme.Theme`::

    name: loom-dark          # required
    dark: true
    primary: "#6CA8FF"       # required
    background: "#14171D"
    variables:               # optional Textual CSS variables
      footer-key-foreground: "#F2B36B"
    ansi_colors:             # optional: what Rich's "red", "green"... in status text are
      red: "#F0717A"

Rich colour names in the screens' status text are ANSI colours; Textual paints
them from one palette per dark/light mode (Monokai, Alabaster), whatever the
theme. ``ansi_colors`` gives a theme its own, set on the app while it is shown.

Themes come from, in increasing precedence: the bundled ``themes/`` folder,
the user's theme folder (``$LOOMTUI_CONFIG_DIR/themes``, else
``$XDG_CONFIG_HOME/loomtui/themes``, else ``~/.config/loomtui/themes``), then
any ``extra_dirs``. A later theme with the same name replaces an earlier one.

Loading is never fatal: each problem becomes one line ``path:line: key: message``
in :attr:`ThemeLoadResult.problems` and the offending file is skipped. A user's
theme whose colours fall below WCAG AA contrast (see :mod:`loomtui.tui.contrast`)
is loaded, with one line in :attr:`ThemeLoadResult.warnings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

from loomtui.errors import ConfigError
from loomtui.resources import bundled
from loomtui.tui.contrast import ANSI_NAMES, check_theme, terminal_palette
from loomtui.yamlcheck import Value, closest, compose, read_text

if TYPE_CHECKING:
    from rich.terminal_theme import TerminalTheme
    from textual.app import App

__all__ = [
    "COLOUR_KEYS",
    "DEFAULT_THEME",
    "LoomTheme",
    "ThemeLoadResult",
    "bundled_themes_dir",
    "check_theme_file",
    "load_themes",
    "register_themes",
    "user_config_dir",
    "user_themes_dir",
]

DEFAULT_THEME = "loom-dark"

COLOUR_KEYS: tuple[str, ...] = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "success",
    "warning",
    "error",
    "boost",
)
_FLOAT_KEYS = ("luminosity_spread", "text_alpha")
_BOOL_KEYS = ("dark", "ansi")
KNOWN_KEYS: tuple[str, ...] = ("name", *COLOUR_KEYS, *_BOOL_KEYS, *_FLOAT_KEYS, "variables", "ansi_colors")
REQUIRED_KEYS: tuple[str, ...] = ("name", "primary")

# Theme names end up in a CSS class (`-theme-<name>`); variable names in `$name`.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_VARIABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SUFFIXES = (".yaml", ".yml")
_WARNED_PAIRS = 3  # a contrast warning names this many failing pairs, then counts the rest


@dataclass
class LoomTheme(Theme):
    """A Textual theme with its own ANSI palette for Rich's named colours."""

    ansi_colors: dict[str, str] = field(default_factory=dict)
    """ANSI colour name ("red", "bright_blue") -> colour; the rest stay Textual's."""


@dataclass
class ThemeLoadResult:
    """What :func:`load_themes` found."""

    themes: list[Theme] = field(default_factory=list)
    """Bundled themes first, then user ones; one per name (the later source wins)."""
    problems: list[str] = field(default_factory=list)
    """One line per problem, ``path:line: key: message``; those files were skipped."""
    warnings: list[str] = field(default_factory=list)
    """One line per user theme below WCAG AA contrast; those themes were loaded."""
    sources: dict[str, Path] = field(default_factory=dict)
    """Theme name -> the file it was finally loaded from."""

    @property
    def names(self) -> list[str]:
        return [theme.name for theme in self.themes]

    def get(self, name: str) -> Theme | None:
        return next((theme for theme in self.themes if theme.name == name), None)


def bundled_themes_dir() -> Path:
    """The themes shipped with loomtui (wheel: ``loomtui/_data/themes``; checkout: ``<repo>/themes``)."""
    return bundled("themes")


def user_config_dir() -> Path:
    """The user's own loomtui settings (themes, keymap): `$LOOMTUI_CONFIG_DIR`, else
    `$XDG_CONFIG_HOME/loomtui`, else `~/.config/loomtui`."""
    config_dir = os.environ.get("LOOMTUI_CONFIG_DIR")
    if config_dir:
        return Path(config_dir).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "loomtui"


def user_themes_dir() -> Path:
    """Where users put their own theme files."""
    return user_config_dir() / "themes"


def load_themes(extra_dirs: Sequence[Path] = ()) -> ThemeLoadResult:
    """Load bundled, user and `extra_dirs` themes; never raises for bad files."""
    result = ThemeLoadResult()
    by_name: dict[str, Theme] = {}  # insertion order = first appearance
    bundled_dir = bundled_themes_dir()
    for directory in (bundled_dir, user_themes_dir(), *map(Path, extra_dirs)):
        seen_here: dict[str, Path] = {}
        for path in _theme_files(directory, result.problems):
            theme, line, errors = check_theme_file(path)
            if theme is None:
                result.problems.extend(str(error) for error in errors)
                continue
            if theme.name in seen_here:
                result.problems.append(
                    f"{path}:{line}: name: theme {theme.name!r} is already defined in "
                    f"{seen_here[theme.name]}; file skipped"
                )
                continue
            seen_here[theme.name] = path
            by_name[theme.name] = theme
            result.sources[theme.name] = path
    result.themes = list(by_name.values())
    for theme in result.themes:  # the shipped ones are held to it by tests/test_theme_contrast.py
        if result.sources[theme.name].parent != bundled_dir:
            result.warnings.extend(_contrast_warning(theme, result.sources[theme.name]))
    return result


def check_theme_file(path: Path) -> tuple[Theme | None, int, list[ConfigError]]:
    """Validate one theme file: (theme, line of its `name:`, []) or (None, 0, every problem)."""
    try:
        theme, line = _load(Path(path))
    except _Problems as exc:
        return None, 0, exc.errors
    except ConfigError as exc:
        return None, 0, [exc]
    return theme, line, []


def register_themes(app: App[Any], result: ThemeLoadResult) -> None:
    """Register every loaded theme with `app` (replacing any of the same name), give the app
    each theme's ANSI palette while it is shown, and warn once of each contrast warning."""
    palettes: dict[str, TerminalTheme] = {}
    for theme in result.themes:
        app.register_theme(theme)
        if isinstance(theme, LoomTheme) and theme.ansi_colors:
            palettes[theme.name] = terminal_palette(theme.dark, theme.ansi_colors)
    app.watch(app, "theme", partial(_use_ansi_palette, app, palettes), init=True)
    for warning in result.warnings:
        app.notify(warning, title="theme contrast", severity="warning", timeout=10, markup=False)


def _use_ansi_palette(app: App[Any], palettes: dict[str, TerminalTheme], name: str) -> None:
    """The shown theme's palette; Textual's default for themes without one, so switching away restores it."""
    theme = app.current_theme
    palette = palettes.get(name) or terminal_palette(theme.dark)
    if theme.dark and app.ansi_theme_dark is not palette:
        app.ansi_theme_dark = palette
    elif not theme.dark and app.ansi_theme_light is not palette:
        app.ansi_theme_light = palette


def _contrast_warning(theme: Theme, path: Path) -> list[str]:
    """One line for `theme` if it is below WCAG AA, naming its worst pairs first."""
    if theme.ansi:  # the terminal's own palette decides; nothing here can measure it
        return []
    failing = sorted((r for r in check_theme(theme) if not r.ok), key=lambda r: r.ratio / r.pair.minimum)
    if not failing:
        return []
    shown = "; ".join(result.line().removeprefix(f"{theme.name}: ") for result in failing[:_WARNED_PAIRS])
    more = f"; and {len(failing) - _WARNED_PAIRS} more" if len(failing) > _WARNED_PAIRS else ""
    return [f"{path}: theme {theme.name!r} is below WCAG AA contrast: {shown}{more}"]


# -- internals ---------------------------------------------------------------


def _theme_files(directory: Path, problems: list[str]) -> list[Path]:
    try:
        if not directory.is_dir():
            return []
        return sorted(
            p for p in directory.iterdir() if p.suffix in _SUFFIXES and not p.name.startswith(".")
        )
    except OSError as exc:
        problems.append(f"{directory}: cannot list theme folder: {exc.strerror or exc}")
        return []


class _Problems(Exception):
    """Several problems in one file."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__(str(errors[0]))
        self.errors = errors


def _load(path: Path) -> tuple[Theme, int]:
    """The theme in `path` and the line of its `name:`; raises ConfigError or _Problems."""
    where = str(path)
    text = read_text(path, where)

    root = compose(text, where)  # raises ConfigError for malformed YAML / duplicate keys
    if root is None:
        raise ConfigError(where, 1, "top level: the file is empty; a theme needs name and primary")
    fields = root.as_mapping()  # keys checked below so that every problem is reported

    errors: list[ConfigError] = []
    for key, _ in fields.items():
        if key not in KNOWN_KEYS:
            guess = closest(key, KNOWN_KEYS)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            errors.append(fields.key(key).error("unknown key" + hint))
    for key in REQUIRED_KEYS:
        if key not in fields:
            errors.append(root.child(root.node, key).error("required key missing"))

    kwargs: dict[str, object] = {}
    name_line = root.line
    for key, value in fields.items():
        if key not in KNOWN_KEYS:
            continue
        try:
            if key == "name":
                name_line = value.line
                kwargs[key] = _name(value)
            elif key in COLOUR_KEYS:
                kwargs[key] = _colour(value)
            elif key in _BOOL_KEYS:
                kwargs[key] = value.as_bool()
            elif key in _FLOAT_KEYS:
                kwargs[key] = _fraction(value)
            elif key == "ansi_colors":
                kwargs[key] = _ansi_colours(value, errors)
            else:  # variables
                kwargs[key] = _variables(value, errors)
        except ConfigError as exc:
            errors.append(exc)

    if not errors:
        # Each value was checked against its key's type above; one dict of mixed values cannot say so.
        theme = LoomTheme(**kwargs)  # type: ignore[arg-type]
        try:
            theme.to_color_system().generate()
        except Exception as exc:  # noqa: BLE001 - whatever Textual rejects, skip the file
            errors.append(root.error(f"Textual rejected the theme: {exc}"))
        else:
            return theme, name_line
    raise _Problems(errors)


def _name(value: Value) -> str:
    name = value.as_str(non_empty=True).strip()
    if not _NAME_RE.match(name):
        raise value.error(
            f"{name!r} is not a valid theme name (use letters, digits, '-' and '_', e.g. 'my-theme')"
        )
    return name


def _colour(value: Value) -> str:
    text = value.as_str(non_empty=True).strip()
    try:
        Color.parse(text)
    except ColorParseError as exc:
        suggestion = f" (did you mean {exc.suggested_color!r}?)" if exc.suggested_color else ""
        raise value.error(f"{text!r} is not a colour{suggestion}") from None
    return text


def _fraction(value: Value) -> float:
    number = value.as_number()
    if not 0.0 <= number <= 1.0:
        raise value.error(f"must be between 0 and 1 (got {number:g})")
    return number


def _named_values(value: Value, errors: list[ConfigError], name_problem: Callable[[str], str | None],
                  parse: Callable[[Value], str]) -> dict[str, str]:
    """A mapping of names to values, each name checked by `name_problem` and each value parsed by
    `parse`; every problem goes into `errors` (a theme file reports them all at once)."""
    found: dict[str, str] = {}
    fields = value.as_mapping()
    for name, item in fields.items():
        if (problem := name_problem(name)) is not None:
            errors.append(fields.key(name).error(problem))
            continue
        try:
            found[name] = parse(item)
        except ConfigError as exc:
            errors.append(exc)
    return found


def _variables(value: Value, errors: list[ConfigError]) -> dict[str, str]:
    return _named_values(value, errors, lambda name: None if _VARIABLE_RE.match(name)
                         else "not a valid CSS variable name", _variable_value)


def _ansi_name_problem(name: str) -> str | None:
    if name in ANSI_NAMES:
        return None
    guess = closest(name, ANSI_NAMES)
    hint = f" (did you mean {guess!r}?)" if guess else f" (one of {', '.join(ANSI_NAMES[:8])}, bright_...)"
    return "not an ANSI colour name" + hint


def _ansi_colours(value: Value, errors: list[ConfigError]) -> dict[str, str]:
    return _named_values(value, errors, _ansi_name_problem, _colour)


def _variable_value(item: Value) -> str:
    """Variable values are CSS text ("#fff 30%", "bold", "$primary"); numbers are allowed."""
    try:
        return item.as_str(non_empty=True).strip()
    except ConfigError:
        pass
    try:
        number = item.as_number()
    except ConfigError:
        raise item.error("expected a string or a number") from None
    return f"{number:g}"
