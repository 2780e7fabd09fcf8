"""Claims and conflicts on the real sample billing repo: refusals, warnings, races, leases."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import pytest

from loomtui.coordination.claims import ClaimRefused, Coordinator, claim_targets
from loomtui.coordination.regions import overlaps
from loomtui.coordination.suggest import suggest_regions
from loomtui.errors import LoomError
from loomtui.governance.coordinator import governed_coordinator
from loomtui.store import SandboxRecord
from loomtui.workspace import open_workspace
from tests.conftest import demo_repo, git, run_cli

QUOTE = "payments/refunds.py::RefundService.quote"
SERVICE = "payments/refunds.py::RefundService"
ROUNDING = "payments/currency.py::round_minor_units"


@pytest.fixture(scope="module")
def billing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_repo(tmp_path_factory.mktemp("billing"))


@pytest.fixture
def coordinator(billing: Path, tmp_path: Path) -> Coordinator:
    # A fresh copy per test so claims never leak between tests.
    repo = tmp_path / "billing"
    git(tmp_path, "clone", "-q", str(billing), str(repo))
    return governed_coordinator(open_workspace(repo))


def actions(coordinator: Coordinator) -> list[str]:
    return [e.action for e in coordinator.workspace.audit.entries()]


def test_same_region_exclusive_twice_is_refused_and_audited(coordinator: Coordinator) -> None:
    coordinator.claim("a", QUOTE, reason="partial refunds")
    with pytest.raises(ClaimRefused) as refused:
        coordinator.claim("b", QUOTE)
    conflict = refused.value.conflicts[0]
    assert (conflict.kind, conflict.severity, conflict.sandbox_b) == ("overlap", "error", "a")
    assert refused.value.exit_code == 1
    assert actions(coordinator) == ["claim.added", "claim.refused"]
    assert [c.sandbox_id for c in coordinator.store.live_claims()] == ["a"]


def test_one_held_claim_named_many_ways_is_one_conflict_kept_off(coordinator: Coordinator) -> None:
    """An agent asking for the code another holds 45 ways (`payments/*.py`, the file, line ranges 1-11 to 1-49)
    made the week's "conflicts prevented" 47: a refusal is counted by the claims it collided with."""
    from loomtui.observability.metrics import compute_metrics

    coordinator.claim("a", QUOTE, reason="partial refunds")
    for target in ("payments/refunds.py", "payments/*.py", QUOTE, SERVICE, "payments/refunds.py:1-40"):
        with pytest.raises(ClaimRefused):
            coordinator.claim("b", target)
    coordinator.claim("a", ROUNDING)
    with pytest.raises(ClaimRefused):
        coordinator.claim("b", ROUNDING)  # another claim of a's: another conflict kept off
    with pytest.raises(ClaimRefused):
        coordinator.claim("b", "payments/*.py")  # both of them at once: nothing new (each subset counted once)
    with pytest.raises(ClaimRefused):
        coordinator.claim("c", QUOTE)  # and another sandbox's
    conflicts = compute_metrics(coordinator.workspace, time.time() - 3600).conflicts
    assert (conflicts.claims_refused, conflicts.prevented) == (3, 3)


def test_nested_regions_overlap_both_ways(coordinator: Coordinator) -> None:
    coordinator.claim("a", QUOTE)
    with pytest.raises(ClaimRefused, match="nested"):
        coordinator.claim("b", SERVICE)
    with pytest.raises(ClaimRefused):
        coordinator.claim("b", "payments/refunds.py")


def test_a_line_range_of_a_file_swapped_for_a_fifo_is_an_error_not_a_hang(coordinator: Coordinator) -> None:
    """The broker resolves an edit's lines after the index looked at the file: a FIFO an agent swapped in then hung
    its reader, and with it every later hook and the agent's end, for good."""
    import os
    import threading

    refunds = coordinator.index.root / "payments" / "refunds.py"
    refunds.unlink()
    os.mkfifo(refunds)
    answers: list[object] = []

    def resolve() -> None:
        try:
            answers.append(coordinator.resolve("payments/refunds.py:1-3"))
        except Exception as exc:  # noqa: BLE001 - what it said, whatever it was
            answers.append(exc)

    reading = threading.Thread(target=resolve, daemon=True)
    reading.start()
    reading.join(20)
    assert not reading.is_alive() and answers, answers


def test_a_claim_over_a_region_another_sandbox_added_on_its_branch_is_refused(coordinator: Coordinator) -> None:
    """A function that exists only on a sandbox's branch (claimed by its commit) is in no index here: a claim on
    its file, or its class, was granted over it, and `conflicts` then said the two overlap."""
    import time

    store = coordinator.workspace.store
    store.add_claim("a", "payments/refunds.py::brand_new", "exclusive", "claimed by commit of payments/refunds.py",
                    time.time() + 3600, ["payments/refunds.py::brand_new"])
    store.add_claim("a", "payments/refunds.py::RefundService.added", "exclusive", "claimed by commit",
                    time.time() + 3600, ["payments/refunds.py::RefundService.added"])
    with pytest.raises(ClaimRefused, match=r"held by sandbox a .*\(nested in payments/refunds.py\)"):
        coordinator.claim("b", "payments/refunds.py")
    with pytest.raises(ClaimRefused, match="RefundService.added"):
        coordinator.claim("b", "payments/refunds.py::RefundService")
    coordinator.claim("b", "payments/invoices.py")  # another file: free


def test_shared_claims_coexist_and_shared_vs_exclusive_warns(coordinator: Coordinator) -> None:
    coordinator.claim("a", QUOTE, mode="shared")
    assert coordinator.claim("b", QUOTE, mode="shared").conflicts == []
    result = coordinator.claim("c", SERVICE)
    assert {c.kind for c in result.conflicts} == {"shared-vs-exclusive"}
    assert all(not c.blocking for c in result.conflicts)


def test_dependency_through_the_graph_warns_with_the_path(coordinator: Coordinator) -> None:
    coordinator.claim("refunds", QUOTE)
    result = coordinator.claim("rounding", ROUNDING)
    assert [(c.kind, c.severity) for c in result.conflicts] == [("dependency", "warning")]
    conflict = result.conflicts[0]
    assert conflict.path == (ROUNDING, QUOTE)
    assert conflict.explanation.rsplit(": ", 1)[1] == f"{ROUNDING} <-references- {QUOTE}"  # the path, exactly
    assert [c.kind for c in coordinator.conflicts()] == ["dependency"]


