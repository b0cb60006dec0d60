"""Engine: threads and hand-offs, command API, status, and the faults it must survive.

The tracker and animator here are test doubles (the engine's ``Backend`` seam), so these tests are
about the engine itself: ordering, dropping, commands on the owning threads, recovery and stop.
The real networks run end to end in tests/test_run_cli.py.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from liveportrait_core.engine import core as engine_mod
from liveportrait_core.capture.sources import CaptureError
from liveportrait_core.engine.core import Engine
from liveportrait_core.outputs.base import PublishedFrame
from liveportrait_core.settings import Settings

W = H = 32


def _wait(cond, timeout: float = 10.0) -> bool:
    """Poll ``cond`` until true (a deadline for a hang, not a speed assertion)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def _settled(count, quiet_s: float = 0.3, timeout: float = 10.0) -> int | None:
    """The value of ``count()`` once it has stopped changing for ``quiet_s`` (frames already in flight when a
    stage was told to stop have come out); None when it still changes at the deadline (it never stopped)."""
    end = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.02)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    return None


class FakeTracker:
    def __init__(self, log: list) -> None:
        self.log = log
        self.threads: set[int] = set()

    def track(self, frame):
        self.threads.add(threading.get_ident())
        return SimpleNamespace(found=True, index=frame.index), np.full((4, 4, 3), frame.index % 256, np.uint8)

    def no_input(self, timestamp):
        self.log.append("no_input")
        return SimpleNamespace(found=False, index=-1)

    def calibrate(self):
        self.log.append(("tracker.calibrate", threading.get_ident()))

    def update_settings(self, settings):
        self.log.append("tracker.update_settings")

    def close(self):
        self.log.append("tracker.close")


class FakeAnimator:
    """Encodes the driving frame's index in the output pixels, so that tests can check order."""

    def __init__(self, log: list, fail_on: set[int] = frozenset(), gate: threading.Event | None = None) -> None:
        self.log = log
        self.fail_on = set(fail_on)
        self.gate = gate
        self.names = ["a.png", "b.png", "c.png"]
        self.current = 0
        self.threads: set[int] = set()
        self.busy = threading.Event()

    def animate(self, driving, observation):
        self.threads.add(threading.get_ident())
        if self.gate is not None:
            self.busy.set()
            self.gate.wait()
        i = observation.index
        if i in self.fail_on:
            raise RuntimeError(f"injected failure on frame {i}")
        out = np.zeros((H, W, 4), np.uint8)
        out[..., 0] = i % 256 if i >= 0 else 255
        out[..., 1] = max(i, 0) // 256
        out[..., 2] = self.current
        out[..., 3] = 255
        return out

    def characters(self):
        return list(self.names)

    def current_character(self):
        return self.names[self.current]

    def select_character(self, key):
        self.log.append(("select", key, threading.get_ident()))
        self.current = key if isinstance(key, int) else self.names.index(key)
        return self.names[self.current]

    def next_character(self, step=1):
        self.current = (self.current + step) % len(self.names)
        return self.names[self.current]

    def calibrate(self):
        self.log.append(("animator.calibrate", threading.get_ident()))

    def set_expression(self, name, active, strength=1.0):
        self.log.append(("expression", name, active, strength))

    def expression_names(self):
        return ["smile", "wink"]

    def update_settings(self, settings):
        self.log.append("animator.update_settings")

    def close(self):
        self.log.append("animator.close")


class FakeBackend:
    def __init__(self, **animator_kw) -> None:
        self.log: list = []
        self.animator_kw = animator_kw
        self.trackers: list[FakeTracker] = []
        self.animators: list[FakeAnimator] = []
        self.create_threads: set[int] = set()
        self.release_animator = threading.Event()
        self.release_animator.set()

    def create_tracker(self, settings):
        self.create_threads.add(threading.get_ident())
        self.trackers.append(FakeTracker(self.log))
        return self.trackers[-1]

    def create_animator(self, settings):
        self.create_threads.add(threading.get_ident())
        if not self.release_animator.wait(60):  # a failed test must not leave a stage blocked for good
            raise RuntimeError("the test never released the model load")
        self.animators.append(FakeAnimator(self.log, **self.animator_kw))
        return self.animators[-1]

    def list_characters(self, settings):
        return ["listed.png"]

    def expression_names(self):
        return ["smile"]


