"""`loomtui context ...` and `loomtui bench context` from the shell: JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomtui.cli import main
from tests.conftest import git

SAMPLE = Path(__file__).resolve().parent.parent / "sample_repo"


@pytest.fixture(autouse=True)
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local time five hours from UTC: a listing in local time shows it."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


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
    # Its times in UTC, said so, as every other listing's (it said local time, unlabelled: hours off theirs).
    committed = json.loads(out)["versions"][0]["time"]
    code, out, _ = run(capsys, sample, "context", "versions")
    assert time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(committed)) in out, out

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


def test_a_version_is_what_its_commit_s_config_made_it_after_the_sources_change(
        sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`context versions` computed every commit's version with today's `context.sources`: after the sources
    changed, a sandbox's version (as `context drift` names it) was not among them, and `context diff` of it
    said `no such context version`."""
    code, out, _ = run(capsys, sample, "context", "show", "--json")
    before = json.loads(out)["version"]  # what a sandbox started now records
    config = sample / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace('"docs/conventions/*.md"', '"docs/nothing-here/*.md"'))
    git(sample, "commit", "-qam", "fewer sources")
    code, out, _ = run(capsys, sample, "context", "versions", "--json")
    assert code == 0 and [v["version"] for v in json.loads(out)["versions"]][1] == before
    code, out, _ = run(capsys, sample, "context", "show", "--at", "HEAD~1", "--json")
    assert json.loads(out)["version"] == before
    code, out, _ = run(capsys, sample, "context", "diff", before, "HEAD", "--json")
    removed = [s["id"] for s in json.loads(out)["sections"] if s["change"] == "removed"]
    assert code == 0 and "repo:docs/conventions/money.md#Money" in removed, out


def test_a_pinned_section_that_no_longer_exists_is_said_by_show_and_drift(sample: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Only `slice` said so: `show` was silent, `drift` said nothing flagged, and every slice went without it."""
    config = sample / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace("budget_tokens: 6000", "budget_tokens: 6000\n  pinned: [AGENTS.md#Cash]"))
    git(sample, "commit", "-qam", "pin a section no file has")
    problem = "context.pinned: 'AGENTS.md#Cash' matches no section"
    code, out, _ = run(capsys, sample, "context", "show")
    assert code == 0 and problem in out
    code, out, _ = run(capsys, sample, "context", "show", "--json")
    assert problem in json.loads(out)["problems"]
    code, out, _ = run(capsys, sample, "context", "drift")
    assert code == 1 and f"{problem} (every slice goes without it)" in out
    code, out, _ = run(capsys, sample, "context", "drift", "--json")
    assert json.loads(out)["unpinned"] == [problem] and json.loads(out)["flagged"] is True
    code, out, err = run(capsys, sample, "config", "check")  # the file is valid: a warning, not an error
    assert code == 0 and out.startswith("OK: ") and f"loomtui: warning: {problem}" in err


def test_config_check_warns_of_a_missing_layer_and_pins_over_the_budget(sample: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """It said OK of both (the context was not loaded): every slice then went without the layer, or was refused."""
    config = sample / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace(
        "budget_tokens: 6000",
        "budget_tokens: 10\n  pinned: [AGENTS.md]\n  layers:\n    - {name: org, dir: ../no-org}"))
    code, out, err = run(capsys, sample, "config", "check")
    assert code == 0 and out.startswith("OK: "), err
    assert "loomtui: warning: layer org: " in err and "no such directory; the layer is left out" in err
    assert "loomtui: warning: context.budget_tokens: 10 is smaller than the pinned sections" in err
    code, out, err = run(capsys, sample, "config", "check", "--json")
    assert any("smaller than the pinned sections" in w for w in json.loads(out)["warnings"])


def test_bad_input_is_one_line_exit_2(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = sample / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace("budget_tokens: 6000", "budget_tokens: 10\n  pinned: [AGENTS.md]"))
    code, _, err = run(capsys, sample, "context", "slice", "--task", "anything")
    assert code == 2 and err.count("\n") == 1 and "smaller than the pinned sections" in err
    assert "raise context.budget_tokens" in err
    code, _, err = run(capsys, sample, "context", "slice", "--task", "anything", "--budget", "5")
    assert code == 2 and "raise the budget given or pin less" in err  # not the config's, which it did not use
    code, _, err = run(capsys, sample, "context", "diff", "nope", "HEAD")
    assert code == 2 and err.count("\n") == 1 and "no such context version" in err
    code, _, err = run(capsys, sample, "context", "slice", "--task", "x", "--claim", "nowhere.py")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_a_budget_below_the_pinned_sections_warns_at_sandbox_new(sample: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The sandbox is made (its agent gets the task only: a sandbox is never refused for its context),
    the person who made it is told in one line, and the sandbox keeps why, audited under its id."""
    from loomtui.workspace import open_workspace

    config = sample / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace("budget_tokens: 6000", "budget_tokens: 10\n  pinned: [AGENTS.md]"))
    git(sample, "commit", "-qam", "a tiny budget")
    code, out, err = run(capsys, sample, "sandbox", "new", "--runtime", "command", "--task", "invoice totals",
                         "--no-start", "--no-isolation", "--json", "--", "true")
    sandbox = json.loads(out)["id"]
    assert code == 0
    [warning] = err.splitlines()
    assert warning.startswith(f"warning: sandbox {sandbox}: its agent gets the task only, no context: ")
    assert "smaller than the pinned sections" in warning
    workspace = open_workspace(sample)
    try:
        record = workspace.store.get_sandbox(sandbox)
        assert record is not None and "smaller than the pinned" in record.data["context_error"]
        assert "context" not in record.data
        [entry] = [e for e in workspace.audit.entries() if e.action == "context.unavailable"]
        assert entry.subject == sandbox and "smaller than the pinned" in entry.details["error"]
    finally:
        workspace.close()
    code, out, _ = run(capsys, sample, "context", "drift")
    assert f"sandbox {sandbox}: unknown\n    it got its task only: the context budget of 10 tokens" in out


