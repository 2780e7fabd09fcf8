from loomtui.cli import main

# The guard matters: index workers started by forkserver/spawn import this module.
if __name__ == "__main__":
    raise SystemExit(main())
