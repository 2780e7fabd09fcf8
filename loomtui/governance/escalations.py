"""Escalations and the decisions on them: approve, reject, override.

An escalation records what needs deciding (before an agent starts, after its gates,
a conflict override, an agent's permission request), the rules that fired, the
evidence, who may decide and its history. Approvals are tied to the commit they
approved: once the sandbox has a new commit they no longer count. Nothing running
inside a sandbox may decide (see `refuse_inside_sandbox`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from loomtui.errors import LoomError, StoreError, blank
from loomtui.execution.gitops import Git
from loomtui.execution.lifecycle import APPROVED, AWAITING_REVIEW, PLANNED
from loomtui.governance.checkout import refuse_an_agents_policy
from loomtui.governance.decision_notes import publish
from loomtui.governance.policy import (
    ChangeFacts,
    Evaluation,
    Policy,
    Requirement,
    can_override,
    groups_of,
    never_met,
    requirement_status,
    same_person,
)
from loomtui.governance.signing import BAD, VERIFIED, Decision, SigningError, sign_decision
from loomtui.store import EscalationRecord, SandboxRecord
from loomtui.workspace import Workspace

KINDS = ("pre-start", "post-gate", "conflict-override", "permission-request", "question")
GRANTING_KINDS = ("pre-start", "permission-request")
"""Escalations whose approval lets a sandbox change the regions they were about."""
AGENT_ASKS: Final = ("permission-request", "question")
"""The escalations a running agent opens, and waits on."""
RISK_ORDER = {"critical": 0, "high": 1, "medium": 2, "normal": 3, "low": 4}
class EscalationStatus(StrEnum):
    """Where an escalation is. A member is its own string, as stored."""

    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"
    OVERRIDDEN = "overridden"
    SUPERSEDED = "superseded"
    WITHDRAWN = "withdrawn"  # its sandbox was removed: nothing is left to decide

REVIEW_ESCALATION_KEY: Final = "review_escalation"
"""In a sandbox's data: the escalation its latest review opened."""
PRESTART_ESCALATION_KEY: Final = "awaiting_escalation"
"""In a sandbox's data: the escalation its start waits on."""


OPEN = EscalationStatus.OPEN
DECIDED = (EscalationStatus.APPROVED, EscalationStatus.REJECTED, EscalationStatus.OVERRIDDEN)
CLEARED = (EscalationStatus.APPROVED, EscalationStatus.OVERRIDDEN)
"""Decided in favour: what was asked may go ahead."""
DECIDED_AS: Final = {"approve": EscalationStatus.APPROVED, "reject": EscalationStatus.REJECTED,
                     "override": EscalationStatus.OVERRIDDEN}
"""The status each decision closes an escalation with (and its past tense, for saying it)."""


class DecisionRefused(LoomError):
    """The user may not take this decision (exit code 1)."""

    exit_code = 1


class DecisionTooLate(DecisionRefused):
    """The request was withdrawn before this decision: noted in its history, changing nothing."""


def refuse_inside_sandbox() -> None:
    """Decisions are for people: a process inside a sandbox (an agent) is refused.

    This is the first of two walls; the second is that a sandbox sees the store and
    the audit log read-only, so even a process that unsets the variable cannot write.
    """
    if os.environ.get("LOOM_SANDBOX"):
        raise DecisionRefused("decisions cannot be made from inside a sandbox (agents never decide)")


@dataclass(frozen=True)
class Approval:
    user: str
    commit: str
    at: float


def _requirement_dict(requirement: Requirement) -> dict[str, Any]:
    return {"rule": requirement.rule, "groups": list(requirement.groups), "count": requirement.count,
            "eligible": sorted(requirement.eligible), "paths": list(requirement.paths)}


def _requirements(escalation: EscalationRecord) -> list[Requirement]:
    return [Requirement(rule=r["rule"], groups=tuple(r["groups"]), count=int(r["count"]),
                        eligible=frozenset(r["eligible"]), paths=tuple(r.get("paths", ())))
            for r in escalation.data.get("requirements", [])]


def approvals(escalation: EscalationRecord, commit: str | None = None) -> list[Approval]:
    """Approvals still in force: those given for `commit` (the sandbox's current head); all of them
    without one (a pre-start escalation asks before there is any change to approve)."""
    given = [Approval(a["user"], str(a.get("commit") or ""), a["at"] if isinstance(a.get("at"), int | float) else 0.0)
             for a in _approval_rows(escalation)]
    return given if not commit else [a for a in given if a.commit == commit]


