"""GPU check: what a maintainer runs on a lent NVIDIA machine, in a few minutes, to fill docs/PERFORMANCE.md.

Steps (each timed and bounded; a failing step is recorded and the next one runs):

1. ``environment``: GPU, driver, compute capability, torch / CUDA / cuDNN / OpenCV / ONNX Runtime versions.
2. ``weights``: the recipe weights (SYNTHETIC, deterministic, tests only: never a model) written in the
   official layout into a temporary folder.
3. ``vectors``: the networks loaded on the device in each precision, fed the official reference vectors'
   inputs (../shared/reference/vectors), compared with the same metric as tests/test_networks.py:
   max|ours − ref| / max|ref|. float32 (TF32 off, as the vectors' README asks): the CPU tests'
   tolerances (1e-4 for the big networks, 1e-5 for the MLPs, 1 LSB for the decoder's uint8 image). fp16
   and bf16 (the bf16 forms, models/fast/bf16.py): 2e-2 for the big networks and 8 LSB for the image —
   PROVISIONAL, not calibrated on a GPU yet; the measured errors are in the report either way.
4. ``networks``: each network timed (CUDA-synchronised medians) with its FLOPs counted
   (``torch.utils.flop_counter``) and the achieved TFLOP/s; with ``--peak-tflops`` the share of the card's peak.
5. ``frame``: the whole ``Animator`` frame on the bundled sample character (512² and an upscaled 1280²
   copy): CPU paste-back (download, paste on the CPU), device paste-back waited per frame, and device
   paste-back pipelined (the next frame's networks queued while the previous frame goes down).
6. ``paste``: the device paste-back's frame against the CPU paste-back's for the same animated crop
   (must be within 1 LSB; the construction gives 0).
7. ``tests``: the tests marked ``gpu`` (``pytest -m gpu tests``, at most 4 minutes): the CUDA paste-back,
   the pinned downloads with frames in flight, no host-device sync on the frame path (sync debug mode). The dry run records the command without running it.

``--dry-run`` runs the same code on the CPU in well under a minute: the motion extractor and the
retargeting MLPs at full size against the vectors (the full-size appearance, warping and decoder passes
are left out: seconds each on a CPU), the reduced networks (``models/small.py``, random weights, tests
only) for the timings and the frame, and 512² only. CI runs it (tests/test_gpu_check.py).

Writes ``gpu_check.json`` and ``gpu_check.md`` into ``--out`` (default: $OUT, else ./gpu_check_report).
Run: ``python scripts/gpu_check.py`` (or ``python -m liveportrait_core.tools.gpu_check``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from liveportrait_core.machine import cpu_model

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO.parent / "shared" / "reference" / "vectors"
SAMPLE_CHARACTER = REPO / "characters" / "astronaut.png"
BIG = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")
MLPS = ("stitching", "lip", "eye")
#: tolerances (metric: max|ours − ref| / max|ref|): float32 as tests/test_networks.py and the vectors' README
TOL_FP32 = {"big": 1e-4, "mlp": 1e-5, "lsb": 1}
#: fp16 against the float32 vectors: provisional (not calibrated on a GPU yet); the MLPs always run in float32
TOL_FP16 = {"big": 2e-2, "mlp": 1e-5, "lsb": 8}
SYNTHETIC = "recipe weights: deterministic synthetic numbers in the official layout (tests only, not a model)"


@dataclass
class Plan:
    """What one run does: the full GPU check, or the CPU dry run of the same code."""

    device: str
    precisions: tuple[str, ...]
    vector_networks: tuple[str, ...]
    reduced: bool  #: timings and frames with the reduced networks (models/small.py)
    sizes: tuple[int, ...]  #: character sizes for the frame step
    repeats: int
    warmup: int
    frames: int
    step_budget_s: float  #: a timing loop stops early past this (the step still reports what it measured)
    peak_tflops: float | None = None
    notes: list[str] = field(default_factory=list)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.dry_run:
        return Plan(device="cpu", precisions=("fp32",), vector_networks=("motion_extractor",) + MLPS, reduced=True,
                    sizes=(512,), repeats=1, warmup=0, frames=1, step_budget_s=20.0, peak_tflops=args.peak_tflops,
                    notes=["dry run on the CPU: the same steps; full-size F, W and G are not run against the vectors "
                           "(seconds each here); timings and frames use the reduced networks (models/small.py, "
                           "random weights: test numbers, not a model); fp16 is a CUDA mode and is not run"])
    return Plan(device=args.device, precisions=tuple(args.precisions.split(",")), vector_networks=BIG + MLPS,
                reduced=False, sizes=tuple(int(s) for s in args.sizes.split(",")), repeats=args.repeats,
                warmup=3, frames=args.frames, step_budget_s=90.0, peak_tflops=args.peak_tflops)


# ------------------------------------------------------------------------------------------------ helpers


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], Any], device, repeats: int, warmup: int, budget_s: float) -> dict[str, Any]:
    """Median of ``repeats`` synchronised runs after ``warmup`` (fewer when the budget runs out)."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    ms: list[float] = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ms.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - start > budget_s:
            break
    return {"median_ms": round(statistics.median(ms), 3), "min_ms": round(min(ms), 3), "n": len(ms)}


