"""The metrics of a time window, per day and per runtime, computed from the record each time.

Sources, each read only for the window: the audit log (starts, ends, decisions,
merges, refusals, overrides; see `window`), the state store (sandboxes for their
runtime and the tokens their agents reported, escalations, gate runs, eval
reports; filtered by time in SQL) and git history (what landed on the branch and
which of it was agent-made; see `history`). Nothing is kept between reports, so a
new audit entry or merge changes the next one.

Days are UTC dates. A change is *decided* when its sandbox was merged or rejected
(after its agent ran) in the window; a sandbox rejected and later merged counts once,
as merged. The *acceptance rate* is merged over decided. Time to decision runs from
the agent's end to the first approval or rejection after it.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Final

from loomtui.errors import ConfigError
from loomtui.governance.policy_eval import CLAIM_STAGE_LABEL, HELD_ELSEWHERE_RULE
from loomtui.observability.history import History, Landed, agent_trailer_names, read_history
from loomtui.observability.window import Entry, newest_entry_time, workspace_window
from loomtui.store.metric_rows import EvalOutcome, GateOutcome, SandboxFacts
from loomtui.workspace import Workspace

DAY_S = 86400
SANDBOX_EVAL = "sandbox"
"""The kind of a sandbox's eval report (guardrails.evals.SANDBOX_EVAL, not imported: see `_regressions`)."""
SEEDED_DAYS = 92
"""Windows up to this many days list every day; longer ones only the days something happened."""
UNKNOWN_RUNTIME = "unknown"
AGENT_ENDS = ("sandbox.exited", "sandbox.failed")
RAN = ("running", "paused")
"""The statuses an agent runs in: a move out of one of them is its end."""
READ_ACTIONS = frozenset({
    "sandbox.running", "sandbox.exited", "sandbox.failed", "sandbox.approved", "sandbox.rejected", "sandbox.merged",
    "sandbox.merge_conflict", "escalation.override", "claim.override", "claim.refused", "agent.claim_refused",
    "hook.commit_refused", "plan.scheduled", "escalation.opened",
})
"""The audit actions a report reads; the window's other entries are counted, not parsed."""
REFUSALS: Final = {"claim.refused": "claims_refused", "agent.claim_refused": "agent_claims_refused",
                   "hook.commit_refused": "commits_refused"}
"""The refusals a report counts, and the count each goes to: conflicts kept off (the checklist's too), but for
`agent.claim_refused`, an agent's claim refused for its bounds (too broad, or the policy's block), no conflict."""
NOT_CONFLICTS: Final = frozenset({"agent.claim_refused"})


def refusal_keys(entry: Entry) -> list[tuple[str, str, str]]:
    """What a refusal kept off: one (kind, sandbox, held claim) per claim it collided with (its target where it
    names none), so a conflict counts once however it was asked for: an agent asking again for the same code, a
    racer retrying, or one naming the same held code 45 ways (`payments/*.py`, `invoices.py:1-12`, `:1-13`, ...,
    or each subset of several held functions) counted each refusal as a conflict prevented. [] for an entry
    that is no refusal."""
    if entry.action not in REFUSALS:
        return []  # (`agent.claim_refused` too: the report counts it apart, as no conflict)
    held = entry.details.get("held")
    if not isinstance(held, list):
        conflicts = [c for c in entry.details.get("conflicts") or () if isinstance(c, Mapping)]
        collided = [c for c in conflicts if c.get("severity") == "error"] or conflicts
        held = sorted({str(c["b"].get("claim")) for c in collided if isinstance(c.get("b"), Mapping)})
    kept_off = [f"claim #{claim}" for claim in held] or [
        json.dumps(entry.details.get("target", entry.details.get("paths")), sort_keys=True)]
    return [(entry.action, entry.subject, what) for what in kept_off]


def overruled_keys(entry: Entry) -> list[tuple[str, str, str]]:
    """The refusals a claim override overrules (`refusal_keys` of a `claim.refused` of the same sandbox and
    claims), or [] for an entry that is no claim override: the override let both hold the code, so that
    refusal kept no conflict off."""
    return refusal_keys(replace(entry, action="claim.refused")) if entry.action == "claim.override" else []


