"""The agent runtimes `.loom/loom.yaml` can name: how each is started (`RuntimeConfig`), the
built-in ones, and the parser of the file's `runtimes:` section (errors as `file:line: key: problem`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Final, Literal, get_args

from loomtui.errors import LoomError
from loomtui.yamlcheck import Value, closest

PLACEHOLDER_NAMES: Final = ("task", "context_file", "sandbox", "worktree", "script", "mcp_config")
PLACEHOLDERS: Final = frozenset(PLACEHOLDER_NAMES)
"""Names a runtime's argv may use as `{name}`; execution substitutes them per sandbox."""
PLACEHOLDERS_SAID: Final = ", ".join(f"{{{name}}}" for name in PLACEHOLDER_NAMES)
"""The placeholders as help and errors list them, in that order."""

RuntimeMode = Literal["headless", "interactive"]
RUNTIME_MODES: Final[tuple[RuntimeMode, ...]] = get_args(RuntimeMode)

# Only identifier-shaped `{name}` is a placeholder, so literal braces such as a
# JSON argument (`{"a": 1}`) pass through untouched.
_PLACEHOLDER_RE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")
"""A name loom.yaml gives a runtime or a context layer (it appears in paths and commands)."""
NAME_RULE: Final = "use lowercase letters, digits, '-' and '_', starting with a letter or digit"
ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

DEFAULT_OFFLINE_TIMEOUT: Final = 300.0
"""Codex waits for an unreachable model API without end; five minutes of only that is enough."""


@dataclass(frozen=True)
class RuntimeConfig:
    """How to start one agent runtime: argv with placeholders, and its isolation."""

    name: str
    argv: tuple[str, ...]
    mode: RuntimeMode = "headless"
    network: bool = False
    env: tuple[str, ...] = ()
    description: str | None = None
    builtin: bool = False
    offline_timeout: float = DEFAULT_OFFLINE_TIMEOUT
    """Seconds an agent may only wait for an unreachable model API before it is stopped."""

    def render_argv(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """argv with each `{placeholder}` replaced from `values`; no shell is involved (and `{task}` inside a
        shell's script is refused: `sh -c 'echo {task}'` ran a task's `$(...)`)."""
        refuse_task_in_a_shell_script(self.argv, f"runtime {self.name!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise LoomError(f"runtime {self.name!r}: no value for placeholder {{{name}}}")
            return values[name]

        return tuple(_PLACEHOLDER_RE.sub(substitute, arg) for arg in self.argv)


_SHELLS: Final = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh"})
_WRAPPERS: Final = frozenset({"env", "sudo", "doas", "nice", "ionice", "timeout", "nohup", "exec", "command", "setsid",
                              "stdbuf", "time", "chrt", "taskset", "unbuffer", "chronic"})
"""Programs that run the command after them: `env bash -c`, `timeout 5 sh -c` run a shell as `sh -c` does."""
_SHELL_OPTIONS_WITH_VALUE: Final = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})


def refuse_task_in_a_shell_script(argv: Sequence[str], what: str) -> None:
    """Raise (exit 2) when `{task}` is in the script a shell is given (`sh -c '... {task} ...'`): the task's text
    would be read as shell there (a quote in it breaks the command, a `$(...)` runs), not passed as it is."""
    index = 0
    while index < len(argv) and PurePath(argv[index]).name not in _SHELLS:
        word = argv[index]
        # Past the wrappers, their options and values, and assignments; any other program is no shell.
        if index and not (PurePath(word).name in _WRAPPERS or word.startswith("-") or "=" in word or word.isdigit()):
            return
        if not index and PurePath(word).name not in _WRAPPERS:
            return
        index += 1
    if index >= len(argv):
        return
    shell, asked, rest = PurePath(argv[index]).name, False, iter(argv[index + 1:])
    for word in rest:
        if word in _SHELL_OPTIONS_WITH_VALUE:
            next(rest, None)
        elif word == "--":
            script = next(rest, "") if asked else ""
            break
        elif word[:1] in "-+" and len(word) > 1:
            asked |= word[0] == "-" and not word.startswith("--") and "c" in word[1:]
            if not word.startswith("--") and word[-1] in "oO":  # `-euo pipefail`: its value
                next(rest, None)
        else:
            script = word if asked else ""
            break
    else:
        return
    if "{task}" in script:
        raise LoomError(f"{what}: {{task}} is inside the script {shell} -c runs, where its text would be read as "
                        f"shell; give it as an argument of its own ({shell} -c '... \"$1\" ...' {shell} {{task}})",
                        exit_code=2)


# The runtimes that exist without any config. A task's text is never passed
# through a shell, so there is deliberately no generic `bash -lc {task}` entry:
# the generic `command` runtime takes its argv per sandbox instead
# (`loomtui sandbox new --runtime command --task T -- PROGRAM ARG {task} ...`).
GENERIC_COMMAND: Final = "{command}"  # stands for the argv given when the sandbox is created

