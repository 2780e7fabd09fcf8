"""`loomtui bench hook`: the agent loop's hooks as whole processes, beside a bare interpreter."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_bench_hook(args: argparse.Namespace) -> int:
    from loomtui.cli import print_json
    from loomtui.cli.coordination import bench_tree
    from loomtui.governance.hook_bench import report_lines, run_hook_bench

    progress = None if args.json else (lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    tree = bench_tree(args, progress or (lambda _text: None))
    result = run_hook_bench(calls=args.calls, path=tree, progress=progress)
    if args.json:
        print_json(result)
    else:
        print("\n".join(report_lines(result)))
    return 0


def register_bench(bench: Any) -> None:
    """`loomtui bench hook`."""
    from loomtui.cli import add_command, positive_int_arg
    from loomtui.cli.coordination import add_tree_arguments

    hook = add_command(bench, "hook", cmd_bench_hook,
                       "time `hook claude` (PreToolUse Edit) and `hook git-pre-commit` as whole processes "
                       "through a real broker, on a networkx-sized repository with 200 sandboxes and 5,000 "
                       "claims held, beside `python -c pass`", json_flag=True)
    hook.add_argument("--calls", type=positive_int_arg, default=40, metavar="N",
                      help="calls of each hook (default 40)")
    add_tree_arguments(hook)
