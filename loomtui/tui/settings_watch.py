"""loom.yaml and the policy as the app holds them: read again when their files change, the last good
ones kept while what is on disk is wrong. Plain Python, so a worker thread runs it and tests need no app."""

from __future__ import annotations

import os
from pathlib import Path

from loomtui.config import LoomConfig
from loomtui.errors import LoomError
from loomtui.governance.checkout import policy_paths
from loomtui.governance.policy import Policy, configured_policy
from loomtui.workspace import Workspace


class SettingsWatch:
    """The config and policy last read well, and what is wrong with the files now (`problem`)."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.config: LoomConfig | None = None
        self.policy: Policy | None = None
        self.problem: str | None = None
        self._config_problem: str | None = None
        self._policy_problem: str | None = None
        self._mtimes: dict[str, int | None] = {}
        self._emptied: set[str] = set()

    def _changed(self, path: Path) -> bool:
        try:
            info = os.stat(path)
        except OSError:
            mtime: int | None = None
        else:
            mtime = info.st_mtime_ns
            if info.st_size == 0 and str(path) not in self._emptied and self._mtimes.get(str(path), -1) != -1:
                # Emptied between reads, as an editor or `write_text` truncates before it writes: read again on
                # the next look (the built-in defaults were taken as the last good config, for good).
                self._emptied.add(str(path))
                return False
        self._emptied.discard(str(path))
        changed = self._mtimes.get(str(path), -1) != mtime
        self._mtimes[str(path)] = mtime
        return changed

    def reload_if_changed(self) -> bool:
        """Read each file again if it changed (or was never read well); True when `problem` changed.
        A file left alone keeps its problem: a broken loom.yaml is still said after the policy is fixed."""
        if self._changed(self.workspace.paths.config_path) or self.config is None:
            try:
                self.config = self.workspace.load_config()
                self._config_problem = None
            except LoomError as exc:
                self._config_problem = str(exc)
        config = self.config or LoomConfig()
        # The files it names and the CODEOWNERS too: a CODEOWNERS changed left the app judging and deciding by
        # the old code owners (each looked at: `any` would stop at the first changed).
        read = dict.fromkeys([self.workspace.root / config.policy,
                              *(self.workspace.root / name for name in policy_paths(self.workspace))])
        if any([self._changed(path) for path in read if not path.is_dir()]) or self.policy is None:
            try:
                self.policy = configured_policy(self.workspace.root, config)
                self._policy_problem = None
            except LoomError as exc:
                self._policy_problem = str(exc)
        problem = "\n".join(p for p in (self._config_problem, self._policy_problem) if p) or None
        changed = problem != self.problem
        self.problem = problem
        return changed
