"""A sandbox's own copy of its runtime's state: where the agent's CLI keeps sessions, caches and config.

A CLI writes its state as it runs (Claude Code its sessions and `~/.claude.json`, Codex its
history). Written into the user's own folders, it is read again by the same CLI outside any
sandbox, and some of it is obeyed there: `~/.claude.json` holds user-scope MCP servers (commands
run at the user's next session), and Claude Code takes `~/.claude/.config.json`, once it exists,
as its whole global config. So under isolation each state path is the sandbox's own: a folder
starts empty, a file as a copy of the user's, and only two things come from the user's own (see
`runtimes.StateFolder`): the login, as a copy kept in step with the user's (`login_copy`: a refresh
goes back to the user, another account's login does not), and what the CLI obeys outside, read-only
(settings, instructions, commands).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loomtui.execution import login_copy
from loomtui.execution.runtimes import STATE_FOLDERS, LaunchSpec, StateFolder, expand_path
from loomtui.files import remove_tree

MAX_STATE_BYTES: Final = 1 << 30
"""What a sandbox's runtime state may take on disk: it lives on the store's disk, and an agent that
wrote 400 MB into ~/.claude filled it, the store with it (its log is capped the same way)."""


def state_bytes(root: Path, stop_past: int) -> int:
    """The disk the files under `root` take (blocks, so a sparse file counts what it holds), never
    following a link; counting stops once past `stop_past`."""
    total = 0
    folders = [root]
    while folders and total <= stop_past:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total


def state_overflow(root: Path, limit: int = MAX_STATE_BYTES) -> str | None:
    """Why the agent must stop (its runtime's state passed `limit` on disk), or None."""
    used = state_bytes(root, limit)
    if used <= limit:
        return None
    return (f"its runtime's own state (~/.claude and the like, kept on the store's disk) passed "
            f"{limit >> 20:,} MiB: the agent was stopped")


@dataclass(frozen=True)
class RuntimeState:
    """The mounts of one sandbox's runtime state."""

    own: tuple[tuple[Path, Path], ...] = ()
    """(the sandbox's own folder or file, the user's path it stands in for)."""
    logins: tuple[Path, ...] = ()
    """The user's login files the sandbox has a copy of in its folder (`login_copy`)."""
    obeyed: tuple[tuple[Path, Path], ...] = ()
    """(source, path) bound read-only on top of the sandbox's folder: the user's settings and
    instructions, and where the user has none, an empty one of the sandbox's (`{}` for JSON) that the
    agent cannot write either: it wrote `disableAllHooks` into a settings file the user lacked."""

    @property
    def paths(self) -> tuple[Path, ...]:
        """The user's state paths the sandbox has its own of."""
        return tuple(user for _own, user in self.own)


def runtime_state(root: Path, spec: LaunchSpec, env: Mapping[str, str], keep_out: Iterable[Path]) -> RuntimeState:
    """The sandbox's own state for `spec`'s runtime, made under `root` where missing: one per state path
    that exists for the user (`spec.state_paths` against `env`), but a path that holds any of `keep_out`
    (a `$CLAUDE_CONFIG_DIR` set to the home or the repository is no runtime's own folder)."""
    home = env.get("HOME")
    if not home:
        return RuntimeState()
    values = {**env, "HOME": home}
    outside = [Path(path) for path in keep_out]
    own: list[tuple[Path, Path]] = []
    logins: list[Path] = []
    obeyed: list[tuple[Path, Path]] = []
    for raw in spec.state_paths:
        user = expand_path(raw, values)
        if user is None or not user.is_absolute() or user in (u for _o, u in own) or \
                any(place.is_relative_to(user) for place in outside):
            continue
        made = STATE_FOLDERS.get(raw)
        if made is not None and not user.exists() and not (made.instead and values.get(made.instead)):
            with contextlib.suppress(OSError):  # a home the user cannot write: read-only, as before
                user.mkdir(mode=0o700)
        if not user.exists():
            continue
        mine = root / _own_name(user)
        folder = STATE_FOLDERS.get(raw, StateFolder(obeyed=())) if user.is_dir() else None
        try:
            if folder is not None:
                _own_folder(mine, user, folder)
            elif not _own_copy(mine, user):
                continue
        except OSError:
            continue  # not the sandbox's to write, then: read-only, as the rest of the user's files
        if folder is not None:
            for name in folder.logins:
                try:
                    if (user / name).exists():
                        login_copy.track(root, mine / name, user / name)
                        logins.append(user / name)
                except OSError:
                    continue  # no copy could be made: the agent has no login (and says so)
            obeyed += [(user / name if (user / name).exists() else mine / name, user / name)
                       for name in folder.obeyed]
        own.append((mine, user))
    return RuntimeState(tuple(own), tuple(logins), tuple(obeyed))


def _own_name(user: Path) -> str:
    """A name for the sandbox's own copy of `user`, one per path (two runtimes' `.claude` stay apart)."""
    return hashlib.sha256(os.fsencode(user)).hexdigest()[:12] + "-" + (user.name.lstrip(".") or "state")


def _own_folder(mine: Path, user: Path, folder: StateFolder) -> None:
    """The sandbox's folder for `user`: the copies `folder` names made once, a mount point for each
    obeyed entry the user has, of the same kind, and an empty placeholder for each one the user lacks
    (what the agent left in their place is taken away: `_make_point`). Its login is `login_copy`'s."""
    mine.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in folder.copied:
        _own_copy(mine / name, user / name)
    for name in folder.afresh:
        _make_point(mine / name, folder=True, fresh=True)  # whatever the last run left, at any depth
        if (user / name).is_dir():
            # Links kept as links, never followed: as the user's own folder bound there would show them. A
            # file that cannot be read is left out (the rest is copied); a FIFO or socket is never opened.
            with contextlib.suppress(OSError):
                shutil.copytree(user / name, mine / name, symlinks=True, dirs_exist_ok=True, ignore=_not_files)
    for name in folder.obeyed:
        source, point = user / name, mine / name
        if source.exists():
            _make_point(point, folder=source.is_dir())
        else:  # none of the user's: an empty one of its own, bound read-only
            _make_point(point, folder=_is_folder_name(name), fresh=True)
            if not point.is_dir():
                point.write_text("{}\n" if name.endswith(".json") else "", encoding="utf-8")


def _not_files(folder: str, names: list[str]) -> set[str]:
    """Of `names` in `folder`, those no copy should open: FIFOs, sockets, devices (a copy would block)."""
    return {name for name in names
            if not stat.S_ISREG(mode := os.lstat(os.path.join(folder, name)).st_mode)
            and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode)}


