"""The evidence behind the checklist's ten items, and the ten checks themselves.

`Evidence` reads what the items share once, and only when an item asks: the config,
the policy, the store's sandboxes and eval reports, the audit log's actions, the
context (with the region index ADR mentions are matched against: the slowest part,
cached on disk by blob hash), the main branch's loomtui merges, the CI files. Files
are read from the working tree, as `load_config` and `configured_policy` read them. Each
check returns (answer, evidence, next step, facts); `checklist.py` makes them Items.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from loomtui.errors import LoomError, plural
from loomtui.gitcmd import Git

if TYPE_CHECKING:
    from loomtui.config import LoomConfig
    from loomtui.governance.policy import Policy
    from loomtui.knowledge.sources import Context
    from loomtui.observability.window import Entry
    from loomtui.store import EvalReportRecord, SandboxRecord
    from loomtui.workspace import Workspace

YES: Final = "yes"
PARTLY: Final = "partly"
NO: Final = "no"
UNKNOWN: Final = "unknown"
"""An item whose evidence could not be read (a broken config): unscored, and the checklist says so."""

FAST_SUITE_S: Final = 300.0
WEEK_S: Final = 7 * 24 * 3600.0
CI_GLOBS: Final = (".github/workflows/*.yml", ".github/workflows/*.yaml", ".gitlab-ci.yml", ".ci/*",
                   ".circleci/config.yml", "Jenkinsfile", "azure-pipelines.yml", "bitbucket-pipelines.yml",
                   ".buildkite/*.yml", ".woodpecker.yml", ".woodpecker/*.yml")
CI_GATE: Final = re.compile(
    r"^(?![ \t]*-?[ \t]*name[ \t]*:)"              # not a step's name
    r"[^#\n]*?(?:^|[:;&|(-]|\s-m|\buvx|\bpipx[ \t]+run|\bexec)"  # where a command starts (not after `echo`)
    r"[ \t]*[\"']?(?:[\w./-]*/)?loomtui\b[^\n#]*?\sgate\b", re.MULTILINE)
"""A line that runs `loomtui ... gate`: not in a comment (`# - run: loomtui gate` scored the item yes), nor a
word of another command's (`run: echo "loomtui gate is disabled"` did) or of a step's name."""
CI_MAX_BYTES: Final = 256 * 1024
REVIEW_TRAILERS: Final = ("Loom-Approved-by", "Loom-Policy", "Loom-Overridden-by")
MERGES_READ: Final = 500
_TRAILER = re.compile(r"^([A-Za-z][A-Za-z-]*): (.*)$")

Answer = tuple[str, list[str], str, dict[str, Any]]


class Evidence:
    """What the items share, each read once and only when an item needs it."""

    def __init__(self, workspace: Workspace, now: float) -> None:
        self.workspace = workspace
        self.root = workspace.root
        self.now = now

    @cached_property
    def config(self) -> LoomConfig | LoomError:
        try:
            return self.workspace.load_config()
        except LoomError as exc:
            return exc

    def loaded_config(self) -> LoomConfig:
        if isinstance(self.config, LoomError):
            raise self.config
        return self.config

    @cached_property
    def policy(self) -> Policy | LoomError:
        from loomtui.governance.policy import configured_policy

        config = self.loaded_config()  # raised: the items that read the policy are unknown, not "no"
        try:
            return configured_policy(self.root, config)
        except LoomError as exc:  # the policy file itself is wrong: a gap in governance, answered as one
            return exc

    @cached_property
    def sandboxes(self) -> list[SandboxRecord]:
        return self.workspace.store.list_sandboxes(include_archived=True)

    @cached_property
    def started(self) -> list[SandboxRecord]:
        """Sandboxes whose agent ran: a `sandbox.running` entry, as `report` counts them (a planned one
        waits for its turn or approval; one refused its claims was rejected before it ever ran)."""
        ran = self.subjects("sandbox.running")
        return [s for s in self.sandboxes if s.id in ran]

    @cached_property
    def actions(self) -> Counter[str]:
        return Counter(action for action, _, _ in self._entries)

    def subjects(self, action: str) -> set[str]:
        return {subject for done, subject, _ in self._entries if done == action}

    def warned(self, action: str) -> int:
        """How many `action` entries carried conflicts (claims) or ordering edges (plans)."""
        return sum(1 for done, _, count in self._entries if done == action and count)

    @cached_property
    def plans_kept_apart(self) -> int:
        """Plan runs that ordered tasks because their code collides (an overlap or a dependency edge), not only
        because a person wrote `after:`."""
        from loomtui.observability.metrics import SCHEDULED_APART

        return sum(1 for entry in self._window if entry.action == "plan.scheduled"
                   and any(isinstance(edge, dict) and edge.get("kind") in SCHEDULED_APART
                           for edge in entry.details.get("edges") or []))

    def subjects_carrying(self, action: str) -> set[str]:
        """The subjects of `action` entries that carried something (a slice's sections, a claim's conflicts)."""
        return {subject for done, subject, count in self._entries if done == action and count}

    @cached_property
    def _window(self) -> list[Entry]:
        """Every audit entry, as `report` reads them (the log file may be damaged or cut; the store keeps
        them all)."""
        from loomtui.observability.window import workspace_window

        window, _ = workspace_window(self.workspace, 0.0, float("inf"))
        return list(window.entries)

    @cached_property
    def _entries(self) -> list[tuple[str, str, int]]:
        """(action, subject, conflicts, edges or sections it names) of every audit entry."""
        found = []
        for entry in self._window:
            named = entry.details.get("conflicts") or entry.details.get("edges") or entry.details.get("sections")
            found.append((entry.action, entry.subject, len(named) if isinstance(named, list) else 0))
        return found

    @cached_property
    def refusals(self) -> Counter[str]:
        """Conflicts kept off by a refusal, by action (`claim.refused`: a claim or an agent's edit;
        `hook.commit_refused`: an agent's commit), each once however often it was tried, and none a lead then
        overrode, as `report` counts them."""
        from loomtui.observability.metrics import (
            NOT_CONFLICTS,
            merged_over_claims,
            met_at_merge_anyway,
            overruled_keys,
            refusal_keys,
        )

        overruled = {key for entry in self._window for key in overruled_keys(entry)} | met_at_merge_anyway(
            self._window)
        landed = merged_over_claims(self._window)  # the change a refusal kept off merged: it kept nothing off
        kept_off = {key for entry in self._window if entry.action not in NOT_CONFLICTS
                    for key in refusal_keys(entry) if key not in overruled and key[1] not in landed}
        return Counter(action for action, _, _ in kept_off)

    @cached_property
    def merged_over_claims(self) -> int:
        """Sandboxes merged though a lead approved their `held-by-another` review (their refusals not counted)."""
        from loomtui.observability.metrics import merged_over_claims

        return len(merged_over_claims(self._window))

    @property
    def refused(self) -> int:
        """Conflicts kept off by any refusal (`refusals`, all kinds)."""
        return sum(self.refusals.values())

    @cached_property
    def merge_conflicts(self) -> int:
        """Sandboxes whose merge met a conflict, each once however often the merge was tried (as `report`)."""
        from loomtui.observability.metrics import merge_conflict_key

        return len({key for entry in self._window if (key := merge_conflict_key(entry)) is not None})

    @cached_property
    def eval_reports(self) -> dict[str, EvalReportRecord]:
        """The newest eval of each sandbox (gate 1 and, unless asked otherwise, gate 2's score)."""
        return self.workspace.store.latest_eval_reports("sandbox")

    @cached_property
    def context(self) -> Context:
        """The context at the working tree, mentions matched to the region index (for ADR drift)."""
        from loomtui.knowledge.engine import context_of, knowledge_index

        config = self.loaded_config()
        return context_of(self.workspace, index=knowledge_index(self.workspace, config), config=config)

    @cached_property
    def branch(self) -> str | None:
        """The main branch, chosen as `report` chooses it; None without commits or without a branch to name."""
        return self._trunk[0] if self._trunk[1] is not None else None

    @cached_property
    def _trunk(self) -> tuple[str | None, str | None]:
        """(name, tip) of the main branch; tip None on a branch with no commits yet, both None without one."""
        from loomtui.observability.history import NoSuchBranch, resolve_branch

        try:
            return resolve_branch(Git(self.root), None)
        except NoSuchBranch:  # a detached HEAD and no main, master or default branch
            return None, None

    @cached_property
    def loom_merges(self) -> list[dict[str, str]]:
        """The newest merges on the main branch made by loomtui (a `Loom-Sandbox` trailer), with their trailers.

        Its first-parent history only, as audit anchors are read: an agent's own commits on its branch, forged
        with loomtui's trailers and merged with its change, counted as merges "anchored" and "naming who allowed
        them" (and enough of them, newer, would push every real one out of those read)."""
        tip = self._trunk[1]
        if tip is None:
            return []
        done = Git(self.root).run("log", f"--max-count={MERGES_READ}", "--first-parent", "--merges",
                                  "--format=%H%x1f%(trailers:only,unfold)%x1e", tip, "--")
        found = []
        for record in done.out.split("\x1e") if done.status == 0 else ():
            commit, _, trailers = record.strip("\n").partition("\x1f")
            pairs = {"commit": commit}
            for line in trailers.splitlines():
                if match := _TRAILER.match(line.strip()):
                    pairs.setdefault(match[1], match[2])
            if "Loom-Sandbox" in pairs:
                found.append(pairs)
        return found

    @cached_property
    def ci_files(self) -> dict[str, bool]:
        """CI config files -> whether each calls `loomtui gate`."""
        found: dict[str, bool] = {}
        for pattern in CI_GLOBS:
            for path in sorted(self.root.glob(pattern)):
                if not path.is_file():
                    continue
                try:
                    with open(path, "rb") as handle:
                        text = handle.read(CI_MAX_BYTES).decode("utf-8", "replace")
                except OSError:
                    continue
                found[path.relative_to(self.root).as_posix()] = bool(CI_GATE.search(text))
        return found


# -- the ten items, in the article's order ---------------------------------------------------


def _some(names: list[str] | set[str], limit: int = 4) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:limit]) + (f" (+{len(ordered) - limit} more)" if len(ordered) > limit else "")


