"""The dashboard's figures under load: key-to-repaint measured with Textual's pilot, and `loomtui bench tui`
(time to first frame against a bare Textual app, key-to-repaint and memory at size)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

from textual.widgets import DataTable

from loomtui.errors import plural
from loomtui.tui.app import LoomApp
from loomtui.tui.bench_data import BenchSize
from loomtui.tui.first_frame import end_process
from loomtui.workspace import Workspace


def measure_key_to_repaint(workspace: Workspace, *, seconds: float = 8.0) -> dict[str, Any]:
    """Move the sandbox cursor for `seconds`; time each key until the first frame that shows it.

    The app runs headless but does all its real work (store polling, log tailing,
    compositing). A frame is stamped where the app hands it to the terminal
    driver, so the figure is what a person's key waits for, not the pilot's own
    settling pauses.
    """

    async def run() -> list[float]:
        app = LoomApp(workspace)
        frames: list[tuple[float, int]] = []
        samples: list[float] = []
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause(1.0)  # the first store snapshot and index
            table = app.screen.query_one("#sandboxes", DataTable)
            display = app._display

            def stamped(screen: Any, renderable: Any) -> None:
                if renderable is not None:
                    frames.append((time.perf_counter(), table.cursor_row))
                display(screen, renderable)

            # Wrapped in place to stamp each frame: the benchmark instruments a private method.
            app._display = stamped  # type: ignore[method-assign]
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and table.row_count > 1:
                target = 1 if table.cursor_row == 0 else 0
                seen = len(frames)
                started = time.perf_counter()
                await pilot.press("down" if target == 1 else "up")
                while not any(row == target for _, row in frames[seen:]):
                    await asyncio.sleep(0.001)
                shown = next(at for at, row in frames[seen:] if row == target)
                samples.append((shown - started) * 1000)
                await asyncio.sleep(0.05)
        return samples

    samples = sorted(asyncio.run(run()))
    if not samples:
        return {"samples": 0, "p95_ms": None, "note": "needs at least two sandboxes"}
    return {
        "samples": len(samples),
        "p50_ms": round(samples[len(samples) // 2], 2),
        "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 2),
        "max_ms": round(samples[-1], 2),
    }


VIEW_KEYS: Final = (("2", "graph"), ("3", "escalations"), ("4", "policy"), ("5", "audit"), ("1", "dashboard"))
"""The views `loomtui bench tui` switches between, in the order of its rounds (back to the dashboard last)."""
CURSOR_MOVES_PER_ROUND: Final = 20
FIRST_ROWS_TIMEOUT_S: Final = 120.0


def _figures(samples: list[float], prefix: str) -> dict[str, float | int]:
    from loomtui.workflow.sandbox_bench import percentile

    return {f"{prefix}_samples": len(samples), f"{prefix}_p50_ms": round(percentile(samples, 0.5), 2),
            f"{prefix}_p95_ms": round(percentile(samples, 0.95), 2), f"{prefix}_max_ms": round(max(samples), 2)}


def _cursor_at(target: int, mode: str, row: int) -> bool:
    return mode == "dashboard" and row == target


def _view_is(wanted: str, mode: str, _row: int) -> bool:
    return mode == wanted


def measure_keys(workspace: Workspace, *, rounds: int) -> dict[str, Any]:
    """Key-to-repaint of the running app: the sandbox cursor moved `CURSOR_MOVES_PER_ROUND` rows a round,
    and views 2..5 and back to 1 switched once a round (each view's first visit, which builds it, also
    reported alone). A key is timed from its press until the first frame that shows what it did."""

    async def run() -> dict[str, Any]:
        app = LoomApp(workspace)
        # (when, the mode whose screen the frame shows or "", the sandbox cursor's row)
        frames: list[tuple[float, str, int]] = []
        async with app.run_test(size=(160, 45)) as pilot:
            table = app.screen.query_one("#sandboxes", DataTable)
            deadline = time.monotonic() + FIRST_ROWS_TIMEOUT_S
            while table.row_count < 2 and time.monotonic() < deadline:
                await pilot.pause(0.05)
            if table.row_count < 2:
                raise RuntimeError("the dashboard showed fewer than two sandboxes")
            # The work the app defers past its first frame (index and conflicts, reconcile, warm imports) is
            # done before timing: a key pressed in the first second or two competes with it, later ones not.
            settling = ("coordination", "reconcile", "warm-imports")
            while time.monotonic() < deadline and (app.coordination is None or any(
                    worker.group in settling and not worker.is_finished for worker in app.workers)):
                await pilot.pause(0.05)
            await pilot.pause(0.5)  # the first snapshot's follow-up work (detail, log tail) settles
            display = app._display

            def stamped(screen: Any, renderable: Any) -> None:
                if renderable is not None:
                    shown = app.current_mode if screen is app.screen else ""
                    frames.append((time.perf_counter(), shown, table.cursor_row))
                display(screen, renderable)

            # Wrapped in place to stamp each frame: the benchmark instruments a private method.
            app._display = stamped  # type: ignore[method-assign]

            async def timed(key: str, shows: Callable[[str, int], bool]) -> float:
                seen = len(frames)
                started = time.perf_counter()
                await pilot.press(key)
                while True:
                    shown = next((at for at, mode, row in frames[seen:] if shows(mode, row)), None)
                    if shown is not None:
                        return (shown - started) * 1000
                    await asyncio.sleep(0.001)

            cursor: list[float] = []
            views: list[float] = []
            first_visit: dict[str, float] = {}
            step = 1
            for _round in range(rounds):
                for _move in range(CURSOR_MOVES_PER_ROUND):
                    if not 0 <= table.cursor_row + step < table.row_count:
                        step = -step  # at either end of the table: back the other way
                    target = table.cursor_row + step
                    cursor.append(await timed("down" if step > 0 else "up", partial(_cursor_at, target)))
                    await asyncio.sleep(0.05)
                for key, wanted in VIEW_KEYS:
                    took = await timed(key, partial(_view_is, wanted))
                    views.append(took)
                    first_visit.setdefault(wanted, round(took, 2))
                    await asyncio.sleep(0.3)  # the view's own loading (workers) is not the next key's
        return {**_figures(cursor, "cursor"), **_figures(views, "view_switch"),
                "view_first_visit_ms": first_visit}

    figures = asyncio.run(run())
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return figures


def keys_main() -> None:
    """`python -c "...; keys_main()" REPO ROUNDS OUT`: `measure_keys` in a process of its own (its peak RSS is
    the app's alone), the figures written to OUT as JSON."""
    from loomtui.workspace import open_workspace

    repo, rounds, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    workspace = open_workspace(repo)
    try:
        figures = measure_keys(workspace, rounds=rounds)
    finally:
        workspace.close()
    written = out.with_suffix(".part")
    written.write_text(json.dumps(figures))
    written.replace(out)  # whole or not at all: the parent ends this process once OUT exists


def _keys_in_child(repo: Path, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="loomtui-tui-keys-") as scratch:
        out = Path(scratch) / "keys.json"
        script = "from loomtui.tui.bench import keys_main; keys_main()"
        errors = Path(scratch) / "stderr.txt"
        with errors.open("wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-c", script, str(repo), str(rounds), str(out)], cwd=repo,
                                    stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        deadline = time.monotonic() + 600 + 60 * rounds
        try:
            # Ended once its figures are written: its exit would wait for the app's worker threads.
            while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            end_process(proc)
        if not out.exists():
            detail = errors.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the key-to-repaint run failed (exit {proc.returncode}): {detail}")
        figures: dict[str, Any] = json.loads(out.read_text())
        return figures


def tui_bench(size: BenchSize, *, rounds: int, progress: Callable[[str], None] = lambda _line: None) -> dict[str, Any]:
    """Every figure of `loomtui bench tui`, on a fresh copy of the sample repository holding `size`'s records.

    The bare app and loomtui are started in turns, `rounds` times each, so a busy moment of the machine
    falls on both; the medians are compared.
    """
    from loomtui.tui.bench_data import bench_repository
    from loomtui.tui.first_frame import bare_first_frame, loomtui_first_frame, median_seconds

    with tempfile.TemporaryDirectory(prefix="loomtui-tui-bench-") as scratch:
        progress(f"seeding {size.sandboxes} sandboxes, {size.claims} claims, {size.audit} audit entries")
        started = time.perf_counter()
        repo = bench_repository(Path(scratch), size)
        figures: dict[str, Any] = {"sandboxes": size.sandboxes, "claims": size.claims, "audit_entries": size.audit,
                                   "rounds": rounds, "cpus": os.cpu_count() or 1,
                                   "seed_s": round(time.perf_counter() - started, 2)}
        bare, loom = [], []
        for number in range(rounds):
            progress(f"first frame, round {number + 1}/{rounds}: bare Textual app, then loomtui")
            bare.append(bare_first_frame(size.sandboxes))
            loom.append(loomtui_first_frame(repo))
        figures.update({
            "first_frame_bare_s": round(median_seconds(bare), 3),
            "first_frame_loomtui_s": round(median_seconds(loom), 3),
            "first_frame_ratio": round(median_seconds(loom) / median_seconds(bare), 2),
            "first_frame_bare_rss_mb": round(max(f.rss_kb for f in bare) / 1024, 1),
            "first_frame_loomtui_rss_mb": round(max(f.rss_kb for f in loom) / 1024, 1),
        })
        progress(f"key-to-repaint: {plural(rounds, 'round')} of {CURSOR_MOVES_PER_ROUND} cursor moves and views "
                 "2..5, 1")
        figures.update(_keys_in_child(repo, rounds))
        shutil.rmtree(repo, ignore_errors=True)
    return figures


def format_tui_bench(figures: dict[str, Any]) -> str:
    """The figures as lines for a terminal."""
    first = figures["view_first_visit_ms"]
    return "\n".join([
        (f"{figures['sandboxes']} sandboxes, {figures['claims']} claims, {figures['audit_entries']} audit entries; "
         f"{plural(figures['rounds'], 'round')}, {plural(figures['cpus'], 'CPU')}"),
        (f"first frame   loomtui {figures['first_frame_loomtui_s']} s, bare Textual app "
         f"{figures['first_frame_bare_s']} s (medians): {figures['first_frame_ratio']}x"),
        (f"cursor        p50 {figures['cursor_p50_ms']} ms, p95 {figures['cursor_p95_ms']} ms, "
         f"max {figures['cursor_max_ms']} ms ({figures['cursor_samples']} keys)"),
        (f"view switch   p50 {figures['view_switch_p50_ms']} ms, p95 {figures['view_switch_p95_ms']} ms, "
         f"max {figures['view_switch_max_ms']} ms ({figures['view_switch_samples']} keys)"),
        "first visit   " + ", ".join(f"{mode} {ms} ms" for mode, ms in first.items()),
        (f"memory        peak RSS {figures['peak_rss_mb']} MB after every view; at the first frame "
         f"{figures['first_frame_loomtui_rss_mb']} MB (bare app {figures['first_frame_bare_rss_mb']} MB)"),
    ])
