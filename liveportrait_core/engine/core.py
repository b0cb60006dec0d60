"""The real-time engine: capture -> tracking -> inference -> publish, each on its own thread.

Stages are joined by ``LatestValue`` hand-offs, so a slow stage drops stale frames instead of
adding latency (a video file processed as fast as possible runs them lossless instead, so that a
recording gets every frame). Everything the OBS script and the CLI do goes through the command
methods below, which are thread-safe and return at once: commands for the tracker or the animator
are queued and applied by the thread that owns that object, between frames.

Rules the engine keeps (docs/ENGINE.md):
* ``start()`` returns at once; torch, MediaPipe and the weights load on the stage threads.
* ``stop()`` returns within its timeout; the outputs are joined first (a recording is finalised),
  then the stages. A stage busy in a native call that cannot be interrupted (one network, or one
  step of the model load: a load is given up between networks) finishes on its own and its result is thrown away; ``join()`` waits for it. A process
  must not exit while such a thread runs (Python would kill it inside C++: SIGABRT), see the CLI.
* An exception in any stage is caught, logged, listed in ``status().errors`` and the stage goes on.
* A lost camera is reopened with backoff while the character idles.
"""
from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np

from liveportrait_core.engine.backend import AnimatorStage, Backend, FrameCancelled, LivePortraitBackend, Tracker
from liveportrait_core.capture.clock import MEDIA_ORIGIN, FrameClock
from liveportrait_core.capture.sources import (CapturedFrame, CaptureError, FrameSource, describe_source,
                                              every_frame, is_finite, is_no_camera, open_source)
from liveportrait_core.engine.handoff import END_OF_STREAM, EndOfStream, LatestValue
from liveportrait_core.outputs.base import Output, PublishedFrame
from liveportrait_core.outputs.callback import CallbackOutput, FrameCallback
from liveportrait_core.outputs.runner import OutputRunner
from liveportrait_core.outputs.table import CALLBACKS, OUTPUTS
from liveportrait_core.outputs.table import BY_NAME as OUTPUT_SPECS
from liveportrait_core.outputs.table import spec as output_spec
from liveportrait_core.settings import Settings
from liveportrait_core.engine.stats import RECENT_ERROR_S, EngineStatus, StageTimer, SystemMonitor, fps_text

__all__ = ["Engine", "EngineStatus", "PublishedFrame"]

_log = logging.getLogger(__name__)

POLL_S = 0.05  #: how long a stage waits for input before checking for stop/commands
IDLE_FPS = 30.0  #: rate of idle frames while the capture is lost
BACKOFF_S = (0.5, 10.0)  #: first and longest wait before reopening a lost capture / rebuilding a stage
STAGES = ("capture", "tracking", "inference", "publish")
MAX_ERRORS = 20
STILL_FINISHING = "a stage is finishing its last frame"
LOADING = "loading the networks and preparing the character"
#: Errors whose message says what to do (missing weights, unusable character, settings, camera): logged
#: without a traceback (it is logged at DEBUG), since it would only bury the fix. By module and class name,
#: so that the engine never imports torch to test for them.
USER_ERRORS = (("liveportrait_core.models.checkpoint.weights", "WeightsError"),
               ("liveportrait_core.models.loader", "ModelLoadError"),
               ("liveportrait_core.characters.faces", "CharacterError"),
               ("liveportrait_core.images", "ImageError"),
               ("liveportrait_core.settings", "SettingsError"),
               ("liveportrait_core.tracking.mesh", "TrackerUnavailable"),
               ("liveportrait_core.capture.sources", "CaptureError"),
               ("liveportrait_core.outputs.base", "OutputUnavailable"))


def is_user_error(exc: BaseException) -> bool:
    """True for an error whose message is the fix (see ``USER_ERRORS``), as opposed to a bug."""
    for module, name in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


#: Names of the threads an engine starts: its stages (``lp-capture``...) and its outputs (``lp-output-record``...).
THREAD_NAMES = tuple(f"lp-{n}" for n in STAGES) + ("lp-output-", "lp-voice")


def engine_threads() -> list[threading.Thread]:
    """The live threads of every engine in this process (for shutdown checks and tests)."""
    return [t for t in threading.enumerate() if t.is_alive() and t.name.startswith(THREAD_NAMES)]


def _device_words(device: str) -> str:
    """"the CPU" / "the GPU" for a torch device string ("" when unknown)."""
    if device.startswith("cpu"):
        return "the CPU"
    return "the GPU" if device.startswith(("cuda", "mps")) else ""


@dataclass
class TrackedFrame:
    captured: CapturedFrame | None  #: None for idle frames made while the capture is lost
    observation: Any
    driving_rgb: np.ndarray | None
    timestamp: float  #: on the session's clock (``capture.clock``)
    read_at: float  #: the wall clock when its input was read (or the idle frame made): latency is measured from it


@dataclass
class AnimatedFrame:
    tracked: TrackedFrame
    #: the frame, or (GPU paste-back) an ``engine.device_frames.PendingFrame`` the publish stage waits for
    bgra: Any


class _Commands:
    """Callables queued by any thread, run in order by the thread that owns the target object."""

    def __init__(self) -> None:
        self._q: deque[tuple[str, Callable[[Any], Any]]] = deque()
        self._lock = threading.Lock()

    def put(self, what: str, fn: Callable[[Any], Any]) -> None:
        with self._lock:
            self._q.append((what, fn))

    def drain(self) -> list[tuple[str, Callable[[Any], Any]]]:
        with self._lock:
            items = list(self._q)
            self._q.clear()
        return items


def _time_left(seconds: float) -> str:
    """"about 40 s left", "about 3 min left"; past the estimate: "taking longer than estimated"."""
    if seconds <= 0:
        return "taking longer than estimated"
    return f"about {max(1, round(seconds))} s left" if seconds < 90 else f"about {seconds / 60:.0f} min left"


