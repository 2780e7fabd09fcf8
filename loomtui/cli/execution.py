"""`loomtui sandbox ...`, `attach`, `doctor`, `script-agent`, `bench sandboxes`: the execution layer from the shell."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any, Final

from loomtui.cli import (
    SCRIPT_AGENT_HELP,
    STEP_HINTS,
    add_command,
    add_group,
    count_arg,
    nonempty_arg,
    positive_int_arg,
    print_json,
    require_terminal,
    script_agent_arguments,
    seconds_arg,
    workspace_for,
)
from loomtui.coordination.targets import BadTarget
from loomtui.errors import LoomError, StoreError, abridged, listed, quoted, shown
from loomtui.execution import agent_control, recovery, review
from loomtui.execution import sandboxes as engine
from loomtui.execution.lifecycle import FAILED, PLANNED
from loomtui.execution.log_lines import MAX_TAIL_BYTES
from loomtui.execution.readable_log import ReadableLog, readable_tail
from loomtui.execution.runtimes import OUTPUT_PLAIN
from loomtui.gitcmd import Git
from loomtui.runtime_config import PLACEHOLDERS_SAID
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace

if TYPE_CHECKING:
    from loomtui.coordination.claims import Conflict
    from loomtui.workflow.engine import Workflow
    from loomtui.workflow.steps import StepView


def _record_dict(record: SandboxRecord) -> dict[str, Any]:
    return {**asdict(record), "isolation_label": engine.isolation_label(record)}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _workflow(workspace: Workspace, say: Callable[[str], None] | None = None) -> Workflow:
    from loomtui.workflow.engine import Workflow  # loaded by the commands that need it, not by every one

    return Workflow(workspace, say=say)


def _show(record: SandboxRecord, what: str) -> None:
    print(f"sandbox {record.id} {what} ({record.status})")


# -- commands ---------------------------------------------------------------------------


NEW_INPUT_HINTS: Final = {
    "command": "give it after `--` (e.g. -- mytool --prompt {task})",
    "script": "give one with --script FILE",
}
"""What `sandbox new` adds when a runtime's input is missing (`MissingRuntimeInput.what`)."""


def _credentials_warning(record: SandboxRecord) -> str:
    """Why the agent will fail at once for want of its vendor's credentials ("" when they are there), as `doctor`
    and the app's form say it: it started, then failed with "Not logged in", said nowhere before."""
    from loomtui.execution.runtimes import launch_credentials

    status = launch_credentials(record.data.get("launch"), os.environ)
    return "" if status.ok else f"runtime {record.runtime}: {status.summary()}, so its agent will fail at once " \
                                "(`loomtui doctor` says where they are looked for)"


def _claim_warnings(workspace: Workspace, sandbox_id: str) -> list[Conflict]:
    """The conflicts this sandbox's live claims have with others' (none refused them: warnings), said from its
    side, as `claim add` says them (read from the whole repository's, the older claim's side was said)."""
    from loomtui.cli.coordination import coordinator_of

    coordinator = coordinator_of(workspace)
    found = [conflict for claim in workspace.store.live_claims(sandbox_id) for conflict in
             coordinator.check(sandbox_id, claim.region_ids, claim.mode, claim_id=claim.id)]
    return list({(c.kind, c.region_a, c.sandbox_b, c.region_b): c for c in found}.values())


