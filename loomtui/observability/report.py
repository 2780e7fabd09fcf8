"""`Metrics` rendered: plain text, markdown for a weekly note, JSON, and the Prometheus text format.

The Prometheus output is for node_exporter's textfile collector: every family has
HELP and TYPE lines, names start with `loomtui_`, and figures that split by
runtime carry a `runtime` label (summing a family gives the total). Figures are
gauges: each describes the report's window, not a counter since the start.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from loomtui.errors import markdown_said, plural
from loomtui.observability.metrics import Breakdown, Metrics

FORMATS = ("text", "json", "markdown", "prometheus")
SHOWN_CHANGES = 20
PREFIX = "loomtui_"


def percent(value: float | None) -> str:
    """A share as a person reads it; never 100% or 0% unless it is exactly so (293 of 294 read "100%")."""
    if value is None:
        return "n/a"
    shown = f"{value * 100:.0f}%"
    if shown == "100%" and value < 1:
        return ">99%"
    if shown == "0%" and value > 0:
        return "<1%"
    return shown


def duration(seconds: float | None) -> str:
    """A wait in the unit a person reads it in: 42 s, 12 min, 3.5 h, 2.1 d."""
    if seconds is None:
        return "n/a"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _when(epoch: float, *, seconds: bool = False) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    # strftime's %Y drops a year's leading zeros
    return f"{moment.year:04d}-" + moment.strftime("%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def dollars(cost: float) -> str:
    """A cost as a person reads it: cents, but under one cent said as such (a run's $0.001 read "$0.00", free)."""
    return "$0.00" if cost <= 0 else "<$0.01" if cost < 0.005 else f"${cost:,.2f}"


def _tokens(row: Breakdown) -> str:
    if not row.agents_reporting:
        return "none reported"
    # A cost only of the agents that said one: Codex's tokens alone read as "$0.00", as if free.
    some = f" ({row.agents_costing} of {row.agents_reporting} said a cost)" if (
        row.agents_costing < row.agents_reporting) else ""
    cost = f"{dollars(row.cost_usd)}{some}" if row.agents_costing else "cost not reported"
    return (f"{row.input_tokens:,} in (caches' included) / {row.output_tokens:,} out tokens, {cost} "
            f"({plural(row.agents_reporting, 'agent')} reporting)")


def summary_lines(metrics: Metrics) -> list[tuple[str, str]]:
    """(label, sentence) for each headline figure, shared by text and markdown."""
    total, conflicts, esc = metrics.total, metrics.conflicts, metrics.escalations
    # One change may carry several marks (a merge's trailer and its commits' Assisted-by): counted apart
    # they add up to more than the changes, which read as a miscount.
    markers = (f"; marked {_counts(metrics.agent_by_marker)} (a change may carry several)"
               if len(metrics.agent_by_marker) > 1 else "")
    merges = "; a merge and what it brought count as one" if any(c.merge for c in metrics.agent_changes) else ""
    before = (f"; {metrics.rejected_before_start} rejected before "
              f"{'it' if metrics.rejected_before_start == 1 else 'they'} started" if metrics.rejected_before_start
              else "")
    over_claims = (f"; {plural(conflicts.merged_over_claims, 'sandbox')} merged over another's claim by a lead's "
                   "approval (its refusals not counted)" if conflicts.merged_over_claims else "")
    people: dict[str, int] = {}
    for override in metrics.overrides:
        people[override.by] = people.get(override.by, 0) + 1
    return [
        ("Acceptance", f"{plural(total.decided, 'change')} decided: {total.merged} merged, {total.rejected} rejected "
                       f"(acceptance {percent(total.acceptance_rate)}){before}"),
        ("Agent-made", f"{total.agent_commits} of {plural(total.commits, 'commit')} that landed on {metrics.branch} "
                       f"({percent(total.agent_share)}{merges}){markers}"),
        ("Sandboxes", f"{total.sandboxes_created} created, {total.sandboxes_started} started, "
                      f"{total.sandboxes_ended} ended ({total.agents_failed} of them failed)"),
        ("Decisions", f"median {duration(total.median_decision_s)} from an agent's end to a person's decision "
                      f"({total.decisions_timed} timed); {total.decided_by_policy} decided by the policy alone"),
        ("Gates", f"{total.first_try_passed} of {plural(total.gated, 'sandbox')} passed first try "
                  f"({percent(total.first_try_pass_rate)}); {plural(total.regressions_caught, 'regression')} "
                  f"caught in {plural(metrics.sandboxes_with_regressions, 'sandbox')} "
                  f"({plural(metrics.evals, 'eval')})"),
        ("Conflicts", f"{conflicts.prevented} prevented before they landed ({conflicts.claims_refused} "
                      f"{'claim or agent edit' if conflicts.claims_refused == 1 else 'claims or agent edits'} "
                      f"refused, {plural(conflicts.commits_refused, 'agent commit')} refused, "
                      f"{plural(conflicts.scheduled_apart, 'task')} scheduled apart); {conflicts.at_merge} met at "
                      f"merge; {plural(conflicts.agent_claims_refused, 'agent claim')} refused as too broad or "
                      f"blocked{over_claims}"),
        ("Escalations", f"{esc.opened} opened; by risk: {_counts(esc.by_risk)}; by rule: {_counts(esc.by_rule)}; "
                        f"now: {_counts(esc.by_status)}"),
        ("Overrides", f"{len(metrics.overrides)}, by {_counts(people)}" if metrics.overrides else "none"),
        ("Tokens", _tokens(total)),
    ]


RUNTIME_COLUMNS: tuple[tuple[str, Callable[[Breakdown], str]], ...] = (
    ("runtime", lambda b: b.key), ("started", lambda b: str(b.sandboxes_started)),
    ("ended", lambda b: str(b.sandboxes_ended)), ("merged", lambda b: str(b.merged)),
    ("rejected", lambda b: str(b.rejected)), ("accepted", lambda b: percent(b.acceptance_rate)),
    ("overridden", lambda b: str(b.overridden)), ("commits", lambda b: str(b.agent_commits)),
    ("to decision", lambda b: duration(b.median_decision_s)), ("first try", lambda b: percent(b.first_try_pass_rate)),
    # n/a where no agent reported usage (a command runtime): $0.00 read as free.
    ("tokens in", lambda b: f"{b.input_tokens:,}" if b.agents_reporting else "n/a"),
    ("tokens out", lambda b: f"{b.output_tokens:,}" if b.agents_reporting else "n/a"),
    ("cost", lambda b: dollars(b.cost_usd) if b.agents_costing else "n/a"),
)
DAY_COLUMNS: tuple[tuple[str, Callable[[Breakdown], str]], ...] = (
    ("day", lambda b: b.key), ("started", lambda b: str(b.sandboxes_started)),
    ("ended", lambda b: str(b.sandboxes_ended)), ("merged", lambda b: str(b.merged)),
    ("rejected", lambda b: str(b.rejected)), ("accepted", lambda b: percent(b.acceptance_rate)),
    ("commits", lambda b: str(b.commits)), ("agent-made", lambda b: str(b.agent_commits)),
    ("to decision", lambda b: duration(b.median_decision_s)),
)


def _rows(columns: tuple[tuple[str, Callable[[Breakdown], str]], ...], rows: Iterable[Breakdown]) -> list[list[str]]:
    return [[name for name, _ in columns], *([cell(row) for _, cell in columns] for row in rows)]


def _day_rows(metrics: Metrics) -> list[list[str]]:
    """The by-day table, a day the window cuts marked with the part it holds ("from 14:30", "to 09:00"): a
    window starting at 14:30 showed that day's figures as the whole day's."""
    table = _rows(DAY_COLUMNS, metrics.by_day)
    since, until = datetime.fromtimestamp(metrics.since, UTC), datetime.fromtimestamp(metrics.until, UTC)
    for row in table[1:]:
        cut = [f"from {since:%H:%M}" if row[0] == f"{since:%Y-%m-%d}" and f"{since:%H:%M:%S}" != "00:00:00" else "",
               f"to {until:%H:%M}" if row[0] == f"{until:%Y-%m-%d}" and f"{until:%H:%M:%S}" != "00:00:00" else ""]
        if any(cut):
            row[0] += f" ({' '.join(part for part in cut if part)})"
    return table


def _aligned(table: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                  strict=True)))
            for row in table]


