"""The app's garbage collection: small passes every tick, the whole heap walked when input is quiet."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from loomtui.tui.idle_gc import QUIET_S, REWALK_AT_LEAST_S, REWALK_S, IdleCollector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cycle:
    """An object that refers to itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def cycle_ref() -> weakref.ref[Cycle]:
    return weakref.ref(Cycle())  # the cycle is garbage at once; the weak reference says when it is freed


@pytest.fixture
def collector() -> Iterator[tuple[IdleCollector, Clock]]:
    clock = Clock()
    idle = IdleCollector(clock)
    idle.start()
    try:
        yield idle, clock
    finally:
        idle.stop()


def test_automatic_collection_is_off_while_running_and_as_it_was_after() -> None:
    assert gc.isenabled()
    idle = IdleCollector(Clock())
    idle.start()
    try:
        assert not gc.isenabled()
        garbage = cycle_ref()
        for _ in range(5000):
            list([[]])  # allocations that would have set the collector off
        assert garbage() is not None  # nothing collected it behind the app's back
    finally:
        idle.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        idle = IdleCollector(Clock())
        idle.start()
        idle.stop()
        assert not gc.isenabled()  # left off, as it was found
    finally:
        gc.enable()


def test_a_tick_collects_what_is_new_and_freezes_what_survives(collector: tuple[IdleCollector, Clock]) -> None:
    idle, _clock = collector
    garbage, kept = cycle_ref(), Cycle()
    idle.tick()
    assert garbage() is None
    assert gc.get_freeze_count() > 0 and idle.passes == 1
    assert not any(obj is kept for obj in gc.get_objects())  # frozen: out of every later pass


def test_garbage_among_the_frozen_is_freed_by_a_walk_once_input_is_quiet(
        collector: tuple[IdleCollector, Clock]) -> None:
    idle, clock = collector
    held = [Cycle()]
    frozen_later_garbage = weakref.ref(held[0])
    idle.tick()  # frozen while alive
    held.clear()  # now garbage, but frozen: ticks do not see it
    clock.now += REWALK_S
    idle.input_seen()  # someone is typing: the walk waits
    idle.tick()
    assert frozen_later_garbage() is not None and idle.rewalks == 0
    clock.now += QUIET_S
    idle.tick()
    assert frozen_later_garbage() is None and idle.rewalks == 1


def test_the_whole_heap_is_walked_at_last_even_while_keys_keep_coming(collector: tuple[IdleCollector, Clock]) -> None:
    idle, clock = collector
    held = [Cycle()]
    later_garbage = weakref.ref(held[0])
    idle.tick()
    held.clear()
    while clock.now + 60 < 1000.0 + REWALK_AT_LEAST_S:
        clock.now += 60
        idle.input_seen()
        idle.tick()
        assert later_garbage() is not None
    clock.now += 60
    idle.input_seen()
    idle.tick()
    assert later_garbage() is None and idle.rewalks == 1


async def test_the_app_collects_by_itself_while_it_runs_and_hands_the_collector_back(repo) -> None:  # type: ignore[no-untyped-def]
    from loomtui.tui.app import LoomApp
    from loomtui.workspace import open_workspace
    from tests.conftest import wait_for

    app = LoomApp(open_workspace(repo))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert not gc.isenabled()
        garbage = cycle_ref()
        await wait_for(pilot, lambda: garbage() is None)  # its ticks collect what nothing else now will
        assert app.collector.passes >= 1
    assert gc.isenabled() and gc.get_freeze_count() == 0