def merged_over_claims(entries: Iterable[Entry]) -> set[str]:
    """The sandboxes merged though their change is what other sandboxes hold (a lead approved the review's
    `held-by-another`): the hooks refused their edits or commits, yet the change landed (loomtui saves an
    agent's uncommitted work at its end), so those refusals kept no conflict off."""
    held: dict[str, bool] = {}  # by sandbox: whether its latest review's escalation said `held-by-another`
    merged: set[str] = set()
    for entry in entries:
        if entry.action == "escalation.opened" and entry.details.get("kind", "post-gate") == "post-gate":
            # The latest review's alone: one reviewed again once the holder let go (held-by-another no more) and
            # approved merged over no one's claim, and was said to.
            held[str(entry.details.get("sandbox", ""))] = HELD_ELSEWHERE_RULE in (entry.details.get("rules") or ())
        elif entry.action == "sandbox.merged" and held.get(entry.subject):
            merged.add(entry.subject)
    return merged


def met_at_merge_anyway(entries: Iterable[Entry]) -> set[tuple[str, str, str]]:
    """The refusals whose sandbox met a conflict at merge on a file they named: its holder merged first and let
    go, so the review had nothing to flag, and the change met the holder's at merge; counted as prevented and as
    met at merge, one conflict was two."""
    named: dict[tuple[str, str, str], set[str]] = {}
    conflicted: dict[str, set[str]] = {}
    for entry in entries:
        if merge_conflict_key(entry) is not None:
            conflicted.setdefault(entry.subject, set()).update(str(p) for p in entry.details.get("paths") or ())
            continue
        paths = entry.details.get("paths")
        files = {str(p) for p in paths} if isinstance(paths, list) else \
            {str(entry.details.get("target", "")).split("::")[0].split(":")[0]}
        for key in refusal_keys(entry):
            named.setdefault(key, set()).update(files)
    return {key for key, files in named.items() if files & conflicted.get(key[1], set())}


def merge_conflict_key(entry: Entry) -> tuple[str, str] | None:
    """The sandbox and branch a merge conflict was met on, so a merge tried again counts once: the app tries
    a waiting merge again each time the branch moves, and one sandbox's conflict was counted six times.
    None for an entry that is no merge conflict."""
    if entry.action != "sandbox.merge_conflict":
        return None
    return entry.subject, str(entry.details.get("target", ""))


SCHEDULED_APART = ("overlap", "dependency")
"""Plan edges that keep two tasks apart because their code collides (not an `after` a person wrote)."""


@dataclass(frozen=True, slots=True)
class Breakdown:
    """The figures of one day (`key` a UTC date), one runtime (`key` its name), or all (`key` "all")."""

    key: str
    sandboxes_created: int = 0
    sandboxes_started: int = 0
    sandboxes_ended: int = 0
    agents_failed: int = 0
    """Of those ended, the agents whose last run failed (a non-zero exit, a model API that did not answer, stopped
    for a fault): no figure said how many agents did not finish their task."""
    merged: int = 0
    rejected: int = 0
    overridden: int = 0
    commits: int = 0
    """Commits landed on the branch (for a runtime: those its agents made)."""
    agent_commits: int = 0
    decisions_timed: int = 0
    """People's decisions timed from the agent's end (the policy's own, at once, would pull the median down)."""
    decided_by_policy: int = 0
    """Changes the policy approved or rejected by itself, with no one asked."""
    median_decision_s: float | None = None
    gated: int = 0
    first_try_passed: int = 0
    regressions_caught: int = 0
    agents_reporting: int = 0
    """Agents that reported tokens or cost at their end."""
    agents_costing: int = 0
    """Agents that reported a cost (Codex reports tokens alone: its cost is not known, not $0.00)."""
    input_tokens: int = 0
    """Every input token the models read, their caches' included (`input_tokens_read` where an agent said it)."""
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def decided(self) -> int:
        return self.merged + self.rejected

    @property
    def acceptance_rate(self) -> float | None:
        return self.merged / self.decided if self.decided else None

    @property
    def agent_share(self) -> float | None:
        return self.agent_commits / self.commits if self.commits else None

    @property
    def first_try_pass_rate(self) -> float | None:
        return self.first_try_passed / self.gated if self.gated else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decided": self.decided, "acceptance_rate": self.acceptance_rate,
                "agent_share": self.agent_share, "first_try_pass_rate": self.first_try_pass_rate}


COUNTED = tuple(f.name for f in fields(Breakdown) if f.name not in ("key", "median_decision_s"))


