"""A burst, then a steady rate: how loomtui bounds what an agent can make it write (its activities as store rows,
its requests to the broker, each audited), whatever the agent's own limits."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`take()` says whether one more may go now: `burst` at once, then `rate` a second."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.clock = clock
        self.tokens = self.burst
        self.at = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
