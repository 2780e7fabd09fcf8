"""`loomtui store ...`: where the state lives, migrating it, moving it to a team's PostgreSQL."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from loomtui.cli import add_command, add_group, print_json
from loomtui.config import without_secrets
from loomtui.errors import LoomError, listed, plural


def _paths(args: argparse.Namespace) -> Any:
    from loomtui.repo import find_repo

    return find_repo(args.repo)


def cmd_store_migrate(args: argparse.Namespace) -> int:
    from loomtui.store import open_store

    store = open_store(_paths(args))  # opening applies the missing migrations, in one transaction
    try:
        status = store.status()
    finally:
        store.close()
    if args.json:
        print_json({"location": status.path, "schema_version": status.schema_version})
    else:
        print(f"{status.path}: schema {status.schema_version}, up to date")
    return 0


def cmd_store_copy(args: argparse.Namespace) -> int:
    from loomtui.store import open_store
    from loomtui.store.copy import copy_store

    back = args.to == "sqlite"
    if not back and not args.to.startswith(("postgresql://", "postgres://")):
        raise LoomError(f"--to must be a postgresql:// URL, or `sqlite` to come back, not "
                        f"{without_secrets(args.to)!r}")
    paths = _paths(args)
    source = open_store(paths)
    say = (lambda line: None) if args.json else (lambda line: print(line, file=sys.stderr))
    try:
        _refuse_while_working(source, paths.root, leaving=back)
        if back:
            report, aside = _copy_back(paths, source, say)
        else:
            destination = open_store(paths, args.to, joining=True)
            # The SQLite store's write lock held from the read to the note: a writer waiting for it then finds
            # the note (SqliteStore's `before_writing`), where one writing between them was lost to the copy.
            with source.transaction() if source.embedded else contextlib.nullcontext():
                try:
                    report = copy_store(source, destination, progress=say)
                finally:
                    destination.close()
                if source.embedded:
                    from loomtui.store.moves import LEFT_FILE, record_move

                    record_move(paths, report.destination)
                    (paths.state_dir / LEFT_FILE).unlink(missing_ok=True)  # its state is in that store now
    finally:
        source.close()
    if args.json:
        print_json({**report.as_dict(), **({"previous_store": str(aside) if aside else None} if back else {})})
        return 0
    total = sum(report.rows.values())
    print(f"copied {plural(total, 'row')} from {report.source} to {report.destination}; verified: every table matches")
    if back:
        kept = f"; the SQLite store it replaces is kept as {aside}" if aside else ""
        print(f"this repository's store is SQLite again{kept}: unset LOOMTUI_STORE here (or set it to `sqlite` "
              "where .loom/loom.yaml names the team's store); the team's store is left as it is, and no longer "
              "opened from this clone")
        return 0
    if source.embedded:
        print("the SQLite store here stays as it was, and loomtui no longer opens it while the state lives there "
              "(`loomtui store copy --to sqlite` comes back)")
    print("to use it here and on every clone: `store: <the URL without its password>` in .loom/loom.yaml "
          "(the password in PGPASSWORD or ~/.pgpass), or LOOMTUI_STORE=<URL> in the environment")
    return 0


def _copy_back(paths: Any, source: Any, say: Any) -> tuple[Any, Any]:
    """The team's store copied into a new SQLite store, which takes the place of the one here."""
    from loomtui.store.copy import copy_store
    from loomtui.store.moves import JOINED_FILE, LEFT_FILE, record_move, replace_sqlite_store

    if source.embedded:
        raise LoomError(f"{source.location}: the store here is SQLite already (to copy a team's store back, "
                        "set LOOMTUI_STORE to its URL)", exit_code=1)
    report, aside = replace_sqlite_store(paths, lambda new: copy_store(source, new, progress=say))
    record_move(paths, source.location, LEFT_FILE)
    (paths.state_dir / JOINED_FILE).unlink(missing_ok=True)  # its own store now, by its own choice
    _fork_the_log(paths, source.location)
    report.destination = str(paths.store_path)
    return report, aside


def _fork_the_log(paths: Any, team: str) -> None:
    """The log copied here goes its own way from now: an `audit.forked` entry names it apart from the team's
    (it kept the team's name, and once both lines of merges met in one main branch each clone's anchors read
    the other's log as rewritten, for good), and this clone anchors with that name from now on."""
    from loomtui.audit import AuditLog
    from loomtui.auditanchor import FORKED_ACTION, log_id, remember_log_id
    from loomtui.identity import current_user
    from loomtui.store.postgres import redact
    from loomtui.store.sqlite import SqliteStore

    store = SqliteStore(paths.store_path)
    try:
        entry = AuditLog(paths.audit_path, store=store).append(
            current_user(paths.root), FORKED_ACTION, "", {"from": redact(team), "store": "sqlite"})
    finally:
        store.close()
    remember_log_id(paths.root, log_id(entry.hash))


