"""Face tracking: MediaPipe FaceMesh → ``FaceObservation`` (landmarks, pose, ratios, driving crop).

``FaceTracker`` imports MediaPipe when it is created, not when this package is imported.
"""
from __future__ import annotations

from typing import Any

from liveportrait_core.tracking.calibration import Calibration
from liveportrait_core.tracking.observation import FaceObservation

__all__ = ["Calibration", "FaceObservation", "FaceTracker", "TrackerUnavailable"]


def __getattr__(name: str) -> Any:  # lazy: the tracker module pulls in OpenCV and (on use) MediaPipe
    if name == "FaceTracker":
        from liveportrait_core.tracking.tracker import FaceTracker

        return FaceTracker
    if name == "TrackerUnavailable":
        from liveportrait_core.tracking.mesh import TrackerUnavailable

        return TrackerUnavailable
    raise AttributeError(name)