def _markdown_table(table: list[list[str]]) -> list[str]:
    head, *body = table
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "--:" for i in range(len(head))) + "|",
            *("| " + " | ".join(markdown_said(cell) for cell in row) + " |" for row in body)]


def _override_lines(metrics: Metrics, *, markdown: bool = False) -> list[str]:
    mark = "**" if markdown else ""
    said: Callable[[str], str] = markdown_said if markdown else str  # a reason is a person's words, never markup
    return [f"{_when(o.at)} {mark}{said(o.by)}{mark} overrode {said(o.kind)} {said(o.subject)}"
            f"{' (sandbox ' + said(o.sandbox) + ')' if o.sandbox and o.sandbox != o.subject else ''}: "
            f"{said(o.reason) if o.reason else 'no reason given'}" for o in metrics.overrides]


def window_title(metrics: Metrics) -> str:
    """The window and branch the figures are of, as the report's title says them."""
    # A window inside one minute is said to the second: "12:00 to 12:00" read as an empty window.
    exact = _when(metrics.since) == _when(metrics.until)
    since, until = _when(metrics.since, seconds=exact), _when(metrics.until, seconds=exact)
    return f"{since} to {until} UTC, branch {metrics.branch}"


def render_text(metrics: Metrics) -> str:
    lines = [f"loomtui report: {window_title(metrics)}"]
    lines += [f"PARTIAL: {why}" for why in metrics.partial]
    lines += [f"note: {note}" for note in metrics.notes]
    lines.append("")
    lines += [f"{label:<12} {sentence}" for label, sentence in summary_lines(metrics)]
    if metrics.by_runtime:
        lines += ["", "By runtime", *_aligned(_rows(RUNTIME_COLUMNS, metrics.by_runtime))]
    lines += ["", "By day (UTC)", *_aligned(_day_rows(metrics))]
    if metrics.overrides:
        lines += ["", "Overrides", *(f"  {line}" for line in _override_lines(metrics)[-SHOWN_CHANGES:])]
        if len(metrics.overrides) > SHOWN_CHANGES:
            lines.append(f"  ... and {len(metrics.overrides) - SHOWN_CHANGES} older (--format json lists all)")
    if metrics.agent_changes:
        lines += ["", f"Agent-made commits on {metrics.branch} ({len(metrics.agent_changes)})"]
        lines += [f"  {c.sha[:10]}  {_when(c.committed)}  {(c.mark.runtime if c.mark else ''):<8}  {c.subject}"
                  for c in metrics.agent_changes[-SHOWN_CHANGES:]]
        if len(metrics.agent_changes) > SHOWN_CHANGES:
            lines.append(f"  ... and {len(metrics.agent_changes) - SHOWN_CHANGES} older (--format json lists all)")
    return "\n".join(lines)