def _shown_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _isolation(ev: Evidence) -> Answer:
    from loomtui.execution import isolation

    status = isolation.isolation_status()
    isolated = [s.id for s in ev.started if s.isolation == isolation.ISOLATION_BWRAP]
    bare = [s.id for s in ev.started if s.isolation != isolation.ISOLATION_BWRAP]
    works = f"bubblewrap works ({status.program})" if status.available else \
        status.detail.split(": agents run NOT")[0] + ": agents run NOT isolated"
    seen = [f"`loomtui doctor`: {works}",
            (f"{len(isolated)} of {plural(len(ev.started), 'started sandbox')} ran under bubblewrap"
             + (f"; not isolated: {_some(bare)}" if bare else "")) if ev.started else "no sandbox started yet"]
    facts = {"bwrap": status.available, "sandboxes": len(ev.started), "isolated": len(isolated)}
    if status.available and ev.started and not bare:
        return YES, seen, "", facts
    if not status.available:
        step = "install bubblewrap (`apt-get install bubblewrap`) and check `loomtui doctor`"
        return (PARTLY if ev.started else NO), seen + (
            ["each sandbox is its own worktree and branch, but its agent can write outside it"]
            if ev.started else []), step, facts
    if bare:
        return PARTLY, seen, ("stop using `--no-isolation`: start those tasks again with `loomtui sandbox new` "
                              "(bubblewrap works here)"), facts
    return PARTLY, seen, (
        "run agents through loomtui: `loomtui sandbox new --runtime claude --task ...`"), facts


