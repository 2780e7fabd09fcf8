"""`loomtui init`: a starter configuration and policy for a repository of one's own, read back by the
same parsers as any (a new user had to piece both together from the README and the sample repo)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from loomtui.config import load_config
from loomtui.governance.policy import ChangeFacts, evaluate, load_policy
from tests.conftest import git, run_cli


def own_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "mine")
    git(root, "config", "user.email", "me@example.com")
    return root


def test_a_python_repository_gets_its_tests_as_a_gate_and_its_author_as_the_lead(tmp_path: Path) -> None:
    repo = own_repo(tmp_path / "mine", {"pkg/__init__.py": "X = 1\n", "tests/test_x.py": "def test_x():\n    pass\n"})
    done = run_cli(repo, "init")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("wrote .loom/loom.yaml: gates tests (pytest, tests/), compile")
    assert "me@example.com is its one lead" in done.stdout and "next: read both" in done.stdout
    # Each rule it wrote is in the summary (two were left out): what runs on every machine, a large change.
    assert "to what runs on every machine" in done.stdout and "of over 400 lines waits for a lead" in done.stdout
    config = load_config(repo)
    assert [(g.name, g.format) for g in config.gates] == [("tests", "junit"), ("compile", "mypy-json")]
    policy = load_policy(repo, ".loom/policy.yaml")
    assert policy.groups["leads"] == {"me@example.com"}
    assert [rule.name for rule in policy.rules] == ["failing-gates", "low-behaviour-score", "agents-ground-truth",
                                                    "runs-on-every-machine", "judges-its-own-checks", "large-change"]
    # Gate 2 below its pass score was invisible to the starter (its eval badge read "✓ · 55"): a lead reads why.
    low = evaluate(policy, ChangeFacts(stage="post-gate", paths=("src/m.py",), eval_score=55))
    assert (low.risk, low.rule_names()) == ("high", ("low-behaviour-score",))
    assert evaluate(policy, ChangeFacts(stage="post-gate", paths=("src/m.py",), eval_score=70)).rule_names() == (
        "default",)
    # A conftest.py hook can mark every failed test passed: the gates' pass is then the change's own word.
    assert "to what decides how the gates' checks run (their config, conftest.py, ...)" in done.stdout
    # A root `pytest.py` replaces the runner itself (`python -m pytest` puts the tree first on sys.path).
    # So does a package's metadata in the tree: pytest loads the plugin its `entry_points.txt` names.
    for path in ("conftest.py", "pkg/tests/conftest.py", "pytest.ini", "pyproject.toml", "pytest.py", "_pytest/x.py",
                 "h-1.0.dist-info/entry_points.txt", "src/h.egg-info/entry_points.txt"):
        judged = evaluate(policy, ChangeFacts(stage="post-gate", paths=(path,)))
        assert (judged.risk, judged.rule_names()) == ("high", ("judges-its-own-checks",)), path
    # What runs on its own wherever the repository is checked out (an agent's hook, a CI workflow) is high
    # risk: a lead decides, whatever the default says of the rest.
    for path in (".claude/settings.json", ".github/workflows/ci.yml", ".envrc", ".vscode/tasks.json"):
        judged = evaluate(policy, ChangeFacts(stage="post-gate", paths=(path,)))
        assert (judged.risk, judged.rule_names()) == ("high", ("runs-on-every-machine",)), (path, judged.rule_names())
    assert "runs-on-every-machine" not in evaluate(policy, ChangeFacts(stage="post-gate", paths=("pkg/x.py",))).rule_names()
    # One lead, who starts the agents: with separation of duties nothing could ever be approved.
    assert not policy.separation_of_duties
    # The limits it names as the defaults are the defaults: uncommented, the same config.
    text = (repo / ".loom" / "loom.yaml").read_text()
    assert "# limits: {" in text
    (repo / ".loom" / "loom.yaml").write_text(text.replace("# limits: {", "limits: {"))
    assert load_config(repo).limits == config.limits
    (repo / ".loom" / "loom.yaml").write_text(text)
    for check in (("config", "check"), ("policy", "validate")):
        assert run_cli(repo, *check).returncode == 0
    # Never overwritten: a second run writes nothing and says what to use instead.
    before = (repo / ".loom" / "policy.yaml").read_text()
    again = run_cli(repo, "init")
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert f".loom/loom.yaml and .loom/policy.yaml are there already in {repo}: nothing was written" in again.stderr
    assert (repo / ".loom" / "policy.yaml").read_text() == before


def test_an_init_cut_short_is_finished_by_init_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed mid-write it left an empty loom.yaml (a file opened, then written); killed between its two files, a
    loom.yaml and no policy (the built-in default, looser, applied); `init` again refused either way."""
    from loomtui import starter

    repo = own_repo(tmp_path / "mine", {"m.py": "X = 1\n"})
    written = starter._write_new

    def killed_at_the_policy(path: Path, text: str) -> None:
        if path.name == "policy.yaml":
            raise KeyboardInterrupt
        written(path, text)

    monkeypatch.setattr(starter, "_write_new", killed_at_the_policy)
    assert run_cli(repo, "init").returncode != 0
    assert (repo / ".loom" / "loom.yaml").is_file() and not (repo / ".loom" / "policy.yaml").exists()
    assert [p.name for p in (repo / ".loom").iterdir()] == ["loom.yaml"]  # no half-written file left about
    monkeypatch.setattr(starter, "_write_new", written)
    again = run_cli(repo, "init")
    assert again.returncode == 0 and "wrote .loom/policy.yaml" in again.stdout, again.stderr
    assert "wrote .loom/loom.yaml" not in again.stdout
    assert run_cli(repo, "policy", "validate").returncode == 0
    # A file of one's own there (not what init writes): refused, as ever, nothing written.
    other = own_repo(tmp_path / "other", {"m.py": "X = 1\n", ".loom/loom.yaml": "version: 1\n"})
    refused = run_cli(other, "init")
    assert refused.returncode == 1 and "there already" in refused.stderr
    assert not (other / ".loom" / "policy.yaml").exists()


