"""What an agent may ask besides the edit checks: its claims, claiming, releasing, a lead's word.

The MCP server (`loomtui mcp`) offers these to agents as tools, so agents can
cooperate instead of colliding. Each operation has the signature of those in
`hooks.OPERATIONS` (a `HookGate` for one sandbox and the request) and is
registered there, so a sandboxed agent reaches them through its broker like the
hooks do. As for the rest of the vocabulary: the sandbox is the gate's, never
the request's, and nothing here decides an escalation. An agent may claim free
regions (as its edits do), release its own claims, open a question or a
permission request, see where its own requests stand, and stop waiting for them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from loomtui.errors import LoomError, both_ends, quoted
from loomtui.governance.escalations import CLEARED, EscalationStatus
from loomtui.governance.hooks import holding
from loomtui.governance.hooks.holding import own_held_files
from loomtui.governance.hooks.permissions import PERMISSION_KIND, QUESTION_KIND, bounded, kept_extras, too_many_asks
from loomtui.governance.hooks.requests import MAX_TEXT_CHARS, named_paths, one_line, text_field
from loomtui.governance.policy import ChangeFacts, evaluate
from loomtui.store import ClaimRecord, EscalationRecord

if TYPE_CHECKING:  # the gate registers these operations: it imports this module, not the reverse
    from loomtui.governance.hooks.gate import HookGate
    from loomtui.workspace import Workspace

WAITING_KINDS: Final = (PERMISSION_KIND, QUESTION_KIND)
"""Escalations an agent opens and waits on: its permission requests and its questions."""
MAX_QUESTION_CHARS: Final = 4000
MAX_PATHS: Final = 50


# -- claims ---------------------------------------------------------------------------


def _claim_dict(claim: ClaimRecord) -> dict[str, Any]:
    """A claim as an agent reads it: its lease's end a time, not a count of seconds since 1970."""
    ends = datetime.fromtimestamp(claim.expires, UTC).isoformat(timespec="seconds") if claim.expires else None
    left = max(0, int(claim.expires - time.time())) if claim.expires else None
    return {"id": claim.id, "target": claim.target, "mode": claim.mode, "regions": list(claim.region_ids),
            "expires": ends, "expires_in_s": left, "reason": claim.reason}


def _own_conflicts(gate: HookGate) -> list[dict[str, Any]]:
    coordinator = gate.coordinator()
    return [c.as_dict() for c in coordinator.conflicts()
            if gate.sandbox_id in (c.sandbox_a, c.sandbox_b)]