class _Session:
    """The threads and hand-offs of one start()..stop(); a stuck thread only ever sees its own session."""

    def __init__(self, lossless: bool) -> None:
        self.lossless = lossless
        self.stop = threading.Event()
        self.finished = threading.Event()
        self.restart_capture = threading.Event()
        self.captured: LatestValue[CapturedFrame | EndOfStream] = LatestValue("captured", lossless=lossless)
        # idle frames (made while the camera is away) replaced by newer ones are no input a user lost
        self.tracked: LatestValue[TrackedFrame | EndOfStream] = LatestValue(
            "tracked", lossless=lossless, counts=lambda item: getattr(item, "captured", None) is not None)
        self.animated: LatestValue[AnimatedFrame | EndOfStream] = LatestValue("animated", lossless=lossless)
        self.threads: list[threading.Thread] = []
        self.input_lost_since: float | None = None
        self.started = time.perf_counter()
        #: what time each frame is at: media time for a file processed frame by frame, else the wall clock
        self.clock = FrameClock(media=lossless)
        self.clock_animator: Any = None  #: the animator told that this session's clock starts (``restart_clock``)
        self.published = 0  #: frames published in this session (what ``max_frames`` counts)
        self.frame_errors = 0  #: input frames lost to a tracking or inference error
        self.busy: tuple[str, float] | None = None  #: what the inference stage is doing, since when
        #: what a long load step is doing now (the backend's ``activity``; "": none) and when it expects to be done
        #: (``time.perf_counter``; None: unknown), one value so that the status never pairs a step with another's
        self.load_activity: tuple[str, float | None] = ("", None)
        self.skipped_while_loading = 0  #: input frames passed over while the networks loaded (not a user's loss)
        #: ``input_passed_over()`` when the current model load began (None: not loading). A session starts
        #: loading: capture may pass frames over before the inference stage has even begun its load.
        self.loading_since_passed_over: int | None = 0
        self.slow_warned = False
        self.voice: Any = None  #: the voice stage (``voice.stage.VoiceStage``) while ``audio.mode`` is not off
        self.voice_rx: Any = None  #: the inference thread's end of its hand-off
        #: seconds of the audio file whose every frame this session renders (no webcam, ``voice_timeline``)
        self.timeline: float | None = None

    def handoffs(self) -> tuple[LatestValue, ...]:
        return self.captured, self.tracked, self.animated

    def input_passed_over(self) -> int:
        """Input frames replaced before inference took them (captured or tracked, but never animated)."""
        return self.captured.dropped + self.tracked.dropped

    def skipped(self) -> int:
        """Input frames skipped because inference was busy animating: those passed over while the networks
        load are not counted (nothing could animate them; a user cannot act on that number)."""
        total = self.input_passed_over() if self.loading_since_passed_over is None else self.loading_since_passed_over
        return total - self.skipped_while_loading

    def set_load_activity(self, text: str, seconds_left: float | None = None) -> None:
        """The backend's ``activity``: what a long load step does now and how long it expects to take."""
        self.load_activity = (text, None if seconds_left is None else time.perf_counter() + seconds_left)

    def loading(self, started: bool) -> None:
        """Mark the start and the end of a model load (for ``skipped``)."""
        if started:
            if self.loading_since_passed_over is None:
                self.loading_since_passed_over = self.input_passed_over()
        elif self.loading_since_passed_over is not None:
            self.skipped_while_loading += self.input_passed_over() - self.loading_since_passed_over
            self.loading_since_passed_over = None


OUT_OF_MEMORY_ADVICE = ("out of GPU memory while animating: close other GPU applications, lower "
                        "characters.device_cache_size or use model.precision=fp16")


def _out_of_memory_advice(exc: BaseException) -> str:
    """The advice for an out-of-memory error (empty otherwise); frees torch's cached GPU blocks so that
    the next frame has a chance. The engine never imports torch itself: it is loaded if the model ran."""
    if type(exc).__name__ != "OutOfMemoryError" and "out of memory" not in str(exc).lower():
        return ""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception as e:  # noqa: BLE001 - advice must never fail
        _log.debug("empty_cache failed: %s", e)
    return OUT_OF_MEMORY_ADVICE


