"""The knowledge layer: sections, versions, layers, the slice per task, drift and conventions."""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loomtui.config import ContextConfig, ContextLayer, parse_config
from loomtui.errors import ConfigError, LoomError
from loomtui.knowledge.engine import (
    adr_flags,
    context_of,
    convention_findings,
    drift_report,
    knowledge_index,
    record_slice,
    sandbox_drift_now,
    slice_for_task,
)
from loomtui.knowledge.sections import parse_adr, split_markdown
from loomtui.knowledge.slicing import ClaimInput, slice_context
from loomtui.knowledge.sources import (
    MAX_SOURCE_BYTES,
    context_versions,
    load_context,
    resolve_at,
    resolve_mentions,
)
from loomtui.store import SandboxRecord
from loomtui.workspace import Workspace, open_workspace
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


@pytest.fixture
def workspace(sample: Path) -> Workspace:
    ws = open_workspace(sample)
    yield ws
    ws.close()


def ids(piece: object) -> list[str]:
    return [p.section.id for p in piece.picks]  # type: ignore[attr-defined]


@contextlib.contextmanager
def hang_guard(seconds: int) -> Iterator[None]:
    """Fail (rather than hang the run) if the block is still going after `seconds`."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- sections -------------------------------------------------------------------------------


def test_a_heading_holding_the_id_separator_is_not_another_sections_id() -> None:
    """`## Invoices > Totals` and `## Invoices` / `### Totals` had one id: drift compared one's old text with the
    other's, and said a section changed that had not."""
    text = "# Guide\n\n## Invoices > Totals\n\none\n\n## Invoices\n\n### Totals\n\ntwo\n"
    ids = [s.id for s in split_markdown("repo", "GUIDE.md", text)]
    assert len(ids) == len(set(ids)) == 2, ids


def test_markdown_splits_at_headings_not_inside_code() -> None:
    text = ("Intro line.\n\n# Guide\n\nTop.\n\n## Money\n\nUse Decimal.\n\n```sh\n# not a heading\n```\n\n"
            "## Empty\n\n### Deeper\n\nText.\n\n## Money\n\nAgain.\n")
    sections = split_markdown("repo", "GUIDE.md", text)
    assert [s.heading for s in sections] == [(), ("Guide",), ("Guide", "Money"), ("Guide", "Empty", "Deeper"),
                                             ("Guide", "Money")]
    assert "# not a heading" in sections[2].text
    assert sections[4].id == "repo:GUIDE.md#Guide > Money (2)"
    # Said apart where people read them (two `Notes` in a slice, the app and drift read as one).
    assert (sections[4].title, sections[4].label) == ("Money (2)", "GUIDE.md > Guide > Money (2) [repo]")
    assert (sections[2].title, sections[2].label) == ("Money", "GUIDE.md > Guide > Money [repo]")
    assert sections[0].id == "repo:GUIDE.md"


def test_markdown_splits_at_setext_headings_too() -> None:
    """`Widgets\n=======` was folded into the section before it: no section of its own, its words no heading's,
    and an edit of it drifted as one of the other."""
    text = ("# Conventions\n\n## Notes\n\nFirst.\n\nWidgets\n=======\n\nmake_widget rules.\n\nSizes\n-----\n\nSmall.\n\n"
            "- an item\n---\n\nA line.\n\n---\n\n```\nCode\n===\n```\n")
    sections = split_markdown("repo", "GUIDE.md", text)
    assert [s.heading for s in sections] == [("Conventions", "Notes"), ("Widgets",), ("Widgets", "Sizes")]
    assert sections[1].text.startswith("Widgets\n=======\n") and sections[1].line == 7
    assert "- an item\n---" in sections[2].text and "Code\n===" in sections[2].text  # a list, a rule, code


def test_a_markdown_front_matter_is_no_section() -> None:
    """A docs site's `---\ntitle: ...\nsidebar_position: 2\n---` was a section of its own, sliced to agents."""
    text = "---\ntitle: Code style\nsidebar_position: 2\n---\n\n# Style\n\nUse snake_case.\n"
    [style] = split_markdown("repo", "docs/style.md", text)
    assert (style.heading, style.line) == (("Style",), 6) and "sidebar_position" not in style.text
    # A rule drawn on the first line, and text after it, is no front matter.
    ruled = split_markdown("repo", "NOTES.md", "---\n\nAn intro.\n\n---\n\n# A\n\nx\n")
    assert "An intro." in ruled[0].text


def test_adr_metadata_nygard_and_superseded() -> None:
    adr = parse_adr("docs/adr/0007-queue.md", "# 7. Use a queue\n\nDate: 2024-05-01\n\n## Status\n\n"
                                               "Superseded by ADR 0009\n\n## Decision\n\nSupersedes ADR 3.\n")
    assert (adr.number, adr.title, adr.date, adr.state) == (7, "Use a queue", "2024-05-01", "superseded")
    assert adr.superseded_by == (9,) and adr.supersedes == (3,)


def test_an_adr_status_is_its_status_not_the_whole_line() -> None:
    adr = parse_adr("docs/adr/0005-x.md", "# 5. X\n\n## Status\n\nAccepted. Supersedes ADR 0002.\n")
    assert (adr.status, adr.state, adr.supersedes) == ("Accepted", "accepted", (2,))
    madr = parse_adr("docs/adr/0006-y.md", "# 6. Y\n\n* Status: superseded by ADR 0007; see there\n")
    assert (madr.status, madr.superseded_by) == ("superseded by ADR 0007", (7,))
    # adr-tools' own lines: its link's number ends no sentence, and what it supersedes is said on a line of its own.
    tools = parse_adr("docs/adr/0002-a.md", "# 2. A\n\nDate: 2024-01-01\n\n## Status\n\n"
                      "Superseded by [5. Use CockroachDB](0005-use-cockroachdb.md)\n\n"
                      "Supersedes [1. Record decisions](0001-record-decisions.md)\n\n## Context\n\n"
                      "An earlier draft wrongly claimed it supersedes ADR 0003, which it does not.\n")
    assert (tools.status, tools.superseded_by, tools.supersedes) == ("Superseded by [5. Use CockroachDB]", (5,), (1,))
    # A status field line's own links count (MADR's `* Status:`); a date's dot still ends its first sentence.
    field = parse_adr("docs/adr/0005-x.md", "# 5. X\n\n* Status: accepted 2024-01-05. Supersedes ADR-0003\n")
    assert (field.status, field.supersedes) == ("accepted 2024-01-05", (3,))


def test_headings_close_as_commonmark_says_and_a_line_of_blanks_is_read_at_once() -> None:
    text = "## Money ##\n\nUse Decimal.\n\n# C#\n\nA language.\n\n# a" + " " * 20_000 + "x\n\nBody.\n"
    with hang_guard(60):  # the regex this replaced backtracked for hours on that line
        sections = split_markdown("repo", "GUIDE.md", text)
        adr = parse_adr("docs/adr/0001-x.md", text)
    assert [s.heading[-1] for s in sections] == ["Money", "C#", "a" + " " * 20_000 + "x"]
    assert adr.title == "C#"  # the first level-1 heading; its hash is no closing run


