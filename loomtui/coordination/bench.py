"""Benchmark of the repository index: `loomtui bench index [PATH | --corpus] --json`.

Everything runs on a copy of the tree in a temporary directory, so the measured
edit never touches the original (by default the installed networkx package;
`--corpus` builds the pinned million-line tree of `coordination.corpus`).

Figures: a cold build against a serial `ast.parse` of the same files; a warm
start (nothing changed) and its first answers; one function body edited; a new
top-level def in the most depended-on module; a second work tree of the same
files (a new sandbox); claim checks with 200 sandboxes holding 5,000 claims;
and the peak RSS of this process and of its largest worker.
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

from loomtui.coordination.index import RepoIndex, build_index, list_files
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
    ranked = [path for path, _users in index.hub_files() if path in index.files]
    return ranked + sorted(set(index.files) - set(ranked))


def _edit_one_function(root: Path, hubs: list[str]) -> str:
    """Append a statement to a function of the most depended-on file; the file's path."""
    for path in hubs:
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


def _first_answers(index: RepoIndex, path: str) -> None:
    """What a hook asks first: the regions of one file and the neighbourhood of one of them."""
    regions = index.regions_in(path)
    if regions:
        index.neighbours(regions[len(regions) // 2].id)


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
    progress: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Measure indexing of `path` (default: the installed networkx package) and return the figures.

    `cache_dir` is where the scratch cache goes (a fresh directory inside it,
    removed afterwards). `claim_bench(index)`, when given, is run on the warm
    index and its figures are merged into the result.
    """
    say = progress or (lambda _text: None)
    source = (path or _default_tree()).resolve()
    if not source.is_dir():
        raise LoomError(f"{shown(str(source))}: not a directory")
    with tempfile.TemporaryDirectory(prefix="loomtui-bench-") as scratch:
        tree = Path(scratch) / source.name
        say(f"copying {source}")
        paths = _copy_listed(source, tree)
        if not paths:
            raise LoomError(f"{shown(str(source))}: no Python file to index (the benchmark measures indexing them)")
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        cache = Path(tempfile.mkdtemp(prefix="loomtui-bench-cache-", dir=cache_dir or scratch))
        try:
            say(f"serial ast.parse of {len(paths)} files")
            ast_parse_s, lines = _ast_parse_seconds(tree, paths)
            say("cold build")
            cold_s, index = _timed(lambda: build_index(tree, cache_dir=cache))
            index.close()
            say("warm start")
            warm_s, index = _timed(lambda: build_index(tree, cache_dir=cache))
            hubs = _hubs(index)
            started = time.perf_counter()
            _first_answers(index, hubs[0] if hubs else paths[0])
            first_answers_s = time.perf_counter() - started
            figures = {"files": len(index.files), "regions": index.region_count(), "edges": index.edge_count(),
                       "unresolved": len(index.unresolved), "warnings": len(index.warnings)}
            say("claim checks")
            claim_figures = claim_bench(index) if claim_bench is not None else {}
            index.close()
            say("one function body edited")
            edited = _edit_one_function(tree, hubs)
            incremental_s, changed = _timed(lambda: build_index(tree, cache_dir=cache))
            changed.close()
            say("a new top-level def in the most depended-on module")
            _add_function(tree, edited)
            interface_s, reshaped = _timed(lambda: build_index(tree, cache_dir=cache))
            reshaped.close()
            say("a second work tree of the same files")
            second = Path(scratch) / "second" / source.name
            shutil.copytree(tree, second)
            second_s, other = _timed(lambda: build_index(second, cache_dir=cache))
            other.close()
            result: dict[str, object] = {
                "path": str(source),
                **figures,
                "lines": lines,
                "cpu_count": os.cpu_count(),
                "ast_parse_s": round(ast_parse_s, 3),
                "cold_s": round(cold_s, 3),
                "cold_ratio": round(cold_s / ast_parse_s, 2) if ast_parse_s else None,
                "warm_s": round(warm_s, 3),
                "warm_first_answers_ms": round(first_answers_s * 1000, 2),
                "incremental_s": round(incremental_s, 3),
                "incremental_file": edited,
                "incremental_parsed": changed.stats.get("parsed"),
                "incremental_resolved": changed.stats.get("resolved"),
                # Adding a function changes what other files can import from this
                # one, so every file that read its namespace is re-resolved too.
                "incremental_interface_s": round(interface_s, 3),
                "incremental_interface_resolved": reshaped.stats.get("resolved"),
                "second_worktree_s": round(second_s, 3),
                "second_worktree_parsed": other.stats.get("parsed"),
            }
            result.update(claim_figures)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    own, children = _peak_rss_mb()
    result["peak_rss_mb"] = round(max(own, children), 1)
    result["peak_rss_self_mb"] = round(own, 1)
    result["peak_rss_largest_worker_mb"] = round(children, 1)
    return result
