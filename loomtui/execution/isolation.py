"""Isolation with bubblewrap: what an agent may read, write and reach.

Inside the sandbox the whole filesystem is read-only, except:

- its own worktree, and its own private `/tmp` and `/run` (fresh tmpfs mounts: the machine's
  sockets, docker's, PostgreSQL's, the user's ssh-agent and D-Bus, are not there to connect to);
  other sandboxes' worktrees, git admin dirs and state dirs are not even visible;
- the parts of the git common dir a commit on its branch needs (objects, the
  `refs/heads/loom` directory and its reflogs, the worktree's own admin dir);
- the runtime's config and cache paths (e.g. `~/.claude`), when they exist: the sandbox's own copies
  (`runtime_state`), the user's login a copy of which only a refresh goes back (`login_copy`), the
  user's settings read-only.

loomtui's state dir (`.git/loom`: the store and the audit log) is shown empty and
read-only even though it sits inside the git dir (but for the git hooks and the
sandbox's own folder), so an agent can never write a decision, nor read every
sandbox's escalations and evidence; only its supervisor, outside, uses them. The
person's checkouts (this one, the main one, linked worktrees) are empty folders too
(their uncommitted work and the files git ignores there, a `.env`, are not the agent's
to read; the agent has its worktree), but for the git dir and what else confined code
runs from there (a virtualenv). The repository's config and hooks, and every other
branch, stay read-only. Its git reads the objects public refs reach and its own branch's, not the
shared store (the person's staged and stashed work, other sandboxes' commits: `seen_objects`).
The network is unshared unless the runtime allows it, the agent sees only its
own processes, and it dies with its supervisor. What it can read it could send
away (its runtime has the network to reach its model), so the user's credentials
are not there to read: ssh and gpg keys, cloud and registry logins, `.netrc`,
`.pgpass`, and the key decisions are signed with (empty in the sandbox).

Without bwrap the agent runs as a plain process and `isolation` says "none".
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loomtui.execution.procs import OOM_SCORE_ADJ_AGENT
from loomtui.execution.seen_objects import PUBLIC_REFS

ISOLATION_BWRAP: Final = "bwrap"
ISOLATION_NONE: Final = "none"

NOT_STOPPED_WITHOUT_ISOLATION: Final[dict[str, str]] = {
    "direct-write": "write outside its worktree (the main checkout, your home, other sandboxes)",
    "read-secrets": "read your ssh keys, cloud logins and decision-signing key (and send them away)",
    "read-objects": "read what you staged or stashed, and other sandboxes' commits, from git's object store",
    "store-write": "write loomtui's state store and audit log",
    "links-out": "write files outside its worktree through symlinks and hard links",
    "bad-object": "corrupt the repository's shared git object store",
    "gate-conftest": "run code as you through the gates (they run its tests)",
    "tree-bomb": "commit a tree of millions of folders in a few objects, which every git reading it (yours, "
                 "loomtui's reviews) walks for hours",
    "hook-settings": "switch Claude Code's hooks off by rewriting its settings with a program (the hooks refuse "
                     "an edit of them, not what a program it runs writes)",
}
"""What a hostile agent run without bubblewrap can do, proven by `loomtui bench hostile`: it is a
plain process of your user. loomtui's own processes still never run what it planted in git."""

AGENT_SETTINGS_DIR: Final = ".claude"
"""Claude Code's settings in a worktree, which carry loomtui's hooks: read-only to the agent in bubblewrap,
a mount point it cannot move aside either (a program it runs could otherwise switch them off)."""
PRIVATE_TMP: Final = Path("/tmp")
"""Replaced by a private tmpfs in the sandbox; anything needed from under it is bound back."""
MACHINE_SOCKETS: Final = (Path("/run"), Path("/var/run"))
"""Where the machine's sockets live (docker, PostgreSQL, and in /run/user the user's ssh-agent,
gpg-agent and D-Bus): a private tmpfs in the sandbox too, since a socket on a read-only mount still
connects (and an unshared network does not cover the filesystem's sockets). Needed paths under them
(a resolv.conf that links into /run, NixOS's /run/current-system) are bound back."""