def _slow_backend(seconds: float, device: str | None = None) -> "FakeBackend":
    """A FakeBackend whose animator takes ``seconds`` per frame (on ``device`` when given)."""

    class SlowAnimator(FakeAnimator):
        def animate(self, driving, observation):
            time.sleep(seconds)
            return super().animate(driving, observation)

    if device is not None:
        SlowAnimator.device = device
    backend = FakeBackend()
    backend.create_animator = lambda s: SlowAnimator(backend.log)  # type: ignore[method-assign]
    return backend


class Collect:
    """An output that keeps what it receives."""

    def __init__(self, name: str = "collect", slow_s: float = 0.0) -> None:
        self.name = name
        self.frames: list[PublishedFrame] = []
        self.slow_s = slow_s
        self.opened = self.closed = 0

    def open(self):
        self.opened += 1

    def send(self, frame):
        if self.slow_s:
            time.sleep(self.slow_s)
        self.frames.append(frame)

    def close(self):
        self.closed += 1


def _video(path: Path, n: int, fps: float = 25.0) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    for i in range(n):
        w.write(np.full((H, W, 3), i, np.uint8))
    w.release()
    return path


def _settings(source: str, realtime: bool = False, loop: bool = False) -> Settings:
    s = Settings()
    s.capture.source, s.capture.realtime, s.capture.loop = source, realtime, loop
    s.outputs.obs_source = True
    return s


def _engine_threads() -> list[threading.Thread]:
    return engine_mod.engine_threads()


pytestmark = pytest.mark.usefixtures("stop_started_engines")


# ------------------------------------------------------------------------------------------------


def test_file_input_reaches_the_output_complete_and_in_order(tmp_path):
    backend, out = FakeBackend(), Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 40))), [out], backend=backend)
    got_cb: list[int] = []
    eng.add_frame_callback(lambda f: got_cb.append(f.index))
    main = threading.get_ident()
    eng.start()
    assert eng.wait_finished(30)
    st = eng.status()
    assert eng.stop(1.0)
    assert [f.index for f in out.frames] == list(range(40))
    assert [int(f.bgra[0, 0, 0]) for f in out.frames] == list(range(40))
    assert got_cb == list(range(40))
    assert all(f.bgra.flags.c_contiguous and f.bgra.shape == (H, W, 4) for f in out.frames)
    assert all(f.publish_ts >= f.capture_ts for f in out.frames)
    assert main not in backend.create_threads  # heavy construction never on the caller's thread
    assert st.frames == 40 and st.dropped == 0 and st.latency_p50_ms <= st.latency_p95_ms
    assert set(st.stages) == {"capture", "tracking", "inference", "publish"} and st.stages["inference"].count == 40
    assert st.character == "a.png" and st.cpu.ram_total_mb > 0  # sampled on the publish thread
    assert out.opened == 1 and out.closed == 1 and "tracker.close" in backend.log
    assert eng.status().state == "stopped"


def test_max_frames_limits_the_run(tmp_path):
    out = Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 30))), [out], backend=FakeBackend(), max_frames=7)
    eng.start()
    assert eng.wait_finished(30)
    eng.stop()
    assert [f.index for f in out.frames] == list(range(7))


def test_start_returns_while_models_load_and_status_says_starting(tmp_path):
    backend = FakeBackend()
    backend.release_animator.clear()  # model loading "takes forever"
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 5))), [Collect()], backend=backend)
    eng.start()  # must not block on the loading
    assert _wait(lambda: eng.status().state == "starting")
    assert "loading" in eng.status_line()
    backend.release_animator.set()
    assert eng.wait_finished(30)
    assert eng.stop()


