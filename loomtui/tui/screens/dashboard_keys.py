"""The Sandboxes view's keys, and which of them apply to the selected sandbox: the footer shows
those (a merged sandbox offers no Stop, a planned one its Start), while a key that does not apply
still answers when pressed, saying why not (a hidden key that did nothing would say nothing)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from textual.binding import Binding, BindingType

from loomtui.execution.agent_control import DEFAULT_GRACE_S
from loomtui.execution.lifecycle import APPROVED, AWAITING_REVIEW, EXITED, LIVE, MERGED, PAUSED, PLANNED
from loomtui.execution.sandboxes import has_worktree, on_this_host
from loomtui.store import SandboxRecord
from loomtui.tui.keys import shown_where_it_applies
from loomtui.tui.sandbox_text import app_step_hints
from loomtui.workflow.steps import PersonAction, Step, StepView

HOST_KEYS: Final = frozenset({"start", "stop", "merge", "retry", "pause_resume"})
"""The footer's keys only the machine a sandbox runs on can use (`x` says so when pressed)."""
FOLLOWS_SELECTION: Final = frozenset({"start", "stop", "merge", "diff", "evals", "open", "drop_after", "retry",
                                      "pause_resume"})
"""Actions the footer shows only while they apply to the selected sandbox (`open` needs one selected,
and does nothing without: it has no twin)."""

DASHBOARD_BINDINGS: Final[list[BindingType]] = [
    Binding("n", "new_sandbox", "New", id="dashboard.new",
            tooltip="A new sandbox: task, runtime, claims, conflicts"),
    *shown_where_it_applies(Binding("S", "start", "Start", key_display="S", id="dashboard.start",
                                    tooltip="Start a planned agent, or rerun one with no change")),
    *shown_where_it_applies(Binding("s", "stop", "Stop", id="dashboard.stop",
                                    tooltip="Stop the agent (asks first; its work stays)")),
    # A failed step, or one due that nothing here is doing: `sandbox advance` had no key (the Next column said
    # "failed-step: ..." with nothing to press, S refused it, and the palette had no retry).
    *shown_where_it_applies(Binding("R", "retry", "Retry", key_display="R", id="dashboard.retry",
                                    tooltip="Its next step now: a failed step tried again")),
    *shown_where_it_applies(Binding("W", "drop_after", "Stop waiting", key_display="W", id="dashboard.drop_after",
                                    tooltip="Start a held task without those it waits for")),
    # Shown for a paused agent (its way on was only in `?`); a running one's pause stays out of a full footer.
    *shown_where_it_applies(Binding("p", "pause_resume", "Pause/resume", id="dashboard.pause",
                                    tooltip="Pause or resume the selected agent")),
    Binding("enter", "open", "Open", id="dashboard.open",
            tooltip="Attach to the agent's tmux session, else show its log"),
    *shown_where_it_applies(Binding("d", "diff", "Diff", id="dashboard.diff", tooltip="The selected sandbox's diff")),
    *shown_where_it_applies(Binding("e", "evals", "Eval", id="dashboard.eval",
                                    tooltip="Run gate 1 and gate 2 on the sandbox again, live")),
    Binding("M", "evals(True)", "Merged gate", key_display="M", id="dashboard.merged_gate",
            show=False, tooltip="Every pending sandbox merged together and checked"),
    Binding("z", "zoom", "Zoom detail", id="dashboard.zoom",
            show=False, tooltip="The detail takes the whole width; again to restore"),
    # The detail's tabs from anywhere, as lazygit's `[` `]`: it took tab to reach the tab strip, then ← →,
    # and neither the footer nor `?` said so.
    Binding("left_square_bracket", "detail_tab(-1)", "Previous tab", key_display="[", id="dashboard.tab_previous",
            show=False, tooltip="The detail's previous tab (Details, Log, Claims, ...)"),
    Binding("right_square_bracket", "detail_tab(1)", "Next tab", key_display="]", id="dashboard.tab_next",
            show=False, tooltip="The detail's next tab"),
    Binding("w", "wrap", "Wrap lines", id="dashboard.wrap",
            show=False, tooltip="Fold long log lines at the pane's width, or not"),
    *shown_where_it_applies(Binding("m", "merge", "Merge", id="dashboard.merge",
                                    tooltip="Merge an approved sandbox (asks first)")),
    Binding("x", "archive", "Archive", id="dashboard.archive",
            show=False, tooltip="Archive the sandbox (asks first; its branch stays)"),
    Binding("X", "archive_done", "Archive done", key_display="X", id="dashboard.archive_done",
            show=False, tooltip="Archive every merged or rejected sandbox (asks first)"),
    Binding("slash", "filter", "Filter", key_display="/", id="dashboard.filter",
            tooltip="Show only the sandboxes that match what you type"),
    # In the footer while there is something to back out of (a filter, the zoom): the way out was unsaid.
    *shown_where_it_applies(Binding("escape", "back", "Back", id="dashboard.back",
                                    tooltip="Out of the filter or the detail, back to the table")),
]


