"""Logging set-up for the command line; library code only calls ``logging.getLogger(__name__)``.

Third-party chatter stays out of the default output, here in one place: OpenCV's own log (V4L2 probing
warnings) through ``OPENCV_LOG_LEVEL``, and what MediaPipe's native code (absl, TensorFlow Lite) prints
straight onto the C-level stderr while a graph starts, which no environment variable of mediapipe 0.10.21
silences: ``native_chatter()`` holds the process's stderr back around those moments, drops the lines
known to be chatter and passes everything else on. With ``--log-level DEBUG`` all of it is shown again.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

from liveportrait_core import logger as root_logger

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(level: str | int = "INFO", stream=None) -> None:
    """Send the ``liveportrait_core`` tree to stderr (idempotent)."""
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    root_logger.setLevel(level)
    quiet_third_party(level > logging.DEBUG)
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


# ------------------------------------------------------------------------------------------------
# third-party chatter

#: What MediaPipe's native code prints while a graph starts: absl lines (``W0000 00:00:1796.5  123 file.cc:114]``,
#: ``I…`` too), absl's notice about its own set-up and TensorFlow Lite's delegate notice. Errors (``E…``) pass.
_CHATTER = re.compile(rb"^(?:[IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ [^\]]+\]|INFO: Created TensorFlow Lite|"
                      rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")
_quiet = False
_lock = threading.Lock()
_depth = 0
_held: tuple[int, "tempfile._TemporaryFileWrapper[bytes]"] | None = None  # (saved stderr fd, what was written)


def quiet_third_party(quiet: bool = True) -> None:
    """Keep OpenCV's and MediaPipe's own messages out of the output (``configure`` calls it: on below DEBUG).
    Only a command line asks for it; a host process (OBS) keeps its stderr untouched."""
    global _quiet
    was, _quiet = _quiet, quiet
    if quiet == was:
        return
    if quiet:
        _own_stderr()
    if quiet:  # read when cv2 is imported (a user's own OPENCV_LOG_LEVEL wins)...
        os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    elif os.environ.get("OPENCV_LOG_LEVEL") == "SILENT":
        del os.environ["OPENCV_LOG_LEVEL"]
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "setLogLevel"):  # ...and set directly when it already is
        try:
            cv2.setLogLevel(0 if quiet else 3)  # cv::utils::logging::LOG_LEVEL_SILENT / LOG_LEVEL_WARNING
        except Exception:  # noqa: BLE001 - a logging tweak must never break a command
            pass


@contextlib.contextmanager
def native_chatter() -> Iterator[None]:
    """Around a MediaPipe graph's start and first face: the C-level stderr is held in a temporary file, then
    everything but the known chatter is written out. Re-entrant and thread-safe (one hold for all threads).
    Python's own output does not pass through it (``_own_stderr``). Does nothing unless ``quiet_third_party``."""
    if not _quiet:
        yield
        return
    _hold()
    try:
        yield
    finally:
        _release()


def _hold() -> None:
    global _depth, _held
    with _lock:
        _depth += 1
        if _depth > 1 or _held is not None:
            return
        try:
            _flush()
            sink = tempfile.TemporaryFile()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
        except (OSError, ValueError):  # no usable fd 2 (e.g. a windowed app): nothing to hold
            return
        _held = (saved, sink)


def _release() -> None:
    global _depth, _held
    with _lock:
        _depth -= 1
        if _depth > 0 or _held is None:
            return
        saved, sink = _held
        _held = None
        _flush()
        os.dup2(saved, 2)
        os.close(saved)
        try:
            sink.seek(0)
            kept = [line for line in sink.read().splitlines(keepends=True) if not _CHATTER.match(line)]
        finally:
            sink.close()
        data = b"".join(kept)
        while data:
            data = data[os.write(2, data):]


def _own_stderr() -> None:
    """Python's own output (prints, this package's log) goes to a copy of the stderr descriptor, so that a
    hold of the C-level stderr never delays it, nor loses it if the process ends during a hold
    (``exits.leave``). Only for the real stderr: a replaced one (pytest, a host) is left alone."""
    err = sys.stderr
    try:
        if err is None or err is not sys.__stderr__ or err.fileno() != 2:
            return
        err.flush()
        sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding=err.encoding, errors=err.errors)
    except (OSError, ValueError, AttributeError):  # no usable descriptor: keep what there is
        return


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
