"""A vendor CLI's model API faults, read from its plain output.

Codex and Aider write no structured output, and neither says in its exit code that the
model never answered: Codex (`exec`) waits for an unreachable API without end, printing
"ERROR: Reconnecting... waiting for network", and Aider gives up after its retries and
exits 0. The supervisor feeds each line here: an error line becomes an activity, an agent
that has only waited for the API for the runtime's `offline_timeout` is stopped, and an
agent that exits 0 having reported an API error and changed nothing has failed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from loomtui.errors import abridged
from loomtui.execution.activity import Activity, json_event, shorten


@dataclass(frozen=True)
class FaultSigns:
    """How one CLI reports a failing model API in its output."""

    error: re.Pattern[str]
    """A line reporting a model API error; group `what` is the error."""
    waiting: re.Pattern[str] | None = None
    """A line saying it waits for the API and will go on waiting (no bound of its own)."""
    answered: re.Pattern[str] | None = None
    """A line saying the model answered: an error before it was one the CLI got past (a retry that
    worked), or no model API's at all (an `ERROR:` a command the agent ran printed)."""
    wraps_at: int | None = None
    """The width the CLI wraps its lines at, headless (Aider's console: 80 columns); None: it does not wrap."""
    own_line: re.Pattern[str] | None = None
    """A line of its own after an error that filled the width: never the rest of it (Aider's `Retrying in`)."""
    usage: re.Pattern[str] | None = None
    """A line reporting a reply's tokens (`sent`, `received`, as `2.4k`) and the session's cost so far (`session`):
    what `report` counts for the runtime (Aider's `Tokens: ...`)."""
    events: Callable[[str], str] | None = None
    """For structured output (Codex's `--json`): an event as the plain line the signs above read, "" for one that
    is no sign."""


_COUNT: Final = r"\d{1,3}(?:,\d{3}){0,3}(?:\.\d{1,3})?k?|\d{1,12}(?:\.\d{1,3})?k?"
"""A count as Aider prints it (`387`, `2.4k`, `1,234`), of a size a count has: nothing else is read as one (`1.2.3`
crashed the supervisor, and 400 digits were infinity)."""


def codex_sign_line(line: str) -> str:
    """An event as the plain line Codex prints for it, where that line is a sign of the model API's state
    (`faults`): its error (`ERROR: ...`, a reconnect's "waiting for network" among them), or the header of
    the model's reply (`codex`: it answered; any item it makes, or its turn's end, says as much). "" for any
    other event: a command's output is never a sign."""
    event = json_event(line)
    if event is None:
        return ""
    if event.get("type") == "error":
        return f"ERROR: {event.get('message') or ''}"
    if event.get("type") == "turn.failed":
        error = event.get("error")
        return f"ERROR: {str(error.get('message') or '') if isinstance(error, dict) else 'the turn failed'}"
    item = event.get("item")
    if (event.get("type") in ("item.started", "item.completed") and isinstance(item, dict)
            and item.get("type") != "error") or event.get("type") == "turn.completed":
        # The model answered (a command it runs, a file it changes, its words): no longer only waiting (a
        # reconnect that worked, then minutes of commands, read as offline and was stopped).
        return "codex"
    return ""


# From each CLI's own output, seen with the real CLIs against a model API on loopback
# that is unreachable or answers errors (tests/test_runtime_codex_aider.py).
FAULT_SIGNS: Final[dict[str, FaultSigns]] = {
    # Not its usage (`tokens used`): printed after the error that ended it too, it took the error for answered.
    "codex": FaultSigns(error=re.compile(r"^ERROR: (?P<what>.+)"),
                        waiting=re.compile(r"waiting for network"),
                        answered=re.compile(r"^codex$")),  # its message's header
    # Anywhere in a line (a reply cut mid-stream is printed, the error after it on the same line), but as the error
    # is printed, its class and a colon: `except litellm.RateLimitError as exc:` in a reply is code, no error.
    "aider": FaultSigns(error=re.compile(
        r"(?P<what>litellm\.[A-Za-z]+(?:Error|Exception): .*|^The API provider .+"
        r"|^Empty response received from LLM.*)"),
        answered=re.compile(r"^Tokens: "),  # after each of the model's replies
        wraps_at=80, own_line=re.compile(r"^Retrying in "),
        usage=re.compile(rf"^Tokens: (?P<sent>{_COUNT}) sent, (?:.*, )?(?P<received>{_COUNT}) received\."
                         r"(?: Cost: \$[\d.,]+ message, \$(?P<session>\d{1,9}(?:\.\d{1,8})?) session\.)?$")),
}

FAULT_SIGNS["codex-json"] = replace(FAULT_SIGNS["codex"], events=codex_sign_line)
"""Codex's `exec --json`: its events read as the lines it prints without it."""


WRAPPED_AT_LEAST: Final = 60
"""An error line at least this long ending in a blank was cut by the CLI's wrapping (at its terminal width)."""
ERROR_KEPT: Final = 500
"""The longest error kept for the sandbox's record (a wrapped one read across its lines up to it); its
activity's summary is shorter still."""


def _error(what: str) -> Activity:
    return {"kind": "error", "summary": shorten(f"model API: {what}")}


