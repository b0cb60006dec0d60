"""``python -m liveportrait_core``: the command-line entry point."""
import sys

from liveportrait_core.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