def cmd_new(args: argparse.Namespace) -> int:
    from loomtui.execution.context_files import context_warning
    from loomtui.workflow.tasks import create_sandbox

    workspace = workspace_for(args)
    try:
        record = create_sandbox(
            workspace, args.task, args.runtime, base=args.base, claims=args.claim or (), script=args.script,
            isolate=False if args.no_isolation else None, command=args.command, after=args.after or (),
            autostart=not args.no_start,
        )
    except engine.MissingRuntimeInput as exc:
        raise LoomError(f"{exc}: {NEW_INPUT_HINTS[exc.what]}", exit_code=exc.exit_code) from None
    except BadTarget as exc:  # a --claim naming nothing: the hints `claim add` gives (from here, --new)
        from loomtui.cli.coordination import hinted_target

        named = next((target for target in args.claim or () if str(exc).startswith(shown(target))), None)
        new_file = "the agent claims it as it writes it, or `loomtui claim add --new` by its path"
        raise (hinted_target(exc, workspace.root, named, new_file) if named else exc) from None
    except LoomError as exc:
        if exc.recorded_sandbox and not args.json:  # kept as a record: its id, for `sandbox list` and `rm`
            from loomtui.workflow.tasks import refused_claims_hint

            raise LoomError(f"sandbox {exc.recorded_sandbox} rejected: {exc}{refused_claims_hint(workspace, exc)}",
                            exit_code=exc.exit_code) from None
        if not exc.recorded_sandbox:
            raise
        refused = engine.get_sandbox(workspace, exc.recorded_sandbox)
        print(f"loomtui: error: {exc}", file=sys.stderr)  # as every error is said, the record beside it
        print_json({**_record_dict(refused), "error": str(exc)})
        return exc.exit_code
    view = _workflow(workspace).view(record)
    if warning := context_warning(record):
        print(f"warning: {warning}", file=sys.stderr)
    if warning := _credentials_warning(record):
        print(f"warning: {warning}", file=sys.stderr)
    if not record.target:  # found out at its merge, after the agent ran and someone approved it
        print(f"warning: HEAD is detached here, so its change has no branch to merge into; give --base BRANCH, or "
              f"name one at the merge (`loomtui sandbox merge {record.id} --into BRANCH`)", file=sys.stderr)
    # What its claims meet that does not refuse them (code others hold that it depends on, or that depends
    # on it): flagged now, before any code is written, as `claim add` and the app's form flag it.
    conflicts = _claim_warnings(workspace, record.id) if args.claim else []
    for conflict in conflicts:
        print(f"warning: {conflict.kind}: {conflict.explanation}", file=sys.stderr)
    # Recorded, but a step failed on the way (its supervisor could not start: the store went away): not done.
    failed = 1 if view.step == "failed-step" else 0
    if args.json:
        print_json({**_record_dict(record), "step": str(view.step), "waits_on": view.waits_on,
                    "conflicts": [c.as_dict() for c in conflicts]})
        return failed
    # A planned record whose supervisor is up is an agent starting, not a plan: say which. Read again: a quick
    # agent's supervisor may have run it to its end already (its record read before said "planned").
    from loomtui.workflow.steps import AUTOSTART_KEY

    if record.status == PLANNED and view.step != "agent" and record.data.get(AUTOSTART_KEY):
        record = engine.get_sandbox(workspace, record.id)
        view = _workflow(workspace).view(record)
    state = view.line(STEP_HINTS) if record.status == PLANNED and view.step == "agent" else record.status
    print(f"sandbox {record.id}: {record.runtime} on {record.branch} from {record.base_ref}, "
          f"{engine.isolation_label(record)}, {state}")
    if record.isolation != "bwrap":
        why = "--no-isolation was given" if args.no_isolation else "bubblewrap is not available"
        # As root, an agent outside bubblewrap may write its own control groups: `limits:` hold it no more.
        lifts = " and, run as root, may lift its own limits" if os.geteuid() == 0 else ""
        print(f"warning: {why}, so this agent is NOT isolated{lifts} (see `loomtui doctor`)", file=sys.stderr)
    if not args.claim:
        # Claims are what coordination works on: without one, two agents changing the same code met at merge.
        print("note: no --claim: no code is held for this agent, so another's edits to the same code are flagged "
              "only at merge, and gate 2 scores its scope lower (`loomtui claim suggest TEXT` ranks what a task "
              "touches)", file=sys.stderr)
    # A task after another gets its worktree when it starts, from that one's merge: not there to `cd` to yet.
    print(f"  worktree {record.worktree}" + ("" if engine.has_worktree(record) else " (made when it starts)"))
    if record.status == PLANNED and view.step != "agent":  # no agent yet: nothing to follow
        print(f"  next     {view.line(STEP_HINTS)}")
    else:
        print(f"  follow   {_follow_command(record)}")
    if failed:
        print(f"loomtui: error: sandbox {record.id} was recorded, but {view.line(STEP_HINTS)}", file=sys.stderr)
    return failed


