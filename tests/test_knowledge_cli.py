"""`loomtui context ...` and `loomtui bench context` from the shell: JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from loomtui.cli import main
from tests.conftest import git

SAMPLE = Path(__file__).resolve().parent.parent / "sample_repo"


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    root = tmp_path / "billing"
    shutil.copytree(SAMPLE, root)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "billing service")
    return root


def run(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    code = main(["-C", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_versions_and_slice(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, sample, "context", "show", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["budget_tokens"] == 6000
    adr = next(s for s in shown["sections"] if s.get("adr", {}).get("number") == 2)
    assert adr["adr"]["status"] == "Accepted" and adr["adr"]["date"] == "2023-04-02"
    assert any(m["target"] == "payments/currency.py::round_minor_units" for m in adr["mentions"])

    code, out, _ = run(capsys, sample, "context", "versions", "--json")
    assert code == 0 and json.loads(out)["versions"][0]["version"] == shown["version"]

    code, out, _ = run(capsys, sample, "context", "slice", "--task", "Speed up invoice totals",
                       "--claim", "payments/invoices.py::InvoiceCalculator", "--json")
    piece = json.loads(out)
    assert code == 0 and piece["tokens"] <= piece["budget_tokens"]
    assert piece["sections"][0]["why"].startswith("score ")
    assert any(s["source"] == "docs/adr/0002-bankers-rounding-per-line-item.md" for s in piece["sections"])

    code, out, _ = run(capsys, sample, "context", "slice", "--task", "Speed up invoice totals")
    assert code == 0 and "suggested regions" in out and "score" in out


def test_diff_and_drift(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agents = sample / "AGENTS.md"
    agents.write_text(agents.read_text() + "\n## Releases\n\nTag from main.\n")
    git(sample, "commit", "-qam", "AGENTS.md: releases")
    code, out, _ = run(capsys, sample, "context", "diff", "HEAD~1", "HEAD", "--json")
    diff = json.loads(out)
    assert code == 0
    assert [(s["change"], s["id"]) for s in diff["sections"]] == [
        ("added", "repo:AGENTS.md#Working on the billing service > Releases")]
    code, out, _ = run(capsys, sample, "context", "drift")
    assert code == 0 and "nothing flagged" in out
    (sample / "payments" / "tax.py").write_text("def bad(x):\n    return float(x)\n")
    code, out, _ = run(capsys, sample, "context", "drift", "--json")
    assert code == 1
    assert json.loads(out)["conventions"][0]["rule"] == "no-float-for-money"


def test_bad_input_is_one_line_exit_2(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = sample / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace("budget_tokens: 6000", "budget_tokens: 10\n  pinned: [AGENTS.md]"))
    code, _, err = run(capsys, sample, "context", "slice", "--task", "anything")
    assert code == 2 and err.count("\n") == 1 and "smaller than the pinned sections" in err
    code, _, err = run(capsys, sample, "context", "diff", "nope", "HEAD")
    assert code == 2 and err.count("\n") == 1 and "no such context version" in err
    code, _, err = run(capsys, sample, "context", "slice", "--task", "x", "--claim", "nowhere.py")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_bench_context_reports_figures(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "context", "--sections", "50", "--mb", "1", "--rounds", "2", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["sections"] == 50 and "slice_ms_median" in result and code in (0, 1)
