"""Keys the footer shows only where they apply, which still answer elsewhere: a key pressed where it
does not apply says why not (a hidden key that did nothing would say nothing)."""

from __future__ import annotations

from typing import Final

from textual.binding import Binding

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
