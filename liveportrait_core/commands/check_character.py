"""``check-character``: is an image usable as a character? Format, size, alpha, face, confidence, face
size, roll; a verdict with advice; the crop preview and the animated-region mask written to ``--out``.

``check`` is the command as a plain function: the CLI's ``run`` and the OBS panel's "Check character" button
both call it."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
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
                   help="detector score a face needs (default: characters.min_face_confidence, 0.8)")


def _write_png(path: Path, image) -> str | None:
    import cv2  # noqa: PLC0415

    ok, buf = cv2.imencode(".png", image)
    if not ok:
        return None
    path.write_bytes(buf.tobytes())
    return str(path.resolve())


def _extend(report, out: Path | None, min_face_px: int, finder) -> dict:
    """The tracking report plus format, animated-region mask, verdict and advice (characters.py)."""
    from liveportrait_core import characters  # noqa: PLC0415

    d = report.to_dict()
    path = Path(report.file)
    d["format"] = characters.image_format(path)
    d["mask_preview"] = d["region_preview"] = None
    if out is not None and report.face_found:
        try:
            mask, overlay = characters.animated_region_mask(path, min_face_px, face_finder=finder)
            d["mask_preview"] = _write_png(out / f"{path.stem}.mask.png", mask)
            d["region_preview"] = _write_png(out / f"{path.stem}.region.png", overlay)
        except characters.CharacterError as e:
            d.setdefault("warnings", []).append(f"no mask preview: {e}")
    d["verdict"], d["advice"] = characters.assess(d, min_face_px)
    return d


def _format(rows: list[dict]) -> str:
    """The table; what was not measured reads "-" (no face: no ratio or roll; an unreadable file: no size and
    no candidate score), never a zero that looks like a measurement."""
    lines = [f"{'image':28} {'format':6} {'size':>10} {'alpha':5} {'face':4} {'conf':>5} {'ratio':>5} {'roll':>6}  verdict"]
    for r in rows:
        w, h = r.get("image_size") or (0, 0)
        size = f"{w}x{h}" if w and h else "-"
        found = r["face_found"]
        conf = f"{r['confidence']:5.2f}" if found or r["confidence"] > 0 else "-"
        ratio, roll = (f"{r['face_size_ratio']:5.2f}", f"{r['roll_deg']:6.1f}") if found else ("-", "-")
        lines.append(f"{Path(r['file']).name[:28]:28} {r['format']:6} {size:>10} {'yes' if r['has_alpha'] else 'no':5} "
                     f"{'yes' if found else 'NO':4} {conf:>5} {ratio:>5} {roll:>6}  {r['verdict'].upper()}")
        for a in r["advice"]:
            lines.append(f"    - {a}")
        for k, label in (("crop_preview", "crop"), ("mask_preview", "animated region mask"),
                         ("region_preview", "animated region")):
            if r.get(k):
                lines.append(f"    {label}: {r[k]}")
    return "\n".join(lines)


def run(args: argparse.Namespace, settings) -> int:
    return check(settings, *args.paths, out=args.out, previews=not args.no_preview, as_json=args.json,
                 min_confidence=args.min_confidence)


def check(settings: Settings, *paths: str, out: str = DEFAULT_OUT, previews: bool = True, as_json: bool = False,
          min_confidence: float | None = None) -> int:
    """Check ``paths`` (images and/or folders), print the table (or JSON) to stdout; the exit status: 0 when
    every image has a usable face, 1 when one has not, 2 when nothing could be checked (the message says why).
    ``min_confidence`` None: the setting ``characters.min_face_confidence``."""
    from liveportrait_core.tracking import character_check  # noqa: PLC0415 - imports OpenCV/MediaPipe
    from liveportrait_core.tracking.mesh import TrackerUnavailable  # noqa: PLC0415

    min_face_px = settings.characters.min_face_px
    if min_confidence is None:
        min_confidence = settings.characters.min_face_confidence
    try:
        reports = character_check.check_characters(
            paths, out, previews=previews, min_confidence=min_confidence, min_face_px=min_face_px)
    except (ValueError, TrackerUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not reports:
        print(f"error: no images (.png, .jpg, .jpeg, .webp) found in {' '.join(paths)}", file=sys.stderr)
        return 2
    out_dir = Path(out) if previews else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    from liveportrait_core.characters import TrackerFaceFinder  # noqa: PLC0415

    finder = TrackerFaceFinder(min_face_px, min_confidence)  # one MediaPipe graph for every mask preview
    try:
        rows = [_extend(r, out_dir, min_face_px, finder) for r in reports]
    finally:
        finder.close()
    print(json.dumps(rows, indent=2) if as_json else _format(rows))
    return 0 if all(r["verdict"] != "unusable" for r in rows) else 1