def cmd_start(args: argparse.Namespace) -> int:
    from loomtui.workflow.steps import RUNS_KEY
    from loomtui.workflow.tasks import start

    record = start(workspace_for(args), args.id)
    # Its supervisor has answered; it moves the sandbox on as the agent starts (planned still, said so).
    state = "starting" if record.status == PLANNED else record.status
    again = f" again (run {record.data[RUNS_KEY]})" if record.data.get(RUNS_KEY) else ""
    print(f"sandbox {record.id} started{again} ({state}; `{_follow_command(record)}` follows the agent)")
    return 0


def _follow_command(record: SandboxRecord) -> str:
    """How a person follows the agent: its logs, or, for one in tmux, the session (as `sandbox new` said it)."""
    interactive = (record.data.get("launch") or {}).get("mode") == "interactive"
    return f"loomtui attach {record.id}" if interactive else f"loomtui sandbox logs {record.id} -f"


def cmd_drop_after(args: argparse.Namespace) -> int:
    from loomtui.execution.sandboxes import get_sandbox
    from loomtui.workflow.engine import Workflow
    from loomtui.workflow.steps import AFTER_KEY
    from loomtui.workflow.tasks import drop_after

    workspace = workspace_for(args)
    waited = get_sandbox(workspace, args.id).data.get(AFTER_KEY) or []
    record = drop_after(workspace, args.id, args.others)
    after = record.data.get(AFTER_KEY) or []
    # What it dropped and where it is now (it said "waits for no other task (planned)" as it started).
    dropped = ", ".join(other for other in waited if other not in after)
    still = f"; still waits for {', '.join(after)}" if after else ""
    now = Workflow(workspace).view(record).line(STEP_HINTS)
    print(f"sandbox {record.id} no longer waits for {dropped}{still}: {now}")
    return 0


def cmd_advance(args: argparse.Namespace) -> int:
    from loomtui.workflow.steps import Step

    if args.all and args.id:  # said before the repository is opened; neither is guessed
        raise LoomError(f"give a sandbox ID or --all, not both (got {args.id!r} and --all)")
    workspace = workspace_for(args)
    say = None if args.json else print
    flow = _workflow(workspace, say)
    if args.all:
        results = flow.advance_all(retry=True)
    elif args.id:
        results = [flow.advance(engine.get_sandbox(workspace, args.id).id, retry=True)]
    else:
        raise LoomError("name a sandbox ID, or --all")
    if len(results) > 1:
        # Where each is now: a task advanced later in the run may have woken one advanced before (it read
        # "planned; waits for X to merge" of a task the lines above said was started).
        results = [replace(r, now=flow.view(record), status=record.status)
                   for r in results if (record := workspace.store.get_sandbox(r.sandbox_id)) is not None]
    # A step that failed (and was not put right by this retry) is exit 1, for scripts.
    failed = any(r.now.step == Step.FAILED_STEP for r in results)
    if args.json:
        print_json({"advanced": [{"sandbox": r.sandbox_id, "done": list(r.done), "status": r.status,
                                  "step": str(r.now.step), "waits_on": r.now.waits_on} for r in results]})
        return 1 if failed else 0
    for result in results:
        print(f"sandbox {result.sandbox_id}: {result.status}; {result.now.line(STEP_HINTS)}")
    return 1 if failed else 0


