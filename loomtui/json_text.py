"""JSON someone else wrote (an agent's output and reports, hook input, files in a worktree, a tampered log):
parsed so that any way it fails is a `ValueError`."""

from __future__ import annotations

import json
from typing import Any


def parse_json(text: str | bytes, **options: Any) -> Any:
    """`json.loads(text)`, with arrays or objects nested past the interpreter's recursion limit (a 6 KB line
    of `[`) raised as `json.JSONDecodeError` like any other malformed JSON: the decoder's RecursionError
    got past every `except ValueError` and killed the supervisor reading an agent's stream."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        doc = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        raise json.JSONDecodeError("nested too deep", doc, 0) from None
