"""The repository index: regions, the dependency graph, its cache, and signature diffs."""

from __future__ import annotations

import ast
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import networkx
import pytest

from loomtui.coordination import index_parse as index_module
from loomtui.coordination.index import RepoIndex, blob_hash, build_index
from loomtui.coordination.index_files import list_files
from loomtui.coordination.regions import ast_regions
from loomtui.coordination.signatures import RegionChange, changed_regions
from tests.conftest import git

FIXTURE = Path(__file__).parent / "fixtures" / "indexpkg"

# id -> (kind, start, end)
EXPECTED_REGIONS = {
    "__init__.py": ("module", 1, 6),
    "broken.py": ("file", 1, 2),
    "latin1.py": ("file", 1, 2),
    "settings.py": ("module", 1, 15),
    "settings.py::Config": ("class", 5, 15),
    "settings.py::Config.__init__": ("method", 6, 7),
    "settings.py::Config.value": ("method", 9, 11),
    "settings.py::Config.value#2": ("method", 13, 15),
    "shapes.py": ("module", 1, 31),
    "shapes.py::Shape": ("class", 7, 17),
    "shapes.py::Shape.__init__": ("method", 10, 11),
    "shapes.py::Shape.area": ("method", 13, 14),
    "shapes.py::Shape.describe": ("method", 16, 17),
    "shapes.py::Square": ("class", 20, 31),
    "shapes.py::Square.__init__": ("method", 21, 23),
    "shapes.py::Square.area": ("method", 25, 27),
    "shapes.py::Square.label": ("method", 29, 31),
    "sub/__init__.py": ("module", 1, 1),
    "sub/geometry.py": ("module", 1, 19),
    "sub/geometry.py::outer": ("function", 7, 11),
    "sub/geometry.py::outer.inner": ("function", 8, 9),
    "sub/geometry.py::Grid": ("class", 14, 19),
    "sub/geometry.py::Grid.cells": ("method", 15, 16),
    "sub/geometry.py::Grid.describe": ("method", 18, 19),
    "util.py": ("module", 1, 24),
    "util.py::traced": ("function", 9, 16),
    "util.py::traced.wrapper": ("function", 12, 14),
    "util.py::scaled": ("function", 19, 20),
    "util.py::base_name": ("function", 23, 24),
}

CONTAINS = {
    ("settings.py", "settings.py::Config"),
    ("settings.py::Config", "settings.py::Config.__init__"),
    ("settings.py::Config", "settings.py::Config.value"),
    ("settings.py::Config", "settings.py::Config.value#2"),
    ("shapes.py", "shapes.py::Shape"),
    ("shapes.py", "shapes.py::Square"),
    ("shapes.py::Shape", "shapes.py::Shape.__init__"),
    ("shapes.py::Shape", "shapes.py::Shape.area"),
    ("shapes.py::Shape", "shapes.py::Shape.describe"),
    ("shapes.py::Square", "shapes.py::Square.__init__"),
    ("shapes.py::Square", "shapes.py::Square.area"),
    ("shapes.py::Square", "shapes.py::Square.label"),
    ("sub/geometry.py", "sub/geometry.py::outer"),
    ("sub/geometry.py", "sub/geometry.py::Grid"),
    ("sub/geometry.py::outer", "sub/geometry.py::outer.inner"),
    ("sub/geometry.py::Grid", "sub/geometry.py::Grid.cells"),
    ("sub/geometry.py::Grid", "sub/geometry.py::Grid.describe"),
    ("util.py", "util.py::traced"),
    ("util.py", "util.py::scaled"),
    ("util.py", "util.py::base_name"),
    ("util.py::traced", "util.py::traced.wrapper"),
}
IMPORTS = {
    ("__init__.py", "shapes.py::Shape"),  # from .shapes import Shape as BaseShape
    ("__init__.py", "util.py"),  # from . import util: the submodule
    ("settings.py", "util.py"),  # import indexpkg.util as helpers
    ("settings.py", "shapes.py"),  # from indexpkg.shapes import *
    ("shapes.py", "util.py"),  # from indexpkg import util as u
    ("shapes.py", "util.py::traced"),  # from .util import traced
    ("sub/geometry.py", "shapes.py::Square"),  # from ..shapes import Square
    ("sub/geometry.py", "util.py"),  # from .. import util
    ("sub/geometry.py", "shapes.py"),  # import indexpkg.shapes
}
INHERITS = {
    ("shapes.py::Square", "shapes.py::Shape"),
    ("sub/geometry.py::Grid", "shapes.py::Shape"),  # through indexpkg.shapes.Shape
}
REFERENCES = {
    ("settings.py::Config.__init__", "util.py::base_name"),  # helpers.base_name
    ("settings.py::Config.value#2", "settings.py::Config.value"),  # @value.setter
    ("settings.py::Config.value#2", "shapes.py::Square"),  # through the star import
    ("shapes.py::Shape.describe", "shapes.py::Shape.area"),  # self.area()
    ("shapes.py::Square.__init__", "shapes.py::Shape.__init__"),  # super().__init__
    ("shapes.py::Square.area", "util.py::traced"),  # decorator
    ("shapes.py::Square.area", "util.py::scaled"),  # u.scaled
    ("sub/geometry.py::outer", "sub/geometry.py::outer.inner"),
    ("sub/geometry.py::outer.inner", "util.py::scaled"),
    ("sub/geometry.py::Grid.cells", "shapes.py::Square"),
    ("sub/geometry.py::Grid.describe", "sub/geometry.py::Grid.cells"),
    ("sub/geometry.py::Grid.describe", "shapes.py::Shape.area"),  # inherited
    ("util.py::traced", "util.py::traced.wrapper"),
}
EXPECTED_UNRESOLVED = [
    ("shapes.py::Square.label", "self.missing_attr"),
    ("sub/geometry.py", ".missing.nothing"),
    ("sub/geometry.py::Grid.cells", "undefined_name"),
]


