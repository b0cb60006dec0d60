"""Recording: an MP4 (alpha composited over a background colour) or a PNG sequence that keeps alpha."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from liveportrait_core.outputs.base import OutputUnavailable, PublishedFrame

_log = logging.getLogger(__name__)

MAX_GAP_S = 2.0  #: a longer stall (model reload...) is not filled with more than this many seconds of copies
VIDEO_SUFFIXES = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
#: A recording target with one of these suffixes is refused: it is neither a video nor (by its name) a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def free_path(path: Path) -> Path:
    """``path`` when nothing is there, else the first free ``name-2.mp4``, ``name-3.mp4``, ... beside it."""
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


class VideoRecorder:
    """Writes frames to a video file with OpenCV. An existing file is never overwritten (a recording made
    earlier, or before a restart of the engine): the next free ``name-N`` beside it is used, and said. Video codecs have no alpha, so transparent parts are
    composited over ``background`` (BGR); the first frame fixes the size and later frames of another
    size (a character switch) are resized to it, so that the file stays playable. Video encoders need
    even sides (OpenCV would silently drop the last row or column), so an odd side gets one row or
    column of ``background`` added, and the log says so; a PNG sequence keeps the exact size.

    ``timed``: live frames arrive at whatever rate the engine manages, but a video file has a fixed
    rate; each frame is then written as many times as its capture time says (or skipped when frames
    come faster than ``fps``), so that the recording plays back at real speed, not in slow motion."""

    def __init__(self, path: str | Path, fps: float, background: tuple[int, int, int] = (0, 0, 0),
                 name: str = "record", timed: bool = False) -> None:
        self.name = name
        self.path = Path(path)
        self.fps = fps if fps > 0 else 30.0
        self.background = background
        self.timed = timed
        self.frames_written = 0
        self._t0: float | None = None
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._bg: np.ndarray | None = None
        self._pad = (0, 0)  #: rows, columns of background added for the encoder's even size
        self._voice = None  #: the voice stage whose sound goes into the file (``attach_voice``)
        self._tape = None  #: its sound while recording (``voice.tape.AudioTape``)
        self._first_ts: float | None = None  #: capture time of the first frame: the picture's time 0
        self._sound_of: Path | None = None  #: a video input whose own sound goes into the file (``attach_sound_of``)

    @property
    def target(self) -> Path:
        """The file being written (``path``, or the free name chosen because ``path`` existed)."""
        return self.path

    def open(self) -> None:
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise OutputUnavailable(f"cannot record to {self.path}: use one of "
                                    f"{', '.join(VIDEO_SUFFIXES)} or a folder for a PNG sequence")
        if not self.path.parent.is_dir():
            raise OutputUnavailable(f"cannot record to {self.path}: folder {self.path.parent} does not exist")

    def _start(self, w: int, h: int) -> None:
        import cv2

        ew, eh = w + w % 2, h + h % 2  # the encoder's even size
        if self.path.is_file():  # (a folder of that name makes OpenCV fail: reported and retried as before)
            free = free_path(self.path)
            _log.warning("%s already exists and is kept; recording to %s instead", self.path, free)
            self.path = free
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES[self.path.suffix.lower()])
        self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (ew, eh))
        if not self._writer.isOpened():
            self._writer = None
            raise RuntimeError(f"OpenCV could not open {self.path} for writing")
        self._size = (w, h)
        self._pad = (eh - h, ew - w)
        self._bg = np.empty((h, w, 3), np.uint8)
        self._bg[:] = self.background
        _log.info("recording %dx%d at %.2f fps to %s", ew, eh, self.fps, self.path)
        if (ew, eh) != (w, h):
            added = " and ".join(n for n, odd in (("column", w % 2), ("row", h % 2)) if odd)
            _log.info("the frames are %dx%d; the video encoder needs even sides, so the recording is %dx%d with "
                      "one %s of background colour added (a PNG sequence keeps the exact size)",
                      w, h, ew, eh, added)

    def attach_voice(self, voice) -> None:
        """Record the sound the voice stage hears (``voice.stage.VoiceStage``) and mux it into the file when
        the recording closes (``voice.mux``), aligned on the frames' capture clock. Live (``timed``), or an audio
        file read on the frames' own clock (``voice.stage.FileVoice``: every frame of a video, a folder or an audio
        file's length); a real-time voice (a microphone) has nothing to line up with in frames processed as fast
        as possible."""
        if not self.timed and not getattr(voice, "offline", False):
            _log.info("the recording has no sound: frames are processed as fast as possible, not in real time")
            return
        from liveportrait_core.voice.tape import AudioTape  # noqa: PLC0415

        self._voice = voice
        self._tape = AudioTape()
        voice.add_tap(self._tape.write)

    def attach_sound_of(self, video: str | Path) -> None:
        """Every frame of a video file, in order, at its own rate: frame k of the recording is frame k of the
        input, so the input's own sound (if it has any) is muxed in as it is, from 0."""
        self._sound_of = Path(video)

    def _copies(self, frame: PublishedFrame) -> int:
        """How many times to write this frame (1 unless ``timed``)."""
        if not self.timed:
            return 1
        if self._t0 is None:
            self._t0 = frame.capture_ts
        due = int((frame.capture_ts - self._t0) * self.fps + 1e-6) + 1  # frames the video should hold by now
        return max(0, min(due - self.frames_written, int(self.fps * MAX_GAP_S)))

    def send(self, frame: PublishedFrame) -> None:
        import cv2

        if self._first_ts is None:
            self._first_ts = frame.capture_ts
        copies = self._copies(frame)
        if copies == 0:
            return
        bgra = frame.bgra
        if self._writer is None:
            self._start(frame.width, frame.height)
        assert self._size is not None and self._bg is not None
        if (frame.width, frame.height) != self._size:
            bgra = cv2.resize(bgra, self._size, interpolation=cv2.INTER_AREA)
        alpha = bgra[:, :, 3]
        if alpha.min() == 255:
            bgr = cv2.cvtColor(bgra, cv2.COLOR_BGRA2BGR)
        else:
            w = cv2.cvtColor(alpha, cv2.COLOR_GRAY2BGR).astype(np.float32) * (1.0 / 255.0)
            bgr = cv2.blendLinear(bgra[:, :, :3], self._bg, w[:, :, 0], 1.0 - w[:, :, 0])
        if any(self._pad):
            bgr = cv2.copyMakeBorder(bgr, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_CONSTANT,
                                     value=self.background)
        for _ in range(copies):
            self._writer.write(bgr)
        self.frames_written += copies

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            _log.info("recorded %d frames to %s", self.frames_written, self.path)
        self._add_sound()

    def _add_sound(self) -> None:
        """Mux the voice's sound into the finished file (a failure keeps the silent video and says why)."""
        tape, self._tape = self._tape, None
        if tape is None:
            self._add_sound_of_input()
            return
        if self._voice is not None:
            self._voice.remove_tap(tape.write)
        tape.close()
        try:
            if self.frames_written and tape.samples and tape.start_ts is not None and self._first_ts is not None:
                from liveportrait_core.voice.mux import MuxError, mux_audio  # noqa: PLC0415

                try:
                    mux_audio(self.path, tape.path, tape.start_ts - self._first_ts)
                    _log.info("added %.1f s of sound to %s", tape.duration_s, self.path)
                except MuxError as e:
                    _log.warning("%s", e)
        finally:
            tape.discard()

    def _add_sound_of_input(self) -> None:
        src, self._sound_of = self._sound_of, None
        if src is None or not self.frames_written:
            return
        from liveportrait_core.voice.mux import MuxError, has_audio, mux_audio  # noqa: PLC0415

        if not has_audio(src):
            return
        try:
            mux_audio(self.path, src, 0.0)
            _log.info("added the sound of %s to %s", src.name, self.path)
        except MuxError as e:
            _log.warning("%s", e)


