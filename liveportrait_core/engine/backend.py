"""What the engine's stages run: a face tracker and an animator, behind two small interfaces.

The engine (engine.py) owns threads, hand-offs and commands; it does not know about MediaPipe or
torch. It asks a ``Backend`` for a ``Tracker`` (on the tracking thread) and an ``AnimatorStage`` (on
the inference thread), so the heavy imports and the model loading happen there, never on the
caller's thread. ``LivePortraitBackend`` is the product's backend: it wires
``tracking.FaceTracker``, ``models.loader.load_models``, ``characters.CharacterLibrary`` and
``pipeline.Animator`` together.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

import numpy as np

from liveportrait_core.engine.cancel import FrameCancelled
from liveportrait_core.capture.sources import CapturedFrame
from liveportrait_core.settings import Settings

__all__ = ["AnimatorStage", "Backend", "FrameCancelled", "LivePortraitBackend", "Tracker"]

_log = logging.getLogger(__name__)


class Tracker(Protocol):
    """Turns a camera frame into a face observation and the 256x256 RGB driving crop."""

    def track(self, frame: CapturedFrame) -> tuple[Any, np.ndarray | None]:
        """(FaceObservation, driving crop RGB 256x256 uint8, or None when no face was found)."""

    def no_input(self, timestamp: float) -> Any:
        """The observation to animate while the capture is lost (no face; the animator idles)."""

    def calibrate(self) -> None: ...

    def update_settings(self, settings: Settings) -> None: ...

    def close(self) -> None: ...


class AnimatorStage(Protocol):
    """Animates the active character; owns the character library and the expressions."""

    def animate(self, driving_rgb256: np.ndarray | None, observation: Any) -> np.ndarray:
        """The BGRA uint8 frame (the idle animation when the observation has no face); raises
        ``FrameCancelled`` when it gave the frame up because the engine is stopping."""

    def characters(self) -> list[str]: ...

    def current_character(self) -> str: ...

    def select_character(self, key: int | str) -> str: ...

    def next_character(self, step: int = 1) -> str: ...

    def calibrate(self) -> None: ...

    def set_expression(self, name: str, active: bool, strength: float = 1.0) -> None: ...

    def expression_names(self) -> list[str]: ...

    def update_settings(self, settings: Settings) -> None: ...

    def close(self) -> None: ...


class Backend(Protocol):
    def create_tracker(self, settings: Settings) -> Tracker:
        """Called on the tracking thread (may import MediaPipe)."""

    def create_animator(self, settings: Settings) -> AnimatorStage:
        """Called on the inference thread (imports torch, loads the weights, prepares the character)."""

    def list_characters(self, settings: Settings) -> list[str]:
        """Character file names without loading anything heavy (any thread)."""

    def expression_names(self) -> list[str]:
        """Expression names without loading anything heavy (any thread)."""


class LivePortraitBackend:
    """The real tracker and animator. Imports are local so that importing the engine stays light."""

    def create_tracker(self, settings: Settings) -> Tracker:
        from liveportrait_core.tracking import FaceTracker  # noqa: PLC0415 - imports MediaPipe

        return _TrackerAdapter(FaceTracker(settings.tracking))

    #: Set by the engine to its stop flag; a load that finishes after a stop skips preparing characters.
    should_stop: Callable[[], bool] = staticmethod(lambda: False)
    #: Set by the engine: what a long load step is doing and the seconds left (None: unknown), for its status
    #: (("", None) when the step is over).
    activity: Callable[[str, float | None], None] = staticmethod(lambda _text, _left=None: None)

    def create_animator(self, settings: Settings) -> AnimatorStage:
        from liveportrait_core.engine.pipeline import Animator

        return Animator.from_settings(settings, should_stop=self.should_stop, activity=self.activity)

    def list_characters(self, settings: Settings) -> list[str]:
        from liveportrait_core.characters.library import list_character_files  # noqa: PLC0415

        return [p.name for p in list_character_files(settings.characters)]

    def expression_names(self) -> list[str]:
        from liveportrait_core.driving.expression_names import NAMES

        return list(NAMES)


class _TrackerAdapter:
    """Adapts ``tracking.FaceTracker`` to the engine's ``Tracker`` interface."""

    def __init__(self, tracker: Any) -> None:
        self._t = tracker

    def track(self, frame: CapturedFrame) -> tuple[Any, np.ndarray | None]:
        return self._t.track(frame)

    def no_input(self, timestamp: float) -> Any:
        return self._t.no_input(timestamp)

    def calibrate(self) -> None:
        self._t.calibrate()

    def update_settings(self, settings: Settings) -> None:
        self._t.update_settings(settings.tracking)

    def close(self) -> None:
        self._t.close()
