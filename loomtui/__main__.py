"""`python -m loomtui` and the `loomtui` command's entry point."""

import sys


def main() -> int:
    """Run `loomtui` with this process's arguments; return its exit code.

    The command's modules load in here, not before: Ctrl-C in the first moments of a
    command (while they import) ends it with 130, as it does later, not a traceback.
    """
    try:
        # An agent's hooks inside a sandbox: answered with the stdlib alone, before any engine loads.
        from loomtui.governance.hooks.client import fast_main

        code = fast_main(sys.argv[1:])
        if code is not None:
            return code
        from loomtui.cli import main as run_command
    except KeyboardInterrupt:
        return 130
    return run_command()


# The guard matters: index workers started by forkserver/spawn import this module.
if __name__ == "__main__":
    raise SystemExit(main())
