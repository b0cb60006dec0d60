"""``run``: animate a character from a webcam, video or image folder into any outputs, without OBS.

``preview``, ``record`` and ``demo`` are this command with other defaults; they reuse
``add_run_arguments`` and ``run_engine`` from here.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

NAME = "run"
HELP = "animate a character from a webcam, video or image folder into NDI/Spout/preview/recording"
DESCRIPTION = (HELP + ". A video file or image folder is processed frame by frame (every frame, as fast as "
               "possible) unless --realtime is given; a webcam runs live until Ctrl-C.")

_log = logging.getLogger(__name__)

#: Seconds without a single input frame (and with capture errors) before the command gives up.
NO_INPUT_S = 3.0
#: CLI option -> setting it fills (only when given)
SHORTCUTS = {"models_dir": "model.models_dir", "input": "capture.source", "device": "model.device",
             "precision": "model.precision"}


def add_run_arguments(p: argparse.ArgumentParser, *, record_required: bool = False) -> None:
    p.add_argument("--character", metavar="IMG",
                   help="character image file, or a file name in the characters folder (default: settings)")
    p.add_argument("--input", metavar="SRC", help="webcam index or name, video file, or image folder "
                                                  "(default: settings capture.source)")
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
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N input frames")
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
    from liveportrait_core.capture import describe_source

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
        over["outputs.record"] = str(Path(record).expanduser().resolve())
    if args.ndi is not None:
        over["outputs.ndi"] = True
        if args.ndi:
            over["outputs.ndi_name"] = args.ndi
    if args.spout is not None:
        over["outputs.spout"] = True
        if args.spout:
            over["outputs.spout_name"] = args.spout
    if describe_source(settings.capture.source) in ("video", "folder"):
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


def run_engine(args: argparse.Namespace, settings: Any, *, preview: bool = False) -> int:
    """Start the engine, print the status line now and then, stop at the end of the input, on Ctrl-C,
    after --duration or when the preview window is closed; print a summary. 0 when frames came out."""
    from liveportrait_core import settings as schema
    from liveportrait_core.capture import is_finite
    from liveportrait_core.engine import Engine
    from liveportrait_core.handoff import LatestValue

    try:
        s = apply_arguments(args, settings)
    except schema.SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    quit_event = threading.Event()
    engine = Engine(s, max_frames=args.max_frames)
    window = _open_preview(engine, quit_event) if (preview or args.preview) else None
    latest: LatestValue[Any] = LatestValue("preview")  # the window shows the newest frame, never a queue
    if window is not None:
        engine.add_frame_callback(latest.put)
    finite = is_finite(s.capture) and not s.capture.loop
    ends = finite or args.max_frames is not None
    print(f"input: {s.capture.source}  ({'every frame' if finite and not s.capture.realtime else 'live'})")
    t_start = time.perf_counter()
    next_status = t_start + args.status_every
    engine.start()
    code = 0
    try:
        while True:
            if window is not None:  # GUI on the main thread (required on macOS, safest everywhere)
                frame = latest.get(timeout=0.02)
                if frame is not None:
                    window.send(frame)
            elif not ends:
                time.sleep(0.1)
            if ends and engine.wait_finished(0.0 if window is not None else 0.1):
                break
            if quit_event.is_set():
                break
            if args.duration is not None and time.perf_counter() - t_start >= args.duration:
                break
            st = engine.status()
            if st.state == "error" and st.frames == 0:
                print(f"error: {st.message}", file=sys.stderr)
                code = 1
                break
            capture_errors = [e for e in st.errors if " capture: " in e]
            if capture_errors and st.stages["capture"].count == 0 and time.perf_counter() - t_start > NO_INPUT_S:
                # OBS waits for a camera to come back; a command with no input at all should say so and end.
                print(f"error: no input: {capture_errors[-1].split(' capture: ', 1)[1]}", file=sys.stderr)
                code = 1
                break
            if args.status_every > 0 and time.perf_counter() >= next_status:
                next_status += args.status_every
                print(st.line(), flush=True)
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        st = engine.status(window_s=math.inf)
        stopped = engine.stop(timeout=2.0)
        if window is not None:
            window.close()
    _print_summary(st, time.perf_counter() - t_start, s, stopped)
    if code == 0 and st.frames == 0:
        code = 1
    return code


def _open_preview(engine: Any, quit_event: threading.Event) -> Any:
    """The preview window, opened on this (the main) thread, or None with the reason printed."""
    from liveportrait_core.outputs.base import OutputUnavailable
    from liveportrait_core.outputs.preview import KEY_HELP, PreviewWindow

    window = PreviewWindow(on_key=_key_handler(engine), on_quit=quit_event.set)
    try:
        window.open()
    except OutputUnavailable as e:
        print(f"preview: {e}", file=sys.stderr)
        return None
    print(f"preview keys: {KEY_HELP}   C: calibrate   N/P: next/previous character   1-9: slots   Space: pause")
    return window


def _print_summary(st: Any, elapsed: float, s: Any, stopped: bool) -> None:
    print(f"frames published: {st.frames} in {elapsed:.1f} s; "
          f"latency p50/p95 {st.latency_p50_ms:.0f}/{st.latency_p95_ms:.0f} ms; dropped {st.dropped}")
    for name, stage in st.stages.items():
        print(f"  {name:<10} {stage.count:6d} items  p50 {stage.latency_p50_ms:8.1f} ms  "
              f"p95 {stage.latency_p95_ms:8.1f} ms")
    for name, o in st.outputs.items():
        if o.enabled and (o.sent or o.failures or o.state in ("unavailable", "retrying")):
            print(f"  output {name}: {o.sent} sent, {o.failures} failures"
                  + (f" ({o.message})" if o.message else ""))
    if s.outputs.record:
        print(f"recording: {s.outputs.record}")
    for e in st.errors[-5:]:
        print(f"  error: {e}")
    if not stopped:
        print("  note: a stage was still finishing its last frame at exit")


def run(args: argparse.Namespace, settings: Any) -> int:
    return run_engine(args, settings)
