"""The workflow engine: one state machine per task, task dependencies and scheduling.

`engine.advance` does a task's next due step under a store lease; `steps` says which
step is due, `tasks` states a task and starts its agent, `plan` and `planrun` order and
run a plan of several tasks, and `supervise` is the supervisor agents run under.

The top engine layer: it may import every engine layer (governance, guardrails,
execution, knowledge, coordination) and the base modules, never a front-end (`cli`,
`tui`, `mcp`, `demo`).
"""
