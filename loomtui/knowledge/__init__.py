"""Knowledge: the context authority (context sources, versions, a ranked slice per task, drift).

Below execution, above coordination: it reads the store, the audit log and the region
index, and may import coordination and the base modules; never execution, guardrails,
governance, workflow or a front-end. Entry point: `engine`.
"""
