"""What the OBS script does, behind the ``script_*`` functions: one ``ScriptController`` per script load.

It maps OBS settings onto ``Settings`` and the engine's command API, registers hotkeys, owns the
in-process OBS source and the scene placement, and shows status. It receives the ``obspython`` module as
``obs`` and never imports it, so tests drive it with a fake. Rules it keeps:

* ``script_load`` returns at once: the engine module (and with it torch/mediapipe) is imported and started
  on a starter thread; commands that arrive before it is up are applied when it starts.
* Every callback OBS or libobs calls is wrapped: an exception is logged, never raised into OBS.
* ``script_unload`` stops every thread and releases every OBS reference within about a second.
"""
from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
from typing import Any, Callable, Iterable

from liveportrait_core import paths
from liveportrait_core import settings as schema
from liveportrait_core.cli.commands import check_character as check_character_command
from liveportrait_core.cli.commands import doctor as doctor_command
from liveportrait_core.cli.commands import download_models as download_models_command
from liveportrait_core.driving.expression_names import NAMES as EXPRESSION_NAMES
from liveportrait_core.obs import properties, scene, shutdown
from liveportrait_core.obs.environment import EnvironmentReport
from liveportrait_core.obs.hotkeys import Hotkeys
from liveportrait_core.obs.libobs_source import SOURCE_ID, LibobsSource, LibobsUnavailable
from liveportrait_core.obs.libobs_source import checked_range as libobs_checked_range
from liveportrait_core.outputs.table import BY_NAME as OUTPUT_SPECS
from liveportrait_core.outputs.table import OUTPUTS, OutputSpec

log = logging.getLogger(__name__)

SOURCE_NAME = "LivePortrait"
KEY_AUTOSTART = "lp.autostart"
KEY_PLACEMENTS = "lp.placements"
KEY_FIRST_RUN_DONE = "lp.first_run_done"
STATUS_INTERVAL_MS = 1000
#: A button's or hotkey's result stays in Status this long; an error also goes at the next frame or start.
MESSAGE_TTL_S = 30.0
#: How long a hotkey's character switch is awaited before the panel stops waiting to follow it.
SWITCH_FOLLOW_S = 120.0
LOG_STATUS_EVERY_S = 10.0
UNLOAD_BUDGET_S = 0.8
#: The per-output hotkeys (``output.<name>``, "LivePortrait: <label> on/off"): one for each output of the table.
OUTPUT_TOGGLES = tuple((o.name, o.label) for o in OUTPUTS)
#: Expression hotkeys registered at load (they must exist then to get their saved bindings); names the
#: engine adds later get their hotkeys once it reports them.
DEFAULT_EXPRESSIONS = EXPRESSION_NAMES

EngineFactory = Callable[[schema.Settings], Any]


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Log and swallow any exception: OBS must never see one from a callback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001
            log.exception("%s failed", fn.__name__)
            return None

    return wrapper


def fallback_output() -> OutputSpec:
    """The output frames go through when there is no in-process source (announced in Status and the log)."""
    return OUTPUT_SPECS["spout" if sys.platform == "win32" else "ndi"]


def default_engine_factory(settings: schema.Settings) -> Any:
    """Imports the engine (torch, mediapipe) — called on the starter thread only."""
    from liveportrait_core.engine.core import Engine

    return Engine(settings)


def default_libobs_factory(obs_version: str) -> LibobsSource:
    return LibobsSource(obs_version)


