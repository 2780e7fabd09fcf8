"""A sandbox's own copy of the user's login, and what of it goes back to the user.

A CLI refreshes its login as it runs (an OAuth access token expires within hours, and a
refresh may rotate the refresh token, leaving the user's old one dead). Bound writable into
the sandbox, the user's login file was the agent's to replace: with a token of its own
account (the user's next sessions then ran under it), with junk (the user logged out), with
gigabytes, or with a message for another sandbox. So each sandbox holds a copy in its own
state folder, and its supervisor keeps the two in step, three ways against the content they
last agreed on (`base`):

- the user's changed (a login, a refresh outside) and the copy did not: the copy follows;
- the copy changed and the user's did not: when it is a refresh of the same login (`refusal`: JSON
  whose values that name the login, its plan, account or key, are as they were; whose tokens are
  token-shaped, never held by the user's file before, and changed with their time moved forward;
  whose JWTs name the same account), its tokens and times go back, set into the user's own document
  (`taken_back`); what else it added or changed (Claude Code's scopes, a new key) stays in the
  sandbox. Else the user's stays and the refusal is said once, until the two agree again;
- both changed: the user's wins.

What it cannot tell: a token of another account in place of the user's. Claude Code's file names no
account; Codex's names its `account_id`, and its id and access tokens are JWTs whose account claims
may not change, but their signatures are not checked here (that needs the issuer's keys, from the
network): an agent can write JWTs that name the user's account beside a refresh token of its own.
What bounds that and every other change: tokens of the same shape as the user's (their prefix, URL-
safe characters, a like length), none held before, with their times moved forward and never far
ahead, and at most one refresh taken back per `TAKE_BACK_EVERY_S` (a message in a token's place
reaches the other sandboxes a few hundred characters an hour at most).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeGuard

from loomtui.files import open_regular, write_atomically
from loomtui.json_text import parse_json

MAX_LOGIN_BYTES: Final = 64 * 1024
"""How much a refresh may add to a login file (Claude Code's and Codex's hold a few KiB)."""

_TOKENS: Final = frozenset({"accessToken", "refreshToken", "access_token", "refresh_token", "id_token"})
"""The keys whose values a refresh replaces (Claude Code's, its MCP servers' and Codex's), by name: a
key that only mentions a token (`token_endpoint`, `token_type`) names where the login goes."""

_TIMES: Final = frozenset({"expiresAt", "last_refresh"})
"""A refresh's time beside its tokens (Claude Code's milliseconds, Codex's ISO time one level up):
moved forward whenever a token below it changes, never back, never past `_LATEST_AHEAD_S` from now."""

_EXPIRY_AHEAD_S: Final = 31 * 24 * 3600
"""How far ahead a refresh may set a token's expiry (Claude Code's last hours; an MCP server's may last
weeks): one that never expired would never be refreshed outside, and every refresh of the sandbox's
after it would be refused as going back."""
_NOW_SLACK_S: Final = 300
"""How far past now a time a refresh writes as it happens (`last_refresh`, a JWT's `iat`) may be."""
TAKE_BACK_EVERY_S: Final = 300.0
"""At most one refresh of a sandbox's goes back to the user per this long (a CLI refreshes about hourly);
a later one waits its turn, nothing is lost (the newest goes back)."""

_SEEN_KEPT: Final = 1024
"""How many digests of token values the user's login has held a record keeps (a few years of
hourly refreshes of Claude Code's two tokens; Codex's three refresh less often)."""

MAX_TOKEN_CHARS: Final = 16 * 1024
_TOKEN_TEXT: Final = re.compile(rf"[A-Za-z0-9._~+/=-]{{0,{MAX_TOKEN_CHARS}}}")
"""A token's characters: base64 and URL-safe ones (JWTs, `sk-ant-oat01-...`, opaque refresh tokens)."""
_TOKEN_KIND: Final = re.compile(r"[a-z]+(?:-[a-z0-9]+)*-")
"""The prefix that says what a token is (`sk-ant-oat01-`): a refresh keeps it."""
_ISO_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
"""RFC 3339, as Codex writes `last_refresh` and reads it back (Python reads looser forms Codex does not)."""

_JWT: Final = re.compile(r"[\w-]+\.([\w-]+)\.[\w-]*", re.ASCII)
_ACCOUNT_CLAIM: Final = re.compile(r"^(sub|email)$|account_id$|user_id$")
"""A JWT's claims that say whose it is (Codex's `chatgpt_account_id`); its plan and times may change."""

_RECORDS: Final = ".logins"
"""Under a sandbox's runtime state folder (outside the agent's reach): one record per login copy."""

_MISSING: Final = "missing"


@dataclass(frozen=True)
class SyncNote:
    """What one sync did that the audit log keeps: a refresh written back to the user's login (which of its
    token values changed, never the values), or a change of the agent's refused."""

    taken_back: bool
    user: Path
    said: str


@dataclass
class _Record:
    user: Path
    copy: Path
    base: str | None = None  # the digest both last held
    refused: str | None = None  # the digest of the copy last refused (said once)
    seen: list[str] = field(default_factory=list)  # digests of the token values the user's has held
    taken_at: float = 0.0  # when a refresh of the sandbox's last went back to the user


def track(root: Path, copy: Path, user: Path) -> None:
    """Keep `copy` (in the sandbox's own state folder under `root`) as the sandbox's login, in step with
    the user's `user` from now on (`sync`): made a copy of it when new."""
    path = _record_path(root, user)
    if _load(path) is None:
        _sync_one(path, _Record(user, copy))


def sync(root: Path) -> list[SyncNote]:
    """Bring every login copy under `root` in step with the user's (see the module); what went back to the
    user, and for each copy newly refused, why its change did not."""
    folder = root / _RECORDS
    if not folder.is_dir():
        return []
    # One sync at a time: the supervisor's beat and its end (or two supervisors of one sandbox) both read a
    # refusal as new, and said it twice.
    with _locked(folder) as held:
        return _sync_records(folder) if held else []


@contextmanager
def _locked(folder: Path, wait: float = 5.0) -> Iterator[bool]:
    """Whether the records' lock was had within `wait` seconds: never waited on for ever (an agent run without
    isolation can hold it), a sync skipped is done at the next beat."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.02)
        yield True
    finally:
        os.close(fd)  # the lock goes with it


def _sync_records(folder: Path) -> list[SyncNote]:
    notes: list[SyncNote] = []
    failed: OSError | None = None
    for path in sorted(folder.glob("*.json")):
        record = _load(path)
        try:
            note = _sync_one(path, record) if record is not None else None
        except OSError as exc:  # this one cannot be written now: the others are still brought in step
            failed = failed or exc
            continue
        if note is not None:
            notes.append(note)
    if failed is not None:
        raise failed
    return notes


def refusal(old: bytes, new: bytes | None, seen: Collection[str] = ()) -> str | None:
    """Why `new` is no refresh of the login `old` (None when it is one); `seen` are the digests of
    token values the user's login held before (`token_digest`): one of them again is a replay."""
    if new is None:
        return "the agent removed it (a logout is the user's to make)"
    if len(new) > len(old) + MAX_LOGIN_BYTES:
        return f"it grew by more than {MAX_LOGIN_BYTES // 1024} KiB"
    try:
        before, after = _document(old), _document(new)
        where = _first_change(before, after, "")
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested past what any login is
        return "it is not the JSON a login holds"
    if where is not None:
        return f"what names the login changed (at {where or 'the top'}): another login, not a refresh"
    return _bad_refresh(before, after, "", set(seen), None)


def taken_back(old: bytes, new: bytes) -> bytes:
    """The user's login `old` with the token values of its refresh `new` (no `refusal`) set in, written
    out afresh: never the agent's bytes (a BOM, UTF-16, a duplicate key, a lone surrogate parse here and
    not in the CLI: the user would be logged out), nor what else the refresh added (it stays in the
    sandbox's copy)."""
    before, after = _document(old), _document(new)
    if not _token_changed(before, after):  # a time moved alone: no refresh, and a way to push the user's
        return old
    merged = _with_tokens(before, after)
    return json.dumps(merged, indent=2 if b"\n" in old.strip() else None).encode()


def _token_changed(before: Any, after: Any) -> bool:
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return False
    return any((key in _TOKENS and _is_token(key, value, after[key]) and value != after[key])
               or _token_changed(value, after[key]) for key, value in before.items() if key in after)


def _with_tokens(before: Any, after: Any) -> Any:
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return before
    return {key: after[key] if key in after and _is_token(key, value, after[key])
            else _with_tokens(value, after.get(key)) for key, value in before.items()}


def _is_token(key: object, before: Any, after: Any) -> bool:
    """Whether `key`'s value is one a refresh replaces: a token or its time, the same kind of scalar."""
    return (key in _TOKENS or key in _TIMES) and _scalar(before) and type(before) is type(after)


def token_digest(value: str) -> str:
    """What a record keeps of a token value the user's login held: enough to know it again, not to use."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _document(content: bytes) -> Any:
    """A login's JSON, strictly: UTF-8 without a BOM, no key twice."""
    text = content.decode("utf-8")
    if text.startswith("\ufeff"):
        raise ValueError("a byte order mark")

    def no_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise ValueError("a key twice")
        return dict(pairs)

    return parse_json(text, object_pairs_hook=no_twice)


def _bad_refresh(before: Any, after: Any, where: str, seen: set[str], moved: bool | None) -> str | None:
    """Why the tokens of `after` are none a refresh of `before` writes, walking its objects; `moved` is
    whether the nearest time above moved forward (None: there is none)."""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return None

    def at(key: str) -> str:
        return f"{where}.{key}" if where else key

    for key in sorted(_TIMES & before.keys()):
        if _is_token(key, before[key], after.get(key)):
            why, moved = _time_moved(before[key], after[key])
            if why is not None:
                return f"{at(key)} {why}"
    changed = {key: after[key] for key in sorted(_TOKENS & before.keys())
               if _is_token(key, before[key], after.get(key)) and before[key] != after[key]}
    for key, new in changed.items():
        if (why := _bad_token(before[key], new, seen, moved)) is not None:
            return f"{at(key)} {why}"
    jwts = [key for key in _TOKENS & before.keys() if isinstance(before[key], str) and _claims(before[key])]
    opaque = [key for key, new in changed.items() if not (isinstance(new, str) and _claims(new))]
    if jwts and opaque and not set(jwts) & changed.keys():
        # A real refresh issues the JWTs beside it afresh: an opaque token alone is another's.
        return f"{at(opaque[0])} changed while the JWTs beside it ({', '.join(sorted(jwts))}) did not"
    for key, value in before.items():
        if key in after and not _is_token(key, value, after[key]):
            if (why := _bad_refresh(value, after[key], at(str(key)), seen, moved)) is not None:
                return why
    return None


def _bad_token(old: Any, new: Any, seen: set[str], moved: bool | None) -> str | None:
    """Why `new` in place of the token `old` is none a refresh writes: a string past MAX_TOKEN_CHARS or
    with other than token characters (a message for another sandbox, its way out), a value the
    user's login held before or one whose time stood still (an old token set replayed: its refresh
    token spent, the user's would be revoked), a JWT of another account or issued earlier."""
    if not isinstance(new, str):
        return None if moved is not False else "changed while its time did not move forward"
    if not _TOKEN_TEXT.fullmatch(new):
        return f"is no token (past {MAX_TOKEN_CHARS} characters, or other characters)"
    if isinstance(old, str) and not _same_shape(old, new):
        return "is not of the user's token's shape (its prefix or its length)"
    if token_digest(new) in seen:
        return "is one the user's login held before: an old token replayed"
    if moved is False:
        return "changed while its time did not move forward: an old token replayed"
    before, after = _claims(old) if isinstance(old, str) else None, _claims(new)
    if _account_of(before) != _account_of(after):
        return "is another account's (its claims of whose it is changed)"
    then, now = (before or {}).get("iat"), (after or {}).get("iat")
    if _number(then) and _number(now) and not then < now:
        return "was issued no later than the user's (its iat): an old token replayed"
    if _number(now) and not now <= time.time() + _NOW_SLACK_S:
        return "says it was issued in the future (its iat)"
    return None


def _same_shape(old: str, new: str) -> bool:
    """Whether `new` could be what issued `old` issues next: the same kind prefix, a like length."""
    kind = _TOKEN_KIND.match(old)
    prefix = kind.group() if kind is not None and len(kind.group()) < len(old) else ""
    return new.startswith(prefix) and len(old) // 2 <= len(new) <= 2 * len(old) + 64


def _time_moved(old: Any, new: Any) -> tuple[str | None, bool]:
    """Why the time `new` in place of `old` is none a refresh writes (gone back, too far ahead, no
    time), and whether it moved forward."""
    if isinstance(old, str):
        then, when, latest = _iso_time(old), _iso_time(new), time.time() + _NOW_SLACK_S  # written as it happens
        if then is None:  # the user's own unreadable time is nothing to hold the sandbox's to
            return None, True
        if when is None:
            return "is no time", False
    else:
        then, when, latest = old, new, (time.time() + _EXPIRY_AHEAD_S) * 1000
    if when < then:
        return "went back in time: an old token replayed", False
    if when > latest:
        return "is set too far ahead", False
    return None, when > then


def _iso_time(text: str) -> float | None:
    if not _ISO_TIME.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _changes(before: Any, after: Any, where: str) -> list[str]:
    """Where `after` (the user's login with a refresh set in) differs from `before`: its token paths."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [change for key, value in before.items()
                for change in _changes(value, after[key], f"{where}.{key}" if where else str(key))]
    return [] if before == after else [where]


def _claims(token: str) -> dict[str, Any] | None:
    """A JWT's claims (its payload, unchecked: they only have to say what they said before); None for
    an opaque token."""
    match = _JWT.fullmatch(token)
    if match is None:
        return None
    try:
        payload = parse_json(base64.urlsafe_b64decode(match[1] + "=" * (-len(match[1]) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _account_of(claims: dict[str, Any] | None) -> dict[str, Any] | None:
    """Whose a JWT's `claims` say it is (its subject, email, account and user ids, however nested)."""
    found: dict[str, Any] = {}

    def gather(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if _ACCOUNT_CLAIM.search(str(key)) and not isinstance(inner, (dict, list)):
                    found[f"{where}{key}"] = inner
                gather(inner, f"{where}{key}.")

    try:
        gather(claims, "")
    except RecursionError:  # nested past what a token's claims are: no account can be told
        return {"": "unreadable"}
    return found or None


def _first_change(before: Any, after: Any, where: str) -> str | None:
    """The first place where a value of `before` that names the login (any but a token, its time, or a
    list such as Claude Code's scopes) is changed or gone in `after`; None if nowhere. Keys `after` adds
    are no change: they stay in the sandbox."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            inner = f"{where}.{key}" if where else str(key)
            if key not in after:
                return inner
            if _is_token(key, value, after[key]):
                continue
            change = _first_change(value, after[key], inner)
            if change is not None:
                return change
        return None
    if isinstance(before, list) and isinstance(after, list):
        return None
    return None if before == after and type(before) is type(after) else where


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _sync_one(path: Path, record: _Record) -> SyncNote | None:
    note = None
    before = (record.base, record.refused, len(record.seen), record.taken_at)
    user, stamp = _read_user(record.user)
    copy = _read_copy(record.copy, len(user or b"") + MAX_LOGIN_BYTES)
    theirs, ours = _digest(user), _digest(copy)
    if theirs != record.base:
        _remember(record, user)
    if ours == theirs:
        record.base, record.refused = theirs, None
    elif record.base is None or theirs != record.base:
        # A new copy, or the user's changed (a login, a refresh, a logout): the copy follows, and
        # where the copy changed too, the user's wins.
        _set_copy(record.copy, user)
        record.base, record.refused = theirs, None
    elif user is not None:  # only the copy changed: a refresh goes back to the user
        why = refusal(user, copy, record.seen)
        if why is None:
            merged = taken_back(user, copy or b"")
            if merged == user:  # only what stays in the sandbox changed
                record.base, record.refused = theirs, None
            elif time.time() - record.taken_at < TAKE_BACK_EVERY_S:
                pass  # its turn comes: the copy is judged again then, the newest of its refreshes goes back
            elif _set_user(record.user, merged, stamp):
                _remember(record, merged)
                record.base, record.refused, record.taken_at = _digest(merged), None, time.time()
                changed = ", ".join(_changes(_document(user), _document(merged), "")) or "nothing"
                note = SyncNote(True, record.user, f"{record.user}: the sandbox's refresh went back ({changed})")
        elif record.refused is None:  # said once until the two agree again, however often it changes
            record.refused = ours
            note = SyncNote(False, record.user, f"{record.user}: the sandbox's change was not taken back: {why}")
    if (record.base, record.refused, len(record.seen), record.taken_at) != before or not path.exists():
        _save(path, record)
    return note


def _remember(record: _Record, content: bytes | None) -> None:
    """Keep the digests of the token values the user's login `content` holds (the newest `_SEEN_KEPT`)."""
    try:
        document = _document(content) if content is not None else None
    except (ValueError, RecursionError):
        return
    seen = dict.fromkeys(record.seen)

    def gather(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in _TOKENS and isinstance(inner, str):
                    seen.pop(token_digest(inner), None)  # moved to the newest end
                    seen[token_digest(inner)] = None
                else:
                    gather(inner)

    gather(document)
    record.seen = list(seen)[-_SEEN_KEPT:]


def _digest(content: bytes | None) -> str:
    return _MISSING if content is None else hashlib.sha256(content).hexdigest()


class _Stamp(NamedTuple):
    """Which file a path named and how it was when read: another write (a rename or in place) moves it."""
    inode: int
    modified_ns: int
    size: int


def _stamp(status: os.stat_result) -> _Stamp:
    return _Stamp(status.st_ino, status.st_mtime_ns, status.st_size)


def _read_user(user: Path) -> tuple[bytes | None, _Stamp | None]:
    """The user's login, whole (their own file: a symlink to it is theirs to make), and its stamp; None
    when there is none."""
    try:
        with open(user, "rb") as handle:
            return handle.read(), _stamp(os.fstat(handle.fileno()))
    except OSError:
        return None, None


def _read_copy(copy: Path, limit: int) -> bytes | None:
    """The sandbox's copy, up to `limit` bytes and one more, never following what the agent planted
    there (a symlink, a FIFO): such a thing reads as a removed copy."""
    try:
        with open_regular(copy) as handle:
            return handle.read(limit + 1)
    except OSError:
        return None


def _set_copy(copy: Path, content: bytes | None) -> None:
    """The sandbox's copy made `content` (removed for None): a new file renamed over whatever is there."""
    if content is None:
        if copy.is_symlink() or copy.is_file():
            copy.unlink()
        return
    if copy.is_dir() and not copy.is_symlink():
        return  # a folder the agent made there: its copy reads as removed, and nothing is written into it
    write_atomically(copy, content, 0o600, durable=True)


def _set_user(user: Path, content: bytes, read: _Stamp | None) -> bool:
    """The user's login made `content`, atomically, with its mode kept (through a symlink of theirs),
    unless it changed since it was `read` (their CLI refreshing meanwhile: theirs wins, and this sync
    starts over at the next). Whether it was written."""
    target = Path(os.path.realpath(user))
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = 0o600

    def unchanged() -> bool:
        try:
            return _stamp(target.stat()) == read
        except OSError:
            return False

    return write_atomically(target, content, mode, durable=True, if_current=unchanged)


def _record_path(root: Path, user: Path) -> Path:
    name = hashlib.sha256(os.fsencode(user)).hexdigest()[:16]
    return root / _RECORDS / f"{name}.json"


def _load(path: Path) -> _Record | None:
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
        seen = [str(digest) for digest in data.get("seen") or ()]
        return _Record(Path(data["user"]), Path(data["copy"]), data.get("base"), data.get("refused"), seen,
                       float(data.get("taken_at") or 0.0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save(path: Path, record: _Record) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {"user": str(record.user), "copy": str(record.copy), "base": record.base, "refused": record.refused,
            "seen": record.seen, "taken_at": record.taken_at}
    write_atomically(path, json.dumps(data), 0o600)
