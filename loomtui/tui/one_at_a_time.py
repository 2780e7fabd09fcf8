"""A thread worker's job run one at a time, the requests made while it runs folded into one more run."""

from __future__ import annotations

import threading
from collections.abc import Callable


class OneAtATime:
    """Runs of a slow job (recomputing claims' conflicts) asked for by a burst of store events.

    Textual's `exclusive` only marks the running thread worker cancelled: the thread goes on, so each event
    of a burst started another thread doing the same slow work beside it (a team's store, a worktree of
    3,000 new files: threads piled up, each rereading it). Here a request while a run is going asks for one
    more run after it, however many come; `flag` (re-index first) is kept if any request set it.
    """

    def __init__(self, start: Callable[[], object]) -> None:
        self._start = start  # starts the worker, which calls `run_due`
        self._lock = threading.Lock()
        self._running = False
        self._due: bool | None = None  # None: no run asked for; else the run's flag

    def request(self, flag: bool = False) -> None:
        """Ask for a run: now, or after the one going (from the UI thread)."""
        with self._lock:
            self._due = flag or bool(self._due)
            if self._running:
                return
            self._running = True
        self._start()

    def run_due(self, job: Callable[[bool], object], cancelled: Callable[[], bool] = lambda: False) -> None:
        """In the worker: run `job` while a run is due (each run reads what is new when it starts). A run that
        raises does not drop the requests made while it ran: the next run goes, then the error is raised."""
        ended = False
        failed: Exception | None = None
        try:
            while not cancelled():
                with self._lock:
                    flag, self._due = self._due, None
                    if flag is None:
                        self._running, ended = False, True  # a request from now starts a worker
                        break
                try:
                    job(flag)
                except Exception as exc:  # raised once the runs due are done
                    failed = exc
        finally:
            if not ended:  # cancelled, or interrupted: the next request starts a worker afresh
                with self._lock:
                    self._running = False
        if failed is not None:
            raise failed