def test_no_commits_yet_and_what_show_and_drift_print(sample: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q")
    (fresh / "AGENTS.md").write_text("# Rules\n\nBe careful.\n")
    code, _, err = run(capsys, fresh, "context", "diff", "worktree", "HEAD")
    assert code == 2 and err.count("\n") == 1 and "HEAD: the repository has no commits yet" in err, err

    org = tmp_path / "org"
    (org / "conventions").mkdir(parents=True)
    (org / "conventions" / "security.md").write_text("# Security\n\nOrg: never log secrets.\n")
    git(org, "init", "-q", "-b", "main")
    git(org, "add", "-A")
    git(org, "commit", "-qm", "v1")
    git(org, "tag", "v1")
    config = sample / ".loom" / "loom.yaml"
    config.write_text(config.read_text().replace(
        "  budget_tokens: 6000", f"  budget_tokens: 6000\n  layers:\n    - {{name: org, repo: {org}, ref: v1, "
                                 "sources: ['conventions/*.md']}"))
    code, out, _ = run(capsys, sample, "context", "show")
    layer = next(line for line in out.splitlines() if line.startswith("layer org:"))
    assert layer.startswith(f"layer org: {org}@v1 (") and ", 1 file, version " in layer, layer
    assert layer.count("v1") == 1

    currency = sample / "payments" / "currency.py"
    source = currency.read_text()
    currency.write_text(source[:source.index("def to_minor_units")] + source[source.index("def from_minor_units"):])
    code, out, _ = run(capsys, sample, "context", "drift")
    assert code == 1 and "ADR 0002: Banker's rounding, per line item, in one module: names what no longer " \
                         "exists" in out and "ADR ADR" not in out, out


def test_bench_context_reports_figures(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "context", "--sections", "50", "--mb", "1", "--rounds", "2", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["sections"] == 50 and "slice_ms_median" in result and code in (0, 1)


def test_show_in_a_repository_with_none_of_the_sources_says_where_conventions_go(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default sources missing are no problem (most repositories start without them), and `context show`
    said `0 files, 0 sections` and nothing else: no word that agents then get no conventions."""
    root = tmp_path / "bare"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.py").write_text("x = 1\n")
    git(root, "add", "a.py")
    git(root, "commit", "-qm", "code")
    code, out, _err = run(capsys, root, "context", "show")
    assert code == 0 and "0 files, 0 sections" in out
    assert "note: none of context.sources is here (AGENTS.md, " in out and "(an AGENTS.md first)" in out
    (root / "AGENTS.md").write_text("# Here\n\nUse Decimal.\n")
    assert "note: none" not in run(capsys, root, "context", "show")[1]


def test_slice_names_the_first_sections_left_out_and_counts_the_rest(sample: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Every section left out was a line of its own: 3,300 lines for a large context."""
    (sample / "docs/conventions/invoices.md").write_text("".join(f"## Invoice rule {n}\n\nInvoice totals rule {n}: {'x ' * 80}\n\n"
                                                   for n in range(40)))
    git(sample, "add", "-A")
    git(sample, "commit", "-q", "-m", "many conventions")
    code, out, _ = run(capsys, sample, "context", "slice", "--task", "invoice totals rule", "--budget", "60")
    left = [line for line in out.splitlines() if line.startswith("  left out: ")]
    assert code == 0 and len(left) == 20, out
    code, raw, _ = run(capsys, sample, "context", "slice", "--task", "invoice totals rule", "--budget", "60", "--json")
    every = len(json.loads(raw)["left_out"])
    assert every > 20 and f"  ... and {every - 20:,} more left out (--json lists every one)" in out, out
