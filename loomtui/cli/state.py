"""`loomtui audit`, `config check`, `status` and `init`: the state a repository's loomtui keeps, its checks,
and its starting configuration."""

from __future__ import annotations

import argparse
import fnmatch
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from loomtui.audit import AuditEntry, is_whole
from loomtui.cli import (
    add_command,
    add_group,
    count_arg,
    nonempty_arg,
    print_json,
    problems_json,
    say_problems,
    workspace_for,
)
from loomtui.errors import LoomError, escape_controls, listed, plural, quoted
from loomtui.gitcmd import Git
from loomtui.yamlcheck import problem_lines

if TYPE_CHECKING:  # each command loads the engines it needs
    from loomtui.config import LoomConfig
    from loomtui.workspace import Workspace

# -- init -------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from loomtui.identity import current_user, named_by_login
    from loomtui.repo import find_repo
    from loomtui.starter import starter, starter_rule_for_checks, write_starter

    root = find_repo(args.repo).root
    user = current_user(root)
    made = starter(root, user if user != "unknown" else None)
    written = write_starter(root, made)
    # Said with --json too (on stderr, and in its `warnings`): a script adopting loomtui with no git identity
    # made the login name the one lead, unsaid.
    warnings = [f"{escape_controls(unread)}: its checks were not looked for" for unread in made.unread]
    if made.lead and named_by_login(root):
        warnings.append(f"neither git's user.email nor $LOOM_USER says who you are: the lead written is "
                        f"your login name {made.lead!r}, and your decisions are recorded under it; set `git config "
                        "user.email` and put that in .loom/policy.yaml's groups instead")
    if Git(root).resolve_commit("HEAD") is None:
        warnings.append("this repository has no commit yet: a sandbox starts from one, so commit your code "
                        "with .loom")
    for warning in warnings:
        print(f"loomtui: warning: {warning}", file=sys.stderr)
    if args.json:
        print_json({"written": [str(path) for path in written], "lead": made.lead,
                    "gates": [{"name": g.name, "run": list(g.run), "found": g.found} for g in made.gates],
                    "unread": list(made.unread), "warnings": warnings})
        return 0
    gates = ", ".join(f"{g.name} ({g.found})" for g in made.gates) or "none found: add yours (README: Guardrails)"
    # Paths and the next command as they work from here (run in a subfolder, `git add .loom` named nothing).
    here = Path(getattr(args, "typed_in", None) or Path.cwd())  # with -C, where the command was typed
    named = {path.name: path for path in written}  # an init cut short and run again writes what it had not
    if "loom.yaml" in named:
        print(f"wrote {os.path.relpath(named['loom.yaml'], here)}: gates {gates}; the runtimes claude, codex, aider, "
              "command and script (a YAML replay: `loomtui script-agent --help`) are built in")
    if "policy.yaml" in named:
        print(f"wrote {os.path.relpath(named['policy.yaml'], here)}: "
              + (f"{made.lead} is its one lead" if made.lead else "no lead yet: add yourself under groups.leads")
              + "; red gates block; gate 2 below its pass score, or a change to what agents are given (AGENTS.md, "
                "CLAUDE.md and the like, the ADRs) or .loom/, to what runs on every machine (.claude/, CI workflows, "
                "git hooks, .envrc, ...)"
              + (", to what decides how the gates' checks run (their config, conftest.py, ...)"
                 if starter_rule_for_checks(made) else "")
              + " or of over 400 lines waits for a lead; the rest for one approval from a lead")
    if here.resolve().is_relative_to(root.resolve()):
        git, loom = "git", "loomtui"
        adding = os.path.relpath(root / '.loom', here)
    else:  # `-C` from elsewhere: git and each loomtui command told where
        git, loom = f"git -C {shlex.quote(str(root))}", f"loomtui -C {shlex.quote(str(root))}"
        adding = ".loom"
    print(f"next: read both, `{git} add {adding} && {git} commit -m 'Adopt loomtui'`, `{loom} doctor`, then "
          f"`{loom} sandbox new --runtime claude --task TEXT --claim PATH` (or `{loom}` for the app)")
    return 0


