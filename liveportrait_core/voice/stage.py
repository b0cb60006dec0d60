"""The voice stage: an audio source read on its own thread (``lp-voice``), analysed block by block, the
newest features handed to the inference thread through a latest-value hand-off.

What travels is a ``VoiceTrack``: the features of the last half second, newest last (a tuple, never
changed after it is made). The inference thread takes the newest track when it animates a frame and reads
the features at the frame's own timestamp (``VoiceTrack.at``): a webcam frame gets the voice of the instant
it was captured (the audio and video clocks are both ``time.perf_counter()``), an idle frame (no webcam)
the newest. The lag from the voice to the mouth is then at most one audio block (the block must end before
its features exist) plus one video frame (the frame that shows it is the next one made).

A source that fails or disappears is reported, closed and reopened with backoff (0.5 s doubling to 10 s),
exactly like a lost webcam; the mouth closes meanwhile. Mute and push-to-talk gate the features here, so
that the status still shows the level while the mouth stays closed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

from liveportrait_core.engine.handoff import LatestValue
from liveportrait_core.voice.features import SILENCE_DB, SILENT, VoiceAnalyzer, VoiceFeatures
from liveportrait_core.voice.resample import RATE
from liveportrait_core.voice.sources import (AudioBlock, AudioSource, AudioSourceError, FileSource, describe_audio,
                                             open_audio)

if TYPE_CHECKING:  # pragma: no cover
    from liveportrait_core.settings import AudioSettings

_log = logging.getLogger(__name__)

HISTORY_S = 0.5  #: how far back a VoiceTrack reaches
STALE_S = 0.5  #: features older than this before a frame are no voice any more (source lost or ended)
BACKOFF_S = (0.5, 10.0)
READ_TIMEOUT_S = 0.1


def block_samples(s: "AudioSettings") -> int:
    return max(16, int(round(RATE * s.block_ms / 1000.0)))


def _gate(f: VoiceFeatures, s: "AudioSettings", muted: bool, talking: bool) -> tuple[VoiceFeatures, bool]:
    """Mute and push-to-talk: the features with the mouth held closed (the level in dB still shows), and
    whether they were held."""
    if muted or (s.push_to_talk and not talking):
        return replace(f, level=0.0, gate_open=False, vowels=SILENT.vowels), True
    return f, False


@dataclass(frozen=True)
class VoiceTrack:
    """The features of the last ``HISTORY_S``, oldest first."""

    features: tuple[VoiceFeatures, ...]

    def at(self, t: float) -> VoiceFeatures:
        """The features of the newest block that ended by ``t`` (the oldest if ``t`` is before them all; the
        silent features when the newest is older than ``STALE_S`` before ``t``)."""
        fs = self.features
        if not fs:
            return SILENT
        if t - fs[-1].timestamp > STALE_S:
            return SILENT
        for f in reversed(fs):
            if f.timestamp <= t:
                return f
        return fs[0]


EMPTY_TRACK = VoiceTrack(())


@dataclass(frozen=True)
class VoiceStatus:
    state: str  #: off | opening | listening | lost | ended
    source: str = ""  #: what is being listened to
    db: float = SILENT.db
    level: float = 0.0
    vowel: str = ""
    muted: bool = False
    message: str = ""

    def text(self) -> str:
        """One short line for a status bar: ``voice -23 dB ▮▮▮▯▯ a``."""
        if self.state in ("off",):
            return ""
        if self.state != "listening":
            return f"voice {self.state}" + (f": {self.message}" if self.message else "")
        bars = int(round(self.level * 5))
        meter = "▮" * bars + "▯" * (5 - bars)
        loudness = "silent" if self.db <= SILENCE_DB else f"{self.db:.0f} dB"  # digital silence read "-120 dB"
        return (f"voice {loudness} {meter}" + (f" {self.vowel.upper()}" if self.vowel else "")
                + (" (muted)" if self.muted else ""))


class VoiceReceiver:
    """The inference thread's end of the hand-off: the newest track, read at a frame's time."""

    def __init__(self, handoff: LatestValue[VoiceTrack]) -> None:
        self.handoff = handoff
        self.track = EMPTY_TRACK

    def features_at(self, t: float) -> VoiceFeatures:
        newer = self.handoff.get(timeout=0)
        if newer is not None:
            self.track = newer
        return self.track.at(t)


class VoiceStage:
    """Owns the ``lp-voice`` thread. ``settings()`` is read at every block (the engine's current settings)."""

    def __init__(self, settings: Callable[[], "AudioSettings"], *, report: Callable[[BaseException], None]
                 | None = None, sd: Any | None = None, realtime: bool = True) -> None:
        self._settings = settings
        self._report = report or (lambda e: _log.warning("voice: %s", e))
        self._sd = sd
        self.realtime = realtime
        self.handoff: LatestValue[VoiceTrack] = LatestValue("voice")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._taps: list[Callable[[AudioBlock], None]] = []
        self._lock = threading.Lock()
        self._status = VoiceStatus("opening")
        self._muted = False
        self._talking = False
        self.blocks = 0  #: blocks analysed since start
        self.reopened = 0  #: times the source came back after a loss

    # -- control (any thread) -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="lp-voice", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        self._stop.set()
        self.handoff.close()
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout)
            return not th.is_alive()
        return True

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def receiver(self) -> VoiceReceiver:
        """The inference thread's end of the hand-off."""
        return VoiceReceiver(self.handoff)

    def set_muted(self, muted: bool) -> None:
        self._muted = bool(muted)

    @property
    def muted(self) -> bool:
        return self._muted

    def set_talking(self, talking: bool) -> None:
        """Push-to-talk held (True) or released; only matters with ``audio.push_to_talk``."""
        self._talking = bool(talking)

    def add_tap(self, fn: Callable[[AudioBlock], None]) -> None:
        """Call ``fn(block)`` on the voice thread for every block (the recording's audio track)."""
        with self._lock:
            self._taps.append(fn)

    def remove_tap(self, fn: Callable[[AudioBlock], None]) -> None:
        with self._lock:
            if fn in self._taps:
                self._taps.remove(fn)

    def status(self) -> VoiceStatus:
        return self._status

    # -- the thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        src: AudioSource | None = None
        delay = BACKOFF_S[0]
        history: deque[VoiceFeatures] = deque()
        s = self._settings()
        analyzer = VoiceAnalyzer(s)
        device = s.device
        lost = False
        try:
            while not self._stop.is_set():
                s = self._settings()
                if s.device != device and src is not None:  # another microphone or file: reopen
                    src.close()
                    src, device, lost = None, s.device, False
                    analyzer.reset()
                try:
                    if src is None:
                        device = s.device
                        src = open_audio(device, block_samples(s), realtime=self.realtime, loop=s.loop, sd=self._sd,
                                         refresh=lost and describe_audio(device) != "file")
                        if lost:
                            self.reopened += 1
                            _log.info("voice back: %s", src.description)
                        lost, delay = False, BACKOFF_S[0]
                        self._status = VoiceStatus("listening", src.description, muted=self._muted)
                    block = src.read(READ_TIMEOUT_S)
                except AudioSourceError as e:  # failed to open, or lost: closed, reported, reopened with backoff
                    if src is not None:
                        src.close()
                        src = None
                        analyzer.reset()
                    self._lost(e, history)
                    lost = True
                    self._stop.wait(delay)
                    delay = min(delay * 2, BACKOFF_S[1])
                    continue
                if block is None:
                    if getattr(src, "ended", False):
                        self._status = VoiceStatus("ended", src.description, message="the file ended")
                        self._publish(history, replace(SILENT, timestamp=time.perf_counter()))
                        self._stop.wait(READ_TIMEOUT_S)
                    continue
                analyzer.configure(s)
                f, gated = _gate(analyzer.process(block.samples, block.t_end), s, self._muted, self._talking)
                self.blocks += 1
                self._publish(history, f)
                self._status = VoiceStatus("listening", src.description, db=f.db, level=f.level, vowel=f.vowel,
                                           muted=gated)
                with self._lock:
                    taps = list(self._taps)
                for tap in taps:
                    try:
                        tap(block)
                    except Exception as e:  # noqa: BLE001 - a failing recording must not stop the voice
                        _log.warning("voice: audio tap failed: %s", e)
                        self.remove_tap(tap)
        finally:
            if src is not None:
                src.close()

    def _publish(self, history: deque[VoiceFeatures], f: VoiceFeatures) -> None:
        history.append(f)
        while history and f.timestamp - history[0].timestamp > HISTORY_S:
            history.popleft()
        self.handoff.put(VoiceTrack(tuple(history)))

    def _lost(self, e: BaseException, history: deque[VoiceFeatures]) -> None:
        self._status = VoiceStatus("lost", message=str(e))
        self._publish(history, replace(SILENT, timestamp=time.perf_counter()))  # the mouth closes at once
        self._report(e)


