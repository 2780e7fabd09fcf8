"""The read commands on a repository nobody here may write (a read-only mount, a backup, someone
else's checkout): they read the store as it is, and every write says so in one line, the store untouched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loomtui.audit import AuditLog
from loomtui.execution.isolation import isolation_available
from loomtui.governance.coordinator import governed_coordinator
from loomtui.store import SandboxRecord
from loomtui.workspace import open_workspace

pytestmark = pytest.mark.skipif(not isolation_available(), reason="bubblewrap (bwrap) not usable here")

COMMANDS = (("status", "--json"), ("sandbox", "list", "--json"), ("claim", "list", "--json"),
            ("conflicts", "--json"), ("audit", "verify", "--json"), ("audit", "tail", "-n", "1"),
            ("escalation", "list", "--all", "--json"), ("report", "--json"),
            ("claim", "add", "README.md", "--sandbox", "sb2", "--shared", "--reason", "a write"))

# Each command through the CLI's own `main`, in one process under a read-only mount of the test's
# directory (root writes anywhere else, so the mount is what makes it read-only).
RUNNER = """
import contextlib, io, json, sys
from loomtui.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as exc:
            code = f"raised {type(exc).__name__}: {exc}"
    results.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def _with_state(repo: Path) -> None:
    workspace = open_workspace(repo)
    workspace.store.add_sandbox(SandboxRecord(id="sb1", task="tidy lib", runtime="script", status="exited",
                                              created=time.time(), updated=time.time()))
    governed_coordinator(workspace).claim("sb1", "README.md", reason="tidy")
    workspace.close()


