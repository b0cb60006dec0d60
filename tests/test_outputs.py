"""Outputs: the runner isolates slow/failing outputs; recorders keep frames (and alpha); Spout's call
convention; preview composition; missing packages / wrong OS give clear messages."""
from __future__ import annotations

import logging
import sys
import threading
import time
import types

import cv2
import numpy as np
import pytest

from liveportrait_core import outputs
from liveportrait_core.engine.handoff import END_OF_STREAM
from liveportrait_core.outputs.base import OutputUnavailable, PublishedFrame
from liveportrait_core.outputs.callback import CallbackOutput
from liveportrait_core.outputs.ndi import NdiOutput
from liveportrait_core.outputs.preview import PreviewWindow
from liveportrait_core.outputs.recorder import PngSequenceRecorder, VideoRecorder, make_recorder
from liveportrait_core.outputs.runner import OutputRunner
from liveportrait_core.outputs.spout import GL_BGRA, SpoutOutput
from liveportrait_core.settings import OutputSettings


def _frame(i: int, h: int = 48, w: int = 64, alpha: int | None = None) -> PublishedFrame:
    bgra = np.zeros((h, w, 4), np.uint8)
    bgra[..., 0] = i * 20 % 256
    bgra[..., 1] = 100
    bgra[..., 3] = np.linspace(0, 255, w, dtype=np.uint8)[None, :] if alpha is None else alpha
    return PublishedFrame(i, 1.0, 1.01, bgra)


def _wait(cond, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.01)
    return bool(cond())


class Slow:
    name = "slow"

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.got: list[int] = []

    def open(self):
        pass

    def send(self, frame):
        self.gate.wait()
        self.got.append(frame.index)

    def close(self):
        pass


class Keep:
    def __init__(self, name="keep"):
        self.name = name
        self.got: list[int] = []

    def open(self):
        pass

    def send(self, frame):
        self.got.append(frame.index)

    def close(self):
        pass


def test_a_blocked_output_does_not_stall_another():
    gate = threading.Event()
    slow, fast = Slow(gate), Keep()
    runners = [OutputRunner(slow), OutputRunner(fast)]
    for r in runners:
        r.start()
    for i in range(20):
        for r in runners:
            r.offer(_frame(i))  # never blocks, whatever the output does
        assert _wait(lambda: fast.got[-1:] == [i])
    gate.set()
    for r in runners:
        r.stop()
        assert r.join(5)
    assert fast.got == list(range(20))
    assert slow.got and slow.got == sorted(slow.got) and len(slow.got) < 20  # it skipped stale frames
    assert runners[0].status().dropped > 0


def test_unavailable_output_is_reported_once_and_not_retried():
    class Missing(Keep):
        opens = 0

        def open(self):
            Missing.opens += 1
            raise OutputUnavailable("needs SomePackage (pip install somepackage)")

    r = OutputRunner(Missing("missing"), backoff_s=(0.01, 0.01))
    r.start()
    assert _wait(lambda: r.status().state == "unavailable")
    for i in range(5):
        r.offer(_frame(i))
    r.offer(END_OF_STREAM)
    assert r.wait_finished(5)  # it still takes END so that lossless producers never block on it
    r.stop()
    assert r.join(5)
    st = r.status()
    assert Missing.opens == 1 and "pip install somepackage" in st.message and st.state == "unavailable"


def test_lossless_runner_delivers_every_frame():
    keep = Keep()
    r = OutputRunner(keep, lossless=True)
    r.start()
    for i in range(30):
        assert r.offer(_frame(i), timeout=5)
    assert r.offer(END_OF_STREAM, timeout=5) and r.wait_finished(5)
    r.stop()
    r.join(5)
    assert keep.got == list(range(30))


def test_callback_output_keeps_going_when_a_callback_raises():
    cb = CallbackOutput()
    got: list[int] = []
    bad = cb.add(lambda f: 1 / 0)
    cb.add(lambda f: got.append(f.index))
    cb.send(_frame(1))
    assert cb.remove(bad) and not cb.remove(bad)
    cb.send(_frame(2))
    assert got == [1, 2] and cb.errors == 1


