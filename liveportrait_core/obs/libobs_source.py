"""An async video source type registered into libobs through ctypes, fed with BGRA frames.

OBS's Python bindings cannot register source types (``obs_register_source`` is Lua-only), but libobs itself
can be called through ctypes: ``obs_register_source_s`` with a prefix of ``struct obs_source_info`` makes a
real source type ("LivePortrait" in Add Source), and ``obs_source_output_video2`` hands it frames from any
thread (libobs copies the pixels, so the caller's buffer is free again when the call returns).

Struct layouts are per libobs version. ``tests/data/obs_abi.json`` records, for every OBS release from 28.0.0
to the newest one checked (and obs-studio's master branch), the fields and values used here as read from that
release's headers (``scripts/obs_abi.py``); ``tests/test_obs_abi.py`` checks the classes below against each.
Those majors (``CHECKED_MAJOR_VERSIONS``) register silently. A newer major registers too, with a warning: from
28 to 32 libobs only appended fields to ``obs_source_info`` (we pass the size of our prefix, and
``obs_register_source_s`` copies that many bytes into a zeroed struct, accepting any older, smaller layout by
design) and never changed ``obs_source_frame2`` or the values we send. Older or unreadable versions are
refused with a message, and the script falls back to Spout2/NDI. See docs/OBS.md ("Which OBS versions").

Process lifetime: OBS may call ``destroy`` after ``script_unload`` (when it tears sources down at exit) and the
type stays registered after the script is reloaded, so the CFUNCTYPE objects, the registered struct and the
table of live sources live in a keep-alive module in ``sys.modules`` that survives reloads. Callbacks never
let an exception escape into C.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

SOURCE_ID = "liveportrait_source"
SOURCE_DISPLAY_NAME = b"LivePortrait"

#: OBS major versions whose every release's headers match the classes below (tests/data/obs_abi.json, checked
#: by tests/test_obs_abi.py; measured in a running OBS 29.0.2). A newer major is tried with a warning.
CHECKED_MAJOR_VERSIONS = range(28, 33)

OBS_SOURCE_TYPE_INPUT = 0
OBS_SOURCE_VIDEO = 1 << 0
OBS_SOURCE_ASYNC = 1 << 2
OBS_SOURCE_ASYNC_VIDEO = OBS_SOURCE_ASYNC | OBS_SOURCE_VIDEO
VIDEO_FORMAT_BGRA = 7  # enum video_format
VIDEO_RANGE_FULL = 2  # enum video_range_type
MAX_AV_PLANES = 8

GET_NAME = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_void_p)
CREATE = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
DESTROY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_VP = ctypes.c_void_p


class ObsSourceFrame2(ctypes.Structure):
    """``struct obs_source_frame2`` (libobs/obs.h, unchanged from 28.0.0 to 32.2.2 and master)."""

    _fields_ = [
        ("data", ctypes.c_void_p * MAX_AV_PLANES),
        ("linesize", ctypes.c_uint32 * MAX_AV_PLANES),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("timestamp", ctypes.c_uint64),
        ("format", ctypes.c_int),
        ("range", ctypes.c_int),
        ("color_matrix", ctypes.c_float * 16),
        ("color_range_min", ctypes.c_float * 3),
        ("color_range_max", ctypes.c_float * 3),
        ("flip", ctypes.c_bool),
        ("flags", ctypes.c_uint8),
        ("trc", ctypes.c_uint8),
    ]


class ObsSourceInfoPrefix(ctypes.Structure):
    """The first fields of ``struct obs_source_info``; libobs copies only ``size`` bytes and zeroes the rest."""

    _fields_ = [
        ("id", ctypes.c_char_p), ("type", ctypes.c_int), ("output_flags", ctypes.c_uint32),
        ("get_name", GET_NAME), ("create", CREATE), ("destroy", DESTROY),
        ("get_width", _VP), ("get_height", _VP), ("get_defaults", _VP), ("get_properties", _VP),
        ("update", _VP), ("activate", _VP), ("deactivate", _VP), ("show", _VP), ("hide", _VP),
        ("video_tick", _VP), ("video_render", _VP),
    ]


class LibobsUnavailable(RuntimeError):
    """libobs cannot be used from ctypes here; the message says why and what to use instead."""


FALLBACK_ADVICE = ("Use Spout2 (Windows) or NDI instead: tick Output > Spout2 or Output > NDI in the script's "
                   "properties; the script then adds the matching OBS source.")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``"29.0.2.1-1+b1"`` -> (29, 0, 2); None when unparseable."""
    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def checked_range() -> str:
    return f"{CHECKED_MAJOR_VERSIONS.start}-{CHECKED_MAJOR_VERSIONS.stop - 1}"