def _conventions(ev: Evidence) -> Answer:
    from loomtui.knowledge.sections import is_adr_path

    config = ev.loaded_config()
    context = ev.context
    files = sorted({f.path for f in context.files if not is_adr_path(f.path)})
    # A slice with no section gave its agent none of the conventions: not counted as one.
    sliced = ev.subjects_carrying("context.sliced") | {
        s.id for s in ev.started if isinstance(s.data.get("context"), dict) and s.data["context"].get("sections")}
    without = [s.id for s in ev.started if s.id not in sliced]
    seen = [f"context.sources {list(config.context.sources)}: "
            + (f"{plural(len(files), 'conventions file')} ({_some(files)}), "
               f"{plural(len(context.sections), 'section')}, version {context.version[:12]}" if files
               else "no conventions file found"),
            f"{len(ev.started) - len(without)} of {plural(len(ev.started), 'started sandbox')} got a slice with "
            f"a section of them ({plural(ev.actions['context.sliced'], '`context.sliced` entry')}; one with no "
            "section gave its agent none)" if ev.started
            else "no sandbox started yet: no agent session has received it"]
    seen += [f"problem: {p}" for p in context.problems[:3]]
    facts = {"files": files, "sandboxes": len(ev.started), "sliced": len(ev.started) - len(without),
             "outside_layers": len(config.context.layers)}
    if not files:
        return NO, seen, ("write AGENTS.md with the team's conventions (or name the files in `context.sources` of "
                          ".loom/loom.yaml), then `loomtui context show`"), facts
    if without:
        # Only a sandbox whose agent may run again can be refreshed (`context refresh` refuses the rest).
        ended = {s.id for s in ev.started if s.ended_for_good}
        again = [sid for sid in without if sid not in ended]
        return PARTLY, seen + [f"no slice, or an empty one: {_some(without)}"], (
            (f"`loomtui context refresh SANDBOX` for {_some(again)}; " if again else "")
            + "new sandboxes get theirs from `loomtui sandbox new`"), facts
    if not ev.started:
        return PARTLY, seen, (
            "start agents with `loomtui sandbox new`: each gets its slice (`loomtui context slice --task ...` "
            "previews it)"), facts
    if context.problems:
        return PARTLY, seen, "fix the sources' problems above (`loomtui context show`)", facts
    return YES, seen, "", facts


