"""``run --input none --audio speech.wav --record out.mp4``: no webcam, the character idles and talks with the
file's voice, and the recording carries the sound. Reduced test networks (models/small.py: random weights, the
retargeting MLPs with the recipe weights), so the mouth-open values the animator used are asserted, never the
picture; the real CLI, engine, voice stage, recorder and muxing run unchanged."""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from liveportrait_core.cli import main as cli
from liveportrait_core.cli.commands import run as run_cmd
from liveportrait_core.engine.core import engine_threads
from liveportrait_core.settings import Settings
from liveportrait_core.voice.features import rms_dbfs
from liveportrait_core.voice.resample import RATE, resample_all
from liveportrait_core.voice.sources import FileSource
from tests.conftest import REPO
from tests.voice_signals import espeak, vowel, write_wav

ASTRONAUT = REPO / "characters" / "astronaut.png"
LEAD_S, TAIL_S_FILE = 0.5, 0.8  #: silence before and after the speech in the file


@pytest.fixture(autouse=True)
def _drop_cli_log_handler():
    yield
    from liveportrait_core import logger

    for h in [h for h in logger.handlers if getattr(h, "_lp_cli", False)]:
        logger.removeHandler(h)


def speech_file(tmp_path) -> tuple[object, float]:
    """Speech (espeak-ng; synthetic vowels without it) between two silences, at 16 kHz; and its length."""
    wav = espeak("Hello there, how are you?", tmp_path / "espeak.wav")
    if wav is not None:
        src = FileSource(wav, 160, realtime=False)
        parts = []
        while (b := src.read(0.1)) is not None:
            parts.append(b.samples)
        talk = np.concatenate(parts)
    else:
        talk = np.concatenate([vowel("a", 0.4), np.zeros(1600, np.float32), vowel("i", 0.4), vowel("u", 0.4)])
    x = np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), talk, np.zeros(int(TAIL_S_FILE * RATE), np.float32)])
    return write_wav(tmp_path / "speech.wav", x), len(talk) / RATE


def test_arguments_audio_and_no_webcam_map_onto_settings(tmp_path):
    wav = write_wav(tmp_path / "s.wav", vowel("a", 0.2))
    p = argparse.ArgumentParser()
    run_cmd.add_run_arguments(p)
    s = Settings()
    s.capture.source = "none"
    out = run_cmd.apply_arguments(p.parse_args(["--audio", str(wav)]), s)
    assert out.audio.device == str(wav.resolve()) and out.audio.mode == "always"
    cam = run_cmd.apply_arguments(p.parse_args(["--audio", "USB Headset"]), Settings())
    assert cam.audio.device == "USB Headset" and cam.audio.mode == "mix"  # a webcam too: the larger opening
    chosen = Settings()
    chosen.audio.mode = "fallback"
    assert run_cmd.apply_arguments(p.parse_args(["--audio", "1"]), chosen).audio.mode == "fallback"  # kept
    from liveportrait_core.settings import SettingsError

    with pytest.raises(SettingsError, match="no such file"):
        run_cmd.apply_arguments(p.parse_args(["--audio", str(tmp_path / "missing.wav")]), Settings())


@pytest.mark.slow
def test_no_webcam_speech_file_records_a_talking_character_with_its_sound(tmp_path, monkeypatch, capsys,
                                                                         stop_started_engines):
    """Every frame of the file's length (10 fps here, to keep the CPU time down), each with the voice of its own
    instant: closed in the silences, open while talking; the MP4 carries the file's sound, in time."""
    from liveportrait_core.engine.pipeline import Animator
    from liveportrait_core.models.small import reduced_models
    from liveportrait_core.voice.mux import read_audio_track
    from liveportrait_core.voice.sources import TAIL_S

    models = reduced_models()
    monkeypatch.setattr("liveportrait_core.models.loader.load_from_settings", lambda settings, **_kw: models)
    trace = []  # (frame time on the file's clock, voice level, mouth-open ratio) of every animated frame
    real_animate = Animator.animate
    epoch = []

    def animate(self, driving, observation):
        frame = real_animate(self, driving, observation)
        v = self._voice
        epoch.append(epoch[0] if epoch else observation.timestamp)
        trace.append((observation.timestamp - epoch[0], v.level if v is not None else None, self.last_mouth.open_ratio))
        return frame

    monkeypatch.setattr(Animator, "animate", animate)
    wav, talk_s = speech_file(tmp_path)
    total_s = LEAD_S + talk_s + TAIL_S_FILE
    fps = 10
    out = tmp_path / "talking.mp4"
    rc = cli.main(["run", "--input", "none", "--audio", str(wav), "--record", str(out), "--character", str(ASTRONAUT),
                   "--set", "model.device=cpu", "--set", f"characters.cache_dir={tmp_path / 'cache'}",
                   "--set", f"capture.fps={fps}", "--status-every", "0"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "(audio.mode always)" in printed and "every frame of the voice's" in printed
    count = int(np.ceil((total_s + TAIL_S) * fps))
    assert f"frames published: {count}" in printed, printed
    assert len(trace) == count and all(level is not None for _, level, _ in trace)  # every frame had the voice
    t = np.array([r[0] for r in trace])
    assert np.allclose(np.diff(t), 1 / fps)  # the frames' own clock, not the machine's speed
    opening = np.array([r[2] for r in trace])
    max_open = Settings().audio.max_open
    assert np.all(opening[t < LEAD_S - 0.05] == 0.0), opening  # the leading silence: closed
    talking = opening[(t > LEAD_S + 0.1) & (t < LEAD_S + talk_s)]
    assert talking.max() > 0.5 * max_open and (talking > 0.1 * max_open).mean() > 0.5, talking
    assert np.all(opening[t > LEAD_S + talk_s + 0.6] == 0.0), opening  # closed again after the speech
    # the recording: one frame per tick, and the sound of the file in it, in time
    cap = cv2.VideoCapture(str(out))
    frames, video_fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert frames == count and video_fps == pytest.approx(fps)
    sound = read_audio_track(out, RATE)
    assert abs(len(sound) / RATE - count / fps) < 0.1, (len(sound) / RATE, count / fps)
    blocks = np.array([rms_dbfs(sound[i:i + 160]) for i in range(0, len(sound) - 160, 160)])
    onset = np.nonzero(blocks > -45)[0][0] * 160 / RATE
    assert abs(onset - LEAD_S) < 0.06, onset  # the speech starts where the file has it: sound and picture agree
    original = np.frombuffer(wav.read_bytes()[44:], "<i2").astype(np.float32) / 32768
    assert rms_dbfs(sound) == pytest.approx(rms_dbfs(original[: len(sound)]), abs=3.0)  # the voice itself
    assert not engine_threads()
