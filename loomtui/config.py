"""`.loom/loom.yaml`: loomtui's per-repository config, loaded into frozen dataclasses.

Every key is optional; an absent file gives the defaults. Any problem with the
file is one ConfigError reading `.loom/loom.yaml:LINE: key: problem`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Final, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from yaml.nodes import ScalarNode

from loomtui.errors import ConfigError, quoted
from loomtui.globs import checked_globs
from loomtui.limit_values import cpu_problem, file_size_problem, memory_problem
from loomtui.runtime_config import (
    BUILTIN_RUNTIMES,
    DEFAULT_OFFLINE_TIMEOUT,
    ENV_NAME_RE,
    GENERIC_COMMAND,
    NAME_RE,
    NAME_RULE,
    PLACEHOLDERS,
    RuntimeConfig,
    RuntimeMode,
    builtin_runtimes,
    parse_runtimes,
)
from loomtui.yamlcheck import (
    Fields,
    Problems,
    Value,
    check_version,
    closest,
    compose,
    present,
    read_text,
    scalar_before_error,
)

__all__ = [
    "BUILTIN_RUNTIMES",
    "CONFIG_PATH",
    "DEFAULT_OFFLINE_TIMEOUT",
    "GENERIC_COMMAND",
    "MAX_LEASE_SECONDS",
    "PLACEHOLDERS",
    "ContextConfig",
    "ContextLayer",
    "EVAL_ITEMS",
    "EvalConfig",
    "GateFormat",
    "REPORT_PLACEHOLDER",
    "CoordinationConfig",
    "GateConfig",
    "GateKind",
    "LoomConfig",
    "RuntimeConfig",
    "RuntimeMode",
    "builtin_runtimes",
    "load_config",
    "parse_config",
    "worktrees_problem",
]

CONFIG_PATH: Final = ".loom/loom.yaml"
"""Where the config lives, relative to the repository root (also how errors show it)."""

MAX_LEASE_SECONDS: Final = 30 * 24 * 3600
"""The longest claim lease (30 days): `coordination.lease_seconds` and a claim's `--ttl`."""
MAX_BUDGET_TOKENS: Final = 2_000_000
"""A context slice's largest budget: more than any model reads at once."""

GateKind = Literal["deterministic", "behavioural"]
GateFormat = Literal["exit", "junit", "ruff-json", "mypy-json", "sarif"]
EVAL_ITEMS: Final = ("scope", "tests", "size", "contracts", "conventions", "task_fit")
"""Gate 2's items, in the order they are shown."""

GATE_KINDS: Final[tuple[GateKind, ...]] = get_args(GateKind)
GATE_FORMATS: Final[tuple[GateFormat, ...]] = get_args(GateFormat)
REPORT_PLACEHOLDER: Final = "{report}"
"""In a gate's `run`, the path of the report file the check writes (e.g. `--junitxml={report}`)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class GateConfig:
    """One gate: a command run (argv, no shell) in the sandbox after the agent stops."""

    name: str
    run: tuple[str, ...]
    timeout: float = 600.0
    kind: GateKind = "deterministic"
    env: tuple[tuple[str, str], ...] = ()
    """Variables set for this gate's command only (name, value)."""
    format: GateFormat = "exit"
    """How its results are read: JUnit XML (per test), ruff/mypy JSON or SARIF (per finding), or the exit code."""
    blocking: bool = True
    """A non-blocking check is run and shown, but never fails gate 1."""


@dataclass(frozen=True)
class EvalConfig:
    """`eval:`: how gate 1 runs its checks and how gate 2 scores a change."""

    parallel: int = 2
    """Checks of one sandbox run at once."""
    rerun_failed: bool = True
    """A failing test is run once more; a pass then is flagged flaky, not a failure."""
    weights: tuple[tuple[str, int], ...] = (
        ("scope", 20), ("tests", 20), ("size", 10), ("contracts", 20), ("conventions", 20), ("task_fit", 10))
    """Gate 2's items and the points each is worth (a warn earns half)."""
    pass_score: int = 70
    """Gate 2 passes at this score or above (0 to 100)."""
    size_budget: int = 400
    """Lines changed a task may take before gate 2's size item warns (twice this fails it)."""
    merged_on_review: bool = True
    """Each review also runs the merged gate with the other pending sandboxes (when there are any)."""

    def weight(self, item: str) -> int:
        return dict(self.weights).get(item, 0)


