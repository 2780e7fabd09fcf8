"""Runtimes: turning a `.loom/loom.yaml` runtime into the exact command a sandbox runs.

A task's text is substituted as one whole argument (`{task}`), never through a
shell. The rendered command is fixed when the sandbox is created and kept in the
store, so a later config edit does not change what an existing sandbox runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from loomtui.config import LoomConfig, RuntimeConfig
from loomtui.errors import LoomError
from loomtui.yamlcheck import closest

ENV_ALLOW_LIST: Final = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "COLORTERM", "TZ",
    "NO_COLOR", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
)
"""Variables every agent gets (when set); a runtime adds the ones its config names."""
ENV_ALLOW_PREFIXES: Final = ("LC_",)

# Per program: where it keeps its login, settings and caches. Under isolation
# these (when they exist) are the only writable paths outside the worktree.
STATE_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "claude": ("~/.claude", "~/.claude.json", "~/.config/claude", "~/.cache/claude"),
    "codex": ("~/.codex",),
    "aider": ("~/.aider", "~/.cache/aider"),
}

# Per program: the name used in the `Assisted-by:` trailer of a merge.
PRODUCT_NAMES: Final[dict[str, str]] = {
    "claude": "Claude Code",
    "codex": "Codex CLI",
    "aider": "Aider",
    "loomtui": "loomtui script agent",
}

OUTPUT_PLAIN: Final = "plain"
OUTPUT_CLAUDE_STREAM: Final = "claude-stream-json"
OUTPUT_SCRIPT_AGENT: Final = "script-agent"


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one sandbox's agent, fixed at creation."""

    runtime: str
    argv: tuple[str, ...]
    mode: str
    network: bool
    env_names: tuple[str, ...]
    state_paths: tuple[str, ...]
    output: str
    assisted_by: str

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> LaunchSpec:
        return cls(
            runtime=str(data["runtime"]), argv=tuple(data["argv"]), mode=str(data["mode"]),
            network=bool(data["network"]), env_names=tuple(data["env_names"]),
            state_paths=tuple(data["state_paths"]), output=str(data["output"]),
            assisted_by=str(data["assisted_by"]),
        )


def find_runtime(config: LoomConfig, name: str) -> RuntimeConfig:
    """The runtime called `name`, or a one-line error listing the known ones."""
    runtime = config.runtimes.get(name)
    if runtime is None:
        known = ", ".join(sorted(config.runtimes))
        guess = closest(name, config.runtimes)
        hint = f"did you mean {guess!r}? " if guess else ""
        raise LoomError(f"unknown runtime {name!r} ({hint}known: {known}; define more in .loom/loom.yaml)")
    return runtime


def uses_placeholder(runtime: RuntimeConfig, name: str) -> bool:
    return any(f"{{{name}}}" in arg for arg in runtime.argv)


def program_path(program: str, search_path: str | None) -> str | None:
    """Where `program` is found on `search_path` (PATH), or None."""
    return shutil.which(program, path=search_path)


def prepare_launch(runtime: RuntimeConfig, values: Mapping[str, str],
                   search_path: str | None = None) -> LaunchSpec:
    """Render a runtime's argv for one sandbox and resolve its program on PATH.

    Raises a one-line LoomError when the program is not installed.
    """
    argv = list(runtime.render_argv(values))
    program = Path(argv[0]).name
    if argv[0] == "loomtui":
        # The script runtime runs loomtui itself: use this very installation,
        # whether or not its entry point is on PATH.
        argv[:1] = [sys.executable, "-m", "loomtui"]
    else:
        found = program_path(argv[0], search_path if search_path is not None else os.environ.get("PATH"))
        if found is None:
            raise LoomError(
                f"runtime {runtime.name!r}: {argv[0]!r} is not on PATH (install it, or set "
                f"runtimes.{runtime.name}.argv in .loom/loom.yaml)"
            )
        argv[0] = found
    if program == "claude" and "stream-json" in argv:
        output = OUTPUT_CLAUDE_STREAM
    elif program == "loomtui" and "script-agent" in argv:
        output = OUTPUT_SCRIPT_AGENT
    else:
        output = OUTPUT_PLAIN
    return LaunchSpec(
        runtime=runtime.name,
        argv=tuple(argv),
        mode=runtime.mode,
        network=runtime.network,
        env_names=runtime.env,
        state_paths=STATE_PATHS.get(program, ()),
        output=output,
        assisted_by=PRODUCT_NAMES.get(program, program),
    )


def agent_environment(spec: LaunchSpec, source: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The reduced environment an agent runs with: the allow-list, the runtime's names, `extra`."""
    wanted = set(ENV_ALLOW_LIST) | set(spec.env_names)
    env = {
        name: value for name, value in source.items()
        if name in wanted or name.startswith(ENV_ALLOW_PREFIXES)
    }
    env.setdefault("PATH", os.defpath)
    env.update(extra)
    return env


def state_paths(spec: LaunchSpec, home: str | None) -> list[Path]:
    """The runtime's existing config/cache paths, expanded against `home`."""
    if not home:
        return []
    found = []
    for raw in spec.state_paths:
        path = Path(home) / raw[2:] if raw.startswith("~/") else Path(raw)
        if path.exists():
            found.append(path)
    return found


def runtime_report(config: LoomConfig, search_path: str | None = None) -> list[dict[str, Any]]:
    """For doctor: each configured runtime, its program and whether it is on PATH."""
    rows = []
    for name in sorted(config.runtimes):
        runtime = config.runtimes[name]
        program = runtime.argv[0]
        if program == "loomtui":
            found: str | None = sys.executable + " -m loomtui"
        else:
            found = program_path(program, search_path if search_path is not None else os.environ.get("PATH"))
        rows.append({"runtime": name, "program": program, "found": found, "mode": runtime.mode,
                     "network": runtime.network})
    return rows
