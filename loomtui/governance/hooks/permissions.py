"""An agent's permission requests: who answers one, opening it, where it stands, withdrawing it.

A runtime's permission prompt (Claude Code's PermissionRequest hook, or loomtui's MCP
permission tool) becomes an escalation of kind `permission-request` that a person decides
in loomtui; the agent only opens, polls and withdraws its own, through its sandbox's
`HookGate` (`loomtui.governance.hooks.gate`), which calls these. A claim made for a tool
call that waits on such a request is kept until it is decided (`asks_for`, `decided_at`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from loomtui.errors import LoomError, both_ends, escape_controls
from loomtui.governance.escalations import CLEARED, EscalationStatus, open_escalation
from loomtui.governance.hooks.claude import HookEvent, HookInputError, edit_targets
from loomtui.governance.hooks.requests import int_field, named_paths
from loomtui.governance.policy import AppliedRule, ChangeFacts, Evaluation, Policy, Requirement, evaluate
from loomtui.store import ClaimRecord, EscalationRecord

if TYPE_CHECKING:  # the gate calls these: it imports this module, not the reverse
    from loomtui.governance.hooks.gate import HookGate

PERMISSION_KIND: Final = "permission-request"
QUESTION_KIND: Final = "question"
"""An agent's yes/no question to a lead (`ask_lead`): it waits on it as on a permission request."""
MAX_OPEN_REQUESTS: Final = 20
"""Unanswered permission requests one sandbox may hold: each is a row in the shared store and a line in
the leads' queue, so an agent cannot bury the queue (or the disk) under its own."""
MAX_ASKS_PER_HOUR: Final = 120
"""Requests and questions one sandbox may open in an hour, answered, withdrawn or not: opening and
withdrawing at once in a loop grew the shared store by 1.4 GB a minute. No person answers more."""
MAX_FIELD_CHARS: Final = 64_000
MAX_FIELDS: Final = 50
MAX_KEY_CHARS: Final = 200
MAX_EVIDENCE_CHARS: Final = 128_000
"""All of one request's fields together. A tool call larger than these is refused, not cut short for the
record: an approval lets the whole call run, and a lead approved a command whose `curl ... | sh` past the
first 4,000 characters was nowhere on the screen."""
REQUEST_EXTRAS: Final = ("tool_use_id", "via", "waiter")
"""What of a hook's payload beside the tool call a request keeps: ids and where it came from, each of its
shape (`_extra_kept`). Not the MCP server's `asked_because` (that server runs in the sandbox: any text the
agent sent as it read as loomtui's own verdict beside `curl ... | sh`), nor any other key."""
_TOKEN: Final = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
_DETAIL_KEY: Final = {"Bash": "command", "Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path",
                      "Read": "file_path", "NotebookEdit": "notebook_path", "WebFetch": "url", "Grep": "pattern",
                      "Glob": "pattern"}
"""What the queue's line shows of each tool's input: the field the tool acts on (a Write's file, not a
`command` the agent added beside it to make the line read as something else)."""


def permission_evaluation(policy: Policy, facts: ChangeFacts, asked: str = "permission request") -> Evaluation:
    """Who answers an agent's permission request (or what else it `asked`: a question): the claim-stage
    rules for the files it names, else the policy's default approvers (a prompt is always a person's call)."""
    evaluation = evaluate(policy, facts)
    if evaluation.outcome == "block" or evaluation.requirements:
        return evaluation
    spec = policy.default.approvals
    groups = spec.groups if policy.default.decision == "require" and spec.groups else policy.override_groups
    count = spec.count if groups == spec.groups else 1
    if not groups:
        rule = AppliedRule("default", "block", None, f"the policy names no one who may answer a {asked}")
        return Evaluation("claim", "block", evaluation.risk, (*evaluation.applied, rule), ())
    eligible = frozenset().union(*(policy.groups.get(name, frozenset()) for name in groups))
    requirement = Requirement("default", groups, count, eligible)
    rule = AppliedRule("default", "require", None, f"an agent's {asked} is a person's call",
                       (requirement,))
    return Evaluation("claim", "require", evaluation.risk, (*evaluation.applied, rule), (requirement,),
                      evaluation.notes)


