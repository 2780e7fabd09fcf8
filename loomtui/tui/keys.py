"""The app's own keys; keys the footer shows only where they apply, which still answer elsewhere (a
key pressed where it does not apply says why not: a hidden key that did nothing would say nothing);
and the key a hint names, as the user's keymap chose it."""

from __future__ import annotations

from typing import Final

from textual.binding import Binding, BindingType
from textual.keys import format_key
from textual.widgets import Footer

VIEWS: Final = (
    ("dashboard", "Sandboxes", "the sandboxes and each agent's next step"),
    ("graph", "Claims", "who claims which code, and the conflicts"),
    ("escalations", "Escalations", "the escalations waiting for a decision"),
    ("policy", "Policy", "the policy's rules and what they decide"),
    ("audit", "Audit", "the hash-chained audit log, verified"),
    ("context", "Context", "the team context written into each sandbox"),
    ("plan", "Plan", "the tasks in dependency order"),
    ("metrics", "Metrics", "this week's figures and the checklist"),
)
"""The app's views (its modes) in the order of their keys, 1 to 8: mode, name, what it shows."""


def view_number(mode: str) -> int:
    """The key of a view (`audit`: 5), as VIEWS orders them."""
    return next(number for number, (name, _label, _what) in enumerate(VIEWS, 1) if name == mode)

APP_BINDINGS: Final[list[BindingType]] = [
    Binding("question_mark", "help", "Help", key_display="?", id="app.help",
            tooltip="Every key that works here: what it does, its id"),
    Binding("colon", "command_palette", "Commands", key_display=":", id="app.commands",
            tooltip="Find a key, sandbox, escalation or region by name"),
    # The footer keeps to what works on this screen, help, commands and quit: at 120 columns the
    # eight views and the theme pushed "q Quit" off its end. `?` and `:` list them all.
    Binding("t", "next_theme", "Theme", id="app.theme",
            show=False, tooltip="Switch to the next of loomtui's themes"),
    Binding("T", "pick_theme", "Pick theme", key_display="T", id="app.theme_picker",
            show=False, tooltip="Pick from every theme"),
    *(Binding(str(number), f"switch_mode('{mode}')", label, id=f"app.mode.{mode}", show=False,
              tooltip=f"View {number}: {what}") for number, (mode, label, what) in enumerate(VIEWS, 1)),
    Binding("q", "quit", "Quit", id="app.quit", tooltip="Leave the app"),
    # `/`, the first key a k9s or lazygit user tries: a view with no filter of its own says so. No
    # description, so neither the footer nor the help offers a key that only answers no.
    Binding("slash", "screen.filter", "", show=False, id="app.no_filter"),
    # ctrl+p too, Textual's own key for its palette: with `:` bound to it Textual binds ctrl+p no more, and it did
    # nothing, the letters typed next running as keys (`t` switched the theme, `a` approved). `:` is the one the
    # footer shows; `?` and `loomtui keys` list both (the README names both).
    Binding("ctrl+p", "command_palette", "Commands", show=False, id="app.commands_ctrl_p",
            tooltip="The command palette, as `:` (Textual's own key)"),
]
"""The app's own keys: help, commands, themes, the eight views, quit (on every screen but a modal one)."""

ANY_SELECTION: Final = 0
"""The last argument of a key's hidden twin: it runs for any selection, and its action says why not."""


def shown_where_it_applies(binding: Binding) -> list[Binding]:
    """`binding`, shown while the screen's `check_action` enables it, then its hidden twin on the same key
    (the action given ANY_SELECTION as one more argument), which Textual runs when the first is not
    enabled. The screen's check_action tells them apart with `is_twin`."""
    action = binding.action
    twin = f"{action[:-1]}, {ANY_SELECTION})" if action.endswith(")") else f"{action}({ANY_SELECTION})"
    return [binding, Binding(binding.key, twin, binding.description, show=False, key_display=binding.key_display,
                             id=binding.id, tooltip=binding.tooltip)]


def is_twin(parameters: tuple[object, ...]) -> bool:
    """Whether an action's parameters are a hidden twin's (`shown_where_it_applies`)."""
    return bool(parameters) and type(parameters[-1]) is int and parameters[-1] == ANY_SELECTION


_chosen: dict[str, str] = {}
"""The keymap in use (binding id to Textual's comma-separated keys): set as the app starts."""


def use_keymap(keymap: dict[str, str]) -> None:
    """Make `shown_key` name the keys of `keymap` (the user's, checked) from now on."""
    _chosen.clear()
    _chosen.update(keymap)


def shown_key(binding_id: str, default: str) -> str:
    """The key to press for `binding_id`, as a hint names it ("press 3"): the user's first key for it,
    else `default` (the binding's own)."""
    keys = _chosen.get(binding_id)
    return format_key(keys.split(",")[0]) if keys else default


class KeysFooter(Footer):
    """Every screen's footer: compact, and `:` once, in its place among the keys (with ctrl+p bound as well,
    Textual's footer showed the palette's key a second time at its right end)."""

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)