def _approval_rows(escalation: EscalationRecord) -> list[dict[str, Any]]:
    """The store's approval rows that name who approved: a row written by hand without one (`{"by": ...}`)
    counts for nothing, as any approval without its decision in the audit log (it ended the gate and
    `escalation list` in an internal error)."""
    rows = escalation.data.get("approvals")
    return [a for a in rows if isinstance(a, dict) and isinstance(a.get("user"), str)] if isinstance(rows, list) else []


def _opened_by(workspace: Workspace, kind: str, sandbox_id: str, facts: ChangeFacts) -> str:
    """Whose action opened an escalation, for its history: the agent that asked (by its sandbox,
    as the history names an agent elsewhere), the author of a task's start or change that the
    policy holds, else whoever acted (an override asked for). Not merely whoever's process ran
    the step: a reviewer's approval may let the engine review the next task."""
    if kind in AGENT_ASKS and sandbox_id:
        return sandbox_id
    if kind in ("pre-start", "post-gate") and facts.author:
        return facts.author
    return workspace.actor


_SEPARATED = "separation_of_duties"
"""In an escalation's data: whether the policy separated the author's duties when it was opened, then when it
was last approved."""


def open_escalation(workspace: Workspace, kind: str, evaluation: Evaluation, facts: ChangeFacts, *,
                    sandbox_id: str = "", commit: str = "", summary: str = "",
                    evidence: Mapping[str, Any] | None = None) -> EscalationRecord:
    """Open an escalation for a policy evaluation that needs people (or is blocked)."""
    if kind not in KINDS:
        raise ValueError(f"unknown escalation kind {kind!r}")
    data = {
        "outcome": evaluation.outcome,
        "explanation": evaluation.explanation(),
        "rules": [{"name": a.name, "decision": a.decision, "risk": a.risk, "why": a.why}
                  for a in evaluation.applied],
        "requirements": [_requirement_dict(r) for r in evaluation.requirements],
        "facts": asdict(facts),
        "author": facts.author or "",
        _SEPARATED: evaluation.separation_of_duties,
        "commit": commit,
        "evidence": dict(evidence or {}),
        "approvals": [],
        "history": [{"at": time.time(), "event": "opened", "by": _opened_by(workspace, kind, sandbox_id, facts)}],
    }
    text = summary or f"{kind}: {evaluation.outcome} ({', '.join(a.name for a in evaluation.applied)})"
    with workspace.store.transaction():
        record = workspace.store.add_escalation(kind, sandbox_id=sandbox_id, risk=evaluation.risk,
                                                summary=text, data=data)
        workspace.record("escalation.opened", str(record.id),
                         {"kind": kind, "sandbox": sandbox_id, "outcome": evaluation.outcome,
                          "risk": evaluation.risk, "rules": [a.name for a in evaluation.applied]})
    return record


def granted_regions(workspace: Workspace, sandbox_id: str, regions: Sequence[str]) -> set[str]:
    """Which of `regions` people already allowed this sandbox to change: approved (or
    overridden) before it started, or on a permission request while it ran."""
    from loomtui.coordination.regions import ancestors, split_id

    scopes = [e.data.get("facts") or {} for status in CLEARED
              for e in workspace.store.sandbox_escalations(sandbox_id, GRANTING_KINDS, status)]

    def covered(region: str, facts: Mapping[str, Any]) -> bool:
        approved = set(facts.get("regions") or ())
        whole_files = set(facts.get("paths") or ()) - {split_id(r)[0] for r in approved}
        return region in approved or bool(set(ancestors(region)) & approved) \
            or split_id(region)[0] in whole_files

    return {region for region in regions if any(covered(region, facts) for facts in scopes)}




def status_lines(escalation: EscalationRecord, commit: str | None = None) -> list[str]:
    """One line per requirement saying how far it is met, e.g. `1 of 2 from payments-team`: counted as
    the last approval was (`decide` keeps whether the policy then separated the author's duties; an
    approved escalation of a policy without it said the author's approval did not count)."""
    if escalation.status in (EscalationStatus.WITHDRAWN, EscalationStatus.SUPERSEDED):
        # Nothing to decide (a withdrawn block still said "only an override with a reason" lets it through).
        return [f"{escalation.status}: nothing to decide"]
    expired = override_expired(escalation)
    if expired is not None:  # out of every view, its sandbox said "press m", and the merge refused
        return [f"the override ran out at {minute_utc(expired)}: only a new "
                "override with a reason lets it proceed"]
    if escalation.data.get("outcome") == "block":  # "0 of 2 from payments-team" read as a way on: none is
        return ["blocked: no approval lets it proceed, only an override with a reason"]
    return [text for _met, text in _requirement_status(escalation, commit)]


