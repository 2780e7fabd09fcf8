"""The demo scenario's narration: what the engines did to its sandboxes, said from the audit log.

Each sandbox keeps the seq of the last entry said about it (`TOLD_KEY`), so an entry
is said once, whichever process says it."""

from __future__ import annotations

from typing import Any

from loomtui.audit import AuditEntry, entry_or_none
from loomtui.coordination.claims import Conflict, Coordinator
from loomtui.coordination.diff import diff_regions
from loomtui.coordination.targets import BadTarget
from loomtui.demo.common import (
    AGENT_KEY,
    RAISED_KEY,
    TOLD_KEY,
    Say,
    agent_names,
    conflict_line,
    demo_sandboxes,
    short_region,
)
from loomtui.errors import LoomError
from loomtui.execution.gitops import Git
from loomtui.execution.lifecycle import EXITED, LIVE, PLANNED
from loomtui.execution.sandboxes import isolation_label
from loomtui.governance.coordinator import governed_coordinator
from loomtui.governance.escalations import EscalationStatus, status_lines
from loomtui.store import SandboxRecord
from loomtui.workflow.steps import AFTER_KEY, dependencies
from loomtui.workspace import Workspace


def audit_after(workspace: Workspace, seq: int) -> list[AuditEntry]:
    """The audit log's entries after `seq`, oldest first (a damaged one skipped)."""
    rows = workspace.store.audit_entries_after(seq)
    return [entry for _seq, _hash, line in rows if (entry := entry_or_none(line)) is not None]


def _about(entry: AuditEntry, ids: set[str]) -> str | None:
    """The demo sandbox an audit entry is about (None for others, and for the scenario's own entries)."""
    if entry.action.startswith("demo."):
        return None
    if entry.subject in ids:
        return entry.subject
    sandbox = entry.details.get("sandbox") if entry.action.startswith("escalation.") else None
    return str(sandbox) if sandbox in ids else None


def untold_entries(workspace: Workspace, sandboxes: dict[str, SandboxRecord]) -> list[tuple[AuditEntry, SandboxRecord]]:
    """The audit entries about the scenario's sandboxes not yet narrated, oldest first."""
    if not sandboxes:
        return []
    told = {r.id: int(r.data.get(TOLD_KEY) or 0) for r in sandboxes.values()}
    by_id = {r.id: r for r in sandboxes.values()}
    found = []
    for entry in audit_after(workspace, min(told.values())):
        sandbox_id = _about(entry, set(by_id))
        if sandbox_id is not None and entry.seq > told[sandbox_id]:
            found.append((entry, by_id[sandbox_id]))
    return found


