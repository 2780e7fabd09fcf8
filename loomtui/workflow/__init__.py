"""The workflow engine: one state machine per task, task dependencies and scheduling."""
