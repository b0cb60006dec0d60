"""``place-face IMAGE``: place a character's face by hand (click the eyes and the mouth, or drag a box) and
save the sidecar (``IMAGE.yaml``) that replaces face detection for that image.

The window only shows ``characters.placement.Placement.render()`` and forwards mouse and key events to it;
the model layer holds every decision, so tests drive it without a window. ``place`` is the plain function.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from liveportrait_core.settings import Settings

NAME = "place-face"
HELP = "place a character's face by hand (eyes and mouth, or a box) and save IMAGE.yaml beside the image"
DESCRIPTION = (HELP + ". For pictures the face finder refuses (animals, anime, mascots): click the eye on the "
               "image's left, the other eye and the mouth (or press b and drag a box), m adds mask corners, "
               "+/- and w/s size and shift the crop, v picks the model variant, Enter saves, q quits. The crop "
               "and the animated region are shown live. An existing sidecar is the starting point and is never "
               "replaced: the save goes to IMAGE.2.yaml unless --replace.")
WINDOW = "LivePortrait place-face"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the character image")
    p.add_argument("--replace", action="store_true",
                   help="replace an existing IMAGE.yaml (default: keep it and save as IMAGE.2.yaml)")
    p.add_argument("--max-view", type=int, default=900, help="longest side of the image in the window (pixels)")


def run(args: argparse.Namespace, settings) -> int:
    return place(settings, args.image, replace=args.replace, max_view_px=args.max_view)


def place(settings: Settings, image: str, *, replace: bool = False, max_view_px: int = 900,
          events: Callable[[object], None] | None = None) -> int:
    """Open the window on ``image``; 0 when a sidecar was saved, 1 when the window was closed without saving,
    2 when the image or its sidecar cannot be read or no window can be opened. ``events`` (tests) is called
    with the ``Placement`` once per shown frame, before the key is read."""
    from liveportrait_core import images  # noqa: PLC0415 - OpenCV
    from liveportrait_core.characters import sidecar as sc_mod  # noqa: PLC0415
    from liveportrait_core.characters.placement import Placement  # noqa: PLC0415

    try:
        img = images.load_image(image)
    except images.ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    target = sc_mod.sidecar_path(image)
    try:
        start = sc_mod.load_sidecar(image)
    except sc_mod.SidecarError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if start is not None:
        print(f"starting from {target}" + ("" if replace else " (kept: a save goes to a new name; --replace "
                                                             "replaces it)"))
    model = Placement.for_image(img.bgr, target, max_view_px=max_view_px, start=start)
    missing = no_desktop()
    if missing:
        return _no_window(missing, target)
    import cv2  # noqa: PLC0415

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no toolbar: clicks land on pixels
    except cv2.error as e:
        return _no_window(e.msg.strip() if hasattr(e, "msg") else str(e), target)
    cv2.setMouseCallback(WINDOW, model.on_mouse)
    step = model.next_step()
    print(f"{Path(image).name}: {step}; Enter saves, q quits", flush=True)
    saved = None
    try:
        while True:
            cv2.imshow(WINDOW, model.render())
            if events is not None:
                events(model)
            action = model.on_key(cv2.waitKey(30))
            if model.next_step() != step:  # each step in the terminal too: a click that landed is confirmed there
                step = model.next_step()
                print(step, flush=True)
            if action == "quit" or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                break
            if action == "save":
                try:
                    saved = model.save(replace=replace)
                except (ValueError, OSError) as e:  # incomplete placement, a point outside, a full disk
                    model.message = str(e)
                    continue
                print(model.message)
                break
    finally:
        cv2.destroyWindow(WINDOW)
        cv2.waitKey(1)
    if saved is None:
        print("closed without saving")
        return 1
    print(f"check it with: check-character {image}  (the table says 'face from sidecar')")
    return 0


def _no_window(why: str, target: Path) -> int:
    """Say that no window can open, and the ways without one; exit status 2."""
    print(f"error: cannot open a window ({why}); place-face needs a desktop. Without one, write {target.name} by "
          "hand (docs/CHARACTER_GUIDE.md, sidecar fields) or run check-character --write-sidecar IMAGE",
          file=sys.stderr)
    return 2


def no_desktop() -> str:
    """Why no window can open here ("" when one can): on Linux, OpenCV's Qt aborts the whole process without
    a display, so this is asked first."""
    if not sys.platform.startswith("linux") or os.environ.get("WAYLAND_DISPLAY"):
        return ""
    display = os.environ.get("DISPLAY", "")
    if not display:
        return "no DISPLAY: no desktop session"
    host, _, number = display.rpartition(":")
    if host in ("", "unix") and not Path(f"/tmp/.X11-unix/X{number.split('.')[0]}").exists():
        return f"DISPLAY={display} has no X server"
    return ""