def _adrs(ev: Evidence) -> Answer:
    from loomtui.knowledge.engine import adr_flags
    from loomtui.knowledge.sections import is_adr_path

    context = ev.context
    adrs = [s for s in context.sections if s.adr is not None]
    loaded = {f.path for f in context.files}
    outside = sorted(p for p in context.repo_files if is_adr_path(p) and p.lower().endswith(".md")
                     and p not in loaded)
    unparsed = [s.source for s in adrs if s.adr is not None and (s.adr.number is None or not s.adr.status)]
    flags = adr_flags(context)
    seen = [f"{plural(len(adrs), 'ADR')} in the context ({_some([s.source for s in adrs], 3)})" if adrs
            else "no ADR in the context",
            f"`loomtui context drift`: {plural(len(flags), 'ADR flag')}"
            + "".join(f"; {f.adr.split(':', 1)[-1]}: {f.kind}" for f in flags[:3])]
    if unparsed:
        seen.append(f"no number or status: {_some(unparsed)}")
    if outside:
        seen.append(f"ADR files not in context.sources: {_some(outside)}")
    facts = {"adrs": len(adrs), "flags": len(flags), "unparsed": len(unparsed), "not_sourced": len(outside)}
    if not adrs:
        step = ("add them to `context.sources` in .loom/loom.yaml (e.g. \"docs/adr/*.md\")" if outside else
                "write the decisions down as docs/adr/0001-TITLE.md (## Status, ## Context, ## Decision) and "
                "keep docs/adr/*.md in `context.sources`")
        return NO, seen, step, facts
    if flags or unparsed or outside:
        return PARTLY, seen, ("`loomtui context drift` names each: update what they name, mark superseded ones "
                              "`Superseded by ADR N`, give each a number and a ## Status"), facts
    return YES, seen, "", facts


