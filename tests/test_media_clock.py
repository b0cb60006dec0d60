"""One clock for a file processed frame by frame (``capture/clock.py``): frames carry their media time (frame k at
k / fps), every consumer on the frame path reads it, and a lossless run is therefore the same at any speed: two
runs of a real driving clip give byte-identical frames, smoothing on or off, in a fresh engine or in one that ran
before. Live sources keep the wall clock; latency is always measured on the wall clock."""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from liveportrait_core.capture.clock import MEDIA_ORIGIN, FrameClock
from liveportrait_core.engine.core import Engine
from tests.conftest import REPO, shared_path
from tests.test_engine import Collect, FakeBackend, _settings, _video

pytestmark = pytest.mark.usefixtures("stop_started_engines")

ASTRONAUT = REPO / "characters" / "astronaut.png"


# ------------------------------------------------------------------------------------------------ the clock


def test_media_clock_dates_frames_by_their_place_in_the_input():
    clock = FrameClock(media=True)
    clock.source_opened(25.0)
    assert [clock.frame(wall=1000.0 + i) for i in range(4)] == [MEDIA_ORIGIN + k / 25.0 for k in range(4)]
    clock.source_opened(10.0)  # opened again (another file, or after a loss): it goes on after the last frame
    later = [clock.frame(wall=0.0) for _ in range(2)]
    assert later == pytest.approx([3 / 25.0 + 0.1, 3 / 25.0 + 0.2])


def test_media_clock_idles_in_real_time_from_the_last_frame_and_the_next_frame_comes_after():
    clock = FrameClock(media=True)
    clock.source_opened(25.0)
    clock.frame(wall=time.perf_counter())
    idle = [clock.now() for _ in range(3)]
    assert idle[0] >= 0.0 and idle == sorted(idle) and idle[-1] < 5.0  # near the input's time, not the machine's
    clock.source_opened(25.0)
    assert clock.frame(wall=time.perf_counter()) > idle[-1]


def test_live_clock_is_the_wall_clock():
    clock = FrameClock(media=False)
    clock.source_opened(30.0)
    assert clock.frame(wall=123.5) == 123.5
    before = time.perf_counter()
    assert before <= clock.now() <= time.perf_counter()


# ------------------------------------------------------------------------------------------------ in the engine


class StampTracker:
    """Records the timestamp of every frame the tracker is given."""

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def track(self, frame):
        self.seen.append((frame.index, frame.timestamp))
        return SimpleNamespace(found=True, index=frame.index, timestamp=frame.timestamp), np.zeros((4, 4, 3), np.uint8)

    def no_input(self, timestamp):
        return SimpleNamespace(found=False, index=-1, timestamp=timestamp)

    def calibrate(self): ...

    def update_settings(self, settings): ...

    def close(self): ...


class StampBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, float]] = []

    def create_tracker(self, settings):
        return StampTracker(self.seen)


def test_a_lossless_file_reaches_the_tracker_on_its_media_time_and_a_loop_counts_on(tmp_path):
    backend, out = StampBackend(), Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 10, fps=25.0)), loop=True), [out], backend=backend,
                 max_frames=24)
    t_start = time.perf_counter()
    eng.start()
    assert eng.wait_finished(60)
    elapsed = time.perf_counter() - t_start
    st = eng.status(window_s=math.inf)
    assert eng.stop(5.0)
    # the old clock: time.perf_counter() at read time, which depends on the machine's speed
    assert backend.seen == [(k, MEDIA_ORIGIN + k / 25.0) for k in range(24)]  # through the loop too
    assert [f.capture_ts for f in out.frames] == [k / 25.0 for k in range(24)]
    # latency stays the wall clock's: from reading the frame to publishing it, never "publish time - media time"
    assert all(0.0 <= f.latency_s <= elapsed for f in out.frames)
    assert 0.0 <= st.latency_p95_ms <= elapsed * 1000.0


def test_a_live_file_keeps_the_wall_clock(tmp_path):
    backend, out = StampBackend(), Collect()
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 6, fps=50.0)), realtime=True), [out], backend=backend)
    before = time.perf_counter()
    eng.start()
    assert eng.wait_finished(30)
    assert eng.stop(5.0)
    assert backend.seen and all(before <= t <= time.perf_counter() for _, t in backend.seen)
    assert all(f.read_at == f.capture_ts for f in out.frames)


# ------------------------------------------------------------------------------------------------ determinism

FRAMES = 6


@pytest.fixture
def reduced(monkeypatch):
    """The real backend (MediaPipe tracker, Animator) with the reduced test networks of ``models/small.py``
    (random weights: the face is noise; what is compared is that two runs give the same bytes)."""
    from liveportrait_core.models.small import reduced_models

    models = reduced_models()
    monkeypatch.setattr("liveportrait_core.models.loader.load_from_settings", lambda settings, **_kw: models)
    return models


