"""The OBS script against a fake ``obspython``: properties, settings to engine, hotkeys, scenes, lifecycle."""
from __future__ import annotations

import ctypes
import importlib
import json
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from liveportrait_core import settings as schema
from liveportrait_core.obs import controller as ctl
from liveportrait_core.obs import environment, libobs_source, properties, scene, shutdown
from liveportrait_core.obs.controller import SOURCE_NAME, ScriptController
from liveportrait_core.obs.libobs_source import SOURCE_ID, LibobsUnavailable
from tests.fake_obspython import FakeObs

REPO = Path(__file__).resolve().parents[1]


class FakeEngine:
    """Records the command API calls the script makes."""

    def __init__(self, settings: schema.Settings, fail: bool = False) -> None:
        self.settings = settings
        self.calls: list[tuple] = []
        self.callbacks: dict[int, object] = {}
        self.started = self.stopped = False
        self.fail = fail
        self.built_on = threading.current_thread()

    def _rec(self, *call):
        if self.fail:
            raise RuntimeError("engine exploded")
        self.calls.append(call)

    def start(self): self.started = True
    def stop(self, timeout=1.0): self.stopped = True; return True  # noqa: E702
    def pause(self, on): self._rec("pause", on)
    def update_settings(self, s): self._rec("update_settings", s)
    def select_character(self, key): self._rec("select_character", key)
    def next_character(self, step=1): self._rec("next_character", step)
    def calibrate(self): self._rec("calibrate")
    def set_expression(self, name, active, strength=1.0): self._rec("set_expression", name, active)
    def expression_names(self): return ["smile", "extra_one"]
    def set_output_enabled(self, name, on): self._rec("set_output_enabled", name, on)
    def characters(self): return ["a.png"]
    def status_line(self): return "12.0 FPS, 80 ms"

    def add_frame_callback(self, fn):
        h = len(self.callbacks) + 1
        self.callbacks[h] = fn
        return h

    def remove_frame_callback(self, h):
        self.callbacks.pop(h, None)


class FakeLibobs:
    def __init__(self, version: str) -> None:
        libobs_source.check_version(version)
        self.frames: list[tuple[int, int]] = []
        self.cleared = 0

    def register(self): return True
    def push(self, bgra): self.frames.append(bgra.shape[:2]); return 1  # noqa: E702
    def clear(self): self.cleared += 1


@pytest.fixture()
def obs(monkeypatch):
    monkeypatch.setattr(shutdown, "_shutdown_deadline", None)  # process-wide shutdown budget: fresh per test
    return FakeObs()


def make(obs, engine_fail=False, env=None):
    engines: list[FakeEngine] = []

    def factory(s):
        e = FakeEngine(s, fail=engine_fail)
        engines.append(e)
        return e

    c = ScriptController(obs, env=env, engine_factory=factory, libobs_factory=FakeLibobs)
    return c, engines


def loaded(obs, values=None, **kw):
    """A controller after script_defaults + script_load with ``values`` in the settings data."""
    c, engines = make(obs, **kw)
    data = obs.obs_data_create()
    data.values.update(values or {})
    c.defaults(data)
    c.load(data)
    if c._starter is not None:
        c._starter.join(5)
    return c, engines, data


def finish(obs, c, data):
    c.unload()
    obs.obs_data_release(data)
    assert obs.leaked() == []


# ------------------------------------------------------------------ properties