class Engine:
    """Owns the pipeline threads; every public method is thread-safe and returns at once."""

    def __init__(self, settings: Settings, outputs: list[Output] | None = None, *,
                 backend: Backend | None = None, max_frames: int | None = None) -> None:
        self._settings = settings.copy()
        self._backend: Backend = backend or LivePortraitBackend()
        self._extra_outputs = list(outputs or [])
        #: built once, from the table: frame callbacks can be added before the engine starts
        self._callbacks = cast(CallbackOutput, OUTPUT_SPECS[CALLBACKS].factory(self._settings.outputs, 0.0, True))
        #: Outputs switched off at run time that have no switch in the settings to write (the recording, whose
        #: setting is its target; an extra output); whatever has one is on or off in ``self._settings`` alone.
        self._switched_off: set[str] = set()
        self.max_frames = max_frames
        self._lock = threading.RLock()
        self._session: _Session | None = None
        self._runners: dict[str, OutputRunner] = {}
        self._tracker_cmds = _Commands()
        self._animator_cmds = _Commands()
        self._rebuild_animator = False
        self._animator: AnimatorStage | None = None  # kept across stop/start: the weights stay loaded
        self._inference_thread: threading.Thread | None = None
        self._prev_inference: threading.Thread | None = None
        self._paused = False
        self._state = "stopped"
        self._message = ""
        self._command_error: tuple[str, float] | None = None  # the message a failed command set, and when
        self._errors: deque[str] = deque(maxlen=MAX_ERRORS)
        self._last_error_t: float | None = None
        self._error_counts: dict[str, int] = {}
        self._character = ""
        self._character_chosen = ""  # the user's explicit choice, "" = none (then the first usable one is live)
        self._character_error = ""  # why the chosen character is not the live one ("" = it is)
        self._tracking_state = ""
        self._timers = {name: StageTimer() for name in STAGES}
        self._e2e = StageTimer()
        self._monitor = SystemMonitor()
        self._device = ""  #: where the networks run ("cpu", "cuda:0"...), once loaded
        self._lingering: list[threading.Thread] = []  #: threads of stopped sessions still finishing
        self._voice_muted = False
        self._voice_talking = False

    # ============================================================================ lifecycle
    def start(self) -> None:
        """Start the stage threads and return at once (models load on the inference thread)."""
        with self._lock:
            if self._session is not None:
                return
            cs = self._settings.capture
            timeline = _voice_timeline(self._settings)
            sess = _Session(lossless=every_frame(cs) or timeline is not None)
            sess.timeline = timeline
            self._session = sess
            self._state, self._message = "starting", "loading"
            self._errors.clear()
            self._error_counts.clear()
            for t in (*self._timers.values(), self._e2e):
                t.reset()
            if self._offline_voice(sess):  # an audio file on the frames' clock (a timeline's too): its
                self._start_voice(sess)  # voice from the first frame on
            self._build_runners(sess.lossless)
            for r in self._runners.values():
                r.start()
            for name, target in (("capture", self._capture_loop), ("tracking", self._tracking_loop),
                                 ("inference", self._inference_loop), ("publish", self._publish_loop)):
                th = threading.Thread(target=self._guard, args=(name, target, sess), name=f"lp-{name}", daemon=True)
                sess.threads.append(th)
            self._prev_inference, self._inference_thread = self._inference_thread, sess.threads[2]
            for th in sess.threads:
                th.start()
        _log.info("engine started (%s)", "lossless file processing" if sess.lossless else "live")

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop every thread; True if all finished within ``timeout`` s (a stage busy in a long
        inference is left to finish on its own and its frame is discarded)."""
        deadline = time.perf_counter() + timeout
        with self._lock:
            sess, self._session = self._session, None
            runners, self._runners = self._runners, {}
        if sess is None:
            return True
        sess.stop.set()
        for box in sess.handoffs():
            box.close()
        voice_joined = self._stop_voice(sess, timeout)
        for r in runners.values():
            r.stop()
        joined = True
        # outputs first: they never wait on a network, and a recording must be finalised even when a
        # stage is stuck in a native call that outlives the timeout
        for r in runners.values():
            joined &= r.join(max(0.0, deadline - time.perf_counter()))
        for th in sess.threads:
            if th is threading.current_thread():  # stop() called from a stage (e.g. via a command): no self-join
                continue
            th.join(max(0.0, deadline - time.perf_counter()))
            joined &= not th.is_alive()
        with self._lock:
            self._lingering = [t for t in (*self._lingering, *sess.threads, *(r.thread for r in runners.values()))
                               if t is not None and t.is_alive() and t is not threading.current_thread()]
        joined &= voice_joined
        with self._lock:
            if self._session is None:
                self._state, self._message = "stopped", ("" if joined else STILL_FINISHING)
        if not joined:
            _log.info("engine stop: %s still finishing after %.1fs (it ends on its own; its result is discarded)",
                      ", ".join(t.name for t in sess.threads if t.is_alive()) or "an output", timeout)
        else:
            _log.info("engine stopped")
        return joined

    def join(self, timeout: float | None = None) -> bool:
        """After ``stop()``: wait up to ``timeout`` s for threads that were still finishing (one network, or one
        step of the model load, cannot be interrupted; a stop cancels between them). True when none is left."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        for th in self.lingering_threads():
            th.join(None if deadline is None else max(0.0, deadline - time.perf_counter()))
        left = self.lingering_threads()
        if not left and self._session is None:
            with self._lock:
                if self._session is None and self._message == STILL_FINISHING:
                    self._message = ""
        return not left

    def lingering_threads(self) -> list[threading.Thread]:
        """Threads of stopped sessions that are still running (empty once everything has finished)."""
        with self._lock:
            self._lingering = [t for t in self._lingering if t.is_alive()]
            return list(self._lingering)

    def wait_finished(self, timeout: float | None = None) -> bool:
        """For a finite source with ``capture.loop`` off: wait until its last frame reached every output."""
        sess = self._session
        return True if sess is None else sess.finished.wait(timeout)

    def pause(self, paused: bool) -> None:
        """Paused: the camera is still read (so it does not lag on resume) but nothing is animated."""
        with self._lock:
            self._paused = bool(paused)
            if self._state in ("running", "paused"):
                self._state = "paused" if paused else "running"

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def running(self) -> bool:
        return self._session is not None

    # ============================================================================ commands
    def update_settings(self, settings: Settings) -> None:
        """Apply new settings live; only what changed is restarted (e.g. capture on a new camera)."""
        new = settings.copy()
        with self._lock:
            old, self._settings = self._settings, new
            sess = self._session
        if new.capture != old.capture and sess is not None:
            sess.restart_capture.set()
        if new.tracking != old.tracking:
            self._tracker_cmds.put("update settings", lambda t: t.update_settings(new))
        if new.model != old.model:
            with self._lock:
                self._rebuild_animator = True
        elif (new.animation, new.characters, new.performance, new.audio) != (old.animation, old.characters,
                                                                            old.performance, old.audio):
            self._animator_cmds.put("update settings", lambda a: a.update_settings(new))
        if new.outputs != old.outputs:
            self._reconcile_outputs(old)
        if sess is not None and (new.audio.mode == "off") != (old.audio.mode == "off"):
            if new.audio.mode == "off":
                self._stop_voice(sess, 1.0)
            else:
                self._start_voice(sess)
        elif (sess is not None and sess.voice is not None and new.audio.device != old.audio.device
              and (getattr(sess.voice, "offline", False) or self._offline_voice(sess))):
            self._stop_voice(sess, 1.0)  # a file on the frames' clock is opened once (and a microphone has no place
            self._start_voice(sess)  # on it): another device or file starts the right stage afresh

    def select_character(self, key: int | str) -> None:
        """Switch to the character in slot ``key`` (0-based) or with that file name."""
        what = f"select character {key + 1}" if isinstance(key, int) else f"select character {key!r}"  # as hotkeys
        self._animator_cmds.put(what, lambda a: self._set_character(a.select_character(key)))

    def next_character(self, step: int = 1) -> None:
        self._animator_cmds.put("next character", lambda a: self._set_character(a.next_character(step)))

    def characters(self) -> list[str]:
        a = self._animator
        try:
            return list(a.characters()) if a is not None else list(self._backend.list_characters(self._settings))
        except Exception as e:  # noqa: BLE001 - a listing problem must not reach the caller's UI
            self._report("characters", e)
            return []

    def calibrate(self) -> None:
        """Take the current face as the neutral reference."""
        self._tracker_cmds.put("calibrate", lambda t: t.calibrate())
        self._animator_cmds.put("calibrate", lambda a: a.calibrate())

    def set_expression(self, name: str, active: bool, strength: float = 1.0) -> None:
        self._animator_cmds.put(f"expression {name}",
                                lambda a: a.set_expression(name, bool(active), float(strength)))

    def expression_names(self) -> list[str]:
        a = self._animator
        try:
            return list(a.expression_names()) if a is not None else list(self._backend.expression_names())
        except Exception as e:  # noqa: BLE001
            self._report("expressions", e)
            return []

    def set_output_enabled(self, name: str, enabled: bool) -> None:
        """Switch one output on or off by name (one of ``outputs.table.OUTPUTS``, or an extra output's own
        name): an output with a switch in the settings gets it written; one that is not running yet is built."""
        enabled = bool(enabled)
        spec = OUTPUT_SPECS.get(name)
        with self._lock:
            if spec is not None and spec.switch:
                new = self._settings.copy()
                setattr(new.outputs, spec.setting, enabled)
                self._settings = new
            elif enabled:
                self._switched_off.discard(name)
            else:
                self._switched_off.add(name)
            runner = self._runners.get(name)
            sess = self._session
        if runner is not None:
            runner.set_enabled(enabled)
        elif enabled and sess is not None:
            self._add_runner(name, sess.lossless)

    def output_on(self, name: str) -> bool:
        """Whether output ``name`` is on: its switch in the settings, else (the recording, an extra output)
        its target and whether it was switched off at run time."""
        with self._lock:
            spec = OUTPUT_SPECS.get(name)
            if spec is not None and spec.switch:
                return spec.is_on(self._settings.outputs)
            return name not in self._switched_off and (spec is None or spec.is_on(self._settings.outputs))

    # -- the voice (docs/VOICE.md) ----------------------------------------------------------------------
    def _start_voice(self, sess: _Session) -> None:
        """The voice stage of this session when ``audio.mode`` is not off (its thread: ``lp-voice``), started with
        the first animated frame (a file then plays from the start of the picture); a recording gets its sound."""
        with self._lock:
            if self._settings.audio.mode == "off" or sess.voice is not None or sess.stop.is_set():
                return
            from liveportrait_core.voice.stage import FileVoice, VoiceStage  # noqa: PLC0415 - numpy/scipy

            if self._offline_voice(sess):
                try:
                    stage: Any = FileVoice(lambda: self._settings.audio, epoch=MEDIA_ORIGIN)
                except Exception as e:  # noqa: BLE001 - an unreadable file: said, and the character stays silent
                    self._report("voice", e, logging.WARNING)
                    return
            else:
                stage = VoiceStage(lambda: self._settings.audio,
                                   report=lambda e: self._report("voice", e, logging.WARNING))
            stage.set_muted(self._voice_muted)
            stage.set_talking(self._voice_talking)
            sess.voice_rx = stage.receiver()
            sess.voice = stage
            outputs = [r.output for r in self._runners.values()] if self._session is sess else []
        if not self._voice_is_input_sound(sess):  # (else the recording keeps the input's own soundtrack)
            for out in outputs:
                if hasattr(out, "attach_voice"):
                    out.attach_voice(stage)
        stage.start()

    def _offline_voice(self, sess: _Session) -> bool:
        """The voice is an audio file read on the frames' own clock (``voice.stage.FileVoice``): every frame of a
        file or folder (or of an audio file's length, no webcam) is rendered, so frame k at media time t gets
        the sound at t of the file, at any speed. A microphone, or a live run, uses the real-time stage."""
        if not sess.lossless or self._settings.audio.mode == "off":
            return False
        from liveportrait_core.voice.sources import describe_audio  # noqa: PLC0415

        return describe_audio(self._settings.audio.device) == "file"

    def _voice_is_input_sound(self, sess: _Session | None) -> bool:
        """The voice is the video input's own soundtrack (``--input clip.mp4 --audio clip.mp4``), read on the
        frames' clock: a recording keeps that soundtrack as it is (``attach_sound_of``), once, not the voice's
        16 kHz copy of it."""
        if sess is None or not self._offline_voice(sess):
            return False
        video = self._settings.capture.source.strip()
        if describe_source(video) != "video":
            return False
        try:
            return Path(video).expanduser().samefile(Path(self._settings.audio.device.strip()).expanduser())
        except OSError:
            return False

    def voice_status(self) -> Any:
        """The voice stage's ``VoiceStatus`` (None while there is none: ``audio.mode`` off, or not started)."""
        sess = self._session
        stage = sess.voice if sess is not None else None
        return stage.status() if stage is not None else None

    def _stop_voice(self, sess: _Session, timeout: float) -> bool:
        stage, sess.voice = sess.voice, None
        return True if stage is None else stage.stop(timeout)

    def set_voice_muted(self, muted: bool) -> None:
        """Mute (the mouth stays closed, the level meter keeps showing) or unmute the voice."""
        self._voice_muted = bool(muted)
        sess = self._session
        if sess is not None and sess.voice is not None:
            sess.voice.set_muted(self._voice_muted)

    @property
    def voice_muted(self) -> bool:
        return self._voice_muted

    def set_push_to_talk(self, held: bool) -> None:
        """The push-to-talk key pressed (True) or released; it only matters with ``audio.push_to_talk``."""
        self._voice_talking = bool(held)
        sess = self._session
        if sess is not None and sess.voice is not None:
            sess.voice.set_talking(self._voice_talking)

    def add_frame_callback(self, fn: FrameCallback) -> int:
        """Call ``fn(frame)`` for every published frame (on the callback output's thread); returns a handle."""
        return self._callbacks.add(fn)

    def remove_frame_callback(self, handle: int) -> None:
        self._callbacks.remove(handle)

    @property
    def settings(self) -> Settings:
        return self._settings.copy()

    # ============================================================================ status
    def status(self, window_s: float | None = None) -> EngineStatus:
        """Live figures over the last couple of seconds (``window_s=math.inf``: the whole run, for a summary)."""
        with self._lock:
            sess = self._session
            runners = dict(self._runners)
            err = self._command_error
            if err is not None and self._message == err[0] and time.perf_counter() - err[1] > RECENT_ERROR_S:
                self._message, self._command_error = "", None  # a failed command's message expires like errors
            st = EngineStatus(state=self._state, message=self._message, character=self._character,
                              tracking=self._tracking_state, errors=list(self._errors),
                              target_fps=self._settings.performance.target_fps,
                              voice_mode=self._settings.audio.mode)
            st.character_chosen, st.character_error = self._character_chosen, self._character_error
        now = time.perf_counter()
        if self._last_error_t is not None:
            st.last_error_age_s = now - self._last_error_t
        st.stages = {name: t.snapshot(now, window_s) for name, t in self._timers.items()}
        e2e = self._e2e.snapshot(now, window_s)
        st.fps, st.latency_p50_ms, st.latency_p95_ms, st.frames = e2e.fps, e2e.latency_p50_ms, e2e.latency_p95_ms, e2e.count
        st.outputs = {name: r.status() for name, r in runners.items()}
        if sess is not None:
            st.dropped_by_stage = {box.name: box.dropped for box in sess.handoffs()}
            st.skipped = sess.skipped()
            st.dropped = st.dropped_by_stage["animated"]
            st.failed = sess.frame_errors
            st.activity = self._activity(sess, st, now)
        st.cpu, st.gpu = self._monitor.latest()  # sampled on the publish thread: cheap for the OBS UI thread
        voice = sess.voice if sess is not None else None
        if voice is not None:
            st.voice = voice.status().text()
        if st.below_target:
            st.warnings.append(self._below_target_advice(st))
            if sess is not None and not sess.slow_warned:  # once per start: the status line keeps saying it
                sess.slow_warned = True
                _log.warning("%s", st.warnings[-1])
        return st

    def _activity(self, sess: _Session, st: EngineStatus, now: float) -> str:
        """What the pipeline is busy with, for a pipeline too slow for its rate to say anything (seconds per
        frame on a CPU): "loading the networks and preparing the character (12 s)", "computing frame 3 on
        the CPU, about 5.9 s each (2 s in)"."""
        busy = sess.busy
        if busy is None:
            return ""
        what, since = busy
        doing, done_at = sess.load_activity
        if doing:  # e.g. the first start's CPU measurement, network by network, with the time left
            left = "" if done_at is None else f", {_time_left(done_at - now)}"
            return f"{doing}{left} ({now - since:.0f} s in)"
        if what != "frame":
            return f"{what} ({now - since:.0f} s)"
        inf = st.stages["inference"]
        where = _device_words(self._device)
        text = f"computing frame {sess.published + 1}" + (f" on {where}" if where else "")
        if inf.count:
            text += f", about {inf.latency_p50_ms / 1000:.1f} s each" if inf.latency_p50_ms >= 1000 else \
                f", about {inf.latency_p50_ms:.0f} ms each"
        return text + f" ({now - since:.0f} s in)"

    def _below_target_advice(self, st: EngineStatus) -> str:
        slowest = self._slowest_stage(st)
        text = f"below target: {fps_text(st.fps)} fps < {st.target_fps} fps; slowest stage: {slowest}"
        if slowest == "inference" and self._device.startswith("cpu"):
            return (text + " (the networks run on the CPU: seconds per frame; an NVIDIA GPU with CUDA runs them "
                    "in real time, see docs/PERFORMANCE.md; performance.target_fps only sets this warning)")
        return text + "; see docs/PERFORMANCE.md \"How to reach 60 FPS\""

    def status_line(self) -> str:
        return self.status().line()

    @staticmethod
    def _slowest_stage(st: EngineStatus) -> str:
        busy = {n: s.latency_p50_ms for n, s in st.stages.items() if n != "capture"}
        return max(busy, key=busy.__getitem__) if busy else "?"

    # ============================================================================ internals
    def _set_state(self, sess: _Session, state: str, message: str = "") -> None:
        with self._lock:
            if self._session is not sess:  # a finishing thread of an older session
                return
            if state == "running" and self._paused:
                state = "paused"
            self._state, self._message = state, message

    def _set_character(self, name: str | None) -> None:
        if name:
            with self._lock:
                self._character = str(name)

    def _sync_character(self, animator: AnimatorStage) -> None:
        """Which character is live, which one the user chose and why that one is not live (the animator's
        word; an animator without these attributes has no notion of a refused choice)."""
        live = str(_safe(animator.current_character) or "")
        chosen = str(getattr(animator, "chosen_character", "") or "")
        error = str(getattr(animator, "character_error", "") or "")
        with self._lock:
            self._character, self._character_chosen, self._character_error = live, chosen, error

    def _report(self, stage: str, exc: BaseException, level: int = logging.ERROR, advice: str = "",
                start: bool = False) -> None:
        """Log (with traceback the first times for a bug, never for an error whose message is the fix; then
        rate-limited) and list the error in the status. ``start``: a stage could not start (missing weights...);
        its log record carries ``start_error=True`` so that a command that reports it itself can leave it out."""
        n = self._error_counts.get(stage, 0) + 1
        self._error_counts[stage] = n
        if advice:
            stage = f"{stage}: {advice}"
        text = f"{time.strftime('%H:%M:%S')} {stage}: {exc}"
        with self._lock:
            repeated = start and bool(self._errors) and self._errors[-1].split(" ", 1)[1] == text.split(" ", 1)[1]
            if not repeated:
                self._errors.append(text)  # a start retried with the same error is listed (and logged) once
            self._last_error_t = time.perf_counter()
        extra = {"start_error": start}
        if repeated:
            _log.debug("%s: %s (again)", stage, exc)
        elif n <= 3:
            traceback = level >= logging.ERROR and not is_user_error(exc)
            _log.log(level, "%s: %s", stage, exc, exc_info=traceback, extra=extra)
            if not traceback and level >= logging.ERROR:
                _log.debug("%s: traceback", stage, exc_info=exc)
        elif n % 100 == 0:
            _log.log(level, "%s: %s (%d errors so far)", stage, exc, n, extra=extra)

    def _frame_failed(self, sess: _Session, stage: str, exc: BaseException, advice: str = "") -> None:
        sess.frame_errors += 1
        self._report(stage, exc, advice=advice)

    def _guard(self, name: str, loop: Callable[[_Session], None], sess: _Session) -> None:
        """Last line of defence: a stage loop that dies is reported; the engine stays up."""
        try:
            loop(sess)
        except Exception as e:  # noqa: BLE001
            self._report(name, e)
            self._set_state(sess, "error", f"{name} stage stopped: {e}")

    def _put(self, sess: _Session, box: LatestValue, item: Any) -> bool:
        """Hand on ``item``: at once when lossy, waiting (but never past stop) when lossless. The end of a
        stream never replaces the last frame: it waits for it to be taken."""
        if not sess.lossless:
            if isinstance(item, EndOfStream):
                while not sess.stop.is_set() and not box.wait_empty(POLL_S):
                    pass
            return box.put(item)
        while not sess.stop.is_set():
            if box.put(item, timeout=POLL_S):
                return True
        return False

    # ---------------------------------------------------------------------------- capture stage
    def _capture_loop(self, sess: _Session) -> None:
        src: FrameSource | None = None
        delay = BACKOFF_S[0]
        index = 0
        timer = self._timers["capture"]
        try:
            while not sess.stop.is_set():
                if src is None or sess.restart_capture.is_set():
                    if src is not None:
                        src.close()
                        src = None
                    sess.restart_capture.clear()
                    cs = self._settings.capture
                    if is_no_camera(cs) and sess.timeline is not None:
                        self._clock_frames(sess, cs.fps)  # every frame of an audio file's length, then the end
                        return
                    if is_no_camera(cs):  # no webcam: the tracking stage makes idle frames (and the voice talks)
                        if sess.input_lost_since is None:
                            sess.input_lost_since = time.perf_counter()
                        sess.stop.wait(POLL_S)
                        continue
                    try:
                        src = open_source(cs)
                    except Exception as e:  # noqa: BLE001 - CaptureError, or OpenCV trouble
                        self._input_lost(sess, e, start=index == 0)
                        sess.stop.wait(delay)
                        delay = min(delay * 2, BACKOFF_S[1])
                        continue
                    mirror = cs.mirror
                    sess.clock.source_opened(src.fps)  # media time goes on after what came before
                    delay = BACKOFF_S[0]
                    if sess.input_lost_since is not None:
                        _log.info("capture back: %s", src.description)
                    sess.input_lost_since = None
                if self._paused and src.finite:  # a paused video waits; a camera keeps being read
                    sess.stop.wait(POLL_S)
                    continue
                t0 = time.perf_counter()
                try:
                    image = src.read()
                except Exception as e:  # noqa: BLE001
                    self._input_lost(sess, e)
                    src.close()
                    src = None
                    continue
                if image is None:  # the end of a file or folder that does not loop
                    self._put(sess, sess.captured, END_OF_STREAM)
                    return
                ts = time.perf_counter()
                if mirror:
                    import cv2

                    image = cv2.flip(image, 1)
                timer.record(ts - t0, ts)
                if self._paused:
                    continue
                self._put(sess, sess.captured, CapturedFrame(index, sess.clock.frame(ts), image, read_at=ts))
                index += 1
                if sess.lossless and self.max_frames is not None and index >= self.max_frames:
                    self._put(sess, sess.captured, END_OF_STREAM)  # live: the publish stage counts instead
                    return
        finally:
            if src is not None:
                src.close()

    def _clock_frames(self, sess: _Session, fps: float) -> None:
        """No webcam, every frame of an audio file: frames without a picture at ``fps`` on the file's time line
        (``sess.started`` is its 0), as many as the file and a short tail last, then the end of the stream."""
        from liveportrait_core.voice.sources import TAIL_S  # noqa: PLC0415

        self._tracking_state = "no webcam"
        count = int(math.ceil((float(sess.timeline or 0.0) + TAIL_S) * fps))
        sess.clock.source_opened(fps)
        for index in range(count):
            if self.max_frames is not None and index >= self.max_frames:
                break
            wall = time.perf_counter()
            if not self._put(sess, sess.captured, CapturedFrame(index, sess.clock.frame(wall), None, read_at=wall)):
                return
        self._put(sess, sess.captured, END_OF_STREAM)

    def _input_lost(self, sess: _Session, e: BaseException, start: bool = False) -> None:
        if sess.input_lost_since is None:
            sess.input_lost_since = time.perf_counter()
            self._tracking_state = "idle (no input)"
        self._report("capture", e, logging.WARNING, start=start)

    # ---------------------------------------------------------------------------- tracking stage
    def _tracking_loop(self, sess: _Session) -> None:
        tracker: Tracker | None = None
        delay = BACKOFF_S[0]
        timer = self._timers["tracking"]
        next_idle = 0.0
        try:
            while not sess.stop.is_set():
                if tracker is None:
                    try:
                        tracker = self._backend.create_tracker(self._settings)
                        delay = BACKOFF_S[0]
                    except Exception as e:  # noqa: BLE001
                        self._report("tracking", e, start=True)
                        self._set_state(sess, "error", f"face tracker: {e}")
                        sess.stop.wait(delay)
                        delay = min(delay * 2, BACKOFF_S[1])
                        continue
                self._run_commands(self._tracker_cmds, tracker, "tracking")
                item = sess.captured.get(timeout=POLL_S)
                if item is None:
                    now = time.perf_counter()
                    if sess.input_lost_since is not None and not self._paused and now >= next_idle:
                        next_idle = now + 1.0 / IDLE_FPS
                        self._tracking_state = ("no webcam" if is_no_camera(self._settings.capture)  # also over a
                                                else "idle (no input)")  # frame read just before the loss
                        t = sess.clock.now()  # (media time: the idle goes on from the last input frame)
                        try:  # keep the character alive (idle) while the camera is away
                            self._put(sess, sess.tracked, TrackedFrame(None, tracker.no_input(t), None, t, now))
                        except Exception as e:  # noqa: BLE001
                            self._report("tracking", e)
                    continue
                if isinstance(item, EndOfStream):
                    self._put(sess, sess.tracked, item)
                    return
                t0 = time.perf_counter()
                try:
                    if item.image_bgr is None:  # a frame of a clock with no picture: the character idles
                        observation, driving = tracker.no_input(item.timestamp), None
                    else:
                        observation, driving = tracker.track(item)
                except Exception as e:  # noqa: BLE001
                    self._frame_failed(sess, "tracking", e)
                    continue
                t1 = time.perf_counter()
                timer.record(t1 - t0, t1)
                why = getattr(observation, "mouth_hidden", "") or "unseen"  # a tracked face's hidden mouth
                self._tracking_state = ("no webcam" if item.image_bgr is None
                                        else "lost" if not getattr(observation, "found", False)
                                        else "face" if getattr(observation, "mouth_visible", True)
                                        else f"mouth hidden ({why})")
                self._put(sess, sess.tracked, TrackedFrame(item, observation, driving, item.timestamp, item.wall_ts))
        finally:
            if tracker is not None:
                try:
                    tracker.close()
                except Exception as e:  # noqa: BLE001
                    self._report("tracking", e, logging.WARNING)

    def _run_commands(self, cmds: _Commands, target: Any, stage: str) -> None:
        for what, fn in cmds.drain():
            try:
                fn(target)
            except Exception as e:  # noqa: BLE001 - a bad command (unknown character...) is reported, not fatal
                self._report(f"{stage} ({what})", e, logging.WARNING)
                with self._lock:
                    self._message = f"{what}: {e}"
                    self._command_error = (self._message, time.perf_counter())
            else:  # the failure is out of date once a later command works
                with self._lock:
                    if self._command_error is not None and self._message == self._command_error[0]:
                        self._message, self._command_error = "", None

    # ---------------------------------------------------------------------------- inference stage
    def _inference_loop(self, sess: _Session) -> None:
        prev = self._prev_inference
        while prev is not None and prev.is_alive() and not sess.stop.is_set():
            prev.join(POLL_S)  # the previous session's animator is still finishing a frame
        delay = BACKOFF_S[0]
        timer = self._timers["inference"]
        while not sess.stop.is_set():
            if self._rebuild_animator and self._animator is not None:
                with self._lock:
                    old, self._animator, self._rebuild_animator = self._animator, None, False
                self._close_animator(old)
            animator = self._animator
            if animator is None:
                if self._state != "error":  # a retry keeps the error on show until it succeeds
                    self._set_state(sess, "starting", LOADING)
                if hasattr(self._backend, "should_stop"):
                    self._backend.should_stop = sess.stop.is_set
                if hasattr(self._backend, "activity"):  # a long load step says what it does: the status shows it
                    self._backend.activity = sess.set_load_activity
                sess.busy = (LOADING, time.perf_counter())
                sess.loading(True)
                try:
                    animator = self._backend.create_animator(self._settings)
                except FrameCancelled:
                    return  # stopped while loading: preparing characters is not wanted any more
                except Exception as e:  # noqa: BLE001 - missing weights, bad character... said in the status
                    self._report("inference", e, start=True)
                    self._set_state(sess, "error", str(e))
                    sess.stop.wait(delay)
                    delay = min(delay * 2, BACKOFF_S[1])
                    continue
                finally:
                    sess.busy = None
                    sess.set_load_activity("")
                with self._lock:
                    self._animator, self._rebuild_animator = animator, False
                self._device = str(_safe(lambda: getattr(animator, "device", "")) or "")
                delay = BACKOFF_S[0]
                self._sync_character(animator)
                if self._character:
                    self._set_state(sess, "running")
                else:  # a refused explicit choice is never replaced by another file: say why, animate nothing
                    self._set_state(sess, "error", f"chosen character refused: {self._character_error}")
            sess.loading(False)  # an animator exists (loaded now, or kept from before): frames can be skipped
            if sess.lossless and animator is not sess.clock_animator:  # media time starts again at 0: an animator
                sess.clock_animator = animator  # kept from an earlier run forgets what it timed on that run
                restart = getattr(animator, "restart_clock", None)
                try:
                    if restart is not None:
                        restart()
                except Exception as e:  # noqa: BLE001 - reported; the run goes on with the state it has
                    self._report("inference", e)
            self._run_commands(self._animator_cmds, animator, "inference")
            self._sync_character(animator)
            item = sess.tracked.get(timeout=POLL_S)
            if item is None:
                continue
            if isinstance(item, EndOfStream):
                self._put(sess, sess.animated, item)
                return
            if self._paused:
                continue
            if not self._character:  # nothing live (the chosen one was refused) until it is fixed or another is picked
                _safe(getattr(animator, "follow_files", lambda: None))
                continue
            t0 = time.perf_counter()
            if hasattr(animator, "should_stop"):
                animator.should_stop = sess.stop.is_set
            sess.busy = ("frame", t0)
            set_voice = getattr(animator, "set_voice", None)
            if set_voice is not None:  # the voice at this frame's own time: a file read on the frames' clock at
                voice = sess.voice  # its timestamp, a microphone at its wall clock (read once: another thread
                rx = sess.voice_rx if voice is not None else None  # may restart it; a wall time on a file reads ahead)
                t_voice = item.timestamp if getattr(voice, "offline", False) else item.read_at
                set_voice(rx.features_at(t_voice) if rx is not None else None)
            try:
                # on a GPU the frame is queued, not awaited: its download overlaps the next frame's networks
                # and the publish stage waits for it (engine/device_frames.py)
                animate = animator.animate_async if getattr(animator, "device_paste", False) is True else animator.animate
                bgra = animate(item.driving_rgb, item.observation)
            except FrameCancelled:
                return  # stopped between two networks: the frame is not wanted any more
            except Exception as e:  # noqa: BLE001
                self._frame_failed(sess, "inference", e, advice=_out_of_memory_advice(e))
                continue
            finally:
                sess.busy = None
            t1 = time.perf_counter()
            timer.record(t1 - t0, t1)
            if sess.stop.is_set():
                return  # stopped during a long inference: the frame is not wanted any more
            if self._state == "error":
                self._set_state(sess, "running")
            if sess.voice is None:  # the voice starts with the first animated frame (a file plays from there)
                self._start_voice(sess)
            self._put(sess, sess.animated, AnimatedFrame(item, bgra))

    @staticmethod
    def _close_animator(animator: AnimatorStage | None) -> None:
        if animator is not None:
            try:
                animator.close()
            except Exception as e:  # noqa: BLE001
                _log.warning("closing the animator failed: %s", e)

    # ---------------------------------------------------------------------------- publish stage
    def _publish_loop(self, sess: _Session) -> None:
        timer = self._timers["publish"]
        while not sess.stop.is_set():
            self._monitor.sample()  # at most once a second (NVML/psutil), off the callers' threads
            item = sess.animated.get(timeout=POLL_S)
            if item is None:
                continue
            runners = list(self._runners.values())
            if isinstance(item, EndOfStream):
                self._finish(sess, runners, "input finished")
                return
            t0 = time.perf_counter()
            tr = item.tracked
            cap = tr.captured
            bgra = item.bgra
            if not isinstance(bgra, np.ndarray):  # a PendingFrame: wait for its download (the GPU paste-back)
                try:
                    bgra = bgra.result()
                except Exception as e:  # noqa: BLE001 - a device error surfaces here: the frame is lost, not the stage
                    self._frame_failed(sess, "inference", e, advice=_out_of_memory_advice(e))
                    continue
            bgra = bgra if bgra.flags.c_contiguous else np.ascontiguousarray(bgra)
            frame = PublishedFrame(index=cap.index if cap is not None else -1, capture_ts=tr.timestamp,
                                   publish_ts=t0, bgra=bgra, observation=tr.observation,
                                   source_bgr=cap.image_bgr if cap is not None else None, read_at=tr.read_at)
            for r in runners:
                if r.enabled:
                    self._offer(sess, r, frame)
            t1 = time.perf_counter()
            timer.record(t1 - t0, t1)
            self._e2e.record(t0 - tr.read_at, t1)  # the wall clock, whatever clock the frames are dated on
            sess.published += 1
            if self.max_frames is not None and sess.published >= self.max_frames:
                self._finish(sess, runners, f"{sess.published} frames published (max_frames)")
                return

    def _finish(self, sess: _Session, runners: list[OutputRunner], why: str) -> None:
        """The session's last frame was published: let every output finish (a recording is closed when the
        engine stops), then tell ``wait_finished``."""
        runners = [r for r in runners if r.enabled]
        for r in runners:
            self._offer(sess, r, END_OF_STREAM)
        for r in runners:
            while not sess.stop.is_set() and not r.wait_finished(POLL_S):
                pass
        sess.finished.set()
        self._set_state(sess, "running", why)

    def _offer(self, sess: _Session, runner: OutputRunner, item: PublishedFrame | EndOfStream) -> None:
        if not sess.lossless:
            if isinstance(item, EndOfStream):  # live: the end must not replace the last frame
                while not sess.stop.is_set() and not runner.frames.closed and not runner.frames.wait_empty(POLL_S):
                    pass
            runner.offer(item)
            return
        while not sess.stop.is_set() and not runner.frames.closed and runner.enabled:
            if runner.offer(item, timeout=POLL_S):
                return

    # ---------------------------------------------------------------------------- outputs
    def _target_fps(self) -> float:
        return float(self._settings.performance.target_fps)

    def _build_runners(self, lossless: bool) -> None:
        """A runner for the in-process callbacks (always, switched as the settings say), for every other output
        of the table that is on, and for each extra output."""
        self._runners = {CALLBACKS: OutputRunner(self._callbacks, lossless=lossless, enabled=self.output_on(CALLBACKS))}
        for spec in OUTPUTS:
            if spec.name != CALLBACKS and self.output_on(spec.name):
                self._add_runner(spec.name, lossless, start=False)
        for out in self._extra_outputs:
            self._runners[out.name] = OutputRunner(out, lossless=lossless, enabled=self.output_on(out.name))

    def _add_runner(self, name: str, lossless: bool, start: bool = True) -> None:
        s = self._settings.outputs
        try:
            spec = output_spec(name)
            out = spec.factory(s, self._record_fps() if spec.capture_rate else self._target_fps(), not lossless)
        except ValueError as e:
            self._report("outputs", e)
            return
        voice = self._session.voice if self._session is not None else None
        if voice is not None and self._voice_is_input_sound(self._session):
            voice = None  # the voice is the input's own soundtrack: the recording keeps that as it is
        if voice is not None and hasattr(out, "attach_voice"):  # the recording gets the sound the voice hears
            out.attach_voice(voice)
        elif lossless and hasattr(out, "attach_sound_of"):
            source = self._settings.capture.source.strip()
            if describe_source(source) == "video":  # every frame of a video, in order: its own sound, in step
                out.attach_sound_of(Path(source).expanduser())
        runner = OutputRunner(out, lossless=lossless)
        with self._lock:
            self._runners[name] = runner
        if start:
            runner.start()

    def _record_fps(self) -> float:
        """A file source records at its own rate, a camera at its requested rate (a live recording is also
        paced by the frames' capture times, so that it plays back at real speed whatever the engine's rate)."""
        if is_finite(self._settings.capture):
            try:
                src = open_source(self._settings.capture)
                fps = src.fps
                src.close()
                return fps
            except CaptureError:
                pass
        return float(self._settings.capture.fps)

    def _reconcile_outputs(self, old: Settings) -> None:
        """Rebuild outputs whose configuration changed; switch others on or off as the settings say."""
        with self._lock:
            sess = self._session
            if sess is None:
                return
            new_s, old_s = self._settings.outputs, old.outputs
            stale = [self._runners.pop(o.name) for o in OUTPUTS
                     if o.name in self._runners and o.needs_rebuild(old_s, new_s)]
            self._switched_off -= set(OUTPUT_SPECS)  # the settings say again what is on
        for r in stale:
            r.stop()
        for spec in OUTPUTS:
            on = spec.is_on(new_s)
            if spec.name in self._runners:
                self._runners[spec.name].set_enabled(on)
            elif on:
                self._add_runner(spec.name, sess.lossless)


def _voice_timeline(settings: Settings) -> float | None:
    """``voice.sources.voice_timeline`` without importing the voice package while the voice is off."""
    if settings.audio.mode == "off" or not is_no_camera(settings.capture):
        return None
    from liveportrait_core.voice.sources import voice_timeline  # noqa: PLC0415

    return voice_timeline(settings)


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - purely informational
        return None
