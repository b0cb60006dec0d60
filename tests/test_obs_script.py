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
    def output_on(self, name): return name != "record" or bool(self.settings.outputs.record)
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
        self.version, self.warning = libobs_source.check_version(version)
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
        "Status", properties.BASICS_LABEL, "Character options", "Camera options", "Animation", "Voice", "Output",
        "Performance", "Models"]
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
    assert obs.obs_properties_get(groups["lp.group.basics"].group, "capture.source") is not None
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


def test_output_hotkeys_come_from_the_table(obs):
    from liveportrait_core.outputs.table import OUTPUTS

    c, _, data = loaded(obs)
    registered = {hk["name"]: hk["description"] for hk in obs.hotkeys.values()
                  if hk["name"].startswith("liveportrait.output.")}
    assert registered == {f"liveportrait.output.{o.name}": f"LivePortrait: {o.label} on/off" for o in OUTPUTS}
    finish(obs, c, data)


def test_an_output_hotkey_writes_the_setting_so_a_later_change_keeps_it(obs):
    """The hotkey's state lived in the controller only: a later panel change sent the engine settings that
    switched NDI off again while Status still said it was on."""
    c, (e,), data = loaded(obs)
    obs.trigger_hotkey("liveportrait.output.ndi")
    assert c.settings.outputs.ndi is True and data.values["outputs.ndi"] is True  # the checkbox follows
    assert "NDI" in c.frames_route()
    data.values["animation.region"] = "exp"
    c.update(data)
    assert [call[1] for call in e.calls if call[0] == "update_settings"][-1].outputs.ndi is True
    obs.trigger_hotkey("liveportrait.output.record")  # no target: the engine says why (its target stays)
    assert e.calls[-1] == ("set_output_enabled", "record", True) and c.settings.outputs.record == ""
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
    obs.version = "27.2.4"
    obs.register_source_type(scene.NDI_SOURCE_ID)
    c, (e,), data = loaded(obs)
    assert c.libobs is None
    status = c.status_text()
    assert "frames → NDI" in status and "27.2.4" in status and "sends frames through NDI" in status
    assert e.settings.outputs.ndi is True  # the engine sends NDI instead
    msg = c.add_sources_to_scene()
    assert "checked against" in msg and obs.sources[f"{SOURCE_NAME} (NDI)"].type_id == "ndi_source"
    data.values["animation.region"] = "exp"
    c.update(data)  # a later change keeps the fallback
    assert [call[1] for call in e.calls if call[0] == "update_settings"][-1].outputs.ndi is True
    finish(obs, c, data)


# ------------------------------------------------------------------ libobs ctypes layer


@pytest.mark.parametrize("version,major,warned", [("29.0.2.1-1+b1", 29, False), ("28.1.2", 28, False),
                                                  ("31.0.0-rc1", 31, False), ("32.2.2", 32, False),
                                                  ("40.1.0", 40, True)])
def test_version_check_accepts_checked_releases_and_tries_newer_ones_with_a_warning(version, major, warned):
    (got_major, _minor, _patch), warning = libobs_source.check_version(version)
    assert got_major == major
    assert bool(warning) == warned
    if warned:
        assert "40" in warning


@pytest.mark.parametrize("version", ["27.2.4", "", "garbage"])
def test_version_check_refuses_older_or_unreadable_versions_with_the_fallback(version):
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
    from liveportrait_core.driving import expressions

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

    def fake_command(name, args, settings, **options):
        ran.append((name, args, options, threading.current_thread().name))
        done.set()
        return "ok"

    monkeypatch.setattr(ctl, "_run_command", fake_command)
    c, _, data = loaded(obs, {"characters.folder": str(tmp_path), "lp.autostart": False})
    assert "started" in c.check_character()
    assert done.wait(5)
    name, args, options, thread = ran[0]
    assert name == "check-character" and args[0].endswith("hero.png") and options == {"previews": False}
    assert thread != threading.main_thread().name
    for t in list(c._workers):
        t.join(5)
    assert c.message == "check: ok"
    finish(obs, c, data)


def test_run_command_reports_an_unknown_command():
    assert "no working 'no-such-command'" in ctl._run_command("no-such-command", [], schema.Settings())


