"""The workflow engine: one `advance(task)` moves a task through its life, done once however many
callers race, redone after a caller dies mid-step; dependencies start work from merged work."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import git, run_cli, wait_until

from loomtui.cli import STEP_HINTS
from loomtui.errors import LoomError
from loomtui.execution import agent_control, review
from loomtui.execution import sandboxes as sb
from loomtui.execution.lifecycle import (
    APPROVED,
    ARCHIVED,
    AWAITING_REVIEW,
    EXITED,
    FAILED,
    GATING,
    MERGED,
    PLANNED,
    REJECTED,
    RUNNING,
    transition,
)
from loomtui.gitcmd import Git
from loomtui.governance.coordinator import governed_coordinator
from loomtui.governance.escalations import DecisionRefused, allowed_decisions, decide, queue, status_lines
from loomtui.governance.policy import load_policy
from loomtui.store import SandboxRecord
from loomtui.workflow import tasks
from loomtui.workflow.engine import advance, request_merge, wait_until_settled
from loomtui.workflow.steps import PersonAction, Step, next_step
from loomtui.workspace import Workspace, open_workspace

POLICY = """\
version: 1
merge: {merge}
groups:
  leads: [lead@example.com]
overrides: {{groups: [leads]}}
rules:
  - name: anything
    when: {{paths: ["**"]}}
    decision: auto_approve
  - name: ledger
    when: {{paths: ["ledger.py"]}}
    decision: require
    approvals: {{groups: [leads], count: 1}}
"""


def make_repo(root: Path, merge: str) -> Path:
    """A small Python repository: app.py uses lib.helper; a ledger needing a lead; the policy."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "lib.py").write_text("def helper(x):\n    return x + 1\n")
    (root / "app.py").write_text("from lib import helper\n\n\ndef main():\n    return helper(1)\n")
    (root / "ledger.py").write_text("def post(amount):\n    return amount\n")
    (root / ".loom").mkdir()
    (root / ".loom" / "loom.yaml").write_text("version: 1\n")
    (root / ".loom" / "policy.yaml").write_text(POLICY.format(merge=merge))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def auto(tmp_path: Path) -> Iterator[Workspace]:
    """A repository whose policy merges approved changes by itself."""
    workspace = open_workspace(make_repo(tmp_path / "repo", "auto"))
    yield workspace
    workspace.close()


@pytest.fixture
def manual(tmp_path: Path) -> Iterator[Workspace]:
    """A repository whose policy leaves the merge to a person."""
    workspace = open_workspace(make_repo(tmp_path / "repo", "manual"))
    yield workspace
    workspace.close()


def script(workspace: Workspace, name: str, steps: str) -> Path:
    path = workspace.root.parent / f"{name}.yaml"
    path.write_text(textwrap.dedent(steps))
    return path


def edit(workspace: Workspace, name: str, path: str, old: str, new: str) -> Path:
    return script(workspace, name, f"""\
        - {{replace: {{path: {path}, old: "{old}", new: "{new}"}}}}
        - {{commit: "{name}"}}
    """)


def run_task(workspace: Workspace, name: str, path: str, old: str, new: str, **kwargs: object) -> str:
    record = tasks.create_sandbox(workspace, name, "script", script=edit(workspace, name, path, old, new),
                                  autostart=True, **kwargs)  # type: ignore[arg-type]
    return record.id


def actions(workspace: Workspace, subject: str) -> list[str]:
    return [e.action for e in workspace.audit.entries() if e.subject == subject]


# -- with no app open -----------------------------------------------------------------------


def test_an_ended_agent_is_reviewed_merged_and_its_claims_released_with_no_app_running(auto: Workspace) -> None:
    sandbox_id = run_task(auto, "helper", "lib.py", "x + 1", "x + 2", claims=["lib.py::helper"])
    assert auto.store.live_claims(sandbox_id)
    view = wait_until_settled(auto, sandbox_id)
    record = sb.get_sandbox(auto, sandbox_id)
    assert (record.status, view.step) == (MERGED, Step.DONE)
    assert "x + 2" in git(auto.root, "show", "main:lib.py")
    assert f"Loom-Sandbox: {sandbox_id}" in git(auto.root, "log", "-1", "--format=%B", "main")
    assert auto.store.live_claims(sandbox_id) == []
    done = actions(auto, sandbox_id)
    assert done.index("sandbox.approved") < done.index("sandbox.merged") < done.index("claim.released")
    assert run_cli(auto.root, "conflicts").returncode == 0


def test_an_agent_that_ends_without_a_change_gives_its_claims_back(manual: Workspace) -> None:
    """Until a person runs it again (which takes them again), its claims would only block others."""
    record = tasks.create_sandbox(manual, "look only", "script", claims=["lib.py::helper"], autostart=True,
                                  script=script(manual, "idle", '- {log: "nothing to do"}\n'))
    view = wait_until_settled(manual, record.id)
    assert view.step == Step.NO_CHANGE and manual.store.live_claims(record.id) == []
    released = [e for e in manual.audit.entries() if e.action == "claim.released"]
    assert released and released[-1].details.get("reason") == "the agent ended without a change"


def test_an_agent_that_failed_without_a_change_runs_again_in_its_sandbox_with_its_claims(
        manual: Workspace, tmp_path: Path) -> None:
    """A model API that did not answer: the failed sandbox keeps its claims, and `sandbox start` runs its
    agent again in the same worktree; the second run's change is reviewed as any other."""
    answered = tmp_path / "answered-once"
    command = ["sh", "-c", f'if [ -e "{answered}" ]; then sed -i "s/x + 1/x + 9/" lib.py; '
               f'else touch "{answered}"; echo "model API: 529 overloaded" >&2; exit 1; fi']
    record = tasks.create_sandbox(manual, "flaky model API", "command", claims=["lib.py::helper"], autostart=True,
                                  command=command, isolate=False)
    view = wait_until_settled(manual, record.id)
    assert sb.get_sandbox(manual, record.id).status == FAILED
    assert (view.step, view.action) == (Step.NO_CHANGE, PersonAction.RERUN)
    assert view.line(STEP_HINTS).endswith(f"(`loomtui sandbox start {record.id}` runs it again)")
    assert "the agent failed (exited with code 1) without a change" in view.line()  # how, not only that
    assert [c.sandbox_id for c in manual.store.live_claims()] == [record.id]

    again = run_cli(manual.root, "sandbox", "start", record.id)
    assert again.returncode == 0 and f"sandbox {record.id} started again (run 2" in again.stdout, again.stderr
    view = wait_until_settled(manual, record.id)
    done = sb.get_sandbox(manual, record.id)
    assert (done.status, view.step, done.exit_code) == (APPROVED, Step.WAIT_MERGE, 0)
    assert "x + 9" in git(manual.root, "show", f"{done.branch}:lib.py")
    log = sb.log_path(manual, record.id).read_text()
    assert log.index("529 overloaded") < log.index("── loomtui: run 2, started again by ")  # the first run's kept
    planned = [e.details for e in manual.audit.entries() if e.action == "sandbox.planned" and e.subject == record.id]
    assert [(d.get("from"), d.get("run")) for d in planned] == [(None, None), ("failed", 2)]  # stated, run again
    assert [c.sandbox_id for c in manual.store.live_claims()] == [record.id]


def test_a_stopped_agent_runs_again_once_its_claims_are_free_and_its_old_stop_is_not_obeyed(
        manual: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from loomtui.execution.procs import identity

    record = tasks.create_sandbox(manual, "hold", "command", claims=["lib.py::helper"], autostart=True,
                                  command=["sleep", "60"])
    wait_until(lambda: sb.get_sandbox(manual, record.id).status == RUNNING, timeout=30, what="the agent running")
    agent_control.stop(manual, record.id, grace=1)
    view = wait_until_settled(manual, record.id)
    assert (view.step, view.action) == (Step.NO_CHANGE, PersonAction.RERUN) and not manual.store.live_claims()
    coordinator = governed_coordinator(manual)
    taken = coordinator.claim("someone-else", "lib.py::helper")
    refused = run_cli(manual.root, "sandbox", "start", record.id)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"sandbox {record.id} cannot run again yet" in refused.stderr and "someone-else" in refused.stderr
    assert sb.get_sandbox(manual, record.id).status == EXITED

    coordinator.release(taken.claim.id)
    # The last run's supervisor still finishing (it advances the task after the end): waited for, then said.
    lingering = subprocess.Popen(["sleep", "30"])
    ended = sb.get_sandbox(manual, record.id)
    manual.store.update_sandbox(record.id, pid=lingering.pid, pid_start=identity(lingering.pid))
    monkeypatch.setattr(tasks, "LAST_RUN_SETTLE_S", 0.3)
    with pytest.raises(LoomError, match=f"the supervisor of its last run \\(pid {lingering.pid}\\) is still finishing"):
        tasks.start(manual, record.id)
    lingering.kill()
    lingering.wait()
    manual.store.update_sandbox(record.id, pid=ended.pid, pid_start=ended.pid_start)
    tasks.start(manual, record.id)
    wait_until(lambda: sb.get_sandbox(manual, record.id).status == RUNNING, timeout=30, what="running again")
    running = sb.get_sandbox(manual, record.id)
    assert sb.stopped_by(running) is None and running.data.get("runs") == 2
    assert [c.sandbox_id for c in manual.store.live_claims()] == [record.id]
    assert agent_control.stop(manual, record.id, grace=1).status == EXITED


def test_with_manual_merge_an_approved_change_waits_for_a_person_then_merges_once(manual: Workspace) -> None:
    sandbox_id = run_task(manual, "helper", "lib.py", "x + 1", "x + 2")
    view = wait_until_settled(manual, sandbox_id)
    assert (sb.get_sandbox(manual, sandbox_id).status, view.step) == (APPROVED, Step.WAIT_MERGE)
    assert (view.action, view.about) == (PersonAction.MERGE, sandbox_id)
    assert f"loomtui sandbox merge {sandbox_id}" in view.line(STEP_HINTS)
    branch = sb.get_sandbox(manual, sandbox_id).branch
    with pytest.raises(LoomError, match=f"loom/{sandbox_id} is its own branch; a change merges into a target"):
        request_merge(manual, sandbox_id, into=branch)  # it was "found already merged": main never got it
    assert sb.get_sandbox(manual, sandbox_id).status == APPROVED
    request_merge(manual, sandbox_id)
    assert sb.get_sandbox(manual, sandbox_id).status == MERGED
    with pytest.raises(Exception, match="already merged"):
        request_merge(manual, sandbox_id)
    assert git(manual.root, "log", "--merges", "--format=%s", "main").count("\n") == 0  # one merge commit


# -- once, whoever calls ----------------------------------------------------------------------


def _ended_unadvanced(workspace: Workspace, name: str) -> str:
    """A sandbox whose agent committed and ended, that nobody has advanced yet (its worktree made
    by execution alone, its agent run under execution's bare supervisor). Each adds a module of its
    own: a change of code another sandbox's reviewed change holds would wait for a person."""
    record = sb.plan_sandbox(workspace, name, "script", script=script(workspace, name, f"""\
        - {{write: {name.replace("-", "_")}.py, content: "VALUE = 1\\n"}}
        - {{commit: "{name}"}}
    """))
    sb.make_worktree(workspace, record.id)
    sb.start(workspace, record.id)
    sb.wait_for_status(workspace, record.id, {EXITED}, timeout=60)
    return record.id


def _advance_in_another_process(root: str, sandbox_id: str, go: multiprocessing.synchronize.Event) -> None:
    go.wait()
    workspace = open_workspace(root)
    advance(workspace, sandbox_id)
    workspace.close()


def test_two_processes_advancing_at_once_review_once(manual: Workspace) -> None:
    sandbox_id = _ended_unadvanced(manual, "race")
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.REVIEW
    context = multiprocessing.get_context("fork")
    go = context.Event()
    racers = [context.Process(target=_advance_in_another_process, args=(str(manual.root), sandbox_id, go))
              for _ in range(3)]
    for racer in racers:
        racer.start()
    go.set()
    for racer in racers:
        racer.join(60)
    assert [r.exitcode for r in racers] == [0, 0, 0]
    wait_until(lambda: manual.store.step_lease(sandbox_id) is None, what="the lease given back")
    assert actions(manual, sandbox_id).count("sandbox.gating") == 1
    assert actions(manual, sandbox_id).count("policy.evaluated") == 1
    assert sb.get_sandbox(manual, sandbox_id).status == APPROVED


def test_a_start_another_caller_won_is_no_failed_step(manual: Workspace) -> None:
    """`S` (run again) planned the task and started it while the app's own advance, seeing it planned, started it
    too: the supervisor refused the second ("already running") and the task showed "failed-step: start failed"
    for its whole run."""
    from loomtui.workflow.engine import Workflow

    record = tasks.create_sandbox(manual, "wait a while", "command", command=["sleep", "20"])
    planned = sb.get_sandbox(manual, record.id)
    tasks.start(manual, record.id)
    wait_until(lambda: sb.get_sandbox(manual, record.id).status == RUNNING, what="its agent running")
    try:
        assert Workflow(manual)._do(Step.START, planned) == "agent started (by another caller)"
        assert not sb.get_sandbox(manual, record.id).data.get("step_error")
    finally:
        agent_control.stop(manual, record.id)


def test_a_step_whose_caller_died_is_redone_and_a_live_holder_is_waited_for(manual: Workspace) -> None:
    sandbox_id = _ended_unadvanced(manual, "crash")
    # A reviewer that moved the sandbox to gating, took the lease, and was killed.
    transition(manual, sandbox_id, GATING, reason="reviewing (then killed)")
    # ... after opening its escalation, before naming it on the sandbox: the redo supersedes it (an
    # approval of it said "now approved" while the sandbox waited on the redo's own).
    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.policy import ChangeFacts, Evaluation

    orphan = open_escalation(manual, "post-gate", Evaluation("post-gate", "require", "low", (), ()),
                             ChangeFacts(stage="post-gate", paths=()), sandbox_id=sandbox_id, commit="0" * 40, summary="x")
    dead = context_pid_that_exited()
    # Under way while its reviewer lives; once it is gone, stopped, and a person told what moves it (it read
    # "gates and policy" for good).
    alive = f"{os.getpid()}:{_my_start()}:0"
    assert manual.store.take_step_lease(sandbox_id, alive, "review", is_gone=lambda _h: False) is None
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).line(STEP_HINTS) == "review: gates and policy"
    assert manual.store.take_step_lease(sandbox_id, f"{dead}::1", "review", is_gone=lambda _h: True) is None
    stalled = next_step(manual, sb.get_sandbox(manual, sandbox_id))
    assert stalled.step == Step.REVIEW and stalled.action == PersonAction.RETRY, stalled
    assert "its review stopped before it ended" in stalled.waits_on
    assert f"`loomtui sandbox advance {sandbox_id}`" in stalled.line(STEP_HINTS)
    done = advance(manual, sandbox_id)
    assert done.status == APPROVED and any(line.startswith("reviewed") for line in done.done)
    assert actions(manual, sandbox_id).count("policy.evaluated") == 1
    assert manual.store.get_escalation(orphan.id).status == "superseded"  # type: ignore[union-attr]
    # A live holder (this very process, another thread): the step is left to it.
    other = _ended_unadvanced(manual, "busy")
    holder = f"{os.getpid()}:{_my_start()}:0"
    assert manual.store.take_step_lease(other, holder, "review", is_gone=lambda _h: False) is None
    waiting = advance(manual, other)
    assert waiting.done == () and "being done by" in waiting.now.waits_on
    assert sb.get_sandbox(manual, other).status == EXITED
    manual.store.drop_step_lease(other, holder)
    assert advance(manual, other).status == APPROVED
    # On a team store, a holder on another machine: its pid means nothing here, so it is not judged gone
    # (another machine took over a live review, and ran a second one beside it).
    third = _ended_unadvanced(manual, "elsewhere")
    remote = f"{context_pid_that_exited()}::1@build-2"
    assert manual.store.take_step_lease(third, remote, "review", is_gone=lambda _h: False) is None
    waiting = advance(manual, third)
    assert waiting.done == () and "being done by process" in waiting.now.waits_on
    assert "on build-2" in waiting.now.waits_on
    manual.store.drop_step_lease(third, remote)
    # A removal waits for a step under way (a merge that moved main but has not recorded `merged` yet):
    # it was archived as unmerged, the merged change recorded nowhere.
    assert manual.store.take_step_lease(third, holder, "merge", is_gone=lambda _h: False) is None
    busy = run_cli(manual.root, "sandbox", "rm", third)
    assert busy.returncode == 1 and "being advanced by process" in busy.stderr and "remove it when" in busy.stderr
    assert sb.get_sandbox(manual, third).status == EXITED
    manual.store.drop_step_lease(third, holder)
    # And a task whose agent ran on another machine is advanced there, where its branch and worktree are.
    manual.store.update_sandbox(third, status=EXITED)
    with manual.store.transaction():
        manual.store._execute("UPDATE sandboxes SET host = ? WHERE id = ?", ("build-2", third))
    there = advance(manual, third)
    assert there.done == () and "on build-2: done there" in there.now.waits_on
    assert sb.get_sandbox(manual, third).status == EXITED
    assert "next: review: on build-2: done there" in run_cli(manual.root, "sandbox", "list").stdout  # it said none
    # Its lease held there by a removal killed there: removed there, said so (not "being advanced ... (a review or a
    # merge)", for good, as its holder is never judged gone from here).
    assert manual.store.take_step_lease(third, remote, "remove", is_gone=lambda _h: False) is None
    elsewhere = run_cli(manual.root, "sandbox", "rm", third)
    assert elsewhere.returncode == 1 and f"sandbox {third} is on build-2: remove it there" in elsewhere.stderr


