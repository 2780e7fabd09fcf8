"""Validate YAML files node by node so every error names file, line and key.

Config, policy and theme files share these helpers. The text is *composed*
(not loaded) with ``yaml.SafeLoader``: the node tree keeps the position of
every key and value, so an error points at the line the user must edit instead
of being guessed by searching the text afterwards.

Usage::

    root = compose(text, ".loom/loom.yaml")       # Value | None (empty file)
    top = root.as_mapping(known=("theme", "gates"))
    theme = top.get("theme")
    name = theme.as_str(non_empty=True) if theme else "loom-dark"

Every failure is a :class:`~loomtui.errors.ConfigError` whose message reads
``path:line: key: problem``; no ``yaml`` exception ever escapes.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar, cast

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from loomtui.errors import ConfigError, plural

__all__ = ["MAX_FILE_BYTES", "Fields", "Value", "closest", "compose", "describe", "present", "read_text",
           "scalar_before_error"]

_CORE = "tag:yaml.org,2002:"
_Choice = TypeVar("_Choice", bound=str)
_T = TypeVar("_T")
_STR = _CORE + "str"
_INT = _CORE + "int"
_FLOAT = _CORE + "float"
_BOOL = _CORE + "bool"
_NULL = _CORE + "null"
_MERGE = _CORE + "merge"
_MAP = _CORE + "map"
_SEQ = _CORE + "seq"


# libyaml's parser when PyYAML was built with it: the same nodes, tags and lines, ~10x faster
# (a policy is composed at every review, claim and hook).
_FAST_LOADER: Final = getattr(yaml, "CSafeLoader", None)


def compose(text: str, path: str, *, duplicate_keys: bool = False) -> Value | None:
    """Compose `text` into its root node; None for an empty document.

    Malformed YAML, several documents and duplicate mapping keys (which PyYAML
    would silently resolve to the last one) are reported as ConfigError.
    """
    # Flow collections can nest that deep in a small file; libyaml's composer recurses on the C stack
    # for each level, and 50,000 `[` crashed the process (SIGSEGV, no word said). Its event parser does not.
    checked = text.count("[") + text.count("{") > MAX_NESTING
    if checked:
        _reject_deep_nesting(text, path)
    node = _compose_fast(text)
    if node is _MALFORMED:
        if not checked:
            _reject_deep_nesting(text, path)
        node = _compose_checked(text, path)
    if node is None:
        return None
    assert isinstance(node, Node)
    if not duplicate_keys:  # a reader that says a repeated key at its own line passes True
        _reject_duplicate_keys(node, path)
    return Value(node, path, "")


_MALFORMED: Final = object()


def _compose_fast(text: str) -> Node | None | object:
    """The root node by libyaml; `_MALFORMED` when it fails (or PyYAML has no libyaml)."""
    if _FAST_LOADER is None:
        return _MALFORMED
    try:
        node: Node | None = yaml.compose(text, Loader=_FAST_LOADER)
    except (yaml.YAMLError, RecursionError):
        return _MALFORMED  # composed again by the pure-Python parser, for its exact error and line
    return node


MAX_NESTING: Final = 100
"""Deeper than this, YAML is refused before it is composed: libyaml's composer recurses on the C stack
once per level (50,000 `[` crashed the process), and PyYAML's own parser, for malformed YAML, recurses
once per level while its scanner rechecks every open level at each token (5,000 `[` took seconds to end
in a RecursionError). Block nesting that deep cannot fit in a file under the size limit."""

_OPENS: Final = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSES: Final = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _reject_deep_nesting(text: str, path: str) -> None:
    """ConfigError naming the line where the nesting passes MAX_NESTING levels; nothing if it never does
    (a malformed document's own error is left for the full parse to name)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_FAST_LOADER or yaml.SafeLoader):
            if isinstance(event, _OPENS):
                depth += 1
                if depth > MAX_NESTING:
                    line = event.start_mark.line + 1 if event.start_mark else None
                    raise ConfigError(path, line, f"invalid YAML: nested more than {MAX_NESTING} levels deep")
            elif isinstance(event, _CLOSES):
                depth -= 1
    except (yaml.YAMLError, RecursionError):
        return


def _compose_checked(text: str, path: str) -> Node | None:
    """The root node by PyYAML's own parser, every failure a ConfigError naming the line."""
    try:
        node: Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, path, text) from None
    except yaml.reader.ReaderError as exc:
        # Raised for control characters; its position is an index into `text`.
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            path, line, f"invalid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"invalid YAML: {exc}") from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level.
        raise ConfigError(path, None, "invalid YAML: nested too deeply") from None
    return node