class ScriptController:
    """State of one load of ``obs_liveportrait.py``."""

    def __init__(self, obs: Any, env: EnvironmentReport | None = None,
                 engine_factory: EngineFactory | None = None,
                 libobs_factory: Callable[[str], LibobsSource] | None = None) -> None:
        self.obs = obs
        self.env = env
        # looked up at use, so tests can swap the module-level defaults
        self._engine_factory = engine_factory or (lambda s: default_engine_factory(s))
        self._libobs_factory = libobs_factory or (lambda v: default_libobs_factory(v))
        self.settings = schema.Settings()
        self.setting_errors: list[str] = []
        self.data: Any = None  # the script's obs_data (owned by OBS for the script's lifetime)
        self.hotkeys = Hotkeys(obs)
        self.libobs: LibobsSource | None = None
        self.libobs_problem = ""  # why there is no in-process source (frames go through Spout2/NDI)
        self.libobs_warning = ""  # in-process source on an OBS newer than the checked ones
        self.expressions = list(DEFAULT_EXPRESSIONS)
        self.expression_state: dict[str, bool] = {}
        self.paused = False
        self.voice_muted = False  #: the "mute voice" hotkey's state (kept across engine restarts)
        self._message: tuple[str, float, bool] = ("", 0.0, False)  # (text, when, is an error)
        self._switch_from: tuple[float, str] | None = None  # (when, live character) of a hotkey switch
        self.engine: Any = None
        self._frame_handle: Any = None
        self._lock = threading.RLock()
        self._starter: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._stop_requested = threading.Event()
        self._timers: list[Callable[[], None]] = []
        self._last_status_log = 0.0
        self._frames_pushed = 0
        self._event_cb: Callable[[int], None] | None = None
        self._push_error_logged = False
        self.load_ms: float | None = None
        self.unloaded = False

    # ------------------------------------------------------------------ script API
    def defaults(self, data: Any) -> None:
        properties.set_defaults(self.obs, data)
        self.obs.obs_data_set_default_bool(data, KEY_AUTOSTART, True)
        self.obs.obs_data_set_default_bool(data, KEY_FIRST_RUN_DONE, False)
        self.obs.obs_data_set_default_string(data, KEY_PLACEMENTS, "[]")
        self.obs.obs_data_set_default_bool(data, properties.SHOW_ADVANCED_KEY, False)

    def description(self) -> str:
        """Fixed text: OBS asks for it once, before ``script_load``, so anything live belongs in Status."""
        text = ("<b>LivePortrait for OBS</b> — your webcam animates a character image, live, with "
                "transparency. The engine starts by itself; <i>Status</i> below says what it is doing. "
                "Hotkeys: Settings &gt; Hotkeys (LivePortrait …).")
        if self.env is not None and not self.env.ok:
            text += f"<p style='color:#e55'><b>Set-up needed:</b> {self.env.problem}</p>"
        return text

    # ------------------------------------------------------------------ the message line of Status
    @property
    def message(self) -> str:
        """The last button/hotkey result, for ``MESSAGE_TTL_S``; an error goes earlier once its cause is gone."""
        text, when, _err = self._message
        return text if text and time.monotonic() - when < MESSAGE_TTL_S else ""

    @message.setter
    def message(self, text: str) -> None:
        self.note(text)

    def note(self, text: str, error: bool | None = None) -> None:
        if error is None:
            error = any(w in text for w in ("failed", "not running", "cannot", "error"))
        self._message = (text or "", time.monotonic(), bool(error))

    def _clear_error(self) -> None:
        """The engine works again (it started, or a frame was published): an error message is out of date."""
        if self._message[2]:
            self._message = ("", 0.0, False)

    def load(self, data: Any) -> None:
        t0 = time.perf_counter()
        self.data = data
        self._register_source_type()
        settings, self.setting_errors = properties.settings_from_data(self.obs, data)
        self.settings = self._with_fallback(settings)
        for e in self.setting_errors:
            log.warning("ignored setting: %s", e)
        log.info("%s", self.frames_route())
        self.expression_state = {e: self.obs.obs_data_get_bool(data, properties.EXPRESSION_PREFIX + e)
                                 for e in self.expressions}
        self._register_hotkeys(data)
        self._add_timer(self._status_timer, STATUS_INTERVAL_MS)
        self._event_cb = guarded(self._on_frontend_event)
        self.obs.obs_frontend_add_event_callback(self._event_cb)
        shutdown.register_atexit()
        if self._frontend_ready():
            self._after_load()  # loaded from Tools > Scripts in a running OBS: the scenes are there
        # else: OBS is loading the scene collection (scripts load before its sources, so that the saved
        # LivePortrait source finds its type registered); scene work waits for FINISHED_LOADING
        if self.env is None or self.env.ok:
            if self.obs.obs_data_get_bool(data, KEY_AUTOSTART):
                self.start()
        else:
            log.warning("not starting: %s", self.env.problem)
        self.load_ms = (time.perf_counter() - t0) * 1000.0
        log.info("script_load took %.1f ms (engine starts on its own thread)", self.load_ms)

    def update(self, data: Any) -> None:
        new, errors = properties.settings_from_data(self.obs, data)
        new = self._with_fallback(new)
        for e in errors:
            if e not in self.setting_errors:
                log.warning("ignored setting: %s", e)
        self.setting_errors = errors
        old, self.settings = self.settings, new
        for e in self.expressions:
            active = self.obs.obs_data_get_bool(data, properties.EXPRESSION_PREFIX + e)
            if active != self.expression_state.get(e, False):
                self._set_expression(e, active)
        engine = self.engine
        if engine is not None and new != old:
            engine.update_settings(new)
            if new.characters.active != old.characters.active and new.characters.active:
                engine.select_character(new.characters.active)

    def save(self, data: Any) -> None:
        self.hotkeys.save(data)
        placements = scene.capture_placements(self.obs, SOURCE_NAME)
        if placements:
            self.obs.obs_data_set_string(data, KEY_PLACEMENTS, json.dumps(placements))

    def unload(self) -> None:
        """Stop everything; OBS may destroy our sources after this, which the keep-alive module handles."""
        t0 = time.perf_counter()
        self.unloaded = True
        for cb in self._timers:
            self.obs.timer_remove(cb)
        self._timers.clear()
        self.hotkeys.unregister_all()
        if getattr(self, "_event_cb", None) is not None:
            self.obs.obs_frontend_remove_event_callback(self._event_cb)
            self._event_cb = None
        stopped = self.stop(UNLOAD_BUDGET_S)
        deadline = time.perf_counter() + 0.1
        for t in self._workers:
            t.join(max(0.0, deadline - time.perf_counter()))
        self.data = None
        log.info("script_unload: engine stopped=%s in %.0f ms", stopped, (time.perf_counter() - t0) * 1000.0)

    # ------------------------------------------------------------------ properties
    def build_properties(self) -> Any:
        obs = self.obs

        def b(fn: Callable[[], str | None]) -> Callable[[Any, Any], bool]:
            def cb(_props: Any, _prop: Any) -> bool:
                try:
                    msg = fn()
                    if msg:
                        self.message = msg
                        log.info("%s", msg)
                except Exception as e:  # noqa: BLE001
                    self.message = f"failed: {e}"
                    log.exception("button failed")
                return True  # refresh the dialog so Status shows the result

            return cb

        buttons = {
            properties.STATUS_GROUP: [("lp.start_stop", "Stop" if self.running else "Start", b(self.toggle_running)),
                                      ("lp.refresh", "Refresh status", b(lambda: None)),
                                      ("lp.calibrate", "Calibrate neutral face", b(self.calibrate))],
            properties.BASICS_GROUP: [("lp.add_source", "Add source to current scene", b(self.add_sources_to_scene)),
                                      ("lp.open_characters", "Open characters folder", b(self.open_characters_folder)),
                                      ("lp.check_character", "Check character", b(self.check_character))],
            "lp.group.models": [("lp.verify_models", "Verify models", b(self.verify_models)),
                                ("lp.download_models", "Download models", b(self.download_models))],
        }

        def top(props: Any) -> None:
            if self.env is not None and not self.env.ok:
                obs.obs_properties_add_text(props, "lp.setup", "Set-up needed: " + self.env.problem,
                                            obs.OBS_TEXT_INFO)

        def status_extra(group: Any) -> None:
            obs.obs_properties_add_bool(group, KEY_AUTOSTART, "Start when OBS starts")

        show = bool(self.data is not None and obs.obs_data_get_bool(self.data, properties.SHOW_ADVANCED_KEY))
        return properties.build(obs, character_folder=self.settings.characters.folder,
                                expressions=self.expressions, buttons=buttons, status_text=self.status_text(),
                                extra_top=top, status_extra=status_extra, show_advanced=show)

    # ------------------------------------------------------------------ engine
    @property
    def running(self) -> bool:
        return self.engine is not None or (self._starter is not None and self._starter.is_alive())

    def start(self) -> str:
        with self._lock:
            if self.running:
                return "already running"
            if self.env is not None and not self.env.ok:
                return "cannot start: " + self.env.problem
            self._stop_requested.clear()
            self._starter = threading.Thread(target=self._start_engine, args=(self.settings.copy(),),
                                             name="liveportrait-obs-start", daemon=True)
            self._starter.start()
        return "starting"

    def _start_engine(self, settings: schema.Settings) -> None:
        try:
            t0 = time.perf_counter()
            engine = self._engine_factory(settings)
            handle = engine.add_frame_callback(self._on_frame)
            with self._lock:
                if self._stop_requested.is_set():
                    engine.remove_frame_callback(handle)
                    return
                self.engine, self._frame_handle = engine, handle
            engine.start()
            if self.voice_muted:
                engine.set_voice_muted(True)
            # commands that arrived while the engine was being built (an output toggle is in the settings)
            for e, on in self.expression_state.items():
                if on:
                    engine.set_expression(e, True)
            if self.paused:
                engine.pause(True)
            if settings != self.settings:
                engine.update_settings(self.settings)
            self._refresh_expressions(engine)
            self._clear_error()
            log.info("engine started in %.2f s (import and construction on this thread)",
                     time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            self.message = f"engine failed to start: {e}"
            log.exception("engine failed to start")
            with self._lock:
                self.engine = None

    def _refresh_expressions(self, engine: Any) -> None:
        try:
            names = list(engine.expression_names())
        except Exception:  # noqa: BLE001
            return
        new = [n for n in names if n not in self.expressions]
        if new:
            self.expressions.extend(new)
            # hotkeys may be registered later than load; OBS allows it, and bindings come from the settings
            self._add_timer(functools.partial(self._register_expression_hotkeys, new, once=True), 10)

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the engine (and a start in progress) within ``timeout`` seconds."""
        deadline = time.perf_counter() + timeout
        with self._lock:
            self._stop_requested.set()
            engine, handle = self.engine, self._frame_handle
            self.engine, self._frame_handle = None, None
        starter = self._starter
        if starter is not None and starter.is_alive():
            starter.join(max(0.0, deadline - time.perf_counter()) / 2)
            with self._lock:  # it may have set the engine just before seeing the stop request
                engine = engine or self.engine
                handle = handle if handle is not None else self._frame_handle
                self.engine, self._frame_handle = None, None
        ok = True
        if engine is not None:
            try:
                if handle is not None:
                    engine.remove_frame_callback(handle)
                ok = bool(engine.stop(timeout=max(0.05, deadline - time.perf_counter())))
            except Exception:  # noqa: BLE001
                log.exception("engine stop failed")
                ok = False
        if self.libobs is not None:
            try:
                self.libobs.clear()
            except Exception:  # noqa: BLE001
                log.debug("clear failed", exc_info=True)
        return ok

    def toggle_running(self) -> str:
        if self.running:
            return "stopped" if self.stop(1.0) else "stop timed out (see the log)"
        return self.start()

    def _on_frame(self, frame: Any) -> None:
        """Publish thread: hand the frame to libobs (which copies it)."""
        try:
            if self._message[2]:
                self._clear_error()
            if self.libobs is not None and self.settings.outputs.obs_source:
                self.libobs.push(frame.bgra)
                self._frames_pushed += 1
        except Exception:  # noqa: BLE001
            if not self._push_error_logged:
                self._push_error_logged = True
                log.exception("pushing a frame to the OBS source failed")

    # ------------------------------------------------------------------ commands (hotkeys, buttons)
    def _engine_call(self, what: str, *args: Any) -> str:
        engine = self.engine
        if engine is None:
            return f"{what}: engine not running"
        getattr(engine, what)(*args)
        return ""

    def select_character(self, key: int | str) -> str:
        """``key``: a file name, or the 0-based slot (hotkey "character 1" is slot 0)."""
        what = f"character {key + 1}" if isinstance(key, int) else f"character {key}"
        self._expect_switch()
        return self._engine_call("select_character", key) or what

    def next_character(self, step: int = 1) -> str:
        self._expect_switch()
        return self._engine_call("next_character", step) or ("next character" if step > 0 else "previous character")

    def _expect_switch(self) -> None:
        """A hotkey switch: once the engine reports another live character, it becomes the chosen one."""
        self._switch_from = (time.monotonic(), self._live_character())

    def _live_character(self) -> str:
        st = self._engine_status()
        return str(getattr(st, "character", "") or "") if st is not None else ""

    def _engine_status(self) -> Any:
        engine = self.engine
        status = getattr(engine, "status", None)
        if status is None:
            return None
        try:
            return status()
        except Exception:  # noqa: BLE001 - status is informative only
            log.debug("engine status failed", exc_info=True)
            return None

    def _follow_hotkey_switch(self) -> None:
        """The panel's Character follows a hotkey switch (and keeps it after a reload or restart). A character
        chosen in the panel is never replaced this way: only a switch the user asked for is written back."""
        pending = self._switch_from
        if pending is None:
            return
        since, before = pending
        live = self._live_character()
        if live and live != before:
            self._switch_from = None
            if live != self.settings.characters.active:
                self._set_chosen_character(live)
        elif time.monotonic() - since > SWITCH_FOLLOW_S:
            self._switch_from = None

    def _set_chosen_character(self, name: str) -> None:
        settings = self.settings.copy()
        settings.characters.active = name
        self.settings = settings
        if self.data is not None and not self.unloaded:
            self.obs.obs_data_set_string(self.data, properties.CHARACTER_KEY, name)
        engine = self.engine
        if engine is not None:
            engine.update_settings(settings)  # a rebuilt animator starts with it too
        log.info("character %s (from a hotkey) is now the chosen one", name)

    def calibrate(self) -> str:
        return self._engine_call("calibrate") or "calibrating: look at the camera with a neutral face"

    def toggle_voice_mute(self) -> str:
        """The "mute voice" hotkey: the mouth stops following the voice (the level still shows)."""
        self.voice_muted = not self.voice_muted
        self._engine_call("set_voice_muted", self.voice_muted)  # (a later engine gets it when it starts)
        return "voice muted" if self.voice_muted else "voice on"

    def push_to_talk(self, held: bool) -> None:
        """The "push to talk" hotkey pressed or released (it matters with ``audio.push_to_talk`` on)."""
        self._engine_call("set_push_to_talk", held)

    def toggle_pause(self) -> str:
        self.paused = not self.paused
        self._engine_call("pause", self.paused)
        return "paused" if self.paused else "resumed"

    def _set_expression(self, name: str, active: bool) -> None:
        self.expression_state[name] = active
        if self.engine is not None:
            self.engine.set_expression(name, active)

    def toggle_expression(self, name: str) -> str:
        active = not self.expression_state.get(name, False)
        self._set_expression(name, active)
        if self.data is not None and not self.unloaded:
            self.obs.obs_data_set_bool(self.data, properties.EXPRESSION_PREFIX + name, active)
        return f"expression {name} {'on' if active else 'off'}"

    def toggle_output(self, name: str) -> str:
        """An output's hotkey. One with a switch in the settings gets it written, and its checkbox follows; the
        recording (its setting is its target, which stays) is switched in the running engine."""
        spec = OUTPUT_SPECS[name]
        engine = self.engine
        if spec.switch:
            on = not spec.is_on(self.settings.outputs)
            settings = self.settings.copy()
            setattr(settings.outputs, spec.setting, on)
            self.settings = settings
            if self.data is not None and not self.unloaded:
                self.obs.obs_data_set_bool(self.data, f"outputs.{spec.setting}", on)
        elif engine is None:
            return f"output {name}: engine not running"
        else:
            on = not engine.output_on(name)
        if engine is not None:
            engine.set_output_enabled(name, on)
        return f"output {name} {'on' if on else 'off'}"

    def _register_hotkeys(self, data: Any) -> None:
        reg = self.hotkeys.register
        for i in range(1, 10):
            reg(f"character_{i}", f"LivePortrait: character {i}", guarded(functools.partial(
                self.select_character, i - 1)), data)
        reg("next_character", "LivePortrait: next character", guarded(self.next_character), data)
        reg("previous_character", "LivePortrait: previous character",
            guarded(functools.partial(self.next_character, -1)), data)
        reg("calibrate", "LivePortrait: calibrate neutral face", guarded(self.calibrate), data)
        reg("pause", "LivePortrait: pause / resume", guarded(self.toggle_pause), data)
        reg("voice.mute", "LivePortrait: mute voice (on/off)", guarded(self.toggle_voice_mute), data)
        reg("voice.push_to_talk", "LivePortrait: push to talk (hold; with audio.push_to_talk)",
            guarded(functools.partial(self.push_to_talk, True)), data,
            on_release=guarded(functools.partial(self.push_to_talk, False)))
        for name, text in OUTPUT_TOGGLES:
            reg(f"output.{name}", f"LivePortrait: {text} on/off", guarded(functools.partial(
                self.toggle_output, name)), data)
        self._register_expression_hotkeys(self.expressions)

    def _register_expression_hotkeys(self, names: Iterable[str], once: bool = False) -> None:
        if once:
            self._end_one_shot(self._register_expression_hotkeys)
        if self.unloaded:
            return
        for e in names:
            self.hotkeys.register(f"expression.{e}", f"LivePortrait: expression {e} on/off",
                                  guarded(functools.partial(self.toggle_expression, e)), self.data)

    # ------------------------------------------------------------------ OBS source and scenes
    def _with_fallback(self, settings: schema.Settings) -> schema.Settings:
        """No in-process source here: frames go out through Spout2 (Windows) or NDI instead, as announced."""
        o = settings.outputs
        if self.libobs is None and o.obs_source and not self._receivers_on(o):
            settings = settings.copy()
            setattr(settings.outputs, fallback_output().setting, True)
        return settings

    @staticmethod
    def _receivers_on(o: schema.OutputSettings) -> list[OutputSpec]:
        """The outputs that are on and that an OBS source can receive (``scene.RECEIVERS``), in table order."""
        return [spec for spec in OUTPUTS if spec.name in scene.RECEIVERS and spec.is_on(o)]

    def _register_source_type(self) -> None:
        try:
            self.libobs = self._libobs_factory(self.obs.obs_get_version_string())
            self.libobs.register()
            self.libobs_problem = ""
            self.libobs_warning = str(getattr(self.libobs, "warning", "") or "")
        except (LibobsUnavailable, OSError, AttributeError) as e:
            self.libobs = None
            self.libobs_problem = f"{e} Until then the script sends frames through {fallback_output().label}."
            log.warning("in-process OBS source unavailable: %s", self.libobs_problem)

    def frames_route(self) -> str:
        """Where the frames go and why, for Status and the log."""
        o = self.settings.outputs
        others = [spec.label for spec in self._receivers_on(o)]
        if self.libobs is None:
            via = " and ".join(others) or "nothing that OBS shows"
            return f"frames → {via} (no in-process source: {self.libobs_problem})"
        version = ".".join(map(str, getattr(self.libobs, "version", ()) or ())) or "?"
        if not o.obs_source:
            return "frames → " + (" and ".join(others) or "no OBS output") + " (Output › OBS source is off)"
        why = (f"OBS {version} is newer than the checked {libobs_checked_range()}, tried anyway: see the log"
               if self.libobs_warning else f"OBS {version}, checked layout")
        extra = "".join(f" + {n}" for n in others)
        return f"frames → OBS source '{SOURCE_NAME}' in-process ({why}){extra}"

    def add_sources_to_scene(self) -> str:
        """The button: our source (and Spout2/NDI receivers when those outputs are on) into the current scene."""
        msgs = []
        o = self.settings.outputs
        if self.libobs is not None and o.obs_source:
            msgs.append(scene.ensure_in_current_scene(self.obs, SOURCE_ID, SOURCE_NAME))
        elif self.libobs is None and o.obs_source:
            msgs.append(self.libobs_problem)
        for spec in self._receivers_on(o):
            receiver = scene.RECEIVERS[spec.name]
            if scene.type_available(self.obs, receiver.type_id):
                msgs.append(scene.ensure_in_current_scene(self.obs, receiver.type_id, f"{SOURCE_NAME} ({spec.label})",
                                                          receiver.source_settings(o)))
            else:
                msgs.append(receiver.help)
        return "; ".join(m for m in msgs if m) or "no output that OBS shows is enabled (see Output)"

    def _frontend_ready(self) -> bool:
        """Whether OBS has its scenes (the script was loaded into a running OBS, not during start-up).

        Asks for the scene names: while OBS is still loading the collection there are none, and unlike
        ``obs_frontend_get_current_scene`` (NULL then) the binding logs nothing ("get_current_scene: SWIG
        failed to convert obs object" at every OBS start)."""
        try:
            return bool(self.obs.obs_frontend_get_scene_names())
        except Exception:  # noqa: BLE001 - an OBS without the frontend API: scene work waits for its event
            return False

    def _on_frontend_event(self, event: int) -> None:
        """UI thread. Scene work once a collection is loaded; stop early when OBS exits."""
        obs = self.obs
        log.debug("frontend event %s", event)
        if event in (obs.OBS_FRONTEND_EVENT_FINISHED_LOADING, obs.OBS_FRONTEND_EVENT_SCENE_COLLECTION_CHANGED):
            self._after_load()
        elif event in (getattr(obs, "OBS_FRONTEND_EVENT_SCRIPTING_SHUTDOWN", -1), obs.OBS_FRONTEND_EVENT_EXIT):
            t0 = time.perf_counter()
            left = shutdown.join_engine_threads(shutdown.EXIT_WAIT_S, stop=self.stop)
            log.info("OBS is shutting down: engine threads ended=%s in %.2f s", not left, time.perf_counter() - t0)

    def _after_load(self) -> None:
        """UI thread, scenes loaded: restore the source if OBS could not, or add it on the first run."""
        if self.unloaded or self.data is None:
            return
        if self.libobs is not None:
            placements = self.obs.obs_data_get_string(self.data, KEY_PLACEMENTS)
            msg = scene.restore(self.obs, SOURCE_ID, SOURCE_NAME, placements)
            log.info("source: %s", msg)
        if not self.obs.obs_data_get_bool(self.data, KEY_FIRST_RUN_DONE):
            log.info("first run: %s", self.add_sources_to_scene())
            self.obs.obs_data_set_bool(self.data, KEY_FIRST_RUN_DONE, True)

    # ------------------------------------------------------------------ status
    def status_text(self) -> str:
        """The one status (panel and log): engine state, live character, where frames go, last result."""
        parts = []
        engine = self.engine
        if engine is not None:
            try:
                parts.append(engine.status_line())
            except Exception as e:  # noqa: BLE001
                parts.append(f"status unavailable: {e}")
            chosen = self._character_note()
            if chosen:
                parts.append(chosen)
        elif self._starter is not None and self._starter.is_alive():
            parts.append("starting (loading torch, MediaPipe and the models)…")
        elif self.env is not None and not self.env.ok:
            parts.append("not running: set-up needed (see above)")
        else:
            parts.append("stopped (press Start)")
        if self.paused:
            parts.append("paused")
        parts.append(self.frames_route())
        if self.libobs is not None:
            parts.append(f"OBS source frames: {self._frames_pushed}")
        if self.setting_errors:
            parts.append("ignored settings: " + "; ".join(self.setting_errors))
        if self.message:
            parts.append(self.message)
        return " | ".join(parts) + time.strftime(" (as of %H:%M:%S)")

    def _character_note(self) -> str:
        """When the chosen character (Character in the panel) is not the live one: which is live, and why the
        chosen one is not, in the engine's words."""
        st = self._engine_status()
        if st is None:
            return ""
        chosen = str(getattr(st, "character_chosen", "") or self.settings.characters.active)
        live = str(getattr(st, "character", "") or "")
        error = str(getattr(st, "character_error", "") or "")
        if not chosen or (live and _same_character(live, chosen)):
            return ""
        if not live:  # nothing animated: the engine's line says why (its state is an error naming the reason)
            return (f"live character: none; {chosen} is used as soon as its file is fixed, or pick another "
                    f"Character" if error else "")
        if not error:  # e.g. from the errors of an engine that does not report the reason itself
            reasons = [str(m) for m in [*getattr(st, "errors", [])[::-1], getattr(st, "message", "")]
                       if m and _stem(chosen) in str(m)]
            error = reasons[0] if reasons else "it is being prepared or cannot be used (see the log)"
        return f"live character: {live}; chosen {chosen} is not used: {error}"

    def _status_timer(self) -> None:
        self._follow_hotkey_switch()
        now = time.monotonic()
        if self.engine is not None and now - self._last_status_log >= LOG_STATUS_EVERY_S:
            self._last_status_log = now
            log.info("status: %s", self.status_text())

    def _add_timer(self, fn: Callable[[], None], ms: int) -> None:
        cb = guarded(fn)
        self._timers.append(cb)
        self.obs.timer_add(cb, ms)

    def _end_one_shot(self, method: Callable[..., Any]) -> None:
        """Inside a timer callback: remove it (OBS) and forget it (so unload does not remove it twice)."""
        self.obs.remove_current_callback()
        target = getattr(method, "__func__", method)

        def wraps_target(cb: Any) -> bool:
            inner = getattr(cb, "__wrapped__", None)
            inner = getattr(inner, "func", inner)  # functools.partial
            return getattr(inner, "__func__", inner) is target

        self._timers = [t for t in self._timers if not wraps_target(t)]

    # ------------------------------------------------------------------ buttons off the UI thread
    def _background(self, name: str, fn: Callable[[], str]) -> str:
        def run() -> None:
            try:
                self.message = f"{name}: {fn()}"
            except Exception as e:  # noqa: BLE001
                self.message = f"{name} failed: {e}"
                log.exception("%s failed", name)
            log.info("%s", self.message)

        self._workers = [t for t in self._workers if t.is_alive()]
        if any(t.name == f"liveportrait-obs-{name}" for t in self._workers):
            return f"{name} is already running"
        t = threading.Thread(target=run, name=f"liveportrait-obs-{name}", daemon=True)
        self._workers.append(t)
        t.start()
        return f"{name} started (result here and in the OBS log)"

    def open_characters_folder(self) -> str:
        return properties.open_folder(paths.resolve(self.settings.characters.folder))

    def check_character(self) -> str:
        folder = self.settings.characters.folder
        name = self.settings.characters.active or next(iter(properties.list_characters(folder)), "")
        if not name:
            return f"no character images in {paths.resolve(folder)}: add a PNG/JPEG there"
        return self._background("check", functools.partial(
            _run_command, "check-character", [str(paths.resolve(folder) / name)], self.settings.copy(),
            previews=False))

    def verify_models(self) -> str:
        return self._background("verify", functools.partial(
            _run_command, "doctor", [], self.settings.copy()))

    def download_models(self) -> str:
        return self._background("download", functools.partial(
            _run_command, "download-models", [], self.settings.copy()))


#: The CLI commands the buttons run, by name: each one's plain function (the CLI's ``run`` calls the same),
#: called as ``fn(settings, *args, **options)``.
BUTTON_COMMANDS: dict[str, Callable[..., int]] = {
    check_character_command.NAME: check_character_command.check,
    doctor_command.NAME: doctor_command.report,
    download_models_command.NAME: download_models_command.download,
}


def _run_command(name: str, args: list[Any], settings: schema.Settings, **options: Any) -> str:
    """Run CLI command ``name`` in-process with the script's settings (inside OBS ``sys.executable`` is not
    Python, so no subprocess); its report goes to stdout, i.e. the OBS log."""
    command = BUTTON_COMMANDS.get(name)
    if command is None:
        return f"this version has no working '{name}' command"
    rc = int(command(settings, *args, **options) or 0)
    return "done" if rc == 0 else f"failed (exit {rc}); the OBS log has the details"


def _stem(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _same_character(live: str, chosen: str) -> bool:
    """The engine names characters by file name (or ``folder/file``); the panel may hold a stem."""
    return live == chosen or live.endswith("/" + chosen) or _stem(live) == _stem(chosen) and "." not in chosen
