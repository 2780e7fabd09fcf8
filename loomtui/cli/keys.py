"""`loomtui keys [--json]`: every key of the app by its id, the key you press for it (your keymap's
choice, else the default) and what it does; your keymap checked, each problem at its line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from loomtui.cli import add_command, print_json


def cmd_keys(args: argparse.Namespace) -> int:
    from loomtui.tui.keymap import load_keymap, loomtui_keys, shown_keys

    loaded = load_keymap()
    rows = [(key, loaded.keymap[key.id].split(",") if key.id in loaded.keymap else list(key.keys))
            for key in loomtui_keys()]
    if args.json:
        print_json({"keymap": str(loaded.path), "problems": loaded.problems,
                    "keys": [{"id": key.id, "keys": keys, "default": list(key.keys), "yours": key.id in loaded.keymap,
                              "label": key.description, "what": key.tooltip} for key, keys in rows]})
        return 1 if loaded.problems else 0
    shown = [(key, shown_keys(keys) + ("*" if key.id in loaded.keymap else ""))
             for key, keys in rows]
    width = max(len(keys) for _, keys in shown) + 2
    for key, keys in shown:
        print(f"{key.id:<26}{keys:<{width}}{key.tooltip}")
    exists = loaded.path.exists()
    print(f"\nkeymap: {loaded.path}" + (" (* your keys)" if exists else " (none: every key is its default)"))
    for problem in loaded.problems:
        print(problem, file=sys.stderr)
    return 1 if loaded.problems else 0


def register(commands: Any) -> None:
    """`loomtui keys`."""
    add_command(commands, "keys", cmd_keys,
                "every key of the app by its id, the key to press (yours from keymap.yaml in loomtui's config "
                "folder, else the default) and what it does; the keymap checked (exit 1 naming each bad line)",
                json_flag=True, reads_only=True)
