"""The claim gate: one sandbox's answers to its agent's hook requests, and the request vocabulary.

`HookGate` answers for one sandbox, against the store, the audit log and the
policy of the trusted checkout. It runs in the sandbox's supervisor (reached
through `loomtui.governance.broker`, where it stays warm: the coordination index
is built once and patched file by file as the agent edits) or, outside any
sandbox, in the hook process itself. `dispatch` is the whole request vocabulary:
nothing in it decides an escalation, so an agent can ask, never approve.

A claim an edit hook makes is provisional until the edit is seen to happen: the
tool call's PostToolUse (`confirm_tool_use`) or a commit of the file
(`check_commit`) confirms it; one still unconfirmed `confirm_window` seconds
later (`coordination.confirm_seconds`, or `$LOOM_CLAIM_CONFIRM_S`), or when the
agent ends, is released ("the edit it was claimed for never happened"), so a
refused tool call does not keep other sandboxes out. A call waiting on a person
(its permission request open) keeps its claims until they decide: approved, the
window starts again from the decision; rejected or withdrawn, the claims go.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

from loomtui.errors import LoomError
from loomtui.execution.isolation import ISOLATION_BWRAP, PRIVATE_TMP
from loomtui.execution.sandboxes import HOOK_SETTINGS_PATH, sandbox_paths
from loomtui.governance.escalations import CLEARED, EscalationStatus
from loomtui.governance.hooks.claude import HookEvent, HookInputError, edit_targets
from loomtui.governance.hooks.edits import merge_ranges
from loomtui.governance.policy import (
    AppliedRule,
    ChangeFacts,
    Evaluation,
    Policy,
    Requirement,
    evaluate,
    load_policy,
)
from loomtui.store import ClaimRecord, EscalationRecord
from loomtui.workspace import Workspace

if TYPE_CHECKING:  # the coordination engine loads on the first edit check, not with the supervisor
    from loomtui.config import LoomConfig
    from loomtui.coordination.claims import Coordinator

SETTINGS_PATH: Final = HOOK_SETTINGS_PATH
PERMISSION_KIND: Final = "permission-request"
GRANTING_KINDS: Final = ("pre-start", PERMISSION_KIND)
DEFAULT_CONFIRM_S: Final = 120.0
"""How long a claim made for a tool call waits for the call to happen (its PostToolUse)."""
NEVER_HAPPENED: Final = "the edit it was claimed for never happened"
REINDEX_AFTER: Final = 64
"""Files patched into the warm index before it is rebuilt whole (cheap: the index cache)."""
_AWAITING: Final = re.compile(r" \(awaiting tool call ([^()]*)\)$")


@dataclass(frozen=True)
class Answer:
    """One answer to an agent: allow, ask a person, deny, or none (not ours to judge)."""

    decision: str  # allow | ask | deny | none
    reason: str
    regions: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "regions": list(self.regions)}


def awaiting(claim: ClaimRecord) -> list[str]:
    """The tool calls a provisional claim waits for; [] once confirmed (or never provisional)."""
    found = _AWAITING.search(claim.reason)
    return found.group(1).split() if found else []


# -- the gate: one sandbox's answers ------------------------------------------------------


class HookGate:
    """Answers one sandbox's hook requests from the store and the trusted checkout's policy.

    `workspace` is the trusted checkout (its policy and config count, not a copy
    the agent could edit); `tree` is the worktree the agent writes in, whose
    current code maps lines to regions.
    """

    def __init__(self, workspace: Workspace, sandbox_id: str, tree: Path, *,
                 confirm_window: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.workspace = workspace
        self.sandbox_id = sandbox_id
        self.tree = tree.resolve()
        self._confirm_window = confirm_window
        self.clock = clock
        self._coordinator: Coordinator | None = None
        self._index_settings: tuple[Any, ...] | None = None
        self._patched = 0
        self._loaded: dict[str, tuple[tuple[Any, ...], Any]] = {}
        record = workspace.store.get_sandbox(sandbox_id)
        self.runtime = record.runtime if record else None
        self.branch = record.branch if record else None
        self.managed = record is not None  # a loom sandbox: its hook settings are ours
        self.scratch = self._scratch_dirs(record)

    def _scratch_dirs(self, record: Any) -> tuple[Path, ...]:
        """Where an agent may write outside its worktree: its own temporary directory only."""
        if record is None:
            return (Path(tempfile.gettempdir()).resolve(),)
        if record.isolation == ISOLATION_BWRAP:
            return (PRIVATE_TMP,)  # a private tmpfs inside the sandbox
        return (sandbox_paths(self.workspace.paths, record.id).tmp.resolve(),)

    # -- plumbing ------------------------------------------------------------------------

    def config(self) -> LoomConfig:
        """The trusted checkout's loom.yaml, read again only when the file changes."""
        return self._cached("config", (self.workspace.root / ".loom" / "loom.yaml",), self.workspace.load_config)

    @property
    def confirm_window(self) -> float:
        """Seconds a provisional claim waits for its tool call: as given, else the config's
        `coordination.confirm_seconds` (a broken config: the default)."""
        if self._confirm_window is not None:
            return self._confirm_window
        try:
            return self.config().coordination.confirm_seconds
        except LoomError:
            return DEFAULT_CONFIRM_S

    def policy(self) -> Policy:
        """The trusted checkout's policy, read again only when it (or a CODEOWNERS) changes."""
        config = self.config()
        root = self.workspace.root
        watched = (root / config.policy, root / "CODEOWNERS", root / ".github" / "CODEOWNERS",
                   root / "docs" / "CODEOWNERS")
        return self._cached(f"policy:{config.policy}", watched, lambda: load_policy(root, config.policy))

    def _cached(self, key: str, files: Sequence[Path], load: Callable[[], Any]) -> Any:
        stamp = tuple(_stamp(f) for f in files)
        held = self._loaded.get(key)
        if held is not None and held[0] == stamp:
            return held[1]
        value = load()
        self._loaded[key] = (stamp, value)
        return value

    def warm(self) -> None:
        """Load now what the first request needs (config, policy, the index, the diff parser), so the
        agent's first hook is answered at once; it writes nothing."""
        import loomtui.coordination.signatures  # noqa: F401  (libcst: 0.4 s, for the first commit's diff)

        self.policy()
        self.coordinator()

    def coordinator(self, fresh: Sequence[str] = ()) -> Coordinator:
        """The coordination engine over the worktree's index, kept warm between requests.

        The index is built once (from the shared index cache); afterwards only the
        files in `fresh` are looked at again, and each one the agent changed is
        re-parsed and patched in. After REINDEX_AFTER patches (or a change of the
        coordination settings) the index is rebuilt whole, which resolves again the
        dependencies a patch leaves as they were.
        """
        from loomtui.coordination.index import build_index
        from loomtui.governance.coordinator import governed_coordinator

        config = self.config().coordination
        settings = (tuple(config.include), tuple(config.exclude), config.dependency_hops, config.lease_seconds)
        if self._coordinator is None or settings != self._index_settings or self._patched >= REINDEX_AFTER:
            index = build_index(self.tree, cache_dir=self.workspace.paths.state_dir / "index-cache",
                                include=config.include, exclude=config.exclude)
            self._coordinator = governed_coordinator(self.workspace, index)
            self._index_settings, self._patched = settings, 0
            return self._coordinator
        coordinator = self._coordinator
        for rel in fresh:
            if coordinator.index.refresh_file(rel, config.include, config.exclude):
                coordinator.index_changed()
                self._patched += 1
        return coordinator

    def _record(self, action: str, details: dict[str, Any]) -> None:
        self.workspace.record(action, self.sandbox_id, details)

    def relative(self, path: str) -> str | Answer:
        """The repository path of a file the agent writes, or the answer for one outside it."""
        absolute = Path(os.path.normpath(self.tree / path))
        resolved = absolute.resolve()
        if resolved.is_relative_to(self.tree) and resolved != self.tree:
            rel = PurePosixPath(resolved.relative_to(self.tree).as_posix())
            if rel.parts[0] == ".git":
                return Answer("deny", f"{path}: git's own files are not for agents to edit")
            if self.managed and str(rel) == SETTINGS_PATH:
                return Answer("deny", f"{SETTINGS_PATH} holds this sandbox's loomtui hooks; "
                                      "it is not for the agent to change")
            return str(rel)
        if absolute.is_relative_to(self.tree):
            return Answer("deny", f"{path} leads out of the worktree through a symlink")
        # The innermost enclosing place decides: a sandbox's scratch dir may sit in the git dir,
        # and a checkout may sit under /tmp.
        guarded = (self.workspace.root.resolve(), self.workspace.paths.common_dir.resolve())
        places = [(len(root.parts), False) for root in guarded if resolved.is_relative_to(root)]
        places += [(len(tmp.parts), True) for tmp in self.scratch
                   if resolved.is_relative_to(tmp) and resolved != tmp]
        if places and max(places)[1]:
            return Answer("none", f"{path} is this sandbox's scratch space")
        return Answer("deny", f"{path} is outside this sandbox's worktree {self.tree}; an agent writes "
                              "only there (and in its temporary directory)")

    # -- requests ------------------------------------------------------------------------

    def check_edit(self, path: str, lines: Any = None, *, tool: str = "") -> Answer:
        """Allow inside own claims, claim free regions, deny others' regions or a policy block."""
        rel = self.relative(path)
        if isinstance(rel, Answer):
            if rel.decision != "none":
                self._record("hook.edit", {"tool": tool, "path": path, **rel.as_dict()})
            return rel
        ranges = _parse_ranges(lines)
        answer = self._edit_answer(rel, ranges)
        self._record("hook.edit", {"tool": tool, "path": rel, "lines": ranges, **answer.as_dict()})
        return answer

    def check_tool(self, tool: str, targets: Sequence[Mapping[str, Any]], *, tool_use_id: str = "") -> Answer:
        """The one answer to a tool call that writes these files, exactly as the hook gives it.

        Deny when any file is refused (and hand back what this call claimed), ask when
        the policy wants a person for any, else allow; `none` (no opinion: the runtime's
        own permission rules decide) for a command, or when every file is scratch space.
        Claims made for a call with a `tool_use_id` stay provisional until it happens.
        """
        started = time.perf_counter()
        self.release_unconfirmed()
        own_before = {c.id for c in self.workspace.store.live_claims(self.sandbox_id)}
        pending = f" (awaiting tool call {tool_use_id})" if tool_use_id else ""
        checked: list[tuple[str, list[tuple[int, int]] | None, Answer]] = []
        for target in targets:
            path = _str(target, "path")
            rel = self.relative(path)
            if isinstance(rel, Answer):
                checked.append((path, None, rel))
                continue
            ranges = _parse_ranges(target.get("lines"))
            checked.append((rel, ranges, self._edit_answer(rel, ranges, pending=pending)))
        answer = _combined(tool, [a for _p, _l, a in checked])
        if answer.decision == "deny":
            self._release_new(own_before, "the edit it was claimed for was refused")
        elif tool_use_id:
            self._await_also(tool_use_id, answer.regions)
        if any(a.decision != "none" for _p, _l, a in checked):
            details: dict[str, Any] = {"tool": tool, "tool_use_id": tool_use_id or None, **answer.as_dict()}
            if len(checked) == 1:
                details.update(path=checked[0][0], lines=checked[0][1])
            else:
                details["targets"] = [{"path": p, "lines": lines, **a.as_dict()} for p, lines, a in checked]
            details["ms"] = round((time.perf_counter() - started) * 1000, 1)  # the gate's part of the hook's wait
            self._record("hook.edit", details)
        return answer

    def _edit_answer(self, rel: str, ranges: list[tuple[int, int]] | None, *, pending: str = "") -> Answer:
        if ranges == []:
            return Answer("allow", f"{rel}: the edit changes no line")
        try:
            coordinator = self.coordinator(fresh=(rel,))
            regions = self._regions(coordinator, rel, ranges)
            evaluation = evaluate(self.policy(), ChangeFacts(stage="claim", paths=(rel,), regions=regions,
                                                             runtime=self.runtime))
            if evaluation.outcome == "block":
                return Answer("deny", f"policy: {_headline(evaluation)}", regions)
            claimed = self._claim(coordinator, rel, ranges, pending)
        except LoomError as exc:  # fail closed: an edit that cannot be checked is not allowed
            return Answer("deny", f"cannot check {rel}: {exc}")
        if isinstance(claimed, Answer):
            return Answer(claimed.decision, claimed.reason, regions)
        done = "; ".join(claimed) if claimed else "inside this sandbox's claims"
        if evaluation.outcome == "require" and not self._granted(regions):
            needs = "; ".join(f"{r.rule} needs {r.describe()}" for r in evaluation.requirements)
            return Answer("ask", f"policy requires approval before changing {rel}: {needs} ({done})", regions)
        return Answer("allow", done, regions)

    def _claim(self, coordinator: Coordinator, rel: str, ranges: list[tuple[int, int]] | None,
               pending: str = "") -> list[str] | Answer:
        """Claim what each range needs; all or nothing, so a refusal hands back the rest."""
        held_before = {claim.id for claim in self.workspace.store.live_claims(self.sandbox_id)}
        claimed: list[str] = []
        spans: list[tuple[int, int] | None] = list(ranges) if ranges is not None else [None]
        for span in spans:
            decision = coordinator.check_edit(self.sandbox_id, rel, span,
                                              reason=f"claimed by edit of {rel}{pending}")
            if decision.verdict == "deny":
                self._release_new(held_before, "the edit it was claimed for was refused")
                return Answer("deny", decision.reason)
            if decision.verdict == "claim":
                claimed.append(decision.reason)
        return claimed

    # -- provisional claims: confirmed by what really happened ----------------------------

    def _release_new(self, held_before: set[int], reason: str) -> None:
        """Release this sandbox's claims made since `held_before`, each with an audit entry."""
        for claim in self.workspace.store.live_claims(self.sandbox_id):
            if claim.id not in held_before:
                self._release(claim, reason)

    def _release(self, claim: ClaimRecord, reason: str, **details: Any) -> None:
        with self.workspace.store.transaction():
            if self.workspace.store.release_claim(claim.id, reason):
                self._record("claim.released", {"claim": claim.id, "target": claim.target, "reason": reason,
                                                **details})

    def _await_also(self, tool_use_id: str, regions: Sequence[str]) -> None:
        """A call inside claims still waiting for an earlier call confirms them too when it happens."""
        from loomtui.coordination.claims import ancestors

        wanted = {a for rid in regions for a in (rid, *ancestors(rid))}
        for claim in self.workspace.store.live_claims(self.sandbox_id):
            waiting = awaiting(claim)
            if waiting and tool_use_id not in waiting and wanted & set(claim.region_ids):
                reason = _AWAITING.sub("", claim.reason)
                self.workspace.store.set_claim_reason(
                    claim.id, f"{reason} (awaiting tool call {' '.join([*waiting, tool_use_id])})")

    def confirm_tool_use(self, tool_use_id: str, tool: str = "") -> list[int]:
        """The tool call happened (its PostToolUse arrived): its claims hold for their whole lease."""
        self.release_unconfirmed()
        return self._confirm([c for c in self.workspace.store.live_claims(self.sandbox_id)
                              if tool_use_id in awaiting(c)], {"tool": tool, "tool_use_id": tool_use_id})

    def _confirm(self, claims: Sequence[ClaimRecord], details: dict[str, Any]) -> list[int]:
        if not claims:
            return []
        with self.workspace.store.transaction():
            for claim in claims:
                self.workspace.store.set_claim_reason(claim.id, _AWAITING.sub("", claim.reason))
            self._record("claim.confirmed", {"claims": [c.id for c in claims], **details})
        return [c.id for c in claims]

    def release_unconfirmed(self, *, everything: bool = False) -> list[int]:
        """Release this sandbox's claims whose tool call never happened within the confirm window
        (all of them with `everything`: the agent has ended).

        A claim whose call waits on a person (an open permission request for it) is kept; once
        approved it has the window again from the decision; rejected or withdrawn, it goes.
        """
        window = self.confirm_window
        now = self.clock()
        released = []
        asked: list[EscalationRecord] | None = None
        for claim in self.workspace.store.live_claims(self.sandbox_id):
            waiting = awaiting(claim)
            if not waiting or (not everything and claim.created > now - window):
                continue
            reason = NEVER_HAPPENED
            details: dict[str, Any] = {"tool_use_id": " ".join(waiting)}
            if not everything:
                if asked is None:  # looked up only when a claim's window has closed
                    asked = self._permission_requests()
                requests = [e for e in asked if _asks_for(e, claim, waiting)]
                if any(e.status == EscalationStatus.OPEN for e in requests):
                    continue  # a person has not decided yet
                approved = [e for e in requests if e.status in CLEARED]
                if approved and max(_decided_at(e) for e in approved) > now - window:
                    continue  # approved: the call happens now, its PostToolUse confirms
                if requests and not approved:
                    last = requests[-1]
                    reason = f"the edit it was claimed for was refused (escalation #{last.id} {last.status})"
                    details["escalation"] = last.id
            self._release(claim, reason, **details)
            released.append(claim.id)
        return released

    def _permission_requests(self) -> list[EscalationRecord]:
        """This sandbox's permission requests, oldest first."""
        return [e for e in self.workspace.store.list_escalations()
                if e.sandbox_id == self.sandbox_id and e.kind == PERMISSION_KIND]

    def _regions(self, coordinator: Coordinator, rel: str,
                 ranges: list[tuple[int, int]] | None) -> tuple[str, ...]:
        if ranges is None:
            return (rel,)
        found: list[str] = []
        for start, end in ranges:
            try:
                ids = coordinator.resolve(f"{rel}:{start}-{end}")
            except LoomError:
                ids = [rel]  # gone meanwhile, or a name the target syntax cannot spell
            found.extend(i for i in ids if i not in found)
        return tuple(found)

    def _granted(self, regions: Sequence[str]) -> bool:
        """Whether people already approved this sandbox changing these regions (before it
        started, or on an earlier permission request): no need to ask again."""
        from loomtui.coordination.claims import ancestors, split_id

        scopes = [e.data.get("facts") or {} for status in CLEARED
                  for e in self.workspace.store.list_escalations(status)
                  if e.sandbox_id == self.sandbox_id and e.kind in GRANTING_KINDS]

        def covered(region: str, facts: Mapping[str, Any]) -> bool:
            approved = set(facts.get("regions") or ())
            whole_files = set(facts.get("paths") or ()) - {split_id(r)[0] for r in approved}
            return region in approved or bool(set(ancestors(region)) & approved) \
                or split_id(region)[0] in whole_files

        return bool(regions) and all(any(covered(r, facts) for facts in scopes) for r in regions)

    def check_commit(self, paths: Sequence[str], regions: Sequence[str],
                     files: Sequence[Mapping[str, Any]] = ()) -> Answer:
        """Refuse a staged change on regions another sandbox holds, or one the policy blocks.

        `files` ({path, old, new}: a Python file's text at HEAD and as staged) add the
        regions the change touches in them. An accepted commit confirms the sandbox's
        provisional claims on its files: those edits did happen.
        """
        self.release_unconfirmed()
        try:
            regions = [*regions, *_staged_regions(files)]
            coordinator = self.coordinator()
            blocking = [c for c in coordinator.check(self.sandbox_id, list(regions)) if c.blocking]
            evaluation = evaluate(self.policy(), ChangeFacts(stage="claim", paths=tuple(paths),
                                                             regions=tuple(regions), runtime=self.runtime))
        except LoomError as exc:
            answer = Answer("deny", f"cannot check the commit: {exc}")
        else:
            if blocking:
                answer = Answer("deny", blocking[0].explanation, tuple(regions))
            elif evaluation.outcome == "block":
                answer = Answer("deny", f"policy: {_headline(evaluation)}", tuple(regions))
            else:
                committed = set(paths)
                self._confirm([c for c in self.workspace.store.live_claims(self.sandbox_id)
                               if awaiting(c) and any(r.split("::")[0] in committed for r in c.region_ids)],
                              {"commit": sorted(committed)})
                return Answer("allow", "no region of this commit is held by another sandbox", tuple(regions))
        # Only refusals are recorded: an accepted commit is in git's own history.
        self._record("hook.commit_refused", {"paths": list(paths), **answer.as_dict()})
        return answer

    def open_permission_request(self, tool_name: str, tool_input: Mapping[str, Any], *,
                                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Open an escalation for a lead to answer; a policy block is answered at once."""
        from loomtui.governance.escalations import open_escalation
        from loomtui.governance.gitfacts import branch_head

        paths = self._request_paths(tool_name, tool_input)
        facts = ChangeFacts(stage="claim", paths=tuple(paths), runtime=self.runtime)
        evaluation = permission_evaluation(self.policy(), facts)
        evidence = {"tool_name": tool_name, "tool_input": _bounded(tool_input), **(extra or {})}
        if evaluation.outcome == "block":
            message = f"policy: {_headline(evaluation)}"
            self._record("hook.permission", {"tool": tool_name, "decision": "deny", "reason": message})
            return {"decision": "deny", "message": message}
        commit = (branch_head(self.workspace.root, self.branch) if self.branch else None) or ""
        summary = f"{self.sandbox_id} asks: {_describe_tool(tool_name, tool_input)}"
        record = open_escalation(self.workspace, PERMISSION_KIND, evaluation, facts, sandbox_id=self.sandbox_id,
                                 commit=commit, summary=summary, evidence=evidence)
        return {"id": record.id, "status": record.status}

    def _request_paths(self, tool_name: str, tool_input: Mapping[str, Any]) -> list[str]:
        event = HookEvent("PreToolUse", "", self.tree, tool_name, tool_input)
        try:
            targets = edit_targets(event) or []
        except HookInputError:
            targets = []  # a tool we do not parse: the request is about the tool, not files
        places = [self.relative(t.path) for t in targets]
        return sorted({p for p in places if isinstance(p, str)})

    def _own_request(self, escalation_id: Any) -> EscalationRecord:
        record = self.workspace.store.get_escalation(_int(escalation_id, "id"))
        if record is None or record.sandbox_id != self.sandbox_id or record.kind != PERMISSION_KIND:
            raise LoomError(f"no permission request #{escalation_id} of sandbox {self.sandbox_id}")
        return record

    def escalation_status(self, escalation_id: Any) -> dict[str, Any]:
        """Where this sandbox's permission request stands, and what it means for the agent."""
        return _status(self._own_request(escalation_id))

    def withdraw_permission_request(self, escalation_id: Any, reason: str) -> dict[str, Any]:
        """Close an unanswered request (the agent stopped waiting); a decided one is left as it is."""
        with self.workspace.store.transaction():
            record = self._own_request(escalation_id)
            if record.status == EscalationStatus.OPEN:
                history = [*record.data.get("history", []),
                           {"at": time.time(), "event": "withdrawn", "by": self.sandbox_id, "reason": reason}]
                record = self.workspace.store.update_escalation(record.id, status="withdrawn",
                                                                data={"history": history})
                self._record("escalation.withdrawn", {"escalation": record.id, "reason": reason})
        return _status(record)


def permission_evaluation(policy: Policy, facts: ChangeFacts) -> Evaluation:
    """Who answers an agent's permission request: the claim-stage rules for the files it
    names, else the policy's default approvers (a prompt is always a person's call)."""
    evaluation = evaluate(policy, facts)
    if evaluation.outcome == "block" or evaluation.requirements:
        return evaluation
    spec = policy.default.approvals
    groups = spec.groups if policy.default.decision == "require" and spec.groups else policy.override_groups
    count = spec.count if groups == spec.groups else 1
    if not groups:
        rule = AppliedRule("default", "block", None, "the policy names no one who may answer a permission request")
        return Evaluation("claim", "block", evaluation.risk, (*evaluation.applied, rule), ())
    eligible = frozenset().union(*(policy.groups.get(name, frozenset()) for name in groups))
    requirement = Requirement("default", groups, count, eligible)
    rule = AppliedRule("default", "require", None, "an agent's permission request is a person's call",
                       (requirement,))
    return Evaluation("claim", "require", evaluation.risk, (*evaluation.applied, rule), (requirement,),
                      evaluation.notes)


def open_permission_request(gate: HookGate, tool_name: str, tool_input: Mapping[str, Any], *,
                            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Open a permission request for `gate`'s sandbox (see `HookGate.open_permission_request`)."""
    return gate.open_permission_request(tool_name, tool_input, extra=extra)


def _asks_for(request: EscalationRecord, claim: ClaimRecord, waiting: Sequence[str]) -> bool:
    """Whether a permission request is about the tool call a provisional claim waits for: by its
    tool_use_id, or (a prompt that names none) by the files it would write."""
    evidence = request.data.get("evidence") or {}
    tool_use_id = evidence.get("tool_use_id") if isinstance(evidence, dict) else None
    if tool_use_id:
        return tool_use_id in waiting
    paths = set((request.data.get("facts") or {}).get("paths") or ())
    return any(region.split("::")[0] in paths for region in claim.region_ids)


def _decided_at(request: EscalationRecord) -> float:
    """When a person decided a request (its last history entry), else when it last changed."""
    history = request.data.get("history") or []
    times = [h["at"] for h in history if isinstance(h, dict) and isinstance(h.get("at"), (int, float))]
    return max([request.updated, *times]) if times else request.updated


def _combined(tool: str, answers: Sequence[Answer]) -> Answer:
    """One tool call's answer from its files' answers (what the hook then prints)."""
    regions = tuple(dict.fromkeys(r for a in answers for r in a.regions))
    for decision in ("deny", "ask"):
        reasons = [a.reason for a in answers if a.decision == decision]
        if reasons:
            return Answer(decision, "; ".join(reasons), regions)
    allowed = "; ".join(a.reason for a in answers if a.decision == "allow")
    if tool == "Bash" or not allowed:
        # A command does more than its writes: allowing it here would skip the
        # runtime's own permission rules, so a fine Bash write is left to them.
        return Answer("none", allowed or "; ".join(a.reason for a in answers), regions)
    return Answer("allow", allowed, regions)


def _staged_regions(files: Sequence[Mapping[str, Any]]) -> list[str]:
    """The regions a staged change touches in Python files, from their text at HEAD and as staged."""
    if not files:
        return []
    from loomtui.coordination.signatures import changed_regions

    found: list[str] = []
    for item in files:
        if not isinstance(item, Mapping):
            raise LoomError("request field 'files' must be a list of {path, old, new}")
        path, old, new = _str(item, "path"), item.get("old", ""), item.get("new", "")
        if not isinstance(old, str) or not isinstance(new, str):
            raise LoomError(f"files[{path}]: 'old' and 'new' must be text")
        found.extend(c.region_id for c in changed_regions(old, new, path))
    return list(dict.fromkeys(found))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size, status.st_ino)


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


def _headline(evaluation: Evaluation) -> str:
    return evaluation.explanation()[0].split(": ", 1)[-1]


def _describe_tool(tool_name: str, tool_input: Mapping[str, Any]) -> str:
    detail = next((tool_input[k] for k in ("command", "file_path", "notebook_path", "url", "pattern")
                   if isinstance(tool_input.get(k), str)), "")
    text = f"{tool_name} {detail}".strip().replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."


def _bounded(value: Mapping[str, Any], limit: int = 4000) -> dict[str, Any]:
    """Tool input for the record, with long strings (file contents) cut short."""
    return {k: (v[:limit] + f"... ({len(v)} chars)" if isinstance(v, str) and len(v) > limit else v)
            for k, v in value.items()}


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LoomError(f"request field {name!r} must be an integer")
    return value


def _parse_ranges(lines: Any) -> list[tuple[int, int]] | None:
    """`lines` of a request: null (whole file), [start, end], or a list of such pairs."""
    if lines is None:
        return None
    if not isinstance(lines, list):
        raise LoomError("request field 'lines' must be null, [start, end] or a list of them")
    pairs = [lines] if len(lines) == 2 and all(isinstance(n, int) for n in lines) else lines
    ranges = []
    for pair in pairs:
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
                or not 1 <= pair[0] <= pair[1]):
            raise LoomError(f"bad line range {pair!r}: need [start, end] with 1 <= start <= end")
        ranges.append((pair[0], pair[1]))
    return merge_ranges(ranges)