def check_version(version_string: str) -> tuple[tuple[int, int, int], str]:
    """(parsed version, warning): the warning is empty for a checked major and says what is assumed for a newer
    one; LibobsUnavailable for an older or unreadable version (its layouts were never checked)."""
    v = parse_version(version_string)
    if v is None or v[0] < CHECKED_MAJOR_VERSIONS.start:
        raise LibobsUnavailable(
            f"OBS {version_string or '(unknown version)'} is not a version this script's in-process source was "
            f"checked against (OBS {checked_range()}), so it is not registered to protect OBS from a mismatched "
            f"memory layout. " + FALLBACK_ADVICE)
    if v[0] in CHECKED_MAJOR_VERSIONS:
        return v, ""
    return v, (f"OBS {version_string} is newer than the versions this script's in-process source was checked "
               f"against (OBS {checked_range()}); it is used anyway, because libobs has only ever added fields at "
               f"the end of the source description and accepts an older one (docs/OBS.md, 'Which OBS versions'). "
               f"If the LivePortrait source misbehaves, untick Output > OBS source and use Spout2 or NDI instead.")


def library_candidates(platform: str = sys.platform) -> list[str]:
    """Names/paths to try for libobs on this OS."""
    if platform == "win32":
        return ["obs.dll", "obs"]
    if platform == "darwin":
        exe = Path(sys.executable).resolve()
        names = ["@rpath/libobs.framework/libobs", "libobs.framework/libobs", "libobs.0.dylib", "libobs.dylib"]
        # inside OBS.app: Contents/Frameworks/libobs.framework/libobs
        for parent in exe.parents:
            if parent.name == "Contents":
                names.insert(0, str(parent / "Frameworks" / "libobs.framework" / "libobs"))
                break
        names.insert(0, "/Applications/OBS.app/Contents/Frameworks/libobs.framework/libobs")
        return names
    return ["libobs.so.0", "libobs.so"]


def load_libobs(platform: str = sys.platform) -> ctypes.CDLL:
    """The libobs already loaded in this process (OBS loaded it; we only get a handle)."""
    errors = []
    for name in library_candidates(platform):
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
    raise LibobsUnavailable("cannot open libobs through ctypes (" + "; ".join(errors) + "). " + FALLBACK_ADVICE)


def _keepalive() -> types.ModuleType:
    """Process-lifetime state shared by every load of the script."""
    mod = sys.modules.get("_liveportrait_obs_keepalive")
    if mod is None:
        mod = types.ModuleType("_liveportrait_obs_keepalive")
        mod.objects = []  # type: ignore[attr-defined]  # CFUNCTYPEs and the info struct, never freed
        mod.sources = {}  # type: ignore[attr-defined]  # handle -> obs_source_t* of live instances
        mod.lock = threading.Lock()  # type: ignore[attr-defined]  # guards ``sources`` against destroy vs push
        mod.next_handle = 1  # type: ignore[attr-defined]
        mod.registered = False  # type: ignore[attr-defined]
        mod.lib = None  # type: ignore[attr-defined]
        sys.modules[mod.__name__] = mod
    return mod


def _get_name(_type_data: int | None) -> bytes:
    return SOURCE_DISPLAY_NAME