def test_mp4_recording_keeps_every_frame_in_order(tmp_path):
    rec = VideoRecorder(tmp_path / "out.mp4", fps=25)
    rec.open()
    for i in range(10):
        rec.send(_frame(i, alpha=255))
    rec.send(_frame(10, h=96, w=128, alpha=255))  # another size (character switch) is resized, not lost
    rec.close()
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    blues = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        assert img.shape == (48, 64, 3)
        blues.append(int(img[..., 0].mean().round()))
    assert len(blues) == 11
    assert all(abs(b - i * 20) <= 4 for i, b in enumerate(blues))  # lossy codec: close, and in order
    assert cap.get(cv2.CAP_PROP_FPS) == 25


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_of_odd_size_keeps_every_pixel_and_says_so(tmp_path, caplog, suffix):
    """The encoder needs even sides: a 63x47 frame is recorded as 64x48 with one column and one row of
    background added (OpenCV alone would drop a row and a column), and the log says why."""
    rec = VideoRecorder(tmp_path / f"odd{suffix}", fps=10, background=(0, 0, 0))
    rec.open()
    f = _frame(0, h=47, w=63, alpha=255)
    f.bgra[..., :3] = 0
    f.bgra[-1, :, :3] = 255  # a white last row and column: they must survive
    f.bgra[:, -1, :3] = 255
    with caplog.at_level(logging.INFO, logger="liveportrait_core.outputs.recorder"):
        rec.send(f)
        rec.close()
    assert "63x47" in caplog.text and "64x48" in caplog.text and "even sides" in caplog.text
    ok, img = cv2.VideoCapture(str(tmp_path / f"odd{suffix}")).read()
    assert ok and img.shape == (48, 64, 3)
    luma = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(int)
    assert luma[46, 8:56].mean() > 180 and luma[8:40, 62].mean() > 180  # the frame's last row and column
    assert luma[47, 8:56].mean() < 80 and luma[8:40, 63].mean() < 80  # the added background (black)


def test_live_recording_follows_capture_times(tmp_path):
    """Frames at 0, 0.1, 0.12 and 0.35 s into a 10 fps video: 1, +1, skipped, +2 copies (real-time playback)."""
    rec = VideoRecorder(tmp_path / "live.avi", fps=10, timed=True)
    rec.open()
    for i, t in enumerate((5.0, 5.1, 5.12, 5.35)):
        rec.send(PublishedFrame(i, t, t + 0.01, _frame(i, alpha=255).bgra))
    rec.close()
    cap = cv2.VideoCapture(str(tmp_path / "live.avi"))
    blues = []
    while (r := cap.read())[0]:
        blues.append(int(r[1][..., 0].mean().round() / 20 + 0.5))
    assert rec.frames_written == 4 and blues == [0, 1, 3, 3]


def test_mp4_composites_transparency_over_the_background(tmp_path):
    rec = VideoRecorder(tmp_path / "out.avi", fps=10, background=(0, 0, 0))
    rec.open()
    f = _frame(5)  # alpha ramps 0..255 left to right, B = 100
    rec.send(f)
    rec.close()
    ok, img = cv2.VideoCapture(str(tmp_path / "out.avi")).read()
    assert ok and img[:, :4, 0].mean() < 15 and img[:, -4:, 0].mean() > 85


def test_png_sequence_keeps_alpha_exactly(tmp_path):
    rec = make_recorder(tmp_path / "frames", fps=30)
    assert isinstance(rec, PngSequenceRecorder)
    rec.open()
    frames = [_frame(i) for i in range(3)]
    for f in frames:
        rec.send(f)
    rec.close()
    files = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert [p.name for p in files] == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    for f, p in zip(frames, files):
        assert np.array_equal(cv2.imread(str(p), cv2.IMREAD_UNCHANGED), f.bgra)


def test_recorder_rejects_a_bad_target(tmp_path):
    with pytest.raises(OutputUnavailable, match="does not exist"):
        VideoRecorder(tmp_path / "nope" / "x.mp4", 30).open()
    with pytest.raises(OutputUnavailable, match="use one of"):
        VideoRecorder(tmp_path / "x.gif", 30).open()


