"""Agent hooks: the edit and permission checks that make "claims before code" real.

An agent runtime (Claude Code) asks before every write; the answer comes from the
coordination engine (claim a free region, refuse one another sandbox holds) and
the claim-stage policy (a `block` refuses, a `require` asks a person). A
permission prompt becomes an escalation a lead decides in the TUI. A git
pre-commit hook repeats the check on the staged change, for runtimes without
hooks and for writes the editor hook did not see.

Two halves, so a sandboxed agent needs no write access to the store:

- the agent's side reads the hook input and the files it is about to change and
  turns them into `check_edit {path, lines}` requests (`edit_targets`,
  `answer_event`, `staged_changes`);
- `HookGate` answers those requests for one sandbox, against the store, the audit
  log and the policy of the trusted checkout. It runs in the sandbox's supervisor
  (reached through `loomtui.governance.broker`) or, outside any sandbox, in the
  hook process itself. `dispatch` is the whole request vocabulary: nothing in it
  decides an escalation, so an agent can ask, never approve.
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Protocol

from loomtui.errors import LoomError
from loomtui.execution.isolation import ISOLATION_BWRAP, PRIVATE_TMP
from loomtui.execution.sandboxes import HOOK_SETTINGS_PATH, sandbox_paths
from loomtui.governance.policy import (
    AppliedRule,
    ChangeFacts,
    Evaluation,
    Policy,
    Requirement,
    evaluate,
    load_policy,
)
from loomtui.store import EscalationRecord
from loomtui.workspace import Workspace

if TYPE_CHECKING:  # the coordination engine loads on the first edit check, not with the supervisor
    from loomtui.coordination.claims import Coordinator

EDIT_TOOLS: Final = ("Edit", "Write", "MultiEdit", "NotebookEdit")
PRE_TOOL_MATCHER: Final = "|".join((*EDIT_TOOLS, "Bash"))
SETTINGS_PATH: Final = HOOK_SETTINGS_PATH
DEFAULT_PERMISSION_WAIT_S: Final = 120.0
PERMISSION_KIND: Final = "permission-request"
GRANTING_KINDS: Final = ("pre-start", PERMISSION_KIND)
MAX_DIFF_LINES: Final = 20_000  # beyond this a rewrite claims the whole file rather than diffing it
MAX_RANGES: Final = 20
MAX_TARGETS: Final = 50
_CURLY_QUOTES: Final = str.maketrans("\u2018\u2019\u201c\u201d", "''\"\"")
NO_SANDBOX: Final = "-"
"""The id a person's own commit is checked under: it holds no claims, so every claim is another's."""
_ID_CHARS: Final = re.compile(r"[^A-Za-z0-9]")


class HookInputError(LoomError):
    """The hook input is not what the runtime's hook contract promises (refused, exit 2)."""


@dataclass(frozen=True)
class Answer:
    """One answer to an agent: allow, ask a person, deny, or none (not ours to judge)."""

    decision: str  # allow | ask | deny | none
    reason: str
    regions: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "regions": list(self.regions)}


# -- the hook input --------------------------------------------------------------------


@dataclass(frozen=True)
class HookEvent:
    """The fields of a Claude Code hook input that the answer depends on."""

    event: str
    session_id: str
    cwd: Path
    tool_name: str = ""
    tool_input: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


