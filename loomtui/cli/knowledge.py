"""`loomtui context show | versions | diff | slice | drift` and `loomtui bench context`."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import time
from typing import TYPE_CHECKING, Any

from loomtui.cli import (
    add_command,
    add_group,
    nonempty_arg,
    positive_int_arg,
    print_json,
    workspace_for,
)
from loomtui.errors import LoomError, shown
from loomtui.knowledge.sections import CHARS_PER_TOKEN, Section

if TYPE_CHECKING:  # the engine (and the region index under it) loads with the command that needs it
    from loomtui.knowledge.sources import Context


def _at(args: argparse.Namespace, workspace: Any) -> str | None:
    from loomtui.knowledge.sources import resolve_at

    at = getattr(args, "at", None)
    if not at:
        return None
    return resolve_at(workspace.root, at, workspace.load_config().context)


def _section_dict(section: Section) -> dict[str, Any]:
    found: dict[str, Any] = {"id": section.id, "layer": section.layer, "source": section.source,
                             "line": section.line, "heading": list(section.heading), "title": section.title,
                             "kind": section.kind, "tokens": section.tokens, "hash": section.hash}
    if section.adr is not None:
        adr = section.adr
        found["adr"] = {"number": adr.number, "title": adr.title, "status": adr.status, "date": adr.date,
                        "supersedes": list(adr.supersedes), "superseded_by": list(adr.superseded_by)}
    if section.mentions:
        found["mentions"] = [{"text": m.text, "kind": m.kind, "target": m.target, "exists": m.exists}
                             for m in section.mentions]
    return found


def _context_dict(context: Context) -> dict[str, Any]:
    from loomtui.knowledge.slicing import context_problems

    return {
        "version": context.version, "commit": context.commit, "at": context.at,
        "budget_tokens": context.config.budget_tokens, "pinned": list(context.config.pinned),
        "chars_per_token": CHARS_PER_TOKEN,
        "layers": [{"name": s.name, "where": s.where, "ref": s.ref, "commit": s.commit, "version": s.version,
                    "files": s.files} for s in context.layers],
        "files": [{"layer": f.layer, "path": f.path, "blob": f.blob, "bytes": f.size, "truncated": f.truncated,
                   "sections": f.sections} for f in context.files],
        "sections": [_section_dict(s) for s in context.sections],
        "overridden": [{"section": old, "by": new} for old, new in context.overridden],
        "rules": [r.as_dict() for r in context.rules],
        "problems": context_problems(context),
    }


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _print_problems(problems: list[str]) -> None:
    for problem in problems:
        print(f"  ! {problem}")


def cmd_context_show(args: argparse.Namespace) -> int:
    from loomtui.knowledge.engine import context_of, knowledge_index
    from loomtui.knowledge.slicing import context_problems
    from loomtui.knowledge.sources import config_at

    workspace = workspace_for(args)
    at, config = _at(args, workspace), workspace.load_config()
    # At a commit, with the sources it had then: the version `context versions` lists for it.
    config = dataclasses.replace(config, context=config_at(workspace.root, at, config.context))
    context = context_of(workspace, at=at, index=knowledge_index(workspace), config=config)
    if args.json:
        print_json(_context_dict(context))
        return 0
    where = f"commit {context.commit[:12]}" if context.commit else "the working tree"
    tokens = sum(s.tokens for s in context.sections)
    print(f"context version {context.version} ({where}): {_count(len(context.files), 'file')}, "
          f"{_count(len(context.sections), 'section')}, ~{tokens:,} tokens (characters / {CHARS_PER_TOKEN}); "
          f"budget per slice {context.config.budget_tokens:,}")
    for layer in context.layers:
        at = f" ({layer.commit[:12]})" if layer.ref and layer.commit else ""  # `where` ends in @ref already
        print(f"layer {layer.name}: {layer.where}{at}, {_count(layer.files, 'file')}, "
              f"version {layer.version or '-'}")
    for section in context.sections:
        extra = ""
        if section.adr is not None:
            adr = section.adr
            extra = f"  [{adr.status or 'no status'}{', ' + adr.date if adr.date else ''}]"
            missing = [m.text for m in section.mentions if m.exists is False]
            if missing:
                extra += f"  missing: {', '.join(missing)}"
        print(f"  {section.tokens:>6,}  {section.id}{extra}")
    for old, new in context.overridden:
        print(f"  overridden: {old} by {new}")
    for rule in context.rules:
        print(f"  rule {rule.id}: {rule.message} ({rule.origin})")
    _print_problems(context_problems(context))
    if not context.files:  # the default sources, none there: not a problem, but a slice will be empty
        print(f"note: none of context.sources is here ({', '.join(context.config.sources)}): agents get no "
              "conventions or decisions until you write them there (an AGENTS.md first)")
    return 0


def cmd_context_versions(args: argparse.Namespace) -> int:
    from loomtui.knowledge.sources import context_versions, load_context

    workspace = workspace_for(args)
    config = workspace.load_config().context
    entries = context_versions(workspace.root, config, limit=args.n)
    current = load_context(workspace.root, config)
    if args.json:
        print_json({"worktree": current.version, "versions": [
            {"version": e.version, "commit": e.commit, "time": e.time, "subject": e.subject,
             "changed": list(e.changed)} for e in entries]})
        return 0
    if not entries:
        print(f"no commits touch the context sources yet; the working tree's version is {current.version}")
        return 0
    if current.version != entries[0].version:
        print(f"{current.version}  (working tree, uncommitted changes to the sources)")
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(entry.time))  # as every other listing says a time
        changed = ", ".join(entry.changed[:4]) + (" ..." if len(entry.changed) > 4 else "")
        print(f"{entry.version}  {entry.commit[:12]}  {when}  {entry.subject}  [{changed}]")
    return 0


def cmd_context_diff(args: argparse.Namespace) -> int:
    from loomtui.knowledge.sources import config_at, load_context, resolve_at

    workspace = workspace_for(args)
    config = workspace.load_config().context
    # Each side with the sources it had then, as `context versions` names its versions.
    old_at, new_at = (resolve_at(workspace.root, args.old, config), resolve_at(workspace.root, args.new, config))
    old = load_context(workspace.root, config_at(workspace.root, old_at, config), at=old_at)
    new = load_context(workspace.root, config_at(workspace.root, new_at, config), at=new_at)
    before, after = old.by_id(), new.by_id()
    changes: list[dict[str, Any]] = []
    for section_id in [*before, *(i for i in after if i not in before)]:
        a, b = before.get(section_id), after.get(section_id)
        if a is not None and b is not None and a.hash == b.hash:
            continue
        change = "added" if a is None else "removed" if b is None else "changed"
        lines = list(difflib.unified_diff((a.text if a else "").splitlines(), (b.text if b else "").splitlines(),
                                          f"{args.old}:{section_id}", f"{args.new}:{section_id}", lineterm="", n=1))
        changes.append({"id": section_id, "change": change, "diff": lines})
    if args.json:
        print_json({"old": {"version": old.version, "commit": old.commit},
                    "new": {"version": new.version, "commit": new.commit}, "sections": changes})
        return 0
    differ = "section differs" if len(changes) == 1 else "sections differ"
    print(f"{old.version} -> {new.version}: {len(changes)} {differ}")
    for entry in changes:
        print(f"{entry['change']:>8}  {entry['id']}")
        if args.full:
            for line in entry["diff"]:
                print(f"          {line}")
    return 0


SHOWN_LEFT_OUT = 20
"""Sections left out that `context slice` names, before it says how many more there are."""


def cmd_context_slice(args: argparse.Namespace) -> int:
    from loomtui.knowledge.engine import slice_for_task

    if args.json and args.markdown:  # two outputs asked for: neither is guessed
        raise LoomError("--json and --markdown ask for two formats; give one")
    workspace = workspace_for(args)
    if not args.task.strip():
        raise LoomError("--task must not be empty")
    piece, _ = slice_for_task(workspace, args.task, args.claim or (), at=_at(args, workspace), budget=args.budget)
    if args.json:
        print_json(piece.as_dict())
        return 0
    if args.markdown:
        print(piece.render())
        return 0
    print(piece.summary())
    if piece.claims:
        kind = "suggested regions (no --claim given)" if all(c.suggested for c in piece.claims) else "claims"
        print(f"{kind}: {', '.join(shown(c.target) for c in piece.claims)}")
    for pick in piece.picks:
        print(f"  {pick.tokens:>6,}  {pick.section.label}")
        print(f"          {pick.why()}")
    # The best left out first, a screenful of them: a large context's every other section read 3,300 lines.
    for pick, reason in piece.left_out[:SHOWN_LEFT_OUT]:
        print(f"  left out: {pick.section.label}: {reason}")
    if len(piece.left_out) > SHOWN_LEFT_OUT:
        print(f"  ... and {len(piece.left_out) - SHOWN_LEFT_OUT:,} more left out (--json lists every one)")
    _print_problems(piece.problems)
    return 0


def cmd_context_drift(args: argparse.Namespace) -> int:
    from loomtui.knowledge.engine import drift_report

    workspace = workspace_for(args)
    report = drift_report(workspace)
    if args.json:
        print_json(report.as_dict())
        return 1 if report.flagged else 0
    where = f"commit {report.commit[:12]}" if report.commit else "the working tree"
    print(f"context version {report.version} ({where})")
    if not report.sandboxes:
        print("sandboxes: none live with a recorded context")
    for drift in report.sandboxes:
        print(f"sandbox {drift.sandbox}: {drift.status}"
              + (f" (got {drift.recorded}, now {drift.current})" if drift.status in ("behind", "stale") else ""))
        for change in drift.changes:
            # Where it is from, not its title alone: `changed: Testing` was one of two layers' `Testing`.
            adr = change["title"].startswith("ADR ")  # an ADR's title says it best
            named = (None if adr else change.get("label")) or change["title"] or change["id"]
            print(f"    {change['change']}" + (f": {named}" if named else ""))
        if drift.status != "fresh" and drift.files:
            print(f"    sources changed: {', '.join(drift.files[:8])}")
    for flag in report.adrs:
        print(f"{flag.title if flag.title.startswith('ADR ') else 'ADR ' + flag.title}: {flag.detail}")
    for finding in report.findings:
        print(f"convention: {finding}")
    if not report.adrs and not report.findings:
        print("ADRs and conventions (the working tree): nothing flagged")
    for selector in report.unpinned:
        print(f"{selector} (every slice goes without it)")
    _print_problems(report.problems)
    return 1 if report.flagged else 0


def cmd_context_refresh(args: argparse.Namespace) -> int:
    from loomtui.execution.context_files import refresh
    from loomtui.execution.sandboxes import get_sandbox

    workspace = workspace_for(args)
    try:
        sandbox_id = get_sandbox(workspace, args.sandbox).id  # a prefix is said as the id it names
        given = refresh(workspace, sandbox_id)
    finally:
        workspace.close()
    assert given.piece is not None
    if args.json:
        print_json({"sandbox": sandbox_id, **given.piece.as_dict()})
    else:
        print(f"sandbox {sandbox_id}: context refreshed to {given.piece.summary()}")
        _print_problems(given.piece.problems)  # a pinned section gone, most of all: said, not only in --json
    return 0


def cmd_bench_context(args: argparse.Namespace) -> int:
    from loomtui.knowledge.bench import run_bench

    result = run_bench(sections=args.sections, total_bytes=args.mb * 1_000_000, rounds=args.rounds)
    if args.json:
        print_json(result)
    else:
        print(f"slice over {result['sections']:,} sections ({result['bytes'] / 1e6:.1f} MB): median "
              f"{result['slice_ms_median']} ms, max {result['slice_ms_max']} ms "
              f"(target <= {result['target_ms']:g} ms); "
              f"load {result['load_ms']} ms, term index {result['term_index_ms']} ms; "
              f"{result['picked']} sections, {result['tokens']:,} of {result['budget_tokens']:,} tokens")
    return 0 if result["ok"] else 1


def register(commands: Any) -> None:
    """`loomtui context ...`."""
    context = add_group(commands, "context", "the knowledge layer: the context agents get, its versions, "
                                             "a task's slice, drift")
    at_help = "read the sources at this commit, ref or context version (default: the working tree)"
    show = add_command(context, "show", cmd_context_show,
                       "every source, section, ADR and rule of the context, with its version", json_flag=True,
                       reads_only=True)
    show.add_argument("--at", type=nonempty_arg, metavar="REF", help=at_help)
    versions = add_command(context, "versions", cmd_context_versions,
                           "the context versions in git history (commits that changed a source)", json_flag=True,
                           reads_only=True)
    versions.add_argument("-n", type=positive_int_arg, default=20, metavar="N", help="how many (default 20)")
    diff = add_command(context, "diff", cmd_context_diff,
                       "the sections that differ between two versions (a version id, commit, ref or 'worktree')",
                       json_flag=True, reads_only=True)
    diff.add_argument("old", metavar="V1", help="the older version: a version id (`context versions`), a commit "
                                                "or ref, or 'worktree'")
    diff.add_argument("new", metavar="V2", help="the newer version, as V1")
    diff.add_argument("--full", action="store_true", help="print each section's text diff")
    piece = add_command(context, "slice", cmd_context_slice,
                        "the sections a task would get and why, without starting anything", json_flag=True,
                        reads_only=True)
    piece.add_argument("--task", required=True, metavar="TEXT", help="the task, as an agent would get it")
    piece.add_argument("--claim", action="append", metavar="TARGET",
                       help="a claim target (region id, file, directory, glob, path:10-40); repeatable; "
                            "without any, the regions suggested for the task count, lower")
    piece.add_argument("--budget", type=positive_int_arg, metavar="TOKENS",
                       help="the token budget (default: context.budget_tokens)")
    piece.add_argument("--at", type=nonempty_arg, metavar="REF", help=at_help)
    piece.add_argument("--markdown", action="store_true", help="print the file the agent would read")
    refreshed = add_command(context, "refresh", cmd_context_refresh,
                            "slice a sandbox's task again from the context now and rewrite the files its "
                            "agent reads (after drift)", json_flag=True)
    refreshed.add_argument("sandbox", metavar="SANDBOX", help="the sandbox id (or a unique prefix)")
    add_command(context, "drift", cmd_context_drift,
                "live sandboxes whose slice went stale since they started, ADRs naming what no longer exists "
                "or superseded, code breaking a machine-checkable convention; exit 1 if any is flagged (a "
                "sandbox only behind, its slice unchanged, is not)", json_flag=True, reads_only=True)


def register_bench(bench: Any) -> None:
    """`loomtui bench context`."""
    context = add_command(bench, "context", cmd_bench_context,
                          "slice a task over generated sections (default 1,000 totalling 5 MB); target 100 ms",
                          json_flag=True)
    context.add_argument("--sections", type=positive_int_arg, default=1000, metavar="N",
                         help="sections generated (default 1000)")
    context.add_argument("--mb", type=positive_int_arg, default=5, metavar="MB",
                         help="their size in all, in megabytes (default 5)")
    context.add_argument("--rounds", type=positive_int_arg, default=20, metavar="N",
                         help="slices timed (default 20)")
