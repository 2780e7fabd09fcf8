"""A coordinator whose overrides are the policy's: who may force a refused claim."""

from __future__ import annotations

from loomtui.coordination.claims import Coordinator, OverrideCheck, open_coordinator
from loomtui.coordination.index import RepoIndex
from loomtui.governance.policy import can_override, load_policy
from loomtui.workspace import Workspace


def policy_override_check(workspace: Workspace) -> OverrideCheck:
    """Ask the repository's policy, as it is when asked, whether a user may override."""

    def may_override(user: str) -> bool:
        return can_override(load_policy(workspace.root, workspace.load_config().policy), user)

    return may_override


def governed_coordinator(workspace: Workspace, index: RepoIndex | None = None) -> Coordinator:
    """`open_coordinator` with the policy's override check: what front-ends and the workflow use."""
    return open_coordinator(workspace, index, may_override=policy_override_check(workspace))