class FaultWatch:
    """Watches one agent's output for model API faults (see the module docstring)."""

    def __init__(self, signs: FaultSigns, offline_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.signs = signs
        self.offline_timeout = offline_timeout
        self.clock = clock
        self.last_error: str | None = None
        self.waiting_since: float | None = None
        self.usage: dict[str, float] = {}
        """The tokens the agent reported, summed over its replies, and its session's cost (`reported`)."""
        self.wrapped: str | None = None
        """An error line cut where the CLI wrapped it (Aider wraps at 80 columns, a blank at the cut): its
        next line is the rest ("... OpenAIException - Connection" / "error.")."""

    def feed(self, line: str) -> list[Activity]:
        """The activities in one output line (an error), and note whether the agent only waits."""
        if self.signs.events is not None:
            line = self.signs.events(line)
        text = line.strip()
        if self.wrapped is not None:
            pending, self.wrapped = self.wrapped, None
            if not text or self._a_line_of_its_own(text):  # the error ended: it is said, and this line read
                return [_error(pending), *self.feed(line)]
            joined = f"{pending} {text}"
            what = abridged(joined, ERROR_KEPT)
            self.last_error = what
            if self._cut_by_wrapping(line) and what == joined:  # three lines or more (a 400's JSON), until it is cut
                self.wrapped = what
                return []
            return [_error(what)]
        if not text:
            return []
        waiting = self.signs.waiting is not None and self.signs.waiting.search(text) is not None
        if not waiting:
            self.waiting_since = None
        elif self.waiting_since is None:
            self.waiting_since = self.clock()
        if self.signs.answered is not None and self.signs.answered.match(text):
            if self._count_usage(text) != 0:  # `0 received`: the empty response said before it, no answer
                self.last_error = None  # the model answered since: an agent exiting 0 now ended well
            return []
        match = self.signs.error.search(text)
        if match is None:
            return []
        what = abridged(match["what"], ERROR_KEPT)
        self.last_error = what
        if self._cut_by_wrapping(line):
            self.wrapped = what  # said whole with the next line
            return []
        return [_error(what)]

    def _cut_by_wrapping(self, line: str) -> bool:
        """Whether the CLI cut this line at its width: a blank left where it broke, or a word that ended exactly
        at the width (one wrapped line in six)."""
        width = self.signs.wraps_at
        whole = line.rstrip("\r\n")
        return width is not None and ((whole.endswith(" ") and len(whole) >= WRAPPED_AT_LEAST)
                                      or width - 1 <= len(whole) <= width)

    def _a_line_of_its_own(self, text: str) -> bool:
        """A line that says something of itself (an error, a wait, an answer): no wrapped line's rest."""
        signs = self.signs
        return bool(signs.error.search(text) or (signs.waiting and signs.waiting.search(text))
                    or (signs.answered and signs.answered.match(text))
                    or (signs.own_line and signs.own_line.match(text)))

    def _count_usage(self, text: str) -> float | None:
        """Add a usage line's tokens (`usage`); the tokens received, None for no usage line."""
        found = self.signs.usage.match(text) if self.signs.usage is not None else None
        if found is None:
            return None
        for key, group in (("input_tokens", "sent"), ("output_tokens", "received")):
            self.usage[key] = self.usage.get(key, 0) + round(_amount(found[group]))  # a count: `2.4k` is 2400
        if found["session"]:
            self.usage["cost_usd"] = _amount(found["session"])  # the session's so far: the last one said
        return _amount(found["received"])

    def reported(self) -> dict[str, float] | None:
        """What the agent reported of its usage, as an `agent_result` (`report`'s tokens and cost); None: nothing."""
        return dict(self.usage) if self.usage else None

    def overdue(self) -> str | None:
        """Why the agent must be stopped: it has only waited for the API for too long; else None."""
        if self.waiting_since is None or self.clock() - self.waiting_since < self.offline_timeout:
            return None
        return (f"the model API did not answer for {self.offline_timeout:g} s ({self.last_error or 'waiting'}); "
                f"the agent was stopped (runtime offline_timeout)")

    def failed_quietly(self, exit_code: int | None, did_work: bool) -> str | None:
        """Why an agent that exited 0 has failed: it reported an API error and changed nothing."""
        if exit_code != 0 or did_work or self.last_error is None:
            return None
        return f"the agent exited 0 but reported a model API error and changed nothing: {self.last_error}"


class RetryWatch:
    """Watches Claude Code's stream-json for a model API it only retries (`api_retry` events): one that accepts
    the connection and never answers has Claude wait its own timeout and try again ten times, near an hour of
    "agent running". Once it has only retried for `offline_timeout`, the agent is stopped, as FaultWatch does
    for Codex waiting for the network; anything else it says (the model's words, a tool call) resets it."""

    def __init__(self, offline_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.offline_timeout = offline_timeout
        self.clock = clock
        self.retrying_since: float | None = None
        self.last_retry = ""

    def note(self, activities: list[Activity]) -> None:
        """Read one event's activities (`parse_claude_stream`)."""
        for activity in activities:
            if activity["kind"] == "retry":
                self.last_retry = activity["summary"]
                if self.retrying_since is None:
                    self.retrying_since = self.clock()
            elif activity["kind"] != "init":
                self.retrying_since = None

    def overdue(self) -> str | None:
        """Why the agent must be stopped: it has only retried the API for too long; else None."""
        if self.retrying_since is None or self.clock() - self.retrying_since < self.offline_timeout:
            return None
        return (f"the model API did not answer for {self.offline_timeout:g} s ({self.last_retry}); "
                f"the agent was stopped (runtime offline_timeout)")


def _amount(said: str) -> float:
    """`2.4k` as 2400, `1,234` as 1234 (as a CLI prints its counts)."""
    text = said.replace(",", "")
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text)


def fault_watch(program: str, offline_timeout: float) -> FaultWatch | None:
    """The watch for a CLI (by program name); None for a program whose faults are not known."""
    signs = FAULT_SIGNS.get(program)
    return FaultWatch(signs, offline_timeout) if signs is not None else None
