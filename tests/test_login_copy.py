"""A sandbox's copy of the user's login: a refresh goes back to the user, nothing else does."""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from loomtui.execution import login_copy

CLAUDE = {"claudeAiOauth": {"accessToken": "sk-ant-oat01-a", "refreshToken": "sk-ant-ort01-a",
                            "expiresAt": 1764900000000, "scopes": ["user:inference"], "subscriptionType": "max"}}
CODEX = {"OPENAI_API_KEY": None, "last_refresh": "2026-12-01T10:00:00Z",
         "tokens": {"id_token": "eyJ.a", "access_token": "eyJ.b", "refresh_token": "rt-1", "account_id": "acct-user"}}


def _write(path: Path, data: object) -> bytes:
    content = json.dumps(data).encode()
    path.write_bytes(content)
    return content


@pytest.fixture
def login(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(runtime root, the user's ~/.claude/.credentials.json, the sandbox's copy of it), tracked."""
    user = tmp_path / "home" / ".claude" / ".credentials.json"
    user.parent.mkdir(parents=True)
    _write(user, CLAUDE)
    user.chmod(0o600)
    root = tmp_path / "runtime"
    copy = root / "abc-claude" / ".credentials.json"
    copy.parent.mkdir(parents=True)
    copy.touch()  # a mount point an older loomtui left: replaced by the copy
    login_copy.track(root, copy, user)
    return root, user, copy


def test_a_sandbox_starts_with_a_copy_and_a_refresh_goes_back_to_the_user(login: tuple[Path, Path, Path]) -> None:
    root, user, copy = login
    assert json.loads(copy.read_bytes()) == CLAUDE and copy.stat().st_mode & 0o777 == 0o600
    refreshed = {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "sk-ant-oat01-b",
                                   "refreshToken": "sk-ant-ort01-b", "expiresAt": 1764990000000}}
    content = _write(copy, refreshed)
    assert [(n.taken_back, n.said) for n in login_copy.sync(root)] == [
        (True, f"{user}: the sandbox's refresh went back (claudeAiOauth.accessToken, claudeAiOauth.refreshToken, claudeAiOauth.expiresAt)")]  # which values, never what
    assert user.read_bytes() == content and user.stat().st_mode & 0o777 == 0o600
    assert login_copy.sync(root) == [] and user.read_bytes() == content


def test_a_login_refreshed_outside_reaches_the_sandbox_whose_copy_did_not_change(
        login: tuple[Path, Path, Path]) -> None:
    root, user, copy = login
    content = _write(user, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "outside"}})
    assert login_copy.sync(root) == [] and copy.read_bytes() == content
    # Both changed since they last agreed: the user's wins.
    _write(copy, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "inside"}})
    content = _write(user, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "outside again"}})
    assert login_copy.sync(root) == [] and copy.read_bytes() == content == user.read_bytes()


@pytest.mark.parametrize(("change", "said"), [
    # Another account's login in place of the user's: Claude Code's plan, Codex's account.
    (lambda copy: _write(copy, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "subscriptionType": "pro"}}),
     "what names the login changed (at claudeAiOauth.subscriptionType)"),
    (lambda copy: _write(copy, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": {"a": 1}}}),
     "what names the login changed (at claudeAiOauth.accessToken)"),
    (lambda copy: _write(copy, {"other": CLAUDE["claudeAiOauth"]}), "what names the login changed (at claudeAiOauth)"),
    (lambda copy: copy.write_bytes(b"x" * (len(json.dumps(CLAUDE)) + login_copy.MAX_LOGIN_BYTES + 1)),
     "it grew by more than 64 KiB"),
    (lambda copy: copy.write_bytes(b"not json"), "it is not the JSON a login holds"),
    # Parsed here, not by the CLI: written back, the user was logged out.
    (lambda copy: copy.write_bytes(b"\xef\xbb\xbf" + json.dumps(CLAUDE).encode()), "not the JSON"),
    (lambda copy: copy.write_bytes(json.dumps(CLAUDE).encode("utf-16")), "not the JSON"),
    (lambda copy: copy.write_bytes(json.dumps(CLAUDE).encode()[:-1] + b', "claudeAiOauth": {}}'), "not the JSON"),
    # A message in a token's place (a channel to every other sandbox), an old token set replayed.
    (lambda copy: _write(copy, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "x" * 20000}}),
     "claudeAiOauth.accessToken is no token"),
    (lambda copy: _write(copy, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "hello sandbox b"}}),
     "claudeAiOauth.accessToken is no token"),
    (lambda copy: _write(copy, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "expiresAt": 1764800000000}}),
     "claudeAiOauth.expiresAt went back in time"),
    # Nested past Python's recursion limit: it ended the supervisor's store thread (no more heartbeats).
    (lambda copy: copy.write_bytes(b"[" * 30000 + b"]" * 30000), "it is not the JSON a login holds"),
    (lambda copy: copy.unlink(), "the agent removed it"),
    (lambda copy: (copy.unlink(), os.mkfifo(copy)), "the agent removed it"),  # never read: it would block
])
def test_a_change_that_is_no_refresh_stays_in_the_sandbox_and_is_said_once(
        login: tuple[Path, Path, Path], change, said: str) -> None:  # type: ignore[no-untyped-def]
    root, user, copy = login
    before = user.read_bytes()
    change(copy)
    notes = login_copy.sync(root)
    assert len(notes) == 1 and not notes[0].taken_back and said in notes[0].said and str(user) in notes[0].said, notes
    assert user.read_bytes() == before
    assert login_copy.sync(root) == []  # said once, while the copy stays as it is
    # The user logging in again (or a refresh outside) replaces the sandbox's copy, whatever it holds.
    content = _write(user, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "new login"}})
    assert login_copy.sync(root) == [] and copy.read_bytes() == content and copy.is_file()


def test_a_symlink_planted_as_the_copy_is_never_followed(login: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """It would have the supervisor read (and hand the user) a file of the agent's choosing, or write
    the user's login out to where the link points."""
    root, user, copy = login
    elsewhere = tmp_path / "elsewhere.json"
    _write(elsewhere, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "via a link"}})
    copy.unlink()
    copy.symlink_to(elsewhere)
    notes = login_copy.sync(root)
    assert len(notes) == 1 and "removed" in notes[0].said and user.read_bytes() == json.dumps(CLAUDE).encode()
    content = _write(user, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "new login"}})
    login_copy.sync(root)
    assert not copy.is_symlink() and copy.read_bytes() == content
    assert "via a link" in elsewhere.read_text()