def test_buttons_run_the_commands_plain_functions_without_the_cli_parser(monkeypatch, capsys, tmp_path):
    """The buttons call the same function as the CLI command, with settings and options, never argparse."""
    from liveportrait_core.cli import main as cli
    from liveportrait_core.cli.commands import check_character, doctor, download_models

    assert ctl.BUTTON_COMMANDS == {"check-character": check_character.check, "doctor": doctor.report,
                                   "download-models": download_models.download}
    monkeypatch.setattr(cli, "build_parser", lambda: pytest.fail("a button went through the CLI parser"))
    image = [str(REPO / "characters" / "astronaut.png")]
    settings = schema.Settings()
    assert ctl._run_command("check-character", image, settings, previews=False) == "done"
    out = capsys.readouterr().out
    assert "astronaut.png" in out and "USABLE" in out
    settings.characters.min_face_confidence = 0.99  # the threshold comes from the script's settings
    assert ctl._run_command("check-character", image, settings, previews=False) \
        == "failed (exit 1); the OBS log has the details"
    assert "min_face_confidence=0.99" in capsys.readouterr().out
    assert ctl._run_command("check-character", [str(tmp_path)], settings, previews=False) \
        == "failed (exit 2); the OBS log has the details"
    assert "no images" in capsys.readouterr().err


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


# ------------------------------------------------------------------ issue 12: versions, status, panel, scene


class StatusEngine(FakeEngine):
    """A FakeEngine with ``status()``: the live character changes when a switch command is applied."""

    def __init__(self, settings, live="a.png", errors=()):
        super().__init__(settings)
        self.live, self.errors = live, list(errors)
        self.slots = ["a.png", "b.png", "c.png"]

    def status(self):
        return SimpleNamespace(character=self.live, errors=list(self.errors), message="")

    def select_character(self, key):
        super().select_character(key)
        self.live = self.slots[key] if isinstance(key, int) and key < len(self.slots) else self.live


def loaded_with(obs, engine_cls, values=None, **engine_kw):
    engines: list = []

    def factory(s):
        engines.append(engine_cls(s, **engine_kw))
        return engines[-1]

    c = ScriptController(obs, engine_factory=factory, libobs_factory=FakeLibobs)
    data = obs.obs_data_create()
    data.values.update(values or {})
    c.defaults(data)
    c.load(data)
    c._starter.join(5)
    return c, engines[0], data


@pytest.mark.parametrize("version,checked", [("32.2.2", True), ("29.0.2.1-1+b1", True), ("33.0.1", False)])
def test_obs_32_and_newer_get_the_in_process_source_and_status_says_why(obs, version, checked, caplog):
    """Bug 2: OBS 32 was refused (Spout2/NDI fallback); a newer, unchecked major is tried with a warning."""
    obs.version = version
    c, (e,), data = loaded(obs)
    assert c.libobs is not None and e.settings.outputs.ndi is False and e.settings.outputs.spout is False
    status = c.status_text()
    assert "frames → OBS source 'LivePortrait' in-process" in status
    if checked:
        assert "checked layout" in status and not c.libobs_warning
    else:
        assert "newer than the checked 28-32" in status and "33.0.1" in c.libobs_warning
    finish(obs, c, data)


def test_real_libobs_source_warns_in_the_log_on_a_newer_obs(monkeypatch, caplog):
    ka = libobs_source._keepalive()
    monkeypatch.setattr(ka, "lib", None)
    monkeypatch.setattr(ka, "registered", False)
    lib = _FakeLib().bind()
    src = libobs_source.LibobsSource("33.0.0", loader=lambda _p: lib)
    with caplog.at_level("WARNING"):
        src.register()
    assert "33.0.0 is newer than" in caplog.text and src.warning


def test_one_status_the_description_has_none(obs):
    """Bug 7: the description (asked once, before script_load) said "Status: stopped" while Status said running."""
    c, (e,), data = loaded(obs)
    assert "Status:" not in c.description() and "stopped" not in c.description()
    status = obs.obs_properties_get(c.build_properties(), "lp.status").description
    assert status.startswith("12.0 FPS") and "(as of " in status
    c.stop()
    assert c.status_text().startswith("stopped (press Start)")
    finish(obs, c, data)


