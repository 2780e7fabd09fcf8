"""`loomtui bench tui`: the app's time to first frame against a bare Textual app, key-to-repaint and memory
with many sandboxes, claims and audit entries."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from loomtui.errors import LoomError


def cmd_bench_tui(args: argparse.Namespace) -> int:
    from loomtui.cli import print_json
    from loomtui.tui.bench import format_tui_bench, tui_bench
    from loomtui.tui.bench_data import BenchSize

    if args.sandboxes < 2:
        raise LoomError("--sandboxes must be 2 or more: the cursor moves between rows")
    size = BenchSize(sandboxes=args.sandboxes, claims=args.claims, audit=args.audit)
    figures = tui_bench(size, rounds=args.rounds, progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print_json(figures)
    else:
        print(format_tui_bench(figures))
    return 0


def register_bench(bench: Any) -> None:
    """`loomtui bench tui`."""
    from loomtui.cli import add_command, count_arg, positive_int_arg

    tui = add_command(bench, "tui", cmd_bench_tui,
                      "the app's figures on a scratch copy of the sample repo at size: time to the dashboard's "
                      "first frame against a bare Textual app started the same way (medians), key-to-repaint "
                      "p50/p95/max for the sandbox cursor and for switching views, and peak memory",
                      json_flag=True)
    tui.add_argument("--sandboxes", type=positive_int_arg, default=200, metavar="N",
                     help="sandbox records (default 200; at least 2, for the cursor to move)")
    tui.add_argument("--claims", type=count_arg, default=5000, metavar="N", help="live claims (default 5000)")
    tui.add_argument("--audit", type=count_arg, default=10000, metavar="N", help="audit entries (default 10000)")
    tui.add_argument("--rounds", type=positive_int_arg, default=5, metavar="N",
                     help="starts of each app, and rounds of keys (default 5)")