def test_codex_s_account_may_not_change_its_tokens_may(tmp_path: Path) -> None:
    user, copy, root = tmp_path / "auth.json", tmp_path / "own" / "auth.json", tmp_path / "runtime"
    copy.parent.mkdir()
    _write(user, CODEX)
    login_copy.track(root, copy, user)
    refreshed = {**CODEX, "last_refresh": "2026-12-02T10:00:00Z",
                 "tokens": {**CODEX["tokens"], "access_token": "eyJ.c", "refresh_token": "rt-2"}}  # type: ignore[dict-item]
    assert login_copy.sync(root) == [] and login_copy.refusal(user.read_bytes(), json.dumps(refreshed).encode()) is None
    swapped = {**refreshed, "tokens": {**refreshed["tokens"], "account_id": "acct-attacker"}}
    assert "tokens.account_id" in (login_copy.refusal(user.read_bytes(), json.dumps(swapped).encode()) or "")
    assert "OPENAI_API_KEY" in (login_copy.refusal(user.read_bytes(), json.dumps(
        {**CODEX, "OPENAI_API_KEY": "sk-attacker"}).encode()) or "")


def test_a_user_who_logged_out_takes_the_sandbox_s_copy_with_them(login: tuple[Path, Path, Path]) -> None:
    root, user, copy = login
    user.unlink()
    assert login_copy.sync(root) == [] and not copy.exists()
    _write(copy, CLAUDE)  # the agent's own login from then on: never the user's
    assert login_copy.sync(root) == [] and not user.exists()


