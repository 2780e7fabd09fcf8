"""Tests for .loom/loom.yaml loading (loomtui.config) and its validator (loomtui.yamlcheck)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loomtui.config import (
    BUILTIN_RUNTIMES,
    CONFIG_PATH,
    ContextConfig,
    CoordinationConfig,
    GateConfig,
    LoomConfig,
    RuntimeConfig,
    load_config,
    parse_config,
)
from loomtui.errors import ConfigError, LoomError
from loomtui.yamlcheck import compose

PATH = ".loom/loom.yaml"


def write_config(root: Path, text: str | bytes) -> Path:
    target = root / CONFIG_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        target.write_text(textwrap.dedent(text), encoding="utf-8")
    else:
        target.write_bytes(text)
    return target


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), PATH)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults -------------------------------------------------------------


def test_absent_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config == LoomConfig()
    assert config.source is None
    assert list(config.runtimes) == ["claude", "codex", "aider", "command", "script"]
    assert config.gates == ()
    assert config.context == ContextConfig(("AGENTS.md", "CLAUDE.md", "docs/adr/*.md", "docs/conventions/*.md"), 8000)
    assert config.policy == ".loom/policy.yaml"
    assert config.coordination == CoordinationConfig(1, 3600, ("**/*.py",), ())
    assert config.theme == "loom-dark"


def test_empty_and_comment_only_files_give_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, "# nothing yet\n")
    config = load_config(tmp_path)
    assert config.source == PATH
    assert config.runtimes == LoomConfig().runtimes
    assert parse_config("", PATH).theme == "loom-dark"


def test_null_sections_count_as_empty() -> None:
    # Sections whose contents are all commented out parse as null.
    config = parse_config("runtimes:\n  # claude: ...\ngates:\ncontext:\ncoordination:\n", PATH)
    assert config.runtimes == LoomConfig().runtimes
    assert config.gates == ()
    assert config.context == ContextConfig()


def test_builtin_runtimes() -> None:
    runtimes = LoomConfig().runtimes
    claude = runtimes["claude"]
    # The task last, after `--`: "-r the retry logic…" was read as --resume. No EnterWorktree: a checkout and
    # branch of its own in the shared repository, past every hook.
    assert claude.argv == ("claude", "-p", "--output-format", "stream-json", "--verbose",
                           "--mcp-config", "{mcp_config}", "--permission-prompt-tool", "mcp__loomtui__permission_prompt",
                           "--disallowedTools", "EnterWorktree", "--", "{task}")
    # The vendors' credential variables are passed by program (execution.runtimes.VENDOR_ENV).
    assert (claude.mode, claude.network, claude.env) == ("headless", True, ())
    codex, aider = runtimes["codex"], runtimes["aider"]
    assert codex.argv[:2] == ("codex", "exec") and codex.argv[-2:] == ("--", "{task}")
    assert {"--sandbox", "--skip-git-repo-check"} <= set(codex.argv)
    assert aider.argv[-1] == "--message={task}" and "--yes-always" in aider.argv
    assert {"--no-check-update", "--no-analytics", "--git-commit-verify"} <= set(aider.argv)
    assert all(runtimes[n].network for n in ("claude", "codex", "aider"))
    assert runtimes["script"].argv == ("loomtui", "script-agent", "{script}")
    assert runtimes["script"].network is False
    assert all(r.builtin for r in BUILTIN_RUNTIMES)
    # No built-in hands the task text to a shell.
    assert not any(r.argv[0] in ("sh", "bash") for r in BUILTIN_RUNTIMES)


def test_a_builtin_runtime_without_argv_is_tuned_not_replaced() -> None:
    config = parse_config("runtimes:\n  codex:\n    offline_timeout: 60\n    env: [MY_PROXY_TOKEN]\n", PATH)
    codex, builtin = config.runtimes["codex"], LoomConfig().runtimes["codex"]
    assert (codex.argv, codex.network, codex.mode) == (builtin.argv, True, "headless")
    assert (codex.offline_timeout, codex.env) == (60.0, ("MY_PROXY_TOKEN",))
    assert builtin.offline_timeout == 300.0


# --- a full valid file ----------------------------------------------------

FULL = """\
version: 1
runtimes:
  claude:
    argv: ["claude", "-p", "{task}", "--append-system-prompt-file", "{context_file}"]
    mode: interactive
    network: true
    env: [ANTHROPIC_API_KEY]
    description: "Claude, interactive"
  local-llm:
    argv: [my-agent, --cwd, "{worktree}", --json, '{"x": 1}', "{task}"]
