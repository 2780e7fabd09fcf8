import sys

# The guard matters: index workers started by forkserver/spawn import this module.
if __name__ == "__main__":
    # An agent's hooks inside a sandbox: answered with the stdlib alone, before any engine loads.
    from loomtui.governance.hooks.client import fast_main

    code = fast_main(sys.argv[1:])
    if code is None:
        from loomtui.cli import main

        code = main()
    raise SystemExit(code)