def _clip_settings(tmp_path, smoothing: bool):
    s = _settings(str(shared_path("testdata", "driving", "d0.mp4")))
    s.model.device = "cpu"
    s.characters.folder, s.characters.active = str(ASTRONAUT.parent), ASTRONAUT.name
    s.characters.cache_dir = str(tmp_path / "cache")
    s.tracking.smoothing = s.animation.smoothing = smoothing
    s.tracking.calibrate_after_s = 0.1  # auto-calibration (timed on the frames' clock) falls inside the few frames
    return s


def _run(eng: Engine, out: Collect) -> list[bytes]:
    out.frames.clear()
    eng.start()
    deadline = time.monotonic() + 600  # a hang's deadline, not a speed check
    while not eng.wait_finished(0.5):  # a stage that cannot start (the loader...) fails the test at once
        assert eng.status().state != "error" and time.monotonic() < deadline, eng.status().message
    assert eng.stop(30.0) or eng.join(60.0)
    assert len(out.frames) == FRAMES and not eng.status().errors, eng.status().errors
    return [f.bgra.tobytes() for f in out.frames]


@pytest.mark.slow
@pytest.mark.parametrize("smoothing", [True, False], ids=["smoothing", "no-smoothing"])
def test_two_lossless_runs_of_a_driving_clip_give_the_same_frames(tmp_path, reduced, smoothing):
    """A real clip (d0.mp4, its first frames) through the real tracker and animator: a second run in the same
    engine (the animator and its filters kept, its clock restarted) and a run in a fresh engine give the very
    same bytes as the first, however long each frame took."""
    s = _clip_settings(tmp_path, smoothing)
    out = Collect()
    eng = Engine(s, [out], max_frames=FRAMES)
    first = _run(eng, out)
    again = _run(eng, out)
    out2 = Collect()
    fresh = _run(Engine(s, [out2], max_frames=FRAMES), out2)
    assert len(set(first)) > 1  # the frames move: a frozen picture would make the comparison empty
    assert [a == b for a, b in zip(first, again)] == [True] * FRAMES
    assert [a == b for a, b in zip(first, fresh)] == [True] * FRAMES


# ------------------------------------------------------------------------------------------------ --audio on the input

ONSET_S = 1.0  #: the tone starts here in the test clip


def _clip_with_tone(tmp_path, fps: float = 10.0, seconds: float = 2.0):
    """An MP4 of ``seconds`` at ``fps`` whose soundtrack (AAC, muxed with PyAV) is silent until ``ONSET_S``,
    then a loud vowel; and the count of its frames."""
    import cv2

    from liveportrait_core.voice.mux import mux_audio
    from liveportrait_core.voice.resample import RATE
    from tests.voice_signals import vowel, write_wav

    mp4, n = tmp_path / "clip.mp4", int(round(seconds * fps))
    w = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(n):
        w.write(np.full((48, 64, 3), 10 * i % 256, np.uint8))
    w.release()
    tone = np.concatenate([np.zeros(int(ONSET_S * RATE), np.float32), vowel("a", seconds - ONSET_S)])
    mux_audio(mp4, write_wav(tmp_path / "tone.wav", tone), 0.0)
    return mp4, n


def _onset_s(path) -> float:
    from liveportrait_core.voice.features import rms_dbfs
    from liveportrait_core.voice.mux import read_audio_track
    from liveportrait_core.voice.resample import RATE

    sound = read_audio_track(path, RATE)
    loud = [rms_dbfs(sound[i:i + 160]) > -40 for i in range(0, len(sound) - 160, 160)]
    return float(np.nonzero(loud)[0][0] * 160 / RATE), len(sound) / RATE


def _voiced_backend():
    """The engine's fake backend whose animator records the voice of each frame, with observations dated."""
    from tests.test_voice_engine import VoicedBackend

    backend = VoicedBackend()
    backend.create_tracker = lambda settings: StampTracker([])
    return backend


def _voices_of_a_whole_run(s) -> tuple[list, bool]:
    """Run the engine over the whole input; (each frame's (timestamp, voice), whether the voice was the file read
    on the frames' clock)."""
    backend = _voiced_backend()
    eng = Engine(s, [Collect()], backend=backend)
    eng.start()
    assert eng.wait_finished(60)
    offline = getattr(eng._session.voice, "offline", False)
    assert eng.stop(5.0)
    return backend.animators[-1].voices, offline


def test_audio_of_the_input_video_lines_up_frame_by_frame_at_any_speed(tmp_path):
    """``run --input clip.mp4 --audio clip.mp4`` as fast as possible: the voice is read on the frames' media
    clock (``FileVoice``), so the mouth is closed before the tone and open after it, to a frame, although the
    whole clip is processed in a fraction of its length; the recording keeps the clip's soundtrack, once."""
    fps = 10.0
    mp4, n = _clip_with_tone(tmp_path, fps)
    s = _settings(str(mp4))
    s.audio.mode, s.audio.device = "mix", str(mp4)
    s.outputs.record = str(tmp_path / "out.mp4")
    voices, offline = _voices_of_a_whole_run(s)
    assert len(voices) == n and all(v is not None for _, v in voices)  # every frame, the first one too
    t = np.array([ts for ts, _ in voices])
    level = np.array([v.level for _, v in voices])
    assert t.tolist() == [k / fps for k in range(n)]
    assert np.all(level[t < ONSET_S - 1 / fps] == 0.0), level  # closed before the onset (one frame's slack)
    assert np.all(level[t > ONSET_S + 1 / fps] > 0.3), level  # open after it
    assert offline  # the file read on the frames' clock (``FileVoice``), not played by a real-time stage
    onset, length = _onset_s(tmp_path / "out.mp4")
    assert abs(onset - ONSET_S) < 0.06, onset  # the recording's sound is where the picture has it
    assert abs(length - n / fps) < 0.15, length  # the soundtrack once, not twice