def test_every_schema_setting_is_a_property_in_its_group(obs):
    c, _ = make(obs)
    props = c.build_properties()
    groups = {p.name: p for p in props.props.values() if p.kind == "group"}
    assert [g.description for g in groups.values()] == [
        "Character", "Camera", "Animation", "Output", "Performance", "Models", "Status"]
    for key, default, _help, meta in schema.describe():
        gkey = properties.group_of(key)
        p = obs.obs_properties_get(groups[gkey].group, key)
        assert p is not None, key
        assert key in p.long_description  # tooltip names the CLI/YAML key
        if "choices" in meta and key != properties.CHARACTER_KEY:
            assert [v for _t, v in p.items] == [str(x) for x in meta["choices"]]
        if isinstance(default, bool):
            assert p.kind == "bool"
        elif isinstance(default, (int, float)):
            assert p.kind in ("int", "float")
            assert p.extra["min"] == meta.get("min", p.extra["min"])
            assert p.extra["max"] == meta.get("max", p.extra["max"])
    assert obs.obs_properties_get(groups["lp.group.camera"].group, "capture.fps") is not None
    assert obs.obs_properties_get(groups["lp.group.performance"].group, "model.precision") is not None
    buttons = {p.name for p in props.walk() if p.kind == "button"}
    assert {"lp.start_stop", "lp.calibrate", "lp.add_source", "lp.open_characters", "lp.check_character",
            "lp.verify_models", "lp.download_models"} <= buttons
    status = obs.obs_properties_get(groups["lp.group.status"].group, "lp.status")
    assert status.extra["text_type"] == obs.OBS_TEXT_INFO
    for e in c.expressions:
        assert obs.obs_properties_get(groups["lp.group.animation"].group, properties.EXPRESSION_PREFIX + e)


def test_character_list_shows_the_folder_images(obs, tmp_path):
    for n in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / n).write_bytes(b"x")
    c, _, data = loaded(obs, {"characters.folder": str(tmp_path), "lp.autostart": False})
    p = obs.obs_properties_get(c.build_properties(), properties.CHARACTER_KEY)
    assert [v for _t, v in p.items] == ["", "a.jpg", "b.png"]
    finish(obs, c, data)


def test_defaults_read_back_as_the_schema_defaults(obs):
    data = obs.obs_data_create()
    properties.set_defaults(obs, data)
    s, errors = properties.settings_from_data(obs, data)
    assert errors == []
    assert s == schema.Settings()
    obs.obs_data_release(data)


# ------------------------------------------------------------------ settings to engine


def test_load_passes_obs_settings_to_the_engine_on_a_worker_thread(obs):
    c, engines, data = loaded(obs, {"animation.region": "exp", "capture.fps": 60,
                                    "characters.extra_folders": "/x, /y", "animation.driving_multiplier": 1.5})
    (e,) = engines
    assert e.started and e.built_on is not threading.main_thread()
    assert e.settings.animation.region == "exp"
    assert e.settings.capture.fps == 60
    assert e.settings.characters.extra_folders == ["/x", "/y"]
    assert e.settings.animation.driving_multiplier == 1.5
    finish(obs, c, data)


def test_update_applies_changes_live_and_skips_bad_values(obs):
    c, (e,), data = loaded(obs)
    data.values.update({"animation.stitching": False, "animation.region": "nonsense",
                        "characters.active": "hero.png"})
    c.update(data)
    updates = [call[1] for call in e.calls if call[0] == "update_settings"]
    assert updates and updates[-1].animation.stitching is False
    assert updates[-1].animation.region == "all"  # the bad value kept the default
    assert any("animation.region" in err and "nonsense" in err for err in c.setting_errors)
    assert "animation.region" in c.status_text()
    assert ("select_character", "hero.png") in e.calls
    finish(obs, c, data)


def test_expression_property_toggles_the_engine_expression(obs):
    c, (e,), data = loaded(obs)
    data.values[properties.EXPRESSION_PREFIX + "smile"] = True
    c.update(data)
    assert ("set_expression", "smile", True) in e.calls
    finish(obs, c, data)


# ------------------------------------------------------------------ hotkeys


def test_hotkeys_registered_for_every_action(obs):
    c, _, data = loaded(obs)
    assert "extra_one" in c.expressions  # reported by the engine once it started
    obs.run_timers()  # its hotkey is registered from a one-shot timer on the UI thread
    names = {hk["name"] for hk in obs.hotkeys.values()}
    expected = {f"liveportrait.character_{i}" for i in range(1, 10)} | {
        "liveportrait.next_character", "liveportrait.previous_character", "liveportrait.calibrate",
        "liveportrait.pause"} | {f"liveportrait.output.{n}" for n, _ in ctl.OUTPUT_TOGGLES} | {
        f"liveportrait.expression.{e}" for e in c.expressions}
    assert expected <= names
    finish(obs, c, data)


