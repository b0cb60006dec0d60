"""Send the ``liveportrait_core`` log tree to OBS's log while the script is loaded.

OBS redirects the embedded interpreter's stdout into its log file (``[Python: obs_liveportrait.py] ...``,
or ``[Unknown Script] ...`` from other threads), so a plain stream handler on stdout is enough. Each line
starts with ``LivePortrait`` so the log stays searchable; installing again (a script reload) replaces the
previous handler instead of doubling every line.
"""
from __future__ import annotations

import logging
import sys
from typing import TextIO

from liveportrait_core import logger as root_logger

_MARK = "_lp_obs_bridge"


def install(level: str | int = "INFO", stream: TextIO | None = None) -> logging.Handler:
    remove()
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("LivePortrait %(levelname)s %(name)s: %(message)s"))
    setattr(handler, _MARK, True)
    root_logger.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str | int) -> None:
    root_logger.setLevel(logging.getLevelName(level.upper()) if isinstance(level, str) else level)


def remove() -> None:
    for h in list(root_logger.handlers):
        if getattr(h, _MARK, False):
            root_logger.removeHandler(h)
            h.flush()