def parse_hook_input(text: str) -> HookEvent:
    """Validate the JSON on a hook's stdin; HookInputError names what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HookInputError(f"hook input is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise HookInputError("hook input must be a JSON object")
    event = _text_field(data, "hook_event_name")
    if event not in ("PreToolUse", "PermissionRequest"):
        raise HookInputError(f"unknown hook event {event!r} (expected PreToolUse or PermissionRequest)")
    cwd = data.get("cwd") or os.getcwd()
    if not isinstance(cwd, str) or not Path(cwd).is_absolute():
        raise HookInputError("hook input field 'cwd' must be an absolute path")
    session = data.get("session_id", "")
    tool_input = data.get("tool_input")
    if not isinstance(tool_input, dict):
        raise HookInputError("hook input field 'tool_input' must be an object")
    return HookEvent(event, session if isinstance(session, str) else "", Path(cwd),
                     _text_field(data, "tool_name"), tool_input,
                     {k: data[k] for k in ("permission_suggestions", "tool_use_id") if k in data})


def _text_field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise HookInputError(f"hook input field {name!r} is missing or not text")
    return value


def session_sandbox(session_id: str) -> str:
    """The sandbox id a plain Claude Code session claims under: `claude-<first 8>`."""
    slug = _ID_CHARS.sub("", session_id)[:8]
    if not slug:
        raise HookInputError("no sandbox id: not in a sandbox, no --sandbox, and no session_id to derive one")
    return f"claude-{slug}"


# -- from a tool call to files and lines -------------------------------------------------


@dataclass(frozen=True)
class EditTarget:
    """A file a tool call will write, and the line ranges of its current text it changes.

    `lines` None: the whole file (new, unreadable or rewritten beyond diffing);
    an empty list: the call changes no line.
    """

    path: str
    lines: list[tuple[int, int]] | None


def edit_targets(event: HookEvent) -> list[EditTarget] | None:
    """What a PreToolUse call writes; None for tools and commands that write no file."""
    tool, data = event.tool_name, event.tool_input
    if tool == "Bash":
        command = data.get("command")
        if not isinstance(command, str):
            raise HookInputError("Bash tool_input needs a 'command' string")
        paths = bash_write_targets(command, event.cwd)
        return [EditTarget(p, None) for p in paths] or None
    if tool not in EDIT_TOOLS:
        return None
    key = "notebook_path" if tool == "NotebookEdit" else "file_path"
    raw = data.get(key)
    if not isinstance(raw, str) or not raw:
        raise HookInputError(f"{tool} tool_input needs a '{key}' string")
    path = _absolute(raw, event.cwd)
    if tool == "NotebookEdit":
        return [EditTarget(path, None)]  # cells are JSON, not lines of code: the notebook is one region
    current = _read_text(Path(path))
    if current is None:
        return [EditTarget(path, None)]
    if tool == "Write":
        content = data.get("content")
        if not isinstance(content, str):
            raise HookInputError("Write tool_input needs a 'content' string")
        return [EditTarget(path, changed_ranges(current, content))]
    edits = data.get("edits") if tool == "MultiEdit" else [data]
    if not isinstance(edits, list) or not edits:
        raise HookInputError("MultiEdit tool_input needs a non-empty 'edits' list")
    new = apply_edits(current, edits)
    if new is None:
        # The tool fails on an old_string it cannot find (MultiEdit applies all or none),
        # so it writes nothing: claiming the file would lock it for every other sandbox
        # for nothing. No decision rather than allow: a PreToolUse allow skips Claude
        # Code's own permission rules, and a write that will not happen needs no grant.
        return None
    return [EditTarget(path, changed_ranges(current, new))]


def _absolute(raw: str, cwd: Path) -> str:
    return os.path.normpath(cwd / os.path.expanduser(raw))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text("utf-8", "replace") or None
    except OSError:
        return None


def apply_edits(text: str, edits: Sequence[Any]) -> str | None:
    """Apply Edit/MultiEdit replacements in order; None when one cannot be located."""
    for edit in edits:
        if not isinstance(edit, dict):
            raise HookInputError("each edit must be an object with old_string and new_string")
        old, new = edit.get("old_string"), edit.get("new_string")
        if not isinstance(old, str) or not isinstance(new, str):
            raise HookInputError("an edit needs 'old_string' and 'new_string' strings")
        old = _actual_string(text, old)
        if old is None:
            return None
        text = text.replace(old, new) if edit.get("replace_all") else text.replace(old, new, 1)
    return text


def _actual_string(text: str, old: str) -> str | None:
    """The text in `text` that Claude Code's Edit would replace for `old`; None when none."""
    if not old:
        return None  # an empty old_string creates a file: on an existing one the tool fails
    if old in text:
        return old
    # Claude Code also matches with curly quotes read as straight ones; without this a
    # write it does make would go unclaimed. One character for one keeps offsets aligned.
    at = text.translate(_CURLY_QUOTES).find(old.translate(_CURLY_QUOTES))
    return None if at < 0 else text[at : at + len(old)]


def changed_ranges(current: str, new: str) -> list[tuple[int, int]] | None:
    """The line ranges of `current` (1-based, inclusive) that turning it into `new` touches.

    An insertion touches the lines either side of it: two agents adding code at
    one spot collide there, as their merge would.
    """
    old_lines = current.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    if max(len(old_lines), len(new_lines)) > MAX_DIFF_LINES:
        return None
    ranges = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if i1 == i2:
            ranges.append((max(1, i1), max(1, min(len(old_lines), i1 + 1))))
        else:
            ranges.append((i1 + 1, i2))
    return merge_ranges(ranges)


def merge_ranges(ranges: Iterable[tuple[int, int]], gap: int = 2) -> list[tuple[int, int]]:
    """Sorted, with ranges closer than `gap` lines joined; at most MAX_RANGES (then one span)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    if len(merged) > MAX_RANGES:
        return [(merged[0][0], max(end for _s, end in merged))]
    return merged


# -- Bash: which files a command writes (best effort) ------------------------------------

_REDIRECTS: Final = frozenset({">", ">>", ">|", "&>", "&>>", ">&"})
_SEPARATORS: Final = frozenset({";", ";;", "&", "&&", "|", "||", "|&", "(", ")", "\n"})
_WRAPPERS: Final = frozenset({"sudo", "env", "command", "nice", "nohup", "time", "exec", "builtin"})
_HEREDOC: Final = re.compile(r"(?<!<)<<(-?)\s*(['\"]?)([A-Za-z0-9_.-]+)\2")


def bash_write_targets(command: str, cwd: Path) -> list[str]:
    """Absolute paths a shell command writes: redirections, tee, sed/perl -i, cp/mv/ln/install,
    touch, truncate, rm, dd of=. Best effort: a file named through a variable is not seen
    (the git pre-commit hook and the post-gate policy still see the change)."""
    try:
        tokens = _shell_tokens(_without_heredoc_bodies(command))
    except ValueError:
        # Unbalanced quotes: a scan of the raw text finds names inside the open quote
        # (`echo "a > x` writes no x) and would claim them. The shell refuses such a
        # command, so claim nothing and leave it to Claude Code's own Bash rules; a write
        # that does happen is still seen by the git pre-commit hook.
        return []
    found: list[str] = []
    for words in _simple_commands(tokens):
        if words[0] == "cd" and len(words) == 2 and "$" not in words[1]:
            cwd = Path(_absolute(words[1], cwd))  # `cd sub && echo x > f` writes sub/f
            continue
        for name in _command_writes(words, cwd):
            if len(found) >= MAX_TARGETS:
                return found
            for path in _expand(name, cwd):
                if path not in found:
                    found.append(path)
    return found


def _without_heredoc_bodies(command: str) -> str:
    kept: list[str] = []
    pending: list[tuple[str, bool]] = []
    for line in command.split("\n"):
        if pending:
            delimiter, strip_tabs = pending[0]
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                pending.pop(0)
            continue
        kept.append(line)
        pending.extend((m.group(3), m.group(1) == "-") for m in _HEREDOC.finditer(line))
    return "\n".join(kept)


def _shell_tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>\n")
    lexer.whitespace_split = True
    lexer.whitespace = " \t\r"
    lexer.commenters = ""  # `#` starts a comment only at a word's start; missing one is harmless
    return list(lexer)


def _simple_commands(tokens: Sequence[str]) -> Iterable[list[str]]:
    """Each simple command's words, with redirection targets as `>` `file` pairs kept in place."""
    words: list[str] = []
    for token in tokens:
        if token in _SEPARATORS:
            if words:
                yield words
            words = []
        else:
            words.append(token)
    if words:
        yield words


