"""When to take the neutral reference: on demand, and once at start when a steady, frontal face is seen.

The animation stage stores the motion of the frame whose observation has ``calibrate_now`` set and
drives the character relative to it, so that frame should show the user's neutral face: looking at
the camera, eyes open, not moving.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: Limits of a "frontal" face, degrees. Pitch is looser: webcams often sit below or above the eyes.
MAX_YAW_DEG = 15.0
MAX_PITCH_DEG = 20.0
MAX_ROLL_DEG = 12.0
#: "Steady": the driving box centre moves less than this fraction of its size per second.
MAX_SPEED_PER_S = 0.25
#: Eyes count as open above this official-range ratio (the official open eye reads ~0.3).
MIN_EYE_OPEN = 0.15


@dataclass
class CalibrationState:
    ready: bool = False  #: a reference has been taken
    pending_request: bool = False  #: calibrate() was called; the next frame with a face is used
    steady_since: float | None = None
    taken_at: float | None = None


class Calibration:
    """Decides, frame by frame, whether this frame becomes the neutral reference."""

    def __init__(self, auto: bool = True, after_s: float = 1.0) -> None:
        self.auto = auto
        self.after_s = after_s
        self.state = CalibrationState()
        self._last_centre: tuple[float, float] | None = None
        self._last_t: float | None = None

    @property
    def ready(self) -> bool:
        return self.state.ready

    def request(self) -> None:
        """Take the reference on the next frame that has a face (hotkey / engine command)."""
        self.state.pending_request = True

    def reset(self) -> None:
        self.state = CalibrationState()
        self._last_centre = self._last_t = None

    def is_neutral(self, pitch: float, yaw: float, roll: float, eye_open: tuple[float, float]) -> bool:
        return (abs(yaw) <= MAX_YAW_DEG and abs(pitch) <= MAX_PITCH_DEG and abs(roll) <= MAX_ROLL_DEG
                and min(eye_open) >= MIN_EYE_OPEN)

    def update(self, t: float, found: bool, *, centre: tuple[float, float] = (0.0, 0.0), size: float = 0.0,
               pitch: float = 0.0, yaw: float = 0.0, roll: float = 0.0,
               eye_open: tuple[float, float] = (0.0, 0.0)) -> bool:
        """Feed one frame; True when this frame is to become the reference."""
        st = self.state
        if not found:
            st.steady_since = None
            self._last_centre = self._last_t = None
            return False
        if st.pending_request:
            return self._take(t)
        steady = self._steady(t, centre, size) and self.is_neutral(pitch, yaw, roll, eye_open)
        if not steady:
            st.steady_since = None
            return False
        if st.steady_since is None:
            st.steady_since = t
        if self.auto and not st.ready and t - st.steady_since >= self.after_s:
            return self._take(t)
        return False

    def _steady(self, t: float, centre: tuple[float, float], size: float) -> bool:
        prev, prev_t = self._last_centre, self._last_t
        self._last_centre, self._last_t = centre, t
        if prev is None or prev_t is None or t <= prev_t or size <= 0:
            return prev is None  # the first frame of a face starts the clock
        speed = math.hypot(centre[0] - prev[0], centre[1] - prev[1]) / (t - prev_t)
        return speed <= MAX_SPEED_PER_S * size

    def _take(self, t: float) -> bool:
        st = self.state
        st.ready, st.pending_request, st.taken_at, st.steady_since = True, False, t, None
        return True
