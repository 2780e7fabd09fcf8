"""Regions of changed code: which regions a change added, removed or modified, and whose signature changed.

Regions (ids, spans, hashes) are the index's own, from the `ast` producer in
`regions.py`, so a `RegionChange` id is an index id. Signatures come from libcst's
concrete syntax, only for the files a change touches, where its exactness is worth
its cost.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import libcst as cst

from loomtui.coordination.regions import (
    Region,
    ast_regions,
    decode_source,
    sha256_text,
    source_lines,
    unique_qualname,
)

_EMPTY_MODULE = cst.Module(body=[])


@dataclass(frozen=True, slots=True)
class RegionChange:
    """One region added, removed or modified between two versions of a file."""

    region_id: str
    change: str  # "added" | "removed" | "modified"
    signature_changed: bool


@dataclass(frozen=True, slots=True)
class _Scanned:
    """A region as libcst sees it, with what a diff compares."""

    region: Region
    parent: str | None  # qualname of the enclosing region; None for the module
    signature: str


def _expr_text(node: cst.CSTNode) -> str:
    """Source of `node` with whitespace and comments normalised away (tokens joined by one space)."""
    code = _EMPTY_MODULE.code_for_node(node)
    try:
        # Parenthesised, so a line break the original brackets allowed stays legal.
        tokens = list(tokenize.generate_tokens(io.StringIO(f"({code})").readline))
    except (tokenize.TokenError, SyntaxError):
        return " ".join(code.split())
    kept = [token for token in tokens if token.type not in _LAYOUT_TOKENS][1:-1]
    text = ""
    previous: tokenize.TokenInfo | None = None
    for token in kept:
        if previous is not None and not _tight(previous, token):
            text += " "
        text += token.string
        previous = token
    return text


_LAYOUT_TOKENS = frozenset(
    {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
)


def _tight(previous: tokenize.TokenInfo, token: tokenize.TokenInfo) -> bool:
    """Whether two tokens are written without a space between them (attribute, call, brackets)."""
    if token.string in {".", ",", ")", "]", "}"} or previous.string in {".", "(", "[", "{"}:
        return True
    opens_call = token.string in {"(", "["}
    return opens_call and (previous.type in (tokenize.NAME, tokenize.STRING) or previous.string in {")", "]"})


def _param_text(param: cst.Param) -> str:
    star = param.star if isinstance(param.star, str) else ""
    text = star + param.name.value
    if param.annotation is not None:
        text += ": " + _expr_text(param.annotation.annotation)
    if param.default is not None:
        text += " = " + _expr_text(param.default)
    return text


def _parameters_text(params: cst.Parameters) -> str:
    # Built from the parts rather than the code, so a trailing comma or a
    # reflowed parameter list is not a change.
    parts = [_param_text(p) for p in params.posonly_params]
    if params.posonly_params:
        parts.append("/")
    parts.extend(_param_text(p) for p in params.params)
    if isinstance(params.star_arg, cst.Param):
        parts.append(_param_text(params.star_arg))
    elif isinstance(params.star_arg, cst.ParamStar):
        parts.append("*")
    parts.extend(_param_text(p) for p in params.kwonly_params)
    if params.star_kwarg is not None:
        parts.append(_param_text(params.star_kwarg))
    return ", ".join(parts)


def _arg_text(arg: cst.Arg) -> str:
    prefix: str = arg.star if isinstance(arg.star, str) else ""
    if arg.keyword is not None:
        prefix += arg.keyword.value + "="
    return prefix + _expr_text(arg.value)


def _decorators_text(decorators: Sequence[cst.Decorator]) -> str:
    return "".join(f"@{_expr_text(d.decorator)}\n" for d in decorators)


def _function_signature(node: cst.FunctionDef) -> str:
    prefix = "async " if node.asynchronous is not None else ""
    text = f"{_decorators_text(node.decorators)}{prefix}def {node.name.value}({_parameters_text(node.params)})"
    if node.returns is not None:
        text += " -> " + _expr_text(node.returns.annotation)
    return text


def _class_signature(node: cst.ClassDef) -> str:
    arguments = ", ".join(_arg_text(arg) for arg in (*node.bases, *node.keywords))
    return f"{_decorators_text(node.decorators)}class {node.name.value}({arguments})"


class _SignatureScanner(cst.CSTVisitor):
    """Each definition's qualname, parent and signature, in source order (each parent before its
    children), named as the ast producer names its regions."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, int] = {}
        self.stack: list[str] = [""]  # qualnames; "" is the module
        self.found: list[tuple[str, str | None, str]] = [("", None, "")]

    def _enter(self, node: cst.FunctionDef | cst.ClassDef, signature: str) -> None:
        enclosing = self.stack[-1]
        name = node.name.value
        qualname = unique_qualname(self.seen, f"{enclosing}.{name}" if enclosing else name)
        self.found.append((qualname, enclosing, signature))
        self.stack.append(qualname)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._enter(node, _class_signature(node))

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.stack.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._enter(node, _function_signature(node))

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.stack.pop()


