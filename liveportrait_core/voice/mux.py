"""Put an audio track beside the picture of a finished MP4, through PyAV.

Why PyAV: the recorder writes the picture with OpenCV, whose video writer has no audio; muxing needs FFmpeg.
PyAV's wheels bundle FFmpeg's libraries (with its native AAC encoder) on Windows, macOS and Linux, so it
works in the OBS user's venv with no ffmpeg program on the PATH (none is on this project's machines either),
in-process, without parsing a subprocess's output. The picture is copied packet by packet (no re-encoding,
no quality loss); the sound is encoded to AAC. The result is written beside the video and then replaces it
(``os.replace``): the video is this program's own recording, and a failure leaves it as it was.
"""
from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)


class MuxError(RuntimeError):
    """The audio could not be added; the video file is unchanged."""


def _audio_frames(wav: Path, offset_s: float, duration_s: float, rate_out: int):
    """The sound of ``wav`` (a WAV, or any media file with an audio track), mono float32 at ``rate_out``,
    shifted by ``offset_s`` (positive: the sound starts that much after the picture: silence first; negative:
    its beginning is cut), cut or padded to ``duration_s``."""
    from liveportrait_core.voice.sources import read_file_audio  # noqa: PLC0415

    x = read_file_audio(wav, rate_out)
    shift = int(round(offset_s * rate_out))
    x = np.concatenate([np.zeros(shift, np.float32), x]) if shift >= 0 else x[-shift:]
    n = int(round(duration_s * rate_out))
    return x[:n] if len(x) >= n else np.concatenate([x, np.zeros(n - len(x), np.float32)])


def mux_audio(video: str | Path, wav: str | Path, offset_s: float, *, rate: int = 48000,
              bitrate: int = 96000) -> Path:
    """Add ``wav`` as an AAC track to ``video`` (in place, atomically); ``offset_s``: where the sound's first
    sample falls on the picture's time line. Raises MuxError (the video is left as it was)."""
    try:
        import av  # noqa: PLC0415
    except ImportError:
        raise MuxError("PyAV is not installed (pip install av): the recording has no sound") from None
    video, wav = Path(video), Path(wav)
    tmp = video.with_name(f".{video.stem}.muxing{video.suffix}")
    try:
        with av.open(str(video)) as vin:
            vs = vin.streams.video[0]
            duration = float(vs.frames / vs.average_rate) if vs.frames and vs.average_rate else \
                float(vin.duration or 0) / 1e6
            samples = _audio_frames(wav, offset_s, duration, rate)
            with av.open(str(tmp), "w", format="mp4") as out:
                vo = out.add_stream_from_template(vs) if hasattr(out, "add_stream_from_template") \
                    else out.add_stream(template=vs)
                ao = out.add_stream("aac", rate=rate)
                ao.layout = "mono"
                ao.bit_rate = bitrate
                audio_packets = _encode(av, ao, samples, rate)
                pending = next(audio_packets, None)
                for packet in vin.demux(vs):
                    if packet.dts is None:
                        continue
                    t = float(packet.dts * packet.time_base)
                    while pending is not None and pending.dts is not None and \
                            float(pending.dts * pending.time_base) <= t:
                        out.mux(pending)
                        pending = next(audio_packets, None)
                    packet.stream = vo
                    out.mux(packet)
                while pending is not None:
                    out.mux(pending)
                    pending = next(audio_packets, None)
        os.replace(tmp, video)
    except MuxError:
        raise
    except Exception as e:  # noqa: BLE001 - av.error.*: the video stays as it was
        tmp.unlink(missing_ok=True)
        raise MuxError(f"could not add the sound to {video.name}: {e}") from None
    return video


def _encode(av, stream, samples: np.ndarray, rate: int, chunk: int = 1024):
    """AAC packets of ``samples`` (mono float32), timed from 0."""
    pts = 0
    for i in range(0, len(samples), chunk):
        part = np.ascontiguousarray(samples[i:i + chunk].reshape(1, -1))
        frame = av.AudioFrame.from_ndarray(part, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        pts += part.shape[1]
        yield from stream.encode(frame)
    yield from stream.encode(None)


def has_audio(path: str | Path) -> bool:
    """Whether a media file has an audio track (False when it cannot be read or PyAV is missing)."""
    try:
        import av  # noqa: PLC0415

        with av.open(str(path)) as c:
            return bool(c.streams.audio)
    except Exception:  # noqa: BLE001
        return False


def audio_track_seconds(path: str | Path) -> float:
    """Seconds of sound in a media file (0.0 when it has no audio track): for checks and tests."""
    import av  # noqa: PLC0415

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return 0.0
        n = 0
        rate = c.streams.audio[0].rate
        for frame in c.decode(audio=0):
            n += frame.samples
        return n / float(rate)


def read_audio_track(path: str | Path, rate: int = 16000) -> np.ndarray:
    """The sound of a media file, mono float32 at ``rate`` (for checks and tests)."""
    from liveportrait_core.voice.sources import read_file_audio  # noqa: PLC0415

    return read_file_audio(path, rate)
