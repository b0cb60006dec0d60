"""``benchmark --tracking``: MediaPipe landmarks plus the driving crop per 640×480 frame, on the CPU.

Frames come from a real driving video (default: the shared webcam-style d13.mp4 when present, else
the bundled character photo moved around like a webcam), cropped to 4:3 and resized to 640×480, and
decoded up front so decoding is not timed. Three passes over the same frames:
* ``mesh only``: the MediaPipe graph alone (BGR→RGB + FaceMesh), the floor of what tracking can cost;
* ``tracker (max_faces=1)``: everything the tracking stage does per frame — landmarks, pose, ratios,
  One Euro filters, the driving box, the mouth check (``tracking/mouth_visibility.py``, its share shown
  apart, its reference taken on the first frame and not timed) and the 256² RGB crop;
* ``tracker (max_faces=N)`` with the settings' value when it is not 1: MediaPipe then runs its face
  detector on every frame while fewer than N faces are visible, which costs a few ms more.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from liveportrait_core.machine import cpu_model

_log = logging.getLogger(__name__)

GOAL_MEDIAN_MS = 5.0
FRAME_SIZE = (640, 480)
_SHARED_VIDEO = Path(__file__).resolve().parents[3].parent / "shared" / "testdata" / "driving" / "d13.mp4"
_PHOTO = Path(__file__).resolve().parents[3] / "characters" / "astronaut.png"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tracking benchmark (--tracking)")
    g.add_argument("--tracking-input", metavar="VIDEO", help="driving video (default: shared d13.mp4 if present, "
                                                             "else the bundled photo moved like a webcam)")
    g.add_argument("--tracking-frames", type=int, default=150, metavar="N", help="frames per pass (default 150)")


def _to_640x480(frame: np.ndarray) -> np.ndarray:
    import cv2  # noqa: PLC0415

    h, w = frame.shape[:2]
    if w * 3 > h * 4:  # wider than 4:3: keep the centre
        cw = h * 4 // 3
        frame = frame[:, (w - cw) // 2:(w - cw) // 2 + cw]
    elif w * 3 < h * 4:
        ch = w * 3 // 4
        frame = frame[(h - ch) // 2:(h - ch) // 2 + ch]
    return cv2.resize(frame, FRAME_SIZE, interpolation=cv2.INTER_AREA)


def load_frames(source: str | None, n: int) -> tuple[list[np.ndarray], str]:
    """``n`` 640×480 BGR frames (a short video is looped) and a description of where they came from."""
    import cv2  # noqa: PLC0415

    path = Path(source) if source else (_SHARED_VIDEO if _SHARED_VIDEO.exists() else None)
    frames: list[np.ndarray] = []
    if path is not None:
        cap = cv2.VideoCapture(str(path))
        while len(frames) < n:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(_to_640x480(f))
        cap.release()
        if not frames:
            raise ValueError(f"cannot read frames from {path}")
        desc = f"{path.name} (cropped to 4:3, resized to 640x480)"
    else:
        img = cv2.imread(str(_PHOTO), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"no input: pass --tracking-input VIDEO ({_PHOTO} not found)")
        h, w = img.shape[:2]  # the head and shoulders, large enough in the frame for the face detector
        side = min(h, w) * 7 // 10
        x0 = (w - side) // 2
        img = cv2.resize(img[:side, x0:x0 + side], (460, 460), interpolation=cv2.INTER_AREA)
        for k in range(n):
            m = np.float32([[1, 0, 90 + 8 * np.sin(k / 5)], [0, 1, 10 + 5 * np.cos(k / 7)]])
            frames.append(cv2.warpAffine(img, m, FRAME_SIZE, borderMode=cv2.BORDER_REPLICATE))
        desc = f"{_PHOTO.name} moved around a 640x480 frame"
    while len(frames) < n:
        frames.extend(frames[: n - len(frames)])
    return frames, desc


def _stats(times_s: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000.0 for t in times_s)
    return {"median_ms": round(statistics.median(ms), 3), "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
            "min_ms": round(ms[0], 3)}


def _time_mesh(frames: list[np.ndarray], max_faces: int) -> dict[str, Any]:
    import cv2  # noqa: PLC0415

    from liveportrait_core.tracking.mesh import FaceMesh  # noqa: PLC0415

    times, found = [], 0
    with FaceMesh(static_image_mode=False, max_faces=max_faces) as mesh:
        for f in frames:
            t0 = time.perf_counter()
            faces = mesh.process(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            times.append(time.perf_counter() - t0)
            found += bool(faces)
    return {**_stats(times), "faces_found": found}


def _time_tracker(frames: list[np.ndarray], settings: Any, max_faces: int) -> dict[str, Any]:
    import dataclasses  # noqa: PLC0415

    from liveportrait_core.tracking.tracker import FaceTracker  # noqa: PLC0415

    ts = dataclasses.replace(settings.tracking, max_faces=max_faces)
    total, landmarks, cut, mouth, found = [], [], [], [], 0
    with FaceTracker(ts) as tracker:
        tracker.calibrate()  # the mouth check's reference on the first face (as calibration at the start)
        check = tracker.mouth.update

        def timed_check(*args: Any, **kwargs: Any) -> Any:  # the mouth check's share (its reference aside)
            t = time.perf_counter()
            verdict = check(*args, **kwargs)
            if not kwargs.get("reference"):
                mouth.append(time.perf_counter() - t)
            return verdict

        tracker.mouth.update = timed_check
        for i, f in enumerate(frames):
            t0 = time.perf_counter()
            obs = tracker.process(f, i / 30.0)
            t1 = time.perf_counter()
            if obs.found:
                tracker.driving_crop(f, obs)
                found += 1
            t2 = time.perf_counter()
            total.append(t2 - t0)
            landmarks.append(t1 - t0)
            cut.append(t2 - t1)
    return {**_stats(total), "faces_found": found, "observation": _stats(landmarks), "crop": _stats(cut),
            "mouth_check": _stats(mouth or [0.0])}


def _system() -> dict[str, Any]:
    import cv2  # noqa: PLC0415

    try:
        from importlib.metadata import version  # noqa: PLC0415

        mp_version = version("mediapipe")
    except Exception:  # noqa: BLE001
        mp_version = "?"
    return {"cpu": cpu_model(), "cpu_cores": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "mediapipe": mp_version, "opencv": cv2.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def run(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    n = max(10, int(getattr(args, "tracking_frames", 150) or 150))
    frames, desc = load_frames(getattr(args, "tracking_input", None), n)
    warm = frames[:10]
    _time_mesh(warm, 1)  # load the graph and the models once before timing
    passes: dict[str, Any] = {"mesh only (max_faces=1)": _time_mesh(frames, 1),
                              "tracker (max_faces=1)": _time_tracker(frames, settings, 1)}
    if settings.tracking.max_faces != 1:
        passes[f"tracker (max_faces={settings.tracking.max_faces})"] = _time_tracker(
            frames, settings, settings.tracking.max_faces)
    best = passes["tracker (max_faces=1)"]
    system = _system()
    return {"kind": "tracking", "system": system, "input": desc, "frames": n, "frame_size": list(FRAME_SIZE),
            "passes": passes, "goal_median_ms": GOAL_MEDIAN_MS,
            "meets_goal": best["median_ms"] <= GOAL_MEDIAN_MS, "ok": best["faces_found"] > 0}


def format_table(r: dict[str, Any]) -> str:
    s = r["system"]
    lines = [f"Face tracking benchmark: {r['frames']} frames of {r['input']}",
             f"system: {s['cpu']} ({s['cpu_cores']} threads), {s['os']}, Python {s['python']}, "
             f"mediapipe {s['mediapipe']}, OpenCV {s['opencv']}; load average {s['load_average']} "
             "(other processes on this machine slow these figures)", "",
             f"{'pass':<30}{'median ms':>11}{'p95 ms':>9}{'min ms':>9}{'faces':>8}"]
    for name, p in r["passes"].items():
        lines.append(f"{name:<30}{p['median_ms']:>11.2f}{p['p95_ms']:>9.2f}{p['min_ms']:>9.2f}"
                     f"{p['faces_found']:>5}/{r['frames']}")
        if "crop" in p:
            lines.append(f"{'  of which landmarks + obs.':<30}{p['observation']['median_ms']:>11.2f}"
                         f"{p['observation']['p95_ms']:>9.2f}")
            lines.append(f"{'  of which 256² crop':<30}{p['crop']['median_ms']:>11.2f}{p['crop']['p95_ms']:>9.2f}")
            m = p["mouth_check"]
            lines.append(f"{'  of which mouth check':<30}{m['median_ms']:>11.2f}{m['p95_ms']:>9.2f}")
    verdict = "meets" if r["meets_goal"] else "misses"
    lines += ["", f"goal: median <= {r['goal_median_ms']} ms per frame (max_faces=1): {verdict} it"]
    return "\n".join(lines)
