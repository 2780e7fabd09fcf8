"""`loomtui bench audit`: the crash loop (writers killed at random; do the store and the log agree?)."""

from __future__ import annotations

import argparse
from typing import Any

from loomtui.errors import LoomError


def cmd_bench_audit(args: argparse.Namespace) -> int:
    from loomtui.cli import print_json
    from loomtui.coordination.audit_crash import crash_loop

    if args.rounds < 1 or args.writers < 0 or args.cli < 0 or args.writers + args.cli < 1:
        raise LoomError("--rounds must be 1 or more, and there must be at least one writer")
    result = crash_loop(args.rounds, writers=args.writers, cli_writers=args.cli, seed=args.seed)
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            if key != "problems":
                print(f"{key:>30}: {value}")
        for problem in result["problems"]:
            print(f"  {problem}")
    return 0 if result["rounds_in_agreement"] == result["rounds"] else 1


def register_bench(bench: Any) -> None:
    """`loomtui bench audit`."""
    from loomtui.cli import add_command, count_arg, positive_int_arg

    audit = add_command(bench, "audit", cmd_bench_audit,
                        "crash loop: claim writers killed with SIGKILL at random; count the rounds after "
                        "which the store and the audit log agree exactly (exit 1 if any does not)",
                        json_flag=True)
    audit.add_argument("--rounds", type=positive_int_arg, default=30, metavar="N", help="rounds (default 30)")
    audit.add_argument("--writers", type=positive_int_arg, default=4, metavar="N",
                       help="API writer processes per round (default 4)")
    audit.add_argument("--cli", type=count_arg, default=0, metavar="N",
                       help="writers looping real `loomtui claim` CLI calls per round (default 0)")
    audit.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