def op_my_claims(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    """This sandbox's live claims, and every conflict they have with other sandboxes' claims."""
    claims = gate.workspace.store.live_claims(gate.sandbox_id)
    return {"sandbox": gate.sandbox_id, "claims": [_claim_dict(c) for c in claims],
            "conflicts": _own_conflicts(gate)}


def op_conflicts(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    """With `target`: what claiming it would collide with. Without: this sandbox's conflicts."""
    target = request.get("target")
    if target is None or target == "":
        return {"sandbox": gate.sandbox_id, "conflicts": _own_conflicts(gate)}
    target = _text(request, "target")
    new_file = request.get("new_file") is True
    coordinator = gate.coordinator()
    regions = coordinator.targets.new_file(target) if new_file else coordinator.resolve(target)
    found = coordinator.check(gate.sandbox_id, regions)
    return {"sandbox": gate.sandbox_id, "target": target, "regions": regions,
            "free": not any(c.blocking for c in found), "conflicts": [c.as_dict() for c in found]}


MAX_AGENT_CLAIM_FILES: Final = 20
"""Files one claim of an agent's may hold: a claim of `api` held every file in it for an hour, every
other sandbox kept out. A person's claim (`loomtui claim add`) is not bounded."""


def op_claim(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    """Claim a region, file, directory or glob for this sandbox; refused on another's claim or a policy block."""
    from loomtui.coordination.claims import ClaimRefused
    from loomtui.coordination.regions import split_id

    target = _text(request, "target")
    mode = request.get("mode") or "exclusive"
    reason = one_line(request.get("reason"), "claimed by the agent")
    new_file = request.get("new_file") is True
    coordinator = gate.coordinator()
    regions = coordinator.targets.new_file(target) if new_file else coordinator.resolve(target)
    paths = tuple(sorted({split_id(r)[0] for r in regions}))
    if len(paths) > MAX_AGENT_CLAIM_FILES:
        why = (f"{quoted(target)} is {len(paths)} files: an agent claims at most {MAX_AGENT_CLAIM_FILES} at once "
               "(claim the files or regions it edits)")
        return _claim_refused(gate, target, why)
    held = own_held_files(gate.workspace, gate.sandbox_id)
    if len(held | set(paths)) > holding.MAX_AGENT_HELD_FILES:
        why = (f"this sandbox's claims hold {len(held)} files: an agent's claims hold at most "
               f"{holding.MAX_AGENT_HELD_FILES} (release what it is done with)")
        return _claim_refused(gate, target, why)
    evaluation = evaluate(gate.policy(), ChangeFacts(stage="claim", paths=paths, regions=tuple(regions),
                                                     runtime=gate.runtime))
    if evaluation.outcome == "block":
        return _claim_refused(gate, target, f"policy: {evaluation.explanation()[0].split(': ', 1)[-1]}")
    try:
        result = coordinator.claim(gate.sandbox_id, target, mode=str(mode), reason=reason, new_file=new_file)
    except ClaimRefused as refused:
        return {"claimed": False, "target": target, "reason": str(refused),
                "conflicts": [c.as_dict() for c in refused.conflicts]}
    answer: dict[str, Any] = {"claimed": True, "claim": _claim_dict(result.claim),
                              "conflicts": [c.as_dict() for c in result.conflicts]}
    if result.already_held:
        answer["already_held"] = True
    if evaluation.outcome == "require":
        needs = "; ".join(f"{r.rule} needs {r.describe()}" for r in evaluation.requirements)
        answer["needs_approval"] = f"editing these regions asks a person first: {needs}"
    return answer


def _claim_refused(gate: HookGate, target: str, why: str) -> dict[str, Any]:
    """The answer to a claim refused before the coordinator was asked, recorded in the audit log."""
    gate.workspace.record("agent.claim_refused", gate.sandbox_id, {"target": target[:200], "reason": why})
    return {"claimed": False, "target": target, "reason": why, "conflicts": []}


def op_release(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    """Release this sandbox's own claims: one by `claim` id, or those on `target`."""
    from loomtui.coordination.regions import ancestors

    own = gate.workspace.store.live_claims(gate.sandbox_id)
    claim_id = request.get("claim")
    if claim_id is not None:
        if isinstance(claim_id, bool) or not isinstance(claim_id, int):
            raise LoomError("request field 'claim' must be an integer")
        chosen = [c for c in own if c.id == claim_id]
        if not chosen:
            raise LoomError(f"sandbox {gate.sandbox_id} holds no live claim #{claim_id}")
    else:
        coordinator = gate.coordinator()
        target = coordinator.targets.as_written(_text(request, "target"))  # as a claim keeps it
        chosen = [c for c in own if c.target == target]
        if not chosen:  # by what it names now (a new file's claim, a file deleted since: by its target alone)
            wanted = set(coordinator.resolve(target))
            chosen = [c for c in own
                      if c.region_ids and all(r in wanted or set(ancestors(r)) & wanted for r in c.region_ids)]
        if not chosen:
            raise LoomError(f"sandbox {gate.sandbox_id} holds no live claim on {target}")
    reason = one_line(request.get("reason"), "released by the agent")
    coordinator = gate.coordinator()
    released = [c.id for c in chosen if coordinator.release(c.id, reason)]
    return {"released": released, "claims": [_claim_dict(c) for c in gate.workspace.store.live_claims(gate.sandbox_id)]}


# -- questions and the requests an agent waits on --------------------------------------


def op_ask_lead(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    """Open a question for a lead (an escalation of kind `question`); its answer is a decision on it."""
    from loomtui.governance.escalations import open_escalation
    from loomtui.governance.hooks.gate import permission_evaluation

    question = _text(request, "question", None)
    if len(question) > MAX_QUESTION_CHARS:  # cut, the lead answered part of it and the agent heard yes to all
        raise LoomError(f"a question is at most {MAX_QUESTION_CHARS:,} characters ({len(question):,} given): no one "
                        "answers what they were not shown; ask it shorter, or in parts")
    raw_paths = request.get("paths") or []
    if not isinstance(raw_paths, list) or not all(isinstance(p, str) for p in raw_paths):
        raise LoomError("request field 'paths' must be a list of strings")
    paths = sorted({p for p in (gate.relative(p) for p in named_paths(raw_paths[:MAX_PATHS], "paths"))
                    if isinstance(p, str)})
    policy = gate.policy()
    facts = ChangeFacts(stage="claim", paths=tuple(paths), runtime=gate.runtime)
    evaluation = permission_evaluation(policy, facts, "question")
    if evaluation.outcome == "block" and paths:
        # A question about blocked code is still a question: the default approvers answer it.
        evaluation = permission_evaluation(policy, ChangeFacts(stage="claim", paths=(), runtime=gate.runtime),
                                           "question")
    if evaluation.outcome == "block":
        raise LoomError("the policy names no one who may answer an agent's question")
    if refused := too_many_asks(gate):
        raise LoomError(refused)
    summary = f"{gate.sandbox_id} asks: {both_ends(one_line(question, '', MAX_QUESTION_CHARS), 150)}"
    record = open_escalation(gate.workspace, QUESTION_KIND, evaluation, facts, sandbox_id=gate.sandbox_id,
                             summary=summary, evidence={**bounded(kept_extras(request.get("extra"))),
                                                        "question": question})
    return {"id": record.id, "status": record.status}


def _own(gate: HookGate, escalation_id: Any) -> EscalationRecord:
    if isinstance(escalation_id, bool) or not isinstance(escalation_id, int):
        raise LoomError("request field 'id' must be an integer")
    record = gate.workspace.store.get_escalation(escalation_id)
    if record is None or record.sandbox_id != gate.sandbox_id or record.kind not in WAITING_KINDS:
        raise LoomError(f"no request or question #{escalation_id} of sandbox {gate.sandbox_id}")
    return record


def request_status(record: EscalationRecord) -> dict[str, Any]:
    """Where a request stands and what it means for the agent: decision allow | deny | None (waiting)."""
    history = record.data.get("history", [])
    why = next((h.get("reason") for h in reversed(history) if h.get("reason")), "")
    decided_by = next((h.get("by") for h in reversed(history) if h.get("event") in ("approve", "reject",
                                                                                     "override")), "")
    by = f" by {decided_by}" if decided_by else ""
    if record.status == EscalationStatus.OPEN:
        return {"id": record.id, "kind": record.kind, "status": "open", "decision": None,
                "message": f"waiting for a decision on escalation #{record.id}"}
    if record.status in CLEARED:
        word = "answered yes" if record.kind == QUESTION_KIND else "approved in loomtui"
        message = f"{word}{by} (escalation #{record.id})" + (f": {why}" if why else "")
        return {"id": record.id, "kind": record.kind, "status": record.status, "decision": "allow",
                "message": message}
    word = "answered no" if record.kind == QUESTION_KIND and record.status == EscalationStatus.REJECTED \
        else f"escalation #{record.id} was {record.status}"
    if record.kind == QUESTION_KIND and record.status == EscalationStatus.REJECTED:
        word += f"{by} (escalation #{record.id})"
    elif record.status == EscalationStatus.REJECTED:
        word += by
    return {"id": record.id, "kind": record.kind, "status": record.status, "decision": "deny",
            "message": word + (f": {why}" if why else "")}


def op_request_status(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    """Where one of this sandbox's permission requests or questions stands."""
    return request_status(_own(gate, request.get("id")))


def give_up(gate: HookGate, escalation_id: Any, reason: str, *, hears_decision: bool = False) -> dict[str, Any]:
    """The agent stopped waiting: an open request is withdrawn; one decided meanwhile keeps its
    decision, and its history says the agent never heard it (it was told no). With `hears_decision`
    (its waiter is still there, at its time limit) a decision made in the last instant is its answer."""
    reason = reason[:500] or "the agent stopped waiting"
    with gate.workspace.store.transaction():
        record = _own(gate, escalation_id)
        if hears_decision and record.status != EscalationStatus.OPEN:
            return request_status(record)  # told as decided: nothing unheard to record
        history = list(record.data.get("history", []))
        if record.status == EscalationStatus.OPEN:
            history.append({"at": time.time(), "event": "withdrawn", "by": gate.sandbox_id, "reason": reason})
            record = gate.workspace.store.update_escalation(record.id, status="withdrawn", data={"history": history})
            gate.workspace.record("escalation.withdrawn", str(record.id),
                                  {"sandbox": gate.sandbox_id, "reason": reason})
            return {**request_status(record), "decision": "deny"}
        if not any(h.get("event") == "unheard" for h in history):
            note = (f"the agent had stopped waiting ({reason}) and was told no; this {record.status} "
                    "decision stands, and counts if it asks again")
            history.append({"at": time.time(), "event": "unheard", "by": gate.sandbox_id, "note": note})
            record = gate.workspace.store.update_escalation(record.id, data={"history": history})
            gate.workspace.record("escalation.unheard", str(record.id),
                                  {"sandbox": gate.sandbox_id, "status": record.status, "reason": reason})
    return {**request_status(record), "decision": "deny", "unheard": True}


def op_give_up(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    """Stop waiting on one of this sandbox's requests (see `give_up`); the answer is always deny."""
    return give_up(gate, request.get("id"), one_line(request.get("reason"), "the agent stopped waiting"),
                   hears_decision=request.get("hears_decision") is True)


def abandon_waits(gate: HookGate, ids: list[int], reason: str) -> None:
    """Give up each request in `ids`: their waiter went away before it heard a decision."""
    for escalation_id in ids:
        try:
            give_up(gate, escalation_id, reason)
        except LoomError:
            continue


class WaitTracker:
    """The requests one connection opened and has not yet heard decided (see `Broker`)."""

    OPENS: Final = ("open_permission_request", "ask_lead")
    STATUSES: Final = ("escalation_status", "request_status", "withdraw_permission_request", "give_up")

    def __init__(self) -> None:
        self.waiting: list[int] = []

    def note(self, request: Any, answer: Mapping[str, Any]) -> None:
        if not isinstance(request, dict) or not answer.get("ok"):
            return
        op, found = request.get("op"), answer.get("id")
        if not isinstance(found, int) or isinstance(found, bool):
            return
        if op in self.OPENS and answer.get("status") == "open" and found not in self.waiting:
            self.waiting.append(found)
        elif op in self.STATUSES and answer.get("decision") is not None and found in self.waiting:
            self.waiting.remove(found)


def withdraw_orphans(gate: HookGate) -> list[int]:
    """Withdraw this sandbox's open requests whose waiting process (recorded as `waiter`) is gone.

    For a server outside any sandbox, which has no broker to notice that it died: it
    runs when the next one starts. Inside a sandbox the broker does it at once.
    """
    from loomtui.execution.procs import is_alive

    withdrawn = []
    for record in gate.workspace.store.list_escalations("open"):
        if record.sandbox_id != gate.sandbox_id or record.kind not in WAITING_KINDS:
            continue
        waiter = record.data.get("evidence", {}).get("waiter")
        if not isinstance(waiter, dict) or not isinstance(waiter.get("pid"), int):
            continue
        if waiter["pid"] == os.getpid() or is_alive(waiter["pid"], waiter.get("identity")):
            continue
        give_up(gate, record.id, "the loomtui MCP server that was waiting for it had stopped")
        withdrawn.append(record.id)
    return withdrawn


def settle_unheard(workspace: Workspace, sandbox_id: str) -> list[int]:
    """What an ended agent's broker does when it closes, for one whose broker died with its supervisor
    (killed): its open requests and questions withdrawn (no one waits for their answer; a lead could not
    approve one, its sandbox moved on), its claims still waiting for a tool call released. The ids withdrawn."""
    from loomtui.governance.hooks.gate import HookGate

    waiting = [record.id for record in workspace.store.sandbox_escalations(sandbox_id, status=EscalationStatus.OPEN)
               if record.kind in WAITING_KINDS]
    if not waiting:  # the usual ended task: nothing more read (its unconfirmed claims lapse with their window)
        return []
    gate = HookGate(workspace, sandbox_id, workspace.root)
    abandon_waits(gate, waiting, "its agent ended with its supervisor (killed) before a decision")
    gate.release_unconfirmed(everything=True)
    gate.release_unchanged()
    return waiting


MAX_QUERY_CHARS: Final = 500
MAX_SEARCH_RESULTS: Final = 50


def op_search_context(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    """The team's context (the trusted checkout's, which an isolated agent cannot read) searched for a topic: as
    committed there, for a sandbox's agent (the lead's untracked drafts matching the sources, a note with a
    token, were served to it, the checkout itself hidden from it); a person's own agent reads their files."""
    from loomtui.knowledge.engine import search_sections
    from loomtui.knowledge.sources import load_context

    query = _text(request, "query", None)
    limit = request.get("limit", 5)
    if len(query) > MAX_QUERY_CHARS:
        raise LoomError(f"a query of at most {MAX_QUERY_CHARS} characters: a topic, not a document")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_RESULTS:
        raise LoomError(f"limit: from 1 to {MAX_SEARCH_RESULTS} sections (got {limit!r})")
    root = gate.workspace.root
    context = load_context(root, gate.workspace.load_config().context, at="HEAD" if gate.managed else None)
    return {"results": search_sections(context, query, limit)}


def _text(request: Mapping[str, Any], name: str, limit: int | None = MAX_TEXT_CHARS) -> str:
    """A field of text (at most `limit` characters: a claim's 200 KB target was kept whole in the store and
    the audit log, and a 4 MB one took the broker minutes to resolve)."""
    value = text_field(request, name, limit if limit is not None else sys.maxsize)
    if not value.strip():
        raise LoomError(f"request field {name!r} must be a non-empty string")
    return value


AGENT_OPERATIONS: Final = {
    "my_claims": op_my_claims,
    "conflicts": op_conflicts,
    "claim": op_claim,
    "release": op_release,
    "ask_lead": op_ask_lead,
    "request_status": op_request_status,
    "give_up": op_give_up,
    "search_context": op_search_context,
}
"""Registered into `hooks.OPERATIONS`: asking and cooperating, never deciding."""