gates:
  - name: tests
    run: ["python", "-m", "pytest", "-q"]
    timeout: 300
  - name: score
    run: [loomtui, score, "--baseline"]
    timeout: 12.5
    kind: behavioural
context:
  sources: ["AGENTS.md", "docs/adr/*.md"]
  budget_tokens: 4000
policy: config/policy.yaml
coordination:
  dependency_hops: 0
  lease_seconds: 60
  include: ["src/**/*.py"]
  exclude: ["src/generated/**"]
theme: loom-light
"""


def test_full_valid_file(tmp_path: Path) -> None:
    write_config(tmp_path, FULL)
    config = load_config(tmp_path)
    assert config.source == PATH
    assert config.runtimes["claude"] == RuntimeConfig(
        name="claude",
        argv=("claude", "-p", "{task}", "--append-system-prompt-file", "{context_file}"),
        mode="interactive",
        network=True,
        env=("ANTHROPIC_API_KEY",),
        description="Claude, interactive",
    )
    local = config.runtimes["local-llm"]
    assert local.argv[-2:] == ('{"x": 1}', "{task}")
    assert (local.mode, local.network, local.env, local.description) == (
        "headless", False, (), None,
    )
    assert config.gates == (
        GateConfig("tests", ("python", "-m", "pytest", "-q"), 300.0, "deterministic"),
        GateConfig("score", ("loomtui", "score", "--baseline"), 12.5, "behavioural"),
    )
    assert config.context == ContextConfig(("AGENTS.md", "docs/adr/*.md"), 4000)
    assert config.policy == "config/policy.yaml"
    assert config.coordination == CoordinationConfig(0, 60, ("src/**/*.py",), ("src/generated/**",))
    assert config.theme == "loom-light"


def test_builtins_merged_and_overridden() -> None:
    config = parse_config(
        "runtimes:\n  claude:\n    argv: [claude, '{task}']\n  mine:\n    argv: [mine]\n", PATH
    )
    assert list(config.runtimes) == ["claude", "codex", "aider", "command", "script", "mine"]
    # A file's runtime replaces the built-in wholly: nothing is inherited.
    assert config.runtimes["claude"] == RuntimeConfig(name="claude", argv=("claude", "{task}"))
    assert config.runtimes["codex"] is LoomConfig().runtimes["codex"]
    assert config.runtimes["mine"].argv == ("mine",)


def test_omitted_keys_take_defaults() -> None:
    config = parse_config("gates:\n  - name: lint\n    run: [ruff, check]\ncontext:\n  budget_tokens: 10\n", PATH)
    assert config.gates == (GateConfig("lint", ("ruff", "check"), 600.0, "deterministic"),)
    assert config.context.sources == ContextConfig().sources
    assert config.coordination == CoordinationConfig()


def test_render_argv_substitutes_without_a_shell() -> None:
    runtime = LoomConfig().runtimes["claude"]
    argv = runtime.render_argv({"task": "fix it; rm -rf /", "mcp_config": "mcp.json"})
    assert argv[-2:] == ("--", "fix it; rm -rf /")
    literal = RuntimeConfig(name="x", argv=("a", '{"k": 1}', "{script}"))
    assert literal.render_argv({"script": "s.yaml"}) == ("a", '{"k": 1}', "s.yaml")
    with pytest.raises(LoomError, match=r"no value for placeholder \{script\}"):
        literal.render_argv({})


# --- errors: exact file:line: key: prefixes ---------------------------------


def test_malformed_yaml_uses_problem_mark_line() -> None:
    message = error_of("theme: x\nruntimes:\n  claude: [a\n  codex: b\n")
    assert message.startswith(f"{PATH}:4: invalid YAML: ")


def test_malformed_yaml_unclosed_quote() -> None:
    # Its last line, not the line after it (the stream's end: a two-line file's error was said at line 3).
    assert error_of('theme: x\npolicy: "abc\n').startswith(f"{PATH}:2: invalid YAML: ")
    assert error_of("theme: x\nruntimes: [a\n") == (f"{PATH}:2: invalid YAML: expected ',' or ']', but got "
                                                   "'<stream end>' (while parsing a flow sequence on line 2)")


def test_several_documents_rejected() -> None:
    assert error_of("theme: a\n---\ntheme: b\n") == (
        f"{PATH}:2: invalid YAML: expected a single document in the stream, "
        "but found another document"
    )


def test_control_character_rejected_with_line() -> None:
    assert error_of("theme: a\npolicy: \x01\n").startswith(f"{PATH}:2: invalid YAML: unacceptable character")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert error_of("[" * 5000) == f"{PATH}:1: invalid YAML: nested more than 100 levels deep"
    # The level past the limit is named, on its own line (the top mapping is the first level); a document
    # as deep as the limit is read, and its own error named.
    assert error_of("a:\n  " + "[" * 99 + "\n  [oops") == f"{PATH}:3: invalid YAML: nested more than 100 levels deep"
    assert error_of("a: " + "[" * 99 + "]" * 99 + "\nb: [").startswith(f"{PATH}:2: invalid YAML")
    # Well formed, and 100 KB: libyaml's composer recursed per level on the C stack, and the process died
    # of SIGSEGV without a word (a crash here fails the test as its worker's).
    deep = f"{PATH}:2: invalid YAML: nested more than 100 levels deep"
    assert error_of("version: 1\nx: " + "[" * 50_000 + "]" * 50_000) == deep
    assert error_of("version: 1\nx: " + "{a: " * 20_000 + "1" + "}" * 20_000) == deep


def test_top_level_list() -> None:
    assert error_of("- theme\n- x\n") == f"{PATH}:1: top level: expected a mapping (got a list)"


def test_top_level_scalar() -> None:
    assert error_of("hello\n") == f"{PATH}:1: top level: expected a mapping (got 'hello')"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "theme: loom\nruntimes:\n  claude:\n    argv: [claude]\n    network: 'yes'\n",
            "5: runtimes.claude.network: expected true or false (got 'yes')",
        ),
        (
            "context:\n  budget_tokens: lots\n",
            "2: context.budget_tokens: expected an integer (got 'lots')",
        ),
        ("context:\n  budget_tokens: 1.5\n", "2: context.budget_tokens: expected an integer (got 1.5)"),
        ("context:\n  budget_tokens: true\n", "2: context.budget_tokens: expected an integer (got true)"),
        ("context:\n  sources: AGENTS.md\n", "2: context.sources: expected a list (got 'AGENTS.md')"),
        ("context:\n  sources: [AGENTS.md, 3]\n", "2: context.sources[1]: expected a string (got 3)"),
        ("theme: 12\n", "1: theme: expected a string (got 12)"),
        ("theme:\n", "1: theme: expected a string (got null)"),
        ("policy: [a]\n", "1: policy: expected a string (got a list)"),
        ("coordination: 5\n", "1: coordination: expected a mapping (got 5)"),
        ("gates: {tests: 1}\n", "1: gates: expected a list (got a mapping)"),
        ("gates:\n  - tests\n", "2: gates[0]: expected a mapping (got 'tests')"),
        ("runtimes: [claude]\n", "1: runtimes: expected a mapping (got a list)"),
        ("runtimes:\n  x:\n    argv: claude\n", "3: runtimes.x.argv: expected a list (got 'claude')"),
        ("gates:\n  - {name: t, run: [a], timeout: soon}\n", "2: gates[0].timeout: expected a number (got 'soon')"),
    ],
)
def test_wrong_types(text: str, expected: str) -> None:
    assert error_of(text) == f"{PATH}:{expected}"


def test_unknown_key_with_suggestion() -> None:
    text = "runtimes:\n  claude:\n    argz: [claude]\n"
    assert error_of(text) == f"{PATH}:3: runtimes.claude.argz: unknown key (did you mean 'argv'?)"


def test_every_fields_problem_in_a_section_is_said_not_only_the_first() -> None:
    """`eval: {parallel: -1, pass_score: 200}` named parallel; fixed, pass_score was found on the next run."""
    from loomtui.yamlcheck import ConfigErrors

    text = ("eval: {parallel: -1, pass_score: 200, weigths: {}}\nlimits: {processes: 3, cpu: lots}\n"
            "coordination:\n  lease_seconds: -1\n  dependency_hops: x\ncontext: {budget_tokens: -5, pinned: 3}\n")
    with pytest.raises(ConfigErrors) as info:
        parse_config(text, PATH)
    said = [str(problem) for problem in info.value.problems]
    assert [s.split(": ")[1] for s in said] == [
        "eval.weigths", "eval.parallel", "eval.pass_score", "limits.processes", "limits.cpu",
        "coordination.lease_seconds", "coordination.dependency_hops", "context.budget_tokens", "context.pinned"]
    assert said[0] == f"{PATH}:1: eval.weigths: unknown key (did you mean 'weights'?)"


def test_unknown_top_level_key() -> None:
    assert error_of("theme: x\nthemes: y\n") == f"{PATH}:2: themes: unknown key (did you mean 'theme'?)"
    assert error_of("zzz: 1\n") == f"{PATH}:1: zzz: unknown key"


def test_duplicate_key() -> None:
    text = """\
    runtimes:
      claude:
        argv: [claude]
        mode: headless
        network: true
        mode: interactive
    """
    assert error_of(text) == (
        f"{PATH}:6: runtimes.claude.mode: duplicate key (first defined on line 4)"
    )


def test_duplicate_top_level_key() -> None:
    assert error_of("theme: a\npolicy: p\ntheme: b\n") == (
        f"{PATH}:3: theme: duplicate key (first defined on line 1)"
    )


def test_bad_placeholder() -> None:
    text = "runtimes:\n  mine:\n    argv: [mine, --task, '{taks}']\n"
    assert error_of(text) == (
        f"{PATH}:3: runtimes.mine.argv[2]: unknown placeholder {{taks}} (did you mean {{task}}? "
        "allowed: {task}, {context_file}, {sandbox}, {worktree}, {script}, {mcp_config})"
    )
    assert error_of("runtimes:\n  m:\n    argv:\n      - m\n      - '{foo}'\n").startswith(
        f"{PATH}:5: runtimes.m.argv[1]: unknown placeholder {{foo}} (allowed: "
    )


def test_bad_mode() -> None:
    text = "\n".join(["version: 1", "", "runtimes:", "  claude:", "    argv: [claude]", "", "    mode: batch"])
    assert error_of(text) == (
        f"{PATH}:7: runtimes.claude.mode: must be one of headless, interactive (got 'batch')"
    )


def test_bad_gate_kind_suggests() -> None:
    assert error_of("gates:\n  - {name: t, run: [a], kind: behavioral}\n") == (
        f"{PATH}:2: gates[0].kind: must be one of deterministic, behavioural "
        "(got 'behavioral'; did you mean 'behavioural'?)"
    )


def test_duplicate_gate_name() -> None:
    text = """\
    gates:
      - name: tests
        run: [pytest]
      - name: lint
        run: [ruff]
      - name: tests
        run: [pytest, -x]
    """
    assert error_of(text) == (
        f"{PATH}:6: gates[2].name: duplicate gate name 'tests' (first defined on line 2)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 2\n", "1: version: unsupported version 2 (only 1 is supported)"),
        ("gates:\n  - run: [a]\n", "2: gates[0].name: required key missing"),
        ("gates:\n  - name: t\n", "2: gates[0].run: required key missing"),
        ("gates:\n  - {name: t, run: []}\n", "2: gates[0].run: must be a non-empty list"),
        ("gates:\n  - {name: t, run: [a], timeout: 0}\n", "2: gates[0].timeout: must be greater than 0 (got 0)"),
        ("gates:\n  - {name: t, run: [a], timeout: .inf}\n", "2: gates[0].timeout: must be a finite number (got .inf)"),
        ("gates:\n  - {name: '', run: [a]}\n", "2: gates[0].name: must not be empty"),
        # A typo of {report} reached the check as its literal text (a runtime's was refused); `${HOME}`, `{x}` pass.
        ("gates:\n  - {name: t, run: [sh, -c, 'echo ${HOME} {x}', '--out={reprot}']}\n",
         "2: gates[0].run[3]: unknown placeholder {reprot} (did you mean {report}?"),
        ("runtimes:\n  mine:\n    mode: headless\n", "3: runtimes.mine.argv: required key missing"),
        ("gates:\n  - {name: t, run: [a], env: {A B: x}}\n", "2: gates[0].env.A B: invalid environment variable name"),
        ("gates:\n  - {name: t, run: [a], env: {A: [x]}}\n", "2: gates[0].env.A: expected a string"),
        ("runtimes:\n  codex:\n    offline_timeout: 0\n", "3: runtimes.codex.offline_timeout: must be greater than 0"),
        ("runtimes:\n  x:\n    argv: ['', a]\n", "3: runtimes.x.argv: the program (first item) must not be empty"),
        ("runtimes:\n  x: {argv: [a], env: [A B]}\n", "2: runtimes.x.env[0]: invalid environment variable name 'A B'"),
        ("runtimes:\n  Big: {argv: [a]}\n", "2: runtimes.Big: invalid runtime name (use lowercase letters,"),
        ("context:\n  layers:\n    - {name: Org, dir: /x}\n", "3: context.layers[0].name: invalid layer name (use lowercase"),
        ("runtimes:\n  1: {argv: [a]}\n", "2: runtimes: keys must be strings (got 1; quote it)"),
        ("coordination:\n  dependency_hops: 6\n", "2: coordination.dependency_hops: must be between 0 and 5 (got 6)"),
        ("coordination:\n  lease_seconds: 0\n", "2: coordination.lease_seconds: must be at least 1 (got 0)"),
        ("coordination:\n  include: ['']\n", "2: coordination.include[0]: must not be empty"),
        ("context:\n  budget_tokens: -5\n", "2: context.budget_tokens: must be between 1 and 2000000 (got -5)"),
        ("context:\n  budget_tokens: 99999999999999999999\n", "2: context.budget_tokens: must be between 1 and 2000000"),
        ("version: !!python/object:os.system 1\n",
         "1: version: expected an integer (got a value tagged !!python/object:os.system ('1'))"),
        ('version: !!python/object/apply:os.system ["echo PWNED"]\n',  # it said "(got a list)"
         "1: version: expected an integer (got a list tagged !!python/object/apply:os.system)"),
        ("policy: /etc/policy.yaml\n", "1: policy: must be a path inside the repository"),
        ("policy: ../other/policy.yaml\n", "1: policy: must be a path inside the repository"),
        ("base: &b {argv: [a]}\n", "1: base: unknown key"),
        ("runtimes:\n  <<: {x: {argv: [a]}}\n", "2: runtimes: merge keys ('<<') are not supported"),
    ],
)
def test_value_errors(text: str, expected: str) -> None:
    assert error_of(text).startswith(f"{PATH}:{expected}")


def test_aliases_are_followed() -> None:
    text = "context:\n  sources: &s [A.md]\ncoordination:\n  include: *s\n"
    assert parse_config(text, PATH).coordination.include == ("A.md",)


def test_recursive_alias_does_not_hang() -> None:
    assert error_of("runtimes: &a {x: *a}\n") == f"{PATH}:1: runtimes.x.x: unknown key"


# --- file-level errors --------------------------------------------------------


def test_non_utf8_file(tmp_path: Path) -> None:
    write_config(tmp_path, b"theme: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{PATH}:1: not valid UTF-8 (byte 0xe9 at column 11)"
    assert info.value.line == 1
    # A comment saved as Latin-1 takes nothing away from `sandbox stop`, the listings or the app: `store:`
    # is read as far as it can be (it was "not valid UTF-8" for every command).
    from loomtui.config import configured_store

    write_config(tmp_path, b"store: sqlite\n# r\xe9vis\xe9\n")
    assert configured_store(tmp_path) == "sqlite"
    with pytest.raises(ConfigError, match=r"loom.yaml:2: not valid UTF-8 \(byte 0xe9 at column 4\)"):
        load_config(tmp_path)
    # ...but one in `store:` itself is the file's error, not a store named with U+FFFD.
    write_config(tmp_path, b"store: postgresql://db/caf\xe9\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        configured_store(tmp_path)
    # The column in characters, as an editor counts them (it was bytes).
    write_config(tmp_path, "theme: «x» café".encode() + b"\xe9\n")
    with pytest.raises(ConfigError, match=r"at column 16\)"):
        load_config(tmp_path)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / CONFIG_PATH).mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{PATH}: cannot read file: ")
    assert info.value.line is None


def test_load_errors_name_the_relative_path(tmp_path: Path) -> None:
    write_config(tmp_path, "theme: [x]\n")
    with pytest.raises(ConfigError, match=r"^\.loom/loom\.yaml:1: theme: expected a string"):
        load_config(tmp_path)


def test_utf8_bom_accepted(tmp_path: Path) -> None:
    write_config(tmp_path, "\ufefftheme: dark\n".encode())
    assert load_config(tmp_path).theme == "dark"


# --- yamlcheck directly -----------------------------------------------------


def test_yamlcheck_fields_and_lines() -> None:
    root = compose("a: 1\nb:\n  - x\n  - y\n", "f.yaml")
    assert root is not None
    fields = root.as_mapping(known=("a", "b", "c"), required=("a",))
    assert "c" not in fields and len(fields) == 2
    assert fields["a"].as_int() == 1
    items = fields["b"].as_list()
    assert [(i.key, i.line, i.as_str()) for i in items] == [("b[0]", 3, "x"), ("b[1]", 4, "y")]
    assert fields.key("b").line == 2
    assert compose("# empty\n", "f.yaml") is None


def test_a_glob_list_past_the_cap_is_one_line_naming_the_cap() -> None:
    text = "coordination:\n  exclude:\n" + "".join(f"    - d{n}/\n" for n in range(1_001))
    with pytest.raises(ConfigError, match=r"^\.loom/loom\.yaml:3: coordination\.exclude: at most 1,000 patterns \(got 1,001\)"):
        parse_config(text, PATH)


def test_a_bad_store_is_said_at_its_line_by_every_command_not_only_config_check(tmp_path: Path) -> None:
    from loomtui.config import configured_store

    (tmp_path / ".loom").mkdir()
    (tmp_path / ".loom" / "loom.yaml").write_text('version: 1\nstore: "ftp://x"\n')
    with pytest.raises(ConfigError) as bad:
        configured_store(tmp_path)
    assert str(bad.value) == ".loom/loom.yaml:2: store: must be `sqlite` or a postgresql:// URL, not 'ftp://x'"
    (tmp_path / ".loom" / "loom.yaml").write_text('version: 1\nstore: "postgresql://u:pw@db/x"\n')
    with pytest.raises(ConfigError) as leaked:
        configured_store(tmp_path)
    assert str(leaked.value).startswith(".loom/loom.yaml:2: store: a password in a URL here would be committed")
    # A libpq string is no URL, and its password is not said back (it went to the terminal and CI logs).
    (tmp_path / ".loom" / "loom.yaml").write_text('version: 1\nstore: "host=db user=u password=secret"\n')
    with pytest.raises(ConfigError) as echoed:
        configured_store(tmp_path)
    assert str(echoed.value).endswith("URL, not 'host=db user=u password=***'") and "secret" not in str(echoed.value)
    # A mistake elsewhere does not take the store away (`sandbox stop` needs only it).
    (tmp_path / ".loom" / "loom.yaml").write_text('version: 1\ngates: oops\nstore: sqlite\n')
    assert configured_store(tmp_path) == "sqlite"


@pytest.mark.parametrize(("location", "said"), [
    ("postgresql://loom@db/x", "postgresql://loom@db/x"),  # no password: said as written
    ("postgresql://loom:pw@db:5432/x?sslmode=require", "postgresql://loom:***@db:5432/x?sslmode=require"),
    ("host=db password='it''s' user=u", "host=db password=*** user=u"),
    ("host=db:5432 user=a:b", "host=db:5432 user=a:b"),
])
def test_a_store_location_said_back_keeps_all_but_its_password(location: str, said: str) -> None:
    from loomtui.config import without_secrets

    assert without_secrets(location) == said


@pytest.mark.parametrize("location", ["postgresq://loom:s3cr/et@db", "postgresq://loom:p@ss@db/x", "loom:s3cr@db:5432/x",
                                      "host=x password = 'it''s s3cr' user=y", "host=db password=s3cr",
                                      "host=db password=s3\\ cr", "host=db password='s3\\' cr'",
                                      'host=db password="s3 cr"', "host=db password='s3 cr", "postgresq://u:pa s3cr@db",
                                      "postgresq://u:a://s3cr@db"])
def test_a_store_location_said_back_never_shows_its_password(location: str, tmp_path: Path) -> None:
    from loomtui.config import without_secrets
    from tests.conftest import git, run_cli

    assert "s3cr" not in without_secrets(location) and "***" in without_secrets(location)
    (tmp_path / "r").mkdir()
    git(tmp_path / "r", "init", "-q")
    said = run_cli(tmp_path / "r", "store", "copy", "--to", location)  # `--to` said back too
    assert said.returncode == 2 and "s3cr" not in said.stderr and "***" in said.stderr, said.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\ngates: [oops\n", "sqlite"),  # not YAML, and no `store` anywhere: the default, for certain
    ("store: postgresql://db.example/loom # team\ngates:\n  - name: x\n\trun: y\n", "postgresql://db.example/loom"),
    ("{store: postgresql://db/loom, gates: [\n", "postgresql://db/loom"),  # read before the error
])
def test_a_file_that_is_not_yaml_keeps_a_store_it_names_on_its_own_line(tmp_path: Path, text: str,
                                                                        expected: str) -> None:
    from loomtui.config import configured_store

    (tmp_path / ".loom").mkdir()
    (tmp_path / ".loom" / "loom.yaml").write_text(text)
    with pytest.raises(ConfigError):
        load_config(tmp_path)
    assert configured_store(tmp_path) == expected  # `status`, `audit tail`, the listings and `sandbox stop` work


@pytest.mark.parametrize("text", [
    "gates: [oops\nstore: postgresql://db/loom\n",  # after the error: YAML never read it
    'note: "first\nstore: postgresql://evil/x"\ngates: [\n',  # inside a quoted string, not a key
    "store: sqlite\nstore: postgresql://db/loom\ngates: [\n",  # said twice
    "store: [sqlite]\ngates: [\n",  # not one value
    "store: ftp://x\ngates: [oops\n",  # wrong itself
])
def test_a_file_that_is_not_yaml_and_a_store_that_cannot_be_told_says_the_file_error(tmp_path: Path,
                                                                                    text: str) -> None:
    from loomtui.config import configured_store

    (tmp_path / ".loom").mkdir()
    (tmp_path / ".loom" / "loom.yaml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        configured_store(tmp_path)
    assert str(raised.value) == str(pytest.raises(ConfigError, load_config, tmp_path).value)


def test_a_dangling_symlink_for_the_config_or_the_policy_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    """A link whose file is gone read as "no file": the defaults, no gates, and the policy's rules dropped."""
    from loomtui.governance.policy import load_policy

    (tmp_path / ".loom").mkdir()
    for name in ("loom.yaml", "policy.yaml"):
        (tmp_path / ".loom" / name).symlink_to("missing.yaml")
    with pytest.raises(ConfigError, match=r"^\.loom/loom\.yaml: a symlink to 'missing\.yaml', which does not exist"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"^\.loom/policy\.yaml: a symlink to 'missing\.yaml', which does not exist"):
        load_policy(tmp_path)