MAX_LIBCST_DEPTH: Final = 400
"""Deeper than this (real code is rarely 50 deep), libcst is not asked: its native parser overflows the
C stack on nesting Python's own parser refuses (1,500 `[`, a 10,000-term sum: a segfault of whatever
process reads the diff, the app included) and takes seconds below that (2,900 subscripts: 7 s)."""

MAX_LIBCST_BYTES: Final = 512 * 1024
"""Larger than this, libcst is not asked either: it reads about 2.5 µs a byte of real code and up to 15
of a flat literal (a 600 KB dict: 9 s), in the review, the app and the commit check an agent waits on."""

MAX_LIBCST_NODES: Final = 60_000
"""Nor with more nodes (as Python's tree counts them) than this: libcst holds some 3.5 KB and spends 10 to
25 µs a node, real code or not (a 500 KB list of `a[1],` took 1.8 GB); 60,000 is a 400 KB module."""

LIBCST_NODES_PER_CHANGE: Final = 250_000
"""All the files of one change together (both sides of each): past it, the rest are whole-file changes.
Each file under the limits, eight of them in one commit check held the broker for minutes."""


@dataclass
class ParseBudget:
    """What libcst may still read for one change (`LIBCST_NODES_PER_CHANGE`), spent file by file."""

    nodes: int = field(default_factory=lambda: LIBCST_NODES_PER_CHANGE)


def _libcst_depth(node: ast.AST) -> int:
    """How many levels deeper than `node` libcst nests what Python's tree keeps flat: `a and b and c`
    is one BoolOp but a chain of BooleanOperations, `import a.b.c` one alias but a chain of Attributes
    (7,500 `and`s or 8,000 dots overflowed its stack below the depth limit: a segfault)."""
    if isinstance(node, ast.BoolOp):
        return len(node.values)
    if isinstance(node, ast.alias):
        return node.name.count(".")
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").count(".")
    return 0


def _fit_for_libcst(text: str, budget: ParseBudget) -> bool:
    """Whether Python's own parser reads `text`, no larger than MAX_LIBCST_BYTES, no deeper than
    MAX_LIBCST_DEPTH as libcst nests it, and of no more nodes than MAX_LIBCST_NODES and what is left of
    `budget` (which it spends): only then libcst (else the whole file is the change)."""
    if budget.nodes <= 0 or len(text) > MAX_LIBCST_BYTES \
            or len(text.encode("utf-8", "surrogatepass")) > MAX_LIBCST_BYTES:
        return False  # (the characters first: a large file is not encoded only to be measured)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    level: list[tuple[ast.AST, int]] = [(tree, 1)]
    nodes, most = 0, min(MAX_LIBCST_NODES, budget.nodes)
    while level:
        node, depth = level.pop()
        depth += _libcst_depth(node)
        nodes += 1
        if depth > MAX_LIBCST_DEPTH or nodes > most:
            return False
        level.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    budget.nodes -= nodes
    return True


def _scan(source: str, path: str, budget: ParseBudget) -> list[_Scanned] | None:
    """Regions of `source` with their signatures, None if it is not valid Python.

    Spans, ids and hashes are the index's own (the ast producer's), so a change's ids are
    index ids by construction; libcst gives only the signatures, from its concrete syntax,
    without position metadata (which cost most of a scan).
    """
    text, problem = decode_source(source.encode("utf-8", "surrogatepass"))
    if text is None or problem or not _fit_for_libcst(text, budget):
        return None
    try:
        module = cst.parse_module(text)
    except (cst.ParserSyntaxError, RecursionError, ValueError):
        return None
    regions = {region.qualname: region for region in ast_regions(source, path) if region.kind != "file"}
    scanner = _SignatureScanner()
    try:
        module.visit(scanner)
    except RecursionError:
        return None  # nesting deeper than the visitor's recursion (a hostile chain of attributes, say)
    if {qualname for qualname, _, _ in scanner.found} != regions.keys():
        return None  # syntax one parser reads and the other does not: the whole file is the change
    return [_Scanned(regions[qualname], parent, signature) for qualname, parent, signature in scanner.found]


