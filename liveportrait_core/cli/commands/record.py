"""``record``: ``run`` into a recording (MP4, or a folder of PNG frames that keeps alpha)."""
from __future__ import annotations

import argparse
from typing import Any

from liveportrait_core.cli.commands.run import EPILOG, add_run_arguments, run_engine

NAME = "record"
HELP = "record the animated character to an MP4 file or a folder of PNG frames with alpha"
DESCRIPTION = (HELP + ". A video input is processed frame by frame, so the recording has every frame "
               "(use --realtime to record live instead).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, record_required=True)


def run(args: argparse.Namespace, settings: Any) -> int:
    return run_engine(args, settings)