def _waiting_on(sandboxes: Iterable[SandboxRecord]) -> dict[str, str]:
    """Escalation id -> sandbox, for each sandbox's escalation it still waits on: its review's while it awaits
    review or is approved, its start's while it is planned (an override of another kind, or of one it has moved
    past, ran out with nothing waiting on it)."""
    waiting: dict[str, str] = {}
    keys: dict[str, str] = {AWAITING_REVIEW: REVIEW_ESCALATION_KEY, APPROVED: REVIEW_ESCALATION_KEY,
                            PLANNED: PRESTART_ESCALATION_KEY}
    for record in sandboxes:
        key = keys.get(str(record.status))
        if key and record.data.get(key):
            waiting[str(record.data[key])] = record.id
    return waiting


def to_decide(escalations: Iterable[EscalationRecord], sandboxes: Iterable[SandboxRecord]) -> list[EscalationRecord]:
    """Of `escalations`, those a person has to decide: the open ones, and each whose override ran out while its
    sandbox (among `sandboxes`) still waits on it."""
    found = list(escalations)
    ran_out = {str(e.id) for e in found if e.status == EscalationStatus.OVERRIDDEN and e.sandbox_id
               and override_expired(e) is not None}
    waiting = _waiting_on(sandboxes) if ran_out else {}
    return [e for e in found if e.status == OPEN or (str(e.id) in ran_out and waiting.get(str(e.id)) == e.sandbox_id)]


def last_event(escalation: EscalationRecord, event: str) -> Mapping[str, Any]:
    """The newest entry of `event` ("override", "reject", "withdrawn", ...) in the escalation's history; {} if none."""
    return next((entry for entry in reversed(escalation.data.get("history") or ())
                 if isinstance(entry, Mapping) and entry.get("event") == event), {})


def decision_answers(escalation: EscalationRecord | None, evaluation: Evaluation, commit: str,
                     policy: Policy, paths: Sequence[str]) -> bool:
    """Whether `escalation`'s decision in favour of `commit` answers `evaluation` as well (the same commit judged
    again under `policy`, changed since): nothing it found that the decision did not see, no path the merge now
    changes that it did not (the target renamed a file under it); for approvals, the
    people who approved meet each of its requirements (groups and counts as the policy has them now); for an
    override, its giver may still override (one moved out of the override groups kept a change going) and for
    no longer than the policy's `overrides.max_hours` now allows (a 24-hour one stood where 1 hour was the most)."""
    if escalation is None or escalation.status not in CLEARED or escalation.data.get("commit") != commit \
            or escalation.data.get("outcome") != evaluation.outcome:
        return False
    seen = {str(rule.get("name")) for rule in escalation.data.get("rules") or () if isinstance(rule, Mapping)}
    facts = escalation.data.get("facts")
    decided_paths = set(facts.get("paths") or ()) if isinstance(facts, Mapping) else set()
    if not {applied.name for applied in evaluation.applied} <= seen or not set(paths) <= decided_paths:
        return False
    author = escalation.data.get("author") or None
    if escalation.status == EscalationStatus.OVERRIDDEN:  # what it overrode, with a reason: no more is found now
        given = last_event(escalation, "override")
        by, at, expires = str(given.get("by") or ""), given.get("at"), escalation.data.get("override_expires")
        # A second's leeway: its end and its event's time are two reads of the clock.
        within = not isinstance(at, (int, float)) or not isinstance(expires, (int, float)) \
            or expires - at <= policy.overrides.max_hours * 3600 + 1
        return bool(by) and within and can_override(policy, by) \
            and not (policy.separation_of_duties and same_person(author, by))
    users = [a.user for a in approvals(escalation, commit)]
    return all(requirement_status(req, users, author, evaluation.separation_of_duties)[0]
               for req in evaluation.requirements)


def unmet_lines(escalation: EscalationRecord) -> list[str]:
    """`status_lines` of the requirements not met yet (what an approval leaves to do)."""
    return [text for met, text in _requirement_status(escalation, None) if not met]


