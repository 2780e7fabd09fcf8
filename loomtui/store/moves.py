"""Where a repository's store went, and the way back.

An SQLite store copied to a team's PostgreSQL (`loomtui store copy --to URL`) is left as it was,
and a note beside it says where the state went: opened again (LOOMTUI_STORE unset, `store:` taken
out of loom.yaml), its sandboxes, claims and escalations would be those of the day of the copy,
silently apart from the team's, and the commands writing it would fork the audit log. So it is
refused while the note stands. The way back copies the team's store into a new SQLite file, which
takes the old one's place (kept beside it, renamed), and takes the note away.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from loomtui.errors import StoreError
from loomtui.files import file_size, write_atomically
from loomtui.repo import RepoPaths
from loomtui.store.sqlite import SqliteStore

MOVED_FILE: Final = "store-moved"
"""The note in the state dir (which agents cannot write): {"to": URL without its password, "at": time}."""
LEFT_FILE: Final = "store-left"
"""The note of the way back (`store copy --to sqlite` from a team's store): {"to": the team's URL, "at": time}.
The clone's audit log goes its own way from then on, beside the team's under the same log id: opened again
from here, the team's store met a log file that disagreed with it (`audit verify`: BROKEN, and every decision
taken on another machine read as written into the store by hand). So it is not, while the note stands."""
JOINED_FILE: Final = "store-joined"
"""The note that this clone works in a team's store: {"to": its URL without the password, "at": time}. A checkout
of a commit from before the team named it (`store:`) would otherwise open an SQLite store of its own."""
SQLITE_FILES: Final = ("", "-wal", "-shm")
"""An SQLite store's files: the database, and its write-ahead log and shared-memory index beside it."""

Filled = TypeVar("Filled")


@dataclass(frozen=True)
class StoreMove:
    """Where this repository's SQLite store was copied, and when."""

    to: str
    at: float

    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.at)) if self.at else "an unknown time"


def store_move(paths: RepoPaths, name: str = MOVED_FILE) -> StoreMove | None:
    """The note of a move, if this repository's SQLite store was copied away (or, `LEFT_FILE`, if this clone
    left a team's store for SQLite)."""
    note = paths.state_dir / name
    try:
        text = note.read_text("utf-8", "replace")
    except (FileNotFoundError, NotADirectoryError):  # no state dir (or a file in its place): nothing moved
        return None
    except OSError as exc:
        raise StoreError(f"{note}: cannot read it ({exc.strerror})") from None
    try:
        said = json.loads(text)
    except ValueError:
        said = {}
    said = said if isinstance(said, dict) else {}
    at = said.get("at")
    return StoreMove(str(said.get("to") or "another store"), float(at) if isinstance(at, int | float) else 0.0)


def record_move(paths: RepoPaths, to: str, name: str = MOVED_FILE) -> None:
    """Note that the SQLite store was copied to `to` (a URL without its password); `LEFT_FILE`: that this
    clone left the team's store `to` for its own SQLite store."""
    note = paths.state_dir / name
    try:
        write_atomically(note, json.dumps({"to": to, "at": time.time()}) + "\n")
    except OSError as exc:
        raise StoreError(f"{note}: cannot note where the store went ({exc.strerror}); the SQLite store here "
                         "is now behind the copy: do not use it") from None


def refuse_a_moved_store(paths: RepoPaths) -> None:
    """One line, when the SQLite store here was copied away: where the state is, and the way back."""
    move = store_move(paths)
    if move is not None:
        raise StoreError(
            f"{paths.store_path}: this repository's store was copied to {move.to} on {move.when()} and lives "
            f"there now (this one is as it was then): set LOOMTUI_STORE to that URL, or `store:` in "
            f".loom/loom.yaml; to come back to SQLite, `loomtui store copy --to sqlite` with LOOMTUI_STORE set "
            "to it", exit_code=1)


def note_a_joined_store(paths: RepoPaths, url: str) -> None:
    """Note, once, that this clone works in the team's store at `url` (without its password)."""
    if not (paths.state_dir / JOINED_FILE).exists():
        with contextlib.suppress(StoreError):  # only a guard: a read-only state dir opens the store all the same
            record_move(paths, url, JOINED_FILE)


