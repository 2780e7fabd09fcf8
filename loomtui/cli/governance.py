"""`loomtui policy validate | test`: the governance policy engine from the shell."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loomtui.cli import (
    add_command,
    add_group,
    id_arg,
    nonempty_arg,
    print_json,
    say_problems,
    seconds_arg,
    workspace_for,
)
from loomtui.config import load_config
from loomtui.errors import LoomError, StoreError, escape_controls, plural
from loomtui.governance.policy import (
    MAX_OVERRIDE_HOURS,
    CaseResult,
    Policy,
    can_override,
    configured_policy,
    groups_of,
    load_policy_tests,
    read_policy_file,
    run_policy_case,
)
from loomtui.identity import current_user
from loomtui.repo import find_repo
from loomtui.workspace import Workspace
from loomtui.yamlcheck import closest


def _policy(args: argparse.Namespace, explicit: str | None) -> tuple[Policy, Path]:
    """The policy named on the command line, else the one `.loom/loom.yaml` names.

    Only the repository's location is needed: the store is not opened, so these
    commands work in CI on a fresh clone.
    """
    root = find_repo(args.repo).root
    if explicit:
        return read_policy_file(Path(explicit), explicit, root), root
    return configured_policy(root, load_config(root)), root


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        policy, root = _policy(args, args.file)
    except LoomError as exc:
        return say_problems(exc, args.json)  # a YAML error, or loom.yaml's own, is a list of one
    user = current_user(root)
    groups = sorted(groups_of(policy, user))
    warnings = [*policy.warnings, *_names_nothing_here(policy, root),
                 *([] if args.file else _not_committed(policy, root))]
    if args.json:
        print_json({
            "ok": True, "source": policy.source, "summary": policy.summary(),
            "rules": [rule.name for rule in policy.rules], "groups": sorted(policy.groups),
            "warnings": warnings,
            "user": {"id": user, "groups": groups, "can_override": can_override(policy, user)},
        })
        return 0
    print(f"OK: {policy.summary()}")
    for warning in warnings:
        print(f"warning: {warning}")
    print(f"you ({user}): groups {', '.join(groups) or 'none'}; "
          f"may override a block: {'yes' if can_override(policy, user) else 'no'}")
    return 0


def _not_committed(policy: Policy, root: Path) -> list[str]:
    """A warning when the policy file here is not as HEAD has it: this machine's loomtui judges by it, CI's gate
    and everyone else's by the committed one (an uncommitted `decision: block` blocked a sandbox here, unsaid)."""
    if policy.source is None:
        return []
    from loomtui.gitcmd import Git

    committed = Git(root).raw("show", f"HEAD:{policy.source}")
    try:
        here = (root / policy.source).read_bytes()
    except OSError:
        return []
    if committed.status == 0 and committed.out == here:
        return []
    state = "changed and not committed" if committed.status == 0 else "not committed"
    return [f"{policy.source} is {state}: loomtui judges by it on this machine as it is, while `loomtui gate` "
            "in CI and every other clone judge by the committed one"]


def _names_nothing_here(policy: Policy, root: Path) -> list[str]:
    """A `file:line` warning for each rule whose `runtime:`, `gates_failed:` or `gates_passed:` names no runtime
    or gate here (built in or in loom.yaml): a typo (`clade`, `test` for `tests`) made a rule that never
    applies (a red-gates block that never fired), said nowhere."""
    try:
        config = load_config(root)
    except LoomError:  # loom.yaml's own problems are said where it is read
        return []
    gates = [gate.name for gate in config.gates]
    found = []
    for rule in policy.rules:
        named = [("runtime", name, name in config.runtimes, list(config.runtimes))
                 for name in rule.when.runtime or ()]
        named += [(key, name, any(fnmatch.fnmatchcase(gate, name) for gate in gates), gates)
                  for key, names in (("gates_failed", rule.when.gates_failed), ("gates_passed", rule.when.gates_passed))
                  for name in names or ()]
        for key, name, known, choices in named:
            if not known:
                guess = closest(name, choices)
                what = "runtime" if key == "runtime" else "gate"
                found.append(f"{policy.source}:{rule.line}: rule {rule.name!r}: {key} {name!r} names no {what} here"
                             f"{f' (did you mean {guess!r}?)' if guess else ''}; the rule never applies to it")
    return found