def _command_writes(words: list[str], cwd: Path) -> list[str]:
    targets: list[str] = []
    argv: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        following = words[index + 1] if index + 1 < len(words) else None
        if word in _REDIRECTS or word.startswith("<"):
            if argv and argv[-1].isdigit():
                argv.pop()  # `2>file`: the descriptor number is not an argument
            if word in _REDIRECTS and following is not None and not (word == ">&" and following.isdigit()):
                targets.append(following)
            index += 2
            continue
        argv.append(word)
        index += 1
    while argv and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]) or argv[0] in _WRAPPERS):
        argv.pop(0)
        while argv and argv[0].startswith("-") and len(argv) > 1:
            argv.pop(0)  # the wrapper's own options (`sudo -u x`, `env -i`)
    if argv:
        targets.extend(_program_writes(os.path.basename(argv[0]), argv[1:], cwd))
    return targets


def _operands(args: Sequence[str], takes_value: frozenset[str] = frozenset()) -> list[str]:
    operands: list[str] = []
    skip = False
    only_operands = False
    for arg in args:
        if skip:
            skip = False
        elif only_operands or not arg.startswith("-") or arg == "-":
            operands.append(arg)
        elif arg == "--":
            only_operands = True
        elif arg in takes_value:
            skip = True
    return operands


# Programs whose operands are the files they write, with their options that take a value.
_WRITES_OPERANDS: Final = {
    "tee": frozenset(), "rm": frozenset(), "unlink": frozenset(),
    "touch": frozenset({"-r", "-d", "-t", "--reference", "--date"}),
    "truncate": frozenset({"-s", "--size", "-r", "--reference"}),
    "shred": frozenset({"-n", "-s", "--iterations", "--size"}),
}


def _program_writes(program: str, args: list[str], cwd: Path) -> list[str]:
    if program in _WRITES_OPERANDS:
        return _operands(args, _WRITES_OPERANDS[program])
    if program in ("sed", "perl"):
        return _in_place_files(args)
    if program in ("cp", "mv", "ln", "install", "rsync"):
        return _copy_targets(program, args, cwd)
    if program == "dd":
        return [a[3:] for a in args if a.startswith("of=")]
    return []


def _in_place_files(args: Sequence[str]) -> list[str]:
    """Files `sed -i` / `perl -i` rewrites: the operands after the script."""
    in_place = False
    script_given = False
    operands: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.startswith("--in-place"):
            in_place = True
        elif arg in ("-e", "-f", "--expression", "--file"):
            script_given, skip = True, True
        elif arg.startswith(("--expression=", "--file=")):
            script_given = True
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            for position, flag in enumerate(arg[1:]):
                if flag == "i":
                    in_place = True
                    break  # the rest is the backup suffix
                if flag in "ef":
                    script_given = True
                    skip = position == len(arg) - 2
                    break
        elif not arg.startswith("-"):
            operands.append(arg)
    if not in_place:
        return []
    return operands if script_given else operands[1:]


def _copy_targets(program: str, args: Sequence[str], cwd: Path) -> list[str]:
    target_dir = None
    for position, arg in enumerate(args):
        if arg == "-t" and position + 1 < len(args):
            target_dir = args[position + 1]
        elif arg.startswith("--target-directory="):
            target_dir = arg.split("=", 1)[1]
    operands = _operands(args, frozenset({"-t", "-S", "--suffix", "-m", "--mode", "-o", "-g"}))
    if target_dir is None:
        if len(operands) < 2:
            return []
        *sources, destination = operands
        if destination.endswith("/") or len(sources) > 1 or (cwd / destination).is_dir():
            target_dir = destination
        else:
            return [*(sources if program == "mv" else []), destination]
    else:
        sources = operands
    written = [os.path.join(target_dir, os.path.basename(s.rstrip("/"))) for s in sources]
    return [*(sources if program == "mv" else []), *written]


def _expand(name: str, cwd: Path) -> list[str]:
    if not name or "$" in name or "`" in name:
        return []  # a variable's value is unknown here
    path = _absolute(name, cwd)
    if path.startswith("/dev/") or path == "/dev":
        return []
    if glob.has_magic(path):
        return sorted(glob.glob(path))[:MAX_TARGETS] or [path]
    return [path]


# -- the gate: one sandbox's answers ------------------------------------------------------


