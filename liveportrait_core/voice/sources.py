"""Audio sources: a microphone through PortAudio (``sounddevice``), or an audio file / a video's audio track.

``open_audio(audio.device)`` picks the source: an existing file is a file; a number is a microphone index;
``default`` is the system's default input; anything else is a microphone name (exact, then a case-insensitive
part of it). Every source hands out ``AudioBlock`` s of ``block`` samples at the analysis rate
(``resample.RATE``), mono, dated on ``time.perf_counter()`` — the video frames' clock — so that the mouth of
a frame comes from the audio of the same instant.

Microphone: PortAudio calls back on its own thread; the callback mixes to mono and writes into a small ring
(``ring.RingBuffer``), never blocking. A device that disappears stops the callbacks (or flags an error):
``read`` then raises ``AudioSourceError`` and the voice stage reopens it with backoff, like a lost webcam;
PortAudio's device list is refreshed before each reopen, so a device plugged back in (maybe under another
index) is found by its name again.

Files: a WAV through the standard library's ``wave`` (PCM 8/16/24/32-bit); everything else (MP3, M4A, OGG,
FLAC, the audio track of MP4/MKV/MOV) through PyAV, which bundles FFmpeg's decoders in its wheel on every OS
(no ffmpeg program needed on the user's PATH; the same library muxes the recording's audio, see ``mux``).
A file is paced at real time from its first block (``realtime``), or read as fast as asked.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np

from liveportrait_core.voice.resample import RATE, StreamResampler, resample_all
from liveportrait_core.voice.ring import RingBuffer

_log = logging.getLogger(__name__)

#: Seconds without a single callback before a microphone counts as gone.
MIC_SILENT_S = 1.0
RESYNC_S = 0.05  #: a microphone's sample clock is re-anchored when it parts this far from arrival times
RING_S = 0.5  #: how much audio the ring holds (a voice thread that stalls longer loses the oldest)
DEFAULT_DEVICE = "default"


class AudioSourceError(RuntimeError):
    """The audio source cannot be opened or stopped delivering; the message says what to do."""


@dataclass(frozen=True)
class AudioBlock:
    samples: np.ndarray  #: float32 mono at RATE, full scale +-1
    t_end: float  #: ``time.perf_counter()`` just after the last sample


class AudioSource(Protocol):
    description: str
    finite: bool

    def read(self, timeout: float) -> AudioBlock | None:
        """The next block; None when none came within ``timeout`` (live) or at the end of a file that does
        not loop (then ``ended`` is True); raises AudioSourceError when the source is gone."""

    def close(self) -> None: ...


def describe_audio(device: str) -> str:
    """What ``audio.device`` names: ``file``, ``index``, ``default`` or ``name``."""
    s = device.strip()
    if not s or s.lower() == DEFAULT_DEVICE:
        return "default"
    if s.isdigit():
        return "index"
    if Path(os.path.expanduser(s)).is_file():
        return "file"
    return "name"


# ------------------------------------------------------------------------------------------------ microphones


def _portaudio() -> Any:
    """The ``sounddevice`` module (PortAudio); AudioSourceError with the fix when it cannot load."""
    try:
        import sounddevice  # noqa: PLC0415
    except OSError as e:  # the wheel on Linux uses the system's PortAudio
        raise AudioSourceError(f"PortAudio is not installed ({e}); on Debian/Ubuntu: sudo apt-get install "
                               "libportaudio2") from None
    except ImportError as e:
        raise AudioSourceError(f"the sounddevice package is missing ({e}); reinstall with install.py") from None
    return sounddevice


@dataclass(frozen=True)
class Microphone:
    index: int
    name: str
    channels: int
    rate: float


def list_microphones(sd: Any | None = None) -> list[Microphone]:
    """Input devices PortAudio reports (empty when none or PortAudio is missing)."""
    try:
        sd = sd or _portaudio()
        devices = sd.query_devices()
    except Exception as e:  # noqa: BLE001 - a listing is a convenience
        _log.debug("no microphone list: %s", e)
        return []
    return [Microphone(i, str(d["name"]), int(d["max_input_channels"]), float(d["default_samplerate"]))
            for i, d in enumerate(devices) if int(d.get("max_input_channels", 0)) > 0]


def resolve_microphone(device: str, mics: list[Microphone], default_index: int | None) -> Microphone:
    """The microphone ``device`` names (index, name, part of a name, or default)."""
    kind = describe_audio(device)
    known = ", ".join(f"{m.index}: {m.name}" for m in mics) or "none (is a microphone connected?)"
    if kind == "default":
        for m in mics:
            if m.index == default_index:
                return m
        if mics:
            return mics[0]
        raise AudioSourceError(f"no microphone found; audio.device={device!r}; microphones: {known}")
    if kind == "index":
        for m in mics:
            if m.index == int(device):
                return m
        raise AudioSourceError(f"audio.device {device!r} is not a microphone index; microphones: {known}")
    lowered = device.strip().lower()
    for match in ((lambda m: m.name.lower() == lowered), (lambda m: lowered in m.name.lower())):
        hits = [m for m in mics if match(m)]
        if hits:
            return hits[0]
    if re.search(r"[\\/]|\.\w{2,4}$", device):
        raise AudioSourceError(f"audio.device {device!r}: no such file")
    raise AudioSourceError(f"audio.device {device!r} is not a file or a known microphone; microphones: {known}")


class MicrophoneSource:
    """A PortAudio input stream; blocks of ``block`` samples at RATE, mono."""

    finite = False
    ended = False

    def __init__(self, device: str, block: int, sd: Any | None = None, refresh: bool = False) -> None:
        self._sd = sd or _portaudio()
        if refresh:  # PortAudio lists devices once per initialisation: a replugged one needs a fresh list
            try:
                self._sd._terminate()
                self._sd._initialize()
            except Exception as e:  # noqa: BLE001 - private API; a stale list is the worst case
                _log.debug("PortAudio refresh failed: %s", e)
        try:
            default_in = self._sd.default.device[0]
        except Exception:  # noqa: BLE001
            default_in = None
        mic = resolve_microphone(device, list_microphones(self._sd), default_in)
        self.description = f"microphone {mic.index}: {mic.name}"
        self.name = mic.name
        self.rate = mic.rate or 48000.0
        self._block = block
        self._resample = StreamResampler(self.rate, RATE)
        self._ring = RingBuffer(int(RING_S * RATE), RATE)
        self._lock = threading.Lock()
        self._last_callback = time.perf_counter()
        self._anchor = self._last_callback  #: the clock of the stream's first sample
        self._samples = 0  #: samples (at RATE) delivered since
        self._error = ""
        latency_blocksize = max(1, int(round(self.rate * block / RATE)))
        try:
            self._stream = self._sd.InputStream(device=mic.index, channels=1, samplerate=self.rate,
                                                blocksize=latency_blocksize, dtype="float32",
                                                latency="low", callback=self._callback)
            self._stream.start()
        except Exception as e:  # noqa: BLE001 - PortAudioError and friends
            raise AudioSourceError(f"{self.description} could not be opened ({e}); is it in use by another "
                                   "program, or unplugged?") from None

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: resample and store; never raises, never blocks for long."""
        now = time.perf_counter()
        try:
            if status and getattr(status, "input_overflow", False):
                _log.debug("%s: input overflow", self.description)
            x = indata[:, 0] if indata.ndim == 2 else indata
            y = self._resample(x)
            self._samples += len(y)
            # a sample clock (callbacks arrive in bursts; their arrival times jitter), re-anchored on the
            # arrival time when the two part by more than RESYNC_S (a dropout, or the card's clock drifting)
            t_end = self._anchor + self._samples / RATE
            if abs(now - t_end) > RESYNC_S:
                self._anchor = now - self._samples / RATE
                t_end = now
            self._ring.write(y, t_end)
            self._last_callback = now
        except Exception as e:  # noqa: BLE001 - a callback must not raise into PortAudio
            self._error = str(e)

    def read(self, timeout: float) -> AudioBlock | None:
        got = self._ring.read(self._block, timeout)
        if got is not None:
            return AudioBlock(*got)
        if self._error:
            raise AudioSourceError(f"{self.description}: {self._error}")
        active = bool(getattr(self._stream, "active", True))
        if not active or time.perf_counter() - self._last_callback > MIC_SILENT_S:
            raise AudioSourceError(f"{self.description} stopped delivering audio (unplugged, or taken by "
                                   "another program?)")
        return None

    def close(self) -> None:
        try:
            self._stream.stop()
            self._stream.close()
        except Exception as e:  # noqa: BLE001 - a vanished device may refuse even this
            _log.debug("closing %s: %s", self.description, e)