# The vendor CLIs talk to a model API, so they get the network; the credential and
# endpoint variables each vendor documents are passed by program (see
# execution.runtimes.VENDOR_ENV), so `env:` here is only for extra names.
BUILTIN_RUNTIMES: Final[tuple[RuntimeConfig, ...]] = (
    RuntimeConfig(
        name="claude",
        # Permission prompts go to loomtui's MCP server (`loomtui mcp`): under -p Claude Code
        # runs no PermissionRequest hook, so without it a lead's approval could never be asked.
        # EnterWorktree would make a checkout and branch of its own in the shared repository, past
        # every hook. The task comes last after `--`: one starting with "-" was read as options
        # (`-r the retry logic…` as --resume).
        argv=("claude", "-p", "--output-format", "stream-json", "--verbose",
              "--mcp-config", "{mcp_config}", "--permission-prompt-tool", "mcp__loomtui__permission_prompt",
              "--disallowedTools", "EnterWorktree", "--", "{task}"),
        network=True,
        description="Claude Code, headless",
        builtin=True,
    ),
    RuntimeConfig(
        name="codex",
        # No prompt can be answered in a sandbox: `exec` never asks. Codex's own
        # `workspace-write` sandbox makes every `.git` read-only (even one listed in its
        # writable_roots), so the agent could never commit and the git pre-commit hook,
        # the only check a runtime without editor hooks gets, would never run: loomtui's
        # bubblewrap is the sandbox instead. The worktree is a git repository, but its
        # check must not stop a run either. `--` keeps a task starting with "-" from
        # being read as an option. `--json`: its events are read (the tokens it used, the
        # model API's errors, each command it ran), as Claude Code's stream-json is.
        argv=("codex", "exec", "--json", "--sandbox", "danger-full-access", "--skip-git-repo-check",
              "--color", "never", "--", "{task}"),
        network=True,
        description="OpenAI Codex CLI, headless",
        builtin=True,
    ),
    RuntimeConfig(
        name="aider",
        # One message, then exit, never prompting: every question is answered yes, no
        # update check, analytics, release notes or model warnings (they open browsers).
        # Its commits go to the sandbox branch with the hooks run (--git-commit-verify);
        # its history files stay out of the worktree; the context is read-only input.
        argv=("aider", "--yes-always", "--no-check-update", "--no-analytics", "--no-show-release-notes",
              "--no-show-model-warnings", "--no-pretty", "--no-fancy-input", "--no-detect-urls",
              "--no-gitignore", "--git-commit-verify", "--input-history-file=/dev/null",
              "--chat-history-file=/dev/null", "--read={context_file}", "--message={task}"),
        network=True,
        description="Aider, one message then exit",
        builtin=True,
    ),
    RuntimeConfig(
        name="command",
        argv=(GENERIC_COMMAND,),
        network=False,
        description="Any program, its argv given per sandbox after `--` (placeholders allowed)",
        builtin=True,
    ),
    RuntimeConfig(
        name="script",
        argv=("loomtui", "script-agent", "{script}"),
        network=False,
        description="A scripted agent replaying a file of edits (demo and tests)",
        builtin=True,
    ),
)


def builtin_runtimes() -> dict[str, RuntimeConfig]:
    """A fresh name -> runtime dict of the built-ins."""
    return {runtime.name: runtime for runtime in BUILTIN_RUNTIMES}


def parse_runtimes(section: Value) -> dict[str, RuntimeConfig]:
    runtimes: dict[str, RuntimeConfig] = {}
    entries = section.as_mapping()
    for name, value in entries.items():
        if not NAME_RE.fullmatch(name):
            raise entries.key(name).error(f"invalid runtime name ({NAME_RULE})")
        runtimes[name] = _parse_runtime(name, value)
    return runtimes


def _parse_runtime(name: str, value: Value) -> RuntimeConfig:
    """A runtime of its own (argv given, every other setting from its default), or a built-in one
    with the settings given changed (no argv: `runtimes: {codex: {offline_timeout: 60}}`)."""
    builtin = builtin_runtimes().get(name)
    fields = value.as_mapping(
        known=("argv", "mode", "network", "env", "description", "offline_timeout"),
        required=() if builtin else ("argv",),
    )
    base = builtin if builtin is not None and "argv" not in fields else RuntimeConfig(name=name, argv=())
    mode, network, description, offline = (fields.get(key) for key in
                                           ("mode", "network", "description", "offline_timeout"))
    return replace(
        base,
        argv=_runtime_argv(fields["argv"]) if "argv" in fields else base.argv,
        mode=mode.as_choice(RUNTIME_MODES) if mode else base.mode,
        network=network.as_bool() if network else base.network,
        env=_parse_env(fields["env"]) if "env" in fields else base.env,
        description=description.as_str() if description else base.description,
        offline_timeout=offline.as_number(positive=True) if offline else base.offline_timeout,
    )


def _runtime_argv(argv_value: Value) -> tuple[str, ...]:
    argv_value.as_str_list(non_empty=True)
    argv: list[str] = []
    for item in argv_value.as_list():
        arg = item.as_str()
        for match in _PLACEHOLDER_RE.finditer(arg):
            if match.group(1) not in PLACEHOLDERS:
                guess = closest(match.group(1), PLACEHOLDERS)
                hint = f"did you mean {{{guess}}}? " if guess else ""
                allowed = PLACEHOLDERS_SAID
                raise item.error(
                    f"unknown placeholder {match.group(0)} ({hint}allowed: {allowed})"
                )
        argv.append(arg)
    if not argv[0].strip():
        raise argv_value.error("the program (first item) must not be empty")
    try:  # said with the file's line, not first at a sandbox's start
        refuse_task_in_a_shell_script(argv, "argv")
    except LoomError as exc:
        raise argv_value.error(str(exc).removeprefix("argv: ")) from None
    return tuple(argv)


def _parse_env(value: Value) -> tuple[str, ...]:
    names: list[str] = []
    for item in value.as_list():
        name = item.as_str()
        if not ENV_NAME_RE.fullmatch(name):
            raise item.error(f"invalid environment variable name {name!r}")
        names.append(name)
    return tuple(names)