def stop_question(sandbox: SandboxRecord) -> str:
    """What `s` asks before it stops a live agent."""
    return (f"Stop the agent of sandbox {sandbox.id}? It gets SIGTERM, and SIGKILL after {DEFAULT_GRACE_S:g} s; "
            f"what it wrote, committed or not, is kept on {sandbox.branch}, and a person looks at it before it "
            "merges.")


def drop_after_question(sandbox: SandboxRecord, statuses: Mapping[str, str]) -> str:
    """What `W` asks before a held task starts without those it waits for that have not merged (`statuses`:
    theirs, by id)."""
    unmerged = [f"{other} ({statuses[other]})" if other in statuses else other
                for other in sandbox.after if statuses.get(other) != MERGED]
    changes = "its change" if len(unmerged) == 1 else "their changes"
    return (f"Sandbox {sandbox.id} stops waiting for {', '.join(unmerged)} and starts from "
            f"{sandbox.target or 'its target'} as it is, without {changes}. Go on?")


def merge_question(sandbox: SandboxRecord) -> str:
    """What `m` asks before it merges."""
    return (f"Merge sandbox {sandbox.id} ({sandbox.branch}) into {sandbox.target or 'its target'}? Only a clean "
            "merge goes in.")


def archive_question(sandbox: SandboxRecord, step: StepView | None = None) -> str:
    """What `x` asks before it archives one sandbox (`step`: its next step, which may be people's decision)."""
    # It withdraws the escalation people were to decide: said (archived, the escalation went without a word).
    asked = (f" It waits for {step.waits_on}: that is withdrawn." if step is not None
             and step.step in (Step.WAIT_DECISION, Step.WAIT_START_APPROVAL) else "")
    if not has_worktree(sandbox):  # a task still waiting on others: no worktree, no branch, nothing to save
        return (f"Archive sandbox {sandbox.id}? It never started: it has no worktree or branch yet, and its task "
                f"is dropped (the tasks waiting on it are held).{asked}")
    target = sandbox.target or "its target"
    branch = (f"its branch goes (its commits are in {target})" if sandbox.status == MERGED else
              f"the branch stays (unless its commits are all in {target} already)")
    return (f"Archive sandbox {sandbox.id}? Its worktree is removed; uncommitted work is committed to "
            f"{sandbox.branch or 'its branch'} first, and {branch}.{asked}")


def archive_done_question(done: list[SandboxRecord]) -> str:
    """What `X` asks before it archives every merged or rejected sandbox (`done`)."""
    which = (f"sandbox {done[0].id} ({done[0].status})" if len(done) == 1
             else f"the {len(done)} merged or rejected sandboxes ({', '.join(s.id for s in done)})")
    return (f"Archive {which}? Worktrees are removed; a merged branch goes (its commits are in its target), a "
            "rejected one stays. One with uncommitted work is left as it is.")


def merge_refusal(sandbox: SandboxRecord, step: StepView | None) -> str | None:
    """Why `m` does not merge this sandbox now, or None when it asks to (only an approved change,
    or one whose review needs no decision, merges)."""
    if sandbox.status not in (APPROVED, AWAITING_REVIEW):
        why = (f"already merged into {sandbox.merged_into or sandbox.target}" if sandbox.status == MERGED
               else "only an approved change merges (its review and escalation come first)")
        return f"sandbox {sandbox.id} is {sandbox.status}: {why}"
    if sandbox.status == AWAITING_REVIEW and step is not None and step.step == Step.WAIT_DECISION:
        return f"sandbox {sandbox.id} is not approved yet: it {step.line(app_step_hints())}"
    if step is not None and step.step == Step.MERGE_CONFLICT:  # again, onto the same tip: the same conflict
        return f"sandbox {sandbox.id}: {step.line(app_step_hints())}"  # the step says "merge-conflict: ..."
    return None


def key_applies(action: str, sandbox: SandboxRecord | None, step: StepView | None) -> bool:
    """Whether the footer offers `action` for the selected `sandbox` (None: none selected)."""
    if sandbox is None:
        return False
    if action in HOST_KEYS and not on_this_host(sandbox):
        return False  # another machine's sandbox: done there (refused here in one line if pressed)
    if action == "start":  # the Next column says "press S" (or "S runs it again") then
        return step is not None and step.action in (PersonAction.START, PersonAction.RERUN)
    if action == "retry":  # the Next column says "R retries it" (or "R does it now") then
        return step is not None and step.action in (PersonAction.RETRY, PersonAction.ADVANCE)
    if action == "drop_after":  # held: a task it waits for will never merge
        return step is not None and step.action == PersonAction.CANCEL
    if action == "stop":
        return sandbox.status in LIVE
    if action == "pause_resume":
        return sandbox.status == PAUSED
    if action == "merge":
        return merge_refusal(sandbox, step) is None
    if action in ("evals", "diff"):  # a planned one has no change, nor one whose agent ended or failed without one
        return sandbox.status not in (PLANNED, EXITED) and (step is None or step.step != Step.NO_CHANGE)
    return True
