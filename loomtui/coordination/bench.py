"""Benchmark of the repository index: `loomtui bench index [PATH] --json`.

Everything runs on a copy of the tree in a temporary directory, so the measured
edit never touches the original (by default the installed networkx package).
"""

from __future__ import annotations

import ast
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from loomtui.coordination.index import (
    DEPENDENCY_KINDS,
    RepoIndex,
    build_index,
    list_files,
)
from loomtui.errors import LoomError, shown


def _default_tree() -> Path:
    import networkx

    return Path(networkx.__path__[0])


def _copy_listed(source: Path, target: Path) -> list[str]:
    """Copy the files the index would see (not .git, caches or ignored files); their paths."""
    paths = list_files(source)
    for path in paths:
        destination = target / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / path, destination)
    return paths


def _ast_parse_seconds(root: Path, paths: list[str]) -> tuple[float, int]:
    """The baseline: read and `ast.parse` every file in this process; also counts lines."""
    lines = 0
    started = time.perf_counter()
    for path in paths:
        data = (root / path).read_bytes()
        lines += data.count(b"\n")
        with suppress(SyntaxError, ValueError):
            ast.parse(data)
    return time.perf_counter() - started, lines


def _hubs(index: RepoIndex) -> list[str]:
    """Parsable files, the most depended-on (by other files' dependency edges) first."""
    users: dict[str, set[str]] = {}
    for source, target, data in index.graph.edges(data=True):
        source_path, target_path = source.partition("::")[0], target.partition("::")[0]
        if source_path != target_path and data["kinds"] & DEPENDENCY_KINDS:
            users.setdefault(target_path, set()).add(source_path)
    modules = [region.path for region in index.regions.values() if region.kind == "module"]
    return sorted(modules, key=lambda path: (-len(users.get(path, ())), path))


def _edit_one_function(root: Path, index: RepoIndex) -> str:
    """Append a statement to a function of the most depended-on file; the file's path."""
    for path in _hubs(index):
        file = root / path
        text = file.read_text(encoding="utf-8")
        tree = ast.parse(text)
        functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if not functions:
            continue
        target = functions[len(functions) // 2]
        lines = text.splitlines(keepends=True)
        first, last = target.body[0], target.body[-1]
        indent_line = lines[first.lineno - 1]
        indent = indent_line[: len(indent_line) - len(indent_line.lstrip())]
        at = last.end_lineno or last.lineno
        lines.insert(at, f"{indent}_loomtui_bench_edit = 1\n")
        file.write_text("".join(lines), encoding="utf-8")
        return path
    raise LoomError(f"{shown(str(root))}: no Python function to edit (the benchmark needs a Python tree)")


def _add_function(root: Path, path: str) -> None:
    """An edit that changes the file's interface: a new top-level function."""
    file = root / path
    added = "\n\ndef _loomtui_bench_added():\n    return 1\n"
    file.write_text(file.read_text(encoding="utf-8") + added, encoding="utf-8")


def _peak_rss_mb() -> tuple[float, float]:
    # ru_maxrss is KiB on Linux and bytes on macOS.
    unit = 1 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit / 2**20
    return own, children


def _timed(build: Callable[[], RepoIndex]) -> tuple[float, RepoIndex]:
    started = time.perf_counter()
    index = build()
    return time.perf_counter() - started, index


def run_index_bench(
    path: Path | None = None,
    cache_dir: Path | None = None,
    claim_bench: Callable[[RepoIndex], dict[str, object]] | None = None,
) -> dict[str, object]:
    """Measure indexing of `path` (default: the installed networkx package) and return the figures.

    `cache_dir` is where the scratch cache goes (a fresh directory inside it,
    removed afterwards). `claim_bench(index)`, when given, is run on the warm
    index and its figures are merged into the result.
    """
    source = (path or _default_tree()).resolve()
    if not source.is_dir():
        raise LoomError(f"{shown(str(source))}: not a directory")
    with tempfile.TemporaryDirectory(prefix="loomtui-bench-") as scratch:
        tree = Path(scratch) / source.name
        paths = _copy_listed(source, tree)
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        cache = Path(tempfile.mkdtemp(prefix="loomtui-bench-cache-", dir=cache_dir or scratch))
        try:
            ast_parse_s, lines = _ast_parse_seconds(tree, paths)
            cold_s, index = _timed(lambda: build_index(tree, cache_dir=cache))
            warm_s, index = _timed(lambda: build_index(tree, cache_dir=cache))
            claim_figures = claim_bench(index) if claim_bench is not None else {}
            edited = _edit_one_function(tree, index)
            incremental_s, changed = _timed(lambda: build_index(tree, cache_dir=cache))
            _add_function(tree, edited)
            interface_s, reshaped = _timed(lambda: build_index(tree, cache_dir=cache))
            result: dict[str, object] = {
                "path": str(source),
                "files": len(index.files),
                "lines": lines,
                "regions": len(index.regions),
                "edges": index.graph.number_of_edges(),
                "unresolved": len(index.unresolved),
                "warnings": len(index.warnings),
                "cpu_count": os.cpu_count(),
                "ast_parse_s": round(ast_parse_s, 3),
                "cold_s": round(cold_s, 3),
                "cold_ratio": round(cold_s / ast_parse_s, 2) if ast_parse_s else None,
                "warm_s": round(warm_s, 3),
                "incremental_s": round(incremental_s, 3),
                "incremental_file": edited,
                "incremental_parsed": changed.stats.get("parsed"),
                "incremental_resolved": changed.stats.get("resolved"),
                # Adding a function changes what other files can import from this
                # one, so every file that read its namespace is re-resolved too.
                "incremental_interface_s": round(interface_s, 3),
                "incremental_interface_resolved": reshaped.stats.get("resolved"),
            }
            result.update(claim_figures)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    own, children = _peak_rss_mb()
    result["peak_rss_mb"] = round(own + children, 1)
    result["peak_rss_self_mb"] = round(own, 1)
    result["peak_rss_children_mb"] = round(children, 1)
    return result