def cmd_list(args: argparse.Namespace) -> int:
    workspace = workspace_for(args)
    # Read-only (a mount nobody here may write): listed as recorded; a dead supervisor is not marked.
    unmarked = None
    try:
        report = recovery.ReconcileReport() if workspace.store.read_only else _reconciled(workspace)
    except StoreError as exc:  # a write refused now (a full disk): listed as recorded, as read-only, and said
        report, unmarked = recovery.ReconcileReport(), f"what changed since is not marked ({exc})"
    records = engine.list_sandboxes(workspace, include_archived=args.all)
    steps = _next_steps(workspace, records)
    from loomtui.workflow.steps import Step, nobody_on_it  # loaded by the commands that need it, not by every one

    if args.json:
        print_json({"sandboxes": [{**_record_dict(r), **_step_dict(steps[r.id])} for r in records],
                    "reconcile": {**asdict(report), "error": unmarked}})
        return 0
    for line in [*report.lines(), *([unmarked] if unmarked else [])]:
        print(f"note: {line}", file=sys.stderr)
    if not records:
        print("no sandboxes (start one with `loomtui sandbox new --runtime R --task TEXT`)")
        return 0
    now = time.time()
    width = max(10, *(len(r.runtime) for r in records))  # a long runtime name must not push the columns
    print(f"{'ID':<8} {'STATUS':<16} {'RUNTIME':<{width}} {'ISOLATION':<17} {'AGE':>4}  TASK")
    for r in records:
        task = abridged(r.task, 50)
        flag = " [orphaned]" if r.data.get("orphan") else ""
        flag += " [worktree missing]" if r.worktree_missing else ""
        flag += " [stopped]" if engine.stopped_by(r) else ""
        flag += f" [was {shown(r.data['archived_from'])}]" if r.data.get("archived_from") else ""
        print(f"{r.id:<8} {r.status:<16} {r.runtime:<{width}} {engine.isolation_label(r):<17} "
              f"{_age(now - r.created):>4}  {task}{flag}")
        step = steps[r.id]
        # A person's turn: what to run; or an agent starting, and what holds it (a first pack of the history).
        # A task waiting on others (`--after`, a held claim) says on what: its row said nothing, where the app's
        # Next column and `sandbox new` did.
        if step is not None and (step.action is not None or (r.status == PLANNED and step.step in (
                "agent", Step.WAIT_TASKS, Step.WAIT_CLAIMS))):
            print(f"{'':<8} next: {step.line(STEP_HINTS)}")
        elif step is not None and nobody_on_it(workspace, r, step):  # it said nothing, and nothing moved it
            print(f"{'':<8} next: {step.line()} (due, and nothing here is doing it: "
                  f"{STEP_HINTS['advance'].format(about=r.id)})")
        elif step is not None and not engine.on_this_host(r) and step.step != "done":
            print(f"{'':<8} next: {step.line()}")  # another machine's step: "(on build-2: done there)"
    return 0


def _next_steps(workspace: Workspace, records: list[SandboxRecord]) -> dict[str, StepView | None]:
    """Each sandbox's next step; None for all when the policy or loom.yaml cannot be read: the listing still
    lists, and says why no sandbox has a next step (every `next:` went, with nothing said)."""
    try:
        workflow = _workflow(workspace)
        return dict(workflow.views(records))
    except LoomError as exc:
        if records:
            print(f"note: no next steps: {exc} (nothing moves until it is mended)", file=sys.stderr)
        return dict.fromkeys((r.id for r in records), None)


def _step_dict(step: StepView | None) -> dict[str, Any]:
    """A next step for `--json`: the step, what it waits on, and the line with the command to run."""
    if step is None:
        return {"step": None, "waits_on": None, "next": None}
    return {"step": str(step.step), "waits_on": step.waits_on, "next": step.line(STEP_HINTS)}


def cmd_logs(args: argparse.Namespace) -> int:
    workspace = workspace_for(args)
    # Claude Code's stream-json read as what happened (one JSON event a line, the model's words buried
    # in escapes); --raw prints the log as the agent wrote it.
    output, worktree = (OUTPUT_PLAIN, None) if args.raw else engine.log_format(workspace, args.id)
    log = engine.log_path(workspace, args.id)
    if not log.exists():  # another machine's (a team's store): "the agent wrote no output" read as silence
        engine.refuse_elsewhere(engine.get_sandbox(workspace, args.id), "read its log")
    if not args.follow:
        lines, wrote = readable_tail(log, output, worktree, args.n)
        for line in lines:
            print(line)
        if not wrote and args.n:  # said, as the app's Log tab says it: nothing printed read as a broken command
            print(f"sandbox {args.id}: the agent wrote no output (yet)", file=sys.stderr)
        with contextlib.suppress(OSError):
            if len(lines) < args.n and log.stat().st_size > MAX_TAIL_BYTES:
                # The read stops at the tail's byte bound: an agent's one huge line left the earlier ones out
                # unsaid (-n 2000 printed 24).
                print(f"sandbox {args.id}: only the last {MAX_TAIL_BYTES >> 20} MiB of its log is read here "
                      f"({len(lines)} lines); the whole log is {log}", file=sys.stderr)
        return 0
    for line in ReadableLog(output, worktree).lines(engine.follow_log(workspace, args.id, last=args.n)):
        print(line, flush=True)
    return _agent_ending(engine.get_sandbox(workspace, args.id))


