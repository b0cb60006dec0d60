"""``demo``: the bundled astronaut driven by the webcam (or by a video when there is no webcam), in a preview
window, or into a recording with --record when there is no screen."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from liveportrait_core.commands.run import add_run_arguments, run_engine

NAME = "demo"
HELP = "animate the bundled astronaut from your webcam (or --input VIDEO) in a preview window"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)


def run(args: argparse.Namespace, settings: Any) -> int:
    import os

    from liveportrait_core import paths
    from liveportrait_core.capture import list_cameras, no_camera_message

    if not args.character:
        args.character = str(paths.DEFAULT_CHARACTERS_DIR / "astronaut.png")
    if not args.input:
        cameras = list_cameras()
        if not cameras:
            print(f"demo: {no_camera_message()}.\n"
                  "      Drive the demo with any video of a face instead: "
                  "python -m liveportrait_core demo --input my_face.mp4", file=sys.stderr)
            return 2
        args.input = str(cameras[0].index)
        print(f"demo: webcam {cameras[0].index} ({cameras[0].name})")
        settings = settings.copy()
        settings.capture.source = args.input
    has_screen = not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or
                                                              os.environ.get("WAYLAND_DISPLAY"))
    if not has_screen and not (args.record or args.ndi is not None or args.spout is not None):
        print("demo: no screen for a preview window; add --record demo.mp4 (or --ndi)", file=sys.stderr)
        return 2
    return run_engine(args, settings, preview=has_screen)
