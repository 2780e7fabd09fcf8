"""Runtimes: turning a `.loom/loom.yaml` runtime into the exact command a sandbox runs.

A task's text is substituted as one whole argument (`{task}`), never through a
shell. The rendered command is fixed when the sandbox is created and kept in the
store, so a later config edit does not change what an existing sandbox runs.

Each vendor CLI gets the environment variables its vendor documents for
credentials, endpoints and providers (`VENDOR_ENV`, by program name, so a runtime
of your own that runs `claude` gets them too); `credential_status` says which of
them a runtime needs and which are missing (`loomtui doctor`).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from loomtui.config import DEFAULT_OFFLINE_TIMEOUT, LoomConfig, RuntimeConfig
from loomtui.errors import LoomError
from loomtui.yamlcheck import closest

ENV_ALLOW_LIST: Final = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "COLORTERM", "TZ",
    "NO_COLOR", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
)
"""Variables every agent gets (when set); a runtime adds the ones its config names."""
ENV_ALLOW_PREFIXES: Final = ("LC_",)

NETWORK_ENV: Final = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
)
"""Proxies and CA bundles: a runtime with the network gets these (when set)."""

# Per program: where it keeps its login, settings and caches. Under isolation each
# that exists is the sandbox's own (`runtime_state`), the only writable paths outside
# the worktree. `$NAME` is the path an environment variable names (when it is set).
STATE_PATHS: Final[dict[str, tuple[str, ...]]] = {
    "claude": ("~/.claude", "~/.claude.json", "~/.config/claude", "~/.cache/claude", "$CLAUDE_CONFIG_DIR"),
    "codex": ("~/.codex", "$CODEX_HOME"),
    "aider": ("~/.aider", "~/.cache/aider"),
}


@dataclass(frozen=True)
class StateFolder:
    """What a sandbox's own copy of a runtime's state folder takes from the user's (`runtime_state`)."""

    obeyed: tuple[str, ...]
    """Read-only: what the same CLI obeys outside any sandbox (settings, instructions, commands, skills)."""
    logins: tuple[str, ...] = ()
    """The login: a copy kept in step with the user's (`login_copy`: a refresh goes back to the user)."""
    copied: tuple[str, ...] = ()
    """Copied once when the sandbox first runs, then the sandbox's own to change."""
    instead: str = ""
    """The variable that, set, names the folder the CLI uses in its place (then this one is not made)."""
    afresh: tuple[str, ...] = ()
    """Folders the CLI obeys and also writes itself: a copy of the user's made anew at each start, so
    what the agent leaves there is gone by its next run. Codex installs its system skills into
    `skills/.system` as it starts (removing the old first); read-only, it logged "failed to install
    system skills ... Read-only file system" and ran without them."""


_CLAUDE_STATE: Final = StateFolder(
    obeyed=("settings.json", "settings.local.json", "CLAUDE.md", "commands", "agents", "hooks", "plugins",
            "skills", "output-styles", "rules"),
    logins=(".credentials.json",))
_CODEX_STATE: Final = StateFolder(
    obeyed=("config.toml", "managed_config.toml", "AGENTS.md", "AGENTS.override.md", "hooks.json", "prompts",
            "rules"),
    logins=("auth.json",), afresh=("skills",))
STATE_FOLDERS: Final[dict[str, StateFolder]] = {
    "~/.claude": replace(_CLAUDE_STATE, instead="CLAUDE_CONFIG_DIR"),
    # Claude Code keeps its global config (~/.claude.json otherwise) in the folder $CLAUDE_CONFIG_DIR names.
    "$CLAUDE_CONFIG_DIR": StateFolder(_CLAUDE_STATE.obeyed, _CLAUDE_STATE.logins, copied=(".claude.json",)),
    "~/.codex": replace(_CODEX_STATE, instead="CODEX_HOME"), "$CODEX_HOME": _CODEX_STATE,
    "~/.aider": StateFolder(obeyed=("oauth-keys.env",)),
}
"""Per state folder, what comes from the user's own into the sandbox's (see `STATE_PATHS`); the rest of
a folder starts empty, and a state path that is a file (`~/.claude.json`) starts as a copy. A folder the
user has not got yet is made, empty, as the CLI makes it on its first run: under bubblewrap the home is
read-only, and Claude Code, unable to make `~/.claude`, failed every Bash call."""