def _agent_ending(record: SandboxRecord) -> int:
    """How `logs -f` ends once the agent has: 1, with why, for an agent that failed (a script following it
    read 0, as for one that finished its task); 0 otherwise."""
    if record.status != FAILED:
        return 0
    why = record.data.get("error") or record.data.get("reason")
    code = "" if record.exit_code is None else f" (exit code {record.exit_code})"
    print(f"sandbox {record.id}: the agent failed{code}" + (f": {shown(str(why))}" if why else ""), file=sys.stderr)
    return 1


def cmd_stop(args: argparse.Namespace) -> int:
    record = agent_control.stop(workspace_for(args), args.id, grace=args.grace)
    code = "" if record.exit_code is None else f", exit code {record.exit_code}"
    print(f"sandbox {record.id} stopped ({record.status}{code})")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    _show(agent_control.pause(workspace_for(args), args.id), "paused")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    _show(agent_control.resume(workspace_for(args), args.id), "resumed")
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    argv = agent_control.attach_command(workspace_for(args), args.id)
    if "attach-session" in argv:  # (inside tmux, switch-client moves the client that is there already)
        require_terminal("attaching", ("stdin", "stdout"), "tmux draws there",
                         f"`loomtui sandbox logs {args.id}` reads the agent's output without one")
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # the terminal becomes tmux's; detaching (C-b d) returns to the shell


