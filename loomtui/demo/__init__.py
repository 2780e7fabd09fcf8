"""The demo: the scripted scenario over a fresh copy of the bundled sample repo.

The demo drives the same engines as real use; all that is special about it is
where the repository comes from (`loomtui.sample`). `scenario` and `narration` are
the scripted run and its captions, `headless` runs it without a UI, `hostile` the
attempts to escape a sandbox.

A front-end: it may import any engine layer, never the TUI or the CLI (they import it).
"""

from __future__ import annotations

from loomtui.sample import prepare_demo_repo

__all__ = ["prepare_demo_repo"]