def _requirement_status(escalation: EscalationRecord, commit: str | None) -> list[tuple[bool, str]]:
    return requirements_met_by(escalation, [a.user for a in approvals(escalation, commit or
                                                                      escalation.data.get("commit"))])


def requirements_met_by(escalation: EscalationRecord, users: Sequence[str]) -> list[tuple[bool, str]]:
    """Whether approvals by `users` meet each of the escalation's requirements, and a line saying so (counted
    as the last approval was: `decide` keeps whether the policy then separated the author's duties)."""
    author = escalation.data.get("author") or None
    separated = escalation.data.get(_SEPARATED) is not False
    return [requirement_status(req, users, author, separated) for req in _requirements(escalation)]


def minute_utc(epoch: float) -> str:
    """A time as a person reads when an override ran out: `2026-12-07 09:17 UTC`."""
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%d %H:%M} UTC"


def override_expired(escalation: EscalationRecord, expires: object = None) -> float | None:
    """When the escalation's override ran out, if it was overridden and that time has passed (None: not);
    `expires` as the audit log kept it where given, else the store's."""
    expires = escalation.data.get("override_expires") if expires is None else expires
    if escalation.status != EscalationStatus.OVERRIDDEN or not isinstance(expires, (int, float)):
        return None
    return float(expires) if time.time() > expires else None


def next_override_end(escalations: Iterable[EscalationRecord]) -> float | None:
    """The soonest time one of these overrides runs out (None: none is still running): a view counting what is
    to decide reads again then, as nothing is written when it does."""
    ends = [float(e.data["override_expires"]) for e in escalations if e.status == EscalationStatus.OVERRIDDEN
            and isinstance(e.data.get("override_expires"), (int, float)) and e.data["override_expires"] > time.time()]
    return min(ends, default=None)


def allowed_decisions(policy: Policy, escalation: EscalationRecord, user: str) -> list[str]:
    """Which of approve / reject / override this user may take on this escalation now (an override that
    ran out may be given again)."""
    if override_expired(escalation) is not None:
        return [d for d in allowed_decisions(policy, replace(escalation, status=OPEN), user) if d == "override"]
    if escalation.status == EscalationStatus.REJECTED and not rejection_stands(policy, escalation):
        # A reviewer's no, from someone who may not override, is overruled as a block is: with a reason.
        return [d for d in allowed_decisions(policy, replace(escalation, status=OPEN), user) if d == "override"]
    if escalation.status != OPEN:
        return []
    allowed = []
    author = escalation.data.get("author") or None
    already = any(same_person(a.user, user) for a in approvals(escalation, escalation.data.get("commit")))
    eligible = any(req.admits(user) for req in _requirements(escalation))
    # As the count compares them: a capital letter made the author's own approval a recorded, signed,
    # published decision the store then did not count (and a CI gate that read the note did).
    separated = not (policy.separation_of_duties and same_person(author, user))
    if escalation.data.get("outcome") != "block" and eligible and separated and not already:
        allowed.append("approve")
    if eligible or groups_of(policy, user) or can_override(policy, user):
        allowed.append("reject")
    if can_override(policy, user) and separated:  # an author's own override skipped every approval
        allowed.append("override")
    return allowed


def overridable(escalation: EscalationRecord) -> bool:
    """Whether an override is the way on for this escalation: a block, a claim conflict, a requirement no
    set of approvals can meet (`never_met`), or a rejection (`rejection_stands` says whose is overruled).
    (A lead may still override an approval the policy requires, from the CLI.)"""
    author = escalation.data.get("author") or None
    return (escalation.data.get("outcome") == "block" or escalation.kind == "conflict-override"
            or escalation.status == EscalationStatus.REJECTED  # overruled by an override alone, if at all
            or override_expired(escalation) is not None  # given again, or not at all
            or any(never_met(r, author, escalation.data.get(_SEPARATED) is not False)
                   for r in _requirements(escalation)))


def withdraw_open(workspace: Workspace, sandbox_id: str, reason: str) -> list[int]:
    """Withdraw a sandbox's open escalations (it was removed), each with its audit entry."""
    withdrawn = []
    with workspace.store.transaction():
        for escalation in workspace.store.sandbox_escalations(sandbox_id, status=OPEN):
            history = [*escalation.data.get("history", []),
                       {"at": time.time(), "event": "withdrawn", "by": "loomtui", "reason": reason}]
            workspace.store.update_escalation(escalation.id, status=EscalationStatus.WITHDRAWN,
                                              data={"history": history})
            workspace.record("escalation.withdrawn", str(escalation.id), {"sandbox": sandbox_id, "reason": reason})
            withdrawn.append(escalation.id)
    return withdrawn


