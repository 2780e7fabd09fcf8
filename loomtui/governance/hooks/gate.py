"""The claim gate: one sandbox's answers to its agent's hook requests.

`HookGate` answers for one sandbox, against the store, the audit log and the
policy of the trusted checkout. It runs in the sandbox's supervisor (reached
through `loomtui.governance.broker`, where it stays warm: the coordination index
is built once and patched file by file as the agent edits) or, outside any
sandbox, in the hook process itself. The requests it answers are in `requests`
(`dispatch`, `OPERATIONS`: nothing in them decides an escalation, so an agent can
ask, never approve); an agent's permission requests are in `permissions`. Both
are re-exported here.

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

import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from loomtui.audit import MAX_LISTED, listed_in_entry
from loomtui.errors import LoomError, abridged, escape_controls
from loomtui.execution.isolation import ISOLATION_BWRAP, PRIVATE_TMP
from loomtui.execution.sandboxes import HOOK_SETTINGS_PATH, sandbox_paths
from loomtui.governance.checkout import refuse_an_agents_policy
from loomtui.governance.escalations import CLEARED, EscalationStatus
from loomtui.governance.hooks.holding import held_unchanged_refusal, unchanged_own_claims
from loomtui.governance.hooks.permissions import (
    PERMISSION_KIND,
    asks_for,
    decided_at,
    open_permission_request,
    permission_evaluation,
    policy_refusal,
    request_status,
    sandbox_requests,
    withdraw_request,
)
from loomtui.governance.hooks.requests import OPERATIONS, dispatch, line_ranges, text_field
from loomtui.governance.policy import ChangeFacts, Policy, configured_policy, evaluate
from loomtui.store import ENDED_STATUSES, ClaimRecord, EscalationRecord
from loomtui.workspace import Workspace

if TYPE_CHECKING:  # the coordination engine loads on the first edit check, not with the supervisor
    from loomtui.config import LoomConfig
    from loomtui.coordination.claims import Conflict, Coordinator

__all__ = [  # with the request vocabulary and the permission requests, which moved out of this module
    "DEFAULT_CONFIRM_S", "GRANTING_KINDS", "NEVER_HAPPENED", "OPERATIONS", "PERMISSION_KIND", "SETTINGS_PATH",
    "Answer", "HookGate", "awaiting", "dispatch", "open_permission_request", "permission_evaluation",
]

SETTINGS_PATH: Final = HOOK_SETTINGS_PATH
CLAUDE_DIR: Final = PurePosixPath(SETTINGS_PATH).parts[0]
GRANTING_KINDS: Final = ("pre-start", PERMISSION_KIND)
DEFAULT_CONFIRM_S: Final = 120.0
"""How long a claim made for a tool call waits for the call to happen (its PostToolUse)."""
NEVER_HAPPENED: Final = "the edit it was claimed for never happened"
MAX_COMMITS_HELD: Final = 200
"""The most commits of one beat `hold_commits` reads (the newest first); the review holds the rest."""
AWAITING_MARK: Final = " (awaiting tool call "
"""In a provisional claim's reason, before the tool calls it waits for (`_AWAITING`)."""
_AWAITING: Final = re.compile(re.escape(AWAITING_MARK) + r"([^()]*)\)$")
T = TypeVar("T")


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


def release_lapsed(workspace: Workspace, clock: Callable[[], float] = time.time) -> list[int]:
    """Release every holder's provisional claims whose tool call never came within the window. A
    sandbox's broker does this for it as its agent works; a holder with none (a hook run in a person's
    checkout, `hook claude --sandbox NAME`) only at its next hook call, which may never come."""
    waiting = [claim for claim in workspace.store.live_claims_with_reason(AWAITING_MARK) if awaiting(claim)]
    if not waiting:  # the common case, on every claim: nothing more is read, nor imported (under the store's lock)
        return []
    from loomtui.governance.broker import confirm_window_from_env

    window = HookGate(workspace, waiting[0].sandbox_id, workspace.root,
                      confirm_window=confirm_window_from_env()).confirm_window
    due = sorted({claim.sandbox_id for claim in waiting if claim.created <= clock() - window})
    return [released for holder in due for released in
            HookGate(workspace, holder, workspace.root, confirm_window=window, clock=clock).release_unconfirmed()]


# -- the gate: one sandbox's answers ------------------------------------------------------