def rel_err(ours, ref) -> float:
    """The vectors' metric: max|ours − ref| / max|ref|, NaNs in the reference ignored."""
    ours = np.asarray(ours.detach().float().cpu() if hasattr(ours, "detach") else ours, np.float64)
    ref = np.asarray(ref, np.float64)
    ok = ~np.isnan(ref)
    return float(np.abs(ours[ok] - ref[ok]).max() / np.abs(ref[ok]).max())


def _vectors(name: str) -> dict[str, np.ndarray]:
    with np.load(VECTORS / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@contextlib.contextmanager
def _no_tf32():
    """float32 without TF32 (the vectors' README): restored afterwards."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ------------------------------------------------------------------------------------------------ steps


def step_environment(plan: Plan, ctx: dict[str, Any]) -> dict[str, Any]:
    import cv2
    import torch

    info: dict[str, Any] = {"python": sys.version.split()[0], "os": f"{platform.system()} {platform.release()}",
                            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                            "opencv": cv2.__version__, "numpy": np.__version__, "device": plan.device,
                            "cpu_threads": torch.get_num_threads()}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = f"{ort.__version__} ({', '.join(ort.get_available_providers())})"
    except ImportError:
        info["onnxruntime"] = None
    info["cpu"] = cpu_model()
    if torch.device(plan.device).type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("PyTorch sees no CUDA GPU (CPU-only build or no driver): install the CUDA build "
                               "(see docs/INSTALLATION.md) or run with --dry-run")
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gb=round(p.total_memory / 2**30, 1),
                    multiprocessors=p.multi_processor_count)
        smi = shutil.which("nvidia-smi")
        if smi:
            out = subprocess.run([smi, "--query-gpu=driver_version,power.limit,clocks.max.sm", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
    return info


def step_weights(plan: Plan, ctx: dict[str, Any]) -> dict[str, Any]:
    from liveportrait_core.models.checkpoint import weights
    from liveportrait_core.models.checkpoint.recipe import recipe_state_dicts

    names = tuple(plan.vector_networks) if plan.reduced else BIG + MLPS
    folder = Path(tempfile.mkdtemp(prefix="lp_gpu_check_weights_"))
    ctx["cleanup"].append(folder)
    files = weights.write_checkpoints(folder, recipe_state_dicts(names))
    ctx["weights_dir"], ctx["weights_names"] = folder, names
    return {"folder": str(folder), "networks": list(names), "files": len(files), "what": SYNTHETIC}


def _load(plan: Plan, ctx: dict[str, Any], precision: str, names: tuple[str, ...]):
    from liveportrait_core.models.loader import load_models

    return load_models(ctx["weights_dir"], device=plan.device, precision=precision, names=names)


def _check_network(models, name: str) -> dict[str, float]:
    """{output: error} of one network fed the vectors' stored inputs (the metric of tests/test_networks.py)."""
    import torch

    dev = models.device
    t = lambda a: torch.from_numpy(np.asarray(a)).to(dev)  # noqa: E731
    if name == "appearance_feature_extractor":
        v = _vectors(name)
        return {"f_s": rel_err(models.run(name, t(v["x"])), v["f_s"])}
    if name == "motion_extractor":
        v = _vectors(name)
        x = t(v["images_u8"]).permute(0, 3, 1, 2).float() / 255
        raw = [models.run(name, x[i:i + 1]) for i in range(2)]
        return {f"raw_{k}": rel_err(torch.cat([r[k] for r in raw]), v[f"raw_{k}"]) for k in raw[0]}
    if name == "warping_module":
        a, v = _vectors("appearance_feature_extractor"), _vectors(name)
        out = models.run(name, t(a["f_s"]), kp_driving=t(v["kp_driving"]), kp_source=t(v["kp_source"]))
        return {k: rel_err(out[k], v[k]) for k in ("out", "occlusion_map", "deformation")}
    if name == "spade_generator":
        w, v = _vectors("warping_module"), _vectors(name)
        out = models.run(name, t(w["out"]))
        u8 = (out[0].permute(1, 2, 0).clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
        return {"out": rel_err(out, v["out"]), "out_u8_max_lsb": float(np.abs(u8.astype(int) - v["out_u8"]).max())}
    v = _vectors("stitching_retargeting")
    return {"out": rel_err(models.run(name, t(v[f"{name}_in"])), v[f"{name}_out"])}


def step_vectors(plan: Plan, ctx: dict[str, Any]) -> dict[str, Any]:
    if not VECTORS.is_dir():
        raise FileNotFoundError(f"reference vectors not found at {VECTORS} (../shared beside the checkout)")
    results: dict[str, Any] = {}
    failed: list[str] = []
    for precision in plan.precisions:
        tol = TOL_FP32 if precision == "fp32" else TOL_FP16
        with _no_tf32() if precision == "fp32" else contextlib.nullcontext():
            models = _load(plan, ctx, precision, plan.vector_networks)
            per: dict[str, Any] = {}
            for name in plan.vector_networks:
                errs = _check_network(models, name)
                limit = tol["mlp"] if name in MLPS else tol["big"]
                ok = all(v <= (tol["lsb"] if k.endswith("_lsb") else limit) for k, v in errs.items())
                per[name] = {"errors": {k: float(f"{v:.3g}") for k, v in errs.items()}, "tolerance": limit, "ok": ok}
                if name == "spade_generator":
                    per[name]["tolerance_lsb"] = tol["lsb"]
                if not ok:
                    failed.append(f"{name} {precision}")
            del models
        results[precision] = per
    results["skipped"] = [n for n in BIG + MLPS if n not in plan.vector_networks]
    if failed:
        results["failed"] = failed
        ctx["failures"].append("vectors: " + ", ".join(failed))
    return results


def _bench_models(plan: Plan, ctx: dict[str, Any], precision: str):
    if plan.reduced:
        from liveportrait_core.models.small import reduced_models

        return reduced_models(plan.device)
    return _load(plan, ctx, precision, BIG + MLPS)


def _network_calls(models) -> dict[str, Callable[[], Any]]:
    """One call of each big network on inputs of the official shapes (from the character-free vectors' sizes)."""
    import torch

    dev = models.device
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 256, 256, generator=g).to(dev)
    f_s = models.run("appearance_feature_extractor", x)
    kp = (torch.rand(1, 21, 3, generator=g) * 0.6 - 0.3).to(dev)
    feature = models.run("warping_module", f_s, kp_driving=kp, kp_source=kp)["out"]
    return {"appearance_feature_extractor": lambda: models.run("appearance_feature_extractor", x),
            "motion_extractor": lambda: models.run("motion_extractor", x),
            "warping_module": lambda: models.run("warping_module", f_s, kp_driving=kp, kp_source=kp),
            "spade_generator": lambda: models.run("spade_generator", feature)}


def _flops(fn: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def step_networks(plan: Plan, ctx: dict[str, Any]) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"networks": "reduced (models/small.py, random weights)" if plan.reduced else SYNTHETIC,
                           # timed with the product's defaults: fp32 convolutions may use TF32 on Ampere and later
                           "fp32_convolutions_allow_tf32": bool(torch.backends.cudnn.allow_tf32)}
    for precision in plan.precisions:
        models = _bench_models(plan, ctx, precision)
        per: dict[str, Any] = {}
        for name, call in _network_calls(models).items():
            gflop = _flops(call) / 1e9  # one run, which also serves as the first warm-up
            timing = _median_ms(call, plan.device, plan.repeats, max(plan.warmup - 1, 0), plan.step_budget_s / 4)
            tflops = gflop / timing["median_ms"] if timing["median_ms"] > 0 else 0.0  # GFLOP/ms = TFLOP/s
            per[name] = {**timing, "gflop": round(gflop, 2), "tflop_s": round(tflops, 3)}
            if plan.peak_tflops:
                per[name]["peak_share"] = round(tflops / plan.peak_tflops, 4)
        per["frame_networks_ms"] = round(sum(per[n]["median_ms"] for n in ("motion_extractor", "warping_module",
                                                                             "spade_generator")), 3)
        out[precision] = per
        del models
    return out


def _character_folder(size: int, root: Path) -> Path:
    """A folder holding the bundled sample character at ``size``² (upscaled when larger than 512)."""
    import cv2

    folder = root / f"chars_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    img = cv2.imread(str(SAMPLE_CHARACTER), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"the sample character {SAMPLE_CHARACTER} is missing")
    if img.shape[0] != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(folder / f"astronaut_{size}.png"), img)
    return folder