def test_live_source_drops_stale_frames_behind_a_slow_stage(tmp_path):
    """Realtime pacing plus a slow animator: frames are dropped, never queued, and the order is kept."""

    backend = _slow_backend(0.05)
    out = Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 20, fps=100.0)), realtime=True, loop=True),
                 [out], backend=backend)
    eng.start()
    assert _wait(lambda: len(out.frames) >= 10)
    st = eng.status()
    assert eng.stop()
    idx = [f.index for f in out.frames]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert st.skipped > 0 and st.dropped_by_stage["tracked"] > 0  # input frames the busy stage never saw
    assert st.fps > 0 and 0 < st.latency_p50_ms <= st.latency_p95_ms
    assert st.state == "running" and "fps" in st.line()


def test_inference_exception_is_reported_and_the_engine_keeps_going(tmp_path):
    backend, out = FakeBackend(fail_on={3, 4}), Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 12))), [out], backend=backend)
    eng.start()
    assert eng.wait_finished(30)
    st = eng.status()
    eng.stop()
    assert [f.index for f in out.frames] == [i for i in range(12) if i not in (3, 4)]
    assert sum("injected failure" in e for e in st.errors) == 2
    assert "error(s), last:" in st.line()


def test_capture_lost_midrun_idles_then_recovers(monkeypatch):
    """The input vanishes after 5 frames, fails to reopen twice, then comes back."""
    opens = {"n": 0}

    class FlakySource:
        finite, fps, description = False, 30.0, "flaky camera"

        def __init__(self) -> None:
            self.reads = 0

        def read(self):
            self.reads += 1
            if opens["n"] == 1 and self.reads > 5:
                raise CaptureError("camera unplugged")
            time.sleep(0.01)
            return np.zeros((H, W, 3), np.uint8)

        def close(self):
            pass

    def fake_open(cs):
        opens["n"] += 1
        if opens["n"] in (2, 3):
            raise CaptureError("camera 0 could not be opened")
        return FlakySource()

    monkeypatch.setattr(engine_mod, "open_source", fake_open)
    monkeypatch.setattr(engine_mod, "BACKOFF_S", (0.05, 0.1))
    backend, out = FakeBackend(), Collect()
    eng = Engine(_settings("0", realtime=True), [out], backend=backend)
    eng.start()
    assert _wait(lambda: opens["n"] >= 4 and sum(f.index >= 6 for f in out.frames) >= 3)
    st = eng.status()
    eng.stop()
    assert "no_input" in backend.log  # the character idled while the camera was away
    idle = [f for f in out.frames if f.index == -1]
    assert idle and all(f.source_bgr is None for f in idle)
    assert any("camera unplugged" in e for e in st.errors) and any("could not be opened" in e for e in st.errors)
    assert st.state == "running" and st.tracking == "face"


def test_failing_output_does_not_stall_the_others_and_is_retried(tmp_path, monkeypatch):
    class Flaky(Collect):
        def open(self):
            super().open()
            if self.opened == 1:
                raise OSError("sender busy")

        def send(self, frame):
            if frame.index % 3 == 0:
                raise RuntimeError("send failed")
            super().send(frame)

    monkeypatch.setattr("liveportrait_core.outputs.runner.DEFAULT_BACKOFF_S", (0.01, 0.02))
    good, flaky = Collect("good"), Flaky("flaky")
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 30)), realtime=True, loop=True), [good, flaky],
                 backend=FakeBackend())
    eng.start()
    assert _wait(lambda: len(good.frames) >= 30 and len(flaky.frames) >= 5)
    st = eng.status()
    eng.stop()
    f = st.outputs["flaky"]
    assert f.failures >= 2 and f.sent >= 5
    assert st.outputs["good"].failures == 0 and st.outputs["good"].state == "running"
    assert flaky.opened >= 2 and flaky.closed >= 2  # closed after each failure, reopened


def test_stop_during_a_slow_inference_returns_without_waiting_for_it(tmp_path):
    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 5)), realtime=True, loop=True), [Collect()],
                 backend=backend)
    eng.start()
    assert _wait(lambda: bool(backend.animators) and backend.animators[0].busy.is_set())
    # The inference is blocked until the gate opens: stop must give up on it instead of hanging.
    assert eng.stop(timeout=0.3) is False
    assert eng.status().state == "stopped"
    assert any(t.name == "lp-inference" and t.is_alive() for t in _engine_threads())
    gate.set()  # the inference finishes its frame, sees the stop and exits on its own
    assert _wait(lambda: not _engine_threads())