def test_character_hotkey_9_reports_character_9(obs):
    """Bug 8: hotkey "character 9" reported "character 8"."""
    c, (e,), data = loaded(obs)
    assert c.select_character(8) == "character 9"
    assert e.calls[-1] == ("select_character", 8)
    finish(obs, c, data)


def test_an_error_leaves_status_once_its_cause_is_gone(obs, monkeypatch):
    """Bug 8: an error stayed in Status for minutes; it goes at the next frame, and any message after a while."""
    c, (e,), data = loaded(obs)
    c.message = "calibrate failed: engine exploded"
    assert "calibrate failed" in c.status_text()
    (cb,) = e.callbacks.values()
    cb(SimpleNamespace(bgra=np.zeros((2, 2, 4), np.uint8)))  # the engine publishes again
    assert "calibrate failed" not in c.status_text()
    c.message = "calibrating: look at the camera with a neutral face"
    cb(SimpleNamespace(bgra=np.zeros((2, 2, 4), np.uint8)))
    assert "calibrating" in c.status_text()  # not an error: stays until it expires
    now = ctl.time.monotonic()
    monkeypatch.setattr(ctl.time, "monotonic", lambda: now + ctl.MESSAGE_TTL_S + 1)
    assert "calibrating" not in c.status_text()
    finish(obs, c, data)


def test_a_failed_start_message_goes_when_the_engine_starts(obs):
    calls = []

    def factory(s):
        calls.append(s)
        if len(calls) == 1:
            raise RuntimeError("weights missing")
        return FakeEngine(s)

    c = ScriptController(obs, engine_factory=factory, libobs_factory=FakeLibobs)
    data = obs.obs_data_create()
    c.defaults(data)
    c.load(data)
    c._starter.join(5)
    assert "engine failed to start: weights missing" in c.status_text()
    c.start()
    c._starter.join(5)
    assert "failed" not in c.status_text()
    finish(obs, c, data)


def test_loading_during_obs_startup_logs_no_swig_warning(obs):
    """Bug 13: script_load asked for the current scene while OBS had none: the binding logged
    "get_current_scene: SWIG failed to convert obs object" at every OBS start."""
    obs.register_source_type(SOURCE_ID)
    scene_obj, obs.current_scene = obs.current_scene, None  # OBS starting: the collection is loading
    c, _, data = loaded(obs)
    assert obs.logs == [] and obs.scene_names(scene_obj) == []
    obs.current_scene = scene_obj
    obs.emit(obs.OBS_FRONTEND_EVENT_FINISHED_LOADING)
    assert SOURCE_NAME in obs.scene_names(scene_obj)
    assert not any("SWIG" in m for _l, m in obs.logs)
    finish(obs, c, data)


def test_status_names_the_live_character_and_why_the_chosen_one_is_not(obs):
    """Bug 4 (OBS): characters.active names a character the engine refused."""
    reason = "02:00:00 character 'broken.png': no face found (0.12 < 0.5)"
    c, e, data = loaded_with(obs, StatusEngine, {"characters.active": "broken.png"}, live="a.png",
                             errors=[reason])
    status = c.status_text()
    assert "live character: a.png; chosen broken.png is not used: " + reason in status
    assert data.values["characters.active"] == "broken.png"  # the user's choice is kept, not replaced
    e.live = "broken.png"
    assert "live character" not in c.status_text()
    finish(obs, c, data)


def test_hotkey_switch_becomes_the_chosen_character_and_survives_a_reload(obs):
    """After a reload the character reverted to the panel's choice; the panel did not follow hotkeys."""
    c, e, data = loaded_with(obs, StatusEngine, {"characters.active": "a.png"})
    obs.trigger_hotkey("liveportrait.character_3")
    obs.run_timers()  # the status timer sees the new live character
    assert data.values["characters.active"] == "c.png" and c.settings.characters.active == "c.png"
    assert obs.obs_properties_get(c.build_properties(), properties.CHARACTER_KEY) is not None
    assert "live character" not in c.status_text()
    c.save(data)
    finish(obs, c, data)
    c2, e2, data2 = loaded_with(obs, StatusEngine, json.loads(json.dumps(data.values)))
    assert e2.settings.characters.active == "c.png"
    finish(obs, c2, data2)


