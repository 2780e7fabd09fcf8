"""Whose policy the checkout holds: loomtui judges by the files in the repository's own checkout, and a
person who checked out an agent's branch there (to try it) put that agent's policy, gates and config in
its place for every review and decision made meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from loomtui.errors import LoomError
from loomtui.governance.gitfacts import git_output

POLICY_FILES: Final = (".loom", "CODEOWNERS", ".github/CODEOWNERS", "docs/CODEOWNERS")
"""Where loomtui's config, the policy and the code owners live in a repository."""


def refuse_an_agents_policy(root: Path) -> None:
    """Raise LoomError (exit 1) when the checkout at `root` holds commits changing the policy files that only
    sandboxes' `loom/` branches have (an agent's branch checked out, or a commit of one): judged by them, an
    agent's change approved itself, and another agent's too. A branch of a person's own is theirs to judge by."""
    # Commits of HEAD's that no person's branch, local or fetched, has (none at all on a branch of one's own).
    found = git_output(root, "rev-list", "-n", "1", "HEAD", "--not", "--exclude=loom/*", "--branches",
                       "--exclude=*/loom/*", "--remotes", "--", *POLICY_FILES)
    if not found:
        return
    branch = git_output(root, "for-each-ref", "--count=1", "--contains", found, "--format=%(refname:short)",
                        "refs/heads/loom/")
    if branch:
        raise LoomError(f"the checkout at {root} holds {branch}'s change to loomtui's config or policy "
                        f"(commit {found[:12]}): no change is judged by an agent's own policy; check out your "
                        "branch again (`git switch -`), then do it", exit_code=1)
