"""Coordination: which code a change touches, and who may touch it.

It holds the region index of a repository (`regions`, `index*`, `signatures`), the claims
on regions and their conflicts (`claims`), diffs mapped to regions (`diff`), and the
plain data a coordination view shows (`view`, `suggest`).

The lowest engine layer: it imports only the base modules (`store`, `audit`, `repo`,
`workspace`, `errors`, ...), never knowledge, execution, governance, workflow or a
front-end.
"""
