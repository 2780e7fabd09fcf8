"""Generation of short, prefixed, sortable identifiers such as ``inv_000042``."""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from typing import Iterator


class IdGenerator:
    """Hands out sequential identifiers per prefix, e.g. ``cus_000001`` then ``cus_000002``."""

    def __init__(self, width: int = 6) -> None:
        self._width = width
        self._counters: defaultdict[str, Iterator[int]] = defaultdict(lambda: itertools.count(1))
        self._lock = threading.Lock()

    def next(self, prefix: str) -> str:
        """Return the next identifier for ``prefix``; prefixes must be short lowercase words."""
        if not prefix or not prefix.isalpha() or not prefix.islower():
            raise ValueError(f"id prefix must be lowercase letters, got {prefix!r}")
        with self._lock:
            number = next(self._counters[prefix])
        return f"{prefix}_{number:0{self._width}d}"

    def reset(self) -> None:
        """Forget every counter so identifiers start again from 1 (used by tests and the demo)."""
        with self._lock:
            self._counters.clear()


_default_generator = IdGenerator()


def new_id(prefix: str) -> str:
    """Return a new identifier for ``prefix`` from the process-wide default generator."""
    return _default_generator.next(prefix)
