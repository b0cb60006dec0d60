"""``run``: animate a character from a webcam, video or image folder into any outputs, without OBS.

``preview``, ``record`` and ``demo`` are this command with other defaults; they reuse
``add_run_arguments`` and ``run_engine`` from here.
"""
from __future__ import annotations

import argparse
import logging
import math
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from liveportrait_core.cli import exits

NAME = "run"
HELP = "animate a character from a webcam, video or image folder into NDI/Spout/preview/recording"
DESCRIPTION = (HELP + ". A video file or image folder is processed frame by frame (every frame, as fast as "
               "possible) unless --realtime is given; a webcam runs live until Ctrl-C.")
EPILOG = exits.HELP

_log = logging.getLogger(__name__)

#: Seconds without a single input frame (and with capture errors) before the command gives up.
NO_INPUT_S = 3.0
#: CLI option -> setting it fills (only when given)
SHORTCUTS = {"models_dir": "model.models_dir", "input": "capture.source", "device": "model.device",
             "precision": "model.precision"}


def add_run_arguments(p: argparse.ArgumentParser, *, record_required: bool = False) -> None:
    p.add_argument("--character", metavar="IMG",
                   help="character image file, or a file name in the characters folder (default: settings)")
    p.add_argument("--input", metavar="SRC", help="webcam index or name, video file, image folder, or none (no "
                                                  "webcam: the character idles; default: settings capture.source)")
    p.add_argument("--audio", metavar="DEVICE|FILE",
                   help="the voice moves the mouth: a microphone index or name, 'default', or an audio/video file "
                        "(switches audio.mode on when it is off: always with --input none, else mix; docs/VOICE.md)")
    p.add_argument("--models-dir", metavar="DIR", help="folder holding liveportrait/ (default: settings)")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), help="where the networks run")
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), help="network precision")
    if record_required:
        p.add_argument("output", metavar="OUT", help="record to this .mp4 file, or a folder for PNG frames with alpha")
    else:
        p.add_argument("--record", metavar="OUT", help="record to this .mp4 file, or a folder for PNG frames")
    p.add_argument("--ndi", nargs="?", const="", metavar="NAME", help="send over NDI (optional sender name)")
    p.add_argument("--spout", nargs="?", const="", metavar="NAME", help="send over Spout2, Windows (optional name)")
    p.add_argument("--preview", action="store_true", help="show a preview window")
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="stop after N frames were published (animated and sent to the outputs), in every mode")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--realtime", action="store_true",
                   help="pace a video file at its own frame rate, dropping frames the pipeline cannot keep up with")
    p.add_argument("--loop", action="store_true", help="loop a video file or image folder")
    p.add_argument("--status-every", type=float, default=5.0, metavar="S", help="print the status line every S s")
    p.set_defaults(_settings_shortcuts=SHORTCUTS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)


def apply_arguments(args: argparse.Namespace, settings: Any) -> Any:
    """Settings for this run: the CLI's output switches and character on top of the loaded settings."""
    from liveportrait_core import settings as schema
    from liveportrait_core.capture.sources import describe_source

    over: dict[str, Any] = {}
    if getattr(args, "models_dir", None):  # relative to where the user typed it, not to the project
        over["model.models_dir"] = str(Path(args.models_dir).expanduser().resolve())
    if getattr(args, "character", None):
        c = Path(args.character).expanduser()
        if c.is_file():
            over["characters.folder"] = str(c.resolve().parent)
            over["characters.active"] = c.name
        elif c.parent != Path(".") or c.suffix == "":
            raise schema.SettingsError(f"--character {args.character!r}: no such image file")
        else:
            over["characters.active"] = c.name
    record = getattr(args, "output", None) or getattr(args, "record", None)
    if record:
        from liveportrait_core.outputs.recorder import check_target

        try:
            check_target(record)
        except ValueError as e:
            raise schema.SettingsError(str(e)) from None
        over["outputs.record"] = str(Path(record).expanduser().resolve())
    if args.ndi is not None:
        over["outputs.ndi"] = True
        if args.ndi:
            over["outputs.ndi_name"] = args.ndi
    if args.spout is not None:
        over["outputs.spout"] = True
        if args.spout:
            over["outputs.spout_name"] = args.spout
    audio = getattr(args, "audio", None)
    if audio:
        from liveportrait_core.voice.sources import describe_audio

        if describe_audio(audio) == "file":
            over["audio.device"] = str(Path(audio).expanduser().resolve())
        elif re.search(r"[\\/]|\.\w{2,4}$", audio):  # looks like a path the user expected to exist
            raise schema.SettingsError(f"--audio {audio!r}: no such file")
        else:
            over["audio.device"] = audio
        if settings.audio.mode == "off":  # a mode the user chose is kept
            over["audio.mode"] = "always" if describe_source(settings.capture.source) == "none" else "mix"
    if describe_source(settings.capture.source) in ("video", "folder", "none"):
        over["capture.realtime"] = bool(args.realtime)
        over["capture.loop"] = bool(args.loop)
    return schema.apply_overrides(settings, over)