class FakeSpoutGL(types.ModuleType):
    """Stands in for the Windows-only SpoutGL package, recording how it is called."""

    def __init__(self):
        super().__init__("SpoutGL")
        self.calls: list[tuple] = []
        mod = self

        class SpoutSender:
            def createOpenGL(self):
                mod.calls.append(("createOpenGL", threading.get_ident()))

            def setSenderName(self, name):
                mod.calls.append(("setSenderName", name))

            def sendImage(self, *args, **kwargs):
                mod.calls.append(("sendImage", args, kwargs, threading.get_ident()))
                return True

            def setFrameSync(self, name):
                mod.calls.append(("setFrameSync", name))

            def releaseSender(self):
                mod.calls.append(("releaseSender",))

            def closeOpenGL(self):
                mod.calls.append(("closeOpenGL",))

        self.SpoutSender = SpoutSender


def test_spout_sends_bgra_positionally_from_the_thread_that_made_the_gl_context(monkeypatch):
    fake = FakeSpoutGL()
    monkeypatch.setitem(sys.modules, "SpoutGL", fake)
    monkeypatch.setattr(sys, "platform", "win32")
    out = SpoutOutput("MyAvatar")
    r = OutputRunner(out)
    r.start()
    f = _frame(1, h=48, w=64)
    r.offer(f)
    assert _wait(lambda: any(c[0] == "sendImage" for c in fake.calls))
    r.stop()
    assert r.join(5)
    send = next(c for c in fake.calls if c[0] == "sendImage")
    _, args, kwargs, send_thread = send
    assert kwargs == {} and args[1:] == (64, 48, GL_BGRA, False, 0) and args[0] is f.bgra
    assert GL_BGRA == 0x80E1
    gl_thread = next(c[1] for c in fake.calls if c[0] == "createOpenGL")
    assert gl_thread == send_thread != threading.get_ident()
    names = [c[0] for c in fake.calls]
    assert names.index("createOpenGL") < names.index("setSenderName") < names.index("sendImage")
    assert ("setFrameSync", "MyAvatar") in fake.calls and names[-2:] == ["releaseSender", "closeOpenGL"]


def test_spout_on_other_os_or_without_the_package_says_so(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(OutputUnavailable, match="Windows only; use NDI"):
        SpoutOutput().open()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "SpoutGL", None)
    with pytest.raises(OutputUnavailable, match="pip install SpoutGL"):
        SpoutOutput().open()


def test_ndi_without_cyndilib_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cyndilib.sender", None)
    with pytest.raises(OutputUnavailable, match="pip install cyndilib"):
        NdiOutput().open()


