"""The hook process inside a sandbox: its broker client, and the fast path that needs nothing else.

Every edit an agent makes waits for `loomtui hook claude`, and every commit for
`loomtui hook git-pre-commit`. Inside a sandbox (`$LOOM_BROKER` set) the work is
done by the broker, a long-lived process; the hook only reads its input, works
out the files and lines (stdlib: difflib, shlex, git), sends one request line and
prints the answer. `fast_main` does exactly that, before the command line parser
and before any engine is imported: `loomtui/__main__.py` and `loomtui.cli.main`
call it first. Anything it does not recognise falls through to the full CLI,
which gives the same answers (both run `claude_hook` and `pre_commit_hook`).

Stdlib only (and `loomtui.errors`); `tests/test_hook_fast.py` checks `sys.modules`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from loomtui.errors import LoomError
from loomtui.governance.hooks.claude import (
    DEFAULT_PERMISSION_WAIT_S,
    Channel,
    HookEvent,
    answer_event,
    parse_hook_input,
)
from loomtui.governance.hooks.commit import staged_request

MAX_REQUEST_BYTES: Final = 16 << 20
CLIENT_TIMEOUT_S: Final = 30.0
MAX_INPUT_BYTES: Final = 16 << 20
MAX_WAIT_S: Final = 24 * 3600
"""The longest a permission request may wait for a lead (`--timeout`)."""
_SUN_PATH_MAX: Final = 100  # sun_path holds 108 bytes; keep clear of the edge


class BrokerError(LoomError):
    """The broker could not be reached or refused the request."""


@contextlib.contextmanager
def addressable(path: Path) -> Iterator[str]:
    """A name for `path` that fits a socket address: a long one goes through its directory's fd."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


class _Closed(Exception):
    """The broker had closed the connection before it read the request."""