def test_hotkeys_drive_the_engine(obs):
    c, (e,), data = loaded(obs)
    for name in ("character_3", "next_character", "previous_character", "calibrate", "pause",
                 "expression.smile", "output.ndi"):
        obs.trigger_hotkey("liveportrait." + name)  # press and release: acts once
    assert e.calls[-7:] == [("select_character", 2), ("next_character", 1), ("next_character", -1),
                            ("calibrate",), ("pause", True), ("set_expression", "smile", True),
                            ("set_output_enabled", "ndi", True)]
    assert data.values[properties.EXPRESSION_PREFIX + "smile"] is True  # the property follows the hotkey
    finish(obs, c, data)


def test_hotkey_bindings_survive_save_and_reload(obs):
    saved = {"liveportrait.character_1": [{"key": "OBS_KEY_1", "control": True}],
             "liveportrait.expression.gone_now": [{"key": "OBS_KEY_F9"}],
             "lp.autostart": False}
    c, _, data = loaded(obs, saved)
    hid = c.hotkeys.hotkey_id("character_1")
    assert obs.hotkeys[hid]["bindings"] == [{"key": "OBS_KEY_1", "control": True}]
    obs.hotkeys[c.hotkeys.hotkey_id("calibrate")]["bindings"] = [{"key": "OBS_KEY_F5"}]  # user binds a key
    c.save(data)
    finish(obs, c, data)
    # "restart": a new OBS loads the saved settings
    obs2 = FakeObs()
    c2, _, data2 = loaded(obs2, json.loads(json.dumps(data.values)))
    assert obs2.hotkeys[c2.hotkeys.hotkey_id("calibrate")]["bindings"] == [{"key": "OBS_KEY_F5"}]
    assert obs2.hotkeys[c2.hotkeys.hotkey_id("character_1")]["bindings"] == [{"key": "OBS_KEY_1", "control": True}]
    c2.save(data2)
    assert data2.values["liveportrait.expression.gone_now"] == [{"key": "OBS_KEY_F9"}]  # not lost
    finish(obs2, c2, data2)


def test_commands_before_the_engine_runs_are_applied_when_it_starts(obs):
    c, engines, data = loaded(obs, {"lp.autostart": False})
    assert engines == []
    obs.trigger_hotkey("liveportrait.pause")
    obs.trigger_hotkey("liveportrait.expression.smile")
    assert c.start() == "starting"
    c._starter.join(5)
    (e,) = engines
    assert ("pause", True) in e.calls and ("set_expression", "smile", True) in e.calls
    finish(obs, c, data)


# ------------------------------------------------------------------ lifecycle and robustness


def test_unload_stops_the_engine_timers_hotkeys_and_threads(obs):
    c, (e,), data = loaded(obs)
    assert obs.timers and obs.hotkeys and e.callbacks and obs.event_callbacks
    c.unload()
    assert e.stopped and not e.callbacks
    assert obs.timers == [] and obs.hotkeys == {} and obs.event_callbacks == []
    assert not c.running
    assert not [t for t in threading.enumerate() if t.name.startswith("liveportrait-obs")]
    obs.obs_data_release(data)
    assert obs.leaked() == []


def test_unload_during_a_slow_engine_start_does_not_leave_it_running(obs):
    gate = threading.Event()
    built: list[FakeEngine] = []

    def slow(s):
        gate.wait(5)
        built.append(FakeEngine(s))
        return built[-1]

    c = ScriptController(obs, engine_factory=slow, libobs_factory=FakeLibobs)
    data = obs.obs_data_create()
    c.defaults(data)
    c.load(data)
    assert c.running
    threading.Timer(0.05, gate.set).start()
    c.unload()
    c._starter.join(5)
    assert not built or not built[0].started or built[0].stopped
    obs.obs_data_release(data)


def test_obs_exit_event_stops_the_engine_before_unload(obs):
    c, (e,), data = loaded(obs)
    obs.emit(obs.OBS_FRONTEND_EVENT_EXIT)
    assert e.stopped and not c.running
    finish(obs, c, data)