def scalar_before_error(text: str, path: str, key: str) -> Value | None:
    """Top-level `key`'s value in a document that does not parse as a whole, as far as YAML reads it
    before its error: the one scalar given for `key` there. None when the text never says `key` (the
    key is absent for certain). ConfigError when that cannot be told: `key` given after the error,
    more than once, or as a collection, or said some other way (a quoted key, inside a flow mapping)."""
    cannot = ConfigError(path, None, f"{key}: cannot be read apart from the file's error")
    found: list[yaml.ScalarEvent] = []
    depth = nodes = 0  # `nodes`: complete nodes in the top-level mapping, keys and values in turn
    naming = odd = False
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # marks of its own kind, for the node
            if isinstance(event, _OPENS):
                if depth == 0 and not isinstance(event, yaml.MappingStartEvent):
                    raise cannot  # not a mapping at the top: no key to read
                if depth == 1 and naming and nodes % 2:
                    odd = True  # `key:` given a collection
                depth += 1
                if depth > MAX_NESTING:
                    raise cannot
            elif isinstance(event, _CLOSES):
                depth -= 1
                nodes += depth == 1
            elif depth == 1 and isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                if nodes % 2 == 0:
                    naming = isinstance(event, yaml.ScalarEvent) and event.value == key
                elif naming:
                    if not isinstance(event, yaml.ScalarEvent):
                        odd = True
                    else:
                        found.append(event)
                nodes += 1
    except (yaml.YAMLError, RecursionError):
        pass
    if odd or len(found) > 1:
        raise cannot
    if not found:
        if re.search(rf"\b{re.escape(key)}\b", text):  # said where the reading stopped, or some other way
            raise cannot
        return None
    event = found[0]
    # A plain scalar's type is YAML's implicit one (`5` an int), as the composer would resolve it.
    tag = _STR if not event.implicit[0] else str(
        yaml.resolver.Resolver().resolve(ScalarNode, event.value, (True, False)))  # type: ignore[no-untyped-call]
    start, end = cast(yaml.error.Mark, event.start_mark), cast(yaml.error.Mark, event.end_mark)
    return Value(ScalarNode(tag, event.value, start, end, event.style), path, key)


_EXPONENT: Final = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+))[eE]([-+]?)(\d+)")


def _as_yaml_float(exponent: re.Match[str]) -> str:
    """A number written with an exponent (`_EXPONENT`) as YAML 1.1 reads a float: the exponent signed, the
    mantissa with its dot and a digit before it where signed (it reads 1e+5 and -.5e+3 as text too)."""
    mantissa = exponent[1]
    sign = mantissa[0] if mantissa[0] in "+-" else ""
    digits = mantissa.removeprefix(sign)
    digits = f"0{digits}" if digits.startswith(".") and sign else digits
    digits = digits if "." in digits else f"{digits}.0"
    return f"{sign}{digits}e{exponent[2] or '+'}{exponent[3]}"


