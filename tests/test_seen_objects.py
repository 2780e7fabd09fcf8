"""What an isolated agent's git can read: the history the public refs reach and its own branch, never
the person's staged or stashed work, nor another sandbox's commits (all in the shared object store)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from loomtui.execution import sandboxes as sb
from loomtui.execution import seen_objects
from loomtui.execution.confinement import confined_scratch_argv
from loomtui.execution.gitops import Git
from loomtui.execution.isolation import isolation_available
from loomtui.workflow import tasks
from loomtui.workspace import Workspace
from tests.conftest import git
from tests.test_execution import bin_dir, ended, stand_in, ws  # noqa: F401 - fixtures

needs_bwrap = pytest.mark.skipif(not isolation_available(), reason="bubblewrap (bwrap) not usable here")
SECRETS = ("STASHED-SECRET", "STAGED-SECRET", "OTHER-SANDBOX-SECRET", "LOOSE-SECRET")


def _plant_secrets(repo: Path) -> None:
    """In the shared store, none reachable from a public ref: a stash, a staged file, another sandbox's
    commit, a blob written and left (an amended commit's, until a gc)."""
    git(repo, "checkout", "-q", "-b", "loom/other1")
    (repo / "other.txt").write_text("OTHER-SANDBOX-SECRET\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-qm", "another sandbox's work")
    git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("# test repo\nSTASHED-SECRET\n")
    git(repo, "stash", "-q")
    (repo / "staged.txt").write_text("STAGED-SECRET\n")
    git(repo, "add", "staged.txt")
    subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input="LOOSE-SECRET\n", text=True,
                   check=True, capture_output=True)