@dataclass(frozen=True)
class VendorEnv:
    """The environment a vendor documents for its CLI: what to pass, and what counts as credentials."""

    names: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    switched: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(switch, names): names (or prefixes, ending in `_`) passed only when the switch variable is
    set, so a cloud's credentials reach the agent only when it is told to use that cloud."""
    credentials: tuple[tuple[str, ...], ...] = ()
    """Alternatives; one is enough, and each needs all of its names set (non-empty)."""
    logins: tuple[str, ...] = ()
    """Files a stored login leaves (`claude /login`, `codex login`): credentials without variables."""
    note: str = ""
    defaults: tuple[tuple[str, str], ...] = ()
    """(name, value) set for the agent when the environment does not set the name itself."""


# From the vendors' own documentation: Claude Code's "Environment variables" and
# "Bedrock, Vertex AI and proxies" pages; Codex's "Environment variables" and
# config (`OPENAI_BASE_URL`, `CODEX_HOME`, `CODEX_API_KEY`); Aider's "API keys" and
# ".env" pages (every option is also `AIDER_<OPTION>`).
VENDOR_ENV: Final[dict[str, VendorEnv]] = {
    "claude": VendorEnv(
        names=("CLAUDE_CONFIG_DIR", "MCP_CONNECT_TIMEOUT_MS", "DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY",
               "DISABLE_ERROR_REPORTING",
               "DISABLE_NON_ESSENTIAL_MODEL_CALLS", "MAX_THINKING_TOKENS", "API_TIMEOUT_MS",
               "BASH_DEFAULT_TIMEOUT_MS", "BASH_MAX_TIMEOUT_MS", "MCP_TIMEOUT", "MCP_TOOL_TIMEOUT"),
        prefixes=("ANTHROPIC_", "CLAUDE_CODE_"),
        switched=(("CLAUDE_CODE_USE_BEDROCK", ("AWS_",)),
                  ("CLAUDE_CODE_USE_VERTEX", ("CLOUD_ML_REGION", "VERTEX_REGION_", "GOOGLE_APPLICATION_CREDENTIALS",
                                              "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CONFIG"))),
        credentials=(("ANTHROPIC_API_KEY",), ("ANTHROPIC_AUTH_TOKEN",), ("CLAUDE_CODE_OAUTH_TOKEN",),
                     ("CLAUDE_CODE_USE_BEDROCK",),
                     ("CLAUDE_CODE_USE_VERTEX", "CLOUD_ML_REGION", "ANTHROPIC_VERTEX_PROJECT_ID"),
                     ("CLAUDE_CODE_USE_FOUNDRY",)),
        logins=("$CLAUDE_CONFIG_DIR/.credentials.json", "~/.claude/.credentials.json"),
        note="Bedrock also needs AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_BEARER_TOKEN_BEDROCK "
             "or ~/.aws)",
        # Under -p Claude Code waits MCP_CONNECT_TIMEOUT_MS (5 s by default) for even an alwaysLoad
        # MCP server, then goes on without it: loomtui's permission tool is then "not found" and
        # every call Claude Code would ask about fails. The server (a Python process importing the
        # MCP SDK) can take longer than that on a busy machine.
        defaults=(("MCP_CONNECT_TIMEOUT_MS", "60000"),),
    ),
    # loomtui's own script agent (the `script` runtime): how fast it replays its waits.
    "loomtui": VendorEnv(names=("LOOMTUI_SCRIPT_TIME_SCALE",)),
    "codex": VendorEnv(
        names=("AZURE_OPENAI_API_KEY",),
        prefixes=("OPENAI_", "CODEX_"),
        credentials=(("OPENAI_API_KEY",), ("CODEX_API_KEY",), ("CODEX_ACCESS_TOKEN",)),
        logins=("$CODEX_HOME/auth.json", "~/.codex/auth.json"),
        note="a provider of your own in config.toml reads the variable its env_key names: add it to env:",
    ),
    "aider": VendorEnv(
        names=("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY", "DEEPSEEK_API_KEY", "GROQ_API_KEY",
               "MISTRAL_API_KEY", "XAI_API_KEY", "COHERE_API_KEY", "OLLAMA_API_BASE", "AZURE_API_KEY",
               "AZURE_API_BASE", "AZURE_API_VERSION"),
        prefixes=("AIDER_", "OPENAI_"),
        credentials=(("OPENAI_API_KEY",), ("ANTHROPIC_API_KEY",), ("AIDER_OPENAI_API_KEY",),
                     ("AIDER_ANTHROPIC_API_KEY",), ("GEMINI_API_KEY",), ("OPENROUTER_API_KEY",),
                     ("DEEPSEEK_API_KEY",), ("GROQ_API_KEY",), ("MISTRAL_API_KEY",), ("XAI_API_KEY",),
                     ("COHERE_API_KEY",), ("AZURE_API_KEY",), ("OLLAMA_API_BASE",)),
        logins=("~/.aider.conf.yml", "~/.env"),
        note="other providers' keys (and AWS_* for Bedrock): add their names to env:",
    ),
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
OUTPUT_CODEX_JSON: Final = "codex-json"
OUTPUT_SCRIPT_AGENT: Final = "script-agent"
FAULTS_IN_EVENTS: Final = {OUTPUT_CODEX_JSON: "codex-json"}
"""Structured output whose events say the model API's faults (execution.faults), by the signs read in them."""
OUTPUT_TERMINAL: Final = "terminal"
"""How an interactive agent's log is read (never a launch's output): its pane's terminal stream (terminal_text)."""


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
    env_prefixes: tuple[str, ...] = field(default=())
    env_switched: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    env_defaults: tuple[tuple[str, str], ...] = field(default=())
    faults: str = ""
    """The program whose plain output is read for model API faults (execution.faults), else empty."""
    offline_timeout: float = DEFAULT_OFFLINE_TIMEOUT

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> LaunchSpec:
        return cls(
            runtime=str(data["runtime"]), argv=tuple(data["argv"]), mode=str(data["mode"]),
            network=bool(data["network"]), env_names=tuple(data["env_names"]),
            state_paths=tuple(data["state_paths"]), output=str(data["output"]),
            assisted_by=str(data["assisted_by"]), env_prefixes=tuple(data.get("env_prefixes", ())),
            env_switched=tuple((str(switch), tuple(names)) for switch, names in data.get("env_switched", ())),
            env_defaults=tuple((str(name), str(value)) for name, value in data.get("env_defaults", ())),
            faults=str(data.get("faults", "")),
            offline_timeout=float(data.get("offline_timeout", DEFAULT_OFFLINE_TIMEOUT)),
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


def config_program(program: str, root: Path | None) -> str:
    """A program loom.yaml names by a relative path (`./scripts/agent.sh`) is the repository's: read from its
    `root`, wherever loomtui runs (from a subfolder, every command said "does not exist", doctor "not on
    PATH", the app's form "not installed"). A bare name is looked for on PATH, an absolute path is itself."""
    if root is None or os.sep not in program or os.path.isabs(program):
        return program
    return str(root / program)


def program_path(program: str, search_path: str | None) -> str | None:
    """Where `program` is found on `search_path` (PATH), or None."""
    return shutil.which(program, path=search_path)


def _program_problem(program: str, search_path: str | None) -> str:
    """Why `program` cannot be run (it was not found as an executable), said plainly."""
    if os.sep in program:
        path = Path(program)
        if path.is_dir():
            return f"{program!r} is a directory, not a program"
        if path.is_file():
            return f"{program!r} is not executable (chmod +x it)"
        if path.is_symlink():
            return f"{program!r} is a symlink to {os.readlink(path)!r}, which does not exist"
        return f"{program!r} does not exist"
    for folder in (search_path or "").split(os.pathsep):
        candidate = Path(folder or ".") / program
        if candidate.is_file():
            return f"{program!r} is on PATH at {candidate} but is not executable (chmod +x it)"
    return f"{program!r} is not on PATH"


MAX_LINKS: Final = 40


def shebang(path: Path | str) -> list[str] | None:
    """The `#!` line of a script, split (`["/usr/bin/env", "node"]`), or None for anything else."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return words or None


def interpreter(path: Path | str, search_path: str | None) -> tuple[str, str | None] | None:
    """The interpreter a `#!` script runs under: (as written, where it is or None); None if no `#!`.

    `#!/usr/bin/env node` (also `env -S node --flag`) names `node`, found on `search_path`.
    """
    words = shebang(path)
    if words is None:
        return None
    program = words[0]
    if Path(program).name == "env":
        names = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if not names:
            return (program, program if os.access(program, os.X_OK) else None)
        return (names[0], program_path(names[0], search_path))
    return (program, program if os.path.isfile(program) and os.access(program, os.X_OK) else None)


def program_files(program: str, search_path: str | None, *, _depth: int = 0) -> list[Path]:
    """The folders running `program` reads besides the system's own: its folder, each symlink's
    target folder (npm links `bin/claude` into `lib/node_modules/...`), the package it lives in
    (the enclosing `node_modules`, an install prefix above `bin/` such as a virtualenv), and the
    same for the interpreter of a `#!` script. Isolation binds back those a private /tmp hides."""
    found = program_path(program, search_path) if os.sep not in program else program
    if not found or not os.path.lexists(found):
        return []
    folders: list[Path] = []

    def add(folder: Path) -> None:
        folders.append(folder)
        if folder.name == "bin":
            folders.append(folder.parent)
        if "node_modules" in folder.parts:
            index = folder.parts.index("node_modules")
            folders.append(Path(*folder.parts[:index + 1]))

    current = Path(os.path.abspath(found))
    for _hop in range(MAX_LINKS):
        add(current.parent)
        if not current.is_symlink():
            break
        current = Path(os.path.normpath(current.parent / os.readlink(current)))
    resolved = Path(found).resolve()
    add(resolved.parent)
    runs_under = interpreter(resolved, search_path)
    if runs_under is not None and runs_under[1] and _depth < 3:
        folders += program_files(runs_under[1], search_path, _depth=_depth + 1)
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def _options(argv: Sequence[str]) -> list[str]:
    """An argv's words up to `--` (after it, the task: one saying `--json` is no option), an option written
    `--name=value` as its two words (as the CLIs take it)."""
    words = list(argv)
    options = words[: words.index("--")] if "--" in words else words
    return [part for word in options for part in (word.split("=", 1) if word.startswith("--") else (word,))]


AIDER_COMMAND_MARKS: Final = ("/", "!")
"""What makes Aider run a message as its own command (`/run`, `/git`; `!` a shell one) rather than send it."""


def _as_the_program_reads_it(program: str, values: Mapping[str, str]) -> Mapping[str, str]:
    """The placeholder values, with the task as `program` takes it as a message: a task starting "/api/refunds
    returns a 500" was an "Invalid command" to Aider (`!…` would have been run), the model never asked."""
    task = values.get("task", "")
    if program == "aider" and task.startswith(AIDER_COMMAND_MARKS):
        return {**values, "task": f" {task}"}  # a leading space: no longer a command, the same words
    return values


def prepare_launch(runtime: RuntimeConfig, values: Mapping[str, str],
                   search_path: str | None = None, root: Path | None = None) -> LaunchSpec:
    """Render a runtime's argv for one sandbox and resolve its program on PATH (one the config names by a
    relative path, from the repository's `root`: `config_program`).

    Raises a one-line LoomError when the program is not installed, is not
    executable, or is a `#!` script whose interpreter is missing.
    """
    program = Path(runtime.render_argv(values)[0]).name
    argv = list(runtime.render_argv(_as_the_program_reads_it(program, values)))
    if argv and runtime.argv and argv[0] == runtime.argv[0]:  # named in the config, not given with the task
        argv[0] = config_program(argv[0], root)
    search = search_path if search_path is not None else os.environ.get("PATH")
    if argv[0] == "loomtui":
        # The script runtime runs loomtui itself: use this very installation,
        # whether or not its entry point is on PATH.
        argv[:1] = [sys.executable, "-m", "loomtui"]
    else:
        found = program_path(argv[0], search) if argv[0] else None
        fix = ("give a program that exists" if runtime.argv[0] != argv[0] else
               f"install it, or set runtimes.{runtime.name}.argv in .loom/loom.yaml")
        if found is None:
            raise LoomError(f"runtime {runtime.name!r}: {_program_problem(argv[0], search)} ({fix})")
        runs_under = interpreter(Path(found).resolve(), search)
        if runs_under is not None and runs_under[1] is None:
            raise LoomError(f"runtime {runtime.name!r}: {found} runs under {runs_under[0]!r}, which is not "
                            f"installed ({'not on PATH' if os.sep not in runs_under[0] else 'no such program'})")
        # The agent runs in its worktree: `../scripts/agent.sh`, checked from here, would be looked for there.
        argv[0] = os.path.abspath(found)
    if program == "claude" and "stream-json" in _options(argv):
        output = OUTPUT_CLAUDE_STREAM
    elif program == "codex" and "--json" in _options(argv):
        output = OUTPUT_CODEX_JSON
    elif program == "loomtui" and "script-agent" in argv:
        output = OUTPUT_SCRIPT_AGENT
    else:
        output = OUTPUT_PLAIN
    vendor = VENDOR_ENV.get(program, VendorEnv())
    names = [*vendor.names, *(n for alternative in vendor.credentials for n in alternative),
             *(NETWORK_ENV if runtime.network else ()), *runtime.env]
    return LaunchSpec(
        runtime=runtime.name,
        argv=tuple(argv),
        mode=runtime.mode,
        network=runtime.network,
        env_names=tuple(dict.fromkeys(names)),
        state_paths=STATE_PATHS.get(program, ()),
        output=output,
        assisted_by=PRODUCT_NAMES.get(program, program),
        env_prefixes=vendor.prefixes,
        env_switched=vendor.switched,
        env_defaults=vendor.defaults,
        faults=program if output == OUTPUT_PLAIN else FAULTS_IN_EVENTS.get(output, ""),
        offline_timeout=runtime.offline_timeout,
    )


def runtime_installed(runtime: RuntimeConfig, root: Path | None = None) -> bool:
    """Whether a runtime's program is on PATH here, or in the repository at `root` (a runtime whose program
    comes with the task, as `command`'s does, or that loomtui runs itself, counts as installed)."""
    program = runtime.argv[0] if runtime.argv else ""
    if not program or "{" in program or runtime.builtin and runtime.name == "script":
        return True
    program = config_program(program, root)
    return shutil.which(program) is not None or Path(program).is_file()


def agent_environment(spec: LaunchSpec, source: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The reduced environment an agent runs with: the allow-list, the runtime's names, `extra`."""
    wanted = set(ENV_ALLOW_LIST) | set(spec.env_names)
    prefixes = ENV_ALLOW_PREFIXES + spec.env_prefixes
    for switch, names in spec.env_switched:
        if source.get(switch):
            wanted.update(n for n in names if not n.endswith("_"))
            prefixes += tuple(n for n in names if n.endswith("_"))
    env = {
        name: value for name, value in source.items()
        if name in wanted or name.startswith(prefixes)
    }
    env.setdefault("PATH", os.defpath)
    for name, value in spec.env_defaults:
        env.setdefault(name, value)
    env.update(extra)
    return env


def expand_path(raw: str, env: Mapping[str, str]) -> Path | None:
    """`~/x` against $HOME, `$NAME/x` against the variable; None when what it needs is not set."""
    if raw.startswith("~/"):
        home = env.get("HOME")
        return Path(home) / raw[2:] if home else None
    if raw.startswith("$"):
        name, _, rest = raw[1:].partition("/")
        value = env.get(name)
        if not value:
            return None
        return Path(value) / rest if rest else Path(value)
    return Path(raw)


@dataclass(frozen=True)
class CredentialStatus:
    """Whether a runtime's credentials are there, for `doctor`."""

    needs: tuple[tuple[str, ...], ...]  # alternatives, one is enough
    present: tuple[str, ...]  # the alternative that is complete (its names), or ()
    partial: tuple[tuple[str, tuple[str, ...]], ...]  # (started alternative's first name, its missing names)
    login: str | None  # a stored login file that stands in for variables
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.present) or self.login is not None or not self.needs

    def summary(self) -> str:
        if not self.needs:
            return "needs no credentials"
        if self.present:
            return f"credentials: {' + '.join(self.present)} set"
        if self.login:
            return f"credentials: the login stored in {self.login}"
        alternatives = " | ".join(" + ".join(a) for a in self.needs)
        text = f"no credentials: needs one of {alternatives} (none is set)"
        for first, missing in self.partial:
            text += f"; {first} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
        return text + (f"; {self.note}" if self.note else "")


def credential_status(program: str, env: Mapping[str, str], extra: Sequence[str] = ()) -> CredentialStatus:
    """Which credential variables `program` (a vendor CLI) needs, which are set, or a stored login."""
    vendor = VENDOR_ENV.get(Path(program).name)
    if vendor is None or not vendor.credentials:
        return CredentialStatus((), (), (), None)
    present: tuple[str, ...] = ()
    partial = []
    for alternative in vendor.credentials:
        have = [name for name in alternative if env.get(name)]
        if len(have) == len(alternative):
            present = alternative
            break
        if have:
            partial.append((have[0], tuple(n for n in alternative if not env.get(n))))
    login = None
    for raw in vendor.logins:
        path = expand_path(raw, env)
        if path is not None and path.is_file():
            login = str(path)
            break
    return CredentialStatus(vendor.credentials, present, tuple(partial), login, vendor.note)


def launch_credentials(launch: Any, env: Mapping[str, str]) -> CredentialStatus:
    """`credential_status` of the program a sandbox's recorded launch (`data["launch"]`) runs."""
    argv = (launch.get("argv") if isinstance(launch, dict) else None) or [""]
    return credential_status(str(argv[0]), env)


def given_env_names(spec: LaunchSpec, source: Mapping[str, str]) -> list[str]:
    """The names (never the values) of what an agent started from `source` is given beyond what every process
    has: its vendor's variables and its runtime's `env:` (keys, endpoints, a model), set and not empty."""
    return sorted(name for name in agent_environment(spec, source, {})
                  if source.get(name) and name not in ENV_ALLOW_LIST and not name.startswith(ENV_ALLOW_PREFIXES))


PERMISSION_PROMPT_ARGS: Final = ("--permission-prompt-tool", "mcp__loomtui__permission_prompt")


def unasked_permissions(runtime: RuntimeConfig) -> str:
    """Why a headless Claude Code runtime's permission prompts would never reach a person, or "".

    Under `-p` Claude Code runs no PermissionRequest hook: only the prompt tool of loomtui's MCP
    server puts its question to a lead. An `argv` replaces the built-in one whole, so one copied
    without those options refuses every such request unasked.
    """
    if runtime.mode != "headless" or Path(runtime.argv[0]).name != "claude":
        return ""
    if PERMISSION_PROMPT_ARGS[0] in _options(runtime.argv):
        return ""
    return (f"its argv has no {PERMISSION_PROMPT_ARGS[0]}: a permission Claude Code asks for is refused, "
            f"never put to a lead (the built-in argv has --mcp-config {{mcp_config}} "
            f"{' '.join(PERMISSION_PROMPT_ARGS)})")


def runtime_report(config: LoomConfig, search_path: str | None = None,
                   root: Path | None = None) -> list[dict[str, Any]]:
    """For doctor: each configured runtime, its program and whether it is on PATH (or in the repository at
    `root`, for one named by a relative path)."""
    rows = []
    for name in sorted(config.runtimes):
        runtime = config.runtimes[name]
        program = runtime.argv[0]
        if program == "loomtui":
            found: str | None = sys.executable + " -m loomtui"
        else:
            found = program_path(config_program(program, root),
                                 search_path if search_path is not None else os.environ.get("PATH"))
        status = credential_status(program, os.environ)
        rows.append({"runtime": name, "program": program, "found": found, "mode": runtime.mode,
                     "network": runtime.network, "unasked": unasked_permissions(runtime),
                     "credentials": {"ok": status.ok, "needs_one_of": [list(a) for a in status.needs],
                                     "present": list(status.present), "login": status.login,
                                     "missing": [list(m) for _first, m in status.partial],
                                     "summary": status.summary()}})
    return rows
