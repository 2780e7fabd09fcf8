"""The index kept on disk under faults: a writer killed at many moments of an update (and what a
reader then sees), two writers at once, a cold build killed before it is published, a database
from another version; a new worktree seeded from a sibling; queries that never load the graph."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loomtui.coordination.index import build_index
from loomtui.coordination.index_disk import TreeDatabase, tree_key

MODULES = 160

BUILD = """
import json, sys
from pathlib import Path
from loomtui.coordination.index import build_index
index = build_index(Path(sys.argv[1]), cache_dir=Path(sys.argv[2]))
print(json.dumps({"stats": index.stats, "regions": index.region_count(), "edges": index.edge_count()}))
"""


def _package(root: Path) -> Path:
    """A hub every module star-imports: changing what the hub exports re-resolves every module."""
    package = root / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "hub.py").write_text("".join(f"def helper_{n}():\n    return {n}\n\n\n" for n in range(40)))
    for n in range(MODULES):
        body = "".join(f"    def m{k}(self):\n        return helper_{(n + k) % 40}() + self.m{(k + 1) % 8}()\n\n"
                       for k in range(8))
        (package / f"mod_{n}.py").write_text(f"from pkg.hub import *\n\n\nclass C{n}:\n{body}")
    return root


def _change_hub_exports(root: Path) -> None:
    hub = root / "pkg" / "hub.py"
    hub.write_text('__all__ = ["helper_1", "helper_2"]\n' + hub.read_text())


def _wait_for_the_lock(tree: TreeDatabase, writer: subprocess.Popen[str]) -> None:
    lock = tree.directory / f"{tree.key}.lock"
    deadline = time.monotonic() + 60
    while writer.poll() is None and time.monotonic() < deadline:
        if not lock.parent.is_dir():
            time.sleep(0.002)
            continue
        with open(lock, "a+b") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return
            fcntl.lockf(handle, fcntl.LOCK_UN)
        time.sleep(0.002)


def _spawn(root: Path, cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", BUILD, str(root), str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _same(left_root: Path, cache: Path) -> None:
    cached = build_index(left_root, cache_dir=cache)
    fresh = build_index(left_root)
    assert dict(cached.regions) == dict(fresh.regions)
    assert set(cached.graph.edges(data="kinds")) == set(fresh.graph.edges(data="kinds"))
    assert sorted(cached.unresolved) == sorted(fresh.unresolved)


def _rebind_one_helper(root: Path) -> None:
    hub = root / "pkg" / "hub.py"
    hub.write_text(hub.read_text().replace("def helper_5():\n    return 5\n", "helper_5 = None\n"))


# Narrowing the hub's exports reaches every module (a new database is written and published);
# rebinding one helper reaches a fifth of them (the database is updated in one transaction).
@pytest.mark.parametrize("edit", [_change_hub_exports, _rebind_one_helper], ids=["publish", "transaction"])
def test_a_writer_killed_mid_update_leaves_the_previous_version_and_the_next_run_repairs(
        tmp_path: Path, edit: Callable[[Path], None]) -> None:
    root, cache = _package(tmp_path / "tree"), tmp_path / "cache"
    before = build_index(root, cache_dir=cache)
    old_edges = before.edge_count()
    before.close()
    edit(root)
    new_edges = build_index(root).edge_count()
    assert new_edges != old_edges
    tree = TreeDatabase(cache, tree_key(root.resolve(), ("**/*.py",), ()))
    killed = 0
    for delay in (0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 2.0):
        writer = _spawn(root, cache)
        # Counted from the moment the writer holds the tree's lock: it is parsing, resolving or writing.
        _wait_for_the_lock(tree, writer)
        time.sleep(delay)
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGKILL)
            killed += 1
        writer.wait()
        # Whatever the moment, a reader sees one whole version: every module's edges or none changed.
        db = tree.open()
        assert db is not None
        count = db.edge_count()
        db.close()
        assert count in (old_edges, new_edges)
        if writer.returncode == 0:
            break
    assert killed, "the writer finished before it could be killed: make the tree larger"
    _same(root, cache)


def test_two_writers_at_once_one_does_the_work_the_other_waits_and_finds_it_done(tmp_path: Path) -> None:
    root, cache = _package(tmp_path / "tree"), tmp_path / "cache"
    build_index(root, cache_dir=cache).close()
    _change_hub_exports(root)
    writers = [_spawn(root, cache) for _ in range(2)]
    results = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        results.append(json.loads(out))
    assert results[0]["regions"] == results[1]["regions"] and results[0]["edges"] == results[1]["edges"]
    resolved = sorted(result["stats"]["resolved"] for result in results)
    assert resolved[0] == 0 and resolved[1] >= MODULES
    _same(root, cache)


def test_a_cold_build_killed_before_it_is_published_is_built_again(tmp_path: Path) -> None:
    root, cache = _package(tmp_path / "tree"), tmp_path / "cache"
    tree = TreeDatabase(cache, tree_key(root.resolve(), ("**/*.py",), ()))
    writer = _spawn(root, cache)
    _wait_for_the_lock(tree, writer)
    time.sleep(0.2)  # parsing, in worker processes: they must not outlive it holding the lock
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    again = _spawn(root, cache)
    out, err = again.communicate(timeout=90)  # a lock left held would hang here
    assert again.returncode == 0, err
    assert json.loads(out)["regions"] == 1 + 1 + 40 + MODULES * 10
    assert len(list((cache / "trees-v2").glob("*.sqlite"))) <= 2  # a dead generation is not kept forever
    _same(root, cache)


def test_a_new_worktree_starts_from_its_siblings_database(tmp_path: Path) -> None:
    first, cache = _package(tmp_path / "one"), tmp_path / "cache"
    build_index(first, cache_dir=cache).close()
    second = _package(tmp_path / "two")
    (second / "pkg" / "mod_3.py").write_text("X = 1\n")
    index = build_index(second, cache_dir=cache)
    assert index.stats["parsed"] == 1 and index.stats["resolved"] < MODULES
    assert "pkg/mod_3.py::C3" not in index.regions
    _same(second, cache)


def test_a_database_of_another_schema_is_not_read(tmp_path: Path) -> None:
    root, cache = _package(tmp_path / "tree"), tmp_path / "cache"
    build_index(root, cache_dir=cache).close()
    tree = TreeDatabase(cache, tree_key(root.resolve(), ("**/*.py",), ()))
    current = tree.current_path()
    assert current is not None
    import sqlite3  # the test reaches under the store to plant a database from another version

    with sqlite3.connect(current) as conn:
        conn.execute("PRAGMA user_version = 99")
    index = build_index(root, cache_dir=cache)
    assert index.stats["parsed"] == 0 and index.stats["resolved"] == MODULES + 2
    assert tree.current_path() != current


@pytest.mark.parametrize("edit", ["body", "new def"])
def test_queries_do_not_load_the_whole_graph(tmp_path: Path, edit: str) -> None:
    root, cache = _package(tmp_path / "tree"), tmp_path / "cache"
    build_index(root, cache_dir=cache).close()
    hub = root / "pkg" / "hub.py"
    hub.write_text(hub.read_text().replace("return 3\n", "return 3 + 0\n") if edit == "body"
                   else hub.read_text() + "def _private():\n    return 0\n")
    index = build_index(root, cache_dir=cache)
    assert index.stats["resolved"] == (0 if edit == "body" else 1)  # a body that uses nothing new: nothing
    assert [r.id for r in index.regions_in("pkg/mod_5.py", 6, 6)] == ["pkg/mod_5.py", "pkg/mod_5.py::C5",
                                                                      "pkg/mod_5.py::C5.m0"]
    assert "pkg/hub.py::helper_5" in index.neighbours("pkg/mod_5.py::C5.m0")
    users = {src for src, _dst, _kinds in index.in_edges(["pkg/hub.py::helper_5"])}
    assert "pkg/mod_5.py::C5.m0" in users
    assert index.hub_files()[0] == ("pkg/hub.py", MODULES)
    assert index._graph is None and index.regions._all is None


def test_claims_edit_checks_and_the_claims_view_answer_by_query(tmp_path: Path) -> None:
    from loomtui.coordination.view import coordination_picture
    from tests.conftest import demo_repo
    from loomtui.governance.coordinator import governed_coordinator
    from loomtui.workspace import open_workspace

    repo = demo_repo(tmp_path)
    coordinator = governed_coordinator(open_workspace(repo))
    coordinator.claim("refunds", "payments/refunds.py::RefundService.quote", reason="partial refunds")
    result = coordinator.claim("rounding", "payments/currency.py::round_minor_units")
    assert [c.kind for c in result.conflicts] == ["dependency"]
    assert " <-references- " in result.conflicts[0].explanation or " -references-> " in \
        result.conflicts[0].explanation
    index = coordinator.index
    quote = index.regions["payments/refunds.py::RefundService.quote"]
    decision = coordinator.check_edit("rounding", "payments/refunds.py", (quote.start + 1, quote.start + 1))
    assert decision.verdict == "deny" and decision.regions == ("payments/refunds.py::RefundService.quote",)
    picture = coordination_picture(coordinator)
    assert picture.regions == index.region_count() and picture.edges == index.edge_count()
    assert any(edge.owners == ("rounding",) for edge in picture.neighbourhoods[quote.id])
    assert index._graph is None and index.regions._all is None


def test_the_database_of_a_removed_worktree_goes_when_a_new_tree_is_indexed(tmp_path: Path) -> None:
    import shutil

    cache = tmp_path / "cache"
    kept, gone = _package(tmp_path / "kept"), _package(tmp_path / "gone")
    build_index(kept, cache_dir=cache).close()
    build_index(gone, cache_dir=cache).close()
    gone_key = tree_key(gone.resolve(), ("**/*.py",), ())
    assert list((cache / "trees-v2").glob(f"{gone_key}.*.sqlite"))
    shutil.rmtree(gone)
    build_index(_package(tmp_path / "new"), cache_dir=cache).close()
    assert not list((cache / "trees-v2").glob(f"{gone_key}*"))
    assert TreeDatabase(cache, tree_key(kept.resolve(), ("**/*.py",), ())).current_path() is not None


def test_bench_index_reports_every_figure_on_a_tree(tmp_path: Path) -> None:
    from loomtui.coordination.bench import run_index_bench
    from loomtui.coordination.claim_bench import claim_check_bench

    root = _package(tmp_path / "tree")
    seen: list[str] = []
    result = run_index_bench(root / "pkg", cache_dir=tmp_path / "scratch", claim_bench=claim_check_bench,
                             progress=seen.append)
    assert result["files"] == MODULES + 2 and result["regions"] == 1 + 1 + 40 + MODULES * 10
    assert result["incremental_file"] == "hub.py"  # the most depended-on module
    # The body edit adds a local variable: it uses nothing new, so nothing is resolved again.
    assert result["incremental_parsed"] == 1 and result["incremental_resolved"] == 0
    # A new private def in the hub: no module asked for its name.
    assert result["incremental_interface_resolved"] == 1
    assert result["second_worktree_parsed"] == 0
    assert result["claims"] == 5000 and result["claim_check_p99_ms"] is not None
    assert result["peak_rss_mb"] == max(result["peak_rss_self_mb"], result["peak_rss_largest_worker_mb"])
    assert "cold build" in seen and "a second work tree of the same files" in seen


@pytest.mark.parametrize(("include", "exclude"), [(("**/*.py",), ()), (("**/*.py", "**/*.pyi"), ()),
                                                  (("**/*.py",), ("b/**",)), (("src/**",), ())])
def test_the_fast_selection_of_the_default_globs_is_pathspecs(include: tuple[str, ...],
                                                              exclude: tuple[str, ...]) -> None:
    import pathspec

    from loomtui.coordination.index_files import selector

    names = ["a.py", "b/c.py", "x.pyc", "d.py/e.txt", "f/g.py/h", "py", "a.pyi", "dir/.py", "a.PY",
             "x/y.py.bak", "src/a.txt", "b/c.pyi"]
    wanted, unwanted = pathspec.GitIgnoreSpec.from_lines(include), pathspec.GitIgnoreSpec.from_lines(exclude)
    selected = selector(include, exclude)
    assert [n for n in names if selected(n)] == [n for n in names
                                                  if wanted.match_file(n) and not unwanted.match_file(n)]


def test_a_cache_that_cannot_be_written_indexes_in_memory_and_says_so(tmp_path: Path) -> None:
    root = _package(tmp_path / "tree")
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache directory should be\n")
    index = build_index(root, cache_dir=blocked)
    assert index.region_count() == 1 + 1 + 40 + MODULES * 10 and index.database == ":memory:"
    assert any("index cache not usable" in warning for warning in index.warnings)


def test_a_source_swapped_for_a_fifo_or_a_link_after_its_look_is_never_opened_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker indexes an agent's files while it runs: a FIFO swapped in after the `lstat` blocked its reader in
    `open()` for good (the supervisor's end waited on it: the sandbox read "running" forever), and a link had a
    file hidden from the agent read and parsed."""
    from loomtui.coordination import index_files

    root = tmp_path / "repo"
    root.mkdir()
    (tmp_path / "secret.py").write_text("tok_live_SECRET = 1\n")
    os.mkfifo(root / "pipe.py")
    (root / "link.py").symlink_to(tmp_path / "secret.py")
    regular = (tmp_path / "secret.py").lstat()
    monkeypatch.setattr(index_files.os, "lstat", lambda path: regular)  # the look, made before the swap
    warnings: list[str] = []
    sources = index_files._read_sources(root, ["pipe.py", "link.py"], warnings, explicit=False)
    assert sources == {} and len(warnings) == 2, (sources, warnings)