def test_other_runners_are_found_and_a_repository_without_one_is_told_to_add_its_checks(tmp_path: Path) -> None:
    node = own_repo(tmp_path / "node", {"package.json": json.dumps({"scripts": {"test": "jest"}}),
                                        "go.mod": "module x\n"})
    done = run_cli(node, "init", "--json")
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert [(g["name"], g["found"]) for g in said["gates"]] == [("npm-test", "package.json scripts.test"),
                                                               ("go-test", "go.mod")]
    assert said["lead"] == "me@example.com" and len(said["written"]) == 2
    placeholder = own_repo(tmp_path / "bare", {"package.json": json.dumps(
        {"scripts": {"test": "echo \"Error: no test specified\" && exit 1"}}), "README.md": "hi\n"})
    bare = run_cli(placeholder, "init")
    assert bare.returncode == 0 and "gates none found: add yours (README: Guardrails)" in bare.stdout
    assert load_config(placeholder).gates == ()
    assert "# gates:" in (placeholder / ".loom" / "loom.yaml").read_text()
    # A package.json that does not parse is named, not read as a repository without tests.
    broken = own_repo(tmp_path / "broken", {"package.json": '{\n  "scripts": {"test": "jest",}\n}\n'})
    said = run_cli(broken, "init")
    assert said.returncode == 0 and "gates none found" in said.stdout
    assert ("loomtui: warning: package.json:2: not valid JSON (Expecting property name enclosed in double quotes): "
            "its checks were not looked for") in said.stderr