def render_markdown(metrics: Metrics) -> str:
    lines = [f"## Agent work: {window_title(metrics)}", ""]
    lines += [f"> **Partial:** {markdown_said(why)}" for why in metrics.partial]
    lines += [f"> Note: {markdown_said(note)}" for note in metrics.notes]
    if metrics.partial or metrics.notes:
        lines.append("")
    lines += [f"- **{label}**: {markdown_said(sentence)}" for label, sentence in summary_lines(metrics)]
    if metrics.by_runtime:
        lines += ["", "### By runtime", "", *_markdown_table(_rows(RUNTIME_COLUMNS, metrics.by_runtime))]
    lines += ["", "### By day (UTC)", "", *_markdown_table(_day_rows(metrics))]
    if metrics.overrides:
        lines += ["", "### Overrides", ""]
        lines += [f"- {line}" for line in _override_lines(metrics, markdown=True)]
    if metrics.agent_changes:
        lines += ["", f"### Agent-made commits on {metrics.branch}", ""]
        lines += [f"- `{c.sha[:10]}` {_when(c.committed)} {markdown_said(c.mark.runtime) if c.mark else ''}: "
                  f"{markdown_said(c.subject)}" for c in metrics.agent_changes[-SHOWN_CHANGES:]]
        if len(metrics.agent_changes) > SHOWN_CHANGES:
            lines.append(f"- ... and {len(metrics.agent_changes) - SHOWN_CHANGES} older")
    return "\n".join(lines)