def cmd_test(args: argparse.Namespace) -> int:
    policy, _root = _policy(args, args.policy)
    cases = load_policy_tests(Path(args.fixtures), args.fixtures)
    results = [run_policy_case(policy, case) for case in cases]
    failed = [result for result in results if not result.passed]
    if args.json:
        print_json({"ok": not failed, "policy": policy.source, "fixtures": args.fixtures,
                    "cases": [_result_dict(result) for result in results]})
        return 1 if failed else 0
    for result in results:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.case.name}")
        if not result.passed:
            print(f"      {args.fixtures}:{result.case.line}")
            for failure in result.failures:
                print(f"      {failure}")
            for line in result.evaluation.explanation():
                print(f"      | {line}")
    source = policy.source or "the built-in default policy"
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed ({args.fixtures} against {source})")
    return 1 if failed else 0


def _result_dict(result: CaseResult) -> dict[str, Any]:
    return {
        "name": result.case.name, "line": result.case.line, "passed": result.passed,
        "failures": list(result.failures), "outcome": result.evaluation.outcome,
        "risk": result.evaluation.risk, "rules": list(result.evaluation.rule_names()),
        "explanation": result.evaluation.explanation(),
    }


def cmd_gate(args: argparse.Namespace) -> int:
    from loomtui.governance.gate import NoBaseBranch, run_gate
    from loomtui.store import open_store, store_from_env

    if args.json and args.format not in ("text", "json"):
        raise LoomError(f"--json and --format {args.format} ask for two outputs: give one", exit_code=2)
    paths = find_repo(args.repo)
    # Read the store only where one exists: a CI clone must not grow one. The policy is
    # the base's (a broken one raises: the gate fails closed, exit 2). A team store is the
    # one $LOOMTUI_STORE names, never `store:` from the checkout: in CI that is the branch under
    # review, which could send the database password to a host of its choosing.
    location = store_from_env() or "sqlite"
    store = None
    without_store = "no state store here (a fresh CI clone)"
    if location != "sqlite" or paths.store_path.exists():
        try:
            store = open_store(paths, location)
        except StoreError as exc:  # fewer approvals seen can only hold a change back, never pass it
            without_store = f"the state store could not be read ({exc})"
    try:
        report = run_gate(paths.root, base=args.base, head=args.head, store=store, without_store=without_store)
    except NoBaseBranch as exc:  # it says what to do (fetch it; name it with --base): said once
        raise LoomError(str(exc)) from None
    if args.json or args.format == "json":
        print_json(report.as_dict())
    elif args.format == "markdown":
        print(report.markdown())
    else:
        print(report.text())
    return report.exit_code


def cmd_explain(args: argparse.Namespace) -> int:
    from loomtui.governance.explain import explain_sandbox

    workspace = workspace_for(args)
    policy = configured_policy(workspace.root, workspace.load_config())
    explained = explain_sandbox(workspace, policy, args.sandbox)
    if args.json:
        print_json(explained)
        return 0
    for stage in ("claim", "post-gate"):
        section = explained[stage]
        print(f"{stage}: {section['outcome']} (risk {section['risk']})")
        for line in section["explanation"]:
            print(f"  {line}")
    return 0


def cmd_escalation_list(args: argparse.Namespace) -> int:
    from loomtui.governance.escalations import OPEN, EscalationStatus, queue, status_lines

    workspace = workspace_for(args)
    found = queue(workspace, tuple(EscalationStatus) if args.all else (OPEN,))
    if args.json:
        print_json([_escalation_json(e) for e in found])
        return 0
    if not found:
        print("no open escalations" if not args.all else "no escalations")
    for escalation in found:
        print(f"#{escalation.id:<4} {escalation.risk:<8} {escalation.status:<10} {escalation.kind:<18} "
              f"{escalation.sandbox_id or '-':<8} {escape_controls(escalation.summary)}")
        for line in status_lines(escalation):
            print(f"      {line}")
        for made in _decisions(escalation):
            print(f"      {made['decision']} by {made['by']}: {made.get('note') or made['signature']}")
    return 0


_DECISIONS = ("approve", "reject", "override")


def _escalation_json(escalation: Any) -> dict[str, Any]:
    """What `escalation list --json` says of each, and `show --json` begins with (`created` was list's only)."""
    from loomtui.governance.escalations import status_lines

    return {"id": escalation.id, "kind": escalation.kind, "status": escalation.status, "risk": escalation.risk,
            "sandbox": escalation.sandbox_id, "summary": escalation.summary, "created": escalation.created,
            "updated": escalation.updated, "approvals": status_lines(escalation),
            "explanation": escalation.data.get("explanation", []), "decisions": _decisions(escalation)}


