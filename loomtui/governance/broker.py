"""The hook broker: how a sandboxed agent's hooks reach the store it may not write.

Under bubblewrap the agent sees `.git/loom` (the store and the audit log)
read-only, so its hooks cannot claim a region or open an escalation themselves.
The sandbox's supervisor, outside the sandbox, serves a unix socket at
`.git/loom/sandboxes/<id>/broker.sock` (connecting to a socket is allowed on a
read-only mount) and answers for that one sandbox: the sandbox id comes from the
broker, never from the request, so an agent cannot act as another sandbox, and
the vocabulary (`hooks.OPERATIONS`) has no decide, approve or policy write.

Protocol: one JSON object per line each way. A request is `{"op": NAME, ...}`; an
answer is `{"ok": true, ...}` or `{"ok": false, "error": "one line"}`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from loomtui.errors import LoomError, NotARepository
from loomtui.execution.procs import descends_from
from loomtui.governance.agent_ops import WaitTracker, abandon_waits
from loomtui.governance.hooks import (
    HookEvent,
    HookGate,
    configured_sandbox,
    dispatch,
    session_sandbox,
)
from loomtui.governance.hooks.client import (
    MAX_REQUEST_BYTES,
    BrokerClient,
    BrokerError,
    addressable,
)
from loomtui.rates import TokenBucket
from loomtui.repo import find_repo
from loomtui.workspace import Workspace, open_workspace

__all__ = ["Broker", "BrokerClient", "BrokerError", "LocalChannel", "channel_for", "event_channel"]

IDLE_TIMEOUT_S: Final = 300.0
MAX_CONNECTIONS: Final = 32
"""Connections served at once. An agent's hooks hold one each while they run (a permission request
waiting for a lead holds its own); each costs a thread and up to SMALL_REQUEST_BYTES of a line."""
SMALL_REQUEST_BYTES: Final = 64 << 10
"""A line up to this size is read and parsed beside the others'. A longer one (a commit's texts, a large
Write's content: up to MAX_REQUEST_BYTES) waits for the one large slot, so one is held at a time:
eight connections sending 16 MB of `[],[],...` at once took 3.5 GB of the supervisor, outside the sandbox."""
MAX_REQUEST_VALUES: Final = 500_000
"""Values (lists, objects, numbers, strings) a large line may hold: parsed, each costs up to 24 times
its bytes (16 MB of `[],` is 5.6 million lists, 480 MB); a commit of 200,000 paths holds as many."""
_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.S)
"""A JSON string, or an unclosed one to the line's end: possessive, so each quote starts one match that never
backtracks (a line of `"\\"\\"...`, never closed, rescanned the rest at each quote: 100 KB froze the whole
supervisor for 49 s, 16 MB would have for weeks)."""
POLL_S: Final = 0.05
"""How often the serving thread looks for a shutdown (a select with no connection waiting costs nothing)."""
REQUEST_BURST: Final = 300
REQUEST_RATE: Final = 20.0
"""Requests answered a second once a burst of REQUEST_BURST is spent; past it each is refused, and counted in
one entry a minute. Most are audited: one agent's requests wrote 35 MB a second into the store and the
hash-chained log (125 GB an hour), which no limit of the agent's own covers (the supervisor writes them)."""
REFUSED_SAID_S: Final = 60.0
UNCHARGED: Final = frozenset({"escalation_status", "request_status", "withdraw_permission_request", "give_up"})
"""Requests no budget holds back: an agent's hooks waiting on a lead poll four times a second each (eight such
waits refused their polls), and a question withdrawn must never be refused. None of them writes an entry."""