def test_restart_reuses_the_loaded_animator(tmp_path):
    backend = FakeBackend()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 5))), [Collect()], backend=backend)
    for _ in range(2):
        eng.start()
        assert eng.wait_finished(30)
        assert eng.stop()
    assert len(backend.animators) == 1 and len(backend.trackers) == 2


def test_commands_run_on_their_owning_threads_in_order(tmp_path):
    backend = FakeBackend()
    out = Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 10)), realtime=True, loop=True), [out], backend=backend)
    assert eng.characters() == ["listed.png"] and eng.expression_names() == ["smile"]  # before loading
    eng.select_character("b.png")  # queued before the animator exists
    eng.start()
    assert _wait(lambda: len(out.frames) >= 3)
    eng.calibrate()
    eng.set_expression("smile", True, 0.5)
    eng.next_character()
    assert _wait(lambda: eng.status().character == "c.png")
    assert _wait(lambda: any(f.bgra[0, 0, 2] == 2 for f in out.frames[-3:]))
    anim, tracker = backend.animators[0], backend.trackers[0]
    assert eng.characters() == ["a.png", "b.png", "c.png"] and eng.expression_names() == ["smile", "wink"]
    log = backend.log
    sel = next(e for e in log if e[0] == "select")
    assert sel[1] == "b.png" and sel[2] in anim.threads
    assert ("expression", "smile", True, 0.5) in log
    assert any(e[0] == "animator.calibrate" and e[1] in anim.threads for e in log if isinstance(e, tuple))
    assert any(e[0] == "tracker.calibrate" and e[1] in tracker.threads for e in log if isinstance(e, tuple))
    eng.stop()


def test_bad_command_is_reported_not_fatal(tmp_path):
    backend, out = FakeBackend(), Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 10)), realtime=True, loop=True), [out], backend=backend)
    eng.start()
    assert _wait(lambda: len(out.frames) >= 2)
    eng.select_character("missing.png")
    assert _wait(lambda: any("missing.png" in e for e in eng.status().errors))
    n = len(out.frames)
    assert _wait(lambda: len(out.frames) > n + 2)
    eng.stop()


def test_update_settings_restarts_only_what_changed(tmp_path, monkeypatch):
    backend, out = FakeBackend(), Collect()
    a, b = _video(tmp_path / "a.avi", 10), _video(tmp_path / "b.avi", 10)
    opened: list[str] = []
    real_open = engine_mod.open_source
    monkeypatch.setattr(engine_mod, "open_source", lambda cs: opened.append(cs.source) or real_open(cs))
    s = _settings(str(a), realtime=True, loop=True)
    eng = Engine(s, [out], backend=backend)
    eng.start()
    assert _wait(lambda: len(out.frames) >= 2)
    s2 = s.copy()
    s2.capture.source = str(b)
    s2.animation.driving_multiplier = 1.5
    s2.tracking.crop_scale = 2.5
    eng.update_settings(s2)
    assert _wait(lambda: str(b) in opened and "animator.update_settings" in backend.log
                 and "tracker.update_settings" in backend.log)
    eng.stop()
    assert len(backend.trackers) == 1 and len(backend.animators) == 1  # nothing else was rebuilt


def test_model_change_rebuilds_the_animator(tmp_path):
    backend, out = FakeBackend(), Collect()
    s = _settings(str(_video(tmp_path / "a.avi", 10)), realtime=True, loop=True)
    eng = Engine(s, [out], backend=backend)
    eng.start()
    assert _wait(lambda: len(out.frames) >= 2)
    s2 = s.copy()
    s2.model.precision = "fp32"
    eng.update_settings(s2)
    assert _wait(lambda: len(backend.animators) == 2 and "animator.close" in backend.log)
    eng.stop()