# -- ranking on crafted documents ------------------------------------------------------------------


def crafted(tmp_path: Path, **config: object) -> tuple[Path, ContextConfig]:
    root = tmp_path / "crafted"
    (root / "docs").mkdir(parents=True)
    (root / "GUIDE.md").write_text(
        "# Guide\n\n## Caching\n\nThe cache is warmed at start-up; entries expire after ten minutes.\n\n"
        "## Webhooks\n\nWebhook deliveries are retried with exponential backoff; a webhook signature "
        "is checked before parsing.\n\n## Release\n\nTag releases from main.\n")
    (root / "docs" / "big.md").write_text("# Webhook appendix\n\n" + "webhook retry detail. " * 3000)
    (root / "docs" / "rules.md").write_text("# House rules\n\nBe kind in review.\n")
    return root, ContextConfig(sources=("GUIDE.md", "docs/*.md"), **config)  # type: ignore[arg-type]


def test_the_relevant_section_comes_first_within_the_budget_and_pinned_stay(tmp_path: Path) -> None:
    root, config = crafted(tmp_path, budget_tokens=400, pinned=("docs/rules.md",))
    context = load_context(root, config)
    piece = slice_context(context, "Retry failed webhook deliveries")
    assert ids(piece)[0] == "repo:docs/rules.md#House rules"  # pinned first
    assert piece.picks[0].pinned
    assert ids(piece)[1] == "repo:GUIDE.md#Guide > Webhooks"
    assert piece.picks[1].terms[:2] == ("webhook", "deliveries")
    assert piece.tokens <= 400
    assert [p.section.source for p, _ in piece.left_out] == ["docs/big.md"]  # relevant, but over budget
    assert "repo:GUIDE.md#Guide > Release" not in ids(piece)


def test_a_budget_smaller_than_the_pinned_sections_is_one_clear_error(tmp_path: Path) -> None:
    root, config = crafted(tmp_path, budget_tokens=5, pinned=("GUIDE.md#Webhooks",))
    with pytest.raises(LoomError, match="budget of 5 tokens is smaller than the pinned sections"):
        slice_context(load_context(root, config), "anything")


def test_a_task_nothing_scores_for_gets_the_shared_conventions_file_as_far_as_it_fits(tmp_path: Path) -> None:
    """A new user's three-section AGENTS.md under a budget of thousands gave "add a price field in
    cents" no section at all: the slice, in place of AGENTS.md for Codex, left its agent without
    "never use float for money"."""
    root, config = crafted(tmp_path, budget_tokens=40)
    (root / "AGENTS.md").write_text("# Working here\n\n## Money\n\nNever use float for money.\n\n"
                                    "## Style\n\n" + "Keep functions short and named for what they do. " * 20 + "\n")
    config = ContextConfig(sources=("AGENTS.md", *config.sources), budget_tokens=40)
    piece = slice_context(load_context(root, config), "add a price field to items using cents")
    assert ids(piece) == ["repo:AGENTS.md#Working here > Money"]  # Style does not fit
    assert {p.why() for p in piece.picks} == {"the shared conventions file: nothing scored 30 for this task"}
    # ...and says so, as any section left out (it went unsaid: an agent without a convention, no word why).
    [(style, why)] = piece.left_out
    assert style.section.id == "repo:AGENTS.md#Working here > Style" and why.startswith("over budget (")
    # A section that scored and did not fit, then did not fit as a convention either: said once.
    tight = slice_context(load_context(root, config), "keep functions short and named for what they do",
                          budget=5)
    said = [pick.section.id for pick, _why in tight.left_out]
    assert len(said) == len(set(said)) and "repo:AGENTS.md#Working here > Style" in said
    # Something scored: the slice is what scored, as before; no conventions file, nothing.
    assert "repo:AGENTS.md#Working here > Money" not in ids(slice_context(load_context(root, config), "webhook"))
    # A pinned section first, then the rest of the file in what the budget leaves (a pin took the whole
    # file's place: an agent given one section of AGENTS.md, the rest lost).
    pinned = ContextConfig(sources=config.sources, budget_tokens=40, pinned=("AGENTS.md#Working here > Money",))
    both = slice_context(load_context(root, pinned), "add a price field to items using cents")
    assert ids(both)[0] == "repo:AGENTS.md#Working here > Money" and both.picks[0].pinned
    assert [p.section.id for p, _why in both.left_out] == ["repo:AGENTS.md#Working here > Style"]  # over budget
    roomy = ContextConfig(sources=config.sources, budget_tokens=4000, pinned=("AGENTS.md#Working here > Money",))
    assert ids(slice_context(load_context(root, roomy), "add a price field to items using cents")) == [
        "repo:AGENTS.md#Working here > Money", "repo:AGENTS.md#Working here > Style"]
    (root / "AGENTS.md").unlink()
    assert ids(slice_context(load_context(root, config), "add a price field to items using cents")) == []


def test_a_typo_still_matches_through_rapidfuzz(tmp_path: Path) -> None:
    root, config = crafted(tmp_path)
    piece = slice_context(load_context(root, config), "webhok signatures")
    assert ids(piece)[0] == "repo:GUIDE.md#Guide > Webhooks"


def test_the_term_index_counts_words_as_the_task_splitter_does(tmp_path: Path) -> None:
    """The index cuts text into runs of letters in C, stems the distinct one-word runs together and
    splits only the runs that hold several words; every stem's postings must equal counting `_WORD`
    words one by one, as the slow way did."""
    from collections import Counter

    from loomtui.knowledge.terms import WORD, TermIndex, stem_of

    texts = ["# Invoices\n\nThe InvoiceCalculator rounds invoices; invoiced HTTPServer calls `round_minor_units`.\n",
             "# Café\n\nNaïve café text, policies and policy, updates, x2y, AB, CamelCaseCamel, ies, dies.\n",
             "# Templates\n\nTEMPLATE templates_v2 template-engine: \t\u00a0templating.\n",
             "# Exports\n\nInvoices as PDFs and their URLs, through the APIs of HTTPServers, IDs.\n"]
    sections = [split_markdown("repo", f"d{i}.md", text)[0] for i, text in enumerate(texts)]
    index = TermIndex(sections)
    expected: dict[str, Counter[int]] = {}
    for i, section in enumerate(sections):
        for word in WORD.findall(section.text):
            if stem := stem_of(word):
                expected.setdefault(stem, Counter())[i] += 1
    assert set(expected) == index.vocabulary
    for term, posts in expected.items():
        assert index.postings(term) == dict(posts), term
    assert "updat" not in index.vocabulary  # "updates": a stop word before and after stemming
    # An acronym's plural is one word: "PDFs" was `pd` and `fs`, and a task about PDFs matched nothing.
    assert {"pdf", "url", "api"} <= index.vocabulary and not {"pd", "fs", "ur", "ls"} & index.vocabulary
    from loomtui.knowledge.terms import task_terms

    assert task_terms("Export invoices as PDFs") == ["export", "invoic", "pdf"]
    assert task_terms("List PRs and VMs by IDs") == task_terms("List PR and VM by ID") == ["list", "pr", "vm", "id"]
    assert {"id"} <= index.vocabulary and "ids" not in index.vocabulary