def _decisions(escalation: Any) -> list[dict[str, Any]]:
    """The people's decisions on an escalation, each with whether it was signed; one made after it was
    withdrawn (`late-approve`, which changed nothing) with its note."""
    return [{"decision": h.get("event"), "by": h.get("by", "?"), "commit": h.get("commit", ""),
             "reason": h.get("reason", ""), "at": h.get("at"), "signature": h.get("signature", "unsigned"),
             **({"note": h["note"]} if h.get("note") else {})}
            for h in escalation.data.get("history", [])
            if h.get("event") in _DECISIONS or str(h.get("event", "")).removeprefix("late-") in _DECISIONS]


def cmd_escalation_show(args: argparse.Namespace) -> int:
    from loomtui.governance.escalations import status_lines

    workspace = workspace_for(args)
    escalation = workspace.store.get_escalation(args.id)
    if escalation is None:
        raise LoomError(f"no escalation #{args.id}")
    decisions = _decisions(escalation)
    facts = escalation.data.get("facts")
    paths = [str(p) for p in facts.get("paths") or ()] if isinstance(facts, dict) else []
    if args.json:
        print_json({**_escalation_json(escalation), "commit": escalation.data.get("commit", ""), "paths": paths,
                    "evidence": escalation.data.get("evidence") or {}})
        return 0
    print(f"#{escalation.id} {escalation.kind}  risk {escalation.risk}  status {escalation.status}")
    print(f"  {escape_controls(escalation.summary)}")
    for line in escalation.data.get("explanation", []):
        print(f"  {line}")
    for line in status_lines(escalation):
        print(f"  {line}")
    # What an approval grants, whole: every path, and what the agent asked (its question, the tool's
    # input). The summary above is abridged; the app lists 40 paths.
    if paths:
        print(f"  {plural(len(paths), 'path')}:")
        for path in paths:
            print(f"    {escape_controls(str(path))}")
    evidence = escalation.data.get("evidence")
    for key, value in (evidence.items() if isinstance(evidence, dict) else ()):
        if isinstance(value, dict) and value:  # the tool's input, the gates, the eval: each of its fields
            print(f"  {escape_controls(str(key))}:")
            for field, item in value.items():
                _print_evidence_field(f"    {escape_controls(str(field))}:", item, gate=key == "gates")
        elif value not in ([], {}, None, ""):  # a name, a question: one escaped line
            _print_field(f"  {escape_controls(str(key))}:", value)
    for made in decisions:
        # On one line: a reason with a line break printed a decision line of its own ("Approved by ...").
        reason = f" — {escape_controls(made['reason'])}" if made["reason"] else ""
        print(f"  {made['decision']} by {made['by']} on {str(made['commit'])[:12] or '-'}: "
              f"{made.get('note') or made['signature']}{reason}")
    return 0


def _print_evidence_field(label: str, item: object, *, gate: bool) -> None:
    """A field of the evidence, as the app's queue shows it: a gate as its status and summary, each failed test
    under it; a list one item a line, an empty one left out (`compile: {"failed_tests": [], "run": 2, ...}` and
    `breaks_with: []` read as raw data)."""
    if gate and isinstance(item, dict) and "status" in item:  # an agent's input with a `status` is shown whole
        summary = item.get("summary")
        print(f"{label} {escape_controls(str(item['status']))}"
              + (f" ({escape_controls(str(summary))})" if summary else ""))
        failed = item.get("failed_tests")
        for test in failed if isinstance(failed, list) else ():
            print(f"      ✗ {escape_controls(str(test))}")
    elif isinstance(item, list):
        if item:
            print(label)
        for entry in item:  # an agent's input may hold any JSON: what is not text, as JSON
            text = entry if isinstance(entry, str) else json.dumps(entry, default=str, ensure_ascii=False)
            print(f"      {escape_controls(text)}")
    else:
        _print_field(label, item, lines=True)