@dataclass(frozen=True)
class ContextLayer:
    """A layer of context from outside the repository (org-wide, business unit, ...).

    Exactly one of `repo` (a local git repository, read at the pinned `ref`) and
    `dir` (a directory) is set; paths are relative to the repository root or absolute.
    """

    name: str
    repo: str | None = None
    dir: str | None = None
    ref: str = "HEAD"
    sources: tuple[str, ...] = ("**/*.md",)


ADR_FOLDER_NAMES: Final = frozenset({"adr", "adrs", "decisions", "decision-records"})
"""What teams name the folder of their ADRs, in any case and at any depth (`docs/adr`, adr-tools' `doc/adr`,
MADR's and Log4brains' `docs/decisions`): a Markdown file there is an ADR to the knowledge layer, and `init`
names such folders as context sources."""


@dataclass(frozen=True)
class ContextConfig:
    """Which files feed an agent's context bundle, and how large it may be.

    `layers` are merged in the order given, then the repository's own `sources`
    (the most specific layer): a section with the same heading path in a later
    layer replaces the earlier one. `pinned` sections are in every slice.
    """

    sources: tuple[str, ...] = ("AGENTS.md", "CLAUDE.md", "docs/adr/*.md", "docs/conventions/*.md")
    budget_tokens: int = 8000
    pinned: tuple[str, ...] = ()
    layers: tuple[ContextLayer, ...] = ()


@dataclass(frozen=True)
class CoordinationConfig:
    """How claims are matched and how far conflicts look along dependencies."""

    dependency_hops: int = 1
    lease_seconds: int = 3600
    include: tuple[str, ...] = ("**/*.py",)
    exclude: tuple[str, ...] = ()
    confirm_seconds: float = 120.0
    """How long a claim an edit hook made waits for its tool call to happen (its PostToolUse)
    before it is released; a call waiting on a person keeps its claims until they decide."""


@dataclass(frozen=True)
class LimitsConfig:
    """`limits:`: what one sandbox's agent, and all it starts, may use at once (see
    `execution.cgroup_limits`; where control groups cannot be made, `doctor` says these do not hold)."""

    memory: str = "50%"
    """A size (`8G`, `512M`), a share of the machine's memory (`50%`), or `none`."""
    processes: int | None = 4096
    """Processes and threads (None: no limit)."""
    cpu: str = "none"
    """CPUs' time: a number of CPUs (`2`, `0.5`), a share of the machine's (`50%`), or `none`."""
    file_size: str = "100M"
    """The largest file loomtui saves from a sandbox's worktree or writes out for its gates (`none`):
    past it the file stays in the worktree, unsaved, and the sandbox says so (see `AgentTree`)."""


@dataclass(frozen=True)
class LoomConfig:
    """The whole config. `source` is the file path as shown in errors, None for defaults."""

    version: int = 1
    runtimes: dict[str, RuntimeConfig] = field(default_factory=builtin_runtimes)
    gates: tuple[GateConfig, ...] = ()
    eval: EvalConfig = EvalConfig()
    agent_trailers: tuple[str, ...] = ()
    """`observability.agent_trailers`: more commit trailers that mark a commit agent-made."""
    context: ContextConfig = ContextConfig()
    policy: str = ".loom/policy.yaml"
    policy_named: bool = False
    """Whether loom.yaml names the policy file (`policy:`): then it must exist, even at the usual path."""
    coordination: CoordinationConfig = CoordinationConfig()
    limits: LimitsConfig = LimitsConfig()
    theme: str = "loom-dark"
    worktrees: str | None = None
    """Where sandboxes' worktrees go (None: the user's data dir); see execution.sandboxes.worktrees_root."""
    store: str = "sqlite"
    """The state store: `sqlite` (a file in the repository's git dir) or a `postgresql://` URL."""
    source: str | None = None


def load_config(root: Path) -> LoomConfig:
    """Read `root/.loom/loom.yaml`; defaults if it does not exist. Raises ConfigError."""
    shown = CONFIG_PATH
    if not present(root / CONFIG_PATH):
        return LoomConfig()
    text = read_text(root / CONFIG_PATH, shown)
    return _parse_config_once(text, shown)


