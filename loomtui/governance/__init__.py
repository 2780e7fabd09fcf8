"""Governance: whether a change may proceed, who must approve it, and why.

`policy` is the pure policy engine: it loads `.loom/policy.yaml` (and optionally a
CODEOWNERS file, read by `codeowners`), evaluates the facts of a change at claim
time or after the gates, and explains every rule that applied. It knows nothing of
the store or the UI; escalations, approvals and overrides are built on top of it,
and `hooks` answers an agent's edit and permission checks.

It may import guardrails, execution, knowledge, coordination and the base modules;
never workflow or a front-end.
"""