def test_a_claim_pulls_what_names_it_most_specifically(workspace: Workspace) -> None:
    """A claim on one method of payments/invoices.py pulls the decision and conventions about its
    rounding (ADR 0002 names the helper it calls), not every section that names `payments/`."""
    piece, _ = slice_for_task(workspace, "Speed up invoice totals",
                              ["payments/invoices.py::InvoiceCalculator.subtotal"])
    got = ids(piece)
    assert {"repo:docs/adr/0002-bankers-rounding-per-line-item.md", "repo:docs/conventions/money.md#Money",
            "repo:docs/conventions/money.md#Money > Rounding",
            "repo:AGENTS.md#Working on the billing service > Rounding"} <= set(got), got
    for unrelated in ("repo:docs/conventions/logging.md#Logging",
                      "repo:docs/adr/0004-notifications-use-public-payments-api.md",
                      "repo:docs/adr/0003-repository-interface-for-storage.md",
                      "repo:AGENTS.md#Working on the billing service > Testing",
                      "repo:AGENTS.md#Working on the billing service > Module boundaries"):
        assert unrelated not in got, (unrelated, got)
    assert len(got) <= 6, got
    why = {p.section.id: p.pulled_by for p in piece.picks}
    assert "round_minor_units` (a dependency of it)" in why["repo:docs/adr/0002-bankers-rounding-per-line-item.md"]
    assert "(it holds the claimed region)" in why["repo:AGENTS.md#Working on the billing service > Rounding"]
    # The whole package claimed: a section naming `payments/` names exactly the claim.
    whole, _ = slice_for_task(workspace, "Tidy up", ["payments/"])
    testing = next(p for p in whole.picks if p.section.id.endswith("> Testing"))
    assert testing.claim_score == 100 and "(the claimed directory)" in testing.pulled_by


# -- the sample repository -------------------------------------------------------------------------


def test_invoice_totals_get_adr_0002_and_the_money_conventions(workspace: Workspace) -> None:
    piece, _ = slice_for_task(workspace, "Speed up invoice totals")
    got = ids(piece)
    assert "repo:docs/adr/0002-bankers-rounding-per-line-item.md" in got
    assert "repo:docs/conventions/money.md#Money" in got
    claimed, _ = slice_for_task(workspace, "Speed up invoice totals",
                                ["payments/invoices.py::InvoiceCalculator"])
    assert "repo:docs/adr/0002-bankers-rounding-per-line-item.md" in ids(claimed)
    rounding = next(p for p in claimed.picks if p.section.id.endswith("> Rounding"))
    assert "claim payments/invoices.py::InvoiceCalculator" in rounding.pulled_by


def test_a_word_no_section_has_does_not_push_the_matching_sections_out(workspace: Workspace) -> None:
    """"rename the logger" lost "Errors and logging": a word found nowhere weighed as the rarest word does,
    and divided every match down."""
    for task in ("logger", "rename the logger"):
        piece, _ = slice_for_task(workspace, task)
        titles = [p.section.title for p in piece.picks]
        assert {"Logging", "Errors and logging"} <= set(titles), (task, titles)


def test_notification_templates_do_not_get_rounding_or_money(workspace: Workspace) -> None:
    for targets in ((), ("notifications/templates/",)):
        piece, _ = slice_for_task(workspace, "Fix typos in the notification templates", targets)
        got = ids(piece)
        assert "repo:docs/adr/0004-notifications-use-public-payments-api.md" in got
        assert not [i for i in got if "0002" in i or "money.md" in i or i.endswith("> Money")], got


def test_the_slice_renders_every_pick_with_why(workspace: Workspace) -> None:
    piece, _ = slice_for_task(workspace, "Speed up invoice totals")
    text = piece.render()
    assert text.startswith("# Context for this task")
    assert "Speed up invoice totals" in text and piece.version in text
    assert text.count("> from ") == len(piece.picks)
    assert "ROUND_HALF_EVEN" in text


# -- versions and drift -------------------------------------------------------------------------------


def test_versions_follow_history_and_match_the_working_tree(sample: Path) -> None:
    config = ContextConfig(sources=("AGENTS.md", "docs/adr/*.md", "docs/conventions/*.md"))
    first = load_context(sample, config)
    agents = sample / "AGENTS.md"
    agents.write_text(agents.read_text().replace("never `float`", "never `float` (see ADR 0001)"))
    edited = load_context(sample, config)
    assert edited.version != first.version
    git(sample, "commit", "-qam", "AGENTS.md: point at ADR 0001")
    (sample / "src.py").write_text("x = 1\n")
    git(sample, "add", "src.py")
    git(sample, "commit", "-qm", "code only")
    versions = context_versions(sample, config)
    assert [v.version for v in versions] == [edited.version, first.version]
    assert versions[0].changed == ("AGENTS.md",)
    assert load_context(sample, config, at="HEAD~2").version == first.version
    odd = sample / "docs" / "conventions" / 'naïve "money".md'  # a name git quotes unless asked not to
    odd.write_text("# Naive money\n\nNever.\n")
    git(sample, "add", "-A")
    git(sample, "commit", "-qm", "a convention with an odd name")
    assert context_versions(sample, config)[0].changed == ('docs/conventions/naïve "money".md',)
    # A commit to the config alone (it names the sources) says so: it was listed as changing "[]".
    (sample / ".loom").mkdir(exist_ok=True)
    (sample / ".loom" / "loom.yaml").write_text("context: {budget_tokens: 3000}\n")
    git(sample, "add", "-A")
    git(sample, "commit", "-qm", "a larger context budget")
    assert context_versions(sample, config)[0].changed == (".loom/loom.yaml",)
    # A directory a file glob matches holds no source: its files made a version `show` and `drift` never named.
    (sample / "docs" / "conventions" / "odd.md").mkdir()
    (sample / "docs" / "conventions" / "odd.md" / "inner.txt").write_text("x\n")
    git(sample, "add", "-A")
    git(sample, "commit", "-qm", "a directory named like a convention")
    agents.write_text(agents.read_text() + "\nOne more rule.\n")
    git(sample, "commit", "-qam", "AGENTS.md: one more rule")
    assert context_versions(sample, config)[0].version == load_context(sample, config, at="HEAD").version


def test_a_commit_to_agents_md_makes_a_sandbox_stale(workspace: Workspace, sample: Path) -> None:
    now = time.time()
    workspace.store.add_sandbox(SandboxRecord(id="inv1", task="Speed up invoice totals", runtime="script",
                                              status="running", created=now, updated=now))
    index = knowledge_index(workspace)
    piece, context = slice_for_task(workspace, "Speed up invoice totals", at="HEAD", index=index)
    record_slice(workspace, "inv1", piece, context, written=["context.md"])
    assert workspace.store.get_sandbox("inv1").data["context"]["version"] == context.version
    assert workspace.audit.tail(1)[0].action == "context.sliced"
    assert [s.status for s in drift_report(workspace, index=index).sandboxes] == ["fresh"]

    agents = sample / "AGENTS.md"
    agents.write_text(agents.read_text().replace("Invoice lines are rounded one by one",
                                                 "Invoice lines are always rounded one by one"))
    git(sample, "commit", "-qam", "AGENTS.md: stress per-line rounding")
    report = drift_report(workspace, index=index)
    [drift] = report.sandboxes
    assert drift.status == "stale"
    assert {"id": "repo:AGENTS.md#Working on the billing service > Rounding", "title": "Rounding",
            "label": "AGENTS.md > Working on the billing service > Rounding [repo]", "change": "changed"} in drift.changes
    assert "repo:AGENTS.md (changed)" in drift.files