def describe(node: Node) -> str:
    """A short human rendering of what a node holds, for "(got ...)" in messages."""
    if isinstance(node, (MappingNode, SequenceNode)) and node.tag not in (_MAP, _SEQ):
        # `!!python/object/apply:os.system [...]` read as "(got a list)": the tag is what was written.
        return f"a {'mapping' if isinstance(node, MappingNode) else 'list'} tagged {node.tag.replace(_CORE, '!!', 1)}"
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    assert isinstance(node, ScalarNode)
    if node.tag == _NULL:
        return "null"
    if node.tag == _STR:
        text = str(node.value)
        return repr(text if len(text) <= 40 else text[:37] + "...")
    if node.tag.startswith(_CORE) and "/" not in node.tag[len(_CORE):]:  # !!int, !!bool: the value as written
        return str(node.value)
    # `!!python/object:os.system 1` read as "(got 1)", as if 1 were wrong: the tag is what is.
    return f"a value tagged {node.tag.replace(_CORE, '!!', 1)} ({str(node.value)[:40]!r})"


def closest(word: str, choices: Collection[str]) -> str | None:
    """The choice most like `word` (a likely typo of it), or None when none is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return close[0] if close else None


@dataclass(frozen=True)
class Value:
    """One YAML node together with the file and dotted key it was reached by.

    The `as_*` readers return the node as a Python value of one type or raise a
    ConfigError at the node's line naming `key`.
    """

    node: Node
    path: str
    key: str

    @property
    def line(self) -> int:
        """1-based line where the node starts."""
        return int(self.node.start_mark.line) + 1

    def error(self, message: str) -> ConfigError:
        """A ConfigError `path:line: key: message` for this node (to be raised)."""
        return ConfigError(self.path, self.line, f"{self.key or 'top level'}: {message}")

    def child(self, node: Node, name: str) -> Value:
        """The value of mapping key `name` under this one."""
        return Value(node, self.path, f"{self.key}.{name}" if self.key else name)

    def is_null(self) -> bool:
        """Whether the node is an explicit or empty null (`key:` with nothing after it)."""
        return isinstance(self.node, ScalarNode) and self.node.tag == _NULL

    def as_str(self, *, non_empty: bool = False) -> str:
        """A string; with `non_empty`, "" is rejected too."""
        node = self.node
        if not (isinstance(node, ScalarNode) and node.tag == _STR):
            raise self.error(f"expected a string (got {describe(node)})")
        text = str(node.value)
        if non_empty and not text.strip():
            raise self.error("must not be empty")
        return text

    def as_choice(self, choices: Sequence[_Choice]) -> _Choice:
        """One of `choices`, as that choice (so a Literal's members keep their type), with a
        suggestion for a near miss."""
        node = self.node
        if isinstance(node, ScalarNode) and node.tag == _STR:
            for choice in choices:
                if node.value == choice:
                    return choice
        guess = closest(str(node.value), choices) if isinstance(node, ScalarNode) else None
        hint = f"; did you mean {guess!r}?" if guess else ""
        raise self.error(f"must be one of {', '.join(choices)} (got {describe(node)}{hint})")

    def as_bool(self) -> bool:
        """A boolean (true/false; YAML 1.1 also reads yes/no/on/off as booleans)."""
        if not (isinstance(self.node, ScalarNode) and self.node.tag == _BOOL):
            raise self.error(f"expected true or false (got {describe(self.node)})")
        return bool(self._construct())

    def as_int(self, *, minimum: int | None = None, maximum: int | None = None) -> int:
        """An integer within the inclusive bounds given."""
        if not (isinstance(self.node, ScalarNode) and self.node.tag == _INT):
            raise self.error(f"expected an integer (got {describe(self.node)})")
        number = self._construct()
        assert isinstance(number, int)
        if minimum is not None and maximum is not None and not minimum <= number <= maximum:
            raise self.error(f"must be between {minimum} and {maximum} (got {number})")
        if minimum is not None and number < minimum:
            raise self.error(f"must be at least {minimum} (got {number})")
        if maximum is not None and number > maximum:
            raise self.error(f"must be at most {maximum} (got {number})")
        return number

    def as_number(self, *, positive: bool = False, maximum: float | None = None) -> float:
        """A finite int or float, as float; with `positive`, it must be > 0; at most `maximum`."""
        if not (isinstance(self.node, ScalarNode) and self.node.tag in (_INT, _FLOAT)):
            # Plain only: a quoted "1e5" wants its quotes gone, not another exponent.
            plain = isinstance(self.node, ScalarNode) and self.node.tag == _STR and not self.node.style
            exponent = _EXPONENT.fullmatch(str(self.node.value)) if plain else None
            signed = _as_yaml_float(exponent) if exponent else ""
            # YAML 1.1 reads 1.0e308 (no sign) as text: "expected a number (got '1.0e308')" said no more.
            hint = f"; YAML reads such an exponent as text: write {signed}" if signed else ""
            raise self.error(f"expected a number (got {describe(self.node)}){hint}")
        raw = self._construct()
        assert isinstance(raw, (int, float))
        try:
            number = float(raw)
        except OverflowError:  # an integer of 400 digits: no float holds it (an internal error)
            number = math.inf
        if not math.isfinite(number):
            raise self.error(f"must be a finite number (got {describe(self.node)})")
        if positive and number <= 0:
            raise self.error(f"must be greater than 0 (got {describe(self.node)})")
        if maximum is not None and number > maximum:
            raise self.error(f"may be at most {maximum:g} (got {describe(self.node)})")
        return number

    def as_list(self) -> list[Value]:
        """The items of a list, keyed `key[i]`; null counts as an empty list."""
        # A list whose every item is commented out is null, not a type error.
        if self.is_null():
            return []
        if not isinstance(self.node, SequenceNode):
            raise self.error(f"expected a list (got {describe(self.node)})")
        return [
            Value(item, self.path, f"{self.key}[{i}]") for i, item in enumerate(self.node.value)
        ]

    def as_str_list(
        self, *, non_empty: bool = False, items_non_empty: bool = False
    ) -> tuple[str, ...]:
        """A list of strings; `non_empty` rejects [], `items_non_empty` rejects ""."""
        items = tuple(item.as_str(non_empty=items_non_empty) for item in self.as_list())
        if non_empty and not items:
            raise self.error("must be a non-empty list")
        return items

    def as_mapping(
        self, known: Collection[str] | None = None, required: Collection[str] = ()
    ) -> Fields:
        """A mapping with string keys; null counts as empty.

        `known` is the field table: any other key is an error with a did-you-mean
        suggestion (None accepts any key, e.g. user-chosen names). Each of
        `required` must be present.
        """
        if self.is_null():
            entries: dict[str, tuple[Node, Node]] = {}
        elif not isinstance(self.node, MappingNode):
            raise self.error(f"expected a mapping (got {describe(self.node)})")
        else:
            entries = {}
            for key_node, value_node in self.node.value:
                if key_node.tag == _MERGE:
                    raise Value(key_node, self.path, self.key).error(
                        "merge keys ('<<') are not supported"
                    )
                if not (isinstance(key_node, ScalarNode) and key_node.tag == _STR):
                    hint = "; quote it" if isinstance(key_node, ScalarNode) else ""
                    raise Value(key_node, self.path, self.key).error(
                        f"keys must be strings (got {describe(key_node)}{hint})"
                    )
                name = str(key_node.value)
                if known is not None and name not in known:
                    guess = closest(name, known)
                    hint = f" (did you mean {guess!r}?)" if guess else ""
                    raise self.child(key_node, name).error("unknown key" + hint)
                entries[name] = (key_node, value_node)
        for name in required:
            if name not in entries:
                raise self.child(self.node, name).error("required key missing")
        return Fields(self, entries)

    def _construct(self) -> object:
        # A fresh constructor per call: SafeConstructor caches per instance, and
        # it already implements every YAML 1.1 spelling (0x1F, 1_000, .inf, yes).
        try:
            return SafeConstructor().construct_object(self.node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            raise self.error(f"invalid value {describe(self.node)}: {exc}") from None


class Fields:
    """The entries of a checked mapping, in file order, as `Value`s."""

    def __init__(self, owner: Value, entries: dict[str, tuple[Node, Node]]) -> None:
        self.owner = owner
        self._entries = entries

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Value | None:
        """The value under `name`, or None when the key is absent."""
        entry = self._entries.get(name)
        return None if entry is None else self.owner.child(entry[1], name)

    def __getitem__(self, name: str) -> Value:
        """The value of a key known to be present (e.g. one listed as required)."""
        return self.owner.child(self._entries[name][1], name)

    def key(self, name: str) -> Value:
        """The key itself as a Value, for errors about the name rather than its value."""
        return self.owner.child(self._entries[name][0], name)

    def items(self) -> Iterator[tuple[str, Value]]:
        """(name, value) pairs in file order."""
        for name, (_, value_node) in self._entries.items():
            yield name, self.owner.child(value_node, name)


def _yaml_error(exc: yaml.MarkedYAMLError, path: str, text: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    # The end of the stream is past the last line: `claims: [a` on a 7-line file's last line said line 8.
    last = max(1, len(text.splitlines()))
    line = min(int(mark.line) + 1, last) if mark is not None else None
    problem, context = exc.problem or "", exc.context or ""
    if problem and context.startswith("while") and exc.context_mark is not None:
        # "expected ',' or ']' ... (while parsing a flow sequence on line 3)"
        message = f"{problem} ({context} on line {min(exc.context_mark.line + 1, last)})"
    elif problem and context:
        # The composer's "expected a single document in the stream", "but found another document"
        message = f"{context}, {problem}"
    else:
        message = problem or context or "malformed document"
    # One line, always: a message is shown in a status bar and a CLI line.
    return ConfigError(path, line, "invalid YAML: " + " ".join(message.split()))


def _reject_duplicate_keys(root: Node, path: str) -> None:
    # Iterative, and each node visited once: aliases share nodes and may even
    # form cycles (`&a [*a]`), which a naive recursive walk would never leave.
    seen: set[int] = set()
    stack: list[Value] = [Value(root, path, "")]
    while stack:
        value = stack.pop()
        node = value.node
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend(
                Value(item, path, f"{value.key}[{i}]") for i, item in enumerate(node.value)
            )
        elif isinstance(node, MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    continue
                name = str(key_node.value)
                line = int(key_node.start_mark.line) + 1
                ident = (key_node.tag, name)
                if ident in first:
                    raise value.child(key_node, name).error(
                        f"duplicate key (first defined on line {first[ident]})"
                    )
                first[ident] = line
                stack.append(value.child(value_node, name))


MAX_FILE_BYTES = 1024 * 1024
"""The largest config-like file read (1 MiB): a policy or config is a few KiB."""


def present(file: Path) -> bool:
    """Whether a config-like file is there to be read: a dangling symlink is (its reading then says
    so), so a file replaced by a broken link never reads as "no file, defaults" (no rules, no gates)."""
    return file.exists() or file.is_symlink()


def undecodable_at(data: bytes, start: int) -> tuple[int, str]:
    """Where the byte at `start` that is not UTF-8 is: its line (from 1), and the problem said with
    the byte and its column (an offset into the file was no help to find it in an editor)."""
    line_start = data.rfind(b"\n", 0, start) + 1
    column = len(data[line_start:start].decode("utf-8", "replace")) + 1  # in characters, as an editor counts
    return data.count(b"\n", 0, start) + 1, f"not valid UTF-8 (byte 0x{data[start]:02x} at column {column})"


def read_text(file: Path, shown: str, *, errors: str = "strict") -> str:
    """A config-like file's text; one ConfigError naming `shown` for a missing, unreadable,
    non-regular (a device, a FIFO), oversized (over MAX_FILE_BYTES) or non-UTF-8 file
    (`errors="replace"`: its undecodable bytes read as U+FFFD instead)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if file.is_symlink():
            raise ConfigError(shown, None, f"a symlink to {os.readlink(file)!r}, which does not exist") from None
        raise ConfigError(shown, None, "file not found") from None
    except OSError as exc:
        raise ConfigError(shown, None, f"cannot read file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(shown, None, "cannot read file: it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(shown, None, "not a regular file (a device, FIFO or socket)")
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError(shown, None, _too_large(info.st_size))
        # Read one byte past the cap: a file that grew since fstat is caught too.
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(shown, None, f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(shown, None, _too_large(len(data)))
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise ConfigError(shown, *undecodable_at(data, exc.start)) from None


def _too_large(size: int) -> str:
    return f"too large for a config file ({size:,} bytes; at most {MAX_FILE_BYTES:,})"


class ConfigErrors(ConfigError):
    """Several problems in one file (a policy, loom.yaml); the message (one line) names the first by line.

    `problems` holds every one in line order, for `loomtui policy validate` to list.
    """

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        lines = ", ".join(str(problem.line) for problem in problems[1:] if problem.line)
        more = plural(len(problems) - 1, "more problem")
        super().__init__(first.path, first.line, f"{first.detail} ({more}{': line ' if lines else ''}{lines})")
        self.problems = tuple(problems)


class Problems:
    """The errors found so far in one file: reading goes on past each, so all are reported."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def read(self, read: Callable[[], _T], fallback: _T) -> _T:
        """`read()`, or `fallback` with its error kept."""
        try:
            return read()
        except ConfigError as exc:
            self.errors.append(exc)
            return fallback

    def optional(self, fields: Fields, name: str, read: Callable[[Value], _T], default: _T) -> _T:
        """Field `name` read by `read`; `default` when absent or wrong (the error kept)."""
        value = fields.get(name)
        return default if value is None else self.read(lambda: read(value), default)

    def mapping(self, value: Value, known: tuple[str, ...], required: tuple[str, ...] = ()) -> Fields:
        """`value.as_mapping(known, required)`, keeping every unknown or missing key as an error
        rather than stopping at the first (an unknown key is left out of the fields)."""
        empty = Fields(value, {})
        fields = self.read(lambda: value.as_mapping(), empty)
        entries: dict[str, tuple[Node, Node]] = {}
        misspelled: set[str] = set()
        for name, item in fields.items():
            key = fields.key(name)
            if name in known:
                entries[name] = (key.node, item.node)
                continue
            guess = closest(name, known)
            self.errors.append(key.error("unknown key" + (f" (did you mean {guess!r}?)" if guess else "")))
            misspelled.add(guess or "")
        if fields is not empty:
            for name in required:
                # `decison:` is one mistake, already named: not also "decision: required key missing".
                if name not in entries and name not in misspelled:
                    self.errors.append(value.child(value.node, name).error("required key missing"))
        return Fields(value, entries)

    def raise_any(self) -> None:
        """Raise the errors kept, in line order: one as itself, several as ConfigErrors."""
        if not self.errors:
            return
        ordered = sorted(self.errors, key=lambda error: error.line or 0)
        raise ordered[0] if len(ordered) == 1 else ConfigErrors(ordered)


def check_version(version: Value) -> None:
    """A file's `version:`, which must be 1 (the only one there is)."""
    if version.as_int() != 1:
        raise version.error(f"unsupported version {version.as_int()} (only 1 is supported)")


def problem_lines(error: Exception) -> list[str]:
    """Each problem an error stands for, one line each (`ConfigErrors` holds several)."""
    return [str(problem) for problem in error.problems] if isinstance(error, ConfigErrors) else [str(error)]
