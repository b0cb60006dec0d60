"""The voice stage on its own thread: a microphone that disappears is survived and reopened (PortAudio faked at
its boundary: the ``sounddevice`` module's device list and input stream, the features untouched), a file
plays at real time into the latest-value hand-off, mute and push-to-talk close the mouth, the recording's tape."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from liveportrait_core.settings import AudioSettings
from liveportrait_core.voice.features import VOWELS
from liveportrait_core.voice.resample import RATE
from liveportrait_core.voice.sources import AudioSourceError, MicrophoneSource, list_microphones, resolve_microphone
from liveportrait_core.voice.stage import VoiceReceiver, VoiceStage
from liveportrait_core.voice.tape import AudioTape
from tests.voice_signals import clicks, vowel, write_wav


def wait_for(cond, timeout: float = 20.0) -> bool:
    """A deadline against a hang on this busy machine, not a speed assertion."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


class FakePortAudio:
    """What ``sounddevice`` offers MicrophoneSource: ``query_devices`` (the list as of the last initialisation,
    as PortAudio's is), ``default.device``, ``InputStream`` (calls back from its own thread with a 48 kHz
    vowel, as a sound card does) and the private ``_terminate``/``_initialize`` that refresh the list.
    ``unplug``/``replug`` the headset: its stream stops calling back and goes inactive, and opening it fails."""

    class PortAudioError(Exception):
        pass

    def __init__(self) -> None:
        self.plugged = [{"name": "Built-in Audio Analog Stereo", "max_input_channels": 2, "default_samplerate": 44100.0},
                        {"name": "USB Headset Mic", "max_input_channels": 1, "default_samplerate": 48000.0}]
        self._listed = list(self.plugged)
        self.default = SimpleNamespace(device=(0, 0))
        self.streams: list = []
        self.refreshes = 0
        fake = self

        class InputStream:
            def __init__(self, device, channels, samplerate, blocksize, dtype, latency, callback):
                name = fake._listed[device]["name"] if device < len(fake._listed) else None
                if name is None or all(d["name"] != name for d in fake.plugged):
                    raise fake.PortAudioError(f"Error opening InputStream: Invalid device [{device}]")
                self.name, self.rate, self.blocksize, self.callback = name, samplerate, blocksize, callback
                self.active = False
                self._stop = threading.Event()
                self._signal = np.tile(vowel("a", 0.5, rate=int(samplerate)), 4)
                fake.streams.append(self)

            def start(self):
                self.active = True
                threading.Thread(target=self._run, daemon=True).start()

            def _run(self):
                i, t0, n = 0, time.perf_counter(), 0
                while not self._stop.is_set():
                    if all(d["name"] != self.name for d in fake.plugged):  # pulled out: no more callbacks
                        self.active = False
                        return
                    block = self._signal[i:i + self.blocksize]
                    if len(block) < self.blocksize:
                        i, block = 0, self._signal[:self.blocksize]
                    i += self.blocksize
                    self.callback(block.reshape(-1, 1), self.blocksize, None, None)
                    n += self.blocksize
                    time.sleep(max(0.0, t0 + n / self.rate - time.perf_counter()))

            def stop(self):
                self._stop.set()
                self.active = False

            def close(self):
                self._stop.set()

        self.InputStream = InputStream

    def query_devices(self):
        return list(self._listed)

    def _terminate(self):
        pass

    def _initialize(self):
        self._listed = list(self.plugged)
        self.refreshes += 1

    def unplug(self, name: str) -> dict:
        dev = next(d for d in self.plugged if d["name"] == name)
        self.plugged.remove(dev)
        return dev

    def replug(self, dev: dict) -> None:
        self.plugged.insert(0, {"name": "HDMI Audio", "max_input_channels": 2, "default_samplerate": 48000.0})
        self.plugged.append(dev)  # back under another index


