"""``check-character``: is an image usable as a character? Face, confidence, size, roll, crop preview."""
from __future__ import annotations

import argparse
import json
import sys

NAME = "check-character"
HELP = "check character images: face found, confidence, face size, roll; writes crop previews"
DESCRIPTION = (HELP + ". Previews (<name>.crop.png) go to --out, never next to your images. "
               "Exit status 0 only when every image has a usable face.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="character image(s) or folder(s) of images")
    p.add_argument("--out", default="check-character", help="folder for crop previews (default: ./check-character)")
    p.add_argument("--no-preview", action="store_true", help="do not write crop previews")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--min-confidence", type=float, help="detector score a face needs (default 0.8)")


def run(args: argparse.Namespace, settings) -> int:
    from liveportrait_core.tracking import character_check  # noqa: PLC0415 - imports OpenCV/MediaPipe
    from liveportrait_core.tracking.mesh import TrackerUnavailable  # noqa: PLC0415

    try:
        reports = character_check.check_characters(
            args.paths, args.out, previews=not args.no_preview, min_confidence=args.min_confidence,
            min_face_px=settings.characters.min_face_px)
    except (ValueError, TrackerUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not reports:
        print(f"error: no images (.png, .jpg, .jpeg, .webp) found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        print(character_check.format_report(reports))
    return 0 if all(r.face_found for r in reports) else 1
