"""A coordinator whose overrides are the policy's (who may force a refused claim), and the one a
long-running front-end keeps up to date."""

from __future__ import annotations

import time
from collections.abc import Callable

from loomtui.config import CoordinationConfig
from loomtui.coordination.claims import Coordinator, OverrideCheck, WorktreeTree, open_coordinator
from loomtui.coordination.index import ProgressFn, RepoIndex
from loomtui.governance.checkout import refuse_an_agents_policy
from loomtui.governance.policy import can_override, configured_policy
from loomtui.workspace import Workspace


def policy_override_check(workspace: Workspace) -> OverrideCheck:
    """Ask the repository's policy, as it is when asked, whether a user may override."""

    def may_override(user: str) -> bool:
        refuse_an_agents_policy(workspace)  # who may override is the team's policy's, never an agent's
        return can_override(configured_policy(workspace.root, workspace.load_config()), user)

    return may_override


def governed_coordinator(workspace: Workspace, index: RepoIndex | None = None, *,
                         settings: CoordinationConfig | None = None, progress: ProgressFn | None = None) -> Coordinator:
    """`open_coordinator` with the policy's override check, execution's reading of a live worktree and the
    hooks' release of lapsed claims: what front-ends and the workflow use."""
    return open_coordinator(workspace, index, may_override=policy_override_check(workspace), settings=settings,
                            progress=progress, worktree_tree=worktree_reader(workspace),
                            release_lapsed=lapsed_releaser(workspace))


def lapsed_releaser(workspace: Workspace) -> Callable[[], object]:
    """How a coordinator lets go of provisional claims whose tool call never came (the hooks' rule)."""
    # Imported now, not when called: it is called inside the store's write transaction, and an import there
    # (0.1 s, a second with ten writers at once) held every other writer of the repository back.
    from loomtui.governance.hooks.gate import release_lapsed

    def release() -> object:
        return release_lapsed(workspace)

    return release


def worktree_reader(workspace: Workspace) -> WorktreeTree:
    """How a coordinator reads a live sandbox's uncommitted work: execution's view from outside."""
    from loomtui.execution.sandboxes import worktree_tree

    return lambda record: worktree_tree(workspace, record)


class KeptCoordinator:
    """The coordinator a long-running front-end keeps (the app): built once, its index kept on disk and
    brought up to date in place while the coordination settings it was built with still hold."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.coordinator: Coordinator | None = None
        self._built_with: tuple[int, tuple[str, ...], tuple[str, ...]] | None = None

    def current(self, settings: CoordinationConfig, *, reindex: bool,
                progress: ProgressFn | None = None) -> tuple[Coordinator, str | None]:
        """The coordinator to answer with, built on first use or when asked to re-index under other
        settings; and, when its index was brought up to date in place, what that did."""
        kept = self.coordinator
        wanted = (settings.dependency_hops, settings.include, settings.exclude)
        if reindex and kept is not None and self._built_with == wanted:
            started = time.perf_counter()
            changed = kept.index.refresh()
            kept.index_changed()
            stats = kept.index.stats
            if not changed:
                return kept, f"up to date ({stats['files']} files, nothing changed)"
            return kept, (f"{stats['files']} files; parsed {stats['parsed']}, resolved {stats['resolved']} "
                          f"in {time.perf_counter() - started:.2f}s")
        if kept is None or reindex:
            kept = self.coordinator = governed_coordinator(self.workspace, settings=settings, progress=progress)
            self._built_with = wanted
        return kept, None