def _private_dirs() -> list[Path]:
    """The folders the sandbox gets empty and its own: /tmp, and /run (/var/run too, when it is not a link),
    and tmux's socket folders elsewhere (`tmux_socket_dirs`)."""
    machine = [PRIVATE_TMP, *(path for path in MACHINE_SOCKETS if path.is_dir() and not path.is_symlink())]
    return [*machine, *(folder for folder in tmux_socket_dirs()
                        if not any(folder.is_relative_to(outer.resolve()) for outer in machine))]


def tmux_socket_dirs() -> list[Path]:
    """tmux's socket folders outside /tmp: `$TMUX_TMPDIR/tmux-UID` (loomtui's own server, `tmux -L loomtui`, and the
    person's, when it is set) and the folder of the socket `$TMUX` names. A socket on a read-only mount still
    connects, and a server's `new-window` runs anything as the person, outside the sandbox: an isolated agent
    ran `tmux -S .../tmux-0/loomtui new-window` and wrote the main checkout. The folder is made (0700, as tmux
    makes it) when missing: a server started after the sandbox would otherwise show in it."""
    found: list[Path] = []
    base = os.environ.get("TMUX_TMPDIR", "")
    if base and Path(base).is_absolute() and Path(base).is_dir():
        folder = Path(base).resolve() / f"tmux-{os.getuid()}"
        with contextlib.suppress(OSError):
            folder.mkdir(mode=0o700, exist_ok=True)
        found.append(folder)
    named = Path(os.environ.get("TMUX", "").split(",")[0])
    if named.is_absolute() and named.parent.name.startswith("tmux-"):  # never a folder of the person's own files
        found.append(named.parent.resolve())
    return sorted({folder for folder in found if folder.is_dir()})  # resolved: never a link


@dataclass(frozen=True)
class IsolationStatus:
    available: bool
    program: str | None
    detail: str
    counts_processes: bool = False
    """Whether a sandbox's processes can be limited on their own (`MAX_PROCESSES`): bwrap gives it a
    user namespace of its own (as any user but root it does), where the kernel counts them apart."""


MAX_PROCESSES: Final = 4096
"""Processes and threads one sandbox may have at once (RLIMIT_NPROC, set inside its own user namespace,
so the user's other processes do not count): a fork bomb stops there, not at the whole user's limit
(a hostile agent started 1,500 and the host was the next to fail). Root is not counted by the kernel."""


UNSHARED: Final = ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL")
"""What every confined process gets of its own, and no capability: run by root, bwrap would otherwise
leave the agent CAP_SYS_ADMIN, and `mount -o remount,rw` undoes every read-only bind (the store, the
audit log, the repository's hooks)."""


@functools.lru_cache(maxsize=1)
def isolation_status() -> IsolationStatus:
    """Whether bwrap is installed *and* works here (containers may forbid namespaces)."""
    program = shutil.which("bwrap")
    if program is None:
        return IsolationStatus(False, None, "bubblewrap (bwrap) is not installed: agents run NOT isolated, "
                                            f"so a hostile one can {without_isolation()}")
    probe = [program, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *UNSHARED,
             "--unshare-net", "--die-with-parent", "--",
             *(["readlink", "/proc/self/ns/user"] if shutil.which("readlink") else ["true"])]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return IsolationStatus(False, program, f"bwrap cannot run ({exc}): agents run NOT isolated, "
                                               f"so a hostile one can {without_isolation()}")
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        return IsolationStatus(False, program, f"bwrap is installed but fails here ({reason}): "
                                               f"agents run NOT isolated, so a hostile one can "
                                               f"{without_isolation()}")
    root, prlimit = os.geteuid() == 0, _prlimit()
    counted = _own_user_namespace(done.stdout.strip()) and not root and prlimit is not None
    limit = f"at most {MAX_PROCESSES:,} processes per sandbox" if counted else \
        "no RLIMIT_NPROC per sandbox (" + ("the kernel does not count root's: see limits" if root else
                                                 "prlimit is not installed" if prlimit is None else
                                                 "bwrap gives none a user namespace of its own") + ")"
    return IsolationStatus(True, program, f"bubblewrap at {program}: agents run isolated, {limit}", counted)