def test_drift_checks_adrs_and_code_in_one_tree_and_sandboxes_against_head(workspace: Workspace,
                                                                           sample: Path) -> None:
    """The ADRs and the code they name are both read from the working tree; sandboxes are compared
    with HEAD, by `drift_report` and `sandbox_drift_now` (the app's Context tab) alike."""
    now = time.time()
    workspace.store.add_sandbox(SandboxRecord(id="inv2", task="Speed up invoice totals", runtime="script",
                                              status="running", created=now, updated=now))
    index = knowledge_index(workspace)
    piece, context = slice_for_task(workspace, "Speed up invoice totals", at="HEAD", index=index)
    record_slice(workspace, "inv2", piece, context)
    currency = sample / "payments" / "currency.py"
    source = currency.read_text()
    currency.write_text(source[:source.index("def to_minor_units")] + source[source.index("def from_minor_units"):])
    assert any(f.adr.endswith("0002-bankers-rounding-per-line-item.md") and f.kind == "missing"
               for f in drift_report(workspace).adrs)
    adr = sample / "docs" / "adr" / "0002-bankers-rounding-per-line-item.md"
    adr.write_text(adr.read_text().replace("`payments.currency.round_minor_units` and\n  `to_minor_units`",
                                           "`payments.currency.round_minor_units`"))
    report = drift_report(workspace)  # the ADR's fix is not committed, like the code's change: no flag
    assert not report.adrs and report.checked_at == "worktree"
    assert [s.status for s in report.sandboxes] == ["fresh"]  # HEAD has not moved
    assert sandbox_drift_now(workspace, "inv2").status == "fresh"
    git(sample, "commit", "-qam", "to_minor_units goes")
    assert [s.status for s in drift_report(workspace).sandboxes] == ["stale"]
    now_drift = sandbox_drift_now(workspace, "inv2")
    assert now_drift.status == "stale" and {"id": "repo:docs/adr/0002-bankers-rounding-per-line-item.md",
                                             "title": "ADR 0002: Banker's rounding, per line item, in one module",
                                             "label": "docs/adr/0002-bankers-rounding-per-line-item.md [repo]",
                                             "change": "changed"} in now_drift.changes
    with pytest.raises(LoomError, match="no sandbox nope"):
        sandbox_drift_now(workspace, "nope")


def test_an_adr_naming_a_deleted_function_is_flagged(workspace: Workspace, sample: Path) -> None:
    currency = sample / "payments" / "currency.py"
    assert not adr_flags(context_of(workspace, index=knowledge_index(workspace)))
    source = currency.read_text()
    start = source.index("def to_minor_units")
    end = source.index("def from_minor_units")
    currency.write_text(source[:start] + source[end:])
    (sample / "docs" / "adr" / "0005-queue.md").write_text(
        "# 5. Old queue\n\n## Status\n\nSuperseded by ADR 6\n\n## Decision\n\nUse `storage/queue.py`.\n")
    flags = adr_flags(context_of(workspace, index=knowledge_index(workspace)))
    kinds = {(f.title, f.kind) for f in flags}
    assert ("ADR 0002: Banker's rounding, per line item, in one module", "missing") in kinds
    assert ("ADR 0005: Old queue", "missing") in kinds and ("ADR 0005: Old queue", "superseded") in kinds
    missing = next(f for f in flags if "0002" in f.adr)
    assert "`to_minor_units` (defined nowhere in the code)" in missing.detail


def test_conventions_rules_find_float_and_round_in_the_code(sample: Path) -> None:
    config = parse_config((sample / ".loom" / "loom.yaml").read_text(), ".loom/loom.yaml").context
    context = load_context(sample, config)
    assert {r.id for r in context.rules} == {"no-float-for-money", "rounding-only-in-currency"}
    assert convention_findings(sample, context) == []
    tax = sample / "payments" / "tax.py"
    tax.write_text(tax.read_text() + "\n\ndef quick(x):\n    return round(float(x), 2)\n")
    found = [str(f) for f in convention_findings(sample, context)]
    assert any(f.startswith("payments/tax.py:") and "rounding-only-in-currency: calls round()" in f for f in found)
    assert any("no-float-for-money: calls float()" in f for f in found)


def test_a_rule_reads_a_call_at_the_end_of_a_long_chain_and_skips_code_too_deep_to_parse() -> None:
    from loomtui.knowledge.rules import Rule, check_file

    rule = Rule("no-round", "use the currency module", ("*.py",), (), ("*.round", "round"), (), "repo:R.md:1")
    chain = "x = a" + ".b" * 2000 + ".round(1)\n"  # parses, but twice as deep as Python recurses
    [finding] = check_file([rule], "deep.py", chain)
    assert (finding.line, finding.what.endswith(".b.round()")) == (1, True)
    for too_deep in ("x = " + "-" * 200_000 + "1\n", "x = a" + ".b" * 300_000 + "\n"):  # Memory-, RecursionError
        assert check_file([rule], "deep.py", too_deep + "round(2)\n") == []


def test_a_second_loom_rule_with_an_id_already_used_is_a_problem_and_left_out(sample: Path) -> None:
    conventions = sample / "docs" / "conventions"
    (conventions / "zz-again.md").write_text("# Again\n\n```loom-rule\nid: no-float-for-money\nmessage: twice\n"
                                          "forbid: {calls: [int]}\n```\n")
    config = parse_config((sample / ".loom" / "loom.yaml").read_text(), ".loom/loom.yaml").context
    context = load_context(sample, config)
    assert [r.message for r in context.rules if r.id == "no-float-for-money"] != ["twice"]
    (problem,) = [p for p in context.problems if "zz-again.md" in p]
    assert problem.startswith("docs/conventions/zz-again.md:3: loom-rule id 'no-float-for-money' is already used at ")
    assert problem.endswith("; this block is left out")


# -- layers -----------------------------------------------------------------------------------------