@dataclass(frozen=True, slots=True)
class Conflicts:
    """Conflicts kept from happening before generation, and those met at merge."""

    claims_refused: int = 0
    """Claims refused: a person's, a plan's, and an agent's edit the hook held back (its write never made)."""
    agent_claims_refused: int = 0
    """An agent's own claims (the MCP `claim` tool) refused for its bounds, too broad or blocked by the policy:
    no conflict, so not among those prevented (a claim refused on another's is among `claims_refused`)."""
    commits_refused: int = 0
    """An agent's commits the commit hook refused (touching another sandbox's claims): made, never landed."""
    rejected_at_claim: int = 0
    """Sandboxes rejected before they started because a claim was refused (each also a refused claim)."""
    scheduled_apart: int = 0
    """Plan edges that ordered two colliding tasks one after the other."""
    at_merge: int = 0
    """Sandboxes whose merge met a conflict, each once per branch however often the merge was tried."""
    merged_over_claims: int = 0
    """Sandboxes merged though they change what others hold, a lead approving it (`merged_over_claims`): their
    refusals are not among those prevented."""

    @property
    def prevented(self) -> int:
        return self.claims_refused + self.commits_refused + self.scheduled_apart

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "prevented": self.prevented}


@dataclass(frozen=True, slots=True)
class Override:
    """A person overriding the policy (an escalation) or a refused claim."""

    at: float
    by: str
    kind: str
    """escalation or claim"""
    subject: str
    sandbox: str
    runtime: str
    reason: str


@dataclass(frozen=True, slots=True)
class Escalations:
    opened: int = 0
    by_risk: dict[str, int] = field(default_factory=dict)
    by_rule: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Metrics:
    """Everything `loomtui report` says about [since, until) on `branch`."""

    since: float
    until: float
    branch: str
    total: Breakdown
    by_day: tuple[Breakdown, ...] = ()
    by_runtime: tuple[Breakdown, ...] = ()
    rejected_before_start: int = 0
    agent_changes: tuple[Landed, ...] = ()
    """The agent-made commits that landed, oldest first."""
    agent_by_marker: dict[str, int] = field(default_factory=dict)
    evals: int = 0
    sandboxes_with_regressions: int = 0
    conflicts: Conflicts = Conflicts()
    escalations: Escalations = Escalations()
    overrides: tuple[Override, ...] = ()
    audit_entries: int = 0
    damaged_entries: tuple[int, ...] = ()
    partial: tuple[str, ...] = ()
    """Why some figures are incomplete (empty: they are whole)."""
    notes: tuple[str, ...] = ()
    """What a reader should know, such as why everything is zero."""

    # The figures most callers want, from the total.
    @property
    def decided(self) -> int:
        return self.total.decided

    @property
    def merged(self) -> int:
        return self.total.merged

    @property
    def rejected(self) -> int:
        return self.total.rejected

    @property
    def overridden(self) -> int:
        return self.total.overridden

    @property
    def acceptance_rate(self) -> float | None:
        return self.total.acceptance_rate

    @property
    def commits(self) -> int:
        return self.total.commits

    @property
    def agent_commits(self) -> int:
        return self.total.agent_commits

    @property
    def agent_share(self) -> float | None:
        return self.total.agent_share

    @property
    def median_decision_s(self) -> float | None:
        return self.total.median_decision_s

    @property
    def first_try_pass_rate(self) -> float | None:
        return self.total.first_try_pass_rate

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the window also as ISO times."""
        return {
            "since": self.since, "until": self.until, "since_iso": iso(self.since), "until_iso": iso(self.until),
            "branch": self.branch, "total": self.total.as_dict(), "by_day": [b.as_dict() for b in self.by_day],
            "by_runtime": [b.as_dict() for b in self.by_runtime], "rejected_before_start": self.rejected_before_start,
            "agent_changes": [c.as_dict() for c in self.agent_changes], "agent_by_marker": self.agent_by_marker,
            "evals": self.evals, "sandboxes_with_regressions": self.sandboxes_with_regressions,
            "conflicts": self.conflicts.as_dict(), "escalations": asdict(self.escalations),
            "overrides": [asdict(o) for o in self.overrides], "audit_entries": self.audit_entries,
            "damaged_entries": list(self.damaged_entries), "partial": list(self.partial), "notes": list(self.notes),
        }


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")


def day_of(when: float) -> str:
    """The UTC date of a time, as YYYY-MM-DD."""
    return _day_name(int(when // DAY_S))


@functools.lru_cache(maxsize=4096)
def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_S, UTC).strftime("%Y-%m-%d")


class _Tally:
    """Counts for one breakdown while the window is read."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.cost = 0.0
        self.waits: list[float] = []

    def freeze(self, key: str) -> Breakdown:
        counts = {name: self.counts[name] for name in COUNTED if name != "cost_usd"}
        counts["decisions_timed"] = len(self.waits)
        return Breakdown(key=key, **counts, cost_usd=round(self.cost, 6),
                         median_decision_s=statistics.median(self.waits) if self.waits else None)