def _sandbox_head(workspace: Workspace, escalation_id: int) -> str | None:
    """The commit the escalation's sandbox is at now (None: no sandbox, or no branch yet)."""
    escalation = workspace.store.get_escalation(escalation_id)
    sandbox = workspace.store.get_sandbox(escalation.sandbox_id) if escalation and escalation.sandbox_id else None
    return Git(workspace.root).resolve_commit(sandbox.branch) if sandbox and sandbox.branch else None


def decide(workspace: Workspace, policy: Policy, escalation_id: int, decision: str, *,
           reason: str = "", expires_hours: float | None = None) -> EscalationRecord:
    """Record one person's decision; the escalation closes when the policy is satisfied.

    The decision binds to the sandbox's commit as it is now, looked up here (never
    taken from the caller), so a later commit needs a new decision. An override
    lasts at most the policy's `overrides.max_hours`.
    """
    refuse_inside_sandbox()
    refuse_an_agents_policy(workspace)  # `policy` was read from the checkout: an agent's, judging its change
    if decision not in ("approve", "reject", "override"):
        raise LoomError(f"decision must be approve, reject or override (got {decision!r})")
    if decision in ("reject", "override") and blank(reason):
        raise LoomError(f"{'an' if decision[0] in 'aeiou' else 'a'} {decision} needs a reason")
    user = workspace.actor
    _refuse_if_withdrawn(workspace, policy, escalation_id, decision, reason)
    if expires_hours is not None and expires_hours > policy.overrides.max_hours:
        raise DecisionRefused(f"an override lasts at most {policy.overrides.max_hours}h by the policy "
                              f"(overrides.max_hours); {expires_hours:g}h was asked")
    current_commit = _sandbox_head(workspace, escalation_id)
    with workspace.store.transaction():
        escalation = workspace.store.get_escalation(escalation_id)
        if escalation is None:
            raise LoomError(f"no escalation #{escalation_id}")
        overruling = decision == "override" and escalation.status == EscalationStatus.REJECTED
        if escalation.status != OPEN and override_expired(escalation) is None and not overruling:
            raise DecisionRefused(f"escalation #{escalation_id} is already {escalation.status}")
        evaluated = escalation.data.get("commit", "")
        commit = current_commit if current_commit is not None else evaluated
        history = list(escalation.data.get("history", []))
        data: dict[str, Any] = {}
        if evaluated and commit != evaluated:
            # The policy judged another diff: deciding now would approve what nobody evaluated.
            raise DecisionRefused(
                f"escalation #{escalation_id} was evaluated on commit {evaluated[:12]}, but sandbox "
                f"{escalation.sandbox_id} is now at {commit[:12]}: it must be reviewed again, so the policy "
                "sees the new diff")
        allowed = allowed_decisions(policy, escalation, user)
        if decision not in allowed:
            raise DecisionRefused(why_not(policy, escalation, user, decision))
        signed = _sign(workspace, policy, escalation, decision, commit, reason)
        status = OPEN
        if decision == "approve":
            given = [a for a in _approval_rows(escalation) if a.get("commit") == commit]
            given.append({"user": user, "commit": commit, "at": time.time()})
            data["approvals"] = given
            data[_SEPARATED] = policy.separation_of_duties
            users = [a["user"] for a in given]
            author = escalation.data.get("author") or None
            if all(requirement_status(r, users, author, policy.separation_of_duties)[0]
                   for r in _requirements(escalation)):
                status = EscalationStatus.APPROVED
        elif decision == "reject":
            status = EscalationStatus.REJECTED
        else:
            status = EscalationStatus.OVERRIDDEN
            data["override_expires"] = time.time() + (expires_hours or policy.overrides.max_hours) * 3600
        history.append({"at": time.time(), "event": decision, "by": user, "reason": reason, "commit": commit,
                        "signature": signed["signature_status"]})
        data["history"] = history
        updated = workspace.store.update_escalation(escalation_id, status=status, data=data)
        until = {"override_expires": data["override_expires"]} if decision == "override" else {}
        workspace.record(f"escalation.{decision}", str(escalation_id),
                         {"by": user, "reason": reason, "commit": commit, "status": status,
                          "sandbox": escalation.sandbox_id, **until, **signed})
    if escalation.kind == "post-gate":
        # Into the repository too, where a CI gate in a fresh clone reads it (once pushed).
        problem = publish(workspace.root, workspace.paths.state_dir,
                          Decision(str(escalation_id), decision, user, commit, reason, signed["decided_at"],
                                   escalation.kind, str(signed.get("target", ""))), signed.get("signature"))
        if problem:  # kept: a later decision published does not publish this one
            try:
                workspace.store.update_escalation(escalation_id, data={"note_problem": problem})
                updated = workspace.store.get_escalation(escalation_id) or updated
            except StoreError:  # the decision is committed: said, not failed (the store went meanwhile)
                updated = replace(updated, data={**updated.data, "note_problem": problem})
    return updated


