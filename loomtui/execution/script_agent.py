"""The `script` runtime: an agent that replays a YAML list of timed edits and commits.

The demo and the tests use it where a real coding agent would run: it goes through
the same sandbox, isolation and supervision, and its edits are real files and real
commits on the sandbox branch. The script format is in `loomtui script-agent --help`
(`loomtui.cli.SCRIPT_FORMAT`): a list of steps, each waiting `after` seconds, then doing
one thing (write, append, replace, delete, commit, log, exit). Every error in a script
names `file:line`; `LOOMTUI_SCRIPT_TIME_SCALE` multiplies every wait (the tests use it).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from loomtui.errors import ConfigError, LoomError
from loomtui.execution.gitops import Git, GitResult
from loomtui.yamlcheck import Fields, Value, compose, read_text

ACTIONS: Final = ("write", "append", "replace", "delete", "commit", "log", "exit")
_KNOWN: Final = ("after", *ACTIONS, "content", "repeat", "every")
MAX_WAIT_S: Final = 86_400.0
"""The longest `after` or `every` (a day): `after: 1.0e+308` passed `--check`, then ended the run in an
internal error (no clock reaches it)."""
MAX_REPEAT: Final = 10_000_000
TIME_SCALE_ENV: Final = "LOOMTUI_SCRIPT_TIME_SCALE"


def time_scale(env: Mapping[str, str] | None = None) -> float:
    """The factor every wait of a script is multiplied by (`LOOMTUI_SCRIPT_TIME_SCALE`, default 1)."""
    raw = (os.environ if env is None else env).get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        scale = float(raw)
    except ValueError:
        scale = -1.0
    if not 0 <= scale < float("inf"):
        raise LoomError(f"{TIME_SCALE_ENV}={raw!r}: expected a number of 0 or more (1 is real time)")
    return scale


@dataclass(frozen=True)
class Step:
    """One step of a script; `line` is where it starts in the file (for error messages)."""

    line: int
    action: str
    after: float = 0.0
    path: str = ""
    content: str = ""
    old: str = ""
    new: str = ""
    message: str = ""
    repeat: int = 1
    every: float = 0.0
    code: int = 0


def load_script(path: Path | str, shown: str | None = None) -> list[Step]:
    """Read and validate a script file; raises ConfigError (`file:line: key: problem`)."""
    shown = shown or str(path)
    if not Path(path).exists():
        raise LoomError(f"{shown}: no such script file")
    # The one reader of config-like files: regular files of bounded size only (not /dev/zero).
    return parse_script(read_text(Path(path), shown), shown)


def parse_script(text: str, shown: str) -> list[Step]:
    """Validate script text; `shown` names the file in errors."""
    root = compose(text, shown)
    if root is None:
        raise ConfigError(shown, None, "the script is empty (expected a list of steps)")
    steps = [_parse_step(item) for item in root.as_list()]
    if not steps:
        raise root.error("expected at least one step")
    return steps


def _relative_path(value: Value) -> str:
    raw = value.as_str(non_empty=True)
    pure = PurePosixPath(raw)
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and pure.parts[0] == ".git"):
        raise value.error(f"must be a path inside the worktree, relative to it (got {raw!r})")
    return raw


def _parse_step(item: Value) -> Step:
    fields = item.as_mapping(known=_KNOWN)
    actions = [name for name in ACTIONS if name in fields]
    if len(actions) != 1:
        found = ", ".join(actions) or "none"
        raise item.error(f"each step needs exactly one of {', '.join(ACTIONS)} (found {found})")
    action = actions[0]
    after_value = fields.get("after")
    after = after_value.as_number(maximum=MAX_WAIT_S) if after_value else 0.0
    if after < 0 and after_value is not None:
        raise after_value.error("must not be negative")
    line = item.line
    allowed_extra = {"write": {"content"}, "append": {"content"}, "log": {"repeat", "every"}}
    for extra in ("content", "repeat", "every"):
        if extra in fields and extra not in allowed_extra.get(action, set()):
            raise fields.key(extra).error(f"not used by a {action} step")
    value = fields[action]
    if action in ("write", "append"):
        content = fields.get("content")
        return Step(line, action, after, path=_relative_path(value),
                    content=content.as_str() if content else "")
    if action == "delete":
        return Step(line, action, after, path=_relative_path(value))
    if action == "replace":
        spec: Fields = value.as_mapping(known=("path", "old", "new"), required=("path", "old", "new"))
        old = spec["old"].as_str(non_empty=True)
        return Step(line, action, after, path=_relative_path(spec["path"]), old=old,
                    new=spec["new"].as_str())
    if action == "commit":
        return Step(line, action, after, message=value.as_str(non_empty=True))
    if action == "exit":
        return Step(line, action, after, code=value.as_int(minimum=0, maximum=255))
    repeat = fields.get("repeat")
    every = fields.get("every")
    interval = every.as_number(maximum=MAX_WAIT_S) if every else 0.0
    if every is not None and interval < 0:
        raise every.error("must not be negative")
    times = repeat.as_int(minimum=1, maximum=MAX_REPEAT) if repeat else 1
    return Step(line, "log", after, message=value.as_str(), repeat=times, every=interval)


class ScriptFailed(LoomError):
    """A step could not be carried out (exit code 1)."""

    exit_code = 1


def _inside(root: Path, relative: str, shown: str, step: Step) -> Path:
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise ScriptFailed(f"{shown}:{step.line}: {relative} leads outside the worktree")
    return target


def _git(root: Path, *args: str) -> GitResult:
    return Git(root).run(*args)


def _git_commit(root: Path, message: str) -> str:
    """Commit everything, as a developer would; a fallback identity where none is configured."""
    identity = Git(root).fallback_identity("loomtui script agent", "script-agent@loomtui.invalid")
    _git(root, "add", "-A")
    if not _git(root, "status", "--porcelain").out:
        return "nothing to commit"
    done = _git(root, *identity, "commit", "-q", "-m", message)
    if done.status != 0:
        raise ScriptFailed(f"git commit failed: {(done.err or done.out).strip()}")
    return _git(root, "rev-parse", "--short", "HEAD").out.strip()


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_script(steps: list[Step], root: Path, shown: str, *, scale: float | None = None) -> int:
    """Carry out the steps in `root`; returns the exit code. Raises ScriptFailed on a bad step.

    Every wait is multiplied by `scale` (default: `time_scale()`, from the environment)."""
    root = root.resolve()
    scale = time_scale() if scale is None else scale
    total = len(steps)
    for number, step in enumerate(steps, start=1):
        if step.after and scale:
            time.sleep(step.after * scale)
        where = f"step {number}/{total}"
        if step.action == "log":
            start = time.monotonic()
            for n in range(1, step.repeat + 1):
                # Paced against the start time, so the rate holds however long a write takes.
                delay = start + (n - 1) * step.every * scale - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                _say(step.message.replace("{n}", str(n)))
            continue
        if step.action == "exit":
            _say(f"[script] exit {step.code}")
            return step.code
        if step.action == "commit":
            _say(f"[script] commit {step.message} ({_git_commit(root, step.message)})")
            continue
        target = _inside(root, step.path, shown, step)
        try:
            _edit(target, step, f"{shown}:{step.line}: {where}")
        except (OSError, UnicodeDecodeError) as exc:  # a directory, a file where a directory goes, binary text
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise ScriptFailed(f"{shown}:{step.line}: {where}: {step.action}: {step.path}: {why}") from None
        _say(f"[script] {step.action} {step.path}")
    return 0


def _edit(target: Path, step: Step, where: str) -> None:
    """One file step (write, append, delete, replace) on `target`; `where` begins its errors."""
    if step.action in ("write", "append"):
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a" if step.action == "append" else "w", encoding="utf-8") as handle:
            handle.write(step.content)
    elif step.action == "delete":
        if not target.exists():
            raise ScriptFailed(f"{where}: delete: {step.path} does not exist")
        target.unlink()
    elif step.action == "replace":
        text = target.read_text(encoding="utf-8")
        if step.old not in text:
            raise ScriptFailed(f"{where}: replace: {step.old!r} not found in {step.path}")
        target.write_text(text.replace(step.old, step.new, 1), encoding="utf-8")


def main(script: str, *, check_only: bool = False) -> int:
    """`loomtui script-agent SCRIPT`: validate, then replay in the current directory."""
    steps = load_script(script)
    scale = time_scale()
    if check_only:
        print(f"OK: {script}: {len(steps)} steps")
        return 0
    return run_script(steps, Path(os.getcwd()), script, scale=scale)