class _Tallies:
    """Every breakdown at once: a figure counts for its day, its runtime and the total."""

    def __init__(self, since: float, until: float) -> None:
        self.total = _Tally()
        self.days: dict[str, _Tally] = {}
        if until - since <= SEEDED_DAYS * DAY_S:  # a quiet day is a row too; over years, only busy days are
            day = since
            while day < until:
                self.days.setdefault(day_of(day), _Tally())
                day += DAY_S
            self.days.setdefault(day_of(max(since, until - 1e-6)), _Tally())
        self.runtimes: dict[str, _Tally] = {}

    @staticmethod
    def _slot(table: dict[str, _Tally], key: str) -> _Tally:
        found = table.get(key)  # not setdefault: that would build a Tally on every call
        if found is None:
            found = table[key] = _Tally()
        return found

    def day(self, when: float) -> _Tally:
        return self._slot(self.days, day_of(when))

    def runtime(self, name: str) -> _Tally:
        return self._slot(self.runtimes, name or UNKNOWN_RUNTIME)

    def _each(self, when: float, runtime: str) -> Iterable[_Tally]:
        return self.total, self.day(when), self.runtime(runtime)

    def add(self, name: str, when: float, runtime: str, amount: int = 1) -> None:
        for tally in self._each(when, runtime):
            tally.counts[name] += amount

    def wait(self, seconds: float, when: float, runtime: str) -> None:
        for tally in self._each(when, runtime):
            tally.waits.append(seconds)

    def spend(self, cost: float, when: float, runtime: str) -> None:
        for tally in self._each(when, runtime):
            tally.cost += cost


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Reader:
    """One pass over the window's audit entries."""

    def __init__(self, tallies: _Tallies, sandboxes: dict[str, SandboxFacts]) -> None:
        self.tallies = tallies
        self.sandboxes = sandboxes
        self.outcome: dict[str, tuple[str, float]] = {}
        self.ended: dict[str, float] = {}
        self.failed: set[str] = set()  # sandboxes whose last end in the window was `sandbox.failed`
        self.started: set[str] = set()
        self.timed: set[str] = set()
        self.before_start = 0
        self.conflicts: Counter[str] = Counter()
        self.refused: set[tuple[str, str, str]] = set()
        self.run_usage: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.reporting: set[str] = set()  # sandboxes counted among the agents reporting usage, and a cost
        self.costing: set[str] = set()
        self.overruled: set[tuple[str, str, str] | None] = set()
        self.scheduled: set[tuple[str, ...]] = set()  # (plan file, before, after, kind): once however often it ran
        self.met_at_merge: set[tuple[str, str]] = set()
        self.overrides: list[Override] = []

    def runtime(self, sandbox_id: str) -> str:
        record = self.sandboxes.get(sandbox_id)
        return record.runtime if record is not None else UNKNOWN_RUNTIME

    def read(self, entry: Entry) -> None:
        action, details, sandbox = entry.action, entry.details, entry.subject
        moved_from = str(details.get("from", ""))
        # A sandbox run again (`sandbox start` after a run that made no change) is one sandbox: counted
        # once started and once ended, at its last end, with its agent's report once (the last run's).
        if action == "sandbox.running" and moved_from == "planned":
            if sandbox not in self.started:
                self.started.add(sandbox)
                self.tallies.add("sandboxes_started", entry.at, self.runtime(sandbox))
        elif action in AGENT_ENDS and moved_from in RAN:
            self.ended[sandbox] = entry.at
            (self.failed.add if action == "sandbox.failed" else self.failed.discard)(sandbox)
            self.timed.discard(sandbox)
            if "usage" in details:  # this run's own, said at its end (null: it said none)
                usage = details["usage"]
                self.run_usage.setdefault(sandbox, []).append((entry.at, usage if isinstance(usage, dict) else {}))
        elif action == "sandbox.rejected" and moved_from == "planned":
            self.before_start += 1
            self.conflicts["rejected_at_claim"] += str(details.get("reason", "")).startswith("claim on")
        elif action in ("sandbox.merged", "sandbox.rejected"):
            self.outcome[sandbox] = (action.split(".")[1], entry.at)
        if action in ("sandbox.approved", "sandbox.rejected") and moved_from != "planned":
            self._decision(sandbox, entry.at, by_policy=moved_from == "gating")
        elif action in ("escalation.override", "claim.override"):
            kind = action.split(".")[0]
            on = str(details.get("sandbox", "")) if kind == "escalation" else sandbox
            # A claim by its number and target (it said "overrode claim c5b186", the sandbox's id, for the claim).
            subject = entry.subject if kind == "escalation" or "claim" not in details else \
                f"#{details['claim']} {details.get('target', '')}".rstrip()
            self.overrides.append(Override(entry.at, str(details.get("by") or entry.actor), kind, subject, on,
                                           self.runtime(on), str(details.get("reason", ""))))
            self.tallies.add("overridden", entry.at, self.runtime(on))
            # A refusal a lead then overrode kept nothing apart: both hold the code (it counted as prevented).
            for overruled in overruled_keys(entry):
                if overruled in self.refused and overruled not in self.overruled:
                    self.overruled.add(overruled)
                    self.conflicts["claims_refused"] -= 1
        elif kept_off := [what for what in refusal_keys(entry) if what not in self.refused]:
            self.refused.update(kept_off)
            self.conflicts[REFUSALS[action]] += len(kept_off)
        elif action == "plan.scheduled":
            # A plan run twice kept the same tasks apart once: each run's edges counted anew (two runs of six
            # overlapping tasks read "10 scheduled apart").
            for edge in details.get("edges") or []:
                if isinstance(edge, dict) and edge.get("kind") in SCHEDULED_APART:
                    key = (str(details.get("file", "")), str(edge.get("before")), str(edge.get("after")),
                           str(edge.get("kind")))
                    if key not in self.scheduled:
                        self.scheduled.add(key)
                        self.conflicts["scheduled_apart"] += 1
        elif (met := merge_conflict_key(entry)) is not None and met not in self.met_at_merge:
            self.met_at_merge.add(met)
            self.conflicts["at_merge"] += 1

    def _decision(self, sandbox: str, at: float, *, by_policy: bool) -> None:
        """The first decision after an agent's end: how long people took; one the policy took by itself as its
        review ended is counted apart (five auto-approved docs changes made Claude's median 4 s)."""
        if sandbox in self.timed:
            return
        if by_policy:
            self.timed.add(sandbox)
            self.tallies.add("decided_by_policy", at, self.runtime(sandbox))
            return
        record = self.sandboxes.get(sandbox)
        ended = self.ended.get(sandbox)
        if ended is None and record is not None:
            ended = record.ended_at  # the agent ended before the window
        if ended is None or ended > at:
            return
        self.timed.add(sandbox)
        self.tallies.wait(at - ended, at, self.runtime(sandbox))

    def _tokens(self, sandbox: str, at: float) -> None:
        """The tokens and cost of the sandbox's runs that ended in the window, each at its end; of the last run
        alone, from its record, where its end's entry was written before ends said them."""
        runs = self.run_usage.get(sandbox)
        if runs is not None:
            for ended, usage in runs:
                self._usage(sandbox, ended, usage)
            return
        record = self.sandboxes.get(sandbox)
        if record is not None and record.agent_result is not None:
            self._usage(sandbox, at, record.agent_result)

    def _usage(self, sandbox: str, at: float, result: dict[str, Any]) -> None:
        """One run's report counted at its end; the sandbox as one agent reporting, however many runs."""
        tokens_in = _number(result.get("input_tokens_read"))
        tokens_in = _number(result.get("input_tokens")) if tokens_in is None else tokens_in  # kept before it was said
        tokens_out, cost = _number(result.get("output_tokens")), _number(result.get("cost_usd"))
        if tokens_in is None and tokens_out is None and cost is None:
            return
        runtime = self.runtime(sandbox)
        if sandbox not in self.reporting:
            self.reporting.add(sandbox)
            self.tallies.add("agents_reporting", at, runtime)
        self.tallies.add("input_tokens", at, runtime, int(tokens_in or 0))
        self.tallies.add("output_tokens", at, runtime, int(tokens_out or 0))
        if cost is not None:
            if sandbox not in self.costing:
                self.costing.add(sandbox)
                self.tallies.add("agents_costing", at, runtime)
            self.tallies.spend(cost, at, runtime)

    def finish(self, merged_over_claims: set[str], met_anyway: set[tuple[str, str, str]]) -> None:
        for key in sorted(self.refused - self.overruled):
            if (key[1] in merged_over_claims or key in met_anyway) and key[0] not in NOT_CONFLICTS:
                self.overruled.add(key)  # the change it was kept from landed (or met the other at merge)
                self.conflicts[REFUSALS[key[0]]] -= 1
        self.conflicts["merged_over_claims"] = len(merged_over_claims)
        for sandbox, at in self.ended.items():
            self.tallies.add("sandboxes_ended", at, self.runtime(sandbox))
            if sandbox in self.failed:
                self.tallies.add("agents_failed", at, self.runtime(sandbox))
            self._tokens(sandbox, at)
        for sandbox, (outcome, at) in self.outcome.items():
            self.tallies.add(outcome, at, self.runtime(sandbox))


