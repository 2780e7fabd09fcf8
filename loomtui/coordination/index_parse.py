"""Parsing many files into facts: in this process when there are few, in worker processes when many."""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from loomtui.coordination.index_cache import _store_facts
from loomtui.coordination.regions import FileFacts, extract_facts

PARALLEL_THRESHOLD = 64


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a block builds many long-lived containers (an index):
    it would rescan them again and again for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_batch(batch: list[tuple[str, bytes]], facts_dir: str | None) -> list[tuple[str, FileFacts]]:
    """Worker: facts of each (blob, bytes), stored in the cache as they are made."""
    results: list[tuple[str, FileFacts]] = []
    with gc_paused():
        for blob, data in batch:
            facts = extract_facts(data)
            if facts_dir is not None:
                _store_facts(Path(facts_dir), blob, facts)
            results.append((blob, facts))
    return results


def _die_with_parent() -> None:
    """Worker start: end when the process that asked for the parse ends, even by `kill -9`.

    A forked worker otherwise waits on its queue forever, holding whatever the parent had
    open (the tree's lock file among them).
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent is gone already
            os._exit(1)


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork is the cheapest start, but forking a process that runs other threads
    # (the TUI indexes from a worker thread) can deadlock the child.
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if sys.platform != "win32" else "spawn")


def _batches(items: list[tuple[str, bytes]], count: int) -> list[list[tuple[str, bytes]]]:
    # Largest files first, in batches of similar byte size, so no worker is left
    # with one big file at the end.
    ordered = sorted(items, key=lambda item: len(item[1]), reverse=True)
    target = max(1, sum(len(data) for _, data in ordered) // count)
    batches: list[list[tuple[str, bytes]]] = [[]]
    size = 0
    for item in ordered:
        if size >= target:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += len(item[1])
    return batches


def parse_many(
    items: list[tuple[str, bytes]],
    facts_dir: Path | None,
    workers: int,
    done: Callable[[int], None],
) -> dict[str, FileFacts]:
    """Facts for each (blob, bytes), in worker processes when there are many."""
    parsed: dict[str, FileFacts] = {}
    if len(items) <= PARALLEL_THRESHOLD or workers <= 1:
        for blob, facts in _parse_batch(items, None):
            if facts_dir is not None:
                _store_facts(facts_dir, blob, facts)
            parsed[blob] = facts
        done(len(items))
        return parsed
    where = str(facts_dir) if facts_dir is not None else None
    batches = _batches(items, workers * 6)
    executor: Executor = ProcessPoolExecutor(max_workers=min(workers, len(batches)), mp_context=_pool_context(),
                                             initializer=_die_with_parent)
    with executor:
        futures = [executor.submit(_parse_batch, batch, where) for batch in batches]
        for future in as_completed(futures):
            results = future.result()
            parsed.update(results)
            done(len(results))
    return parsed