def _duration(run: Any) -> float:
    result = run.data.get("result") if isinstance(run.data.get("result"), dict) else {}
    value = run.data.get("duration_s", result.get("duration_s"))
    if value is None and run.finished is not None:
        value = run.finished - run.started
    return float(value or 0.0)


def _test_suite(ev: Evidence) -> Answer:
    gates = [g for g in ev.loaded_config().gates if g.kind == "deterministic"]
    tests = [g.name for g in gates if g.format == "junit" or "test" in g.name.lower()
             or any("test" in part.lower() for part in g.run)]
    # One suite run is every check of one subject at one commit; a check run again there
    # (`eval --force`) replaces its earlier time rather than adding to it.
    suites: dict[tuple[str, str], dict[str, float]] = {}
    store = ev.workspace.store
    runs = [((r.id, run.commit_sha), run) for r in ev.sandboxes for run in store.gate_runs(r.id)]
    runs += [(("baseline", commit), run) for commit in sorted({s.base_sha for s in ev.sandboxes if s.base_sha})
             for run in store.shared_gate_runs("baseline", commit)]
    for key, run in runs:
        if run.status != "running":
            suites.setdefault(key, {})[run.gate] = _duration(run)
    times = sorted(sum(checks.values()) for checks in suites.values())
    seen = [f"gates: {_some([g.name for g in gates]) or 'none'} in .loom/loom.yaml"
            + (f"; test runners: {_some(tests)}" if tests else ""),
            (f"{plural(len(times), 'recorded gate-1 run')} (checks' times summed): median "
             f"{statistics.median(times):.1f} s, slowest {times[-1]:.1f} s" if times else "no gate run recorded")]
    facts = {"gates": [g.name for g in gates], "test_gates": tests, "runs": len(times),
             "median_s": statistics.median(times) if times else None, "slowest_s": times[-1] if times else None}
    if not tests:
        return NO, seen, ("add your test command to `gates:` in .loom/loom.yaml (format: junit), e.g. "
                          "`run: [python, -m, pytest, -q, --junitxml={report}]`"), facts
    if not times:
        return PARTLY, seen, "`loomtui eval --baseline` runs the gates once and records how long they take", facts
    reach = _tests_reach(ev)
    if reach:
        seen.append(reach)
    else:
        seen.append("coverage of critical paths not measured (gate 2's tests item has not run)")
    if times[-1] < FAST_SUITE_S:
        return YES, seen, "", facts
    step = "split the slow checks out of gate 1 (or mark them `blocking: false`) to get under 5 minutes"
    return (PARTLY if statistics.median(times) < FAST_SUITE_S else NO), seen, step, facts


def _tests_reach(ev: Evidence) -> str:
    """Gate 2's tests item over the scored changes: did tests reach the changed code?"""
    scored = [r.data["score"] for r in ev.eval_reports.values() if isinstance(r.data.get("score"), dict)]
    items = [i for s in scored for i in s.get("items") or () if i.get("name") == "tests"]
    if not items:
        return ""
    passed = sum(1 for i in items if i.get("status") == "pass")
    return f"gate 2's tests item passed (tests reach the changed code) on {passed} of {plural(len(items), 'change')}"


