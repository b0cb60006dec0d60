"""LivePortrait for OBS — load this file in OBS (Tools > Scripts > +).

A thin adapter: OBS calls the ``script_*`` functions below, which hand over to
``liveportrait_core.obs.controller.ScriptController``. Before anything else, the project's ``.venv``
(made by ``install.py`` beside this file) is put on ``sys.path`` when its Python version matches OBS's;
otherwise the script still loads and its panel says what to do. torch and MediaPipe are imported on the
engine's own thread, never here, so loading returns at once. See docs/OBS.md.
"""
from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import obspython as obs  # provided by OBS

_T_IMPORT = time.perf_counter()
_ROOT = Path(__file__).resolve().parent
if str(_ROOT) not in sys.path:  # OBS appends the script folder; be explicit for symlinked copies
    sys.path.append(str(_ROOT))

from liveportrait_core.obs import environment  # noqa: E402 - standard library only

ENV = environment.prepare(_ROOT)
_IMPORT_ERROR = ""
try:  # needs the venv (PyYAML); failure is shown in the panel instead of breaking the script
    from liveportrait_core.obs import logbridge
    from liveportrait_core.obs.controller import ScriptController
except Exception as _e:  # noqa: BLE001
    ScriptController = None  # type: ignore[assignment,misc]
    _IMPORT_ERROR = (f"cannot import liveportrait_core ({type(_e).__name__}: {_e}). "
                     + (ENV.problem or environment.setup_instructions(_ROOT, ENV.obs_python)))
    print("LivePortrait WARNING " + _IMPORT_ERROR)

_controller = None
_IMPORT_MS = (time.perf_counter() - _T_IMPORT) * 1000.0


def _get():
    global _controller
    if _controller is None and ScriptController is not None:
        _controller = ScriptController(obs, env=ENV)
    return _controller


def _safe(fn, default=None):
    """OBS must never see an exception from a script function."""

    def wrapper(*args):
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001
            print("LivePortrait ERROR in %s:\n%s" % (fn.__name__, traceback.format_exc()))
            return default

    wrapper.__name__ = fn.__name__
    return wrapper


@_safe
def _description():
    c = _get()
    if c is None:
        return "<b>LivePortrait for OBS</b><p style='color:#e55'><b>Set-up needed:</b> %s</p>" % _IMPORT_ERROR
    return c.description()


def script_description():
    return _description() or "LivePortrait for OBS"


@_safe
def script_defaults(settings):
    c = _get()
    if c is not None:
        c.defaults(settings)


@_safe
def _properties():
    c = _get()
    if c is None:
        props = obs.obs_properties_create()
        obs.obs_properties_add_text(props, "lp.setup", "Set-up needed: " + _IMPORT_ERROR, obs.OBS_TEXT_INFO)
        return props
    return c.build_properties()


def script_properties():
    return _properties() or obs.obs_properties_create()


@_safe
def script_load(settings):
    t0 = time.perf_counter()
    c = _get()
    if c is None:
        return
    logbridge.install(c.settings.log_level)
    c.load(settings)
    logbridge.set_level(c.settings.log_level)
    print("LivePortrait INFO script_load returned in %.1f ms (module import took %.1f ms)" % (
        (time.perf_counter() - t0) * 1000.0, _IMPORT_MS))


@_safe
def script_update(settings):
    c = _get()
    if c is not None and c.data is not None:
        c.update(settings)
        logbridge.set_level(c.settings.log_level)


@_safe
def script_save(settings):
    c = _get()
    if c is not None and c.data is not None:
        c.save(settings)


@_safe
def script_unload():
    global _controller
    c, _controller = _controller, None
    if c is not None:
        c.unload()
        logbridge.remove()