def _create(_settings: int | None, source: int | None) -> int:
    try:
        ka = _keepalive()
        with ka.lock:
            handle = ka.next_handle
            ka.next_handle += 1
            ka.sources[handle] = source
        return handle
    except BaseException:  # noqa: BLE001 - nothing may escape into C
        return 0  # NULL: libobs reports the failed create


def _destroy(data: int | None) -> None:
    try:
        ka = _keepalive()
        with ka.lock:
            ka.sources.pop(data, None)
    except BaseException:  # noqa: BLE001
        pass


class LibobsSource:
    """Registers the source type (once per process) and pushes frames to every live instance of it."""

    def __init__(self, obs_version: str, platform: str = sys.platform,
                 loader: Callable[[str], ctypes.CDLL] = load_libobs) -> None:
        self.version, self.warning = check_version(obs_version)
        ka = _keepalive()
        if ka.lib is None:
            lib = loader(platform)
            lib.obs_initialized.argtypes = []
            lib.obs_initialized.restype = ctypes.c_bool
            if not lib.obs_initialized():  # e.g. imported outside OBS: registering would crash
                raise LibobsUnavailable("libobs is not running in this process (not inside OBS). " + FALLBACK_ADVICE)
            lib.obs_register_source_s.argtypes = [ctypes.POINTER(ObsSourceInfoPrefix), ctypes.c_size_t]
            lib.obs_register_source_s.restype = None
            lib.obs_source_output_video2.argtypes = [ctypes.c_void_p, ctypes.POINTER(ObsSourceFrame2)]
            lib.obs_source_output_video2.restype = None
            lib.os_gettime_ns.argtypes = []
            lib.os_gettime_ns.restype = ctypes.c_uint64
            ka.lib = lib
        self._ka = ka
        self._frame = ObsSourceFrame2()  # reused: only the publish thread pushes
        self._frame.format = VIDEO_FORMAT_BGRA
        self._frame.range = VIDEO_RANGE_FULL
        self._push_lock = threading.Lock()

    def register(self) -> bool:
        """Register the type (no-op after the first time in this process). True when it is registered."""
        ka = self._ka
        if ka.registered:
            return True
        info = ObsSourceInfoPrefix()
        callbacks = (GET_NAME(_get_name), CREATE(_create), DESTROY(_destroy))
        info.id = SOURCE_ID.encode()
        info.type = OBS_SOURCE_TYPE_INPUT
        info.output_flags = OBS_SOURCE_ASYNC_VIDEO
        info.get_name, info.create, info.destroy = callbacks
        ka.objects.extend([info, *callbacks])
        ka.lib.obs_register_source_s(ctypes.byref(info), ctypes.sizeof(info))
        ka.registered = True
        log.info("registered OBS source type '%s' (libobs %d.%d.%d through ctypes)", SOURCE_ID, *self.version)
        if self.warning:
            log.warning("%s", self.warning)
        return True

    @staticmethod
    def live_count() -> int:
        return len(_keepalive().sources)

    def push(self, bgra: Any) -> int:
        """Send one HxWx4 uint8 C-contiguous BGRA frame to every live instance; returns how many got it."""
        h, w = int(bgra.shape[0]), int(bgra.shape[1])
        ka = self._ka
        with self._push_lock:
            f = self._frame
            f.data[0] = bgra.ctypes.data
            f.linesize[0] = w * 4
            f.width, f.height = w, h
            f.timestamp = ka.lib.os_gettime_ns()
            with ka.lock:  # a source cannot be destroyed while libobs copies into it
                targets = list(ka.sources.values())
                for src in targets:
                    ka.lib.obs_source_output_video2(src, ctypes.byref(f))
            f.data[0] = None
        return len(targets)

    def clear(self) -> None:
        """Blank every instance (NULL frame), e.g. when the engine stops."""
        ka = self._ka
        with ka.lock:
            for src in list(ka.sources.values()):
                ka.lib.obs_source_output_video2(src, None)
