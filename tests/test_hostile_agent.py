"""A hostile agent, for real: every escape attempt in `loomtui.demo.hostile` fails under bubblewrap,
and without isolation exactly the documented ones get through (so the README and doctor stay true)."""

from __future__ import annotations

import pytest

from loomtui.demo.hostile import ATTEMPTS, UNSTOPPABLE_WITHOUT_ISOLATION, report_lines, run_attempts
from loomtui.execution.isolation import isolation_available

needs_bwrap = pytest.mark.skipif(not isolation_available(), reason="bubblewrap does not work here")


@needs_bwrap
def test_every_escape_attempt_is_stopped_inside_bubblewrap() -> None:
    report = run_attempts(True)
    print("\n".join(report_lines(report)))
    assert {r.attempt for r in report.results} == {a.name for a in ATTEMPTS} | {"alias-claims"}
    escaped = {r.attempt: r.evidence for r in report.results if not r.stopped}
    assert escaped == {}


def test_without_isolation_only_the_documented_attempts_get_through() -> None:
    """loomtui's own processes (supervisor, review, gates' git, merge) run nothing an agent planted,
    isolated or not; what gets through is only what a plain process of the user can do itself."""
    report = run_attempts(False)
    print("\n".join(report_lines(report)))
    escaped = {r.attempt for r in report.results if not r.stopped}
    assert escaped == set(UNSTOPPABLE_WITHOUT_ISOLATION)
