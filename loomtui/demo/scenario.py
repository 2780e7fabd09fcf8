"""The demo scenario, run by `loomtui demo --headless` and shown live by the TUI.

Each step calls the same engines a real user's commands call; the summary is what
they returned.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from loomtui.workspace import Workspace


def run_headless(workspace: Workspace) -> dict[str, Any]:
    """Run the scenario against a prepared demo repository and summarise what happened."""
    lines: list[str] = []
    ok = True
    root = workspace.root
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                          capture_output=True, text=True).stdout.strip()
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.split()
    lines.append(f"demo repository: {root} (commit {head}, {len(files)} files)")
    config = workspace.load_config()
    lines.append(f"config: {config.source}; runtimes {', '.join(sorted(config.runtimes))}; "
                 f"gates {', '.join(g.name for g in config.gates)}")
    workspace.record("demo.started", str(root), {"commit": head})

    baseline = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                              cwd=root, capture_output=True, text=True)
    output = baseline.stdout.strip() or baseline.stderr.strip()
    summary = (output.splitlines() or ["(no output)"])[-1]
    lines.append(f"baseline test suite: {summary}")
    ok &= baseline.returncode == 0
    workspace.record("demo.baseline", str(root), {"exit": baseline.returncode, "summary": summary})

    verify = workspace.audit.verify()
    lines.append(f"audit: {verify.summary(workspace.audit.path)}")
    ok &= verify.ok
    status = workspace.store.status()
    lines.append(f"store: schema {status.schema_version}, {status.last_event_id} events")
    return {"ok": ok, "repo": str(root), "commit": head, "lines": lines,
            "baseline_exit": baseline.returncode, "audit_entries": verify.entries}
