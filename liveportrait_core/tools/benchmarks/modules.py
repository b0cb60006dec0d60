"""``benchmark --modules``: time each LivePortrait network and a whole driven frame, per precision mode.

A driven frame is what runs for every webcam frame: motion extractor M, keypoint maths, stitching,
warping W, SPADE decoder G and the conversion to a uint8 image. Modes, interleaved in every repeat so
that other load on the machine hits them alike:

* ``plain fp32``: the modules exactly as loaded (the official structure, no rewrites): the baseline;
* ``fp32``: the loader's inference path (exact rewrites, ``models/fast/optimize.py``);
* ``fp32-compiled`` (with ``--set performance.compile=true`` or ``--modes``): the same, M, W and G
  wrapped in ``torch.compile`` (compilation happens in the untimed warm-up frame);
* ``bf16`` (CPUs with bf16 instructions and CUDA: F, M float32, W and G their bf16 forms,
  ``models/fast/bf16.py``) / ``fp16`` (CUDA): under autocast;
* ``ort-cpu``, ``ort-cuda``, ``ort-trt``, ``ort-dml``, ``ort-coreml``, ``ort-openvino`` (``--modes``): F, M, W
  and G on ONNX Runtime with that provider (``models/onnx``; the export is made first when missing: minutes),
  ``model.precision`` deciding fp16 on the GPU providers as in the product.

Each mode's frame output is compared with the plain fp32 one: ``err`` = max|diff| / max|ref| of the
decoder output and the mean absolute difference of the uint8 images (in 1/255 steps). The official
implementation's figures on the project's 2-core CPU are printed alongside for reference.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from liveportrait_core.machine import cpu_model

_log = logging.getLogger(__name__)

#: The official implementation, float32, batch 1, 2-core CPU, median of 5 (LIVEPORTRAIT_FACTS.md), seconds.
OFFICIAL_CPU_S = {"appearance_feature_extractor": 0.368, "motion_extractor": 0.114, "warping_module": 2.043,
                  "spade_generator": 5.441, "frame": 7.685}
GOAL_FP32 = 0.75  #: at most this fraction of the official time per frame, float32, equal within 1e-5
GOAL_REDUCED = 0.5  #: at most this fraction in a reduced-precision CPU mode, image within 1/255 MAE
STAGES = ("motion_extractor", "keypoints+stitching", "warping_module", "spade_generator", "to_uint8")
_PHOTO = Path(__file__).resolve().parents[3] / "characters" / "astronaut.png"


#: ONNX Runtime modes -> the providers each is opened with (in order; the CPU last as ONNX Runtime's fallback).
ORT_MODES = {"ort-cpu": ("cpu",), "ort-cuda": ("cuda", "cpu"), "ort-trt": ("tensorrt", "cuda", "cpu"),
             "ort-dml": ("directml", "cpu"), "ort-coreml": ("coreml", "cpu"), "ort-openvino": ("openvino", "cpu")}
MODES = ("plain-fp32", "fp32", "fp32-compiled", "fp16", "bf16", *ORT_MODES)


def _mode_dtype(mode: str):
    import torch  # noqa: PLC0415

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mode, torch.float32)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network benchmark (--modules)")
    g.add_argument("--modes", metavar="LIST",
                   help="comma-separated modes to time (default: plain-fp32,fp32 and bf16 or fp16 where the "
                        "device has them; the baseline plain-fp32 is always included); ONNX Runtime: ort-cpu, "
                        "ort-cuda, ort-trt, ort-dml, ort-coreml, ort-openvino")


def _input_image(size: int = 256) -> tuple[np.ndarray, str]:
    """A 256x256 RGB uint8 face-sized image: the bundled character photo, or a seeded synthetic image."""
    try:
        import cv2  # noqa: PLC0415

        img = cv2.imread(str(_PHOTO), cv2.IMREAD_COLOR)
        if img is not None:
            h, w = img.shape[:2]
            s = min(h, w)
            img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
            return cv2.cvtColor(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB), \
                _PHOTO.name
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "seeded random image"


def _sync(device) -> None:
    if device.type == "cuda":
        import torch  # noqa: PLC0415

        torch.cuda.synchronize(device)


def _timed(device, fn: Callable[[], Any]) -> tuple[Any, float]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _load(args: argparse.Namespace, settings, device, modes: list[str]):
    """(plain modules, {dtype: optimised modules}, weights label).

    Each precision gets modules prepared for it (``prepare_for_inference`` picks the CPU's Winograd and
    FFT forms for float32 only), as the engine's loader would.
    """
    import torch  # noqa: PLC0415

    from liveportrait_core.models import loader
    from liveportrait_core.models.checkpoint import weights
    from liveportrait_core.models.fast.optimize import prepare_for_inference

    if args.random_weights:
        from liveportrait_core.models.checkpoint.recipe import recipe_state_dicts

        state_dicts = recipe_state_dicts()
        label = "RECIPE WEIGHTS (deterministic synthetic weights: timing only, the images are noise)"
    else:
        state_dicts = weights.read_state_dicts(settings.model.models_dir, variant=settings.model.variant)
        label = f"official weights ({settings.model.variant}) from {weights.models_root(settings.model.models_dir)}"
    _log.info("building the networks: %s", label)
    plain = loader.LivePortraitModels(loader.load_state_dicts_into(state_dicts, device), device, torch.float32)
    prepared = {}
    for dtype in dict.fromkeys(_mode_dtype(m) for m in modes if m != "plain-fp32" and m not in ORT_MODES):
        models = loader.LivePortraitModels(loader.load_state_dicts_into(state_dicts, device), device, dtype)
        prepare_for_inference(models, channels_last=settings.performance.channels_last)
        prepared[dtype] = models
    del state_dicts
    for mode in (m for m in modes if m in ORT_MODES):
        prepared[mode] = _ort_models(args, settings, plain, mode)
    return plain, prepared, label


def _ort_models(args: argparse.Namespace, settings, plain, mode: str):
    """The plain modules with F, M, W and G replaced by their ONNX Runtime sessions on the mode's providers."""
    import tempfile

    from liveportrait_core.models import loader
    from liveportrait_core.models.onnx import export, runtime

    available = runtime.available_providers()
    missing = [p for p in ORT_MODES[mode] if p not in available]
    if missing:
        raise SystemExit(f"--modes {mode}: this ONNX Runtime build has no {', '.join(missing)} provider "
                         f"(it has: {', '.join(available) or 'none, onnxruntime is not installed'})")
    m = settings.model
    if args.random_weights:  # the recipe weights are in memory only: export them into a scratch folder
        folder = Path(tempfile.mkdtemp(prefix="liveportrait_onnx_bench_"))
        tags = {n: export.ExportTag(network=n, weights_sha256="0" * 64, onnx=export.onnx_version())
                for n in export.EXPORTED}
        files = export.export_modules(plain.modules, folder, tags, progress=_log.info)
        caches = folder / "cache"
    else:
        files = export.ensure_exported(m.models_dir, m.variant, progress=_log.info)
        caches = runtime.cache_dir(m.models_dir)
    reduced = m.precision in ("auto", "fp16")
    nets = {}
    for name, path in files.items():
        fp16_file = reduced and ORT_MODES[mode][0] in runtime.FP16_FILE_PROVIDERS
        session, placement = runtime.open_session(name, export.ensure_fp16(path) if fp16_file else path,
                                                  ORT_MODES[mode], caches, fp16=reduced,
                                                  threads=settings.performance.torch_threads, progress=_log.info)
        _log.info("%s: %s", mode, placement.summary())
        nets[name] = runtime.OrtNetwork(name, session, placement)
    return loader.LivePortraitModels(modules={**plain.modules, **nets}, device=plain.device, dtype=plain.dtype,
                                     optimized=True)


