"""Execution: where agents run.

Each agent task gets a sandbox (a git worktree on branch `loom/<id>`), an agent
process isolated with bubblewrap where available, and a detached supervisor that
logs, heartbeats and records every lifecycle move. The API, all plain Python:

- `sandboxes`: plan_sandbox, make_worktree, start, log_path, read_log_tail, follow_log,
  get_sandbox, list_sandboxes, wait_for_status
- `agent_control`: stop, pause, resume, attach_command
- `review`: diff, merge, remove
- `recovery`: reconcile (run it when a UI starts)
- `lifecycle`: the statuses, their allowed moves, `set_status` for other layers
- `isolation`: isolation_available(), the bwrap command line
- `runtimes`: a configured runtime -> the exact argv and environment
- `supervisor`, `pane`: the processes that run an agent
- `script_agent`: the `script` runtime; `doctor`; `bench`

It may import coordination, knowledge and the base modules; never guardrails,
governance, workflow or a front-end.
"""
