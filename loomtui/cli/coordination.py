"""`loomtui index | regions | claim | conflicts`: the coordination engine from the shell."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from loomtui.cli import (
    STEP_HINTS,
    add_command,
    add_group,
    id_arg,
    nonempty_arg,
    positive_int_arg,
    print_json,
    workspace_for,
)
from loomtui.cli.terminal import unguarded
from loomtui.coordination.claims import (
    ClaimRefused,
    Conflict,
    Coordinator,
    OverrideNeeded,
    lease_length,
)
from loomtui.coordination.index import RepoIndex, build_index, index_cache_dir
from loomtui.coordination.targets import BadTarget
from loomtui.errors import LoomError, StoreError, escape_controls, listed, plural, shown
from loomtui.governance.coordinator import governed_coordinator
from loomtui.store import ClaimRecord
from loomtui.workspace import Workspace


def _progress_printer() -> Any:
    """Progress on stderr when it is a terminal; silent for scripts and pipes."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        print(f"\rindexing {done}/{total} files", end="" if done < total else "\n", file=unguarded(sys.stderr))

    return show


def _index(workspace: Workspace) -> RepoIndex:
    config = workspace.load_config().coordination
    return build_index(workspace.root, cache_dir=index_cache_dir(workspace.paths),
                       include=config.include, exclude=config.exclude, progress=_progress_printer())


def _coordinator(args: argparse.Namespace) -> Coordinator:
    return coordinator_of(workspace_for(args))


def coordinator_of(workspace: Workspace) -> Coordinator:
    """The repository's claims under its policy, over its index (built or read from the cache)."""
    return governed_coordinator(workspace, _index(workspace))


def _sandbox(args: argparse.Namespace, workspace: Workspace) -> str:
    """Who claims: a sandbox, by its id or a unique prefix of one (as every other command takes it), or
    any other name (a person, an outside agent). A prefix was kept as a name: `sandbox rm` of the sandbox
    left the claim held under it for its whole lease."""
    sandbox = str(args.sandbox or os.environ.get("LOOM_SANDBOX", ""))
    if not sandbox:
        raise LoomError("name the sandbox with --sandbox ID (or set LOOM_SANDBOX)")
    if workspace.store.get_sandbox(sandbox) is not None:
        return sandbox
    known = [r.id for r in workspace.store.list_sandboxes(include_archived=True) if r.id.startswith(sandbox)]
    if len(known) > 1:
        raise LoomError(f"--sandbox {shown(sandbox)} matches several sandboxes: {listed(known)}; give more of its id")
    return known[0] if known else sandbox


def _refuse_for_another(sandbox: str, doing: str, override: str | None) -> None:
    """Inside a sandbox (its agent, run without isolation, reaches the store), claims are its own only, and never
    an override (a lead's): an agent's `claim add --sandbox OTHER` was recorded as the person's claim, with the
    agent's reason, and its `--override` took or let go of another's code in the person's name."""
    inside = os.environ.get("LOOM_SANDBOX", "")
    if inside and sandbox != inside:
        raise LoomError(f"from inside sandbox {shown(inside)}, {doing} for {shown(sandbox)} is refused: an agent "
                        "claims and releases for its own sandbox only", exit_code=1)
    if inside and override is not None:
        raise LoomError(f"from inside sandbox {shown(inside)}, an override is refused: overrides are a lead's, "
                        "made from their own shell", exit_code=1)


def _speaks_for(workspace: Workspace, sandbox: str) -> bool:
    """Whether the caller releases `sandbox`'s claims as its own: as the person who started it (an agent acts as
    its task's author; `$LOOM_SANDBOX` proves nothing, anyone may set it).
    Naming someone else's sandbox as the holder released its claims with no override (`claim release 3
    --sandbox de6df5`), the regions then anyone's. A name that is no sandbox (a person's claims) is whoever names it."""
    from loomtui.governance.policy import same_person

    record = workspace.store.get_sandbox(sandbox)
    if record is None or not record.created_by:
        return True
    return same_person(record.created_by, workspace.actor)