# -- audit ------------------------------------------------------------------------


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from loomtui.gitcmd import Git
    from loomtui.governance.auditproof import verify_audit

    workspace = workspace_for(args)
    refs = tuple(getattr(args, "ref", None) or ())
    for ref in refs:  # a mistyped ref is a usage error, not a log that fails to verify
        if Git(workspace.root).resolve_commit(ref) is None:
            raise LoomError(f"--ref {quoted(ref)} is not a commit here")
    # The chain, then the heads anchored in merge commits, then every decision's signature.
    report = verify_audit(workspace, refs)
    if args.json:
        print_json(report.as_dict(workspace.audit.path))
    else:
        print("\n".join(report.lines(workspace.audit.path)))
        if not report.chain.ok and workspace.store is not None:
            from loomtui.auditrestore import restore_hint

            print(f"  next: {restore_hint(workspace.audit)}")
    return 0 if report.ok else 1


def cmd_audit_restore(args: argparse.Namespace) -> int:
    from loomtui.auditrestore import restore_log

    workspace = workspace_for(args)
    restored = restore_log(workspace.audit, workspace.actor)
    if args.json:
        print_json({"path": str(workspace.audit.path), "entries": restored.entries, "problem": restored.problem,
                    "kept_aside": str(restored.kept_aside) if restored.kept_aside else None})
        return 0
    print(f"restored {workspace.audit.path} from the store: {plural(restored.entries, 'entry')} (it was: "
          f"{restored.problem})")
    if restored.kept_aside is not None:
        print(f"the file as it was is kept at {restored.kept_aside}")
    print("recorded as `audit.restored`; `loomtui audit verify` checks the whole chain")
    return 0


def _entry_filter(args: argparse.Namespace) -> Callable[[AuditEntry], bool] | None:
    """What `audit tail`'s --action, --actor, --subject and --since keep (all of them at once); None: all."""
    from loomtui.observability.window import parse_when, stamp

    since = parse_when(args.since, time.time()) if args.since is not None else None
    # `#4` as the queue and `escalation list` name an escalation (it matched nothing).
    actions, subject = args.action or [], args.subject.removeprefix("#") if args.subject else args.subject
    actor = args.actor.casefold() if args.actor is not None else None
    if not actions and actor is None and subject is None and since is None:
        return None

    def keep(entry: AuditEntry) -> bool:
        return ((not actions or any(fnmatch.fnmatchcase(entry.action, action) for action in actions))
                and (actor is None or entry.actor.casefold() == actor)
                # A sandbox's escalations too: their entries' subject is the escalation's id, and details name it.
                and (subject is None or entry.subject == subject or entry.details.get("sandbox") == subject)
                and (since is None or (stamp(entry.ts) or 0.0) >= since))

    return keep


def cmd_audit_tail(args: argparse.Namespace) -> int:
    keep = _entry_filter(args)  # a bad --since is said before the repository is opened
    workspace = workspace_for(args)
    entries = workspace.audit.tail(args.n, keep)
    behind = audit_file_behind(workspace)
    if behind:
        print(f"loomtui: warning: {behind} (shown: the store's entries)", file=sys.stderr)
    edited = [e.seq for e in entries if not is_whole(e)]
    if edited:
        which = (f"entries {listed([str(seq) for seq in edited])} do not match their own hash" if len(edited) > 1
                 else f"entry {edited[0]} does not match its own hash")
        print(f"loomtui: warning: {which}: changed since written (`loomtui audit verify`)", file=sys.stderr)
    if args.json:
        print_json([asdict(e) for e in entries])
        return 0
    if not entries and args.n:
        print("(no entry matches)" if keep is not None else "(the audit log is empty)")
    for entry in entries:
        when = entry.ts[:19].replace("T", " ") + " UTC"  # to the second (--json has it whole), and said UTC
        print(f"{entry.seq:>6}  {when}  {entry.actor}  {entry.action}  {entry.subject}".rstrip())
        if entry.details:
            print(f"{'':>8}{_readable(entry.details)}")
    return 0


def _readable(details: dict[str, Any], width: int = 110) -> str:
    """An entry's details as `key=value` pairs a person can scan (lists counted, long values cut)."""
    parts = []
    # Every piece escaped, keys and list items too: an agent's words (a path it named, a reason) with a newline
    # or a carriage return would fake an entry below, one a lead reads as theirs.
    for key in sorted(details):
        value = details[key]
        if isinstance(value, list):
            shown = ", ".join(escape_controls(str(v)) for v in value[:3]) \
                if all(isinstance(v, str | int | float) for v in value) \
                else f"{len(value)} item{'s' if len(value) != 1 else ''}"
            text = f"[{shown}{', …' if len(value) > 3 and shown and not shown.endswith('items') else ''}]"
        elif isinstance(value, dict):
            text = "{" + ", ".join(escape_controls(str(name)) for name in sorted(value)) + "}"
        else:
            text = escape_controls(str(value))
        if key == "signature" and text:
            text = "(ssh signature)"
        parts.append(f"{escape_controls(str(key))}={text if len(text) <= 60 else text[:59] + '…'}")
    line = "  ".join(parts)
    return line if len(line) <= width else line[:width - 1] + "…"


