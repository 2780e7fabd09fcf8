"""Key-to-repaint latency of the dashboard under load, measured with Textual's pilot."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from textual.widgets import DataTable

from loomtui.tui.app import LoomApp
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