def configured_store(root: Path) -> str:
    """`store:` of `root/.loom/loom.yaml`, read alone when a mistake elsewhere in the file (`gates:
    "oops"`, or a line that is not YAML) fails the whole config: a typo must not take away `sandbox
    stop` and the other commands that need only the store. Where `store:` cannot be told for certain
    (said after the YAML error, or itself wrong), the file's ConfigError is raised."""
    try:
        return load_config(root).store
    except ConfigError as broken:
        try:  # the same guarded reading: a FIFO, an oversized file, an alias bomb are refused
            # A byte that is not UTF-8 (a comment saved as Latin-1) leaves `store:` as readable as the rest.
            text = read_text(root / CONFIG_PATH, CONFIG_PATH, errors="replace")
            try:
                document = compose(text, CONFIG_PATH)
                value = document.as_mapping().get("store") if document is not None else None
            except ConfigError:  # not YAML as a whole: `store:` as far as YAML reads it before its error
                value = scalar_before_error(text, CONFIG_PATH, "store")
            if value is not None and "\ufffd" in str(value):  # the bad byte is in `store:` itself
                raise broken
            return LoomConfig().store if value is None else _checked(value, store_problem)
        except ConfigError:
            raise broken from None


def parse_config(text: str, path: str) -> LoomConfig:
    """Validate config `text`; `path` names the file in errors and becomes `source`. Each section's
    problem is kept and the next one read: all are raised together (`ConfigErrors`, in line order)."""
    root = compose(text, path)
    if root is None:
        return LoomConfig(source=path)
    problems = Problems()
    top = problems.mapping(root, ("version", "runtimes", "gates", "eval", "observability", "context", "policy",
                                  "coordination", "limits", "theme", "worktrees", "store"))
    defaults = LoomConfig()
    problems.optional(top, "version", check_version, None)
    runtimes = builtin_runtimes()
    named: dict[str, RuntimeConfig] = problems.optional(top, "runtimes", parse_runtimes, {})
    runtimes.update(named)
    policy = top.get("policy")
    config = LoomConfig(
        runtimes=runtimes,
        gates=problems.optional(top, "gates", lambda section: _parse_gates(section, problems), ()),
        eval=problems.optional(top, "eval", lambda section: _parse_eval(section, problems), defaults.eval),
        agent_trailers=problems.optional(top, "observability", _parse_observability, ()),
        context=problems.optional(top, "context", lambda section: _parse_context(section, problems), defaults.context),
        policy=problems.optional(top, "policy", _parse_policy, defaults.policy),
        policy_named=policy is not None,
        coordination=problems.optional(top, "coordination", lambda section: _parse_coordination(section, problems),
                                       defaults.coordination),
        limits=problems.optional(top, "limits", lambda section: _parse_limits(section, problems), defaults.limits),
        theme=problems.optional(top, "theme", lambda value: value.as_str(non_empty=True), defaults.theme),
        worktrees=problems.optional(top, "worktrees", lambda value: _checked(value, worktrees_problem), None),
        store=problems.optional(top, "store", lambda value: _checked(value, store_problem), defaults.store),
        source=path,
    )
    problems.raise_any()
    return config


# The same text gives the same (immutable) config: a process that loads it several times (the app
# at start: its theme, its store, its settings) parses it once.
_parse_config_once = functools.lru_cache(maxsize=4)(parse_config)


def _parse_gates(section: Value, problems: Problems) -> tuple[GateConfig, ...]:
    """Each gate, every field's problem kept (`config check` lists them all; a gate with one is left out)."""
    gates: list[GateConfig] = []
    first_line: dict[str, int] = {}
    items: list[Value] = problems.read(section.as_list, [])
    for item in items:
        before = len(problems.errors)
        fields = problems.mapping(item, ("name", "run", "timeout", "kind", "env", "format", "blocking"),
                                  required=("name", "run"))
        name = problems.optional(fields, "name", lambda v: _gate_name(v, first_line), "")
        no_run: tuple[str, ...] = ("",)
        run = problems.optional(fields, "run", _gate_run, no_run)
        exit_code: GateFormat = "exit"
        form = problems.optional(fields, "format", lambda v: v.as_choice(GATE_FORMATS), exit_code)
        if form == "junit" and "run" in fields and not any(REPORT_PLACEHOLDER in arg for arg in run):
            problems.errors.append(fields["run"].error(f"a junit gate writes its report to {REPORT_PLACEHOLDER} "
                                                       "(e.g. \"--junitxml={report}\" for pytest)"))
        deterministic: GateKind = "deterministic"
        gate = GateConfig(
            name=name, run=run, format=form,
            timeout=problems.optional(fields, "timeout", lambda v: v.as_number(positive=True), 600.0),
            kind=problems.optional(fields, "kind", lambda v: v.as_choice(GATE_KINDS), deterministic),
            env=problems.optional(fields, "env", _gate_env, ()),
            blocking=problems.optional(fields, "blocking", Value.as_bool, True),
        )
        if len(problems.errors) == before:
            gates.append(gate)
    return tuple(gates)