def test_status_uses_the_engines_own_reason_and_says_when_nothing_is_live(obs):
    """The engine reports the chosen character and why it is not live (character_chosen/character_error)."""
    c, e, data = loaded_with(obs, StatusEngine, {"characters.active": "broken.png"}, live="a.png")
    why = "/x/broken.png: not a readable PNG/JPEG/WebP image"
    e.status = lambda: SimpleNamespace(character="a.png", character_chosen="broken.png", character_error=why,
                                       errors=[], message="")
    assert f"live character: a.png; chosen broken.png is not used: {why}" in c.status_text()
    e.status = lambda: SimpleNamespace(character="", character_chosen="broken.png", character_error=why,
                                       errors=[], message=f"chosen character refused: {why}")
    assert "live character: none; broken.png is used as soon as its file is fixed" in c.status_text()
    finish(obs, c, data)


def test_a_refused_panel_choice_is_not_overwritten_without_a_hotkey(obs):
    c, e, data = loaded_with(obs, StatusEngine, {"characters.active": "broken.png"}, live="a.png")
    obs.run_timers(3)
    assert data.values["characters.active"] == "broken.png"
    finish(obs, c, data)


def test_panel_puts_status_start_character_and_camera_first_and_hides_the_rest(obs):
    c, _, data = loaded(obs)
    props = c.build_properties()
    top = list(props.props.values())
    assert [p.name for p in top[:3]] == ["lp.group.status", "lp.group.basics", properties.SHOW_ADVANCED_KEY]
    status = [p.name for p in top[0].group.props.values()]
    assert status[:2] == ["lp.status", "lp.start_stop"] and ctl.KEY_AUTOSTART in status
    assert [p.name for p in top[1].group.props.values()][:2] == [properties.CHARACTER_KEY, "capture.source"]
    advanced = [p for p in top[3:] if p.kind == "group"]
    assert advanced and not any(p.visible for p in advanced)
    assert sum(1 for p in top[0].group.walk()) + sum(1 for p in top[1].group.walk()) < 15
    data.values[properties.SHOW_ADVANCED_KEY] = True
    assert obs.modify(props, properties.SHOW_ADVANCED_KEY, data) is True
    assert all(p.visible for p in advanced)
    assert all(p.visible for p in top[4:] if p.kind == "group"
               for p in [obs.obs_properties_get(c.build_properties(), p.name)])  # stays open on refresh
    finish(obs, c, data)


def test_first_add_fits_the_source_to_the_canvas_and_a_user_placement_is_kept(obs):
    obs.register_source_type(SOURCE_ID)
    c, _, data = loaded(obs)
    item = obs.obs_scene_find_source(obs.current_scene, SOURCE_NAME)
    assert item.bounds_type == obs.OBS_BOUNDS_SCALE_INNER and item.bounds == (640.0, 360.0)
    assert item.pos == (0.0, 0.0) and item.align == scene.OBS_ALIGN_TOP_LEFT
    assert item.bounds_align == scene.OBS_ALIGN_CENTER
    item.bounds_type, item.pos, item.scale = 0, (10.0, 20.0), (0.3, 0.3)  # the user moves it
    c.save(data)
    saved = json.loads(json.dumps(data.values))
    finish(obs, c, data)
    obs2 = FakeObs()
    scene_obj, obs2.current_scene = obs2.current_scene, None
    obs2.register_source_type(SOURCE_ID)
    c2, _, data2 = loaded(obs2, saved)
    obs2.current_scene = scene_obj
    obs2.emit(obs2.OBS_FRONTEND_EVENT_FINISHED_LOADING)
    (it,) = [i for i in scene_obj.items if i.source.name == SOURCE_NAME]
    assert it.bounds_type == 0 and it.pos == (10.0, 20.0) and it.scale == (0.3, 0.3)
    finish(obs2, c2, data2)
