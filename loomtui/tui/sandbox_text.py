"""How a sandbox reads in the app: the styles of its status, risk and next step, its age, its events,
its detail fields and its claims. The dashboard shows them; the queue and the plan use the same words."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.text import Text

from loomtui.errors import escape_controls, plural
from loomtui.execution import sandboxes
from loomtui.execution.activity import turns_said
from loomtui.execution.lifecycle import LIVE, PLANNED
from loomtui.store import ClaimRecord, Event, SandboxRecord
from loomtui.tui.keys import shown_key
from loomtui.tui.visible import VisibleText, visible_controls
from loomtui.tui.widgets.fields import Field
from loomtui.workflow.steps import StepView, starts_from_target

if TYPE_CHECKING:  # the knowledge engine loads in the drift worker, not with the dashboard
    from loomtui.knowledge.engine import SandboxDrift

STATUS_STYLES = {
    "running": "bold green", "failed": "bold red", "rejected": "red",
    "awaiting_review": "bold yellow", "gating": "cyan", "approved": "green",
    "merged": "italic green", "exited": "dim", "planned": "blue",
}

RISK_STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}
def app_step_hints() -> dict[str, str]:
    """How to act on a task's step in the app (workflow.steps.PersonAction), in `StepView.line`: the keys
    the user's keymap chose."""
    return {"decide": f"press {shown_key('app.mode.escalations', '3')}",
            "override": f"press {shown_key('app.mode.escalations', '3')}",
            "merge": f"press {shown_key('dashboard.merge', 'm')}",
            "start": f"press {shown_key('dashboard.start', 'S')}",
            "rerun": f"{shown_key('dashboard.start', 'S')} runs it again",
            "retry": f"{shown_key('dashboard.retry', 'R')} retries it",
            "advance": f"{shown_key('dashboard.retry', 'R')} does it now",
            "cancel": f"{shown_key('dashboard.drop_after', 'W')} starts it without, "
                      f"{shown_key('dashboard.archive', 'x')} archives it",
            "remove": f"{shown_key('dashboard.archive', 'x')} archives it",
            "resume": f"{shown_key('dashboard.pause', 'p')} resumes it",
            # Said first in a table cell cut at ~22 characters: the words that say what to do lead.
            "resolve": f"resolve it in its worktree (`git merge` the target, commit: reviewed again), "
                       f"or {shown_key('dashboard.archive', 'x')} archives it"}
RUNNING_OR_TO_RUN: Final = LIVE | {PLANNED}
STEP_STYLES = {"held": "red", "failed-step": "bold red", "merge-conflict": "bold red", "wait-decision": "yellow",
               "wait-start-approval": "yellow", "wait-tasks": "blue", "wait-claims": "blue", "wait-merge": "green"}

QUIET_EVENTS: Final = frozenset({"audit.appended"})
"""Events the Activity tab leaves out: bookkeeping that repeats what the entries beside it say."""


def is_quiet(event: Event) -> bool:
    """Whether the Activity tab leaves `event` out: a QUIET_EVENTS kind, or a sandbox's update that changed none
    of what a line says (its data alone: a row reading `sandbox.updated  abc123` and nothing more)."""
    return event.kind in QUIET_EVENTS or (event.kind == "sandbox.updated" and not event.data)


def _base(sandbox: SandboxRecord) -> str:
    """Where its worktree started: the ref it was given and the commit that was ("HEAD" alone said nothing
    of a task that started from another's merge); for one that waits, where it will start."""
    if sandbox.status == PLANNED and not sandboxes.has_worktree(sandbox) and starts_from_target(sandbox):
        # Not the commit it was stated on ("HEAD at 1a2b3c"): it starts from its target as it is then.
        return f"{sandbox.target}'s tip when it starts"
    sha = str(sandbox.data.get("base_sha") or "")[:10]
    ref = sandbox.base_ref or ""
    if sha and ref and not sha.startswith(ref):
        return f"{ref} at {sha}"
    return sha or ref or "–"