def _gate_name(value: Value, first_line: dict[str, int]) -> str:
    name = value.as_str(non_empty=True)
    if name in first_line:
        raise value.error(f"duplicate gate name {name!r} (first defined on line {first_line[name]})")
    first_line[name] = value.line
    return name


_GATE_PLACEHOLDER: Final = re.compile(r"\{([a-z_]+)\}")


def _gate_run(value: Value) -> tuple[str, ...]:
    run = value.as_str_list(non_empty=True)
    if not run[0].strip():
        raise value.error("the program (first item) must not be empty")
    for item in value.as_list():  # a typo of {report} reached the check as its literal text
        for match in _GATE_PLACEHOLDER.finditer(item.as_str()):
            if match.group(0) != REPORT_PLACEHOLDER and closest(match.group(1), ("report",)):
                raise item.error(f"unknown placeholder {match.group(0)} (did you mean {REPORT_PLACEHOLDER}? a gate "
                                 "has that one alone)")
    if sum(arg.count(REPORT_PLACEHOLDER) for arg in run) > 1:
        raise value.error(f"{REPORT_PLACEHOLDER} may appear once")
    return tuple(run)


_TRAILER_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


def trailer_name_problem(name: str) -> str | None:
    """Why `name` is no commit trailer's name (`Generated-by`), or None: the one check of loom.yaml's
    `observability.agent_trailers`, `--agent-trailer` and $LOOMTUI_AGENT_TRAILERS."""
    if _TRAILER_RE.fullmatch(name):
        return None
    return f"{quoted(name)} is not a trailer name (letters, digits and '-', " \
           "e.g. Generated-by)"


def _parse_observability(section: Value) -> tuple[str, ...]:
    fields = section.as_mapping(known=("agent_trailers",))
    names: list[str] = []
    for item in (fields["agent_trailers"].as_list() if "agent_trailers" in fields else []):
        name = item.as_str(non_empty=True)
        if problem := trailer_name_problem(name):
            raise item.error(problem)
        names.append(name)
    return tuple(names)


def _parse_eval(section: Value, problems: Problems) -> EvalConfig:
    """`eval:`, every field's problem kept (two on one line were said one at a time)."""
    fields = problems.mapping(section, ("parallel", "rerun_failed", "weights", "pass_score", "size_budget",
                                        "merged_on_review"))
    default = EvalConfig()
    return EvalConfig(
        parallel=problems.optional(fields, "parallel", _positive_int, default.parallel),
        rerun_failed=problems.optional(fields, "rerun_failed", Value.as_bool, default.rerun_failed),
        weights=problems.optional(fields, "weights", _eval_weights, default.weights),
        pass_score=problems.optional(fields, "pass_score", lambda v: v.as_int(minimum=0, maximum=100),
                                     default.pass_score),
        size_budget=problems.optional(fields, "size_budget", _positive_int, default.size_budget),
        merged_on_review=problems.optional(fields, "merged_on_review", Value.as_bool, default.merged_on_review),
    )


def _eval_weights(value: Value) -> tuple[tuple[str, int], ...]:
    """`eval.weights`: points per gate 2 item (those not named keep their default)."""
    defaults = dict(EvalConfig().weights)
    entries = value.as_mapping()
    given = {}
    for item, points in entries.items():
        if item not in EVAL_ITEMS:
            guess = closest(item, EVAL_ITEMS)
            hint = f" (did you mean {guess}?)" if guess else f" (items: {', '.join(EVAL_ITEMS)})"
            raise entries.key(item).error(f"unknown gate 2 item {item!r}{hint}")
        given[item] = points.as_int(minimum=0, maximum=100)
    weights = tuple((item, given.get(item, defaults[item])) for item in EVAL_ITEMS)
    if sum(points for _, points in weights) == 0:
        raise value.error("at least one item must weigh more than 0")
    return weights