def _gates(tallies: _Tallies, runs: Sequence[GateOutcome], runtime_of: dict[str, str]) -> None:
    """First-try pass: every blocking check passed on the first commit a sandbox's gates ran on."""
    by_sandbox: dict[str, list[GateOutcome]] = {}
    for run in runs:
        by_sandbox.setdefault(run.sandbox_id, []).append(run)
    for sandbox, found in by_sandbox.items():
        first = found[0]
        tried: dict[str, str] = {}
        for run in found:
            if run.commit_sha == first.commit_sha and run.blocking:
                tried.setdefault(run.gate, run.status)
        if "running" in tried.values():
            continue  # not judged yet
        runtime = runtime_of.get(sandbox, UNKNOWN_RUNTIME)
        tallies.add("gated", first.started, runtime)
        tallies.add("first_try_passed", first.started, runtime, int(all(s == "passed" for s in tried.values())))


def _regressions(workspace: Workspace, outcome: EvalOutcome) -> tuple[str, ...]:
    """The tests an eval found regressed (read whole only where it found some, or does not say)."""
    if outcome.regressions == 0:
        return ()
    record = workspace.store.eval_report_by_id(outcome.id)
    if record is None:
        return ()
    if isinstance(listed := record.data.get("regressions"), list):  # the report's own summary of its checks
        return tuple(str(test) for test in listed)
    from loomtui.guardrails.evals import EvalReport  # here: the eval harness is slow to import, and rarely needed

    try:
        return EvalReport.from_dict(record.data).regressions
    except (KeyError, TypeError, ValueError, AttributeError):
        return ()