class _Narrator:
    """Says one audit entry about a demo sandbox as a `[name] ...` line (or nothing)."""

    def __init__(self, workspace: Workspace, say: Say) -> None:
        self.workspace = workspace
        self.say = say
        self.repo = Git(workspace.root)
        self._coordinator: Coordinator | None = None
        self._group: tuple[str, str] | None = None  # (name, action) of the entries gathered into one line
        self._gathered: list[dict[str, Any]] = []

    @property
    def coordinator(self) -> Coordinator:
        if self._coordinator is None:
            self._coordinator = governed_coordinator(self.workspace)
        return self._coordinator

    def tell(self, entry: AuditEntry, record: SandboxRecord) -> None:
        name = str(record.data.get(AGENT_KEY) or record.id)
        action, details = entry.action, entry.details
        if self._group != (name, action):
            self.flush()
        if action in ("claim.added", "claim.released"):  # one line for a task's claims taken or given back
            self._group = (name, action)
            self._gathered.append(details)
        elif action == "sandbox.running":
            self._started(name, record, details)
        elif action == "sandbox.paused":
            self.say(f"[{name}] paused")
        elif action in ("sandbox.exited", "sandbox.failed") and details.get("from") in LIVE:
            self.say(f"[{name}] {_ended_line(self.repo, record, details)}")
            self._signature_check(name, record)
        elif action == "sandbox.failed":
            self.say(f"[{name}] failed: {details.get('reason')}")
        elif action.startswith("gate."):
            summary = f" ({details['summary']})" if details.get("summary") else ""
            self.say(f"[{name}]   gate {details.get('gate')} {action.removeprefix('gate.')}{summary}")
            for test in details.get("failed_tests") or []:
                self.say(f"[{name}]     failed: {test}")
        elif action == "policy.evaluated":
            self._policy(name, details)
        elif action == "escalation.opened":
            self._escalation_opened(name, entry)
        elif action in ("escalation.approve", "escalation.reject", "escalation.override"):
            verb = {"approve": "approves", "reject": "rejects", "override": "overrides"}[action.split(".")[1]]
            why = f" ({details['reason']})" if details.get("reason") else ""
            status = details.get("status")
            now = "still open" if status == EscalationStatus.OPEN else status
            self.say(f"[{name}] {details.get('by')} {verb} escalation #{entry.subject}{why} -> {now}")
        elif action == "escalation.superseded":
            self.say(f"[{name}] escalation #{entry.subject} superseded: new commits are reviewed again")
        elif action == "sandbox.approved":
            self.say(f"[{name}] approved: {details.get('reason')}")
        elif action == "sandbox.merged":
            self._merged(name, record, details)
        elif action == "sandbox.rejected":
            self.say(f"[{name}] rejected, not merged: {details.get('reason')}")
        elif action == "sandbox.archived":
            self.say(f"[{name}] archived")
        elif action == "workflow.step_failed":
            self.say(f"[{name}] step {details.get('step')} failed: {details.get('error')}")

    def flush(self) -> None:
        """Say the gathered claim entries (one line per task), if any."""
        if self._group is None:
            return
        (name, action), gathered = self._group, self._gathered
        self._group, self._gathered = None, []
        if action == "claim.released":
            reasons = sorted({str(d.get("reason")) for d in gathered} - {"sandbox merged"})
            why = f" ({'; '.join(reasons)})" if reasons else ""
            self.say(f"[{name}] claim{'s' if len(gathered) != 1 else ''} released: "
                     f"{', '.join(str(d.get('target')) for d in gathered)}{why}")
            return
        regions = [str(r) for d in gathered for r in d.get("regions") or []]
        shown = (", ".join(short_region(r) for r in regions[:3])
                 + (f" (+{len(regions) - 3})" if len(regions) > 3 else ""))
        conflicts = [c for d in gathered for c in d.get("conflicts") or []]
        self.say(f"[{name}] claimed {shown}" + ("" if conflicts else ": no conflict with a live claim"))
        for conflict in conflicts:
            self.say(f"[{name}] " + conflict_line(self.workspace, conflict, self.coordinator).strip())

    def _started(self, name: str, record: SandboxRecord, details: dict[str, Any]) -> None:
        if details.get("from") == "paused":
            self.say(f"[{name}] resumed")
            return
        base = str(record.data.get("base_sha") or "")
        target = str(record.data.get("target") or record.base_ref)
        merged_from = [other for other in dependencies(self.workspace, record)
                       if other.data.get("merged_commit") == base]
        whose = (f", {' and '.join(agent_names(self.workspace, [o.id for o in merged_from]))}'s merge"
                 if merged_from else "")
        self.say(f"[{name}] agent started ({record.runtime} runtime, {isolation_label(record)}) on {record.branch}, "
                 f"from {target} at {base[:10]}{whose}")

    def _signature_check(self, name: str, record: SandboxRecord) -> None:
        """A signature the agent changed: who uses it, and why none of them meets it (the plan's order)."""
        base = str(record.data.get("base_sha") or "")
        if not base or not record.branch or record.data.get(RAISED_KEY):
            return
        try:
            changed = sorted(c.region_id for c in diff_regions(self.workspace.root, base, record.branch)
                             if c.signature_changed)
        except LoomError as exc:  # its branch or base is gone: say so, the scenario goes on
            self.say(f"[{name}] no signature check: {exc}")
            return
        if not changed:
            return
        workspace = self.workspace
        self.say(f"[{name}] changed the signature of {', '.join(changed)}")
        waiting = [other for other in demo_sandboxes(workspace).values()
                   if other.status == PLANNED and record.id in (other.data.get(AFTER_KEY) or [])]
        raised: list[Conflict] = []
        coordinator = self.coordinator  # an index that cannot be built is an error (`narrate` says it)
        for other in waiting:
            try:
                regions = [r for claim in other.claim_targets for r in coordinator.resolve(claim)]
            except BadTarget:
                continue  # its claim names nothing now; the engine says so when it prepares the task
            found = [c for c in coordinator.check(other.id, regions, signature_changed=changed)
                     if c.severity == "high" and c.sandbox_b == record.id]
            for conflict in found:
                other_name = str(other.data.get(AGENT_KEY))
                self.say(f"[{name}]   HIGH, were {other_name} beside it: dependency conflict with {other_name} "
                         f"(sandbox {other.id}): {self.coordinator.describe_path(conflict.path)}")
            raised += found
        if waiting:
            names = " and ".join(agent_names(workspace, [o.id for o in waiting]))
            self.say(f"[{name}]   {names} {'have' if len(waiting) > 1 else 'has'} not started: "
                     f"{'they start' if len(waiting) > 1 else 'it starts'} from this change once it is in "
                     f"{record.data.get('target') or 'the target branch'}, "
                     "so no agent writes against the old signature (the plan's order is the resolution)")
        else:
            raised = [c for c in self.coordinator.conflicts(signature_changed=changed) if c.severity == "high"]
            for conflict in raised:
                first, second = agent_names(workspace, [conflict.sandbox_a, conflict.sandbox_b])
                self.say(f"[{name}]   HIGH: {conflict.kind} conflict between {first} and {second}: "
                         f"{self.coordinator.describe_path(conflict.path)}")
        data = {"signature_changed": changed, "waiting": [o.id for o in waiting],
                "conflicts": [c.as_dict() for c in raised]}
        workspace.store.update_sandbox(record.id, data={RAISED_KEY: data})
        workspace.record("demo.signature_changed", record.id, data)

    def _policy(self, name: str, details: dict[str, Any]) -> None:
        rules = ", ".join(details.get("rules") or []) or "no rule"
        needs = "; ".join(details.get("needs") or []) if details.get("outcome") == "require" else ""
        outcome = f"{details.get('outcome')} {needs}" if needs else str(details.get("outcome"))
        self.say(f"[{name}]   policy after the gates: {outcome} (risk {details.get('risk')}; {rules})")

    def _escalation_opened(self, name: str, entry: AuditEntry) -> None:
        details = entry.details
        escalation = self.workspace.store.get_escalation(int(entry.subject))
        needs = "; ".join(status_lines(escalation)) if escalation is not None else ""
        head = f"(risk {details.get('risk')}; {', '.join(details.get('rules') or [])})"
        if details.get("kind") == "pre-start":
            self.say(f"[{name}] -> pre-start escalation #{entry.subject} {head}: the agent waits for approval "
                     f"to start ({needs})")
        elif details.get("outcome") == "block":
            self.say(f"[{name}]   -> escalation #{entry.subject} opened {head}: blocked; a lead may override it")
        elif details.get("kind") == "post-gate":
            self.say(f"[{name}]   -> escalation #{entry.subject} opened {head}: waits for approvals ({needs})")
        else:
            self.say(f"[{name}] -> escalation #{entry.subject} opened ({details.get('kind')}) {head}")

    def _merged(self, name: str, record: SandboxRecord, details: dict[str, Any]) -> None:
        commit = str(details.get("commit") or "")
        trailers = self.repo.out("log", "-1", "--format=%(trailers:only,unfold)", commit).strip() if commit else ""
        shown = []
        for line in trailers.splitlines():
            key, _, value = line.partition(": ")
            shown.append(line if key in ("Loom-Policy", "Loom-Approved-by", "Loom-Overridden-by") else key)
        self.say(f"[{name}] merged into {details.get('target')} as {commit[:10]}"
                 + (f" (trailers: {', '.join(shown)})" if shown else ""))
        # Every task that waited, started or not by the time this is said (invoices was left out once
        # the engine had started it).
        waiting = [other for other in demo_sandboxes(self.workspace).values()
                   if record.id in (other.data.get(AFTER_KEY) or [])]
        if waiting:
            self.say(f"[{name}]   {' and '.join(agent_names(self.workspace, [o.id for o in waiting]))} waited for this "
                     "merge: the engine starts them from it")