def test_org_layers_merge_in_order_and_the_more_specific_wins(tmp_path: Path, sample: Path) -> None:
    org = tmp_path / "org"
    (org / "conventions").mkdir(parents=True)
    (org / "conventions" / "logging.md").write_text("# Logging\n\nOrg: log as JSON.\n")
    (org / "conventions" / "security.md").write_text("# Security\n\nOrg: never log secrets.\n")
    git(org, "init", "-q", "-b", "main")
    git(org, "add", "-A")
    git(org, "commit", "-qm", "v1")
    git(org, "tag", "v1")
    (org / "conventions" / "security.md").write_text("# Security\n\nOrg v2: rotate keys.\n")
    git(org, "commit", "-qam", "v2")
    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "security.md").write_text("# Security\n\nBusiness unit: secrets live in the vault.\n")
    config = ContextConfig(sources=("docs/conventions/*.md",), layers=(
        ContextLayer("org", repo=str(org), ref="v1", sources=("conventions/*.md",)),
        ContextLayer("bu", dir=str(unit)),
    ))
    context = load_context(sample, config)
    by_key = {s.key: s for s in context.sections}
    assert by_key["security"].layer == "bu" and "vault" in by_key["security"].text
    assert by_key["logging"].layer == "repo"  # the repository's docs/conventions/logging.md wins
    assert ("org:conventions/security.md#Security", "bu:security.md#Security") in context.overridden
    assert ("org:conventions/logging.md#Logging", "repo:docs/conventions/logging.md#Logging") in context.overridden
    assert [s.name for s in context.layers] == ["org", "bu", "repo"]
    moved = load_context(sample, ContextConfig(sources=config.sources, layers=(
        ContextLayer("org", repo=str(org), ref="main", sources=("conventions/*.md",)), config.layers[1])))
    assert moved.version != context.version  # the org layer moving is a new version


def test_layer_config_errors_name_file_and_line() -> None:
    text = "context:\n  layers:\n    - name: org\n      dir: /x\n      ref: main\n"
    with pytest.raises(ConfigError, match=r"^\.loom/loom\.yaml:5: context\.layers\[0\]\.ref: ref applies only"):
        parse_config(text, ".loom/loom.yaml")
    with pytest.raises(ConfigError, match=r":3: context\.layers\[0\]: give exactly one of repo"):
        parse_config("context:\n  layers:\n    - name: org\n", ".loom/loom.yaml")
    with pytest.raises(ConfigError, match="duplicate layer name 'repo'"):
        parse_config("context:\n  layers:\n    - {name: repo, dir: /x}\n", ".loom/loom.yaml")


# -- bad input ------------------------------------------------------------------------------------------


def test_bad_sources_are_reported_per_file_and_the_rest_is_used(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "good.md").write_text("# Good\n\nFine text.\n")
    (root / "docs" / "latin1.md").write_bytes("# Caf\xe9\n\nna\xefve text\n".encode("latin-1"))
    (root / "docs" / "binary.md").write_bytes(b"\x00\x01\x02")
    (root / "docs" / "huge.md").write_text("# Huge\n\n" + "line of text\n" * 100_000)
    import os

    with open(os.path.join(os.fsencode(root), b"docs/named-in-latin1-\xe9.md"), "w") as odd:  # a name git allows
        odd.write("# Odd\n")
    locked = root / "docs" / "locked.md"
    locked.write_text("# Locked\n")
    locked.chmod(0)
    try:
        context = load_context(root, ContextConfig(sources=("AGENTS.md", "docs/*.md")))
    finally:
        locked.chmod(0o644)
    problems = "\n".join(context.problems)
    assert "AGENTS.md: no such file" in problems
    assert "docs/latin1.md:1: not valid UTF-8" in problems
    assert "docs/binary.md: a binary file, skipped" in problems
    assert "docs/huge.md: 1,300,008 bytes; only its first" in problems and "the whole lines within" in problems
    assert "'docs/named-in-latin1-\\udce9.md': its name is not UTF-8; not read (rename the file)" in problems
    if os.geteuid() != 0:
        assert "docs/locked.md: cannot read" in problems
    titles = {s.title for s in context.sections}
    assert {"Good", "Huge"} <= titles
    huge = next(s for s in context.sections if s.title == "Huge")
    assert len(huge.text) <= MAX_SOURCE_BYTES
    assert any("Caf\ufffd" == s.title for s in context.sections)