def _escalations(workspace: Workspace, since: float, until: float) -> Escalations:
    # A claim override's record asked no one (it was decided as it was made): counted under overrides, not here.
    found = [e for e in workspace.store.escalations_opened_between(since, until) if e.kind != "conflict-override"]
    rules: Counter[str] = Counter()
    for escalation in found:
        # One rule, whichever stage met it: `ledger-claims` and `ledger-claims (claim stage, ...)` were two rows.
        rules.update({str(r.get("name")).removesuffix(f" ({CLAIM_STAGE_LABEL})")
                      for r in escalation.data.get("rules") or () if isinstance(r, dict)})
    return Escalations(len(found), dict(Counter(e.risk for e in found)), dict(rules),
                       dict(Counter(e.status for e in found)), dict(Counter(e.kind for e in found)))


def _history_figures(tallies: _Tallies, history: History) -> Counter[str]:
    markers: Counter[str] = Counter()
    for landed in history.landed:
        runtime = landed.mark.runtime if landed.mark else ""
        for tally in (tallies.total, tallies.day(landed.committed)):
            tally.counts["commits"] += 1
            tally.counts["agent_commits"] += landed.agent_made
        if landed.mark is not None:  # a runtime's commits are the ones its agents made
            made = tallies.runtime(runtime)
            made.counts["commits"] += 1
            made.counts["agent_commits"] += 1
            markers.update(landed.mark.markers)
    return markers


def _notes(workspace: Workspace, entries: int) -> list[str]:
    """Why the figures may all be zero."""
    if not workspace.store.holds_records():
        return ["the store is empty: no sandbox has run in this repository yet, so every store figure is zero "
                "(start one with `loomtui sandbox new`, or see `loomtui demo`)"]
    if entries:
        return []
    newest = newest_entry_time(workspace.store)
    when = f"; the newest audit entry is from {iso(newest)}" if newest is not None else ""
    return [f"nothing was recorded in this window{when}"]


