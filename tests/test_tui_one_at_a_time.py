"""The coordination worker's runs: one thread at a time, a burst of requests folded into one more run."""

from __future__ import annotations

import threading

import pytest

from loomtui.tui.one_at_a_time import OneAtATime


def test_requests_while_a_run_goes_fold_into_one_more_run_on_the_same_thread() -> None:
    started: list[threading.Thread] = []
    runs: list[bool] = []
    going, release = threading.Event(), threading.Event()

    def job(flag: bool) -> None:
        runs.append(flag)
        if len(runs) == 1:
            going.set()
            release.wait(10)

    def start() -> None:
        thread = threading.Thread(target=lambda: runs_of.run_due(job))
        started.append(thread)
        thread.start()

    runs_of = OneAtATime(start)
    runs_of.request()
    assert going.wait(10)
    for flag in (False, True, False):  # a burst of events, one asking for a re-index
        runs_of.request(flag)
    assert len(started) == 1  # no second thread beside the slow run
    release.set()
    started[0].join(10)
    assert runs == [False, True]  # one more run, the re-index kept
    runs_of.request()  # idle again: a request starts a worker
    started[-1].join(10)
    assert len(started) == 2 and runs == [False, True, False]


def test_a_run_that_raises_leaves_the_next_request_starting_a_worker() -> None:
    calls: list[bool] = []

    def job(flag: bool) -> None:
        calls.append(flag)
        raise RuntimeError("the store went away")

    runs_of = OneAtATime(lambda: runs_of.run_due(job))  # run at once, on this thread
    with pytest.raises(RuntimeError):
        runs_of.request()
    with pytest.raises(RuntimeError):
        runs_of.request(True)  # not taken for a run still going
    assert calls == [False, True]


def test_requests_made_while_a_run_raised_still_get_their_run() -> None:
    """A run that raised (a non-LoomError in the coordination worker) dropped the requests made meanwhile: the
    app's conflicts waited for the next store event."""
    calls: list[bool] = []

    def job(flag: bool) -> None:
        calls.append(flag)
        if len(calls) == 1:
            runs_of.request(True)  # an event while it runs
            raise RuntimeError("the index went away")

    runs_of = OneAtATime(lambda: runs_of.run_due(job))
    with pytest.raises(RuntimeError):
        runs_of.request()
    assert calls == [False, True]  # the request made meanwhile ran, then the error was said


def test_a_cancelled_worker_stops_before_its_next_run() -> None:
    calls: list[bool] = []
    runs_of = OneAtATime(lambda: runs_of.run_due(calls.append, cancelled=lambda: True))
    runs_of.request()
    assert calls == []
