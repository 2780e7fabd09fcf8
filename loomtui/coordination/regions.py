"""Regions of Python source and the per-file facts the dependency graph is built from.

A region is a module, class, function or method, named by a stable id
(`pkg/mod.py`, `pkg/mod.py::Class.method`, `pkg/mod.py::outer.inner`). This module
is the fast producer: one `ast` pass per file yields the regions with their spans
and everything cross-file resolution needs, as plain tuples that pickle quickly.

The facts are deliberately independent of the file's path, so one cache entry
keyed by the git blob hash serves every worktree and every rename; region ids are
made from the path only when a file joins an index (`regions_of`).

Name resolution is split in two. Here, inside one file, the head of every dotted
name is resolved through the lexical scopes (locals, enclosing functions, the
class body where visible, module globals, builtins): local variables and builtins
are dropped, and what remains is a `Ref` whose head is a `Binding` (a local
definition, an import, `self`, `super()`, or a star import). `index.py` resolves
the imports and the attribute tail across files.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeAlias

MAX_FILE_BYTES = 2 * 1024 * 1024

# Bumped whenever the shape of FileFacts, the extraction rules or the resolution
# rules (index.py) change, so caches and snapshots written by an older loomtui are
# never read as current.
FACTS_VERSION = 2

REGION_KINDS = frozenset({"module", "class", "function", "method", "file"})


@dataclass(frozen=True, slots=True)
class Region:
    """A module, class, function or method: its id, kind, exact line span and content hash."""

    id: str
    kind: str
    path: str
    qualname: str
    start: int
    end: int
    hash: str
    doc: str = ""
    warning: str = ""

    def __reduce__(self) -> tuple[type[Region], tuple[str, str, str, str, int, int, str, str, str]]:
        # The generated slots pickling looks up dataclass fields per object, which
        # dominates loading a snapshot of thousands of regions.
        fields = (self.id, self.kind, self.path, self.qualname, self.start, self.end, self.hash, self.doc, self.warning)
        return (Region, fields)


# A binding is what a name means in one scope. Tuples rather than classes keep the
# cache small and fast to load; the first element says which kind it is:
#   ("def", region_index)                    a class or function defined in this file
#   ("module", dotted, level)                `import a.b as c` binds c to module a.b
#   ("from", dotted, level, name)            `from .x import y as z` binds z to x.y
#   ("self", class_index)                    first parameter of a method
#   ("super", class_index)                   `super()` inside a method
#   ("star",)                                not bound here, maybe by a star import
#   ("builtin", name)                        a builtin used as a base class
#   ("data",)                                any other value; resolution stops there
#   ("unknown",)                             an unresolved base class (already reported)
Binding: TypeAlias = tuple[str | int, ...]
DATA: Binding = ("data",)
STAR: Binding = ("star",)
UNKNOWN: Binding = ("unknown",)

# (kind, qualname, start, end, sha256, doc first line)
RegionRow: TypeAlias = tuple[str, str, int, int, str, str]

# An (ast node, scope index) pair waiting on the expression walker's stack.


class Ref(NamedTuple):
    """A use of the dotted name `name.rest...` in a region: its head resolved within the file, its tail not."""

    region: int
    name: str
    head: Binding
    rest: tuple[str, ...]


class ImportFact(NamedTuple):
    """One imported name: `import dotted` (name None) or `from .dotted import name`."""

    region: int
    dotted: str
    level: int
    name: str | None


class FileShape(NamedTuple):
    """What other files can see of this one: its regions and its module and class namespaces."""

    regions: tuple[RegionRow, ...]
    parents: tuple[int, ...]
    module_scope: dict[str, Binding]
    class_scopes: dict[int, dict[str, Binding]]
    instance_attrs: dict[int, frozenset[str]]
    bases: dict[int, tuple[Ref, ...]]
    open_classes: frozenset[int]
    stars: tuple[tuple[str, int], ...]
    exports: tuple[str, ...] | None
    open_module: bool
    interface: str


class FileUses(NamedTuple):
    """What this file uses, for resolving its own outgoing edges."""

    refs: tuple[Ref, ...]
    imports: tuple[ImportFact, ...]
    unresolved: tuple[tuple[int, str], ...]


class FileFacts(NamedTuple):
    """Everything the index needs from one file's content (no path inside)."""

    shape: FileShape
    uses: FileUses
    warning: str


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def source_lines(text: str) -> list[str]:
    """Lines as the Python tokenizer counts them (\\n, \\r\\n and a lone \\r end a line)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


def span_hash(lines: list[str], start: int, end: int) -> str:
    """sha256 of lines start..end (1-based, inclusive), newline-normalised."""
    return sha256_text("\n".join(lines[start - 1 : end]))


def first_doc_line(doc: str | None) -> str:
    if not doc:
        return ""
    for line in doc.strip().splitlines():
        return line.strip()
    return ""


def unique_qualname(seen: dict[str, int], qualname: str) -> str:
    """Second and later definitions of one qualname (overloads, property setters) get `#n`."""
    count = seen.get(qualname, 0) + 1
    seen[qualname] = count
    return qualname if count == 1 else f"{qualname}#{count}"


def decorated_start(lines: list[str], first_line: int) -> int:
    """The line of the `@` that introduces a decorator whose expression begins on `first_line`.

    ast positions a decorator at its expression, which may sit below the `@`
    (`@(`, or a backslash continuation); only whitespace, brackets and comments can
    come between, so the nearest line starting with `@` is the one.
    """
    line = first_line
    while line > 1 and not lines[line - 1].lstrip().startswith("@"):
        line -= 1
    return line


def decode_source(data: bytes) -> tuple[str | None, str]:
    """(text, "") for decodable Python source, else (None, reason it is not Python)."""
    if len(data) > MAX_FILE_BYTES:
        return None, f"file too large ({len(data)} bytes > {MAX_FILE_BYTES})"
    if b"\0" in data:
        return None, "binary file (contains NUL bytes)"
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding), ""
    except SyntaxError:
        # detect_encoding also refuses first lines that are not UTF-8 when no
        # encoding is declared; say which it is.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"not valid UTF-8 (byte {exc.start})"
        return None, "unknown source encoding"
    except UnicodeDecodeError as exc:
        return None, f"not valid {exc.encoding.upper()} (byte {exc.start})"


def file_facts(byte_lines: int, digest: str, warning: str) -> FileFacts:
    """Facts of a file that is not valid Python: one file-level region and a warning."""
    row: RegionRow = ("file", "", 1, max(1, byte_lines), digest, "")
    shape = FileShape((row,), (-1,), {}, {}, {}, {}, frozenset(), (), None, True, "file")
    return FileFacts(shape, FileUses((), (), ()), warning)


def extract_facts(data: bytes) -> FileFacts:
    """Parse one file's bytes into regions and path-free resolution facts."""
    text, problem = decode_source(data)
    tree: ast.Module | None = None
    if text is not None:
        try:
            tree = ast.parse(text)
        except SyntaxError as exc:
            problem = f"syntax error at line {exc.lineno}: {exc.msg}"
        except (ValueError, RecursionError, MemoryError) as exc:
            problem = f"cannot parse: {type(exc).__name__}"
    if tree is None or text is None:
        lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        return file_facts(lines, hashlib.sha256(data).hexdigest(), problem)
    from loomtui.coordination.ast_facts import FactCollector  # the walker needs this module's records

    return FactCollector(source_lines(text)).collect(tree)