def test_a_layer_reads_so_many_files_and_bytes_then_says_how_many_it_left_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A glob over a tree of large files (an agent can commit one) is read up to a bound, in path
    order, the same from a commit as from the working tree, and what is left out is said once."""
    from loomtui.knowledge import sources

    root = tmp_path / "many"
    (root / "docs").mkdir(parents=True)
    for n in range(6):
        (root / "docs" / f"{n}.md").write_text(f"# Doc {n}\n\n" + "words " * 20 + "\n")  # 136 bytes
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "docs")
    config = ContextConfig(sources=("docs/",))
    monkeypatch.setattr(sources, "MAX_LAYER_FILES", 4)
    by_count = load_context(root, config)
    assert [f.path for f in by_count.files] == ["docs/0.md", "docs/1.md", "docs/2.md", "docs/3.md"]
    assert by_count.problems == ["docs/4.md: and 2 more source files left out (a layer reads at most 4 files "
                                 "and 32 MiB)"]
    monkeypatch.setattr(sources, "MAX_LAYER_BYTES", 300)  # reached after the third file
    by_bytes = load_context(root, config)
    assert [f.path for f in by_bytes.files] == ["docs/0.md", "docs/1.md", "docs/2.md"]
    assert "docs/3.md: and 3 more source files left out" in by_bytes.problems[0]
    at_head = load_context(root, config, at=git(root, "rev-parse", "HEAD").strip())
    assert at_head.version == by_bytes.version and at_head.problems == by_bytes.problems


def test_a_link_to_another_source_is_read_once_in_the_working_tree_as_at_a_commit(tmp_path: Path) -> None:
    """`CLAUDE.md -> AGENTS.md`: every section twice in the working tree, once at HEAD, and a clean tree read
    as changed (`context diff HEAD worktree`: "2 sections differ")."""
    root = tmp_path / "linked"
    root.mkdir()
    (root / "AGENTS.md").write_text("# Rules\n\n## Money\n\nUse Decimal.\n\n## Style\n\nRun black.\n")
    (root / "CLAUDE.md").symlink_to("AGENTS.md")
    (root / "C2.md").symlink_to("CLAUDE.md")  # a chain: read as what it names, at a commit as in the tree
    (root / "GONE.md").symlink_to("nothing.md")
    (root / "docs").mkdir()
    (root / "docs" / "outside.md").symlink_to("/etc/passwd")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "docs")
    config = ContextConfig(sources=("AGENTS.md", "CLAUDE.md", "C2.md"))
    here, at_head = load_context(root, config), load_context(root, config, at="HEAD")
    assert [s.id for s in here.sections] == ["repo:AGENTS.md#Rules > Money", "repo:AGENTS.md#Rules > Style"]
    assert here.version == at_head.version
    # The link is its target, read by its own name: nothing lost, so nothing said (every command warned of it).
    # At a commit alike (it read "CLAUDE.md: no such file" there: `init`'s own sources, at every drift).
    assert here.problems == [] == at_head.problems, (here.problems, at_head.problems)
    for at in (None, "HEAD"):
        # Its target no source: read through it, by its own name (it was left out, said "read once, by its own
        # name"); a link to a link, or to nothing, is said.
        alone = load_context(root, ContextConfig(sources=("CLAUDE.md", "C2.md", "GONE.md")), at=at)
        assert [s.id for s in alone.sections] == ["repo:CLAUDE.md#Rules > Money", "repo:CLAUDE.md#Rules > Style"]
        assert alone.version == load_context(root, ContextConfig(sources=("CLAUDE.md",))).version
        assert len(alone.problems) == 1, alone.problems
        assert alone.problems[0].startswith("GONE.md: cannot read: a link to nothing.md: no such file"), alone.problems
        chain = load_context(root, ContextConfig(sources=("C2.md",)), at=at)
        assert chain.problems == ["C2.md: cannot read: a link to CLAUDE.md, which is a link too"], chain.problems
        out = load_context(root, ContextConfig(sources=("docs/*.md",)), at=at)  # unsaid at a commit, it was
        assert out.problems == ["docs/outside.md: cannot read: a symlink leading out of the tree"], out.problems


def test_a_glob_matching_nothing_is_reported_and_a_directory_is_never_a_source(sample: Path) -> None:
    odd = sample / "docs" / "conventions" / "weird.md"
    odd.mkdir()
    (odd / "inside.md").write_text("# Inside\n\nNot a convention: a file in a directory named like one.\n")
    config = ContextConfig(sources=("AGENTS.md", "docs/conventions/*.md", "docs/nothere/*.md"))
    for at in (None, "HEAD"):
        if at:
            git(sample, "add", "-A")
            git(sample, "commit", "-qm", "a directory named weird.md")
        context = load_context(sample, config, at=at)
        assert "docs/nothere/*.md: no file matches" in context.problems, context.problems
        assert not [f.path for f in context.files if "weird.md" in f.path]
        assert any(p.startswith("docs/conventions/weird.md: a directory, not a source file") for p in context.problems)
        assert {f.path for f in context.files} == {"AGENTS.md", "docs/conventions/error-handling.md",
                                                   "docs/conventions/logging.md", "docs/conventions/money.md"}
    named = load_context(sample, ContextConfig(sources=("docs/conventions/weird.md/",)))
    assert [f.path for f in named.files] == ["docs/conventions/weird.md/inside.md"]  # a directory, named as one
    away = load_context(sample, ContextConfig(sources=("AGENTS.md", "../outside-secret.md", "docs/../../x.md")))
    assert [p for p in away.problems if "outside" in p] == [
        "../outside-secret.md: outside the repository (sources are paths inside it, from its root)",
        "docs/../../x.md: outside the repository (sources are paths inside it, from its root)"]


def test_a_repository_without_history(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    (root / "AGENTS.md").write_text("# Rules\n\nBe careful.\n")
    config = ContextConfig()
    assert context_versions(root, config) == []
    assert len(load_context(root, config).sections) == 1
    with pytest.raises(LoomError, match="no commits yet"):
        load_context(root, config, at="HEAD")
    with pytest.raises(LoomError, match="HEAD: the repository has no commits yet"):
        resolve_at(root, "HEAD", config)
    assert resolve_at(root, "worktree", config) is None


def test_mentions_without_an_index_are_unchecked(sample: Path) -> None:
    context = resolve_mentions(load_context(sample, ContextConfig()), None)
    adr = next(s for s in context.sections if s.adr is not None and s.adr.number == 2)
    assert all(m.exists is not False for m in adr.mentions)
    assert slice_context(context, "invoice totals", [ClaimInput("payments/invoices.py", ("payments/invoices.py",))])


def test_a_slice_with_an_adr_another_supersedes_says_which_decision_stands(workspace: Workspace,
                                                                           sample: Path) -> None:
    """A slice held ADR 0002 and ADR 0005 ("Supersedes ADR 0002"), each with its score alone: its agent had two
    decisions and no word which one stands."""
    (sample / "docs" / "adr" / "0005-rounding-at-the-total.md").write_text(
        "# 5. Rounding at the invoice total\n\n## Status\n\nAccepted. Supersedes ADR 0002.\n\n## Decision\n\n"
        "Round once, at the invoice total, with banker's rounding: per line item rounding drifted.\n")
    piece = slice_context(context_of(workspace), "change the banker's rounding of invoice line items")
    older = next(p for p in piece.picks if "0002" in p.section.id)
    newer = next(p for p in piece.picks if "0005" in p.section.id)
    assert older.superseded_by == "ADR 0005: Rounding at the invoice total" and not newer.superseded_by
    said = "SUPERSEDED by ADR 0005: Rounding at the invoice total: follow that decision where the two differ"
    assert said in older.why() and said in piece.render() and older.as_dict()["superseded_by"]


def test_a_rejected_or_proposed_adr_in_a_slice_says_it_is_no_decision_in_force(workspace: Workspace,
                                                                                sample: Path) -> None:
    """A rejected ADR was given to the agent as any decision is (`score 31; terms: ...`), no word that it was not."""
    (sample / "docs" / "adr" / "0006-rounding-per-customer.md").write_text(
        "# 6. Banker's rounding per customer\n\n## Status\n\nRejected\n\n## Decision\n\n"
        "Round invoice line items per customer with banker's rounding.\n")
    piece = slice_context(context_of(workspace), "change the banker's rounding of invoice line items")
    rejected = next(p for p in piece.picks if "0006" in p.section.id)
    assert rejected.why().endswith("; REJECTED: not a decision in force") and "REJECTED: not a decision" in \
        piece.render()
    accepted = next(p for p in piece.picks if "0002" in p.section.id)
    assert "not a decision in force" not in accepted.why()
    # A status quoted as YAML front matter writes it (MADR's `status: "rejected"`): read as the same word.
    (sample / "docs" / "adr" / "0006-rounding-per-customer.md").write_text(
        '---\nstatus: "rejected"\n---\n# 6. Banker\'s rounding per customer\n\n## Decision\n\n'
        "Round invoice line items per customer with banker's rounding.\n")
    quoted = slice_context(context_of(workspace), "change the banker's rounding of invoice line items")
    assert next(p for p in quoted.picks if "0006" in p.section.id).why().endswith("; REJECTED: not a decision in force")


def test_the_superseded_note_never_points_at_a_decision_that_does_not_stand(tmp_path: Path) -> None:
    """From a review: two ADRs superseding each other each told the agent to follow the other; a number no ADR
    has was given as the one to follow; a rejected ADR overrode an accepted one; an ADR superseded itself.
    The drift flags read the same relation (they had one of their own, and named a rejected ADR and the ADR
    itself as the newer decisions to follow)."""
    from loomtui.knowledge.supersession import supersession

    def adr(number: int, status: str, title: str) -> str:
        return f"# {number}. {title}\n\n## Status\n\n{status}\n\n## Decision\n\nRound money.\n"

    files = {"docs/adr/0002-a.md": adr(2, "Accepted. Supersedes ADR 0003.", "Per line"),
             "docs/adr/0003-b.md": adr(3, "Accepted. Supersedes ADR 0002.", "At the total"),
             "docs/adr/0004-c.md": adr(4, "Superseded by ADR 0009", "Rounding up"),
             "docs/adr/0006-d.md": adr(6, "Rejected. Supersedes ADR 0004.", "Rounding down"),
             "docs/adr/0007-e.md": adr(7, "Superseded by ADR 0007", "Rounding mode"),
             "docs/adr/0008-f.md": adr(8, "Accepted. Supersedes ADR 0007.", "Banker's"),
             "docs/adr/0010-g.md": adr(10, "Superseded by ADR 0011", "Cents"),
             "docs/adr/0011-h.md": adr(11, "Proposed. Supersedes ADR 0010.", "Mills")}
    root = tmp_path / "adrs"
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    context = load_context(root, ContextConfig(sources=("docs/adr/*.md",)))
    assert len([s for s in context.sections if s.adr is not None]) == 8
    numbers = {s.id: s.adr.number for s in context.sections if s.adr is not None}
    relation = supersession(context)
    by_number = {numbers[section_id]: relation.newer(section_id) for section_id in relation.by}
    assert by_number == {4: "ADR 0009 (not in the repository)", 7: "ADR 0008: Banker's"}
    assert {flag.title.split(":")[0]: flag.detail for flag in adr_flags(context)} == {
        "ADR 0002": "it and ADR 0003: At the total each supersede the other: say which stands",
        "ADR 0003": "it and ADR 0002: Per line each supersede the other: say which stands",
        "ADR 0004": "superseded by ADR 0009 (not in the repository): agents should follow the newer decision",
        # It named no one ("superseded: agents should follow the newer decision"), and the newer is only proposed.
        "ADR 0010": "superseded, it says, by ADR 0011: Mills (proposed), which decides nothing yet: no decision in "
                    "force replaces it (accept the newer one, or say this one's status as it stands)"}
    # ADR 0007 is retired as it says (ADR 0008, accepted, supersedes it): flagged, `context drift` failed CI for
    # good over a log kept exactly as adr-tools writes it.


def _adrs(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def _adr(number: int, title: str, status: str, decision: str) -> str:
    return f"# {number}. {title}\n\nDate: 2023-01-01\n\n## Status\n\n{status}\n\n## Decision\n\n{decision}\n"


def test_adr_numbers_are_each_folders_own(tmp_path: Path) -> None:
    """A monorepo's services each number their ADRs from 1: payments' ADR 1, superseded by its ADR 2, was said
    superseded by search's ADR 2, and search's accepted ADR 1 superseded by payments' ADR 2."""
    from loomtui.knowledge.supersession import supersession

    _adrs(tmp_path, {
        "payments/docs/adr/0001-idempotent.md": _adr(1, "Refunds are idempotent",
                                                     "Superseded by [2. Refund via ledger](0002-ledger.md)", "Keys."),
        "payments/docs/adr/0002-ledger.md": _adr(2, "Refund via ledger", "Accepted\n\nSupersedes [1. Refunds are "
                                                 "idempotent](0001-idempotent.md)", "Ledger."),
        "search/docs/adr/0001-elasticsearch.md": _adr(1, "Use Elasticsearch", "Accepted", "Search on Elasticsearch."),
        "search/docs/adr/0002-refresh.md": _adr(2, "Index refresh interval", "Accepted", "Every 30 s.")})
    context = load_context(tmp_path, ContextConfig(sources=("**/docs/adr/*.md",)))
    relation = supersession(context)
    assert {section_id.split(":")[1]: relation.newer(section_id) for section_id in relation.by} == {
        "payments/docs/adr/0001-idempotent.md": "ADR 0002: Refund via ledger"}
    assert not any("search" in flag.adr for flag in adr_flags(context))
    # Two of one folder with one number (two branches' ADR 0002, merged): flagged, to renumber one.
    _adrs(tmp_path, {"search/docs/adr/0002-shards.md": _adr(2, "Three shards", "Accepted", "Three.")})
    context = load_context(tmp_path, ContextConfig(sources=("**/docs/adr/*.md",)))
    [flag] = adr_flags(context)
    assert (flag.kind, flag.detail) == ("number", "its number is ADR 0002: Index refresh interval's too "
                                                  "(search/docs/adr/0002-refresh.md): renumber one"), flag