def _gate_env(value: Value) -> tuple[tuple[str, str], ...]:
    entries = value.as_mapping()
    pairs: list[tuple[str, str]] = []
    for name, setting in entries.items():
        if not ENV_NAME_RE.fullmatch(name):
            raise entries.key(name).error(f"invalid environment variable name {name!r}")
        pairs.append((name, setting.as_str()))
    return tuple(pairs)


def _parse_context(section: Value, problems: Problems) -> ContextConfig:
    fields = problems.mapping(section, ("sources", "budget_tokens", "pinned", "layers"))
    default = ContextConfig()
    return ContextConfig(
        sources=problems.optional(fields, "sources", _path_globs, default.sources),
        budget_tokens=problems.optional(fields, "budget_tokens", _budget_tokens, default.budget_tokens),
        pinned=problems.optional(fields, "pinned", _globs, default.pinned),
        layers=problems.optional(fields, "layers", _context_layers, default.layers),
    )


def _context_layers(value: Value) -> tuple[ContextLayer, ...]:
    """`context.layers`: outside sources, least specific first; the repository's own come last."""
    layers: list[ContextLayer] = []
    first_line: dict[str, int] = {"repo": 0}
    for item in value.as_list():
        fields = item.as_mapping(known=("name", "repo", "dir", "ref", "sources"), required=("name",))
        name_value = fields["name"]
        name = name_value.as_str(non_empty=True)
        if not NAME_RE.fullmatch(name):
            raise name_value.error(f"invalid layer name ({NAME_RULE})")
        if name in first_line:
            where = f"first defined on line {first_line[name]}" if first_line[name] else "the repository's own layer"
            raise name_value.error(f"duplicate layer name {name!r} ({where})")
        first_line[name] = name_value.line
        repo, directory, ref = fields.get("repo"), fields.get("dir"), fields.get("ref")
        if (repo is None) == (directory is None):
            raise item.error("give exactly one of repo (a git repository at a pinned ref) and dir (a directory)")
        if ref is not None and repo is None:
            raise ref.error("ref applies only to a repo layer")
        layers.append(ContextLayer(
            name=name,
            repo=repo.as_str(non_empty=True) if repo else None,
            dir=directory.as_str(non_empty=True) if directory else None,
            ref=ref.as_str(non_empty=True) if ref else "HEAD",
            sources=_optional(fields, "sources", _path_globs, ("**/*.md",)),
        ))
    return tuple(layers)


def _parse_policy(value: Value) -> str:
    policy = value.as_str(non_empty=True)
    # The policy is versioned with the code, so it must live inside the repository.
    pure = PurePosixPath(policy)
    if pure.is_absolute() or ".." in pure.parts:
        raise value.error(
            f"must be a path inside the repository, relative to its root (got {policy!r})"
        )
    return policy


def _parse_limits(section: Value, problems: Problems) -> LimitsConfig:
    fields = problems.mapping(section, ("memory", "processes", "cpu", "file_size"))
    default = LimitsConfig()
    return LimitsConfig(
        memory=problems.optional(fields, "memory", _limit_text(memory_problem), default.memory),
        processes=problems.optional(fields, "processes", _processes, default.processes),
        cpu=problems.optional(fields, "cpu", _limit_text(cpu_problem), default.cpu),
        file_size=problems.optional(fields, "file_size", _limit_text(file_size_problem), default.file_size))


def _limit_text(problem_of: Callable[[str], str | None]) -> Callable[[Value], str]:
    """A reader of one `limits:` value as its text (`8G`, `2`, `50%`, `none`), checked by `problem_of`."""
    def read(value: Value) -> str:
        text = str(value.node.value) if isinstance(value.node, ScalarNode) else value.as_str()
        problem = problem_of(text)
        if problem is not None:
            raise value.error(f"{problem} (got {text!r})")
        return text
    return read


def _processes(value: Value) -> int | None:
    if isinstance(value.node, ScalarNode) and str(value.node.value).lower() == "none":
        return None
    # Fewer than 16 and the agent's own CLI cannot start; more than the kernel counts (PID_MAX_LIMIT) and its
    # control groups could not be made, every limit lost with them, memory too, while `config check` said OK.
    return value.as_int(minimum=16, maximum=4_194_304)