def lease_arg(text: str) -> float:
    """`--ttl`: what the engine accepts as a lease (finite, above 0, at most 30 days)."""
    try:
        return lease_length(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds (got {text!r})") from None
    except LoomError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _claim_dict(claim: ClaimRecord) -> dict[str, Any]:
    # `expired`: a lease past its end that no write has swept yet holds nothing, though `released` is unset.
    return {**asdict(claim), "expired": claim.released is None and claim.expires <= time.time()}


def _print_conflicts(conflicts: list[Conflict], file: TextIO | None = None) -> None:
    for conflict in conflicts:
        print(f"{conflict.severity:<7} {conflict.kind:<19} {conflict.explanation}", file=file or sys.stdout)


# -- commands ---------------------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    workspace = workspace_for(args)
    started = time.perf_counter()
    index = _index(workspace)
    elapsed = time.perf_counter() - started
    summary = {
        "root": str(index.root), "files": len(index.files), "regions": index.region_count(),
        "edges": index.edge_count(), "unresolved": len(index.unresolved), "stale": index.stale,
        "warnings": index.warnings, "database": index.database, "seconds": round(elapsed, 3), **index.stats,
    }
    if args.json:
        print_json(summary)
        return 0
    stale = f", {len(index.stale)} stale (no longer parse)" if index.stale else ""
    print(f"{summary['files']} files, {summary['regions']} regions, {summary['edges']} edges, "
          f"{summary['unresolved']} unresolved references{stale} ({elapsed:.2f}s; "
          f"parsed {index.stats['parsed']}, resolved {index.stats['resolved']})")
    for warning in index.warnings:
        print(f"warning: {escape_controls(warning)}")
    return 0


def _named_from_here(root: Path, raw: str) -> str | None:
    """What `raw` names taken from the current directory (a subdirectory of the repository), as the
    repository-relative target the commands take; None when it names nothing there either."""
    here, root = Path.cwd().resolve(), root.resolve()
    path, sep, rest = raw.partition("::")  # a region id: its file part
    if here == root or not here.is_relative_to(root) or not path or Path(path).is_absolute():
        return None
    candidate = Path(os.path.normpath(here / path))  # `../app/x.py` from app/ is app/x.py, not app/../app/x.py
    if not candidate.exists() or not candidate.resolve().is_relative_to(root) or not candidate.is_relative_to(root):
        return None
    return candidate.relative_to(root).as_posix() + sep + rest


def hinted_target(exc: LoomError, root: Path, raw: str,
                  new_file: str = "--new claims it by its path") -> LoomError:
    """`exc` (a target that names nothing), with the target it names from here when there is one:
    targets are relative to the repository's root, as `claim list` shows them, not to the current directory.
    `new_file`: how this command claims a file not written yet."""
    meant = _named_from_here(root, raw)
    if meant is None or f"(did you mean {meant}?)" in str(exc):  # none, or its own names it already
        if "no such file or region" in str(exc):
            return LoomError(f"{exc} (a file not written yet: {new_file})", exit_code=exc.exit_code)
        return exc
    # Its own guess goes: a region nested in the one meant (`pkg/core.py::deco.wrapper` for `core.py::deco`).
    said = str(exc).partition(" (did you mean ")[0]
    return LoomError(f"{said} (paths are from the repository's root: from here that is {shown(meant)})",
                     exit_code=exc.exit_code)


def cmd_regions(args: argparse.Namespace) -> int:
    coordinator = _coordinator(args)
    root = coordinator.index.root
    if "::" in args.path and args.path.partition("::")[0] in coordinator.index.files:
        # A region's id typed for its file: it read "its name holds `::`, ... (and no file is so named)".
        file, _, _ = args.path.partition("::")
        raise LoomError(f"{shown(args.path)} is a region; regions are listed for a file: `loomtui regions "
                        f"{shown(file)}`")
    path = coordinator.repo_path(args.path)
    if path not in coordinator.index.files:
        if (root / path).is_file():  # running `loomtui index` would not change that
            raise LoomError(f"{shown(args.path)}: not an indexed file (regions are parsed from Python files outside "
                            "coordination.exclude); a claim on it holds the file whole")
        if (root / path).is_dir():
            raise LoomError(f"{shown(args.path)}: a directory; regions are listed for one file (claim "
                            f"{shown(args.path)} holds every file in it)")
        if (root / path).exists() or (root / path).is_symlink():  # a FIFO, a device, a broken link
            raise LoomError(f"{shown(args.path)}: not a regular file; regions are parsed from Python files")
        raise hinted_target(LoomError(f"{shown(args.path)}: no such file in {root}"), root, args.path)
    regions = coordinator.index.regions_in(path)
    if args.json:
        print_json([asdict(r) for r in regions])
        return 0
    for region in regions:
        note = f"  ! {region.warning}" if region.warning else ""
        print(f"{region.start:>5}-{region.end:<5} {region.kind:<8} {region.id}  {region.hash[:10]}{note}")
    return 0


def cmd_claim_add(args: argparse.Namespace) -> int:
    coordinator = _coordinator(args)
    sandbox = _sandbox(args, coordinator.workspace)
    _refuse_for_another(sandbox, "a claim", args.override)
    results, refused = [], None
    try:
        with coordinator.store.transaction():  # several targets: all or nothing
            for target in args.targets:
                try:
                    results.append(coordinator.claim(
                        sandbox, target, mode="shared" if args.shared else "exclusive", reason=args.reason,
                        ttl=args.ttl, override_reason=args.override, new_file=args.new))
                except BadTarget as exc:
                    raise hinted_target(exc, coordinator.index.root, target) from None
    except ClaimRefused as exc:
        refused = exc
    if args.json:
        if refused is not None:  # said on stderr as every error is, and as `error` for a script
            print(f"refused: {refused}", file=sys.stderr)
        print_json({
            "ok": refused is None,
            **({"error": f"refused: {refused}"} if refused else {}),
            "refused": str(refused) if refused else None,
            "claims": [] if refused else [_claim_dict(r.claim) for r in results],
            "conflicts": [c.as_dict() for c in (refused.conflicts if refused else
                                                [c for r in results for c in r.conflicts])],
        })
        return 1 if refused else 0
    if refused is not None:
        if args.override is not None:  # the override itself was not taken: say why before the conflicts
            print(f"refused: {refused}", file=sys.stderr)
        if refused.conflicts:  # the conflicts say it, once each
            count = len(refused.conflicts)
            print(f"refused: {count} conflict{'s' if count != 1 else ''} with other sandboxes' claims:",
                  file=sys.stderr)
            _print_conflicts(refused.conflicts, sys.stderr)
        else:
            print(f"refused: {refused}", file=sys.stderr)
        return 1
    for result in results:
        claim = result.claim
        tag = " (override recorded)" if result.overridden else " (held already: nothing new)" if result.already_held \
            else ""
        print(f"claim #{claim.id} {claim.mode} {claim.target} -> {', '.join(claim.region_ids)}{tag}")
        _print_conflicts(result.conflicts)
    if results and _no_sandbox_named(coordinator.workspace, sandbox):
        # A name of no sandbox (a person, an outside agent) is allowed; a typo'd id held the code for an hour.
        lease = results[0].claim.expires - time.time()
        print(f"note: no sandbox is {shown(sandbox)}: these claims hold for that name (a person, an outside "
              f"agent) until `claim release --all --sandbox {sandbox}`"
              + (f" or their lease ends in {lease / 60:.0f} min" if lease > 0 else ""), file=sys.stderr)
    return 0


def _no_sandbox_named(workspace: Workspace, name: str) -> bool:
    """Whether no sandbox has this id, asked after the claims are taken: a store gone meanwhile says nothing
    (the claim was printed as taken, then the command failed with exit 2)."""
    try:
        return workspace.store.get_sandbox(name) is None
    except StoreError:
        return False


def cmd_claim_release(args: argparse.Namespace) -> int:
    coordinator = _coordinator(args)
    if not args.all and not args.claim_ids:
        raise LoomError("name claim ids to release, or --all with --sandbox")
    sandbox = _sandbox(args, coordinator.workspace)
    _refuse_for_another(sandbox, "a release", args.override)
    speaks_for = _speaks_for(coordinator.workspace, sandbox)
    if args.all and not speaks_for:  # each claim as an override (refused, without one, on the first)
        args.claim_ids = [c.id for c in coordinator.workspace.store.live_claims(sandbox)]
    if args.all and speaks_for:
        count = coordinator.release_sandbox(sandbox, args.reason)
        store = coordinator.workspace.store
        if not count and store.get_sandbox(sandbox) is None and not store.sandbox_claims(sandbox):
            # A typo released nothing and said so as a success: the real claims stayed held. A name that held
            # claims, released since, is answered as a sandbox is (run again, a cleanup script is not refused).
            raise LoomError(f"{shown(sandbox)} is no sandbox and holds no claim; nothing was released "
                            "(`loomtui claim list` names who holds what)", exit_code=1)
        print(f"released {plural(count, 'claim')}")
        _wake_claim_waiters(coordinator.workspace, {sandbox} if count else set())
        return 0
    missed = []
    holders = set()
    for claim_id in args.claim_ids:
        try:
            claim = coordinator.release_held(claim_id, sandbox, args.reason, override_reason=args.override,
                                             speaks_for=speaks_for)
        except OverrideNeeded as exc:
            raise LoomError(f"{exc} (--override REASON)", exit_code=exc.exit_code) from None
        if claim is None:
            missed.append(claim_id)
        else:
            print(f"released claim #{claim.id} on {claim.target} (sandbox {claim.sandbox_id})")
            holders.add(claim.sandbox_id)
    _wake_claim_waiters(coordinator.workspace, holders)
    if missed:
        print(f"already released: {', '.join(f'#{c}' for c in missed)}", file=sys.stderr)
        return 1
    return 0


def _wake_claim_waiters(workspace: Workspace, holders: set[str]) -> None:
    """Planned tasks that waited for what the holders let go of go on now, each said in a line."""
    from loomtui.workflow.engine import Workflow

    flow = Workflow(workspace)
    for holder in sorted(holders):
        for woken in flow.wake_waiters(holder):
            print(f"sandbox {woken.sandbox_id}, which waited for it: {woken.now.line(STEP_HINTS)}")


def cmd_claim_renew(args: argparse.Namespace) -> int:
    claim = _coordinator(args).renew(args.claim_id, args.ttl)
    print(f"claim #{claim.id} now expires in {int(claim.expires - time.time())}s")
    return 0


def _gone_from_the_code(workspace: Workspace, claims: list[ClaimRecord]) -> dict[int, list[str]]:
    """`gone_regions` of the claims; empty when there are none or the index cannot be read here."""
    from loomtui.coordination.view import gone_regions, made_on_branch

    if not claims:
        return {}
    try:
        return gone_regions(claims, _index(workspace), made_on_branch(workspace.store, workspace.root))
    except (LoomError, OSError):
        return {}


def cmd_claim_list(args: argparse.Namespace) -> int:
    workspace = workspace_for(args)
    holder = _sandbox(args, workspace) if args.sandbox else None
    claims = workspace.store.live_claims(holder)
    gone = _gone_from_the_code(workspace, claims)
    if args.json:
        print_json([{**_claim_dict(c), "gone": gone.get(c.id, [])} for c in claims])
        return 0
    if not claims:
        print("no live claims")
        if holder is not None and workspace.store.get_sandbox(holder) is None:
            # A typo read as a holder with none: said, for the holder may be a person's name or a mistyped id.
            print(f"note: no sandbox is {shown(args.sandbox)}; nothing is held under that name either",
                  file=sys.stderr)
    now = time.time()
    for claim in claims:
        left = int(claim.expires - now)
        lease = f"{left}s left" if left > 0 else "expired"
        print(f"#{claim.id:<5} {claim.sandbox_id:<12} {claim.mode:<9} {escape_controls(claim.target)}  ({lease}) "
              f"{escape_controls(claim.reason)}".rstrip())
        if claim.id in gone:
            print(f"       ! gone from the code: {escape_controls(listed(gone[claim.id]))} (renamed, moved or "
                  "deleted since: claim again what is meant)")
    return 0


def cmd_claim_suggest(args: argparse.Namespace) -> int:
    from loomtui.coordination.suggest import suggest_regions

    task = " ".join(" ".join(args.task).split())
    if not task:
        raise LoomError("name the task in words (e.g. `claim suggest add partial refunds`)")
    workspace = workspace_for(args)
    suggestions = suggest_regions(_index(workspace), task, limit=args.limit)
    if args.json:
        print_json([{"region": s.region.id, "kind": s.region.kind, "score": s.score,
                     "doc": s.region.doc} for s in suggestions])
        return 0
    if not suggestions:
        print(f"no region matches {task!r}; name a file or a region with `claim add`")
    for suggestion in suggestions:
        print(f"{suggestion.score:>5.1f}  {suggestion.region.id}  {suggestion.region.doc}".rstrip())
    return 0


def cmd_conflicts(args: argparse.Namespace) -> int:
    from loomtui.coordination.diff import sandbox_signature_changes

    coordinator = _coordinator(args)
    conflicts = coordinator.conflicts(signature_changed=sandbox_signature_changes(coordinator))
    if args.json:
        print_json([c.as_dict() for c in conflicts])
    elif conflicts:
        _print_conflicts(conflicts)
    else:
        print("no conflicts among live claims")
    return 1 if conflicts else 0


def bench_tree(args: argparse.Namespace, say: Callable[[str], None]) -> Path | None:
    """The tree a benchmark runs on: PATH, the pinned corpus (`--corpus`), or None for its default."""
    if args.corpus and args.path:
        raise LoomError("give a PATH or --corpus, not both")
    if args.corpus:
        from loomtui.coordination.corpus import build_corpus

        return build_corpus(say)
    return Path(args.path) if args.path else None


def add_tree_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("path", nargs="?", default=None, metavar="PATH",
                         help="a Python tree (default: the installed networkx package)")
    command.add_argument("--corpus", action="store_true",
                         help="the pinned million-line tree (sympy 1.13.3, Django 5.1.4, networkx 3.4.2 from "
                              "PyPI, downloaded by pip once into ~/.cache/loomtui)")


def cmd_bench_index(args: argparse.Namespace) -> int:
    from loomtui.coordination.bench import run_index_bench
    from loomtui.coordination.claim_bench import claim_check_bench

    say = (lambda text: print(f"  {text}", file=sys.stderr, flush=True)) if not args.json else (lambda _t: None)
    result = run_index_bench(bench_tree(args, say), claim_bench=claim_check_bench, progress=say)
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


# -- registration -------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add the coordination commands to the top-level parser."""
    add_command(commands, "index", cmd_index,
                "parse the repository into regions and a dependency graph (cached)", json_flag=True, reads_only=True)
    regions = add_command(commands, "regions", cmd_regions, "list the regions of one file", json_flag=True,
                          reads_only=True)
    regions.add_argument("path", type=nonempty_arg, metavar="PATH",
                         help="a Python file of the repository, relative to its root")

    claim = add_group(commands, "claim", "claim code regions for a sandbox before an agent edits them")
    sandbox_help = "the claiming sandbox (default: $LOOM_SANDBOX)"
    add = add_command(claim, "add", cmd_claim_add,
                      "claim targets: a region id (path.py::Class.method), a file, a directory, a glob, "
                      "or path.py:10-40; exit 1 when refused", json_flag=True)
    add.add_argument("targets", nargs="+", metavar="TARGET",
                     help="what to claim: payments/refunds.py::RefundService.quote, payments/, 'payments/*.py', "
                          "payments/refunds.py:10-40")
    add.add_argument("--sandbox", type=nonempty_arg, help=sandbox_help)
    add.add_argument("--shared", action="store_true", help="a read claim: others may read too")
    add.add_argument("--new", action="store_true",
                     help="the targets are files not written yet (an agent's new module), claimed by their path")
    add.add_argument("--reason", default="", help="why (shown to others and in the audit log)")
    add.add_argument("--ttl", type=lease_arg, default=None, metavar="SECONDS",
                     help="lease length, at most 30 days (default: coordination.lease_seconds)")
    add.add_argument("--override", metavar="REASON", default=None,
                     help="force a refused claim; recorded in the audit log as an override")
    release = add_command(claim, "release", cmd_claim_release,
                          "release claims the sandbox holds (another sandbox's, or one of a sandbox someone "
                          "else started, only with --override)")
    release.add_argument("claim_ids", nargs="*", type=id_arg, metavar="CLAIM_ID",
                         help="a claim's number, as `claim list` and `claim add` show it")
    release.add_argument("--all", action="store_true", help="every live claim of --sandbox")
    release.add_argument("--sandbox", type=nonempty_arg, help=sandbox_help)
    release.add_argument("--reason", default="released", help="recorded in the audit log")
    release.add_argument("--override", metavar="REASON", default=None,
                         help="release another sandbox's claim (only for those the policy lets override); "
                              "recorded in the audit log")
    renew = add_command(claim, "renew", cmd_claim_renew, "extend a claim's lease")
    renew.add_argument("claim_id", type=id_arg, metavar="CLAIM_ID",
                       help="a claim's number, as `claim list` and `claim add` show it")
    renew.add_argument("--ttl", type=lease_arg, default=None, metavar="SECONDS",
                       help="the new lease from now, at most 30 days (default: coordination.lease_seconds)")
    listing = add_command(claim, "list", cmd_claim_list, "live claims", json_flag=True, reads_only=True)
    listing.add_argument("--sandbox", type=nonempty_arg, help="only this sandbox's claims")
    suggest = add_command(claim, "suggest", cmd_claim_suggest,
                          "rank the regions a task's text most likely touches", json_flag=True, reads_only=True)
    suggest.add_argument("task", nargs="+", metavar="TASK", help="the task's text (its words may be unquoted)")
    suggest.add_argument("--limit", type=positive_int_arg, default=10, metavar="N",
                         help="how many regions at most (default 10)")

    add_command(commands, "conflicts", cmd_conflicts,
                "conflicts among live claims; exit 1 when there are any", json_flag=True, reads_only=True)


def register_bench(bench: Any) -> None:
    """`loomtui bench index`."""
    index = add_command(bench, "index", cmd_bench_index,
                        "index benchmark: cold, warm and incremental times, claim checks, memory",
                        json_flag=True)
    add_tree_arguments(index)