def _own_hashes(scanned: list[_Scanned], lines: list[str]) -> dict[str, str]:
    """Per region, a hash of its own lines: those outside its nested regions (blank lines aside in a region that
    has nested ones: they sit between them; a function's own are kept, as a blank line in a string is code).

    So editing a method modifies the method, not also its class and module; adding or removing a
    function or a method is a region of its own added or removed, not a change of its class's or module's
    (which held every claim inside it: the commit hook refused a new function beside another sandbox's
    claimed one, and the claim loomtui took of the change held the whole file). Lines outside every
    function and class (imports, constants, module code) are the module's own.
    """
    children: dict[str, list[Region]] = {}
    for item in scanned:
        if item.parent is not None:
            children.setdefault(item.parent, []).append(item.region)
    hashes = {}
    for item in scanned:
        start, end = (1, len(lines)) if item.parent is None else (item.region.start, item.region.end)
        inside = sorted(children.get(item.region.qualname, ()), key=lambda region: region.start)
        own = [line for line in _own_lines(lines, start, end, inside) if line.strip() or
               (item.parent is not None and not inside)]
        hashes[item.region.qualname] = sha256_text("\n".join(own))
    return hashes


def _own_lines(lines: list[str], start: int, end: int, children: Sequence[Region]) -> list[str]:
    """Lines `start`..`end` but those of `children` (in source order)."""
    own: list[str] = []
    line = start
    for child in children:
        own.extend(lines[line - 1 : child.start - 1])
        line = child.end + 1
    own.extend(lines[line - 1 : end])
    return own


def changed_regions(old_src: str, new_src: str, path: str, budget: ParseBudget | None = None) -> list[RegionChange]:
    """Regions of `path` that differ between two versions of its source.

    "modified" means the region's own code changed (see `_own_hashes`). A removed region
    is a signature change (its callers break); an added one is not (nothing calls it
    yet, so no claim elsewhere depends on it). A side that is not valid Python
    makes the whole file one modified region with an unknown (True) signature change.
    Order: the new version's regions in source order, then the removed ones. `budget`: shared by the
    files of one change (a fresh one, when not given, for this file alone).
    """
    if old_src == new_src:
        return []
    budget = ParseBudget() if budget is None else budget
    old = _scan(old_src, path, budget)
    new = _scan(new_src, path, budget) if old is not None else None
    if old is None or new is None:
        return [RegionChange(path, "modified", True)]
    old_by_name = {item.region.qualname: item for item in old}
    new_by_name = {item.region.qualname: item for item in new}
    old_own = _own_hashes(old, source_lines(old_src))
    new_own = _own_hashes(new, source_lines(new_src))
    changes: list[RegionChange] = []
    for qualname, item in new_by_name.items():
        before = old_by_name.get(qualname)
        if before is None:
            changes.append(RegionChange(item.region.id, "added", False))
        elif old_own[qualname] != new_own[qualname]:
            changes.append(RegionChange(item.region.id, "modified", before.signature != item.signature))
    for qualname, item in old_by_name.items():
        if qualname not in new_by_name:
            changes.append(RegionChange(item.region.id, "removed", True))
    said = {change.region_id for change in changes}
    for parent in _reordered(old, new):  # the same regions, in another order: their parent's code changed
        if parent.region.id not in said:
            changes.append(RegionChange(parent.region.id, "modified", False))
    if not changes and _written(old_src) != _written(new_src):
        # The code differs and no region's own lines do (a statement moved past a function): the module's change,
        # never none (the hook let it pass, and no claim was taken of it). Blank lines alone are no one's.
        module = next(item for item in new if item.parent is None)
        changes.append(RegionChange(module.region.id, "modified", False))
    return changes


def _written(source: str) -> list[str]:
    """Its lines but blank ones, as written, their endings too (a file turned to CRLF changes every line, and met
    another's change to it at merge)."""
    return [line for line in source.splitlines(keepends=True) if line.strip()]


def _reordered(old: list[_Scanned], new: list[_Scanned]) -> list[_Scanned]:
    """The regions (of `new`) whose nested regions found on both sides come in another order."""
    def order(scanned: list[_Scanned]) -> dict[str | None, list[str]]:
        children: dict[str | None, list[str]] = {}
        for item in sorted(scanned, key=lambda item: item.region.start):
            children.setdefault(item.parent, []).append(item.region.qualname)
        return children

    before, after = order(old), order(new)
    moved = []
    for item in new:
        common = set(before.get(item.region.qualname, ())) & set(after.get(item.region.qualname, ()))
        if [q for q in before.get(item.region.qualname, ()) if q in common] != \
                [q for q in after.get(item.region.qualname, ()) if q in common]:
            moved.append(item)
    return moved
