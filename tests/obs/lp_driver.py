"""Test-only OBS script that drives the real ``obs_liveportrait.py`` inside real OBS (used by test_obs_real.py).

Loaded by the obs-harness. Configured through environment variables (OBS inherits the harness's):

* ``LP_DRIVER_PLAN``: ``pattern`` — register the ctypes source and push a known BGRA pattern (proves the
  libobs layer without the engine); ``live`` — load ``obs_liveportrait.py`` through OBS's own script loader
  (``obs_script_create`` in libobs-scripting, what Tools > Scripts does), wait for character frames,
  take OBS screenshots, press hotkeys through OBS's hotkey system, calibrate, and reload the script
  (``obs_script_reload``, what the Scripts dialog's reload button does) ``LP_DRIVER_RELOADS`` times.
* ``LP_DRIVER_SETTINGS``: JSON settings for ``obs_liveportrait.py`` (live plan).
* ``LP_DRIVER_OUT``: folder for ``result.json``; the log gets ``DRIVER ...`` lines and ``DRIVER DONE``.
"""
import ctypes
import json
import os
import sys
import threading
import time
import traceback

import obspython as obs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

PLAN = os.environ.get("LP_DRIVER_PLAN", "pattern")
OUT = os.environ.get("LP_DRIVER_OUT", "/tmp")
SCRIPT = os.path.join(REPO, "obs_liveportrait.py")
RESULT = {"plan": PLAN, "steps": []}
STATE = {"gen": None, "stop": threading.Event(), "thread": None, "script": None, "lib": None}


def say(*a):
    print("DRIVER", *a)


def step(name, **info):
    RESULT["steps"].append(dict(name=name, t=round(time.time(), 2), **info))
    say(name, json.dumps(info))


def wait(cond, timeout, what):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            step("timeout", what=what, after_s=round(time.time() - t0, 1))
            return False
        yield
    return True


def sleep(seconds):
    t0 = time.time()
    while time.time() - t0 < seconds:
        yield


def _shots():
    d = os.environ.get("OBS_HARNESS_SHOTS") or os.environ.get("LP_DRIVER_SHOTS", "")
    return {os.path.join(d, n) for n in os.listdir(d) if n.endswith(".png")} if d and os.path.isdir(d) else set()


def screenshot(label):
    """OBS's own screenshot of the program output; found as the new file in the shots folder
    (obs_frontend_get_last_screenshot returns a string the binding never frees: a leak per call)."""
    before = _shots()
    obs.obs_frontend_take_screenshot()
    ok = yield from wait(lambda: _shots() - before, 10, "screenshot " + label)
    path = sorted(_shots() - before)[0] if ok else None
    yield from sleep(0.5)  # the PNG is written by a worker thread
    step("screenshot", label=label, path=path)
    return path