def cmd_diff(args: argparse.Namespace) -> int:
    result = review.diff(workspace_for(args), args.id, patch=not args.stat)
    if args.json:
        print_json({**asdict(result), "added": result.added, "deleted": result.deleted})
        return 0
    if args.stat:
        for change in result.files:
            added = "-" if change.added is None else change.added
            deleted = "-" if change.deleted is None else change.deleted
            print(f"{added:>6} {deleted:>6}  {shown(change.path)}")  # a newline in a name forged a row
        extra = " (uncommitted work included)" if result.includes_uncommitted else ""
        print(f"{result.stats}{extra}")
        return 0
    sys.stdout.write(result.patch)
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    workspace = workspace_for(args)
    flow = _workflow(workspace, None if args.json else print)
    outcome = flow.review_now(engine.get_sandbox(workspace, args.id).id)
    if args.json:
        print_json({"sandbox": outcome.sandbox.id, "status": outcome.sandbox.status, "commit": outcome.commit,
                    "outcome": outcome.evaluation.outcome, "risk": outcome.evaluation.risk,
                    "rules": list(outcome.evaluation.rule_names()),
                    "gates": {r.gate: r.status for r in outcome.gates},
                    "escalation": outcome.escalation.id if outcome.escalation else None,
                    "explanation": outcome.evaluation.explanation()})
        return 0
    print(outcome.line())
    for line in outcome.evaluation.explanation():
        print(f"  {line}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from loomtui.workflow.engine import request_merge

    workspace = workspace_for(args)
    if args.into and not Git(workspace.root).local_branch_exists(args.into):
        # A typo of the command line, said before the merge step runs (and is recorded as failed).
        raise LoomError(f"--into {quoted(args.into)}: no such branch here")
    try:
        result = request_merge(workspace, args.id, into=args.into)
    except LoomError as exc:
        # The merge is a workflow step, so a missing target arrives inside the step's failure.
        if args.into or engine.get_sandbox(workspace, args.id).target:
            raise
        raise LoomError(f"{exc} (it has no target branch: name one with --into BRANCH)",
                        exit_code=exc.exit_code) from None
    record = engine.get_sandbox(workspace, result.sandbox_id)
    merged = {"sandbox_id": record.id, "target": record.merged_into,
              "commit": record.merged_commit, "done": list(result.done)}
    if args.json:
        print_json(merged)
    else:
        # Its own merge step's line, not any step (the release of its claims after another caller's merge)
        ours = any(line.startswith("merged into") and "found already merged" not in line for line in result.done)
        found = any("found already merged" in line for line in result.done)
        # A merge its caller moved the branch for and never recorded (killed): no other caller was merging it.
        by = "" if ours else (" (found merged already: a merge cut short before it was recorded)" if found
                              else " (by another caller, which was merging it)")
        print(f"merged sandbox {record.id} into {merged['target']} as {str(merged['commit'])[:12]}{by}")
    return 0


REMOVE_HINTS = {
    "live": " (or --force to stop it and remove)",
    "uncommitted": ". --force commits them to {branch} first",
    "unmerged": ". --delete-branch --force deletes it anyway",
    "nested": "",
    "too_large": "",
}
"""What `sandbox rm` adds to each refusal of `review.remove` (`RemoveRefused.reason`)."""


def cmd_rm(args: argparse.Namespace) -> int:
    from loomtui.workflow.tasks import remove

    if args.done:
        return _rm_done(args)
    from loomtui.interrupts import as_interrupt

    try:
        with as_interrupt():  # a stop of a live agent waits out its grace: a terminal closed meanwhile
            result = remove(workspace_for(args), args.id, force=args.force, delete_branch=args.delete_branch)
    except review.RemoveRefused as exc:
        raise LoomError(_refusal(exc), exit_code=exc.exit_code) from None
    if args.json:
        print_json(asdict(result))
        return 0
    if result.saved_commit:
        print(f"saved uncommitted work to {result.branch} as {result.saved_commit[:12]}")
    if result.ignored:
        print(f"deleted with the worktree, as git ignores them: {listed(result.ignored)}")
    print(_removed_line(result))
    return 0


def _refusal(refused: LoomError) -> str:
    """Why `remove` refused, and what `rm` offers for it."""
    if isinstance(refused, review.RemoveRefused):
        return f"{refused}{REMOVE_HINTS[refused.reason].format(branch=refused.branch)}"
    return str(refused)


def _removed_line(result: review.RemoveResult) -> str:
    kept = "deleted" if result.branch_deleted else "kept" if result.branch_tip else "never made"
    return f"removed sandbox {result.sandbox_id}; branch {result.branch} {kept}"


def _rm_done(args: argparse.Namespace) -> int:
    """`rm --done`: every merged or rejected sandbox archived; exit 1 when any was refused."""
    from loomtui.workflow.tasks import remove_done

    if args.force or args.delete_branch:
        raise LoomError("--done removes each as rm without options does; --force and --delete-branch go with "
                        "one ID")
    outcomes = remove_done(workspace_for(args))
    refused = [(sandbox_id, _refusal(why)) for sandbox_id, why in outcomes if isinstance(why, LoomError)]
    if args.json:
        print_json({"removed": [asdict(result) for _, result in outcomes if isinstance(result, review.RemoveResult)],
                    "refused": [{"sandbox_id": sandbox_id, "why": why} for sandbox_id, why in refused]})
        return 1 if refused else 0
    for _, outcome in outcomes:
        print(_removed_line(outcome) if isinstance(outcome, review.RemoveResult) else f"refused: {_refusal(outcome)}")
    if not outcomes:
        print("no merged or rejected sandbox to remove")
    elif refused:
        print(f"{len(refused)} of {len(outcomes)} refused")
    return 1 if refused else 0


def _reconciled(workspace: Workspace) -> recovery.ReconcileReport:
    """`reconcile`, then the claims of a sandbox found without its worktree go back (the app's own
    advancing does the same): held for their lease, they blocked others for nothing."""
    from loomtui.workflow.tasks import release_lost

    report = recovery.reconcile(workspace)
    if report.missing_worktrees:
        try:
            release_lost(workspace, report.missing_worktrees)
        except LoomError:  # an unreadable policy: the listing still lists; `sandbox advance` says why
            pass
    return report


def cmd_reconcile(args: argparse.Namespace) -> int:
    report = _reconciled(workspace_for(args))
    if args.json:
        print_json(asdict(report))
    else:
        print("\n".join(report.lines()) or f"all accounted for ({len(report.alive)} running)")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from loomtui.execution.doctor import ERROR, OK, run_doctor

    report = run_doctor(args.repo)
    # The policy is governance's, a layer above the doctor's: checked here. A broken one fails
    # `sandbox new` and the gate, so it is an error here too.
    try:
        from loomtui.config import load_config
        from loomtui.governance.policy import configured_policy
        from loomtui.repo import find_repo

        root = find_repo(args.repo).root
        report.add("policy", OK, configured_policy(root, load_config(root)).summary())
    except LoomError as exc:
        if not any(check.name in ("repository", "config") and check.level != OK for check in report.checks):
            report.add("policy", ERROR, str(exc))  # (outside a repository, or a broken config: said already)
    if args.json:
        print_json(report.as_dict())
    else:
        width = max((len(check.name) for check in report.checks), default=0)  # "runtime aider credentials"
        for check in report.checks:
            print(f"{check.level:<8} {check.name:<{width}}  {check.detail}")
    return 0 if report.ok else 1


def cmd_script_agent(args: argparse.Namespace) -> int:
    from loomtui.execution.script_agent import main

    return main(args.script, check_only=args.check)


def cmd_bench_sandboxes(args: argparse.Namespace) -> int:
    from loomtui.tui.bench import measure_key_to_repaint
    from loomtui.workflow.sandbox_bench import format_report, run_sandbox_bench

    result = run_sandbox_bench(
        count=args.count, seconds=args.seconds, lines_per_second=args.rate,
        measure_tui=lambda workspace: measure_key_to_repaint(workspace, seconds=max(1.0, args.seconds - 2)),
    )
    if args.json:
        print_json(result)
    else:
        print(format_report(result))
    return 0 if result["log_lines_lost"] == 0 else 1


# -- registration -------------------------------------------------------------------------


def _id_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="sandbox id (or a unique prefix of one)")


