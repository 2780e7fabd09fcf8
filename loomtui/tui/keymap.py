"""Your own keys: `keymap.yaml` in loomtui's config folder (`$LOOMTUI_CONFIG_DIR`, else
`~/.config/loomtui`) maps a key's id, as `?` and `loomtui keys` show it, to the key or keys
(comma-separated, or a list) to press instead:

    dashboard.new: a            # `a` makes a new sandbox
    app.quit: ctrl+q, q
    escalations.approve: [y, enter]

The file is checked as it is read, line by line: an id no key has (with the one you likely
meant), a key name Textual does not know (`ctlr+s`), a key the terminal or a table keeps
(tab, the arrows), or a key another of loomtui's keys already answers where this one works
(both would answer; Textual keeps one) is a `keymap.yaml:LINE: id: problem` line, and that
entry is left out; the others apply. A file that is not YAML (or not a mapping) cannot be read line by line:
it is left out whole, said so. Read when the app starts.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.keys import KEY_NAME_REPLACEMENTS, Keys, _character_to_key, format_key, key_to_character
from textual.screen import ModalScreen, Screen
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from loomtui.errors import ConfigError
from loomtui.tui.themes import user_config_dir
from loomtui.yamlcheck import Value, closest, compose, describe, present, read_text

KEYMAP_FILE: Final = "keymap.yaml"
MODIFIERS: Final = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
RESERVED: Final = {
    "tab": "moves the focus", "shift+tab": "moves the focus back", "ctrl+c": "copies, or says how to quit",
    "ctrl+q": "quits", "up": "moves a table's cursor", "down": "moves a table's cursor",
    "left": "moves a tree's or a field's cursor", "right": "moves a tree's or a field's cursor",
    "pageup": "pages a table", "pagedown": "pages a table",
}
"""Keys Textual and the terminal keep: a table's or a tree's cursor, focus, copy, quit."""
_NAMED: Final = frozenset(key.value.rsplit("+", 1)[-1] for key in Keys) | frozenset(KEY_NAME_REPLACEMENTS.values())


@dataclass(frozen=True)
class LoomKey:
    """One of loomtui's keys: its id, default keys (Textual's names), label, what it does, and the
    class whose BINDINGS holds it (where it answers)."""

    id: str
    keys: tuple[str, ...]
    description: str
    tooltip: str
    owner: type[DOMNode]


LEFT_OUT: Final = "(this line is left out)"
NOTHING_READ: Final = "(the whole file is left out: every key is its default)"
"""What follows each problem where it is said: the rest of the keymap applies."""


@dataclass
class KeymapLoad:
    """A keymap as read: where, what applies (id to Textual's comma-separated keys) and each problem's line."""

    path: Path
    keymap: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def keymap_path() -> Path:
    """Where the user's keymap lives."""
    return user_config_dir() / KEYMAP_FILE


def loomtui_keys() -> list[LoomKey]:
    """Every described key of loomtui's app, views, forms and widgets that has an id, once per id."""
    found: dict[str, LoomKey] = {}
    for cls, binding in described_bindings():
        if binding.id and binding.id not in found:
            found[binding.id] = LoomKey(binding.id, _split(binding.key), binding.description, binding.tooltip, cls)
    return sorted(found.values(), key=lambda key: key.id)


def described_bindings() -> list[tuple[type[DOMNode], Binding]]:
    """Every binding with a description in loomtui's own classes (its modules loaded first), with its class."""
    import loomtui.tui

    for module in pkgutil.walk_packages(loomtui.tui.__path__, "loomtui.tui."):
        importlib.import_module(module.name)
    return [(cls, binding) for cls in _loomtui_classes() for binding in vars(cls).get("BINDINGS", ())
            if isinstance(binding, Binding) and binding.description]


def _loomtui_classes() -> Iterator[type[DOMNode]]:
    pending: list[type[DOMNode]] = [DOMNode]
    seen = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("loomtui."):
            yield cls


def _split(keys: str) -> tuple[str, ...]:
    """Textual's comma-separated keys, each in its long name (`?` as `question_mark`): Textual's own
    normalisation (`App._normalize_keymap` uses the same private helper), so that keys compare as it
    will bind them."""
    return tuple(_character_to_key(key) if len(key) == 1 else key for key in (k.strip() for k in keys.split(",")))


def shown_keys(keys: list[str]) -> str:
    """Keys as a person reads them (`?`, `esc`, `ctrl+s`), space-separated."""
    return " ".join(format_key(key) for key in keys)


_KEY_LABELS: Final = {"esc": "escape", "return": "enter", "del": "delete", "ins": "insert", "pgup": "pageup",
                      "pgdn": "pagedown", "pgdown": "pagedown", "bksp": "backspace", "spacebar": "space"}
"""Keys as keyboards label them, by the name Textual binds them as."""


def key_problem(key: str) -> str | None:
    """Why `key` is not a key Textual can bind, or None."""
    *modifiers, base = key.split("+")
    unknown = [modifier for modifier in modifiers if modifier not in MODIFIERS]
    if unknown or not base:
        return f"{key!r} is not a key: modifiers are {', '.join(sorted(MODIFIERS))} (as in ctrl+s)"
    if len(base) == 1 or base in _NAMED:
        return None
    character = key_to_character(base)
    if character is not None and len(character) == 1 and character.isprintable():
        return None
    # Textual's names are lower case (`F1` was taken for '1'), and some keyboards' labels are not its names.
    lowered = base.lower()
    guess = lowered if lowered in _NAMED else _KEY_LABELS.get(lowered) or closest(lowered, _NAMED)
    hint = f" (did you mean {'+'.join([*modifiers, guess])!r}?)" if guess else ""
    return f"{key!r} is not a key Textual knows: a character, or a name such as f5, escape or question_mark{hint}"


def _answers_together(one: type[DOMNode], other: type[DOMNode]) -> bool:
    """Whether keys of these two classes can answer on the same screen: the app's on every screen but a
    modal one (Textual stops at the modal), a class's with its subclasses' (they inherit them), a
    widget's on any screen. Two screens never do."""
    if issubclass(one, other) or issubclass(other, one):
        return True
    if issubclass(one, App) or issubclass(other, App):
        return not (issubclass(one, ModalScreen) or issubclass(other, ModalScreen))
    return issubclass(one, Screen) != issubclass(other, Screen)


def load_keymap(path: Path | None = None) -> KeymapLoad:
    """The user's keymap, checked (module docstring); a missing file is an empty keymap. Never raises."""
    path = path or keymap_path()
    result = KeymapLoad(path=path)
    if not present(path):
        return result
    try:
        root = compose(read_text(path, str(path)), str(path), duplicate_keys=True)
        entries = _entries(root) if root is not None else []
    except ConfigError as exc:  # not YAML, or not a mapping: none of it is read
        result.problems.append(f"{exc} {NOTHING_READ}")
        return result
    keys = {key.id: key for key in loomtui_keys()}
    wanted: dict[str, tuple[str, ...]] = {}
    lines: dict[str, Value] = {}
    problems: list[tuple[int, str]] = []
    for name, value in entries:
        try:
            if name in lines:  # one line per id: the first stands, this one is said
                raise value.error(f"named again (first at line {lines[name].line})")
            lines[name] = value
            wanted[name] = _entry(name, value, keys)
        except ConfigError as exc:
            problems.append((value.line, f"{exc} {LEFT_OUT}"))
    for name, chosen in wanted.items():
        clash = _clash(name, chosen, wanted, keys)
        if clash:
            problems.append((lines[name].line, f"{lines[name].error(clash)} {LEFT_OUT}"))
        else:
            result.keymap[name] = ",".join(chosen)
    result.problems = [problem for _line, problem in sorted(problems)]
    return result


def _entries(root: Value) -> list[tuple[str, Value]]:
    """The file's (id, value) pairs in order, a repeated id included (each said at its own line)."""
    root.as_mapping()  # a mapping with string keys, or one line saying what it is instead
    if not isinstance(root.node, MappingNode):  # `null`: nothing mapped
        return []
    return [(str(key.value), root.child(value, str(key.value))) for key, value in root.node.value]


def _entry(name: str, value: Value, keys: dict[str, LoomKey]) -> tuple[str, ...]:
    if name not in keys:
        guess = closest(name, keys)
        hint = f" (did you mean {guess!r}?)" if guess else "; `loomtui keys` lists them"
        raise value.error(f"no key has this id{hint}")
    items = value.as_list() if isinstance(value.node, SequenceNode) else [value]
    if not items:
        raise value.error("expected a key, or a list of keys (got an empty list)")
    chosen = tuple(dict.fromkeys(_split(",".join(_key_text(item) for item in items))))
    for key in chosen:
        problem = key_problem(key)
        if problem is None and key in RESERVED:
            problem = f"{key} {RESERVED[key]}: pick another key"
        if problem:
            raise value.error(problem)
    return chosen


def _key_text(value: Value) -> str:
    """A key as written: `9` and `y` are keys, not a number and a yes."""
    if isinstance(value.node, ScalarNode) and not value.is_null() and str(value.node.value).strip():
        return str(value.node.value).strip()
    raise value.error(f"expected a key such as a, ctrl+s or f5 (got {describe(value.node)})")


def _clash(name: str, chosen: tuple[str, ...], wanted: dict[str, tuple[str, ...]], keys: dict[str, LoomKey]) -> str:
    """The other key that answers one of `chosen` where `name` works, once the keymap applies, or ""."""
    mine = keys[name]
    for other in keys.values():
        if other.id == name or not _answers_together(mine.owner, other.owner):
            continue
        shared = set(chosen) & set(wanted.get(other.id, other.keys))
        if shared:
            key = format_key(sorted(shared)[0])
            return (f"{key} already answers as {other.description} ({other.id}) where this key works: map "
                    f"{other.id} to another key too, or pick another")
    return ""