# ------------------------------------------------------------------ pattern plan (no engine)
def pattern_plan():
    import numpy as np

    from liveportrait_core.obs import scene
    from liveportrait_core.obs.libobs_source import SOURCE_ID, LibobsSource

    src = LibobsSource(obs.obs_get_version_string())
    src.register()
    step("registered", live=src.live_count())
    step("added", msg=scene.ensure_in_current_scene(obs, SOURCE_ID, "LivePortrait"))
    h, w = 180, 320
    frame = np.zeros((h, w, 4), np.uint8)
    frame[:, : w // 2] = (255, 0, 0, 255)  # left half opaque blue (BGRA)
    frame[:, w // 2:] = (0, 0, 255, 0)  # right half fully transparent red

    def pusher():
        n = 0
        while not STATE["stop"].wait(1 / 15):
            src.push(frame)
            n += 1
        say("pusher pushed", n)

    th = threading.Thread(target=pusher, name="driver-pusher", daemon=True)
    STATE["thread"] = th
    th.start()
    yield from sleep(1.5)
    yield from screenshot("pattern")
    step("sources", live=src.live_count())


# ------------------------------------------------------------------ live plan (the real script)
def scripting_lib():
    lib = ctypes.CDLL("libobs-scripting.so.1")  # Debian 29 soname
    lib.obs_script_create.restype = ctypes.c_void_p
    lib.obs_script_create.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.obs_script_reload.restype = ctypes.c_bool
    lib.obs_script_reload.argtypes = [ctypes.c_void_p]
    lib.obs_script_destroy.restype = None
    lib.obs_script_destroy.argtypes = [ctypes.c_void_p]
    lib.obs_script_loaded.restype = ctypes.c_bool
    lib.obs_script_loaded.argtypes = [ctypes.c_void_p]
    return lib


def controller():
    mod = sys.modules.get("obs_liveportrait")
    return getattr(mod, "_controller", None) if mod else None


def frames():
    c = controller()
    return c._frames_pushed if c is not None else 0


def engine_status():
    c = controller()
    e = c.engine if c is not None else None
    return e.status() if e is not None else None


def press(name):
    c = controller()
    hid = c.hotkeys.hotkey_id(name)
    obs.obs_hotkey_trigger_routed_callback(hid, True)
    obs.obs_hotkey_trigger_routed_callback(hid, False)
    step("hotkey", key=name, id=hid)


def live_plan():
    lib = scripting_lib()
    STATE["lib"] = lib
    data = obs.obs_data_create_from_json(os.environ.get("LP_DRIVER_SETTINGS", "{}"))
    t0 = time.perf_counter()
    script = lib.obs_script_create(SCRIPT.encode(), int(data.this) if hasattr(data, "this") else int(data))
    obs.obs_data_release(data)
    STATE["script"] = script
    step("script_created", ok=bool(script and lib.obs_script_loaded(script)),
         ms=round((time.perf_counter() - t0) * 1000, 1))
    timeout = float(os.environ.get("LP_DRIVER_FRAME_TIMEOUT", "120"))
    ok = yield from wait(lambda: frames() >= 1, timeout, "first frames")
    st = engine_status()
    step("frames", ok=ok, frames=frames(), character=getattr(st, "character", None),
         line=controller().status_text())
    if not ok:
        return
    scene_src = obs.obs_frontend_get_current_scene()
    sc = obs.obs_scene_from_source(scene_src)
    step("in_scene", ok=obs.obs_scene_find_source(sc, "LivePortrait") is not None)
    obs.obs_source_release(scene_src)
    yield from screenshot("character1")
    # the Scripts dialog's calls, made here with real OBS bindings: properties (groups, lists, paths,
    # sliders, buttons) and a button press
    mod = sys.modules["obs_liveportrait"]
    props = mod.script_properties()
    wanted = ("lp.group.character", "characters.active", "capture.fps", "animation.region",
              "animation.driving_multiplier", "outputs.spout", "model.models_dir", "lp.status", "lp.calibrate",
              "lp.add_source", "lp.expression.smile", "lp.group.voice", "audio.mode", "audio.device")
    names = [n for n in wanted if obs.obs_properties_get(props, n) is not None]
    refresh = obs.obs_properties_get(props, "lp.refresh")
    clicked = obs.obs_property_button_clicked(refresh, None) if refresh is not None else None
    obs.obs_properties_destroy(props)
    step("properties", found=names, missing=[n for n in wanted if n not in names], refresh_clicked=bool(clicked),
         description=mod.script_description()[:60])
    # hotkey: character 2 (slot 1), through OBS's hotkey routing
    press("character_2")
    ok = yield from wait(lambda: getattr(engine_status(), "character", "") == os.environ.get(
        "LP_DRIVER_CHARACTER2", ""), timeout, "character 2")
    n = frames()
    ok2 = yield from wait(lambda: frames() >= n + 1, timeout, "frames of character 2")
    step("switched", ok=ok and ok2, character=getattr(engine_status(), "character", None))
    yield from screenshot("character2")
    press("calibrate")
    n = frames()
    ok = yield from wait(lambda: frames() >= n + 1, timeout, "frames after calibrate")
    st = engine_status()
    step("calibrated", ok=ok, errors=list(getattr(st, "errors", [])), tracking=getattr(st, "tracking", None))
    reloads = int(os.environ.get("LP_DRIVER_RELOADS", "5"))
    libobs = ctypes.CDLL("libobs.so.0")
    libobs.obs_data_set_bool.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_bool]
    libobs.obs_data_release.argtypes = [ctypes.c_void_p]
    lib.obs_script_get_settings.restype = ctypes.c_void_p
    lib.obs_script_get_settings.argtypes = [ctypes.c_void_p]
    for i in range(reloads):
        # the first reload stops the running engine; the next ones run without one (each engine start would
        # leave another model load finishing in the background on this slow CPU); the last one starts it again
        autostart = i == reloads - 1
        settings = lib.obs_script_get_settings(script)
        libobs.obs_data_set_bool(settings, b"lp.autostart", autostart)
        libobs.obs_data_release(settings)
        t0 = time.perf_counter()
        ok = lib.obs_script_reload(script)
        step("reload", i=i + 1, ok=bool(ok), autostart=autostart, ms=round((time.perf_counter() - t0) * 1000, 1),
             threads=sorted(t.name for t in threading.enumerate()))
        yield from sleep(1.0)
    n = frames()
    ok = yield from wait(lambda: frames() >= n + 1, timeout, "frames after reloads")
    # the character 2 hotkey became the chosen character, so the reloaded script kept it
    step("after_reloads", ok=ok, frames=frames(), character=getattr(engine_status(), "character", None))
    # Start/Stop button, then wait until every engine thread has ended: OBS is then closed with none left
    # (on this loaded 2-core CPU one frame in flight can take minutes; OBS's exit wait is for normal machines)
    mod = sys.modules["obs_liveportrait"]
    props = mod.script_properties()
    stop_clicked = obs.obs_property_button_clicked(obs.obs_properties_get(props, "lp.start_stop"), None)
    obs.obs_properties_destroy(props)
    ok = yield from wait(lambda: not [t for t in threading.enumerate() if t.name.startswith("lp-")],
                         float(os.environ.get("LP_DRIVER_FRAME_TIMEOUT", "120")) * 2, "engine threads to end")
    step("stopped", ok=ok, clicked=bool(stop_clicked), running=controller().running)


# ------------------------------------------------------------------ plumbing
def tick():
    gen = STATE["gen"]
    if gen is None:
        return
    try:
        next(gen)
    except StopIteration:
        STATE["gen"] = None
        finish()
    except Exception:  # noqa: BLE001 - report, never raise into OBS
        STATE["gen"] = None
        step("driver_error", tb=traceback.format_exc().replace("Traceback", "tb"))
        finish()


def finish():
    with open(os.path.join(OUT, "result.json"), "w") as f:
        json.dump(RESULT, f, indent=1)
    say("DONE")


def script_load(settings):
    STATE["gen"] = pattern_plan() if PLAN == "pattern" else live_plan()
    obs.timer_add(tick, 100)


def script_unload():
    obs.timer_remove(tick)
    STATE["stop"].set()
    if STATE["thread"] is not None:
        STATE["thread"].join(2)
    if STATE["script"]:
        t0 = time.perf_counter()
        STATE["lib"].obs_script_destroy(STATE["script"])  # unloads obs_liveportrait.py like closing OBS does
        say("real script destroyed in %.0f ms, threads left: %s" % (
            (time.perf_counter() - t0) * 1000, sorted(t.name for t in threading.enumerate())))