class BrokerClient:
    """The agent's end: one connection, one request line and one answer line at a time."""

    def __init__(self, path: Path, timeout: float = CLIENT_TIMEOUT_S) -> None:
        self.path = path
        self.timeout = timeout
        self._socket: socket.socket | None = None
        self._reader: Any = None

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            with addressable(self.path) as name:
                sock.connect(name)
        except OSError as exc:
            sock.close()
            raise BrokerError(f"the loomtui broker at {self.path} is not reachable "
                              f"({exc.strerror or exc}); is the sandbox's supervisor running?") from None
        self._socket = sock
        self._reader = sock.makefile("rb")

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; the answer's fields, or BrokerError with the broker's reason. A connection
        the broker has closed meanwhile (it drops one idle for IDLE_TIMEOUT_S) is opened again, and the
        request sent once more: the broker never read it."""
        reused = self._socket is not None
        try:
            line = self._exchange(op, fields)
        except _Closed:
            self.close()
            if not reused:
                raise BrokerError("the loomtui broker closed the connection") from None
            try:
                line = self._exchange(op, fields)
            except _Closed:
                self.close()
                raise BrokerError("the loomtui broker closed the connection") from None
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise BrokerError(f"the loomtui broker refused {op}: {answer.get('error')}")
        return answer

    def _exchange(self, op: str, fields: dict[str, Any]) -> bytes:
        """One request line out and one answer line back; _Closed when the broker had closed the
        connection before (the write fails: nothing was read), BrokerError for any other failure."""
        request = json.dumps({"op": op, **fields}).encode() + b"\n"
        if len(request) > MAX_REQUEST_BYTES:  # the broker reads no further and closes: the agent read only that
            raise BrokerError(f"the request is {len(request):,} bytes, over the {MAX_REQUEST_BYTES:,} the loomtui "
                              "broker reads; write a file this large in parts (a smaller Write, then edits)")
        if self._socket is None:
            self._connect()
        assert self._socket is not None
        try:
            self._socket.sendall(request)
            line: bytes = self._reader.readline(MAX_REQUEST_BYTES + 1)
        except (BrokenPipeError, ConnectionResetError):  # its end was closed before it read this (idle)
            raise _Closed from None
        except OSError as exc:  # a timeout: what the broker did with it is unknown, so no retry
            self.close()
            raise BrokerError(f"the loomtui broker did not answer ({exc.strerror or exc})") from None
        if not line:  # it may have read the request and died: sent again, it could be done twice
            self.close()
            raise BrokerError("the loomtui broker closed the connection")
        return line

    def close(self) -> None:
        if self._socket is not None:
            self._reader.close()
            self._socket.close()
            self._socket = None


# -- the two hooks, shared by the fast path and the full CLI ---------------------------------


def _refuse(reason: str) -> int:
    print(f"loomtui: denied: {reason}", file=sys.stderr)
    return 2


def claude_hook(open_channel: Callable[[HookEvent], Channel | None], *, wait: float = DEFAULT_PERMISSION_WAIT_S,
                exit_code: bool = False) -> int:
    """`loomtui hook claude`: one event on stdin, the answer on stdout.

    A gate: an answer Claude Code cannot read, or a crash (a non-zero exit other
    than 2 counts as "carry on"), would let the tool call through. So every failure
    becomes a deny, exit 2 with one line on stderr.
    """
    channel: Channel | None = None
    try:
        event = parse_hook_input(sys.stdin.read(MAX_INPUT_BYTES))
        channel = open_channel(event)
        answer = None if channel is None else answer_event(event, channel, wait=wait)
    except LoomError as exc:
        return _refuse(str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug here must deny, not let the tool through
        return _refuse(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        if channel is not None:
            channel.close()
    if answer is None:
        return 0  # not a write loomtui governs: the runtime's own permission rules decide
    if exit_code and answer.decision == "deny":
        return _refuse(answer.reason.removeprefix("loomtui: "))
    print(json.dumps(answer.to_claude()))
    return 0


def pre_commit_hook(tree: Path | None, open_channel: Callable[[], Channel]) -> int:
    """`loomtui hook git-pre-commit`: refuse a staged change another sandbox's claims or the policy forbid."""
    channel: Channel | None = None
    try:
        request = staged_request(tree)
        if request is None:
            return 0
        channel = open_channel()
        answer = channel.request("check_commit", **request)
    except LoomError as exc:
        print(f"loomtui: commit refused: {exc}", file=sys.stderr)
        return 1
    finally:
        if channel is not None:
            channel.close()
    if answer["decision"] == "deny":
        reason = str(answer["reason"])
        # A block by the policy is its rules', not another sandbox's claim.
        see = "the policy's rules" if reason.startswith("policy: ") else "`loomtui claim list`"
        print(f"loomtui: commit refused: {reason} (see {see})", file=sys.stderr)
        return 1
    return 0


# -- the fast path ------------------------------------------------------------------------


def fast_main(argv: Sequence[str]) -> int | None:
    """Run `hook claude [OPTIONS]` or `hook git-pre-commit` against `$LOOM_BROKER` with the
    stdlib alone; None when `argv` is anything else (the full CLI takes over)."""
    broker = os.environ.get("LOOM_BROKER")
    if not broker or len(argv) < 2 or argv[0] != "hook":
        return None
    if argv[1] == "git-pre-commit" and len(argv) == 2:
        return pre_commit_hook(None, lambda: BrokerClient(Path(broker)))
    if argv[1] != "claude":
        return None
    options = _claude_options(argv[2:])
    if options is None:
        return None
    wait, exit_code = options
    return claude_hook(lambda _event: BrokerClient(Path(broker)), wait=wait, exit_code=exit_code)


def _claude_options(args: Sequence[str]) -> tuple[float, bool] | None:
    """`--timeout SECONDS`, `--exit-code` and `--sandbox ID` (which a broker ignores: it
    knows its sandbox); None for anything else, or a bad value (the full CLI says why)."""
    wait, exit_code = DEFAULT_PERMISSION_WAIT_S, False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, given, value = arg.partition("=")
        if arg == "--exit-code":
            exit_code = True
        elif name in ("--timeout", "--sandbox"):
            if not given:
                if not rest:
                    return None
                value = rest.pop(0)
            if name == "--timeout":
                try:
                    wait = float(value)
                except ValueError:
                    return None
                if not (math.isfinite(wait) and 0 < wait <= MAX_WAIT_S):
                    return None
        else:
            return None
    return wait, exit_code