def compute_metrics(workspace: Workspace, since: float, until: float | None = None, branch: str | None = None, *,
                    agent_trailers: Sequence[str] = ()) -> Metrics:
    """The metrics of [since, until) (until: now) on `branch` (default main, then master).

    `agent_trailers` adds trailer names that mark agent-made commits (with those in
    `observability.agent_trailers` and LOOMTUI_AGENT_TRAILERS). Raises LoomError (exit 2) when the branch is not found.
    """
    until = time.time() if until is None else until
    store = workspace.store
    window, unread = workspace_window(workspace, since, until, READ_ACTIONS)
    partial: list[str] = [unread] if unread else []
    entries, damaged = window.entries, window.damaged
    sandboxes = {r.id: r for r in store.sandbox_facts_between(since, until)}
    missing = {e.subject for e in entries if e.action.startswith("sandbox.")} - sandboxes.keys()
    sandboxes.update((r.id, r) for r in store.sandbox_facts(sorted(missing)))
    tallies = _Tallies(since, until)
    for record in sandboxes.values():
        if since <= record.created < until:
            tallies.add("sandboxes_created", record.created, record.runtime)
    reader = _Reader(tallies, sandboxes)
    for entry in entries:
        reader.read(entry)
    reader.finish(merged_over_claims(entries), met_at_merge_anyway(entries))
    gate_runs = store.first_gate_outcomes(since, until)
    runtime_of = {r.id: r.runtime for r in sandboxes.values()}
    runtime_of.update((r.id, r.runtime) for r in store.sandbox_facts(
        sorted({run.sandbox_id for run in gate_runs} - runtime_of.keys())))
    _gates(tallies, gate_runs, runtime_of)
    reports = store.eval_outcomes_between(SANDBOX_EVAL, since, until)
    # Each test a sandbox's evals found regressed, once, when first found: the newest eval alone was read, so a
    # regression caught and then fixed by the agent was gone from the figure (and a day could show fewer than an hour).
    caught: dict[str, set[str]] = {}
    for report in reports:
        found = set(_regressions(workspace, report)) - caught.setdefault(report.subject, set())
        caught[report.subject] |= found
        tallies.add("regressions_caught", report.created, runtime_of.get(report.subject, UNKNOWN_RUNTIME), len(found))
    with_regressions = sum(bool(tests) for tests in caught.values())
    try:
        configured = workspace.load_config().agent_trailers  # `observability.agent_trailers` in .loom/loom.yaml
    except ConfigError as exc:  # the history is still readable: figures, said as partial (it refused them all)
        configured = ()
        partial.append(f"{exc}: its observability.agent_trailers are not read, only the built-in trailers count")
    history = read_history(workspace.root, branch, since, until, agent_trailer_names((*configured, *agent_trailers)))
    markers = _history_figures(tallies, history)
    partial += history.partial
    if damaged:
        shown = ", ".join(str(s) for s in damaged[:10]) + (" ..." if len(damaged) > 10 else "")
        one = len(damaged) == 1
        partial.append(f"{len(damaged)} audit entr{'y is' if one else 'ies are'} not a valid audit record "
                       f"(seq {shown}), skipped; `loomtui audit verify` says more")
    return Metrics(
        since=since, until=until, branch=history.branch, total=tallies.total.freeze("all"),
        by_day=tuple(tallies.days[d].freeze(d) for d in sorted(tallies.days)),
        by_runtime=tuple(tallies.runtimes[r].freeze(r) for r in sorted(tallies.runtimes)),
        rejected_before_start=reader.before_start,
        agent_changes=tuple(c for c in history.landed if c.agent_made), agent_by_marker=dict(markers),
        evals=len(reports), sandboxes_with_regressions=with_regressions,
        conflicts=Conflicts(**{name: reader.conflicts[name] for name in (
            "claims_refused", "agent_claims_refused", "commits_refused", "rejected_at_claim", "scheduled_apart",
            "at_merge", "merged_over_claims")}),
        escalations=_escalations(workspace, since, until), overrides=tuple(reader.overrides),
        audit_entries=window.count, damaged_entries=tuple(damaged), partial=tuple(partial),
        notes=(*history.notes, *_notes(workspace, window.count)),
    )
