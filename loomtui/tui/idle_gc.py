"""Garbage collection in small steps, with the long pass kept for when nobody is pressing keys.

Python's cyclic collector runs when allocations pass a threshold, in whichever thread made them, and
holds every thread while it walks the objects of a generation. With 200 sandboxes and 5,000 claims in
memory a full pass took 100 to 300 ms, and the key it fell on waited that long: a hitch every few
seconds while scrolling. Textual's rendering makes thousands of small cycles a second (strips and their
caches), so collection cannot simply stop.

While the app runs, automatic collection is off. Every tick collects what is new since the last tick and
then freezes the survivors (moves them out of the passes): each pass walks a second's worth of objects,
not the whole heap. Frozen objects that later become cyclic garbage would stay, so once input has been
quiet for a moment, every `REWALK_S` the whole heap is walked again (unfrozen, collected, frozen).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Final

TICK_S: Final = 1.0
"""How often what is new is collected."""
QUIET_S: Final = 1.0
"""Input quiet this long: a pass over the whole heap will not be felt."""
REWALK_S: Final = 60.0
"""The whole heap walked at most this often, when input is quiet: what was frozen and has since become
garbage (Textual's cached strips, an old snapshot) is held until then, a minute's worth at most."""
REWALK_AT_LEAST_S: Final = 300.0
"""...and at least this often, quiet or not (garbage among the frozen must not pile up)."""


class IdleCollector:
    """Automatic collection off between `start` and `stop`; `tick` collects, `input_seen` defers whole walks."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.passes = 0
        self.rewalks = 0
        self._was_enabled = True
        self._running = False
        self._last_input = self._last_rewalk = clock()

    def start(self) -> None:
        """Turn automatic collection off (`stop` turns it back on if it was on)."""
        if not self._running:
            self._was_enabled = gc.isenabled()
            gc.disable()
            gc.freeze()  # what is here already (the modules, mostly) is not walked by the first ticks
            self._running = True
            self._last_rewalk = self.clock()

    def input_seen(self) -> None:
        self._last_input = self.clock()

    def tick(self) -> None:
        """Collect what is new and freeze what survives; walk the whole heap when one is due."""
        if not self._running:
            return
        now = self.clock()
        since = now - self._last_rewalk
        if (now - self._last_input >= QUIET_S and since >= REWALK_S) or since >= REWALK_AT_LEAST_S:
            gc.unfreeze()
            self._last_rewalk = now
            self.rewalks += 1
        gc.collect()
        gc.freeze()
        self.passes += 1

    def stop(self) -> None:
        """Back to the collector as it was: the frozen objects can be collected again (tests run many apps
        in one process)."""
        if self._running:
            self._running = False
            gc.unfreeze()
            if self._was_enabled:
                gc.enable()