class RequestBudget:
    """Which requests the broker answers: a burst, then a steady rate; the refused counted, said once a minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rate = TokenBucket(REQUEST_BURST, REQUEST_RATE, clock)
        self.refused = 0  # since the last entry said them
        self.said_at = float("-inf")

    def admit(self) -> bool:
        if self.rate.take():
            return True
        self.refused += 1
        return False

    def to_say(self) -> int:
        """How many were refused since they were last said, when it is time to say them (else 0)."""
        if not self.refused or self.clock() < self.said_at + REFUSED_SAID_S:
            return 0
        count, self.refused, self.said_at = self.refused, 0, self.clock()
        return count


class _Handler(socketserver.StreamRequestHandler):
    timeout = IDLE_TIMEOUT_S
    server: _Server

    def handle(self) -> None:
        waits = WaitTracker()  # what this connection's agent waits on: given up when it goes away
        try:
            self._serve(waits)
        finally:
            self.server.broker.abandon(waits.waiting)

    def _serve(self, waits: WaitTracker) -> None:
        refusal = self.server.broker.refuse_peer(self.request)
        if refusal is not None:
            self._send({"ok": False, "error": refusal})
            return
        while True:
            try:
                line = self.rfile.readline(SMALL_REQUEST_BYTES + 1)
            except OSError:  # idle too long, or the agent went away
                return
            if not line:
                return
            if len(line) <= SMALL_REQUEST_BYTES:
                self._send(self.server.broker.answer(line, waits))
                continue
            with self.server.large_slot:
                if not self._answer_large(line, waits):
                    return

    def _answer_large(self, start: bytes, waits: WaitTracker) -> bool:
        """Read the rest of a line past SMALL_REQUEST_BYTES and answer it; False when the connection ends."""
        try:
            line = start if start.endswith(b"\n") else start + self.rfile.readline(MAX_REQUEST_BYTES + 1 - len(start))
        except OSError:
            return False
        if len(line) > MAX_REQUEST_BYTES:
            self._send({"ok": False, "error": f"request over {MAX_REQUEST_BYTES} bytes"})
            return False
        self._send(self.server.broker.answer(line, waits))
        return True

    def _send(self, answer: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(answer, default=str).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    broker: Broker
    _slots: threading.BoundedSemaphore
    large_slot: threading.Lock

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection, while fewer than MAX_CONNECTIONS are served; else one refusal
        line and the connection closed (2,000 idle connections took 2,000 threads and a gigabyte)."""
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(json.dumps({"ok": False, "error": f"more than {MAX_CONNECTIONS} connections at "
                                                                  "once; try again"}).encode() + b"\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_bind(self) -> None:
        with addressable(Path(self.server_address)) as name:  # type: ignore[arg-type]
            self.socket.bind(name)

    def handle_error(self, request: Any, client_address: Any) -> None:
        print(f"broker: a connection failed: {sys.exc_info()[1]}", file=sys.stderr, flush=True)


class Broker:
    """Serves one sandbox's hook requests on a unix socket, from the supervisor.

    `listen()` binds before the agent starts (so its first hook finds the socket);
    `start()` runs the accept loop in a thread. Requests are answered one at a time
    on a single worker thread: the store keeps one connection per thread, and the
    answers take milliseconds.
    """

    def __init__(self, workspace: Workspace, sandbox_id: str, worktree: Path, socket_path: Path, *,
                 confirm_window: float | None = None) -> None:
        if confirm_window is None:
            confirm_window = confirm_window_from_env()
        # One gate for the broker's life: its index and policy stay loaded between requests.
        self.gate = HookGate(workspace.for_agent(sandbox_id), sandbox_id, worktree, confirm_window=confirm_window)
        self.path = socket_path
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sweeper: threading.Thread | None = None
        self._stopping = threading.Event()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker")
        self.budget = RequestBudget()
        self._budget_lock = threading.Lock()

    def listen(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a supervisor that was killed
        server = _Server(str(self.path), _Handler, bind_and_activate=False)
        server.broker = self
        server._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        server.large_slot = threading.Lock()
        try:
            server.server_bind()
            server.server_activate()
        except OSError:
            server.server_close()
            raise
        os.chmod(self.path, 0o600)
        self._server = server

    def start(self) -> None:
        if self._server is None:
            self.listen()
        assert self._server is not None
        # close() waits for serve_forever to see the shutdown, which it checks once per poll: at 0.5 s
        # (socketserver's default) every agent's end reached its review about 0.4 s late.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": POLL_S},
                                        name="broker", daemon=True)
        self._thread.start()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="broker-sweep", daemon=True)
        self._sweeper.start()
        # While the agent starts up: a request that comes meanwhile waits behind it on the one worker.
        self._worker.submit(self._warm)

    def _warm(self) -> None:
        try:
            self.gate.warm()
        except Exception as exc:  # noqa: BLE001 - the first request loads (and reports) it again
            print(f"broker: warming up failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def _sweep_loop(self) -> None:
        """Release claims whose tool call never happened, soon after their window closes."""
        interval = min(15.0, max(0.5, self.gate.confirm_window / 4))
        while not self._stopping.wait(interval):
            try:
                self._worker.submit(self.gate.release_unconfirmed).result()
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried; it must not stop the broker
                print(f"broker: releasing unconfirmed claims failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)

    def refuse_peer(self, connection: socket.socket) -> str | None:
        """Why this connection is not from this sandbox's agent, or None when it is.

        Known from the socket (the kernel's SO_PEERCRED), never from the request: the
        caller must be this supervisor's descendant (the agent and its hooks; orphans
        are adopted, see procs.become_subreaper) or the recorded agent's (a tmux pane).
        """
        try:
            raw = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError as exc:
            return f"cannot tell who is calling ({exc.strerror or exc})"
        pid = struct.unpack("3i", raw)[0]
        if pid > 0 and descends_from(pid, {os.getpid()}):  # the agent and its hooks: no store read needed
            return None
        try:
            record = self._worker.submit(self.gate.workspace.store.get_sandbox, self.gate.sandbox_id).result()
        except LoomError as exc:  # a team's store down a moment: said, where the connection closed unanswered
            return f"cannot tell who is calling: {exc}"
        agent = record.data.get("agent_pid") if record is not None else None
        if pid > 0 and isinstance(agent, int) and descends_from(pid, {agent}):  # the recorded agent (a tmux pane)
            return None
        print(f"broker: refused a connection from pid {pid}, not of sandbox {self.gate.sandbox_id}",
              file=sys.stderr, flush=True)
        return f"this broker serves only sandbox {self.gate.sandbox_id}'s own agent"

    def answer(self, line: bytes, waits: WaitTracker | None = None) -> dict[str, Any]:
        """One request line in, one answer out; never raises."""
        if len(line) > SMALL_REQUEST_BYTES and _values_in(line) > MAX_REQUEST_VALUES:
            return {"ok": False, "error": f"a request holds at most {MAX_REQUEST_VALUES:,} values"}
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, a number of 5,000 digits, `[` nested 100,000 deep
            return {"ok": False, "error": "a request is one line of JSON"}
        op = request.get("op") if isinstance(request, dict) else None
        if not (isinstance(op, str) and op in UNCHARGED):  # `{"op": []}` raised past the budget, unanswered
            with self._budget_lock:
                admitted, to_say = self.budget.admit(), self.budget.to_say()
            if to_say:
                with contextlib.suppress(Exception):  # the store down a moment: said at the next minute instead
                    self._say_refused(to_say)
            if not admitted:
                return {"ok": False, "error": f"too many requests: at most {REQUEST_RATE:g} a second after a burst "
                                              f"of {REQUEST_BURST}; slow down (each is audited)"}
        try:
            answer = self._worker.submit(dispatch, self.gate, request).result()
            if waits is not None:
                waits.note(request, answer)
            return answer
        except Exception as exc:  # noqa: BLE001 - a bug must answer the agent, not kill the connection
            print(f"broker: {request.get('op') if isinstance(request, dict) else '?'} failed: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return {"ok": False, "error": f"internal error in the broker: {type(exc).__name__}"}

    def _say_refused(self, count: int) -> None:
        """The audit entry counting the requests the budget refused (on the worker, as every entry it writes)."""
        self._worker.submit(self.gate.workspace.record, "broker.requests_refused", self.gate.sandbox_id,
                            {"refused": count, "rate": REQUEST_RATE, "burst": REQUEST_BURST}).result()

    def commits_landed(self, old: str, new: str) -> None:
        """The sandbox's branch moved from `old` to `new`: hold what those commits changed (on the worker,
        after the requests before it; the supervisor's beat goes on meanwhile)."""
        def said(done: Future[list[int]]) -> None:
            if not done.cancelled() and done.exception() is not None:
                print(f"broker: holding what commits {old[:12]}..{new[:12]} changed failed: "
                      f"{type(done.exception()).__name__}: {done.exception()}", file=sys.stderr, flush=True)

        with contextlib.suppress(RuntimeError):  # shut down: the agent has ended, and its review holds it
            self._worker.submit(self.gate.hold_commits, old, new).add_done_callback(said)

    def abandon(self, waiting: list[int]) -> None:
        """The agent's connection closed while it waited on these requests: withdraw them
        (a decision that came meanwhile is kept, noted as never heard: the agent was told no)."""
        if waiting:
            with contextlib.suppress(Exception):  # the worker is shut down when the broker closes
                self._worker.submit(abandon_waits, self.gate, list(waiting),
                                    "the agent's connection closed while it waited (its MCP server or "
                                    "hook was stopped)").result()

    def close(self) -> None:
        """Stop serving; the agent has ended, so claims still waiting for their tool call go."""
        self._stopping.set()
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        try:
            self._worker.submit(self.gate.release_unconfirmed, everything=True).result()
            self._worker.submit(self.gate.release_unchanged).result()
            if self.budget.refused:  # refused since the last minute's entry: said before the broker goes
                self._say_refused(self.budget.refused)
        except Exception as exc:  # noqa: BLE001 - closing must finish; the leases still run out
            print(f"broker: releasing unconfirmed claims failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
        self._worker.shutdown(wait=False)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _values_in(line: bytes) -> int:
    """About how many values a JSON line holds, counted without parsing it: the commas outside its
    strings (a value follows each; values without one nest, and the parser refuses deep nesting)."""
    return _JSON_STRING.sub(b"", line).count(b",")


def confirm_window_from_env() -> float | None:
    """`$LOOM_CLAIM_CONFIRM_S`, which overrides `coordination.confirm_seconds` (how long an edit's
    claim waits for its tool call); None when it is not set to a positive number."""
    raw = os.environ.get("LOOM_CLAIM_CONFIRM_S", "")
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


class LocalChannel:
    """Requests answered in this process: a hook outside any sandbox writes the store itself."""

    def __init__(self, gate: HookGate) -> None:
        self.gate = gate

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        answer = dispatch(self.gate, {"op": op, **fields})
        if not answer.get("ok"):
            raise LoomError(str(answer.get("error")))
        return answer

    def close(self) -> None:
        self.gate.workspace.close()


def channel_for(cwd: Path, *, sandbox: str | None = None, session_id: str = "") -> BrokerClient | LocalChannel:
    """Where a hook's requests go: `$LOOM_BROKER` inside a sandbox, else the engines directly.

    Outside a sandbox the sandbox id is `--sandbox`, else the one `hook install`
    recorded for the worktree, else `claude-<session>`. NotARepository when `cwd`
    is in no git repository (then loomtui has no opinion).
    """
    broker = os.environ.get("LOOM_BROKER")
    if broker:
        return BrokerClient(Path(broker))
    tree = find_repo(cwd).root
    trusted = os.environ.get("LOOM_REPO") or tree  # a sandbox's policy is the main checkout's
    sandbox_id = (os.environ.get("LOOM_SANDBOX") or sandbox or configured_sandbox(tree)
                  or session_sandbox(session_id))
    return LocalChannel(HookGate(open_workspace(trusted).for_agent(sandbox_id), sandbox_id, tree,
                                 confirm_window=confirm_window_from_env()))


def event_channel(event: HookEvent, sandbox: str | None) -> BrokerClient | LocalChannel | None:
    """`channel_for` a hook event; None when its directory is in no repository."""
    try:
        return channel_for(event.cwd, sandbox=sandbox, session_id=event.session_id)
    except NotARepository:
        return None
