"""`loomtui bench hostile`: a hostile agent's escape attempts, run for real; how many were stopped."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_bench_hostile(args: argparse.Namespace) -> int:
    from loomtui.cli import print_json
    from loomtui.demo.hostile import UNSTOPPABLE_WITHOUT_ISOLATION, run_attempts
    from loomtui.errors import LoomError
    from loomtui.execution.isolation import isolation_status

    modes = [] if args.no_isolation_only else [True]
    if args.no_isolation or args.no_isolation_only:
        modes.append(False)
    if True in modes and not isolation_status().available:
        raise LoomError(f"{isolation_status().detail}; run with --no-isolation-only to try the plain mode")
    reports = []
    for isolate in modes:
        progress = None if args.json else (lambda text: print(f"  {text}", file=sys.stderr, flush=True))
        reports.append(run_attempts(isolate, progress=progress))
    failed = any(not r.stopped and (report.isolated or r.attempt not in UNSTOPPABLE_WITHOUT_ISOLATION)
                 for report in reports for r in report.results)
    if args.json:
        print_json([report.as_dict() for report in reports])
    else:
        from loomtui.demo.hostile import report_lines

        for report in reports:
            print("\n".join(report_lines(report)))
    return 1 if failed else 0


def register_bench(bench: Any) -> None:
    """`loomtui bench hostile`."""
    from loomtui.cli import add_command

    hostile = add_command(bench, "hostile", cmd_bench_hostile,
                          "run a hostile agent's escape attempts in a throwaway repository (isolated with "
                          "bubblewrap) and print which were stopped; exit 1 if one escaped that should not",
                          json_flag=True)
    hostile.add_argument("--no-isolation", action="store_true",
                         help="also run them without isolation, to see what that mode cannot stop")
    hostile.add_argument("--no-isolation-only", action="store_true", help="run them only without isolation")
