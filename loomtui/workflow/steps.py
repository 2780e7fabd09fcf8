"""Where a task is in its life: the step due next, and what it waits on.

`next_step` only reads (the store and git refs); the dashboard shows its answer and
the engine (`engine.advance`) does the step it names. A step is either work the
engine does now (`Step.is_work`) or a wait for someone or something else.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from loomtui.errors import LoomError
from loomtui.execution.context_files import CONTEXT_EDITED_KEY
from loomtui.execution.gitops import Git
from loomtui.execution.isolation import PUBLISHED_OBJECTS
from loomtui.execution.lifecycle import (
    APPROVED,
    ARCHIVED,
    AWAITING_REVIEW,
    EXITED,
    FAILED,
    GATING,
    LIVE,
    MERGED,
    PAUSED,
    PLANNED,
    REJECTED,
    REMOVING_KEY,
)
from loomtui.execution.procs import identity, is_alive
from loomtui.execution.review import UNJUDGED_KEY
from loomtui.execution.sandboxes import has_commits, has_worktree, stopped_by
from loomtui.execution.seen_objects import publishing
from loomtui.governance.checkout import policy_changed, policy_fingerprint
from loomtui.governance.escalations import (
    AGENT_ASKS,
    CLEARED,
    PRESTART_ESCALATION_KEY,
    EscalationStatus,
    minute_utc,
    override_expired,
)
from loomtui.governance.escalations import REVIEW_ESCALATION_KEY as REVIEW_ESCALATION_KEY  # the workflow's too
from loomtui.governance.policy import MERGE_AUTO, MERGE_MANUAL
from loomtui.identity import current_host
from loomtui.store import EscalationRecord, SandboxRecord
from loomtui.workspace import Workspace

AFTER_KEY: Final = "after"
"""The sandbox ids a task waits on (their changes merge first)."""
AFTER_DROPPED_KEY: Final = "after_dropped"
"""The sandbox ids a task no longer waits on (`sandbox drop-after`): it starts from the target as it is."""
AUTOSTART_KEY: Final = "autostart"
"""Start the agent as soon as nothing holds it back (False: a person starts it)."""
PRESTART_KEY: Final = PRESTART_ESCALATION_KEY
"""The pre-start escalation a planned sandbox waits on (governance's pre-start check sets it)."""
MERGE_REQUESTED_KEY: Final = "merge_requested"
"""A person asked for the merge (`m`, `loomtui sandbox merge`): {"by", "into"}."""
MERGE_CONFLICT_KEY: Final = "merge_conflict"
STEP_ERROR_KEY: Final = "step_error"
"""A step that failed: {"step", "commit", "error"}; not retried by itself for the same commit."""
CREATOR_KEY: Final = "creator"
"""The caller that stated the task (`caller_id`): it prepares a task that waits on nothing itself,
so its errors (a refused claim) reach it; the engine does so only once it is gone."""
CLAIMS_WAIT_KEY: Final = "claims_wait"
"""Why a task's claims could not be taken yet: {"why", "holders"} (other sandboxes hold them)."""
CLAIMS_WAITED_KEY: Final = "claims_waited"
"""A task waited for its claims: it starts from the target as their holders left it (it started from the commit
it was stated on, and the holder's merged change then conflicted with it)."""


def starts_from_target(record: SandboxRecord) -> bool:
    """Whether a task is prepared from its target's tip as it is when it starts, not the commit it was stated
    on: one that waited on others (or for the code they held), or no longer waits, unless it was stated on a
    base of its own (a tag, a commit: a hotfix on v1 got main's code)."""
    after = any(record.data.get(key) for key in (AFTER_KEY, AFTER_DROPPED_KEY))
    own_base = record.base_ref not in ("HEAD", record.target, f"refs/heads/{record.target}")
    held = bool(record.target) and not own_base and any(
        record.data.get(key) for key in (CLAIMS_WAIT_KEY, CLAIMS_WAITED_KEY))
    return after or held


CLAIMED_LINES_KEY: Final = "claimed_lines"
"""{region id: the line range (`path:10-40`) it was read from} for a task that waits on others: its claims are
the regions those lines held when it was stated (`tasks.create_sandbox`)."""
RUNS_KEY: Final = "runs"
"""How many times its agent has been started (absent: once); `sandbox start` runs one that ended
without a change again."""


class Step(StrEnum):
    """The next thing that happens to a task."""

    WAIT_TASKS = "wait-tasks"          # other tasks' changes merge first
    HELD = "held"                      # a task it waits on failed or was rejected
    PREPARE = "prepare"                # claims, pre-start policy, worktree from the current target
    WAIT_CLAIMS = "wait-claims"        # its claims are held by another sandbox
    PREPARING = "preparing"            # the process that stated it is preparing it
    WAIT_START_APPROVAL = "wait-start-approval"
    REJECT_START = "reject-start"      # people did not approve the start: the task is rejected
    WAIT_START = "wait-start"          # a person starts it
    START = "start"
    AGENT = "agent"                    # the agent is working
    REVIEW = "review"                  # gates, then the policy on the diff
    WAIT_DECISION = "wait-decision"    # an escalation is open
    FOLLOW_DECISION = "follow-decision"
    MERGE = "merge"
    WAIT_MERGE = "wait-merge"          # the policy leaves the merge to a person
    MERGE_CONFLICT = "merge-conflict"
    FAILED_STEP = "failed-step"        # a step failed; `sandbox advance` retries it
    RELEASE = "release"                # claims of an ended task go back
    SAVE = "save"                      # what the agent left could not be saved at its end: saved again
    NO_CHANGE = "no-change"            # the agent ended without a commit
    DONE = "done"

    @property
    def is_work(self) -> bool:
        """Whether the engine does this step now (else it waits)."""
        return self in _WORK


_WORK: Final = frozenset({Step.PREPARE, Step.REJECT_START, Step.START, Step.REVIEW, Step.FOLLOW_DECISION,
                          Step.MERGE, Step.RELEASE, Step.SAVE})


_WAITS_FOR: Final = frozenset({Step.WAIT_TASKS, Step.WAIT_CLAIMS, Step.WAIT_START_APPROVAL, Step.WAIT_START,
                               Step.WAIT_DECISION, Step.WAIT_MERGE})
"""Steps whose `waits_on` reads after "waits for"."""


def caller_id() -> str:
    """This caller, as a lease holder or a task's creator: a process (and its start time) and a thread,
    on this machine (`pid:start:thread@host`)."""
    pid = os.getpid()
    return f"{pid}:{identity(pid) or ''}:{threading.get_ident()}@{current_host()}"


def _process_and_machine(holder: str) -> tuple[str, str | None]:
    """A `caller_id`'s process part, and its machine when that is not this one (ids made before machines
    were named are this machine's)."""
    process, _, host = holder.rpartition("@") if "@" in holder else (holder, "", "")
    return process, host if host and host != current_host() else None


def removal_stopped(workspace: Workspace, record: SandboxRecord) -> bool:
    """Whether the sandbox is marked as being removed by a removal that stopped before deleting anything (its
    process killed): every removal runs under the task's step lease, and none holds it now. It is as it was;
    the mark alone left it "being removed" for good, never reviewed, an approval of it not followed."""
    if record.data.get(REMOVING_KEY) is not True:
        return False
    lease = workspace.store.step_lease(record.id)
    return lease is None or holder_gone(lease[0])


def holder_text(holder: str) -> str:
    """A `caller_id` for a person: `process 4242` (`on build-2` when it is another machine's)."""
    process, elsewhere = _process_and_machine(holder)
    return f"process {process.partition(':')[0]}" + (f" on {elsewhere}" if elsewhere else "")


def holder_gone(holder: str) -> bool:
    """Whether the process behind a `caller_id` has ended (a reused pid does not count as it). One on
    another machine (a team store) is never judged gone from here: its pid means nothing here."""
    process, elsewhere = _process_and_machine(holder)
    if elsewhere:
        return False
    pid, _, rest = process.partition(":")
    start = rest.rpartition(":")[0]
    return not (pid.isdigit() and is_alive(int(pid), start or None))


@contextmanager
def holding_step(workspace: Workspace, sandbox_id: str, step: str, *, busy: str) -> Iterator[None]:
    """A task's step lease, held for a person's action on it (a review now, a removal, a run again): one
    line (exit 1) naming who holds it instead, `busy` saying what to do then."""
    holder = caller_id()
    held_by = workspace.store.take_step_lease(sandbox_id, holder, step, is_gone=holder_gone)
    if held_by is not None:
        raise LoomError(f"sandbox {sandbox_id} is being advanced by {holder_text(held_by)}{busy}", exit_code=1)
    try:
        yield
    finally:
        workspace.store.drop_step_lease(sandbox_id, holder)


class PersonAction(StrEnum):
    """What a person can do about a task's step; each front-end says how (its command or key)."""

    DECIDE = "decide"    # approve or reject escalation `about`
    OVERRIDE = "override"  # override or reject escalation `about`: the policy blocks it, no approval clears it
    MERGE = "merge"      # merge sandbox `about`
    START = "start"      # start sandbox `about`
    RETRY = "retry"      # advance sandbox `about` again
    ADVANCE = "advance"  # advance sandbox `about`: a step any loomtui does, where none may be running (the app's
                         # engine does it by itself; a decision taken on another machine waits for one here)
    RERUN = "rerun"      # run the agent of sandbox `about` again (it ended without a change)
    CANCEL = "cancel"    # cancel the plan, or remove the dependency
    REMOVE = "remove"    # archive sandbox `about`: nothing of it can run again (its worktree is gone)
    RESOLVE = "resolve"  # merge the target into sandbox `about`'s worktree (then reviewed again), or archive it
    RESUME = "resume"    # let sandbox `about`'s paused agent go on


HOST_BOUND: Final = frozenset({PersonAction.ADVANCE, PersonAction.RETRY, PersonAction.START, PersonAction.RERUN,
                               PersonAction.MERGE, PersonAction.RESOLVE, PersonAction.REMOVE,
                               PersonAction.RESUME})
"""What only the machine a task runs on can do (its worktree, branch and agent are there); a decision is
anyone's, anywhere."""


@dataclass(frozen=True)
class StepView:
    """A task's next step and, for a wait, what it waits on (one line), and what a person can do."""

    step: Step
    waits_on: str = ""
    action: PersonAction | None = None
    about: str = ""
    """What `action` is on: an escalation's number or a sandbox's id."""

    def line(self, hints: Mapping[str, str] | None = None, *, hint_first: bool = False) -> str:
        """Said plainly: `waits for ...` for a wait, else the step and what it is about; with a
        front-end's `hints` (a format string per action, `{about}` filled in), how to act on it,
        after it in brackets, or first (`hint_first`: a narrow column that cuts the end keeps it)."""
        if self.step in _WAITS_FOR:
            text = f"waits for {self.waits_on}"
        elif self.step in (Step.AGENT, Step.FAILED_STEP):  # "review failed: ...", not "failed-step: review failed"
            text = self.waits_on
        else:
            text = f"{self.step}: {self.waits_on}" if self.waits_on else str(self.step)
        hint = hints.get(self.action) if hints is not None and self.action is not None else None
        if not hint:
            return text
        how = hint.format(about=self.about)
        return f"{how} · {text}" if hint_first else f"{text} ({how})"


@dataclass(frozen=True)
class KnownHolders:
    """What a caller that has just read every live claim and open escalation already knows, so that a
    step for each of many sandboxes asks the store nothing more (the dashboard's poll); without it each
    step asks the store itself."""

    claim_holders: frozenset[str]
    """Sandboxes holding at least one live claim."""
    escalated: frozenset[str]
    """Sandboxes with an open escalation."""
    escalations: Mapping[int, EscalationRecord] | None = None
    """The escalations read, by id: a review's or a start's is looked up here first."""
    sandboxes: Mapping[str, SandboxRecord] | None = None
    """The sandboxes read (those listed): a task's dependencies are looked up here first."""
    policy_read: str | None = None
    """`policy_fingerprint` as the caller read it (each approved change's step compares its review's with it)."""

    @classmethod
    def of(cls, claim_holders: Iterable[str], escalations: Iterable[EscalationRecord],
           sandboxes: Iterable[SandboxRecord], policy_read: str | None = None) -> KnownHolders:
        """What the records read say: who holds claims, every escalation, the sandboxes listed."""
        everyone = list(escalations)
        return cls(frozenset(claim_holders),
                   frozenset(e.sandbox_id for e in everyone if e.sandbox_id and e.status == EscalationStatus.OPEN),
                   {e.id: e for e in everyone}, {s.id: s for s in sandboxes}, policy_read)

    @classmethod
    def read(cls, workspace: Workspace, sandboxes: Iterable[SandboxRecord]) -> KnownHolders:
        """The same, read from the store in two queries (for a listing of many sandboxes' steps)."""
        store = workspace.store
        listed = list(sandboxes)
        return cls.of(store.live_claim_counts(), store.live_escalations(), listed, policy_read_for(workspace, listed))


FAILED_ON_POLICY_KEY: Final = "policy"
"""In a step's failure on the configuration (a ConfigError: the policy, or loom.yaml, did not load): the
`policy_fingerprint` then. Another digest later (the policy's files changed, or loom.yaml reads again) makes the
step due again."""


def policy_read_for(workspace: Workspace, sandboxes: Iterable[SandboxRecord]) -> str | None:
    """`policy_fingerprint`, where any of these sandboxes' steps turns on the policy's files as they are now (an
    approved change's, judged again once they change; a step that failed on them, due again); else None, unread."""
    turns = any(s.status == APPROVED or FAILED_ON_POLICY_KEY in (s.data.get(STEP_ERROR_KEY) or {}) for s in sandboxes)
    return policy_fingerprint(workspace) if turns else None


def _holds_claims(workspace: Workspace, sandbox_id: str, known: KnownHolders | None) -> bool:
    if known is not None:
        return sandbox_id in known.claim_holders
    return bool(workspace.store.live_claims(sandbox_id))


def _has_open_escalation(workspace: Workspace, sandbox_id: str, known: KnownHolders | None) -> bool:
    if known is not None:
        return sandbox_id in known.escalated
    return bool(workspace.store.sandbox_escalations(sandbox_id, status="open"))


def _asked_by_its_agent(workspace: Workspace, sandbox_id: str,
                        known: KnownHolders | None) -> EscalationRecord | None:
    """The open escalation a running agent waits on (its permission request or question), if any."""
    if known is not None:
        if sandbox_id not in known.escalated or known.escalations is None:
            return None
        found = [e for e in known.escalations.values()
                 if e.sandbox_id == sandbox_id and e.status == EscalationStatus.OPEN and e.kind in AGENT_ASKS]
    else:
        found = workspace.store.sandbox_escalations(sandbox_id, AGENT_ASKS, status=EscalationStatus.OPEN)
    return min(found, key=lambda e: e.id, default=None)


def dependencies(workspace: Workspace, record: SandboxRecord,
                 known: KnownHolders | None = None) -> list[SandboxRecord]:
    """The sandboxes this task waits on (missing ones are skipped)."""
    found = []
    read = known.sandboxes if known is not None and known.sandboxes is not None else {}
    for sandbox_id in record.data.get(AFTER_KEY) or []:
        other = read.get(str(sandbox_id)) or workspace.store.get_sandbox(str(sandbox_id))
        if other is not None:
            found.append(other)
    return found


def has_merged(record: SandboxRecord) -> bool:
    """Whether a task's change is in its target: merged, or merged and archived since."""
    return record.status == MERGED or (record.status == ARCHIVED and bool(record.merged_commit))


def merged_elsewhere(other: SandboxRecord, record: SandboxRecord) -> str:
    """The branch `other` merged into when that is not the one `record` starts from ("" otherwise): a task after
    one merged `--into release` started from main without it."""
    into = (other.merged_into or other.target).removeprefix("refs/heads/")  # `--into refs/heads/main` is main
    return into if has_merged(other) and record.target and into and into != record.target.removeprefix(
        "refs/heads/") else ""


def _dependency_view(workspace: Workspace, record: SandboxRecord, known: KnownHolders | None) -> StepView | None:
    """Held or waiting because of the tasks it comes after; None once they have all merged."""
    waiting = []
    for other in dependencies(workspace, record, known):
        if into := merged_elsewhere(other, record):  # its change is not where this one starts from
            return StepView(Step.HELD, f"{other.id} merged into {into}, not {record.target}; not started on a "
                                       "base that lacks it", PersonAction.CANCEL, record.id)
        if has_merged(other):
            continue
        # Ended with no change (failed, or exited without a commit): nothing of it will ever merge.
        if other.status in (REJECTED, ARCHIVED) or (other.status in (FAILED, EXITED)
                                                    and not other.data.get("saved_commit")
                                                    and not has_commits(workspace, other)):
            return StepView(Step.HELD, f"{other.id} ended without merging ({other.status}); not started on "
                                       "a base that lacks it", PersonAction.CANCEL, record.id)
        waiting.append(f"{other.id} ({other.status})")
    # The ids first: a table cuts the end of the line, and "waits for the merge of 19…" lost them.
    return StepView(Step.WAIT_TASKS, ", ".join(waiting) + " to merge") if waiting else None


def _escalation(workspace: Workspace, escalation_id: object, known: KnownHolders | None) -> EscalationRecord | None:
    if not escalation_id:
        return None
    found = known.escalations.get(int(str(escalation_id))) if known is not None and known.escalations else None
    return found if found is not None else workspace.store.get_escalation(int(str(escalation_id)))


def _override_ran_out(escalation: EscalationRecord) -> str:
    """What a task waits on when the override that let it go on has run out, or "" when none has."""
    expired = override_expired(escalation)
    if expired is None:
        return ""
    return f"a new override of escalation #{escalation.id} (the last ran out at {minute_utc(expired)})"


def _deciding(escalation: EscalationRecord) -> PersonAction:
    """What a person does about an open escalation: a block is overridden or rejected, never approved."""
    return PersonAction.OVERRIDE if escalation.data.get("outcome") == "block" else PersonAction.DECIDE


def next_step(workspace: Workspace, record: SandboxRecord, *, merge_mode: str = MERGE_MANUAL,
              known: KnownHolders | None = None) -> StepView:
    """What happens next to this task (reads only). `merge_mode` is the policy's `merge:`; `known`, the
    claim holders and escalated sandboxes when the caller has read them all."""
    view = _next_step(workspace, record, merge_mode, known)
    elsewhere = view.step.is_work or view.action in HOST_BOUND
    if elsewhere and record.host and record.host != current_host():
        # Its branch, worktree and agent are on that machine: its steps are done there (this clone would
        # review a branch it lacks), and `sandbox advance` here would only say so.
        there = f"on {record.host}: done there"
        return StepView(view.step, f"{view.waits_on} ({there})" if view.waits_on else there)
    return view


def _decided_since_it_failed(workspace: Workspace, record: SandboxRecord, known: KnownHolders | None) -> bool:
    """Whether people decided the task's escalation after its step failed: the failure is then past, and the
    step is due again, for whoever advances next (an override given after the last one ran out left
    "follow-decision failed: ... needs a new override" standing, on this machine and the one that decided it).
    Judged by the two machines' clocks, as the lease and the store's times are."""
    failed_at = (record.data.get(STEP_ERROR_KEY) or {}).get("at")
    if not isinstance(failed_at, int | float):
        return False
    for key in (REVIEW_ESCALATION_KEY, PRESTART_KEY):
        named = record.data.get(key)
        escalation = _escalation(workspace, named, known) if str(named or "").isdigit() else None
        if escalation is not None and escalation.updated > failed_at and escalation.status in CLEARED:
            return True
    return False


def _fixed_since_it_failed(workspace: Workspace, error: Mapping[str, object], known: KnownHolders | None) -> bool:
    """Whether the step failed on the configuration's files, and they changed since: due again, for whoever
    advances next (a policy saved with an unknown key, fixed, left "review failed" standing until `R`)."""
    if FAILED_ON_POLICY_KEY not in error:
        return False
    now = known.policy_read if known is not None else policy_fingerprint(workspace)
    return now is not None and now != error[FAILED_ON_POLICY_KEY]


def _next_step(workspace: Workspace, record: SandboxRecord, merge_mode: str, known: KnownHolders | None) -> StepView:
    error = record.data.get(STEP_ERROR_KEY)
    if error and error.get("status") == record.status and not _decided_since_it_failed(workspace, record, known) \
            and not _fixed_since_it_failed(workspace, error, known):
        return StepView(Step.FAILED_STEP, f"{error.get('step')} failed: {error.get('error')}",
                        PersonAction.RETRY, record.id)
    status = record.status
    if record.data.get(REMOVING_KEY) and status not in LIVE and status != ARCHIVED \
            and not removal_stopped(workspace, record):
        return StepView(Step.DONE, "being removed")
    if status == PLANNED:
        return _planned_step(workspace, record, known)
    if status == PAUSED:  # only `?` said how it goes on
        return StepView(Step.AGENT, "agent paused", PersonAction.RESUME, record.id)
    if status in LIVE:
        # It waits for a person's decision, or goes nowhere (it read "agent running" while blocked on a lead).
        if (asked := _asked_by_its_agent(workspace, record.id, known)) is not None:
            return StepView(Step.AGENT, f"agent waits for a decision on its {asked.kind} (escalation #{asked.id})",
                            PersonAction.DECIDE, str(asked.id))
        return StepView(Step.AGENT, f"agent {status}")
    if status == GATING:
        lease = workspace.store.step_lease(record.id)
        if lease is None or holder_gone(lease[0]):
            # Its reviewer was killed mid-review (the app closed, a supervisor killed): it read "gates and
            # policy" for good, as if a review were under way, with no word of what would move it.
            return StepView(Step.REVIEW, "its review stopped before it ended (the process reviewing it is gone)",
                            PersonAction.RETRY, record.id)
        return StepView(Step.REVIEW, "gates and policy")
    if status in (EXITED, FAILED):
        if not has_commits(workspace, record):
            if record.worktree_missing:  # nothing of it can run again: its claims go back
                if _holds_claims(workspace, record.id, known):
                    return StepView(Step.RELEASE, "its worktree is gone")
                return StepView(Step.NO_CHANGE, "its worktree is gone: nothing of it can run again",
                                PersonAction.REMOVE, record.id)
            if record.data.get("save_error"):  # not "no change": the work is in its worktree, unsaved
                # Saved again from outside (an engine, `sandbox advance`), never by running the agent again; a
                # save that fails again is a failed step, retried when asked. It said what failed, and no way on.
                return StepView(Step.SAVE, f"the work it left could not be saved: {record.data['save_error']}",
                                PersonAction.RETRY, record.id)
            # Ended (or stopped) with nothing to review: its claims go back. A failed one keeps them
            # for a run again (a model API that did not answer); either can be run again.
            ended = f"the agent {how} without a change" if (how := _how_it_ended(record)) else \
                "the agent ended without a change"
            edited = record.data.get(CONTEXT_EDITED_KEY)
            if isinstance(edited, dict) and edited:  # it did change something: where no branch takes it
                kept = [str(path) for path in edited.values() if path]
                ended += (f" (its edit of {', '.join(map(str, edited))}, which held loomtui's context for it, is "
                          f"not kept in its branch{'; kept as ' + ', '.join(kept) if kept else ''})")
            if status == EXITED and _holds_claims(workspace, record.id, known):
                return StepView(Step.RELEASE, ended)
            return StepView(Step.NO_CHANGE, ended, PersonAction.RERUN, record.id)
        return StepView(Step.REVIEW)
    if status == AWAITING_REVIEW:
        escalation = record.data.get(REVIEW_ESCALATION_KEY)
        found = _escalation(workspace, escalation, known)
        state = EscalationStatus(found.status) if found is not None else None
        judged = str(found.data.get("commit") or "") if found is not None else ""
        if found is not None and state == EscalationStatus.OPEN and judged and record.branch and \
                Git(workspace.root).resolve_commit(record.branch) not in (None, judged):
            # A commit in its worktree since (a lead's fix, a resolved conflict): every decision was refused as
            # judged on another diff, and nothing reviewed it again (the app read "press 3" for good).
            return StepView(Step.REVIEW, "new commits since its review")
        if found is not None and state == EscalationStatus.OPEN:
            how = _how_it_ended(record)  # its change may be half done: said before anyone decides
            return StepView(Step.WAIT_DECISION, f"a decision on escalation #{escalation}"
                            + (f" (its agent {how})" if how else ""), _deciding(found), str(escalation))
        if state is None or state == EscalationStatus.SUPERSEDED:
            return StepView(Step.REVIEW)
        if found is not None and (ran_out := _override_ran_out(found)):
            return StepView(Step.WAIT_DECISION, ran_out, PersonAction.OVERRIDE, str(found.id))
        return StepView(Step.FOLLOW_DECISION, f"escalation #{escalation} was {state}", PersonAction.ADVANCE,
                        record.id)
    if status == APPROVED:
        tip = Git(workspace.root).resolve_commit(record.branch) if record.branch else None
        if tip and tip != record.approved_commit:
            return StepView(Step.REVIEW, "new commits since its approval")
        overridden = _escalation(workspace, record.data.get(REVIEW_ESCALATION_KEY), known)
        if overridden is not None and (ran_out := _override_ran_out(overridden)):
            # "press m" read as the way on, and the merge then refused: "overridden until ..., that has passed".
            return StepView(Step.WAIT_DECISION, ran_out, PersonAction.OVERRIDE, str(overridden.id))
        if policy_changed(workspace, record.data, known.policy_read if known else None):
            return StepView(Step.REVIEW, "the policy changed since its review")
        if record.data.get(UNJUDGED_KEY):
            return StepView(Step.REVIEW, f"its merge would change {', '.join(record.data[UNJUDGED_KEY])}, which its "
                                         "review did not judge")
        conflict = record.data.get(MERGE_CONFLICT_KEY)
        # Stands while neither side moved: the target (another merge), nor the branch (the conflict resolved in its
        # worktree, as the hint says: it read "merge-conflict" until the target moved, `m` refused).
        if conflict and conflict.get("target_sha") == Git(workspace.root).resolve_commit(
                str(conflict.get("target"))) and conflict.get("branch_sha", tip) == tip:
            return StepView(Step.MERGE_CONFLICT, str(conflict.get("message")), PersonAction.RESOLVE, record.id)
        if record.data.get(MERGE_REQUESTED_KEY) or merge_mode == MERGE_AUTO:
            return StepView(Step.MERGE)
        return StepView(Step.WAIT_MERGE, "a person's merge", PersonAction.MERGE, record.id)
    overruled = _escalation(workspace, record.data.get(REVIEW_ESCALATION_KEY), known) if status == REJECTED else None
    if overruled is not None and overruled.status == EscalationStatus.OVERRIDDEN:
        return StepView(Step.FOLLOW_DECISION, f"its rejection was overridden (escalation #{overruled.id})",
                        PersonAction.ADVANCE, record.id)
    if status in (MERGED, REJECTED, ARCHIVED) and (_holds_claims(workspace, record.id, known) or (
            status == ARCHIVED and _has_open_escalation(workspace, record.id, known))):
        return StepView(Step.RELEASE)
    return StepView(Step.DONE)


def branches_read(record: SandboxRecord) -> tuple[str, ...]:
    """The branches a sandbox's next step turns on: its own, its target, and the one a merge conflicted with
    (`sandbox merge --into BRANCH`): a commit to any, made with git alone, changes no record."""
    conflict = record.data.get(MERGE_CONFLICT_KEY)
    into = str(conflict.get("target") or "") if isinstance(conflict, dict) else ""
    return tuple(dict.fromkeys(name for name in (record.branch, str(record.data.get("target") or ""), into) if name))


def nobody_on_it(workspace: Workspace, record: SandboxRecord, view: StepView) -> bool:
    """Whether `view` is a step only a loomtui process does (no person's action), due here, and none is on
    it: no supervisor alive, no step lease held. It waits until one advances the task (the app does as it
    runs, `sandbox advance` at once): after a supervisor was killed, or the command that stated it."""
    if view.action is not None or not view.step.is_work or (record.host and record.host != current_host()):
        return False
    if is_alive(record.pid, record.pid_start):  # its supervisor: it reviews the change as the agent ends
        return False
    lease = workspace.store.step_lease(record.id)
    return lease is None or holder_gone(lease[0])


def _how_it_ended(record: SandboxRecord) -> str | None:
    """How a sandbox's agent did not end by itself, in a few words ("exited with code 3", "stopped by
    ann"); None when it did (exit 0)."""
    stopper = stopped_by(record)
    if stopper:
        return f"was stopped by {stopper}"
    # Kept from the run while its saved work is reviewed (a run again clears it): read in review too, where
    # the line said nothing of an agent that failed with exit 0 (its work left unsaved, its log unwritable).
    error = record.data.get("error")
    if error and (record.status == FAILED or error != f"exited with code {record.exit_code}"):
        return f"failed ({error})"
    return f"exited with code {record.exit_code}" if record.exit_code else None


def _never_letting_go(workspace: Workspace, holders: Sequence[str]) -> str:
    """What a waiting task's line adds for a holder that ended without merging: it keeps its claims (for a run
    again) and nothing will let them go by itself (the task sat `planned` for good, saying only who held them)."""
    ended = [r for r in (workspace.store.get_sandbox(h) for h in holders) if r is not None and r.status == FAILED]
    return "".join(f"; {r.id} failed and keeps its claims for a run again: until it is run again or removed, "
                   "this task waits" for r in ended)


def _planned_step(workspace: Workspace, record: SandboxRecord, known: KnownHolders | None) -> StepView:
    if is_alive(record.pid, record.pid_start):  # its supervisor is up: started once already
        if publishing(workspace.paths.state_dir / PUBLISHED_OBJECTS):
            return StepView(Step.AGENT, "agent starting: packing the history its git reads (the first start "
                                        "in a repository takes as long as a local clone)")
        return StepView(Step.AGENT, "agent starting")
    waits = _dependency_view(workspace, record, known)
    if waits is not None:
        return waits
    if not has_worktree(record):
        creator = record.data.get(CREATOR_KEY)
        if creator and not holder_gone(str(creator)):
            return StepView(Step.PREPARING, "being prepared by the process that stated it")
        claims_wait = record.data.get(CLAIMS_WAIT_KEY) or {}
        holding = [str(h) for h in claims_wait.get("holders", []) if _holds_claims(workspace, str(h), known)]
        if holding:
            return StepView(Step.WAIT_CLAIMS, str(claims_wait.get("why")) + _never_letting_go(workspace, holding))
        if claims_wait:  # let go where nothing advances it (a lease ran out): whoever looks can go on
            return StepView(Step.PREPARE, "the claims it waited for are free", PersonAction.RETRY, record.id)
        return StepView(Step.PREPARE)
    found = _escalation(workspace, record.data.get(PRESTART_KEY), known)
    state = EscalationStatus(found.status) if found is not None else None
    if found is not None and state == EscalationStatus.OPEN:
        escalation = record.data.get(PRESTART_KEY)
        return StepView(Step.WAIT_START_APPROVAL, f"approval to start (escalation #{escalation})",
                        _deciding(found), str(escalation))
    if found is not None and (ran_out := _override_ran_out(found)):
        return StepView(Step.WAIT_START_APPROVAL, ran_out, PersonAction.OVERRIDE, str(found.id))
    if state is not None and state not in CLEARED:
        return StepView(Step.REJECT_START, f"escalation #{record.data.get(PRESTART_KEY)} {state}")
    if record.data.get(AUTOSTART_KEY, True):
        return StepView(Step.START)
    return StepView(Step.WAIT_START, "a person to start it", PersonAction.START, record.id)