def _ended_line(repo: Git, record: SandboxRecord, details: dict[str, Any]) -> str:
    started, ended = record.data.get("started_at"), record.data.get("ended_at")
    took = f" after {ended - started:.1f}s" if isinstance(started, float) and isinstance(ended, float) else ""
    base = record.data.get("base_sha")
    count = repo.out("rev-list", "--count", f"{base}..{record.branch}").strip() if base else "?"
    how = (f"exited {details.get('exit_code')}" if details.get("to") == EXITED
           else f"failed ({details.get('reason') or record.data.get('error')})")
    return f"agent {how}{took}, {count} commit{'s' if count != '1' else ''} on {record.branch}"


def narrate(workspace: Workspace, say: Say) -> None:
    """Say every audit entry about the scenario's sandboxes not yet said, and remember how far."""
    sandboxes = demo_sandboxes(workspace)
    untold = untold_entries(workspace, sandboxes)
    if not untold:
        return
    narrator = _Narrator(workspace, say)
    told: dict[str, int] = {}
    for entry, record in untold:
        try:
            narrator.tell(entry, workspace.store.get_sandbox(record.id) or record)
        except LoomError as exc:  # say so and go on: one entry never holds up the rest
            say(f"[{record.data.get(AGENT_KEY) or record.id}] ({entry.action}: {exc})")
        told[record.id] = entry.seq
    narrator.flush()
    for sandbox_id, seq in told.items():
        workspace.store.update_sandbox(sandbox_id, data={TOLD_KEY: seq})