def test_a_slice_gives_the_decision_in_force_first_and_marks_every_superseded_adr(tmp_path: Path) -> None:
    """A chain (2 by 3, 3 by 6): ADR 2 went to the agent with no note (3 "does not stand"), and ADR 6 was not
    picked at all; a bare `status: superseded` went unmarked; under a tight budget the old decision was kept
    and the one in force left out (equal scores: by path, the older first)."""
    _adrs(tmp_path, {
        "docs/adr/0002-float.md": _adr(2, "Use float for invoice amounts", "Superseded by [3. Use Decimal]"
                                       "(0003-decimal.md)", "Store invoice amounts as float."),
        "docs/adr/0003-decimal.md": _adr(3, "Use Decimal for invoice amounts", "Superseded by [6. Use integer "
                                         "cents](0006-cents.md)", "Invoice amounts are Decimal."),
        "docs/adr/0006-cents.md": _adr(6, "Use integer cents", "Accepted\n\nSupersedes [3. Use Decimal]"
                                       "(0003-decimal.md)", "Store integer cents."),
        "docs/adr/0007-retries.md": "---\nstatus: superseded\n---\n# Retry invoice emails three times\n\n"
                                    "## Decision Outcome\n\nInvoice emails are retried three times.\n"})
    context = load_context(tmp_path, ContextConfig(sources=("docs/adr/*.md",)))
    piece = slice_context(context, "change how invoice amounts are stored and retry invoice emails")
    why = {pick.section.source: pick.why() for pick in piece.picks}
    assert "SUPERSEDED by ADR 0006: Use integer cents (through ADR 0003)" in why["docs/adr/0002-float.md"], why
    assert why["docs/adr/0007-retries.md"].endswith("; SUPERSEDED: not a decision in force"), why
    assert "in force in place of ADR 0002: Use float for invoice amounts" in why["docs/adr/0006-cents.md"], why
    order = [pick.section.source for pick in piece.picks]
    assert order.index("docs/adr/0006-cents.md") < order.index("docs/adr/0002-float.md"), order
    tight = slice_context(context, "invoice amounts", budget=50)
    assert [pick.section.source for pick in tight.picks] == ["docs/adr/0006-cents.md"], tight.render()


def test_an_adr_a_sandbox_got_superseded_since_makes_it_stale(workspace: Workspace, sample: Path) -> None:
    """ADR 0002 in a sandbox's slice, then a new ADR superseding it: drift said "behind" (the app: "not in this
    sandbox's sections"), and the agent went on following the old decision."""
    now = time.time()
    workspace.store.add_sandbox(SandboxRecord(id="inv3", task="Speed up invoice totals", runtime="script",
                                              status="running", created=now, updated=now))
    piece, context = slice_for_task(workspace, "Speed up invoice totals", at="HEAD")
    assert any("0002" in pick.section.id for pick in piece.picks)
    record_slice(workspace, "inv3", piece, context)
    (sample / "docs" / "adr" / "0009-round-at-the-total.md").write_text(
        "# 9. Round at the total\n\n## Status\n\nAccepted. Supersedes ADR 0002.\n\n## Decision\n\nPinned wording.\n")
    git(sample, "add", "-A")
    git(sample, "commit", "-qm", "ADR 9 supersedes 2")
    said = {"id": "repo:docs/adr/0002-bankers-rounding-per-line-item.md",
            "title": "ADR 0002: Banker's rounding, per line item, in one module",
            "label": "docs/adr/0002-bankers-rounding-per-line-item.md [repo]",
            "change": "superseded by ADR 0009: Round at the total"}
    drift = sandbox_drift_now(workspace, "inv3")
    assert drift.status == "stale" and said in drift.changes, drift.changes
    # Its own status edited as well, the usual way (adr-tools, MADR): said as superseded, not only "changed".
    adr = sample / "docs" / "adr" / "0002-bankers-rounding-per-line-item.md"
    text = adr.read_text()
    status = text.index("## Status")
    adr.write_text(text[:status] + "## Status\n\nSuperseded by ADR 0009\n\n## Was\n" + text[status + 9:])
    git(sample, "commit", "-qam", "ADR 2: superseded")
    assert said in sandbox_drift_now(workspace, "inv3").changes