def _library(models, folder: Path):
    """The character library over ``folder`` (one per size: both paste-back modes share its preparation)."""
    from liveportrait_core.characters.library import CharacterLibrary
    from liveportrait_core.settings import Settings

    s = Settings()
    s.characters.folder = str(folder)
    s.characters.cache_dir = str(folder / "cache")
    s.characters.rescan_s = 3600.0
    s.animation.smoothing = False
    return CharacterLibrary(s, models)


def _animator(models, library, device_paste: bool):
    from liveportrait_core.engine.pipeline import Animator

    animator = Animator(models, library.settings, library, device_paste=device_paste)
    animator.select_character(0)
    return animator


def _observations():
    n = 0
    while True:
        n += 1
        yield SimpleNamespace(found=True, timestamp=n / 30.0, eye_open=None, mouth_open=None, calibrate_now=False)


def step_frame(plan: Plan, ctx: dict[str, Any]) -> dict[str, Any]:
    """Whole Animator frames: CPU paste-back, device paste-back (waited), device paste-back pipelined."""
    out: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="lp_gpu_check_chars_"))
    ctx["cleanup"].append(root)
    precision = plan.precisions[0] if "fp16" not in plan.precisions else "fp16"
    models = _bench_models(plan, ctx, precision)
    out["precision"] = precision if not plan.reduced else "fp32 (reduced networks)"
    for size in plan.sizes:
        library = _library(models, _character_folder(size, root))
        per: dict[str, Any] = {}
        for label, device_paste in (("cpu_paste", False), ("device_paste", True)):
            animator = _animator(models, library, device_paste)
            driving = animator.character.crop_rgb256  # the character's own face drives it (real M pass)
            obs = _observations()
            per[label] = _median_ms(lambda: animator.animate(driving, next(obs)), plan.device, plan.frames,
                                    plan.warmup, plan.step_budget_s / (2 * len(plan.sizes)))
            if device_paste:  # frames in flight: the next frame queued before the previous one is on the host
                per["device_paste_pipelined"] = _pipelined(animator, driving, obs, plan)
                ctx.setdefault("paste_animators", {})[size] = animator  # closed (with the library) by the paste step
        h, w = ctx["paste_animators"][size].character.image_bgr.shape[:2]
        per["frame_size"] = f"{w}x{h}"  # as prepared (the official resize-to-limit may change it)
        out[f"{size}"] = per
    ctx["frame_models"] = models
    return out


