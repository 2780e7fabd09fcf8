"""The `loomtui` command: the TUI by default, and subcommands over the same engines.

Exit codes: 0 ok, 1 a check failed (conflict, refused, broken audit chain), 2 usage
or input error, 70 an internal error (a bug). A user's mistake is one line on stderr, never a traceback.

A front-end: it may import any layer (each subcommand's module, `cli/<layer>.py`, loads
its engines when it runs) and the TUI only inside `cmd_tui`/`cmd_demo`; nothing but
`loomtui.__main__` imports it.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, NoReturn

from loomtui import __version__
from loomtui.cli.examples import examples_epilog
from loomtui.cli.terminal import guard, write_failed
from loomtui.errors import LoomError, abridged, escape_controls, not_utf8
from loomtui.interrupts import EndingSignal

if TYPE_CHECKING:  # the engines load with the command that needs them, not with the hook's fast path
    from pathlib import Path

    from loomtui.workspace import Workspace

Handler = Callable[[argparse.Namespace], int]

SQLITE_MAX_ID = 2**63 - 1
"""The largest id a store row can have (SQLite's INTEGER)."""


class LoomArgumentParser(argparse.ArgumentParser):
    """The parser of `loomtui` and, through `add_subparsers`, of every subcommand.

    A usage error is one line on stderr and exit status 2, as for every other input
    error: `loomtui claim add: error: the following arguments are required: --sandbox
    (see loomtui claim add --help)`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations (`--js` for `--json`): a script's command line means one thing in every release,
        # and an error is then JSON exactly when --json was asked for.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        line = f"{escape_controls(message)} (see {self.prog} --help)"
        if _ASKED_FOR_JSON.get():  # as for every other error: a script parsing stdout reads why
            _print_json_error(line)
        self.exit(2, f"{self.prog}: error: {line}\n")

    def _print_message(self, message: str, file: Any = None) -> None:
        """As argparse's, but help or a version that cannot be written is said, exit 74: argparse dropped the
        error, and `--help > /dev/full` exited 0."""
        if not message:
            return
        stream = file or sys.stderr
        if stream is None:  # a closed descriptor (`>&-`): nothing is written, as `print` writes nothing
            return
        try:
            stream.write(message)
            stream.flush()
        except OSError as exc:
            if stream is sys.stderr:
                return  # nowhere left to say it
            raise SystemExit(_output_lost(exc)) from None


class ExamplesFormatter(argparse.HelpFormatter):
    """Help wrapped as argparse wraps it, but for the `examples:` block: one command line to a line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


_ASKED_FOR_JSON: ContextVar[bool] = ContextVar("loomtui_asked_for_json", default=False)
"""Whether the command line being parsed asks for JSON (`--json`, `--format json`)."""


def _asks_for_json(given: Sequence[str]) -> bool:
    words = list(given)
    return "--json" in words or "--format=json" in words or any(
        a == "--format" and b == "json" for a, b in zip(words, words[1:], strict=False))


# -- argument types: a bad number is a usage error naming the option, never a traceback --


def nonempty_arg(text: str) -> str:
    """A name or path that says something: an empty one (`--base "$UNSET"`) is a usage error, never
    read as the default (a CI gate against main) or as the current directory (`cannot read: a directory`)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def count_arg(text: str) -> int:
    """A count that may be 0 (`-n 0`): a non-negative integer."""
    number = _integer(text)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {number})")
    return number


def positive_int_arg(text: str) -> int:
    """An integer of at least 1."""
    number = _integer(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {number})")
    return number


def id_arg(text: str) -> int:
    """A store id: an integer from 1 to SQLITE_MAX_ID, as listed (`#2`) or bare (`2`)."""
    number = _integer(text[1:] if text.startswith("#") and text[1:].isdigit() else text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"not an id (got {number}; ids start at 1)")
    return number


def seconds_arg(maximum: float, *, allow_zero: bool = False, unit: str = "seconds") -> Callable[[str], float]:
    """A finite number of `unit` above 0 (or 0 too) and at most `maximum`."""

    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of {unit} (got {text!r})") from None
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"must be a finite number of {unit} (got {text!r})")
        if number < 0 or (number == 0 and not allow_zero):
            least = "0 or more" if allow_zero else "more than 0"
            raise argparse.ArgumentTypeError(f"must be {least} {unit} (got {text!r})")
        if number > maximum:
            raise argparse.ArgumentTypeError(f"may be at most {maximum:g} {unit} (got {text!r})")
        return number

    parse.__name__ = unit
    return parse


def _integer(text: str) -> int:
    """An integer that fits the store and the C APIs (its size at most SQLITE_MAX_ID)."""
    try:
        number = int(text)  # int() itself refuses thousands of digits
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (got {text!r})") from None
    if abs(number) > SQLITE_MAX_ID:
        raise argparse.ArgumentTypeError(f"too large (at most {SQLITE_MAX_ID})")
    return number


def problems_json(problems: Sequence[str]) -> dict[str, Any]:
    """A check's verdict for a script: ok, every problem, and when there is one an `error` as every
    failed command has (the first problem, and how many more)."""
    verdict: dict[str, Any] = {"ok": not problems, "problems": list(problems)}
    if problems:
        verdict["error"] = problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    return verdict


def say_problems(error: LoomError, as_json: bool, **extra: Any) -> int:
    """Every problem `error` stands for (a file's `ConfigErrors` hold several), each as file:line in line order,
    where other commands name the first: a line each on stderr, and for a script the list too (`problems_json`,
    with `extra`; a CI log keeping stderr alone said nothing). The error's exit code."""
    from loomtui.yamlcheck import problem_lines

    problems = problem_lines(error)
    for problem in problems:
        print(f"loomtui: error: {problem}", file=sys.stderr)
    if as_json:
        print_json({**problems_json(problems), **extra})
    return error.exit_code


def print_json(value: Any) -> None:
    """Print a value as indented JSON (the `--json` output of every command)."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


_OPENED: ContextVar[list[Workspace] | None] = ContextVar("loomtui_opened_workspaces", default=None)
"""The workspaces this command opened: their audit logs are asked, at its end, whether they took what it wrote."""


def workspace_for(args: argparse.Namespace) -> Workspace:
    """The workspace named by the global `-C/--repo` option (default: cwd)."""
    from loomtui.workspace import open_workspace

    workspace = open_workspace(args.repo, reads_only=getattr(args, "reads_only", False))
    opened = _OPENED.get()
    if opened is not None:
        opened.append(workspace)
    return workspace


def add_command(parent: Any, name: str, handler: Handler, help_text: str, *,
                json_flag: bool = False, reads_only: bool = False) -> argparse.ArgumentParser:
    """Add one subcommand with its handler (and `--json` when scripts will read it). `reads_only`:
    it changes nothing, so it also runs where the state cannot be written (a read-only mount)."""
    sub: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text,
                                                     formatter_class=ExamplesFormatter)
    sub.epilog = examples_epilog(sub.prog)
    # The deepest command's parser says usage errors.
    sub.set_defaults(handler=handler, command_parser=sub, reads_only=reads_only)
    if json_flag:
        sub.add_argument("--json", action="store_true", help="print JSON for scripts")
    return sub


def add_group(parent: Any, name: str, help_text: str) -> Any:
    """Add a command with subcommands (`loomtui audit verify`); bare, it is a usage error naming them."""
    group = add_command(parent, name, lambda _args: _missing_command(group, commands), help_text)
    commands = group.add_subparsers(title=f"{name} commands", metavar="COMMAND")
    return commands


# -- the TUI and the demo ------------------------------------------------------


@contextmanager
def _no_collection_until_the_app_collects() -> Iterator[None]:
    """Automatic garbage collection off while Textual and the app's modules load and the first frame is
    drawn: each pass walked the whole growing heap, a tenth of the time to the first frame. The app's own
    collector (tui/idle_gc.py) takes over once it runs; collection is on again when the app ends."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cmd_tui(args: argparse.Namespace) -> int:
    workspace = workspace_for(args)
    with _no_collection_until_the_app_collects():
        from loomtui.tui.app import run_app  # Textual loads only when a UI is wanted

        return run_app(workspace)


def _tell(text: str) -> None:
    """A line on stderr that cannot stop what follows it: a closed terminal (SIGHUP) fails the write."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


def cmd_demo(args: argparse.Namespace) -> int:
    from loomtui.demo import prepare_demo_repo
    from loomtui.demo.headless import run_headless
    from loomtui.interrupts import as_interrupt, on_ending_signals
    from loomtui.workspace import open_workspace

    repo = prepare_demo_repo()
    workspace = open_workspace(repo)
    try:
        if args.headless or args.json:  # JSON is for a script: there is no screen to draw the app on
            # Each step is printed as it happens; --json prints only the final summary. A SIGTERM or
            # SIGHUP ends it as Ctrl-C does: the cleanup below still runs.
            with as_interrupt():
                summary = run_headless(workspace,
                                       on_step=None if args.json else lambda line: print(line, flush=True))
            if args.json:  # `repo` is where it ran: gone once this returns, unless kept
                print_json({**summary, "kept": args.keep})
            elif not args.keep:  # the lines above point into the repository about to go
                _tell("to look around after it (the open escalation in the app, `loomtui checklist`), run it "
                      "with --keep: without, the repository is removed now")
            code = 0 if summary["ok"] else 1
        else:
            from loomtui.demo.scenario import DEMO_APP_USER

            # You triage as the payments lead, so every key of the queue does something (approve,
            # reject, override the block); LOOM_USER picks someone else.
            if not os.environ.get("LOOM_USER"):
                workspace.actor = DEMO_APP_USER
            with _no_collection_until_the_app_collects():
                from loomtui.tui.app import run_app

                code = run_app(workspace, demo=True)
    finally:
        # Not cut short by the signals that ended the run: a closed terminal sends SIGHUP twice (tmux's,
        # then the kernel's as the terminal goes), and the second came while this cleaned up.
        with on_ending_signals(_carry_on):
            _clean_up_demo(workspace, repo, keep=args.keep)
    return code


def _carry_on(_signum: int) -> None:
    """An ending signal during cleanup: the cleanup is the ending; it goes on."""


def _clean_up_demo(workspace: Workspace, repo: Path, *, keep: bool) -> None:
    from loomtui.demo.scenario import stop_scenario

    if not keep:
        # Stopping a live agent takes seconds (SIGTERM, its grace period): say so, not a blank screen.
        _tell("stopping the demo's agents and removing its repository…")
        for line in stop_scenario(workspace):  # agents still running would write into a deleted repository
            _tell(line)
    workspace.close()
    if keep:
        from loomtui.demo.scenario import DEMO_APP_USER, DEMO_REVIEWERS

        # Its policy's groups name the demo's people: as this machine's user the queue's keys are refused. A
        # payments change needs two: the demo's second reviewer is gone with it, so who gives it is said.
        _tell(f"demo repository kept at {repo}; to triage there as the demo's payments lead: "
              f"cd {shlex.quote(str(repo))} && LOOM_USER={DEMO_APP_USER} loomtui (a payments change needs a "
              f"second approval: LOOM_USER={DEMO_REVIEWERS[0]} loomtui escalation approve ID gives it)")
    else:
        import shutil

        shutil.rmtree(repo.parent, ignore_errors=True)
        if repo.parent.exists():
            _tell(f"the demo repository {repo.parent} could not be removed entirely: remove it by hand")


# -- parser ---------------------------------------------------------------------------


LAYER_COMMANDS: Final[dict[str, str]] = {
    "audit": "state", "config": "state", "status": "state", "init": "state",
    "index": "coordination", "regions": "coordination", "claim": "coordination", "conflicts": "coordination",
    "context": "knowledge",
    "sandbox": "execution", "attach": "execution", "doctor": "execution", "script-agent": "execution",
    "eval": "guardrails",
    "policy": "governance", "gate": "governance", "escalation": "governance",
    "hook": "hooks", "mcp": "mcp", "plan": "workflow",
    "report": "observability",
    "checklist": "checklist",
    "store": "store",
    "serve": "serve",
    "keys": "keys",
}
"""Each layer command and the `loomtui.cli` module that registers it (a test keeps this true): a
command line naming one loads only its module, not every layer's engines (~0.3 s a call)."""
CORE_COMMANDS: Final = ("demo",)
DEBUG_ENV: Final = "LOOMTUI_DEBUG"
"""Set, an internal error (a bug) ends on its traceback rather than one line."""
INTERNAL_ERROR_EXIT: Final = 70
"""A case no check foresaw (sysexits' EX_SOFTWARE): apart from 1, a check's verdict, and 2, bad input."""
OUTPUT_ERROR_EXIT: Final = 74
"""The output could not be written (sysexits' EX_IOERR: a full disk, a closed file): never a verdict either."""
STEP_HINTS: Final = {
    "decide": "`loomtui escalation approve|reject {about}`",
    "override": "`loomtui escalation override|reject {about} --reason TEXT`",
    "merge": "`loomtui sandbox merge {about}`",
    "start": "`loomtui sandbox start {about}`",
    "rerun": "`loomtui sandbox start {about}` runs it again",
    "retry": "`loomtui sandbox advance {about}` retries",
    "advance": "`loomtui sandbox advance {about}` does it",
    "cancel": "`loomtui sandbox drop-after {about}` starts it without, or `loomtui sandbox rm {about}`",
    "remove": "`loomtui sandbox rm {about}` archives it; `loomtui sandbox new` states its task again",
    "resume": "`loomtui sandbox resume {about}`",
    "resolve": "in its worktree `git merge` the target, resolve and commit: it is reviewed again; or "
               "`loomtui sandbox rm {about}`",
}
"""How to act on a task's step from the shell (workflow.steps.PersonAction), in `StepView.line`."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only` (a `loomtui.cli` module, or "" for none), the core
    commands and that module's alone."""
    parser = LoomArgumentParser(
        prog="loomtui",
        description="A terminal control plane for teams running several AI coding agents on one "
        "git repository. With no command, opens the dashboard for the repository you are in.",
        epilog="Exit codes: 0 ok, 1 a check failed or was refused, 2 usage or input error, 70 an internal error "
               "(a bug in loomtui, never a verdict).",
    )
    parser.add_argument("--version", action="version", version=f"loomtui {__version__}")
    parser.add_argument("-C", "--repo", metavar="PATH", default=None, type=nonempty_arg,
                        help="run as if started in PATH (default: the current directory)")
    parser.set_defaults(handler=cmd_tui)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = add_command(commands, "demo", cmd_demo,
                       "open the app on a fresh copy of the bundled sample repo", json_flag=True)
    demo.add_argument("--keep", action="store_true", help="keep the demo repository and print its path")
    demo.add_argument("--headless", action="store_true",
                      help="run the scenario without a UI and print each step (--json: one summary; implies this)")

    for register in _layer_commands(only):
        register(commands)
    if only is None:
        bench = add_group(commands, "bench", "benchmarks that print figures (speed, memory)")
        for register in _bench_commands():
            register(bench)
    return parser


def _layer_commands(only: str | None = None) -> list[Callable[[Any], None]]:
    """Each layer's `register(subparsers)` (or only that of the module `only` names), imported
    here so `--help` lists them all."""
    names = dict.fromkeys(LAYER_COMMANDS.values()) if only is None else (only,) if only else ()
    return [importlib.import_module(f"loomtui.cli.{name}").register for name in names]


def _command_module(given: Sequence[str]) -> str | None:
    """Which `loomtui.cli` module the command line needs ("" for a core command); None for the
    whole parser (no command, `--help`, a typo argparse should answer with the full list)."""
    at = 0
    while at < len(given) and (given[at] in ("-C", "--repo") or given[at].startswith("--repo=")):
        at += 1 if "=" in given[at] else 2  # the option, and its value unless written with "="
    if at >= len(given):
        return None
    command = given[at]
    if command in CORE_COMMANDS:
        return ""
    return LAYER_COMMANDS.get(command)


def _before_the_command(given: Sequence[str], unknown: Sequence[str]) -> list[str]:
    """The options argparse did not know that were typed before the command word (`loomtui --json status`:
    it said "unrecognized arguments: --json (see loomtui status --help)", whose help lists --json)."""
    early: list[str] = []
    words = iter(given)
    for word in words:
        if word in ("-C", "--repo"):
            next(words, None)  # its value
        elif not word.startswith("-"):
            return early
        elif word in unknown:
            early.append(word)
    return []


def _bench_commands() -> list[Callable[[Any], None]]:
    """Each layer's `register_bench(subparsers)` for `loomtui bench ...`."""
    from loomtui.cli import (
        audit_bench,
        coordination,
        execution,
        governance,
        guardrails,
        hook_bench,
        hostile_bench,
        knowledge,
        observability,
        store,
        tui_bench,
    )

    return [coordination.register_bench, knowledge.register_bench, execution.register_bench,
            guardrails.register_bench, governance.register_bench, audit_bench.register_bench,
            hostile_bench.register_bench, hook_bench.register_bench, observability.register_bench,
            store.register_bench, tui_bench.register_bench]


def _missing_command(parser: argparse.ArgumentParser, commands: Any) -> NoReturn:
    parser.error(f"name a command: {', '.join(commands.choices)}")


SCRIPT_AGENT_HELP = "replay a YAML script of timed edits and commits here (the `script` runtime)"


SCRIPT_FORMAT = """\
A script is a YAML list of steps; each waits `after` seconds (default 0),
then does one thing:

  - {after: 0.5, write: payments/fx.py, content: "RATE = 1\\n"}
  - {after: 0.2, append: docs/notes.md, content: "one more line\\n"}
  - {replace: {path: api/app.py, old: "v1", new: "v2"}}
  - {delete: old_module.py}
  - {commit: "Use the new rate table"}
  - {log: "tick {n}", repeat: 1000, every: 0.01}  # {n} counts 1..repeat
  - {exit: 3}                                     # end here, exit code 3

Paths are relative to the worktree and may not leave it; every error names
file:line. LOOMTUI_SCRIPT_TIME_SCALE (default 1) multiplies every wait: 0.1
is ten times faster, 0 no wait. In .loom/loom.yaml nothing is needed:
`loomtui sandbox new --runtime script --script FILE`."""


def script_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `loomtui script-agent`, and the script format as its help's epilog."""
    parser.epilog = SCRIPT_FORMAT
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("script", type=nonempty_arg, metavar="SCRIPT", help="the script file")
    parser.add_argument("--check", action="store_true", help="only validate the script")


def _script_agent_parser() -> argparse.ArgumentParser:
    """`loomtui script-agent` alone: it starts once per scripted agent, so it skips loading every
    other command (about half a second each time)."""
    parser = LoomArgumentParser(prog="loomtui script-agent", description=SCRIPT_AGENT_HELP)
    script_agent_arguments(parser)
    parser.set_defaults(handler=_run_script_agent)
    return parser


def _run_script_agent(args: argparse.Namespace) -> int:
    from loomtui.execution.script_agent import main as replay

    return replay(args.script, check_only=args.check)


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # closed
        return False


def _encode_what_the_terminal_can(*streams: object) -> None:
    """Output in an encoding that lacks a character (`PYTHONIOENCODING=latin-1` and a "—") shows
    it as "?" instead of failing the command with a UnicodeEncodeError."""
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        encoding = str(getattr(stream, "encoding", "") or "").lower().replace("-", "").replace("_", "")
        if callable(reconfigure) and encoding not in ("utf8", "utf8sig"):
            reconfigure(errors="replace")


def _check_working_directory() -> None:
    try:
        os.getcwd()
    except FileNotFoundError:
        raise LoomError("the current directory no longer exists (cd elsewhere, or name the repository "
                        "with -C PATH)") from None


def _working_directory() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def _enter(given: str) -> str:
    """`-C PATH` as git's: the command runs in PATH, so a file it is given is read from there too
    (`-C repo policy validate .loom/policy.yaml` read the file from where the command was typed)."""
    path = os.path.expanduser(given)
    if not os.path.isdir(path):
        raise LoomError(f"{given}: not a directory (a repository is a folder)" if os.path.exists(path)
                        else f"{given}: no such directory")
    try:
        os.chdir(path)
    except OSError as exc:
        raise LoomError(f"{given}: cannot work there ({exc.strerror or exc})") from None
    return os.getcwd()


def _check_terminal(args: argparse.Namespace) -> None:
    """Refuse to draw the app without a terminal: a script or a CI step that left out the command
    would get escape codes and never end. A driver of its own (`serve`'s web driver) needs none."""
    if args.handler is cmd_tui:
        from loomtui.repo import find_repo

        find_repo(args.repo)  # outside a repository, that is the first thing to say
    if not os.environ.get("TEXTUAL_DRIVER"):
        # stderr too: Textual draws there (so that stdout can be redirected), and `loomtui 2>log` drew nothing.
        require_terminal("the app", ("stdin", "stdout", "stderr"), "it draws on stderr",
                         "a script wants a command (`loomtui --help`), such as `status` or `demo --headless`")


def require_terminal(what: str, names: Sequence[str], why: str, instead: str) -> None:
    """Refuse, in one line, what needs a terminal on each of the standard streams `names`."""
    missing = [name for name in names if not _is_terminal(getattr(sys, name))]
    if missing:
        which = (f"{', '.join(missing[:-1])} and {missing[-1]} are not one" if len(missing) > 1
                 else f"{missing[0]} is not one")
        raise LoomError(f"{what} needs a terminal ({which}; {why}); {instead}")


def _draws_the_app(args: argparse.Namespace) -> bool:
    """Whether the command runs the full-screen app (the dashboard, or the demo with a screen)."""
    return args.handler is cmd_tui or (args.handler is cmd_demo and not (args.headless or args.json))


TEXT_ARGS: Final = frozenset({"task", "reason", "override", "sandbox", "actor", "subject", "action", "id", "runtime",
                               "after", "run", "agent_trailer", "into", "branch", "base", "head"})
"""The arguments that are text loomtui keeps (a store's row, an audit entry), not a file's name."""


def _refuse_text_not_utf8(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A usage error for a text argument holding a byte no UTF-8 text has (the shell's `$'\\x9b'`, kept by
    Python as a surrogate): the store refused it deep in a command, an "internal error" (a file's name may
    hold one: not checked here)."""
    for action in parser._actions:
        if action.dest not in TEXT_ARGS:
            continue
        given = getattr(args, action.dest, None)
        for value in given if isinstance(given, list) else [given]:
            if not isinstance(value, str):
                continue
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                label = action.option_strings[-1] if action.option_strings else (action.metavar or action.dest.upper())
                parser.error(f"{label} is not UTF-8 text ({not_utf8(value[exc.start:exc.end])} at character "
                             f"{exc.start + 1})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    try:
        return _run(argv)
    except KeyboardInterrupt:  # while the parser was made, before any command began: not a traceback
        return 130


def _run(argv: Sequence[str] | None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["hook"]:  # an agent's hook inside a sandbox: its client alone, if it can answer
        from loomtui.governance.hooks.client import fast_main

        fast = fast_main(given)
        if fast is not None:
            return fast
    if given[:1] == ["script-agent"]:
        parser, given = _script_agent_parser(), given[1:]
    else:
        only = _command_module(given)
        if only is None and _command_module([*given, "status"]) == "":
            only = ""  # no command: the dashboard, which needs no layer's commands (their imports delay its frame)
        parser = build_parser(only)
    _ASKED_FOR_JSON.set(_asks_for_json(given))
    args, unknown = parser.parse_known_args(given)
    if unknown:  # said by the command's own parser, so the hint is `loomtui claim suggest --help`
        early = _before_the_command(given, unknown)
        getattr(args, "command_parser", parser).error(
            f"{' '.join(early)} goes after the command: loomtui "
            f"{shlex.join([*(word for word in given if word not in early), *early])}" if early
            else f"unrecognized arguments: {' '.join(unknown)}")
    _refuse_text_not_utf8(args, getattr(args, "command_parser", parser))
    _encode_what_the_terminal_can(sys.stdout, sys.stderr)
    # Untrusted text (file names, tasks, agents' output) never drives the terminal. Not around the
    # app: it escapes what it shows itself, and its crash report (rich, in colour, on sys.stderr)
    # would be escaped into noise.
    streams = sys.stdout, sys.stderr
    if not _draws_the_app(args):
        sys.stdout, sys.stderr = guard(sys.stdout), guard(sys.stderr)
    opened = _OPENED.set([])
    started_in = _working_directory()
    try:
        if getattr(args, "repo", None) is None:
            _check_working_directory()
        else:
            args.typed_in, args.repo = started_in, _enter(args.repo)
        if _draws_the_app(args):
            _check_terminal(args)
        code = int(args.handler(args))
        if sys.stdout is not None:  # None: a closed descriptor (`>&-`), which print writes nothing to
            sys.stdout.flush()  # what could not be written is said here, not by the interpreter's exit
        return code
    except LoomError as exc:
        print(f"loomtui: error: {exc}", file=sys.stderr)
        if _ASKED_FOR_JSON.get():  # a script reading stdout reads why, not nothing
            _print_json_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C; SIGTERM or SIGHUP where a command ends on them as on it (`as_interrupt`)
        return 128 + exc.signum if isinstance(exc, EndingSignal) else 130
    except BrokenPipeError:  # the reader stopped reading (`| head`): as a program killed by SIGPIPE, never success
        return 141
    except Exception as exc:  # noqa: BLE001 - a case no check foresaw: one line, as promised, not a traceback
        if isinstance(exc, OSError) and write_failed(sys.stdout):
            return _output_lost(exc)  # `gate --json > /dev/full` exited 1, "needs approval", on two tracebacks
        if os.environ.get(DEBUG_ENV):
            raise
        said = f"internal error: {type(exc).__name__}: {abridged(str(exc), 300) or 'no message'}"
        kept = _keep_traceback(exc)  # a crash met once (the app's, after a theme change) could not be found again
        print(f"loomtui: {said} (a bug in loomtui: {DEBUG_ENV}=1 shows where"
              + (f"; its traceback is kept in {kept}" if kept else "") + ")", file=sys.stderr)
        if _ASKED_FOR_JSON.get():
            _print_json_error(said)
        # Not 1, a check's verdict: `loomtui gate` crashing read "needs approval" to CI, not "could not judge".
        return INTERNAL_ERROR_EXIT
    finally:
        _warn_of_unmirrored_entries(_OPENED.get() or [])
        _OPENED.reset(opened)
        if started_in is not None and getattr(args, "repo", None) is not None:  # for a caller in this process
            try:
                os.chdir(started_in)
            except OSError:
                pass
        sys.stdout, sys.stderr = streams  # as they were, for a caller in this process


def _output_lost(exc: OSError) -> int:
    """Stdout could not take what was written: let it go, say so (stderr may be full too), and the exit code: 141
    for a reader that stopped reading, as a program SIGPIPE ends; else OUTPUT_ERROR_EXIT. Never a verdict."""
    _let_the_output_go()
    if isinstance(exc, BrokenPipeError):
        return 141
    _tell(f"loomtui: error: cannot write the output: {exc.strerror or exc}")
    return OUTPUT_ERROR_EXIT


def _let_the_output_go() -> None:
    """Stdout could not be written (a full disk): what it still holds goes to /dev/null, so that neither an
    error's JSON nor the interpreter's exit tries it again (an "Exception ignored" traceback, exit 120)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


MAX_KEPT_CRASHES: Final = 20


def _keep_traceback(exc: BaseException) -> str:
    """Write an internal error's traceback (no arguments, no environment: a task's text stays out) to a file of its
    own in the user's cache, the oldest past MAX_KEPT_CRASHES removed; its path, or "" where it could not be."""
    import secrets
    import time
    import traceback
    from pathlib import Path

    cache = os.environ.get("XDG_CACHE_HOME", "")
    folder = (Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache") / "loomtui" / "crashes"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as out:
            out.write("".join(traceback.format_exception(exc)))
        for old in sorted(folder.glob("*.txt"))[:-MAX_KEPT_CRASHES]:
            old.unlink(missing_ok=True)
    except OSError:
        return ""
    return str(path)


def _print_json_error(said: str) -> None:
    """An error as JSON on stdout, for a script reading it; nothing more where stdout cannot be written."""
    if sys.stdout is None or write_failed(sys.stdout):
        return
    try:
        print_json({"error": said})
        sys.stdout.flush()
    except OSError:
        _let_the_output_go()


def _warn_of_unmirrored_entries(workspaces: Sequence[Workspace]) -> None:
    """Say when what this command recorded went into the store but not the audit log's file: the
    file's mirror stopped at a damaged or changed line, and nobody would know until `status`."""
    for workspace in workspaces:
        if workspace.audit.unmirrored:
            from loomtui.cli.state import audit_file_behind

            behind = audit_file_behind(workspace)
            if behind:
                print(f"loomtui: warning: recorded in the store only: {behind}", file=sys.stderr)
