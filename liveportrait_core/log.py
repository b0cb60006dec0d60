"""Logging set-up for the command line; library code only calls ``logging.getLogger(__name__)``."""
from __future__ import annotations

import logging
import sys

from liveportrait_core import logger as root_logger

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(level: str | int = "INFO", stream=None) -> None:
    """Send the ``liveportrait_core`` tree to stderr (idempotent)."""
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    root_logger.setLevel(level)
    for h in root_logger.handlers:
        if getattr(h, "_lp_cli", False):
            h.setLevel(level)
            return
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    handler._lp_cli = True  # type: ignore[attr-defined]
    handler.setLevel(level)
    root_logger.addHandler(handler)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record, so that a replaced (and
    later closed) stderr, as under pytest or an embedding host, never breaks logging."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


class OnceFilter:
    """Remembers which messages were already said, for warnings that must be said once only."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def first(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
