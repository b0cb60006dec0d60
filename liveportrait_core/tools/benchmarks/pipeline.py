"""``benchmark`` (default kind): time every stage of the live pipeline on this machine.

Each stage runs in turn on one thread for the same frames, so each figure is that stage alone:
capture (read/decode), tracking (MediaPipe + driving crop), inference (split into each network, and
the rest: driving maths, paste-back, transfers), publish (hand-off plus an MP4 encode as a typical
output). In the engine the stages run in parallel, so the slowest stage bounds the frame rate and
their sum is about the latency. The report names that bottleneck and the setting that would help.

Weights are the official files, or with ``--random-weights`` the deterministic recipe weights
(the same shapes and the same cost; the picture is meaningless, and the report says so).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from liveportrait_core.machine import cpu_model

_log = logging.getLogger(__name__)

#: Official LivePortrait, eager float32, per driven frame (M + W + G) on the project's 2-core CPU
#: (shared notes CPU_PERFORMANCE.md: 7.6-8.0 s measured; 7.7 s is the figure quoted for comparison).
OFFICIAL_CPU_FRAME_S = 7.7
STAGES = ("capture", "tracking", "inference", "publish")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pipeline benchmark (default kind)")
    g.add_argument("--pipeline-input", metavar="SRC",
                   help="driving video, image folder or webcam (default: the bundled character's photo, "
                        "shifted a little every frame like a webcam)")
    g.add_argument("--pipeline-character", metavar="IMG", help="character image (default: characters/astronaut.png)")
    g.add_argument("--compare-official", action="store_true",
                   help=f"show the official per-frame time on the project's CPU ({OFFICIAL_CPU_FRAME_S} s) beside ours")
    g.add_argument("--warmup", type=int, default=1, help="untimed frames first (default 1)")


# ------------------------------------------------------------------------------------------------
# inputs


class _PhotoWebcam:
    """A webcam stand-in made from a real photo, moved a few pixels each frame so that tracking follows
    motion instead of a frozen image (the photo keeps its size: MediaPipe's short-range face detector
    needs the face to fill a good part of the frame, as it does in a webcam)."""

    description = "photo moving a few pixels per frame"
    finite, fps = False, 30.0

    def __init__(self, path: Path) -> None:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"cannot read {path}")
        self._img = img
        self._k = 0

    def read(self) -> np.ndarray:
        import cv2

        self._k += 1
        h, w = self._img.shape[:2]
        m = np.float32([[1, 0, 6 * np.sin(self._k / 3.0)], [0, 1, 4 * np.cos(self._k / 4.0)]])
        return cv2.warpAffine(self._img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)

    def close(self) -> None:
        pass


def _open_input(args: argparse.Namespace, settings: Any, character: Path) -> Any:
    from liveportrait_core.capture.sources import open_source

    if args.pipeline_input:
        cs = settings.capture
        cs.source, cs.realtime, cs.loop = args.pipeline_input, False, True
        return open_source(cs)
    return _PhotoWebcam(character)


# ------------------------------------------------------------------------------------------------
# system


def system_info(device: str = "", precision: str = "") -> dict[str, Any]:
    import psutil
    import torch

    cpu = cpu_model()
    info: dict[str, Any] = {
        "os": f"{platform.system()} {platform.release()}", "python": sys.version.split()[0],
        "torch": torch.__version__, "cpu": cpu, "cpu_cores": psutil.cpu_count(logical=True),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "torch_threads": torch.get_num_threads(),
        "device": device, "precision": precision,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ------------------------------------------------------------------------------------------------
# timing


def _stats(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"median_ms": round(statistics.median(s), 3), "p95_ms": round(s[min(len(s) - 1, int(0.95 * len(s)))], 3),
            "mean_ms": round(statistics.fmean(s), 3), "min_ms": round(s[0], 3), "n": len(s)}


class _NetworkTimer:
    """Wraps ``models.run`` (benchmark only) to time each network call inside the animator."""

    def __init__(self, models: Any, sync: Callable[[], None]) -> None:
        self.models = models
        self.sync = sync
        self.times: dict[str, list[float]] = {}
        self._orig = models.run
        self.current: dict[str, float] = {}

    def __enter__(self) -> "_NetworkTimer":
        def timed(name: str, *a: Any, **kw: Any) -> Any:
            self.sync()
            t0 = time.perf_counter()
            out = self._orig(name, *a, **kw)
            self.sync()
            self.current[name] = self.current.get(name, 0.0) + (time.perf_counter() - t0) * 1e3
            return out

        self.models.run = timed
        return self

    def frame_done(self, keep: bool) -> float:
        total = sum(self.current.values())
        if keep:
            for k, v in self.current.items():
                self.times.setdefault(k, []).append(v)
        self.current = {}
        return total

    def __exit__(self, *exc: object) -> None:
        self.models.run = self._orig


def weights_label(models_dir: str, variant: str) -> str:
    """"official" only for files byte-identical to the official ones (SHA-256), so that a report can
    never present other weights as the official model."""
    from liveportrait_core.models.checkpoint import layout, weights

    rels = layout.checkpoint_files(variant)
    for file, path in weights.checkpoint_paths(models_dir, variant).items():
        expected = weights.expected_checksum(models_dir, rels[file])
        if expected is None or not path.is_file() or weights.sha256_file(path) != expected[1]:
            return f"the files in {models_dir} (not byte-identical to the official weights)"
    return "official (SHA-256 verified)"


def weights_label_for(settings: Any) -> str:
    from liveportrait_core import paths

    return weights_label(str(paths.resolve(settings.model.models_dir)), settings.model.variant)


def _advice(stage: str, part: str, info: dict[str, Any], settings: Any) -> str:
    dev, prec = info.get("device", ""), info.get("precision", "")
    if stage == "inference":
        if dev == "cpu":
            from liveportrait_core.models.loader import cpu_has_fast_bf16  # noqa: PLC0415

            advice = "run the networks on an NVIDIA GPU (model.device=cuda)"
            if prec != "bf16" and cpu_has_fast_bf16():
                advice += ("; this CPU has native bf16: try model.precision=bf16 (small image error; "
                           "compare with `benchmark --modules --modes fp32,bf16`)")
            return advice
        if prec == "fp32":
            return "model.precision=fp16 (half the work on the GPU)"
        if not settings.performance.compile:
            return "performance.compile=true (slow first start, faster frames)"
        if part == "paste-back & driving maths":
            return "outputs.paste_back=false sends the 512x512 face crop instead of the full image"
        return "a faster GPU; or performance.cuda_graphs=true"
    if stage == "tracking":
        return "a lower camera resolution (capture.width/height 640x480) and tracking.max_faces=1"
    if stage == "capture":
        return "capture.mjpg=true and a lower capture.width/height; close other apps using the camera"
    return "fewer outputs at once, or a smaller output size (outputs.width/height)"


def run(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    import torch

    from liveportrait_core import paths
    from liveportrait_core.capture.sources import CapturedFrame
    from liveportrait_core.outputs.base import PublishedFrame
    from liveportrait_core.outputs.recorder import VideoRecorder
    from liveportrait_core.engine.pipeline import Animator
    from liveportrait_core.settings import apply_overrides
    from liveportrait_core.tracking import FaceTracker

    s = settings.copy()
    character = Path(args.pipeline_character or paths.DEFAULT_CHARACTERS_DIR / "astronaut.png").expanduser().resolve()
    s = apply_overrides(s, {"characters.folder": str(character.parent), "characters.active": character.name})
    tmp = tempfile.TemporaryDirectory(prefix="lp_bench_")
    if args.random_weights:
        from liveportrait_core.models.checkpoint import weights
        from liveportrait_core.models.checkpoint.recipe import recipe_state_dicts

        weights.write_checkpoints(tmp.name, recipe_state_dicts())
        s.model.models_dir = tmp.name
        s.model.verify_on_load = False
        weights_label = "recipe (synthetic, deterministic; timing only: the picture is meaningless)"
    else:
        weights_label = weights_label_for(s)
    n, warm = max(1, args.repeats), max(0, args.warmup)
    print(f"pipeline benchmark: {warm} warm-up + {n} timed frames; weights: {weights_label}", flush=True)

    t0 = time.perf_counter()
    animator = Animator.from_settings(s)
    load_s = time.perf_counter() - t0
    dev = animator.device
    cuda = torch.device(dev).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    info = system_info(str(dev), getattr(animator.models, "precision", ""))
    tracker = FaceTracker(s.tracking)
    source = _open_input(args, s, character)
    recorder = VideoRecorder(Path(tmp.name) / "bench.mp4", fps=30)
    recorder.open()
    times: dict[str, list[float]] = {k: [] for k in STAGES}
    rest: list[float] = []
    cpu_s: list[float] = []  # process CPU seconds per inference (all threads): less sensitive to contention
    faces = 0
    try:
        with _NetworkTimer(animator.models, sync) as nets:
            for k in range(warm + n):
                keep = k >= warm
                a = time.perf_counter()
                image = source.read()
                b = time.perf_counter()
                frame = CapturedFrame(k, b, image)
                obs, driving = tracker.track(frame)
                c, c_cpu = time.perf_counter(), time.process_time()
                bgra = animator.animate(driving, obs)
                sync()
                d, d_cpu = time.perf_counter(), time.process_time()
                net_ms = nets.frame_done(keep)
                recorder.send(PublishedFrame(k, b, d, np.ascontiguousarray(bgra)))
                e = time.perf_counter()
                if keep:
                    faces += bool(getattr(obs, "found", False))
                    for name, (x, y) in zip(STAGES, ((a, b), (b, c), (c, d), (d, e))):
                        times[name].append((y - x) * 1e3)
                    rest.append((d - c) * 1e3 - net_ms)
                    cpu_s.append(d_cpu - c_cpu)
                print(f"  frame {k + 1}/{warm + n}{' (warm-up)' if not keep else ''}: "
                      f"inference {(d - c):.2f} s", flush=True)
    finally:
        source.close()
        recorder.close()
        tracker.close()
        animator.close()
        tmp.cleanup()

    stages = {name: _stats(v) for name, v in times.items()}
    networks = {name: _stats(v) for name, v in nets.times.items()}
    networks["paste-back & driving maths"] = _stats(rest)
    bottleneck = max(STAGES, key=lambda k: stages[k]["median_ms"])
    part = max(networks, key=lambda k: networks[k]["median_ms"]) if bottleneck == "inference" else ""
    slowest = stages[bottleneck]["median_ms"]
    result: dict[str, Any] = {
        "kind": "pipeline", "weights": weights_label, "system": info, "frames": n, "warmup": warm,
        "input": args.pipeline_input or f"{character.name} moving a few pixels per frame (no video given)",
        "character": character.name, "faces_found": faces, "model_load_s": round(load_s, 2),
        "stages": stages, "inference_parts": networks,
        "inference_cpu_s": round(statistics.median(cpu_s), 2),
        "latency_ms": round(sum(st["median_ms"] for st in stages.values()), 2),
        "throughput_fps": round(1000.0 / slowest, 3) if slowest > 0 else 0.0,
        "target_fps": s.performance.target_fps,
        "bottleneck": {"stage": bottleneck, "part": part,
                       "share": round(slowest / max(1e-9, sum(st["median_ms"] for st in stages.values())), 3),
                       "advice": _advice(bottleneck, part, info, s)},
        "contention_note": "timed on a shared machine; see system.load_average",
        "ok": faces > 0,
    }
    if args.compare_official:
        ours = stages["inference"]["median_ms"] / 1e3
        result["official_cpu_frame_s"] = OFFICIAL_CPU_FRAME_S
        result["vs_official"] = round(OFFICIAL_CPU_FRAME_S / ours, 2) if ours > 0 else None
    if faces == 0:
        result["problem"] = "no face was found in the driving frames, so only the idle path was timed"
    return result


def format_table(r: dict[str, Any]) -> str:
    sysi = r["system"]
    lines = [f"Pipeline benchmark ({r['frames']} frames after {r['warmup']} warm-up; weights: {r['weights']})",
             f"system: {sysi['cpu']} ({sysi['cpu_cores']} threads), {sysi['ram_gb']} GB RAM, {sysi['os']}, "
             f"Python {sysi['python']}, torch {sysi['torch']}, device {sysi['device']} {sysi['precision']}"
             + (f", GPU {sysi['gpu']}" if sysi.get("gpu") else "") + f"; load average {sysi['load_average']}",
             f"input: {r['input']}; character: {r['character']}; face found in {r['faces_found']}/{r['frames']}; "
             f"model load {r['model_load_s']} s", "",
             f"{'stage':<34}{'median ms':>12}{'p95 ms':>12}{'min ms':>12}{'share':>8}"]
    total = sum(st["median_ms"] for st in r["stages"].values()) or 1.0
    for name, st in r["stages"].items():
        lines.append(f"{name:<34}{st['median_ms']:>12.1f}{st['p95_ms']:>12.1f}{st['min_ms']:>12.1f}"
                     f"{st['median_ms'] / total:>8.0%}")
        if name == "inference":
            for part, pst in r["inference_parts"].items():
                lines.append(f"  {part:<32}{pst['median_ms']:>12.1f}{pst['p95_ms']:>12.1f}{pst['min_ms']:>12.1f}")
    b = r["bottleneck"]
    lines += ["", f"inference used {r['inference_cpu_s']:.2f} s of CPU time per frame "
                  f"({sysi['torch_threads']} torch threads)", f"latency (sum of stages) {r['latency_ms']:.1f} ms; throughput bound {r['throughput_fps']:.2f} fps "
                  f"(target {r['target_fps']})",
              f"bottleneck: {b['stage']}" + (f" ({b['part']})" if b["part"] else "") + f", {b['share']:.0%} of the "
              f"frame time -> {b['advice']}"]
    if "official_cpu_frame_s" in r:
        lines.append(f"official LivePortrait on the project's CPU: {r['official_cpu_frame_s']} s per frame; ours "
                     f"{r['stages']['inference']['median_ms'] / 1e3:.2f} s ({r['vs_official']}x)")
    if r.get("problem"):
        lines.append(f"problem: {r['problem']}")
    return "\n".join(lines)
