"""``demo``: the bundled astronaut driven by the webcam (or, without one, by a clip of the bundled photo moving),
in a preview window, or into a recording with --record when there is no screen."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from liveportrait_core import paths
from liveportrait_core.cli.commands.run import EPILOG, add_run_arguments, run_engine

NAME = "demo"
HELP = "animate the bundled astronaut from your webcam (or --input VIDEO) in a preview window"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)


def run(args: argparse.Namespace, settings: Any) -> int:
    import os

    from liveportrait_core import paths
    from liveportrait_core.capture.sources import list_cameras, no_camera_message

    if not args.character:
        args.character = str(paths.DEFAULT_CHARACTERS_DIR / "astronaut.png")
    if not args.input:
        cameras = list_cameras()
        if cameras:
            args.input = str(cameras[0].index)
            print(f"demo: webcam {cameras[0].index} ({cameras[0].name})")
        else:
            from liveportrait_core.capture.demo_clip import demo_clip

            try:
                args.input = str(demo_clip())
            except OSError as e:
                print(f"demo: {no_camera_message()}, and no demo clip: {e}.\n"
                      "      Drive the demo with any video of a face: "
                      f"{paths.cli_command('demo', '--input', 'my_face.mp4')}", file=sys.stderr)
                return 2
            args.realtime = args.loop = True
            print(f"demo: {no_camera_message()}; driving with a clip of the bundled photo moving "
                  f"({args.input}); use --input VIDEO for your own face video")
        settings = settings.copy()
        settings.capture.source = args.input
    has_screen = not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or
                                                              os.environ.get("WAYLAND_DISPLAY"))
    if not has_screen and not (args.record or args.ndi is not None or args.spout is not None):
        print("demo: no screen for a preview window; add --record demo.mp4 (or --ndi)", file=sys.stderr)
        return 2
    return run_engine(args, settings, preview=has_screen)
