"""Observability: what the agents did, measured from the record, never stored twice.

`compute_metrics(workspace, since, until, branch)` reads the state store (sandboxes,
escalations, gate runs, eval reports), the window of the audit log (found by
binary search on seq, so a long log is not parsed whole) and the branch's git
history (commits marked agent-made by loomtui's merge trailers or by the trailers
agents add themselves), and returns `Metrics`: per day and per runtime, how many
sandboxes started and ended, how many changes were merged, rejected and
overridden, the acceptance rate, the agent-made share of the branch's commits, the
time from an agent's end to a decision, gate and conflict figures, escalations,
overrides, tokens and cost. `report.py` renders it as text, JSON, markdown (a
weekly note) or the Prometheus text format. Nothing here writes state: a new
audit entry or merge changes the next report.

The layer sits above governance (it reads what every layer below records) and
below the workflow engine and the front-ends.
"""