def _is_folder_name(name: str) -> bool:
    """Whether an obeyed entry is a folder (`commands`, `skills`) rather than a file (`settings.json`)."""
    return "." not in name


def _make_point(point: Path, *, folder: bool, fresh: bool = False) -> None:
    """A file or folder at `point` (a mount point, or a placeholder: `fresh` empties a folder); what
    the agent left there in its place (a symlink that would carry the mount elsewhere, a FIFO, a file
    where a folder goes) is taken away, never followed."""
    real_folder = point.is_dir() and not point.is_symlink()
    if real_folder and (not folder or fresh):
        remove_tree(point)  # the agent's: any depth
    elif not real_folder and (point.is_symlink() or (point.exists() and (folder or not point.is_file()))):
        point.unlink()
    if folder:
        point.mkdir(exist_ok=True)
    else:
        point.touch(mode=0o600, exist_ok=True)


def _own_copy(mine: Path, user: Path) -> bool:
    """A copy of the user's file `user` at `mine`, made when missing (then the sandbox's own); False
    when `user` is no regular file to copy."""
    if mine.is_file() and not mine.is_symlink():
        return True
    if not user.is_file():
        return False
    if mine.is_symlink() or mine.exists():  # a link, a FIFO, a folder the agent left in its place
        _make_point(mine, folder=False)
    mine.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(user, mine)
    mine.chmod(0o600)
    return True