def test_callbacks_never_raise_even_when_the_engine_does(obs):
    c, (e,), data = loaded(obs, engine_fail=True)
    for hk in list(obs.hotkeys.values()):
        hk["callback"](True)
        hk["callback"](False)
    props = c.build_properties()
    for p in props.walk():
        if p.kind == "button" and p.name not in ("lp.open_characters", "lp.download_models",
                                                  "lp.verify_models", "lp.check_character"):
            assert obs.obs_property_button_clicked(p, None) is True
    data.values["animation.region"] = "exp"
    obs.run_timers(3)
    for event in (obs.OBS_FRONTEND_EVENT_FINISHED_LOADING, obs.OBS_FRONTEND_EVENT_EXIT):
        obs.emit(event)
    c._on_frame(SimpleNamespace(bgra=None))  # a broken frame is logged, not raised
    finish(obs, c, data)


def test_frames_reach_the_obs_source_and_stop_when_disabled(obs):
    c, (e,), data = loaded(obs)
    (cb,) = e.callbacks.values()
    frame = SimpleNamespace(bgra=np.zeros((4, 6, 4), np.uint8))
    cb(frame)
    assert c.libobs.frames == [(4, 6)]
    obs.trigger_hotkey("liveportrait.output.obs_source")
    cb(frame)
    assert c.libobs.frames == [(4, 6)]
    finish(obs, c, data)


# ------------------------------------------------------------------ scene placement


def test_first_run_adds_the_source_and_restart_restores_its_transform(obs):
    obs.register_source_type(SOURCE_ID)
    c, _, data = loaded(obs)  # loaded into a running OBS: acts at once
    assert SOURCE_NAME in obs.scene_names(obs.current_scene)
    item = obs.obs_scene_find_source(obs.current_scene, SOURCE_NAME)
    item.pos, item.scale, item.rot = (100.0, 50.0), (0.5, 0.5), 15.0
    c.save(data)
    finish(obs, c, data)
    saved = json.loads(json.dumps(data.values))
    assert json.loads(saved[ctl.KEY_PLACEMENTS])[0]["scene"] == "Scene"

    # restart where OBS could not recreate the saved source: the script loads while OBS is still loading
    # the collection (no current scene yet) and acts once OBS says it finished loading
    obs2 = FakeObs()
    scene_obj, obs2.current_scene = obs2.current_scene, None
    obs2.register_source_type(SOURCE_ID)
    c2, _, data2 = loaded(obs2, saved)
    assert obs2.scene_names(scene_obj) == []  # nothing done while loading
    obs2.current_scene = scene_obj
    obs2.emit(obs2.OBS_FRONTEND_EVENT_FINISHED_LOADING)
    items = [it for it in obs2.current_scene.items if it.source.name == SOURCE_NAME]
    assert len(items) == 1
    assert items[0].pos == (100.0, 50.0) and items[0].scale == (0.5, 0.5) and items[0].rot == 15.0
    # a reload of the script (source still there) must not duplicate it
    finish(obs2, c2, data2)
    c3, _, data3 = loaded(obs2, saved)
    obs2.run_timers()
    assert [it.source.name for it in obs2.current_scene.items].count(SOURCE_NAME) == 1
    assert c3.add_sources_to_scene().endswith("is already in scene 'Scene'")
    finish(obs2, c3, data3)


def test_spout_and_ndi_sources_created_or_explained(obs):
    c, _, data = loaded(obs, {"outputs.spout": True, "outputs.ndi": True, "outputs.ndi_name": "LP"})
    msg = c.add_sources_to_scene()
    assert "obs-spout2-plugin" in msg and "DistroAV" in msg
    obs.register_source_type(scene.SPOUT_SOURCE_ID)
    obs.register_source_type(scene.NDI_SOURCE_ID)
    c.add_sources_to_scene()
    spout = obs.sources[f"{SOURCE_NAME} (Spout2)"]
    assert spout.type_id == "spout_capture" and spout.settings["spoutsenders"] == "LivePortrait"
    assert spout.settings["compositemode"] == scene.SPOUT_COMPOSITE_PREMULTIPLIED
    ndi = obs.sources[f"{SOURCE_NAME} (NDI)"]
    assert ndi.type_id == "ndi_source" and ndi.settings["ndi_source_name"].endswith(" (LP)")
    finish(obs, c, data)