def _pipelined(animator, driving, obs, plan: Plan) -> dict[str, Any]:
    """Frames per second with one frame in flight (how the engine runs it: publish waits, inference goes on)."""
    pending = animator.animate_async(driving, next(obs))
    n = plan.frames
    _sync(plan.device)
    t0 = time.perf_counter()
    for _ in range(n):
        nxt = animator.animate_async(driving, next(obs))
        pending.result()
        pending = nxt
    pending.result()
    ms = (time.perf_counter() - t0) * 1e3 / (n + 1)
    return {"ms_per_frame": round(ms, 3), "fps": round(1e3 / ms, 2), "n": n + 1}


def step_paste(plan: Plan, ctx: dict[str, Any]) -> dict[str, Any]:
    """The device paste-back's frame against the CPU paste-back's, for the same animated crops."""
    from liveportrait_core.driving.paste_device import DevicePasteBack

    out: dict[str, Any] = {}
    for size, animator in ctx.get("paste_animators", {}).items():
        c = animator.character
        paste = c.ensure_paste_back()
        dev = DevicePasteBack(paste, c.crop_alpha512, animator.device)
        frame = dev.new_frame()
        worst, differing = 0, 0
        obs = _observations()
        for _ in range(1 if plan.reduced else 3):
            x_d = animator.driving_keypoints(c.crop_rgb256, next(obs))
            crop = animator.render_crop_device(x_d)
            got = dev.paste(crop, frame).cpu().numpy()
            ref = paste.paste_bgra(crop.permute(1, 2, 0).cpu().numpy(), c.crop_alpha512)
            d = np.abs(got.astype(int) - ref.astype(int))
            worst, differing = max(worst, int(d.max())), differing + int((d > 0).sum())
        out[f"{size}"] = {"max_lsb": worst, "values_differing": differing, "ok": worst <= 1}
        if worst > 1:
            ctx["failures"].append(f"paste {size}: {worst} LSB")
        animator.close()
    if not out:
        raise RuntimeError("no frame step ran (nothing to compare)")
    return out