class FileVoice:
    """The voice of a file on the frames' own clock, with no thread: a run that renders every frame — of an
    audio file's length (``sources.voice_timeline``), or of a video or folder input processed frame by frame
    (media time, ``capture.clock``; the same video as input and audio lines up at any speed).
    ``features_at(t)`` analyses the file up to ``t`` (seconds after ``epoch`` on the file's time line) and
    returns the newest block's features, so frame k at ``epoch + k / fps`` gets the voice of the instant it
    shows, whatever the machine's speed; ``audio.loop`` restarts the file. Offers the same surface as
    ``VoiceStage``."""

    offline = True
    thread = None

    def __init__(self, settings: Callable[[], "AudioSettings"], epoch: float) -> None:
        s = settings()
        self._settings = settings
        self.epoch = epoch
        self._src = FileSource(s.device, block_samples(s), realtime=False, loop=s.loop)
        self._analyzer = VoiceAnalyzer(s)
        self._t = 0.0  #: seconds of the file analysed so far
        self._last: VoiceFeatures = replace(SILENT, timestamp=epoch)
        self._taps: list[Callable[[AudioBlock], None]] = []
        self._muted = self._talking = False
        self._status = VoiceStatus("listening", self._src.description)
        self.blocks = 0
        #: the inference thread reads (``features_at``) while another may stop it (another file chosen): a stop
        #: waits for the block being read, and a stopped voice reads nothing more ("generator already executing")
        self._lock = threading.Lock()
        self._stopped = False

    def receiver(self) -> "FileVoice":
        return self

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 1.0) -> bool:
        with self._lock:
            self._stopped = True
            self._src.close()
        return True

    def set_muted(self, muted: bool) -> None:
        self._muted = bool(muted)

    def set_talking(self, talking: bool) -> None:
        self._talking = bool(talking)

    def add_tap(self, fn: Callable[[AudioBlock], None]) -> None:
        self._taps.append(fn)

    def remove_tap(self, fn: Callable[[AudioBlock], None]) -> None:
        if fn in self._taps:
            self._taps.remove(fn)

    def status(self) -> VoiceStatus:
        return self._status

    def features_at(self, t: float) -> VoiceFeatures:
        with self._lock:
            if self._stopped:  # (a frame taken just before the stop): the mouth closes
                return replace(SILENT, timestamp=t)
            return self._features_at(t)

    def _features_at(self, t: float) -> VoiceFeatures:
        s = self._settings()
        self._analyzer.configure(s)
        while self._status.state != "ended":
            step = block_samples(s) / RATE
            if self._t + step > t - self.epoch + 1e-9:  # that block ends after the frame: not heard yet
                break
            block = self._src.read(0.0)
            if block is None:
                self._status = VoiceStatus("ended", self._src.description, message="the file ended")
                self._last = replace(SILENT, timestamp=t)
                break
            self._t += len(block.samples) / RATE
            dated = AudioBlock(block.samples, self.epoch + self._t)
            f, gated = _gate(self._analyzer.process(dated.samples, dated.t_end), s, self._muted, self._talking)
            self._last = f
            self.blocks += 1
            self._status = VoiceStatus("listening", self._src.description, db=f.db, level=f.level, vowel=f.vowel,
                                       muted=gated)
            for tap in list(self._taps):
                tap(dated)
        if self._status.state == "ended":  # after the end: silence, at every frame's own time
            self._last = replace(SILENT, timestamp=t)
        return self._last
