"""The audit head as a commit trailer, so a local rewrite of the log contradicts history.

A local user who can write both the audit log and the state store can always
rebuild a consistent history there. What they cannot rewrite is a commit that
other clones already hold. So when loomtui merges a sandbox, the merge commit
carries the audit head at that moment:

    Loom-Audit: 42 <sha256 of entry 42> log=<first 16 hex of entry 1's hash>

`log=` names which audit log the head belongs to (every clone keeps its own), and
this clone remembers its log's name in git config (`loom.auditlog`), outside the
state directory, so a log replaced wholesale is told apart from another clone's.
Reading anchors back and checking the log against them is governance's job
(`loomtui.governance.anchors`); this module only writes and parses the trailer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from loomtui.audit import AuditEntry, AuditLog
from loomtui.errors import LoomError
from loomtui.gitcmd import Git

TRAILER: Final = "Loom-Audit"
LOG_ID_KEY: Final = "loom.auditlog"
FORKED_ACTION: Final = "audit.forked"
"""The entry a clone leaving a team's store for one of its own starts its log's own line with: from it on,
the log is named by that entry (`log_identity`), not by the first entry it shares with the team's."""
_ANCHOR = re.compile(r"^\s*(\d+)\s+([0-9a-f]{64})(?:\s+log=([0-9a-f]{8,64}))?\s*$")


def log_id(first_entry_hash: str) -> str:
    """The name of an audit log: the start of its first entry's hash."""
    return first_entry_hash[:16]


def log_identity(entries: Iterable[AuditEntry]) -> str | None:
    """The name of the log these entries make: its newest `audit.forked` entry's, else its first entry's
    (None when empty). A clone's log copied from a team's store kept the team's name, and each one's anchors
    then read the other's as this log rewritten."""
    first = forked = None
    for entry in entries:
        if first is None:
            first = entry
        if entry.action == FORKED_ACTION:
            forked = entry
    named = forked or first
    return log_id(named.hash) if named is not None else None


def remember_log_id(root: Path, name: str) -> None:
    """Remember in git config the log this clone anchors with (see `head_trailer`)."""
    try:
        Git(root).run("config", LOG_ID_KEY, name, timeout=10)
    except LoomError:
        pass  # the anchor still names its log; verify then only lacks the local memory of it


def format_anchor(seq: int, entry_hash: str, log: str) -> str:
    return f"{seq} {entry_hash} log={log}"


def parse_anchor(value: str) -> tuple[int, str, str | None] | None:
    """(seq, hash, log id or None) from a trailer value; None when it is not an anchor."""
    match = _ANCHOR.match(value)
    if match is None:
        return None
    return int(match.group(1)), match.group(2), match.group(3)


def configured_log_id(root: Path) -> str | None:
    """The log id this clone anchored with (git config `loom.auditlog`), if any."""
    try:
        value = Git(root).run("config", "--get", LOG_ID_KEY, timeout=10).out.strip()
    except LoomError:
        return None
    return value or None


def head_trailer(log: AuditLog, root: Path) -> tuple[str, str] | None:
    """The `Loom-Audit` trailer for the log's current head; None for an empty log.

    The first time a head is anchored, the log's id is remembered in git config, so
    `audit verify` can tell this clone's anchors from other clones'.
    """
    entries = list(log.entries())
    name = log_identity(entries)
    if name is None:
        return None
    if configured_log_id(root) is None:
        remember_log_id(root, name)
    return TRAILER, format_anchor(entries[-1].seq, entries[-1].hash, name)
