"""Guardrails: the gates a sandbox's change must pass before people see it."""