class PngSequenceRecorder:
    """Writes ``frame_000000.png``, ... into a folder, alpha kept (for editing with transparency). A folder
    that already holds frames is left alone: the next free ``name-N`` beside it is used, and said."""

    def __init__(self, folder: str | Path, name: str = "record", compression: int = 1) -> None:
        self.name = name
        self.folder = Path(folder)
        self.compression = compression  # 0-9; 1 is fast enough for live use
        self.frames_written = 0

    @property
    def target(self) -> Path:
        return self.folder

    def open(self) -> None:
        if self.frames_written == 0 and any(self.folder.glob("frame_*.png")):  # an earlier recording: kept
            free = free_path(self.folder)
            _log.warning("%s already holds frame_*.png files, which are kept; recording to %s instead",
                         self.folder, free)
            self.folder = free
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputUnavailable(f"cannot create the recording folder {self.folder}: {e.strerror or e}") from None

    def send(self, frame: PublishedFrame) -> None:
        import cv2

        path = self.folder / f"frame_{self.frames_written:06d}.png"
        if not cv2.imwrite(str(path), frame.bgra, [cv2.IMWRITE_PNG_COMPRESSION, self.compression]):
            raise RuntimeError(f"could not write {path} (disk full or no permission?)")
        self.frames_written += 1

    def close(self) -> None:
        pass


def check_target(target: str | Path) -> None:
    """Refuse a recording target named like an image (``out.png`` would otherwise become a folder of that
    name): ValueError naming the two kinds of target."""
    p = Path(target).expanduser()
    if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir():
        raise ValueError(f"cannot record to {p.name}: a recording is a video file "
                         f"({', '.join(VIDEO_SUFFIXES)}, e.g. out.mp4) or a folder for PNG frames with alpha "
                         f"(e.g. {p.with_suffix('').name}_frames)")


def make_recorder(target: str | Path, fps: float, name: str = "record",
                  timed: bool = False) -> VideoRecorder | PngSequenceRecorder:
    """A video recorder for a file name with a video suffix, else a PNG sequence in that folder
    (ValueError for a name like an image, see ``check_target``)."""
    check_target(target)
    p = Path(target).expanduser()
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return VideoRecorder(p, fps, name=name, timed=timed)
    return PngSequenceRecorder(p, name=name)