@pytest.mark.parametrize("argv", [
    ("sh", "-c", "echo {task}"), ("env", "bash", "-lc", 'echo "task: {task}"'), ("/bin/dash", "-e", "-c", "x {task}"),
    # Its options first (a value of their own among them), or after -c: missed by the first reading.
    ("bash", "-euo", "pipefail", "-c", "echo {task}"), ("sh", "-o", "pipefail", "-c", "{task}"),
    ("bash", "-O", "extglob", "+e", "-c", "x{task}"), ("bash", "-c", "--", "echo {task}"),
    ("bash", "-c", "-e", "echo {task}"), ("timeout", "5", "bash", "--norc", "-c", "echo {task}")])
def test_task_inside_a_shell_s_script_is_refused_as_shell_it_would_be_read_as(argv: tuple[str, ...]) -> None:
    """`sh -c 'echo "task was: {task}"'` ran a task `say $(id -un) hi` as shell (`say root hi`), though the
    help said the text is passed as whole arguments (a tech lead's walkthrough)."""
    from loomtui.runtime_config import RuntimeConfig

    runtime = RuntimeConfig(name="command", argv=argv)
    with pytest.raises(LoomError, match=r"\{task\} is inside the script (sh|bash|dash) -c runs") as refused:
        runtime.render_argv({"task": "say $(id -un) hi"})
    assert refused.value.exit_code == 2
    # As an argument of its own, the shell's $1: the text as it is.
    safe = RuntimeConfig(name="command", argv=("sh", "-c", 'echo "task: $1"', "sh", "{task}"))
    assert safe.render_argv({"task": "say $(id -un) hi"})[-1] == "say $(id -un) hi"
    # In loom.yaml, said with its line (`doctor` said "ok", and every start was refused).
    with pytest.raises(ConfigError, match=r"^\.loom/loom\.yaml:4: runtimes\.wrapped\.argv: \{task\} is inside the script"):
        parse_config('version: 1\nruntimes:\n  wrapped:\n    argv: ["bash", "-lc", "echo {task} > out.txt"]\n', PATH)
    # A shell's name as another program's argument is no shell (`--lang fish -c {task}` was refused).
    for other in (("mytool", "--lang", "bash", "-c", "{task}"), ("bash", "run.sh", "{task}")):
        RuntimeConfig(name="command", argv=other).render_argv({"task": "t"})
