"""`loomtui init`: a starter `.loom/loom.yaml` and `.loom/policy.yaml` for a repository of one's own.

What a new user had to piece together from the README and the sample repo: which checks the gates
run (found from the repository: pytest, npm, go, cargo), who decides (the person running it, as the
only lead to begin with), and the rules every repository wants (red gates block; what agents are
given as ground truth waits for a lead). Both files are read back by the same parsers as any config,
so a starter never fails `config check` or `policy validate`. Nothing is ever overwritten.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loomtui.config import ADR_FOLDER_NAMES, CONFIG_PATH, LoomConfig
from loomtui.errors import LoomError
from loomtui.gitcmd import Git
from loomtui.json_text import parse_json

POLICY_PATH: Final = LoomConfig().policy


COMPILE_CHECK: Final = (
    "import json, os, sys\n"
    "out = open(sys.argv[1], 'w')\n"
    "for top, dirs, files in os.walk('.'):\n"
    "    dirs[:] = sorted(d for d in dirs if not d.startswith('.') and d not in ('node_modules', '__pycache__'))\n"
    "    for name in sorted(f for f in files if f.endswith('.py')):\n"
    "        path = os.path.relpath(os.path.join(top, name))\n"
    "        try:\n"
    "            compile(open(path, 'rb').read(), path, 'exec', dont_inherit=True)\n"
    "        except Exception as error:\n"
    "            said = {'file': path, 'line': getattr(error, 'lineno', 0) or 0, 'code': type(error).__name__,\n"
    "                    'message': str(getattr(error, 'msg', error))}\n"
    "            out.write(json.dumps(said) + '\\n')\n"
)
"""The compile gate: each Python file that does not compile, one JSON line apiece, judged against the base
commit's (`compileall -q .` was judged by its exit code: where any file failed on the base, py2 fixtures
in a monorepo, a new syntax error read "already failing on the base" and passed)."""

FORMAT_NOTES: Final = {"junit": "each test's result, compared with the base commit's",
                       "mypy-json": "each file that does not compile, compared with the base commit's"}


@dataclass(frozen=True)
class Gate:
    """A check the starter found the repository has, and why it thinks so."""

    name: str
    run: tuple[str, ...]
    found: str
    format: str = "exit"
    timeout: int = 600


@dataclass(frozen=True)
class Starter:
    """The files `init` writes, and what it found."""

    files: dict[str, str]
    gates: tuple[Gate, ...]
    lead: str | None
    unread: tuple[str, ...] = ()
    """A build file that could not be read for its checks, `file:line: why` (its gate was not looked for)."""


PYTEST: Final = ("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
                  "--junitxml={report}")
"""One test file that fails to import on the base commit stops pytest there by default: no test of any change
would run (gate 1 "not judged"), so the other files run on."""


def found_gates(root: Path, unread: list[str] | None = None) -> tuple[Gate, ...]:
    """The checks this repository's own files say it has: its tests (by their runner) and, for Python,
    that every module compiles; a build file that does not parse is added to `unread` (`file:line: why`)."""
    gates: list[Gate] = []
    # Before the first commit the code is all untracked: then untracked files (not ignored) count. After it,
    # tracked ones only: a stray scratch.py in a JavaScript repository made Python gates every sandbox failed.
    git = Git(root)
    untracked = ("--others", "--exclude-standard") if git.resolve_commit("HEAD") is None else ()
    listed = git.run("ls-files", "-z", "--cached", *untracked, "--", "*.py", timeout=30)
    python = listed.status == 0 and bool(listed.out.strip("\0"))
    pytest_hint = next((name + ("/" if (root / name).is_dir() else "") for name in
                        ("conftest.py", "pytest.ini", "tests", "test") if (root / name).exists()), None)
    if pytest_hint is None and (root / "pyproject.toml").is_file():
        try:
            if "[tool.pytest" in (root / "pyproject.toml").read_text(encoding="utf-8", errors="replace"):
                pytest_hint = "pyproject.toml [tool.pytest]"
        except OSError:
            pass
    if python and pytest_hint is not None:
        gates.append(Gate("tests", PYTEST, f"pytest, {pytest_hint}", format="junit"))
    package = _npm_test(root, unread if unread is not None else [])
    if package:
        gates.append(Gate("npm-test", ("npm", "test", "--silent"), package))
    if (root / "go.mod").is_file():
        gates.append(Gate("go-test", ("go", "test", "./..."), "go.mod"))
    if (root / "Cargo.toml").is_file():
        gates.append(Gate("cargo-test", ("cargo", "test", "--quiet"), "Cargo.toml"))
    if python:
        gates.append(Gate("compile", ("python", "-c", COMPILE_CHECK, "{report}"), "Python files",
                          format="mypy-json", timeout=120))
    return tuple(gates)


def _npm_test(root: Path, unread: list[str]) -> str | None:
    """`package.json` when it has a test script of its own (npm's placeholder fails on purpose); one that
    does not parse is said in `unread` (it read as "gates none found", unexplained)."""
    try:
        scripts = parse_json((root / "package.json").read_text(encoding="utf-8")).get("scripts") or {}
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        unread.append(f"package.json:{exc.lineno}: not valid JSON ({exc.msg})")
        return None
    except (OSError, ValueError, AttributeError) as exc:
        unread.append(f"package.json:1: cannot be read for its test script ({getattr(exc, 'strerror', None) or exc})")
        return None
    test = scripts.get("test") if isinstance(scripts, dict) else None
    return "package.json scripts.test" if isinstance(test, str) and "no test specified" not in test else None


def starter(root: Path, lead: str | None) -> Starter:
    """The starter files for the repository at `root`, `lead` (an email) its one lead to begin with."""
    unread: list[str] = []
    gates = found_gates(root, unread)
    adrs = _adr_globs(root)
    config = _config_text(gates, adrs, _nested_instructions(root))
    return Starter({CONFIG_PATH: config, POLICY_PATH: _policy_text(lead, gates, tuple(adrs))},
                   gates, lead, tuple(unread))


MAX_INSTRUCTION_FILES: Final = 100
"""The most services' own AGENTS.md or CLAUDE.md named as sources (the shallowest first)."""
MAX_ADR_FOLDERS: Final = 100
"""The most ADR folders named as sources (the shallowest first: a repository's own before its services')."""


def _adr_globs(root: Path) -> list[str]:
    """The folders of the repository's ADRs, as sources (`docs/adr/*.md` when it has none yet): from git's listing,
    what it tracks or would, ignored and hidden folders aside (`.claude/skills/adr` is a skill, not ADRs). A file
    counts as an ADR by its name, numbered or dated (`0001-use-cents.md`): a code package named `decisions` with a
    README is none."""
    listed = Git(root).run("ls-files", "-z", "-co", "--exclude-standard", "--", "*.md", "*.markdown")
    folders: dict[str, bool] = {}  # the ADR folder -> whether some of its ADRs are in folders of their own
    for name in listed.out.split("\0") if listed.status == 0 else ():
        path = Path(name)
        parts = path.parts[:-1]
        if not path.name[:1].isdigit() or any(part.startswith(".") for part in parts):
            continue
        at = next((i for i, part in enumerate(parts) if part.lower() in ADR_FOLDER_NAMES), None)
        if at is not None:
            folder = "/".join(parts[:at + 1])
            folders[folder] = folders.get(folder, False) or at + 1 < len(parts)
    ranked = sorted(folders.items(), key=lambda item: (item[0].count("/"), item[0]))[:MAX_ADR_FOLDERS]
    return [f"{folder}/**/*.md" if nested else f"{folder}/*.md" for folder, nested in ranked] or ["docs/adr/*.md"]


def _nested_instructions(root: Path) -> list[str]:
    """Each AGENTS.md or CLAUDE.md below the root (a monorepo's services' own), hidden folders aside, shallowest
    first: sources are anchored at the root, so `AGENTS.md` named none of them and their rules reached no agent."""
    listed = Git(root).run("ls-files", "-z", "-co", "--exclude-standard", "--", "*/AGENTS.md", "*/CLAUDE.md")
    found = [name for name in (listed.out.split("\0") if listed.status == 0 else ())
             if "/" in name and not any(part.startswith(".") for part in Path(name).parts[:-1])]
    # As written literally: a source is a glob, and `app/[slug]/AGENTS.md` (a route's folder) matched no file.
    return [re.sub(r"([\\\[\]*?])", r"\\\1", name)
            for name in sorted(found, key=lambda name: (name.count("/"), name))[:MAX_INSTRUCTION_FILES]]


def _config_text(gates: tuple[Gate, ...], adrs: list[str], nested: Sequence[str] = ()) -> str:
    sources = json.dumps(["AGENTS.md", "CLAUDE.md", *nested, *adrs, "docs/conventions/*.md"])
    lines = ["# loomtui's configuration for this repository (README: Configuration); `loomtui config check`",
             "# checks it. Commit it: every sandbox, and everyone's loomtui, reads the committed file.",
             "version: 1",
             "# The runtimes claude, codex, aider, command and script are built in; add your own under `runtimes:`.",
             "context:",
             "  # What agents are given of the team's conventions (README: Knowledge); a task gets the",
             "  # sections that bear on it, and the root AGENTS.md when nothing else does.",
             f"  sources: {sources}",
             "  budget_tokens: 8000",
             "# What each agent, and all it starts, may use at once: these are the defaults; `loomtui doctor`",
             "# says whether they hold here (README: Sandboxes, Isolation).",
             "# limits: {memory: 50%, processes: 4096, cpu: none, file_size: 100M}"]
    if not gates:
        lines += ["# No test runner was found here: add the checks every agent's change must pass (README:",
                  "# Guardrails), e.g.",
                  '# gates:',
                  '#   - {name: tests, run: ["make", "test"], timeout: 600}']
        return "\n".join(lines) + "\n"
    lines += ["# Gate 1: each agent's change runs these, judged against its base commit (README: Guardrails).",
              "gates:"]
    for gate in gates:
        lines.append(f"  - name: {gate.name}  # found: {gate.found}")
        lines.append(f"    run: {json.dumps(list(gate.run))}")
        if gate.format in FORMAT_NOTES:
            lines.append(f"    format: {gate.format}  # {FORMAT_NOTES[gate.format]}")
        lines.append(f"    timeout: {gate.timeout}")
    return "\n".join(lines) + "\n"


CHECK_SETUP: Final = {
    # `python -m pytest` puts the tree first on sys.path: a `pytest.py` there replaces the runner itself.
    # A `*.dist-info` there is an installed package to it: its `entry_points.txt` loads a plugin of the tree's.
    "tests": ("conftest.py", "pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "pytest.py",
              "pytest/", "_pytest/", "pluggy/", "sitecustomize.py", "usercustomize.py", "*.dist-info/",
              "*.egg-info/"),
    "compile": ("sitecustomize.py", "usercustomize.py"),
    "npm-test": ("package.json", ".npmrc", "node_modules/", "jest.config.*", "vitest.config.*", ".babelrc",
                 "babel.config.*"),
    "go-test": ("go.mod", "go.work"),
    "cargo-test": ("Cargo.toml", "build.rs", ".cargo/", "rust-toolchain", "rust-toolchain.toml"),
}
"""What decides how each found gate's tests run, and so whether they pass (a `conftest.py` hook that marks
failures passed, a runner shadowed by a file of the same name, a toolchain or `replace` pointed elsewhere):
a change to it is the change judging itself (gitignore globs: any depth)."""


def _policy_text(lead: str | None, gates: tuple[Gate, ...] = (), adrs: tuple[str, ...] = ("docs/adr/*.md",)) -> str:
    leads = json.dumps([lead] if lead else [])
    # The ADR folders the context reads (`_adr_globs`): an agent's ADR in adr-tools' doc/adr, superseding the
    # team's decision, went through as any change, and every later agent was told to follow it.
    ground_truth = ", ".join(json.dumps(glob.split("/*")[0] + "/**/*.md") for glob in adrs)  # its ADRs, not code
    setup = list(dict.fromkeys(glob for gate in gates for glob in CHECK_SETUP.get(gate.name, ())))
    return f"""\
# Who may let an agent's change proceed (README: Policy). `loomtui policy validate` checks it,
# `loomtui policy explain SANDBOX` says what it decided and why. Commit it with the code.
version: 1
groups:            # people by git user.email (or $LOOM_USER)
  leads: {leads}{'' if lead else '  # add yourself: no one can approve a change until you do'}
# An author's own approval does not count once this is true: with one lead, who starts the agents,
# nothing could be approved; turn it on when a second person decides.
separation_of_duties: false
merge: manual                # `auto` merges a change once it is approved
default:                     # any change, or part of one, that no rule below speaks for
  decision: require
  approvals: {{groups: [leads], count: 1}}
overrides: {{groups: [leads], max_hours: 72}}
rules:
  - name: failing-gates
    description: A change whose gates did not pass does not merge (a lead may override, with a reason).
    when: {{gates_failed: ["*"]}}
    risk: high
    decision: block
  - name: low-behaviour-score
    description: Gate 2 scored the change below its pass score (70, the default of eval.pass_score; keep the
      two alike), so its scope, tests, size or conventions look wrong and a lead reads why before it merges.
    when: {{eval_score: {{under: 70}}}}
    risk: high
    decision: require
    approvals: {{groups: [leads], count: 1}}
  - name: agents-ground-truth
    description: What every later agent is given (AGENTS.md, the ADRs, the conventions) and loomtui's own
      configuration change only with a lead.
    stage: post-gate
    when: {{paths: ["AGENTS.md", "AGENTS.override.md", "CLAUDE.md", "CLAUDE.local.md", "GEMINI.md",
                   "CONVENTIONS.md", ".github/copilot-instructions.md", ".github/instructions/**",
                   ".github/prompts/**", ".cursorrules", {ground_truth},
                   "docs/conventions/**", ".loom/**"]}}
    risk: high
    decision: require
    approvals: {{groups: [leads], count: 1}}
  - name: runs-on-every-machine
    description: What tools run on their own, on each person's machine or in CI (agents' and editors'
      settings, hooks, commands and skills, in any folder, CI workflows, git hooks, direnv), and how git
      reads and merges the code (.gitattributes, submodules, LFS), changes only with a lead; an agent's
      line there runs wherever the repository is checked out, or hides later changes from their reviewers.
    stage: post-gate
    when: {{paths: ["**/.claude/**", "**/.codex/**", ".mcp.json", "**/.cursor/**", ".vscode/**", ".devcontainer/**",
                   ".github/workflows/**", ".github/actions/**", ".gitlab-ci.yml", ".circleci/**",
                   ".pre-commit-config.yaml", ".husky/**", ".githooks/**", ".envrc", ".aider.conf.yml",
                   "**/.gitattributes", ".gitmodules", ".lfsconfig"]}}
    risk: high
    decision: require
    approvals: {{groups: [leads], count: 1}}{_check_setup_rule(setup)}
  - name: large-change
    description: Over 400 changed lines is too much to review in one go.
    when: {{lines_changed: {{over: 400}}}}
    risk: medium
    decision: require
    approvals: {{groups: [leads], count: 1}}
"""


def starter_rule_for_checks(made: Starter) -> bool:
    """Whether the starter policy has the rule on what decides how the gates' tests run."""
    return any(gate.name in CHECK_SETUP for gate in made.gates)


def _check_setup_rule(globs: list[str]) -> str:
    if not globs:
        return ""
    return f"""
  - name: judges-its-own-checks
    description: What decides how the gates' tests run, and so whether they pass (a conftest.py hook can
      mark every failure passed), changes only with a lead, who reads the gates' pass as the change's word.
    stage: post-gate
    when: {{paths: {json.dumps(globs)}}}
    risk: high
    decision: require
    approvals: {{groups: [leads], count: 1}}"""


def _write_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet, whole or not at all (a kill mid-write left an empty loom.yaml)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(scratch, 0o644)
        os.link(scratch, path)  # never over a file there: FileExistsError
    finally:
        os.unlink(scratch)


def existing(root: Path, made: Starter) -> list[str]:
    """Which of the starter's files the repository has already (nothing is overwritten)."""
    return [name for name in made.files if (root / name).exists() or (root / name).is_symlink()]


def _as_written(path: Path, text: str) -> bool:
    """Whether `path` holds exactly `text` (what an init cut short had written of it)."""
    try:
        return not path.is_symlink() and path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def write_starter(root: Path, made: Starter) -> list[Path]:
    """Write the starter's files, each whole or not at all, refusing (LoomError, exit 1) when any is there
    already; but for an init cut short: some there, each exactly as this one writes it, and the rest are written
    (it left a policy missing, and `init` again refused, while the built-in default, looser, applied)."""
    there = existing(root, made)
    resumed = bool(there) and len(there) < len(made.files) and all(_as_written(root / n, made.files[n]) for n in there)
    if there and not resumed:
        raise LoomError(f"{' and '.join(there)} {'is' if len(there) == 1 else 'are'} there already in {root}: "
                        "nothing was written (`loomtui config check` and `loomtui policy validate` check them)",
                        exit_code=1)
    written = []
    for name, text in made.files.items():
        if name in there:
            continue
        path = root / name
        try:
            _write_new(path, text)
        except OSError as exc:
            # `.loom` there as a file said "cannot write .loom/loom.yaml: File exists".
            blocked = next((parent for parent in path.relative_to(root).parents
                            if str(parent) != "." and (root / parent).exists() and not (root / parent).is_dir()), None)
            if blocked is not None:
                raise LoomError(f"{blocked} is a file, where init puts a folder ({name}); nothing more was written "
                                "(move it aside and run init again)") from None
            raise LoomError(f"cannot write {name}: {exc.strerror or exc}") from None
        written.append(path)
    return written
