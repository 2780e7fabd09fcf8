"""The first process in an interactive sandbox's tmux pane: runs the agent, keeps its exit status.

`python -m loomtui.execution.pane SANDBOX_DIR -- ARGV...`. The agent is not the
supervisor's child (tmux's server owns the pane), so this wrapper waits for it and
writes `SANDBOX_DIR/exit` ("CODE [SIGNAL]") for the supervisor to read. It waits
for the supervisor's go-ahead first, so no output is missed before the pane's
output is piped into the log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loomtui.execution.procs import agent_child_hook, exit_status

GO_TIMEOUT_S = 30.0


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m loomtui.execution.pane SANDBOX_DIR -- ARGV...", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    command = argv[2:]
    env_file = folder / "pane-env.json"
    env = json.loads(env_file.read_text())
    env_file.unlink()  # it may hold API keys: gone as soon as it is read
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not (folder / "pane-go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    # Signals meant for the agent (Ctrl-C in the pane, stop's SIGTERM) must not end
    # this wrapper before it has recorded the agent's exit. Handlers, not SIG_IGN:
    # an ignored signal would stay ignored in the agent too.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda *_: None)
    try:
        # This wrapper runs no thread: the hook is safe (and its own score stays: its exit is the record).
        agent = subprocess.Popen(command, env=env, preexec_fn=agent_child_hook(die_with_parent=False))  # noqa: PLW1509
        code, signame = exit_status(agent.wait())
    except OSError as exc:
        print(f"loomtui: cannot start {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        code, signame = 127, None
    partial = folder / "exit.partial"
    partial.write_text(f"{code} {signame or ''}".strip())
    os.replace(partial, folder / "exit")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