class HookGate:
    """Answers one sandbox's hook requests from the store and the trusted checkout's policy.

    `workspace` is the trusted checkout (its policy and config count, not a copy
    the agent could edit); `tree` is the worktree the agent writes in, whose
    current code maps lines to regions.
    """

    def __init__(self, workspace: Workspace, sandbox_id: str, tree: Path) -> None:
        self.workspace = workspace
        self.sandbox_id = sandbox_id
        self.tree = tree.resolve()
        record = workspace.store.get_sandbox(sandbox_id)
        self.runtime = record.runtime if record else None
        self.branch = record.branch if record else None
        self.managed = record is not None  # a loom sandbox: its hook settings are ours
        self.scratch = self._scratch_dirs(record)

    def _scratch_dirs(self, record: Any) -> tuple[Path, ...]:
        """Where an agent may write outside its worktree: its own temporary directory only."""
        if record is None:
            return (Path(tempfile.gettempdir()).resolve(),)
        if record.isolation == ISOLATION_BWRAP:
            return (PRIVATE_TMP,)  # a private tmpfs inside the sandbox
        return (sandbox_paths(self.workspace.paths, record.id).tmp.resolve(),)

    # -- plumbing ------------------------------------------------------------------------

    def policy(self) -> Policy:
        return load_policy(self.workspace.root, self.workspace.load_config().policy)

    def coordinator(self) -> Coordinator:
        from loomtui.coordination.claims import open_coordinator
        from loomtui.coordination.index import build_index

        config = self.workspace.load_config().coordination
        index = build_index(self.tree, cache_dir=self.workspace.paths.state_dir / "index-cache",
                            include=config.include, exclude=config.exclude)
        return open_coordinator(self.workspace, index)

    def _record(self, action: str, details: dict[str, Any]) -> None:
        self.workspace.record(action, self.sandbox_id, details)

    def relative(self, path: str) -> str | Answer:
        """The repository path of a file the agent writes, or the answer for one outside it."""
        absolute = Path(os.path.normpath(self.tree / path))
        resolved = absolute.resolve()
        if resolved.is_relative_to(self.tree) and resolved != self.tree:
            rel = PurePosixPath(resolved.relative_to(self.tree).as_posix())
            if rel.parts[0] == ".git":
                return Answer("deny", f"{path}: git's own files are not for agents to edit")
            if self.managed and str(rel) == SETTINGS_PATH:
                return Answer("deny", f"{SETTINGS_PATH} holds this sandbox's loomtui hooks; "
                                      "it is not for the agent to change")
            return str(rel)
        if absolute.is_relative_to(self.tree):
            return Answer("deny", f"{path} leads out of the worktree through a symlink")
        # The innermost enclosing place decides: a sandbox's scratch dir may sit in the git dir,
        # and a checkout may sit under /tmp.
        guarded = (self.workspace.root.resolve(), self.workspace.paths.common_dir.resolve())
        places = [(len(root.parts), False) for root in guarded if resolved.is_relative_to(root)]
        places += [(len(tmp.parts), True) for tmp in self.scratch
                   if resolved.is_relative_to(tmp) and resolved != tmp]
        if places and max(places)[1]:
            return Answer("none", f"{path} is this sandbox's scratch space")
        return Answer("deny", f"{path} is outside this sandbox's worktree {self.tree}; an agent writes "
                              "only there (and in its temporary directory)")

    # -- requests ------------------------------------------------------------------------

    def check_edit(self, path: str, lines: Any = None, *, tool: str = "") -> Answer:
        """Allow inside own claims, claim free regions, deny others' regions or a policy block."""
        rel = self.relative(path)
        if isinstance(rel, Answer):
            if rel.decision != "none":
                self._record("hook.edit", {"tool": tool, "path": path, **rel.as_dict()})
            return rel
        ranges = _parse_ranges(lines)
        answer = self._edit_answer(rel, ranges)
        self._record("hook.edit", {"tool": tool, "path": rel, "lines": ranges, **answer.as_dict()})
        return answer

    def _edit_answer(self, rel: str, ranges: list[tuple[int, int]] | None) -> Answer:
        if ranges == []:
            return Answer("allow", f"{rel}: the edit changes no line")
        try:
            coordinator = self.coordinator()
            regions = self._regions(coordinator, rel, ranges)
            evaluation = evaluate(self.policy(), ChangeFacts(stage="claim", paths=(rel,), regions=regions,
                                                             runtime=self.runtime))
            if evaluation.outcome == "block":
                return Answer("deny", f"policy: {_headline(evaluation)}", regions)
            claimed = self._claim(coordinator, rel, ranges)
        except LoomError as exc:  # fail closed: an edit that cannot be checked is not allowed
            return Answer("deny", f"cannot check {rel}: {exc}")
        if isinstance(claimed, Answer):
            return Answer(claimed.decision, claimed.reason, regions)
        done = "; ".join(claimed) if claimed else "inside this sandbox's claims"
        if evaluation.outcome == "require" and not self._granted(regions):
            needs = "; ".join(f"{r.rule} needs {r.describe()}" for r in evaluation.requirements)
            return Answer("ask", f"policy requires approval before changing {rel}: {needs} ({done})", regions)
        return Answer("allow", done, regions)

    def _claim(self, coordinator: Coordinator, rel: str,
               ranges: list[tuple[int, int]] | None) -> list[str] | Answer:
        """Claim what each range needs; all or nothing, so a refusal hands back the rest."""
        held_before = {claim.id for claim in self.workspace.store.live_claims(self.sandbox_id)}
        claimed: list[str] = []
        spans: list[tuple[int, int] | None] = list(ranges) if ranges is not None else [None]
        for span in spans:
            decision = coordinator.check_edit(self.sandbox_id, rel, span)
            if decision.verdict == "deny":
                for claim in self.workspace.store.live_claims(self.sandbox_id):
                    if claim.id not in held_before:
                        coordinator.release(claim.id, "the edit it was claimed for was refused")
                return Answer("deny", decision.reason)
            if decision.verdict == "claim":
                claimed.append(decision.reason)
        return claimed

    def _regions(self, coordinator: Coordinator, rel: str,
                 ranges: list[tuple[int, int]] | None) -> tuple[str, ...]:
        if ranges is None:
            return (rel,)
        found: list[str] = []
        for start, end in ranges:
            try:
                ids = coordinator.resolve(f"{rel}:{start}-{end}")
            except LoomError:
                ids = [rel]  # gone meanwhile, or a name the target syntax cannot spell
            found.extend(i for i in ids if i not in found)
        return tuple(found)

    def _granted(self, regions: Sequence[str]) -> bool:
        """Whether people already approved this sandbox changing these regions (before it
        started, or on an earlier permission request): no need to ask again."""
        from loomtui.coordination.claims import ancestors, split_id

        scopes = [e.data.get("facts") or {} for status in ("approved", "overridden")
                  for e in self.workspace.store.list_escalations(status)
                  if e.sandbox_id == self.sandbox_id and e.kind in GRANTING_KINDS]

        def covered(region: str, facts: Mapping[str, Any]) -> bool:
            approved = set(facts.get("regions") or ())
            whole_files = set(facts.get("paths") or ()) - {split_id(r)[0] for r in approved}
            return region in approved or bool(set(ancestors(region)) & approved) \
                or split_id(region)[0] in whole_files

        return bool(regions) and all(any(covered(r, facts) for facts in scopes) for r in regions)

    def check_commit(self, paths: Sequence[str], regions: Sequence[str]) -> Answer:
        """Refuse a staged change on regions another sandbox holds, or one the policy blocks."""
        try:
            coordinator = self.coordinator()
            blocking = [c for c in coordinator.check(self.sandbox_id, list(regions)) if c.blocking]
            evaluation = evaluate(self.policy(), ChangeFacts(stage="claim", paths=tuple(paths),
                                                             regions=tuple(regions), runtime=self.runtime))
        except LoomError as exc:
            answer = Answer("deny", f"cannot check the commit: {exc}")
        else:
            if blocking:
                answer = Answer("deny", blocking[0].explanation, tuple(regions))
            elif evaluation.outcome == "block":
                answer = Answer("deny", f"policy: {_headline(evaluation)}", tuple(regions))
            else:
                return Answer("allow", "no region of this commit is held by another sandbox", tuple(regions))
        # Only refusals are recorded: an accepted commit is in git's own history.
        self._record("hook.commit_refused", {"paths": list(paths), **answer.as_dict()})
        return answer

    def open_permission_request(self, tool_name: str, tool_input: Mapping[str, Any], *,
                                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Open an escalation for a lead to answer; a policy block is answered at once."""
        from loomtui.governance.escalations import open_escalation
        from loomtui.governance.gitfacts import branch_head

        paths = self._request_paths(tool_name, tool_input)
        facts = ChangeFacts(stage="claim", paths=tuple(paths), runtime=self.runtime)
        evaluation = permission_evaluation(self.policy(), facts)
        evidence = {"tool_name": tool_name, "tool_input": _bounded(tool_input), **(extra or {})}
        if evaluation.outcome == "block":
            message = f"policy: {_headline(evaluation)}"
            self._record("hook.permission", {"tool": tool_name, "decision": "deny", "reason": message})
            return {"decision": "deny", "message": message}
        commit = (branch_head(self.workspace.root, self.branch) if self.branch else None) or ""
        summary = f"{self.sandbox_id} asks: {_describe_tool(tool_name, tool_input)}"
        record = open_escalation(self.workspace, PERMISSION_KIND, evaluation, facts, sandbox_id=self.sandbox_id,
                                 commit=commit, summary=summary, evidence=evidence)
        return {"id": record.id, "status": record.status}

    def _request_paths(self, tool_name: str, tool_input: Mapping[str, Any]) -> list[str]:
        event = HookEvent("PreToolUse", "", self.tree, tool_name, tool_input)
        try:
            targets = edit_targets(event) or []
        except HookInputError:
            targets = []  # a tool we do not parse: the request is about the tool, not files
        places = [self.relative(t.path) for t in targets]
        return sorted({p for p in places if isinstance(p, str)})

    def _own_request(self, escalation_id: Any) -> EscalationRecord:
        record = self.workspace.store.get_escalation(_int(escalation_id, "id"))
        if record is None or record.sandbox_id != self.sandbox_id or record.kind != PERMISSION_KIND:
            raise LoomError(f"no permission request #{escalation_id} of sandbox {self.sandbox_id}")
        return record

    def escalation_status(self, escalation_id: Any) -> dict[str, Any]:
        """Where this sandbox's permission request stands, and what it means for the agent."""
        return _status(self._own_request(escalation_id))

    def withdraw_permission_request(self, escalation_id: Any, reason: str) -> dict[str, Any]:
        """Close an unanswered request (the agent stopped waiting); a decided one is left as it is."""
        with self.workspace.store.transaction():
            record = self._own_request(escalation_id)
            if record.status == "open":
                history = [*record.data.get("history", []),
                           {"at": time.time(), "event": "withdrawn", "by": self.sandbox_id, "reason": reason}]
                record = self.workspace.store.update_escalation(record.id, status="withdrawn",
                                                                data={"history": history})
                self._record("escalation.withdrawn", {"escalation": record.id, "reason": reason})
        return _status(record)


def permission_evaluation(policy: Policy, facts: ChangeFacts) -> Evaluation:
    """Who answers an agent's permission request: the claim-stage rules for the files it
    names, else the policy's default approvers (a prompt is always a person's call)."""
    evaluation = evaluate(policy, facts)
    if evaluation.outcome == "block" or evaluation.requirements:
        return evaluation
    spec = policy.default.approvals
    groups = spec.groups if policy.default.decision == "require" and spec.groups else policy.override_groups
    count = spec.count if groups == spec.groups else 1
    if not groups:
        rule = AppliedRule("default", "block", None, "the policy names no one who may answer a permission request")
        return Evaluation("claim", "block", evaluation.risk, (*evaluation.applied, rule), ())
    eligible = frozenset().union(*(policy.groups.get(name, frozenset()) for name in groups))
    requirement = Requirement("default", groups, count, eligible)
    rule = AppliedRule("default", "require", None, "an agent's permission request is a person's call",
                       (requirement,))
    return Evaluation("claim", "require", evaluation.risk, (*evaluation.applied, rule), (requirement,),
                      evaluation.notes)


def _status(record: EscalationRecord) -> dict[str, Any]:
    if record.status in ("approved", "overridden"):
        decision, message = "allow", f"approved in loomtui (escalation #{record.id})"
    elif record.status == "open":
        decision, message = None, f"waiting for a decision on escalation #{record.id}"
    else:
        why = next((h.get("reason") for h in reversed(record.data.get("history", [])) if h.get("reason")), "")
        decision = "deny"
        message = f"escalation #{record.id} was {record.status}" + (f": {why}" if why else "")
    return {"id": record.id, "status": record.status, "decision": decision, "message": message}


def _headline(evaluation: Evaluation) -> str:
    return evaluation.explanation()[0].split(": ", 1)[-1]


def _describe_tool(tool_name: str, tool_input: Mapping[str, Any]) -> str:
    detail = next((tool_input[k] for k in ("command", "file_path", "notebook_path", "url", "pattern")
                   if isinstance(tool_input.get(k), str)), "")
    text = f"{tool_name} {detail}".strip().replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."


def _bounded(value: Mapping[str, Any], limit: int = 4000) -> dict[str, Any]:
    """Tool input for the record, with long strings (file contents) cut short."""
    return {k: (v[:limit] + f"... ({len(v)} chars)" if isinstance(v, str) and len(v) > limit else v)
            for k, v in value.items()}


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LoomError(f"request field {name!r} must be an integer")
    return value


def _parse_ranges(lines: Any) -> list[tuple[int, int]] | None:
    """`lines` of a request: null (whole file), [start, end], or a list of such pairs."""
    if lines is None:
        return None
    if not isinstance(lines, list):
        raise LoomError("request field 'lines' must be null, [start, end] or a list of them")
    pairs = [lines] if len(lines) == 2 and all(isinstance(n, int) for n in lines) else lines
    ranges = []
    for pair in pairs:
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
                or not 1 <= pair[0] <= pair[1]):
            raise LoomError(f"bad line range {pair!r}: need [start, end] with 1 <= start <= end")
        ranges.append((pair[0], pair[1]))
    return merge_ranges(ranges)


