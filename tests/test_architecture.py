"""The layering rules: Textual only inside loomtui/tui, SQL only inside loomtui/store, git run
only by loomtui/gitcmd.py, and no import that climbs the layer order (DESIGN.md: store and audit;
coordination; knowledge; execution; guardrails; governance; observability; workflow; then the
front-ends)."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "loomtui"
SQL = re.compile(
    r"\b(SELECT\s+.+\s+FROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX)|BEGIN\s+IMMEDIATE|PRAGMA)\b"
)  # upper case, as this project writes SQL; prose such as "select a region from" is not SQL


def modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "_data" not in p.parts]


@cache
def nodes(path: Path) -> tuple[ast.AST, ...]:
    """Every node of a module's syntax tree, parsed once for all the rules (each walked all 190 modules)."""
    return tuple(ast.walk(ast.parse(path.read_text(), str(path))))


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in nodes(path):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_textual_or_rich_import_outside_tui() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules()
        if "tui" not in path.relative_to(PACKAGE).parts
        for name in imported_names(path)
        if name.split(".")[0] in ("textual", "rich")
    ]
    assert offenders == []


GIT_RUNNERS = {"gitcmd.py", "demo/hostile.py"}
"""Where a module may start git itself: the one way (gitcmd.Git), and the hostile self-test, which runs
git as an attacker or a bystander would, around loomtui rather than through it."""


def git_calls(path: Path) -> list[int]:
    """Lines that start a process whose argv is a literal beginning with "git"."""
    return [node.lineno for node in nodes(path)
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], (ast.List, ast.Tuple))
            and node.args[0].elts and isinstance(node.args[0].elts[0], ast.Constant)
            and node.args[0].elts[0].value == "git"]


def test_git_is_run_only_through_gitcmd() -> None:
    offenders = [f"{path.relative_to(PACKAGE)}:{line} runs git itself (use loomtui.gitcmd.Git)"
                 for path in modules() if path.relative_to(PACKAGE).as_posix() not in GIT_RUNNERS
                 for line in git_calls(path)]
    assert offenders == []


def test_globs_are_compiled_only_through_glob_spec() -> None:
    """One place compiles a glob (`globs.glob_spec`, on RE2): pathspec on Python's `re` backtracks, and
    a claim glob with a few stars against a long name an agent made held a supervisor for minutes."""
    offenders = [f"{path.relative_to(PACKAGE)}:{node.lineno} compiles a glob itself (use globs.glob_spec)"
                 for path in modules() if path.relative_to(PACKAGE).as_posix() != "globs.py"
                 for node in nodes(path)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and node.func.attr == "from_lines"]
    assert offenders == []


def test_a_glob_with_many_stars_fails_a_long_name_at_once() -> None:
    from loomtui.globs import glob_spec

    # Python's `re` would take hours here (each star tries every split of the name).
    assert not glob_spec(["*a*a*a*a*a*a*a*b"]).match_file("a" * 255)
    assert not glob_spec(["**/a/**/a/**/a/**/b"]).match_file("/".join("a" * 2000))
    assert glob_spec(["payments/**/*.py"]).match_file("payments/refunds/quote.py")
    from loomtui.globs import glob_problem

    assert "POSIX class" in (glob_problem("src/[[:alpha:]]") or "")  # one line, not RE2's own error
    assert "NUL" in (glob_problem("pay\0ments/**") or "")  # it was valid, and could never match
    # Nor does `./secrets/**`: a policy's block on it validated, and never applied.
    assert glob_problem("./secrets/**") == "a path here never holds . or .. (write secrets/** from the repository's top)"
    assert glob_problem("!./a") == "a path here never holds . or .. (write !a from the repository's top)"
    assert "never holds . or .." in (glob_problem("src/../secrets/*") or "")
    assert glob_problem(".github/**") is None and glob_problem("a..b/**") is None


def test_no_sql_or_sqlite_outside_store() -> None:
    offenders = []
    for path in modules():
        if path.relative_to(PACKAGE).parts[0] == "store":
            continue
        if "sqlite3" in {n.split(".")[0] for n in imported_names(path)}:
            offenders.append(f"{path.relative_to(PACKAGE)} imports sqlite3")
        for node in nodes(path):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} has SQL")
    assert offenders == []


LAYERS = (
    ("store", "audit", "auditanchor", "auditrestore", "config", "errors", "files", "gitcmd", "globs", "identity", "interrupts",
     "json_text", "limit_values", "rates", "repo", "resources", "runtime_config", "sample", "starter", "workspace", "yamlcheck",
     "__init__", "__main__"),
    ("coordination",),
    ("knowledge",),
    ("execution",),
    ("guardrails",),
    ("governance",),
    ("observability",),
    ("workflow",),
    ("cli", "tui", "mcp", "demo"),
)
"""Lowest first. `__main__` only hands over to the CLI, which it loads inside a function."""
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def layer_of(module: str) -> str:
    """`loomtui.execution.sandboxes` -> `execution`; `loomtui` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(path: Path, module: str) -> list[str]:
    """Every import in `path` (module `module`), at any depth, of a layer above its own."""
    own = RANK[layer_of(module)]
    found = []
    for node in nodes(path):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        for name in names:
            if name.startswith("loomtui.") and RANK.get(layer_of(name), -1) > own and layer_of(module) != "__main__":
                found.append(f"{module}:{node.lineno} imports {name} ({layer_of(name)} is above "
                             f"{layer_of(module)})")
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_module_belongs_to_a_layer() -> None:
    unknown = sorted({layer_of(module_name(p)) for p in modules()} - set(RANK))
    assert unknown == []


def test_no_import_climbs_the_layer_order() -> None:
    offenders = [line for path in modules() for line in upward_imports(path, module_name(path))]
    assert offenders == []


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checks themselves can fail: a planted violation of each rule is found."""
    planted = tmp_path / "bad.py"
    planted.write_text("import textual.app\nQUERY = 'SELECT id FROM claims'\n"
                       "def f():\n    from loomtui.governance.policy import load_policy\n"
                       "subprocess.run(['git', 'status'])\nsubprocess.run([sys.executable, 'git'])\n")
    assert "textual.app" in imported_names(planted)
    assert git_calls(planted) == [5]
    assert SQL.search("SELECT id FROM claims")
    assert not SQL.search("select a region from the graph")
    assert upward_imports(planted, "loomtui.execution.sandboxes") == [
        "loomtui.execution.sandboxes:4 imports loomtui.governance.policy (governance is above execution)"]
    assert upward_imports(planted, "loomtui.workflow.engine") == []


_IMPORT_EACH_ALONE = """
import importlib, pkgutil, sys
import loomtui
failed = []
for name in sorted(m.name for m in pkgutil.walk_packages(loomtui.__path__, "loomtui.")):
    for loaded in [m for m in sys.modules if m == "loomtui" or m.startswith("loomtui.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
"""


def test_every_module_imports_first_in_a_fresh_process() -> None:
    """An import cycle breaks only the process that happens to import its modules in one order:
    `hooks.gate` imported first failed (permissions -> requests -> agent_ops -> permissions, half
    loaded), while the suite, importing them otherwise, passed. Each module is imported first here."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH_ALONE], capture_output=True, text=True,
                          cwd=PACKAGE.parent, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