def test_a_step_that_fails_unexpectedly_says_so_in_one_line_and_is_retried(manual: Workspace,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Something no check foresaw (here a RecursionError deep in the review) fails the step with one
    line the task shows and the audit keeps, rather than ending the caller on a traceback."""
    import loomtui.workflow.engine as engine

    sandbox_id = _ended_unadvanced(manual, "odd")
    real_review = engine.review_sandbox

    def deep_review(*args: object, **kwargs: object) -> object:
        transition(manual, sandbox_id, GATING, reason="reviewing (then an odd input)")
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(engine, "review_sandbox", deep_review)
    failed = advance(manual, sandbox_id)
    assert failed.done == ("review failed: unexpected RecursionError: maximum recursion depth exceeded",)
    assert failed.now.step == Step.FAILED_STEP and failed.status == GATING
    assert actions(manual, sandbox_id).count("workflow.step_failed") == 1
    monkeypatch.setattr(engine, "review_sandbox", real_review)
    assert advance(manual, sandbox_id, retry=True).status == APPROVED


def test_a_review_that_fails_each_time_leaves_the_sandbox_removable_and_its_checks_closed(manual: Workspace,
                                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A review failing for good (a non-UTF-8 file name crashed the score's glob each time) left the sandbox
    `gating`: `sandbox rm --force` said "its gates are running" though none was, and its claim stayed. A check
    its stopped review left `running` stayed so, and `report` counted the sandbox as never judged."""
    import loomtui.workflow.engine as engine

    sandbox_id = _ended_unadvanced(manual, "stuck")
    run = manual.store.add_gate_run(sandbox_id, "tests", "c1")  # what the review that died had running

    def failing_review(*args: object, **kwargs: object) -> object:
        transition(manual, sandbox_id, GATING, reason="reviewing (then an odd input)")
        raise UnicodeEncodeError("utf-8", "caf\udce9", 3, 4, "surrogates not allowed")

    monkeypatch.setattr(engine, "review_sandbox", failing_review)
    assert advance(manual, sandbox_id).status == GATING
    removed = run_cli(manual.root, "sandbox", "rm", "--force", sandbox_id)
    assert removed.returncode == 0, removed.stderr
    record = sb.get_sandbox(manual, sandbox_id)
    assert (record.status, record.data.get("archived_from")) == ("archived", GATING)
    closed = manual.store.gate_run(run.id)
    assert (closed.status, closed.data["summary"]) == ("error", "the sandbox was removed before its review ended")
    assert not [c for c in manual.store.all_claims() if c.sandbox_id == sandbox_id]
    # A redo closes what the dead review left running too (it stood beside the redo's passed run).
    monkeypatch.undo()
    other = _ended_unadvanced(manual, "redone")
    transition(manual, other, GATING, reason="reviewing (then killed)")
    left = manual.store.add_gate_run(other, "tests", "c2")
    assert advance(manual, other, retry=True).status == APPROVED
    assert manual.store.gate_run(left.id).status == "error"


def test_a_removal_killed_before_it_deleted_anything_is_taken_back(manual: Workspace) -> None:
    """`sandbox rm` killed after marking the sandbox (a SIGKILL, a terminal closed while it waited out the agent's
    grace): "being removed" for good, never reviewed, an approval of it recorded and not followed."""
    from loomtui.execution.lifecycle import mark_removing

    sandbox_id = _ended_unadvanced(manual, "half-removed")
    mark_removing(manual, sandbox_id)  # what the killed rm left: its mark, no lease, nothing deleted
    view = next_step(manual, sb.get_sandbox(manual, sandbox_id))
    assert view.step == Step.REVIEW, view
    done = advance(manual, sandbox_id)
    assert done.done[0].startswith("its removal had stopped before deleting anything"), done.done
    assert done.status == APPROVED and not sb.get_sandbox(manual, sandbox_id).data.get("removing")
    # One under way (it holds the step lease) is left alone.
    other = _ended_unadvanced(manual, "being-removed")
    holder = f"{os.getpid()}:{_my_start()}:0"
    assert manual.store.take_step_lease(other, holder, "remove", is_gone=lambda _h: False) is None
    mark_removing(manual, other)
    assert next_step(manual, sb.get_sandbox(manual, other)).waits_on == "being removed"
    assert advance(manual, other).status == EXITED and sb.get_sandbox(manual, other).data.get("removing") is True
    manual.store.drop_step_lease(other, holder)


def test_sandbox_rm_whose_terminal_closes_while_it_stops_the_agent_leaves_it_as_it_was(manual: Workspace) -> None:
    """SIGHUP (or SIGTERM) while `rm --force` waits out a stubborn agent's grace ended it without undoing its mark."""
    record = tasks.create_sandbox(manual, "stubborn", "command",
                                  command=["sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"])
    tasks.start(manual, record.id)
    wait_until(lambda: sb.get_sandbox(manual, record.id).status == RUNNING, what="its agent running")
    try:
        removing = subprocess.Popen([shutil.which("loomtui") or "loomtui", "sandbox", "rm", "--force", record.id],
                                    cwd=manual.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: sb.get_sandbox(manual, record.id).data.get("removing") is True, what="rm's mark")
        time.sleep(0.5)
        removing.send_signal(signal.SIGHUP)
        assert removing.wait(timeout=30) == 129  # 128 + SIGHUP, as a process the signal ended
        current = sb.get_sandbox(manual, record.id)
        assert current.data.get("removing") is False and current.status != "archived"
    finally:
        agent_control.stop(manual, record.id, grace=0.5)


def test_sandbox_review_that_fails_unexpectedly_says_one_line_and_the_task_waits_for_a_retry(
        manual: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`sandbox review` runs the review outside `advance`: the same odd input is one line and a non-zero
    exit there too, and the task shows the failed review rather than sitting in `gating` with no reason."""
    import loomtui.workflow.engine as engine
    from loomtui.cli import main

    sandbox_id = _ended_unadvanced(manual, "odd-review")
    root = str(manual.root)
    real_review = engine.review_sandbox

    def deep_review(*args: object, **kwargs: object) -> object:
        transition(manual, sandbox_id, GATING, reason="reviewing (then an odd input)")
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(engine, "review_sandbox", deep_review)
    assert main(["-C", root, "sandbox", "review", sandbox_id]) == 1
    err = capsys.readouterr().err
    assert err == "loomtui: error: unexpected RecursionError: maximum recursion depth exceeded\n"
    record = sb.get_sandbox(manual, sandbox_id)
    assert record.status == GATING and next_step(manual, record).step == Step.FAILED_STEP
    assert actions(manual, sandbox_id).count("workflow.step_failed") == 1
    monkeypatch.setattr(engine, "review_sandbox", real_review)
    assert advance(manual, sandbox_id, retry=True).status == APPROVED
    # Refused before it began (nothing to review now): the refusal, and no failed step invented.
    assert main(["-C", root, "sandbox", "review", sandbox_id]) == 1
    refused = capsys.readouterr().err
    assert f"sandbox {sandbox_id} is approved: it was reviewed at " in refused and "no commits since" in refused
    assert actions(manual, sandbox_id).count("workflow.step_failed") == 1


def context_pid_that_exited() -> int:
    process = multiprocessing.get_context("fork").Process(target=lambda: None)
    process.start()
    process.join()
    assert process.pid is not None
    return process.pid


def _my_start() -> str:
    from loomtui.execution.procs import identity

    return identity(os.getpid()) or ""


def test_a_merge_whose_caller_died_after_moving_the_branch_is_recorded_not_redone(manual: Workspace) -> None:
    sandbox_id = run_task(manual, "helper", "lib.py", "x + 1", "x + 2")
    wait_until_settled(manual, sandbox_id)
    record = sb.get_sandbox(manual, sandbox_id)
    git(manual.root, "merge", "-q", "--no-ff", "-m", "merged by a caller that then died", record.branch)
    before = git(manual.root, "rev-parse", "main")
    said = run_cli(manual.root, "sandbox", "merge", sandbox_id)
    assert said.returncode == 0 and git(manual.root, "rev-parse", "main") == before
    assert sb.get_sandbox(manual, sandbox_id).status == MERGED
    assert sb.get_sandbox(manual, sandbox_id).data["merged_commit"] == before
    # Said as what it was, not "by another caller, which was merging it" (none was: the earlier one died).
    assert said.stdout.rstrip().endswith("(found merged already: a merge cut short before it was recorded)"), said


# -- claims go back when a task ends ----------------------------------------------------------------


def test_an_approval_written_into_the_store_alone_is_not_followed(manual: Workspace) -> None:
    """The audit log is the evidence of a decision: a store row set to approved by hand (no decision, no
    signature) used to approve and merge a change the policy had sent to a lead."""
    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    manual.store.update_escalation(escalation, status="approved")  # as `sqlite3 state.db "update ..."` does
    advanced = advance(manual, sandbox_id)
    assert sb.get_sandbox(manual, sandbox_id).status == AWAITING_REVIEW
    assert advanced.now.step == Step.FAILED_STEP
    assert f"escalation #{escalation} reads approved in the store, but the audit log holds no decision" in (
        advanced.now.line())
    with pytest.raises(LoomError, match="not approved"):
        request_merge(manual, sandbox_id)
    assert "return amount * 2" not in (manual.root / "ledger.py").read_text()


def test_a_decision_taken_on_another_machine_says_what_follows_it_here(manual: Workspace) -> None:
    """A lead on another machine (a team store) approves; nothing there can follow it (the branch is here).
    Here `sandbox list` showed no `next:` line and `--json` said `follow-decision`, bare: the change waited,
    with no word, until someone thought of `sandbox advance`."""
    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    lead = Workspace(manual.paths, manual.store, manual.audit, "lead@example.com")
    decide(lead, load_policy(manual.root), escalation, "approve")  # recorded; followed by no process here
    said = f"follow-decision: escalation #{escalation} was approved (`loomtui sandbox advance {sandbox_id}` does it)"
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).line(STEP_HINTS) == said
    listed = run_cli(manual.root, "sandbox", "list")
    assert f"next: {said}" in listed.stdout, listed.stdout
    as_json = json.loads(run_cli(manual.root, "sandbox", "list", "--json").stdout)["sandboxes"]
    assert [s["next"] for s in as_json if s["id"] == sandbox_id] == [said]
    # Seen from another machine than the sandbox's, it is done there: no command to run here.
    with manual.store.transaction():
        manual.store._execute("UPDATE sandboxes SET host = ? WHERE id = ?", ("build-2", sandbox_id))
    there = next_step(manual, sb.get_sandbox(manual, sandbox_id))
    assert there.line(STEP_HINTS) == (f"follow-decision: escalation #{escalation} was approved (on build-2: "
                                      "done there)")
    assert advance(manual, sandbox_id).now == there


def test_an_agent_whose_only_edit_was_its_context_file_ends_saying_so(manual: Workspace) -> None:
    """Codex's edit of AGENTS.md (loomtui's slice there) was in no branch, and the task read "the agent
    ended without a change", the edit lost without a word."""
    record = tasks.create_sandbox(manual, "due", "script", script=edit(manual, "due", "lib.py", "x + 1", "x + 3"),
                                  autostart=False)
    manual.store.update_sandbox(record.id, status=EXITED, data={
        "context_edited": {"AGENTS.md": "/state/edited-AGENTS.md"}, "ended_at": time.time()})
    said = next_step(manual, sb.get_sandbox(manual, record.id)).line(STEP_HINTS)
    assert ("without a change (its edit of AGENTS.md, which held loomtui's context for it, is not kept in its "
            "branch; kept as /state/edited-AGENTS.md)") in said, said


def test_another_machines_task_is_started_stopped_merged_and_removed_only_there(manual: Workspace) -> None:
    """On a team store one machine started another's planned task: its supervisor ran here, on a worktree
    and branch that are there, and the task failed (`branch loom/ID does not exist`)."""
    from loomtui.execution import review

    record = tasks.create_sandbox(manual, "due", "script", script=edit(manual, "due", "lib.py", "x + 1", "x + 3"),
                                  autostart=False)
    assert next_step(manual, sb.get_sandbox(manual, record.id)).action == PersonAction.START
    with manual.store.transaction():
        manual.store._execute("UPDATE sandboxes SET host = ? WHERE id = ?", ("build-2", record.id))
    seen = next_step(manual, sb.get_sandbox(manual, record.id))
    assert seen.action is None and "on build-2" in seen.line(STEP_HINTS)  # no `S` offered here
    from loomtui.tui.sandbox_text import sandbox_fields  # and the app's detail says where it is

    fields = {f.label: f.value for f in sandbox_fields(sb.get_sandbox(manual, record.id), seen, None)}
    assert fields["host"].startswith("build-2 (another machine: it is started, stopped, merged and removed there")
    from loomtui.tui.screens.dashboard_keys import key_applies  # nor does its footer offer S, s or m

    running = dataclasses.replace(sb.get_sandbox(manual, record.id), status="running")
    assert not any(key_applies(key, running, seen) for key in ("start", "stop", "merge"))
    started = run_cli(manual.root, "sandbox", "start", record.id)
    assert started.returncode == 1 and started.stderr.strip() == (
        f"loomtui: error: sandbox {record.id} is on build-2: start it there")
    logs = run_cli(manual.root, "sandbox", "logs", record.id)  # it read "the agent wrote no output (yet)", exit 0
    assert logs.returncode == 1 and logs.stderr.strip() == (
        f"loomtui: error: sandbox {record.id} is on build-2: read its log there")
    from loomtui.tui.log_follow import follow_sandbox_log

    shown: list[str] = []
    follow_sandbox_log(manual, record.id, shown.extend, lambda: None, lambda: True)  # the app's Log tab
    assert shown == ["(it runs on build-2: its log is there)"]
    # Once it ends there, its log is there still: the tab's look for a quiet agent's end said "(the agent wrote
    # no output)" of it.
    import threading

    from loomtui.tui.log_follow import STATUS_LOOK_S

    was, stop, cleared = sb.get_sandbox(manual, record.id).status, threading.Event(), []
    shown.clear()
    follower = threading.Thread(target=follow_sandbox_log, args=(
        manual, record.id, shown.extend, lambda: cleared.append(True), stop.is_set))
    follower.start()
    try:
        time.sleep(0.3)
        manual.store.update_sandbox(record.id, status="exited")
        time.sleep(STATUS_LOOK_S * 2.5)
    finally:
        stop.set()
        follower.join()
        manual.store.update_sandbox(record.id, status=was)
    assert (shown, cleared) == (["(it runs on build-2: its log is there)"], []), shown
    for refused, doing in ((lambda: agent_control.stop(manual, record.id), "stop it"),
                           (lambda: agent_control.pause(manual, record.id), "pause it"),
                           (lambda: review.merge(manual, record.id), "merge it"),
                           (lambda: tasks.remove(manual, record.id), "remove it")):
        with pytest.raises(LoomError, match=f"is on build-2: {doing} there"):
            refused()
    manual.store.update_sandbox(record.id, status=REJECTED)
    assert tasks.remove_done(manual) == []  # archived there, where its worktree is
    after = sb.get_sandbox(manual, record.id)
    assert after.status == REJECTED and after.pid is None and Path(after.worktree).is_dir()


def test_an_override_that_ran_out_merges_nothing_until_a_lead_overrides_again(manual: Workspace) -> None:
    """`--hours 0.0003` was recorded, and the change merged long after: the time an override lasts was kept
    in the store and never read. The log keeps it; a store row extended by hand is not believed."""
    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    lead = Workspace(manual.paths, manual.store, manual.audit, "lead@example.com")
    policy = load_policy(manual.root)
    decide(lead, policy, escalation, "override", reason="hotfix", expires_hours=0.0001)  # 0.36 s
    assert [e.details["override_expires"] for e in manual.audit.entries() if e.action == "escalation.override"]
    time.sleep(0.5)
    # Out of every view, its sandbox "approved · press m" and the merge refused: a person's to decide again.
    ran_out = next_step(manual, sb.get_sandbox(manual, sandbox_id))
    assert (ran_out.step, ran_out.action, ran_out.about) == (Step.WAIT_DECISION, PersonAction.OVERRIDE, str(escalation))
    assert ran_out.waits_on.startswith(f"a new override of escalation #{escalation} (the last ran out at ")
    assert [e.id for e in queue(manual)] == [escalation]
    assert status_lines(manual.store.get_escalation(escalation))[0].startswith("the override ran out at ")
    tip = Git(manual.root).resolve_commit(sb.get_sandbox(manual, sandbox_id).branch)
    manual.store.update_sandbox(sandbox_id, status=APPROVED, data={"approved_commit": tip})
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).action == PersonAction.OVERRIDE  # not "press m"
    manual.store.update_sandbox(sandbox_id, status=MERGED)  # nothing waits on it any more: not in the queue
    assert queue(manual) == []
    manual.store.update_sandbox(sandbox_id, status="awaiting_review")
    manual.store.update_escalation(escalation, data={"override_expires": time.time() + 3600})  # by hand
    with pytest.raises(LoomError, match=f"escalation #{escalation} was overridden until .*, and that has passed"):
        request_merge(manual, sandbox_id)
    assert "return amount * 2" not in (manual.root / "ledger.py").read_text()
    manual.store.update_escalation(escalation, data={"override_expires": time.time() - 1})  # as it was
    with pytest.raises(DecisionRefused, match="override ran out: only a new override decides it now"):
        decide(lead, policy, escalation, "approve")
    decide(lead, policy, escalation, "override", reason="still the hotfix")
    assert request_merge(manual, sandbox_id).status == MERGED


