"""The one-pass `ast` walker behind `regions.extract_facts`: regions, scopes and name uses.

It resolves the head of each dotted name through the file's lexical scopes (see the
`regions` module docstring); what it returns is plain, path-free `FileFacts`.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import pickle
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from loomtui.coordination.regions import (
    DATA,
    STAR,
    UNKNOWN,
    Binding,
    FileFacts,
    FileShape,
    FileUses,
    ImportFact,
    Ref,
    RegionRow,
    decorated_start,
    first_doc_line,
    span_hash,
    unique_qualname,
)

_Push: TypeAlias = Callable[[tuple[ast.AST, int]], None]

# Names any module can use without binding them.
_IMPLICIT_NAMES = frozenset(dir(builtins)) | {
    "__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__",
    "__path__", "__builtins__", "__annotations__", "__dict__", "__qualname__",
    "__module__", "__class__", "__cached__",
}

# Fields that never hold a node with names in it (operators, contexts, plain
# strings); skipping them roughly halves the nodes the walker visits.
_LEAF_FIELDS = frozenset({
    "ctx", "op", "ops", "id", "attr", "arg", "name", "names", "module", "level",
    "type_comment", "kind", "conversion", "is_async", "value_kind",
})
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}
# Used at module level, these can create module attributes no parser sees (as
# can `globals()` anywhere).
_DYNAMIC_NAMESPACE = frozenset({"exec", "vars", "setattr"})
_FUNCTION_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


_WALK_SPECIAL = frozenset({ast.Lambda, *_COMPREHENSIONS, ast.NamedExpr, ast.MatchAs, ast.MatchStar, ast.MatchMapping})
"""The node types the expression walker does more for than walk their children."""


class _Scope:
    """One lexical scope while collecting: its bindings and how names reach it."""

    __slots__ = ("bindings", "declared", "kind", "method_of", "parent")

    def __init__(self, parent: int, kind: str, method_of: int = -1) -> None:
        self.parent = parent
        self.kind = kind  # "module" | "class" | "function" | "comprehension"
        self.bindings: dict[str, Binding] = {}
        self.declared: dict[str, str] = {}  # name -> "global" | "nonlocal"
        self.method_of = method_of  # class region index when this is a method's scope


class FactCollector:
    """One pass over a module's ast collecting regions, scopes and raw name uses."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.regions: list[RegionRow] = []
        self.parents: list[int] = []
        self.seen_qualnames: dict[str, int] = {}
        self.scopes: list[_Scope] = []
        self.region_scope: dict[int, int] = {}
        self.class_bases: dict[int, list[tuple[int, ast.expr]]] = {}
        self.instance_attrs: dict[int, set[str]] = {}
        self.open_classes: set[int] = set()
        self.imports: list[ImportFact] = []
        self.stars: list[tuple[str, int]] = []
        # `__all__` when the module spells it out literally; None means "public names".
        self.exports: list[str] | None = None
        # False once the module makes names at run time (a computed __all__,
        # globals(), exec, a module __getattr__): then a name it lacks is unknown,
        # not missing.
        self.namespace_known = True
        # (scope, name, attribute) of `name.attribute = ...`: a class given attributes from outside
        self.attribute_stores: list[tuple[int, str, str]] = []
        # (region, scope, head, rest): heads are resolved once all bindings are known
        self.raw_refs: dict[tuple[int, int, str, tuple[str, ...]], None] = {}

    # -- structure ---------------------------------------------------------------

    def collect(self, tree: ast.Module) -> FileFacts:
        end = max(1, len(self.lines))
        doc = first_doc_line(ast.get_docstring(tree))
        self._add_region("module", "", 1, end, -1, doc)
        self.scopes.append(_Scope(-1, "module"))
        self.region_scope[0] = 0
        self._body(tree.body, 0, 0)
        return self._finish()

    def _add_region(self, kind: str, qualname: str, start: int, end: int, parent: int, doc: str) -> int:
        self.regions.append((kind, qualname, start, end, span_hash(self.lines, start, end), doc))
        self.parents.append(parent)
        return len(self.regions) - 1

    def _new_scope(self, parent: int, kind: str, method_of: int = -1) -> int:
        self.scopes.append(_Scope(parent, kind, method_of))
        return len(self.scopes) - 1

    def _bind(self, scope: int, name: str, binding: Binding) -> None:
        target = self.scopes[scope]
        declared = target.declared.get(name)
        if declared == "global":
            target = self.scopes[0]
        elif declared == "nonlocal":
            return
        current = target.bindings.get(name)
        # A definition or import says more than a plain value does, whatever the
        # order (try/except fallbacks, `x = None` placeholders); first one wins.
        if current is None or (current is DATA and binding is not DATA):
            target.bindings[name] = binding

    def _body(self, body: Iterable[ast.stmt], region: int, scope: int) -> None:
        for stmt in body:
            if isinstance(stmt, _FUNCTION_TYPES):
                self._function(stmt, region, scope)
            elif isinstance(stmt, ast.ClassDef):
                self._class(stmt, region, scope)
            elif isinstance(stmt, ast.Import):
                self._import(stmt, region, scope)
            elif isinstance(stmt, ast.ImportFrom):
                self._import_from(stmt, region, scope)
            elif isinstance(stmt, (ast.Global, ast.Nonlocal)):
                word = "global" if isinstance(stmt, ast.Global) else "nonlocal"
                for name in stmt.names:
                    self.scopes[scope].declared[name] = word
            else:
                if scope == 0 and _assigns_all(stmt):
                    self._note_exports(stmt)
                self._compound(stmt, region, scope)

    def _note_exports(self, stmt: ast.stmt) -> None:
        value = getattr(stmt, "value", None)
        names = _string_list(value) if value is not None else None
        if names is None:
            self.namespace_known = False
        elif isinstance(stmt, ast.AugAssign):
            self.exports = [*(self.exports or []), *names]
        else:
            self.exports = names

    def _compound(self, stmt: ast.stmt, region: int, scope: int) -> None:
        # Statements other than defs and imports: expressions are walked, nested
        # statement lists (if/for/try/with/match bodies) stay in the same scope.
        for field in stmt._fields:
            value = getattr(stmt, field)
            if isinstance(value, list):
                if value and isinstance(value[0], ast.stmt):
                    self._body(value, region, scope)
                    continue
                for item in value:
                    if isinstance(item, ast.ExceptHandler):
                        self._handler(item, region, scope)
                    elif isinstance(item, ast.match_case):
                        self._walk(item.pattern, region, scope)
                        if item.guard is not None:
                            self._walk(item.guard, region, scope)
                        self._body(item.body, region, scope)
                    elif isinstance(item, ast.AST):
                        self._walk(item, region, scope)
            elif isinstance(value, ast.AST):
                self._walk(value, region, scope)

    def _handler(self, handler: ast.ExceptHandler, region: int, scope: int) -> None:
        if handler.type is not None:
            self._walk(handler.type, region, scope)
        if handler.name:
            self._bind(scope, handler.name, DATA)
        self._body(handler.body, region, scope)

    def _def_span(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> tuple[int, int]:
        start = node.lineno
        if node.decorator_list:
            start = decorated_start(self.lines, node.decorator_list[0].lineno)
        return start, node.end_lineno or node.lineno

    def _qualname(self, parent: int, name: str) -> str:
        prefix = self.regions[parent][1]
        return unique_qualname(self.seen_qualnames, f"{prefix}.{name}" if prefix else name)

    def _bind_type_params(self, node: ast.AST, scope: int) -> None:
        # PEP 695 type parameters (3.12+); bound in the enclosing scope so annotations
        # that use them are not reported as unresolved.
        for param in getattr(node, "type_params", ()):
            self._bind(scope, param.name, DATA)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, region: int, scope: int) -> None:
        enclosing = self.scopes[scope]
        kind = "method" if enclosing.kind == "class" else "function"
        start, end = self._def_span(node)
        idx = self._add_region(
            kind, self._qualname(region, node.name), start, end, region, first_doc_line(ast.get_docstring(node))
        )
        self._bind(scope, node.name, ("def", idx))
        self._bind_type_params(node, scope)
        # Decorators, defaults and annotations are evaluated in the enclosing scope
        # but belong to this region's lines, so they count as its uses.
        for decorator in node.decorator_list:
            self._walk(decorator, idx, scope)
        args = node.args
        for default in (*args.defaults, *args.kw_defaults):
            if default is not None:
                self._walk(default, idx, scope)
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        if args.vararg is not None:
            params.append(args.vararg)
        if args.kwarg is not None:
            params.append(args.kwarg)
        for param in params:
            if param.annotation is not None:
                self._walk(param.annotation, idx, scope)
        if node.returns is not None:
            self._walk(node.returns, idx, scope)

        class_region = region if kind == "method" else -1
        inner = self._new_scope(scope, "function", class_region)
        self.region_scope[idx] = inner
        positional = [*args.posonlyargs, *args.args]
        is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
        for i, param in enumerate(params):
            if i == 0 and kind == "method" and not is_static and positional:
                self._bind(inner, param.arg, ("self", region))
            else:
                self._bind(inner, param.arg, DATA)
        self._body(node.body, idx, inner)

    def _class(self, node: ast.ClassDef, region: int, scope: int) -> None:
        start, end = self._def_span(node)
        idx = self._add_region(
            "class", self._qualname(region, node.name), start, end, region, first_doc_line(ast.get_docstring(node))
        )
        self._bind(scope, node.name, ("def", idx))
        self._bind_type_params(node, scope)
        for decorator in node.decorator_list:
            self._walk(decorator, idx, scope)
        bases: list[tuple[int, ast.expr]] = []
        for base in node.bases:
            # A plain dotted base becomes an `inherits` edge; anything else
            # (a call, a subscript's arguments) is walked as ordinary uses.
            expr = base.value if isinstance(base, ast.Subscript) else base
            if _dotted(expr) is not None:
                bases.append((scope, expr))
                if isinstance(base, ast.Subscript):
                    self._walk(base.slice, idx, scope)
            else:
                self._walk(base, idx, scope)
        self.class_bases[idx] = bases
        # A class decorator or metaclass may add any attribute, as may __getattr__.
        dynamic = {"__getattr__", "__getattribute__"}
        if node.decorator_list or node.keywords or any(
            isinstance(stmt, _FUNCTION_TYPES) and stmt.name in dynamic for stmt in node.body
        ):
            self.open_classes.add(idx)
        for keyword in node.keywords:
            self._walk(keyword.value, idx, scope)
        inner = self._new_scope(scope, "class")
        self.region_scope[idx] = inner
        self.instance_attrs[idx] = set()
        self._body(node.body, idx, inner)

    def _import(self, node: ast.Import, region: int, scope: int) -> None:
        for alias in node.names:
            self.imports.append(ImportFact(region, alias.name, 0, None))
            if alias.asname:
                self._bind(scope, alias.asname, ("module", alias.name, 0))
            else:
                head = alias.name.partition(".")[0]
                self._bind(scope, head, ("module", head, 0))

    def _import_from(self, node: ast.ImportFrom, region: int, scope: int) -> None:
        module = node.module or ""
        for alias in node.names:
            self.imports.append(ImportFact(region, module, node.level, alias.name))
            if alias.name == "*":
                self.stars.append((module, node.level))
            else:
                self._bind(scope, alias.asname or alias.name, ("from", module, node.level, alias.name))

    # -- expressions ---------------------------------------------------------------

    def _walk(self, root: ast.AST, region: int, scope: int) -> None:
        # Iterative: long operator chains in generated code would overflow recursion. Dispatched on the
        # node's exact type (the parser makes no subclasses): this loop is half of a cold index build's
        # parsing, and a chain of isinstance tests on every node was most of it.
        stack: list[tuple[Any, int]] = [(root, scope)]  # Any: the dispatch below is on type(node)
        pop, push = stack.pop, stack.append
        name_type, attribute_type, constant_type, load = ast.Name, ast.Attribute, ast.Constant, ast.Load
        while stack:
            node, sc = pop()
            kind = type(node)
            if kind is name_type:
                if type(node.ctx) is load:
                    self.raw_refs[(region, sc, node.id, ())] = None
                    if node.id == "globals" or (sc == 0 and node.id in _DYNAMIC_NAMESPACE):
                        self.namespace_known = False
                elif type(node.ctx) is ast.Store:
                    self._bind(sc, node.id, DATA)
            elif kind is attribute_type:
                self._attribute(node, region, sc, push)
            elif kind is constant_type:
                continue
            elif kind not in _WALK_SPECIAL:
                self._push_children(node, sc, push)
            elif kind is ast.Lambda:
                self._lambda(node, sc, push)
            elif kind in _COMPREHENSIONS:
                self._comprehension(node, sc, push)
            elif kind is ast.NamedExpr:
                target_scope = sc
                while self.scopes[target_scope].kind == "comprehension":
                    target_scope = self.scopes[target_scope].parent
                self._bind(target_scope, node.target.id, DATA)
                push((node.value, sc))
            else:  # MatchAs, MatchStar, MatchMapping: a pattern that binds a name
                name = node.rest if kind is ast.MatchMapping else node.name
                if name:
                    self._bind(sc, name, DATA)
                self._push_children(node, sc, push)

    @staticmethod
    def _push_children(node: ast.AST, scope: int, push: _Push) -> None:
        kind = type(node)
        fields = _CHILD_FIELDS.get(kind)
        if fields is None:  # (an empty tuple is a node type with no such fields: known, not missing)
            fields = _CHILD_FIELDS[kind] = tuple(f for f in kind._fields if f not in _LEAF_FIELDS)
        for field in fields:
            value = getattr(node, field)
            if isinstance(value, ast.AST):
                push((value, scope))
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        push((item, scope))

    def _attribute(self, node: ast.Attribute, region: int, scope: int, push: _Push) -> None:
        parts = [node.attr]
        base: ast.expr = node.value
        while isinstance(base, ast.Attribute):
            parts.append(base.attr)
            base = base.value
        parts.reverse()
        stored = not isinstance(node.ctx, ast.Load)
        if isinstance(base, ast.Name):
            if base.id == "__all__" and scope == 0:
                self.namespace_known = False  # __all__.extend(...) and the like
            if stored:
                # `x.y.z = v` uses x.y; `self.z = v` declares an instance attribute.
                self._note_instance_attr(scope, base.id, parts)
                parts.pop()
            self.raw_refs[(region, scope, base.id, tuple(parts))] = None
        elif (
            isinstance(base, ast.Call)
            and isinstance(base.func, ast.Name)
            and base.func.id == "super"
            and not stored
        ):
            self.raw_refs[(region, scope, "super()", (parts[0],))] = None
            self._push_children(base, scope, push)
        else:
            push((base, scope))

    def _note_instance_attr(self, scope: int, head: str, parts: list[str]) -> None:
        if len(parts) != 1:
            return
        binding = self._lookup(scope, head)
        if binding is not None and binding[0] == "self":
            self.instance_attrs[int(binding[1])].add(parts[0])
        elif head != "self":
            self.attribute_stores.append((scope, head, parts[0]))
        else:
            # `self = object.__new__(cls)` in __new__ and the like: still the instance.
            current = scope
            while current != -1 and self.scopes[current].kind in ("function", "comprehension"):
                if self.scopes[current].method_of >= 0:
                    self.instance_attrs[self.scopes[current].method_of].add(parts[0])
                    return
                current = self.scopes[current].parent

    def _lambda(self, node: ast.Lambda, scope: int, push: _Push) -> None:
        args = node.args
        for default in (*args.defaults, *args.kw_defaults):
            if default is not None:
                push((default, scope))
        inner = self._new_scope(scope, "function")
        for param in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if param is not None:
                self._bind(inner, param.arg, DATA)
        push((node.body, inner))

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp, scope: int, push: _Push
    ) -> None:
        generators = node.generators
        inner = self._new_scope(scope, "comprehension")
        # The first iterable is evaluated in the enclosing scope, the rest inside.
        push((generators[0].iter, scope))
        for i, gen in enumerate(generators):
            push((gen.target, inner))
            if i:
                push((gen.iter, inner))
            for cond in gen.ifs:
                push((cond, inner))
        if isinstance(node, ast.DictComp):
            push((node.key, inner))
            push((node.value, inner))
        else:
            push((node.elt, inner))

    # -- resolution within the file ---------------------------------------------------

    def _lookup(self, scope: int, name: str) -> Binding | None:
        """The binding `name` has when used in `scope` (LEGB; class bodies are not enclosing scopes)."""
        current = scope
        while current != -1:
            info = self.scopes[current]
            if current == scope or info.kind != "class":
                found = info.bindings.get(name)
                if found is not None:
                    return found
            current = info.parent
        return None

    def _resolve_head(self, region: int, scope: int, head: str, rest: tuple[str, ...]) -> Ref | str | None:
        """A Ref for a use that may cross regions, None if it needs no edge, or the dotted text if unresolved."""
        if head == "super()":
            info = self.scopes[scope]
            while info.kind == "comprehension":
                info = self.scopes[info.parent]
            if info.method_of < 0:
                return "super()." + ".".join(rest)
            return Ref(region, head, ("super", info.method_of), rest)
        binding = self._lookup(scope, head)
        if binding is None:
            if head in _IMPLICIT_NAMES:
                return None
            if self.stars or (self.exports is not None and head in self.exports):
                # Maybe from a star import, or made at run time as __all__ promises.
                return Ref(region, head, STAR, rest)
            if not self.namespace_known:
                return None  # the module makes names at run time: unknowable
            return ".".join((head, *rest))
        if binding is DATA or (binding[0] == "self" and not rest):
            return None
        return Ref(region, head, binding, rest)

    def _finish(self) -> FileFacts:
        refs: dict[Ref, None] = {}
        unresolved: dict[tuple[int, str], None] = {}
        for region, scope, head, rest in self.raw_refs:
            resolved = self._resolve_head(region, scope, head, rest)
            if isinstance(resolved, str):
                unresolved[(region, resolved)] = None
            elif resolved is not None:
                refs[resolved] = None

        for scope, head, attr in self.attribute_stores:
            # `Class.attr = value` after the class body: data of that class.
            binding = self._lookup(scope, head)
            if binding is not None and binding[0] == "def" and int(binding[1]) in self.instance_attrs:
                self.instance_attrs[int(binding[1])].add(attr)

        bases: dict[int, tuple[Ref, ...]] = {}
        for cls, exprs in self.class_bases.items():
            resolved_bases: list[Ref] = []
            for scope, expr in exprs:
                head, *tail = _dotted(expr) or ("",)
                rest = tuple(tail)
                binding = self._lookup(scope, head)
                if binding is None and head in _IMPLICIT_NAMES:
                    if head != "object":
                        resolved_bases.append(Ref(cls, head, ("builtin", head), rest))
                elif binding is not None:
                    resolved_bases.append(Ref(cls, head, binding, rest))
                elif self.stars:
                    resolved_bases.append(Ref(cls, head, STAR, rest))
                else:
                    unresolved[(cls, ".".join((head, *rest)))] = None
                    resolved_bases.append(Ref(cls, head, UNKNOWN, rest))
            bases[cls] = tuple(resolved_bases)

        class_scopes = {
            cls: self.scopes[scope].bindings
            for cls, scope in self.region_scope.items()
            if self.regions[cls][0] == "class"
        }
        instance_attrs = {cls: frozenset(names) for cls, names in self.instance_attrs.items()}
        # Sets are sorted for the digest: their order varies with the hash seed.
        sorted_attrs = {cls: sorted(names) for cls, names in self.instance_attrs.items()}
        module_scope = self.scopes[0].bindings
        stars = tuple(self.stars)
        exports = tuple(self.exports) if self.exports is not None and self.namespace_known else None
        open_module = not self.namespace_known or "__getattr__" in self.scopes[0].bindings
        parents = tuple(self.parents)
        # Another file's resolution reads only these parts, so when an edit leaves
        # them equal, files that depend on this one keep their edges.
        visible = (
            tuple((row[0], row[1]) for row in self.regions),
            parents, module_scope, class_scopes, sorted_attrs, bases, sorted(self.open_classes), stars, exports,
            open_module,
        )
        interface = hashlib.blake2b(pickle.dumps(visible, protocol=5), digest_size=16).hexdigest()
        shape = FileShape(
            tuple(self.regions), parents, module_scope, class_scopes, instance_attrs, bases,
            frozenset(self.open_classes), stars, exports, open_module, interface,
        )
        uses = FileUses(tuple(refs), tuple(self.imports), tuple(unresolved))
        return FileFacts(shape, uses, "")


def _assigns_all(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets)
    if isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        return isinstance(stmt.target, ast.Name) and stmt.target.id == "__all__"
    return False


def _string_list(expr: ast.expr) -> list[str] | None:
    """The strings of a literal list or tuple of strings, None for anything else."""
    if not isinstance(expr, (ast.List, ast.Tuple)):
        return None
    names = [elt.value for elt in expr.elts if isinstance(elt, ast.Constant) and isinstance(elt.value, str)]
    return names if len(names) == len(expr.elts) else None


def _dotted(expr: ast.expr) -> list[str] | None:
    """["a", "b", "c"] for the expression `a.b.c`, None for anything else."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    parts.reverse()
    return parts