def test_an_adr_folders_template_index_and_dated_names_are_not_misread(tmp_path: Path) -> None:
    """MADR's `adr-template.md` (status `{proposed | ... | superseded by ADR-0123}`) was a decision superseded
    by ADR 123, given to agents as placeholders; the folder's README an ADR `[no status]`; a Log4brains ADR,
    named by its date, "superseded by ADR 202307 (not in the repository)", and shown by its file name."""
    _adrs(tmp_path, {
        "docs/adr/adr-template.md": '---\nstatus: "{proposed | rejected | accepted | deprecated | ... | superseded by '
                                    'ADR-0123}"\n---\n# {short title of solved problem and solution}\n\n'
                                    "## Context and Problem Statement\n\n{Describe the context.}\n",
        "docs/adr/README.md": "# Decisions\n\nThe index of our decisions: see each file.\n",
        "docs/adr/adr-template-minimal.md": "# {short title}\n\n## Status\n\n{proposed | accepted}\n",
        "docs/adr/ADR-000-template.md": "# ADR-000: [Title]\n\nStatus: {proposed | superseded by ADR-0123}\n",
        "docs/adr/_template.md": "# NNNN: [Decision title]\n\nStatus: Accepted\n",
        "docs/adr/template-engine-choice.md": "# Template engine choice\n\nStatus: Accepted\n",  # a decision
        "docs/adr/0003-use-jinja-templates-for-emails.md": "# 3. Use Jinja templates for emails\n\n## Status\n\n"
                                                           "Accepted\n",  # about templates: a decision
        "docs/decisions/20230601-use-log4brains.md": "# Use Log4brains to manage the ADRs\n\n- Status: superseded "
                                                     "by [20230715-use-madr](20230715-use-madr.md)\n",
        "docs/decisions/20230715-use-madr.md": "# Use MADR everywhere\n\n- Status: accepted\n"})
    context = load_context(tmp_path, ContextConfig(sources=("docs/adr/*.md", "docs/decisions/*.md")))
    by_source = {s.source: s for s in context.sections}
    for template in ("adr-template.md", "adr-template-minimal.md", "ADR-000-template.md", "_template.md"):
        assert f"docs/adr/{template}" not in by_source, template
    assert by_source["docs/adr/template-engine-choice.md"].adr is not None
    assert by_source["docs/adr/0003-use-jinja-templates-for-emails.md"].title == "ADR 0003: Use Jinja templates for emails"
    assert by_source["docs/adr/README.md"].kind == "markdown" and by_source["docs/adr/README.md"].adr is None
    dated = by_source["docs/decisions/20230601-use-log4brains.md"]
    assert dated.title == "Use Log4brains to manage the ADRs" and dated.adr is not None
    assert dated.adr.superseded_by == () and dated.adr.state == "superseded"
    assert not any("0123" in flag.detail or "202307" in flag.detail for flag in adr_flags(context))


def test_a_byte_order_mark_is_dropped_and_utf16_is_said(tmp_path: Path) -> None:
    """A UTF-8 BOM (Windows editors): the agent's text began with U+FEFF, the first heading was no heading and
    an ADR went by its file name; UTF-16 (PowerShell's `>`) was "a binary file"."""
    (tmp_path / "docs" / "adr").mkdir(parents=True)
    (tmp_path / "docs" / "adr" / "0002-use-y.md").write_bytes(b"\xef\xbb\xbf# 2. Use Y\n\n## Status\n\nAccepted\n")
    (tmp_path / "AGENTS.md").write_bytes(b"\xef\xbb\xbf# Conventions\r\n\r\nUse tabs.\r\n")
    (tmp_path / "CLAUDE.md").write_bytes("# Claude\n\nHi.\n".encode("utf-16"))
    context = load_context(tmp_path, ContextConfig(sources=("AGENTS.md", "CLAUDE.md", "docs/adr/*.md")))
    by_source = {s.source: s for s in context.sections}
    assert by_source["docs/adr/0002-use-y.md"].title == "ADR 0002: Use Y"
    assert by_source["AGENTS.md"].heading == ("Conventions",) and "\ufeff" not in by_source["AGENTS.md"].text
    assert "CLAUDE.md: UTF-16 text, skipped: save it as UTF-8" in context.problems, context.problems


def test_an_adr_superseded_itself_supersedes_no_decision_that_stands(tmp_path: Path) -> None:
    """An ADR whose status is "Superseded by ADR 9" (none here) and which "Supersedes ADR 1": agents were told
    ADR 1, the team's accepted decision, was superseded by it, "(itself superseded)", and to follow it."""
    from loomtui.knowledge.supersession import supersession

    _adrs(tmp_path, {
        "doc/adr/0001-decimal.md": _adr(1, "Use Decimal for money", "Accepted", "Money is Decimal."),
        "doc/adr/0003-notes.md": _adr(3, "Old refund notes", "Superseded by [9. Refund engine v2](0009-v2.md)\n\n"
                                      "Supersedes [1. Use Decimal for money](0001-decimal.md)", "Money may be float.")})
    context = load_context(tmp_path, ContextConfig(sources=("doc/adr/*.md",)))
    relation = supersession(context)
    assert relation.newer("repo:doc/adr/0001-decimal.md") == ""
    assert relation.newer("repo:doc/adr/0003-notes.md") == "ADR 0009 (not in the repository)"


def test_a_commit_s_tree_closes_at_once_after_a_write_failed_mid_blob(tmp_path: Path) -> None:
    """A full disk broke the export of a 50 MB blob mid-file: `git cat-file --batch` was left writing the rest into
    a pipe no one read, and closing the tree waited on it for good (the review sat in `gating`)."""
    import errno
    import os
    import threading

    from loomtui.knowledge.trees import GitTree

    (tmp_path / "big.bin").write_bytes(os.urandom(8 << 20))
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "big")
    tree = GitTree(tmp_path, "HEAD", "HEAD")
    sha = tree.listing()["big.bin"]

    class Full:
        def write(self, chunk: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def export() -> None:
        try:
            tree.copy_blob(sha, Full())  # type: ignore[arg-type]
        except OSError:
            pass
        finally:
            tree.close()

    closing = threading.Thread(target=export, daemon=True)
    closing.start()
    closing.join(30)
    assert not closing.is_alive()