def _behaviour(ev: Evidence) -> Answer:
    reports = ev.eval_reports
    scored = {s: r for s, r in reports.items() if isinstance(r.data.get("score"), dict)}
    merged = ev.workspace.store.latest_eval_reports("merged")
    config = ev.loaded_config()
    seen = [f"gate 2 (behavioural score, pass at {config.eval.pass_score}): scored "
            f"{len(scored)} of {plural(len(reports), 'evaluated sandbox')}",
            f"merged gate (pending changes together): {'ran' if merged else 'never ran'}"
            f" ({plural(ev.actions['eval.merged'], '`eval.merged` entry')})"]
    if scored:
        totals = sorted(int(r.data["score"].get("total", 0)) for r in scored.values())
        contracts = sum(any(i.get("name") == "contracts" for i in r.data["score"].get("items") or ())
                        for r in scored.values())
        seen.append(f"scores: {', '.join(map(str, totals[:8]))}{' ...' if len(totals) > 8 else ''}; "
                    f"contracts (signatures others use) checked on {contracts}")
    facts = {"scored": len(scored), "evaluated": len(reports), "merged_gate": bool(merged)}
    if scored and config.gates:
        return YES, seen, "", facts
    if scored:
        return PARTLY, seen + ["no gate-1 tests feed its tests item"], \
            "add your tests to `gates:` in .loom/loom.yaml", facts
    if reports or config.gates:
        return PARTLY, seen, "`loomtui eval SANDBOX` (gate 2 runs at every review by default)", facts
    return NO, seen, ("configure `gates:` in .loom/loom.yaml and review agents' changes: `loomtui sandbox review "
                      "ID` runs gate 1 and gate 2"), facts


def _policy(ev: Evidence) -> Answer:
    policy = ev.policy
    if isinstance(policy, LoomError):
        return NO, [f"policy: {policy}"], "`loomtui policy validate` and fix the line it names", {}
    if policy.source is None:
        return NO, ["no policy file (.loom/policy.yaml): the built-in default (one approval from anyone)"], \
            "write .loom/policy.yaml (groups, rules, default; see README: Policy) and `loomtui policy validate`", {}
    hooks = ev.workspace.paths.state_dir / "hooks" / "pre-commit"
    try:
        hooks_in = "git-pre-commit" in hooks.read_text("utf-8", "replace")
    except OSError:  # not installed (or unreadable, which a commit would find too)
        hooks_in = False
    hook_uses = sum(ev.actions[a] for a in ("hook.edit", "hook.commit_refused", "hook.permission"))
    reviews = ev.actions["policy.evaluated"]
    calling = sorted(name for name, gate in ev.ci_files.items() if gate)
    seen = [f"{policy.source}: valid, {plural(len(policy.rules), 'rule')}",
            f"hooks: {'installed' if hooks_in else 'not installed'} ({_shown_path(hooks, ev.root)}), "
            f"{plural(hook_uses, 'hook answer')} audited",
            f"review: {plural(reviews, '`policy.evaluated` entry')}",
            f"CI: {_some(calling) + ' call `loomtui gate`' if calling else 'no workflow calls `loomtui gate`'}"
            + (f" (looked at {_some(list(ev.ci_files))})" if ev.ci_files and not calling else "")]
    owners = policy.codeowners.owners_of(policy.source) if policy.codeowners is not None else ()
    facts = {"policy": policy.source, "hooks": hooks_in or hook_uses > 0, "reviews": reviews, "ci": calling,
             "signed": policy.decisions.require_signature, "owners": list(owners)}
    enforced = [hooks_in or hook_uses > 0, reviews > 0, bool(calling)]
    if calling and any(enforced[:2]):
        return YES, seen, "", facts
    if not calling:
        step = ("add a CI job running `loomtui gate --format markdown` on pull requests (e.g. "
                ".github/workflows/loomtui.yml), so no merge skips the policy")
    else:
        step = "`loomtui hook install` in your checkout, and review agents' work with `loomtui sandbox review`"
    return PARTLY, seen + ([] if any(enforced) else ["enforced by convention only"]), step, facts


