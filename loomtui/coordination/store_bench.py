"""`loomtui bench store`: the store's figures on either backend.

- the claim check (Coordinator.check) against 5,000 live claims of 200 sandboxes, p50/p99;
- 32 processes racing for one exclusive claim, round after round: exactly one winner each time;
- an escalation opened in one process and seen by another that waits for events as the app
  does (NOTIFY on PostgreSQL), p50 and worst latency.

On PostgreSQL the figures are taken in a namespace of their own, dropped at the end, so a
team's database can be measured without touching its records.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loomtui.coordination.claim_bench import claim_check_bench
from loomtui.coordination.index import build_index
from loomtui.store.sql import SqlStore
from loomtui.store.sqlite import SqliteStore

RACERS = 32
REGION = "payments/refunds.py::RefundService.quote"


def _synthetic_tree(root: Path, modules: int = 100, functions: int = 60) -> Path:
    """A package of 6,000 small functions, each calling the one before it: 5,000 claims on
    distinct regions, as a busy monorepo's claims are, rather than a hundred on each region
    of the small sample repository."""
    package = root / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for number in range(modules):
        lines = [f"def f{n}(x):\n    return {'f' + str(n - 1) + '(x) + ' if n else ''}{n}\n" for n in range(functions)]
        (package / f"m{number}.py").write_text("\n\n".join(lines))
    return root


def _opener(location: str, scratch: Path, namespace: str) -> Callable[[], SqlStore]:
    if location == "sqlite":
        return lambda: SqliteStore(scratch / "state.db")

    def open_postgres() -> SqlStore:
        from loomtui.store.postgres import PostgresStore

        return PostgresStore(location, namespace, mirror=f"bench:{os.getpid()}", name="loomtui bench")

    return open_postgres


def _racer(opener: Callable[[], SqlStore], number: int, rounds: int, barrier: Any, results: Any) -> None:
    store = opener()
    for round_number in range(rounds):
        barrier.wait(120)
        with store.transaction():
            won = not store.live_claims_on([f"{REGION}#{round_number}"])
            if won:
                store.add_claim(f"racer{number}", REGION, "exclusive", "race", time.time() + 60,
                                [f"{REGION}#{round_number}"])
        results.put((round_number, won))
    store.close()


def _race(opener: Callable[[], SqlStore], rounds: int) -> dict[str, object]:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(RACERS)
    results = context.Queue()
    procs = [context.Process(target=_racer, args=(opener, n, rounds, barrier, results)) for n in range(RACERS)]
    for proc in procs:
        proc.start()
    winners = [0] * rounds
    for _ in range(RACERS * rounds):
        round_number, won = results.get(timeout=120)
        winners[round_number] += won
    for proc in procs:
        proc.join(30)
    return {"race_processes": RACERS, "race_rounds": rounds,
            "race_rounds_with_exactly_one_winner": sum(w == 1 for w in winners)}


def _listener(opener: Callable[[], SqlStore], count: int, ready: Any, seen: Any) -> None:
    store = opener()
    last = store.last_event_id()
    ready.set()
    while count:
        if store.wait_for_events(last, 10):
            for event in store.events_since(last):
                last = event.id
                if event.kind == "escalation.opened":
                    seen.put((int(event.subject), time.time()))
                    count -= 1
    store.close()


def _latency(opener: Callable[[], SqlStore], count: int) -> dict[str, object]:
    context = multiprocessing.get_context("fork")
    ready, seen = context.Event(), context.Queue()
    listener = context.Process(target=_listener, args=(opener, count, ready, seen))
    listener.start()
    ready.wait(60)
    store = opener()
    opened: dict[int, float] = {}
    latencies = []
    for _ in range(count):
        time.sleep(0.05)
        # Timed from the call: the listener can hear the commit before add_escalation returns, and a
        # stamp taken after it made the latency negative (-0.6 ms seen on PostgreSQL).
        asked = time.time()
        record = store.add_escalation("bench", summary="latency probe")
        opened[record.id] = asked
        escalation_id, at = seen.get(timeout=30)
        latencies.append((at - opened[escalation_id]) * 1000)
    listener.join(30)
    store.close()
    latencies.sort()
    return {"escalation_to_listener_p50_ms": round(statistics.median(latencies), 1),
            "escalation_to_listener_max_ms": round(latencies[-1], 1), "escalations": count}


def store_bench(location: str, *, rounds: int = 10, escalations: int = 20,
                progress: Callable[[str], None] = lambda _line: None) -> dict[str, object]:
    """Every figure, on `sqlite` (a scratch file) or the PostgreSQL database at `location`."""
    namespace = f"loom_bench_{secrets.token_hex(4)}"
    figures: dict[str, object] = {"backend": "sqlite" if location == "sqlite" else "postgresql"}
    with tempfile.TemporaryDirectory(prefix="loomtui-store-bench-") as scratch:
        opener = _opener(location, Path(scratch), namespace)
        try:
            progress("claim check: 5,000 claims of 200 sandboxes")
            index = build_index(_synthetic_tree(Path(scratch) / "tree"), cache_dir=Path(scratch) / "index")
            figures.update(claim_check_bench(index, store=opener()))
            opener().close()  # no connection of this process is open while racers fork
            progress(f"race: {RACERS} processes, {rounds} rounds")
            figures.update(_race(opener, rounds))
            progress(f"latency: {escalations} escalations seen by another process")
            figures.update(_latency(opener, escalations))
        finally:
            if location != "sqlite":
                _drop(location, namespace)
    return figures


def _drop(location: str, namespace: str) -> None:
    from loomtui.store.postgres import drop_namespace

    drop_namespace(location, namespace)