def render_json(metrics: Metrics) -> str:
    return json.dumps(metrics.as_dict(), indent=2, sort_keys=True, default=str)


# -- Prometheus -------------------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Families:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], float | None]]) -> None:
        """One gauge family; a sample whose value is None (a rate of nothing) is left out."""
        kept = [(labels, value) for labels, value in samples if value is not None]
        self.lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} gauge"]
        for labels, value in kept:
            text = ",".join(f'{key}="{_label(val)}"' for key, val in sorted(labels.items()))
            self.lines.append(f"{PREFIX}{name}{{{text}}} {_sample(value)}" if text else
                              f"{PREFIX}{name} {_sample(value)}")


_PER_RUNTIME: tuple[tuple[str, str, Callable[[Breakdown], float | None]], ...] = (
    ("sandboxes_created", "Sandboxes created in the report window.", lambda b: b.sandboxes_created),
    ("sandboxes_started", "Sandboxes whose agent started in the report window.", lambda b: b.sandboxes_started),
    ("sandboxes_ended", "Sandboxes whose agent ended in the report window.", lambda b: b.sandboxes_ended),
    ("agents_failed", "Of the sandboxes whose agent ended in the report window, those whose last run failed.",
     lambda b: b.agents_failed),
    ("changes_merged", "Agent changes merged in the report window.", lambda b: b.merged),
    ("changes_rejected", "Agent changes rejected (and not merged since) in the report window.", lambda b: b.rejected),
    ("changes_decided", "Agent changes merged or rejected in the report window.", lambda b: b.decided),
    ("overrides", "Policy and claim overrides in the report window.", lambda b: b.overridden),
    ("agent_commits", "Agent-made commits that landed on the branch in the report window.",
     lambda b: b.agent_commits),
    ("gated_sandboxes", "Sandboxes whose gates first ran in the report window.", lambda b: b.gated),
    ("gate_first_try_passed", "Sandboxes whose gates all passed on the first commit gated.",
     lambda b: b.first_try_passed),
    ("regressions_caught", "Tests that passed on the base and failed in a sandbox, in the window's evals "
     "(each once a sandbox).",
     lambda b: b.regressions_caught),
    ("agents_reporting_usage", "Agents that reported tokens or cost at their end.", lambda b: b.agents_reporting),
    ("agent_input_tokens", "Input tokens agents' models read (their caches' included), for agents that ended in "
     "the window.",
     lambda b: b.input_tokens),
    ("agent_output_tokens", "Output tokens agents reported, for agents that ended in the window.",
     lambda b: b.output_tokens),
    ("agent_cost_usd", "Cost in US dollars agents reported, for agents that ended in the window (absent where "
     "none reported one).", lambda b: b.cost_usd if b.agents_costing else None),
    ("runtime_acceptance_ratio", "Merged over decided, per runtime (absent when nothing was decided).",
     lambda b: b.acceptance_rate),
    ("runtime_decision_seconds_median", "Median seconds from an agent's end to a person's decision, per runtime.",
     lambda b: b.median_decision_s),
)