def _own_user_namespace(inside: str) -> bool:
    """Whether `inside` (the user namespace confined code saw) is not this process's own."""
    try:
        return bool(inside) and inside != os.readlink("/proc/self/ns/user")
    except OSError:
        return False


def process_limit(limit: int | None) -> list[str]:
    """The command that starts confined code with at most `limit` processes (None: no limit): set inside
    the sandbox, so the user namespace bwrap made counts them, and not at its creation, whose limit
    would bound the user's processes everywhere."""
    program = _prlimit()
    if limit is None or program is None:
        return []
    return [program, f"--nproc={limit}:{limit}", "--"]


def oom_first() -> list[str]:
    """The command that makes what it starts the OOM killer's first choice (`OOM_SCORE_ADJ_AGENT`, with
    util-linux's choom; nothing without it): the gates running an agent's tests, isolated or not, as the
    agent (whose own start sets it too, `procs.agent_child_hook`)."""
    program = _choom()
    return [program, "-n", str(OOM_SCORE_ADJ_AGENT), "--"] if program is not None else []


@functools.lru_cache(maxsize=1)
def _choom() -> str | None:
    return shutil.which("choom")


@functools.lru_cache(maxsize=1)
def _prlimit() -> str | None:
    """util-linux's prlimit, looked for once (every confined command line starts with it)."""
    return shutil.which("prlimit")


def sandbox_process_limit() -> int | None:
    """`MAX_PROCESSES` where bwrap counts a sandbox's processes apart, else None."""
    return MAX_PROCESSES if isolation_status().counts_processes else None


def without_isolation() -> str:
    """What an agent without isolation can do that loomtui cannot stop, as one clause."""
    return "; ".join(NOT_STOPPED_WITHOUT_ISOLATION.values())


def isolation_available() -> bool:
    """True when sandboxes can run under bubblewrap."""
    return isolation_status().available


@dataclass(frozen=True)
class Checkout:
    """The person's checkout, an empty folder to confined code, and what is bound back inside it."""

    root: Path
    shown: tuple[Path, ...] = ()  # read-only: the git dir, a virtualenv, loomtui itself when they live there


@dataclass(frozen=True)
class SandboxMounts:
    """The paths of one sandbox that its bwrap command line is made from."""

    worktree: Path
    worktree_git_dir: Path  # <common>/worktrees/<name>: the worktree's HEAD, index, logs
    common_dir: Path
    state_dir: Path
    branch: str  # e.g. loom/ab12cd
    readable: tuple[Path, ...] = ()  # paths under the private /tmp to bind back read-only
    checkouts: tuple[Checkout, ...] = ()  # the person's checkouts: empty folders but for what they show
    own_state: tuple[tuple[Path, Path], ...] = ()  # (the sandbox's own copy, the runtime state path it stands for)
    obeyed: tuple[tuple[Path, Path], ...] = ()  # (source, path) read-only inside those (`runtimes.StateFolder`)
    network: bool = False
    private_git: Path | None = None  # see PrivateGit: the agent's own objects and branch refs
    published_objects: Path | None = None  # the published store its own store's alternate names (seen_objects)
    max_processes: int | None = None  # `MAX_PROCESSES` where the kernel counts them apart (`process_limit`)
    own_dir: Path | None = None  # the sandbox's own state dir (its broker socket, its context)
    hidden: tuple[Path, ...] = ()  # other sandboxes' dirs, worktrees and git admin dirs: not even seen
    secrets: tuple[Path, ...] = ()  # the user's credentials (`secret_paths`): empty in the sandbox
    configs: tuple[tuple[Path, Path], ...] = ()  # (a copy without credentials, the git config it stands for)
    git_dir_also: tuple[Path, ...] = ()  # files in the git dir its config includes (`include.path`), shown too


SECRET_DIRS: Final = (".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".config/gh",
                      ".password-store", ".local/share/keyrings")