def test_outside_a_repository_init_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "init")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is not inside a git repository (run `git init`" in done.stderr
    assert not (tmp_path / ".loom").exists()


def test_a_file_where_init_puts_its_folder_is_named(tmp_path: Path) -> None:
    """`.loom` there as a file said "cannot write .loom/loom.yaml: File exists"."""
    repo = own_repo(tmp_path / "mine", {"a.py": "X = 1\n"})
    (repo / ".loom").write_text("notes\n")
    done = run_cli(repo, "init")
    assert done.returncode == 2 and done.stderr.strip() == (
        "loomtui: error: .loom is a file, where init puts a folder (.loom/loom.yaml); nothing more was written (move "
        "it aside and run init again)")
    assert (repo / ".loom").read_text() == "notes\n"


def test_without_a_git_identity_the_login_name_written_as_lead_is_warned_of(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no user.email, init wrote `leads: ["root"]` and said nothing: every decision went under it."""
    repo = own_repo(tmp_path / "mine", {"a.py": "X = 1\n"})
    git(repo, "config", "--unset", "user.email")
    monkeypatch.delenv("LOOM_USER", raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    done = run_cli(repo, "init")
    assert done.returncode == 0, done.stderr
    assert "loomtui: warning: neither git's user.email nor $LOOM_USER says who you are" in done.stderr
    assert done.stderr.count("\n") == 1


def test_init_in_a_subfolder_names_what_it_wrote_and_the_next_command_as_they_work_from_there(
        tmp_path: Path) -> None:
    """From `src/` it said `wrote .loom/loom.yaml` and `git add .loom`, which names nothing there."""
    repo = own_repo(tmp_path / "mine", {"src/m.py": "X = 1\n"})
    made = run_cli(repo / "src", "init")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("wrote ../.loom/loom.yaml: ") and "\nwrote ../.loom/policy.yaml: " in made.stdout
    command = made.stdout.split("`git add ")[1].split(" &&")[0]
    assert command == "../.loom"
    git(repo / "src", "add", command)  # works where it is said
    again = run_cli(repo / "src", "init")
    assert again.returncode == 1 and f"there already in {repo}: nothing was written" in again.stderr


def test_init_before_the_first_commit_finds_the_code_there_and_says_to_commit_it(tmp_path: Path) -> None:
    """In a repository with no commit yet it found no gate (Python files were looked for among the tracked
    ones only) and said nothing of the missing commit a sandbox starts from."""
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.py").write_text("print(1)\n")
    done = run_cli(root, "init")
    assert done.returncode == 0, done.stderr
    assert "gates compile (Python files)" in done.stdout
    assert "warning: this repository has no commit yet: a sandbox starts from one" in done.stderr
    # A script asking for JSON is told too (it was said to a person only).
    shutil.rmtree(root / ".loom")
    scripted = run_cli(root, "init", "--json")
    said = json.loads(scripted.stdout)
    assert any(w.startswith("this repository has no commit yet") for w in said["warnings"]), said
    assert "warning: this repository has no commit yet" in scripted.stderr


def test_after_the_first_commit_a_stray_untracked_script_makes_no_python_gate(tmp_path: Path) -> None:
    """Counting untracked files always, a scratch.py beside a JavaScript repository's tests/ gave it pytest and
    compile gates that every sandbox (which has the committed files only) would fail."""
    repo = own_repo(tmp_path / "js", {"package.json": json.dumps({"scripts": {"test": "jest"}}),
                                      "tests/app.test.js": "test('x', () => {})\n"})
    (repo / "scratch.py").write_text("print(1)\n")
    said = json.loads(run_cli(repo, "init", "--json").stdout)
    assert [g["name"] for g in said["gates"]] == ["npm-test"]


def test_init_from_elsewhere_with_c_says_the_next_commands_with_c(tmp_path: Path) -> None:
    repo = own_repo(tmp_path / "mine", {"m.py": "X = 1\n"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = run_cli(elsewhere, "-C", str(repo), "init")
    assert made.returncode == 0, made.stderr
    assert f"`git -C {repo} add .loom && git -C {repo} commit -m 'Adopt loomtui'`, `loomtui -C {repo} doctor`" \
        in made.stdout
    # and so are the commands after them (`loomtui sandbox new` from here found no repository)
    assert f"`loomtui -C {repo} sandbox new --runtime claude" in made.stdout and \
        f"(or `loomtui -C {repo}` for the app)" in made.stdout
    git(elsewhere.parent, "-C", str(repo), "add", ".loom")  # works as said
    # A file given with -C is read from there, as git reads it (it was read from where the command was typed).
    checked = run_cli(elsewhere, "-C", str(repo), "policy", "validate", ".loom/policy.yaml")
    assert checked.returncode == 0 and checked.stdout.startswith("OK: .loom/policy.yaml"), checked.stderr
    assert Path.cwd() != repo  # and this process is back where it was
    assert run_cli(elsewhere, "-C", "nowhere", "status").stderr == "loomtui: error: nowhere: no such directory\n"


def test_init_takes_the_adr_folder_the_repository_has(tmp_path: Path) -> None:
    """adr-tools keeps its ADRs in `doc/adr`: the starter named `docs/adr/*.md` only, and no agent got one."""
    repo = own_repo(tmp_path / "tools", {"doc/adr/0001-record-architecture-decisions.md":
                                         "# 1. Record architecture decisions\n\n## Status\n\nAccepted\n"})
    assert run_cli(repo, "init").returncode == 0
    sources = load_config(repo).context.sources
    assert "doc/adr/*.md" in sources and "docs/adr/*.md" not in sources, sources
    # And a change there is the agents' ground truth: a lead decides (an agent's ADR superseding the team's
    # went through as any change, and every later agent was told to follow it).
    policy = load_policy(repo, ".loom/policy.yaml")
    judged = evaluate(policy, ChangeFacts(stage="post-gate", paths=("doc/adr/0002-use-float-for-money.md",)))
    assert (judged.risk, judged.rule_names()) == ("high", ("agents-ground-truth",))
    # Any case, any depth, a year's folder inside it: as the knowledge layer reads an ADR's path.
    cased = own_repo(tmp_path / "cased", {"docs/ADR/0001-cents.md": "# 1. Cents\n", "arch/decisions/2024/0002-x.md":
                                          "# 2. X\n", "src/notes.md": "no ADR\n",
                                          # a skill named adr, and a code package named decisions: no ADRs
                                          ".claude/skills/adr/SKILL.md": "# Write an ADR\n",
                                          "src/loans/decisions/README.md": "# The credit decision engine\n",
                                          "src/loans/decisions/engine.py": "X = 1\n"})
    assert run_cli(cased, "init").returncode == 0
    assert [s for s in load_config(cased).context.sources if "ADR" in s or "decisions" in s] == [
        "arch/decisions/**/*.md", "docs/ADR/*.md"]
    guarded = evaluate(load_policy(cased, ".loom/policy.yaml"),
                       ChangeFacts(stage="post-gate", paths=("arch/decisions/2024/0003-y.md",)))
    assert guarded.rule_names() == ("agents-ground-truth",)
    code = evaluate(load_policy(cased, ".loom/policy.yaml"),
                    ChangeFacts(stage="post-gate", paths=("src/loans/decisions/engine.py",)))
    assert "agents-ground-truth" not in code.rule_names()
    bare = own_repo(tmp_path / "bare", {"app.py": "X = 1\n"})  # none yet: where a new one would go
    assert run_cli(bare, "init").returncode == 0
    assert "docs/adr/*.md" in load_config(bare).context.sources


def test_init_takes_each_service_s_own_agents_file(tmp_path: Path) -> None:
    """Sources are anchored at the root: `AGENTS.md` named no service's own, and their rules reached no agent."""
    repo = own_repo(tmp_path / "mono", {"AGENTS.md": "# Rules\n\n## Style\n\nRun black.\n",
                                        "services/payments/AGENTS.md": "# Payments\n\n## Testing\n\nSet SANDBOX=1.\n",
                                        "services/shipping/api/CLAUDE.md": "# Shipping API\n\n## Carriers\n\nNever call one.\n",
                                        "web/app/[slug]/AGENTS.md": "# Route\n\n## Slugs\n\nLowercase slugs.\n",
                                        ".claude/skills/x/AGENTS.md": "# a skill's\n", "app.py": "X = 1\n"})
    assert run_cli(repo, "init").returncode == 0
    sources = load_config(repo).context.sources
    assert [s for s in sources if s.endswith(("AGENTS.md", "CLAUDE.md"))] == [
        "AGENTS.md", "CLAUDE.md", "services/payments/AGENTS.md", "services/shipping/api/CLAUDE.md",
        "web/app/\\[slug\\]/AGENTS.md"], sources  # a route's folder, written literally (a glob, it matched none)
    shown = run_cli(repo, "context", "show").stdout
    assert "repo:web/app/[slug]/AGENTS.md#Route > Slugs" in shown and "slug" not in shown.split("!", 1)[1], shown
    sliced = run_cli(repo, "context", "slice", "--task", "payments tests need the sandbox")
    assert "services/payments/AGENTS.md > Payments > Testing" in sliced.stdout, sliced.stdout
