"""The one engine that moves a task through its life: `advance(task)` does the next due step.

Whoever notices a step may be due calls `advance`: the supervisor when its agent
ends, a decision in the app or the CLI, a merge that unblocks the tasks waiting on
it, `loomtui sandbox advance`. Each step is done under a lease in the store (so
two callers racing do it once) and recorded in the audit log by the engines it
calls. A caller that dies mid-step leaves a lease held by a process that is gone:
the next `advance` takes it over and redoes the step (each step checks what is
already done first, so nothing is done twice and nothing is skipped).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loomtui.coordination.claims import ClaimRefused, Coordinator, claim_targets, release_claims_of
from loomtui.coordination.regions import split_id
from loomtui.coordination.targets import BadTarget
from loomtui.errors import ConfigError, LoomError, abridged, plural, shown
from loomtui.execution import sandboxes
from loomtui.execution.gitops import Git
from loomtui.execution.leftovers import save_leftovers
from loomtui.execution.lifecycle import (
    APPROVED,
    ARCHIVED,
    EXITED,
    FAILED,
    GATING,
    LIVE,
    MERGED,
    PLANNED,
    REJECTED,
    REMOVING_KEY,
    mark_removing,
    transition,
)
from loomtui.execution.procs import is_alive
from loomtui.execution.review import UNJUDGED_KEY, MergeConflict, MergeNeedsReview, merge
from loomtui.governance.agent_ops import settle_unheard
from loomtui.governance.checkout import policy_changed, policy_fingerprint
from loomtui.governance.coordinator import governed_coordinator
from loomtui.governance.escalations import CLEARED, withdraw_open
from loomtui.governance.hooks import install_hooks
from loomtui.governance.policy import Policy, configured_policy
from loomtui.governance.prestart import PrestartBlocked, prestart_check
from loomtui.governance.review import (
    ReviewOutcome,
    check_approved,
    check_cleared,
    follow_decision,
    merge_trailers,
    review_sandbox,
)
from loomtui.identity import current_host
from loomtui.store import SandboxRecord
from loomtui.workflow.steps import (
    AFTER_KEY,
    CLAIMED_LINES_KEY,
    CLAIMS_WAIT_KEY,
    CLAIMS_WAITED_KEY,
    FAILED_ON_POLICY_KEY,
    MERGE_CONFLICT_KEY,
    MERGE_REQUESTED_KEY,
    PRESTART_KEY,
    STEP_ERROR_KEY,
    KnownHolders,
    PersonAction,
    Step,
    StepView,
    caller_id,
    holder_gone,
    holder_text,
    holding_step,
    next_step,
    removal_stopped,
    starts_from_target,
)
from loomtui.workspace import Workspace

UNJUDGED_SEEN_KEY: Final = "merge_unjudged_seen"
"""The last merge refused for paths its review did not judge (target tip and paths): refused so again after
the review it sent it back to, the merge fails as a step rather than reviewing it again and again."""

SUPERVISOR: Final = "loomtui.workflow.supervise"
"""The supervisor the workflow starts agents under: it serves their hooks and advances on exit."""
MAX_STEPS: Final = 12
"""Steps one `advance` does at most (a task's whole life is fewer)."""
MERGE_WAIT_S: Final = 120.0
"""How long a person's merge waits for another caller's merge of the same sandbox under way."""

Say = Callable[[str], None]


@dataclass(frozen=True)
class Advanced:
    """What one `advance` did (a line per step) and where the task stands now."""

    sandbox_id: str
    done: tuple[str, ...]
    now: StepView
    status: str


def _quiet(_line: str) -> None:
    return None


class Workflow:
    """The steps of a task, done by one caller (policy read once per caller)."""

    def __init__(self, workspace: Workspace, *, policy: Policy | None = None, say: Say | None = None) -> None:
        self.workspace = workspace
        self._policy = policy
        self.say = say or _quiet

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            self._policy = configured_policy(self.workspace.root, self.workspace.load_config())
        return self._policy

    def view(self, record: SandboxRecord, known: KnownHolders | None = None) -> StepView:
        """What happens next to `record`; `known`: what a caller listing many has read once for all."""
        return next_step(self.workspace, record, merge_mode=self.policy.merge, known=known)

    def views(self, records: list[SandboxRecord]) -> dict[str, StepView]:
        """Each record's next step, the store asked a fixed few queries for them all."""
        known = KnownHolders.read(self.workspace, records)
        return {record.id: self.view(record, known) for record in records}

    # -- advancing ---------------------------------------------------------------------

    def advance(self, sandbox_id: str, *, retry: bool = False) -> Advanced:
        """Do every step now due for this task, one after another, until it waits."""
        store = self.workspace.store
        done: list[str] = []
        holder = caller_id()
        record = sandboxes.get_sandbox(self.workspace, sandbox_id)
        try:
            view = self.view(record)
        except LoomError as exc:  # loom.yaml or the policy cannot be read: nothing can be decided
            line = self._step_failed(record.id, "read the policy", exc)
            return Advanced(record.id, (line,), StepView(Step.FAILED_STEP, line, PersonAction.RETRY, record.id),
                            record.status)
        if record.host and record.host != current_host() and (view.step.is_work or view.step == Step.FAILED_STEP):
            # Its branch, worktree and agent are on that machine: its steps are done there (this
            # clone would review a branch it lacks, and take over a lease it cannot judge); the view says so.
            return Advanced(record.id, (), view, record.status)
        if removal_stopped(self.workspace, record) and self._take_back_removal(record.id, holder):
            done.append("its removal had stopped before deleting anything (the process removing it is gone): "
                        "taken back")
            record = sandboxes.get_sandbox(self.workspace, record.id)
            view = self.view(record)
        if record.status in (EXITED, FAILED) and not is_alive(record.pid, record.pid_start):
            withdrawn = settle_unheard(self.workspace, record.id)
            if withdrawn:
                done.append(f"escalation {', '.join(f'#{e}' for e in withdrawn)} withdrawn: its agent ended "
                            "with its supervisor, before a decision")
        for _ in range(MAX_STEPS):
            # A retry lets the failure go; so does a failure past (decided, or its files fixed, since): one left
            # in the record read as failed again had its files come back as they were when it failed.
            if record.data.get(STEP_ERROR_KEY) is not None and (retry or view.step != Step.FAILED_STEP):
                store.update_sandbox(record.id, data={STEP_ERROR_KEY: None})
                record = sandboxes.get_sandbox(self.workspace, record.id)
                view = self.view(record)
            retry = False  # a retry is of the failure found when asked, never of one this call just made
            if not view.step.is_work:
                break
            held_by = store.take_step_lease(record.id, holder, view.step, is_gone=holder_gone)
            if held_by is not None:
                view = StepView(view.step, f"being done by {holder_text(held_by)}")
                break
            try:
                # Under the lease, look again: another caller may have done it just now.
                record = sandboxes.get_sandbox(self.workspace, record.id)
                again = self.view(record)
                if again.step == view.step:
                    line = self._do(view.step, record)
                    if line:
                        done.append(line)
                        self.say(f"{record.id}: {line}")
            except LoomError as exc:
                done.append(self._step_failed(record.id, str(view.step), exc))
            except Exception as exc:  # noqa: BLE001 - an input no check foresaw, or a bug: the task says so
                # and waits for a retry, rather than the caller ending on a traceback with the task
                # left mid-step (`gating`) and nothing to say why.
                done.append(self._step_failed(record.id, str(view.step), _unexpected(exc)))
            finally:
                store.drop_step_lease(record.id, holder)
            record = sandboxes.get_sandbox(self.workspace, record.id)
            view = self.view(record)
        return Advanced(record.id, tuple(done), view, record.status)

    def _take_back_removal(self, sandbox_id: str, holder: str) -> bool:
        """Clear the mark a stopped removal left, under the step lease (every removal holds it: one starting
        now waits, and its own mark is never taken back); whether it was cleared."""
        store = self.workspace.store
        if store.take_step_lease(sandbox_id, holder, "remove", is_gone=holder_gone) is not None:
            return False
        try:
            if sandboxes.get_sandbox(self.workspace, sandbox_id).data.get(REMOVING_KEY) is not True:
                return False
            mark_removing(self.workspace, sandbox_id, removing=False)
            return True
        finally:
            store.drop_step_lease(sandbox_id, holder)

    def _step_failed(self, sandbox_id: str, step: str, exc: LoomError) -> str:
        """Record that `step` failed (shown as the task's next step, retried by `sandbox advance`)."""
        current = sandboxes.get_sandbox(self.workspace, sandbox_id)
        failure: dict[str, object] = {"step": step, "error": str(exc), "status": current.status, "at": time.time()}
        if isinstance(exc, ConfigError):  # the step is due again once the files change (see steps)
            failure[FAILED_ON_POLICY_KEY] = policy_fingerprint(self.workspace)
        self.workspace.store.update_sandbox(sandbox_id, data={STEP_ERROR_KEY: failure})
        self.workspace.record("workflow.step_failed", sandbox_id, {"step": step, "error": str(exc)})
        self.say(f"{sandbox_id}: {step} failed: {exc}")
        return f"{step} failed: {exc}"

    def advance_all(self, *, retry: bool = False) -> list[Advanced]:
        """Advance every task that may have a step due (archived ones only to release claims)."""
        store = self.workspace.store
        listed = [record.id for record in store.list_sandboxes()]
        # Archived ones still holding a claim (their release was cut short), not every one ever archived;
        # a holder with no sandbox (a person's claim) is no task.
        archived = [holder for holder in sorted(store.live_claim_counts().keys() - set(listed))
                    if store.get_sandbox(holder) is not None]
        return [self.advance(sandbox_id, retry=retry) for sandbox_id in listed + archived]

    def review_now(self, sandbox_id: str) -> ReviewOutcome:
        """Review an ended sandbox now (`sandbox review`), under the step's lease; then advance it on."""
        record = sandboxes.get_sandbox(self.workspace, sandbox_id)
        failure: LoomError | None = None
        with holding_step(self.workspace, record.id, Step.REVIEW, busy="; try again when it is done"):
            try:
                self.workspace.store.update_sandbox(record.id, data={STEP_ERROR_KEY: None})
                outcome = review_sandbox(self.workspace, record.id,
                                         redo=record.status == GATING, say=self.say)
            except LoomError as exc:
                failure = exc
            except Exception as exc:  # noqa: BLE001 - as in `advance`: one line, and the task says so
                failure = _unexpected(exc)
        if failure is not None:
            # Refused before it began (not ended, no commits): nothing failed, and what had failed before
            # still has (a merge that keeps failing read as a merge to do). Stopped mid-review: the task
            # shows the failed step and waits for a retry, as when `advance` reviewed it.
            now = sandboxes.get_sandbox(self.workspace, record.id)
            if now.status == GATING:
                self._step_failed(record.id, str(Step.REVIEW), failure)
            elif record.data.get(STEP_ERROR_KEY) is not None and now.data.get(STEP_ERROR_KEY) is None:
                self.workspace.store.update_sandbox(record.id, data={STEP_ERROR_KEY: record.data[STEP_ERROR_KEY]})
            raise failure
        self.advance(record.id)
        return outcome

    def _do(self, step: Step, record: SandboxRecord) -> str:
        if step == Step.PREPARE:
            # It started from the commit it was stated on: `W` said "from main as it is".
            return self.prepare(record, wait_for_claims=True, from_target=starts_from_target(record))
        if step == Step.REJECT_START:
            transition(self.workspace, record.id, REJECTED, allowed_from=frozenset({PLANNED}),
                       reason=f"the start was not approved ({self.view(record).waits_on})")
            self.wake_waiters(record.id)
            return "rejected: the start was not approved"
        if step == Step.START:
            _refuse_a_start_without_credentials(record)
            try:
                start_agent(self.workspace, record)
            except LoomError:
                if sandboxes.started_by_another(self.workspace, record.id):
                    return "agent started (by another caller)"
                raise
            return "agent started"
        if step == Step.SAVE:
            saved, error = save_leftovers(self.workspace, record, lambda line: self.say(f"{record.id}:   {line}"))
            if error:
                raise LoomError(f"the work it left could not be saved: {error}")
            self.workspace.store.update_sandbox(record.id, data={"save_error": None, "saved_commit": saved})
            return f"its work saved as {saved[:12]}" if saved else "nothing of it was left to save"
        if step == Step.REVIEW:
            outcome = review_sandbox(self.workspace, record.id, redo=record.status == GATING,
                                     say=lambda line: self.say(f"{record.id}:   {line}"))
            return f"reviewed: {outcome.line()}"
        if step == Step.FOLLOW_DECISION:
            moved = follow_decision(self.workspace, record.id)
            if moved is not None and moved.status == REJECTED:
                self.wake_waiters(record.id)
            return f"decision followed: now {moved.status}" if moved is not None else ""
        if step == Step.MERGE:
            return self._merge(record)
        if step == Step.RELEASE:
            ended = record.status == EXITED  # with no change (else it is reviewed first)
            why = ("its worktree is gone" if record.worktree_missing and record.status in (EXITED, FAILED)
                   else "the agent ended without a change" if ended else f"sandbox {record.status}")
            count = release_claims_of(self.workspace, record.id, why)
            archived = record.status == ARCHIVED
            withdrawn = withdraw_open(self.workspace, record.id, "sandbox archived") if archived else []
            self.wake_waiters(record.id)
            return f"{plural(count, 'claim')} released ({record.status})" + (
                f"; escalation {', '.join(f'#{e}' for e in withdrawn)} withdrawn" if withdrawn else "")
        raise LoomError(f"internal error: {step} is not a step the engine does")

    # -- the steps ----------------------------------------------------------------------

    def prepare(self, record: SandboxRecord, *, wait_for_claims: bool, from_target: bool,
                context: str | None = None) -> str:
        """Claims, the pre-start policy, then the worktree and the agent's hooks.

        `from_target`: the worktree starts from the target branch's tip (a task that waited on
        others starts from their merged work). A refused claim rejects the task and is raised,
        or with `wait_for_claims` (planned work) the task waits until the holder lets go.
        A policy block rejects the task and is raised unless `wait_for_claims`.
        """
        workspace = self.workspace
        claims = list(record.claim_targets)
        if claims and not record.data.get("claim_ids"):
            coordinator = governed_coordinator(workspace)
            claims = _claims_now(coordinator, claims, record.data.get(CLAIMED_LINES_KEY) or {})
            try:
                taken = claim_targets(coordinator, record.id, claims, reason=abridged(record.task, 200))
            except ClaimRefused as exc:
                if not wait_for_claims:
                    transition(workspace, record.id, REJECTED, reason=str(exc), allowed_from=frozenset({PLANNED}))
                    raise
                holders = sorted({c.sandbox_b for c in exc.conflicts if c.blocking} - {record.id})
                workspace.store.update_sandbox(record.id, data={CLAIMS_WAIT_KEY: {"why": str(exc),
                                                                                  "holders": holders}})
                return f"waits for claims held by {', '.join(holders) or 'another sandbox'}"
            waited = {CLAIMS_WAITED_KEY: True} if record.data.get(CLAIMS_WAIT_KEY) else {}
            workspace.store.update_sandbox(record.id, data={"claim_ids": [c.id for c in taken],
                                                             CLAIMS_WAIT_KEY: None, **waited})
            try:
                prestart_check(workspace, record.id)
            except PrestartBlocked as exc:
                transition(workspace, record.id, REJECTED, reason=str(exc), allowed_from=frozenset({PLANNED}))
                if not wait_for_claims:
                    raise
                return f"rejected: {exc}"
        base_sha = None
        if from_target:
            target = record.target
            base_sha = Git(workspace.root).resolve_commit(target) if target else None
            if base_sha is None:
                raise LoomError(f"sandbox {record.id}: its target branch {target!r} is gone")
        made = sandboxes.make_worktree(workspace, record.id, base_sha=base_sha, context=context)
        try:
            install_hooks(workspace, sandboxes.record_paths(workspace.paths, made).worktree, record.id,
                          managed=made.context_files, git_dir=Path(made.data["git_dir"]))
        except (OSError, LoomError) as exc:
            message = getattr(exc, "strerror", None) or str(exc)
            sandboxes.mark_failed(workspace, record.id, f"cannot install the agent hooks: {message}")
            raise LoomError(f"sandbox {record.id}: cannot install the agent hooks: {message}") from None
        return f"worktree made from {str(made.data.get('base_sha'))[:12]}"

    def _merge(self, record: SandboxRecord) -> str:
        workspace = self.workspace
        repo = Git(workspace.root)
        tip = repo.resolve_commit(record.branch)
        if tip:  # what approved this very commit is in the audit log (and an override may have run out since)
            check_approved(workspace, record, tip)
        if policy_changed(workspace, record.data):  # since its step was read: its next step is the review again
            return "merge waits: the policy changed since its review"
        requested = record.data.get(MERGE_REQUESTED_KEY) or {}
        into = requested.get("into") or None
        target = str(into or record.target or "")
        refuse_agent_branch(record, target)
        target_sha = repo.resolve_commit(target) if target else None
        if tip and target_sha and tip != record.base_sha and repo.ok(
                "merge-base", "--is-ancestor", tip, target_sha):
            # A merge whose caller died after moving the branch: record what happened.
            transition(workspace, record.id, MERGED, allowed_from=frozenset({APPROVED}),
                       reason=f"{record.branch} is already in {target}",
                       data={"merged_commit": target_sha, "merged_into": target},
                       audit={"commit": target_sha, "target": target, "branch_tip": tip, "recovered": True})
            self._after_merge(record.id)
            return f"merged into {target} (found already merged)"
        try:
            result = merge(workspace, record.id, into=into, trailers=merge_trailers(workspace, record.id))
        except MergeConflict as exc:
            workspace.store.update_sandbox(record.id, data={MERGE_CONFLICT_KEY: {
                "target": target, "target_sha": target_sha, "branch_sha": tip, "paths": exc.paths,
                "message": str(exc)}})
            return f"merge waits: {exc}"
        except MergeNeedsReview as exc:  # its next step is the review again (then the decision it asks for)
            refused = {"target_sha": target_sha, "paths": exc.paths}
            if record.data.get(UNJUDGED_SEEN_KEY) == refused:  # reviewed again already, to no end: no loop
                raise LoomError(f"{exc}; its review again did not judge them") from None
            workspace.store.update_sandbox(record.id, data={UNJUDGED_KEY: exc.paths, UNJUDGED_SEEN_KEY: refused})
            return f"merge waits: {exc}"
        self._after_merge(record.id)
        return f"merged into {result.target} as {result.commit[:12]}"

    def _after_merge(self, sandbox_id: str) -> None:
        release_claims_of(self.workspace, sandbox_id, "sandbox merged")
        self._recheck_claims(sandbox_id)
        self.wake_waiters(sandbox_id)

    def _recheck_claims(self, merged_id: str) -> None:
        """The merge moved the target's code: other sandboxes' live claims on regions that no longer
        exist there (renamed, moved, deleted) are reported and audited, so their holders claim again."""
        live = [c for c in self.workspace.store.live_claims() if c.sandbox_id != merged_id]
        if not live:
            return
        from loomtui.coordination.view import gone_regions, made_on_branch

        try:
            index = governed_coordinator(self.workspace).index
        except LoomError as exc:
            self.say(f"claims not re-checked after the merge of {merged_id}: {exc}")
            return
        stale = gone_regions(live, index, made_on_branch(self.workspace.store, self.workspace.root))
        for claim in live:
            if gone := stale.get(claim.id):
                self.workspace.record("claim.stale", claim.sandbox_id, {
                    "claim": claim.id, "regions": gone, "after_merge_of": merged_id})
                self.say(f"{claim.sandbox_id}: claim #{claim.id} names {', '.join(gone)}, gone from the target "
                         f"since {merged_id} merged; claim again what is meant")

    def wake_waiters(self, sandbox_id: str) -> list[Advanced]:
        """Advance the tasks waiting on this one: those after it (started from the new target, or held
        if it will never merge) and those waiting for claims it held (started once they are free)."""
        woken = []
        for other in self.workspace.store.list_sandboxes():
            if other.status != PLANNED:
                continue
            claims_wait = other.data.get(CLAIMS_WAIT_KEY) or {}
            if sandbox_id in (other.data.get(AFTER_KEY) or []) or sandbox_id in claims_wait.get("holders", []):
                woken.append(self.advance(other.id))
        return woken


def advance(workspace: Workspace, sandbox_id: str, *, say: Say | None = None, retry: bool = False,
            policy: Policy | None = None) -> Advanced:
    """Do every step now due for one task (see `Workflow.advance`)."""
    return Workflow(workspace, policy=policy, say=say).advance(sandbox_id, retry=retry)


def _claims_now(coordinator: Coordinator, claims: Sequence[str], from_lines: Mapping[str, str]) -> list[str]:
    """A task's claims as it prepares: a region read from its lines (`CLAIMED_LINES_KEY`) that the tasks it waited
    on renamed or removed is claimed as its whole file, never left unclaimed (its prepare failed for good on
    "unknown region", and its awaited agent could stall it so)."""
    now = []
    for target in claims:
        if target in from_lines:
            try:
                coordinator.resolve(target)
            except BadTarget:
                target = split_id(target)[0]
        now.append(target)
    return list(dict.fromkeys(now))


def advance_all(workspace: Workspace, *, say: Say | None = None, retry: bool = False,
                policy: Policy | None = None) -> list[Advanced]:
    """Do every step now due for every task."""
    return Workflow(workspace, policy=policy, say=say).advance_all(retry=retry)


def settled_view(flow: Workflow, sandbox_id: str) -> StepView | None:
    """The task's step if nothing more happens to it without someone (a wait), else None."""
    view = flow.view(sandboxes.get_sandbox(flow.workspace, sandbox_id))
    if view.step.is_work or view.step == Step.AGENT:
        return None
    return None if flow.workspace.store.step_lease(sandbox_id) else view


def wait_until_settled(workspace: Workspace, sandbox_id: str, *, timeout: float = 120.0,
                       interval: float = 0.1) -> StepView:
    """Wait until the task waits for someone (its agent has ended and been advanced as far as it goes).

    The supervisor advances the task when the agent ends; this only watches. LoomError (exit 1)
    when `timeout` passes first.
    """
    deadline = time.monotonic() + timeout
    flow = Workflow(workspace)  # the policy read once, not at every poll
    while True:
        view = settled_view(flow, sandbox_id)
        if view is not None:
            return view
        if time.monotonic() >= deadline:
            record = sandboxes.get_sandbox(workspace, sandbox_id)
            raise LoomError(f"sandbox {sandbox_id} is still {record.status} after {timeout:g}s", exit_code=1)
        time.sleep(interval)


def _refuse_a_start_without_credentials(record: SandboxRecord) -> None:
    """A task that waited (on tasks to merge, on claims) starts in the environment of whatever moves it on: a
    person's merge in another shell, the app, another sandbox's supervisor. Where what its agent would have been
    given as it was made (its key, endpoint, model: names recorded, never values) is missing, its agent ran with
    none (Aider fell into a sign-in flow, `running` for minutes): not started, said."""
    if not (record.data.get(AFTER_KEY) or record.data.get(CLAIMS_WAITED_KEY)):
        return  # started as it was made, by its creator
    missing = [name for name in record.data.get(sandboxes.GIVEN_ENV_KEY) or () if not os.environ.get(str(name))]
    if missing:
        raise LoomError(f"not started here: runtime {record.runtime}'s agent was to be given {', '.join(missing)}, "
                        "set where the task was made, not in the environment of the process that would start it "
                        f"(it waited, and another's step moved it on); start it from a shell that has them, "
                        f"`loomtui sandbox advance {record.id}`")


def start_agent(workspace: Workspace, record: SandboxRecord) -> SandboxRecord:
    """Start a planned sandbox's agent, once the approval or override of its start still holds (raises
    saying why not: a status edited by hand in the store, an override that ran out)."""
    escalation_id = record.data.get(PRESTART_KEY)
    escalation = workspace.store.get_escalation(int(escalation_id)) if escalation_id else None
    if escalation is not None and escalation.status in CLEARED:
        check_cleared(workspace, escalation)
    return sandboxes.start(workspace, record.id, supervisor=SUPERVISOR)


def request_merge(workspace: Workspace, sandbox_id: str, *, into: str | None = None,
                  say: Say | None = None) -> Advanced:
    """A person's merge: people's decision is followed first, then the change merges (once, whoever
    else asks). Raises LoomError (exit 1) when it is not approved, or when the merge conflicts."""
    flow = Workflow(workspace, say=say)
    record = sandboxes.get_sandbox(workspace, sandbox_id)
    if record.status == MERGED:
        raise LoomError(f"sandbox {record.id} is already merged", exit_code=1)
    sandboxes.refuse_elsewhere(record, "merge it")  # its branch is there: not "not approved" while it waits
    if record.status == PLANNED or record.status in LIVE:  # no change yet: advancing it would start its agent
        raise _not_approved(flow, record)
    if into:  # where it goes, said before following the decision (which may merge it: `merge: auto`)
        refuse_agent_branch(record, into)
        workspace.store.update_sandbox(record.id, data={MERGE_REQUESTED_KEY: {"by": workspace.actor, "into": into}})
    # Judged again first where the policy changed since its approval: said when that is why it did not merge.
    rejudged = record.status == APPROVED and policy_changed(workspace, record.data)
    # A person asking is a retry: a step that failed before (a merge into a branch that did not
    # exist) is tried again, with what they ask now, rather than repeated as the old failure.
    advanced = flow.advance(record.id, retry=True)  # people's decision first
    record = sandboxes.get_sandbox(workspace, record.id)
    if record.status == MERGED:
        return advanced
    if record.status != APPROVED and into:
        workspace.store.update_sandbox(record.id, data={MERGE_REQUESTED_KEY: None})
    if record.status != APPROVED:
        why = "the policy changed since its approval and it was judged again by it; " if rejudged else ""
        raise _not_approved(flow, record, why)
    workspace.store.update_sandbox(record.id, data={MERGE_REQUESTED_KEY: {"by": workspace.actor, "into": into},
                                                    MERGE_CONFLICT_KEY: None})
    workspace.record("sandbox.merge_requested", record.id, {"into": into})
    result = flow.advance(record.id, retry=True)
    deadline = time.monotonic() + MERGE_WAIT_S
    while result.status != MERGED and result.now.step == Step.MERGE and time.monotonic() < deadline:
        # Still due, so another caller holds the step (two people, or a script and the app, asking at
        # once): its merge is waited for, and said, rather than this request refused while it merges.
        time.sleep(0.2)
        result = flow.advance(record.id)
    if result.status != MERGED:
        # Why it went back to a review first, when it did: "waits for a decision" alone read as a bug.
        why = next((line.removeprefix("merge waits: ") for line in result.done
                    if line.startswith("merge waits: ") and "did not judge" in line), "")
        raise LoomError(f"sandbox {record.id} was not merged: {why + '; it now ' if why else ''}"
                        f"{result.now.line()}", exit_code=1)
    return result


def refuse_agent_branch(record: SandboxRecord, target: str) -> None:
    """A change merges into a target branch, never into the sandbox's own: that already holds its tip,
    so the merge was "found done" and the change marked merged with nothing reaching main (and could
    never be merged after). Another sandbox's branch stays a target (a task based on it merges there)."""
    if record.branch and target.removeprefix("refs/heads/") == record.branch:
        raise LoomError(f"sandbox {record.id}: {shown(target)} is its own branch; a change merges into a target "
                        "branch (main, a release branch, the branch it was based on)", exit_code=1)


def _not_approved(flow: Workflow, record: SandboxRecord, why: str = "") -> LoomError:
    return LoomError(f"sandbox {record.id} is {record.status}, not approved; {why}only an approved sandbox merges "
                     f"({flow.view(record).line()})", exit_code=1)


def _unexpected(exc: Exception) -> LoomError:
    """An exception no check foresaw (an odd input, or a bug), as the one line a failed step shows."""
    return LoomError(f"unexpected {type(exc).__name__}: {abridged(str(exc), 200) or 'no message'}", exit_code=1)
