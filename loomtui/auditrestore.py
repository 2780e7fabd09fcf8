"""The audit log's file written again from the store, when the file is damaged, cut short or gone.

The store's `audit` table holds every committed entry, and the file is its mirror: once the file
disagrees with the table (a line changed, a cut, the file deleted) no entry is added to it, and
every later write says "recorded in the store only", for good. A lead restores it here: the table's
own chain is checked first (a store edited too restores nothing), the file as it was is kept aside
beside it, never deleted, and the restore is itself an entry of the log, naming what was wrong.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from loomtui.audit import GENESIS, AuditLog, entry_hash
from loomtui.errors import LoomError, plural
from loomtui.json_text import parse_json

RESTORED_ACTION = "audit.restored"
RESTORE_HINT = ("`loomtui audit restore` writes the file again from the store's entries, where those are whole "
                "(this one is kept aside)")


def restore_hint(log: AuditLog) -> str:
    """What a broken chain's report says to do next (the command line and the audit view alike): the restore,
    unless the store's own copy is what broke (it sent a lead to `audit restore`, which refused and sent them
    back to `audit verify`)."""
    store = log.store
    if store is None:
        return RESTORE_HINT
    try:
        _check_chain(store.audit_entries_after(0))
    except LoomError:
        return ("the store's own copy of the log is broken too, so `loomtui audit restore` cannot mend it: the "
                "entries were edited where they are kept; put the state store back from a backup, or keep this "
                "report as the record of the tampering")
    return RESTORE_HINT


@dataclass(frozen=True)
class Restored:
    """What `restore_log` did: the entries written, the file kept aside (None: there was none) and why."""

    entries: int
    kept_aside: Path | None
    problem: str


def restore_log(log: AuditLog, actor: str) -> Restored:
    """Write the log's file again from the store's entries when it no longer verifies against them.

    Refused (LoomError, exit 1) when the file verifies, when there is no writable store, when the
    store's own chain is broken, and when the store holds less than the log once did (its checkpoint).
    The file as it was goes to `<log>.damaged-<UTC time>`; the restore is recorded as `audit.restored`
    (by `actor`), and the log verified again before it is said to be done.
    """
    store = log.store
    if store is None:
        raise LoomError("no state store here: the audit log has no other copy to be restored from", exit_code=1)
    if store.read_only:
        raise LoomError("the state store is read-only here: the log cannot be restored from this machine",
                        exit_code=1)
    before = log.verify()
    if before.ok:
        raise LoomError(f"{log.path} verifies against the store: nothing to restore", exit_code=1)
    # Under the lock writers take, and read under it: an entry a writer put in the old file meanwhile is in
    # the store, so in what is written; one committed after waits, then goes into the new file.
    fd = log.locked()  # the lock writers take, held across the rewrite
    try:
        rows = store.audit_entries_after(0)
        if not rows:
            raise LoomError("the store holds no audit entries: nothing to restore the log from", exit_code=1)
        _check_chain(rows)
        ahead = _whole_past(log.path, rows)
        if ahead:
            raise LoomError(f"{log.path} holds {plural(ahead, 'whole entry')} past the store's newest (seq "
                            f"{rows[-1][0]}), chained to it: the store is behind the log (put back from a "
                            "copy?), not the log damaged; nothing was changed", exit_code=1)
        mark = store.audit_checkpoint()
        if mark is not None and (mark[0] > rows[-1][0] or rows[mark[0] - 1][1] != mark[1]):
            raise LoomError(f"the store's entries end before, or differ from, what the log once held (seq "
                            f"{mark[0]}): restoring from them would lose entries (`loomtui audit verify`)",
                            exit_code=1)
        kept_aside = _rewrite(log.path.resolve(), [line for _seq, _hash, line in rows])
    finally:
        os.close(fd)
    seq, last = rows[-1][0], rows[-1][1]
    store.set_audit_checkpoint(seq, last)
    log.append(actor, RESTORED_ACTION, log.path.name, {
        "problem": before.problem, "entries": len(rows),
        "kept_aside": kept_aside.name if kept_aside is not None else None})
    after = log.verify()
    if not after.ok:
        raise LoomError(f"the log was written again from the store, and still does not verify: {after.problem}",
                        exit_code=1)
    return Restored(len(rows), kept_aside, before.problem)


def _whole_past(path: Path, rows: list[tuple[int, str, str]]) -> int:
    """How many entries the file holds past the store's, when it is the store's entries and then more,
    all chained and matching their hashes (a store put back from a copy, a restore would cut them); 0
    otherwise (a damaged file, or none)."""
    try:
        raw = path.read_bytes().splitlines()
    except OSError:
        return 0
    if len(raw) <= len(rows):
        return 0
    prev = GENESIS
    for number, line in enumerate(raw, start=1):
        try:
            fields = parse_json(line)
        except ValueError:
            return 0
        if not isinstance(fields, dict) or fields.get("seq") != number or fields.get("prev") != prev \
                or entry_hash(fields) != fields.get("hash") \
                or (number <= len(rows) and fields.get("hash") != rows[number - 1][1]):
            return 0
        prev = str(fields["hash"])
    return len(raw) - len(rows)


def _check_chain(rows: list[tuple[int, str, str]]) -> None:
    """The store's entries chain from the first, each matching its hash (else nothing is written)."""
    prev = GENESIS
    for number, (seq, recorded, line) in enumerate(rows, start=1):
        try:
            fields = parse_json(line)
        except ValueError:
            fields = None
        whole = (isinstance(fields, dict) and seq == number and fields.get("seq") == seq
                 and fields.get("prev") == prev and fields.get("hash") == recorded
                 and entry_hash(fields) == recorded)
        if not whole:
            raise LoomError(f"the store's own copy breaks at seq {seq}: it cannot restore the log "
                            "(`loomtui audit verify` says what else is wrong)", exit_code=1)
        prev = recorded


def _rewrite(path: Path, lines: list[str]) -> Path | None:
    """Replace `path` with `lines` (its caller holds the log's lock); the file as it was is kept aside."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept_aside: Path | None = None
    fresh = path.with_name(f".{path.name}.restoring")
    try:
        if path.exists() and path.stat().st_size:
            kept_aside = path.with_name(f"{path.name}.damaged-{stamp}")
            number = 1
            while kept_aside.exists():  # a second restore within the second
                number += 1
                kept_aside = path.with_name(f"{path.name}.damaged-{stamp}-{number}")
            os.link(path, kept_aside)  # the same bytes, under a name of its own: nothing is copied or lost
        with open(fresh, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(fresh, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        fresh.unlink(missing_ok=True)
        raise LoomError(f"{path}: cannot restore the audit log ({exc.strerror or exc}); it is as it was") from None
    return kept_aside