SECRET_FILES: Final = (".netrc", ".pgpass", ".git-credentials", ".config/git/credentials", ".npmrc", ".pypirc",
                       ".cargo/credentials.toml", ".cargo/credentials", ".vault-token", ".config/hub",
                       ".terraform.d/credentials.tfrc.json",
                       # Histories: a token or password typed on a command line stays in them.
                       ".bash_history", ".zsh_history", ".histfile", ".local/share/fish/fish_history",
                       ".python_history", ".psql_history", ".mysql_history", ".node_repl_history",
                       ".sqlite_history", ".rediscli_history")
"""Where a user's credentials live under a home directory: no agent or gate reads them."""
CLOUD_LOGINS: Final[dict[str, tuple[str, ...]]] = {
    ".aws": ("CLAUDE_CODE_USE_BEDROCK", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"),
    ".config/gcloud": ("CLAUDE_CODE_USE_VERTEX", "CLOUDSDK_CONFIG"),
    ".azure": ("CLAUDE_CODE_USE_FOUNDRY", "AZURE_CONFIG_DIR"),
}
"""A cloud's login folder, and the variables that say an agent's runtime reads that login (Claude Code
on Bedrock reads `~/.aws`): given any, the folder stays readable. An API key in a variable
(`AZURE_OPENAI_API_KEY`, `AWS_ACCESS_KEY_ID`) needs no folder: the login's tokens stay hidden."""


def secret_paths(homes: Iterable[Path], extra: Iterable[Path] = (),
                 env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The credentials that exist under each of `homes`, and `extra` (a signing key file) if it exists;
    not a cloud's login folder that the agent's environment `env` says its runtime uses."""
    given = {name for name, value in (env or {}).items() if value}
    used = {folder for folder, names in CLOUD_LOGINS.items() if given & set(names)}
    found: list[Path] = []
    candidates = [home / name for home in homes if home.is_absolute()
                  for name in (*SECRET_DIRS, *SECRET_FILES) if name not in used]
    for path in (*candidates, *extra):
        if path.is_absolute() and (path.is_dir() or path.is_file()) and path not in found:
            found.append(path)
    return tuple(found)


_URL_USER = re.compile(r"(?i)\b(https?://)[^/\s@\"]+@")
_EXTRA_HEADER = re.compile(r"(?im)^[ \t]*extraheader[ \t]*=.*(?:\n|$)")


def credential_free(config: str) -> str:
    """A git config's text without the credentials it may hold: a token or password in a remote's URL
    (`https://bob:ghp_...@github.com/...`) and `http.extraheader` (where CI checkouts keep theirs).
    Confined code reads the repository's config; what it reads it could send away."""
    return _EXTRA_HEADER.sub("", _URL_USER.sub(r"\1", config))


PRIVATE_TMP_BYTES: Final = 2 << 30
"""The agent's own /tmp holds this much; a tmpfs unsized takes half the machine's memory, and one
agent filled 3 GB of it (the host's shared memory with it)."""
SHARED_MEMORY: Final = Path("/dev/shm")
"""POSIX shared memory (Python's multiprocessing, Chromium): a sized tmpfs of its own, the rest of /dev
read-only."""
SHARED_MEMORY_BYTES: Final = 512 << 20
SMALL_TMPFS_BYTES: Final = 16 << 20
"""Every other folder the sandbox gets empty (/run, a secret folder shown empty): nothing lives there."""


def _fresh_tmpfs(folder: Path) -> list[str]:
    """bwrap arguments for `folder` as an empty tmpfs of its own, sized (an unsized one can take half
    the machine's memory)."""
    size = PRIVATE_TMP_BYTES if folder == PRIVATE_TMP else SHARED_MEMORY_BYTES if folder == SHARED_MEMORY \
        else SMALL_TMPFS_BYTES
    return ["--size", str(size), "--tmpfs", str(folder)]




def _emptied(paths: Iterable[Path]) -> list[str]:
    """bwrap arguments that show each of `paths` empty: a folder as a fresh tmpfs, a file as /dev/null."""
    argv: list[str] = []
    for path in paths:
        argv += _fresh_tmpfs(path) if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
    return argv


@dataclass(frozen=True)
class PrivateGit:
    """Where an isolated agent's git writes land, outside the shared repository."""

    root: Path

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def shared(self) -> Path:
        """Where the agent sees the objects it may read (read-only: `seen`); an empty directory outside."""
        return self.root / "shared-objects"

    @property
    def seen(self) -> Path:
        """The sandbox's own store of what its branch reaches beyond the published store, whose alternate
        that is (execution.seen_objects): written by the supervisor only."""
        return self.root / "seen-objects"

    @property
    def alternates(self) -> Path:
        """The private store's `info/alternates`, naming `shared`: written by the supervisor only."""
        return self.objects / "info" / "alternates"

    @property
    def refs(self) -> Path:
        return self.root / "refs-heads"

    @property
    def logs(self) -> Path:
        return self.root / "logs-heads"

    def environment(self, common_dir: Path) -> dict[str, str]:
        """What makes git write objects privately while reading the shared store."""
        return {"GIT_OBJECT_DIRECTORY": str(self.objects),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(common_dir / "objects")}


def checkout_shown(root: Path, paths: Iterable[Path]) -> Checkout:
    """The checkout at `root` with those of `paths` inside it shown (outermost first, nested ones dropped)."""
    return Checkout(root, under_folders(paths, [root]))


def under_private_dirs(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The paths the private /tmp and /run would hide, outermost first, nested ones dropped."""
    return under_folders(paths, _private_dirs())


def under_folders(paths: Iterable[Path], folders: Sequence[Path]) -> tuple[Path, ...]:
    """Those of `paths` inside any of `folders` (not a folder itself), outermost first, nested ones dropped."""
    hidden = sorted({p for p in paths if p.is_absolute() and p not in folders
                     and any(p.is_relative_to(folder) for folder in folders)}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in hidden:
        if not any(path.is_relative_to(outer) for outer in kept):
            kept.append(path)
    return tuple(kept)


def _tmux_socket_alone(private: Sequence[Path]) -> list[Path]:
    """The socket `$TMUX` names where its folder is not among the `private` ones (`tmux -S ~/work.sock`: the
    folder is the person's): the socket alone, shown as /dev/null."""
    named = Path(os.environ.get("TMUX", "").split(",")[0])
    if not named.is_absolute() or not named.exists() or named.is_dir():
        return []
    return [] if any(named.is_relative_to(folder.resolve()) for folder in private) else [named]


def _base_mounts(program: str, readable: Sequence[Path], checkouts: Sequence[Checkout]) -> list[str]:
    """The start of every confined command line: the filesystem read-only, a private /tmp and /run with
    `readable` bound back, and the person's `checkouts` empty folders but for what they show (on top of
    `readable`, which may hold one: a repository under /tmp; the outer first)."""
    private = _private_dirs()
    argv = [program, "--ro-bind", "/", "/", "--dev", "/dev", *_fresh_tmpfs(SHARED_MEMORY), "--proc", "/proc",
            *(argument for folder in private for argument in _fresh_tmpfs(folder)),
            *_emptied(_tmux_socket_alone(private))]
    for path in readable:
        argv += ["--ro-bind-try", str(path), str(path)]
    for checkout in sorted(checkouts, key=lambda c: len(c.root.parts)):
        argv += _fresh_tmpfs(checkout.root)
        for path in checkout.shown:
            argv += ["--ro-bind-try", str(path), str(path)]
    return argv


def _read_only_at_last(*folders: Path | None, hidden: Sequence[Path] = ()) -> list[str]:
    """bwrap arguments that make `folders`, fresh tmpfs mounts, read-only once every mount under them is
    made; and /dev (bwrap's own tmpfs, unsized: 3 GB were written there) and the `hidden` folders."""
    return [argument for folder in (*folders, *hidden, Path("/dev")) if folder
            for argument in ("--remount-ro", str(folder))]


GIT_DIR_SHOWN: Final = ("HEAD", "commondir", "config", "info", "packed-refs", "shallow")
"""What of the repository's git dir confined code sees: what git needs to work in a linked worktree. The
rest is the person's and not there: the main checkout's index, rerere's preimages, a rebase's or `git am`'s
patches, LFS objects, COMMIT_EDITMSG and the other *_HEAD and *_MSG files, reflogs, submodules'
repositories, hooks (an agent read and committed them all). `objects`, `worktrees` and loomtui's own folder
are mounted on top as each command needs, and of `refs` the public ones, whose objects it reads
(`seen_objects.PUBLIC_REFS`): `git log --all`, `fetch` and `stash list` failed on `refs/stash` and
`refs/notes/loom`, whose objects are not there."""


def _git_dir_hidden(common_dir: Path, also: Sequence[Path] = ()) -> list[str]:
    """bwrap arguments that show the repository's git dir as an empty folder but for GIT_DIR_SHOWN and
    `also` (files its config includes from there) (a folder, not a list of what to hide: what the person's
    git writes there later is not seen either). Rerere's folder is there, empty and the sandbox's own: with
    `rerere.enabled` git stops a commit it cannot make it in, and the person's preimages are their files."""
    argv = _fresh_tmpfs(common_dir)
    for path in (*(common_dir / name for name in GIT_DIR_SHOWN), *also):
        argv += ["--ro-bind-try", str(path), str(path)]
    refs = common_dir / "refs"
    if refs.is_dir():  # the sandbox's own folder, where a stash the agent makes goes, and the public refs in it
        argv += _fresh_tmpfs(refs)
        for public in PUBLIC_REFS:  # those whose objects it reads (the stash's, the notes' are not there)
            argv += ["--ro-bind-try", str(common_dir / public), str(common_dir / public)]
    # Rerere's records and the reflogs (its own branch's are bound on top) are the sandbox's own too.
    return argv + _fresh_tmpfs(common_dir / "rr-cache") + _fresh_tmpfs(common_dir / "logs")


def bwrap_argv(mounts: SandboxMounts, program: str = "bwrap") -> list[str]:
    """The bwrap command line (to be followed by the agent's argv). Later mounts stack on earlier ones."""
    argv = _base_mounts(program, mounts.readable, mounts.checkouts)
    argv += _git_dir_hidden(mounts.common_dir, mounts.git_dir_also)
    argv += _emptied(mounts.secrets)
    argv += _config_mounts(mounts.configs)
    argv += _state_dir_hidden(mounts.state_dir)
    # Other sandboxes are not there at all: not their broker sockets (an agent could
    # otherwise ask in another sandbox's name), not their worktrees or git admin dirs.
    for path in mounts.hidden:
        argv += _fresh_tmpfs(path)
    if mounts.own_dir is not None:
        argv += ["--ro-bind", str(mounts.own_dir), str(mounts.own_dir)]
    common = mounts.common_dir
    branch_dir = str(Path(mounts.branch).parent)  # "loom": git writes <ref>.lock beside the ref
    if mounts.private_git is None:
        for path, required in (
            (common / "objects", True),
            (common / "refs" / "heads" / branch_dir, True),
            (common / "logs" / "refs" / "heads" / branch_dir, False),
            (mounts.worktree_git_dir, True),
        ):
            argv += ["--bind" if required else "--bind-try", str(path), str(path)]
    else:
        argv += ["--bind", str(mounts.worktree_git_dir), str(mounts.worktree_git_dir)]
        # The shared object store is not read, and the other sandboxes' branches stay
        # read-only: the agent writes objects to its own directory and sees, in place of
        # refs/heads/loom, a directory holding only its own branch. Its supervisor
        # brings both back, verified (execution.privategit).
        # The private directory is also mounted as the repository's objects, with what
        # the agent may read (its branch's objects, then the published store: never the
        # person's staged or stashed work, nor other sandboxes' commits; see
        # execution.seen_objects) as its alternate: a reader that ignores
        # GIT_OBJECT_DIRECTORY and opens .git/objects itself (GitPython's GitDB, which
        # Aider uses) finds the agent's own commits too.
        private = PrivateGit(mounts.private_git)
        argv += ["--bind", str(private.objects), str(private.objects),
                 "--ro-bind", str(private.seen), str(private.shared),
                 "--bind", str(private.objects), str(common / "objects")]
        if mounts.published_objects is not None:
            argv += ["--ro-bind", str(mounts.published_objects), str(mounts.published_objects)]
        for alternates in (private.alternates, common / "objects" / "info" / "alternates"):
            argv += ["--ro-bind", str(private.alternates), str(alternates)]
        for source, target in (
            (private.refs, common / "refs" / "heads" / branch_dir),
            (private.logs, common / "logs" / "refs" / "heads" / branch_dir),
        ):
            argv += ["--bind", str(source), str(target)]
    argv += ["--bind", str(mounts.worktree), str(mounts.worktree)]
    settings = mounts.worktree / AGENT_SETTINGS_DIR
    if settings.is_dir() and not settings.is_symlink():
        argv += ["--ro-bind", str(settings), str(settings)]
    # The runtime's state is the sandbox's own (execution.runtime_state), its login a copy
    # (execution.login_copy); on top of it, what the CLI obeys, from the user's own.
    for own, path in mounts.own_state:
        argv += ["--bind", str(own), str(path)]
    for source, path in mounts.obeyed:
        argv += ["--ro-bind", str(source), str(path)]
    argv += [*_read_only_at_last(mounts.common_dir, mounts.state_dir, *(c.root for c in mounts.checkouts),
                                 hidden=mounts.hidden), *UNSHARED]
    if not mounts.network:
        argv.append("--unshare-net")
    argv += ["--die-with-parent", "--chdir", str(mounts.worktree), "--", *oom_first(),
             *process_limit(mounts.max_processes)]
    return argv


PUBLISHED_OBJECTS: Final = "published-objects"
"""In loomtui's state dir: the objects the repository's public refs reach, what agents read (seen_objects)."""

STATE_DIR_SHOWN: Final = ("hooks",)
"""What of loomtui's state dir confined code sees: the git hooks its worktree's `core.hooksPath` names
(and the sandbox's own folder, bound back by `bwrap_argv`)."""


def _state_dir_hidden(state_dir: Path) -> list[str]:
    """bwrap arguments that show loomtui's state dir empty but for `STATE_DIR_SHOWN`, read-only: the
    store and the audit log (every sandbox's escalations, the evidence and the people deciding them),
    other sandboxes' gate runs, are not there to read. Read-only, only its supervisor writes them; the
    mounts made under it, its own folder's, are made before the closing `--remount-ro`."""
    argv = _fresh_tmpfs(state_dir)
    for name in STATE_DIR_SHOWN:
        argv += ["--ro-bind-try", str(state_dir / name), str(state_dir / name)]
    return argv


def _config_mounts(configs: Sequence[tuple[Path, Path]]) -> list[str]:
    """Each git config (the repository's, the user's) seen as its copy without credentials (`credential_free`)."""
    return [argument for copy, config in configs for argument in ("--ro-bind", str(copy), str(config))]


def scratch_bwrap_argv(tree: Path, common_dir: Path, state_dir: Path, *, readable: Sequence[Path] = (),
                       hidden: Sequence[Path] = (),
                       writable: Sequence[Path] = (), secrets: Sequence[Path] = (),
                       configs: Sequence[tuple[Path, Path]] = (), checkouts: Sequence[Checkout] = (),
                       git_dir_also: Sequence[Path] = (), max_processes: int | None = None,
                       program: str = "bwrap") -> list[str]:
    """The bwrap command line for code run in a scratch tree (a commit's baseline, a merged gate):
    everything read-only but the tree and `writable`, no network, no sandbox's state or worktree seen,
    nor the person's checkouts."""
    argv = _base_mounts(program, readable, checkouts)
    argv += _git_dir_hidden(common_dir, git_dir_also)
    argv += _emptied(secrets)
    argv += _config_mounts(configs)
    argv += _state_dir_hidden(state_dir)
    for path in hidden:
        argv += _fresh_tmpfs(path)
    for path in (tree, *writable):
        argv += ["--bind", str(path), str(path)]
    return argv + [*_read_only_at_last(common_dir, state_dir, *(c.root for c in checkouts), hidden=hidden), *UNSHARED,
                   "--unshare-net", "--die-with-parent", "--chdir", str(tree), "--", *oom_first(),
                   *process_limit(max_processes)]