AGE_REFRESH_S: Final = 10.0
"""How often an Age column is brought up to date between store events; every second while a row is under a
minute old (its age is in seconds: it jumped by ten)."""


def ages_due(created: Iterable[float], now: float, shown_at: float) -> bool:
    """Whether ages shown at `shown_at` are to be brought up to date at `now` (a timer asks each second)."""
    return now - shown_at >= AGE_REFRESH_S or any(now - when < 60 for when in created)


def format_age(seconds: float) -> str:
    """Short human age: 45s, 12m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_event(event: Event) -> str:
    """One plain-text log line for an event (a Log never parses markup)."""
    stamp = datetime.fromtimestamp(event.ts).strftime("%H:%M:%S")
    details = " ".join(f"{k}={v}" for k, v in sorted(event.data.items()))
    return f"{stamp}  {event.kind:<20} {event.subject}  {details}".rstrip()


def home_short(path: str | None) -> str:
    """A path under the home directory as `~/...`: the part that tells worktrees apart fits."""
    if not path:
        return ""
    home = str(Path.home())
    return "~" + path[len(home):] if home != "/" and (path == home or path.startswith(home + "/")) else path


def task_line(task: str) -> str:
    """A task in one table cell: its first line, `…` when more follow, unprintable characters (a
    bidirectional override that shows it reversed) escaped."""
    lines = task.strip().splitlines() or [""]
    return escape_controls(lines[0]) + (" …" if len(lines) > 1 else "")


def task_text(task: str) -> str:
    """A task in the detail pane: each of its lines, unprintable characters escaped."""
    return "\n".join(escape_controls(line) for line in task.splitlines())


def _status_of(sandbox: SandboxRecord) -> str:
    who = sandboxes.stopped_by(sandbox)
    return f"{sandbox.status} (stopped by {who})" if who else sandbox.status


def sandbox_fields(sandbox: SandboxRecord, step: StepView | None, diff: str | None) -> list[Field]:
    """The detail pane's fields for a sandbox: its record, its next step, its diff's size if known,
    and what its agent reported at its end."""
    # A task waiting for others has its names, not yet its branch and worktree: made when it starts (as
    # `d` says; a base commit recorded before its worktree was made read as a branch there).
    later = " (made when it starts)" if sandbox.status == PLANNED and not sandboxes.has_worktree(sandbox) else ""
    fields = [Field(label, value) for label, value in (
        ("id", sandbox.id), ("task", task_text(sandbox.task)), ("runtime", sandbox.runtime),
        ("status", _status_of(sandbox)), ("branch", (sandbox.branch or "–") + later),
        ("base", _base(sandbox)), ("worktree", (home_short(sandbox.worktree) or "–") + later),
        ("pid", str(sandbox.pid) if sandbox.pid else "–"),
        # An agent run again keeps its last run's code in the record until this run's end sets it.
        ("exit code", "–" if sandbox.exit_code is None or sandbox.status in RUNNING_OR_TO_RUN
         else str(sandbox.exit_code)),
    )]
    if not sandboxes.on_this_host(sandbox):  # a team's store: its worktree and agent are there
        fields.insert(4, Field("host", f"{sandbox.host} (another machine: it is started, stopped, merged and "
                                       "removed there)", "bold yellow"))
    fields.append(Field("isolation", sandboxes.isolation_label(sandbox),
                        "" if sandbox.isolation == "bwrap" else "bold yellow"))
    limits = sandbox.data.get("limits")  # what its agent's last start was limited to (`limits:`), or why not
    if isinstance(limits, str) and limits:
        held = sandbox.data.get("cpu_held_back_s")
        if isinstance(held, (int, float)) and held:
            limits += f" (held back {held:g} s at its CPU limit)"
        fields.append(Field("limits", limits, "bold yellow" if limits.startswith("not limited") else ""))
    why = sandbox.data.get("error") or sandbox.data.get("reason")
    if sandbox.status in ("rejected", "failed") and why:  # a refused start's claim, a crash: said, not only stored
        fields.append(Field("why", task_text(str(why)), "bold red"))
    if step is not None:
        fields.append(Field("next", step.line(app_step_hints()), STEP_STYLES.get(str(step.step), "")))
    if sandbox.after:
        fields.append(Field("after", ", ".join(str(a) for a in sandbox.after)))
    if diff is not None:
        fields.append(Field("diff", diff))
    _agent_report(fields, sandbox.data.get("agent_result"), sandbox.worktree)
    return fields


def _agent_report(fields: list[Field], result: object, worktree: str | None) -> None:
    """What the agent itself reported at its end: turns, tokens, cost, and every refused tool call (a path in its
    worktree as the repository names it, as `sandbox logs` says it)."""
    if not isinstance(result, dict):
        return
    parts = []
    if result.get("turns") is not None:
        parts.append(turns_said(result["turns"]))
    read = result.get("input_tokens_read", result.get("input_tokens")) or 0  # its caches' too, as `report` counts
    if read or result.get("output_tokens"):
        parts.append(f"{read:,} in / {result.get('output_tokens') or 0:,} out tokens")
    if isinstance(result.get("cost_usd"), (int, float)):
        parts.append(f"${result['cost_usd']:.4f}")
    if parts:
        fields.append(Field("agent", ", ".join(parts), "bold red" if result.get("is_error") else ""))
    denials = result.get("denials") or []
    if denials:
        fields.append(Field("denied", f"{plural(len(denials), 'tool call')} refused", "bold yellow"))
        inside = f"{worktree.rstrip('/')}/" if worktree else None
        fields.extend(Field("", f"{d.get('tool', '?')} {_in_repo(str(d.get('target', '')), inside)}")
                      for d in denials[:10])


def _in_repo(target: str, inside: str | None) -> str:
    return target.removeprefix(inside) if inside else target


def claims_text(held: Sequence[ClaimRecord], now: float) -> Text:
    """A sandbox's live claims, each with its lease and the regions its target resolved to."""
    listing = Text(f"{plural(len(held), 'live claim')}\n", style="bold")
    for claim in held:
        left = int(claim.expires - now)
        listing.append(f"#{claim.id} {claim.mode:<9} ")
        listing.append(claim.target)
        listing.append(f"  lease {left}s\n" if left > 0 else "  lease expired\n", style="dim")
        for region in claim.region_ids:
            if region != claim.target:  # the target is the line above: only what it resolved to
                listing.append(f"    {region}\n", style="dim")
    return listing