def _key_handler(engine: Any) -> Callable[[str], None]:
    """Preview keys that drive the engine: C calibrate, N/P next/previous character, 1-9 slots, Space pause."""

    def on_key(ch: str) -> None:
        if ch == "c":
            engine.calibrate()
        elif ch == "n":
            engine.next_character(1)
        elif ch == "p":
            engine.next_character(-1)
        elif ch == " ":
            engine.pause(not engine.paused)
        elif ch.isdigit() and ch != "0":
            engine.select_character(int(ch) - 1)

    return on_key


class _StopRequests:
    """Ctrl-C (SIGINT) and SIGTERM end the run the way Q does (the recording is finalised, the threads are
    joined, the status is 130/143) instead of raising KeyboardInterrupt wherever the main thread happens to
    be; another one stops waiting for a stage busy in a native call."""

    def __init__(self, quit_event: threading.Event) -> None:
        self.quit_event = quit_event
        self.code: int | None = None  #: the status the first signal asks for
        self.count = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():  # Python takes signals on the main thread only
            for sig, code in ((signal.SIGINT, exits.INTERRUPTED), (signal.SIGTERM, exits.TERMINATED)):
                self._old[sig] = signal.signal(sig, lambda *_a, c=code: self._on_signal(c))
        return self

    def _on_signal(self, code: int) -> None:
        self.count += 1
        if self.code is None:
            self.code = code
        self.quit_event.set()

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _ReportedHere(logging.Filter):
    """Leaves out the engine's log record of an error that stopped a stage from starting: this command prints
    it itself, once, as its ``error:`` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "start_error", False)


def run_engine(args: argparse.Namespace, settings: Any, *, preview: bool = False) -> int:
    """Start the engine, print the status line now and then, stop at the end of the input, after --max-frames
    published frames or --duration, on Ctrl-C or when the preview window is closed; print a summary.
    The exit status is one of ``exits`` (0 when frames came out, 1 when none did, 130 on Ctrl-C...)."""
    from liveportrait_core import settings as schema
    from liveportrait_core.capture.sources import every_frame, is_finite
    from liveportrait_core.engine.core import Engine
    from liveportrait_core.engine.handoff import LatestValue

    try:
        s = apply_arguments(args, settings)
    except schema.SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return exits.USAGE
    if s.characters.active:  # an explicit choice that cannot be used is an error, never replaced by another file
        from liveportrait_core.characters.faces import CharacterError
        from liveportrait_core.characters.library import check_chosen_character

        try:
            check_chosen_character(s)
        except CharacterError as e:
            print(f"error: the chosen character cannot be used: {e}", file=sys.stderr)
            return exits.USAGE
    quit_event = threading.Event()
    engine = Engine(s, max_frames=args.max_frames)
    window = _open_preview(engine, quit_event, s) if (preview or args.preview) else None
    latest: LatestValue[Any] = LatestValue("preview")  # the window shows the newest frame, never a queue
    if window is not None:
        engine.add_frame_callback(latest.put)
    from liveportrait_core.voice.sources import voice_timeline

    timeline = voice_timeline(s)  # no webcam and an audio file: every frame of the file's length
    finite = (is_finite(s.capture) and not s.capture.loop) or timeline is not None
    ends = finite or args.max_frames is not None
    mode = ("every frame" + (", looped" if s.capture.loop else "")) if every_frame(s.capture) else "live"
    if timeline is not None:
        mode = f"every frame of the voice's {timeline:.1f} s"
    print(f"input: {s.capture.source}  ({mode})")  # the engine's own rule: its log says the same
    if s.audio.mode != "off":
        print(f"voice: {s.audio.device}  (audio.mode {s.audio.mode})" + _voice_length(args, s) + _voice_clock(s))
    t_start = time.perf_counter()
    next_status = t_start + args.status_every
    voice_end: float | None = None  #: when an audio file that sets the length ended
    code, error = exits.OK, ""
    quiet = _ReportedHere()
    engine_log = logging.getLogger("liveportrait_core.engine.core")
    engine_log.addFilter(quiet)
    with _StopRequests(quit_event) as requests:
        engine.start()
        try:
            while True:
                if window is not None:  # the window draws and reads keys on its own clock, whether or not frames come
                    frame = latest.get(timeout=0.02)
                    if frame is not None:
                        window.send(frame)
                    window.pump()  # macOS: windows live on the main thread; elsewhere the window has its own
                elif not ends:
                    quit_event.wait(0.1)
                if ends and engine.wait_finished(0.0 if window is not None else 0.1):
                    break
                if quit_event.is_set():
                    code = requests.code if requests.code is not None else exits.OK
                    if requests.code is not None:
                        print("interrupted" if requests.code == exits.INTERRUPTED else "terminated", flush=True)
                    break
                if args.duration is not None and time.perf_counter() - t_start >= args.duration:
                    break
                if getattr(args, "until_voice_ends", False):
                    voice = engine.voice_status()
                    if voice is not None and voice.state == "ended":
                        voice_end = voice_end or time.perf_counter()
                        if time.perf_counter() - voice_end >= VOICE_TAIL_S:
                            break
                st = engine.status()
                if st.state == "error" and st.frames == 0:
                    error = st.message
                    code = exits.ERROR
                    print(f"error: {error}", file=sys.stderr, flush=True)
                    break
                capture_errors = [e for e in st.errors if " capture: " in e]
                if capture_errors and st.stages["capture"].count == 0 and time.perf_counter() - t_start > NO_INPUT_S:
                    # OBS waits for a camera to come back; a command with no input at all should say so and end.
                    error = capture_errors[-1].split(" capture: ", 1)[1]
                    code = exits.ERROR
                    print(f"error: no input: {error}", file=sys.stderr, flush=True)
                    break
                if args.status_every > 0 and time.perf_counter() >= next_status:
                    next_status += args.status_every
                    print(st.line(), flush=True)
        except KeyboardInterrupt:  # a SIGINT that arrived before the handler was installed (or not on main)
            print("interrupted", flush=True)
            code = exits.INTERRUPTED
        finally:
            st = engine.status(window_s=math.inf)
            if window is not None:  # closed at once: a stage may take seconds to finish its step
                window.close()
            stopped = _stop(engine, requests, recorded=st.frames > 0)
            engine_log.removeFilter(quiet)
    elapsed = time.perf_counter() - t_start
    if code == exits.OK and st.frames == 0 and not quit_event.is_set():
        code = exits.ERROR
        why = (f"--duration {args.duration:g} s ended first" if args.duration is not None
               and elapsed >= args.duration else "the input ended first")
        print(f"error: no frame was published ({why}; {st.line()})", file=sys.stderr)
    _print_summary(st, elapsed, s, stopped, window is not None, error)
    return code


#: Seconds ``stop`` waits for the threads, then for a stage busy in a native call (a network, the model load);
#: after that the process is ended without waiting more (``exits.leave``), the recording already finalised.
STOP_S = 3.0
FINISH_S = 15.0


def _stop(engine: Any, requests: _StopRequests, recorded: bool) -> bool:
    """Stop the engine and wait (bounded) for every thread it started; a further Ctrl-C stops waiting.
    ``recorded``: frames reached the recording (else there is no recording to call finalised)."""
    if engine.stop(timeout=STOP_S):
        return True
    busy = ", ".join(t.name.removeprefix("lp-") for t in engine.lingering_threads()) or "a stage"
    print(f"stopping: waiting up to {FINISH_S:.0f} s for {busy} to finish its current step (one network, or one network's "
          "load, cannot be interrupted)" + ("; the recording is already finalised" if engine.settings.outputs.record
                                            and recorded else "") + "; Ctrl-C leaves now", flush=True)
    signals = requests.count
    deadline = time.perf_counter() + FINISH_S
    while time.perf_counter() < deadline and requests.count == signals:
        if engine.join(0.1):
            return True
    return False


def _open_preview(engine: Any, quit_event: threading.Event, settings: Any) -> Any:
    """The preview window (at the expected output's aspect ratio, saying what the engine is doing until the
    first frame), or None with the reason printed."""
    from liveportrait_core.outputs.base import OutputUnavailable
    from liveportrait_core.outputs.preview import KEY_HELP, PreviewWindow, engine_status_text, size_hint

    window = PreviewWindow(on_key=_key_handler(engine), on_quit=quit_event.set,
                           status=lambda: engine_status_text(engine.status()), size=size_hint(settings))
    try:
        window.open()
    except OutputUnavailable as e:
        print(f"preview: {e}", file=sys.stderr)
        return None
    print(f"preview keys: {KEY_HELP}   C: calibrate   N/P: next/previous character   1-9: slots   Space: pause")
    return window


def _print_summary(st: Any, elapsed: float, s: Any, stopped: bool, preview: bool, error: str = "") -> None:
    """What happened, naming only the outputs that were on; an error already printed is not repeated."""
    print(f"frames published: {st.frames} in {elapsed:.1f} s"
          + (f"; latency p50/p95 {st.latency_p50_ms:.0f}/{st.latency_p95_ms:.0f} ms" if st.frames else "")
          + (f"; input frames skipped while busy: {st.skipped}" if st.skipped else "")
          + (f"; frames lost to errors: {st.failed}" if st.failed else "")
          + (f"; animated frames dropped: {st.dropped}" if st.dropped else ""))
    if any(stage.count for stage in st.stages.values()):
        for name, stage in st.stages.items():
            print(f"  {name:<10} {stage.count:6d} items  p50 {stage.latency_p50_ms:8.1f} ms  "
                  f"p95 {stage.latency_p95_ms:8.1f} ms")
    from liveportrait_core.outputs.table import CALLBACKS, RECORD

    for name, o in st.outputs.items():
        if name == CALLBACKS:  # the in-process frame callbacks: here only the preview window uses them
            if preview:
                print(f"  preview window: {o.sent} frames shown")
            continue
        if name == RECORD:
            continue  # said below
        if o.enabled and (o.sent or o.failures or o.state in ("unavailable", "retrying")):
            print(f"  output {name}: {o.sent} sent, {o.failures} failures"
                  + (f" ({o.message})" if o.message else ""))
    if s.outputs.record:
        rec = st.outputs.get(RECORD)
        if rec is not None and rec.sent:
            print(f"recording: {rec.target or s.outputs.record} ({rec.sent} frame{'s' if rec.sent != 1 else ''})")
        else:
            why = (rec.message if rec is not None and rec.message else "no frame was published")
            print(f"recording: nothing recorded ({why})")
    errors = [e for e in st.errors if not (error and error in e)]
    for e in errors[-5:]:
        print(f"  error: {e}")
    if not stopped:
        print("  note: a stage was still busy in a network or the model load at exit; the process ended without "
              "waiting for it")


def _voice_length(args: argparse.Namespace, s: Any) -> str:
    """Live (--realtime) with no webcam and an audio file, the run lasts as long as the file (unless --duration
    or --max-frames says otherwise): sets ``args.until_voice_ends`` and says so."""
    from liveportrait_core.capture.sources import is_no_camera
    from liveportrait_core.voice.sources import describe_audio, file_duration_s

    if not is_no_camera(s.capture) or describe_audio(s.audio.device) != "file" or s.audio.loop or \
            not s.capture.realtime:  # not live: the file's length sets the frames (``voice_timeline``)
        return ""
    length = file_duration_s(s.audio.device)
    if args.duration is not None or args.max_frames is not None:
        return ""
    args.until_voice_ends = True
    return (f", {length:.1f} s" if length is not None else "") + ": the run lasts as long as the file"


def _voice_clock(s: Any) -> str:
    """A video or folder processed frame by frame with an audio file: the file is read on the frames' own clock
    (``voice.stage.FileVoice``), so it lines up with the picture at any speed; says so."""
    from liveportrait_core.capture.sources import every_frame
    from liveportrait_core.voice.sources import describe_audio

    if not every_frame(s.capture) or describe_audio(s.audio.device) != "file":
        return ""
    return ", read on the frames' clock: frame k hears the file at k / fps"


#: Seconds a run on an audio file goes on after its end (the mouth closes, the last frames reach the outputs).
VOICE_TAIL_S = 0.5


def run(args: argparse.Namespace, settings: Any) -> int:
    return run_engine(args, settings)