def _print_field(label: str, value: object, *, lines: bool = False) -> None:
    """One field of what an agent asked: on its label's line, or, text of several lines (a file a Write
    writes), each line under it behind a `│` (one JSON line of 15,000 characters with `\\n` in it could
    not be read; the bar keeps a line of it from passing for a field or a decision of its own)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if lines and isinstance(value, str) and "\n" in value.rstrip("\n"):
        print(label)
        for line in value.rstrip("\n").split("\n"):
            print(f"{' ' * (len(label) - len(label.lstrip()) + 2)}│ {escape_controls(line)}")
    else:
        print(f"{label} {escape_controls(text)}")


def cmd_decide(args: argparse.Namespace) -> int:
    from loomtui.governance.escalations import DecisionRefused, decide

    workspace = workspace_for(args)
    policy = configured_policy(workspace.root, workspace.load_config())
    try:
        record = decide(workspace, policy, args.id, args.decision, reason=args.reason,
                        expires_hours=getattr(args, "hours", None))
    except DecisionRefused as refused:
        if _followed_a_decision_made(workspace, args, refused):
            return 0
        raise
    made: dict[str, Any] = next((h for h in reversed(record.data.get("history", []))
                                 if h.get("by") == workspace.actor), {})
    signed = made.get("signature", "unsigned")
    expires = record.data.get("override_expires") if args.decision == "override" else None
    until = (f" until {datetime.fromtimestamp(expires, UTC):%Y-%m-%d %H:%M:%S} UTC"
             if isinstance(expires, (int, float)) else "")
    if not args.json:
        print(f"#{record.id}: {args.decision} recorded by {workspace.actor} ({signed}); now {record.status}{until}")
    unpublished = record.data.get("note_problem")
    if unpublished:  # kept in the store only: a CI gate in a fresh clone reads the decision from the note
        print(f"warning: a decision on #{record.id} is not published as a git note, so a CI gate in a fresh clone "
              f"does not see it: {unpublished}", file=sys.stderr)
    moved = None
    try:
        if record.sandbox_id and workspace.store.get_sandbox(record.sandbox_id) is not None:
            from loomtui.workflow.engine import advance  # the decision may let the sandbox move on now

            moved = advance(workspace, record.sandbox_id)
            if not args.json:
                for line in moved.done:
                    print(f"  sandbox {moved.sandbox_id}: {line}")
                if moved.now.action is not None:  # a person's turn (`merge: manual`): what to run, as the list says
                    from loomtui.cli import STEP_HINTS

                    print(f"  next: {moved.now.line(STEP_HINTS)}")
    except StoreError as exc:  # the decision is recorded: said as done, and what did not follow (it exited 2)
        print(f"loomtui: warning: #{record.id}: the {args.decision} is recorded, but sandbox {record.sandbox_id} "
              f"was not moved on ({exc}); `loomtui sandbox advance {record.sandbox_id}` does it", file=sys.stderr)
    if args.json:
        print_json({"escalation": record.id, "decision": args.decision, "by": workspace.actor, "signature": signed,
                    "status": str(record.status), "note_problem": unpublished or None,
                    **({"override_expires": expires} if until else {}),
                    "sandbox": None if moved is None else {"id": moved.sandbox_id, "status": moved.status,
                                                           "done": list(moved.done), "next": moved.now.line()}})
    return 0


def _followed_a_decision_made(workspace: Workspace, args: argparse.Namespace, refused: LoomError) -> bool:
    """The same decision asked again of an escalation it decided already (the command that took it was cut
    short before its sandbox moved on): the sandbox is moved on now and that is said (True: exit 0); it said
    "already approved", exit 1, and nothing moved the task unless the app was open."""
    from loomtui.governance.escalations import DECIDED_AS

    record = workspace.store.get_escalation(args.id)
    if record is None or str(refused) != f"escalation #{record.id} is already {record.status}" or \
            str(record.status) != DECIDED_AS.get(args.decision) or not record.sandbox_id or \
            workspace.store.get_sandbox(record.sandbox_id) is None:
        return False
    if not any(entry.get("by") == workspace.actor and entry.get("event") == args.decision
               for entry in record.data.get("history", [])):
        return False  # the same decision, asked again by one who took it: not by anyone else
    from loomtui.workflow.engine import advance

    moved = advance(workspace, record.sandbox_id)
    if not moved.done:
        return False
    if args.json:
        print_json({"escalation": record.id, "decision": args.decision, "already": str(record.status),
                    "sandbox": {"id": moved.sandbox_id, "status": moved.status, "done": list(moved.done),
                                "next": moved.now.line()}})
    else:
        print(f"#{record.id}: {refused}; its sandbox had not moved on since: now it has")
        for line in moved.done:
            print(f"  sandbox {moved.sandbox_id}: {line}")
    return True


def cmd_bench_tamper(args: argparse.Namespace) -> int:
    from loomtui.workflow.tamper_bench import run_tamper_bench

    figures = run_tamper_bench()
    if args.json:
        print_json(figures)
    else:
        for name, case in {**figures["cases"], **figures["limits"]}.items():
            print(f"{name:<13} {case['what']}")
            print(f"{'':<13} chain alone: {case['chain_only']}; audit verify: {case['full_verify']}: {case['verify']}")
        print(figures["summary"])
    return 0 if figures["caught"] == figures["total"] else 1


def register_bench(bench: Any) -> None:
    """Add `loomtui bench tamper` to the shared `bench` group."""
    add_command(bench, "tamper", cmd_bench_tamper,
                "rewrite a real audit history the ways a local attacker would; count what verify catches",
                json_flag=True)


def register(commands: Any) -> None:
    """Add `policy validate | test | explain`, `gate` and `escalation` to the top-level subcommands."""
    policy = add_group(commands, "policy", "the governance policy (.loom/policy.yaml)")
    validate = add_command(
        policy, "validate", cmd_validate,
        "check the policy (and its CODEOWNERS); errors name file:line and exit 2", json_flag=True,
    )
    validate.add_argument("file", nargs="?", type=nonempty_arg, metavar="FILE",
                          help="a policy file to check instead of the repository's")
    test = add_command(
        policy, "test", cmd_test,
        "run fixture cases (change -> expected decision); exit 1 if any fails", json_flag=True,
    )
    test.add_argument("fixtures", type=nonempty_arg, metavar="FIXTURES.yaml", help="the cases to run")
    test.add_argument("--policy", type=nonempty_arg, metavar="FILE", default=None,
                      help="test this policy file instead of the repository's")
    explain = add_command(policy, "explain", cmd_explain,
                          "which rules apply to a sandbox, at claim time and on its diff, and why",
                          json_flag=True, reads_only=True)
    explain.add_argument("sandbox", metavar="SANDBOX", help="the sandbox id (or a unique prefix)")

    gate = add_command(commands, "gate", cmd_gate,
                       "the CI gate: evaluate the policy on a branch's diff; exit 0 pass, 1 needs "
                       "approval or blocked, 2 error (a broken policy fails closed)", json_flag=True)
    gate.add_argument("--base", type=nonempty_arg, default=None, metavar="REF",
                      help="the target (default: $GITHUB_BASE_REF, main or master)")
    gate.add_argument("--head", type=nonempty_arg, default="HEAD", metavar="REF", help="the change (default HEAD)")
    gate.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                      help="markdown is ready to post as a pull-request comment (--json is --format json)")

    escalation = add_group(commands, "escalation", "the escalation queue: list and decide")
    listing = add_command(escalation, "list", cmd_escalation_list, "open escalations, riskiest first",
                          json_flag=True, reads_only=True)
    listing.add_argument("--all", action="store_true", help="decided, withdrawn and superseded ones too")
    show = add_command(escalation, "show", cmd_escalation_show,
                       "one escalation: why, what it needs, and each decision (signed or unsigned)",
                       json_flag=True, reads_only=True)
    show.add_argument("id", type=id_arg, metavar="ID", help="the escalation's number (`escalation list`)")
    for decision, help_text in (("approve", "approve (counts toward each requirement you are eligible for)"),
                                ("reject", "reject, with a reason"),
                                ("override", "let a change or a start the policy holds proceed, with a reason: a "
                                             "block, approvals not given, a reviewer's rejection (the policy's "
                                             "override groups); for --hours, then it needs a new override")):
        decide = add_command(escalation, decision, cmd_decide, help_text, json_flag=True)
        decide.set_defaults(decision=decision)
        decide.add_argument("id", type=id_arg, metavar="ID", help="the escalation's number (`escalation list`)")
        if decision == "approve":
            decide.add_argument("--reason", default="", metavar="NOTE",
                                help="an optional note, recorded in the audit log (and signed with the approval)")
        else:
            decide.add_argument("--reason", required=True, help="recorded in the audit log")
        if decision == "override":
            decide.add_argument("--hours", type=seconds_arg(MAX_OVERRIDE_HOURS, unit="hours"), default=None,
                                help="hours until the override expires (default and maximum: the "
                                     "policy's overrides.max_hours)")