def test_another_audio_file_drives_the_mouth_on_the_media_clock_and_is_recorded(tmp_path):
    """A video input processed frame by frame with a separate audio file: the same clock; the recording carries
    the sound that drove the mouth, in step with the picture."""
    from liveportrait_core.voice.resample import RATE
    from tests.voice_signals import vowel, write_wav

    video = _video(tmp_path / "d.avi", 20, fps=10.0)
    wav = write_wav(tmp_path / "v.wav", np.concatenate([np.zeros(int(0.5 * RATE), np.float32), vowel("a", 1.5)]))
    s = _settings(str(video))
    s.audio.mode, s.audio.device = "mix", str(wav)
    s.outputs.record = str(tmp_path / "out.mp4")
    voices, _offline = _voices_of_a_whole_run(s)
    level = np.array([v.level for _, v in voices])
    assert np.all(level[:4] == 0.0) and np.all(level[7:] > 0.3), level
    onset, _ = _onset_s(tmp_path / "out.mp4")
    assert abs(onset - 0.5) < 0.06, onset


def test_a_live_input_with_an_audio_file_keeps_the_real_time_voice(tmp_path):
    """A live source (a webcam; here a file paced with capture.realtime): the voice plays in real time on the wall
    clock, as before."""
    from tests.test_voice_engine import VoicedBackend, voice_threads

    mp4, _ = _clip_with_tone(tmp_path)
    s = _settings(str(mp4), realtime=True, loop=True)
    s.audio.mode, s.audio.device = "mix", str(mp4)
    eng = Engine(s, [Collect()], backend=VoicedBackend())
    eng.start()
    from tests.test_engine import _wait

    assert _wait(lambda: eng._session.voice is not None and voice_threads(), 30)
    assert not getattr(eng._session.voice, "offline", False)
    assert eng.stop(5.0)


def test_another_audio_file_chosen_during_a_lossless_run_is_the_one_heard(tmp_path):
    """The audio file read on the frames' clock is opened once; choosing another one while the run goes on starts
    the voice afresh on that file (an explicit choice is never silently kept on the old one)."""
    from liveportrait_core.voice.resample import RATE
    from tests.test_engine import _wait
    from tests.voice_signals import write_wav

    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(RATE, np.float32))
    other = write_wav(tmp_path / "other.wav", np.zeros(RATE, np.float32))
    s = _settings(str(_video(tmp_path / "d.avi", 10, fps=10.0)), loop=True)
    s.audio.mode, s.audio.device = "mix", str(quiet)
    eng = Engine(s, [Collect()], backend=_voiced_backend())
    eng.start()
    assert _wait(lambda: eng.voice_status() is not None, 30)
    assert "quiet.wav" in eng.voice_status().source
    s2 = eng.settings
    s2.audio.device = str(other)
    eng.update_settings(s2)
    assert _wait(lambda: eng.voice_status() is not None and "other.wav" in eng.voice_status().source, 30)
    assert getattr(eng._session.voice, "offline", False)
    assert eng.stop(5.0)



def test_a_file_voice_stopped_while_the_inference_thread_reads_it_waits_for_the_block_then_is_silent(tmp_path):
    """Another file chosen during a run stops the voice from the settings' thread while the inference thread is
    inside ``features_at`` (seen as "ValueError: generator already executing" under load): the stop waits for the
    block being read, and the stopped voice reads nothing more."""
    import threading

    from liveportrait_core.settings import Settings
    from liveportrait_core.voice.stage import FileVoice
    from tests.voice_signals import vowel, write_wav

    audio = Settings().audio
    audio.mode, audio.device = "mix", str(write_wav(tmp_path / "v.wav", vowel("a", 1.0)))
    voice = FileVoice(lambda: audio, epoch=MEDIA_ORIGIN)
    in_block, release = threading.Event(), threading.Event()
    voice.add_tap(lambda _block: (in_block.set(), release.wait(30)))
    reader = threading.Thread(target=voice.features_at, args=(0.5,), daemon=True)
    reader.start()
    assert in_block.wait(30)
    stopper = threading.Thread(target=voice.stop, daemon=True)
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive()  # the block being read is finished first
    release.set()
    reader.join(30)
    stopper.join(30)
    assert not reader.is_alive() and not stopper.is_alive()
    blocks = voice.blocks
    assert voice.features_at(0.9).level == 0.0 and voice.blocks == blocks  # stopped: silent, nothing more read
