"""Model API faults read from a vendor CLI's plain output (loomtui.execution.faults)."""

from __future__ import annotations

import pytest

from loomtui.execution.faults import FAULT_SIGNS, fault_watch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_codex_only_waiting_for_the_network_is_overdue_after_the_timeout() -> None:
    clock = Clock()
    watch = fault_watch("codex", 30)
    assert watch is not None
    watch.clock = clock
    assert watch.feed("user") == [] and watch.overdue() is None
    found = watch.feed("ERROR: Reconnecting... waiting for network")
    assert found == [{"kind": "error", "summary": "model API: Reconnecting... waiting for network"}]
    clock.now += 29
    watch.feed("ERROR: Reconnecting... waiting for network")
    assert watch.overdue() is None
    clock.now += 2
    why = watch.overdue()
    assert why is not None and why.startswith("the model API did not answer for 30 s (Reconnecting")


def test_any_other_output_means_the_agent_is_working_again() -> None:
    clock = Clock()
    watch = fault_watch("codex", 30)
    assert watch is not None
    watch.clock = clock
    watch.feed("ERROR: Reconnecting... waiting for network")
    clock.now += 20
    watch.feed("exec bash -lc 'git status'")
    clock.now += 20
    assert watch.overdue() is None
    watch.feed("")  # a blank line says nothing either way
    assert watch.waiting_since is None


def test_aider_exiting_0_after_an_api_error_with_nothing_changed_has_failed() -> None:
    watch = fault_watch("aider", 300)
    assert watch is not None
    assert watch.feed("Aider v0.86.2") == []
    found = watch.feed("litellm.NotFoundError: OpenAIException - fake server error 404")
    assert [a["kind"] for a in found] == ["error"]
    assert watch.failed_quietly(0, did_work=False) == (
        "the agent exited 0 but reported a model API error and changed nothing: "
        "litellm.NotFoundError: OpenAIException - fake server error 404")
    assert watch.failed_quietly(0, did_work=True) is None  # it recovered and did its work
    assert watch.failed_quietly(1, did_work=False) is None  # a non-zero exit fails it anyway
    assert watch.overdue() is None  # aider bounds its own retries


@pytest.mark.parametrize(("program", "error", "answer"), [
    ("aider", "litellm.InternalServerError: OpenAIException - 500", "Tokens: 1.2k sent, 40 received."),
    ("codex", "ERROR: pip could not find a version that satisfies the requirement", "codex"),
    ("codex", "ERROR: Reconnecting... 1/5", "codex"),  # its reply's header (not `tokens used`: printed after any)
])
def test_an_error_the_model_answered_after_is_no_failure(program: str, error: str, answer: str) -> None:
    """Aider's retry that worked, or an `ERROR:` line a command the agent ran printed: the agent needed no
    change, exited 0, and was failed as "reported a model API error"."""
    watch = fault_watch(program, 300)
    assert watch is not None
    watch.feed(error)
    assert watch.failed_quietly(0, did_work=False) is not None
    assert watch.feed(answer) == []
    assert watch.failed_quietly(0, did_work=False) is None


def test_no_watch_for_programs_whose_faults_are_unknown() -> None:
    assert fault_watch("my-agent", 300) is None
    assert set(FAULT_SIGNS) == {"codex", "codex-json", "aider"}


def test_an_error_the_cli_wrapped_at_its_width_is_read_whole() -> None:
    """Aider wraps at 80 columns: the sandbox's error read "... OpenAIException - Connection" (and "... - fake
    server", the 500 lost), its next line cut off."""
    watch = fault_watch("aider", 300)
    assert watch is not None
    assert watch.feed("litellm.InternalServerError: InternalServerError: OpenAIException - Connection \n") == []
    [said] = watch.feed("error.\n")
    assert said["summary"] == ("model API: litellm.InternalServerError: InternalServerError: OpenAIException - "
                               "Connection error.")
    assert watch.failed_quietly(0, did_work=False).endswith("OpenAIException - Connection error.")  # type: ignore[union-attr]
    assert [a["kind"] for a in watch.feed("litellm.NotFoundError: fake server error 404")] == ["error"]  # short: whole


