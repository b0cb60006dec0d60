"""``preview``: ``run`` with a preview window (keys: C calibrate, N/P characters, D tracker debug, Q quit)."""
from __future__ import annotations

import argparse
from typing import Any

from liveportrait_core.cli.commands.run import EPILOG, add_run_arguments, run_engine

NAME = "preview"
HELP = "animate a character live in a preview window (no OBS needed)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)


def run(args: argparse.Namespace, settings: Any) -> int:
    return run_engine(args, settings, preview=True)