def region_id(path: str, qualname: str) -> str:
    """`path` for a module or file region, `path::qualname` otherwise."""
    return f"{path}::{qualname}" if qualname else path


def regions_of(shape: FileShape, path: str, warning: str = "") -> list[Region]:
    """The Region objects of one file, in source order (each parent before its children)."""
    return [
        Region(region_id(path, name), kind, path, name, start, end, digest, doc, warning if kind == "file" else "")
        for kind, name, start, end, digest, doc in shape.regions
    ]


def ast_regions(source: str, path: str) -> list[Region]:
    """Regions of `source` by the fast (ast) producer; the file-level region if it is not Python."""
    facts = extract_facts(source.encode("utf-8", "surrogatepass"))
    return regions_of(facts.shape, path, facts.warning)


# -- region ids --------------------------------------------------------------------


def split_id(region_id: str) -> tuple[str, str]:
    """(path, qualname) of a region id; qualname is '' for a module or file."""
    path, _, qualname = region_id.partition("::")
    return path, qualname


_NTH: Final = re.compile(r"#\d+(?=\.|$)")


def named_once(region_id: str) -> str:
    """A region's id without the `#n` of a second or later definition of its name (`C.run#3` -> `C.run`); its
    path as it is (`data/case#1.json` and `data/case#2.json` are two files)."""
    path, qualname = split_id(region_id)
    return f"{path}::{_NTH.sub('', qualname)}" if "#" in qualname else region_id


def overlaps(a: str, b: str) -> bool:
    """True when two regions are the same or one is nested in the other. The definitions of one name are one
    (`run`, `run#2`, `run#3`: overloads, a property's setter): a claim on `run` held the first `@overload` stub
    alone, callers' edges led there, and the implementation (`run#3`, renumbered by one more overload) was free."""
    path_a, qual_a = split_id(named_once(a))
    path_b, qual_b = split_id(named_once(b))
    if path_a != path_b:
        return False
    if not qual_a or not qual_b or qual_a == qual_b:
        return True
    return qual_b.startswith(qual_a + ".") or qual_a.startswith(qual_b + ".")


def ancestors(region_id: str) -> list[str]:
    """The regions that contain this one: its module, then each enclosing class/function."""
    path, qualname = split_id(region_id)
    if not qualname:
        return []
    parts = qualname.split(".")
    return [path] + [f"{path}::{'.'.join(parts[:n])}" for n in range(1, len(parts))]