def refuse_a_forgotten_team_store(paths: RepoPaths) -> None:
    """One line, when loom.yaml here names no team store (a commit from before the team's) but this clone
    works in one: an SQLite store of its own would hold none of the team's work, and its log part of it."""
    joined = store_move(paths, JOINED_FILE)
    if joined is not None:
        raise StoreError(
            f"this clone works in the team's store {joined.to} (since {joined.when()}), but nothing here names it "
            "(no LOOMTUI_STORE, and no `store:` in .loom/loom.yaml: a commit from before it?): nothing was opened; "
            "set LOOMTUI_STORE to its URL, or check out a commit whose loom.yaml names it (to leave the team for a "
            "store of this clone's own: `loomtui store copy --to sqlite` with LOOMTUI_STORE set to its URL; joined "
            "by mistake: delete "
            f"{paths.state_dir / JOINED_FILE})", exit_code=1)


def refuse_taking_the_team_log(paths: RepoPaths) -> None:
    """One line, when `LOOMTUI_STORE=sqlite` would make a new store of this clone's own in a clone that works in
    a team's: the new store takes the audit log file it finds as its own, and that file is this machine's copy of
    the team's log (the next team write read BROKEN here, and `audit restore` logged the mistake in the team's
    log)."""
    joined = store_move(paths, JOINED_FILE)
    if joined is not None and paths.audit_path.is_file() and paths.audit_path.stat().st_size > 0:
        raise StoreError(
            f"this clone works in the team's store {joined.to} (since {joined.when()}), and {paths.audit_path} is "
            "its copy of the team's audit log: a store of this clone's own would take that log over, so none was "
            f"made; to leave the team for one, `LOOMTUI_STORE={joined.to} loomtui store copy --to sqlite` (it keeps "
            "the team's log apart)",
            exit_code=1)


def refuse_a_left_store(paths: RepoPaths) -> None:
    """One line, when this clone left a team's store for SQLite: why it is not opened from here again."""
    left = store_move(paths, LEFT_FILE)
    if left is not None:
        raise StoreError(
            f"this clone left the team's store {left.to} for SQLite on {left.when()} (`loomtui store copy --to "
            f"sqlite`): its state is in {paths.store_path}, so set LOOMTUI_STORE=sqlite here; its audit log has "
            "gone its own way since, so the team's store is not opened from this clone (a new clone joins it)",
            exit_code=1)


def replace_sqlite_store(paths: RepoPaths, fill: Callable[[SqliteStore], Filled]) -> tuple[Filled, Path | None]:
    """Make a new SQLite store, `fill` it, then put it in the place of this repository's: the one there
    (if any) is renamed, never deleted, and the note of a move is taken away. Returns what `fill`
    returned and where the old store went. Should `fill` fail, nothing here has changed."""
    paths.ensure_state_dir()
    current = Path(paths.store_path)
    if file_size(Path(f"{current}-wal")):  # said before the copy, not after it
        raise StoreError(f"{current}: the SQLite store here is open, or was not closed cleanly (its write-ahead "
                         "log holds pages): end the loomtui processes using it, then run again")
    incoming = paths.state_dir / "state.db.incoming"
    _remove(incoming)  # a way back interrupted before
    store = SqliteStore(incoming)
    try:
        filled = fill(store)
    except BaseException:
        store.close()
        _remove(incoming)
        raise
    store.close()
    if any(Path(f"{incoming}{suffix}").exists() for suffix in SQLITE_FILES[1:]):
        # Closed, its write-ahead log is folded in and gone; one left over would be lost in the switch.
        raise StoreError(f"{incoming}: the new store did not close cleanly; nothing was changed here")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = paths.state_dir / f"state.db.before-{stamp}"
    for again in range(2, 100):  # two ways back within a second: the first one's store is kept too
        if not any(Path(f"{aside}{suffix}").exists() for suffix in SQLITE_FILES):
            break
        aside = paths.state_dir / f"state.db.before-{stamp}-{again}"
    try:
        # The old store gets a second name first, so that at every moment one of them holds it; its (empty)
        # log files go with it. Then the new store takes the name in one step: no moment without a store
        # here, when an open would make an empty one.
        if current.exists():
            os.link(current, aside)
            for suffix in SQLITE_FILES[1:]:
                if Path(f"{current}{suffix}").exists():
                    os.replace(f"{current}{suffix}", f"{aside}{suffix}")
        os.replace(incoming, current)
        (paths.state_dir / MOVED_FILE).unlink(missing_ok=True)
    except OSError as exc:
        raise StoreError(f"{paths.state_dir}: cannot put the new store in place ({exc.strerror}); the copy is "
                         f"{incoming}, the store here is as it was") from None
    return filled, aside if aside.exists() else None


def _remove(database: Path) -> None:
    for suffix in SQLITE_FILES:
        Path(f"{database}{suffix}").unlink(missing_ok=True)