def _refuse_if_withdrawn(workspace: Workspace, policy: Policy, escalation_id: int, decision: str,
                         reason: str) -> None:
    """A decision on a request the agent stopped waiting for: noted in its history (the agent was already told
    no, so nothing changes) and refused with that said (DecisionTooLate). Only from someone who could have taken
    it while it was open (else DecisionRefused, nothing noted): anyone's note was an audit entry, without end."""
    with workspace.store.transaction():
        escalation = workspace.store.get_escalation(escalation_id)
        if escalation is None or escalation.status != EscalationStatus.WITHDRAWN:
            return
        as_open = replace(escalation, status=OPEN)
        if decision not in allowed_decisions(policy, as_open, workspace.actor):
            refused = why_not(policy, as_open, workspace.actor, decision)
            raise DecisionRefused(f"escalation #{escalation_id} was withdrawn, and {refused}")
        why = last_event(escalation, "withdrawn").get("reason", "")
        asked_by_agent = escalation.kind in AGENT_ASKS  # the agent waited on it
        note = (f"decided after the agent had given up ({why or 'it stopped waiting'}); the agent was already "
                "told no") if asked_by_agent else f"decided after it was withdrawn ({why or 'its sandbox was removed'})"
        history = [*escalation.data.get("history", []),
                   {"at": time.time(), "event": f"late-{decision}", "by": workspace.actor, "reason": reason,
                    "note": note}]
        workspace.store.update_escalation(escalation_id, data={"history": history})
        workspace.record("escalation.late_decision", str(escalation_id),
                         {"by": workspace.actor, "decision": decision, "reason": reason, "note": note,
                          "sandbox": escalation.sandbox_id})
    # Raised once the note is committed (raised inside the transaction, it would be rolled back).
    raise DecisionTooLate(f"escalation #{escalation_id} was withdrawn before this {decision}: {note}; your {decision} "
                          "is noted in its history" + (", and the agent may ask again" if asked_by_agent else ""))


def _sign(workspace: Workspace, policy: Policy, escalation: EscalationRecord, decision: str, commit: str,
          reason: str) -> dict[str, Any]:
    """Sign the decision with the user's ssh key; refused when the policy requires a valid signature.

    Returns the fields kept in the audit entry: when it was decided (signed over),
    the signature, and its verdict against allowed_signers at decision time.
    """
    sandbox = workspace.store.get_sandbox(escalation.sandbox_id) if escalation.sandbox_id else None
    target = sandbox.target or "" if sandbox is not None and escalation.kind == "post-gate" else ""
    decided = Decision(str(escalation.id), decision, workspace.actor, commit, reason,
                       datetime.now(UTC).isoformat(timespec="seconds"), escalation.kind, target)
    try:
        verdict = sign_decision(workspace.root, policy, decided)
    except SigningError as exc:
        fix = ("fix the key: the policy requires signed decisions" if policy.decisions.require_signature
               else "fix the key, or unset it to decide unsigned")
        raise DecisionRefused(f"the configured signing key could not sign this decision: {exc} ({fix})") from None
    if policy.decisions.require_signature and verdict.status != VERIFIED:
        raise DecisionRefused(f"the policy requires signed decisions, and this one is not validly signed: "
                              f"{verdict.detail}")
    if verdict.status == BAD:
        # The key signs, but not as this person (another's key, one allowed_signers lists for someone
        # else): recorded unsigned, it was a decision taken behind their back, as a key that cannot sign.
        raise DecisionRefused(f"the configured signing key does not sign as {workspace.actor}: {verdict.detail} "
                              "(use your own key, or unset it to decide unsigned)")
    fields: dict[str, Any] = {"decided_at": decided.at, "kind": decided.kind, "signature_status": verdict.status,
                              **({"target": decided.target} if decided.target else {})}
    if verdict.signature:
        fields["signature"] = verdict.signature
    if verdict.signers:  # which allowed_signers it was checked against: `audit verify` reads that one
        fields["allowed_signers_blob"] = verdict.signers
    if verdict.status != VERIFIED:
        fields["signature_detail"] = verdict.detail
    return fields


