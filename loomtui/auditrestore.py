"""The audit log's file written again from the store, when the file is damaged, cut short or gone.

The store's `audit` table holds every committed entry, and the file is its mirror: once the file
disagrees with the table (a line changed, a cut, the file deleted) no entry is added to it, and
every later write says "recorded in the store only", for good. A lead restores it here: the table's
own chain is checked first (a store edited too restores nothing), the file as it was is kept aside
beside it, never deleted, and the restore is itself an entry of the log, naming what was wrong.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from loomtui.audit import GENESIS, AuditLog, entry_hash
from loomtui.errors import LoomError

RESTORED_ACTION = "audit.restored"
RESTORE_HINT = ("`loomtui audit restore` writes the file again from the store's entries, where those are whole "
                "(this one is kept aside)")
"""What a broken chain's report says to do next (the command line and the audit view alike)."""


@dataclass(frozen=True)
class Restored:
    """What `restore_log` did: the entries written, the file kept aside (None: there was none) and why."""

    entries: int
    kept_aside: Path | None
    problem: str


def restore_log(log: AuditLog, actor: str) -> Restored:
    """Write the log's file again from the store's entries when it no longer verifies against them.

    Refused (LoomError, exit 1) when the file verifies, when there is no writable store, and
    when the store's own chain is broken. The file as it was goes to `<log>.damaged-<UTC time>`;
    the restore is recorded as `audit.restored` (by `actor`), the new file's first entry after the
    store's.
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
    rows = store.audit_entries_after(0)
    if not rows:
        raise LoomError("the store holds no audit entries: nothing to restore the log from", exit_code=1)
    _check_chain(rows)
    kept_aside = _rewrite(log.path, [line for _seq, _hash, line in rows])
    seq, last = rows[-1][0], rows[-1][1]
    store.set_audit_checkpoint(seq, last)
    log.append(actor, RESTORED_ACTION, log.path.name, {
        "problem": before.problem, "entries": len(rows),
        "kept_aside": kept_aside.name if kept_aside is not None else None})
    return Restored(len(rows), kept_aside, before.problem)


def _check_chain(rows: list[tuple[int, str, str]]) -> None:
    """The store's entries chain from the first, each matching its hash (else nothing is written)."""
    prev = GENESIS
    for number, (seq, recorded, line) in enumerate(rows, start=1):
        try:
            fields = json.loads(line)
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
    """Replace `path` with `lines`, under the lock appenders take; the file as it was is kept aside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise LoomError(f"{path}: cannot open the audit log ({exc.strerror})") from None
    kept_aside: Path | None = None
    fresh = path.with_name(f".{path.name}.restoring")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size:
            kept_aside = path.with_name(f"{path.name}.damaged-{stamp}")
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
    finally:
        os.close(fd)
    return kept_aside