# ------------------------------------------------------------------------------------------------ files


def _wav_chunks(path: Path, chunk_s: float = 0.25) -> tuple[float, Iterator[np.ndarray]]:
    """(rate, mono float32 chunks) of a PCM WAV through the standard library."""
    w = wave.open(str(path), "rb")
    if w.getcomptype() != "NONE":
        w.close()
        raise ValueError("compressed WAV")
    rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()

    def gen() -> Iterator[np.ndarray]:
        try:
            n = max(1, int(rate * chunk_s))
            while True:
                raw = w.readframes(n)
                if not raw:
                    return
                if width == 1:
                    x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
                elif width == 2:
                    x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
                elif width == 3:
                    b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
                    v = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16))
                    x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
                else:
                    x = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
                yield x.reshape(-1, ch).mean(axis=1)
        finally:
            w.close()

    return float(rate), gen()


def _av_chunks(path: Path, rate: int = RATE) -> tuple[float, Iterator[np.ndarray]]:
    """(rate, mono float32 chunks) of any file with an audio stream, decoded and resampled by PyAV."""
    try:
        import av  # noqa: PLC0415
    except ImportError:
        raise AudioSourceError(f"{path.name}: only WAV files can be read without PyAV (pip install av)") from None
    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 - av.error.* for damaged or unknown files
        raise AudioSourceError(f"audio.device {str(path)!r} could not be opened as audio ({e})") from None
    if not container.streams.audio:
        container.close()
        raise AudioSourceError(f"audio.device {str(path)!r} has no audio track")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)

    def gen() -> Iterator[np.ndarray]:
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        finally:
            container.close()

    return float(rate), gen()


