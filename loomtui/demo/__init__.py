"""The demo: the scripted scenario over a fresh copy of the bundled sample repo.

The demo drives the same engines as real use; all that is special about it is
where the repository comes from (`loomtui.sample`).
"""

from __future__ import annotations

from loomtui.sample import prepare_demo_repo

__all__ = ["prepare_demo_repo"]
