"""Driving-frame sources: webcams (by index or name), video files and folders of images.

``open_source(settings.capture)`` picks the source from ``capture.source``: a number is a webcam
index, an existing file a video, an existing folder an image sequence, anything else a webcam
name. Webcams open through OpenCV with the backend that works best on each OS (DirectShow on
Windows, V4L2 on Linux, AVFoundation on macOS) unless ``capture.backend`` says otherwise. Files
and folders are paced at their own frame rate (``capture.realtime``) and loop (``capture.loop``).
A source raises ``CaptureError`` with a message that says what to do; the engine reopens it with
backoff while the character idles.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from liveportrait_core.settings import CaptureSettings

_log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_FALLBACK_FPS = 30.0


class CaptureError(RuntimeError):
    """The source cannot be opened or stopped delivering; the message names it and says what to do."""


@dataclass
class CapturedFrame:
    """One driving frame. ``timestamp`` is its time on the session's clock (``capture.clock``: the wall clock
    for a live source, media time for a file processed frame by frame) and is what every consumer on the frame
    path reads; ``read_at`` is the wall clock (``time.perf_counter()``) when it was read, what latency is
    measured from (None: the same as ``timestamp``). Both travel to the output."""

    index: int
    timestamp: float
    image_bgr: np.ndarray | None  #: HxWx3 uint8 (None: a frame of a clock with no picture)
    read_at: float | None = None

    @property
    def wall_ts(self) -> float:
        """The wall-clock instant the frame was read (``time.perf_counter()``)."""
        return self.timestamp if self.read_at is None else self.read_at


class FrameSource(Protocol):
    description: str
    finite: bool  #: a file or folder (it can end), as opposed to a live camera
    fps: float  #: nominal frame rate

    def read(self) -> np.ndarray | None:
        """The next BGR frame; None at the end of a finite source; raises CaptureError on failure."""

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------------------
# webcams

_BACKENDS = {"dshow": "CAP_DSHOW", "msmf": "CAP_MSMF", "v4l2": "CAP_V4L2", "avfoundation": "CAP_AVFOUNDATION",
             "any": "CAP_ANY"}


def backend_for(name: str, platform: str | None = None) -> str:
    """The OpenCV backend name for ``capture.backend`` on this OS (``auto`` picks per OS)."""
    platform = platform or sys.platform
    if name != "auto":
        return name
    if platform.startswith("win"):
        return "dshow"  # opens fast and honours MJPG; MSMF can take seconds to open some cameras
    if platform.startswith("linux"):
        return "v4l2"
    if platform == "darwin":
        return "avfoundation"
    return "any"


@dataclass
class CameraInfo:
    index: int
    name: str


def _linux_cameras(root: Path = Path("/sys/class/video4linux")) -> list[CameraInfo]:
    out: list[CameraInfo] = []
    for node in sorted(root.glob("video*"), key=lambda p: int(p.name[5:] or 0)):
        try:
            # Each camera also exposes metadata nodes; only the node with index 0 captures images.
            if (node / "index").exists() and (node / "index").read_text().strip() != "0":
                continue
            out.append(CameraInfo(int(node.name[5:]), (node / "name").read_text().strip()))
        except (OSError, ValueError):
            continue
    return out


def _run_json(cmd: list[str]) -> Any:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
        return json.loads(res.stdout) if res.returncode == 0 and res.stdout.strip() else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _windows_cameras() -> list[CameraInfo]:
    try:  # DirectShow's own order, which is what OpenCV's indices follow
        from pygrabber.dshow_graph import FilterGraph  # type: ignore[import-not-found]

        return [CameraInfo(i, n) for i, n in enumerate(FilterGraph().get_input_devices())]
    except Exception:  # noqa: BLE001 - optional helper; fall back to PnP names (order is a best guess)
        pass
    data = _run_json(["powershell", "-NoProfile", "-Command",
                      "Get-CimInstance Win32_PnPEntity | Where-Object { $_.PNPClass -in 'Camera','Image' } "
                      "| Select-Object -ExpandProperty Name | ConvertTo-Json"])
    names = [data] if isinstance(data, str) else list(data or [])
    return [CameraInfo(i, str(n)) for i, n in enumerate(names)]


def _mac_cameras() -> list[CameraInfo]:
    data = _run_json(["system_profiler", "SPCameraDataType", "-json"]) or {}
    return [CameraInfo(i, str(c.get("_name", f"camera {i}"))) for i, c in enumerate(data.get("SPCameraDataType", []))]


def list_cameras(platform: str | None = None) -> list[CameraInfo]:
    """Cameras this OS reports, best effort, in the order OpenCV numbers them (may be empty)."""
    platform = platform or sys.platform
    try:
        if platform.startswith("linux"):
            return _linux_cameras()
        if platform.startswith("win"):
            return _windows_cameras()
        if platform == "darwin":
            return _mac_cameras()
    except Exception as e:  # noqa: BLE001 - listing is a convenience; never fail the caller
        _log.warning("could not list cameras: %s", e)
    return []


def no_camera_message(platform: str | None = None) -> str:
    platform = platform or sys.platform
    hint = {"linux": "check that /dev/video* exists and that your user is in the 'video' group",
            "darwin": "allow camera access for OBS/Terminal in System Settings > Privacy & Security > Camera",
            "win32": "check Windows Settings > Privacy > Camera and close other apps using the camera"}
    key = "linux" if platform.startswith("linux") else ("win32" if platform.startswith("win") else platform)
    return ("no camera found; connect a webcam or use a video file / image folder as the source"
            + (f" ({hint[key]})" if key in hint else ""))


def resolve_camera(name: str, cameras: list[CameraInfo] | None = None) -> int:
    """The index of the camera called ``name`` (exact, then case-insensitive substring)."""
    cams = list_cameras() if cameras is None else cameras
    lowered = name.strip().lower()
    for match in ((lambda c: c.name.lower() == lowered), (lambda c: lowered in c.name.lower())):
        hits = [c for c in cams if match(c)]
        if hits:
            return hits[0].index
    known = ", ".join(f"{c.index}: {c.name}" for c in cams) or no_camera_message()
    raise CaptureError(f"capture.source '{name}' is not a file, a folder or a known camera; cameras: {known}")


class CameraSource:
    """A webcam through OpenCV, with the requested size, rate and MJPG."""

    finite = False

    def __init__(self, index: int, cs: CaptureSettings) -> None:
        import cv2

        backend = backend_for(cs.backend)
        api = getattr(cv2, _BACKENDS.get(backend, "CAP_ANY"))
        self.description = f"camera {index} ({backend})"
        self._cap = cv2.VideoCapture(index, api)
        if not self._cap.isOpened():
            self._cap.release()
            raise CaptureError(f"{self.description} could not be opened: is it connected and not used by another "
                               f"program? (capture.source={cs.source!r}, capture.backend={cs.backend!r})")
        if cs.mjpg:  # the format first: some drivers only offer high rates/sizes in MJPG
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, cs.width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cs.height)
        self._cap.set(cv2.CAP_PROP_FPS, cs.fps)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # latest frame, not a queue of old ones
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or cs.fps)
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if (w, h) != (cs.width, cs.height):
            _log.info("%s gives %dx%d (asked for %dx%d)", self.description, w, h, cs.width, cs.height)

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise CaptureError(f"{self.description} stopped delivering frames (unplugged or taken by another app?)")
        return frame

    def close(self) -> None:
        self._cap.release()


# ------------------------------------------------------------------------------------------------
# files


class _Pacer:
    """Sleeps so that frames leave at ``fps`` from the first one; resyncs after a stall."""

    def __init__(self, fps: float, enabled: bool) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.enabled = enabled and self.period > 0
        self._next = 0.0

    def wait(self) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._next == 0.0 or now - self._next > 0.5:  # start, or fell behind: do not burst
            self._next = now
        elif self._next > now:
            time.sleep(self._next - now)
        self._next += self.period


class VideoFileSource:
    """A video file, paced at its own frame rate or as fast as possible, looping if asked."""

    finite = True

    def __init__(self, path: Path, cs: CaptureSettings) -> None:
        import cv2

        self._cv2 = cv2
        self.path = path
        self.description = f"video {path.name}"
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise CaptureError(f"capture.source {str(path)!r} could not be opened as a video "
                               "(unsupported format or damaged file; try MP4/H.264)")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0) or VIDEO_FALLBACK_FPS
        self.loop = cs.loop
        self._pacer = _Pacer(self.fps, cs.realtime)
        self._frames_this_pass = 0

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok:
            if not self.loop:
                return None
            if self._frames_this_pass == 0:
                raise CaptureError(f"{self.description} has no readable frames")
            self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            self._frames_this_pass = 0
            ok, frame = self._cap.read()
            if not ok:
                raise CaptureError(f"{self.description} could not be rewound for looping")
        self._frames_this_pass += 1
        self._pacer.wait()
        return frame

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource:
    """A folder of images in name order (numbers sort naturally), paced at ``capture.fps``."""

    finite = True

    def __init__(self, folder: Path, cs: CaptureSettings) -> None:
        self.files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                            key=lambda p: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)])
        if not self.files:
            raise CaptureError(f"capture.source folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.description = f"images in {folder.name}/ ({len(self.files)})"
        self.fps = float(cs.fps)
        self.loop = cs.loop
        self._pacer = _Pacer(self.fps, cs.realtime)
        self._i = 0

    def read(self) -> np.ndarray | None:
        import cv2

        if self._i >= len(self.files):
            if not self.loop:
                return None
            self._i = 0
        path = self.files[self._i]
        self._i += 1
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise CaptureError(f"image {str(path)!r} could not be read (damaged or not an image)")
        self._pacer.wait()
        return frame

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------


#: ``capture.source`` for no webcam at all: the character idles (and talks with the voice, docs/VOICE.md).
NO_CAMERA = "none"


def is_no_camera(cs: CaptureSettings) -> bool:
    """True when ``capture.source`` is ``none``: the engine opens no source and animates idle frames."""
    return cs.source.strip().lower() == NO_CAMERA


def describe_source(source: str) -> str:
    """What ``capture.source`` refers to: ``camera``, ``video``, ``folder``, ``none`` or ``camera-name``."""
    s = source.strip()
    if not s:  # Path("") is the working folder: an empty setting must never read its images
        return "camera-name"
    if s.lower() == NO_CAMERA:
        return "none"
    if s.isdigit() or re.fullmatch(r"/dev/video\d+", s):
        return "camera"
    p = Path(os.path.expanduser(s))
    if p.is_dir():
        return "folder"
    if p.is_file():
        return "video"
    return "camera-name"


def is_finite(cs: CaptureSettings) -> bool:
    """True when the source is a file or folder (it can end, and can be processed without drops)."""
    return describe_source(cs.source) in ("video", "folder")


def every_frame(cs: CaptureSettings) -> bool:
    """True when every frame is processed, in order, as fast as possible (a file or folder not paced with
    ``capture.realtime``; looping or not); otherwise the source runs live and busy stages skip frames."""
    return is_finite(cs) and not cs.realtime


def open_source(cs: CaptureSettings) -> FrameSource:
    """Open what ``capture.source`` names; raises CaptureError with an actionable message."""
    kind = describe_source(cs.source)
    s = cs.source.strip()
    if kind == "camera":
        return CameraSource(int(re.sub(r"\D", "", s)), cs)
    if kind == "folder":
        return ImageFolderSource(Path(os.path.expanduser(s)), cs)
    if kind == "video":
        return VideoFileSource(Path(os.path.expanduser(s)), cs)
    if kind == "none":
        raise CaptureError("capture.source is none: no webcam is opened (the engine animates idle frames)")
    if not s:
        raise CaptureError("capture.source is empty; set a webcam index (0), a camera name, a video file or a folder")
    if re.search(r"[\\/]|\.\w{2,4}$", s):  # looks like a path the user expected to exist
        raise CaptureError(f"capture.source {s!r}: no such file or folder")
    return CameraSource(resolve_camera(s), cs)