def _parse_coordination(section: Value, problems: Problems) -> CoordinationConfig:
    fields = problems.mapping(section, ("dependency_hops", "lease_seconds", "include", "exclude", "confirm_seconds"))
    default = CoordinationConfig()
    return CoordinationConfig(
        dependency_hops=problems.optional(fields, "dependency_hops", _dependency_hops, default.dependency_hops),
        lease_seconds=problems.optional(fields, "lease_seconds", _lease_seconds, default.lease_seconds),
        include=problems.optional(fields, "include", _path_globs, default.include),
        exclude=problems.optional(fields, "exclude", _path_globs, default.exclude),
        confirm_seconds=problems.optional(fields, "confirm_seconds", _confirm_seconds, default.confirm_seconds),
    )


def worktrees_problem(location: str) -> str | None:
    """Why `location` cannot hold sandboxes' worktrees, or None (also used for $LOOMTUI_WORKTREES).

    Claude Code refuses every write to a path with a `.git` component, whatever its
    hooks answer, so worktrees must live outside any git directory.
    """
    if "\0" in location:
        return "must not contain a NUL character"
    if ".git" in PurePosixPath(location).parts:
        return (f"must be outside any .git directory (got {location!r}): agents such as Claude Code "
                "refuse to write there")
    return None


def _checked(value: Value, problem_of: Callable[[str], str | None]) -> str:
    """A non-empty string that `problem_of` finds nothing wrong with (else an error at its line)."""
    text = value.as_str(non_empty=True)
    problem = problem_of(text)
    if problem:
        raise value.error(problem)
    return text


# A libpq keyword's value: quoted ('' or \' inside; "..." as people write it too; unclosed: the rest),
# or bare up to a blank, a backslash escaping one character.
_PASSWORD_KEYWORD: Final = re.compile(
    r"""(password\s*=\s*)('(?:[^'\\]|\\.|'')*'?|"(?:[^"\\]|\\.)*"?|(?:[^\s\\]|\\.?)+)""", re.IGNORECASE)


def without_secrets(location: str) -> str:
    """`location` as said back in an error: a password in it (`password=...`, and in `user:...@` whatever
    stands between the first `:` and the last `@`, blanks too) as `***`."""
    location = _PASSWORD_KEYWORD.sub(lambda m: f"{m[1]}***", location)
    # The user and password end at the last `@` (an unencoded one may be in the password) and begin after `//`.
    scheme, slashes, rest = location.partition("://") if "://" in location else ("", "", location)
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return location
    return f"{scheme}{slashes}{user}:***@{host}"


def store_problem(location: str) -> str | None:
    """Why `location` does not name a state store, or None; said after the `store` it is about."""
    if location == "sqlite":
        return None
    if not location.startswith(("postgresql://", "postgres://")):
        # Not repeated as given: a libpq `host=... password=secret` went to the terminal and CI logs.
        return f"must be `sqlite` or a postgresql:// URL, not {without_secrets(location)!r}"
    try:
        parts = urlsplit(location)
        has_password = bool(parts.password) or "password=" in parts.query
    except ValueError as exc:
        return f"not a URL ({exc})"
    if has_password:
        return ("a password in a URL here would be committed with the repository; give it in "
                "PGPASSWORD or ~/.pgpass, or the whole URL in $LOOMTUI_STORE")
    return None


def _globs(value: Value) -> tuple[str, ...]:
    return value.as_str_list(items_non_empty=True)


def _path_globs(value: Value) -> tuple[str, ...]:
    """Gitignore-style globs, each compiled once here so a bad one names its line."""
    return tuple(checked_globs(value, value.as_list()))


def _lease_seconds(value: Value) -> int:
    seconds = value.as_int(minimum=1)
    if seconds > MAX_LEASE_SECONDS:
        raise value.error(f"must be at most {MAX_LEASE_SECONDS} (30 days; got {seconds})")
    return seconds


def _confirm_seconds(value: Value) -> float:
    seconds = value.as_number(positive=True)
    if seconds > MAX_LEASE_SECONDS:
        raise value.error(f"must be at most {MAX_LEASE_SECONDS} (30 days; got {seconds:g})")
    return seconds


def _dependency_hops(value: Value) -> int:
    return value.as_int(minimum=0, maximum=5)


def _positive_int(value: Value) -> int:
    return value.as_int(minimum=1)


def _budget_tokens(value: Value) -> int:
    # A 26-digit budget passed `config check`: no model reads that much, and it is a typo.
    return value.as_int(minimum=1, maximum=MAX_BUDGET_TOKENS)


def _optional(fields: Fields, name: str, read: Callable[[Value], _T], default: _T) -> _T:
    value = fields.get(name)
    return default if value is None else read(value)