def test_sandbox_new_with_a_claim_flags_a_dependency_on_code_another_holds(coordinator: Coordinator) -> None:
    """`claim add` and the app's form flagged a claim on code another sandbox's claim depends on; `sandbox new
    --claim` said nothing, though that is when coordination flags a collision: before any code is written."""
    coordinator.claim("refunds", QUOTE)
    root = coordinator.workspace.root
    made = run_cli(root, "sandbox", "new", "--runtime", "command", "--task", "round better", "--claim", ROUNDING,
                   "--no-start", "--json", "--", "true")
    assert made.returncode == 0, made.stderr
    [conflict] = json.loads(made.stdout)["conflicts"]
    assert (conflict["kind"], conflict["severity"]) == ("dependency", "warning")
    # Said from the new sandbox's side, as `claim add` says it (it read as the older claim's).
    assert (conflict["a"]["sandbox"], conflict["b"]["sandbox"]) == (json.loads(made.stdout)["id"], "refunds")
    assert "warning: dependency: " in made.stderr and f"{ROUNDING} <-references- {QUOTE}" in made.stderr, made.stderr
    plain = run_cli(root, "sandbox", "new", "--runtime", "command", "--task", "quote", "--claim",
                    "notifications/formatting.py", "--no-start", "--", "true")
    assert plain.returncode == 0 and "warning: dependency" not in plain.stderr, plain.stderr


def test_no_dependency_warning_with_zero_hops(coordinator: Coordinator) -> None:
    coordinator.hops = 0
    coordinator.claim("refunds", QUOTE)
    assert coordinator.claim("rounding", ROUNDING).conflicts == []


def test_module_claim_covers_its_functions_for_dependencies(coordinator: Coordinator) -> None:
    coordinator.claim("refunds", QUOTE)
    result = coordinator.claim("rounding", "payments/currency.py")
    assert any(c.kind == "dependency" and c.region_a == ROUNDING for c in result.conflicts)


def test_signature_change_raises_dependency_severity(coordinator: Coordinator) -> None:
    coordinator.claim("refunds", QUOTE)
    coordinator.claim("rounding", ROUNDING)
    [conflict] = coordinator.conflicts(signature_changed=[ROUNDING])
    assert conflict.severity == "high" and "signature" in conflict.explanation


def test_a_region_held_by_a_failed_run_says_how_to_let_it_go(coordinator: Coordinator) -> None:
    """A run that failed at once (no login) keeps its claims for a run again, an hour: the next task was refused
    "held by sandbox a", nothing said of why it still was."""
    coordinator.claim("a", QUOTE)
    head = git(coordinator.workspace.root, "rev-parse", "HEAD")
    git(coordinator.workspace.root, "branch", "loom/a")
    coordinator.store.add_sandbox(SandboxRecord(id="a", task="t", runtime="claude", status="running", created=1.0,
                                                updated=1.0, branch="loom/a", data={"base_sha": head}))
    with pytest.raises(ClaimRefused) as running:
        coordinator.claim("b", QUOTE)
    assert "failed" not in str(running.value)
    coordinator.store.update_sandbox("a", status="failed")
    with pytest.raises(ClaimRefused) as failed:
        coordinator.claim("b", QUOTE)
    assert str(failed.value).endswith(
        "; its agent failed without a change and it keeps its claims for a run again: `loomtui sandbox rm a` or "
        "`loomtui claim release --sandbox a --all` (with `--override REASON` if someone else started it) lets them "
        "go"), failed.value
    # `sandbox new` adds how to go on: not the same advice twice in one line (a newcomer's first refusal).
    from loomtui.workflow.tasks import refused_claims_hint

    failed.value.recorded_sandbox = "b"  # type: ignore[attr-defined]
    hint = refused_claims_hint(coordinator.workspace, failed.value)
    assert hint == "; `loomtui sandbox rm b` drops this record", hint
    # One that failed with a change is reviewed as it is: not a run again, nor a removal, to advise.
    git(coordinator.workspace.root, "commit", "-q", "--allow-empty", "-m", "half done")
    git(coordinator.workspace.root, "branch", "-f", "loom/a", "HEAD")
    with pytest.raises(ClaimRefused) as reviewed:
        coordinator.claim("b", QUOTE)
    assert "failed" not in str(reviewed.value), reviewed.value


def test_override_needs_a_reason_permission_and_is_recorded(coordinator: Coordinator) -> None:
    coordinator.claim("a", QUOTE)
    with pytest.raises(LoomError, match="needs a reason"):
        coordinator.claim("b", QUOTE, override_reason=" ")
    with pytest.raises(LoomError, match="needs a reason"):
        coordinator.claim("b", QUOTE, override_reason="\u200b\u2060")  # invisible: no reason either
    with pytest.raises(LoomError, match="needs a reason"):
        coordinator.claim("b", QUOTE, override_reason=" \u0301\u20dd")  # accents on nothing: none either
    coordinator.workspace.actor = "carol@example.com"  # not in the policy's override groups
    with pytest.raises(ClaimRefused, match="may not override"):
        coordinator.claim("b", QUOTE, override_reason="I want it")
    coordinator.workspace.actor = "lead@example.com"  # leads may override in the sample policy
    result = coordinator.claim("b", QUOTE, override_reason="hotfix agreed with a")
    assert result.overridden
    assert actions(coordinator)[-2:] == ["claim.override", "claim.added"]
    [escalation] = coordinator.store.list_escalations()
    assert escalation.kind == "conflict-override" and escalation.data["reason"] == "hotfix agreed with a"


def test_releasing_another_sandboxs_claim_is_an_override_so_it_cannot_get_around_one(
        coordinator: Coordinator) -> None:
    held = coordinator.claim("a", QUOTE).claim
    with pytest.raises(LoomError, match=f"claim #{held.id} is held by sandbox a, not b: .* an override"):
        coordinator.release_held(held.id, "b")
    coordinator.workspace.actor = "carol@example.com"  # refused an override of the claim, so refused this
    with pytest.raises(LoomError, match="may not override"):
        coordinator.release_held(held.id, "b", override_reason="mine now")
    assert coordinator.store.get_claim(held.id).released is None  # type: ignore[union-attr]
    coordinator.workspace.actor = "lead@example.com"
    assert coordinator.release_held(held.id, "b", override_reason="a is stuck") == held
    released = coordinator.store.get_claim(held.id)
    assert released is not None and released.release_reason == (
        "override by lead@example.com for sandbox b: a is stuck")
    own = coordinator.claim("b", QUOTE).claim
    assert coordinator.release_held(own.id, "b") == own and coordinator.release_held(own.id, "b") is None
    # Released already, by anyone's name: already released, not "held by sandbox b, not nope" (held by none).
    assert coordinator.release_held(own.id, "nope") is None


def test_claim_release_from_the_command_line_says_what_it_released_and_refuses_anothers(
        coordinator: Coordinator) -> None:
    repo = coordinator.workspace.root
    held = run_cli(repo, "claim", "add", "--sandbox", "alice-task", "payments/refunds.py")
    claim_id = held.stdout.split()[1].lstrip("#")
    refused = run_cli(repo, "claim", "release", claim_id, "--sandbox", "mallory-task", user="mallory@example.com")
    assert refused.returncode == 1 and refused.stdout == ""  # refused, as the README's exit codes say
    assert f"claim #{claim_id} is held by sandbox alice-task, not mallory-task" in refused.stderr
    forced = run_cli(repo, "claim", "release", claim_id, "--sandbox", "mallory-task", "--override", "mine now",
                     user="mallory@example.com")
    assert forced.returncode == 1 and "mallory@example.com may not override" in forced.stderr
    unexplained = run_cli(repo, "claim", "release", claim_id, "--sandbox", "mallory-task", "--override", " ")
    assert unexplained.returncode == 2 and "an override needs a reason" in unexplained.stderr  # an input error
    done = run_cli(repo, "claim", "release", claim_id, "--sandbox", "alice-task")
    assert (done.returncode, done.stdout) == (0, f"released claim #{claim_id} on payments/refunds.py "
                                                 "(sandbox alice-task)\n")