# -- the request vocabulary ---------------------------------------------------------------


def _op_check_edit(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.check_edit(_str(request, "path"), request.get("lines"),
                           tool=str(request.get("tool", ""))).as_dict()


def _op_check_tool(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    targets = request.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, dict) for t in targets):
        raise LoomError("request field 'targets' must be a non-empty list of {path, lines}")
    tool_use_id = request.get("tool_use_id") or ""
    return gate.check_tool(_str(request, "tool"), targets,
                           tool_use_id=tool_use_id if isinstance(tool_use_id, str) else "").as_dict()


def _op_confirm_tool_use(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return {"confirmed": gate.confirm_tool_use(_str(request, "tool_use_id"), str(request.get("tool", "")))}


def _op_check_commit(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    files = request.get("files") or []
    if not isinstance(files, list):
        raise LoomError("request field 'files' must be a list of {path, old, new}")
    return gate.check_commit(_strs(request, "paths"), _strs(request, "regions"), files).as_dict()


def _op_open_permission_request(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    tool_input = request.get("tool_input")
    if not isinstance(tool_input, dict):
        raise LoomError("request field 'tool_input' must be an object")
    extra = request.get("extra")
    return gate.open_permission_request(_str(request, "tool_name"), tool_input,
                                        extra=extra if isinstance(extra, dict) else None)


def _op_escalation_status(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.escalation_status(request.get("id"))


def _op_withdraw(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.withdraw_permission_request(request.get("id"), str(request.get("reason", "withdrawn")))


OPERATIONS: Final[dict[str, Callable[[HookGate, Mapping[str, Any]], dict[str, Any]]]] = {
    "check_edit": _op_check_edit,
    "check_tool": _op_check_tool,
    "confirm_tool_use": _op_confirm_tool_use,
    "check_commit": _op_check_commit,
    "open_permission_request": _op_open_permission_request,
    "escalation_status": _op_escalation_status,
    "withdraw_permission_request": _op_withdraw,
}
"""Everything an agent may ask. Deliberately no decide, approve, override or policy write."""


def dispatch(gate: HookGate, request: Any) -> dict[str, Any]:
    """Answer one request: `{"ok": true, ...}` or `{"ok": false, "error": "one line"}`."""
    _add_agent_operations()
    if not isinstance(request, dict):
        return {"ok": False, "error": "a request is a JSON object with an 'op'"}
    operation = OPERATIONS.get(request.get("op"))  # type: ignore[arg-type]
    if operation is None:
        return {"ok": False, "error": f"unknown operation {request.get('op')!r}; agents may only ask "
                                      f"({', '.join(OPERATIONS)}), never decide"}
    try:
        return {"ok": True, **operation(gate, request)}
    except LoomError as exc:
        return {"ok": False, "error": str(exc)}


def _str(request: Mapping[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise LoomError(f"request field {name!r} must be a non-empty string")
    return value


def _strs(request: Mapping[str, Any], name: str) -> list[str]:
    value = request.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LoomError(f"request field {name!r} must be a list of strings")
    return value


_agent_ops_added = False


def _add_agent_operations() -> None:
    """What agents may ask besides the hooks (claims, questions to a lead): asking, never deciding.

    `agent_ops` imports this module, so this runs when both are loaded: at the end of
    this module unless `agent_ops` is the one importing it, else on the first dispatch.
    """
    global _agent_ops_added
    if not _agent_ops_added:
        try:
            OPERATIONS.update(importlib.import_module("loomtui.governance.agent_ops").AGENT_OPERATIONS)
        except ModuleNotFoundError as exc:  # a checkout without the MCP server's operations yet
            if exc.name != "loomtui.governance.agent_ops":
                raise
        _agent_ops_added = True


_importing = sys.modules.get("loomtui.governance.agent_ops")
if _importing is None or hasattr(_importing, "AGENT_OPERATIONS"):
    _add_agent_operations()
