"""The claim-check figure of `loomtui bench index`: 200 sandboxes holding 5,000 claims."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from loomtui.audit import AuditLog
from loomtui.coordination.claims import Coordinator, nobody_overrides
from loomtui.coordination.index import RepoIndex
from loomtui.repo import RepoPaths
from loomtui.store.sql import SqlStore
from loomtui.store.sqlite import SqliteStore
from loomtui.workspace import Workspace


def claim_check_bench(index: RepoIndex, *, sandboxes: int = 200, claims: int = 5000,
                      samples: int = 2000, seed: int = 7, store: SqlStore | None = None) -> dict[str, object]:
    """Time `Coordinator.check` for one new claim against a store full of live claims (an empty
    `store` given, else a new SQLite one)."""
    rng = random.Random(seed)
    candidates = sorted(rid for rid, region in index.regions.items() if region.kind not in ("module", "file"))
    # The check itself reads the index through its queries: what was loaded to pick candidates is dropped.
    index.forget_loaded()
    if not candidates:
        return {"claim_check_p99_ms": None, "claim_check_note": "no regions to claim"}
    held = rng.sample(candidates, claims) if len(candidates) >= claims else rng.choices(candidates, k=claims)
    with tempfile.TemporaryDirectory(prefix="loomtui-claim-bench-") as scratch:
        store = store or SqliteStore(Path(scratch) / "state.db")
        workspace = Workspace(paths=RepoPaths(root=index.root, common_dir=Path(scratch)), store=store,
                              audit=AuditLog(Path(scratch) / "audit.jsonl", store), actor="bench")
        coordinator = Coordinator(workspace, index, dependency_hops=1, may_override=nobody_overrides)
        expires = time.time() + 3600
        with store.transaction():
            for number, region_id in enumerate(held):
                store.add_claim(f"sb{number % sandboxes}", region_id, "exclusive", "bench", expires, [region_id])
        timings = []
        conflicts = 0
        for region_id in rng.choices(candidates, k=samples):
            started = time.perf_counter()
            conflicts += bool(coordinator.check("probe", [region_id]))
            timings.append((time.perf_counter() - started) * 1000)
        store.close()
    timings.sort()
    return {
        "claim_sandboxes": sandboxes,
        "claims": claims,
        "claim_checks": samples,
        "claim_checks_with_conflicts": conflicts,
        "claim_check_p50_ms": round(statistics.median(timings), 3),
        "claim_check_p99_ms": round(timings[int(len(timings) * 0.99) - 1], 3),
    }
