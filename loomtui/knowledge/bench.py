"""`loomtui bench context`: slicing a task over 1,000 generated sections totalling about 5 MB.

The sections are generated into a temporary directory (Markdown conventions and
ADRs with headings, prose and code spans), loaded as a context once, then one
task is sliced repeatedly; the figure is the median slice time (target <= 100 ms).
Loading (read, split, term index) is timed separately.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from loomtui.config import ContextConfig
from loomtui.knowledge.slicing import ClaimInput, slice_context
from loomtui.knowledge.sources import load_context
from loomtui.knowledge.terms import term_index

TARGET_MS = 100.0
_TOPICS = ("invoice", "refund", "ledger", "currency", "rounding", "notification", "template", "customer",
           "storage", "repository", "logging", "error", "payment", "tax", "discount", "exchange", "audit",
           "webhook", "session", "cache", "queue", "retry", "timeout", "schema", "migration", "report")


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(3, 11))) for _ in range(size)}
    return sorted(words)


def generate(directory: Path, *, sections: int = 1000, total_bytes: int = 5_000_000, seed: int = 7) -> int:
    """Write Markdown files of ten sections each, `sections` in all, about `total_bytes`; returns bytes."""
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng, 30_000) + list(_TOPICS) * 20
    per_section = total_bytes // sections
    folder = directory / "docs" / "conventions"
    folder.mkdir(parents=True, exist_ok=True)
    written = made = 0
    while made < sections:
        lines = [f"# Conventions {made // 10}", ""]
        for _ in range(min(10, sections - made)):
            topic = rng.choice(_TOPICS)
            lines += [f"## {topic.title()} rule {made}", ""]
            size = 0
            while size < per_section:
                words = rng.choices(vocabulary, k=14)
                words.insert(rng.randrange(len(words)), f"`{topic}s.module_{rng.randrange(99)}.helper`")
                sentence = " ".join(words).capitalize() + ".\n"
                lines.append(sentence)
                size += len(sentence)
            lines.append("")
            made += 1
        text = "\n".join(lines)
        (folder / f"topic-{made // 10:04d}.md").write_text(text, encoding="utf-8")
        written += len(text.encode())
    return written


def run_bench(*, sections: int = 1000, total_bytes: int = 5_000_000, rounds: int = 20) -> dict[str, Any]:
    """Generate, load once, slice `rounds` times; figures in milliseconds."""
    with tempfile.TemporaryDirectory(prefix="loom-context-bench-") as tmp:
        root = Path(tmp)
        written = generate(root, sections=sections, total_bytes=total_bytes)
        config = ContextConfig(sources=("docs/conventions/*.md",), budget_tokens=8000)
        started = time.perf_counter()
        context = load_context(root, config)
        loaded = time.perf_counter()
        term_index(context)
        indexed = time.perf_counter()
        task = "Fix invoice rounding"
        claims = [ClaimInput("payments/invoices.py::InvoiceCalculator.total",
                             ("payments/invoices.py::InvoiceCalculator.total",))]
        times = []
        piece = None
        for _ in range(rounds):
            start = time.perf_counter()
            piece = slice_context(context, task, claims)
            times.append((time.perf_counter() - start) * 1000)
        assert piece is not None
        median = statistics.median(times)
        return {
            "sections": len(context.sections), "files": len(context.files), "bytes": written,
            "load_ms": round((loaded - started) * 1000, 1), "term_index_ms": round((indexed - loaded) * 1000, 1),
            "slice_ms_median": round(median, 2), "slice_ms_max": round(max(times), 2), "rounds": rounds,
            "picked": len(piece.picks), "tokens": piece.tokens, "budget_tokens": piece.budget,
            "target_ms": TARGET_MS, "ok": median <= TARGET_MS,
        }
