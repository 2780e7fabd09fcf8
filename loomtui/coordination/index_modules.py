"""Dotted module names of the indexed files, and which file an import of a name means from where."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable


class _ModuleMap:
    """Dotted module names of the indexed files, and which file a name means where.

    A file's import root is the first directory above it without `__init__.py`:
    the directory Python would have on sys.path to import it. Its name is the
    dotted path from there, so a src/ layout resolves as installed. Roots that
    hold packages (the top, src/) are seen from everywhere; a directory of plain
    modules (tests/, scripts/, test data) only from itself, so its `gc.py` does
    not shadow the standard library for the whole repository. The dotted path
    from the top is a last resort, which covers namespace packages. When the
    top itself is a package its directory name leads every name.
    """

    def __init__(self, paths: Iterable[str], package: str) -> None:
        paths = sorted(paths)
        # str.rpartition rather than posixpath, and each directory worked out once, not once per file in
        # it: this runs for every file on every update.
        package_dirs = {p.rpartition("/")[0] for p in paths if p.rpartition("/")[2] == "__init__.py"}
        prefix = [package] if package and "" in package_dirs else []
        self.name_of: dict[str, str] = {}
        self.root_of: dict[str, str] = {}
        self.names_of: dict[str, tuple[str, ...]] = {}
        self.by_root: dict[str, dict[str, str]] = {"": {}}
        self.by_full_path: dict[str, str] = {}
        places: dict[str, tuple[str, list[str], list[str]]] = {}  # directory -> (import root, its parts, full)

        def place(directory: str) -> tuple[str, list[str], list[str]]:
            found = places.get(directory)
            if found is None:
                if directory and directory in package_dirs:  # climb while the directory is a package
                    parent, _, name = directory.rpartition("/")
                    root, parts, _full = place(parent)
                    parts = [*parts, name]
                else:
                    root, parts = directory, []
                full = [*prefix, *(directory.split("/") if directory else [])]
                found = places[directory] = (root, parts, full)
            return found

        holding_packages: set[str] = set()
        for path in paths:
            directory, _, filename = path.rpartition("/")
            stem = filename.rpartition(".")[0] or filename
            own = [] if stem == "__init__" else [stem]
            root, parts, full_parts = place(directory)
            # Under a top that is itself a package, its directory name leads.
            primary = ".".join([*(prefix if not root else []), *parts, *own])
            self.name_of[path] = primary
            self.root_of[path] = root
            self.by_root.setdefault(root, {}).setdefault(primary, path)
            full = ".".join([*full_parts, *own])
            self.by_full_path.setdefault(full, path)
            self.names_of[path] = (_root_key(root, primary), _root_key("*", full))
            if directory != root:
                holding_packages.add(root)
        self.global_roots = ("", *sorted(holding_packages - {""}))

    def package_of(self, path: str) -> str:
        name = self.name_of[path]
        return name if posixpath.basename(path) == "__init__.py" else name.rpartition(".")[0]

    def absolute(self, path: str, dotted: str, level: int) -> str | None:
        """The absolute module name of `from <level dots><dotted> import` in `path`; None if it climbs too high."""
        if level == 0:
            return dotted
        package = self.package_of(path)
        parts = package.split(".") if package else []
        if level - 1 > len(parts) or (level - 1 == len(parts) and not dotted):
            return None
        base = parts[: len(parts) - (level - 1)]
        return ".".join([*base, dotted] if dotted else base)

    def find(self, name: str, root: str) -> tuple[str | None, tuple[str, ...]]:
        """The file module `name` means when imported under import root `root`, and the keys looked at."""
        keys: list[str] = []
        for candidate in (root, *(r for r in self.global_roots if r != root)):
            keys.append(_root_key(candidate, name))
            found = self.by_root.get(candidate, {}).get(name)
            if found is not None:
                return found, tuple(keys)
        keys.append(_root_key("*", name))
        return self.by_full_path.get(name), tuple(keys)


def _root_key(root: str, name: str) -> str:
    # What a resolution records when it looks a module name up under one root.
    return f"{root}\0{name}"