def _modes(args: argparse.Namespace, settings, device) -> list[str]:
    from liveportrait_core.models.loader import cpu_has_fast_bf16  # noqa: PLC0415

    if args.modes:
        wanted = [m.strip() for m in args.modes.split(",") if m.strip()]
    elif settings.model.precision not in ("auto", "fp32") and args.precision:
        wanted = ["fp32", settings.model.precision]
    else:
        wanted = ["fp32"]
        if device.type == "cuda":
            wanted += ["fp16", "bf16"]
        elif device.type == "cpu" and cpu_has_fast_bf16():
            wanted.append("bf16")
    if settings.performance.compile and "fp32-compiled" not in wanted:
        wanted.append("fp32-compiled")
    bad = [m for m in wanted if m not in MODES]
    if bad:
        raise SystemExit(f"unknown --modes {', '.join(bad)}; use {', '.join(MODES)}")
    return ["plain-fp32"] + [m for m in wanted if m != "plain-fp32"]


def _frame(models, image, f_s, x_s, times: dict[str, list[float]] | None):
    """One driven frame; per-stage seconds appended to ``times``. Returns (decoder output, uint8 image)."""
    import torch  # noqa: PLC0415

    from liveportrait_core.models.networks.keypoints import MotionInfo
    from liveportrait_core.models.networks.stitching import stitch

    dev = models.device
    cpu0 = time.process_time()
    raw, t_m = _timed(dev, lambda: models.run("motion_extractor", image))

    def maths():
        with torch.inference_mode():
            x_d = MotionInfo.from_raw(raw).keypoints()
            return stitch(models["stitching"], x_s, x_d)
    x_d, t_k = _timed(dev, maths)
    warped, t_w = _timed(dev, lambda: models.run("warping_module", f_s, kp_driving=x_d, kp_source=x_s))
    out, t_g = _timed(dev, lambda: models.run("spade_generator", warped["out"]))

    def to_u8():
        with torch.inference_mode():
            return (out[0].permute(1, 2, 0).clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    u8, t_u = _timed(dev, to_u8)
    if times is not None:
        for k, v in zip(STAGES, (t_m, t_k, t_w, t_g, t_u)):
            times[k].append(v)
        times["frame"].append(t_m + t_k + t_w + t_g + t_u)
        times["frame_cpu"].append(time.process_time() - cpu0)
    return out, u8


def _mlp_ms(models, x_s) -> dict[str, float]:
    import torch  # noqa: PLC0415

    inputs = {"stitching": torch.cat([x_s.reshape(1, -1)] * 2, 1), "lip": torch.zeros(1, 65, device=x_s.device),
              "eye": torch.zeros(1, 66, device=x_s.device)}
    out = {}
    for name, x in inputs.items():
        samples = []
        for _ in range(5):
            _, t = _timed(models.device, lambda: [models.run(name, x) for _ in range(20)])
            samples.append(t / 20 * 1000)
        out[name] = statistics.median(samples)
    return out


def run(args: argparse.Namespace, settings) -> dict[str, Any]:
    import torch  # noqa: PLC0415

    from liveportrait_core.models import loader  # noqa: PLC0415

    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    if settings.performance.torch_threads:
        torch.set_num_threads(settings.performance.torch_threads)
    device = loader.pick_device(settings.model.device)
    modes = _modes(args, settings, device)
    plain, prepared, label = _load(args, settings, device, modes)
    img_u8, img_desc = _input_image()
    image = (torch.from_numpy(img_u8).to(device).permute(2, 0, 1)[None].float() / 255).clamp(0, 1)
    by_mode = {m: plain if m == "plain-fp32" else prepared[m] if m in ORT_MODES else
               _for_mode(prepared[_mode_dtype(m)], m) for m in modes}
    # source once (not per frame): appearance features and source keypoints, from the plain fp32 path
    from liveportrait_core.models.networks.keypoints import MotionInfo

    f_s = plain.run("appearance_feature_extractor", image)
    x_s = MotionInfo.from_raw(plain.run("motion_extractor", image)).keypoints()
    repeats = max(1, int(args.repeats))
    times = {m: {k: [] for k in (*STAGES, "frame", "frame_cpu", "appearance_feature_extractor")} for m in modes}
    outputs = {}
    _log.info("modes %s on %s: one warm-up frame each, then %d timed repeat(s); on a CPU a frame takes seconds",
              ", ".join(modes), device, repeats)
    for m in modes:  # warm-up (and output for the error figures)
        _log.info("warm-up: %s", m)
        outputs[m] = _frame(by_mode[m], image, f_s, x_s, None)
    for r in range(repeats):
        for m in modes:
            _log.info("repeat %d/%d: %s", r + 1, repeats, m)
            _, t_f = _timed(device, lambda: by_mode[m].run("appearance_feature_extractor", image))
            times[m]["appearance_feature_extractor"].append(t_f)
            _frame(by_mode[m], image, f_s, x_s, times[m])
    ref_out, ref_u8 = outputs["plain-fp32"]
    result_modes = {}
    for m in modes:
        out, u8 = outputs[m]
        diff = (out - ref_out).abs().max().item() / max(ref_out.abs().max().item(), 1e-12)
        result_modes[m] = {
            "median_s": {k: statistics.median(v) for k, v in times[m].items()},
            "err_vs_plain_fp32": diff,
            "image_mae_255": float(np.abs(u8.astype(np.int16) - ref_u8.astype(np.int16)).mean()),
            "image_max_255": int(np.abs(u8.astype(np.int16) - ref_u8.astype(np.int16)).max()),
            "fell_back_to_fp32": sorted(by_mode[m]._fp32_only),
        }
    plain_frame = result_modes["plain-fp32"]["median_s"]["frame"]
    plain_cpu = result_modes["plain-fp32"]["median_s"]["frame_cpu"]
    for m, r in result_modes.items():
        r["vs_plain"] = r["median_s"]["frame"] / plain_frame
        r["cpu_vs_plain"] = r["median_s"]["frame_cpu"] / plain_cpu
        r["vs_official_cpu"] = r["median_s"]["frame"] / OFFICIAL_CPU_S["frame"]
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "kind": "modules",
        "weights": label,
        "random_weights": bool(args.random_weights),
        "input": img_desc,
        "repeats": repeats,
        "modes": result_modes,
        "mlp_ms": _mlp_ms(plain, x_s),
        "official_cpu_s": OFFICIAL_CPU_S,
        "system": {
            "device": str(device),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_start": load0,
            "load_average_end": load1,
        },
    }


