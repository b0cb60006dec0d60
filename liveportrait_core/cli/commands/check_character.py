"""``check-character``: is an image usable as a character? Format, size, alpha, face, confidence, face
size, roll; a verdict with advice; the crop preview and the animated-region mask written to ``--out``.

``check`` is the command as a plain function: the CLI's ``run`` and the OBS panel's "Check character" button
both call it."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liveportrait_core.settings import Settings

NAME = "check-character"
HELP = "check character images: face, confidence, size, roll, verdict and advice; writes crop and mask previews"
DESCRIPTION = (HELP + ". Previews (<name>.crop.png, <name>.mask.png, <name>.region.png) go to --out, never next "
               "to your images. Exit status 0 only when every image has a usable face.")
#: Where the previews go unless ``--out`` says otherwise (relative to the current folder).
DEFAULT_OUT = "check-character"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="character image(s) or folder(s) of images")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"folder for previews (default: ./{DEFAULT_OUT})")
    p.add_argument("--no-preview", action="store_true", help="do not write crop and mask previews")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--min-confidence", type=float,
                   help="detector score a face needs (default: the setting characters.min_face_confidence)")
    p.add_argument("--write-sidecar", action="store_true",
                   help="for each image without IMAGE.yaml, write a starting sidecar from the detected face or the "
                        "best refused candidate (never over an existing one); then correct it with place-face")


def run(args: argparse.Namespace, settings) -> int:
    return check(settings, *args.paths, out=args.out, previews=not args.no_preview, as_json=args.json,
                 min_confidence=args.min_confidence, write_sidecar=args.write_sidecar)


def check(settings: Settings, *paths: str, out: str = DEFAULT_OUT, previews: bool = True, as_json: bool = False,
          min_confidence: float | None = None, write_sidecar: bool = False) -> int:
    """Check ``paths`` (images and/or folders), print the table (or JSON) to stdout; the exit status: 0 when
    every image has a usable face, 1 when one has not, 2 when nothing could be checked (the message says why).
    ``min_confidence`` None: the setting ``characters.min_face_confidence``. An image whose sidecar places the face
    reads "face from sidecar"; ``write_sidecar`` writes starting sidecars (``characters.check.starting_sidecar``)."""
    from liveportrait_core.characters import check as character_check  # noqa: PLC0415 - imports OpenCV
    from liveportrait_core.tracking.mesh import TrackerUnavailable  # noqa: PLC0415

    cs = settings.characters
    if min_confidence is not None:
        cs = dataclasses.replace(cs, min_face_confidence=min_confidence)
    try:
        reports = character_check.check_images(paths, cs, out if previews else None, write_sidecars=write_sidecar)
    except (ValueError, TrackerUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not reports:
        print(f"error: no images (.png, .jpg, .jpeg, .webp) found in {' '.join(paths)}", file=sys.stderr)
        return 2
    rows = [r.to_dict() for r in reports]
    print(json.dumps(rows, indent=2) if as_json else character_check.format_table(rows))
    return 0 if all(r.verdict != "unusable" for r in reports) else 1