def test_microphones_are_chosen_by_index_name_or_part_of_a_name():
    sd = FakePortAudio()
    mics = list_microphones(sd)
    assert [m.name for m in mics] == ["Built-in Audio Analog Stereo", "USB Headset Mic"]
    assert resolve_microphone("1", mics, 0).name == "USB Headset Mic"
    assert resolve_microphone("usb headset", mics, 0).index == 1
    assert resolve_microphone("default", mics, 0).index == 0
    with pytest.raises(AudioSourceError, match="microphones: 0: Built-in"):
        resolve_microphone("Yeti", mics, 0)
    with pytest.raises(AudioSourceError, match="no such file"):
        resolve_microphone("speech.wav", mics, 0)


def test_microphone_blocks_are_resampled_and_dated():
    sd = FakePortAudio()
    src = MicrophoneSource("USB Headset", 160, sd=sd)
    try:
        blocks = [src.read(5.0) for _ in range(20)]
    finally:
        src.close()
    assert all(b is not None and len(b.samples) == 160 for b in blocks)
    assert all(b.samples.dtype == np.float32 for b in blocks)
    t = np.array([b.t_end for b in blocks])
    assert np.all(np.diff(t) > 0) and abs(t[-1] - time.perf_counter()) < 5.0  # the video frames' clock


def test_a_microphone_that_disappears_is_survived_and_reopened(monkeypatch, stop_voice):
    """Unplugged: the stage reports it, the mouth closes, it keeps trying (by name, the device list refreshed);
    plugged back under another index: it listens again and the mouth moves."""
    import liveportrait_core.voice.stage as stage_mod

    monkeypatch.setattr(stage_mod, "BACKOFF_S", (0.1, 0.3))
    monkeypatch.setattr("liveportrait_core.voice.sources.MIC_SILENT_S", 0.3)
    sd = FakePortAudio()
    s = AudioSettings(mode="mix", device="USB Headset")
    errors: list[str] = []
    stage = stop_voice(VoiceStage(lambda: s, sd=sd, report=lambda e: errors.append(str(e))))
    rx = VoiceReceiver(stage.handoff)
    stage.start()
    assert wait_for(lambda: rx.features_at(time.perf_counter()).level > 0.3), stage.status()
    dev = sd.unplug("USB Headset Mic")
    assert wait_for(lambda: stage.status().state == "lost"), stage.status()
    assert wait_for(lambda: rx.features_at(time.perf_counter()).level == 0.0)  # the mouth closes meanwhile
    assert any("stopped delivering audio" in e for e in errors), errors
    # it keeps retrying while the device is away: each retry refreshes the list and fails to find it by name
    assert wait_for(lambda: "not a file or a known microphone" in stage.status().message), stage.status()
    assert stage.status().state == "lost" and sd.refreshes >= 1
    sd.replug(dev)
    assert wait_for(lambda: stage.status().state == "listening"), stage.status()
    assert stage.reopened == 1 and sd.refreshes >= 1
    assert "USB Headset Mic" in stage.status().source and sd.streams[-1].name == "USB Headset Mic"
    assert wait_for(lambda: rx.features_at(time.perf_counter()).level > 0.3)
    assert stage.thread.is_alive()


@pytest.fixture
def stop_voice():
    stages: list[VoiceStage] = []

    def keep(stage: VoiceStage) -> VoiceStage:
        stages.append(stage)
        return stage

    yield keep
    for st in stages:
        assert st.stop(5.0)


def test_a_file_plays_in_real_time_into_the_hand_off(tmp_path, stop_voice):
    """Clicks every 250 ms: each opens the mouth once, dated on the file's own clock at real-time pace. Every
    track the hand-off gives holds the last half second, so the union of the tracks is every block."""
    x, onsets = clicks(0.25, 1.5)
    wav = write_wav(tmp_path / "clicks.wav", x)
    s = AudioSettings(mode="always", device=str(wav))
    stage = stop_voice(VoiceStage(lambda: s))
    stage.start()
    seen: dict[float, float] = {}  # block end -> level
    end = time.monotonic() + 30.0
    while stage.status().state != "ended" and time.monotonic() < end:
        track = stage.handoff.get(timeout=0.1)
        if track is not None:
            seen.update({f.timestamp: f.level for f in track.features})
    assert stage.status().state == "ended"
    block_s = 160 / RATE
    t = np.array(sorted(seen))
    if abs(t[-1] - t[-2] - block_s) > 1e-6:
        t = t[:-1]  # the silence published at the end is not a block of the file
    levels = np.array([seen[k] for k in t])
    assert len(t) == int(round(1.5 / block_s))  # every block of the file, none lost
    assert np.allclose(np.diff(t), block_s, atol=1e-6)  # dated on the file's clock: one block apart
    opened = levels > 0.1
    rising = int(np.count_nonzero(opened[1:] & ~opened[:-1])) + int(opened[0])
    assert rising == len(onsets), (rising, len(onsets))  # each click is one opening, none lost or merged
    first = t[np.argmax(opened)] - (t[0] - block_s)  # the first opening, from the file's start
    assert abs(first - onsets[0]) <= block_s + 1e-6  # within one block of the click
    assert stage.blocks >= int(1.5 * RATE / 160) - 1  # every block of the file was analysed