GPU_TESTS_TIMEOUT_S = 240


def step_tests(plan: Plan, ctx: dict[str, Any]) -> dict[str, Any]:
    """The tests marked ``gpu`` (a checkout's tests/ folder), in a subprocess with a time limit."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"]
    shown = "python -m pytest -q -m gpu tests"
    if plan.reduced:
        return {"command": shown, "ran": False, "reason": "dry run: the gpu tests need a CUDA GPU"}
    if not (REPO / "tests").is_dir():
        return {"command": shown, "ran": False, "reason": f"no tests folder in {REPO} (not a checkout)"}
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=GPU_TESTS_TIMEOUT_S)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    if proc.returncode != 0:
        ctx["failures"].append(f"gpu tests: exit {proc.returncode}")
    return {"command": shown, "ran": True, "exit_status": proc.returncode, "summary": tail[-1] if tail else "",
            "tail": tail}


STEPS: tuple[tuple[str, Callable[[Plan, dict[str, Any]], dict[str, Any]]], ...] = (
    ("environment", step_environment), ("weights", step_weights), ("vectors", step_vectors),
    ("networks", step_networks), ("frame", step_frame), ("paste", step_paste), ("tests", step_tests))


# ------------------------------------------------------------------------------------------------ report


def run_check(plan: Plan, log: Callable[[str], None] = print) -> dict[str, Any]:
    ctx: dict[str, Any] = {"cleanup": [], "failures": []}
    report: dict[str, Any] = {"tool": "liveportrait gpu check", "dry_run": plan.reduced, "weights": SYNTHETIC,
                              "plan": {k: v for k, v in plan.__dict__.items()},
                              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}}
    try:
        for name, fn in STEPS:
            log(f"[{name}] ...")
            t0 = time.perf_counter()
            try:
                result, status = fn(plan, ctx), "ok"
            except Exception as e:  # noqa: BLE001 - a step's failure is reported; the next steps still run
                result, status = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=4)}, "error"
                ctx["failures"].append(f"{name}: {type(e).__name__}: {e}")
            seconds = round(time.perf_counter() - t0, 1)
            report["steps"][name] = {"status": status, "seconds": seconds, **result}
            log(f"[{name}] {status} in {seconds} s" + (f": {result['error']}" if status == "error" else ""))
            if status == "error" and name in ("environment", "weights"):  # every later step needs these
                for later, _ in STEPS[[n for n, _ in STEPS].index(name) + 1:]:
                    report["steps"][later] = {"status": "skipped", "seconds": 0.0, "reason": f"the {name} step failed"}
                break
    finally:
        for folder in ctx["cleanup"]:
            shutil.rmtree(folder, ignore_errors=True)
    report["failures"] = ctx["failures"]
    report["ok"] = not ctx["failures"]
    return report


def _fmt(v: Any) -> str:
    return "" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def format_markdown(report: dict[str, Any]) -> str:
    s = report["steps"]
    env = s.get("environment", {})
    lines = [f"## GPU check — {env.get('gpu', env.get('cpu', '?'))}" + (" (DRY RUN on the CPU)" if report["dry_run"] else ""),
             "", f"{report['started_utc']}; {report['weights']}.", ""]
    if report["dry_run"]:
        lines += ["Dry run: the figures below are CPU test numbers with reduced networks, not GPU figures.", ""]
    lines += ["| fact | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in env.items() if k not in ("status", "seconds")]
    vec = s.get("vectors", {})
    lines += ["", "### Networks against the reference vectors", "", "| precision | network | max error | tolerance | ok |",
              "|---|---|---:|---:|---|"]
    for precision in report["plan"]["precisions"]:
        for name, r in (vec.get(precision) or {}).items():
            worst = max((v for k, v in r["errors"].items() if not k.endswith("_lsb")), default=0.0)
            lines.append(f"| {precision} | {name} | {worst:.3g} | {r['tolerance']:g} | {'yes' if r['ok'] else 'NO'} |")
    if vec.get("skipped"):
        lines.append(f"\nNot run against the vectors here: {', '.join(vec['skipped'])}.")
    net = s.get("networks", {})
    lines += ["", f"### Networks ({net.get('networks', '')})", "",
              "| precision | network | median ms | GFLOP | TFLOP/s | share of peak |", "|---|---|---:|---:|---:|---:|"]
    for precision in report["plan"]["precisions"]:
        for name, r in (net.get(precision) or {}).items():
            if isinstance(r, dict):
                lines.append(f"| {precision} | {name} | {r['median_ms']:.2f} | {r['gflop']:g} | {r['tflop_s']:g} | "
                             f"{_fmt(r.get('peak_share'))} |")
    fr = s.get("frame", {})
    lines += ["", f"### Animator frame ({fr.get('precision', '')})", "",
              "| character | CPU paste-back ms | device paste-back ms | device, pipelined ms (FPS) |", "|---|---:|---:|---:|"]
    for key, r in fr.items():
        if isinstance(r, dict) and "cpu_paste" in r:
            p = r["device_paste_pipelined"]
            lines.append(f"| {r['frame_size']} | {r['cpu_paste']['median_ms']:.2f} | {r['device_paste']['median_ms']:.2f} "
                         f"| {p['ms_per_frame']:.2f} ({p['fps']:g}) |")
    pa = s.get("paste", {})
    lines += ["", "### Device paste-back against the CPU paste-back", "", "| character | max LSB | values differing |",
              "|---|---:|---:|"]
    lines += [f"| {k}x{k} | {r['max_lsb']} | {r['values_differing']} |" for k, r in pa.items() if isinstance(r, dict)]
    te = s.get("tests", {})
    if te:
        lines += ["", f"Tests marked gpu (`{te.get('command', '')}`): "
                  + (te.get("summary", "") if te.get("ran") else f"not run ({te.get('reason', te.get('error', ''))})")]
    lines += ["", "Steps: " + ", ".join(f"{k} {v['status']} ({v['seconds']} s)" for k, v in s.items()),
              "", "Result: " + ("all checks passed" if report["ok"] else "FAILED — " + "; ".join(report["failures"])), ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    j, m = folder / "gpu_check.json", folder / "gpu_check.md"
    j.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    m.write_text(format_markdown(report), encoding="utf-8")
    return j, m


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="the same steps on the CPU with reduced networks (under a minute; what CI runs)")
    p.add_argument("--device", default="cuda", help="torch device of the check (default cuda)")
    p.add_argument("--precisions", default="fp32,fp16,bf16",
                   help="comma-separated: fp32, fp16, bf16 (default all three: bf16 runs its own forms on CUDA, "
                        "unmeasured until a GPU run)")
    p.add_argument("--sizes", default="512,1280", help="character sizes for the frame step (default 512,1280)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per network (default 20)")
    p.add_argument("--frames", type=int, default=30, help="timed Animator frames per mode (default 30)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the card's published peak (e.g. 59.5 for an RTX 3080 fp16, fp32 accumulation) for utilisation")
    p.add_argument("--out", default=None, help="report folder (default: $OUT, else ./gpu_check_report)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = make_plan(args)
    report = run_check(plan)
    folder = Path(args.out or os.environ.get("OUT") or "gpu_check_report")
    j, m = write_report(report, folder)
    print(format_markdown(report))
    print(f"report: {j} and {m}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