def test_an_error_wrapped_over_several_lines_is_read_whole_and_ends_at_a_line_of_its_own() -> None:
    """A 400 with its JSON wraps over three lines and more: it stopped after the second ("... However, your")."""
    import textwrap

    message = ("litellm.BadRequestError: OpenAIException - Error code: 400 - {'error': {'message': \"This model's "
               "maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens.\", "
               "'code': 'context_length_exceeded'}}")
    watch = fault_watch("aider", 60)
    assert watch is not None
    lines = textwrap.wrap(message, 80)
    said = [a for i, line in enumerate(lines) for a in watch.feed(line + (" " if i < len(lines) - 1 else ""))]
    assert [a["kind"] for a in said] == ["error"] and watch.last_error is not None
    assert watch.last_error.endswith("'context_length_exceeded'}}"), watch.last_error
    # A wrapped error followed by a line of its own (the model answered): said, then that line read as itself.
    watch = fault_watch("aider", 60)
    assert watch is not None
    assert watch.feed(lines[0] + " ") == []
    assert [a["kind"] for a in watch.feed("Tokens: 1.2k sent, 40 received.")] == ["error"]
    assert watch.last_error is None  # answered since: no failure


def test_a_wrapped_line_that_fills_the_width_goes_on_and_a_long_error_is_cut_once() -> None:
    """A wrapped line whose last word ends at column 80 has no blank: the error stopped there unsaid. And past 500
    characters each further line added one more `…` ("... jbdbib…………")."""
    watch = fault_watch("aider", 60)
    assert watch is not None
    first = "litellm.BadRequestError: OpenAIException - schema objects and cannot be used the"
    assert len(first) == 80 and watch.feed(first) == []
    watch.feed("field tools[0].function.parameters")
    assert watch.last_error is not None and watch.last_error.endswith("used the field tools[0].function.parameters")
    # One that filled the width unwrapped, Aider's retry line after it: not taken as its rest.
    retried = fault_watch("aider", 60)
    assert retried is not None
    whole = "litellm.APIConnectionError: OpenAIException - Connection error to 127.0.0.1:9099"
    assert len(whole) == 80 and retried.feed(whole) == []
    assert [a["summary"] for a in retried.feed("Retrying in 0.2 seconds...")] == [f"model API: {whole}"]
    assert retried.last_error == whole
    long = fault_watch("aider", 60)
    assert long is not None
    lines = ["litellm.BadRequestError: OpenAIException - {\"error\": {\"message\": \"This model is "] + [
        " ".join(f"word{i:03d}" for i in range(j, j + 9)) + " " for j in range(0, 200, 9)] + ["end"]
    said = [a for line in lines for a in long.feed(line)]
    assert long.last_error is not None and long.last_error.count("…") == 1 and len(long.last_error) <= 500
    assert [a["kind"] for a in said] == ["error"]


def test_claude_only_retrying_the_api_is_overdue_after_the_timeout_and_an_answer_resets_it() -> None:
    """A model API that accepts the connection and never answers: Claude Code waits its own timeout and retries
    ten times, near an hour of "agent running" with nothing stopping it."""
    from loomtui.execution.activity import parse_claude_stream
    from loomtui.execution.faults import RetryWatch

    clock = Clock()
    watch = RetryWatch(300, clock)
    retry = '{"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10, "error": "unknown"}'
    answer = '{"type": "assistant", "message": {"content": [{"type": "text", "text": "Looking."}]}}'
    watch.note(parse_claude_stream('{"type": "system", "subtype": "init", "model": "m"}'))
    watch.note(parse_claude_stream(retry))
    clock.now += 299
    watch.note(parse_claude_stream(retry.replace('"attempt": 1', '"attempt": 2')))
    assert watch.overdue() is None
    clock.now += 2
    assert watch.overdue() == ("the model API did not answer for 300 s (model API gave no answer: retry 2 of 10); "
                               "the agent was stopped (runtime offline_timeout)")
    watch.note(parse_claude_stream(answer))  # it answered: working again
    clock.now += 1000
    assert watch.overdue() is None