def _edge_set(index: RepoIndex) -> set[tuple[str, str, frozenset[str]]]:
    return {(u, v, data["kinds"]) for u, v, data in index.graph.edges(data=True)}


def _expected_edges() -> set[tuple[str, str, frozenset[str]]]:
    kinds: dict[tuple[str, str], set[str]] = {}
    by_kind = {"contains": CONTAINS, "imports": IMPORTS, "inherits": INHERITS, "references": REFERENCES}
    for name, pairs in by_kind.items():
        for pair in pairs:
            kinds.setdefault(pair, set()).add(name)
    return {(u, v, frozenset(k)) for (u, v), k in kinds.items()}


def _same_index(left: RepoIndex, right: RepoIndex) -> None:
    assert left.regions == right.regions
    assert _edge_set(left) == _edge_set(right)
    assert {(u, v, d["kind"]) for u, v, d in left.graph.edges(data=True)} == {
        (u, v, d["kind"]) for u, v, d in right.graph.edges(data=True)
    }
    assert sorted(left.unresolved) == sorted(right.unresolved)
    assert left.warnings == right.warnings
    assert left.files == right.files


@pytest.fixture(scope="module")
def fixture_index() -> RepoIndex:
    return build_index(FIXTURE)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A private copy of the fixture package (outside any git repository)."""
    copy = tmp_path / "indexpkg"
    shutil.copytree(FIXTURE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


# -- regions and edges ---------------------------------------------------------------


def test_regions_are_exactly_the_expected_ones(fixture_index: RepoIndex) -> None:
    found = {rid: (r.kind, r.start, r.end) for rid, r in fixture_index.regions.items()}
    assert found == EXPECTED_REGIONS
    assert set(fixture_index.graph.nodes) == set(EXPECTED_REGIONS)
    assert all(fixture_index.graph.nodes[rid]["region"] is r for rid, r in fixture_index.regions.items())
    method = fixture_index.regions["shapes.py::Square.area"]
    assert (method.path, method.qualname) == ("shapes.py", "Square.area")
    assert fixture_index.regions["util.py::traced"].doc == "Decorator that does nothing."
    assert fixture_index.regions["shapes.py::Shape"].doc == "A shape."
    assert fixture_index.regions["__init__.py"].doc == "Fixture package for the index tests."


def test_edges_are_exactly_the_expected_ones(fixture_index: RepoIndex) -> None:
    assert _edge_set(fixture_index) == _expected_edges()
    # The primary kind: containment first, then inheritance, imports, references.
    primary = fixture_index.graph.edges["util.py::traced", "util.py::traced.wrapper"]["kind"]
    assert primary == "contains"
    assert fixture_index.graph.edges["shapes.py", "util.py::traced"]["kind"] == "imports"


def test_unresolved_names_and_unparsable_files_are_recorded(fixture_index: RepoIndex) -> None:
    assert fixture_index.unresolved == EXPECTED_UNRESOLVED
    assert fixture_index.warnings == [
        "broken.py: syntax error at line 1: invalid syntax",
        "latin1.py: not valid UTF-8 (byte 54)",
    ]
    broken = fixture_index.regions["broken.py"]
    assert broken.warning.startswith("syntax error") and broken.qualname == ""


def test_region_hash_covers_exactly_its_lines(fixture_index: RepoIndex) -> None:
    import hashlib

    lines = (FIXTURE / "shapes.py").read_text(encoding="utf-8").split("\n")
    region = fixture_index.regions["shapes.py::Square.area"]
    text = "\n".join(lines[region.start - 1 : region.end])
    assert text.startswith("    @traced\n")
    assert region.hash == hashlib.sha256(text.encode()).hexdigest()


def test_libcst_names_every_region_as_the_index_does() -> None:
    """A change's regions are the index's (ast), its signatures libcst's: both must name the same
    regions, or one function added to a real module reads as the whole file modified, with an
    unknown signature change."""
    sources = [p for p in sorted(FIXTURE.rglob("*.py")) if "__pycache__" not in p.parts]
    # A few real modules for breadth: decorators, nested classes, overloads.
    nx_root = Path(networkx.__path__[0])
    sources += [nx_root / "classes" / "filters.py", nx_root / "utils" / "decorators.py", nx_root / "exception.py"]
    compared = 0
    for source in sources:
        text = source.read_bytes().decode("utf-8", "surrogateescape")
        path = source.name
        if ast_regions(text, path)[0].kind == "file":
            continue  # the fixtures that are not Python on purpose
        added = text.rstrip("\n") + "\n\n\ndef loomtui_added(x: int) -> int:\n    return x\n"
        # The function is added; the module's own lines (imports, constants, module code) are as they were.
        assert changed_regions(text, added, path) == [RegionChange(f"{path}::loomtui_added", "added", False)], source
        compared += len(ast_regions(text, path))
    assert compared > 60


def test_blob_hash_is_gits() -> None:
    data = (FIXTURE / "latin1.py").read_bytes()
    git = subprocess.run(["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True)
    assert blob_hash(data) == git.stdout.decode().strip()


# -- queries -------------------------------------------------------------------------


def test_regions_in_and_innermost_at(fixture_index: RepoIndex) -> None:
    ids = [r.id for r in fixture_index.regions_in("shapes.py", 26, 30)]
    assert ids == ["shapes.py", "shapes.py::Square", "shapes.py::Square.area", "shapes.py::Square.label"]
    assert len(fixture_index.regions_in("util.py")) == 5
    assert fixture_index.innermost_at("util.py", 13).id == "util.py::traced.wrapper"  # type: ignore[union-attr]
    assert fixture_index.innermost_at("util.py", 12).id == "util.py::traced.wrapper"  # type: ignore[union-attr]
    assert fixture_index.innermost_at("util.py", 17).id == "util.py"  # type: ignore[union-attr]
    assert fixture_index.innermost_at("nowhere.py", 1) is None


def test_neighbours_follow_dependencies_not_containment(fixture_index: RepoIndex) -> None:
    assert fixture_index.neighbours("util.py::scaled") == {
        "shapes.py::Square.area",
        "sub/geometry.py::outer.inner",
    }
    two_hops = fixture_index.neighbours("util.py::scaled", hops=2)
    assert "util.py::traced" in two_hops  # Square.area is decorated with it
    assert fixture_index.neighbours("shapes.py::Shape", kinds=frozenset({"inherits"})) == {
        "shapes.py::Square",
        "sub/geometry.py::Grid",
    }
    assert fixture_index.neighbours("no/such.py") == set()


def test_module_names_follow_import_roots(tmp_path: Path) -> None:
    files = {
        "app/__init__.py": "",
        "app/main.py": "import gc\nimport osmod.path\nfrom osmod.path import join\n\n\ndef run():\n    gc.collect()\n",
        # A directory of plain modules is its own import root: seen from itself only.
        "scripts/gc.py": "def collect():\n    pass\n",
        "scripts/run.py": "import gc\n",
        # `osmod.path` is no file but an attribute of osmod.py, as os.path is.
        "osmod.py": "import pathimpl as path\n",
        "pathimpl.py": "def join():\n    pass\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    index = build_index(tmp_path)
    dependencies = {(u, v) for u, v, kinds in index.graph.edges(data="kinds") if "contains" not in kinds}
    assert dependencies == {
        ("app/main.py", "pathimpl.py"),
        ("app/main.py", "pathimpl.py::join"),
        ("osmod.py", "pathimpl.py"),
        ("scripts/run.py", "scripts/gc.py"),
    }
    assert index.unresolved == []


@pytest.mark.parametrize("top_is_a_package", [False, True])
def test_module_names_by_import_root(top_is_a_package: bool) -> None:
    from loomtui.coordination.index_modules import _ModuleMap

    paths = ["a.py", "sub/__init__.py", "sub/b.py", "sub/deep/__init__.py", "sub/deep/c.py",
             "src/pkg/__init__.py", "src/pkg/m.py", "tests/gc.py", "plain/inner/__init__.py", "plain/inner/x.py"]
    if top_is_a_package:
        paths.append("__init__.py")
    names = _ModuleMap(paths, "top" if top_is_a_package else "")
    lead = "top." if top_is_a_package else ""
    assert {path: names.name_of[path] for path in paths if path != "__init__.py"} == {
        "a.py": f"{lead}a", "sub/__init__.py": f"{lead}sub", "sub/b.py": f"{lead}sub.b",
        "sub/deep/__init__.py": f"{lead}sub.deep", "sub/deep/c.py": f"{lead}sub.deep.c",
        "src/pkg/__init__.py": "pkg", "src/pkg/m.py": "pkg.m", "tests/gc.py": "gc",
        "plain/inner/__init__.py": "inner", "plain/inner/x.py": "inner.x"}
    assert names.root_of["sub/deep/c.py"] == "" and names.root_of["src/pkg/m.py"] == "src"
    assert names.global_roots == ("", "plain", "src")  # roots holding packages; tests/ holds none
    assert names.find("gc", "") == (None, ("\0gc", "plain\0gc", "src\0gc", "*\0gc"))
    assert names.find("pkg.m", "")[0] == "src/pkg/m.py"
    assert names.by_full_path[f"{lead}src.pkg.m"] == "src/pkg/m.py"


# -- listing, safety -----------------------------------------------------------------


def test_walk_listing_matches_git_listing(tree: Path, fixture_index: RepoIndex) -> None:
    copied = build_index(tree)
    assert copied.files == fixture_index.files
    _same_index(copied, fixture_index)


def test_include_and_exclude_globs(tree: Path) -> None:
    index = build_index(tree, exclude=["sub/", "broken.py"])
    assert sorted(index.files) == ["__init__.py", "latin1.py", "settings.py", "shapes.py", "util.py"]
    only = build_index(tree, include=["sub/*.py"])
    assert sorted(only.files) == ["sub/__init__.py", "sub/geometry.py"]


def test_symlink_out_of_repository_is_refused(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("SECRET = 1\n")
    (tree / "escape.py").symlink_to(outside)
    (tree / "alias.py").symlink_to(tree / "util.py")  # inside: an alias, indexed under its target's name
    index = build_index(tree)
    assert "escape.py" not in index.files
    assert "util.py::scaled" in index.regions and "alias.py" not in index.files
    assert "escape.py: refused: symlink points outside the repository" in index.warnings
    with pytest.raises(ValueError, match="outside the repository"):
        build_index(tree, files=["escape.py"])
    with pytest.raises(ValueError, match="escapes the repository"):
        build_index(tree, files=["../outside.py"])
    with pytest.raises(ValueError, match="escapes the repository"):
        build_index(tree, files=["sub/../../outside.py"])


def test_explicit_files(tree: Path) -> None:
    index = build_index(tree, files=["util.py", str(tree / "shapes.py")])
    assert sorted(index.files) == ["shapes.py", "util.py"]
    # Without __init__.py in the index the files are top-level modules: the
    # relative import still resolves, `from indexpkg import util` is outside.
    assert ("shapes.py", "util.py::traced") in index.graph.edges
    assert ("shapes.py::Square.area", "util.py::scaled") not in index.graph.edges


def test_binary_and_huge_files_become_file_regions(tree: Path) -> None:
    (tree / "blob.py").write_bytes(b"x = 1\0\n")
    (tree / "huge.py").write_bytes(b"x = 1\n" * 400_000)
    index = build_index(tree)
    assert index.regions["blob.py"].kind == "file"
    huge = index.regions["huge.py"]
    assert (huge.kind, huge.qualname, huge.start, huge.end) == ("file", "", 1, 400_000)
    assert "blob.py: binary file (contains NUL bytes)" in index.warnings
    assert any(w.startswith("huge.py: file too large") for w in index.warnings)
    assert index.files["huge.py"] == blob_hash((tree / "huge.py").read_bytes())


# -- cache, incremental, parallel ----------------------------------------------------


def test_second_build_parses_nothing(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = build_index(tree, cache_dir=cache)
    assert first.stats == {"files": 8, "parsed": 8, "cached": 0, "resolved": 8}
    second = build_index(tree, cache_dir=cache)
    assert second.stats == {"files": 8, "parsed": 0, "cached": 8, "resolved": 0}
    _same_index(first, second)


def test_facts_cache_is_shared_by_another_checkout(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build_index(tree, cache_dir=cache)
    other = tmp_path / "worktree2" / "indexpkg"
    shutil.copytree(tree, other)
    (other / "extra.py").write_text("from .util import scaled\n")
    index = build_index(other, cache_dir=cache)
    assert index.stats["parsed"] == 1
    assert ("extra.py", "util.py::scaled") in index.graph.edges


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        # body only: the file's interface is unchanged
        ("util.py", "    return value * SCALE\n", "    value += 0\n    return value * SCALE\n"),
        # a region disappears: users of it must lose their edges and report it
        ("util.py", "def scaled(value):\n    return value * SCALE\n", ""),
        # a new definition shadows what a star import provided
        ("settings.py", "class Config:", "class Square:\n    pass\n\n\nclass Config:"),
        # an unresolved name becomes resolvable
        ("sub/geometry.py", "from .missing import nothing\n", "from .missing import nothing\nundefined_name = 1\n"),
        # an inherited method disappears: another file's subclass reached it through its base
        ("shapes.py", "    def area(self):\n        return 0\n\n", ""),
        # a class is told its attribute exists: the lookup another file made now stops there
        ("shapes.py", "        self.name = name\n", "        self.name = name\n        self.cells = None\n"),
        # a base class changes: every lookup through the class is re-done
        ("shapes.py", "class Square(Shape):", "class Square(object):"),
        # a name is bound to something else under the same name
        ("util.py", "def base_name(", "base_name = None\n\n\ndef _base_name("),
        # __all__ appears: what the star import gives changes
        ("shapes.py", '"""Shapes."""\n', '"""Shapes."""\n__all__ = ["Shape"]\n'),
        # a module-level name another file's star import could not see before
        ("shapes.py", "class Shape:", "class Config:\n    pass\n\n\nclass Shape:"),
    ],
)
def test_incremental_build_equals_a_fresh_one(tree: Path, tmp_path: Path, path: str, old: str, new: str) -> None:
    cache = tmp_path / "cache"
    build_index(tree, cache_dir=cache)
    file = tree / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new))
    patched = build_index(tree, cache_dir=cache)
    assert patched.stats["parsed"] == 1
    _same_index(patched, build_index(tree))


def test_a_run_of_random_edits_keeps_the_incremental_index_equal_to_a_fresh_one(
        tree: Path, tmp_path: Path) -> None:
    # Each step removes, duplicates, renames or re-bases a definition somewhere, on top of the last.
    cache = tmp_path / "cache"
    rng = random.Random(11)
    build_index(tree, cache_dir=cache)
    files = ["shapes.py", "util.py", "settings.py", "sub/geometry.py", "__init__.py"]
    for _ in range(14):
        file = tree / rng.choice(files)
        lines = file.read_text().splitlines(keepends=True)
        starts = [n for n, line in enumerate(lines) if line.lstrip().startswith(("def ", "class "))]
        if not starts:
            continue
        at = rng.choice(starts)
        action = rng.choice(["drop", "copy", "rename", "rebase"])
        indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
        if action == "drop":
            lines[at] = indent + "if True:\n"  # the body stays, the definition goes
        elif action == "copy":
            lines.append("\n\n" + lines[at].lstrip() + "    pass\n")
        elif action == "rename":
            lines[at] = lines[at].replace("def ", "def renamed_", 1).replace("class ", "class Renamed", 1)
        elif "class " in lines[at] and "(" in lines[at]:
            lines[at] = lines[at].split("(")[0] + "(Shape):\n"
        text = "".join(lines)
        try:
            ast.parse(text)
        except SyntaxError:
            continue  # a file that stops parsing keeps its last regions: another test's business
        file.write_text(text)
        _same_index(build_index(tree, cache_dir=cache), build_index(tree))


SCALED = "def scaled(value):\n    return value * SCALE\n"


@pytest.mark.parametrize("edit", [
    # a definition moves within its file: indexes shift, names do not
    lambda text: text.replace(SCALED, "") + "\n\n" + SCALED,
    # a new private function: no other file asked for its name
    lambda text: text + "\n\ndef _added():\n    return 1\n",
], ids=["moved", "new-private"])
def test_an_edit_no_other_file_reads_re_resolves_only_its_own_file(
        tree: Path, tmp_path: Path, edit: Callable[[str], str]) -> None:
    cache = tmp_path / "cache"
    build_index(tree, cache_dir=cache)
    file = tree / "util.py"
    assert SCALED in file.read_text()
    file.write_text(edit(file.read_text()))
    patched = build_index(tree, cache_dir=cache)
    assert patched.stats["resolved"] == 1
    _same_index(patched, build_index(tree))


def test_a_body_edit_that_uses_nothing_new_resolves_nothing_and_one_that_does_only_its_file(
        tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build_index(tree, cache_dir=cache)
    file = tree / "shapes.py"
    # A local variable and a line more: the regions below move, the edges stay.
    file.write_text(file.read_text().replace("return 0\n", "total = 0\n        return total\n"))
    index = build_index(tree, cache_dir=cache)
    assert index.stats == {"files": 8, "parsed": 1, "cached": 7, "resolved": 0}
    assert index.regions["shapes.py::Square"].start == 21
    _same_index(index, build_index(tree))
    # A call to what it did not use before: its own edges are resolved again, no other file's.
    file.write_text(file.read_text().replace("total = 0\n", "total = u.scaled(0)\n"))
    index = build_index(tree, cache_dir=cache)
    assert index.stats == {"files": 8, "parsed": 1, "cached": 7, "resolved": 1}
    assert ("shapes.py::Shape.area", "util.py::scaled") in index.graph.edges
    _same_index(index, build_index(tree))


def test_a_file_that_stops_parsing_keeps_its_regions_marked_stale(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("from .first import *\nfrom .second import *\n")
    (root / "pkg" / "first.py").write_text("def f():\n    pass\n")
    (root / "pkg" / "second.py").write_text('__all__ = ["g"]\n\n\ndef g():\n    pass\n')
    (root / "user.py").write_text("from pkg import f, g\n")
    cache = tmp_path / "cache"
    before = build_index(root, cache_dir=cache)
    (root / "pkg" / "second.py").write_text("def g(:\n")
    broken = build_index(root, cache_dir=cache)
    region = broken.regions["pkg/second.py::g"]
    assert (region.start, region.end) == (4, 5)
    assert region.warning.startswith("stale: syntax error at line 1")
    assert any(w.startswith("pkg/second.py: stale: syntax error") for w in broken.warnings)
    assert broken.stale == ["pkg/second.py"]  # from the rows the update wrote, as a later start reads them
    assert build_index(root, cache_dir=cache).stale == ["pkg/second.py"]
    assert _edge_set(broken) == _edge_set(before)
    assert broken.files["pkg/second.py"] != before.files["pkg/second.py"]
    # Still broken, differently: still the last version that parsed.
    (root / "pkg" / "second.py").write_text("def g(:\n    pass\n")
    assert build_index(root, cache_dir=cache).regions["pkg/second.py::g"].warning.startswith("stale:")
    (root / "pkg" / "second.py").write_text("def h():\n    pass\n")
    fixed = build_index(root, cache_dir=cache)
    assert "pkg/second.py::g" not in fixed.regions and not fixed.regions["pkg/second.py::h"].warning
    assert fixed.stale == [] and not fixed.warnings
    _same_index(fixed, build_index(root))


def test_an_update_is_written_once(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build_index(tree, cache_dir=cache)
    file = tree / "shapes.py"
    file.write_text(file.read_text().replace("return 0\n", "return 1\n"))
    first = build_index(tree, cache_dir=cache)
    assert first.stats == {"files": 8, "parsed": 1, "cached": 7, "resolved": 0}  # uses nothing new
    again = build_index(tree, cache_dir=cache)
    assert again.stats == {"files": 8, "parsed": 0, "cached": 8, "resolved": 0}
    _same_index(first, again)


def test_added_and_removed_files_are_patched(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build_index(tree, cache_dir=cache)
    (tree / "sub" / "missing.py").write_text("nothing = None\n")
    (tree / "latin1.py").unlink()
    patched = build_index(tree, cache_dir=cache)
    fresh = build_index(tree)
    _same_index(patched, fresh)
    assert ("sub/geometry.py", "sub/missing.py") in patched.graph.edges
    assert ("sub/geometry.py", ".missing.nothing") not in patched.unresolved


def test_parallel_equals_serial(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = build_index(tree, workers=1)
    monkeypatch.setattr(index_module, "PARALLEL_THRESHOLD", 0)
    seen: list[tuple[int, int]] = []
    parallel = build_index(tree, workers=2, progress=lambda done, total: seen.append((done, total)))
    _same_index(serial, parallel)
    assert seen[-1] == (8, 8)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_corrupt_cache_entries_are_misses(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build_index(tree, cache_dir=cache)
    for entry in cache.rglob("*.pickle"):
        entry.write_bytes(b"not a pickle")
    for entry in cache.rglob("*.sqlite"):
        entry.write_bytes(b"not a database either" * 100)
    index = build_index(tree, cache_dir=cache)
    assert index.stats["parsed"] == 8
    _same_index(index, build_index(tree))


# -- signatures ----------------------------------------------------------------------

BASE = '''\
import functools


class Base:
    pass


class Other:
    pass


class Thing(Base):
    def run(self, a, b=1) -> int:
        """Run it."""
        return a + b

    def helper(self):
        return self.run(1)


def free(x):
    return x
'''


def _change(new: str, region: str = "mod.py::Thing.run") -> RegionChange:
    changes = {c.region_id: c for c in changed_regions(BASE, new, "mod.py")}
    return changes[region]


@pytest.mark.parametrize(
    ("old", "new", "region"),
    [
        ("def run(self, a, b=1)", "def run(self, a, b=1, c=None)", "mod.py::Thing.run"),  # parameter added
        ("def run(self, a, b=1)", "def run(self, a, b=2)", "mod.py::Thing.run"),  # default changed
        ("-> int:", "-> str:", "mod.py::Thing.run"),  # return annotation
        ("    def run(", "    @functools.cache\n    def run(", "mod.py::Thing.run"),  # decorator added
        ("class Thing(Base):", "class Thing(Other):", "mod.py::Thing"),  # base class changed
        ("def free(x):", "def free(x, /):", "mod.py::free"),  # parameter kind changed
    ],
)
def test_signature_changes_are_detected(old: str, new: str, region: str) -> None:
    assert old in BASE
    assert _change(BASE.replace(old, new), region) == RegionChange(region, "modified", True)


def test_body_only_change_is_not_a_signature_change() -> None:
    new = BASE.replace("return a + b", "return b + a")
    assert changed_regions(BASE, new, "mod.py") == [RegionChange("mod.py::Thing.run", "modified", False)]


def test_layout_of_a_signature_is_not_a_change_of_it() -> None:
    reflowed = "def run(\n        self,\n        a,  # the first\n        b = 1,\n    ) -> int:"
    new = BASE.replace("def run(self, a, b=1) -> int:", reflowed)
    assert changed_regions(BASE, new, "mod.py") == [RegionChange("mod.py::Thing.run", "modified", False)]


def test_added_and_removed_regions() -> None:
    new = BASE.replace("def free(x):\n    return x\n", "def fresh(y):\n    return y\n")
    assert changed_regions(BASE, new, "mod.py") == [  # the module's own lines alike: no change of the module's
        RegionChange("mod.py::fresh", "added", False),  # nothing calls it yet
        RegionChange("mod.py::free", "removed", True),  # its callers break
    ]
    assert changed_regions(BASE, BASE, "mod.py") == []


@pytest.mark.parametrize(("old", "new", "changed"), [
    # Each was no change of any region: the commit hook let it pass over another's claim, and no claim was taken.
    ("def f():\n    return 1\n\n\ndef g():\n    return 2\n", "def g():\n    return 2\n\n\ndef f():\n    return 1\n",
     "m.py"),  # two functions swapped: the module's order
    ("def f():\n    return 1\n\nX = f()\n", "X = f()\n\ndef f():\n    return 1\n", "m.py"),  # now fails at import
    ('def f():\n    return """a\n\nb"""\n', 'def f():\n    return """a\nb"""\n', "m.py::f"),  # its value
    ('def f():\n    return """a  \nb"""\n', 'def f():\n    return """a\nb"""\n', "m.py::f"),  # a trailing space
    ("class C:\n    def a(self):\n        pass\n\n    def b(self):\n        pass\n",
     "class C:\n    def b(self):\n        pass\n\n    def a(self):\n        pass\n", "m.py::C"),  # methods swapped
    ("def f():\n    return 1\n", "def f():\r\n    return 1\r\n", "m.py"),  # line endings alone: every line
])
def test_code_that_changed_is_always_some_region_s_change(old: str, new: str, changed: str) -> None:
    assert [(c.region_id, c.change) for c in changed_regions(old, new, "m.py")] == [(changed, "modified")]
    # A blank line between methods, or between functions, is still no one's change.
    spaced = "class C:\n    def a(self):\n        pass\n\n\n    def b(self):\n        pass\n"
    assert changed_regions(spaced, spaced.replace("\n\n\n", "\n\n"), "m.py") == []


def test_a_new_function_is_not_a_signature_change() -> None:
    new = BASE + "\n\ndef test_free():\n    assert free(1) == 1\n"
    changes = changed_regions(BASE, new, "mod.py")
    assert RegionChange("mod.py::test_free", "added", False) in changes
    assert [c.region_id for c in changes if c.signature_changed] == []


def test_invalid_side_is_a_whole_file_change() -> None:
    assert changed_regions(BASE, BASE + "def (:\n", "mod.py") == [RegionChange("mod.py", "modified", True)]


@pytest.mark.parametrize("nested", ["def deep():\n    return a" + ".b" * 3000 + "()\n",
                                    "def deep(x=a" + ".b" * 3000 + "):\n    return x\n"])
def test_code_nested_deeper_than_the_visitor_recurses_is_a_whole_file_change(nested: str) -> None:
    """An agent's commit can nest deeper than libcst's visitor recurses (both parsers read it):
    the review then takes the file as one change, as for code it cannot read, rather than crashing."""
    assert changed_regions(BASE, BASE + nested, "mod.py") == [RegionChange("mod.py", "modified", True)]


def test_signatures_are_compared_normalised() -> None:
    """Spacing and trailing commas in a signature are no change of it; a default or annotation is."""
    respaced = BASE.replace("def run(self, a, b=1) -> int:", "def run(self,a,b = 1,)->int:")
    assert changed_regions(BASE, respaced, "mod.py") == [RegionChange("mod.py::Thing.run", "modified", False)]
    assert changed_regions(BASE, BASE.replace("class Thing(Base):", "class Thing( Base, ):"), "mod.py") == [
        RegionChange("mod.py::Thing", "modified", False)]
    assert changed_regions(BASE, BASE.replace("def free(x):", "def free( x, ):"), "mod.py") == [
        RegionChange("mod.py::free", "modified", False)]

    decorated = "@functools.lru_cache(maxsize=2)\nasync def f(*args, k: int = 0, **kw): ...\n"

    def change(old: str, new: str) -> list[RegionChange]:
        assert old in decorated
        return changed_regions(decorated, decorated.replace(old, new), "f.py")

    assert change("(maxsize=2)", "( maxsize = 2 )") == [RegionChange("f.py::f", "modified", False)]
    assert change("k: int = 0, **kw)", "k:int=0,**kw,)") == [RegionChange("f.py::f", "modified", False)]
    assert change("k: int = 0", "k: int = 1") == [RegionChange("f.py::f", "modified", True)]  # a default
    assert change("k: int = 0", "k: str = 0") == [RegionChange("f.py::f", "modified", True)]  # an annotation
    assert change("(maxsize=2)", "(maxsize=3)") == [RegionChange("f.py::f", "modified", True)]  # a decorator


def test_changed_region_ids_match_the_index(tree: Path) -> None:
    before = (tree / "shapes.py").read_text()
    after = before.replace("return 0\n", "return 1\n")
    (tree / "shapes.py").write_text(after)
    index = build_index(tree)
    changes = changed_regions(before, after, "shapes.py")
    assert [c.region_id for c in changes] == ["shapes.py::Shape.area"]
    assert all(c.region_id in index.regions for c in changes)


def test_listing_follows_git_at_a_repositorys_top_and_walks_a_folder_git_ignores(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    (outer / "venv" / "lib").mkdir(parents=True)
    git(outer, "init", "-q", "-b", "main")
    (outer / ".gitignore").write_text("venv/\nbuild.py\n")
    (outer / "app.py").write_text("x = 1\n")
    (outer / "build.py").write_text("y = 2\n")
    (outer / "venv" / "lib" / "site.py").write_text("z = 3\n")
    assert list_files(outer) == ["app.py"]  # the repository's own ignores apply at its top
    # A folder the enclosing repository ignores (a virtualenv) is listed as it is on disk.
    assert list_files(outer / "venv") == ["lib/site.py"]
    inner = outer / "venv" / "inner"
    inner.mkdir()
    git(inner, "init", "-q", "-b", "main")
    (inner / ".gitignore").write_text("skip.py\n")
    (inner / "keep.py").write_text("")
    (inner / "skip.py").write_text("")
    assert list_files(inner) == ["keep.py"]  # a repository of its own inside an ignored folder