def context_text(given: object, drift: str) -> Text:
    """The Context tab: the slice the agent got (version, each section and why) and its drift line."""
    if not isinstance(given, dict):
        return Text("This sandbox got its task only (no context slice was recorded).")
    text = VisibleText()
    text.append(f"version {str(given.get('version', '?'))[:12]}", style="bold")
    text.append(f"  commit {str(given.get('commit') or '?')[:12]}  "
                f"~{given.get('tokens', 0)} of {given.get('budget_tokens', '?')} tokens\n", style="dim")
    text.append(drift or "checking for drift...\n", style="bold yellow" if drift.startswith("STALE") else "dim")
    for section in given.get("sections", []):
        # Untrusted file text: appended, never markup, its controls drawn (Rich drops BEL, BS, CR unseen).
        text.append(f"\n{visible_controls(str(section.get('title') or section.get('id')))}\n", style="bold")
        text.append(f"  {visible_controls(str(section.get('source')))}:{section.get('line')} "
                    f"({section.get('layer')})\n", style="dim")
        text.append(f"  {visible_controls(str(section.get('why', '')))}\n")
    return text


def drift_line(drift: SandboxDrift) -> str:
    """One line for a `SandboxDrift`: stale (and what changed), behind, or fresh."""
    if drift.status == "stale":
        changed = "; ".join(f"{c['change']}: {c.get('title') or c.get('id')}" for c in drift.changes[:6])
        return f"STALE: the context changed since it started ({changed})\n"
    if drift.status == "behind":
        return "the context moved since, but not in this sandbox's sections\n"
    return "fresh: the context is what it got\n"