@needs_bwrap
def test_an_agent_reads_the_history_and_its_branch_not_the_person_s_work_nor_other_sandboxes(
        ws: Workspace, repo: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _plant_secrets(repo)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    stand_in(bin_dir, "claude", """\
        def git(*args):
            done = subprocess.run(["git", *args], capture_output=True)
            return done.returncode, done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
        results = {"dump": git("cat-file", "--batch-all-objects", "--batch")[1],
                   "log": git("log", "--format=%s", "main"), "readme": git("show", "HEAD:README.md")}
        with open("work.txt", "w") as out:
            out.write("the agent's work\\n")
        results["commit"] = git("add", "work.txt")[0] or git("commit", "-qm", "the agent's commit")[0]
        print(json.dumps(results), flush=True)
    """)
    record = tasks.create_sandbox(ws, "look around", "claude")
    tasks.start(ws, record.id)
    done = ended(ws, record.id)
    assert done.isolation == "bwrap"
    results = json.loads(next(line for line in reversed(sb.read_log_tail(ws, record.id, 40))
                              if line.startswith("{")))
    assert not [secret for secret in SECRETS if secret in results["dump"]], results["dump"][-2000:]
    assert "# test repo" in results["dump"]  # the history is there to read
    assert results["log"] == [0, "initial\n"] and results["readme"] == [0, "# test repo\n"]
    assert results["commit"] == 0  # its own commits it writes, and they are brought in
    assert git(repo, "log", "--format=%s", "-1", done.branch) == "the agent's commit"
    # What it costs on disk is said where a full disk is looked into.
    from loomtui.execution.doctor import run_doctor

    said = {check.name: check.detail for check in run_doctor(repo).checks}
    assert " MiB in " in said["published history"] and "a second copy of it" in said["published history"], said


@needs_bwrap
def test_gates_and_baselines_do_not_see_the_shared_object_store(ws: Workspace, repo: Path, tmp_path: Path) -> None:
    """A gate runs the agent's tests: code of any sandbox's."""
    _plant_secrets(repo)
    tree = tmp_path / "tree"
    tree.mkdir()
    objects = ws.paths.common_dir / "objects"
    argv = confined_scratch_argv(ws, tree, ["sh", "-c", f"ls -A {objects}; cat {objects}/*/* | wc -c"], {})
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.stdout.split() == ["0"], (done.stdout, done.stderr)


def test_the_published_store_holds_what_public_refs_reach_and_grows_with_them(repo: Path, tmp_path: Path) -> None:
    _plant_secrets(repo)
    root, seen = tmp_path / "published", tmp_path / "seen"
    main = Git(repo)
    objects = repo / ".git" / "objects"
    store, tips = seen_objects.publish(main, objects, root)
    assert store == root / "g1"
    assert tips == [git(repo, "rev-parse", "main")]  # not loom/other1, nor the stash
    packs = sorted((store / "pack").glob("*.pack"))
    assert len(packs) == 1
    assert seen_objects.publish(main, objects, root) == (store, tips) and sorted((store / "pack").glob("*.pack")) == packs
    git(repo, "branch", "feature")  # a new ref, no new object: no empty pack either
    seen_objects.publish(main, objects, root)
    assert sorted((store / "pack").glob("*.pack")) == packs
    (repo / "new.txt").write_text("a public change\n")
    git(repo, "add", "new.txt")
    git(repo, "commit", "-qm", "public", "new.txt")  # the staged file stays staged
    seen_objects.publish(main, objects, root)
    assert len(list((store / "pack").glob("*.pack"))) == 2

    def readable(*stores: Path) -> str:
        env = {"GIT_OBJECT_DIRECTORY": str(stores[0]),
               "GIT_ALTERNATE_OBJECT_DIRECTORIES": ":".join(str(s) for s in stores[1:])}
        return main.out("cat-file", "--batch-all-objects", "--batch", env=env)

    shown = readable(store)
    assert "a public change" in shown and not [s for s in SECRETS if s in shown]
    # A sandbox's own store: what its branch reaches beyond the published one, with that as its alternate.
    other = git(repo, "rev-parse", "loom/other1")
    seen_objects.show_branch(main, objects, seen, store, other, seen_objects.public_tips(main))
    assert (seen / "info" / "alternates").read_text() == f"{store}\n"
    assert "OTHER-SANDBOX-SECRET" in readable(seen)
    held = [line for index in (seen / "pack").glob("*.idx")
            for line in main.feed("show-index", data=index.read_bytes()).decode().splitlines()]
    assert len(held) == 3  # only what the public refs lack: its commit, its tree, other.txt's blob
    assert not [s for s in ("STASHED-SECRET", "LOOSE-SECRET") if s in readable(seen, store)]


def test_history_rewritten_to_purge_a_secret_is_published_anew_and_the_old_store_goes(
        repo: Path, tmp_path: Path) -> None:
    """A public store that kept every object it was ever given would keep a secret the person purged
    from history (a commit amended away, a branch deleted) readable to every agent for ever."""
    root, objects, main = tmp_path / "published", repo / ".git" / "objects", Git(repo)
    (repo / "config.py").write_text("TOKEN = 'PURGED-SECRET'\n")
    git(repo, "add", "config.py")
    git(repo, "commit", "-qm", "oops")
    first, _ = seen_objects.publish(main, objects, root)
    git(repo, "rm", "-q", "--cached", "config.py")
    git(repo, "commit", "-q", "--amend", "--allow-empty", "-m", "no secret")
    again, _ = seen_objects.publish(main, objects, root)  # a sandbox still reads the first: it stays
    assert again == root / "g2"
    seen_objects.prune_generations(root, {first})
    assert first.is_dir()
    env = {"GIT_OBJECT_DIRECTORY": str(again)}
    assert "PURGED-SECRET" not in main.out("cat-file", "--batch-all-objects", "--batch", env=env)
    assert "no secret" in main.out("cat-file", "--batch-all-objects", "--batch", env=env)
    seen_objects.prune_generations(root, set())  # no sandbox reads it any more
    assert not first.exists() and again.is_dir()
    assert seen_objects.publish(main, objects, root)[0] == again  # in step: no new generation


def test_a_partial_clone_s_missing_objects_stay_missing_and_nothing_fails(repo: Path, tmp_path: Path) -> None:
    """A blobless clone (`--filter=blob:none`, usual for a monorepo) lacks blobs by design."""
    (repo / "big.bin").write_text("a large file the clone never fetched\n")
    git(repo, "add", "big.bin")
    git(repo, "commit", "-qm", "big")
    blob = git(repo, "rev-parse", "HEAD:big.bin")
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    store, _ = seen_objects.publish(Git(repo), repo / ".git" / "objects", tmp_path / "published")
    shown = Git(repo).out("cat-file", "--batch-all-objects", "--batch-check", env={"GIT_OBJECT_DIRECTORY": str(store)})
    assert git(repo, "rev-parse", "HEAD") in shown and blob not in shown


def test_a_larger_history_gets_longer_to_pack(tmp_path: Path) -> None:
    """A monorepo's first pack (tens of GiB) outlasted a fixed 10 minutes: every start of it failed."""
    pack = tmp_path / "objects" / "pack"
    pack.mkdir(parents=True)
    assert seen_objects.pack_timeout(tmp_path / "objects") == seen_objects.PACK_TIMEOUT_S
    with open(pack / "pack-big.pack", "wb") as big:
        big.truncate(40 << 30)  # sparse: its size is what counts
    assert seen_objects.pack_timeout(tmp_path / "objects") == seen_objects.PACK_TIMEOUT_S + 2048
