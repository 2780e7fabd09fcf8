"""Resolution: imports, attribute chains and base classes followed across files into dependency edges."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from loomtui.coordination.index_modules import _ModuleMap
from loomtui.coordination.regions import DATA, STAR, Binding, FileShape, FileUses, ImportFact, Ref, region_id

# When one pair of regions is related in several ways, the edge's `kind` is the
# first of these that applies and its `kinds` holds them all.
EDGE_KIND_ORDER = ("contains", "inherits", "imports", "references")

# A resolution result: (outcome, path, region index).
#   FOUND: the name is that region; an attribute tail continues from it.
#   HELD: a value held in that region (a constant, an instance attribute, the
#         return of a function); resolution stops and the edge goes to the holder.
#   EXTERNAL: outside the repository or not knowable statically: no edge.
#   MISSING: the repository should define it and does not: reported unresolved.
Result: TypeAlias = tuple[int, str, int]
FOUND, HELD, EXTERNAL, MISSING = 0, 1, 2, 3
_EXTERNAL: Result = (EXTERNAL, "", -1)
_MISSING: Result = (MISSING, "", -1)

# Attributes every class has through `object` and `type`, and every module has.
_OBJECT_ATTRS = frozenset(dir(object)) | frozenset(dir(type))
_MODULE_ATTRS = frozenset({
    "__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__", "__path__",
    "__dict__", "__all__", "__builtins__", "__cached__", "__annotations__",
})


EdgeRow: TypeAlias = tuple[str, str, frozenset[str]]  # (source, target, kinds)
_Key = TypeVar("_Key", bound=tuple[object, ...])
_Value = TypeVar("_Value")


@dataclass(slots=True)
class _Resolved:
    """One file's outgoing edges, what it could not resolve, and whose interfaces it read."""

    edges: list[EdgeRow]
    unresolved: list[tuple[str, str]]
    consulted: frozenset[str]


# What a resolution read of another file, at three grains. The path itself is
# recorded with every read (any change a finer key cannot describe reaches all
# readers); beside it the module-level name, the class (its bases and openness)
# or the class attribute, and the kind of a region, each named by qualname so an
# edit that only moves definitions changes no key.
def name_key(path: str, name: str) -> str:
    return f"{path}\x01{name}"


def class_key(path: str, qualname: str, name: str = "") -> str:
    return f"{path}\x01{qualname}.{name}" if name else f"{path}\x01{qualname}."


def kind_key(path: str, qualname: str) -> str:
    return f"{path}\x01@{qualname}"


def _plain(shape: FileShape, binding: Binding) -> Binding:
    """A binding with region indexes replaced by qualnames: equal when the same thing is bound."""
    if binding[0] in ("def", "self", "super"):
        return (binding[0], shape.regions[int(binding[1])][1])
    return binding


def _plain_ref(shape: FileShape, ref: Ref) -> tuple[object, ...]:
    return (shape.regions[ref.region][1], ref.name, _plain(shape, ref.head), ref.rest)


_ClassView: TypeAlias = tuple[dict[str, Binding], frozenset[str], tuple[object, ...], bool]


def _classes(shape: FileShape) -> dict[str, _ClassView]:
    """Each class by qualname: its scope, instance attributes, bases and openness, indexes made names."""
    found: dict[str, _ClassView] = {}
    for cls, row in enumerate(shape.regions):
        if row[0] == "class":
            scope = {name: _plain(shape, b) for name, b in shape.class_scopes.get(cls, {}).items()}
            bases = tuple(_plain_ref(shape, ref) for ref in shape.bases.get(cls, ()))
            found[row[1]] = (scope, shape.instance_attrs.get(cls, frozenset()), bases, cls in shape.open_classes)
    return found


def interface_changes(path: str, old: FileShape, new: FileShape) -> set[str]:
    """The keys (see `name_key`) other files may have read of `path` that differ between two of its
    shapes; `{path}` when the change is one no finer key describes (stars, __all__, openness, parsing)."""
    if old.interface == new.interface:
        return set()
    structural = (old.regions[0][0] == "file", old.stars, old.exports, old.open_module)
    if structural != (new.regions[0][0] == "file", new.stars, new.exports, new.open_module):
        return {path}
    changed: set[str] = set()
    old_names = {name: _plain(old, b) for name, b in old.module_scope.items()}
    new_names = {name: _plain(new, b) for name, b in new.module_scope.items()}
    changed.update(name_key(path, name) for name in old_names.keys() | new_names.keys()
                   if old_names.get(name) != new_names.get(name))
    old_kinds = {row[1]: row[0] for row in old.regions}
    new_kinds = {row[1]: row[0] for row in new.regions}
    changed.update(kind_key(path, qual) for qual in old_kinds.keys() | new_kinds.keys()
                   if old_kinds.get(qual) != new_kinds.get(qual))
    old_classes, new_classes = _classes(old), _classes(new)
    for qual in old_classes.keys() | new_classes.keys():
        before, after = old_classes.get(qual), new_classes.get(qual)
        if before == after:
            continue
        if before is None or after is None or before[2:] != after[2:]:
            changed.add(class_key(path, qual))  # its bases or openness: every lookup in it
            continue
        names = before[0].keys() | after[0].keys() | before[1] | after[1]
        changed.update(class_key(path, qual, name) for name in names
                       if before[0].get(name) != after[0].get(name) or (name in before[1]) != (name in after[1]))
    return changed