def _run_read_only(tmp_path: Path, repo: Path, commands: tuple[tuple[str, ...], ...] = COMMANDS,
                   read_only: Path | None = None) -> dict[str, dict[str, object]]:
    """`commands` run with `read_only` (the test's whole directory unless given) mounted read-only."""
    mounted = str(read_only or tmp_path)
    done = subprocess.run(["bwrap", "--dev-bind", "/", "/", "--ro-bind", mounted, mounted,
                           "--chdir", str(repo), sys.executable, "-c", RUNNER, json.dumps(commands)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {" ".join(r["argv"][:2]): r for r in json.loads(done.stdout)}


def _state_files(repo: Path) -> dict[str, str]:
    loom = repo / ".git" / "loom"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(loom.iterdir()) if p.is_file()}


@pytest.mark.parametrize("writer_open", [False, True], ids=["closed", "a-writer-has-it-open"])
def test_read_commands_read_a_store_that_cannot_be_written_and_writes_say_so(
        tmp_path: Path, repo: Path, writer_open: bool) -> None:
    """Closed cleanly, a WAL store has no shared-memory file, and none can be made on a read-only
    mount: it is read as immutable. Held open by a writer elsewhere, it is read through the writer's."""
    _with_state(repo)
    writer = open_workspace(repo) if writer_open else None
    try:
        if writer is not None:
            writer.store.list_sandboxes()  # its connection (and the -wal and -shm files) are open
        before = _state_files(repo)
        results = _run_read_only(tmp_path, repo)
        assert _state_files(repo) == before  # not a byte written, no file made
    finally:
        if writer is not None:
            writer.close()
    for name in ("status --json", "sandbox list", "claim list", "conflicts --json", "audit verify",
                 "audit tail", "escalation list", "report --json"):
        assert results[name]["code"] == 0, results[name]
    status = json.loads(str(results["status --json"]["out"]))
    assert status["journal_mode"] == "read-only" and status["counts"]["sandboxes"] == 1
    listed = json.loads(str(results["sandbox list"]["out"]))
    assert [s["id"] for s in listed["sandboxes"]] == ["sb1"]
    assert [c["target"] for c in json.loads(str(results["claim list"]["out"]))] == ["README.md"]
    assert json.loads(str(results["audit verify"]["out"]))["ok"] is True
    assert "claim.added  sb1" in str(results["audit tail"]["out"])
    # A write: one line naming the store, a non-zero exit, no traceback.
    write = results["claim add"]
    assert write["code"] == 2 and write["out"] == ""
    assert str(write["err"]).count("\n") == 1 and "cannot write the state store" in str(write["err"])


def test_conflicts_and_a_diff_read_a_live_sandboxs_work_beside_a_store_that_cannot_be_written(
        tmp_path: Path, repo: Path) -> None:
    """Reading a worktree's changes made a scratch index in loomtui's folder: on a read-only one (the
    repository's objects writable) `conflicts` ended in an internal error (OSError: Read-only file system)."""
    from loomtui.workflow.tasks import create_sandbox

    workspace = open_workspace(repo)
    script = tmp_path / "noop.yaml"
    script.write_text("- {log: nothing}\n")
    record = create_sandbox(workspace, "notes", "script", script=script, isolate=False)
    workspace.close()
    (Path(record.worktree or "") / "NOTES.md").write_text("uncommitted work\n")
    before = _state_files(repo)
    results = _run_read_only(tmp_path, repo, (("conflicts", "--json"), ("sandbox", "diff", record.id, "--stat"),
                                              ("policy", "explain", record.id), ("context", "show"),
                                              ("context", "drift")), read_only=repo / ".git" / "loom")
    assert _state_files(repo) == before
    assert results["conflicts --json"]["code"] == 0, results["conflicts --json"]
    diff = results["sandbox diff"]
    assert diff["code"] == 0 and "NOTES.md" in str(diff["out"]), diff
    # Commands that only read, which refused "cannot write the state store here (...); reading it needs no write
    # access", contradicting themselves.
    for name in ("policy explain", "context show", "context drift"):
        assert "cannot write the state store" not in str(results[name]["err"]), results[name]
        assert results[name]["code"] in (0, 1) and not str(results[name]["code"]).startswith("raised"), results[name]


def test_audit_verify_on_a_read_only_store_names_entries_the_log_lacks_and_appends_none(
        tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash kept the newest entry from the log file (the next write would append it). Read-only,
    nothing is appended: verify says what is missing rather than failing on the write."""
    _with_state(repo)
    workspace = open_workspace(repo)
    with monkeypatch.context() as patched:  # committed in the store; the process died before the file
        patched.setattr(AuditLog, "_mirror_after_commit", lambda _self: None)
        workspace.record("sandbox.note", "sb1", {"note": "the entry a crash keeps from the file"})
    workspace.close()
    before = _state_files(repo)
    results = _run_read_only(tmp_path, repo)
    assert _state_files(repo) == before
    verify = results["audit verify"]
    assert verify["code"] == 0, verify  # what the file holds is whole and matches the store
    verified = json.loads(str(verify["out"]))
    assert verified["ok"] is True and verified["log_entries"] == 1
    assert verified["notes"][0] == ("1 committed entries are missing from the log; not appended here (the store "
                                    "is read-only)")


def test_a_repository_with_no_store_yet_says_so_where_none_can_be_made(tmp_path: Path, repo: Path) -> None:
    results = _run_read_only(tmp_path, repo)
    status = results["status --json"]
    assert status["code"] == 2 and "there is no state store yet" in json.loads(str(status["out"]))["error"]
    assert "there is no state store yet, and it cannot be created here (read-only)" in str(status["err"])


def test_on_a_full_disk_the_read_commands_read_and_a_write_says_the_disk_is_full(tmp_path: Path, repo: Path) -> None:
    """With no room for the files a writer's connection makes, `status` and `audit verify` failed with "cannot
    write the state store (disk I/O error)", and a write did not say why."""
    import shutil

    from tests.conftest import run_cli

    _with_state(repo)
    loom = repo / ".git" / "loom"
    kept = tmp_path / "kept"
    shutil.copytree(loom, kept)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(loom)], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        shutil.copytree(kept, loom, dirs_exist_ok=True)
        filler = os.open(loom / "filler", os.O_WRONLY | os.O_CREAT)  # the disk full, to the last block
        try:
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        status = run_cli(repo, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["counts"]["sandboxes"] == 1
        verify = run_cli(repo, "audit", "verify", "--json")
        assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True, verify.stderr
        write = run_cli(repo, "claim", "add", "README.md", "--sandbox", "sb2", "--reason", "a write")
        assert write.returncode == 2 and "its disk is full" in write.stderr, write.stderr
    finally:
        # Lazily: a process the commands left (an index worker) may still hold it a moment.
        subprocess.run(["umount", "--lazy", str(loom)], capture_output=True, check=False)
    assert (loom / "state.db").is_file()  # the store under the mount untouched