def test_a_rejected_sandbox_says_who_said_no_and_why(manual: Workspace) -> None:
    """Its Details named the escalation only ("escalation #3 rejected"): the reason was one more view away."""
    from loomtui.tui.sandbox_text import sandbox_fields

    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    decide(Workspace(manual.paths, manual.store, manual.audit, "lead@example.com"), load_policy(manual.root),
           escalation, "reject", reason="floats for money (ADR 0001)")
    record = advance(manual, sandbox_id)
    assert record.status == REJECTED
    said = f"escalation #{escalation} rejected by lead@example.com: floats for money (ADR 0001)"
    why = [f.value for f in sandbox_fields(sb.get_sandbox(manual, sandbox_id), None, None) if f.label == "why"]
    assert why == [said]


def tighten(workspace: Workspace, rule: str, *, commit: bool = True) -> None:
    """Add `rule` (policy YAML, indented as a rule) to the repository's policy, committed to main."""
    policy = workspace.root / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text() + textwrap.indent(textwrap.dedent(rule), "  "))
    if commit:
        git(workspace.root, "commit", "-qam", "the policy tightened")


def test_a_change_approved_before_the_policy_tightened_is_judged_again_before_it_merges(manual: Workspace) -> None:
    """Auto-approved, then a rule asking a lead for its file landed: `m` merged it, unasked (CI's gate then said
    NEEDS APPROVAL), as the review's judgement was never made again."""
    sandbox_id = run_task(manual, "helper", "lib.py", "x + 1", "x + 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_MERGE
    tighten(manual, """\
        - name: lib-needs-a-lead
          when: {paths: ["lib.py"]}
          decision: require
          approvals: {groups: [leads], count: 1}
    """)
    view = next_step(manual, sb.get_sandbox(manual, sandbox_id))
    assert (view.step, view.waits_on) == (Step.REVIEW, "the policy changed since its review")
    with pytest.raises(LoomError, match="not approved; the policy changed since its approval and it was judged again"):
        request_merge(manual, sandbox_id)
    # Its supervisor, finishing its end under a loaded machine, may judge it again too: read once it settles.
    wait_until_settled(manual, sandbox_id)
    record = sb.get_sandbox(manual, sandbox_id)
    escalation = manual.store.get_escalation(int(record.data["review_escalation"]))
    assert (record.status, escalation.status) == ("awaiting_review", "open")
    assert [r["name"] for r in escalation.data["rules"]] == ["anything", "lib-needs-a-lead"]
    assert "x + 2" not in (manual.root / "lib.py").read_text()
    evaluated = [e for e in manual.audit.entries() if e.action == "policy.evaluated" and e.subject == sandbox_id]
    assert [e.details.get("policy_changed") for e in evaluated] == [None, True]
    decide(Workspace(manual.paths, manual.store, manual.audit, "lead@example.com"), load_policy(manual.root),
           escalation.id, "approve")
    assert request_merge(manual, sandbox_id).status == MERGED


def test_a_lead_s_approval_stands_when_the_changed_policy_asks_what_it_answered(manual: Workspace) -> None:
    """A comment added to the policy, or a rule for other files, must not ask a lead to approve every change
    waiting to merge again; a rule asking two leads must."""
    lead = Workspace(manual.paths, manual.store, manual.audit, "lead@example.com")
    approved = []
    for name in ("ledger", "ledger-again"):
        sandbox_id = run_task(manual, name, "ledger.py", "return amount", f"return amount * {len(approved) + 2}")
        assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
        escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
        decide(lead, load_policy(manual.root), escalation, "approve")
        assert advance(manual, sandbox_id).status == APPROVED
        approved.append((sandbox_id, escalation))
    tighten(manual, """\
        # the payments team asked for this one
        - name: docs
          when: {paths: ["docs/**"]}
          decision: require
          approvals: {groups: [leads], count: 1}
    """, commit=False)
    first, decided = approved[0]
    assert next_step(manual, sb.get_sandbox(manual, first)).step == Step.REVIEW
    assert request_merge(manual, first).status == MERGED  # judged again, and the decision answers it
    assert sb.get_sandbox(manual, first).data["review_escalation"] == decided
    assert len(manual.store.list_escalations()) == 2
    git(manual.root, "checkout", "-q", "--", ".loom/policy.yaml")
    policy = manual.root / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text().replace("leads: [lead@example.com]", "leads: [lead@example.com, "
                                                 "cfo@example.com]").replace("count: 1}", "count: 2}"))
    second, _ = approved[1]
    with pytest.raises(LoomError, match="not approved"):
        request_merge(manual, second)
    asked = manual.store.get_escalation(int(sb.get_sandbox(manual, second).data["review_escalation"]))
    assert asked.status == "open" and status_lines(asked) == ["0 of 2 approvals from leads"]