def _file_chunks(path: Path, rate: int = RATE) -> tuple[float, Iterator[np.ndarray]]:
    """(its rate, mono float32 chunks) of a PCM WAV (standard library), else of any file PyAV reads (at ``rate``):
    the one way this program reads a sound file, for the voice and for the recorder's soundtrack."""
    try:
        return _wav_chunks(path)
    except (wave.Error, EOFError, ValueError):
        return _av_chunks(path, rate)
    except OSError as e:
        raise AudioSourceError(f"audio.device {str(path)!r} could not be read: {e.strerror or e}") from None


def read_file_audio(path: str | Path, rate: int = RATE) -> np.ndarray:
    """The whole sound of a file, mono float32 at ``rate`` (raises AudioSourceError)."""
    file_rate, chunks = _file_chunks(Path(path).expanduser(), rate)
    parts = list(chunks)
    x = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    return resample_all(x, int(file_rate), rate)


def file_duration_s(path: str | Path) -> float | None:
    """The length of an audio file in seconds (None when it cannot be told without decoding it all)."""
    p = Path(path).expanduser()
    try:
        with wave.open(str(p), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError, OSError):
        pass
    try:
        import av  # noqa: PLC0415

        with av.open(str(p)) as c:
            s = c.streams.audio[0] if c.streams.audio else None
            if s is not None and s.duration is not None and s.time_base is not None:
                return float(s.duration * s.time_base)
            return float(c.duration) / 1e6 if c.duration else None
    except Exception:  # noqa: BLE001
        return None


class FileSource:
    """An audio file (or a video's audio track) as blocks at RATE, paced at real time or not."""

    finite = True

    def __init__(self, path: str | Path, block: int, realtime: bool = True, loop: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.description = f"audio file {self.path.name}"
        self._block = block
        self.realtime = realtime
        self.loop = loop
        self.ended = False
        self._open()
        self._t0: float | None = None  #: the clock of the file's first sample
        self._emitted = 0  #: samples handed out (for the clock)
        self._pending = np.zeros(0, np.float32)

    def _open(self) -> None:
        rate, chunks = _file_chunks(self.path)
        self._chunks = chunks
        self._resample = StreamResampler(rate, RATE)
        self.file_rate = rate

    def read(self, timeout: float) -> AudioBlock | None:
        while len(self._pending) < self._block:
            chunk = next(self._chunks, None)
            if chunk is None:
                if self.loop and self._emitted > 0:
                    self._open()
                    continue
                if len(self._pending) == 0:
                    self.ended = True
                    return None
                chunk = np.zeros(self._block - len(self._pending), np.float32)  # pad the last block
                self._pending = np.concatenate([self._pending, chunk])
                break
            self._pending = np.concatenate([self._pending, self._resample(chunk)])
        out, self._pending = self._pending[:self._block], self._pending[self._block:]
        if self._t0 is None:
            self._t0 = time.perf_counter()
        self._emitted += len(out)
        t_end = self._t0 + self._emitted / RATE
        if self.realtime:
            wait = t_end - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        return AudioBlock(out, t_end)

    @property
    def start_time(self) -> float | None:
        """The clock of the file's first sample (None before the first block)."""
        return self._t0

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def open_audio(device: str, block: int, *, realtime: bool = True, loop: bool = False, sd: Any | None = None,
               refresh: bool = False) -> AudioSource:
    """Open what ``audio.device`` names; raises AudioSourceError with an actionable message."""
    if describe_audio(device) == "file":
        return FileSource(device, block, realtime=realtime, loop=loop)
    return MicrophoneSource(device, block, sd=sd, refresh=refresh)


#: Seconds of picture after the end of the file in a run that the file's length sets (the mouth closes).
TAIL_S = 0.5


def voice_timeline(settings: Any) -> float | None:
    """The length in seconds of the audio file that sets a run's timeline, or None when the run is live.

    With no webcam (``capture.source: none``), an audio file (``audio.device``), the voice on, no looping and
    ``capture.realtime`` off (the CLI's default for files), the run renders every frame of the file's length as
    fast as the machine can, each frame with the voice of its own instant on the file's clock: an exact,
    full-rate talking clip even on a CPU that animates a frame a second (``voice.stage.FileVoice``)."""
    from liveportrait_core.capture.sources import is_no_camera  # noqa: PLC0415

    a, cs = settings.audio, settings.capture
    if a.mode == "off" or a.loop or cs.realtime or not is_no_camera(cs) or describe_audio(a.device) != "file":
        return None
    return file_duration_s(a.device)