# -- the request vocabulary ---------------------------------------------------------------


def _op_check_edit(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.check_edit(_str(request, "path"), request.get("lines"),
                           tool=str(request.get("tool", ""))).as_dict()


def _op_check_commit(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.check_commit(_strs(request, "paths"), _strs(request, "regions")).as_dict()


def _op_open_permission_request(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    tool_input = request.get("tool_input")
    if not isinstance(tool_input, dict):
        raise LoomError("request field 'tool_input' must be an object")
    extra = request.get("extra")
    return gate.open_permission_request(_str(request, "tool_name"), tool_input,
                                        extra=extra if isinstance(extra, dict) else None)


def _op_escalation_status(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.escalation_status(request.get("id"))


def _op_withdraw(gate: HookGate, request: Mapping[str, Any]) -> dict[str, Any]:
    return gate.withdraw_permission_request(request.get("id"), str(request.get("reason", "withdrawn")))


OPERATIONS: Final[dict[str, Callable[[HookGate, Mapping[str, Any]], dict[str, Any]]]] = {
    "check_edit": _op_check_edit,
    "check_commit": _op_check_commit,
    "open_permission_request": _op_open_permission_request,
    "escalation_status": _op_escalation_status,
    "withdraw_permission_request": _op_withdraw,
}
"""Everything an agent may ask. Deliberately no decide, approve, override or policy write."""


def dispatch(gate: HookGate, request: Any) -> dict[str, Any]:
    """Answer one request: `{"ok": true, ...}` or `{"ok": false, "error": "one line"}`."""
    if not isinstance(request, dict):
        return {"ok": False, "error": "a request is a JSON object with an 'op'"}
    operation = OPERATIONS.get(request.get("op"))  # type: ignore[arg-type]
    if operation is None:
        return {"ok": False, "error": f"unknown operation {request.get('op')!r}; agents may only ask "
                                      f"({', '.join(OPERATIONS)}), never decide"}
    try:
        return {"ok": True, **operation(gate, request)}
    except LoomError as exc:
        return {"ok": False, "error": str(exc)}


def _str(request: Mapping[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise LoomError(f"request field {name!r} must be a non-empty string")
    return value


def _strs(request: Mapping[str, Any], name: str) -> list[str]:
    value = request.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LoomError(f"request field {name!r} must be a list of strings")
    return value


# -- the agent's side --------------------------------------------------------------------


class Channel(Protocol):
    """Where requests go: the sandbox's broker, or a gate in this process."""

    def request(self, op: str, **fields: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class HookAnswer:
    """What `loomtui hook claude` prints for one event (None decision: no opinion)."""

    event: str
    decision: str  # allow | ask | deny
    reason: str

    def to_claude(self) -> dict[str, Any]:
        if self.event == "PermissionRequest":
            decision: dict[str, Any] = {"behavior": self.decision}
            if self.decision == "deny":
                decision["message"] = self.reason
            return {"hookSpecificOutput": {"hookEventName": self.event, "decision": decision}}
        return {"hookSpecificOutput": {"hookEventName": self.event, "permissionDecision": self.decision,
                                       "permissionDecisionReason": self.reason}}


def answer_event(event: HookEvent, channel: Channel, *, wait: float = DEFAULT_PERMISSION_WAIT_S,
                 poll: float = 0.25) -> HookAnswer | None:
    """The answer to one hook event, or None when loomtui has no opinion on it."""
    if event.event == "PermissionRequest":
        return _answer_permission(event, channel, wait, poll)
    targets = edit_targets(event)
    if not targets:
        return None
    answers = [channel.request("check_edit", path=t.path, lines=t.lines, tool=event.tool_name) for t in targets]
    for decision in ("deny", "ask"):
        reasons = [a["reason"] for a in answers if a["decision"] == decision]
        if reasons:
            return HookAnswer(event.event, decision, "loomtui: " + "; ".join(reasons))
    if event.tool_name == "Bash" or all(a["decision"] == "none" for a in answers):
        # A command does more than its writes: allowing it here would skip the
        # runtime's own permission rules, so a fine Bash write is left to them.
        return None
    return HookAnswer(event.event, "allow",
                      "loomtui: " + "; ".join(a["reason"] for a in answers if a["decision"] == "allow"))


def _answer_permission(event: HookEvent, channel: Channel, wait: float, poll: float) -> HookAnswer:
    opened = channel.request("open_permission_request", tool_name=event.tool_name,
                             tool_input=dict(event.tool_input), extra=dict(event.extra))
    if opened.get("decision") == "deny":
        return HookAnswer(event.event, "deny", f"loomtui: {opened.get('message', 'refused')}")
    deadline = time.monotonic() + wait
    status = opened
    while True:
        status = channel.request("escalation_status", id=opened["id"])
        if status.get("decision") is not None or time.monotonic() >= deadline:
            break
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    if status.get("decision") is None:
        status = channel.request("withdraw_permission_request", id=opened["id"],
                                 reason=f"no decision within {wait:g}s")
        if status.get("decision") != "allow":  # a lead may have approved at the last moment
            return HookAnswer(event.event, "deny", f"loomtui: no lead decided escalation #{opened['id']} "
                                                   f"within {wait:g}s; ask again later")
    return HookAnswer(event.event, status["decision"], f"loomtui: {status['message']}")


def configured_sandbox(tree: Path) -> str | None:
    """The sandbox id `hook install` recorded in this worktree's own git config."""
    value = _git(tree, "config", "--get", "loom.sandbox", check=False).strip()
    return value or None


# -- the git pre-commit hook -------------------------------------------------------------


def staged_changes(tree: Path) -> tuple[list[str], list[str]]:
    """The paths and regions the staged change (the index against HEAD) touches."""
    from loomtui.coordination.signatures import changed_regions

    names = _git(tree, "diff", "--cached", "--name-only", "--no-renames", "-z").split("\0")
    paths = sorted({n for n in names if n})
    regions: list[str] = []
    for path in paths:
        if path.endswith(".py"):
            old = _git(tree, "show", f"HEAD:{path}", check=False)
            new = _git(tree, "show", f":{path}", check=False)
            regions.extend(c.region_id for c in changed_regions(old, new, path))
        else:
            regions.append(path)
    return paths, list(dict.fromkeys(regions))


def _git(tree: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True, errors="replace")
    if check and done.returncode != 0:
        raise LoomError(f"git {' '.join(args[:2])}: {done.stderr.strip() or 'failed'}")
    return done.stdout if done.returncode == 0 else ""


# -- installing the hooks in a worktree ---------------------------------------------------

GIT_HOOKS: Final = ("applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
                    "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout",
                    "post-merge", "pre-push", "post-rewrite", "pre-auto-gc")

# Then the repository's own hook, from the hooks dir in force before this worktree's
# core.hooksPath pointed here: the shared config's (read from its file, never this
# worktree's), the user's or the system's, else <common dir>/hooks.
_FORWARD: Final = """\
common=$(git rev-parse --git-common-dir)
dir=$(git config --file "$common/config" core.hooksPath || git config --global core.hooksPath \\
      || git config --system core.hooksPath) || dir="$common/hooks"
[ "$dir" = "$(dirname "$0")" ] && exit 0
hook="$dir/$(basename "$0")"
if [ -x "$hook" ]; then exec "$hook" "$@"; fi
exit 0
"""


@dataclass(frozen=True)
class InstallReport:
    worktree: str
    sandbox_id: str
    settings: str
    settings_tracked: bool
    hooks_dir: str

    def summary(self) -> str:
        kept = "skip-worktree (tracked)" if self.settings_tracked else "excluded for this worktree only"
        return (f"agent hooks installed in {self.worktree} for sandbox {self.sandbox_id}: {self.settings} "
                f"({kept}); git hooks from {self.hooks_dir} via this worktree's core.hooksPath")


def hook_command(*args: str) -> str:
    """The command line that runs `loomtui ARGS` with this very installation (no PATH lookup:
    an agent's reduced PATH or a repository's .python-version cannot pick another one)."""
    return shlex.join([sys.executable, "-m", "loomtui", *args])


def install_hooks(workspace: Workspace, worktree: Path, sandbox_id: str, *,
                  wait: float = DEFAULT_PERMISSION_WAIT_S) -> InstallReport:
    """Wire a worktree's Claude Code settings and git pre-commit to loomtui (idempotent)."""
    tree = Path(_git(worktree, "rev-parse", "--show-toplevel").strip())
    settings = tree / SETTINGS_PATH
    try:
        merged = merge_settings(_read_settings(settings), wait=wait)
        _write_atomic(settings, json.dumps(merged, indent=2) + "\n")
        hooks_dir = _write_git_hooks(workspace.paths.state_dir / "hooks")
    except OSError as exc:
        raise LoomError(f"cannot install the agent hooks in {tree}: {exc.strerror or exc}") from None
    _enable_worktree_config(tree)
    tracked = bool(_git(tree, "ls-files", "--", SETTINGS_PATH).strip())
    if tracked:
        # The index is per worktree, so this hides our edit from this sandbox's commits only.
        _git(tree, "update-index", "--skip-worktree", "--", SETTINGS_PATH)
    else:
        _exclude_for_worktree(tree)
    _git(tree, "config", "--worktree", "core.hooksPath", str(hooks_dir))
    _git(tree, "config", "--worktree", "loom.sandbox", sandbox_id)
    return InstallReport(str(tree), sandbox_id, str(settings), tracked, str(hooks_dir))


def merge_settings(current: dict[str, Any], *, wait: float = DEFAULT_PERMISSION_WAIT_S) -> dict[str, Any]:
    """Claude Code settings with loomtui's hooks in place of any earlier ones; the rest kept."""
    ours = {
        "PreToolUse": (PRE_TOOL_MATCHER, hook_command("hook", "claude"), 60),
        # Claude Code stops a hook after its `timeout`: give the wait for a lead some slack.
        "PermissionRequest": ("*", hook_command("hook", "claude", "--timeout", f"{wait:g}"), int(wait) + 30),
    }
    settings = dict(current)
    hooks = settings.get("hooks", {})
    if not isinstance(hooks, dict):
        raise LoomError(f"{SETTINGS_PATH}: 'hooks' is not an object; fix it by hand before installing")
    hooks = dict(hooks)
    for event, (matcher, command, timeout) in ours.items():
        groups = hooks.get(event, [])
        if not isinstance(groups, list):
            raise LoomError(f"{SETTINGS_PATH}: hooks.{event} is not a list; fix it by hand before installing")
        kept = []
        for group in groups:
            if isinstance(group, dict) and isinstance(group.get("hooks"), list):
                others = [h for h in group["hooks"] if not _is_ours(h)]
                if others:
                    kept.append({**group, "hooks": others})
            else:
                kept.append(group)  # not ours to judge: kept as it is
        kept.append({"matcher": matcher, "hooks": [{"type": "command", "command": command, "timeout": timeout}]})
        hooks[event] = kept
    settings["hooks"] = hooks
    return settings


def _is_ours(hook: Any) -> bool:
    command = hook.get("command", "") if isinstance(hook, dict) else ""
    return isinstance(command, str) and "loomtui" in command and " hook claude" in command


def _read_settings(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoomError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix it before installing hooks") \
            from None
    if not isinstance(data, dict):
        raise LoomError(f"{path}: settings must be a JSON object")
    return data


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def _write_git_hooks(folder: Path) -> Path:
    """The shared hooks dir sandboxes point at: our pre-commit, then the repository's own hooks."""
    check = f"{hook_command('hook', 'git-pre-commit')} || exit 1\n"
    for name in GIT_HOOKS:
        body = "#!/bin/sh\n# Installed by loomtui (`loomtui hook install`).\n"
        body += (check if name == "pre-commit" else "") + _FORWARD
        target = folder / name
        if not target.exists() or target.read_text() != body:
            _write_atomic(target, body, 0o755)
    return folder


def _exclude_for_worktree(tree: Path) -> None:
    """Ignore the settings file in this worktree only.

    `info/exclude` lives in git's common dir, shared by every worktree (check:
    `git rev-parse --git-path info/exclude`), so it would hide the file in the main
    checkout too. Instead this worktree's own `core.excludesFile` names a file in its
    git dir, which carries on the user's global excludes that setting replaces.
    """
    git_dir = Path(_git(tree, "rev-parse", "--absolute-git-dir").strip())
    exclude = git_dir / "loom-exclude"
    if _git(tree, "config", "--worktree", "--get", "core.excludesFile", check=False).strip() == str(exclude):
        return
    previous = _git(tree, "config", "--path", "--get", "core.excludesFile", check=False).strip()
    if not previous:
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        previous = os.path.join(xdg, "git", "ignore")
    inherited = _read_text(Path(previous)) or ""
    lines = ["# loomtui: keep this sandbox's hook settings out of its commits", f"/{SETTINGS_PATH}",
             f"# carried over from {previous}", inherited]
    try:
        _write_atomic(exclude, "\n".join(lines) + "\n")
    except OSError as exc:
        raise LoomError(f"cannot write {exclude}: {exc.strerror or exc}") from None
    _git(tree, "config", "--worktree", "core.excludesFile", str(exclude))


def _enable_worktree_config(tree: Path) -> None:
    """Turn on per-worktree config (`git config --worktree`), once per repository.

    It changes nothing for the other worktrees. Two sandboxes created at once race
    for the shared config's lock, hence the retries.
    """
    for _attempt in range(20):
        if _git(tree, "config", "--get", "extensions.worktreeConfig", check=False).strip() == "true":
            return
        try:
            _git(tree, "config", "extensions.worktreeConfig", "true")
            return
        except LoomError:
            time.sleep(0.05)
    _git(tree, "config", "extensions.worktreeConfig", "true")


def local_sandbox_id(tree: Path) -> str:
    """A stable id for a checkout that is not a loomtui sandbox (a person's own clone)."""
    return "local-" + hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:8]
