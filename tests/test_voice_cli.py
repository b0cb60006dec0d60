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
LEAD_S, TAIL_S = 0.8, 1.0  #: silence before and after the speech


@pytest.fixture(autouse=True)
def _drop_cli_log_handler():
    yield
    from liveportrait_core import logger

    for h in [h for h in logger.handlers if getattr(h, "_lp_cli", False)]:
        logger.removeHandler(h)


def speech_file(tmp_path) -> tuple[object, float]:
    """Speech (espeak-ng; synthetic vowels without it) between two silences, at 16 kHz; and its length."""
    wav = espeak("Hello, I am talking to you.", tmp_path / "espeak.wav")
    if wav is not None:
        src = FileSource(wav, 160, realtime=False)
        parts = []
        while (b := src.read(0.1)) is not None:
            parts.append(b.samples)
        talk = np.concatenate(parts)
    else:
        talk = np.concatenate([vowel("a", 0.4), np.zeros(1600, np.float32), vowel("i", 0.4), vowel("u", 0.4)])
    x = np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), talk, np.zeros(int(TAIL_S * RATE), np.float32)])
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
    from liveportrait_core.engine.pipeline import Animator
    from liveportrait_core.models.small import reduced_models
    from liveportrait_core.voice.mux import read_audio_track

    models = reduced_models()
    monkeypatch.setattr("liveportrait_core.models.loader.load_from_settings", lambda settings, between=None: models)
    trace = []  # (frame time, voice level, mouth-open ratio) of every animated frame
    real_animate = Animator.animate

    def animate(self, driving, observation):
        frame = real_animate(self, driving, observation)
        v = self._voice
        trace.append((observation.timestamp, v.level if v is not None else None, self.last_mouth.open_ratio))
        return frame

    monkeypatch.setattr(Animator, "animate", animate)
    wav, talk_s = speech_file(tmp_path)
    out = tmp_path / "talking.mp4"
    rc = cli.main(["run", "--input", "none", "--audio", str(wav), "--record", str(out), "--character", str(ASTRONAUT),
                   "--set", "model.device=cpu", "--set", f"characters.cache_dir={tmp_path / 'cache'}",
                   "--status-every", "0"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "(audio.mode always)" in printed and "the run lasts as long as the file" in printed
    max_open = Settings().audio.max_open
    opening = np.array([m for *_, m in trace])
    assert len(trace) >= 5, printed
    assert all(level is not None for _, level, _ in trace)  # every frame had the voice
    assert opening.max() > 0.5 * max_open, opening  # talking: the mouth opens wide
    assert opening[0] == 0.0 and opening[-1] == 0.0, opening  # the silences before and after: closed
    assert (opening > 0.1 * max_open).sum() >= 3
    # the recording: picture at real speed, and the sound of the file in it, in time
    cap = cv2.VideoCapture(str(out))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    video_s = frames / fps
    sound = read_audio_track(out, RATE)
    assert abs(len(sound) / RATE - video_s) < 0.1, (len(sound) / RATE, video_s)
    assert video_s > talk_s  # the run lasted as long as the file (it started at the first animated frame)
    blocks = np.array([rms_dbfs(sound[i:i + 320]) for i in range(0, len(sound) - 320, 320)])
    loud = np.nonzero(blocks > -40)[0]
    assert len(loud), "the recording has no sound"
    onset = loud[0] * 320 / RATE
    assert 0.3 < onset < LEAD_S + 0.7, onset  # the speech starts after the file's leading silence
    original = resample_all(np.frombuffer(wav.read_bytes()[44:], "<i2").astype(np.float32) / 32768, RATE, RATE)
    assert rms_dbfs(sound[loud[0] * 320:]) > rms_dbfs(original) - 6  # the voice itself, not a trickle
    assert not engine_threads()
