"""The supervisor the workflow starts agents under (`python -m loomtui.workflow.supervise REPO ID`).

Execution's supervisor runs and records the agent; this one also serves the agent's
hooks (governance's broker) while it runs, and advances the sandbox once the agent
has ended: gates, policy, escalation, and, where the policy allows, the merge, with
no app open.
"""

from __future__ import annotations

import sys

from loomtui.execution.supervisor import main as supervise
from loomtui.governance.broker import Broker
from loomtui.workspace import Workspace


def _after_end(workspace: Workspace, sandbox_id: str) -> None:
    from loomtui.workflow.engine import advance  # the review's engines, loaded once the agent is done

    advance(workspace, sandbox_id)


def main(argv: list[str]) -> int:
    return supervise(argv, hook_server=Broker, after_end=_after_end, name="loomtui.workflow.supervise")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