def render_prometheus(metrics: Metrics) -> str:
    out = _Families()
    total = metrics.total
    out.family("report_window_seconds", "Length of the report window in seconds.",
               [({}, metrics.until - metrics.since)])
    out.family("report_window_end_timestamp_seconds", "End of the report window, in seconds since the epoch.",
               [({}, metrics.until)])
    out.family("report_partial", "1 when some figures are incomplete (shallow clone, damaged audit entries).",
               [({}, 1 if metrics.partial else 0)])
    out.family("audit_entries", "Audit entries recorded in the report window.", [({}, metrics.audit_entries)])
    out.family("audit_damaged_entries", "Audit entries in the window that are not valid records (skipped).",
               [({}, len(metrics.damaged_entries))])
    for name, help_text, value in _PER_RUNTIME:
        out.family(name, help_text, [({"runtime": row.key}, value(row)) for row in metrics.by_runtime])
    out.family("acceptance_ratio", "Agent changes merged over decided in the report window.",
               [({}, total.acceptance_rate)])
    out.family("decision_seconds_median", "Median seconds from an agent's end to a person's decision on its change.",
               [({}, total.median_decision_s)])
    out.family("gate_first_try_pass_ratio", "Share of gated sandboxes that passed every gate on the first try.",
               [({}, total.first_try_pass_rate)])
    out.family("commits", "Commits that landed on the branch (first-parent line) in the report window.",
               [({"branch": metrics.branch}, total.commits)])
    out.family("agent_commit_ratio", "Share of the commits that landed on the branch that were agent-made.",
               [({"branch": metrics.branch}, total.agent_share)])
    out.family("agent_commits_by_marker", "Agent-made commits by the mark that shows it (one may have several).",
               [({"marker": marker}, n) for marker, n in sorted(metrics.agent_by_marker.items())])
    conflicts = metrics.conflicts
    out.family("conflicts_prevented", "Conflicts kept from landing (most before code was generated), by how.",
               [({"kind": "claim_refused"}, conflicts.claims_refused),
                ({"kind": "commit_refused"}, conflicts.commits_refused),
                ({"kind": "scheduled_apart"}, conflicts.scheduled_apart)])
    out.family("agent_claims_refused", "An agent's claims refused as too broad or blocked by the policy (no conflict).",
               [({}, conflicts.agent_claims_refused)])
    out.family("merged_over_claims", "Sandboxes merged though they change what other sandboxes hold (a lead "
               "approved it): their refusals are not counted as conflicts prevented.",
               [({}, conflicts.merged_over_claims)])
    out.family("conflicts_at_merge", "Sandboxes whose merge met a conflict (each once per branch, however often "
               "tried).", [({}, conflicts.at_merge)])
    out.family("escalations_opened", "Escalations opened in the report window, by risk.",
               [({"risk": risk}, n) for risk, n in sorted(metrics.escalations.by_risk.items())])
    out.family("escalation_rule_hits", "Escalations opened in the report window, by policy rule that fired.",
               [({"rule": rule}, n) for rule, n in sorted(metrics.escalations.by_rule.items())])
    by_person: dict[tuple[str, str], int] = {}
    for override in metrics.overrides:
        by_person[(override.by, override.kind)] = by_person.get((override.by, override.kind), 0) + 1
    out.family("overrides_by_person", "Overrides in the report window, by who made them and of what.",
               [({"by": by, "kind": kind}, n) for (by, kind), n in sorted(by_person.items())])
    return "\n".join(out.lines)


RENDERERS: dict[str, Callable[[Metrics], str]] = {
    "text": render_text, "json": render_json, "markdown": render_markdown, "prometheus": render_prometheus,
}


def render(metrics: Metrics, fmt: str) -> str:
    """The report in one of FORMATS."""
    return RENDERERS[fmt](metrics)