def test_mute_and_push_to_talk_close_the_mouth_but_keep_the_meter(tmp_path, stop_voice):
    wav = write_wav(tmp_path / "a.wav", vowel("a", 3.0))
    s = AudioSettings(mode="always", device=str(wav), loop=True)
    stage = stop_voice(VoiceStage(lambda: s))
    rx = VoiceReceiver(stage.handoff)
    stage.start()
    assert wait_for(lambda: rx.features_at(time.perf_counter()).level > 0.5)
    stage.set_muted(True)
    assert wait_for(lambda: rx.features_at(time.perf_counter()).level == 0.0)
    assert stage.status().db > s.gate_db and stage.status().muted and "(muted)" in stage.status().text()
    stage.set_muted(False)
    s.push_to_talk = True  # not held: closed
    assert wait_for(lambda: rx.features_at(time.perf_counter()).level == 0.0)
    stage.set_talking(True)
    assert wait_for(lambda: rx.features_at(time.perf_counter()).level > 0.5)
    f = rx.features_at(time.perf_counter())
    assert f.vowel == "a" and len(f.vowels) == len(VOWELS)


def test_a_missing_file_or_portaudio_is_a_clear_error(tmp_path):
    from liveportrait_core.voice.sources import open_audio

    with pytest.raises(AudioSourceError, match="no such file"):
        open_audio(str(tmp_path / "nope.wav"), 160, sd=FakePortAudio())
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioSourceError, match="could not be opened as audio"):
        open_audio(str(bad), 160)


def test_tape_fills_a_lost_device_with_silence(tmp_path):
    from liveportrait_core.voice.sources import AudioBlock

    tape = AudioTape(folder=str(tmp_path))
    one = np.full(160, 0.5, np.float32)
    tape.write(AudioBlock(one, 10.0 + 0.01))
    tape.write(AudioBlock(one, 10.0 + 0.02))
    tape.write(AudioBlock(one, 10.0 + 0.52))  # half a second later: the gap becomes silence
    tape.close()
    assert tape.start_ts == pytest.approx(10.0)
    assert tape.duration_s == pytest.approx(0.52, abs=0.011)
    tape.discard()
    assert not tape.path.exists()


def test_doctor_reports_the_microphones_and_fails_only_when_the_voice_needs_one(monkeypatch):
    pytest.importorskip("sounddevice")  # PortAudio (libportaudio2) present: the list is what is checked
    from liveportrait_core.settings import Settings
    from liveportrait_core.tools import doctor
    from liveportrait_core.voice import sources

    monkeypatch.setattr(sources, "list_microphones", lambda sd=None: [])
    s = Settings()
    off = {c.name: c for c in doctor.check_voice(s)}
    assert off["voice:microphone"].status == doctor.OK and "the voice is off" in off["voice:microphone"].detail
    s.audio.mode = "mix"
    on = {c.name: c for c in doctor.check_voice(s)}
    assert on["voice:microphone"].status == doctor.FAIL and "no microphone found" in on["voice:microphone"].detail
    mics = list_microphones(FakePortAudio())
    monkeypatch.setattr(sources, "list_microphones", lambda sd=None: mics)
    s.audio.device = "headset"
    found = {c.name: c for c in doctor.check_voice(s)}["voice:microphone"]
    assert found.status == doctor.OK and "is 1: USB Headset Mic" in found.detail