def test_a_task_refused_at_its_claims_tells_a_json_script_which_sandbox_was_kept(coordinator: Coordinator) -> None:
    repo = coordinator.workspace.root
    run_cli(repo, "claim", "add", "--sandbox", "alice-task", "payments/refunds.py")
    done = run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "refunds too", "--json",
                   "--claim", "payments/refunds.py", "--", "true")
    said = json.loads(done.stdout)
    assert done.returncode == 1 and said["status"] == "rejected" and "refused" in said["error"]
    assert done.stderr.startswith("loomtui: error: ") and "refused" in done.stderr  # said as every error is
    assert coordinator.store.get_sandbox(said["id"]).status == "rejected"  # type: ignore[union-attr]
    plain = run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "again", "--claim",
                    "payments/refunds.py", "--", "true")
    assert plain.returncode == 1 and plain.stdout == "" and "refused" in plain.stderr  # one line, as before
    # Naming the record it keeps: `sandbox list` shows a rejected sandbox the line never named before.
    [kept] = [s.id for s in coordinator.store.list_sandboxes() if s.task == "again"]
    assert plain.stderr.startswith(f"loomtui: error: sandbox {kept} rejected: claim on payments/refunds.py refused")
    assert plain.stderr.count("\n") == 1
    assert "--after" not in plain.stderr  # held by a name, not a sandbox: nothing to wait for, but what frees it
    assert "alice-task is no sandbox but a person's or an outside agent's name: `loomtui claim release --all " \
           "--sandbox alice-task` lets its claims go" in plain.stderr
    # Held by a sandbox: how to run it once that one has merged, and how to drop the record.
    holder = json.loads(run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "holder", "--no-start",
                                "--json", "--claim", "payments/ledger.py", "--", "true").stdout)["id"]
    waiting = run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "ledger too", "--claim",
                      "payments/ledger.py", "--", "true")
    [later] = [s.id for s in coordinator.store.list_sandboxes() if s.task == "ledger too"]
    assert waiting.returncode == 1 and waiting.stderr.rstrip().endswith(
        f"to start it once {holder} merged, run it again with --after {holder} (`loomtui sandbox rm {later}` "
        "drops this record)"), waiting.stderr
    # refunds.py uses the ledger the holder holds: a warning beside the refusal, not what to wait for.
    beside = run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "refunds again", "--claim",
                     "payments/refunds.py", "--", "true")
    assert beside.returncode == 1 and f"--after {holder}" not in beside.stderr, beside.stderr
    assert "--sandbox alice-task` lets its claims go" in beside.stderr
    # A holder nothing moves on (the command that stated it killed): waiting on it would wait for good.
    docs = json.loads(run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "docs", "--no-start",
                              "--json", "--claim", "docs/runbook.md", "--", "true").stdout)["id"]
    coordinator.store.update_sandbox(docs, data={"autostart": True})
    stalled = run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "docs too", "--claim",
                      "docs/runbook.md", "--", "true")
    assert f"nothing is moving {docs} on (" in stalled.stderr and f"`loomtui sandbox advance {docs}` does" \
        in stalled.stderr and "--after" not in stalled.stderr, stalled.stderr
    # One that failed keeps its claims for a run again: `--after` it was held at once, for good.
    coordinator.store.update_sandbox(docs, status="failed")
    failed = run_cli(repo, "sandbox", "new", "--runtime", "command", "--task", "docs three", "--claim",
                     "docs/runbook.md", "--", "true")
    assert f"its agent failed without a change and it keeps its claims for a run again: `loomtui sandbox rm " \
           f"{docs}`" in failed.stderr and "--after" not in failed.stderr, failed.stderr
    assert failed.stderr.count(f"`loomtui sandbox rm {docs}`") == 1, failed.stderr  # said once, not twice
    removed = run_cli(repo, "sandbox", "rm", kept)
    assert removed.returncode == 0 and removed.stdout == f"removed sandbox {kept}; branch loom/{kept} never made\n"