def test_a_file_is_replaced_with_its_mode_set_on_the_open_file_never_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary file sits in the agent's folder (its login copy's): a chmod by name after the write
    followed a symlink the agent swapped in meanwhile, and made a file or folder of the user's 0600."""
    from loomtui.files import write_atomically

    def by_name(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("chmod by name")

    monkeypatch.setattr(os, "chmod", by_name)
    target = tmp_path / "login.json"
    (tmp_path / f".login.json.loom-{os.getpid()}").symlink_to(tmp_path / "elsewhere")  # a leftover link
    write_atomically(target, b"{}", 0o640, durable=True)
    assert target.read_bytes() == b"{}" and target.stat().st_mode & 0o777 == 0o640
    assert not (tmp_path / "elsewhere").exists()


def test_a_folder_planted_where_the_temporary_file_goes_does_not_stop_the_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Named by pid alone, the temporary file's name was the agent's to guess (its folder): a folder planted
    there made every sync of its login copy fail."""
    from loomtui.files import write_atomically

    target = tmp_path / "login.json"
    (tmp_path / f".login.json.loom-{os.getpid()}").mkdir()  # the name by pid
    names = iter(["0", "0", "1"])
    monkeypatch.setattr("secrets.token_hex", lambda _n: next(names))
    (tmp_path / f".login.json.loom-{os.getpid()}-0").mkdir()  # and a guess that happens to be right
    assert write_atomically(target, b"{}", 0o600) and target.read_bytes() == b"{}"


def test_a_login_that_cannot_be_written_does_not_hold_back_the_others(tmp_path: Path) -> None:
    root = tmp_path / "runtime"
    pairs = []
    for name in ("a", "b"):
        user, copy = tmp_path / name / "home" / "auth.json", tmp_path / name / "own" / "auth.json"
        user.parent.mkdir(parents=True)
        copy.parent.mkdir(parents=True)
        _write(user, CODEX)
        login_copy.track(root, copy, user)
        pairs.append((user, copy))
    for user, _copy in pairs:
        _write(user, {**CODEX, "last_refresh": "2026-12-03T10:00:00Z"})
    broken = min(pairs, key=lambda pair: login_copy._record_path(root, pair[0]).name)[1].parent
    shutil.rmtree(broken)
    broken.write_text("a file where the sandbox's folder was")  # the first synced: its copy cannot be made
    with pytest.raises(OSError):
        login_copy.sync(root)
    other = max(pairs, key=lambda pair: login_copy._record_path(root, pair[0]).name)
    assert "2026-12-03" in other[1].read_text()


def test_a_refresh_that_changes_more_than_tokens_sends_back_only_its_tokens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Claude Code's refresh may change its scopes or add keys (rateLimitTier, mcpOAuth): refused, the
    rotated refresh token was spent in the sandbox and the user had to log in again."""
    user, copy, root = tmp_path / "home" / ".credentials.json", tmp_path / "own" / ".credentials.json", tmp_path / "rt"
    user.parent.mkdir()
    copy.parent.mkdir()
    user.write_text(json.dumps(CLAUDE, indent=2) + "\n")  # as the CLI writes it: pretty, kept so
    login_copy.track(root, copy, user)
    oauth = {**CLAUDE["claudeAiOauth"], "accessToken": "sk-ant-oat01-b", "refreshToken": "sk-ant-ort01-b",
             "expiresAt": 1764990000000, "scopes": ["user:inference", "user:profile"], "rateLimitTier": "max_20x"}
    copy_content = _write(copy, {"claudeAiOauth": oauth, "mcpOAuth": {"server": {"accessToken": "mcp-1"}}})
    assert [n.said for n in login_copy.sync(root)] == [f"{user}: the sandbox's refresh went back (claudeAiOauth.accessToken, claudeAiOauth.refreshToken, claudeAiOauth.expiresAt)"]
    taken = json.loads(user.read_bytes())
    assert taken == {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "sk-ant-oat01-b",
                                       "refreshToken": "sk-ant-ort01-b", "expiresAt": 1764990000000}}
    assert user.read_text().startswith("{\n  ")
    taken_bytes = user.read_bytes()
    for _ in range(2):  # in step from then on: the sandbox keeps what it added, nothing more is written
        assert login_copy.sync(root) == [] and copy.read_bytes() == copy_content and user.read_bytes() == taken_bytes
    # The sandbox refreshes again (its turn come): only its new tokens go back.
    monkeypatch.setattr(login_copy, "TAKE_BACK_EVERY_S", 0.0)
    copy_content = _write(copy, {"claudeAiOauth": {**oauth, "accessToken": "sk-ant-oat01-c", "expiresAt": 1764990000001}})
    assert [n.said for n in login_copy.sync(root)] == [
        f"{user}: the sandbox's refresh went back (claudeAiOauth.accessToken, claudeAiOauth.expiresAt)"] and json.loads(user.read_bytes())["claudeAiOauth"]["accessToken"] == \
        "sk-ant-oat01-c" and "rateLimitTier" not in json.loads(user.read_bytes())["claudeAiOauth"]


