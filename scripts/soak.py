#!/usr/bin/env python3
"""Soak test: run the real engine for a long time and record memory growth.

Not part of the test suite (it runs for minutes to hours). It drives the product's engine
(capture -> MediaPipe tracking -> animator -> publish -> OBS-source callback) with a looping real
driving video at the video's own rate, and samples every ``--every`` seconds:

* RSS of the process (psutil), and the number of threads and open files,
* Python heap held by live allocations (tracemalloc, one frame deep),
* torch device memory (CUDA only: allocated and reserved),
* frames published and the engine's error list.

The networks: ``--model reduced`` (default) builds the four big LivePortrait networks from their own
config dataclasses with far fewer channels and layers, with torch's random initialisation, plus the
three retargeting MLPs with the recipe weights (``liveportrait_core/models/small.py``). ``--model recipe`` uses the full-size networks with the
recipe weights. Both are TEST NUMBERS, NOT A MODEL: the animated face is noise, and the report says so.
What is measured is the engine's own memory behaviour (hand-offs, stats, outputs, tracker, animator,
character cache), which does not depend on the weights' values. ``--model official`` uses the real
weights from ``model.models_dir``.

Verdict: after a warm-up (the first ``--warmup`` fraction of the run, at least one sample), RSS is
fitted with a straight line; the run passes when the slope stays under ``--max-mb-per-hour`` and no
stage error was reported.

    .venv/bin/python scripts/soak.py --minutes 30 --out /tmp/soak.json
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from liveportrait_core.engine.backend import LivePortraitBackend
from liveportrait_core.engine.core import Engine
from liveportrait_core.settings import Settings  # noqa: E402
from liveportrait_core.models.small import LABEL as REDUCED_LABEL, reduced_models  # noqa: E402

_log = logging.getLogger("soak")

DEFAULT_VIDEO = ROOT.parent / "shared" / "testdata" / "driving" / "d13.mp4"
DEFAULT_CHARACTER = ROOT / "characters" / "astronaut.png"
MIB = 1024 * 1024


@dataclass
class Sample:
    t_s: float
    frames: int
    fps: float
    rss_mib: float
    py_heap_mib: float
    torch_alloc_mib: float | None
    torch_reserved_mib: float | None
    threads: int
    open_files: int
    gc_objects: int
    errors: int


class SoakBackend(LivePortraitBackend):
    """The product's tracker; the animator gets the networks chosen on the command line."""

    def __init__(self, model: str) -> None:
        self.model = model

    def create_animator(self, settings: Settings):
        if self.model == "official":
            return super().create_animator(settings)
        from liveportrait_core.characters.library import CharacterLibrary
        from liveportrait_core.engine.pipeline import Animator

        if self.model == "reduced":
            models = reduced_models(settings.model.device if settings.model.device != "auto" else "cpu")
        else:
            from liveportrait_core.models.loader import LivePortraitModels, load_state_dicts_into
            from liveportrait_core.models.fast.optimize import prepare_for_inference
            from liveportrait_core.models.checkpoint.recipe import recipe_state_dicts

            import torch

            models = LivePortraitModels(modules=load_state_dicts_into(recipe_state_dicts(), torch.device("cpu")),
                                        device=torch.device("cpu"), dtype=torch.float32)
            prepare_for_inference(models)
        animator = Animator(models, settings, CharacterLibrary(settings, models))
        animator.select_character(animator.library.names()[0])
        return animator


def _torch_memory() -> tuple[float | None, float | None]:
    import torch  # imported by main() before the engine starts (never half-imported here)

    if not torch.cuda.is_available():
        return None, None
    return torch.cuda.memory_allocated() / MIB, torch.cuda.memory_reserved() / MIB


def linear_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


def verdict(samples: list[Sample], warmup: float, max_mb_per_hour: float, errors: list[str]) -> dict:
    start = max(1, int(len(samples) * warmup))
    steady = samples[start:] if len(samples) > start + 1 else samples
    t = [s.t_s / 3600.0 for s in steady]
    rss_slope = linear_slope(t, [s.rss_mib for s in steady])
    heap_slope = linear_slope(t, [s.py_heap_mib for s in steady])
    growth = steady[-1].rss_mib - steady[0].rss_mib if steady else 0.0
    ok = rss_slope <= max_mb_per_hour and not errors and bool(samples) and samples[-1].frames > 0
    return {"ok": ok, "rss_slope_mib_per_hour": round(rss_slope, 2), "py_heap_slope_mib_per_hour": round(heap_slope, 2),
            "rss_growth_after_warmup_mib": round(growth, 1), "steady_from_s": steady[0].t_s if steady else 0.0,
            "limit_mib_per_hour": max_mb_per_hour}