def test_unknown_obs_version_falls_back_with_a_message(obs, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    obs.version = "40.1.0"
    obs.register_source_type(scene.NDI_SOURCE_ID)
    c, (e,), data = loaded(obs)
    assert c.libobs is None
    assert "40.1.0" in c.description() and "sends frames through NDI" in c.description()
    assert e.settings.outputs.ndi is True  # the engine sends NDI instead
    msg = c.add_sources_to_scene()
    assert "checked against" in msg and obs.sources[f"{SOURCE_NAME} (NDI)"].type_id == "ndi_source"
    data.values["animation.region"] = "exp"
    c.update(data)  # a later change keeps the fallback
    assert [call[1] for call in e.calls if call[0] == "update_settings"][-1].outputs.ndi is True
    finish(obs, c, data)


# ------------------------------------------------------------------ libobs ctypes layer


@pytest.mark.parametrize("version,ok", [("29.0.2.1-1+b1", True), ("28.1.2", True), ("31.0.0-rc1", True),
                                        ("27.2.4", False), ("32.0.0", False), ("", False), ("garbage", False)])
def test_version_check(version, ok):
    if ok:
        assert libobs_source.check_version(version)[0] in libobs_source.KNOWN_MAJOR_VERSIONS
    else:
        with pytest.raises(LibobsUnavailable, match="Spout2"):
            libobs_source.check_version(version)


def test_library_names_per_os():
    assert libobs_source.library_candidates("win32")[0] == "obs.dll"
    assert libobs_source.library_candidates("linux")[0] == "libobs.so.0"
    mac = libobs_source.library_candidates("darwin")
    assert any(n.endswith("libobs.framework/libobs") for n in mac) and "libobs.0.dylib" in mac


_OFFSETS_C = r"""
#include <stdio.h>
#include <stddef.h>
#include <obs.h>
#define F(f) offsetof(struct obs_source_frame2, f)
#define I(f) offsetof(struct obs_source_info, f)
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %zu\n", sizeof(struct obs_source_frame2), F(timestamp), F(format), F(range),
         F(color_matrix), F(flip), F(trc));
  printf("%zu %zu %zu %zu %zu %zu\n", I(output_flags), I(get_name), I(create), I(destroy), I(video_tick),
         I(video_render));
  printf("%d %d %d %d\n", VIDEO_FORMAT_BGRA, VIDEO_RANGE_FULL, OBS_SOURCE_ASYNC_VIDEO, OBS_SOURCE_TYPE_INPUT);
  return 0;
}
"""


def test_struct_layouts_match_the_installed_libobs_headers(tmp_path):
    """Compiles offsetof() against libobs-dev's headers (skips without them) and compares with ctypes."""
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    inc = Path("/usr/include/obs")
    if cc is None or not (inc / "obs.h").is_file():
        pytest.skip("needs a C compiler and libobs-dev headers (/usr/include/obs)")
    src, exe = tmp_path / "offsets.c", tmp_path / "offsets"
    src.write_text(_OFFSETS_C)
    subprocess.run([cc, f"-I{inc}", str(src), "-o", str(exe)], check=True, capture_output=True)
    rows = [list(map(int, ln.split())) for ln in subprocess.run([str(exe)], check=True, capture_output=True,
                                                                 text=True).stdout.splitlines()]
    F, I = libobs_source.ObsSourceFrame2, libobs_source.ObsSourceInfoPrefix  # noqa: N806
    assert rows[0] == [ctypes.sizeof(F), F.timestamp.offset, F.format.offset, F.range.offset,
                       F.color_matrix.offset, F.flip.offset, F.trc.offset]
    assert rows[1] == [I.output_flags.offset, I.get_name.offset, I.create.offset, I.destroy.offset,
                       I.video_tick.offset, I.video_render.offset]
    assert rows[2] == [libobs_source.VIDEO_FORMAT_BGRA, libobs_source.VIDEO_RANGE_FULL,
                       libobs_source.OBS_SOURCE_ASYNC_VIDEO, libobs_source.OBS_SOURCE_TYPE_INPUT]


class _FakeLib:
    """Stands in for libobs.so: records the ctypes calls."""

    def __init__(self):
        self.registered = []
        self.pushed = []
        ns = SimpleNamespace
        self.obs_register_source_s = ns()
        self.obs_source_output_video2 = ns()
        self.os_gettime_ns = ns()

    def bind(self):
        def register(info, size):
            self.registered.append((info._obj.id, info._obj.output_flags, size))

        def output(src, frame):
            f = frame._obj if frame is not None else None
            self.pushed.append((src, None if f is None else (f.width, f.height, f.linesize[0], f.format)))

        for name, fn in (("obs_register_source_s", register), ("obs_source_output_video2", output),
                         ("os_gettime_ns", lambda: 123), ("obs_initialized", lambda: True)):
            setattr(self, name, _Callable(fn))
        return self


class _Callable:
    def __init__(self, fn):
        self.fn, self.argtypes, self.restype = fn, None, None

    def __call__(self, *a):
        return self.fn(*a)


def test_libobs_source_registers_once_and_pushes_to_live_instances(monkeypatch):
    ka = libobs_source._keepalive()
    monkeypatch.setattr(ka, "lib", None)
    monkeypatch.setattr(ka, "registered", False)
    monkeypatch.setattr(ka, "sources", {})
    lib = _FakeLib().bind()
    src = libobs_source.LibobsSource("29.0.2", loader=lambda _p: lib)
    assert src.register() and src.register()
    assert lib.registered == [(SOURCE_ID.encode(), libobs_source.OBS_SOURCE_ASYNC_VIDEO,
                               ctypes.sizeof(libobs_source.ObsSourceInfoPrefix))]
    h1 = libobs_source._create(None, 0x1000)
    h2 = libobs_source._create(None, 0x2000)
    assert src.push(np.zeros((3, 5, 4), np.uint8)) == 2
    assert sorted(lib.pushed) == [(0x1000, (5, 3, 20, 7)), (0x2000, (5, 3, 20, 7))]
    libobs_source._destroy(h1)
    libobs_source._destroy(999)  # unknown handle: ignored
    lib.pushed.clear()
    assert src.push(np.zeros((2, 2, 4), np.uint8)) == 1 and lib.pushed[0][0] == 0x2000
    libobs_source._destroy(h2)
    assert libobs_source.LibobsSource.live_count() == 0


# ------------------------------------------------------------------ environment


def _venv(root: Path, version: str, windows: bool = False) -> Path:
    v = root / ".venv"
    sp = v / "Lib" / "site-packages" if windows else v / "lib" / f"python{version}" / "site-packages"
    sp.mkdir(parents=True)
    (v / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {version}.7\n")
    return sp


@pytest.mark.parametrize("windows", [False, True])
def test_environment_matching_venv_is_added_once(tmp_path, windows):
    sp = _venv(tmp_path, "3.11", windows)
    path: list[str] = []
    r = environment.prepare(tmp_path, (3, 11), path)
    assert r.ok and r.added and path == [str(sp)]
    assert not environment.prepare(tmp_path, (3, 11), path).added and path == [str(sp)]


def test_environment_mismatch_says_what_to_do(tmp_path):
    _venv(tmp_path, "3.12")
    path: list[str] = []
    r = environment.prepare(tmp_path, (3, 11), path)
    assert not r.ok and path == []
    assert "3.12" in r.problem and "3.11" in r.problem and "install.py" in r.problem


def test_environment_missing_venv(tmp_path):
    r = environment.prepare(tmp_path, (3, 11), [])
    assert not r.ok and "install.py" in r.problem and str(tmp_path) in r.problem


def test_controller_with_bad_environment_loads_but_does_not_start(obs, tmp_path):
    env = environment.prepare(tmp_path, (3, 11), [])
    c, engines, data = loaded(obs, env=env)
    assert engines == [] and "Set-up needed" in c.description()
    assert c.start().startswith("cannot start")
    props = c.build_properties()
    assert "install.py" in obs.obs_properties_get(props, "lp.setup").description
    finish(obs, c, data)


# ------------------------------------------------------------------ the script module itself


@pytest.fixture()
def script(monkeypatch, obs):
    monkeypatch.setitem(sys.modules, "obspython", obs)
    monkeypatch.setattr(ctl, "default_engine_factory", FakeEngine)
    monkeypatch.setattr(ctl, "default_libobs_factory", FakeLibobs)
    sys.modules.pop("obs_liveportrait", None)
    monkeypatch.syspath_prepend(str(REPO))
    mod = importlib.import_module("obs_liveportrait")
    yield mod
    sys.modules.pop("obs_liveportrait", None)


def test_script_functions_full_cycle_and_reload(script, obs, capsys):
    for _ in range(2):  # the Scripts dialog's reload runs unload then load again
        data = obs.obs_data_create()
        assert "LivePortrait" in script.script_description()
        script.script_defaults(data)
        script.script_load(data)
        script.script_update(data)
        assert script.script_properties() is not None
        engine = script._controller.engine or (script._controller._starter.join(5), script._controller.engine)[1]
        assert engine.started
        script.script_save(data)
        script.script_unload()
        assert engine.stopped and script._controller is None
        assert obs.timers == [] and obs.hotkeys == {}
        obs.obs_data_release(data)
    assert obs.leaked() == []
    out = capsys.readouterr().out
    assert "script_load returned in" in out and "script_load took" in out


def test_script_functions_swallow_controller_errors(script, obs, monkeypatch, capsys):
    data = obs.obs_data_create()
    script.script_defaults(data)
    script.script_load(data)
    monkeypatch.setattr(script._controller, "update", lambda d: 1 / 0)
    script.script_update(data)  # must not raise
    assert "ZeroDivisionError" in capsys.readouterr().out
    script.script_unload()
    obs.obs_data_release(data)


def test_default_expressions_match_the_engine_catalogue():
    from liveportrait_core import expressions

    assert tuple(ctl.DEFAULT_EXPRESSIONS) == tuple(expressions.NAMES)


_NO_HEAVY_IMPORTS = r"""
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
from fake_obspython import FakeObs
obs = FakeObs()
sys.modules["obspython"] = obs
import obs_liveportrait as s
data = obs.obs_data_create()
data.values["lp.autostart"] = False
s.script_description(); s.script_defaults(data); s.script_load(data); s.script_update(data)
s.script_properties(); s.script_save(data); s.script_unload()
heavy = sorted(m for m in ("torch", "mediapipe", "cv2") if m in sys.modules)
print("HEAVY", heavy)
print("LIBOBS", s._controller is None)
"""


def test_loading_the_script_never_imports_torch_mediapipe_or_opencv():
    """OBS's UI thread runs script_description/defaults/load/update/properties: none may import the heavy
    packages (they load on the engine's threads)."""
    import subprocess

    code = _NO_HEAVY_IMPORTS.format(repo=str(REPO), tests=str(REPO / "tests"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout, p.stdout + p.stderr


def test_model_and_character_buttons_work_off_the_ui_thread(obs, monkeypatch, tmp_path):
    (tmp_path / "hero.png").write_bytes(b"x")
    ran: list[tuple[str, list[str], str]] = []
    done = threading.Event()

    def fake_command(name, args, settings):
        ran.append((name, args, threading.current_thread().name))
        done.set()
        return "ok"

    monkeypatch.setattr(ctl, "_run_command", fake_command)
    c, _, data = loaded(obs, {"characters.folder": str(tmp_path), "lp.autostart": False})
    assert "started" in c.check_character()
    assert done.wait(5)
    name, args, thread = ran[0]
    assert name == "check-character" and args[0].endswith("hero.png") and "--no-preview" in args
    assert thread != threading.main_thread().name
    for t in list(c._workers):
        t.join(5)
    assert c.message == "check: ok"
    finish(obs, c, data)


def test_run_command_reports_an_unknown_command():
    assert "no working 'no-such-command'" in ctl._run_command("no-such-command", [], schema.Settings())


def test_shutdown_waits_for_engine_threads_within_one_budget(monkeypatch):
    monkeypatch.setattr(shutdown, "_shutdown_deadline", None)
    release = threading.Event()
    quick = threading.Thread(target=release.wait, args=(5,), name="lp-quick", daemon=True)
    stuck = threading.Event()
    slow = threading.Thread(target=stuck.wait, args=(10,), name="lp-stuck", daemon=True)
    quick.start()
    slow.start()
    stopped = []

    def stop(timeout):
        stopped.append(timeout)
        release.set()  # the engine's stop lets its quick thread end
        return True

    left = shutdown.join_engine_threads(0.3, stop=stop)
    assert stopped and not quick.is_alive()
    assert left == ["lp-stuck"]
    assert shutdown.join_engine_threads(30.0) == ["lp-stuck"]  # the budget is spent: no second 30 s wait
    stuck.set()
    slow.join(5)
