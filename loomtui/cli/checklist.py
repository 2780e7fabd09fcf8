"""`loomtui checklist [--json] [--org-size N]`: the article's ten-item infrastructure audit."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from loomtui.cli import add_command, positive_int_arg, print_json, workspace_for

WIDTH = 100


def cmd_checklist(args: argparse.Namespace) -> int:
    from loomtui.observability.checklist import checklist

    workspace = workspace_for(args)
    try:
        result = checklist(workspace, args.org_size)
    finally:
        workspace.close()
    # An item that could not be checked (a broken config) is an error to a script: the score is incomplete.
    status = 1 if result.unknown else 0
    if args.json:
        print_json(result.as_dict())
        return status
    print(f"infrastructure checklist for {result.root}")
    for item in result.items:
        print(f"{item.number:>2}  {item.answer:<7}  [{item.area}] {item.question}")
        for line in item.evidence:
            print(textwrap.fill(line, WIDTH, initial_indent="             ", subsequent_indent="               ",
                                break_on_hyphens=False))
        if item.next_step:
            print(textwrap.fill(f"next: {item.next_step}", WIDTH, initial_indent="             ",
                                subsequent_indent="                   ", break_on_hyphens=False))
    gaps = ", ".join(f"{i.number} ({i.answer})" for i in result.gaps())
    print(textwrap.fill(f"score {result.score:g} of {len(result.items)}: {result.verdict}"
                        + (f"; gaps: {gaps}" if gaps else ""), WIDTH, subsequent_indent="  "))
    if result.band is not None:
        print()
        for line in result.band.lines():
            indent = " " * (len(line) - len(line.lstrip()) + (6 if line.lstrip().startswith(("have", "LACKS", "?"))
                                                              else 2))
            print(textwrap.fill(line, WIDTH, subsequent_indent=indent, break_on_hyphens=False))
    return status


def register(commands: Any) -> None:
    """`loomtui checklist`."""
    checklist = add_command(commands, "checklist", cmd_checklist,
                            "the ten-item infrastructure audit of the control-plane playbook (\"Build, buy, "
                            "or hybrid?\"), answered for this repository from "
                            "evidence (yes / partly / no, each with what was looked at and the next step), "
                            "the score and the verdict; exit 1 when an item could not be checked (a broken config: "
                            "answered `unknown`, the score incomplete)", json_flag=True, reads_only=True)
    checklist.add_argument("--org-size", type=positive_int_arg, metavar="N",
                           help="engineers in the org: adds the article's minimum viable control plane for "
                                "that size and what this repository lacks for it")
