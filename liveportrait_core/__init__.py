"""LivePortrait for OBS: the engine that animates a character image from a webcam.

The package never imports ``obspython``; ``obs_liveportrait.py`` is a thin adapter over it.
"""
from __future__ import annotations

import logging

__version__ = "0.1.0"

#: Root of the package's logger tree; every module logs through ``logging.getLogger(__name__)``.
logger = logging.getLogger("liveportrait_core")
logger.addHandler(logging.NullHandler())