def register(commands: Any) -> None:
    """Add `sandbox`, `attach`, `doctor` and `script-agent` to the loomtui command."""
    sandbox = add_group(commands, "sandbox", "agent sandboxes: a worktree, a branch and a supervised agent each")

    new = add_command(sandbox, "new", cmd_new, "create a sandbox (worktree on branch loom/ID) and start its agent",
                      json_flag=True)
    new.add_argument("--runtime", required=True, metavar="R",
                     help="runtime from .loom/loom.yaml (built in: claude, codex, aider, script, and command "
                          "with the program after --)")
    new.add_argument("--task", required=True, metavar="TEXT",
                     help="what the agent should do; passed as one argument, never through a shell")
    new.add_argument("--base", type=nonempty_arg, default="HEAD", metavar="REF",
                     help="commit or branch to start from (default HEAD)")
    new.add_argument("--claim", action="append", metavar="TARGET",
                     help="claim a region, file, glob or path:LINES before the agent starts (repeatable); "
                          "a refused claim starts nothing: the sandbox is recorded as rejected, with why, and exits 1")
    new.add_argument("--script", type=nonempty_arg, metavar="FILE", help="the YAML script a `script` runtime replays")
    new.add_argument("command", nargs="*", metavar="-- PROGRAM ARG",
                     help="for the generic `command` runtime: the program and its arguments "
                          f"({PLACEHOLDERS_SAID} are substituted in the arguments, never read by a shell: "
                          "`sh -c 'echo {task}'` is refused; pass it on as `sh -c '... \"$1\"' sh {task}`)")
    new.add_argument("--after", action="append", metavar="ID",
                     help="wait for sandbox ID's change to merge first (repeatable); this task's claims, "
                          "worktree and agent start from the merged target then")
    new.add_argument("--no-start", action="store_true", help="create the sandbox but do not start the agent")
    new.add_argument("--no-isolation", action="store_true",
                     help="run the agent as a plain process even where bubblewrap works")

    _id_arg(add_command(sandbox, "start", cmd_start, "start the agent of a sandbox created with --no-start, or run "
                                                    "again the agent of one that ended without a change (its "
                                                    "worktree, task and claims kept)"))
    drop = add_command(sandbox, "drop-after", cmd_drop_after,
                       "a planned task stops waiting for tasks it comes after (those named, else each one not "
                       "merged): it starts from its target as the target is")
    _id_arg(drop)
    drop.add_argument("others", metavar="AFTER", nargs="*", help="the tasks it is to stop waiting for (default: "
                      "every one not merged, such as one that failed)")
    advance = add_command(sandbox, "advance", cmd_advance,
                          "do a sandbox's due workflow steps now (review, follow a decision, merge, release "
                          "claims, start what waited); retries a failed step", json_flag=True)
    advance.add_argument("id", metavar="ID", nargs="?", help="sandbox id (or a unique prefix of one)")
    advance.add_argument("--all", action="store_true", help="every sandbox")
    listing = add_command(sandbox, "list", cmd_list,
                          "sandboxes, newest first (reconciles the store with the processes first)", json_flag=True,
                          reads_only=True)
    listing.add_argument("--all", action="store_true", help="include removed (archived) sandboxes")

    logs = add_command(sandbox, "logs", cmd_logs, "print the agent's output", reads_only=True)
    _id_arg(logs)
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing until the agent ends (exit 1, saying why, if it failed)")
    logs.add_argument("-n", type=count_arg, default=50, metavar="N",
                      help="lines of the end of the log to print first (default 50)")
    logs.add_argument("--raw", action="store_true",
                      help="the log as the agent wrote it (Claude Code's output is otherwise shown as what "
                           "happened: its words, the tools it called, its result)")

    stop = add_command(sandbox, "stop", cmd_stop, "stop the agent: SIGTERM, then SIGKILL after the grace period")
    _id_arg(stop)
    grace = agent_control.DEFAULT_GRACE_S
    stop.add_argument("--grace", type=seconds_arg(3600, allow_zero=True), default=grace, metavar="SECONDS",
                      help=f"seconds between SIGTERM and SIGKILL (default {grace:g})")
    _id_arg(add_command(sandbox, "pause", cmd_pause, "freeze the agent (SIGSTOP)"))
    _id_arg(add_command(sandbox, "resume", cmd_resume, "let a paused agent continue (SIGCONT)"))
    _id_arg(add_command(sandbox, "attach", cmd_attach, "attach to an interactive agent's tmux session (detach: C-b d)"))

    diff = add_command(sandbox, "diff", cmd_diff, "what the sandbox changed since it left its target branch",
                       json_flag=True, reads_only=True)
    _id_arg(diff)
    diff.add_argument("--stat", action="store_true", help="per-file line counts instead of the patch")

    review_cmd = add_command(sandbox, "review", cmd_review,
                             "gate an ended sandbox and run the policy on its diff: approved, or an "
                             "escalation for people; again after new commits", json_flag=True)
    _id_arg(review_cmd)

    merge = add_command(sandbox, "merge", cmd_merge,
                        "merge an approved sandbox into its target, only if clean (exit 1 on conflict)",
                        json_flag=True)
    _id_arg(merge)
    merge.add_argument("--into", type=nonempty_arg, metavar="BRANCH",
                       help="target branch (default: the one it was created from)")

    rm = add_command(sandbox, "rm", cmd_rm,
                     "remove the worktree and archive the sandbox; refused with uncommitted changes",
                     json_flag=True)
    which = rm.add_mutually_exclusive_group(required=True)
    which.add_argument("id", metavar="ID", nargs="?", help="sandbox id (or a unique prefix of one)")
    which.add_argument("--done", action="store_true",
                       help="instead of one ID, every merged or rejected sandbox (each as rm without options; "
                            "one refused does not stop the rest)")
    rm.add_argument("--force", action="store_true",
                    help="commit uncommitted changes to the sandbox branch first (and stop a running agent)")
    rm.add_argument("--delete-branch", action="store_true",
                    help="delete the branch too (an unmerged one also needs --force)")
    add_command(sandbox, "reconcile", cmd_reconcile,
                "match the store with running processes and worktrees; mark orphans", json_flag=True)

    _id_arg(add_command(commands, "attach", cmd_attach,
                        "attach to an interactive sandbox's tmux session (detach with C-b d)"))
    add_command(commands, "doctor", cmd_doctor,
                "check git, bubblewrap, tmux, runtimes, the store and sandboxes", json_flag=True)
    script_agent_arguments(add_command(commands, "script-agent", cmd_script_agent, SCRIPT_AGENT_HELP))


def register_bench(bench: Any) -> None:
    """Add `loomtui bench sandboxes` to the shared `bench` group."""
    run = add_command(bench, "sandboxes", cmd_bench_sandboxes,
                      "create sandboxes on the sample repo, run logging script agents, print the figures",
                      json_flag=True)
    run.add_argument("--count", type=positive_int_arg, default=20, help="sandboxes (default 20)")
    run.add_argument("--seconds", type=seconds_arg(3600), default=10.0, help="how long each agent logs (default 10)")
    run.add_argument("--rate", type=positive_int_arg, default=100, help="log lines per second per agent (default 100)")