def test_preview_without_a_display_is_unavailable(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(OutputUnavailable, match="no display"):
        PreviewWindow().open()


def test_preview_inside_obs_on_linux_is_unavailable(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setitem(sys.modules, "obspython", types.ModuleType("obspython"))
    with pytest.raises(OutputUnavailable, match="inside OBS"):
        PreviewWindow().open()


def test_preview_composes_alpha_over_a_checkerboard_with_overlay_and_debug_view():
    keys: list[str] = []
    quit_calls: list[bool] = []
    p = PreviewWindow(on_key=keys.append, on_quit=lambda: quit_calls.append(True))
    f = _frame(3, alpha=0)  # fully transparent: only the checkerboard shows
    p.show_fps = False
    img = p.compose(f)
    assert img.shape == (48, 64, 3) and set(np.unique(img)) <= {150, 200}
    from liveportrait_core.tracking.observation import FaceObservation

    obs = FaceObservation(found=False, timestamp=1.0, image_size=(32, 24), lost_for_s=2.0)
    src = np.zeros((24, 32, 3), np.uint8)
    dbg_frame = PublishedFrame(4, 1.0, 1.02, _frame(4, alpha=255).bgra, observation=obs, source_bgr=src)
    p.handle_key(ord("d"))
    p.show_fps = True
    img = p.compose(dbg_frame)
    assert img.shape == (48, 64 + 64, 3)  # camera view (scaled to the frame height) beside the character
    assert img[:, :64].any()  # the tracker's drawing ("no face") on the black camera frame
    p.handle_key(ord("c"))
    p.handle_key(27)
    assert keys == ["c"] and quit_calls == [True]


def test_preview_overlay_shows_one_time_per_frame(monkeypatch):
    """A slow pipeline's busy line says the time per frame; the top line then gives no second, different figure."""
    from liveportrait_core.outputs import preview

    lines: list[str] = []
    monkeypatch.setattr(preview, "draw_text_band", lambda image, text, bottom=False: lines.append(text))
    p = PreviewWindow()
    p.show_fps, p._fps = True, 1 / 7.0  # the window's own rate: 7.0 s between the last frames
    f = _frame(4, alpha=255)
    p.overlay(f.bgra[..., :3].copy(), f)
    assert "7.0 s per frame" in lines[-1]
    lines.clear()
    p.overlay(f.bgra[..., :3].copy(), f, busy="computing frame 5 on the CPU, about 9.4 s each (2 s in)")
    assert "per frame" not in lines[0] and "fps" not in lines[0] and "9.4 s each" in lines[1]


class _FakeGui:
    """Stands in for OpenCV's window functions (no display needed): records what is shown and plays
    keys from a script; ``waitKey`` returns -1 (no key) until ``press`` is called."""

    def __init__(self, monkeypatch):
        import cv2

        self.shown: list[np.ndarray] = []
        self.sizes: list[tuple[int, int]] = []
        self.keys: list[int] = []
        self.waits = 0
        self.thread_names: set[str] = set()
        for name, fn in (("namedWindow", lambda *a: None), ("imshow", self._imshow), ("waitKey", self._wait_key),
                         ("resizeWindow", lambda title, w, h: self.sizes.append((w, h))),
                         ("getWindowProperty", lambda *a: 1.0), ("destroyWindow", lambda *a: None)):
            monkeypatch.setattr(cv2, name, fn)
        monkeypatch.setattr(sys, "platform", "linux")
        monkeypatch.setenv("DISPLAY", ":fake")

    def _imshow(self, title, image):
        self.shown.append(image.copy())

    def _wait_key(self, delay=0):
        self.waits += 1
        self.thread_names.add(threading.current_thread().name)
        return self.keys.pop(0) if self.keys else -1

    def press(self, key: str) -> None:
        self.keys.append(ord(key))


def test_preview_answers_keys_and_shows_the_status_with_no_frame_arriving(monkeypatch):
    """The window's loop runs on its own clock: while no frame comes (the networks load, a CPU frame takes a
    minute) it keeps drawing what the engine is doing and answers Q at once, not when a frame arrives."""
    gui = _FakeGui(monkeypatch)
    quit_event = threading.Event()
    keys: list[str] = []
    asked: list[float] = []

    def status() -> str:
        asked.append(time.monotonic())
        return "loading the networks and preparing the character (3 s)"

    p = PreviewWindow(on_key=keys.append, on_quit=quit_event.set, status=status, size=(564, 729))
    p.open()
    try:
        assert _wait(lambda: gui.waits > 5 and gui.shown), "the window's loop does not run without frames"
        first = gui.shown[0]
        assert first.shape[:2] == (720, 557)  # the expected output's aspect ratio, fitted in 960x720
        assert gui.sizes[0] == (557, 720) and asked
        assert (first[:20] != first[-20:]).any()  # not blank: status band on top, keys at the bottom
        gui.press("c")
        assert _wait(lambda: keys == ["c"], timeout=5.0)
        gui.press("q")
        assert quit_event.wait(5.0), "Q was not answered without a frame"
        assert gui.thread_names == {"preview-window-ui"}  # every GUI call on the window's own thread
    finally:
        p.close()
    assert p._ui is None


def test_preview_follows_the_frame_size_and_shows_the_engine_activity_over_a_stale_frame(monkeypatch):
    gui = _FakeGui(monkeypatch)
    p = PreviewWindow(status=lambda: "computing frame 2 on the CPU, about 41 s each (3 s in)")
    monkeypatch.setattr("liveportrait_core.outputs.preview.STALE_S", 0.2)
    p.open()
    try:
        assert _wait(lambda: bool(gui.shown))
        assert gui.sizes[0] == (720, 540)  # unknown output size: a 4:3 waiting screen
        p.send(_frame(1, h=729, w=564, alpha=255))
        assert _wait(lambda: (557, 720) in gui.sizes)  # the window takes the frame's aspect ratio
        assert _wait(lambda: any(im.shape[:2] == (720, 557) for im in gui.shown))
        first = next(im for im in gui.shown if im.shape[:2] == (720, 557))
        n = len(gui.shown)
        assert _wait(lambda: len(gui.shown) > n)  # redrawn with no new frame: the activity band appears
        last = gui.shown[-1]
        assert last.shape[:2] == (720, 557) and (last[-10:] != first[-10:]).any()
    finally:
        p.close()


def test_preview_sizes_and_status_text():
    from liveportrait_core.outputs.preview import display_size, engine_status_text

    assert display_size(564, 729) == (557, 720)
    assert display_size(1920, 1080) == (960, 540)
    assert display_size(64, 48) == (480, 360)  # a tiny output is shown at a usable size
    assert display_size(512, 512) == (512, 512)
    st = types.SimpleNamespace(state="starting", message="loading", activity="loading the networks (4 s)",
                               character="")
    assert engine_status_text(st) == "loading the networks (4 s)"
    st = types.SimpleNamespace(state="running", message="", activity="computing frame 1 on the CPU (2 s in)",
                               character="astronaut.png")
    assert engine_status_text(st) == "computing frame 1 on the CPU (2 s in)\ncharacter: astronaut.png"
    assert engine_status_text(types.SimpleNamespace(state="error", message="no weights")) == "error: no weights"
    st = types.SimpleNamespace(state="running", message="", activity="", frames=12, errors=["10:01 capture: lost"])
    assert engine_status_text(st) == "10:01 capture: lost"
    st.errors = []
    assert engine_status_text(st) == "waiting for the next frame"


def test_preview_opens_at_the_aspect_of_the_character_it_will_show(tmp_path):
    """With no character chosen the engine takes the folder's first image: the window's first size is its
    size, not an unknown (it opened 4:3 for a square character, then jumped at the first frame)."""
    from liveportrait_core.outputs.preview import size_hint
    from liveportrait_core.settings import Settings

    cv2.imwrite(str(tmp_path / "a_wide.png"), np.zeros((200, 300, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b_tall.png"), np.zeros((301, 101, 3), np.uint8))
    s = Settings()
    s.characters.folder = str(tmp_path)
    assert size_hint(s) == (300, 200)  # the folder's first image
    s.characters.active = "b_tall.png"
    assert size_hint(s) == (101, 301)  # the chosen one, odd sides kept
    s.characters.folder = str(tmp_path / "missing")
    s.characters.active = ""
    assert size_hint(s) is None


def test_make_output_from_settings(tmp_path):
    s = OutputSettings(ndi_name="Cam A", spout_name="Cam B", record=str(tmp_path / "x.mp4"))
    assert outputs.make_output("ndi", s, 30).sender_name == "Cam A"
    assert outputs.make_output("spout", s, 30).sender_name == "Cam B"
    assert isinstance(outputs.make_output("record", s, 30), VideoRecorder)
    with pytest.raises(ValueError, match="known: obs_source"):
        outputs.make_output("twitch", s, 30)
    assert outputs.enabled_in_settings(s)["record"] is True


def test_the_output_table_is_the_one_list(tmp_path):
    """Every output is named once, in ``outputs.table``: a setting, a label and a factory each; the names the
    package, the OBS hotkeys and the OBS receivers use are the table's."""
    import dataclasses

    from liveportrait_core.obs import controller, scene
    from liveportrait_core.outputs import table

    fields = {f.name for f in dataclasses.fields(OutputSettings)}
    s = OutputSettings(record=str(tmp_path / "x.mp4"))
    assert len(set(table.NAMES)) == len(table.OUTPUTS) and outputs.OUTPUT_NAMES == table.NAMES
    for spec in table.OUTPUTS:
        assert spec.label and spec.setting in fields and set(spec.rebuild_on) <= fields
        assert spec.switch == (spec.name != table.RECORD)  # only the recording's setting is not a bool
        built = spec.factory(s, 30.0, True)
        assert isinstance(built, outputs.Output) and built.name == spec.name
    assert set(outputs.enabled_in_settings(s)) == set(table.NAMES)
    assert controller.OUTPUT_TOGGLES == tuple((o.name, o.label) for o in table.OUTPUTS)
    assert set(scene.RECEIVERS) <= set(table.NAMES)
    assert controller.fallback_output().name in scene.RECEIVERS
    with pytest.raises(ValueError, match="recording needs outputs.record"):
        table.BY_NAME[table.RECORD].factory(OutputSettings(), 30.0, True)


@pytest.fixture(scope="module")
def x_display():
    """An X display: the session's own, or a private Xvfb started for these tests (skips without one).
    One for the module: OpenCV's Qt stays bound to the first display it used, for the whole process."""
    import os
    import shutil
    import subprocess

    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.skip("no X display and no Xvfb (CI installs xvfb)")
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISPLAY", f":{number}")
        try:
            yield f":{number}"
        finally:
            proc.terminate()
            proc.wait(10)


def test_preview_window_shows_frames_on_a_real_display(x_display):
    import shutil
    import subprocess

    p = PreviewWindow(title="lp-test-preview")
    p.open()
    for i in range(3):
        p.send(_frame(i))
    if shutil.which("xdotool"):
        found = subprocess.run(["xdotool", "search", "--name", "lp-test-preview"], capture_output=True,
                               text=True, env={"DISPLAY": x_display}, timeout=10)
        assert found.stdout.strip(), "the preview window is not on the display"
    p.close()


def test_real_preview_window_answers_q_before_any_frame(x_display):
    """On a real X display (OpenCV's own window, keys sent by xdotool): Q is answered while no frame has
    come, and the window opens at the expected output's aspect ratio."""
    import shutil
    import subprocess

    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed")
    env = {"DISPLAY": x_display}
    quit_event = threading.Event()
    p = PreviewWindow(title="lp-test-keys", on_quit=quit_event.set, status=lambda: "loading the networks",
                      size=(400, 800))
    p.open()
    try:
        def window_id() -> str:
            r = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "lp-test-keys"],
                               capture_output=True, text=True, env=env, timeout=10)
            return r.stdout.split()[0] if r.stdout.split() else ""
        assert _wait(lambda: bool(window_id())), "the preview window is not on the display"
        wid = window_id()
        geometry = subprocess.run(["xdotool", "getwindowgeometry", wid], capture_output=True, text=True, env=env,
                                  timeout=10).stdout
        assert "360x720" in geometry, geometry  # 400x800 fitted in 960x720
        subprocess.run(["xdotool", "key", "--window", wid, "q"], env=env, timeout=10, check=True)
        assert quit_event.wait(5.0), "Q was not answered"
    finally:
        p.close()


def test_a_recording_never_overwrites_an_earlier_one(tmp_path):
    """Recording twice to the same name (a second run, or an engine restarted in OBS) keeps the first file and
    the first frames: the next free name beside it is used, and the status names it."""
    import hashlib

    from liveportrait_core.outputs.recorder import make_recorder
    from liveportrait_core.outputs.runner import OutputRunner

    def frame(value: int) -> PublishedFrame:
        return PublishedFrame(0, 0.0, 0.0, np.full((48, 64, 4), value, np.uint8))

    def digest(target) -> list[str]:
        files = [target] if target.is_file() else sorted(target.iterdir())
        return [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]

    for target, made in ((tmp_path / "out.mp4", tmp_path / "out-2.mp4"), (tmp_path / "seq", tmp_path / "seq-2")):
        first = make_recorder(target, fps=30)
        first.open(), first.send(frame(200)), first.close()
        before = digest(target)
        second = make_recorder(target, fps=30)
        second.open(), second.send(frame(50)), second.close()
        assert digest(target) == before  # the first recording is untouched
        assert second.target == made and digest(made) != before
        assert OutputRunner(second).status().target == str(made)