def _for_mode(models, mode: str):
    """The prepared modules of the mode's precision; for ``fp32-compiled`` a copy wrapped in torch.compile."""
    from liveportrait_core.models.loader import LivePortraitModels  # noqa: PLC0415
    from liveportrait_core.models.fast.optimize import compile_models

    if mode != "fp32-compiled":
        return models
    compiled = LivePortraitModels(modules=dict(models.modules), device=models.device, dtype=models.dtype,
                                  optimized=True)
    compile_models(compiled)  # compiled during the warm-up frame, which is not timed
    return compiled


def format_table(result: dict[str, Any]) -> str:
    sysinfo = result["system"]
    lines = [f"LivePortrait networks on {sysinfo['device']} ({sysinfo['cpu']}, {sysinfo['cores']} cores, "
             f"{sysinfo['torch_threads']} torch threads, torch {sysinfo['torch']})",
             f"weights: {result['weights']}", f"input: {result['input']}; batch 1; median of {result['repeats']}"]
    if sysinfo.get("load_average_start"):
        la0, la1 = sysinfo["load_average_start"][0], sysinfo["load_average_end"][0]
        lines.append(f"load average at start/end: {la0:.1f} / {la1:.1f} "
                     f"(above {sysinfo['cores']}: other processes shared the CPU, absolute times are inflated; "
                     f"compare modes by their ratio, measured interleaved)")
    modes = list(result["modes"])
    names = {"appearance_feature_extractor": "appearance F (per source)", "motion_extractor": "motion M",
             "keypoints+stitching": "keypoint maths + stitching", "warping_module": "warping W",
             "spade_generator": "SPADE decoder G", "to_uint8": "to uint8", "frame": "per driven frame"}
    head = f"{'stage (s)':30}" + "".join(f"{m:>14}" for m in modes) + f"{'official CPU':>14}"
    lines += ["", head, "-" * len(head)]
    for k, label in names.items():
        official = result["official_cpu_s"].get(k)
        lines.append(f"{label:30}" + "".join(f"{result['modes'][m]['median_s'][k]:14.3f}" for m in modes)
                     + (f"{official:14.3f}" if official is not None else f"{'':14}"))
    lines.append(f"{'per frame, process CPU time':30}"
                 + "".join(f"{result['modes'][m]['median_s']['frame_cpu']:14.3f}" for m in modes))
    lines.append("-" * len(head))
    lines.append(f"{'frame vs plain fp32':30}" + "".join(f"{result['modes'][m]['vs_plain']:13.2f}x" for m in modes))
    lines.append(f"{'frame CPU time vs plain fp32':30}"
                 + "".join(f"{result['modes'][m]['cpu_vs_plain']:13.2f}x" for m in modes))
    lines.append(f"{'frame vs official CPU 7.685 s':30}"
                 + "".join(f"{result['modes'][m]['vs_official_cpu']:13.2f}x" for m in modes))
    lines.append(f"{'G output err vs plain fp32':30}"
                 + "".join(f"{result['modes'][m]['err_vs_plain_fp32']:14.1e}" for m in modes))
    lines.append(f"{'image MAE vs plain (1/255)':30}"
                 + "".join(f"{result['modes'][m]['image_mae_255']:14.3f}" for m in modes))
    lines.append(f"{'image max diff (1/255)':30}"
                 + "".join(f"{result['modes'][m]['image_max_255']:14d}" for m in modes))
    fb = {m: r["fell_back_to_fp32"] for m, r in result["modes"].items() if r["fell_back_to_fp32"]}
    if fb:
        lines.append(f"fell back to fp32 (non-finite output): {fb}")
    mlp = result["mlp_ms"]
    lines.append(f"MLPs (ms): stitching {mlp['stitching']:.3f}, lip {mlp['lip']:.3f}, eye {mlp['eye']:.3f}")
    lines.append("plain fp32 (the official structure) runs in this process, so it also gets the CPU allocator "
                 "setting that the official code does not make (faster), which makes 'vs plain' conservative")
    lines.append(f"goals: fp32 <= {GOAL_FP32}x official per frame (outputs within 1e-5); reduced precision <= "
                 f"{GOAL_REDUCED}x official with image MAE <= 1/255")
    if result["random_weights"]:
        lines.append("NOTE: recipe weights (synthetic, not a model): timings are real, images are noise.")
    return "\n".join(lines)