def rejection_stands(policy: Policy, escalation: EscalationRecord) -> bool:
    """Whether a rejected escalation stays rejected: rejected by someone the policy lets override, or not a
    change's review. A reviewer's rejection, from one who may not override, is overruled by an override."""
    rejecters = [str(h.get("by")) for h in escalation.data.get("history", []) if h.get("event") == "reject"]
    return escalation.kind != "post-gate" or any(can_override(policy, who) for who in rejecters)


def why_not(policy: Policy, escalation: EscalationRecord, user: str, decision: str) -> str:
    """Why `user` may not take `decision` on `escalation`, in one line (for a refusal)."""
    if override_expired(escalation) is not None and decision != "override":
        return f"escalation #{escalation.id}'s override ran out: only a new override decides it now"
    if escalation.status == EscalationStatus.REJECTED and decision == "override" and \
            not rejection_stands(policy, escalation):
        return why_not(policy, replace(escalation, status=OPEN), user, decision)
    if escalation.status == EscalationStatus.REJECTED and decision == "override":
        return (f"escalation #{escalation.id} was rejected by someone who may override: that rejection stands "
                "(a rejection by a reviewer who may not override can be overridden, with a reason)")
    if escalation.status != OPEN and override_expired(escalation) is None:
        return f"escalation #{escalation.id} is already {escalation.status}"
    author_decides = policy.separation_of_duties and same_person(escalation.data.get("author"), user)
    if decision == "override" and author_decides and can_override(policy, user):
        return f"{user} is the author; separation of duties requires someone else to override"
    if decision == "override":
        allowed = ", ".join(policy.override_groups) or "nobody"
        return f"{user} may not override: the policy allows overrides only by {allowed}"
    if decision == "approve" and escalation.data.get("outcome") == "block":
        return "a blocked change cannot be approved, only overridden with a reason"
    if decision == "approve" and author_decides:
        return f"{user} is the author; separation of duties requires someone else to approve"
    if decision == "approve" and any(same_person(a.user, user) for a in approvals(escalation)):
        return f"{user} has already approved this commit"
    if decision == "reject":  # any member of a policy group may say no, not only those who may approve
        named = ", ".join(sorted(policy.groups))
        return f"{user} may not reject: only a member of one of the policy's groups ({named}) may"
    requirements = _requirements(escalation)
    groups = sorted({g for r in requirements for g in r.groups})
    if groups_of(policy, user) & set(groups):
        # Who approves was fixed when the change was judged; the groups changed since. "needs a member of
        # leads" told a member of leads, with no way on.
        named = ", ".join(sorted({person for r in requirements for person in r.eligible})) or "none"
        return (f"{user} may not {decision}: the approvers were named when it was reviewed ({named} of "
                f"{', '.join(groups)}), and the policy's groups have changed since; an override with a reason "
                "lets it through, or a new commit is reviewed under the policy as it is")
    return f"{user} may not {decision}: needs a member of {', '.join(groups) or 'the policy groups'}"


def queue(workspace: Workspace, statuses: Sequence[str] = (OPEN,)) -> list[EscalationRecord]:
    """Escalations in these statuses, riskiest first, then oldest. The open ones include those whose override
    has run out while their sandbox still waits on it: a person's to decide again."""
    found = [e for status in statuses for e in workspace.store.list_escalations(status)]
    if OPEN in statuses and EscalationStatus.OVERRIDDEN not in statuses:
        ran_out = [e for e in workspace.store.list_escalations(EscalationStatus.OVERRIDDEN)
                   if override_expired(e) is not None and e.sandbox_id]
        if ran_out:
            found += to_decide(ran_out, workspace.store.list_sandboxes())
    return sorted(found, key=lambda e: (RISK_ORDER.get(e.risk, 3), e.created))