def test_pause_stops_publishing_and_resume_continues(tmp_path):
    out = Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 10)), realtime=True, loop=True), [out],
                 backend=FakeBackend())
    eng.start()
    assert _wait(lambda: len(out.frames) >= 2)
    eng.pause(True)
    assert eng.paused and _wait(lambda: eng.status().state == "paused")
    paused_at = len(out.frames)
    n = _settled(lambda: len(out.frames))
    assert n is not None, "frames kept coming while paused"
    assert n <= paused_at + 3  # only frames already between the stages when the pause came
    eng.pause(False)
    assert _wait(lambda: len(out.frames) > n + 3) and eng.status().state == "running"
    eng.stop()


def test_output_toggle_and_callback_removal(tmp_path):
    out = Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 10)), realtime=True, loop=True), [out],
                 backend=FakeBackend())
    seen: list[int] = []
    h = eng.add_frame_callback(lambda f: seen.append(f.index))
    eng.start()
    assert _wait(lambda: len(seen) >= 2)
    eng.remove_frame_callback(h)
    n_seen = len(seen)
    eng.set_output_enabled("collect", False)
    n_out = _settled(lambda: len(out.frames))
    assert n_out is not None, "a disabled output kept getting frames"
    after = _settled(lambda: len(seen))
    assert after is not None and after <= n_seen + 1  # at most a call that was under way at the removal
    assert eng.status().outputs["collect"].state == "disabled"
    eng.set_output_enabled("collect", True)
    assert _wait(lambda: len(out.frames) > n_out + 2)
    eng.stop()


def test_outputs_follow_the_table_and_a_toggle_writes_the_setting(tmp_path):
    """What is on lives in the settings: a switch toggled at run time is written there (the controller and a
    later settings change then agree); the recording keeps its target and is switched off in the engine."""
    from liveportrait_core.outputs import table

    s = _settings(str(_video(tmp_path / "d.avi", 10)), realtime=True, loop=True)
    s.outputs.record = str(tmp_path / "out")
    out = Collect()
    eng = Engine(s, [out], backend=FakeBackend())
    eng.set_output_enabled("preview", True)  # before start: only the setting changes
    assert eng.settings.outputs.preview is True and eng.output_on("preview")
    eng.set_output_enabled("preview", False)
    assert eng.settings.outputs.preview is False and not eng.output_on("preview")
    eng.start()
    try:
        on = {o.name for o in table.OUTPUTS if o.is_on(eng.settings.outputs)}
        assert on == {table.CALLBACKS, table.RECORD}
        assert set(eng.status().outputs) == on | {"collect"}  # the runners: the table's outputs that are on, extras
        assert _wait(lambda: eng.status().outputs["record"].sent > 0)
        eng.set_output_enabled("record", False)
        assert eng.settings.outputs.record == str(tmp_path / "out") and not eng.output_on("record")
        assert _wait(lambda: eng.status().outputs["record"].state == "disabled")
        eng.set_output_enabled("obs_source", False)
        assert eng.settings.outputs.obs_source is False and not eng.status().outputs["obs_source"].enabled
        changed = eng.settings
        changed.outputs.ndi_name = "other"  # any output change: the settings say again what is on
        eng.update_settings(changed)
        assert eng.output_on("record") and eng.status().outputs["record"].enabled
        assert not eng.status().outputs["obs_source"].enabled  # the toggle was written, so it stays
    finally:
        eng.stop()


def test_missing_models_show_as_error_and_keep_trying(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_mod, "BACKOFF_S", (0.05, 0.1))
    calls = {"n": 0}

    class NoModels(FakeBackend):
        def create_animator(self, settings):
            calls["n"] += 1
            raise FileNotFoundError("models/liveportrait/base_models/warping_module.pth is missing; "
                                    "run python -m liveportrait_core download-models")

    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 5)), realtime=True, loop=True), [Collect()],
                 backend=NoModels())
    eng.start()
    assert _wait(lambda: calls["n"] >= 2 and eng.status().state == "error")
    st = eng.status()
    assert st.state == "error" and "download-models" in st.message and "download-models" in eng.status_line()
    assert eng.stop()