def _jwt(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


def test_codex_s_tokens_may_not_name_another_account(tmp_path: Path) -> None:
    """Codex's id_token and access_token are JWTs that say whose they are: a refresh keeps that."""
    auth = {"chatgpt_account_id": "acct-user", "chatgpt_plan_type": "plus", "user_id": "user-1"}
    mine = {"sub": "auth0|1", "email": "me@example.com", "exp": 1, "https://api.openai.com/auth": auth}
    old = json.dumps({**CODEX, "tokens": {**CODEX["tokens"], "id_token": _jwt(mine)}}).encode()  # type: ignore[dict-item]

    def with_id_token(claims: dict[str, object]) -> bytes:
        return json.dumps({**CODEX, "last_refresh": "2026-12-01T11:00:00Z",
                           "tokens": {**CODEX["tokens"], "id_token": _jwt(claims)}}).encode()  # type: ignore[dict-item]

    upgraded = {**mine, "exp": 2, "https://api.openai.com/auth": {**auth, "chatgpt_plan_type": "pro"}}
    assert login_copy.refusal(old, with_id_token(upgraded)) is None
    for theirs in ({**mine, "email": "attacker@example.com"}, {**mine, "sub": "auth0|2"},
                   {**mine, "https://api.openai.com/auth": {**auth, "chatgpt_account_id": "acct-attacker"}}):
        assert "tokens.id_token is another account's" in (login_copy.refusal(old, with_id_token(theirs)) or "")


def test_a_change_every_heartbeat_is_said_once_until_the_two_agree(login: tuple[Path, Path, Path]) -> None:
    """Junk written anew at every sync wrote one audit entry per heartbeat (every 2 s)."""
    root, user, copy = login
    notes = []
    for step in range(5):
        copy.write_text(f"junk {step}")
        notes += login_copy.sync(root)
    assert len(notes) == 1
    _write(copy, CLAUDE)  # back in step with the user: a new change is said again
    assert login_copy.sync(root) == []
    copy.write_text("junk again")
    assert len(login_copy.sync(root)) == 1


def test_two_syncs_at_once_say_a_refused_change_once(login: tuple[Path, Path, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor's beat and its end synced at once: both read the refusal as new (CI, once: two entries)."""
    root, _user, copy = login
    copy.write_text("junk")
    judge = login_copy.refusal

    def slowly(*args: object, **kwargs: object) -> str | None:
        time.sleep(0.3)  # both inside the sync before either has saved what it said
        return judge(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(login_copy, "refusal", slowly)
    notes: list[object] = []
    threads = [threading.Thread(target=lambda: notes.extend(login_copy.sync(root))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(notes) == 1, notes


def test_a_user_login_past_the_limit_is_copied_whole(tmp_path: Path) -> None:
    user, copy, root = tmp_path / "auth.json", tmp_path / "own" / "auth.json", tmp_path / "rt"
    copy.parent.mkdir()
    big = {**CODEX, "notes": "n" * (2 * login_copy.MAX_LOGIN_BYTES)}
    content = _write(user, big)
    login_copy.track(root, copy, user)
    assert copy.read_bytes() == content
    refreshed = _write(copy, {**big, "last_refresh": "2026-12-01T11:00:00Z",
                              "tokens": {**CODEX["tokens"], "access_token": "eyJ.z"}})  # type: ignore[dict-item]
    assert [n.taken_back for n in login_copy.sync(root)] == [True] and user.read_bytes() == refreshed


def test_a_refresh_by_the_user_s_cli_during_the_sync_is_not_overwritten(
        login: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root, user, copy = login
    _write(copy, {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "sk-ant-oat01-sandbox", "expiresAt": 1764900000001}})
    outside = {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "sk-ant-oat01-cli", "expiresAt": 1764900000002}}
    fsync = os.fsync

    def meanwhile(fd: int) -> None:  # the user's CLI writes while the refresh is being written out
        if not json.loads(user.read_bytes()) == outside:
            _write(user, outside)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", meanwhile)
    assert login_copy.sync(root) == []
    assert json.loads(user.read_bytes()) == outside
    monkeypatch.setattr(os, "fsync", fsync)
    assert login_copy.sync(root) == [] and json.loads(copy.read_bytes()) == outside  # theirs wins


def _codex_login(iat: int, refresh_token: str, when: str) -> dict[str, object]:
    me = {"sub": "auth0|1", "iat": iat, "https://api.openai.com/auth": {"chatgpt_account_id": "acct"}}
    return {**CODEX, "last_refresh": when,
            "tokens": {"id_token": _jwt(me), "access_token": _jwt(me), "refresh_token": refresh_token, "account_id": "acct-user"}}


def test_codex_s_opaque_refresh_token_goes_back_only_beside_jwts_issued_afresh(tmp_path: Path) -> None:
    """Codex's refresh token is opaque: another account's set beside the user's own JWTs (and a new
    last_refresh) was taken back, and the user's next refresh logged their Codex into that account."""
    user, copy, root = tmp_path / "auth.json", tmp_path / "own" / "auth.json", tmp_path / "rt"
    copy.parent.mkdir()
    _write(user, _codex_login(1000, "rt-user", "2026-12-01T10:00:00Z"))
    login_copy.track(root, copy, user)
    swapped = _codex_login(1000, "rt-attacker", "2026-12-01T11:00:00Z")
    _write(copy, swapped)
    notes = login_copy.sync(root)
    assert [n.taken_back for n in notes] == [False]
    assert "tokens.refresh_token changed while the JWTs beside it" in notes[0].said
    assert json.loads(user.read_bytes())["tokens"]["refresh_token"] == "rt-user"
    # JWTs issued no later than the user's are an old set, whatever the file's own time says.
    assert "was issued no later" in (login_copy.refusal(user.read_bytes(), json.dumps(
        _codex_login(999, "rt-2", "2026-12-01T11:00:00Z")).encode()) or "")
    refreshed = _codex_login(2000, "rt-2", "2026-12-01T11:00:00Z")  # what a refresh writes
    _write(copy, refreshed)
    assert [n.taken_back for n in login_copy.sync(root)] == [True] and json.loads(user.read_bytes()) == refreshed


def test_an_old_token_set_replayed_stays_in_the_sandbox(login: tuple[Path, Path, Path]) -> None:
    """The agent keeps the tokens it started with; the user's CLI refreshes outside (rotating the
    refresh token); the agent writes its spent set back with a later time: it went back to the user,
    whose next refresh was refused (a spent token) and who was logged out."""
    root, user, copy = login
    started_with = json.loads(copy.read_bytes())["claudeAiOauth"]
    outside = {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "accessToken": "sk-ant-oat01-b",
                                 "refreshToken": "sk-ant-ort01-b", "expiresAt": 1764990000000}}
    _write(user, outside)
    assert login_copy.sync(root) == []
    for expires in (1764990000000, 1764990000001):  # the same time, or one later: still an old set
        before = user.read_bytes()
        _write(copy, {"claudeAiOauth": {**started_with, "expiresAt": expires}})
        notes = login_copy.sync(root)
        assert len(notes) == 1 and not notes[0].taken_back and user.read_bytes() == before, notes
        assert "an old token replayed" in notes[0].said
        _write(copy, outside)  # back in step, so the next change is said again
        login_copy.sync(root)
    record = next((root / ".logins").glob("*.json")).read_text()
    assert "sk-ant-o" not in record  # digests of what the user's held, never the tokens


@pytest.mark.parametrize(("change", "said"), [
    # A key that only mentions a token names where the login goes: the agent's endpoint in the user's file.
    ({"token_endpoint": "https://attacker.example/token"},
     "what names the login changed (at claudeAiOauth.token_endpoint)"),
    ({"accessToken": "sk-ant-oat01-b", "expiresAt": 10 ** 15 - 1}, "claudeAiOauth.expiresAt is set too far ahead"),
    ({"accessToken": "sk-ant-oat01-b"}, "claudeAiOauth.accessToken changed while its time did not move forward"),
])
def test_a_refresh_changes_only_tokens_by_name_and_their_time_within_a_year(
        tmp_path: Path, change: dict[str, object], said: str) -> None:
    old = json.dumps({"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "token_endpoint": "https://auth.example/token"}})
    new = json.dumps({"claudeAiOauth": {**json.loads(old)["claudeAiOauth"], **change}})
    assert said in (login_copy.refusal(old.encode(), new.encode()) or "")


@pytest.mark.parametrize(("change", "said"), [
    # Codex reads RFC 3339 only: a looser time Python reads logged the user's Codex out.
    ({"last_refresh": "2026-12-01T11:00:00"}, "last_refresh is no time"),
    ({"last_refresh": "20261201T110000Z"}, "last_refresh is no time"),
    ({"last_refresh": "2099-01-01T00:00:00Z"}, "last_refresh is set too far ahead"),
    # An iat far ahead made every later genuine refresh "issued no later than the user's".
    ({"iat": 10 ** 12}, "tokens.access_token says it was issued in the future"),
])
def test_a_codex_refresh_s_times_are_codex_s_own_and_never_ahead(change: dict[str, object], said: str) -> None:
    old = json.dumps(_codex_login(1000, "rt-user", "2026-12-01T10:00:00Z")).encode()
    when = str(change.get("last_refresh", "2026-12-01T11:00:00.123456789Z"))
    new = _codex_login(int(str(change.get("iat", 2000))), "rt-user2", when)
    assert said in (login_copy.refusal(old, json.dumps(new).encode()) or ""), login_copy.refusal(
        old, json.dumps(new).encode())


def test_a_token_keeps_its_shape_and_a_time_moved_alone_stays_in_the_sandbox(login: tuple[Path, Path, Path]) -> None:
    """A time pushed a year ahead alone went back, and every genuine refresh after it was refused as going
    back; 16 KiB of any printable text went back in a token's place, to every other sandbox."""
    root, user, copy = login
    before = user.read_bytes()
    ahead = {"claudeAiOauth": {**CLAUDE["claudeAiOauth"], "expiresAt": 1764990000000}}
    _write(copy, ahead)
    assert login_copy.sync(root) == [] and user.read_bytes() == before  # no note: nothing to say, nothing taken
    oauth = CLAUDE["claudeAiOauth"]
    for token, why in ((f"sk-ant-oat01-{'m' * 500}", "shape"), ("other-kind-of-token", "shape"),
                       ("sk-ant-oat01-b!", "no token")):
        assert why in (login_copy.refusal(before, json.dumps(
            {"claudeAiOauth": {**oauth, "accessToken": token, "expiresAt": 1764990000000}}).encode()) or "")


def test_one_refresh_goes_back_per_turn_and_the_newest_goes_when_it_comes(
        login: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each take-back is a message's chance to reach the other sandboxes, and flushed the record of tokens
    held before: at most one per TAKE_BACK_EVERY_S (a CLI refreshes about hourly)."""
    root, user, copy = login
    oauth = CLAUDE["claudeAiOauth"]
    _write(copy, {"claudeAiOauth": {**oauth, "accessToken": "sk-ant-oat01-b", "expiresAt": 1764900000001}})
    assert [n.taken_back for n in login_copy.sync(root)] == [True]
    newest = {"claudeAiOauth": {**oauth, "accessToken": "sk-ant-oat01-c", "expiresAt": 1764900000002}}
    _write(copy, newest)
    assert login_copy.sync(root) == [] and json.loads(user.read_bytes())["claudeAiOauth"]["accessToken"] == \
        "sk-ant-oat01-b"  # waits its turn, nothing said
    monkeypatch.setattr(login_copy, "TAKE_BACK_EVERY_S", 0.0)  # its turn
    assert [n.taken_back for n in login_copy.sync(root)] == [True] and json.loads(user.read_bytes()) == newest