def _routing(ev: Evidence) -> Answer:
    from loomtui.governance.policy import ANYONE

    policy = ev.policy
    if isinstance(policy, LoomError) or policy.source is None:
        why = f"policy: {policy}" if isinstance(policy, LoomError) else "no policy file: every change gets one " \
                                                                          "approval from anyone"
        return NO, [why], "write rules with `risk:` and `approvals:` in .loom/policy.yaml", {"routed": 0}
    routed = [r for r in policy.rules if r.decision == "require" and r.approvals is not None]
    risky = [r for r in routed if r.risk in ("high", "critical")]
    empty = sorted({g for r in routed if r.approvals is not None for g in r.approvals.groups
                    if g != ANYONE and not policy.groups.get(g)})
    # As `report` counts them: a claim override's record asked no one (it was decided as it was made).
    escalations = Counter(e.risk for e in ev.workspace.store.list_escalations() if e.kind != "conflict-override")
    named = [f"{r.name} ({r.risk or 'no risk'})" for r in routed]
    seen = [f"{plural(len(routed), 'rule')} route to approvers" + (f" ({_some(named, 3)})" if named else ""),
            f"{plural(len(risky), 'high or critical rule')}; escalations by risk: "
            + (", ".join(f"{risk} {n}" for risk, n in sorted(escalations.items())) or "none yet")]
    if empty:
        seen.append(f"groups without members: {_some(empty)}")
    facts = {"routed": len(routed), "high": len(risky), "escalations": dict(escalations)}
    if not routed:
        return NO, seen, "add rules with `when: {paths: [...]}`, `risk: high` and `approvals: {groups: [...]}`", facts
    if not risky or empty:
        return PARTLY, seen, "give the core services' rule `risk: high` and a group with members", facts
    return YES, seen, "", facts


def _audit_trail(ev: Evidence) -> Answer:
    result = ev.workspace.audit.verify()
    merges = ev.loom_merges
    anchored = [m for m in merges if "Loom-Audit" in m]
    reviewed = [m for m in merges if any(t in m for t in REVIEW_TRAILERS)]
    gated = {s for s in ev.subjects("eval.run") | ev.subjects("gate.passed") | ev.subjects("gate.failed")}
    ungated = [m["Loom-Sandbox"] for m in merges if m["Loom-Sandbox"] not in gated]
    seen = [f"`audit verify`: {'OK' if result.ok else 'BROKEN'}, {plural(result.entries, 'entry')}"
            + ("" if result.ok else f": {result.problem}"),
            f"{ev.branch or '(no branch)'}: {plural(len(merges), 'loomtui merge')} (Loom-Sandbox), "
            f"{len(anchored)} anchored (Loom-Audit), {len(reviewed)} naming who allowed them, "
            f"{len(merges) - len(ungated)} with gate results"]
    facts = {"ok": result.ok, "entries": result.entries, "merges": len(merges), "anchored": len(anchored)}
    if not result.ok:
        return NO, seen, "`loomtui audit verify` names the first broken entry", facts
    if result.entries == 0:
        return NO, seen, "run agents through loomtui (`loomtui sandbox new`): every step is an audit entry", facts
    if not merges:
        return PARTLY, seen + ["no agent change merged through loomtui yet"], (
            "merge agents' changes with `loomtui sandbox merge ID` (trailers name the sandbox, gates and "
            "approvers)"), facts
    if len(anchored) < len(merges) or len(reviewed) < len(merges) or ungated:
        return PARTLY, seen, "merge through `loomtui sandbox merge ID` only, after `loomtui sandbox review ID`", facts
    return YES, seen, "", facts