# -- config and status ---------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    from loomtui.config import CONFIG_PATH, load_config
    from loomtui.execution.sandbox_paths import checked_worktrees_root, worktrees_root
    from loomtui.governance.policy import configured_policy
    from loomtui.repo import find_repo

    paths = find_repo(args.repo)  # no store: a check of files runs in a read-only or fresh checkout
    try:
        config = load_config(paths.root)
    except LoomError as exc:
        return say_problems(exc, args.json, source=None, config=None)
    source = config.source or "(no .loom/loom.yaml: defaults)"
    # What loom.yaml names must work too: its policy file, and where its worktrees go (else the
    # first `sandbox new` is where it shows).
    problems: list[str] = []
    for check in (lambda: configured_policy(paths.root, config),
                  lambda: checked_worktrees_root(worktrees_root(paths, config.worktrees))):
        try:
            check()
        except LoomError as exc:
            problems += problem_lines(exc)
    warnings = _theme_warnings(config.theme) + _context_warnings(paths.root, config)
    if not config.gates:  # as doctor says: a change that breaks the tests would reach review as passed
        warnings.append(f"{config.source or CONFIG_PATH}: no gates: agents' changes reach review untested "
                        "(`loomtui init` finds a repository's tests; README: Guardrails)")
    # Accepted, listed above, and never run: gate 1 runs the deterministic ones, gate 2 is loomtui's own score.
    warnings += [f"{config.source or CONFIG_PATH}: gate {gate.name!r} is `kind: {gate.kind}`, which no gate runs "
                 "(gate 2 is loomtui's own score, `eval:`): without `kind` gate 1 runs it"
                 for gate in config.gates if gate.kind != "deterministic"]
    # On stderr with --json too, as every command's problems (a CI log keeping stderr alone read nothing).
    for problem in problems:
        print(f"loomtui: error: {problem}", file=sys.stderr)
    if args.json:
        print_json({**problems_json(problems), "source": config.source, "config": asdict(config),
                    "warnings": warnings})
    elif not problems:
        print(f"OK: {source}; runtimes: {', '.join(sorted(config.runtimes))}; gates: "
              f"{', '.join(g.name for g in config.gates) or 'none'}")
    for warning in warnings:
        print(f"loomtui: warning: {warning}", file=sys.stderr)
    return 2 if problems else 0


def _context_warnings(root: Path, config: LoomConfig) -> list[str]:
    """What `context:` names that does not work as the context is now, as `context show` says it: a layer
    that is not there, a source that cannot be read, a `context.pinned` selector matching no section, and
    pinned sections over the budget (every slice refused). Warnings: a sandbox still starts, with what is
    there (it said OK of a layer whose folder does not exist)."""
    from loomtui.knowledge.sections import estimate_tokens
    from loomtui.knowledge.slicing import context_problems, pinned_sections
    from loomtui.knowledge.sources import load_context

    try:
        context = load_context(root, config.context)
    except LoomError as exc:
        return [f"context: {exc}"]
    warnings = context_problems(context)
    pinned = pinned_sections(context)[0]
    pinned_tokens = sum(estimate_tokens(section.text) for section in pinned)
    if pinned_tokens > config.context.budget_tokens:
        warnings.append(f"context.budget_tokens: {config.context.budget_tokens:,} is smaller than the pinned "
                        f"sections ({pinned_tokens:,} tokens in {len(pinned)}): every slice is refused and "
                        "agents get their task only; raise it or pin less")
    return warnings


def _theme_warnings(wanted: str) -> list[str]:
    """Each theme file the app skips (`file:line: problem`), then a theme loom.yaml names that is not
    installed: the app shows its default instead (warnings, as the look of the app is all they change)."""
    from loomtui.tui.themes import load_themes  # the app's own reading of the theme files
    from loomtui.yamlcheck import closest

    loaded = load_themes()
    skipped = [f"{problem} (the theme file is skipped)" for problem in loaded.problems]
    if wanted in loaded.names:
        return skipped
    like = closest(wanted, loaded.names)
    return skipped + [f"theme {wanted!r} is not installed{f' (did you mean {like!r}?)' if like else ''}; the app "
                      f"shows its default (installed: {', '.join(loaded.names)})"]


