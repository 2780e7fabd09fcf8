"""WCAG 2.x contrast of the colour pairs loomtui shows, computed from a theme's own variables.

Colours are resolved the way Textual 8 paints them: ``$name`` from
``Theme.to_color_system().generate()``, ``X 40%`` layered over what is under it,
``auto 60%`` as black or white at that alpha, Rich colour names ("red",
"green") through the ANSI palette Textual converts them with (its default
dark or light one, picked by the theme's ``dark``), and Rich's ``dim`` as the
colour blended towards its background by Textual's dim factor. A loomtui theme
may give its own ANSI palette (``ansi_colors:``, see themes.py); Textual's
default palettes put Monokai's red on a dark surface at 3.5:1.

Thresholds (WCAG 2.x level AA):

* 4.5:1 (1.4.3) for every piece of text, bold included: terminal cells are
  normal-size text, and WCAG's "large text" (14pt bold, 18pt regular) is
  bigger than a terminal's cell, so bold status words get no discount.
* 3:1 (1.4.11) for what is not text but must be seen to use the app: the
  focused table's cursor bar against its rows, a ticked claim's mark against
  its box and against the unticked mark, focus borders, and the theme's
  error/warning/success/primary colours, which draw borders and marks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from rich.color import ANSI_COLOR_NAMES
from rich.color import Color as RichColor
from rich.style import Style
from rich.terminal_theme import TerminalTheme
from textual._ansi_theme import ALABASTER, MONOKAI
from textual.color import Color
from textual.filter import dim_color
from textual.theme import Theme

__all__ = [
    "ANSI_NAMES",
    "NON_TEXT_AA",
    "PAIRS",
    "TEXT_AA",
    "Pair",
    "PairResult",
    "STATUS_STYLES",
    "ThemeColours",
    "check_theme",
    "contrast_problems",
    "contrast_ratio",
    "relative_luminance",
    "status_specs",
    "terminal_palette",
]

TEXT_AA: Final = 4.5
"""WCAG 1.4.3: text (terminal cells are never "large text")."""
NON_TEXT_AA: Final = 3.0
"""WCAG 1.4.11: UI components and states (cursor bar, tick marks, borders)."""

STATUS_STYLES: Final = ("red", "green", "yellow", "cyan", "blue", "dim")
"""The Rich styles' colours the screens print status, risk and step text in (STATUS_STYLES and
co; bold and italic do not change a colour). A test checks this covers every such style in the
screens. Not "dim green": dimming blends towards the background, and no recognisable green
dimmed on a light theme reaches 4.5:1 (loom-light's best was 2.8:1)."""

ANSI_NAMES: Final = tuple(name for name, number in ANSI_COLOR_NAMES.items() if number < 16)
"""The 16 colour names a theme's ``ansi_colors`` may set: black ... white, bright_black ..."""


def relative_luminance(colour: Color) -> float:
    """WCAG 2.x relative luminance of an opaque colour, 0 (black) to 1 (white)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(colour.r) + 0.7152 * linear(colour.g) + 0.0722 * linear(colour.b)


def contrast_ratio(first: Color, second: Color) -> float:
    """WCAG 2.x contrast ratio of two opaque colours, 1 to 21 (order does not matter)."""
    high, low = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# -- resolving a theme's colours ----------------------------------------------


def terminal_palette(dark: bool, overrides: Mapping[str, str] | None = None) -> TerminalTheme:
    """Textual's default ANSI palette for a dark (or light) theme, with `overrides` (name -> colour)."""
    base = MONOKAI if dark else ALABASTER
    if not overrides:
        return base
    colours: list[tuple[int, int, int]] = []
    for number in range(16):
        red, green, blue = base.ansi_colors[number]
        colours.append((red, green, blue))
    for name, value in overrides.items():
        colours[ANSI_COLOR_NAMES[name]] = Color.parse(value).rgb
    return TerminalTheme(base.background_color, base.foreground_color, colours[:8], colours[8:])


def _ansi_overrides(theme: Theme) -> Mapping[str, str]:
    # A LoomTheme (themes.py) carries its own palette; Textual's own themes have none.
    overrides = getattr(theme, "ansi_colors", None)
    return overrides if isinstance(overrides, Mapping) else {}


class ThemeColours:
    """A theme's generated CSS variables, and the colour a CSS-like spec paints over a background."""

    def __init__(self, theme: Theme) -> None:
        self.theme = theme
        self.variables = theme.to_color_system().generate()
        # Textual maps Rich's named colours through App.ansi_theme_dark / _light (unless the
        # terminal's own palette is asked for with ansi: true, which no check can know);
        # register_themes sets those to the theme's own palette while it is shown.
        self.ansi = terminal_palette(theme.dark, _ansi_overrides(theme))

    def layer(self, spec: str, under: Color | None) -> Color:
        """`spec` ("$panel", "$error 30%", "#fff", "auto 60%", "ansi red", "dim $foreground")
        painted over `under` (None: the spec must be opaque)."""
        spec = spec.strip()
        if spec.startswith("dim "):
            if under is None:
                raise ValueError(f"{spec!r}: dim needs a background")
            colour = self.layer(spec[4:], under)
            # Textual's ANSIToTruecolor filter turns Rich's dim into this blend.
            return Color.from_rich_color(dim_color(under.rich_color, colour.rich_color))
        if spec.startswith("ansi "):
            triplet = RichColor.parse(spec[5:]).get_truecolor(self.ansi, foreground=True)
            return Color(*triplet)
        text, _, percent = spec.partition(" ")
        alpha = float(percent.rstrip("%")) / 100 if percent else 1.0
        if text.startswith("$"):
            value = self.variables[text[1:]]
            if value.startswith("$"):  # a theme's variable may name another one
                return self.layer(f"{value} {percent}".strip(), under)
            base, _, inner = value.partition(" ")
            if inner:  # e.g. "#6CA8FF 30%": the variable carries its own alpha
                alpha *= float(inner.rstrip("%")) / 100
            text = base
        if text == "auto":
            if under is None:
                raise ValueError(f"{spec!r}: auto needs a background")
            colour = under.get_contrast_text(alpha)
        else:
            colour = Color.parse(text).multiply_alpha(alpha)
        if under is None:
            if colour.a < 1:
                raise ValueError(f"{spec!r} is translucent and has nothing under it")
            return colour
        return under + colour

    def paint(self, layers: tuple[str, ...]) -> Color:
        """The opaque colour of `layers` painted one over another, the first at the bottom."""
        colour: Color | None = None
        for spec in layers:
            colour = self.layer(spec, colour)
        if colour is None:
            raise ValueError("no layers")
        return colour


# -- the pairs the app shows --------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """A foreground drawn over a background (both CSS-like specs), and the ratio it needs."""

    name: str
    foreground: str
    background: tuple[str, ...]
    minimum: float


@dataclass(frozen=True)
class PairResult:
    """One pair measured on one theme."""

    theme: str
    pair: Pair
    foreground: Color
    background: Color
    ratio: float

    @property
    def ok(self) -> bool:
        return self.ratio >= self.pair.minimum

    def line(self) -> str:
        return (
            f"{self.theme}: {self.pair.name}: {self.ratio:.2f}:1 < {self.pair.minimum:g}:1 "
            f"({self.foreground.hex6} on {self.background.hex6})"
        )


# Backgrounds, as the widgets' CSS layers them (Textual 8.2 DEFAULT_CSS):
SCREEN = ("$background",)
SURFACE = ("$surface",)  # modals, inputs, lists
PANEL = ("$panel",)  # status header
TABLE = ("$surface", "$foreground 5%")  # a focused DataTable (background-tint), odd rows
TABLE_BLURRED = ("$surface",)
FOOTER = ("$footer-background",)
TOAST = ("$panel-lighten-1",)  # notifications ("theme skipped", errors)
BANNER = ("$background", "$error 30%")  # app.tcss #banner, the evals banner
SECTION = ("$background", "$boost")  # app.tcss .section-title
CURSOR = (*TABLE, "$block-cursor-background")
CURSOR_BLURRED = (*TABLE_BLURRED, "$block-cursor-blurred-background")
TICK_BOX = ("$surface", "$panel")  # SelectionList's checkbox


def _stripe(table: tuple[str, ...], dark: bool) -> tuple[str, ...]:
    """DataTable's zebra stripe (even rows): a darker one on dark themes, a lighter one else."""
    return (*table, "$surface-darken-1 40%") if dark else (*table, "$surface-lighten-1 50%")


def status_specs(styles: Iterable[str]) -> dict[str, str]:
    """The colour spec of each Rich style's text ("bold dim green" -> "dim ansi green"), by name."""
    specs: dict[str, str] = {}
    for text in styles:
        style = Style.parse(text)
        colour = style.color
        if colour is None:
            base = "$foreground"  # no colour of its own: the widget's
        elif colour.triplet is not None:
            base = colour.triplet.hex
        else:
            base = f"ansi {colour.name}"
        spec = f"dim {base}" if style.dim else base
        name = f"{'dim ' if style.dim else ''}{colour.name if colour else 'plain'}"
        specs[name] = spec
    return specs


def pairs_for(dark: bool, styles: Iterable[str] = STATUS_STYLES) -> tuple[Pair, ...]:
    """Every pair checked on a dark (or light) theme; `styles`: the status text's Rich styles."""
    rows = {
        "table row": TABLE,
        "table stripe": _stripe(TABLE, dark),
        "blurred table row": TABLE_BLURRED,
        "blurred table stripe": _stripe(TABLE_BLURRED, dark),
    }
    text_on = {"background": SCREEN, "surface": SURFACE, "panel": PANEL, **rows}
    pairs: list[Pair] = []
    for where, under in text_on.items():
        pairs.append(Pair(f"body text on {where}", "$foreground", under, TEXT_AA))
        pairs.append(Pair(f"dim text on {where}", "dim $foreground", under, TEXT_AA))
    for where, under in {"background": SCREEN, **rows}.items():
        for name, spec in status_specs(styles).items():
            if spec in ("$foreground", "dim $foreground"):
                continue  # the body and dim text pairs above
            pairs.append(Pair(f"status {name} on {where}", spec, under, TEXT_AA))
    pairs += [
        Pair("muted text ($text-muted) on background", "$text-muted", SCREEN, TEXT_AA),
        Pair("table header", "$foreground", ("$panel", "$foreground 5%"), TEXT_AA),
        Pair("status header", "$foreground", PANEL, TEXT_AA),
        Pair("table cursor text", "$block-cursor-foreground", CURSOR, TEXT_AA),
        Pair("blurred table cursor text", "$block-cursor-blurred-foreground", CURSOR_BLURRED, TEXT_AA),
        Pair("blurred list highlight text", "$foreground", CURSOR_BLURRED, TEXT_AA),
        Pair("footer key", "$footer-key-foreground", FOOTER, TEXT_AA),
        Pair("footer description", "$footer-description-foreground", FOOTER, TEXT_AA),
        Pair("banner text", "$foreground", BANNER, TEXT_AA),
        Pair("section title", "$foreground", SECTION, TEXT_AA),
        Pair("notification text", "$foreground", TOAST, TEXT_AA),
        Pair("error notification title", "$text-error", TOAST, TEXT_AA),
        Pair("warning notification title", "$text-warning", TOAST, TEXT_AA),
        Pair("success notification title", "$text-success", TOAST, TEXT_AA),
        Pair("table cursor bar against rows", "$block-cursor-background", TABLE, NON_TEXT_AA),
        Pair("ticked claim mark in its box", "$text-success", TICK_BOX, NON_TEXT_AA),
        Pair("ticked vs unticked claim mark", "$text-success", (*TICK_BOX, "$panel-darken-2"), NON_TEXT_AA),
        Pair("focus border on background", "$border", SCREEN, NON_TEXT_AA),
        Pair("focus border on surface", "$border", SURFACE, NON_TEXT_AA),
    ]
    for name in ("primary", "error", "warning", "success"):
        pairs.append(Pair(f"${name} (borders, marks) on background", f"${name}", SCREEN, NON_TEXT_AA))
    return tuple(pairs)


PAIRS: Final = {True: pairs_for(True), False: pairs_for(False)}
"""The pairs checked, for dark themes (True) and light ones (False)."""


def check_theme(theme: Theme) -> list[PairResult]:
    """Measure every pair the app shows on `theme`."""
    colours = ThemeColours(theme)
    results: list[PairResult] = []
    for pair in PAIRS[theme.dark]:
        background = colours.paint(pair.background)
        foreground = colours.layer(pair.foreground, background)
        results.append(PairResult(theme.name, pair, foreground, background, contrast_ratio(foreground, background)))
    return results


def contrast_problems(theme: Theme) -> list[str]:
    """One line per pair of `theme` below its WCAG AA ratio; [] when it passes (or is ANSI-native)."""
    if theme.ansi:  # the terminal's own palette decides; nothing here can measure it
        return []
    return [result.line() for result in check_theme(theme) if not result.ok]