def test_stop_cancels_a_long_frame_in_flight(tmp_path):
    """A CPU frame takes seconds: the animator is told to stop between networks, and stop() is prompt."""
    from liveportrait_core.engine.backend import FrameCancelled

    entered = threading.Event()

    class Slow(FakeAnimator):
        should_stop = staticmethod(lambda: False)

        def animate(self, driving, observation):
            entered.set()
            end = time.monotonic() + 30.0  # "W then G" on a slow CPU
            while time.monotonic() < end:
                if self.should_stop():
                    raise FrameCancelled("stopping")
                time.sleep(0.01)
            return super().animate(driving, observation)

    backend = FakeBackend()
    backend.create_animator = lambda s: Slow(backend.log)  # type: ignore[method-assign]
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 5))), [Collect()], backend=backend)
    eng.start()
    assert entered.wait(10)
    assert eng.stop(1.0)
    assert not eng.running and not eng.status().errors


def test_stop_from_a_frame_callback_does_not_deadlock(tmp_path):
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 10)), realtime=True, loop=True), [Collect()],
                 backend=FakeBackend())
    result: list[bool] = []
    eng.add_frame_callback(lambda f: result.append(eng.stop(0.5)) if not result else None)
    eng.start()
    assert _wait(lambda: bool(result))
    assert eng.status().state == "stopped" and not eng.running


def test_a_failed_character_command_names_the_hotkey_slot_and_clears_when_a_later_one_works(tmp_path, monkeypatch):
    """Issue 12 bug 8: hotkey "character 9" (slot 8) was reported as "select character 8: …", and the message
    stayed in the status line for good."""
    backend, out = FakeBackend(), Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 10)), realtime=True, loop=True), [out], backend=backend)
    eng.start()
    assert _wait(lambda: len(out.frames) >= 2)
    eng.select_character(8)  # hotkey "character 9"; the fake has 3 characters
    assert _wait(lambda: eng.status().message.startswith("select character 9: "))
    eng.select_character("b.png")
    assert _wait(lambda: eng.status().character == "b.png")
    assert _wait(lambda: eng.status().message == "")  # the error list keeps it for RECENT_ERROR_S
    eng.select_character(8)
    assert _wait(lambda: eng.status().message.startswith("select character 9: "))
    now = time.perf_counter()
    monkeypatch.setattr(engine_mod.time, "perf_counter", lambda: now + engine_mod.RECENT_ERROR_S + 1)
    assert eng.status().message == ""  # expires like the error list
    monkeypatch.undo()
    eng.stop()


# ------------------------------------------------------------------------------------------------ issue 12


def test_max_frames_counts_published_frames_in_live_mode(tmp_path):
    """Live input behind a slow stage: --max-frames N ends after N frames *published* (it used to count
    captured frames, most of them skipped, so a live run could end with none published)."""

    backend = _slow_backend(0.05)
    out = Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 20, fps=200.0)), realtime=True, loop=True),
                 [out], backend=backend, max_frames=3)
    eng.start()
    assert eng.wait_finished(30)
    st = eng.status()
    assert eng.stop()
    assert len(out.frames) == 3 and st.frames == 3 and st.skipped > 0


def test_stop_finalises_the_outputs_even_while_a_stage_is_stuck_and_join_waits_for_it(tmp_path):
    """A network cannot be interrupted: stop() still closes every output (a recording is finalised) within its
    timeout, and join() waits for the stuck stage, so that a command can end cleanly afterwards."""
    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    out = Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 5)), realtime=True, loop=True), [out], backend=backend)
    eng.start()
    assert _wait(lambda: bool(backend.animators) and backend.animators[0].busy.is_set())
    assert eng.stop(timeout=0.3) is False
    assert out.closed == 1  # the output was joined first, before the stuck stage used up the timeout
    assert [t.name for t in eng.lingering_threads()] == ["lp-inference"]
    assert eng.join(0.1) is False
    gate.set()
    assert eng.join(10) and eng.lingering_threads() == []