def test_a_region_of_a_file_not_parsed_says_why_it_has_none(repo: Path) -> None:
    """`syntax.py::ok` said "unknown region (did you mean syntax.py?)", not that the file has a syntax error."""
    (repo / "syntax.py").write_text("def ok(:\n    pass\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "broken")
    with pytest.raises(LoomError, match=r"^unknown region syntax\.py::ok: syntax\.py is not parsed \(syntax error "
                                        r"at line 1: .*\), so it has no regions: claim the file whole$"):
        governed_coordinator(open_workspace(repo)).claim("a", "syntax.py::ok")


def test_claim_list_of_a_name_that_is_no_sandbox_and_holds_nothing_says_so(coordinator: Coordinator) -> None:
    """`claim list --sandbox TYPO` said "no live claims", as of a sandbox that holds none."""
    listed = run_cli(coordinator.workspace.root, "claim", "list", "--sandbox", "nosuch")
    assert listed.returncode == 0 and listed.stdout == "no live claims\n"
    assert listed.stderr == "note: no sandbox is nosuch; nothing is held under that name either\n"


def test_a_long_task_kept_as_its_claims_reason_says_it_was_cut(coordinator: Coordinator) -> None:
    """The claims view showed "(... and on and on to t)": the task cut at 200 characters with no mark."""
    root = coordinator.workspace.root
    task = "route the refunds " + "and on " * 40 + "to the end"
    made = run_cli(root, "sandbox", "new", "--runtime", "command", "--task", task, "--claim", "docs/runbook.md",
                   "--no-start", "--json", "--", "true")
    [claim] = coordinator.store.live_claims(json.loads(made.stdout)["id"])
    assert len(claim.reason) <= 200 and claim.reason.endswith("…") and task.startswith(claim.reason[:-1])


def test_the_definitions_of_one_name_are_one_region_to_claims(repo: Path) -> None:
    """With `@overload`, a claim on `Engine.run` held the first stub alone: the implementation (`run#3`) was
    free to another sandbox, a caller's claim heard of neither (its edge led to the stub), and one more
    overload renumbered them under a claim."""
    (repo / "core.py").write_text(
        "from typing import overload\n\n\nclass Engine:\n    @overload\n    def run(self, x: int) -> int: ...\n"
        "    @overload\n    def run(self, x: str) -> str: ...\n    def run(self, x):\n        return x\n")
    (repo / "models.py").write_text("from core import Engine\n\n\nclass Model(Engine):\n    def go(self):\n"
                                    "        return self.run(1)\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "overloads")
    coordinator = governed_coordinator(open_workspace(repo))
    assert coordinator.claim("a", "core.py::Engine.run").claim.region_ids == ("core.py::Engine.run",)
    with pytest.raises(ClaimRefused) as refused:
        coordinator.claim("b", "core.py:9-10")  # the implementation
    assert str(refused.value).endswith("core.py::Engine.run#3 is held by sandbox a (claim #1, exclusive): "
                                       "core.py::Engine.run (one name, defined again)"), str(refused.value)
    coordinator.release_sandbox("a")
    assert coordinator.claim("b", "core.py::Engine.run#3").claim
    from loomtui.coordination.regions import overlaps

    assert not overlaps("data/case#1.json", "data/case#2.json")  # a `#` in a file's name is its own
    caller = coordinator.claim("c", "models.py::Model.go")
    assert [(c.kind, c.sandbox_b) for c in caller.conflicts] == [("dependency", "b")], caller.conflicts


def test_a_constructor_is_near_the_code_that_calls_its_class(repo: Path) -> None:
    """`Engine()` is an edge to `Engine`, never to `Engine.__init__`: a change to the constructor and a caller's
    were never flagged, either way round (in `requests`: `Session.request` and `Request.__init__`)."""
    (repo / "core.py").write_text("class Engine:\n    def __init__(self):\n        self.a = 1\n")
    (repo / "app.py").write_text("from core import Engine\n\n\ndef main():\n    return Engine()\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a constructor")
    coordinator = governed_coordinator(open_workspace(repo))
    coordinator.claim("m1", "app.py::main")
    built = coordinator.claim("m2", "core.py::Engine.__init__")
    assert [(c.kind, c.region_b) for c in built.conflicts] == [("dependency", "app.py::main")], built.conflicts
    coordinator.release_sandbox("m1")
    caller = coordinator.claim("m1", "app.py::main")
    assert [(c.kind, c.region_b) for c in caller.conflicts] == [("dependency", "core.py::Engine.__init__")]


def test_lease_expiry_and_ended_sandboxes_release_with_audit(coordinator: Coordinator) -> None:
    store = coordinator.store
    short = coordinator.claim("a", QUOTE, ttl=60).claim
    now = time.time()
    store.add_sandbox(SandboxRecord(id="done", task="t", runtime="script", status="running",
                                    created=now, updated=now))
    ended = coordinator.claim("done", ROUNDING).claim
    store.update_sandbox("done", status="exited")
    assert coordinator.release_stale() == []  # exited, awaiting review: its claims hold
    store.update_sandbox("done", status="merged")
    released = {c.id for c in coordinator.release_stale(now=time.time() + 120)}
    assert released == {short.id, ended.id}
    assert store.live_claims() == []
    reasons = {e.details["reason"] for e in coordinator.workspace.audit.entries() if e.action == "claim.expired"}
    assert reasons == {"lease expired", "sandbox ended"}
    coordinator.claim("b", QUOTE)  # free again
    # An ended sandbox claims nothing: the claim would be listed as live, then dropped at the next write.
    count = len(list(coordinator.workspace.audit.entries()))
    with pytest.raises(LoomError, match="sandbox done is merged: an ended sandbox claims nothing") as refused:
        coordinator.claim("done", ROUNDING)
    assert refused.value.exit_code == 1 and [c.sandbox_id for c in store.live_claims()] == ["b"]
    assert len(list(coordinator.workspace.audit.entries())) == count
    with pytest.raises(LoomError, match=r"is not a sandbox id \(letters, digits, \. _ -; at most 64\)") as long:
        coordinator.claim("x" * 100_000, ROUNDING)
    assert len(str(long.value)) < 400  # the id is cut, not echoed whole


def test_renew_and_release(coordinator: Coordinator) -> None:
    claim = coordinator.claim("a", QUOTE, ttl=10).claim
    assert coordinator.renew(claim.id, ttl=1000).expires > claim.expires + 900
    assert coordinator.release(claim.id) is True
    assert coordinator.release(claim.id) is False
    with pytest.raises(LoomError, match="not live"):
        coordinator.renew(claim.id)


def test_an_expired_lease_is_not_renewed_back_to_life(coordinator: Coordinator) -> None:
    """Once its lease ran out the region was anyone's: a renewal then would take it back unasked."""
    claim = coordinator.claim("a", QUOTE, ttl=10).claim
    coordinator.store.renew_claim(claim.id, time.time() - 5)  # ran out; no write has swept it yet
    listed = json.loads(run_cli(coordinator.workspace.root, "claim", "list", "--json").stdout)
    assert [(c["id"], c["expired"]) for c in listed] == [(claim.id, True)]
    with pytest.raises(LoomError, match=f"claim #{claim.id} expired 5s ago and is released: claim {QUOTE} again"):
        coordinator.renew(claim.id)
    assert coordinator.store.live_claims() == []
    assert "claim.expired" in actions(coordinator) and "claim.renewed" not in actions(coordinator)
    coordinator.claim("b", QUOTE)  # free for anyone


def test_targets_resolve_to_regions(coordinator: Coordinator) -> None:
    assert coordinator.resolve(QUOTE) == [QUOTE]
    assert coordinator.resolve("payments/refunds.py") == ["payments/refunds.py"]
    assert "payments/currency.py" in coordinator.resolve("payments/")
    everything = coordinator.resolve(".")  # the repository itself: every file (it said "no file in that directory")
    assert everything == coordinator.resolve(str(coordinator.index.root)) == sorted(coordinator.targets.repo_files())
    assert "payments/currency.py" in everything and "README.md" in everything
    assert coordinator.resolve("payments/c*.py") == ["payments/currency.py"]
    assert coordinator.resolve("notifications/templates/refund_issued.txt") == [
        "notifications/templates/refund_issued.txt"]
    templates = coordinator.resolve("notifications/templates/*.txt")
    assert "notifications/templates/refund_issued.txt" in templates and len(templates) >= 3
    assert "notifications/templates/invoice_issued.txt" in coordinator.resolve("notifications/templates")
    quote = coordinator.index.regions[QUOTE]
    assert coordinator.resolve(f"payments/refunds.py:{quote.start + 1}-{quote.end}") == [QUOTE]


@pytest.mark.parametrize(("target", "message"), [
    ("payments/refunds.py::RefundService.qoute", "did you mean payments/refunds.py::RefundService.quote"),
    ("../outside.py", "may not leave the repository"),
    ("/etc/passwd", "outside the repository"),
    ("nope/*.py", "matches no file in the repository"),
    ("missing.py", "no such file"),
    ("payments/refunds.py:40-10", "ends before it starts"),
])
def test_bad_targets_are_one_clear_error(coordinator: Coordinator, target: str, message: str) -> None:
    with pytest.raises(LoomError, match=message.replace(".", r"\.").replace("*", r"\*")):
        coordinator.claim("a", target)


def _race(repo: str, sandbox: str, barrier: multiprocessing.synchronize.Barrier,
          results: multiprocessing.queues.Queue[str]) -> None:
    coordinator = governed_coordinator(open_workspace(repo))
    barrier.wait()
    try:
        coordinator.claim(sandbox, QUOTE)
        results.put(f"won:{sandbox}")
    except ClaimRefused:
        results.put(f"refused:{sandbox}")


def test_racing_exclusive_claims_across_processes_exactly_one_wins(coordinator: Coordinator) -> None:
    context = multiprocessing.get_context("fork")
    racers = 8
    barrier = context.Barrier(racers)
    results: multiprocessing.queues.Queue[str] = context.Queue()
    procs = [context.Process(target=_race, args=(str(coordinator.workspace.root), f"s{n}", barrier, results))
             for n in range(racers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert sum(o.startswith("won:") for o in outcomes) == 1
    assert len(coordinator.store.live_claims()) == 1
    assert coordinator.workspace.audit.verify().ok


def test_claim_targets_is_all_or_nothing(coordinator: Coordinator) -> None:
    coordinator.claim("a", ROUNDING)
    with pytest.raises(ClaimRefused):
        claim_targets(coordinator, "b", [QUOTE, ROUNDING])
    assert [c.sandbox_id for c in coordinator.store.live_claims()] == ["a"]


def test_check_edit_allows_claims_and_denies(coordinator: Coordinator) -> None:
    quote = coordinator.index.regions[QUOTE]
    coordinator.claim("a", QUOTE)
    assert coordinator.check_edit("a", "payments/refunds.py", (quote.start + 1, quote.start + 2)).verdict == "allow"
    denied = coordinator.check_edit("b", "payments/refunds.py", (quote.start + 1, quote.start + 1))
    assert denied.verdict == "deny" and "sandbox a" in denied.reason
    rounding = coordinator.index.regions[ROUNDING]
    granted = coordinator.check_edit("b", "payments/currency.py", (rounding.start, rounding.start))
    assert granted.verdict == "claim" and ROUNDING in granted.reason
    assert coordinator.check_edit("b", "docs/new-page.md").verdict == "claim"


def test_suggestions_rank_the_right_regions(coordinator: Coordinator) -> None:
    top = [s.region.id for s in suggest_regions(coordinator.index, "refactor the currency rounding helper", 3)]
    assert ROUNDING in top
    top = [s.region.id for s in suggest_regions(coordinator.index, "speed up invoice totals", 3)]
    assert "payments/invoices.py::invoice_total" in top
    assert suggest_regions(coordinator.index, "the and of", 3) == []
    # The region a task names comes near the top, with no file, class and every method of it around it.
    found = [s.region.id for s in suggest_regions(coordinator.index, "Make refund quotes round half-even", 8)]
    assert QUOTE in found[:3], found
    assert not any(a != b and overlaps(a, b) for a in found for b in found), found
    assert not found[0].startswith("tests/")  # a test's long name is not where the task starts
    if any(region.startswith("tests/") for region in coordinator.index.regions):  # unless it is about tests
        tests = [s.region.id for s in suggest_regions(coordinator.index, "fix the flaky partial refund test", 3)]
        assert tests[0].startswith("tests/"), tests


def test_diff_to_regions_marks_signature_changes_and_unclaimed_edits(coordinator: Coordinator) -> None:
    from loomtui.coordination.diff import diff_regions

    root = coordinator.workspace.root
    source = (root / "payments/currency.py").read_text()
    old_def = "def round_minor_units(amount: AmountLike, currency: str) -> Decimal:"
    assert old_def in source
    source = source.replace(old_def, old_def.replace("currency: str)", "currency: str, mode: str = 'even')"))
    (root / "payments/currency.py").write_text(source)
    refunds = (root / "payments/refunds.py").read_text()
    quote = coordinator.index.regions[QUOTE]
    lines = refunds.splitlines(keepends=True)
    lines[quote.end - 1] = lines[quote.end - 1].rstrip("\n") + "  # touched\n"
    (root / "payments/refunds.py").write_text("".join(lines))
    claim = coordinator.claim("a", ROUNDING).claim
    changes = {c.region_id: c for c in diff_regions(root, "HEAD", claims=[claim])}
    assert changes[ROUNDING].signature_changed and changes[ROUNDING].claimed
    assert changes[QUOTE].change == "modified" and not changes[QUOTE].signature_changed
    assert changes[QUOTE].claimed is False
    with pytest.raises(LoomError):
        diff_regions(root, "no-such-ref")
    # Between commits too, a file become a directory beside it (its tree read mid-batch shifted every later text:
    # the signature change went unseen), and a new file named like a header ("notes blob" crashed the review).
    base = git(root, "rev-parse", "HEAD").strip()
    (root / "docs" / "runbook.md").unlink()
    (root / "docs" / "runbook.md").mkdir()
    (root / "docs" / "runbook.md" / "x.txt").write_text("moved\n")
    (root / "notes blob").write_text("n\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "a file become a directory")
    head = git(root, "rev-parse", "HEAD").strip()
    committed = {c.region_id: c for c in diff_regions(root, base, head)}
    assert committed[ROUNDING].signature_changed and committed["notes blob"].change == "added", committed
    assert committed["docs/runbook.md"].change == "removed" and committed["docs/runbook.md/x.txt"].change == "added"


@pytest.mark.parametrize("deep", ["x = " + "[" * 3000 + "]" * 3000 + "\n",  # refused by Python's parser
                                  "x = " + "+".join(["1"] * 10_000) + "\n",  # too deep for its AST
                                  # Flat in Python's tree, nested in libcst's: 60 KB crashed it all again.
                                  "x = " + " and ".join(["1"] * 10_000) + "\n",
                                  "import " + ".".join(["a"] * 10_000) + "\n",
                                  "from " + ".".join(["a"] * 10_000) + " import x\n"],
                         ids=["brackets", "sum", "and-chain", "dotted-import", "dotted-from"])
def test_code_nested_too_deep_for_libcst_is_a_whole_file_change_not_a_crash(deep: str) -> None:
    """An agent's file of nested brackets made libcst's native parser overflow the C stack: the app,
    `conflicts` and every review that read the diff died with SIGSEGV, the sandbox stuck in gating."""
    import subprocess
    import sys

    probe = ("import sys\nfrom loomtui.coordination.signatures import changed_regions\n"
             "changes = changed_regions('def f():\\n    return 1\\n', sys.stdin.read(), 'deep.py')\n"
             "print(sorted((c.region_id, c.change) for c in changes))\n")
    # In a process of its own: a regression is a crash, which must not take the test runner with it.
    done = subprocess.run([sys.executable, "-c", probe], input=deep, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert "deep.py" in done.stdout


def test_a_python_file_too_large_to_parse_quickly_is_a_whole_file_change() -> None:
    """libcst took 9 s of the review (and of the commit check an agent waits on) for a 600 KB dict."""
    from loomtui.coordination.signatures import MAX_LIBCST_BYTES, changed_regions

    large = "x = {" + ",".join(["1: 1"] * (MAX_LIBCST_BYTES // 5)) + "}\n"
    changes = changed_regions("def f():\n    return 1\n", large, "large.py")
    assert [(c.region_id, c.change, c.signature_changed) for c in changes] == [("large.py", "modified", True)]
    assert changed_regions("def f():\n    return 1\n", "def f():\n    return 2\n", "small.py")[0].region_id == "small.py::f"
    wide = "x = '" + "€" * (MAX_LIBCST_BYTES // 2) + "'\n"  # fewer characters than the limit, three times the bytes
    assert [c.region_id for c in changed_regions("def f():\n    return 1\n", wide, "wide.py")] == ["wide.py"]


def test_a_file_of_too_many_nodes_and_files_past_one_changes_budget_are_whole_file_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """libcst holds some 3.5 KB a node: 500 KB of `a[1],` under the byte limit took 1.8 GB and minutes under
    load, and eight such files in one commit check held the broker (and the claim sweeper) for 203 s."""
    from loomtui.coordination import signatures
    from loomtui.governance.hooks.gate import _staged_regions

    before = "def f():\n    return 1\n"
    flat = "x = [" + "a," * 30_001 + "]\n"  # 180 KB, 60,000 nodes and more: a Name and its Load each
    assert len(flat) < signatures.MAX_LIBCST_BYTES
    assert [c.region_id for c in signatures.changed_regions(before, flat, "flat.py")] == ["flat.py"]
    budget = signatures.ParseBudget(nodes=12)  # both sides of one small file (5 nodes each), not of two
    assert [c.region_id for c in signatures.changed_regions(before, "def f():\n    return 2\n", "a.py", budget)] \
        == ["a.py::f"]
    assert [c.region_id for c in signatures.changed_regions(before, "def f():\n    return 2\n", "b.py", budget)] \
        == ["b.py"]
    # The broker's commit check shares one budget among the request's files.
    monkeypatch.setattr(signatures, "LIBCST_NODES_PER_CHANGE", 12)
    files = [{"path": f"{name}.py", "old": before, "new": "def f():\n    return 2\n"} for name in "ab"]
    assert _staged_regions(files) == ["a.py::f", "b.py"]


def test_cutting_off_a_refusal_from_the_audit_log_is_detected(coordinator: Coordinator) -> None:
    coordinator.claim("a", QUOTE)
    with pytest.raises(ClaimRefused):
        coordinator.claim("b", QUOTE)
    log = coordinator.workspace.audit
    assert actions(coordinator) == ["claim.added", "claim.refused"]
    log.path.write_bytes(log.path.read_bytes().splitlines(keepends=True)[0])
    assert not log.verify().ok


def test_a_refused_claim_leaves_no_added_entry_and_claim_ids_match_the_store(coordinator: Coordinator) -> None:
    """All or nothing, in the log too: the rolled-back target of a refused claim is not logged."""
    coordinator.claim("a", ROUNDING)
    with pytest.raises(ClaimRefused):
        claim_targets(coordinator, "b", [QUOTE, ROUNDING])
    assert actions(coordinator) == ["claim.added", "claim.refused"]
    after = coordinator.claim("c", QUOTE).claim
    added = [e for e in coordinator.workspace.audit.entries() if e.action == "claim.added"]
    assert [(e.subject, e.details["claim"]) for e in added] == [("a", 1), ("c", after.id)]
    assert {c.id: c.sandbox_id for c in coordinator.store.live_claims()} == {1: "a", after.id: "c"}
    assert coordinator.workspace.audit.verify().ok


def test_an_expired_lease_is_released_once_even_when_a_refusal_rolls_it_back(coordinator: Coordinator) -> None:
    coordinator.claim("b", ROUNDING)
    # The short lease is taken last: any claim made after it expires would release it first (on a loaded
    # machine, b's claim took longer than the lease and did).
    short = coordinator.claim("a", QUOTE, ttl=0.05).claim
    time.sleep(0.1)
    with pytest.raises(ClaimRefused):  # expires a's lease, then is refused: all rolled back
        claim_targets(coordinator, "c", [QUOTE, ROUNDING])
    assert coordinator.store.get_claim(short.id).released is None  # type: ignore[union-attr]
    coordinator.claim("c", QUOTE)
    expired = [e for e in coordinator.workspace.audit.entries() if e.action == "claim.expired"]
    assert [e.details["claim"] for e in expired] == [short.id]
    assert coordinator.store.get_claim(short.id).released is not None  # type: ignore[union-attr]
    assert coordinator.workspace.audit.verify().ok


def test_a_glob_or_a_directory_that_reaches_a_file_through_a_symlink_claims_the_file(billing: Path,
                                                                                     tmp_path: Path) -> None:
    """`claim add link.py` was the file; `sub/*.py` and `sub` named the link, so a second sandbox could
    hold the very same file under its real name."""
    repo = tmp_path / "billing"
    git(tmp_path, "clone", "-q", str(billing), str(repo))
    (repo / "aliases").mkdir()
    (repo / "aliases" / "refunds.py").symlink_to("../payments/refunds.py")
    (repo / "aliases" / "away.py").symlink_to(tmp_path / "nowhere.py")  # leads out: only the link is here
    git(repo, "add", "aliases")
    git(repo, "commit", "-qm", "aliases")
    coordinator = governed_coordinator(open_workspace(repo))
    assert coordinator.resolve("aliases/*.py") == ["aliases/away.py", "payments/refunds.py"]
    assert coordinator.resolve("aliases") == ["aliases/away.py", "payments/refunds.py"]
    coordinator.claim("one", "aliases/*.py")
    with pytest.raises(ClaimRefused):
        coordinator.claim("two", QUOTE)


def test_a_file_loomtui_cannot_name_is_left_out_and_refused_and_the_rest_still_works(repo: Path) -> None:
    """A non-UTF-8 name anywhere (untracked is enough) stopped every claim, hook answer and index of the
    repository on a UnicodeEncodeError; a line break in a name made exclusive claims on it non-exclusive
    (its region id was stored as two)."""
    import os

    (repo / "a.py").write_text("x = 1\n")
    (repo / "new\nline.py").write_text("def y():\n    return 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "names")
    os.close(os.open(os.path.join(os.fsencode(repo), b"bad\xff.py"), os.O_CREAT | os.O_WRONLY))
    (repo / "b[1].py").write_text("z = 1\n")  # a real name with glob characters (pages/[id].tsx)
    (repo / "b1.py").write_text("z = 2\n")
    coordinator = governed_coordinator(open_workspace(repo))
    assert "'bad\\udcff.py': its name is not UTF-8; not indexed (and cannot be claimed)" in coordinator.index.warnings
    assert "'new\\nline.py': its name holds a line break; not indexed (and cannot be claimed)" in (
        coordinator.index.warnings)
    assert coordinator.claim("s1", "a.py").claim.region_ids == ("a.py",)
    for name, problem in (("new\nline.py", "holds a line break"), ("bad\udcff.py", "is not UTF-8")):
        with pytest.raises(LoomError, match=f"its name {problem}, so loomtui cannot claim it"):
            coordinator.claim("s2", name)
        with pytest.raises(LoomError, match="cannot claim it"):
            coordinator.check_edit("s2", str(repo / name))
    # An agent's write there is denied, with why (it was "allowed: claimed line2.py, new").
    import subprocess
    import sys

    write = {"hook_event_name": "PreToolUse", "tool_name": "Write", "session_id": "s",
             "tool_input": {"file_path": str(repo / "new\nline2.py"), "content": "x = 2\n"}}
    hook = subprocess.run([sys.executable, "-m", "loomtui", "hook", "claude", "--sandbox", "h2"], cwd=repo,
                          input=json.dumps(write), capture_output=True, text=True, timeout=60)
    answer = json.loads(hook.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "deny" and "holds a line break" in answer["permissionDecisionReason"]
    # `::` in a name: `we::ird.py::weird` was read as the file `we`, and a claim on the whole file then did not
    # overlap one on its function.
    (repo / "we::ird.py").write_text("def weird():\n    return 1\n")
    with pytest.raises(LoomError, match="its name holds `::`, which region names use, so loomtui cannot claim it"):
        governed_coordinator(open_workspace(repo)).claim("s5", "we::ird.py")
    assert coordinator.claim("s3", "b[1].py").claim.region_ids == ("b[1].py",)  # the file, not the glob's b1.py
    assert coordinator.claim("s4", "b?.py").claim.region_ids == ("b1.py",)  # globs still read the listing
    listed = run_cli(repo, "claim", "list", "--json")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr


def test_claim_add_takes_a_sandboxs_unique_id_prefix_as_every_command_does(repo: Path) -> None:
    """The prefix was kept as a holder's name: `sandbox rm` of the sandbox left its claim held for the lease."""
    (repo / "a.py").write_text("x = 1\n")
    store = open_workspace(repo).store
    for sandbox_id in ("abc123", "abd456"):
        store.add_sandbox(SandboxRecord(id=sandbox_id, task="t", runtime="script", status="planned", created=0,
                                        updated=0))
    assert run_cli(repo, "claim", "add", "a.py", "--sandbox", "abc").returncode == 0
    assert [c.sandbox_id for c in store.live_claims()] == ["abc123"]
    listed = run_cli(repo, "claim", "list", "--sandbox", "abc", "--json")
    assert [c["sandbox_id"] for c in json.loads(listed.stdout)] == ["abc123"]
    several = run_cli(repo, "claim", "add", "README.md", "--sandbox", "ab")
    assert several.returncode == 2 and "matches several sandboxes: abc123, abd456" in several.stderr
    named = run_cli(repo, "claim", "add", "README.md", "--sandbox", "lead-alice")  # a name: as is, and said so
    assert named.returncode == 0 and "note: no sandbox is lead-alice: these claims hold for that name" in named.stderr
    (repo / "b.py").write_text("y = 1\n")
    own = run_cli(repo, "claim", "add", "b.py", "--sandbox", "abd")
    assert own.returncode == 0 and "note:" not in own.stderr  # a sandbox's: nothing to say
    assert run_cli(repo, "claim", "release", "--all", "--sandbox", "abd").returncode == 0
    assert run_cli(repo, "claim", "release", "--all", "--sandbox", "abc").returncode == 0
    assert [c.sandbox_id for c in store.live_claims()] == ["lead-alice"]
    # A typo of the name released nothing and said so as a success, the real claims still held.
    typo = run_cli(repo, "claim", "release", "--all", "--sandbox", "lead-alcie")
    assert typo.returncode == 1 and "lead-alcie is no sandbox and holds no claim; nothing was released" in typo.stderr
    assert run_cli(repo, "claim", "release", "--all", "--sandbox", "lead-alice").stdout == "released 1 claim\n"
    assert run_cli(repo, "claim", "release", "--all", "--sandbox", "lead-alice").stdout == "released 0 claims\n"
    assert run_cli(repo, "claim", "add", "b.py", "--sandbox", "abd").returncode == 0
    [held] = store.live_claims()
    theirs = run_cli(repo, "claim", "release", str(held.id), "--sandbox", "abc")
    assert theirs.returncode == 1 and theirs.stderr.rstrip().endswith(  # the flag that does it is named
        "releasing another sandbox's claim is an override, with a reason (--override REASON)"), theirs.stderr


def test_naming_someone_elses_sandbox_as_the_holder_releases_its_claims_only_as_an_override(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`claim release 24 --sandbox de6df5` by someone who did not start de6df5 released its claim with no
    override, the region then free to claim: the rule `release_held` keeps for another holder's claims."""
    (repo / "a.py").write_text("x = 1\n")
    store = open_workspace(repo).store
    store.add_sandbox(SandboxRecord(id="de6df5", task="t", runtime="script", status="awaiting_review", created=0,
                                    updated=0, data={"created_by": "alice@example.com"}))
    assert run_cli(repo, "claim", "add", "a.py", "--sandbox", "de6df5").returncode == 0
    [held] = store.live_claims()
    for asked in ((str(held.id),), ("--all",)):
        monkeypatch.setenv("LOOM_SANDBOX", "de6df5")  # anyone may set it: no proof of being that sandbox
        refused = run_cli(repo, "claim", "release", *asked, "--sandbox", "de6df5", user="mallory@example.com")
        assert refused.returncode == 1, refused.stdout
        assert (f"claim #{held.id} is held by sandbox de6df5, which mallory@example.com did not start: releasing "
                "it is an override, with a reason (--override REASON)") in refused.stderr
    monkeypatch.delenv("LOOM_SANDBOX")  # from a shell of one's own: an override inside a sandbox is refused
    forced = run_cli(repo, "claim", "release", str(held.id), "--sandbox", "de6df5", "--override", "stuck",
                     user="mallory@example.com")
    assert forced.returncode == 1 and "mallory@example.com may not override" in forced.stderr
    assert [c.id for c in store.live_claims()] == [held.id]
    # The person who started it releases it as their own.
    assert run_cli(repo, "claim", "release", "--all", "--sandbox", "de6df5",
                   user="alice@example.com").stdout == "released 1 claim\n"


def test_inside_a_sandbox_claims_are_for_that_sandbox_only(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent run without isolation reaches the store: its `claim add payments/invoices.py --sandbox OTHER
    --reason "lead hold"` was recorded as the person's claim (its `release` of another's was refused already)."""
    (repo / "a.py").write_text("x = 1\n")
    (repo / "b.py").write_text("y = 1\n")
    monkeypatch.setenv("LOOM_SANDBOX", "agent-1")
    for args in (("add", "a.py", "--sandbox", "other", "--reason", "lead hold"), ("release", "--all", "--sandbox", "other")):
        refused = run_cli(repo, "claim", *args)
        assert refused.returncode == 1 and refused.stderr.rstrip().endswith(
            "for other is refused: an agent claims and releases for its own sandbox only"), refused.stderr
    assert open_workspace(repo).store.live_claims() == []
    assert run_cli(repo, "claim", "add", "b.py").returncode == 0  # its own, as $LOOM_SANDBOX names it
    assert [c.sandbox_id for c in open_workspace(repo).store.live_claims()] == ["agent-1"]
    # Nor an override (a lead's), for its own sandbox either: it took another's code in the person's name.
    for args in (("add", "b.py", "--override", "lead said so"), ("release", "1", "--override", "stale")):
        refused = run_cli(repo, "claim", *args)
        assert refused.returncode == 1 and "an override is refused" in refused.stderr, refused.stderr


def test_a_file_not_written_yet_is_claimed_by_its_path_when_asked_for(coordinator: Coordinator) -> None:
    """Two agents about to create the same module: neither could claim it (`no such file or region`)
    until one wrote it, and the other's write was the first to hear of it."""
    with pytest.raises(LoomError, match="no such file or region"):
        coordinator.claim("a", "payments/new_api.py")  # a typo names no file: still refused
    os.mkfifo(coordinator.workspace.root / "payments" / "pipe.py")  # there, but not a file: said so
    with pytest.raises(LoomError, match="payments/pipe.py: not a regular file"):
        coordinator.claim("a", "payments/pipe.py")
    claimed = coordinator.claim("a", "payments/new_api.py", new_file=True).claim
    assert list(claimed.region_ids) == ["payments/new_api.py"]
    assert coordinator.check_edit("b", "payments/new_api.py").verdict == "deny"
    assert coordinator.check_edit("a", "payments/new_api.py").verdict == "allow"
    with pytest.raises(ClaimRefused):
        coordinator.claim("b", "payments/new_api.py", new_file=True)
    for target, message in (("payments/", "a directory"), ("payments/*.py", "claimed by its path"),
                            ("../x.py", "may not leave the repository"),
                            (".git/config", "inside the git directory"),  # held, audited, touched by no change
                            ("d/" * 2100 + "x.py", "not a usable path"),  # OSError: an internal error
                            ("d" * 300 + ".py", "not a usable path"),
                            # A file named `x.py:10-20` was claimed, which no one writes: the agent's new file not.
                            ("payments/new2.py:10-20", "claimed by its path alone \\(it has no lines yet\\)")):
        with pytest.raises(LoomError, match=message):
            coordinator.claim("a", target, new_file=True)
    done = run_cli(coordinator.workspace.root, "claim", "add", "--sandbox", "c", "docs/new.md")
    assert done.returncode == 2 and "(a file not written yet: --new claims it by its path)" in done.stderr
    done = run_cli(coordinator.workspace.root, "claim", "add", "--sandbox", "c", "--new", "docs/new.md")
    assert done.returncode == 0, done.stderr


def test_the_same_target_claimed_twice_is_one_claim(coordinator: Coordinator) -> None:
    """An agent that claimed its file again (as agents do, before each edit) held two claims, each released
    on its own; `claim list` showed the file twice."""
    first = coordinator.claim("a", "payments/currency.py")
    again = coordinator.claim("a", "payments/currency.py")
    assert again.already_held and again.claim.id == first.claim.id
    read = coordinator.claim("a", "payments/currency.py", mode="shared")  # an exclusive claim covers a read
    assert read.already_held and read.claim.id == first.claim.id
    assert [c.id for c in coordinator.store.live_claims("a")] == [first.claim.id]
    done = run_cli(coordinator.workspace.root, "claim", "add", "--sandbox", "a", "payments/currency.py")
    assert done.returncode == 0 and "(held already: nothing new)" in done.stdout, done.stdout
    # Named by its absolute path: kept as the repository names it (`claim list` showed one machine's path).
    root = coordinator.workspace.root
    taken = coordinator.claim("b", f"{root}/payments/refunds.py::RefundService.quote").claim
    assert taken.target == "payments/refunds.py::RefundService.quote"
    assert coordinator.claim("b", f"{root.resolve()}/customers/").claim.target == "customers"
    # As an agent's claim, conflicts and release resolve it (through the broker, where such paths come from).
    assert coordinator.resolve(f"{root}/payments/ledger.py::Ledger") == ["payments/ledger.py::Ledger"]


def test_a_change_of_many_regions_is_held_by_one_claim_not_a_claim_each(coordinator: Coordinator) -> None:
    """A claim (and a check, and an audit entry) each: a commit of 2,000 files took 30 s, past the hook's wait."""
    from loomtui.coordination.claims import COMMIT_CLAIM_REASON, MAX_HELD_BY_NAME

    few = coordinator.hold_changed("a", [QUOTE], COMMIT_CLAIM_REASON)
    assert [(c.target, c.region_ids) for c in few] == [(QUOTE, (QUOTE,))]
    many = [f"gen/m{n}.py" for n in range(MAX_HELD_BY_NAME + 5)]
    [held] = coordinator.hold_changed("a", [QUOTE, *many], COMMIT_CLAIM_REASON)  # QUOTE is held already
    assert held.target == f"{len(many)} regions in {len(many)} files" and set(held.region_ids) == set(many)
    assert held.reason == f"{COMMIT_CLAIM_REASON} gen/m0.py and {len(many) - 1} more"
    with pytest.raises(ClaimRefused):
        coordinator.claim("b", "gen/m3.py", new_file=True)
    # Many regions of one file: "21 regions in 1 files", "... gen/one.py and 0 more".
    one = [f"gen/one.py::f{n}" for n in range(MAX_HELD_BY_NAME + 1)]
    [held] = coordinator.hold_changed("c", one, COMMIT_CLAIM_REASON)
    assert (held.target, held.reason) == (f"{len(one)} regions in 1 file", f"{COMMIT_CLAIM_REASON} gen/one.py")


_IMPORTS_UNDER_THE_LOCK = """
import contextlib, sys
from loomtui.workspace import open_workspace
from loomtui.governance.coordinator import governed_coordinator

coordinator = governed_coordinator(open_workspace(sys.argv[1]))
store = coordinator.store
plain = store.transaction
imported = []

@contextlib.contextmanager
def watched():
    before = set(sys.modules)
    with plain():
        yield store
    imported.extend(sorted(set(sys.modules) - before))

store.transaction = watched
coordinator.claim("a", "payments/ledger.py")
print(" ".join(name for name in imported if name.startswith("loomtui")))
"""


def test_nothing_is_imported_while_the_stores_write_lock_is_held(billing: Path) -> None:
    """`claim add` imported the hooks' gate, the broker and escalations inside its write transaction: 0.1 s
    idle, a second with ten writers at once, every other writer of the repository waiting (40 writers took 75 s,
    and some waited out the lock)."""
    import sys

    done = subprocess.run([sys.executable, "-c", _IMPORTS_UNDER_THE_LOCK, str(billing)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout
