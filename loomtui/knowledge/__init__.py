"""Layer 2, the knowledge authority: context sources, versions, a ranked slice per task, drift.

Below execution, above coordination: it reads the store, the audit log and the region
index, and never imports execution, governance or the TUI. Entry points: `engine`.
"""