def format_table(samples: list[Sample]) -> str:
    head = f"{'t (s)':>7} {'frames':>7} {'fps':>5} {'RSS MiB':>8} {'py heap MiB':>11} {'torch MiB':>9} " \
           f"{'threads':>7} {'files':>5} {'gc objs':>8} {'errors':>6}"
    rows = [head]
    for s in samples:
        tm = "-" if s.torch_alloc_mib is None else f"{s.torch_alloc_mib:.0f}"
        rows.append(f"{s.t_s:7.0f} {s.frames:7d} {s.fps:5.1f} {s.rss_mib:8.1f} {s.py_heap_mib:11.2f} {tm:>9} "
                    f"{s.threads:7d} {s.open_files:5d} {s.gc_objects:8d} {s.errors:6d}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples (default 30)")
    ap.add_argument("--video", default=str(DEFAULT_VIDEO), help="looping driving video (default shared d13.mp4)")
    ap.add_argument("--character", default=str(DEFAULT_CHARACTER), help="character image")
    ap.add_argument("--model", choices=("reduced", "recipe", "official"), default="reduced",
                    help="reduced: small random networks (default); recipe: full-size test weights; official: real")
    ap.add_argument("--device", default="cpu", help="model.device (default cpu)")
    ap.add_argument("--no-tracemalloc", action="store_true", help="skip the Python heap figure (less overhead)")
    ap.add_argument("--warmup", type=float, default=0.2, help="fraction of samples ignored by the verdict")
    ap.add_argument("--max-mb-per-hour", type=float, default=50.0, help="RSS slope allowed after warm-up")
    ap.add_argument("--out", help="write samples and verdict as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import psutil
    import torch  # noqa: F401 - imported here, before the engine's threads import it

    if not Path(args.video).is_file():
        print(f"soak: driving video not found: {args.video} (give one with --video)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="lp-soak-"))
    chars = workdir / "characters"
    chars.mkdir()
    (chars / Path(args.character).name).write_bytes(Path(args.character).read_bytes())  # a copy: never the user's file
    s = Settings()
    s.capture.source, s.capture.loop, s.capture.realtime = str(args.video), True, True
    s.characters.folder, s.characters.cache_dir = str(chars), str(workdir / "cache")
    s.model.device = args.device
    s.tracking.max_faces = 1
    s.performance.target_fps = 30
    label = {"reduced": REDUCED_LABEL,
             "recipe": "full-size networks with recipe weights (test numbers, not a model: the face is noise)",
             "official": "official weights"}[args.model]
    print(f"soak: {args.minutes:g} min, sample every {args.every:g} s; networks: {label}")
    print(f"soak: video {args.video} looping at its own rate; character {Path(args.character).name}; "
          f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, "
          f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")

    if not args.no_tracemalloc:
        tracemalloc.start(1)
    proc = psutil.Process()
    published = [0]
    lock = threading.Lock()

    def on_frame(_frame) -> None:
        with lock:
            published[0] += 1

    engine = Engine(s, backend=SoakBackend(args.model))
    engine.add_frame_callback(on_frame)
    t0 = time.monotonic()
    engine.start()
    samples: list[Sample] = []
    end = t0 + args.minutes * 60.0
    next_sample = t0
    try:
        while True:
            now = time.monotonic()
            if now >= next_sample:
                gc.collect()
                st = engine.status()
                ta, tr = _torch_memory()
                with lock:
                    frames = published[0]
                heap = tracemalloc.get_traced_memory()[0] / MIB if tracemalloc.is_tracing() else 0.0
                try:
                    nfiles = len(proc.open_files())
                except psutil.Error:
                    nfiles = -1
                smp = Sample(round(now - t0, 1), frames, round(st.fps, 2), round(proc.memory_info().rss / MIB, 1),
                             round(heap, 2), ta, tr, threading.active_count(), nfiles, len(gc.get_objects()),
                             len(st.errors))
                samples.append(smp)
                print(f"soak: {format_table([smp]).splitlines()[1]}  | {st.line()}", flush=True)
                next_sample += args.every
            if now >= end:
                break
            time.sleep(min(1.0, max(0.05, next_sample - now), max(0.05, end - now)))
    except KeyboardInterrupt:
        print("soak: interrupted; reporting what was measured")
    final = engine.status(window_s=float("inf"))
    engine.stop(timeout=30.0)
    result = verdict(samples, args.warmup, args.max_mb_per_hour, final.errors)
    print()
    print(format_table(samples))
    print()
    print(f"networks: {label}")
    print(f"frames published: {samples[-1].frames if samples else 0} in {samples[-1].t_s if samples else 0:.0f} s; "
          f"errors: {len(final.errors)}")
    for e in final.errors[-5:]:
        print(f"  error: {e}")
    print(f"RSS slope after warm-up (from {result['steady_from_s']:.0f} s): {result['rss_slope_mib_per_hour']} MiB/h "
          f"(limit {args.max_mb_per_hour:g}); growth {result['rss_growth_after_warmup_mib']} MiB; "
          f"Python heap slope {result['py_heap_slope_mib_per_hour']} MiB/h")
    print("verdict:", "PASS (no memory growth beyond the limit, no errors)" if result["ok"] else "FAIL")
    if args.out:
        Path(args.out).write_text(json.dumps({"networks": label, "args": vars(args), "verdict": result,
                                              "errors": final.errors, "samples": [asdict(x) for x in samples],
                                              "cpu_threads": os.cpu_count(), "python": platform.python_version()},
                                             indent=2), encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