def _coordination(ev: Evidence) -> Answer:
    claims = ev.workspace.store.all_claims()
    holders = {c.sandbox_id for c in claims}
    # Only sandboxes count against sandboxes: a claim held under another name (`claim add --sandbox NAME`
    # for a person or a tool) made "3 of 1 started sandbox".
    claimed = [s.id for s in ev.started if s.id in holders]
    unclaimed = [s.id for s in ev.started if s.id not in holders]
    refused = ev.refused
    warned, plans = ev.warned("claim.added"), ev.actions["plan.scheduled"]
    conflicts = ev.merge_conflicts
    # Refused claims and refused commits said apart: three refused commits and a claim read "4 refused claims".
    refusals = ev.refusals
    claims_refused = refusals["claim.refused"]
    said_refused = f"{claims_refused} {'claim or agent edit' if claims_refused == 1 else 'claims or agent edits'}"
    said_refused += " refused"
    if refusals["hook.commit_refused"]:
        said_refused += f", {plural(refusals['hook.commit_refused'], 'agent commit')} refused"
    if ev.merged_over_claims:  # left out of the counts, unsaid: as `report` says it
        said_refused += (f" (not counting those of {plural(ev.merged_over_claims, 'sandbox')} merged over another's "
                         "claim by a lead's approval)")
    seen = [f"{len(claimed)} of {plural(len(ev.started), 'started sandbox')} held claims "
            f"({plural(len(claims), 'claim')} in all)",
            f"flagged before generation: {said_refused}, {plural(warned, 'claim')} warned of "
            f"a conflict, {plural(plans, 'plan')} ordered ({ev.plans_kept_apart} by the code their tasks share)",
            f"merge conflicts found at merge time: {conflicts} (`sandbox.merge_conflict`)"]
    facts = {"claims": len(claims), "claimed": len(claimed), "started": len(ev.started), "merge_conflicts": conflicts,
             "flagged": refused + warned}
    if not claims:
        return NO, seen, ("claim regions before agents start: `loomtui claim suggest \"TASK\"`, then "
                          "`loomtui sandbox new --claim TARGET ...` (or a .loom/plan.yaml)"), facts
    if unclaimed:
        return PARTLY, [*seen, f"started without claims: {_some(unclaimed)}"], (
            "give every task its claims (`--claim`, or `loomtui plan run` to order overlapping tasks)"), facts
    if conflicts:
        # Every task had its claims: "give every task its claims" was no help. Conflicts met at merge are where
        # claims did not reach (files no task named, two additions at one place).
        return PARTLY, seen, ("claim the code tasks share, files whole where tasks add to them (`loomtui conflicts` "
                              "shows overlaps), or order such tasks with `loomtui plan run`"), facts
    return YES, seen, "", facts


def _acceptance(ev: Evidence) -> Answer:
    from loomtui.observability.metrics import compute_metrics
    from loomtui.observability.report import percent

    if ev.branch is None:
        name = ev._trunk[0]
        why = f"{name} has no commits yet" if name else \
            "no main branch (main, master, origin's HEAD, init.defaultBranch) and no branch checked out"
        return NO, [why], f"commit to a `{name or 'main'}` branch, then `loomtui report`", {}
    metrics = compute_metrics(ev.workspace, ev.now - WEEK_S, None, ev.branch)
    rate = metrics.acceptance_rate
    seen = [f"last 7 days on {ev.branch}: {plural(metrics.agent_commits, 'agent-made commit')} of "
            f"{metrics.commits}; {plural(metrics.decided, 'change')} decided, {metrics.merged} merged"
            + (f": acceptance {percent(rate)}" if rate is not None else ": no acceptance rate yet")]
    if metrics.partial:
        seen.append("partial: " + "; ".join(metrics.partial[:2]))
    facts = {"agent_commits": metrics.agent_commits, "commits": metrics.commits, "decided": metrics.decided,
             "merged": metrics.merged, "acceptance_rate": rate, "partial": metrics.partial}
    if rate is not None and not metrics.partial:
        return YES, seen, "", facts
    if rate is None and not metrics.agent_commits:
        return NO, seen, "run agents through loomtui so their changes carry trailers, then `loomtui report`", facts
    waiting = [s.id for s in ev.sandboxes if s.status == "awaiting_review"]
    if rate is None and waiting:
        step = f"decide the waiting changes ({_some(waiting)}) in the queue (`3`), then `loomtui report`"
    elif rate is None:  # agent-made commits landed, none of them decided through loomtui
        step = "run agents through loomtui so their changes are reviewed and decided there, then `loomtui report`"
    elif any("shallow clone" in line for line in metrics.partial):
        step = "fetch the whole history (`git fetch --unshallow`), then `loomtui report`"
    else:
        step = "`loomtui report` says what makes the week's figures partial (above); `loomtui audit verify` for " \
               "damaged entries"
    return PARTLY, seen, step, facts


CHECKS: Final[tuple[Callable[[Evidence], Answer], ...]] = (
    _isolation, _conventions, _adrs, _test_suite, _behaviour, _policy, _routing, _audit_trail, _coordination,
    _acceptance,
)
