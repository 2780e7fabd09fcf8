"""A repository's archived sandboxes pile up (every task ever run): the commands and reviews that look
up a few sandboxes ask the store as often, and read as many rows, with sixty archived as with six, and still
find what they need."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import git

from loomtui.errors import LoomError
from loomtui.execution.lifecycle import ARCHIVED, MERGED
from loomtui.execution.sandboxes import get_sandbox
from loomtui.guardrails.score import _claims
from loomtui.store import SandboxRecord
from loomtui.workflow.engine import Workflow
from loomtui.workspace import Workspace, open_workspace


def _store_with(root: Path, archived: int) -> Workspace:
    """A workspace whose store holds `archived` archived sandboxes (ids `old-0000`...), one of them
    (`old-0000`) still holding a claim, and three not archived: `live-a1` claiming, `live-b1` merged (its
    claim not yet released) and `live-c1` ended, its claim released."""
    git(root, "init", "-q", "-b", "main")
    git(root, "commit", "-q", "--allow-empty", "-m", "initial")
    workspace = open_workspace(root)
    now = time.time()
    workspace.store.bulk_add_sandboxes(
        [SandboxRecord(f"old-{n:04}", "an old task", "script", ARCHIVED, now - 1000 + n, now) for n in range(archived)]
        + [SandboxRecord("live-a1", "a task", "script", "running", now, now),
           SandboxRecord("live-b1", "a task", "script", MERGED, now, now),
           SandboxRecord("live-c1", "a task", "script", "exited", now, now)])
    later = now + 3600
    workspace.store.add_claim("old-0000", "a.py", "exclusive", "left behind", later, ["a.py::f"])
    workspace.store.add_claim("live-a1", "b.py", "exclusive", "working", later, ["b.py::g"])
    workspace.store.add_claim("live-b1", "c.py", "exclusive", "merged, not yet released", later, ["c.py::h"])
    released = workspace.store.add_claim("live-c1", "d.py", "exclusive", "done", later, ["d.py::k"])
    workspace.store.release_claim(released.id, "done")
    return workspace


def _asked(workspace: Workspace, call: Callable[[], Any]) -> tuple[Any, tuple[int, int]]:
    """What `call` returns, and how many queries it asked the store and rows it read."""
    queries, rows = [0], [0]
    real = workspace.store._query

    def counted(*args: Any) -> Any:
        found = real(*args)
        queries[0] += 1
        rows[0] += len(found)
        return found

    workspace.store._query = counted  # type: ignore[method-assign]
    try:
        return call(), (queries[0], rows[0])
    finally:
        workspace.store._query = real  # type: ignore[method-assign]


@pytest.fixture
def stores(tmp_path: Path) -> Any:
    made = []

    def make(archived: int) -> Workspace:
        root = tmp_path / f"repo-{archived}"
        root.mkdir()
        made.append(_store_with(root, archived))
        return made[-1]

    yield make
    for workspace in made:
        workspace.close()


def test_a_shortened_id_is_found_without_reading_every_sandbox(stores: Any) -> None:
    few, many = stores(6), stores(60)
    found, asked_few = _asked(few, lambda: get_sandbox(few, "live-a"))
    _found, asked_many = _asked(many, lambda: get_sandbox(many, "live-a"))
    assert found.id == "live-a1" and asked_few == asked_many
    for workspace in (few, many):
        assert get_sandbox(workspace, "live-a1").id == "live-a1"  # whole
        assert get_sandbox(workspace, "old-0003").status == ARCHIVED  # whole, archived
        assert get_sandbox(workspace, "live-b").status == MERGED  # shortened
    with pytest.raises(LoomError, match="'live' matches several sandboxes: live-a1, live-b1"):
        get_sandbox(many, "live")
    with pytest.raises(LoomError, match="'old-005' matches several sandboxes: old-0050, old-0051, .*old-0059$"):
        get_sandbox(many, "old-005")
    with pytest.raises(LoomError, match="no sandbox 'gone'"):
        get_sandbox(many, "gone")


def test_a_review_reads_the_claims_of_live_sandboxes_only(stores: Any) -> None:
    few, many = stores(6), stores(60)
    for workspace in (few, many):
        own, others = _claims(workspace, "live-c1")
        # Its own claims, released since (it is scored after): what it was allowed still counts.
        assert [c.target for c in own] == ["d.py"]
        # Others' live claims: the running sandbox's; not the merged or the archived one's, which have ended.
        assert [c.target for c in others] == ["b.py"]
    assert _asked(few, lambda: _claims(few, "live-c1"))[1] == _asked(many, lambda: _claims(many, "live-c1"))[1]


def test_advancing_every_task_skips_the_archived_unless_they_hold_a_claim(stores: Any) -> None:
    few, many = stores(6), stores(60)
    advanced, asked_few = _asked(few, lambda: Workflow(few).advance_all())
    assert "old-0000" in {a.sandbox_id for a in advanced}
    assert not any(a.sandbox_id == "old-0001" for a in advanced)
    assert not few.store.live_claims("old-0000")  # the archived sandbox's claim is released
    _advanced, asked_many = _asked(many, lambda: Workflow(many).advance_all())
    assert not many.store.live_claims("old-0000")
    assert asked_few == asked_many