def _refuse_while_working(source: Any, root: Path, *, leaving: bool) -> None:
    """A copy taken while an agent runs or a review is under way is behind at once: its supervisor goes on
    writing the old store and the audit log's file, which then disagrees with the new store for good.
    `leaving` the team's store, only this machine's sandboxes count (another's agent always running kept a clone
    in it for good), and they must be finished: one left behind kept its claims and its escalation in the team's
    queue, and no clone could end it (its steps are this machine's, and this clone no longer opens that store).
    This machine's: recorded on this host, or with its branch in this clone (recorded under another name for the
    host, `LOOMTUI_HOST` set in one shell only)."""
    from loomtui.execution.lifecycle import DONE_WITH, GATING, LIVE
    from loomtui.gitcmd import Git
    from loomtui.identity import current_host

    here, branches = current_host(), Git(root).branch_tips() if leaving else {}
    mine = [r for r in source.list_sandboxes()
            if not leaving or not r.host or r.host == here or (r.branch and r.branch in branches)]
    busy = [f"{r.id} ({r.status})" for r in mine if r.status in LIVE | {GATING}]
    if busy:
        raise LoomError(f"sandboxes are at work on this store: {listed(busy)}; copy it once they have ended "
                        "(`loomtui sandbox list`; `loomtui sandbox stop ID` ends one now)", exit_code=1)
    if not leaving:
        return
    holding = source.live_claim_counts()
    unfinished = [f"{r.id} ({r.status})" for r in mine if r.status not in DONE_WITH or r.id in holding]
    if unfinished:
        raise LoomError(f"this machine's sandboxes are not done with on the team's store: {listed(unfinished)}; "
                        "left there, their claims and escalations would stay in everyone's way with no clone able "
                        "to end them: merge or reject each, or remove it (`loomtui sandbox rm ID`), then copy",
                        exit_code=1)


def cmd_store_repos(args: argparse.Namespace) -> int:
    from loomtui.store import open_store

    store = open_store(_paths(args), reads_only=True)
    try:
        repos = store.repositories()
    finally:
        store.close()
    if args.json:
        print_json([r.as_dict() for r in repos])
        return 0
    for repo in repos:
        escalations = plural(repo.open_escalations, "open escalation")
        print(f"{repo.namespace}  {repo.name:<24} {escalations:<20} {plural(repo.sandboxes, 'sandbox')}")
    return 0


def register(commands: Any) -> None:
    """`loomtui store migrate|copy|repos`."""
    store = add_group(commands, "store", "the state store: SQLite (the default) or a team's PostgreSQL")
    add_command(store, "migrate", cmd_store_migrate,
                "bring the configured store's schema up to date (opening it does the same; this says so)",
                json_flag=True)
    copy = add_command(store, "copy", cmd_store_copy,
                       "copy this repository's whole store (audit log and checkpoint included) into an empty "
                       "PostgreSQL namespace, or back into SQLite, and verify the copy table by table; the "
                       "source is left as it is (an SQLite one is no longer opened while the state is elsewhere)",
                       json_flag=True)
    copy.add_argument("--to", required=True, metavar="URL",
                      help="postgresql://user@host:port/database (password from PGPASSWORD or ~/.pgpass), or "
                           "`sqlite`: the configured team store copied into a new SQLite store here, the old "
                           "one kept beside it")
    add_command(store, "repos", cmd_store_repos,
                "the repositories whose state is in this store's database, with their open escalations",
                json_flag=True, reads_only=True)


def cmd_bench_store(args: argparse.Namespace) -> int:
    from loomtui.coordination.store_bench import store_bench

    location = args.store or "sqlite"
    if location != "sqlite" and not location.startswith(("postgresql://", "postgres://")):
        raise LoomError(f"--store must be `sqlite` or a postgresql:// URL, not {without_secrets(location)!r}")
    figures = store_bench(location, rounds=args.rounds, escalations=args.escalations,
                          progress=lambda line: print(line, file=sys.stderr))
    if args.json:
        print_json(figures)
    else:
        for key, value in figures.items():
            print(f"{key:>40}: {value}")
    return 0 if figures["race_rounds_with_exactly_one_winner"] == figures["race_rounds"] else 1


def register_bench(bench: Any) -> None:
    """`loomtui bench store`."""
    from loomtui.cli import count_arg

    store = add_command(bench, "store", cmd_bench_store,
                        "the store's figures: claim check p50/p99 with 5,000 claims, 32 processes racing "
                        "for one claim (exit 1 unless every round has exactly one winner), and escalation "
                        "to another waiting process; in a scratch namespace, dropped after", json_flag=True)
    store.add_argument("--store", metavar="URL", default=None,
                       help="`sqlite` (default: a scratch file) or a postgresql:// URL")
    store.add_argument("--rounds", type=count_arg, default=10, metavar="N", help="race rounds (default 10)")
    store.add_argument("--escalations", type=count_arg, default=20, metavar="N",
                       help="escalations timed to the other process (default 20)")
