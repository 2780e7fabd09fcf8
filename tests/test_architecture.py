"""The layering rules: Textual only inside loomtui/tui, SQL only inside loomtui/store."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "loomtui"
SQL = re.compile(
    r"\b(SELECT\s+.+\s+FROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX)|BEGIN\s+IMMEDIATE|PRAGMA)\b"
)  # upper case, as this project writes SQL; prose such as "select a region from" is not SQL


def modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "_data" not in p.parts]


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
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


def test_no_sql_or_sqlite_outside_store() -> None:
    offenders = []
    for path in modules():
        if path.relative_to(PACKAGE).parts[0] == "store":
            continue
        if "sqlite3" in {n.split(".")[0] for n in imported_names(path)}:
            offenders.append(f"{path.relative_to(PACKAGE)} imports sqlite3")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} has SQL")
    assert offenders == []


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checks themselves can fail: a planted violation is found."""
    planted = tmp_path / "bad.py"
    planted.write_text("import textual.app\nQUERY = 'SELECT id FROM claims'\n")
    assert "textual.app" in imported_names(planted)
    assert SQL.search("SELECT id FROM claims")
    assert not SQL.search("select a region from the graph")