def test_status_says_what_is_in_flight_on_a_slow_pipeline(tmp_path):
    """Seconds per frame: the status says "loading ..." then "computing frame N" instead of "0.0 fps | 0/0 ms"."""
    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    backend.release_animator.clear()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 5)), realtime=True, loop=True), [Collect()], backend=backend)
    eng.start()
    assert _wait(lambda: eng.status().state == "starting" and eng.status().activity)
    assert eng.status_line().startswith("starting: loading the networks and preparing the character (")
    backend.release_animator.set()
    assert _wait(lambda: bool(backend.animators) and backend.animators[0].busy.is_set())
    line = eng.status_line()
    assert "computing frame 1" in line and "0.0 fps" not in line and "latency" not in line, line
    gate.set()
    assert eng.stop()


def test_idle_frames_are_not_counted_as_skipped_input(monkeypatch):
    """No camera: the idle frames made while it is away are not input a user lost (the count stayed in the
    thousands in OBS with no camera)."""
    monkeypatch.setattr(engine_mod, "BACKOFF_S", (0.05, 0.1))

    backend = _slow_backend(0.1)  # slower than the idle rate: idle frames are replaced
    out = Collect()
    eng = Engine(_settings("57"), [out], backend=backend)  # no such camera
    eng.start()
    assert _wait(lambda: len(out.frames) >= 5 and eng.status().dropped_by_stage["tracked"] == 0)
    time.sleep(0.3)
    st = eng.status()
    assert st.skipped == 0 and st.dropped == 0 and st.tracking == "idle (no input)"
    assert eng.stop()


def test_below_target_is_logged_once_with_advice(tmp_path, caplog):
    backend = _slow_backend(0.05, device="cpu")
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 20, fps=100.0)), realtime=True, loop=True),
                 [Collect()], backend=backend)
    eng.start()
    assert _wait(lambda: eng.status().frames >= 5)
    for _ in range(5):
        st = eng.status()
    assert eng.stop()
    warnings = [r for r in caplog.records if "below target" in r.getMessage()]
    assert len(warnings) == 1 and "on the CPU" in warnings[0].getMessage()
    assert "below target" in st.line()  # the status line keeps saying it


def test_a_start_error_that_names_its_fix_is_logged_once_without_traceback(tmp_path, monkeypatch, caplog):
    from liveportrait_core.models.checkpoint.weights import WeightsError

    monkeypatch.setattr(engine_mod, "BACKOFF_S", (0.05, 0.1))
    calls = {"n": 0}

    class NoModels(FakeBackend):
        def create_animator(self, settings):
            calls["n"] += 1
            raise WeightsError("LivePortrait weights are not usable: x.pth: missing; run download-models")

    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 5)), realtime=True, loop=True), [Collect()],
                 backend=NoModels())
    eng.start()
    assert _wait(lambda: calls["n"] >= 3)
    st = eng.status()
    assert eng.stop()
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "weights are not usable" in r.getMessage()]
    assert len(errors) == 1 and not errors[0].exc_info and errors[0].start_error
    assert len([e for e in st.errors if "weights are not usable" in e]) == 1  # a retry is not listed again


def test_input_passed_over_while_the_networks_load_is_not_counted_as_skipped(tmp_path):
    """A live source keeps coming while the model loads (seconds on a CPU, ~500 frames in the walkthrough):
    nothing could animate those frames, so "input skipped (busy)" does not count them; it counts what is
    skipped while frames are being animated."""
    backend = FakeBackend()
    backend.release_animator.clear()  # the model load takes until the test releases it
    out = Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 20, fps=200.0)), realtime=True, loop=True),
                 [out], backend=backend)
    eng.start()
    try:
        assert _wait(lambda: sum(eng.status().dropped_by_stage.values()) >= 20)  # many frames passed over...
        assert eng.status().skipped == 0  # ...none of them counted
    finally:
        backend.release_animator.set()  # never leave the stage blocked in its load (later tests check threads)
    assert _wait(lambda: len(out.frames) >= 3)
    st = eng.status()
    assert 0 <= st.skipped < st.dropped_by_stage["captured"] + st.dropped_by_stage["tracked"]
    assert eng.stop()