def _hard_links(path: Path) -> int:
    """How many names a regular file has (1 for a new file, a directory or a link that leads nowhere)."""
    try:
        info = os.stat(path)
    except OSError:
        return 1
    return info.st_nlink if stat.S_ISREG(info.st_mode) else 1


def _is_agent_settings(rel: PurePosixPath) -> bool:
    """Claude Code's settings in a worktree (`.claude/settings.json`, `.claude/settings.local.json`: its
    hooks, permission mode, `disableAllHooks`), or the folder holding them (moved or removed whole)."""
    return rel.parts[0] == CLAUDE_DIR and (len(rel.parts) == 1 or (
        len(rel.parts) == 2 and rel.name.startswith("settings") and rel.suffix == ".json"))


NAME_MAX: Final = 255
"""The longest name of one file or folder, in bytes (Linux's filesystems)."""
MAX_SAID_PATH: Final = 200
"""A path an agent gave, as audited and answered: cut to this many characters."""


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
        self._loaded: dict[str, tuple[tuple[Any, ...], Any]] = {}
        record = workspace.store.get_sandbox(sandbox_id)
        self.runtime = record.runtime if record else None
        self.branch = record.branch if record else None
        self.managed = record is not None  # a loom sandbox: its hook settings are ours
        self.context_files = frozenset(record.context_files) if record else frozenset()
        self.scratch = self._scratch_dirs(record)
        self._changed: set[str] | None = None  # the worktree's changed files, once read in one request

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
        def load() -> Policy:
            # Read again whenever those files change, as a checkout of an agent's branch changes them: then
            # refused, never an agent's loosened claim-stage rules answering another agent's edits.
            refuse_an_agents_policy(self.workspace)
            return configured_policy(root, config)

        return self._cached(f"policy:{config.policy}", watched, load)

    def _cached(self, key: str, files: Sequence[Path], load: Callable[[], T]) -> T:
        stamp = tuple(_stamp(f) for f in files)
        held = self._loaded.get(key)
        if held is not None and held[0] == stamp:
            return cast(T, held[1])
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

        The index is opened once (the tree's database in the shared index cache);
        afterwards only the files in `fresh` are looked at again, and those the agent
        changed are parsed and resolved, with every file that read their interface.
        A change of the coordination settings opens the index anew.
        """
        from loomtui.coordination.index import build_index, index_cache_dir
        from loomtui.governance.coordinator import governed_coordinator

        config = self.config().coordination
        settings = (tuple(config.include), tuple(config.exclude), config.dependency_hops, config.lease_seconds)
        if self._coordinator is None or settings != self._index_settings:
            index = build_index(self.tree, cache_dir=index_cache_dir(self.workspace.paths),
                                include=config.include, exclude=config.exclude)
            self._coordinator = governed_coordinator(self.workspace, index)
            self._index_settings = settings
            return self._coordinator
        coordinator = self._coordinator
        if fresh and coordinator.index.refresh(sorted(fresh)):
            coordinator.index_changed()
        return coordinator

    def _record(self, action: str, details: dict[str, Any]) -> None:
        self.workspace.record(action, self.sandbox_id, details)

    def relative(self, path: str) -> str | Answer:
        """The repository path of a file the agent writes, or the answer for one outside it."""
        try:
            os.fsencode(path)
        except UnicodeEncodeError:  # a lone surrogate (JSON's `\ud800`): the broker answered an internal error
            return Answer("deny", f"{escape_controls(path[:200])} is no file name: it cannot be encoded")
        said = abridged(path, MAX_SAID_PATH)  # an entry holds it: a 4,000-character path was 220 KB an entry
        absolute = Path(os.path.normpath(self.tree / path))
        if any(len(os.fsencode(part)) > NAME_MAX for part in absolute.parts):
            # No file can have it: a claim on it would hold nothing (and reading it raised "internal error").
            return Answer("deny", f"{escape_controls(abridged(path, 200))}: a name past {NAME_MAX} bytes, which no "
                                  "file here can have")
        resolved = absolute.resolve()
        if resolved.is_relative_to(self.tree) and resolved != self.tree:
            rel = PurePosixPath(resolved.relative_to(self.tree).as_posix())
            if rel.parts[0] == ".git":
                return Answer("deny", f"{said}: git's own files are not for agents to edit")
            if self.managed and _is_agent_settings(rel):
                # settings.local.json too: `disableAllHooks` there, read again within seconds, let every
                # later write through with no hook, no permission and no audit entry.
                return Answer("deny", f"{rel}: Claude Code's settings hold this sandbox's loomtui hooks; "
                                      "they are not for the agent to change")
            if str(rel) in self.context_files:
                # Written over the repository's own file, and kept out of the sandbox's commits: an edit
                # was accepted, then lost without a word.
                return Answer("deny", f"{rel} here is loomtui's context for this task, not the repository's own "
                                      f"{rel}: an edit of it would not be kept; say in your answer what should "
                                      "change in it")
            names = _hard_links(resolved)
            if names > 1:  # `ln refunds.py hard.py`: an edit of hard.py is one of refunds.py, held or not
                return Answer("deny", f"{rel} has {names} names (hard links): an edit of it changes each of them, "
                                      "and loomtui claims a file by one name; remove the others first")
            return str(rel)
        if absolute.is_relative_to(self.tree):
            return Answer("deny", f"{said} leads out of the worktree through a symlink")
        # The innermost enclosing place decides: a sandbox's scratch dir may sit in the git dir,
        # and a checkout may sit under /tmp.
        guarded = (self.workspace.root.resolve(), self.workspace.paths.common_dir.resolve())
        places = [(len(root.parts), False) for root in guarded if resolved.is_relative_to(root)]
        places += [(len(tmp.parts), True) for tmp in self.scratch
                   if resolved.is_relative_to(tmp) and resolved != tmp]
        if places and max(places)[1]:
            return Answer("none", f"{said} is this sandbox's scratch space")
        return Answer("deny", f"{said} is outside this sandbox's worktree {self.tree}; an agent writes "
                              "only there (and in its temporary directory)")

    # -- requests ------------------------------------------------------------------------

    def check_edit(self, path: str, lines: Any = None, *, tool: str = "") -> Answer:
        """Allow inside own claims, claim free regions, deny others' regions or a policy block."""
        rel = self.relative(path)
        if isinstance(rel, Answer):
            if rel.decision != "none":
                self._record("hook.edit", {"tool": tool, "path": abridged(path, MAX_SAID_PATH), **rel.as_dict()})
            return rel
        ranges = line_ranges(lines)
        self._changed = None
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
        self._changed = None
        own_before = {c.id for c in self.workspace.store.live_claims(self.sandbox_id)}
        pending = f"{AWAITING_MARK}{tool_use_id})" if tool_use_id else ""
        checked: list[tuple[str, list[tuple[int, int]] | None, Answer]] = []
        for target in targets:
            path = text_field(target, "path")
            rel = self.relative(path)
            if isinstance(rel, Answer):
                checked.append((path, None, rel))
                continue
            ranges = line_ranges(target.get("lines"))
            for each in self._files_under(rel) if ranges is None else (rel,):
                checked.append((each, ranges, self._edit_answer(each, ranges, pending=pending)))
        answer = _combined(tool, [a for _p, _l, a in checked])
        if answer.decision == "deny":
            self._release_new(own_before, "the edit it was claimed for was refused")
        elif tool_use_id:
            self._await_also(tool_use_id, answer.regions)
        if any(a.decision != "none" for _p, _l, a in checked):
            details: dict[str, Any] = {"tool": tool, "tool_use_id": tool_use_id or None, **answer.as_dict(),
                                       **listed_in_entry("regions", list(answer.regions))}
            if len(checked) == 1:
                details.update(path=abridged(checked[0][0], MAX_SAID_PATH), lines=checked[0][1])
            else:
                # The first MAX_LISTED, and how many: a 33 KB request naming a folder 1,000 times was one entry of
                # 1.9 MB, in the shared store and the log kept for good.
                details["targets"] = [{"path": abridged(p, MAX_SAID_PATH), "lines": lines, **a.as_dict()}
                                      for p, lines, a in checked[:MAX_LISTED]]
                if len(checked) > MAX_LISTED:
                    details["targets_total"] = len(checked)
            details["ms"] = round((time.perf_counter() - started) * 1000, 1)  # the gate's part of the hook's wait
            self._record("hook.edit", details)
        return answer

    def _files_under(self, rel: str) -> Sequence[str]:
        """What a command on `rel` writes: each file in it when it is a directory (`rm -rf payments`,
        `mv payments old`), so the claims and the policy see every file; else `rel` itself."""
        folder = self.tree / rel
        try:
            if folder.is_symlink() or not folder.is_dir():
                return (rel,)
        except OSError:  # a name the system refuses (a component past 255 bytes): the file's answer says so
            return (rel,)
        prefix = rel.rstrip("/") + "/"
        try:
            inside = [path for path in self.coordinator().targets.repo_files() if path.startswith(prefix)]
        except LoomError:
            return (rel,)  # its answer says why it cannot be checked
        return inside or (rel,)

    def _edit_answer(self, rel: str, ranges: list[tuple[int, int]] | None, *, pending: str = "") -> Answer:
        if ranges == []:
            return Answer("allow", f"{rel}: the edit changes no line")
        try:
            coordinator = self.coordinator(fresh=(rel,))
            regions = self._regions(coordinator, rel, ranges)
            evaluation = evaluate(self.policy(), ChangeFacts(stage="claim", paths=(rel,), regions=regions,
                                                             runtime=self.runtime))
            if evaluation.outcome == "block":
                return Answer("deny", policy_refusal(evaluation), regions)
            if self.managed:
                refused, self._changed = held_unchanged_refusal(self.workspace, self.sandbox_id, rel, self._changed)
                if refused:
                    return Answer("deny", refused, regions)
            claimed = self._claim(coordinator, rel, ranges, pending)
        except LoomError as exc:  # fail closed: an edit that cannot be checked is not allowed
            return Answer("deny", f"cannot check {rel}: {exc}")
        if isinstance(claimed, Answer):
            return Answer(claimed.decision, claimed.reason, regions)
        done = "; ".join(claimed) if claimed else "inside this sandbox's claims"
        if evaluation.outcome != "require":
            return Answer("allow", done, regions)
        granted = self._granted(regions)
        if not granted:
            needs = "; ".join(f"{r.rule} needs {r.describe()}" for r in evaluation.requirements)
            return Answer("ask", f"policy requires approval before changing {rel}: {needs} ({done})", regions)
        # Which decision let it through, for the log: a lead's approval of one call grants later edits of its regions.
        said = ", ".join(f"#{number}" for number in granted)
        return Answer("allow", f"{done}; approved already (escalation {said})", regions)

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

    def release_own(self, reason: str) -> None:
        """Release every live claim of this sandbox, each with an audit entry."""
        self._release_new(set(), reason)

    def release_unchanged(self) -> list[int]:
        """The agent has ended: its own claims on files its change does not touch go, each with its entry."""
        if not self.managed:
            return []
        claims = unchanged_own_claims(self.workspace, self.sandbox_id)
        for claim in claims:
            self._release(claim, "its agent ended, and its change does not touch these files")
        return [claim.id for claim in claims]

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
        from loomtui.coordination.regions import ancestors

        wanted = {a for rid in regions for a in (rid, *ancestors(rid))}
        for claim in self.workspace.store.live_claims(self.sandbox_id):
            waiting = awaiting(claim)
            if waiting and tool_use_id not in waiting and wanted & set(claim.region_ids):
                reason = _AWAITING.sub("", claim.reason)
                self.workspace.store.set_claim_reason(
                    claim.id, f"{reason}{AWAITING_MARK}{' '.join([*waiting, tool_use_id])})")

    def confirm_tool_use(self, tool_use_id: str, tool: str = "") -> list[int]:
        """The tool call happened (its PostToolUse arrived): its claims hold for their whole lease."""
        self.release_unconfirmed()
        return self._confirm([c for c in self.workspace.store.live_claims(self.sandbox_id)
                              if tool_use_id in awaiting(c)], {"tool": tool, "tool_use_id": tool_use_id})

    def release_refused(self, tool_use_id: str, reason: str) -> list[int]:
        """The tool call `tool_use_id` was refused before a person saw it: what was claimed for it alone goes
        now (it held the regions until its confirm window closed), and a claim another call waits on too
        waits for that one only."""
        released = []
        for claim in self.workspace.store.live_claims(self.sandbox_id):
            waiting = awaiting(claim)
            if tool_use_id not in waiting:
                continue
            rest = [call for call in waiting if call != tool_use_id]
            if rest:
                self.workspace.store.set_claim_reason(
                    claim.id, f"{_AWAITING.sub('', claim.reason)}{AWAITING_MARK}{' '.join(rest)})")
            else:
                self._release(claim, f"the edit it was claimed for was refused: {reason}", tool_use_id=tool_use_id)
                released.append(claim.id)
        return released

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
                    asked = sandbox_requests(self)
                requests = [e for e in asked if asks_for(e, claim, waiting)]
                if any(e.status == EscalationStatus.OPEN for e in requests):
                    continue  # a person has not decided yet
                approved = [e for e in requests if e.status in CLEARED]
                if approved and max(decided_at(e) for e in approved) > now - window:
                    continue  # approved: the call happens now, its PostToolUse confirms
                if requests and not approved:
                    last = requests[-1]
                    reason = f"the edit it was claimed for was refused (escalation #{last.id} {last.status})"
                    details["escalation"] = last.id
            self._release(claim, reason, **details)
            released.append(claim.id)
        return released

    def regions_of(self, rel: str, ranges: list[tuple[int, int]] | None) -> tuple[str, ...]:
        """The regions an edit of `rel`'s lines `ranges` (None: the whole file) is in."""
        return self._regions(self.coordinator(fresh=(rel,)), rel, ranges)

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

    def _granted(self, regions: Sequence[str]) -> tuple[int, ...]:
        """The escalations in which people already approved this sandbox changing these regions (before it
        started, or on an earlier permission request), one for each region; () when one is not approved
        (then a person is asked)."""
        from loomtui.coordination.regions import ancestors, split_id

        # This sandbox's own: every escalation the repository ever cleared was read on each such edit.
        scopes = [(e.id, e.kind, e.data.get("facts") or {}) for e in self.workspace.store.sandbox_escalations(
                  self.sandbox_id, GRANTING_KINDS) if e.status in CLEARED]

        def covered(region: str, kind: str, facts: Mapping[str, Any]) -> bool:
            approved = set(facts.get("regions") or ())
            whole_files = set(facts.get("paths") or ()) - {split_id(r)[0] for r in approved}
            if kind == PERMISSION_KIND:
                # One tool call was approved, as the lead saw it: the regions it changed, not what holds them. A
                # comment added at a file's top (its file region) granted every later edit of the file, unasked.
                return region in approved or (not approved and region in whole_files)
            return region in approved or bool(set(ancestors(region)) & approved) \
                or split_id(region)[0] in whole_files

        granting: set[int] = set()
        for region in regions:
            number = next((number for number, kind, facts in scopes if covered(region, kind, facts)), None)
            if number is None:
                return ()
            granting.add(number)
        return tuple(sorted(granting))

    def check_commit(self, paths: Sequence[str], regions: Sequence[str],
                     files: Sequence[Mapping[str, Any]] = ()) -> Answer:
        """Refuse a staged change on regions another sandbox holds, or one the policy blocks.

        `files` ({path, old, new}: a Python file's text at HEAD and as staged) add the
        regions the change touches in them. An accepted commit confirms the sandbox's
        provisional claims on its files: those edits did happen. It claims nothing: what the
        request names is the agent's word (`hold_commits` claims what its commits did change).
        """
        self.release_unconfirmed()
        blocking: list[Conflict] = []
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
                answer = Answer("deny", policy_refusal(evaluation), tuple(regions))
            else:
                committed = set(paths)
                self._confirm([c for c in self.workspace.store.live_claims(self.sandbox_id)
                               if awaiting(c) and any(r.split("::")[0] in committed for r in c.region_ids)],
                              {"commit": sorted(committed)})
                return Answer("allow", "no region of this commit is held by another sandbox", tuple(regions))
        # Only refusals are recorded: an accepted commit is in git's own history.
        # At most MAX_LISTED of them (a commit of 3,900 long paths, refused five times, was 78 MB of log).
        # `held`: the claims it collided with, what the report counts a conflict kept off by (not the paths).
        self._record("hook.commit_refused", {**listed_in_entry("paths", list(paths)), **answer.as_dict(),
                                             **({"held": sorted({c.claim_b for c in blocking})} if blocking else {})})
        return answer

    def hold_commits(self, old: str, new: str) -> list[int]:
        """Claim the code the sandbox's commits `old`..`new` on its branch changed that it does not hold
        (Codex and Aider write without asking first): another sandbox's edit there is then refused, not
        found at merge. Read from git, never from what an agent says (a `check_commit` request that
        claimed whatever it listed let an agent lock every file), along the branch's own line (a merge
        of the target brings none of the target's changes), only code coordination covers (a
        `.gitignore` every agent touches is no one's). What another sandbox holds stays its own."""
        from loomtui.coordination.claims import hold_changed_code
        from loomtui.coordination.diff import changed_files, diff_regions
        from loomtui.coordination.regions import split_id
        from loomtui.gitcmd import Git

        record = self.workspace.store.get_sandbox(self.sandbox_id)
        if record is None or record.status in ENDED_STATUSES:
            return []
        root = self.workspace.root
        own = Git(root).run("rev-list", "--first-parent", "--no-merges", f"{old}..{new}")
        regions: list[str] = []
        for commit in own.out.split()[:MAX_COMMITS_HELD] if own.status == 0 else []:
            files = set(changed_files(root, f"{commit}^", commit))
            for change in diff_regions(root, f"{commit}^", commit):
                path = split_id(change.region_id)[0]
                # A file named with "::" reads as a region of another file: the target syntax cannot spell it.
                if path in files and change.region_id not in (files - {path}):
                    regions.append(change.region_id)
        held = hold_changed_code(self.workspace.store, self.sandbox_id, regions, self.config().coordination,
                                 self.coordinator)
        return [c.id for c in held]

    # -- permission requests (`loomtui.governance.hooks.permissions`) ---------------------

    def open_permission_request(self, tool_name: str, tool_input: Mapping[str, Any], *,
                                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Open an escalation for a lead to answer; a policy block is answered at once."""
        return open_permission_request(self, tool_name, tool_input, extra=extra)

    def escalation_status(self, escalation_id: Any) -> dict[str, Any]:
        """Where this sandbox's permission request stands, and what it means for the agent."""
        return request_status(self, escalation_id)

    def withdraw_permission_request(self, escalation_id: Any, reason: str) -> dict[str, Any]:
        """Close an unanswered request (the agent stopped waiting); a decided one is left as it is."""
        return withdraw_request(self, escalation_id, reason)


def _combined(tool: str, answers: Sequence[Answer]) -> Answer:
    """One tool call's answer from its files' answers (what the hook then prints)."""
    regions = tuple(dict.fromkeys(r for a in answers for r in a.regions))
    for decision in ("deny", "ask"):
        reasons = [a.reason for a in answers if a.decision == decision]
        if reasons:
            return Answer(decision, _joined(reasons), regions)
    allowed = _joined([a.reason for a in answers if a.decision == "allow"])
    if tool == "Bash" or not allowed:
        # A command does more than its writes: allowing it here would skip the
        # runtime's own permission rules, so a fine Bash write is left to them.
        return Answer("none", allowed or _joined([a.reason for a in answers]), regions)
    return Answer("allow", allowed, regions)


REASONS_JOINED: Final = 10


def _joined(reasons: Sequence[str]) -> str:
    """The files' reasons as one, each once, the first REASONS_JOINED and how many more: 4,000 of them were a
    120 KB reason, in the agent's answer and in an audit entry kept for good."""
    unique = list(dict.fromkeys(reasons))
    more = f"; and {len(unique) - REASONS_JOINED} more" if len(unique) > REASONS_JOINED else ""
    return "; ".join(unique[:REASONS_JOINED]) + more


def _staged_regions(files: Sequence[Mapping[str, Any]]) -> list[str]:
    """The regions a staged change touches in Python files, from their text at HEAD and as staged."""
    if not files:
        return []
    from loomtui.coordination.signatures import ParseBudget, changed_regions

    found: list[str] = []
    budget = ParseBudget()  # one for the whole request: each file under the limits, eight held the broker minutes
    for item in files:
        if not isinstance(item, Mapping):
            raise LoomError("request field 'files' must be a list of {path, old, new}")
        path, old, new = text_field(item, "path"), item.get("old", ""), item.get("new", "")
        if not isinstance(old, str) or not isinstance(new, str):
            raise LoomError(f"files[{path}]: 'old' and 'new' must be text")
        found.extend(c.region_id for c in changed_regions(old, new, path, budget))
    return list(dict.fromkeys(found))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size, status.st_ino)
