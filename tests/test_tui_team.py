"""The app on a team's PostgreSQL store: live across machines, and honest when the database goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from loomtui.tui.app import LoomApp
from loomtui.tui.widgets.status_header import StatusHeader
from loomtui.workspace import open_workspace
from tests.test_escalations import ALICE
from tests.test_store_postgres import billing_clones  # noqa: F401  (a fixture)
from tests.test_tui import wait_for
from tests.test_tui_escalations import SIZE, open_queue

ESCALATE = (
    "from pathlib import Path\n"
    "from tests.test_escalations import escalate, payments_change\n"
    "escalate(Path({repo!r}), payments_change())\n"
)


def _escalate_from(repo: Path, url: str, host: str) -> None:
    """An agent's machine: another process, another clone, another host name, the same store."""
    subprocess.run([sys.executable, "-c", ESCALATE.format(repo=str(repo))], check=True,
                   cwd=Path(__file__).parent.parent, env={**os.environ, "LOOMTUI_STORE": url, "LOOMTUI_HOST": host})


def _lead_app(clone: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> LoomApp:
    """A lead's app on a clone, the team store its store."""
    monkeypatch.setenv("LOOMTUI_STORE", url)
    workspace = open_workspace(clone)
    workspace.actor = ALICE
    return LoomApp(workspace)


async def test_an_escalation_opened_on_another_machine_appears_in_the_leads_app(
        billing_clones: tuple[Path, Path], postgres_url: str,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent_clone, lead_clone = billing_clones
    app = _lead_app(lead_clone, postgres_url, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot, rows=0)
        _escalate_from(agent_clone, postgres_url, "agent-box")
        await wait_for(pilot, lambda: table.row_count == 1, timeout=15)
        # The queue in view shows it (no toast over its detail); every header counts it.
        await wait_for(pilot, lambda: all(h.escalations == 1 for h in StatusHeader.every_one_in(app)), timeout=10)


async def test_the_app_says_when_the_database_is_gone_and_picks_up_when_it_is_back(
        billing_clones: tuple[Path, Path], postgres_url: str,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent_clone, lead_clone = billing_clones
    database = postgres_url.rsplit("/", 1)[1]
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    app = _lead_app(lead_clone, postgres_url, monkeypatch)
    said: list[str] = []  # every notification, kept (a shown one expires after its timeout)
    notify = app.notify
    app.notify = lambda message, **kwargs: (said.append(f"{kwargs.get('title')}: {message}"),  # type: ignore
                                            notify(message, **kwargs))[1]
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot, rows=0)
        header = app.screen.query_one(StatusHeader)
        with psycopg.connect(admin, autocommit=True) as conn:  # the database goes away for everyone
            conn.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
        await wait_for(pilot, lambda: header.store_state == "error", timeout=10)
        assert any(line.startswith("store: ") and "trying again" in line for line in said)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        await wait_for(pilot, lambda: header.store_state == "ok", timeout=15)
        assert "store: the store answers again" in said
        _escalate_from(agent_clone, postgres_url, "agent-box")
        await wait_for(pilot, lambda: table.row_count == 1, timeout=15)


async def test_shift_r_shows_every_repositorys_open_escalations_and_decides_none_of_theirs(
        billing_clones: tuple[Path, Path], repo: Path, postgres_url: str,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    from loomtui.repo import find_repo
    from loomtui.store import open_store

    from loomtui.tui.screens import escalations

    monkeypatch.setattr(escalations, "ELSEWHERE_REFRESH_S", 0.2)
    app = _lead_app(billing_clones[1], postgres_url, monkeypatch)
    other = open_store(find_repo(repo))
    other.add_escalation("post-gate", sandbox_id="x1", summary="[red]not markup[/red] in another repo")
    async with app.run_test(size=SIZE) as pilot:
        table = await open_queue(app, pilot, rows=0)
        await pilot.press("R")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert str(table.get_row_at(0)[0]) == f"{repo.name}#1"
        # The app hears its own repository's events only: another's new escalation shows all the same.
        other.add_escalation("post-gate", sandbox_id="x2", summary="later, elsewhere")
        other.close()
        await wait_for(pilot, lambda: table.row_count == 2)
        assert app.screen.check_action("decide", ("approve",)) is False
        await pilot.press("a")
        await pilot.pause()
        assert open_store(find_repo(repo)).list_escalations()[0].status == "open"
        await pilot.press("R")
        await wait_for(pilot, lambda: table.row_count == 0)
        # The cursor on another repository's row, `R` back to this one's: the row it was on is hidden, not gone
        # (`a` said "#<namespace>:1, the one selected, is gone (decided or withdrawn)").
        app.workspace.store.add_escalation("post-gate", sandbox_id="ours", summary="ours")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("R")
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("end")
        await wait_for(pilot, lambda: "#" in str(table.get_row_at(table.cursor_row)[0]))
        notes: list[str] = []
        monkeypatch.setattr(app, "notify", lambda message, **_kw: notes.append(str(message)))
        await pilot.press("R")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("a")
        await pilot.pause()
        assert not any("is gone" in note for note in notes), notes
