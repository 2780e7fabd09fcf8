"""An isolated agent's git writes, kept private and copied back by its supervisor.

Inside bubblewrap the agent may not write the shared object store or other
sandboxes' branches, so it commits into its own object directory and its own copy
of `refs/heads/loom` (see isolation.PrivateGit). Its supervisor, outside the
sandbox, prepares those before the agent starts and syncs them back while it runs
and when it ends: new objects are copied into the shared store (never replacing
one), and the real branch moves with a compare-and-swap `update-ref`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from loomtui.execution.gitops import Git
from loomtui.execution.isolation import PrivateGit


def prepare(private: PrivateGit, root: Path, common_dir: Path, branch: str) -> None:
    """Create the private directories and seed the agent's copy of its branch."""
    for directory in (private.objects, private.refs, private.logs,
                      common_dir / "logs" / "refs" / "heads" / Path(branch).parent):  # a mount point
        directory.mkdir(parents=True, exist_ok=True)
    tip = Git(root).resolve_commit(branch)
    if tip is not None:
        (private.refs / Path(branch).name).write_text(tip + "\n")


def _copy_new(source: Path, target: Path) -> None:
    """Copy a file that the target store lacks, atomically (objects are immutable)."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.loom-partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def sync(private: PrivateGit, root: Path, common_dir: Path, branch: str) -> str | None:
    """Copy the agent's new objects into the shared store and move its branch; returns the tip."""
    shared = common_dir / "objects"
    if private.objects.is_dir():
        for entry in sorted(private.objects.iterdir()):
            if len(entry.name) == 2 and entry.is_dir():  # loose objects
                for item in entry.iterdir():
                    _copy_new(item, shared / entry.name / item.name)
        pack_dir = private.objects / "pack"
        if pack_dir.is_dir():
            # A pack before its index: git trusts a pack only once its .idx is there.
            for suffix in (".pack", ".rev", ".idx"):
                for item in sorted(pack_dir.glob(f"*{suffix}")):
                    _copy_new(item, shared / "pack" / item.name)
    ref = private.refs / Path(branch).name
    new = ref.read_text().strip() if ref.is_file() else ""
    repo = Git(root)
    old = repo.resolve_commit(branch) or ""
    if new and new != old and len(new) == 40:
        result = repo.run("update-ref", f"refs/heads/{branch}", new, old)
        if result.status != 0:
            return old or None
    return new or old or None