class _Resolver:
    """Resolves files' name uses against every file's shape, memoising lookups across files.

    Every lookup records the modules it read (paths) and the module names it
    tried, so an incremental build knows which files an interface change affects.
    """

    def __init__(self, shapes: Mapping[str, FileShape], modules: _ModuleMap) -> None:
        self.shapes = shapes
        self.modules = modules
        self.consulted: set[str] = set()
        self.module_memo: dict[tuple[str, str], tuple[Result, frozenset[str]]] = {}
        self.class_memo: dict[tuple[str, int, str], tuple[Result, frozenset[str]]] = {}
        self.bases_memo: dict[tuple[str, int], tuple[tuple[Result, ...], frozenset[str]]] = {}
        self.active: set[tuple[object, ...]] = set()
        self.cycles = 0
        self.find_memo: dict[tuple[str, str], tuple[str | None, tuple[str, ...]]] = {}
        self.stars_memo: dict[str, tuple[tuple[str | None, ...], frozenset[str]]] = {}
        self.interned: dict[frozenset[str], frozenset[str]] = {}

    def _memoised(
        self,
        memo: dict[_Key, tuple[_Value, frozenset[str]]],
        key: _Key,
        compute: Callable[[], _Value],
        cycle_value: _Value,
    ) -> _Value:
        hit = memo.get(key)
        if hit is None:
            if key in self.active:
                # A cycle of star imports or bases: nothing more to find this way.
                self.cycles += 1
                return cycle_value
            outer, cycles = self.consulted, self.cycles
            self.consulted = set()
            self.active.add(key)
            try:
                value = compute()
            finally:
                self.active.discard(key)
                found, self.consulted = frozenset(self.consulted), outer
            # Many lookups read exactly the same keys: one set serves them all.
            found = self.interned.setdefault(found, found)
            hit = (value, found)
            # A result computed inside a cycle depends on where the cycle was
            # entered, so it is not reused.
            if self.cycles == cycles:
                memo[key] = hit
        self.consulted |= hit[1]
        return hit[0]

    def module_path(self, name: str, context: str) -> str | None:
        """The file module `name` is when imported from the file `context`."""
        key = (self.modules.root_of[context], name)
        hit = self.find_memo.get(key)
        if hit is None:
            hit = self.find_memo[key] = self.modules.find(name, key[0])
        self.consulted.update(hit[1])
        return hit[0]

    def resolve_module(self, name: str, context: str) -> Result:
        """Module `name` as imported from the file `context`.

        A name that is no file may still be an attribute of a module that is
        (`os.path`, bound in os.py); once a leading part is indexed, the rest
        must be found there or it is missing.
        """
        target = self.module_path(name, context)
        if target is not None:
            return (FOUND, target, 0)
        head, _, attr = name.rpartition(".")
        if not head:
            return _EXTERNAL
        base = self.resolve_module(head, context)
        return self.walk(base, (attr,)) if base[0] == FOUND else base

    def kind_of(self, path: str, idx: int) -> str:
        # Every read of another file's shape is recorded: a file named in an
        # import can turn from unparsable to a module and back.
        row = self.shapes[path].regions[idx]
        self.consulted.update((path, kind_key(path, row[1])))
        return row[0]

    def lookup_module(self, path: str, name: str) -> Result:
        hit = self.module_memo.get((path, name))
        if hit is not None:
            self.consulted |= hit[1]
            return hit[0]
        return self._memoised(self.module_memo, (path, name), lambda: self._lookup_module(path, name), _MISSING)

    def _star_sources(self, path: str) -> tuple[str | None, ...]:
        """Paths of the modules `path` star-imports, latest first (None: from outside the repository)."""
        hit = self.stars_memo.get(path)
        if hit is None:
            outer = self.consulted
            self.consulted = set()
            sources: list[str | None] = []
            for dotted, level in reversed(self.shapes[path].stars):
                module = self.modules.absolute(path, dotted, level)
                found = self.resolve_module(module, path) if module is not None else _MISSING
                sources.append(found[1] if found[0] == FOUND and found[2] == 0 else None)
            hit = self.stars_memo[path] = (tuple(sources), frozenset(self.consulted))
            self.consulted = outer
        self.consulted |= hit[1]
        return hit[0]

    def _lookup_module(self, path: str, name: str) -> Result:
        self.consulted.update((path, name_key(path, name)))
        shape = self.shapes[path]
        if shape.regions[0][0] == "file":
            return (HELD, path, 0)
        binding = shape.module_scope.get(name)
        if binding is not None:
            found = self.binding_target(path, binding, 0)
            # Bound here by an import that cannot be followed: that import is
            # reported against this module; users of the name stop here.
            return (HELD, path, 0) if found[0] == MISSING else found
        reachable_outside = False
        # A later star import rebinds what an earlier one bound, so search backwards.
        for source in self._star_sources(path) if shape.stars else ():
            if source is None:
                reachable_outside = True  # outside the repository, or already reported missing
                continue
            self.consulted.add(source)  # its exports are part of its interface
            exports = self.shapes[source].exports
            if name not in exports if exports is not None else name.startswith("_"):
                continue
            found = self.lookup_module(source, name)
            if found[0] in (FOUND, HELD):
                return found
            reachable_outside = reachable_outside or found[0] == EXTERNAL
        submodule = self.module_path(f"{self.modules.name_of[path]}.{name}", path)
        if submodule is not None:
            return (FOUND, submodule, 0)
        if (shape.exports is not None and name in shape.exports) or name in _MODULE_ATTRS:
            return (HELD, path, 0)  # promised by __all__ (so made at run time), or __file__ and kin
        return _EXTERNAL if reachable_outside or shape.open_module else _MISSING

    def lookup_class(self, path: str, cls: int, name: str) -> Result:
        return self._memoised(self.class_memo, (path, cls, name), lambda: self._lookup_class(path, cls, name), _MISSING)

    def _lookup_class(self, path: str, cls: int, name: str) -> Result:
        shape = self.shapes[path]
        qualname = shape.regions[cls][1]
        self.consulted.update((path, class_key(path, qualname), class_key(path, qualname, name)))
        binding = shape.class_scopes.get(cls, {}).get(name)
        if binding is not None:
            found = (HELD, path, cls) if binding == DATA else self.binding_target(path, binding, cls)
            return (HELD, path, cls) if found[0] == MISSING else found
        if name in shape.instance_attrs.get(cls, ()):
            return (HELD, path, cls)
        inherited, open_ended = self._search_bases(path, cls, name)
        if inherited is not None:
            return inherited
        if open_ended or name in _OBJECT_ATTRS or cls in shape.open_classes:
            return _EXTERNAL
        return _MISSING

    def bases(self, path: str, cls: int) -> tuple[Result, ...]:
        return self._memoised(self.bases_memo, (path, cls), lambda: self._bases(path, cls), ())

    def _bases(self, path: str, cls: int) -> tuple[Result, ...]:
        self.consulted.update((path, class_key(path, self.shapes[path].regions[cls][1])))
        return tuple(self.resolve_ref(path, base) for base in self.shapes[path].bases.get(cls, ()))

    def binding_target(self, path: str, binding: Binding, context: int) -> Result:
        """What a binding found in `path` refers to (`context`: the region it was found in)."""
        kind = binding[0]
        if kind in ("def", "self"):
            return (FOUND, path, int(binding[1]))
        if kind == "module":
            return self.resolve_module(str(binding[1]), path)
        if kind == "from":
            module = self.modules.absolute(path, str(binding[1]), int(binding[2]))
            if module is None:
                return _MISSING
            return self.from_import(path, module, str(binding[3]))
        if kind == "data":
            return (HELD, path, context)
        return _EXTERNAL  # builtins, unknown bases

    def from_import(self, path: str, module: str, name: str) -> Result:
        """`from module import name` in the file `path`: an attribute of the module, else its submodule."""
        base = self.resolve_module(module, path)
        if base[0] == HELD:
            return base
        if base[0] == FOUND:
            found = self.walk(base, (name,))
            if found[0] != MISSING:
                return found
        submodule = self.module_path(f"{module}.{name}", path)
        if submodule is not None:
            return (FOUND, submodule, 0)
        return _MISSING if base[0] in (FOUND, MISSING) else _EXTERNAL

    def _super(self, path: str, cls: int, name: str) -> Result:
        # Only the bases are searched: that is what super() reaches. A class
        # without bases calling super() is a mixin: its MRO is its users' business.
        found, open_ended = self._search_bases(path, cls, name)
        if found is not None:
            return found
        open_ended = open_ended or not self.bases(path, cls)
        return _EXTERNAL if open_ended or name in _OBJECT_ATTRS else _MISSING

    def _search_bases(self, path: str, cls: int, name: str) -> tuple[Result | None, bool]:
        """The first base class (in order) that has `name`, and whether a base lies outside.

        A base from outside may define the name; an unresolved one is reported
        already and must not make every lookup through it fail.
        """
        open_ended = False
        for base in self.bases(path, cls):
            if base[0] == FOUND and self.kind_of(base[1], base[2]) == "class":
                found = self.lookup_class(base[1], base[2], name)
                if found[0] != MISSING:
                    return found, open_ended
            else:
                open_ended = True
        return None, open_ended

    def walk(self, result: Result, rest: Sequence[str]) -> Result:
        """Follow an attribute tail from a resolved region as far as the repository knows it."""
        for attr in rest:
            if result[0] != FOUND:
                break
            _, path, idx = result
            kind = self.kind_of(path, idx)
            if kind == "module":
                result = self.lookup_module(path, attr)
            elif kind == "class":
                result = self.lookup_class(path, idx, attr)
            else:
                # An attribute of a function (or of an unparsable file) is its business.
                return (HELD, path, idx)
        return result

    def resolve_ref(self, path: str, ref: Ref) -> Result:
        """What `ref` (a use in file `path`) refers to, following its whole attribute tail."""
        head = ref.head
        if head == STAR:
            return self.walk(self.lookup_module(path, ref.name), ref.rest)
        if head[0] == "super":
            return self.walk(self._super(path, int(head[1]), ref.rest[0]), ref.rest[1:])
        return self.walk(self.binding_target(path, head, 0), ref.rest)

    def resolve_import(self, path: str, dotted: str, level: int, name: str | None) -> Result:
        module = self.modules.absolute(path, dotted, level)
        if module is None:
            return _MISSING
        if name is None or name == "*":
            return self.resolve_module(module, path)
        return self.from_import(path, module, name)

    def resolve_file(self, path: str, uses: FileUses) -> _Resolved:
        """Every outgoing edge of one file's regions."""
        self.consulted = set()
        shape = self.shapes[path]
        ids = [region_id(path, row[1]) for row in shape.regions]
        parents = shape.parents
        kinds: dict[tuple[str, str], set[str]] = {}
        unresolved: list[tuple[str, str]] = []

        def add(source: int, result: Result, kind: str) -> bool:
            """Record the edge `result` calls for; False if the name is missing from the repository."""
            outcome, target_path, target = result
            if outcome == MISSING:
                return False
            if outcome == EXTERNAL:
                return True
            if target_path == path:
                # Using oneself or an enclosing region adds nothing to containment.
                ancestor = source
                while ancestor != -1:
                    if ancestor == target:
                        return True
                    ancestor = parents[ancestor]
                target_id = ids[target]
            else:
                target_id = region_id(target_path, self.shapes[target_path].regions[target][1])
            kinds.setdefault((ids[source], target_id), set()).add(kind)
            return True

        for child, parent in enumerate(parents):
            if parent >= 0:
                kinds[(ids[parent], ids[child])] = {"contains"}
        for fact in uses.imports:
            if not add(fact.region, self.resolve_import(path, fact.dotted, fact.level, fact.name), "imports"):
                unresolved.append((ids[fact.region], _import_text(fact)))
        for cls, class_bases in shape.bases.items():
            for result, base in zip(self.bases(path, cls), class_bases, strict=True):
                if not add(cls, result, "inherits"):
                    unresolved.append((ids[cls], _dotted_text(base)))
        for ref in uses.refs:
            if not add(ref.region, self.resolve_ref(path, ref), "references"):
                unresolved.append((ids[ref.region], _dotted_text(ref)))
        unresolved.extend((ids[region], text) for region, text in uses.unresolved)
        edges = [(source, target, frozenset(found)) for (source, target), found in kinds.items()]
        return _Resolved(edges, unresolved, frozenset(self.consulted))


def _dotted_text(ref: Ref) -> str:
    return ".".join((ref.name, *ref.rest))


def _import_text(fact: ImportFact) -> str:
    """`.x.y` for `from .x import y`: the imported name as the import spells it."""
    name = fact.name if fact.name != "*" else None
    return "." * fact.level + ".".join(part for part in (fact.dotted, name) if part)

