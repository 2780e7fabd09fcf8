"""After an agent stops: gates, then the policy on the actual diff, then people.

`review_sandbox` runs the configured gates in the sandbox's worktree and evaluates
the policy on its diff (from the commit it started at to its branch tip) with those
results. An auto-approved change is `approved` at once; anything else opens a
post-gate escalation and waits in `awaiting_review`. `follow_decision` moves a
sandbox on once people have decided (`approved`, or `rejected`). An approval is
for the commit the policy saw: a sandbox that commits again is reviewed again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loomtui.audit import AuditEntry
from loomtui.coordination.regions import overlaps, split_id
from loomtui.errors import LoomError, abridged, listed, shown
from loomtui.execution.gitops import Git
from loomtui.execution.lifecycle import (
    APPROVED,
    AWAITING_REVIEW,
    EXITED,
    FAILED,
    GATING,
    REJECTED,
    transition,
)
from loomtui.execution.review import REVIEWED_PATHS_KEY, UNJUDGED_KEY, measured_from, tip_to_judge
from loomtui.execution.sandboxes import get_sandbox, stopped_by
from loomtui.governance.checkout import POLICY_READ_KEY, policy_changed, policy_fingerprint, refuse_an_agents_policy
from loomtui.governance.escalations import (
    CLEARED,
    REVIEW_ESCALATION_KEY,
    EscalationStatus,
    approvals,
    decision_answers,
    granted_regions,
    last_event,
    open_escalation,
    override_expired,
    requirements_met_by,
)
from loomtui.governance.explain import eval_fields
from loomtui.governance.gitfacts import change_facts, unnamed_files
from loomtui.governance.policy import (
    CLAIM_STAGE_LABEL,
    ChangeFacts,
    Evaluation,
    Policy,
    combined,
    configured_policy,
    evaluate,
    with_failed_agent,
    with_held_elsewhere,
)
from loomtui.store import EscalationRecord, SandboxRecord
from loomtui.workspace import Workspace

if TYPE_CHECKING:  # the eval engines load when a review runs, not with every front-end that can start one
    from loomtui.guardrails.evals import EvalReport
    from loomtui.guardrails.gates import GateResult

Say = Callable[[str], None]
REVIEWABLE = frozenset({EXITED, FAILED})
ESCALATION_KEY = REVIEW_ESCALATION_KEY
REJUDGING_KEY = "rejudging"
"""Sandbox data while a review judges an approved change again under a changed policy (kept for a redo)."""


@dataclass(frozen=True)
class ReviewOutcome:
    sandbox: SandboxRecord
    commit: str
    gates: list[GateResult]
    evaluation: Evaluation
    escalation: EscalationRecord | None
    eval_report: EvalReport | None = None

    def line(self) -> str:
        rules = ", ".join(self.evaluation.rule_names()) or "no rule"
        where = f"; escalation #{self.escalation.id}" if self.escalation else ""
        return (f"sandbox {self.sandbox.id}: {self.evaluation.outcome} (risk {self.evaluation.risk}; {rules})"
                f"{where}; now {self.sandbox.status}")


def _quiet(_line: str) -> None:
    return None


def _refuse_unnamed_files(workspace: Workspace, record: SandboxRecord, base: str, tip: str) -> None:
    """A change with files whose names loomtui cannot read (not UTF-8, a line break: `globs.name_problem`)
    is not reviewed, in one line naming them: gates, scoring and the policy could not match or store those
    names (the review ended on an unexpected UnicodeEncodeError), and a person must look at such a change."""
    unnamed = unnamed_files(workspace.root, base, tip)
    if unnamed:
        raise LoomError(f"sandbox {record.id}: its change has files whose names loomtui cannot read "
                        f"({listed([shown(path) for path in unnamed])}): rename them on {record.branch}, or "
                        f"remove the sandbox", exit_code=1)


def review_sandbox(workspace: Workspace, sandbox_id: str, *, say: Say | None = None, summary: str | None = None,
                   redo: bool = False) -> ReviewOutcome:
    """Gate and judge an ended sandbox (or one with new commits since its last review, or one approved under
    another policy), by the policy's files as they are now: never a policy a caller read before (the app's,
    a run over many sandboxes), which judged a change under the old rules and recorded the new ones' digest.

    `redo`: also a sandbox left `gating` by a reviewer that died mid-step (the workflow
    engine, which holds the step's lease, knows that nobody else is reviewing it).
    """
    say = say or _quiet
    record = get_sandbox(workspace, sandbox_id)
    refuse_an_agents_policy(workspace)
    repo = Git(workspace.root)
    tip = tip_to_judge(repo, record, "review")
    base = record.base_sha
    previous = _escalation(workspace, record)
    # Or a review of that kind that stopped part way (a broken loom.yaml failed it): redone as what it was, or
    # the approval it was to keep was asked for again.
    rejudged = (record.status == APPROVED and policy_changed(workspace, record.data)) or (
        redo and record.status == GATING and bool(record.data.get(REJUDGING_KEY)))
    again = (record.status == AWAITING_REVIEW and previous is not None and previous.data.get("commit") != tip) or (
        record.status == APPROVED and (record.approved_commit != tip or bool(record.data.get(UNJUDGED_KEY))
                                       or rejudged))
    redo = redo and record.status == GATING
    if record.status not in REVIEWABLE and not again and not redo:
        if record.status in (AWAITING_REVIEW, APPROVED):  # reviewed already, and nothing new since
            raise LoomError(f"sandbox {record.id} is {record.status}: it was reviewed at {tip[:12]} and has no "
                            "commits since; a review runs again once it has", exit_code=1)
        raise LoomError(f"sandbox {record.id} is {record.status}: only a sandbox whose agent has ended, or one "
                        "with commits since its review, is reviewed", exit_code=1)
    if tip == base:  # as the workflow sees it: nothing to gate, judge or decide (an empty escalation)
        raise LoomError(f"sandbox {record.id}: its agent ended without a change (its branch has no commit beyond "
                        f"{base[:12]}); nothing to review (`loomtui sandbox start {record.id}` runs it again)",
                        exit_code=1)
    _refuse_unnamed_files(workspace, record, base, tip)
    since = measured_from(repo, record, tip)  # a change that cannot be measured is refused before anything runs
    # What judges, read before anything moves (a policy that does not load leaves the sandbox as it was, not in
    # `gating` with its review failed), and with its digest: the one recorded is the policy that judged.
    read = policy_fingerprint(workspace)
    policy = configured_policy(workspace.root, workspace.load_config())
    if (again and previous is not None and previous.status == EscalationStatus.OPEN) or redo:
        # Superseded, not decided: what it asked about is no longer the change (or, on a redo, the one a
        # reviewer killed before naming it on the sandbox opened).
        _supersede_open_reviews(workspace, record.id, tip)
    if redo:  # what the review that died left running is not running: it is never finished now
        workspace.store.close_abandoned_gate_runs(record.id, "its review stopped before the check ended")
    failure = _agent_failure(record)
    record = transition(workspace, record.id, GATING, reason=f"reviewing commit {tip[:12]}",
                        allowed_from=frozenset({*REVIEWABLE, AWAITING_REVIEW, *([APPROVED] if again else []),
                                                *([GATING] if redo else [])}), data={REJUDGING_KEY: rejudged})
    from loomtui.guardrails.evals import evaluate as run_eval

    # From where tip and target meet, what the merge brings in: not from its base alone.
    facts = change_facts(workspace.root, since, tip, runtime=record.runtime, author=record.created_by or None,
                         onto=repo.resolve_commit(f"refs/heads/{record.target}") if record.target else None)
    # Held before the gates run, not after: an agent that commits as its last act (Codex, Aider) left its code
    # unclaimed for its gates' minutes, another sandbox claimed it meanwhile, and this change was the one flagged.
    _hold_the_change(workspace, record, facts)
    report = run_eval(workspace, record.id)
    results = list(report.checks)
    say("gates: " + ("; ".join(r.describe() for r in results) or "none configured"))
    for result in results:
        for test in result.failed_tests:
            say(f"  {result.gate} failed: {test}")
    if report.score is not None:
        say(f"score: {report.score.summary()}")
    breaks = _merged_breaks(workspace, record, say)
    facts = replace(facts, gates={r.gate: r.status for r in results},
                    advisory_gates=frozenset(r.gate for r in results if not r.blocking), **eval_fields(report),
                    merged_breaks=breaks)
    evaluation = _with_claim_stage(workspace, policy, record, evaluate(policy, facts), facts)
    if failure is not None:
        evaluation = with_failed_agent(evaluation, failure)
    held = _held_by_others(workspace, record, facts)
    if held:
        evaluation = with_held_elsewhere(policy, evaluation, held)
    signature = f", signature changed: {', '.join(facts.signature_changed)}" if facts.signature_changed else ""
    say(f"diff: {', '.join(facts.paths) or 'nothing'} ({facts.lines_changed} lines{signature})")
    workspace.record("policy.evaluated", record.id, {
        "stage": "post-gate", "commit": tip, "outcome": evaluation.outcome, "risk": evaluation.risk,
        "rules": list(evaluation.rule_names()), "needs": [r.describe() for r in evaluation.requirements],
        **({"policy_changed": True} if rejudged else {})})
    # What the merge may change: what was judged here (a merge onto a target that moved on is checked against it),
    # and under which policy (a change approved under another is judged again before it merges).
    judged = {REVIEWED_PATHS_KEY: list(facts.paths), UNJUDGED_KEY: None, POLICY_READ_KEY: read, REJUDGING_KEY: None}
    if evaluation.outcome == "auto_approve":
        record = transition(workspace, record.id, APPROVED, allowed_from=frozenset({GATING}),
                            reason=f"auto-approved by the policy ({', '.join(evaluation.rule_names())})",
                            # No escalation of an earlier review stays named: it is not what approved this.
                            data={"approved_commit": tip, ESCALATION_KEY: None, **judged}, audit={"commit": tip})
        return ReviewOutcome(record, tip, results, evaluation, None, report)
    if rejudged and previous is not None and decision_answers(previous, evaluation, tip, policy, facts.paths) \
            and _still_clears(workspace, previous):
        # What the changed policy asks, the decision already answered: kept (a comment edited in the policy, or a
        # rule for other paths, asked a lead to approve every change waiting to merge again).
        record = transition(workspace, record.id, APPROVED, allowed_from=frozenset({GATING}),
                            reason=f"judged again under the changed policy: escalation #{previous.id}'s decision "
                                   "answers it", data=judged, audit={"commit": tip})
        return ReviewOutcome(record, tip, results, evaluation, previous, report)
    gates = {r.gate: {"status": r.status, "summary": r.summary, "failed_tests": list(r.failed_tests),
                      "run": r.run_id} for r in results}
    escalation = open_escalation(
        workspace, "post-gate", evaluation, facts, sandbox_id=record.id, commit=tip,
        summary=summary or f"{abridged(record.task, 70)} ({evaluation.outcome}: {', '.join(evaluation.rule_names())})",
        evidence={"gates": gates, "lines_changed": facts.lines_changed, "eval": {
            "report": report.report_id, "badge": report.badge(), "regressions": list(report.regressions),
            "score": report.score.total if report.score is not None else None, "breaks_with": list(breaks)}})
    record = transition(workspace, record.id, AWAITING_REVIEW, allowed_from=frozenset({GATING}),
                        reason=f"escalation #{escalation.id}: {evaluation.outcome}",
                        data={ESCALATION_KEY: escalation.id, **judged})
    return ReviewOutcome(record, tip, results, evaluation, escalation, report)


def _merged_breaks(workspace: Workspace, record: SandboxRecord, say: Say) -> tuple[str, ...]:
    """The merged gate with the other pending sandboxes on the same target: whom this one breaks with."""
    from loomtui.guardrails.merged import merged_gate, pending_sandboxes

    if not workspace.load_config().eval.merged_on_review:
        return ()
    others = [s for s in pending_sandboxes(workspace) if s.id != record.id and s.target == record.target]
    if not others:
        return ()
    breaks: set[str] = set()
    for merged in merged_gate(workspace, include=[record.id]):
        if record.id in merged.sandboxes:
            breaks.update(merged.breaks_with(record.id))
            for found in merged.breaking:
                say(f"merged gate: {found.line()}")
    return tuple(sorted(breaks))


def _supersede_open_reviews(workspace: Workspace, sandbox_id: str, tip: str) -> None:
    """Supersede a sandbox's open review escalations before it is reviewed again: the one its record names,
    and any a reviewer killed between opening one and recording it left (approving that one said "now
    approved" while the sandbox waited on the redo's)."""
    for stale in workspace.store.list_escalations(EscalationStatus.OPEN):
        if stale.sandbox_id == sandbox_id and stale.kind == "post-gate":
            with workspace.store.transaction():
                workspace.store.update_escalation(stale.id, status=EscalationStatus.SUPERSEDED)
                workspace.record("escalation.superseded", str(stale.id), {"sandbox": sandbox_id, "commit": tip})


def _held_by_others(workspace: Workspace, record: SandboxRecord, facts: ChangeFacts) -> str:
    """What of this change other sandboxes' live exclusive claims hold, in a line ("" for nothing). The
    hooks refuse such writes, but not every write passes one (a runtime without editor hooks, a commit
    the pre-commit hook refused whose work loomtui then saved at the agent's end): the review is the wall.

    A file counts whole where its change touches lines outside every function and class (imports, constants,
    module code: its module region changed), is not Python or not parsed, or is the merge's alone (the target
    renamed the file); else only its changed regions do: one method's change was held by another's claim on
    a different method of the file."""
    changed: dict[str, list[str]] = {}  # by file: a team's thousands of claims are each looked up once
    for region in facts.regions:
        changed.setdefault(split_id(region)[0], []).append(region)
    own = set(changed)
    for path in facts.all_paths():
        changed.setdefault(path, [path])

    def whole(path: str) -> bool:
        # Its module region changed: its own lines, or not parsed (a change's parse budget, shared by its
        # files, spent on big files sorting first), so none of its regions were read.
        return path not in own or path in changed[path]

    def touched(claim_region: str) -> str | None:
        """How the change touches a held region: "" where it changed it, what else where only its file counts
        whole (the holder's function read as changed, of a change to an import), None where it does not."""
        path = split_id(claim_region)[0]
        mine = changed.get(path, ())
        found = [region for region in mine if region != path and overlaps(claim_region, region)]
        if path in mine and whole(path):
            found.append(path)
        if not found:
            return None
        if any(claim_region == region or not claim_region.startswith(region) for region in found):
            return ""  # it changed the held region itself, or code inside it
        region = max(found, key=len)  # the innermost that holds it: a class's own lines, else the module's
        what = "imports, constants, module code" if region == path else "its attributes, its decorators"
        return f", in {region}, whose own lines ({what}) this change touches, so all of it counts"

    held = sorted({f"{claim_region} (sandbox {claim.sandbox_id}, claim #{claim.id}{how})"
                   for claim in workspace.store.live_claims()
                   if claim.sandbox_id != record.id and claim.mode == "exclusive"
                   for claim_region in claim.region_ids if (how := touched(claim_region)) is not None})
    return listed(held)


def _hold_the_change(workspace: Workspace, record: SandboxRecord, facts: ChangeFacts) -> None:
    """Claim for the sandbox the code its change touches that no claim holds (`claimed by commit of`, as the
    hook's claims of a commit): work loomtui saved at an agent's end (Codex often never commits) claimed
    nothing, so another agent edited the same function with no word until the merge conflicted. What another
    sandbox holds stays its own (this review says so, above)."""
    from loomtui.coordination.claims import hold_changed_code
    from loomtui.governance.coordinator import governed_coordinator

    hold_changed_code(workspace.store, record.id, facts.regions, workspace.load_config().coordination,
                      lambda: governed_coordinator(workspace))


def _agent_failure(record: SandboxRecord) -> str | None:
    """How a sandbox's agent failed or was stopped before it ended, in a few words; None when it ended
    by itself. A stop someone asked for is no failure, but it too leaves the work where it was cut off.
    Its last run's, whatever the status now: reviewed again after a later commit, the sandbox is awaiting
    review, and the failure was forgotten (a half-done change then approved by the policy alone)."""
    error = record.data.get("error")  # set with the failed status, cleared only by a run again
    if record.status == FAILED or error:
        return str(error) if error else f"exited with code {record.exit_code}"
    stopper = stopped_by(record)
    return f"stopped by {stopper} before it ended" if stopper else None


def _with_claim_stage(workspace: Workspace, policy: Policy, record: SandboxRecord, evaluation: Evaluation,
                      facts: ChangeFacts) -> Evaluation:
    """The post-gate decision, plus the claim-stage rules on what the sandbox really changed.

    A claim-stage `require` or `block` (a lead must agree before payments code is
    touched) holds whatever the agent's permission mode was: an agent that wrote
    without asking meets it here, unless people already granted this sandbox those
    regions (a pre-start or permission-request escalation approved).
    """
    changed = facts.regions or facts.all_paths()
    ungranted = [region for region in changed if region not in granted_regions(workspace, record.id, changed)]
    if not ungranted:
        return evaluation
    claim = evaluate(policy, ChangeFacts(stage="claim", paths=tuple(sorted({split_id(r)[0] for r in ungranted})),
                                         regions=tuple(ungranted), runtime=record.runtime, author=facts.author))
    if claim.outcome == "auto_approve":
        return evaluation
    return combined(evaluation, claim, CLAIM_STAGE_LABEL)


def _escalation(workspace: Workspace, record: SandboxRecord) -> EscalationRecord | None:
    escalation_id = record.data.get(ESCALATION_KEY)
    return workspace.store.get_escalation(int(escalation_id)) if escalation_id else None


def decided_escalation(workspace: Workspace, sandbox_id: str) -> EscalationRecord | None:
    """The sandbox's post-gate escalation, once people have decided it."""
    escalation = _escalation(workspace, get_sandbox(workspace, sandbox_id))
    return escalation if escalation is not None and escalation.status in (*CLEARED,
                                                                           "rejected") else None


def follow_decision(workspace: Workspace, sandbox_id: str) -> SandboxRecord | None:
    """Move an awaiting sandbox on after its escalation is decided (a rejected one after its rejection was
    overridden); None while it is open."""
    record = get_sandbox(workspace, sandbox_id)
    escalation = decided_escalation(workspace, sandbox_id)
    if record.status not in (AWAITING_REVIEW, REJECTED) or escalation is None:
        return None
    if escalation.status == EscalationStatus.REJECTED:
        if record.status == REJECTED:
            return None
        # Who said no and why, as the sandbox's `reason` (its Details named the escalation only).
        said = last_event(escalation, "reject")
        why = f" by {said.get('by')}" + (f": {said['reason']}" if said.get("reason") else "") if said else ""
        return transition(workspace, record.id, REJECTED, allowed_from=frozenset({AWAITING_REVIEW}),
                          reason=f"escalation #{escalation.id} rejected{why}")
    commit = str(escalation.data.get("commit") or "")
    check_cleared(workspace, escalation)
    # From rejected too: a reviewer's rejection overruled by an override (`escalations.rejection_stands`).
    return transition(workspace, record.id, APPROVED, allowed_from=frozenset({AWAITING_REVIEW, REJECTED}),
                      reason=f"escalation #{escalation.id} {escalation.status}",
                      data={"approved_commit": commit}, audit={"escalation": escalation.id, "commit": commit})


def _still_clears(workspace: Workspace, escalation: EscalationRecord) -> bool:
    """Whether the decision still lets the change go as the merge checks it (signed, where the policy now asks
    for signatures: kept unsigned, every merge then failed, and no decision could be given again)."""
    try:
        check_cleared(workspace, escalation)
    except LoomError:
        return False
    return True


def check_cleared(workspace: Workspace, escalation: EscalationRecord,
                  entries: Sequence[AuditEntry] | None = None) -> None:
    """Raise (exit 1) unless the escalation's approval or override still lets its sandbox go on: the audit
    log holds the decision that cleared it (a status edited by hand in the store is not followed), and an
    override has not passed the time it was given for (`--hours`, at most `overrides.max_hours`), as the
    log kept it (the store's copy may be edited). `entries`: the log, when the caller has read it already."""
    commit = str(escalation.data.get("commit") or "")
    read = list(workspace.audit.entries() if entries is None else entries)
    decision = _deciding_entry(escalation, commit, read)
    checkpoint = workspace.store.audit_checkpoint()
    if decision is None and checkpoint is not None and (not read or read[-1].seq < checkpoint[0]):
        # The log's file cut short (it read "was the store changed by hand?"): its damage is what to mend.
        raise LoomError(f"escalation #{escalation.id}: its decision is not read, as the audit log's file ends at "
                        f"entry {read[-1].seq if read else 0} of {checkpoint[0]} (cut short: `loomtui audit verify` "
                        "says so, and `loomtui audit restore` puts it back); not followed until then", exit_code=1)
    if decision is None:
        raise LoomError(f"escalation #{escalation.id} reads {escalation.status} in the store, but the audit log "
                        f"holds no decision that made it so on {commit[:12] or 'its commit'}: not followed (was the "
                        "store changed by hand? `loomtui audit verify`)", exit_code=1)
    _refuse_unsigned_decisions(workspace, escalation, commit, read, decision)
    expired = override_expired(escalation, decision.details.get("override_expires"))
    if expired is not None:
        when = datetime.fromtimestamp(expired, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise LoomError(f"escalation #{escalation.id} was overridden until {when}, and that has passed: the change "
                        "needs a new override (with a reason) to go on", exit_code=1)


def _refuse_unsigned_decisions(workspace: Workspace, escalation: EscalationRecord, commit: str,
                               entries: Sequence[AuditEntry], decision: AuditEntry) -> None:
    """Where the policy requires signed decisions, raise (exit 1) unless the decisions that cleared the
    escalation are validly signed: its override, or approvals meeting every requirement counted from the
    signed ones alone. The gate counted only signed approvals, while a merge followed an unsigned one written
    into the store and the log by hand (the merge commit then named it as its audit head)."""
    policy = configured_policy(workspace.root, workspace.load_config())
    if not policy.decisions.require_signature:
        return
    from loomtui.governance.signing import VERIFIED, check_decisions

    if escalation.status == EscalationStatus.OVERRIDDEN:
        taken = [decision]
    else:
        # As `_deciding_entry` reads them: a start's escalation names no commit (there is no change yet).
        taken = [e for e in entries if e.action == "escalation.approve" and e.subject == str(escalation.id)
                 and (not commit or e.details.get("commit", commit) == commit)]
    checked = check_decisions(taken, workspace.root, policy).decisions
    signed = [str(d["actor"]) for d in checked if d["status"] == VERIFIED]
    unsigned = sorted({f"{d['actor']} (seq {d['seq']}: {d['detail']})" for d in checked if d["status"] != VERIFIED})
    if escalation.status == EscalationStatus.OVERRIDDEN:
        short = [] if checked and checked[-1]["status"] == VERIFIED else ["its override is not validly signed"]
    else:
        short = [text for met, text in requirements_met_by(escalation, signed) if not met]
    if short:
        said = f"; not signed: {', '.join(unsigned)}" if unsigned else ""
        raise LoomError(f"escalation #{escalation.id} reads {escalation.status}, but the policy requires signed "
                        f"decisions and its signed ones fall short ({'; '.join(short)}){said}: not followed "
                        "(`loomtui audit verify`)", exit_code=1)


def check_approved(workspace: Workspace, record: SandboxRecord, tip: str) -> None:
    """Raise (exit 1) unless the audit log says what approved exactly `tip` of this sandbox: its latest
    review auto-approving that commit, or a decision clearing the escalation that review opened. The
    store's row alone is not evidence: a status set to approved by hand, or another sandbox's approved
    escalation named on it, merged a change no one approved (and `audit verify` still read OK)."""
    # Its latest review decides: an earlier auto-approval of the same commit does not stand once a review
    # since (the target moved under it) asked people, who said no.
    entries = list(workspace.audit.entries())  # read once: the decision below is looked up in it too
    latest = None
    for entry in entries:
        if entry.action == "policy.evaluated" and entry.subject == record.id \
                and entry.details.get("stage") == "post-gate":
            latest = entry
    if latest is None or latest.details.get("commit") != tip:
        raise LoomError(f"sandbox {record.id} reads approved in the store, but the audit log holds no review of "
                        f"{tip[:12]}: not merged (was the store changed by hand? `loomtui audit verify`)",
                        exit_code=1)
    if latest.details.get("outcome") == "auto_approve":
        return
    escalation = _escalation(workspace, record)
    if escalation is None:
        raise LoomError(f"sandbox {record.id} reads approved in the store, but its review of {tip[:12]} asked people "
                        "and it names no escalation they decided: not merged (was the store changed by hand? "
                        "`loomtui audit verify`)", exit_code=1)
    commit = str(escalation.data.get("commit") or "")
    if escalation.sandbox_id != record.id or commit != tip:
        about = f"sandbox {escalation.sandbox_id}" if escalation.sandbox_id != record.id else \
            f"commit {commit[:12] or 'none'}"
        raise LoomError(f"sandbox {record.id} names escalation #{escalation.id} as its approval, but that was about "
                        f"{about}, not {tip[:12]} of this sandbox: not merged (was the store changed by hand? "
                        "`loomtui audit verify`)", exit_code=1)
    if escalation.status not in CLEARED:
        raise LoomError(f"sandbox {record.id}'s escalation #{escalation.id} is {escalation.status}, not approved: "
                        "not merged", exit_code=1)
    check_cleared(workspace, escalation, entries)


def _deciding_entry(escalation: EscalationRecord, commit: str, entries: Iterable[AuditEntry]) -> AuditEntry | None:
    """The audit entry of the (latest) decision that gave the escalation its status, on `commit`: the store
    alone is not evidence (a row edited by hand would approve a blocked change, unsigned)."""
    action = "escalation.override" if escalation.status == EscalationStatus.OVERRIDDEN else "escalation.approve"
    subject = str(escalation.id)
    found = None
    for entry in entries:
        if (entry.action == action and entry.subject == subject and entry.details.get("status") == escalation.status
                and (not commit or entry.details.get("commit", commit) == commit)):  # a start's: no commit yet
            found = entry
    return found


def merge_trailers(workspace: Workspace, sandbox_id: str) -> list[tuple[str, str]]:
    """What the merge commit says about how the change was allowed: policy, escalation, people."""
    escalation = _escalation(workspace, get_sandbox(workspace, sandbox_id))
    if escalation is None:
        return [("Loom-Policy", "auto_approve")]
    trailers = [("Loom-Escalation", f"#{escalation.id}")]
    if escalation.status == EscalationStatus.OVERRIDDEN:
        overrider = last_event(escalation, "override").get("by", "?")
        return [*trailers, ("Loom-Overridden-by", str(overrider))]
    people = ", ".join(a.user for a in approvals(escalation, str(escalation.data.get("commit") or ""))) or "?"
    return [*trailers, ("Loom-Approved-by", people)]