def test_an_aider_error_after_a_reply_cut_mid_stream_on_the_same_line_is_read() -> None:
    """A stream cut mid-reply: Aider prints what came, then the error on the same line; and a garbled 200 is "Empty
    response received from LLM" with `0 received`. Both ended the sandbox `exited`, no activity, no reason."""
    watch = fault_watch("aider", 300)
    assert watch is not None
    found = watch.feed("partial answerlitellm.APIConnectionError: APIConnectionError: OpenAIException - peer closed")
    assert found == [{"kind": "error", "summary": "model API: litellm.APIConnectionError: APIConnectionError: "
                                                  "OpenAIException - peer closed"}]
    assert watch.failed_quietly(0, did_work=False) is not None
    code = fault_watch("aider", 300)  # the model's reply quoting code that names the class: no error
    assert code is not None and code.feed("    except litellm.RateLimitError as exc:") == [] and code.last_error is None
    empty = fault_watch("aider", 300)
    assert empty is not None
    assert empty.feed("Empty response received from LLM. Check your provider account?") != []
    empty.feed("Tokens: 3.9k sent, 0 received.")  # no answer: the error stands
    said = empty.failed_quietly(0, did_work=False)
    assert said is not None and "Empty response received from LLM" in said


def test_codex_printing_its_usage_after_the_error_that_ended_it_keeps_the_error() -> None:
    """`tokens used` follows the last ERROR whenever any tokens were used: taken as an answer, the reason was lost
    ("exited with code 1" and nothing more)."""
    watch = fault_watch("codex", 300)
    assert watch is not None
    for line in ("codex", "I'll patch it.", "ERROR: We're currently experiencing high demand", "tokens used", "120"):
        watch.feed(line)
    assert watch.last_error == "We're currently experiencing high demand"


def test_codex_events_are_read_as_the_lines_it_prints_a_command_s_error_never_the_api_s() -> None:
    """`codex exec --json`: a model API's error and its wait for the network are events; an `ERROR:` in a
    command's output (pip's, say) is the command's (read from plain output, it failed the sandbox)."""
    clock = Clock()
    watch = fault_watch("codex-json", 30)
    assert watch is not None
    watch.clock = clock
    command = ('{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"pip install x",'
               '"aggregated_output":"ERROR: Could not find a version\\n","exit_code":1,"status":"failed"}}')
    assert watch.feed(command) == [] and watch.last_error is None
    assert watch.failed_quietly(0, did_work=False) is None
    waiting = '{"type":"error","message":"Reconnecting... waiting for network (Connection failed)"}'
    watch.feed(waiting)
    clock.now += 31
    watch.feed(waiting)
    why = watch.overdue()
    assert why is not None and "(Reconnecting... waiting for network (Connection failed))" in why
    watch.feed('{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"Done."}}')
    assert watch.overdue() is None and watch.last_error is None  # it answered
    # A reconnect that worked, then a command that runs past the timeout: working, not offline (it was stopped).
    watch.feed(waiting)
    watch.feed('{"type":"item.started","item":{"id":"item_2","type":"command_execution","command":"pytest"}}')
    clock.now += 300
    assert watch.overdue() is None
    watch.feed('{"type":"turn.failed","error":{"message":"We\u2019re currently experiencing high demand"}}')
    assert watch.last_error == "We\u2019re currently experiencing high demand"


def test_aider_usage_is_summed_over_its_replies_with_the_sessions_cost() -> None:
    """Aider prints each reply's tokens and the session's cost: `report` had "none reported" for every Aider run."""
    watch = fault_watch("aider", 300)
    assert watch is not None and watch.reported() is None
    watch.feed("Tokens: 2.4k sent, 387 received. Cost: $0.0012 message, $0.0012 session.")
    watch.feed("Tokens: 1,000 sent, 1.2k cache write, 13 received. Cost: $0.0004 message, $0.0016 session.")
    assert watch.reported() == {"input_tokens": 3400.0, "output_tokens": 400.0, "cost_usd": 0.0016}
    # What only looks like a count is no usage line, and never fatal (`1.2.3` crashed the supervisor).
    for odd in ("Tokens: 1.2.3 sent, 5 received.", "Tokens: . sent, 1 received.", "Tokens: k sent, 1 received.",
                "Tokens: , sent, 1 received.", f"Tokens: {'9' * 400} sent, 1 received.",
                f"Tokens: 1 sent, 1 received. Cost: $1 message, ${'9' * 400} session."):
        assert watch.feed(odd) == []
    assert watch.reported() == {"input_tokens": 3400.0, "output_tokens": 400.0, "cost_usd": 0.0016}
