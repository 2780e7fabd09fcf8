"""`loomtui mcp`: an MCP server over stdio for the agent of one sandbox.

Claude Code calls `permission_prompt` (named by `--permission-prompt-tool
mcp__loomtui__permission_prompt`) whenever its own rules would ask a person, and
waits for the answer: a text block holding `{"behavior": "allow", "updatedInput":
{...}}` or `{"behavior": "deny", "message": "..."}`. The answer is what loomtui's
PreToolUse hook would say (the claim gate: a write inside this sandbox's claims or
on free regions is allowed, one on another sandbox's regions or a blocked path is
denied), and where a person must agree (a claim-stage `require`, or a prompt on
anything loomtui does not judge) it opens a `permission-request` escalation and
waits, at most `--timeout` seconds, for a lead's `a`/`r` in the queue or `loomtui
escalation approve|reject`. On timeout the request is withdrawn and the answer is
deny; if this server is stopped mid-wait the request is withdrawn too (by the
broker, which sees the connection close, or outside a sandbox by the next server).

The other tools let agents cooperate: `my_claims`, `conflicts`, `claim`,
`release`, `ask_lead`. Inside a sandbox every request goes to the sandbox's broker
(`$LOOM_BROKER`), which knows the sandbox from the socket; outside one, to the
engines in this process (`broker.channel_for`).

Startup is kept light (Claude Code waits for this server before the agent's first
step): loomtui's engines load on the first tool call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from pydantic import StrictBool, StrictInt  # (the MCP SDK's own dependency, loaded with it)

from loomtui.errors import LoomError
from loomtui.mcp import PERMISSION_TOOL, SERVER_NAME

if TYPE_CHECKING:
    from loomtui.governance.broker import BrokerClient, LocalChannel

T = TypeVar("T")
OWN_TOOL_PREFIX = f"mcp__{SERVER_NAME}__"
OWN_TOOLS: Final = frozenset(f"{OWN_TOOL_PREFIX}{name}" for name in (
    "my_claims", "conflicts", "claim", "release", "ask_lead", "context", "search_context"))
"""loomtui's own tools, as Claude Code names them: they only ask, so a permission prompt for one is
allowed. Named one by one: a server of another name that begins `loomtui__` is not loomtui."""


@dataclass(frozen=True)
class Settings:
    cwd: Path
    wait: float = 120.0
    poll: float = 0.5
    sandbox: str | None = None


class Agent:
    """One agent's view of loomtui: a channel (broker or local) used from one worker thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loomtui-mcp")
        self._channel: BrokerClient | LocalChannel | None = None
        self._startup = self._executor.submit(self._open)

    # -- the channel, on its own thread ---------------------------------------------------

    def _open(self) -> None:
        from loomtui.governance.broker import LocalChannel, channel_for

        try:
            self._channel = channel_for(self.settings.cwd, sandbox=self.settings.sandbox,
                                        session_id=self.session_id)
        except LoomError:
            return  # said on the first tool call
        if isinstance(self._channel, LocalChannel):
            # No broker watches this server: withdraw what a killed predecessor left waiting.
            from loomtui.governance.agent_ops import withdraw_orphans

            with contextlib.suppress(LoomError):
                withdraw_orphans(self._channel.gate)

    def _request(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        if self._channel is None:
            self._open()
        if self._channel is None:
            from loomtui.governance.broker import channel_for

            # Raises the reason: with the session's id, as `_open` asked (without it, "no sandbox id" hid a
            # store that is corrupt or unreachable).
            channel_for(self.settings.cwd, sandbox=self.settings.sandbox, session_id=self.session_id)
            raise LoomError("loomtui cannot reach its state from here")
        return self._channel.request(op, **fields)

    async def call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        return await self.call(lambda: self._request(op, fields))

    @property
    def session_id(self) -> str:
        return f"mcp{os.getpid()}"

    def holds_nothing(self) -> bool:
        """Whether this server has no sandbox to claim for: outside one, with no --sandbox and no `hook
        install` here, its id is made up from its pid, and a claim under it would outlive the server,
        holding the region for its whole lease with no one left to release it."""
        from loomtui.governance.broker import LocalChannel
        from loomtui.governance.hooks import session_sandbox

        if self._channel is None:
            self._open()
        channel = self._channel
        if not isinstance(channel, LocalChannel):
            return False
        held_for = channel.gate.sandbox_id
        if held_for == session_sandbox(self.session_id):
            return True
        # A --sandbox naming no sandbox (a typo, one removed): its claims outlived the server as well, refusing
        # real sandboxes for an hour. The id `hook install` recorded here is a person's checkout's, kept.
        from loomtui.governance.hooks import configured_sandbox

        return held_for == self.settings.sandbox and not channel.gate.managed \
            and held_for != configured_sandbox(channel.gate.tree)

    def hold_nothing(self) -> None:
        """Outside a sandbox (`holds_nothing`), let go at once of what a check claimed under the made-up id:
        it held the file an hour after the server ended, refusing every other agent, and no one could
        release it. The check's answer stands; the claim was only its bookkeeping."""
        from loomtui.governance.broker import LocalChannel

        if self.holds_nothing() and isinstance(self._channel, LocalChannel):
            self._channel.gate.release_own("checked for a server outside any sandbox: held by no one")

    def waiter(self) -> dict[str, Any] | None:
        """Who waits on a request, for the next server to tell whether it died (local channel only)."""
        from loomtui.governance.broker import LocalChannel

        if not isinstance(self._channel, LocalChannel):
            return None  # the broker sees the connection close
        from loomtui.execution.procs import identity

        return {"pid": os.getpid(), "identity": identity(os.getpid())}

    def close(self) -> None:
        channel = self._channel
        if channel is not None:
            with contextlib.suppress(Exception):
                self._executor.submit(channel.close).result(timeout=5)
        self._executor.shutdown(wait=False)

    # -- waiting for a person ------------------------------------------------------------

    async def wait_for(self, escalation_id: int, status_op: str, wait: float) -> dict[str, Any]:
        """Poll until a person decides; on timeout or cancellation the request is given up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        try:
            while True:
                status = await self.request(status_op, id=escalation_id)
                if status.get("decision") is not None:
                    return status
                left = deadline - loop.time()
                if left <= 0:
                    break
                await asyncio.sleep(min(self.settings.poll, left))
        except BaseException:
            # Claude Code cancelled the call or is going away: nobody hears a later decision.
            # Queued at once on the channel's thread, so it runs even if this task is torn down.
            import anyio

            given_up = self._executor.submit(
                self._request, "give_up", {"id": escalation_id, "reason": "the agent stopped waiting (its tool "
                                           "call was cancelled or its MCP server stopped)"})
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await asyncio.wrap_future(given_up)
            raise
        # Decided in the last instant, between the last poll and giving up: that decision is the answer
        # (the store then records no "unheard, told no" beside an agent that was told yes).
        ended = await self.request("give_up", id=escalation_id, reason=f"no decision within {wait:g}s",
                                   hears_decision=True)
        if ended.get("decision") is not None and ended.get("status") != "withdrawn":
            return ended
        return {**ended, "decision": "deny", "unanswered": True,
                "message": f"no decision on escalation #{escalation_id} within {wait:g}s; it was withdrawn: "
                           "not allowed for now (ask again later)"}


# -- the permission prompt ------------------------------------------------------------------


def allow(tool_input: dict[str, Any]) -> str:
    return json.dumps({"behavior": "allow", "updatedInput": tool_input})


def deny(message: str) -> str:
    return json.dumps({"behavior": "deny", "message": message})


async def answer_permission(agent: Agent, tool_name: str, tool_input: dict[str, Any],
                            tool_use_id: str | None = None) -> str:
    """The permission prompt's answer: what the PreToolUse hook would say, and a person where it asks."""
    if tool_name in OWN_TOOLS:
        return allow(tool_input)  # loomtui's own tools only ask; they decide nothing
    try:
        verdict, reason = await agent.call(lambda: _claim_gate(agent, tool_name, tool_input, tool_use_id or ""))
        if verdict == "deny":
            return deny(f"loomtui: {reason}")
        if verdict == "allow":
            return allow(tool_input)
        extra: dict[str, Any] = {"via": "mcp"}
        if tool_use_id:
            extra["tool_use_id"] = tool_use_id
        if reason:
            extra["asked_because"] = reason
        waiter = await agent.call(agent.waiter)
        if waiter:
            extra["waiter"] = waiter
        opened = await agent.request("open_permission_request", tool_name=tool_name, tool_input=tool_input,
                                     extra=extra)
        if opened.get("decision") == "deny":
            return deny(f"loomtui: {opened.get('message', 'refused')}")
        status = await agent.wait_for(int(opened["id"]), "request_status", agent.settings.wait)
    except LoomError as exc:  # fail closed: what cannot be checked is not allowed
        return deny(f"loomtui: cannot check this call: {exc}")
    except Exception as exc:  # noqa: BLE001  (an input nothing foresaw: still an answer, and still no)
        return deny(f"loomtui: cannot check this call ({type(exc).__name__})")
    if status.get("decision") == "allow":
        return allow(tool_input)
    return deny(f"loomtui: {status.get('message', 'refused')}")


def _claim_gate(agent: Agent, tool_name: str, tool_input: dict[str, Any], tool_use_id: str) -> tuple[str, str]:
    """allow | deny | ask, and why: the check the PreToolUse hook makes (`check_tool`), for this call."""
    from loomtui.governance.hooks import HookEvent, HookInputError, edit_targets

    event = HookEvent("PreToolUse", "", agent.settings.cwd, tool_name, tool_input,
                      {"tool_use_id": tool_use_id} if tool_use_id else {})
    try:
        targets = edit_targets(event)
    except HookInputError as exc:
        return "deny", str(exc)
    if not targets:
        # Not a write loomtui judges, and the runtime's own rules asked: a person's call.
        return "ask", ""
    answer = agent._request("check_tool", {"tool": tool_name, "tool_use_id": tool_use_id,
                                           "targets": [{"path": t.path, "lines": t.lines} for t in targets]})
    agent.hold_nothing()
    decision, reason = str(answer["decision"]), str(answer.get("reason", ""))
    if decision == "none":
        # The hook's "no opinion": for a command, the runtime's own rules, which asked, so a
        # person decides (its writes are fine); for a write, the sandbox's own scratch space.
        return ("ask" if tool_name == "Bash" else "allow"), reason
    return decision, reason


# -- the server ------------------------------------------------------------------------------


def build_server(agent: Agent) -> Any:
    """The MCP server with loomtui's tools, over `agent`."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    from loomtui import __version__

    server: Any = MCPServer(
        SERVER_NAME,
        version=__version__,  # serverInfo.version was "" (a client showing it said nothing of which loomtui)
        instructions=(
            "loomtui coordinates the agents working on this repository. Before changing code, see "
            "my_claims and conflicts; claim what you will change, release what you no longer need. A "
            "region another sandbox holds is not yours to edit: work elsewhere or ask_lead. Writes to "
            "code the policy guards wait for a lead's approval."),
        # A refused call is the agent's answer; logged at INFO each was a dozen boxed lines in the
        # runtime's MCP log (and the supervisor's), for nothing anyone acts on.
        log_level="WARNING",
    )

    async def answer_of(op: str, **fields: Any) -> dict[str, Any]:
        try:
            answer = await agent.request(op, **fields)
        except LoomError as exc:
            raise ToolError(str(exc)) from None
        answer.pop("ok", None)
        return answer

    async def ask(op: str, **fields: Any) -> str:
        # As written, not escaped: a reason or a path in another script read "\\u00e9" to the model.
        return json.dumps(await answer_of(op, **fields), indent=1, default=str, ensure_ascii=False)

    @server.tool(name=PERMISSION_TOOL, structured_output=False,
                 description="Claude Code's permission prompt (--permission-prompt-tool): loomtui answers "
                             "allow or deny, asking a lead where the policy says so.")
    async def permission_prompt(tool_name: str, input: dict[str, Any],
                                tool_use_id: str | None = None) -> str:
        return await answer_permission(agent, tool_name, input, tool_use_id)

    @server.tool(structured_output=False,
                 description="This sandbox's claims (regions it holds) and their conflicts with other sandboxes.")
    async def my_claims() -> str:
        return await ask("my_claims")

    @server.tool(structured_output=False,
                 description="Without target: this sandbox's conflicts. With a target (region id like "
                             "'pkg/mod.py::Class.method', a file, a directory, a glob, or 'path:10-40'): "
                             "what claiming it would collide with.")
    async def conflicts(target: str = "") -> str:
        return await ask("conflicts", target=target)

    @server.tool(structured_output=False,
                 description="Claim a target (region id, file, directory, glob, or 'path:10-40') for this "
                             "sandbox before changing it; refused when another sandbox holds it. `new_file`: "
                             "the target is the path of a file not written yet.")
    async def claim(target: str, reason: str = "", new_file: StrictBool = False) -> str:  # "yes" was true
        if await agent.call(agent.holds_nothing):
            raise ToolError("no sandbox to claim for: this server runs outside a loomtui sandbox, with no "
                            "--sandbox naming one and no `loomtui hook install` here (a claim under an id no "
                            "sandbox has would hold the region after the server ends); `conflicts` still says "
                            "what a claim would meet")
        return await ask("claim", target=target, reason=reason, new_file=new_file)

    @server.tool(structured_output=False,
                 description="Release this sandbox's claim: by claim id, or every claim on a target.")
    async def release(target: str = "", claim_id: StrictInt | None = None, reason: str = "") -> str:
        # Strict: `true` was read as claim #1, someone else's claim to release
        if claim_id is None and not target:
            raise ToolError("name a target or a claim_id")
        fields: dict[str, Any] = {"reason": reason}
        if claim_id is not None:
            fields["claim"] = claim_id
        else:
            fields["target"] = target
        return await ask("release", **fields)

    @server.tool(structured_output=False,
                 description="Ask a lead a yes/no question (e.g. may I change this public API?); waits for "
                             "the answer: `yes`, `no`, or `none` when no lead answered in time (then do not do "
                             "it yet; ask again later). `paths` names the files it is about (their approvers "
                             "answer).")
    async def ask_lead(question: str, paths: list[str] | None = None) -> str:
        try:
            waiter = await agent.call(agent.waiter)
            opened = await agent.request("ask_lead", question=question, paths=paths or [],
                                         extra={"waiter": waiter} if waiter else {})
            status = await agent.wait_for(int(opened["id"]), "request_status", agent.settings.wait)
        except LoomError as exc:
            raise ToolError(str(exc)) from None
        # No answer in time is none, not a lead's no (read as a refusal, it was acted on as one).
        said = "yes" if status["decision"] == "allow" else "none" if status.get("unanswered") else "no"
        return json.dumps({"escalation": opened["id"], "answer": said, "message": status.get("message", "")},
                          indent=1)

    @server.tool(structured_output=False,
                 description="The context loomtui assembled for this task: the team's conventions, ADRs and "
                             "contracts that apply, each with where it comes from. Ground truth: follow it.")
    async def context() -> str:
        given = os.environ.get("LOOM_CONTEXT") or os.environ.get("LOOM_CONTEXT_FILE") or await agent.call(
            lambda: _named_sandbox_context(agent.settings))
        if not given:
            raise ToolError("not in a loomtui sandbox: no context was assembled for a task here")
        try:
            return Path(given).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ToolError(f"cannot read the context: {exc.strerror or exc}") from None

    @server.tool(structured_output=False,
                 description="Search every section of the team's context (AGENTS.md, ADRs, conventions, "
                             "contracts) for a topic, e.g. 'rounding' or 'refund API'; best matches first.")
    async def search_context(query: str, limit: StrictInt = 5) -> str:
        # Asked of the broker in a sandbox: the main checkout, where the context lives, is hidden from it.
        return json.dumps((await answer_of("search_context", query=query, limit=limit))["results"], indent=1,
                          ensure_ascii=False)

    return server


def _named_sandbox_context(settings: Settings) -> str | None:
    """The context slice of the sandbox `--sandbox` names, else the one `hook install` recorded for this
    worktree (a person's own claude, outside a sandbox's process); None with neither, or no slice made."""
    from loomtui.execution.sandbox_paths import sandbox_paths
    from loomtui.governance.hooks import configured_sandbox
    from loomtui.repo import find_repo

    try:
        repo = find_repo(settings.cwd)
        named = settings.sandbox or configured_sandbox(repo.root)
        if not named:
            return None
        path = sandbox_paths(repo, named).context
    except LoomError:
        return None
    return str(path) if path.is_file() else None


def run(settings: Settings) -> int:
    """Serve MCP on stdin/stdout until the client goes away."""
    import signal

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(143)  # unwinds the waits, so each is given up before the process ends

    signal.signal(signal.SIGTERM, stop)
    agent = Agent(settings)
    try:
        server = build_server(agent)
        asyncio.run(server.run_stdio_async())
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:
        # The client went away mid-answer (its pipe closed): the end of the session, not a bug in loomtui. Its
        # waits were given up as they unwound.
        if group.split((BrokenPipeError, ConnectionResetError))[1] is not None:
            raise
    finally:
        agent.close()
    return 0


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - `python -m loomtui.mcp.server`
    return run(Settings(cwd=Path.cwd()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