def audit_file_behind(workspace: Workspace) -> str:
    """Why the audit log's file takes no new entry (damaged or changed), in a line; "" when it is whole."""
    newest = workspace.audit.file_behind()
    if newest is None:
        return ""
    path = workspace.audit.path
    if path.exists() and not path.is_file():  # a directory (a bad restore), a device: not a damaged file
        return (f"{path} is not a file, so no entry is added to it: put the log file back there (`loomtui audit "
                "verify` then checks it against the store)")
    return (f"{path} does not end with entry {newest}, the store's newest: it was damaged or "
            "changed, so no entry is added to it (`loomtui audit verify` says where the file breaks; `loomtui "
            "audit restore` writes it again from the store, keeping it aside)")


_ROW_NOUNS: Final = {"sandboxes": "sandbox", "claims": "claim", "escalations": "escalation", "gate_runs": "gate run",
                     "events": "event"}
"""The store's tables as `status` counts their rows (`1 gate run`, not `1 gate_runs`)."""


def cmd_status(args: argparse.Namespace) -> int:
    workspace = workspace_for(args)
    store = workspace.store
    status = store.status()
    behind = audit_file_behind(workspace)  # every write goes on; only the file's mirror has stopped
    # The rows are every one ever written (released claims, decided escalations): what is live now beside them,
    # the escalations as the queue has them (an override that ran out is a person's to decide again).
    from loomtui.governance.escalations import queue

    now = {"sandboxes": len(store.list_sandboxes()), "claims": len(store.live_claims()),
           "escalations": len(queue(workspace))}
    if args.json:
        print_json({**asdict(status), "now": now, "audit_file_problem": behind or None})
    else:
        print(f"store: {status.path} (schema {status.schema_version}, {status.journal_mode})")
        print(f"  now: {plural(now['sandboxes'], 'sandbox')} not archived, {plural(now['claims'], 'live claim')}, "
              f"{plural(now['escalations'], 'escalation')} to decide")
        print("  ever: " + ", ".join(plural(n, _ROW_NOUNS.get(name, name)) for name, n in status.counts.items()))
        # Only the file's end is compared here (cheap); the whole chain is what `audit verify` reads.
        print(f"audit: {behind}" if behind else f"audit: {workspace.audit.path} (in step with the store; "
                                                 "`loomtui audit verify` checks the whole chain)")
    return 0


def register(commands: Any) -> None:
    """`loomtui audit`, `loomtui config` and `loomtui status`."""
    audit = add_group(commands, "audit", "the hash-chained audit log")
    verify = add_command(audit, "verify", cmd_audit_verify,
                         "check the chain, the heads anchored in merge commits and the decisions' "
                         "signatures; exit 1 naming the first broken entry", json_flag=True, reads_only=True)
    verify.add_argument("--ref", action="append", metavar="REF",
                        help="also read anchors from this ref's history (e.g. origin/main after a fetch)")
    add_command(audit, "restore", cmd_audit_restore,
                "write the log file again from the store's entries when it is damaged, cut short or gone (the "
                "file as it was is kept aside; the restore is recorded)", json_flag=True)
    tail = add_command(audit, "tail", cmd_audit_tail,
                       "print the newest entries, or the newest that match --action, --actor, --subject and --since "
                       "(the whole log is searched)", json_flag=True, reads_only=True)
    tail.add_argument("-n", type=count_arg, default=20, metavar="N", help="how many entries (default 20)")
    tail.add_argument("--action", action="append", type=nonempty_arg, metavar="GLOB",
                      help="entries whose action matches, such as escalation.override or 'escalation.*' "
                           "(repeatable: any of them)")
    tail.add_argument("--actor", type=nonempty_arg, metavar="WHO",
                      help="entries written as this person (as LOOM_USER names them; any letter case)")
    tail.add_argument("--subject", type=nonempty_arg, metavar="ID",
                      help="entries about this sandbox (its escalations' too), escalation (4 or #4) or claim id")
    tail.add_argument("--since", metavar="WHEN",
                      help="entries written since: a time ago (30m, 12h, 7d, 2w) or an ISO date or time (UTC)")

    config = add_group(commands, "config", "the repository's .loom/loom.yaml")
    add_command(config, "check", cmd_config_check, "validate .loom/loom.yaml (errors name file:line)",
                json_flag=True)

    add_command(commands, "status", cmd_status, "where the state store is and what it holds", json_flag=True,
                reads_only=True)
    add_command(commands, "init", cmd_init,
                "write a starter .loom/loom.yaml (gates found from the repository's tests) and .loom/policy.yaml "
                "(you as its lead) to adopt loomtui in your own repository; never overwrites", json_flag=True)
