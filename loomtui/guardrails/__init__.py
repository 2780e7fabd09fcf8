"""Guardrails: the gates a sandbox's change must pass before people see it (`gates`).

It may import execution (to run a gate confined in the sandbox's worktree), knowledge,
coordination and the base modules; never governance, workflow or a front-end.
"""