def policy_refusal(evaluation: Evaluation) -> str:
    """What an agent is told when the policy blocks what it asked: `policy: <the rule's reason>`."""
    return "policy: " + evaluation.explanation()[0].split(": ", 1)[-1]


def open_permission_request(gate: HookGate, tool_name: str, tool_input: Mapping[str, Any], *,
                            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Open an escalation for a lead to answer for `gate`'s sandbox; a policy block is answered at once."""
    from loomtui.governance.gitfacts import branch_head

    paths, regions = _request_scope(gate, tool_name, tool_input)
    facts = ChangeFacts(stage="claim", paths=tuple(paths), regions=tuple(regions), runtime=gate.runtime)
    evaluation = permission_evaluation(gate.policy(), facts)
    tool_name = tool_name[:200]
    kept = bounded(tool_input)
    # The agent's `extra` first: it may add to the evidence, never stand in for what it asks.
    extras = kept_extras(extra)
    evidence = {**bounded(extras), "tool_name": tool_name, "tool_input": kept}
    message: str | None
    if kept != dict(tool_input):
        message = _too_large(tool_name, tool_input)
    else:
        message = policy_refusal(evaluation) if evaluation.outcome == "block" else too_many_asks(gate)
    if message is not None:
        gate.workspace.record("hook.permission", gate.sandbox_id,
                              {"tool": tool_name, "decision": "deny", "reason": message})
        if extras.get("tool_use_id"):
            gate.release_refused(extras["tool_use_id"], message)
        return {"decision": "deny", "message": message}
    commit = (branch_head(gate.workspace.root, gate.branch) if gate.branch else None) or ""
    summary = f"{gate.sandbox_id} asks: {_describe_tool(tool_name, tool_input)}"
    record = open_escalation(gate.workspace, PERMISSION_KIND, evaluation, facts, sandbox_id=gate.sandbox_id,
                             commit=commit, summary=summary, evidence=evidence)
    return {"id": record.id, "status": record.status}


def request_status(gate: HookGate, escalation_id: Any) -> dict[str, Any]:
    """Where `gate`'s sandbox's permission request stands, and what it means for the agent."""
    return _status(_own_request(gate, escalation_id))


def withdraw_request(gate: HookGate, escalation_id: Any, reason: str) -> dict[str, Any]:
    """Close an unanswered request (the agent stopped waiting); a decided one is left as it is."""
    store = gate.workspace.store
    with store.transaction():
        record = _own_request(gate, escalation_id)
        if record.status == EscalationStatus.OPEN:
            history = [*record.data.get("history", []),
                       {"at": time.time(), "event": "withdrawn", "by": gate.sandbox_id, "reason": reason}]
            record = store.update_escalation(record.id, status="withdrawn", data={"history": history})
            gate.workspace.record("escalation.withdrawn", gate.sandbox_id, {"escalation": record.id, "reason": reason})
    return _status(record)


def too_many_asks(gate: HookGate) -> str | None:
    """Why `gate`'s sandbox may not ask a person anything more now (MAX_OPEN_REQUESTS of its requests
    and questions are open, or MAX_ASKS_PER_HOUR were opened in the last hour), or None."""
    asks = gate.workspace.store.sandbox_escalations(gate.sandbox_id, (PERMISSION_KIND, QUESTION_KIND))
    if sum(1 for e in asks if e.status == EscalationStatus.OPEN) >= MAX_OPEN_REQUESTS:
        return (f"{MAX_OPEN_REQUESTS} of this sandbox's requests and questions wait for a person already; "
                "wait for their answers before asking again")
    hour_ago = time.time() - 3600
    if sum(1 for e in asks if e.created >= hour_ago) >= MAX_ASKS_PER_HOUR:
        return (f"this sandbox opened {MAX_ASKS_PER_HOUR} requests and questions in the last hour; no person "
                "answers more: go on with what needs no one's approval")
    return None


def sandbox_requests(gate: HookGate) -> list[EscalationRecord]:
    """`gate`'s sandbox's permission requests, oldest first."""
    return gate.workspace.store.sandbox_escalations(gate.sandbox_id, (PERMISSION_KIND,))


def asks_for(request: EscalationRecord, claim: ClaimRecord, waiting: Sequence[str]) -> bool:
    """Whether a permission request is about the tool call a provisional claim waits for: by its
    tool_use_id, or (a prompt that names none) by the files it would write."""
    evidence = request.data.get("evidence") or {}
    tool_use_id = evidence.get("tool_use_id") if isinstance(evidence, dict) else None
    if tool_use_id:
        return tool_use_id in waiting
    paths = set((request.data.get("facts") or {}).get("paths") or ())
    return any(region.split("::")[0] in paths for region in claim.region_ids)


def decided_at(request: EscalationRecord) -> float:
    """When a person decided a request (its last history entry), else when it last changed."""
    history = request.data.get("history") or []
    times = [h["at"] for h in history if isinstance(h, dict) and isinstance(h.get("at"), (int, float))]
    return max([request.updated, *times]) if times else request.updated


def _request_scope(gate: HookGate, tool_name: str, tool_input: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The files a request's tool call writes, and the regions its lines are in: what an approval grants later
    edits (a comment added at a file's top granted every later edit of the file)."""
    event = HookEvent("PreToolUse", "", gate.tree, tool_name, tool_input)
    try:
        targets = edit_targets(event) or []
    except HookInputError:
        targets = []  # a tool we do not parse: the request is about the tool, not files
    named = set(named_paths([t.path for t in targets], "tool_input"))
    paths: set[str] = set()
    regions: list[str] = []
    for target in targets:
        rel = gate.relative(target.path) if target.path in named else None
        if not isinstance(rel, str):
            continue
        paths.add(rel)
        try:
            found = gate.regions_of(rel, target.lines)
        except LoomError:
            found = (rel,)
        regions.extend(region for region in found if region not in regions)
    return sorted(paths), regions


def _own_request(gate: HookGate, escalation_id: Any) -> EscalationRecord:
    record = gate.workspace.store.get_escalation(int_field(escalation_id, "id"))
    if record is None or record.sandbox_id != gate.sandbox_id or record.kind != PERMISSION_KIND:
        raise LoomError(f"no permission request #{escalation_id} of sandbox {gate.sandbox_id}")
    return record


def _status(record: EscalationRecord) -> dict[str, Any]:
    if record.status in CLEARED:
        decision, message = "allow", f"approved in loomtui (escalation #{record.id})"
    elif record.status == EscalationStatus.OPEN:
        decision, message = None, f"waiting for a decision on escalation #{record.id}"
    else:
        why = next((h.get("reason") for h in reversed(record.data.get("history", [])) if h.get("reason")), "")
        decision = "deny"
        message = f"escalation #{record.id} was {record.status}" + (f": {why}" if why else "")
    return {"id": record.id, "status": record.status, "decision": decision, "message": message}


def _describe_tool(tool_name: str, tool_input: Mapping[str, Any]) -> str:
    """The queue's one line for a request: the tool and what it acts on, every control character
    (a newline that would fake a second line, an escape sequence) shown escaped."""
    if tool_name in _DETAIL_KEY:
        detail = tool_input.get(_DETAIL_KEY[tool_name])
        details = [detail] if isinstance(detail, str) else []
    else:  # a tool of no known shape: each field it may act on, named (a `file_path` hid its `command`)
        details = [f"{key}={tool_input[key]}" for key in ("command", "file_path", "notebook_path", "url", "pattern")
                   if isinstance(tool_input.get(key), str)]
    # The tool's name escaped as it is (a newline in it is `\n`, not a space before a fake field); in
    # what it acts on whitespace runs are made one space, and a long one keeps its end: 3,000 spaces
    # after a harmless `git status` hid the `; sed -i ... payments/ledger.py` that followed them.
    name = escape_controls(tool_name[:60])
    text = " ".join([name, *(escape_controls(" ".join(d.split())) for d in details)])
    return both_ends(text, 160)


def kept_extras(extra: object) -> dict[str, Any]:
    """What of an agent's `extra` is kept with what it asks: the ids and names `_extra_kept` allows; the rest is
    the agent's own words dressed as loomtui's fields (`answer: pre-approved by mia on the phone`)."""
    return {key: value for key, value in extra.items() if _extra_kept(key, value)} if isinstance(extra, dict) else {}


def _extra_kept(key: str, value: Any) -> bool:
    """Whether a payload's `key` is kept beside the request: an id or a name as a token (`via: "loomtui:
    read-only, safe"` and `tool_use_id: {"Approved by": "lead"}` were shown as fields), the MCP server's
    `waiter` as a process id and its start."""
    if key == "waiter":
        return isinstance(value, dict) and set(value) <= {"pid", "identity"} and type(value.get("pid")) is int \
            and isinstance(value.get("identity"), (str, int, float, type(None)))
    return key in REQUEST_EXTRAS and isinstance(value, str) and bool(_TOKEN.fullmatch(value))


def _as_text(value: Any) -> str:
    """A field of a tool's input as a person reads it, to be measured: a string as it is, any other value as
    JSON of the characters as they are (escaped, 3,000 CJK characters in a MultiEdit measured 18,000)."""
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _too_large(tool_name: str, tool_input: Mapping[str, Any]) -> str:
    """What an agent is told of a tool call too large to put to a person: which field, how large, and a
    way on (a Write in parts) rather than "make it smaller", which invites cutting the file."""
    sizes = {str(key): len(_as_text(value)) for key, value in tool_input.items()}
    largest = max(sizes, key=sizes.__getitem__, default="")
    if any(len(key) > MAX_KEY_CHARS for key in sizes):  # a name is shown whole too
        what = f"a field's name is past the {MAX_KEY_CHARS} characters a person is shown"
    elif len(sizes) > MAX_FIELDS:
        what = f"its {len(sizes)} fields are more than the {MAX_FIELDS} a person is shown"
    elif sizes.get(largest, 0) > MAX_FIELD_CHARS:
        what = (f"its `{largest[:40]}` holds {sizes[largest]:,} characters, past the {MAX_FIELD_CHARS:,} a person "
                "is shown")
    else:
        what = f"it holds {sum(sizes.values()):,} characters, past the {MAX_EVIDENCE_CHARS:,} a person is shown"
    way = ("write the file in parts: a first Write, then Edits that add the rest (each is asked for as it comes)"
           if tool_name in ("Write", "MultiEdit", "NotebookEdit") else "split it into smaller steps, each asked for")
    return f"this {tool_name[:60]} call cannot be put to a person whole ({what}), and no one approves what they " \
           f"were not shown: {way}"


def bounded(value: Mapping[str, Any]) -> dict[str, Any]:
    """Tool input for the record, of a size the store and the queue can hold: at most MAX_FIELDS fields,
    each at most MAX_FIELD_CHARS (a long string, or a nested value as JSON, cut short), MAX_EVIDENCE_CHARS
    in all."""
    kept: dict[str, Any] = {}
    room = MAX_EVIDENCE_CHARS
    fields = list(value.items())
    for number, (key, item) in enumerate(fields[:MAX_FIELDS]):
        if room <= 0:
            kept["..."] = f"{len(fields) - number} more fields left out (over {MAX_EVIDENCE_CHARS:,} characters)"
            return kept
        text = _as_text(item)
        limit = min(MAX_FIELD_CHARS, room)
        if len(text) > limit:
            item = text[:limit] + f"... ({len(text)} chars)"
        room -= min(len(text), limit)
        kept[str(key)[:MAX_KEY_CHARS]] = item
    if len(fields) > MAX_FIELDS:
        kept["..."] = f"{len(fields) - MAX_FIELDS} more fields left out"
    return kept
