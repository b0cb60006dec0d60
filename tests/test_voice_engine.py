"""The voice in the engine (test-double tracker and animator from tests/test_engine.py): the ``lp-voice`` stage
runs while ``audio.mode`` is on, each frame gets the voice of its own timestamp, ``capture.source: none`` runs with
no webcam, the status line shows the level, the mode is switched live, and a file with no webcam renders every
frame of its length on its own clock."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from liveportrait_core.engine.core import Engine, engine_threads
from liveportrait_core.voice.features import VoiceFeatures
from liveportrait_core.voice.resample import RATE
from liveportrait_core.voice.sources import TAIL_S
from tests.test_engine import Collect, FakeAnimator, FakeBackend, _settings, _wait
from tests.voice_signals import vowel, write_wav

pytestmark = pytest.mark.usefixtures("stop_started_engines")


class VoicedAnimator(FakeAnimator):
    """Records the voice the engine hands it for each frame: (frame timestamp, features or None)."""

    def __init__(self, log, **kw):
        super().__init__(log, **kw)
        self.voices: list[tuple[float, VoiceFeatures | None]] = []
        self._voice = None

    def set_voice(self, features):
        self._voice = features

    def animate(self, driving, observation):
        self.voices.append((getattr(observation, "timestamp", math.nan), self._voice))
        return super().animate(driving, observation)


class VoicedBackend(FakeBackend):
    def create_animator(self, settings):
        self.animators.append(VoicedAnimator(self.log))
        return self.animators[-1]

    def create_tracker(self, settings):
        tracker = super().create_tracker(settings)
        real = tracker.no_input

        def no_input(timestamp):
            obs = real(timestamp)
            obs.timestamp = timestamp
            return obs

        tracker.no_input = no_input
        return tracker


def voice_threads() -> list[threading.Thread]:
    return [t for t in engine_threads() if t.name == "lp-voice"]


def test_no_webcam_and_a_looping_voice_file_talks_and_shows_the_level(tmp_path):
    wav = write_wav(tmp_path / "a.wav", vowel("a", 1.0))
    s = _settings("none", realtime=True)
    s.audio.mode, s.audio.device, s.audio.loop = "always", str(wav), True
    backend, out = VoicedBackend(), Collect()
    eng = Engine(s, outputs=[out], backend=backend)
    eng.start()
    assert _wait(lambda: backend.animators and any(v is not None and v.level > 0.5
                                                   for _, v in backend.animators[0].voices), 30), eng.status().line()
    assert len(voice_threads()) == 1
    st = eng.status()
    assert st.tracking == "no webcam" and st.voice.startswith("voice ") and "dB" in st.voice
    assert "voice " in st.line() and "no webcam" in st.line()
    for ts, v in backend.animators[0].voices:  # the voice of each frame's own instant, never a later one
        if v is not None and v.timestamp > 0:
            assert v.timestamp <= ts + 1e-6
    eng.set_voice_muted(True)
    assert _wait(lambda: backend.animators[0].voices[-1][1] is not None and backend.animators[0].voices[-1][1].level == 0)
    assert "(muted)" in eng.status().voice
    assert eng.stop(5.0)
    assert not voice_threads()


def test_mode_off_starts_no_voice_and_switching_it_on_live_does(tmp_path):
    wav = write_wav(tmp_path / "a.wav", vowel("a", 1.0))
    s = _settings("none", realtime=True)
    s.audio.device, s.audio.loop = str(wav), True
    backend = VoicedBackend()
    eng = Engine(s, outputs=[Collect()], backend=backend)
    eng.start()
    assert _wait(lambda: backend.animators and len(backend.animators[0].voices) >= 3, 30)
    assert not voice_threads() and all(v is None for _, v in backend.animators[0].voices)
    assert eng.status().voice == ""
    on = eng.settings
    on.audio.mode = "mix"
    eng.update_settings(on)
    assert _wait(lambda: len(voice_threads()) == 1)
    assert _wait(lambda: any(v is not None and v.level > 0.5 for _, v in backend.animators[0].voices), 30)
    off = eng.settings
    off.audio.mode = "off"
    eng.update_settings(off)
    assert _wait(lambda: not voice_threads())
    n = len(backend.animators[0].voices)
    assert _wait(lambda: len(backend.animators[0].voices) > n + 2, 30)
    assert backend.animators[0].voices[-1][1] is None  # off: the animator is told there is no voice


def test_a_voice_file_with_no_webcam_sets_every_frame_on_its_own_clock(tmp_path):
    """Not real time: 20 fps for the file's 0.6 s plus the tail, whatever the machine's speed; frame k gets the
    features of the last 10 ms block that ended by k / fps on the file's clock."""
    x = np.concatenate([np.zeros(RATE // 5, np.float32), vowel("a", 0.4)])
    wav = write_wav(tmp_path / "v.wav", x)
    s = _settings("none", realtime=False)
    s.capture.fps = 20
    s.audio.mode, s.audio.device = "always", str(wav)
    backend, out = VoicedBackend(), Collect()
    eng = Engine(s, outputs=[out], backend=backend)
    eng.start()
    assert eng.wait_finished(60), eng.status().line()
    assert eng.status().tracking == "no webcam"
    count = math.ceil((0.6 + TAIL_S) * 20)
    voices = backend.animators[0].voices
    assert len(out.frames) == count and len(voices) == count  # every frame, none skipped
    t0 = voices[0][0]
    for k, (ts, v) in enumerate(voices):
        assert ts == pytest.approx(t0 + k / 20)
        assert v is not None and ts - 0.010 - 1e-9 <= v.timestamp <= ts + 1e-9
    on = [v.level > 0.3 for _, v in voices]
    assert not any(on[:4]) and all(on[6:12]) and not on[-1]  # silent 0.2 s, the vowel to 0.6 s, then closed
    assert not voice_threads()  # the file's voice runs on the frames' clock: no thread


def test_an_unreadable_voice_file_is_reported_and_the_character_idles_silent(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 40)  # a header with nothing usable
    s = _settings("none", realtime=True)
    s.audio.mode, s.audio.device = "always", str(bad)
    backend, out = VoicedBackend(), Collect()
    eng = Engine(s, outputs=[out], backend=backend)
    eng.start()
    assert _wait(lambda: backend.animators and len(backend.animators[0].voices) >= 3, 30)
    assert _wait(lambda: any(" voice: " in e for e in eng.status().errors), 30), eng.status().errors
    assert eng.status().state == "running"


def test_every_frame_of_a_video_with_sound_records_its_sound_in_step(tmp_path):
    """A video input with its own audio track, processed frame by frame: recorded frame k is input frame k, so
    the recording gets the input's sound as it is (here: a tone that starts at 0.4 s)."""
    import cv2

    from liveportrait_core.voice.features import rms_dbfs
    from liveportrait_core.voice.mux import mux_audio, read_audio_track
    from tests.test_engine import _video

    video = _video(tmp_path / "in.avi", 25, fps=25.0)
    mp4 = tmp_path / "in.mp4"
    cap, w = cv2.VideoCapture(str(video)), None
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if w is None:
            w = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, img.shape[1::-1])
        w.write(img)
    cap.release()
    w.release()
    tone = np.concatenate([np.zeros(int(0.4 * RATE), np.float32), vowel("a", 0.6)])
    mux_audio(mp4, write_wav(tmp_path / "tone.wav", tone), 0.0)
    out_mp4 = tmp_path / "out.mp4"
    s = _settings(str(mp4), realtime=False)
    s.outputs.record = str(out_mp4)
    eng = Engine(s, outputs=[Collect()], backend=VoicedBackend())
    eng.start()
    assert eng.wait_finished(60)
    assert eng.stop(5.0)
    sound = read_audio_track(out_mp4, RATE)
    assert abs(len(sound) / RATE - 1.0) < 0.1
    onset = np.nonzero([rms_dbfs(sound[i:i + 160]) > -40 for i in range(0, len(sound) - 160, 160)])[0][0] * 0.01
    assert abs(onset - 0.4) < 0.06, onset


def test_status_line_says_how_a_character_without_webcam_talks():
    """No webcam and the voice off: the character can only idle; the status says so and where to turn it on
    (the camera list offers "No webcam (idle + voice)"); with the voice on it shows the level instead."""
    from liveportrait_core.engine.stats import VOICE_MODE_HINT, EngineStatus

    off = EngineStatus(state="running", frames=10, fps=30.0, tracking="no webcam", voice_mode="off")
    assert f"no webcam, voice off: idle only (set {VOICE_MODE_HINT} to talk)" in off.line()
    on = EngineStatus(state="running", frames=10, fps=30.0, tracking="no webcam", voice_mode="always",
                      voice="voice -23 dB ▮▮▮▯▯ A")
    assert "voice off" not in on.line() and "no webcam" in on.line() and "voice -23 dB" in on.line()