def test_a_change_is_judged_again_by_the_policy_s_files_never_by_one_a_caller_read_before(manual: Workspace) -> None:
    """The app (and `advance --all`) passed the policy it held: a change approved under A was judged again under A,
    recorded as judged under B, and merged (a new CODEOWNERS, or a policy a merge just brought in)."""
    sandbox_id = run_task(manual, "helper", "lib.py", "x + 1", "x + 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_MERGE
    held = load_policy(manual.root)  # as the app holds it
    tighten(manual, """\
        - name: lib-needs-a-lead
          when: {paths: ["lib.py"]}
          decision: require
          approvals: {groups: [leads], count: 1}
    """)
    assert advance(manual, sandbox_id, policy=held).status == "awaiting_review"
    escalation = manual.store.get_escalation(int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"]))
    assert [r["name"] for r in escalation.data["rules"]] == ["anything", "lib-needs-a-lead"]


async def test_the_open_app_judges_an_approved_change_again_once_the_policy_s_files_change(
        manual: Workspace) -> None:
    """Nothing is written when the policy's files change: the app said "press m" while `sandbox list` said
    review (an edit not committed moves no branch either)."""
    from loomtui.tui.app import LoomApp
    from tests.test_tui import wait_for

    sandbox_id = run_task(manual, "helper", "lib.py", "x + 1", "x + 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_MERGE
    app = LoomApp(manual)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None and sandbox_id in app.latest_snapshot.steps)
        # With a change approved, the listener looks at the policy's files every POLICY_LOOK_SECONDS, not 30 s.
        from loomtui.tui.app import POLICY_LOOK_SECONDS

        assert app.latest_snapshot is not None and app.latest_snapshot.policy_read is not None
        await wait_for(pilot, lambda: app._listen_seconds() <= POLICY_LOOK_SECONDS)
        policy = manual.root / ".loom" / "policy.yaml"
        policy.write_text(policy.read_text() + "# read by the payments team\n")

        def judged_again() -> bool:
            return any(e.action == "policy.evaluated" and e.subject == sandbox_id and e.details.get("policy_changed")
                       for e in manual.audit.entries())

        await wait_for(pilot, judged_again)
        await wait_for(pilot, lambda: app.latest_snapshot is not None
                       and app.latest_snapshot.steps[sandbox_id].step == Step.WAIT_MERGE)  # approved as it was


async def test_the_open_app_reviews_a_change_again_once_the_policy_it_failed_on_is_fixed(manual: Workspace) -> None:
    """The row said "review failed: ...: unknown key" until someone pressed R, the file fixed long since."""
    from loomtui.tui.app import LoomApp
    from tests.test_tui import wait_for

    sandbox_id = run_task(manual, "helper", "lib.py", "x + 1", "x + 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_MERGE
    policy = manual.root / ".loom" / "policy.yaml"
    good = policy.read_text()
    app = LoomApp(manual)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.latest_snapshot is not None and sandbox_id in app.latest_snapshot.steps)
        policy.write_text(good + "extra_key: 1\n")
        await wait_for(pilot, lambda: app.latest_snapshot is not None
                       and app.latest_snapshot.steps[sandbox_id].step == Step.FAILED_STEP)
        policy.write_text(good + "# fixed\n")
        await wait_for(pilot, lambda: app.latest_snapshot is not None
                       and app.latest_snapshot.steps[sandbox_id].step == Step.WAIT_MERGE)
    assert sb.get_sandbox(manual, sandbox_id).data.get("step_error") is None


def test_a_policy_saved_with_a_typo_while_changes_wait_to_merge_moves_none_of_them(manual: Workspace) -> None:
    """A stray save with the app open had every approved change's review fail on the typo, left in `gating`
    with an error about a file fixed since, until someone pressed R on each."""
    sandbox_id = run_task(manual, "helper", "lib.py", "x + 1", "x + 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_MERGE
    held = load_policy(manual.root)  # as the app holds it
    policy = manual.root / ".loom" / "policy.yaml"
    good = policy.read_text()
    policy.write_text(good + "rules: [\n")  # no YAML: nothing is judged again until it reads
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.WAIT_MERGE
    assert advance(manual, sandbox_id, policy=held).status == APPROVED
    policy.write_text(good + "extra_key: 1\n")  # YAML, but no policy: its review is refused before anything moves
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.REVIEW
    assert advance(manual, sandbox_id, policy=held).status == APPROVED
    failed = next_step(manual, sb.get_sandbox(manual, sandbox_id))
    assert (failed.step, failed.action) == (Step.FAILED_STEP, PersonAction.RETRY), failed
    assert "extra_key: unknown key" in failed.waits_on
    # Fixed, the step is due again by itself (it read "review failed" until someone pressed R): judged again by
    # the policy as it is, and as it was before the typo, nothing is.
    policy.write_text(good + "# fixed\n")
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.REVIEW
    assert advance(manual, sandbox_id, policy=held).status == APPROVED
    assert "step_error" not in sb.get_sandbox(manual, sandbox_id).data or \
        sb.get_sandbox(manual, sandbox_id).data["step_error"] is None
    policy.write_text(good + "extra_key: 1\n")
    assert advance(manual, sandbox_id, policy=held).now.step == Step.FAILED_STEP
    policy.write_text(good)  # fixed again: due again too, judged by it (the last review read "# fixed")
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.REVIEW
    assert request_merge(manual, sandbox_id).status == MERGED


def test_an_override_stands_only_while_its_giver_may_still_override(manual: Workspace) -> None:
    """Approvals were counted again against the groups as they are now; an override by someone moved out of the
    override groups kept its change going."""
    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    decide(Workspace(manual.paths, manual.store, manual.audit, "lead@example.com"), load_policy(manual.root),
           escalation, "override", reason="hotfix")
    assert advance(manual, sandbox_id).status == APPROVED
    policy = manual.root / ".loom" / "policy.yaml"
    policy.write_text(policy.read_text() + "# the payments team's\n")  # a comment: the override stands
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.REVIEW
    assert advance(manual, sandbox_id).status == APPROVED
    # A typo in loom.yaml is no policy change (which policy it names is not known): nothing is judged again.
    config = manual.root / ".loom" / "loom.yaml"
    config.write_text("version: 1\ngates: [\n")
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.WAIT_MERGE
    config.write_text("version: 1\n")
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.WAIT_MERGE
    # Given for the 24 hours the policy allowed, it no longer stands where the policy now allows 1.
    shorter = policy.read_text().replace("overrides: {groups: [leads]}", "overrides: {groups: [leads], max_hours: 1}")
    policy.write_text(shorter)
    with pytest.raises(LoomError, match="not approved"):
        request_merge(manual, sandbox_id)
    asked = manual.store.get_escalation(int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"]))
    assert asked.id != escalation and asked.status == "open"
    decide(Workspace(manual.paths, manual.store, manual.audit, "lead@example.com"), load_policy(manual.root),
           asked.id, "override", reason="hotfix, an hour")
    assert advance(manual, sandbox_id).status == APPROVED
    policy.write_text(shorter + "# read again\n")  # an override as long as the policy allows stands
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.REVIEW
    assert advance(manual, sandbox_id).status == APPROVED
    policy.write_text(policy.read_text().replace("leads: [lead@example.com]", "leads: [cfo@example.com]"))
    with pytest.raises(LoomError, match="not approved"):
        request_merge(manual, sandbox_id)
    again = manual.store.get_escalation(int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"]))
    assert again.id not in (escalation, asked.id) and again.status == "open"


async def test_the_app_counts_an_override_that_runs_out_with_nothing_written(
        manual: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """An override running out writes nothing: the header said 3 escalations for good while `status` said 4."""
    import types

    from textual.widgets import DataTable

    from loomtui.governance import escalations as governed
    from loomtui.tui.app import LoomApp
    from loomtui.tui.widgets.status_header import StatusHeader
    from tests.test_tui import wait_for

    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    lead = Workspace(manual.paths, manual.store, manual.audit, "lead@example.com")
    decide(lead, load_policy(manual.root), escalation, "override", reason="hotfix", expires_hours=4 / 3600)
    # Whether the override still runs is judged at the moment it was given until the app has read it running:
    # a loaded machine took longer than its 4 seconds to start the app, and it was never read running.
    given = time.time()
    clock: dict[str, float | None] = {"now": given}
    monkeypatch.setattr(governed, "time", types.SimpleNamespace(time=lambda: clock["now"] or time.time()))
    app = LoomApp(manual)
    async with app.run_test(size=(120, 40)) as pilot:
        header = app.screen.query_one(StatusHeader)
        await wait_for(pilot, lambda: app.latest_snapshot is not None and app.latest_snapshot.next_override_end)
        assert header.escalations == 0
        clock["now"] = None
        await pilot.press("3")
        await pilot.pause()
        table = app.screen.query_one("#queue", DataTable)
        await wait_for(pilot, lambda: header.escalations == 1)  # within a second of its end, no event read
        await wait_for(pilot, lambda: table.row_count == 1)  # and in the queue itself (it stayed empty)


def test_a_snapshot_read_as_an_override_runs_out_counts_it_or_wakes_for_it(
        manual: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """An override running out between the snapshot's count of what is to decide and its read of the next end
    was counted running with no end to wake for: the app's header stood at 0 for its listener's 30 s wait."""
    import types

    from loomtui.governance import escalations as governed
    from loomtui.tui import snapshot as snapshots

    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    lead = Workspace(manual.paths, manual.store, manual.audit, "lead@example.com")
    decide(lead, load_policy(manual.root), escalation, "override", reason="hotfix", expires_hours=1)
    given = manual.store.get_escalation(escalation)
    assert given is not None
    end = float(given.data["override_expires"])
    clock = {"now": end - 60}
    monkeypatch.setattr(governed, "time", types.SimpleNamespace(time=lambda: clock["now"]))
    counted = snapshots.to_decide

    def count_then_run_out(*args: object, **kwargs: object) -> object:
        found = counted(*args, **kwargs)
        clock["now"] = end + 1  # the override runs out right after the count
        return found

    monkeypatch.setattr(snapshots, "to_decide", count_then_run_out)
    read = snapshots.read_snapshot(manual, 0)
    assert read.escalations_to_decide or read.next_override_end == end, read.next_override_end


def test_a_new_override_after_one_that_ran_out_moves_the_task_on(manual: Workspace) -> None:
    """The step that failed for the override that ran out ("needs a new override") stood after the new one
    was given, the sandbox awaiting review, until someone ran `sandbox advance`."""
    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    escalation = sb.get_sandbox(manual, sandbox_id).data["review_escalation"]
    gone = run_cli(manual.root, "escalation", "override", str(escalation), "--reason", "r", "--hours", "1e-9",
                   user="lead@example.com")
    assert f"next: waits for a new override of escalation #{escalation} (the last ran out at " in gone.stdout, \
        gone.stdout
    # Counted where a lead looks first (they counted open escalations only: "0" while the queue held it).
    assert "1 escalation to decide" in run_cli(manual.root, "status").stdout
    from loomtui.tui.snapshot import read_snapshot

    assert [e.id for e in read_snapshot(manual, 0).escalations_to_decide] == [int(escalation)]
    time.sleep(0.1)
    again = run_cli(manual.root, "escalation", "override", str(escalation), "--reason", "real one", "--hours", "2",
                    user="lead@example.com")
    assert again.returncode == 0, again.stderr
    assert "new override" not in again.stdout, again.stdout
    assert sb.get_sandbox(manual, sandbox_id).status == APPROVED
    # Decided where no advance followed (a command cut short, another machine): whoever advances next retries.
    other = run_task(manual, "ledger again", "ledger.py", "return amount", "return amount * 3")
    assert wait_until_settled(manual, other).step == Step.WAIT_DECISION
    second = int(sb.get_sandbox(manual, other).data["review_escalation"])
    lead = Workspace(manual.paths, manual.store, manual.audit, "lead@example.com")
    decide(lead, load_policy(manual.root), second, "override", reason="r", expires_hours=1e-9)
    waiting = advance(manual, other).now  # a person's to decide again, not a step that failed
    assert (waiting.step, waiting.action, waiting.about) == (Step.WAIT_DECISION, PersonAction.OVERRIDE, str(second))
    decide(lead, load_policy(manual.root), second, "override", reason="real one", expires_hours=2)
    # Its step is due again, for any advance (the app advances only steps due: a failed one stood for good).
    assert next_step(manual, sb.get_sandbox(manual, other)).step == Step.FOLLOW_DECISION
    assert advance(manual, other).status == APPROVED


def test_claims_are_released_on_reject_and_on_archive(manual: Workspace) -> None:
    rejected = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2",
                        claims=["lib.py::helper"])
    view = wait_until_settled(manual, rejected)
    assert view.step == Step.WAIT_DECISION and manual.store.live_claims(rejected)
    escalation = int(sb.get_sandbox(manual, rejected).data["review_escalation"])
    lead = Workspace(manual.paths, manual.store, manual.audit, "lead@example.com")
    decide(lead, load_policy(manual.root), escalation, "reject", reason="doubles every amount")
    assert advance(manual, rejected).status == REJECTED
    assert manual.store.live_claims(rejected) == []

    archived = tasks.create_sandbox(manual, "hold app", "script", claims=["app.py::main"],
                                    script=script(manual, "idle", "- {log: idle}\n"))
    assert manual.store.live_claims(archived.id)
    tasks.remove(manual, archived.id, force=True)
    assert sb.get_sandbox(manual, archived.id).status == ARCHIVED
    assert manual.store.live_claims(archived.id) == []
    assert run_cli(manual.root, "conflicts").returncode == 0


# -- dependencies ------------------------------------------------------------------------------


def test_a_task_after_another_starts_from_its_merged_work(auto: Workspace) -> None:
    first = run_task(auto, "helper", "lib.py", "x + 1", "x + 2", claims=["lib.py::helper"])
    second = tasks.create_sandbox(auto, "use helper", "script", after=[first], autostart=True,
                                  claims=["app.py::main"],
                                  script=edit(auto, "caller", "app.py", "helper(1)", "helper(2)"))
    assert second.data["after"] == [first]
    wait_until_settled(auto, first)
    wait_until(lambda: sb.get_sandbox(auto, second.id).status == MERGED, timeout=60, what="the second merged")
    merged_first = sb.get_sandbox(auto, first).data["merged_commit"]
    assert sb.get_sandbox(auto, second.id).data["base_sha"] == merged_first
    assert "x + 2" in git(auto.root, "show", "main:lib.py")
    assert "helper(2)" in git(auto.root, "show", "main:app.py")
    # After a task merged and archived since: prepared at once, as after a merged one (it stood at
    # `prepare`, no hint in the list, until someone ran `sandbox advance`).
    tasks.remove(auto, first)
    third = tasks.create_sandbox(auto, "more", "script", after=[first],
                                 script=edit(auto, "more", "app.py", "helper(2)", "helper(3)"))
    assert third.worktree and next_step(auto, third).step == Step.WAIT_START


def test_an_agent_starting_while_the_history_is_packed_says_so(manual: Workspace) -> None:
    """A first start in a large repository packs the history its git reads (as long as a local clone):
    minutes of a bare "agent starting" looked stuck."""
    from loomtui.execution.isolation import PUBLISHED_OBJECTS
    from loomtui.execution.procs import identity
    from loomtui.execution.seen_objects import _locked, publishing

    record = tasks.create_sandbox(manual, "wait", "script", script=edit(manual, "w", "lib.py", "x + 1", "x + 2"))
    record = manual.store.update_sandbox(record.id, pid=os.getpid(), pid_start=identity(os.getpid()))  # its supervisor
    root = manual.paths.state_dir / PUBLISHED_OBJECTS
    assert next_step(manual, record).line() == "agent starting" and not publishing(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):  # a supervisor packing it
        assert publishing(root)
        assert "agent starting: packing the history its git reads" in next_step(manual, record).line()
        listed = run_cli(manual.root, "sandbox", "list")
        assert "next: agent starting: packing the history its git reads" in listed.stdout, listed.stdout
    assert not publishing(root) and next_step(manual, record).line() == "agent starting"


def test_a_waiting_tasks_line_range_holds_the_code_those_lines_name_when_it_is_stated(manual: Workspace) -> None:
    """A task after another claimed `path:N-M` as written: read again once the first merged, whose lines moved
    the code, it held the function above the one meant and left that one free to anyone."""
    first = tasks.create_sandbox(manual, "helper", "script", script=edit(manual, "h", "lib.py", "x + 1", "x + 2"))
    waiting = tasks.create_sandbox(manual, "use helper", "script", after=[first.id], claims=["app.py:4-5"],
                                   script=edit(manual, "caller", "app.py", "helper(1)", "helper(2)"))
    assert waiting.data["claims"] == ["app.py::main"]
    # `sandbox list` says what it waits on, as `sandbox new` and the app's Next column did (its row said nothing).
    assert f"next: waits for {first.id}" in run_cli(manual.root, "sandbox", "list").stdout
    # The code those lines held renamed meanwhile (as the task it waits on may do): its file is claimed whole, the
    # task not stuck on "unknown region" for good.
    (manual.root / "app.py").write_text((manual.root / "app.py").read_text().replace("def main", "def main2"))
    git(manual.root, "commit", "-qam", "main renamed")
    tasks.drop_after(manual, waiting.id)
    advance(manual, waiting.id)
    assert [c.target for c in manual.store.live_claims(waiting.id)] == ["app.py"]
    # A task that starts now resolves its lines now: kept as written, as claimed.
    now = tasks.create_sandbox(manual, "ledger", "script", claims=["ledger.py:1-2"],
                               script=edit(manual, "l", "ledger.py", "amount", "amount"))
    assert now.data["claims"] == ["ledger.py:1-2"]


def test_a_waiting_task_holds_nothing_until_its_dependency_merges(manual: Workspace) -> None:
    first = run_task(manual, "helper", "lib.py", "x + 1", "x + 2")
    second = tasks.create_sandbox(manual, "use helper", "script", after=[first], autostart=True,
                                  claims=["app.py::main"],
                                  script=edit(manual, "caller", "app.py", "helper(1)", "helper(2)"))
    wait_until_settled(manual, first)
    record = sb.get_sandbox(manual, second.id)
    view = next_step(manual, record)
    assert (record.status, view.step) == (PLANNED, Step.WAIT_TASKS) and first in view.line()
    assert manual.store.live_claims(second.id) == [] and not Path(record.worktree).exists()
    request_merge(manual, first)  # merging it starts the one that waited
    wait_until_settled(manual, second.id)
    assert sb.get_sandbox(manual, second.id).data["base_sha"] == sb.get_sandbox(manual, first).data["merged_commit"]


def test_a_task_waiting_for_claims_starts_once_they_are_let_go(manual: Workspace) -> None:
    """Planned work that met a held claim waits (not rejected) and goes on by itself when the holder
    ends, or when a person releases the claim; it used to stay `planned` with nothing to say why."""
    def waiting_task(name: str) -> str:
        record = tasks.create_sandbox(manual, name, "script", claims=["lib.py::helper"], autostart=True,
                                      wait_for_claims=True,
                                      script=edit(manual, name, "lib.py", "x + 1", "x + 3"))
        assert next_step(manual, sb.get_sandbox(manual, record.id)).step == Step.WAIT_CLAIMS
        return record.id

    holder = tasks.create_sandbox(manual, "hold", "command", claims=["lib.py::helper"], autostart=True,
                                  command=["sleep", "60"])
    first = waiting_task("first")
    wait_until(lambda: sb.get_sandbox(manual, holder.id).status == RUNNING, timeout=30, what="the holder running")
    agent_control.stop(manual, holder.id, grace=1)  # ended without a change: its claim goes back, the waiter starts
    wait_until(lambda: sb.get_sandbox(manual, first).status != PLANNED, timeout=30, what="the waiter started")
    assert [c.sandbox_id for c in manual.store.live_claims()] == [first]

    second = waiting_task("second")
    [claim] = manual.store.live_claims(first)
    released = run_cli(manual.root, "claim", "release", str(claim.id), "--sandbox", first)
    assert released.returncode == 0, released.stderr
    assert f"sandbox {second}, which waited for it:" in released.stdout
    wait_until(lambda: sb.get_sandbox(manual, second).status != PLANNED, timeout=30, what="the second started")


def test_a_task_that_waited_for_claims_starts_from_what_their_holder_merged(manual: Workspace) -> None:
    """It started from the commit it was stated on: its change then conflicted with the holder's merged one,
    the very thing it waited to avoid (`--after` tasks already started from the target as it is)."""
    holder = run_task(manual, "double", "lib.py", "x + 1", "x + 2", claims=["lib.py::helper"])
    wait_until_settled(manual, holder)
    assert sb.get_sandbox(manual, holder).status == APPROVED  # the merge is a person's: it holds its claim
    waiter = tasks.create_sandbox(manual, "tune", "script", claims=["lib.py::helper"], autostart=True,
                                  wait_for_claims=True, script=edit(manual, "tune", "lib.py", "def helper(x):",
                                                                    "def helper(x):  # tuned"))
    assert next_step(manual, sb.get_sandbox(manual, waiter.id)).step == Step.WAIT_CLAIMS
    request_merge(manual, holder)
    wait_until_settled(manual, waiter.id)
    tuned = sb.get_sandbox(manual, waiter.id)
    assert "x + 2" in git(manual.root, "show", f"{tuned.branch}:lib.py")  # the holder's merged change under it
    assert tuned.data["base_sha"] == git(manual.root, "rev-parse", "main").strip()
    request_merge(manual, waiter.id)
    assert git(manual.root, "show", "main:lib.py") == "def helper(x):  # tuned\n    return x + 2"
    # One stated on a base of its own (a hotfix on a tag) starts from it still, however long it waited.
    git(manual.root, "tag", "v1", "HEAD~2")
    holder = run_task(manual, "hold", "lib.py", "x + 2", "x + 5", claims=["lib.py::helper"])
    wait_until_settled(manual, holder)
    hotfix = tasks.create_sandbox(manual, "hotfix", "script", claims=["lib.py::helper"], autostart=True,
                                  wait_for_claims=True, base="v1",
                                  script=edit(manual, "hotfix", "lib.py", "x + 1", "x + 1  # fixed"))
    assert next_step(manual, sb.get_sandbox(manual, hotfix.id)).step == Step.WAIT_CLAIMS
    tasks.remove(manual, holder, force=True)
    wait_until_settled(manual, hotfix.id)
    assert sb.get_sandbox(manual, hotfix.id).data["base_sha"] == git(manual.root, "rev-parse", "v1^{commit}").strip()


def test_a_task_waiting_for_a_failed_holder_s_claims_says_it_waits_until_that_one_runs_or_goes(
        manual: Workspace) -> None:
    """A failed sandbox keeps its claims (for a run again): the task waiting for them sat `planned` for good,
    saying only who held them (`sandbox new --claim` said what frees them)."""
    failed = tasks.create_sandbox(manual, "try", "command", claims=["lib.py::helper"], autostart=True,
                                  command=["sh", "-c", "exit 3"])
    wait_until(lambda: sb.get_sandbox(manual, failed.id).status == FAILED, timeout=30, what="the holder failed")
    waiter = tasks.create_sandbox(manual, "tune", "script", claims=["lib.py::helper"], autostart=True,
                                  wait_for_claims=True, script=edit(manual, "tune", "lib.py", "x + 1", "x + 3"))
    view = next_step(manual, sb.get_sandbox(manual, waiter.id))
    assert view.step == Step.WAIT_CLAIMS, view
    assert view.waits_on.endswith(f"; {failed.id} failed and keeps its claims for a run again: until it is run "
                                  "again or removed, this task waits"), view.waits_on
    tasks.remove(manual, failed.id, force=True)  # as it says: the waiter starts
    wait_until(lambda: sb.get_sandbox(manual, waiter.id).status != PLANNED, timeout=30, what="the waiter started")


def test_merging_a_task_not_yet_started_is_refused_and_starts_nothing(manual: Workspace) -> None:
    """`sandbox merge` follows people's decisions first; on a planned task that advance used to start its agent."""
    record = sb.plan_sandbox(manual, "due", "script", script=edit(manual, "due", "lib.py", "x + 1", "x + 3"))
    assert next_step(manual, record).step == Step.PREPARE  # due: any advance would prepare and start it
    with pytest.raises(LoomError, match=f"sandbox {record.id} is planned, not approved"):
        request_merge(manual, record.id)
    after = sb.get_sandbox(manual, record.id)
    assert after.status == PLANNED and after.pid is None


def test_a_start_refused_at_its_claims_says_why_in_the_apps_detail(manual: Workspace) -> None:
    """Kept as `rejected` (a script asking in JSON is told which); the app showed only `rejected –`."""
    from loomtui.coordination.claims import ClaimRefused
    from loomtui.tui.sandbox_text import sandbox_fields

    governed_coordinator(manual).claim("other", "lib.py::helper")
    with pytest.raises(ClaimRefused) as refused:
        tasks.create_sandbox(manual, "helper", "script", claims=["lib.py::helper"],
                             script=edit(manual, "helper", "lib.py", "x + 1", "x + 2"))
    record = sb.get_sandbox(manual, str(refused.value.recorded_sandbox))
    why = next(f.value for f in sandbox_fields(record, None, None) if f.label == "why")
    assert record.status == REJECTED and "held by sandbox other" in why


def test_a_task_whose_claims_were_let_go_where_nothing_advanced_it_says_how_to_go_on(manual: Workspace) -> None:
    """A lease that ran out frees a claim with no process to notice: the waiting task says what to run."""
    record = sb.plan_sandbox(manual, "waits", "script", claims=["lib.py::helper"],
                             script=edit(manual, "waits", "lib.py", "x + 1", "x + 3"))
    manual.store.update_sandbox(record.id, data={"claims_wait": {"why": "held by sandbox gone", "holders": ["gone"]}})
    view = next_step(manual, sb.get_sandbox(manual, record.id))
    assert (view.step, view.action) == (Step.PREPARE, PersonAction.RETRY)
    assert view.line(STEP_HINTS) == (f"prepare: the claims it waited for are free "
                                     f"(`loomtui sandbox advance {record.id}` retries)")


def held_after_a_failure(manual: Workspace) -> tuple[str, str]:
    """(the failed task, removed unmerged; the task that came after it, held): their ids."""
    failing = tasks.create_sandbox(manual, "fail", "script", autostart=True,
                                   script=script(manual, "fail", "- {exit: 3}\n"))
    after = tasks.create_sandbox(manual, "after the failure", "script", after=[failing.id], autostart=True,
                                 script=edit(manual, "after", "lib.py", "x + 1", "x + 5"))
    wait_until_settled(manual, failing.id)
    tasks.remove(manual, failing.id, force=True)
    return failing.id, after.id


def test_a_task_after_a_failed_one_is_held_not_started_on_a_broken_base(manual: Workspace) -> None:
    failed, after = held_after_a_failure(manual)
    view = advance(manual, after).now
    assert view.step == Step.HELD and failed in view.waits_on
    assert sb.get_sandbox(manual, after).status == PLANNED
    # Its branch is made when it starts: `sandbox diff` said the branch "no longer exists".
    shown = run_cli(manual.root, "sandbox", "diff", after)
    assert (shown.returncode, shown.stderr) == (1, f"loomtui: error: sandbox {after} has not started: no branch yet, so "
                                                   "no change to show\n")


def test_a_task_after_one_merged_into_another_branch_is_held_not_started_without_it(manual: Workspace) -> None:
    """`sandbox merge A --into release` counted as merged for a task after A on main: it started from main,
    which lacks A's change; stated after that merge, it was prepared at once the same way."""
    git(manual.root, "branch", "release")
    first = run_task(manual, "double", "lib.py", "x + 1", "x + 2")
    wait_until_settled(manual, first)
    later = run_task(manual, "then", "app.py", "helper(1)", "helper(2)", after=[first])
    request_merge(manual, first, into="release")
    for waiting in (later, run_task(manual, "stated after", "app.py", "helper(1)", "helper(3)", after=[first])):
        view = next_step(manual, sb.get_sandbox(manual, waiting))
        assert (view.step, view.action) == (Step.HELD, PersonAction.CANCEL), view
        assert view.waits_on.startswith(f"{first} merged into release, not main"), view.waits_on
        assert not sb.has_worktree(sb.get_sandbox(manual, waiting))
    tasks.drop_after(manual, later)  # as it says: started from main as it is
    assert sb.has_worktree(sb.get_sandbox(manual, later))


def test_a_task_after_one_that_ended_with_no_change_is_held_not_left_waiting(manual: Workspace) -> None:
    """Its dependency exited 0 without a commit: nothing of it will ever merge, yet the task said
    "waits for the merge of X (exited)" for good, with no hint."""
    idle = tasks.create_sandbox(manual, "do nothing", "script", autostart=True,
                                script=script(manual, "idle", "- {log: nothing to do}\n"))
    after = tasks.create_sandbox(manual, "after the idle one", "script", after=[idle.id],
                                 script=edit(manual, "after-idle", "lib.py", "x + 1", "x + 6"))
    wait_until_settled(manual, idle.id)
    assert sb.get_sandbox(manual, idle.id).status == EXITED
    view = advance(manual, after.id).now
    assert (view.step, view.action) == (Step.HELD, PersonAction.CANCEL) and f"{idle.id} ended without merging (exited)" in view.waits_on
    assert f"sandbox drop-after {after.id}" in view.line(STEP_HINTS)


def test_a_held_task_dropping_the_failed_one_starts_from_the_target_as_it_is(manual: Workspace) -> None:
    failed_id, after_id = held_after_a_failure(manual)
    after = sb.get_sandbox(manual, after_id)
    view = advance(manual, after.id).now
    assert view.step == Step.HELD and view.action == PersonAction.CANCEL
    assert f"sandbox drop-after {after.id}" in view.line(STEP_HINTS)  # the hint names a command that exists
    stranger = run_cli(manual.root, "sandbox", "drop-after", after.id, after.id)
    assert stranger.returncode == 2 and stranger.stderr.count("\n") == 1 and "does not wait for" in stranger.stderr
    # The target moves on meanwhile: it starts from there (it started from the commit it was stated on).
    (manual.root / "NOTES.md").write_text("moved on\n")
    git(manual.root, "add", "NOTES.md")
    git(manual.root, "commit", "-qm", "main moves on")
    done = run_cli(manual.root, "sandbox", "drop-after", after.id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"sandbox {after.id} no longer waits for {failed_id}: ") and (
        "waits for no other task" not in done.stdout), done.stdout
    wait_until_settled(manual, after.id)
    record = sb.get_sandbox(manual, after.id)
    assert record.status != PLANNED and record.data["base_sha"] == git(manual.root, "rev-parse", "main").strip()
    assert "sandbox.after_dropped" in actions(manual, after.id)
    again = run_cli(manual.root, "sandbox", "drop-after", after.id)  # no longer planned: one line, exit 1
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "only a planned task" in again.stderr


def test_after_an_unknown_or_rejected_task_is_one_clear_error(manual: Workspace) -> None:
    result = run_cli(manual.root, "sandbox", "new", "--runtime", "script", "--task", "t", "--after", "nosuch",
                     "--script", str(edit(manual, "x", "lib.py", "x + 1", "x + 2")))
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and "nosuch" in result.stderr
    assert manual.store.list_sandboxes(include_archived=True) == []
    # After a task that exists: its worktree comes when it starts; the path was printed as if it were there.
    first = tasks.create_sandbox(manual, "first", "script", script=edit(manual, "f", "lib.py", "x + 1", "x + 3"))
    later = run_cli(manual.root, "sandbox", "new", "--runtime", "script", "--task", "t", "--after", first.id,
                    "--script", str(edit(manual, "x", "lib.py", "x + 1", "x + 2")))
    [line] = [line for line in later.stdout.splitlines() if line.startswith("  worktree ")]
    assert later.returncode == 0 and line.endswith(" (made when it starts)"), later.stdout
    assert not Path(line.split()[1]).exists()


# -- merge conflicts -----------------------------------------------------------------------------


def test_a_conflicting_merge_waits_with_the_conflict_named(manual: Workspace) -> None:
    two = run_task(manual, "two", "lib.py", "x + 1", "x + 20")
    wait_until_settled(manual, two)
    # Someone's commit on main since (a second sandbox's commit there is refused: the first's holds lib.py).
    (manual.root / "lib.py").write_text((manual.root / "lib.py").read_text().replace("x + 1", "x + 10"))
    git(manual.root, "commit", "-qam", "one")
    with pytest.raises(Exception, match="conflict"):
        request_merge(manual, two)
    view = next_step(manual, sb.get_sandbox(manual, two))
    assert view.step == Step.MERGE_CONFLICT and "lib.py" in view.waits_on
    assert sb.get_sandbox(manual, two).status == APPROVED
    # The list says what to do (it said nothing: a new user was stranded), and doing it works: the
    # target merged into the sandbox's worktree, resolved and committed, is reviewed again, then merges.
    listed = run_cli(manual.root, "sandbox", "list").stdout
    assert f"next: merge-conflict: merging loom/{two} into main would conflict in lib.py" in listed
    assert "in its worktree `git merge` the target, resolve and commit" in listed
    tree = Path(sb.get_sandbox(manual, two).worktree)
    assert subprocess.run(["git", "merge", "-q", "main"], cwd=tree, capture_output=True).returncode != 0
    (tree / "lib.py").write_text("def helper(x):\n    return x + 30\n")
    git(tree, "commit", "-qam", "both, resolved")
    assert next_step(manual, sb.get_sandbox(manual, two)).step == Step.REVIEW
    run_cli(manual.root, "sandbox", "advance", two)
    # Reviewed again and approved, the merge asked for earlier is done: no longer the conflict its branch has moved
    # past (it read "merge-conflict" until main moved, and the app's `m` refused it).
    assert sb.get_sandbox(manual, two).status == MERGED
    assert (manual.root / "lib.py").read_text() == "def helper(x):\n    return x + 30\n"


# -- the CLI -----------------------------------------------------------------------------------


def test_a_step_due_that_nothing_runs_says_so_in_the_list(manual: Workspace) -> None:
    """A task to start whose `sandbox new` was interrupted (or a review whose supervisor was killed) stood in the
    list with no word: nothing moved it until someone thought of `sandbox advance`."""
    record = tasks.create_sandbox(manual, "stranded", "script", script=edit(manual, "s", "lib.py", "x + 1", "x + 2"))
    manual.store.update_sandbox(record.id, data={"autostart": True})  # as when its creator died before starting it
    assert next_step(manual, sb.get_sandbox(manual, record.id)).step == Step.START
    listed = run_cli(manual.root, "sandbox", "list").stdout
    assert f"next: start (due, and nothing here is doing it: `loomtui sandbox advance {record.id}` does it)" \
        in listed, listed
    run_cli(manual.root, "sandbox", "advance", record.id)
    wait_until_settled(manual, record.id)
    assert "nothing here is doing it" not in run_cli(manual.root, "sandbox", "list").stdout


def test_sandbox_advance_all_reports_each_task_as_json(manual: Workspace) -> None:
    sandbox_id = _ended_unadvanced(manual, "cli")
    result = run_cli(manual.root, "sandbox", "advance", "--all", "--json")
    assert result.returncode == 0, result.stderr
    advanced = {a["sandbox"]: a for a in json.loads(result.stdout)["advanced"]}
    assert advanced[sandbox_id]["status"] == APPROVED and advanced[sandbox_id]["step"] == "wait-merge"
    assert run_cli(manual.root, "sandbox", "advance").returncode != 0


def test_sandbox_advance_all_says_where_each_task_is_once_the_whole_run_is_done(auto: Workspace) -> None:
    """A task advanced before the one it waited on merged was said as "planned; waits for X to merge", a few
    lines below the line saying it had been started."""
    first = _ended_unadvanced(auto, "first")
    after = tasks.create_sandbox(auto, "after it", "script", after=[first],
                                 script=script(auto, "later", "- {log: after}\n"))
    result = run_cli(auto.root, "sandbox", "advance", "--all", "--json")
    advanced = {a["sandbox"]: a for a in json.loads(result.stdout)["advanced"]}
    assert advanced[first]["status"] == MERGED, advanced
    now = sb.get_sandbox(auto, after.id)
    assert (advanced[after.id]["status"], advanced[after.id]["step"]) == (now.status, str(next_step(auto, now).step))
    assert advanced[after.id]["step"] != "wait-tasks", advanced[after.id]
    wait_until_settled(auto, after.id)


def test_a_merge_into_a_missing_branch_fails_advance_says_so_and_a_right_one_then_merges(manual: Workspace) -> None:
    sandbox_id = run_task(manual, "into", "lib.py", "x + 1", "x + 4")
    wait_until_settled(manual, sandbox_id)
    typo = run_cli(manual.root, "sandbox", "merge", sandbox_id, "--into", "nope")
    # The command line's typo is an input error, said before the merge step runs: nothing is recorded.
    assert (typo.returncode, typo.stderr) == (2, "loomtui: error: --into 'nope': no such branch here\n")
    assert "failed" not in run_cli(manual.root, "sandbox", "advance", sandbox_id).stdout
    with pytest.raises(LoomError, match="target branch 'nope' does not exist"):  # the engine's own step fails
        request_merge(manual, sandbox_id, into="nope")
    again = run_cli(manual.root, "sandbox", "advance", sandbox_id)  # retries, fails again: exit 1 for scripts
    assert again.returncode == 1 and "merge failed: target branch 'nope'" in again.stdout, again.stdout
    merged = run_cli(manual.root, "sandbox", "merge", sandbox_id, "--into", "main")  # not the old failure
    assert merged.returncode == 0, merged.stderr
    assert sb.get_sandbox(manual, sandbox_id).status == MERGED


def test_a_merge_stopped_by_local_changes_names_the_files_and_keeps_them(manual: Workspace) -> None:
    sandbox_id = run_task(manual, "local", "lib.py", "x + 1", "x + 5")
    wait_until_settled(manual, sandbox_id)
    mine = (manual.root / "lib.py").read_text().replace("x + 1", "x + 1  # mine, not yet committed")
    (manual.root / "lib.py").write_text(mine)
    with pytest.raises(LoomError, match=r"overwritten by merge: lib\.py; commit or stash them there, then merge "
                                        r"again\); nothing was changed"):
        request_merge(manual, sandbox_id)
    assert (manual.root / "lib.py").read_text() == mine and sb.get_sandbox(manual, sandbox_id).status != MERGED
    failed = [e for e in manual.audit.entries() if e.action == "workflow.step_failed" and e.subject == sandbox_id]
    assert len(failed) == 1  # tried once: the request's retry tried its own fresh failure again (two entries)
    git(manual.root, "checkout", "--", "lib.py")
    request_merge(manual, sandbox_id)
    assert sb.get_sandbox(manual, sandbox_id).status == MERGED and "x + 5" in (manual.root / "lib.py").read_text()


def _a_plan_run_cut_short(manual: Workspace, monkeypatch: pytest.MonkeyPatch) -> tuple[SandboxRecord, str]:
    """A two-task plan whose `plan run` was killed after stating its first task, that task settled: the
    sandbox and the run id."""
    from loomtui.workflow import planrun

    for name, (path, old, new) in {"caller": ("app.py", "helper(1)", "helper(2)"),
                                   "callee": ("lib.py", "x + 1", "x + 2")}.items():
        (manual.root / ".loom" / f"{name}.yaml").write_text(edit(manual, name, path, old, new).read_text())
    (manual.root / ".loom" / "plan.yaml").write_text(
        "version: 1\ntasks:\n"
        "  - {name: caller, task: use it twice, runtime: script, script: .loom/caller.yaml, claims: ['app.py::main']}\n"
        "  - {name: callee, task: change it, runtime: script, script: .loom/callee.yaml, claims: ['lib.py::helper']}\n")
    stated = planrun.create_sandbox

    def killed_at_the_second(*args: object, **kwargs: object) -> object:
        if manual.store.list_sandboxes():
            raise KeyboardInterrupt  # as a kill there leaves it
        return stated(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(planrun, "create_sandbox", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        planrun.run_plan(manual)
    monkeypatch.setattr(planrun, "create_sandbox", stated)
    [first] = manual.store.list_sandboxes()
    wait_until_settled(manual, first.id)
    assert sb.get_sandbox(manual, first.id).status == APPROVED  # done: the plan no longer reads as running
    return first, first.data["plan"]["run"]


def test_a_plan_run_cut_short_is_resumed_not_run_again(manual: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `plan run` killed part way: run again, it stated every task once more, and those done were merged twice."""
    first, run = _a_plan_run_cut_short(manual, monkeypatch)
    again = run_cli(manual.root, "plan", "run")
    assert again.returncode == 1 and again.stderr.strip() == (
        f"loomtui: error: plan run {run} of .loom/plan.yaml was cut short: 1 of 2 tasks stated (callee), not caller; "
        "`loomtui plan run .loom/plan.yaml --resume` states the rest, --again every task once more"), again.stderr
    resumed = run_cli(manual.root, "plan", "run", "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    said = json.loads(resumed.stdout)
    assert said["run"] == run and said["sandboxes"]["callee"] == first.id
    caller = sb.get_sandbox(manual, said["sandboxes"]["caller"])
    assert caller.data["after"] == [first.id] and caller.data["plan"]["run"] == run
    assert len(manual.store.list_sandboxes()) == 2  # the task done is not stated again
    nothing = run_cli(manual.root, "plan", "run", "--resume")
    assert nothing.returncode == 1 and "no run of .loom/plan.yaml was cut short: nothing to resume" in nothing.stderr


def test_two_plan_runs_at_one_moment_state_the_tasks_once(manual: Workspace,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `plan run`s of one file at the same moment each found no run going, and both stated every task."""
    import threading

    from loomtui.workflow import planrun

    (manual.root / ".loom" / "callee.yaml").write_text(edit(manual, "callee", "lib.py", "x + 1", "x + 2").read_text())
    (manual.root / ".loom" / "plan.yaml").write_text(
        "version: 1\ntasks:\n"
        "  - {name: callee, task: change it, runtime: script, script: .loom/callee.yaml, claims: ['lib.py::helper']}\n")
    stated, inside, go_on = planrun.create_sandbox, threading.Event(), threading.Event()

    def slow(*args: object, **kwargs: object) -> object:
        inside.set()
        go_on.wait(30)
        return stated(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(planrun, "create_sandbox", slow)
    first: list[planrun.PlanRun] = []
    running = threading.Thread(target=lambda: first.append(planrun.run_plan(open_workspace(manual.root))))
    running.start()
    try:
        assert inside.wait(30)
        with pytest.raises(LoomError, match=r"^\.loom/plan\.yaml is being run by process \d+ now; `loomtui plan "
                                             r"show` follows its tasks$"):
            planrun.run_plan(manual)
    finally:
        go_on.set()
        running.join(60)
    assert len(first) == 1 and len(manual.store.list_sandboxes()) == 1
    wait_until_settled(manual, first[0].sandboxes["callee"])


def test_a_plan_run_lease_another_machine_left_lapses(manual: Workspace) -> None:
    """A `plan run` killed on another machine of the team left its lease, which no pid here can judge: every
    later run, `--resume` and `--again` were refused for good."""
    from loomtui.workflow import planrun

    (manual.root / ".loom" / "callee.yaml").write_text(edit(manual, "callee", "lib.py", "x + 1", "x + 2").read_text())
    (manual.root / ".loom" / "plan.yaml").write_text(
        "version: 1\ntasks:\n"
        "  - {name: callee, task: change it, runtime: script, script: .loom/callee.yaml, claims: ['lib.py::helper']}\n")
    lease = "plan:.loom/plan.yaml"
    manual.store.take_step_lease(lease, f"4242:123:1@build-2#{int(time.time())}", "plan-run", is_gone=lambda _: True)
    with pytest.raises(LoomError, match="is being run by process 4242 on build-2 now"):
        planrun.run_plan(manual)
    with pytest.raises(LoomError, match="is being run by process 4242 on build-2 now"):
        planrun.run_plan(manual, again=True)  # while it is stating its tasks there, as it may be
    stale = int(time.time() - planrun.PLAN_LEASE_S - 5)
    manual.store.take_step_lease(lease, f"4242:123:1@build-2#{stale}", "plan-run", is_gone=lambda _: True)
    ran = planrun.run_plan(manual)
    wait_until_settled(manual, ran.sandboxes["callee"])


def test_a_plan_run_cut_short_then_cancelled_is_over(manual: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cut short that its lead cancelled is over: the next `plan run` states the plan afresh (it was
    refused as cut short, `--resume` offered for the run just cancelled)."""
    first, run = _a_plan_run_cut_short(manual, monkeypatch)
    cancelled = run_cli(manual.root, "plan", "cancel", run)
    assert cancelled.returncode == 0, cancelled.stderr
    resume = run_cli(manual.root, "plan", "run", "--resume")
    assert resume.returncode == 1 and "no run of .loom/plan.yaml was cut short" in resume.stderr, resume.stderr
    refused = run_cli(manual.root, "plan", "run")
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"loomtui: error: .loom/plan.yaml's cancelled run left 1 task not ended: callee ({first.id}, approved); "
        "see each through (merged or removed) first, or --again to state every task once more"), refused.stderr
    merged = run_cli(manual.root, "sandbox", "merge", first.id)
    assert merged.returncode == 0, merged.stderr
    afresh = run_cli(manual.root, "plan", "run", "--json")
    assert afresh.returncode == 0, afresh.stderr
    said = json.loads(afresh.stdout)
    assert said["run"] != run and first.id not in said["sandboxes"].values() and len(said["sandboxes"]) == 2


def test_plan_show_run_and_cancel(manual: Workspace) -> None:
    for name, (path, old, new) in {"caller": ("app.py", "helper(1)", "helper(2)"),
                                   "callee": ("lib.py", "x + 1", "x + 2")}.items():
        (manual.root / ".loom" / f"{name}.yaml").write_text(edit(manual, name, path, old, new).read_text())
    (manual.root / ".loom" / "plan.yaml").write_text(textwrap.dedent("""\
        version: 1
        tasks:
          - name: caller
            task: use the helper twice
            runtime: script
            script: .loom/caller.yaml
            claims: ["app.py::main"]
          - name: callee
            task: change the helper
            runtime: script
            script: .loom/callee.yaml
            claims: ["lib.py::helper"]
    """))
    shown = run_cli(manual.root, "plan", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    edges = json.loads(shown.stdout)["edges"]
    assert [(e["before"], e["after"], e["kind"]) for e in edges] == [("callee", "caller", "dependency")]
    ran = run_cli(manual.root, "plan", "run", "--json")
    assert ran.returncode == 0, ran.stderr
    ids = json.loads(ran.stdout)["sandboxes"]
    caller = sb.get_sandbox(manual, ids["caller"])
    assert caller.data["after"] == [ids["callee"]]
    assert any(e.action == "plan.scheduled" for e in manual.audit.entries())
    run = json.loads(ran.stdout)["run"]
    # Run again while it runs: refused (every task was stated twice, each to be done twice).
    twice = run_cli(manual.root, "plan", "run")
    assert twice.returncode == 1 and f".loom/plan.yaml is running already (plan run {run}: 2 tasks not ended)" \
        in twice.stderr and "--again" in twice.stderr
    # Its hint names the run: `plan cancel` alone cancels the newest run of any file (another plan's).
    assert f"`loomtui plan cancel {run}`" in twice.stderr, twice.stderr
    # ...however the file is spelled (`./` and the absolute path ran every task once more, each merged again).
    for spelled in ("./.loom/plan.yaml", str(manual.root / ".loom" / "plan.yaml")):
        again = run_cli(manual.root, "plan", "run", spelled)
        assert again.returncode == 1 and ".loom/plan.yaml is running already" in again.stderr, again.stderr
    assert len(manual.store.list_sandboxes()) == 2
    # Another plan file's run is not this file's: `plan show` showed the newest run of any file.
    (manual.root / ".loom" / "other.yaml").write_text("version: 1\ntasks:\n  - name: caller\n    task: x\n"
                                                      "    runtime: script\n    script: .loom/caller.yaml\n")
    other = json.loads(run_cli(manual.root, "plan", "run", ".loom/other.yaml", "--json").stdout)["sandboxes"]
    states = json.loads(run_cli(manual.root, "plan", "show", "--json").stdout)["states"]
    assert states["caller"]["sandbox"] == ids["caller"] and states["caller"]["sandbox"] != other["caller"]
    shown_other = json.loads(run_cli(manual.root, "plan", "show", ".loom/other.yaml", "--json").stdout)["states"]
    assert shown_other["caller"]["sandbox"] == other["caller"]
    tasks.remove(manual, other["caller"], force=True)
    unknown = run_cli(manual.root, "plan", "cancel", "zzz")
    assert unknown.returncode == 2 and unknown.stderr.strip().startswith("loomtui: error: no plan run zzz (runs, newest "
                                                                         "first: ") and run in unknown.stderr
    cancelled = run_cli(manual.root, "plan", "cancel", run, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    said = json.loads(cancelled.stdout)
    assert said["cancelled"] == [{"task": "caller", "sandbox": ids["caller"]}]
    assert [(t["task"], t["sandbox"]) for t in said["left"]] == [("callee", ids["callee"])]  # started already
    assert sb.get_sandbox(manual, ids["caller"]).status == ARCHIVED
    wait_until_settled(manual, ids["callee"])
    states = json.loads(run_cli(manual.root, "plan", "show", "--json").stdout)["states"]
    assert states["caller"] == {"sandbox": ids["caller"], "status": "archived", "step": "done", "next": "done"}
    assert "caller  [" + ids["caller"] + " archived]" in run_cli(manual.root, "plan", "show").stdout


def test_a_plan_with_a_cycle_is_one_line_naming_its_tasks(manual: Workspace) -> None:
    (manual.root / ".loom" / "plan.yaml").write_text(textwrap.dedent("""\
        version: 1
        tasks:
          - {name: a, task: one, runtime: script, after: [b]}
          - {name: b, task: two, runtime: script, after: [a]}
    """))
    result = run_cli(manual.root, "plan", "run")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    # Each problem one line, the cycle among them (the tasks have no script either: said too, at once).
    assert "plan.yaml:3: tasks a -> b -> a form a cycle" in result.stderr.splitlines()[0]
    assert manual.store.list_sandboxes(include_archived=True) == []


def test_plan_show_refuses_the_unknown_runtime_plan_run_would_refuse(manual: Workspace) -> None:
    (manual.root / ".loom" / "plan.yaml").write_text("version: 1\ntasks:\n  - {name: a, task: one, runtime: nope}\n")
    for command in ("show", "run"):
        result = run_cli(manual.root, "plan", command)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (command, result.stderr)
        assert "plan.yaml:3: task a: unknown runtime 'nope'" in result.stderr


def test_a_task_with_a_missing_script_is_refused_before_any_task_is_stated(manual: Workspace) -> None:
    (manual.root / "a.yaml").write_text("- {log: fine}\n")
    (manual.root / ".loom" / "plan.yaml").write_text(
        "version: 1\ntasks:\n  - {name: a, task: first, runtime: script, script: a.yaml}\n"
        "  - {name: b, task: second, runtime: script, script: nope.yaml, after: [a]}\n")
    for command in ("show", "run", "run"):
        result = run_cli(manual.root, "plan", command)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (command, result.stderr)
        assert "plan.yaml:4: task b: " in result.stderr and "nope.yaml" in result.stderr
    assert manual.store.list_sandboxes(include_archived=True) == []


def test_an_awaiting_sandbox_is_advanced_by_the_decision_from_the_cli(manual: Workspace) -> None:
    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount + 0")
    wait_until_settled(manual, sandbox_id)
    escalation = sb.get_sandbox(manual, sandbox_id).data["review_escalation"]
    result = run_cli(manual.root, "escalation", "approve", str(escalation), user="lead@example.com")
    assert result.returncode == 0, result.stderr
    assert sb.get_sandbox(manual, sandbox_id).status == APPROVED
    assert "decision followed" in result.stdout
    assert sb.get_sandbox(manual, sandbox_id).status != AWAITING_REVIEW


def test_a_decision_from_the_cli_answers_in_json_for_a_script(manual: Workspace) -> None:
    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount + 0")
    wait_until_settled(manual, sandbox_id)
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    result = run_cli(manual.root, "escalation", "approve", str(escalation), "--json", user="lead@example.com")
    assert result.returncode == 0, result.stderr
    said = json.loads(result.stdout)
    assert (said["escalation"], said["decision"], said["by"], said["status"]) == (
        escalation, "approve", "lead@example.com", "approved")
    assert said["sandbox"]["id"] == sandbox_id and said["sandbox"]["status"] == APPROVED
    assert any(line.startswith("decision followed") for line in said["sandbox"]["done"])


def test_after_a_merge_other_claims_on_regions_it_removed_are_reported_stale(manual: Workspace) -> None:
    renamer = run_task(manual, "rename", "lib.py", "def helper(x)", "def helper2(x)")
    wait_until_settled(manual, renamer)
    holder = tasks.create_sandbox(manual, "tune the helper", "script",
                                  script=script(manual, "idle", "- {log: idle}\n"))
    # A reader's claim: the renamer's commit holds lib.py::helper, so an exclusive one is refused.
    governed_coordinator(manual).claim(holder.id, "lib.py::helper", mode="shared")
    # A function in a file only its branch has (a commit there claimed it) is not gone: it is new.
    governed_coordinator(manual).claim_regions(holder.id, "fresh.py", ["fresh.py::made"])
    # Nor a function its branch added to a file the code has (it read "gone from the code: claim again").
    governed_coordinator(manual).claim_regions(holder.id, "lib.py", ["lib.py::added_here"])
    request_merge(manual, renamer)
    stale = [e for e in manual.audit.entries() if e.action == "claim.stale"]
    assert [(e.subject, e.details["regions"], e.details["after_merge_of"]) for e in stale] == [
        (holder.id, ["lib.py::helper"], renamer)]
    # ...and `claim list` says so for as long as the claim lives, not only the audit log once
    listed = run_cli(manual.root, "claim", "list")
    assert "! gone from the code: lib.py::helper (renamed, moved or deleted since" in listed.stdout
    as_json = json.loads(run_cli(manual.root, "claim", "list", "--json").stdout)
    assert sorted((c["sandbox_id"], c["gone"]) for c in as_json) == [
        (holder.id, []), (holder.id, []), (holder.id, ["lib.py::helper"])]
    assert [line for line in listed.stdout.splitlines() if "gone from the code" in line and "fresh.py" in line] == []
    assert "added_here" not in listed.stdout.split("! gone", 1)[1], listed.stdout
    # A file the holder's base had, deleted by a merge: gone, as a renamed function is (not taken for a new file).
    reader = tasks.create_sandbox(manual, "read the ledger", "script",
                                  script=script(manual, "idle2", "- {log: idle}\n"))
    governed_coordinator(manual).claim(reader.id, "ledger.py::post", mode="shared")
    deleter = tasks.create_sandbox(manual, "drop the ledger", "script", autostart=True, script=script(
        manual, "drop", "- {delete: ledger.py}\n- {commit: drop the ledger}\n"))
    wait_until_settled(manual, deleter.id)
    escalation = sb.get_sandbox(manual, deleter.id).data["review_escalation"]
    assert run_cli(manual.root, "escalation", "approve", str(escalation), user="lead@example.com").returncode == 0
    request_merge(manual, deleter.id)
    gone = json.loads(run_cli(manual.root, "claim", "list", "--json").stdout)
    assert [c["gone"] for c in gone if c["sandbox_id"] == reader.id] == [["ledger.py::post"]], gone


def test_archiving_a_sandbox_awaiting_review_withdraws_its_escalation(manual: Workspace) -> None:
    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount + 1")
    wait_until_settled(manual, sandbox_id)
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    tasks.remove(manual, sandbox_id, force=True)
    assert manual.store.get_escalation(escalation).status == "withdrawn"  # type: ignore[union-attr]
    assert [e.action for e in manual.audit.entries() if e.subject == str(escalation)][-1] == "escalation.withdrawn"


def test_merge_into_another_branch_is_honoured_when_the_decision_merges(auto: Workspace) -> None:
    sandbox_id = run_task(auto, "ledger", "ledger.py", "return amount", "return amount + 1")
    wait_until_settled(auto, sandbox_id)
    escalation = int(sb.get_sandbox(auto, sandbox_id).data["review_escalation"])
    lead = Workspace(auto.paths, auto.store, auto.audit, "lead@example.com")
    decide(lead, load_policy(auto.root), escalation, "approve")
    git(auto.root, "branch", "release")
    request_merge(auto, sandbox_id, into="release")
    assert sb.get_sandbox(auto, sandbox_id).merged_into == "release"
    assert "amount + 1" in git(auto.root, "show", "release:ledger.py")
    assert "amount + 1" not in git(auto.root, "show", "main:ledger.py")


def test_an_approved_sandbox_with_new_commits_is_reviewed_again(manual: Workspace) -> None:
    sandbox_id = run_task(manual, "helper", "lib.py", "x + 1", "x + 2")
    wait_until_settled(manual, sandbox_id)
    record = sb.get_sandbox(manual, sandbox_id)
    assert record.status == APPROVED
    worktree = Path(record.worktree)
    (worktree / "lib.py").write_text("def helper(x):\n    return x + 3\n")
    git(worktree, "-c", "core.hooksPath=/dev/null", "commit", "-qam", "one more")
    assert next_step(manual, sb.get_sandbox(manual, sandbox_id)).step == Step.REVIEW
    done = advance(manual, sandbox_id)
    assert done.status == APPROVED
    assert sb.get_sandbox(manual, sandbox_id).approved_commit == git(manual.root, "rev-parse", record.branch)
    assert actions(manual, sandbox_id).count("sandbox.gating") == 2
    request_merge(manual, sandbox_id)
    assert "x + 3" in git(manual.root, "show", "main:lib.py")


def test_a_task_being_prepared_by_its_creator_is_left_to_it(manual: Workspace) -> None:
    """The app's timer may advance every task while `n` is still preparing one: it must not prepare
    it a second time (two worktrees, two claims) but leave it to the process that stated it."""
    record = sb.plan_sandbox(manual, "being stated", "script", claims=["lib.py::helper"],
                             script=edit(manual, "stated", "lib.py", "x + 1", "x + 2"),
                             data={"creator": f"{os.getpid()}:{_my_start()}:1"})
    view = advance(manual, record.id).now
    assert view.step == Step.PREPARING and manual.store.live_claims(record.id) == []
    gone = sb.plan_sandbox(manual, "creator died", "script", claims=["app.py::main"],
                           script=edit(manual, "died", "app.py", "helper(1)", "helper(2)"),
                           data={"creator": f"{context_pid_that_exited()}::1"})
    advance(manual, gone.id)
    assert manual.store.live_claims(gone.id) and Path(sb.get_sandbox(manual, gone.id).worktree).is_dir()


def test_a_step_says_what_a_person_can_do_in_each_front_ends_words() -> None:
    from loomtui.tui.screens.dashboard import app_step_hints
    from loomtui.workflow.steps import StepView

    view = StepView(Step.WAIT_DECISION, "a decision on escalation #4", PersonAction.DECIDE, "4")
    assert view.line() == "waits for a decision on escalation #4"  # the engine's own words name no front-end
    assert view.line(STEP_HINTS) == "waits for a decision on escalation #4 (`loomtui escalation approve|reject 4`)"
    assert view.line(app_step_hints()) == "waits for a decision on escalation #4 (press 3)"
    assert set(STEP_HINTS) == {str(action) for action in PersonAction}  # the shell can do every one
    assert StepView(Step.WAIT_START, "a person to start it", PersonAction.START, "ab12").line(app_step_hints()) == (
        "waits for a person to start it (press S)")
    # a table's narrow column cuts the end of a cell: there, what to press comes first
    assert view.line(app_step_hints(), hint_first=True) == "press 3 · waits for a decision on escalation #4"
    assert view.line(hint_first=True) == view.line()
    # Cut at ~22 cells in the table, a hint still says what to do (it read "`git merge` the tar…").
    assert all(not hint.startswith("`") for hint in app_step_hints().values())
    assert app_step_hints()["resolve"].startswith("resolve it in its worktree")


def test_two_merges_into_one_target_at_once_both_land(manual: Workspace) -> None:
    """Approved within the same second: the second computed its merge on the tip the first had just moved,
    the fast-forward of the checkout was refused, and the task's step failed (the demo stalled on it)."""
    import threading

    from loomtui.execution.review import merge

    ids = []
    for name in ("left", "right"):
        record = sb.plan_sandbox(manual, name, "script",
                                 script=script(manual, name, f"- {{write: {name}.txt, content: {name}}}\n"
                                                             f"- {{commit: {name}}}\n"))
        sb.make_worktree(manual, record.id)
        sb.start(manual, record.id)
        sb.wait_for_status(manual, record.id, {EXITED}, timeout=60)
        assert advance(manual, record.id).status == APPROVED
        ids.append(record.id)
    go = threading.Barrier(2)
    failures: list[BaseException] = []

    def merge_now(sandbox_id: str) -> None:
        workspace = open_workspace(manual.root)
        try:
            go.wait()
            merge(workspace, sandbox_id)
        except BaseException as exc:  # noqa: BLE001 - said below
            failures.append(exc)
        finally:
            workspace.close()

    threads = [threading.Thread(target=merge_now, args=(sandbox_id,)) for sandbox_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert {sb.get_sandbox(manual, sandbox_id).status for sandbox_id in ids} == {"merged"}
    assert (manual.root / "left.txt").read_text() == "left" and (manual.root / "right.txt").read_text() == "right"


@pytest.mark.parametrize("planted", ["a folder in its admin dir", "the person's checkout"])
def test_a_merge_is_never_steered_by_what_a_sandbox_s_admin_dir_names_as_checked_out(manual: Workspace,
                                                                                     planted: str) -> None:
    """A running agent's admin dir said its worktree (a folder there whose `.git` linked to the repository, or
    the person's own checkout) had main checked out: the merge into main ran `git merge --ff-only` there, and
    fast-forwarded the person's own branch, not main (a hostile agent's finding)."""
    from loomtui.execution.review import merge

    record = sb.plan_sandbox(manual, "docs", "script",
                             script=script(manual, "docs", "- {write: docs.txt, content: docs}\n- {commit: docs}\n"))
    sb.make_worktree(manual, record.id)
    sb.start(manual, record.id)
    sb.wait_for_status(manual, record.id, {EXITED}, timeout=60)
    assert advance(manual, record.id).status == APPROVED
    hostile = sb.plan_sandbox(manual, "hostile", "script", script=script(manual, "hostile", "- {log: idle}\n"))
    sb.make_worktree(manual, hostile.id)
    admin = Path(sb.get_sandbox(manual, hostile.id).data["git_dir"])
    if planted == "a folder in its admin dir":
        (admin / "sub").mkdir()
        (admin / "sub" / ".git").symlink_to(manual.paths.common_dir)
        (admin / "gitdir").write_text(f"{admin / 'sub' / '.git'}\n")
    else:
        (admin / "gitdir").write_text(f"{manual.root / '.git'}\n")
    (admin / "HEAD").write_text("ref: refs/heads/main\n")
    git(manual.root, "switch", "-q", "-c", "feature")
    before = git(manual.root, "rev-parse", "feature")
    merged = merge(manual, record.id)
    assert git(manual.root, "rev-parse", "main") == merged.commit  # the target moved, and it alone
    assert git(manual.root, "rev-parse", "feature") == before
    assert git(manual.root, "status", "--porcelain") == ""  # the person's index as their files are


@pytest.mark.parametrize("layout", ["a bare repository's own worktree", "a separate git dir",
                                    "a separate git dir, loomtui run from another checkout",
                                    "a .git linked elsewhere, loomtui run from another checkout"])
def test_a_merge_brings_the_person_s_checkout_along_in_every_layout(tmp_path: Path, layout: str) -> None:
    """A checkout in the bare repository's folder (`repo.git/main`, a common layout) was taken for a folder an
    agent made in the git dir, and one made with `--separate-git-dir` for no checkout: the branch moved and the
    checkout did not, its index staging the merge's undoing for the person's next commit."""
    from loomtui.execution.review import merge

    seed = make_repo(tmp_path / "seed", "manual")
    if layout == "a bare repository's own worktree":
        subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(tmp_path / "repo.git")], check=True)
        git(tmp_path / "repo.git", "worktree", "add", "-q", "main", "main")
        checkout = tmp_path / "repo.git" / "main"
    elif layout.startswith("a separate git dir"):
        checkout = tmp_path / "checkout"
        subprocess.run(["git", "clone", "-q", "--separate-git-dir", str(tmp_path / "gitdir"), str(seed),
                        str(checkout)], check=True)
    else:
        checkout = tmp_path / "checkout"
        subprocess.run(["git", "clone", "-q", str(seed), str(checkout)], check=True)
        (checkout / ".git").rename(tmp_path / "kept.git")
        (checkout / ".git").symlink_to(tmp_path / "kept.git")
    runs_in = checkout
    if "another checkout" in layout:  # a person's own worktree on a branch of theirs
        git(checkout, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "person-wt"))
        runs_in = tmp_path / "person-wt"
    workspace = open_workspace(runs_in)
    try:
        # Not isolated: bubblewrap cannot mount a checkout inside the git dir (noted in the README).
        record = sb.plan_sandbox(workspace, "docs", "script", isolate=False, base="main",
                                 script=script(workspace, "docs", "- {write: docs.txt, content: docs}\n"
                                                                  "- {commit: docs}\n"))
        sb.make_worktree(workspace, record.id)
        sb.start(workspace, record.id)
        sb.wait_for_status(workspace, record.id, {EXITED}, timeout=60)
        assert advance(workspace, record.id).status == APPROVED
        if "another checkout" in layout:  # git names the git dir as the main checkout: where it is, unknown
            before = git(checkout, "rev-parse", "main")
            with pytest.raises(LoomError, match="main is checked out in this repository's main checkout, which git "
                                                "cannot locate from here .*: run the merge there; nothing was changed"):
                merge(workspace, record.id)
            assert git(checkout, "rev-parse", "main") == before
            workspace.close()
            workspace = open_workspace(checkout)  # from there, it merges
        merge(workspace, record.id)
        assert (checkout / "docs.txt").read_text() == "docs"
        assert git(checkout, "status", "--porcelain") == ""
    finally:
        workspace.close()


def test_a_merge_asked_for_while_another_caller_merges_it_waits_for_that_merge_and_says_so(
        manual: Workspace) -> None:
    """Two people (or a script and the app) asking at once: the one that found the step taken was told
    "not merged: being done by ..." (exit 1) while the sandbox merged."""
    import subprocess
    import sys
    import time

    from loomtui.execution.review import merge

    sandbox_id = _ended_unadvanced(manual, "twice")
    assert advance(manual, sandbox_id).status == APPROVED
    holder = f"{os.getpid()}:{_my_start()}:0"  # this process: a live caller, merging
    assert manual.store.take_step_lease(sandbox_id, holder, "merge", is_gone=lambda _h: False) is None
    asking = subprocess.Popen([sys.executable, "-m", "loomtui", "sandbox", "merge", sandbox_id], cwd=manual.root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: sb.get_sandbox(manual, sandbox_id).data.get("merge_requested"), timeout=30,
                   what="the second caller asking")
        time.sleep(0.5)  # it finds the step taken (so it is ordered before the merge below, not timed)
        merge(manual, sandbox_id)
    finally:
        manual.store.drop_step_lease(sandbox_id, holder)
    out, err = asking.communicate(timeout=60)
    assert asking.returncode == 0, err
    assert out.startswith(f"merged sandbox {sandbox_id} into main as ") and "by another caller" in out
    assert actions(manual, sandbox_id).count("sandbox.merged") == 1


def test_a_blocked_change_waits_for_an_override_or_a_rejection_not_an_approval(repo: Path) -> None:
    """`sandbox list` said `escalation approve|reject 14` for a block: approving it is always refused."""
    import time

    from loomtui.store import EscalationRecord, SandboxRecord
    from loomtui.workflow.steps import REVIEW_ESCALATION_KEY, next_step

    workspace = open_workspace(repo)
    now = time.time()
    for sid, outcome in (("sb1", "block"), ("sb2", "require")):
        workspace.store.bulk_add_escalations([EscalationRecord(0, sid, "post-gate", "open", "high", "", now, now,
                                                               {"outcome": outcome})])
    ids = {e.sandbox_id: e.id for e in workspace.store.list_escalations("open")}
    for sid in ("sb1", "sb2"):
        workspace.store.add_sandbox(SandboxRecord(sid, "t", "script", "awaiting_review", now, now,
                                                  data={REVIEW_ESCALATION_KEY: ids[sid]}))
    views = {r.id: next_step(workspace, r) for r in workspace.store.list_sandboxes()}
    assert views["sb1"].action == PersonAction.OVERRIDE and views["sb2"].action == PersonAction.DECIDE
    assert views["sb1"].line(STEP_HINTS).endswith(f"(`loomtui escalation override|reject {ids['sb1']} --reason TEXT`)")
    from loomtui.tui.sandbox_text import app_step_hints

    assert views["sb1"].line(app_step_hints()).endswith("(press 3)")
    workspace.close()


def test_ctrl_c_while_a_task_is_prepared_cancels_it_and_gives_its_claims_back(
        manual: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted after its claims were taken, the task stayed planned, holding the code, its worktree half
    made, for the app's engine to prepare again later: the person had meant to cancel it."""
    import loomtui.execution.sandboxes as sandboxes_module
    from loomtui.workflow.tasks import TaskInterrupted

    def interrupted(*_args: object, **_kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(sandboxes_module, "make_worktree", interrupted)
    with pytest.raises(TaskInterrupted, match=r"interrupted: sandbox \w+ was not created") as raised:
        tasks.create_sandbox(manual, "cut short", "script", script=edit(manual, "cut", "lib.py", "x + 1", "x + 2"),
                       claims=("lib.py",))
    assert raised.value.exit_code == 130
    assert manual.store.live_claims() == []
    [record] = sb.list_sandboxes(manual, include_archived=True)
    assert record.status == ARCHIVED and not manual.store.list_escalations(status="open")
    monkeypatch.undo()
    # Ctrl-C in the write that hands the prepared task over: it escaped as a bare KeyboardInterrupt (exit 130,
    # nothing said) and the task stayed planned, its claims held, for no one to start.
    update = manual.store.update_sandbox

    def cut_in_the_hand_over(sandbox_id: str, **fields: object) -> object:
        if fields.get("data") == {"creator": None}:
            update(sandbox_id, **fields)  # type: ignore[arg-type]
            raise KeyboardInterrupt
        return update(sandbox_id, **fields)  # type: ignore[arg-type]

    monkeypatch.setattr(manual.store, "update_sandbox", cut_in_the_hand_over)
    with pytest.raises(TaskInterrupted, match=r"interrupted: sandbox \w+ was not created"):
        tasks.create_sandbox(manual, "cut later", "script", script=edit(manual, "cut", "lib.py", "x + 1", "x + 4"),
                             claims=("lib.py",), autostart=True)
    monkeypatch.undo()
    assert manual.store.live_claims() == [] and sb.list_sandboxes(manual) == []


def test_ctrl_c_as_the_agent_starts_says_it_runs_or_removes_what_had_not_started(
        manual: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C just after `sandbox new` made the sandbox: exit 130 with nothing said, and the agent ran on."""
    from loomtui.workflow.engine import Workflow
    from loomtui.workflow.tasks import TaskInterrupted

    advance = Workflow.advance

    def started_then_interrupted(self: Workflow, sandbox_id: str, *args: object, **kwargs: object) -> object:
        advance(self, sandbox_id, *args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(Workflow, "advance", started_then_interrupted)
    with pytest.raises(TaskInterrupted, match=r"interrupted: sandbox (\w+) was made and its agent started, and goes "
                                              r"on; `loomtui sandbox stop \1` stops it") as raised:
        tasks.create_sandbox(manual, "runs on", "script", script=edit(manual, "runs", "lib.py", "x + 1", "x + 2"),
                             autostart=True)
    assert raised.value.exit_code == 130
    [running] = sb.list_sandboxes(manual)
    from tests.conftest import wait_until

    wait_until(lambda: sb.get_sandbox(manual, running.id).status not in (PLANNED, RUNNING), what="its agent ran")

    def interrupted(self: Workflow, *args: object, **kwargs: object) -> object:
        monkeypatch.setattr(Workflow, "advance", advance)  # once: removing it advances too
        raise KeyboardInterrupt

    monkeypatch.setattr(Workflow, "advance", interrupted)
    with pytest.raises(TaskInterrupted, match=r"interrupted: sandbox \w+ was not created"):
        tasks.create_sandbox(manual, "cut short", "script", script=edit(manual, "cut", "lib.py", "x + 1", "x + 3"),
                             autostart=True)
    assert [r.id for r in sb.list_sandboxes(manual)] == [running.id]


def test_a_reviewer_s_rejection_is_overruled_by_a_lead_s_override_a_lead_s_is_not(manual: Workspace) -> None:
    """A reviewer in a policy group said no; the lead, who may override a block, could not overrule it
    (`escalation #1 is already rejected`): the change was lost. A lead's own rejection still stands."""
    policy_file = manual.root / ".loom" / "policy.yaml"
    policy_file.write_text(policy_file.read_text().replace(
        "  leads: [lead@example.com]\n", "  leads: [lead@example.com, second-lead@example.com]\n"
                                         "  reviewers: [dev@example.com]\n").replace(
        "approvals: {groups: [leads], count: 1}", "approvals: {groups: [leads, reviewers], count: 1}"))
    git(manual.root, "commit", "-qam", "reviewers")
    policy = load_policy(manual.root)

    def as_user(user: str) -> Workspace:
        return Workspace(manual.paths, manual.store, manual.audit, user)

    sandbox_id = run_task(manual, "ledger", "ledger.py", "return amount", "return amount * 2")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    escalation = int(sb.get_sandbox(manual, sandbox_id).data["review_escalation"])
    decide(as_user("dev@example.com"), policy, escalation, "reject", reason="I would not double it")
    advance(manual, sandbox_id)
    assert sb.get_sandbox(manual, sandbox_id).status == REJECTED
    record = manual.store.get_escalation(escalation)
    assert record is not None and allowed_decisions(policy, record, "lead@example.com") == ["override"]
    assert allowed_decisions(policy, record, "dev@example.com") == []
    decide(as_user("lead@example.com"), policy, escalation, "override", reason="doubling is the fix")
    view = next_step(manual, sb.get_sandbox(manual, sandbox_id))
    assert view.line(STEP_HINTS) == (f"follow-decision: its rejection was overridden (escalation #{escalation}) "
                                     f"(`loomtui sandbox advance {sandbox_id}` does it)")
    assert advance(manual, sandbox_id).status == APPROVED
    assert request_merge(manual, sandbox_id).status == MERGED

    other = run_task(manual, "ledger again", "ledger.py", "return amount * 2", "return amount * 3")
    assert wait_until_settled(manual, other).step == Step.WAIT_DECISION
    second = int(sb.get_sandbox(manual, other).data["review_escalation"])
    decide(as_user("lead@example.com"), policy, second, "reject", reason="no")
    with pytest.raises(DecisionRefused, match="rejected by someone who may override: that rejection stands"):
        decide(as_user("second-lead@example.com"), policy, second, "override", reason="yes")


def test_work_that_could_not_be_saved_at_the_agent_s_end_is_saved_when_asked(manual: Workspace) -> None:
    """The save at the agent's end failed (the branch's ref was locked, the store was down): the task said
    `the work it left could not be saved: ...` and offered nothing; only running the agent again helped."""
    record = tasks.create_sandbox(manual, "a note", "command", command=["sh", "-c", "echo kept > note.txt"],
                                  isolate=False)
    lock = manual.paths.common_dir / "refs" / "heads" / f"{record.branch}.lock"
    lock.write_text("")  # another git holds the branch: the save's update-ref fails
    tasks.start(manual, record.id)
    view = wait_until_settled(manual, record.id)
    assert view.step == Step.FAILED_STEP and "could not be saved" in view.line(), view
    assert f"`loomtui sandbox advance {record.id}` retries" in view.line(STEP_HINTS)
    lock.unlink()
    advance(manual, record.id, retry=True)
    saved = sb.get_sandbox(manual, record.id)
    assert git(manual.root, "show", f"{record.branch}:note.txt") == "kept"
    assert saved.data.get("save_error") is None and saved.status in (AWAITING_REVIEW, APPROVED), saved.status


def test_a_task_stated_in_a_sandboxs_worktree_is_refused_and_a_branch_built_on_is_not_deleted(
        manual: Workspace) -> None:
    """`sandbox new` run from a sandbox's worktree took that sandbox's branch as its target, and
    `sandbox rm --delete-branch` then deleted the branch the new task was to merge into."""
    first = tasks.create_sandbox(manual, "first", "script", script=edit(manual, "first", "lib.py", "x + 1", "x + 2"))
    inside = open_workspace(Path(first.worktree))
    try:  # from its worktree, loomtui acts from the repository's own checkout: its HEAD, its target
        nested = sb.plan_sandbox(inside, "nested", "script", script=edit(manual, "nested", "lib.py", "x + 1", "x + 3"))
        assert nested.data["target"] == git(manual.root, "branch", "--show-current").strip() != first.branch
    finally:
        inside.close()
    # A checkout of a sandbox's branch of a person's own (not the sandbox's worktree) is still refused.
    git(manual.root, "worktree", "add", "-q", "-f", str(manual.root.parent / "mine"), first.branch)
    with pytest.raises(LoomError, match=rf"HEAD here is '?{first.branch}'?, a sandbox's branch"):
        sb.plan_sandbox(open_workspace(manual.root.parent / "mine"), "nested", "script",
                        script=edit(manual, "again", "lib.py", "x + 1", "x + 3"))
    built_on = sb.plan_sandbox(manual, "on purpose", "script", base=first.branch,
                               script=edit(manual, "on", "lib.py", "x + 1", "x + 4"))
    assert built_on.data["target"] == first.branch
    with pytest.raises(LoomError, match=rf"{first.branch} is the target of sandbox {built_on.id}, built on its work"):
        review.remove(manual, first.id, force=True, delete_branch=True)
    assert git(manual.root, "rev-parse", "--verify", "--quiet", first.branch)  # still there, and the sandbox
    assert sb.get_sandbox(manual, first.id).status == PLANNED


def test_a_plan_whose_task_failed_runs_again_without_again(manual: Workspace) -> None:
    """A failed task stays as it is (`plan cancel` leaves it: a person may start it again), yet it was counted as
    not ended: `plan run` was refused for good, its hint (`plan cancel` first) changing nothing."""
    (manual.root / ".loom" / "fails.yaml").write_text("- {exit: 3}\n")
    (manual.root / ".loom" / "plan.yaml").write_text("version: 1\ntasks:\n  - name: fails\n    task: x\n"
                                                      "    runtime: script\n    script: .loom/fails.yaml\n")
    ran = json.loads(run_cli(manual.root, "plan", "run", "--json").stdout)["sandboxes"]
    wait_until(lambda: sb.get_sandbox(manual, ran["fails"]).status == FAILED, timeout=60, what="the task failed")
    again = run_cli(manual.root, "plan", "run")
    assert again.returncode == 0, again.stderr


def test_a_running_agent_that_asked_a_person_waits_for_that_decision(manual: Workspace) -> None:
    """Blocked on a lead's answer to its permission request, it read "agent running" (the Next column, Details,
    `sandbox list` gave no next line at all)."""
    from loomtui.store import SandboxRecord
    from loomtui.workflow.steps import KnownHolders

    now = time.time()
    manual.store.add_sandbox(SandboxRecord(id="asks01", task="t", runtime="claude", status="running", created=now,
                                           updated=now))
    assert next_step(manual, sb.get_sandbox(manual, "asks01")).line() == "agent running"
    asked = manual.store.add_escalation("permission-request", sandbox_id="asks01", summary="asks: Bash echo x")
    for known in (None, KnownHolders.read(manual, manual.store.list_sandboxes())):
        view = next_step(manual, sb.get_sandbox(manual, "asks01"), known=known)
        assert (view.step, view.action, view.about) == (Step.AGENT, PersonAction.DECIDE, str(asked.id))
        assert view.line() == f"agent waits for a decision on its permission-request (escalation #{asked.id})"
    manual.store.update_escalation(asked.id, status="approved")
    assert next_step(manual, sb.get_sandbox(manual, "asks01")).line() == "agent running"


def test_a_task_that_waited_is_not_started_where_what_its_agent_was_to_be_given_is_missing(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task queued `--after` another started in the environment of whoever's merge moved it on: an Aider with no
    key or model fell into its sign-in flow, `running` for minutes, its model never asked. What its agent would
    have been given as it was made (names only: a gateway's key named in the runtime's `env:` too) is asked."""
    import dataclasses

    from loomtui.workflow.engine import _refuse_a_start_without_credentials

    (repo / ".loom").mkdir(exist_ok=True)
    (repo / ".loom" / "loom.yaml").write_text(
        'version: 1\nruntimes:\n  gw:\n    argv: ["python3", "-c", "pass"]\n    env: [MY_GATEWAY_KEY]\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a runtime behind a gateway")
    monkeypatch.setenv("MY_GATEWAY_KEY", "k")
    workspace = open_workspace(repo)
    made = tasks.create_sandbox(workspace, "t", "gw")
    assert made.data["given_env"] == ["MY_GATEWAY_KEY"]
    waited = dataclasses.replace(made, data={**made.data, "after": ["x"]})
    _refuse_a_start_without_credentials(waited)  # set here too: it starts
    monkeypatch.delenv("MY_GATEWAY_KEY")
    with pytest.raises(LoomError, match=rf"not started here: runtime gw's agent was to be given MY_GATEWAY_KEY, .*"
                                        rf"`loomtui sandbox advance {made.id}`"):
        _refuse_a_start_without_credentials(waited)
    _refuse_a_start_without_credentials(made)  # started as it was made (its creator's own shell): as before


def test_a_commit_since_its_review_has_the_change_reviewed_again_not_stuck(manual: Workspace) -> None:
    """A lead's fix committed in the worktree of a change awaiting a decision: every decision was refused as judged
    on another diff, `R` said "nothing to retry", and nothing reviewed it again (the app read "press 3" for good)."""
    sandbox_id = run_task(manual, "post", "ledger.py", "return amount", "return amount * 1")
    assert wait_until_settled(manual, sandbox_id).step == Step.WAIT_DECISION
    record = sb.get_sandbox(manual, sandbox_id)
    first = int(record.data["review_escalation"])
    worktree = Path(str(record.worktree))
    (worktree / "ledger.py").write_text((worktree / "ledger.py").read_text().replace("* 1", "* 2"))
    git(worktree, "commit", "-qam", "a lead's fix")
    view = next_step(manual, sb.get_sandbox(manual, sandbox_id))
    assert (view.step, view.waits_on) == (Step.REVIEW, "new commits since its review")
    advance(manual, sandbox_id)
    again = sb.get_sandbox(manual, sandbox_id)
    assert again.status == "awaiting_review" and int(again.data["review_escalation"]) != first
    assert manual.store.get_escalation(first).status == "superseded"
    assert next_step(manual, again).step == Step.WAIT_DECISION
