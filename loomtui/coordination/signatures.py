"""The precise producer (libcst): regions of changed code, signatures, and source diffs to regions.

The repository-wide index uses the fast `ast` producer in `regions.py`; this one
runs only on the files a change touches, where libcst's exact concrete syntax is
worth its cost. Both name regions identically and give identical spans and
hashes (the test suite checks this), so a `RegionChange` id is an index id.
"""

from __future__ import annotations

import io
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from loomtui.coordination.regions import (
    Region,
    ast_regions,
    decode_source,
    first_doc_line,
    region_id,
    sha256_text,
    source_lines,
    span_hash,
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


class _RegionScanner(cst.CSTVisitor):
    """Collects regions in source order (each parent before its children), as the ast producer does."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, path: str, lines: list[str]) -> None:
        super().__init__()
        self.path = path
        self.lines = lines
        self.seen: dict[str, int] = {}
        self.stack: list[_Scanned] = []
        self.found: list[_Scanned] = []

    def visit_Module(self, node: cst.Module) -> None:
        end = max(1, len(self.lines))
        doc = first_doc_line(node.get_docstring())
        region = Region(self.path, "module", self.path, "", 1, end, span_hash(self.lines, 1, end), doc)
        self._enter(region, None, "")

    def _enter(self, region: Region, parent: str | None, signature: str) -> None:
        scanned = _Scanned(region, parent, signature)
        self.found.append(scanned)
        self.stack.append(scanned)

    def _enter_def(self, node: cst.FunctionDef | cst.ClassDef, kind: str, signature: str) -> None:
        enclosing = self.stack[-1].region
        name = node.name.value
        qualname = unique_qualname(self.seen, f"{enclosing.qualname}.{name}" if enclosing.qualname else name)
        position = self.get_metadata(PositionProvider, node)
        # libcst's span of a definition starts at `def`/`class`; the region's
        # starts at its first decorator, as the ast producer's does.
        start = (
            self.get_metadata(PositionProvider, node.decorators[0]).start.line
            if node.decorators
            else position.start.line
        )
        end = position.end.line
        region = Region(
            region_id(self.path, qualname), kind, self.path, qualname, start, end,
            span_hash(self.lines, start, end), first_doc_line(node.get_docstring()),
        )
        self._enter(region, enclosing.qualname, signature)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._enter_def(node, "class", _class_signature(node))

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.stack.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        kind = "method" if self.stack[-1].region.kind == "class" else "function"
        self._enter_def(node, kind, _function_signature(node))

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.stack.pop()


def _scan(source: str, path: str) -> list[_Scanned] | None:
    """Regions of `source` by libcst, None if it is not valid Python."""
    text, problem = decode_source(source.encode("utf-8", "surrogatepass"))
    if text is None or problem:
        return None
    try:
        module = cst.parse_module(text)
    except (cst.ParserSyntaxError, RecursionError, ValueError):
        return None
    scanner = _RegionScanner(path, source_lines(text))
    MetadataWrapper(module, unsafe_skip_copy=True).visit(scanner)
    return scanner.found


def cst_regions(source: str, path: str) -> list[Region]:
    """Regions of `source` by libcst; the same list `regions.ast_regions` gives.

    Only the tests call it: they cross-check the fast `ast` producer the index uses
    against libcst's exact concrete syntax (same ids, spans and hashes).
    """
    scanned = _scan(source, path)
    if scanned is None:
        return ast_regions(source, path)  # the file-level region and its warning
    return [item.region for item in scanned]


def _own_hashes(scanned: list[_Scanned], lines: list[str]) -> dict[str, str]:
    """Per region, a hash of its own lines: each nested region reduced to a line naming it.

    So editing a method modifies the method, not also its class and module;
    adding, removing or renaming a method does modify the class.
    """
    children: dict[str, list[Region]] = {}
    for item in scanned:
        if item.parent is not None:
            children.setdefault(item.parent, []).append(item.region)
    hashes: dict[str, str] = {}
    for item in scanned:
        region = item.region
        own: list[str] = []
        line = region.start
        for child in children.get(region.qualname, ()):
            own.extend(lines[line - 1 : child.start - 1])
            own.append(f"\0{child.qualname}")
            line = child.end + 1
        own.extend(lines[line - 1 : region.end])
        hashes[region.qualname] = sha256_text("\n".join(own))
    return hashes


def changed_regions(old_src: str, new_src: str, path: str) -> list[RegionChange]:
    """Regions of `path` that differ between two versions of its source.

    "modified" means the region's own code changed (see `_own_hashes`). A removed region
    is a signature change (its callers break); an added one is not (nothing calls it
    yet, so no claim elsewhere depends on it). A side that is not valid Python
    makes the whole file one modified region with an unknown (True) signature change.
    Order: the new version's regions in source order, then the removed ones.
    """
    if old_src == new_src:
        return []
    old, new = _scan(old_src, path), _scan(new_src, path)
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
    return changes
