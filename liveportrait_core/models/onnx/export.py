"""Export the four big networks to ONNX, beside the weights, and know when an export is current.

Each network is exported from the PLAIN loaded module (``load_models(..., optimize=False)``: the
official structure, not the Winograd/FFT forms, which only pay in torch on a CPU) with the TorchScript
exporter, ``torch.onnx.export(..., opset_version=20, dynamo=False)``; opset 20 has the 5-D
``GridSample`` the warping module needs, so the stock ONNX Runtime wheel runs it (no custom build).
Shapes are static (batch 1, the official crop sizes): that is what the pipeline feeds and what
TensorRT builds its fastest engines for.

Files live in ``<models>/onnx/<variant>/``, one per network, named ``<network>.<sha12>.op<opset>.onnx``
after the SHA-256 of the weight file it comes from, with a sidecar ``.json`` holding the full tag (weights
hash, torch, onnx and opset versions, export recipe). An export is current when its tag equals the tag
the installed libraries and weight files would give now; otherwise it is written again (and the older
export of that network removed). The weight files are only ever read. The hash of a weight file is
computed once and remembered by (size, mtime) in ``onnx/weights_sha256.json``.
"""
from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from liveportrait_core.models.checkpoint import layout, weights
from liveportrait_core.models.checkpoint.layout import BASE_MODULES

_log = logging.getLogger(__name__)

OPSET = 20
#: Bumped whenever the export recipe below changes (wrappers, input/output names, shapes).
RECIPE = 1
EXPORTER = "torch.onnx.export(dynamo=False)"
#: The networks that have an ONNX form. The three retargeting MLPs stay in torch for every backend:
#: they cost microseconds, and the driving maths calls them as modules (``networks.stitching``).
EXPORTED: tuple[str, ...] = tuple(BASE_MODULES)
INPUT_NAMES: dict[str, tuple[str, ...]] = {
    "appearance_feature_extractor": ("image",),
    "motion_extractor": ("image",),
    "warping_module": ("feature_3d", "kp_driving", "kp_source"),
    "spade_generator": ("feature",),
}
#: Output names; a network whose forward returns a dict returns these keys (in this order).
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "appearance_feature_extractor": ("feature_3d",),
    "motion_extractor": ("pitch", "yaw", "roll", "t", "exp", "scale", "kp"),
    "warping_module": ("out", "occlusion_map", "deformation"),
    "spade_generator": ("image",),
}
DICT_OUTPUTS = frozenset({"motion_extractor", "warping_module"})
_HASHES = "weights_sha256.json"

Progress = Callable[[str], None]


class ExportError(RuntimeError):
    """A network could not be exported; the message names it and says what to do."""


@dataclass(frozen=True)
class ExportTag:
    """Everything an export depends on: when any of it changes, the file is exported again."""

    network: str
    weights_sha256: str
    opset: int = OPSET
    torch: str = torch.__version__
    onnx: str = ""
    exporter: str = EXPORTER
    recipe: int = RECIPE

    @property
    def stem(self) -> str:
        return f"{self.network}.{self.weights_sha256[:12]}.op{self.opset}"

    def to_dict(self) -> dict:
        return asdict(self)


def onnx_version() -> str:
    """The installed ``onnx`` package's version ('' when it is not installed: nothing can be exported)."""
    try:
        import onnx  # noqa: PLC0415 - optional extra
    except ImportError:
        return ""
    return str(onnx.__version__)


def onnx_dir(models_dir: str | os.PathLike[str], variant: str = "human") -> Path:
    """``<models>/onnx/<variant>``: the exports of one weights variant."""
    layout.checkpoint_files(variant)  # raises on an unknown variant
    return weights.models_root(models_dir) / "onnx" / variant


def weight_file(models_dir: str | os.PathLike[str], variant: str, network: str) -> Path:
    """The official weight file a network is read from."""
    return weights.checkpoint_paths(models_dir, variant)[layout.module_layout(network).file]


def weights_sha256(models_dir: str | os.PathLike[str], variant: str, network: str) -> str:
    """SHA-256 of the network's weight file, remembered by (size, mtime) so it is hashed once."""
    path = weight_file(models_dir, variant, network)
    try:
        st = path.stat()
    except OSError as e:
        raise ExportError(f"{network}: its weight file {path} cannot be read ({e.strerror}); "
                          f"download the weights first (download-models)") from None
    memo_path = weights.models_root(models_dir) / "onnx" / _HASHES
    memo = read_json(memo_path)
    key = str(path.resolve())
    entry = memo.get(key)
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return str(entry["sha256"])
    sha = weights.sha256_file(path)
    memo[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    try:
        write_json(memo_path, memo)
    except OSError as e:  # a read-only models folder: hash again next time
        _log.debug("cannot remember the weights hash in %s: %s", memo_path, e)
    return sha


def expected_tag(models_dir: str | os.PathLike[str], variant: str, network: str) -> ExportTag:
    """The tag an export of ``network`` made now, from these weights, would carry."""
    return ExportTag(network=network, weights_sha256=weights_sha256(models_dir, variant, network),
                     onnx=onnx_version())


@dataclass(frozen=True)
class ExportState:
    """What is on disk for one network: ``current`` (with its path), ``stale`` (why) or ``missing``."""

    network: str
    state: str
    path: Path | None = None
    reason: str = ""


def export_state(models_dir: str | os.PathLike[str], variant: str, network: str) -> ExportState:
    """Is the network's ONNX export there and current (same weights hash, same exporter versions)?"""
    folder = onnx_dir(models_dir, variant)
    want = expected_tag(models_dir, variant, network)
    path = folder / f"{want.stem}.onnx"
    tag = read_json(path.with_suffix(".json"))
    if path.is_file() and tag == want.to_dict():
        return ExportState(network, "current", path)
    others = sorted(folder.glob(f"{network}.*.json")) if folder.is_dir() else []
    if not others and not path.is_file():
        return ExportState(network, "missing", reason="not exported yet")
    old = read_json(others[0]) if others else tag
    reason = _why_stale(old, want.to_dict())
    return ExportState(network, "stale", reason=reason)


def _why_stale(old: Mapping, want: Mapping) -> str:
    if not old:
        return "its tag file is missing or unreadable"
    diffs = [k for k in want if old.get(k) != want[k]]
    if "weights_sha256" in diffs:
        return "the weight file changed"
    return "exported with other versions (" + ", ".join(f"{k} {old.get(k)} -> {want[k]}" for k in diffs) + ")"


# ------------------------------------------------------------------------------------------------
# the export itself


class _Outputs(nn.Module):
    """A network as a function of positional inputs returning a tuple in ``OUTPUT_NAMES`` order."""

    def __init__(self, module: nn.Module, keys: tuple[str, ...] | None):
        super().__init__()
        self.module = module
        self.keys = keys

    def forward(self, *inputs: torch.Tensor):
        out = self.module(*inputs)
        return tuple(out[k] for k in self.keys) if self.keys is not None else out


def example_inputs(modules: Mapping[str, nn.Module],
                   seconds: dict[str, float] | None = None) -> dict[str, tuple[torch.Tensor, ...]]:
    """One valid input per network, made by running the chain F, M -> W -> G on a fixed image.

    The shapes then follow the modules themselves (the reduced test networks have other channel
    counts than the official ones), and W sees real keypoints rather than noise. ``seconds`` receives the
    time of each network run (F, M, W: the CPU choice's first estimate).
    """
    from liveportrait_core.models.networks.keypoints import MotionInfo  # noqa: PLC0415

    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 256), indexing="ij")
    image = torch.stack([xx, yy, 0.5 * (xx + yy)])[None] * 0.8 + 0.2 * torch.rand(1, 3, 256, 256, generator=gen)
    times = seconds if seconds is not None else {}

    def run(name: str, *args: torch.Tensor):
        t0 = time.perf_counter()
        out = modules[name](*args)
        times[name] = time.perf_counter() - t0
        return out

    with torch.no_grad():
        f_s = run("appearance_feature_extractor", image)
        info = MotionInfo.from_raw(run("motion_extractor", image))
        x_s = info.keypoints()
        x_d = x_s + 0.02 * torch.randn(x_s.shape, generator=gen)
        warped = run("warping_module", f_s, x_d, x_s)
    return {"appearance_feature_extractor": (image,), "motion_extractor": (image,),
            "warping_module": (f_s, x_d, x_s), "spade_generator": (warped["out"],)}


def export_module(network: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """``torch.onnx.export`` of one plain network to ``path`` (written whole or not at all)."""
    if not onnx_version():
        raise ExportError("exporting to ONNX needs the onnx package: install the onnx extra "
                          "(python install.py --backend onnx, or pip install -e .[onnx])")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    module = _fold_spectral_norms(module)
    wrapper = _Outputs(module, OUTPUT_NAMES[network] if network in DICT_OUTPUTS else None).eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings: not the user's to act on
            torch.onnx.export(wrapper, inputs, str(tmp), opset_version=OPSET, dynamo=False,
                              input_names=list(INPUT_NAMES[network]), output_names=list(OUTPUT_NAMES[network]),
                              do_constant_folding=True)
        os.replace(tmp, path)
    except Exception as e:  # noqa: BLE001 - any exporter failure becomes one clear message
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{network}: ONNX export failed ({type(e).__name__}: {str(e)[:300]}); "
                          f"run with model.backend=torch meanwhile") from e


def _fold_spectral_norms(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with each spectral norm's effective weight computed once (eval mode never
    updates u, v): the export then holds one weight per conv instead of the original, its reshaped copy
    and a matrix-vector product per frame (the exporter's constant folding does not see through it)."""
    from liveportrait_core.models.fast.optimize import fold_spectral_norm  # noqa: PLC0415

    return fold_spectral_norm(module)


def export_modules(modules: Mapping[str, nn.Module], folder: Path, tags: Mapping[str, ExportTag],
                   progress: Progress | None = None,
                   inputs: Mapping[str, tuple[torch.Tensor, ...]] | None = None) -> dict[str, Path]:
    """Export each network named in ``tags`` from ``modules`` into ``folder`` (with its tag file),
    removing that network's older exports; returns network -> ONNX path."""
    say = progress or _log.info
    inputs = inputs if inputs is not None else example_inputs(modules)
    out: dict[str, Path] = {}
    for i, (network, tag) in enumerate(tags.items(), 1):
        path = folder / f"{tag.stem}.onnx"
        say(f"exporting {network} to ONNX ({i}/{len(tags)}; the warping module takes a minute on a small CPU)")
        t0 = time.perf_counter()
        export_module(network, modules[network], inputs[network], path)
        write_json(path.with_suffix(".json"), tag.to_dict())
        for old in folder.glob(f"{network}.*"):  # older exports of this network (and their fp16 variants)
            if not old.name.startswith(tag.stem + "."):
                old.unlink(missing_ok=True)
        say(f"exported {network}: {path.name} ({path.stat().st_size / 1e6:.0f} MB, "
            f"{time.perf_counter() - t0:.0f} s)")
        out[network] = path
    return out


def ensure_exported(models_dir: str | os.PathLike[str], variant: str = "human",
                    names: Iterable[str] = EXPORTED, progress: Progress | None = None,
                    force: bool = False) -> dict[str, Path]:
    """The current ONNX file of each named network, exporting the ones that are missing or stale.

    Exporting loads the plain networks from the weight files (on the CPU, float32) once for all the
    stale ones; when every export is current, no torch module is built at all.
    """
    names = [n for n in names if n in EXPORTED]
    states = {n: export_state(models_dir, variant, n) for n in names}
    todo = [n for n, s in states.items() if force or s.state != "current"]
    done = {n: s.path for n, s in states.items() if n not in todo and s.path is not None}
    if not todo:
        return done
    say = progress or _log.info
    for n in todo:
        if states[n].state == "stale":
            say(f"{n}: the ONNX export is out of date ({states[n].reason}); exporting it again")
    from liveportrait_core.models.loader import load_models  # noqa: PLC0415 - loader imports this package lazily

    say("loading the plain networks for the ONNX export")
    plain = load_models(models_dir, device="cpu", precision="fp32", names=EXPORTED, variant=variant,
                        optimize=False)
    tags = {n: expected_tag(models_dir, variant, n) for n in todo}
    done.update(export_modules(plain.modules, onnx_dir(models_dir, variant), tags, progress=say))
    return {n: done[n] for n in names}


# ------------------------------------------------------------------------------------------------
# fp16 variants (for the providers whose fp16 kernels are the fast ones: CUDA, DirectML)

#: Ops kept in float32 in the fp16 variant: the sampling (its grid needs the precision: a 1e-3
#: error in a coordinate moves a 64-pixel feature by a sixteenth of a cell), the normalisations and
#: the reductions whose sums overflow half precision, and the heads' soft-max/exp/sigmoid.
FP16_KEEP_FP32_OPS = ("GridSample", "Softmax", "Exp", "Sigmoid", "ReduceSum", "ReduceMean", "ReduceL2",
                      "Pow", "Sqrt", "Div", "InstanceNormalization", "LayerNormalization")


def fp16_path(path: Path) -> Path:
    return path.with_name(path.stem + ".fp16.onnx")


def ensure_fp16(path: Path, progress: Progress | None = None) -> Path:
    """The fp16 variant of an fp32 export (float32 inputs and outputs, fp16 weights and most ops),
    made once beside it with ONNX Runtime's own converter; rebuilt when the fp32 file is newer."""
    out = fp16_path(path)
    if out.is_file() and out.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return out
    (progress or _log.info)(f"making the fp16 variant of {path.name}")
    import onnx  # noqa: PLC0415 - optional extra
    from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True,
                                     op_block_list=list(FP16_KEEP_FP32_OPS))
    tmp = out.with_name(out.name + ".partial")
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------------------------


def read_json(path: Path) -> dict:
    """The JSON object in ``path``; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: Mapping) -> None:
    """Write ``data`` to ``path`` atomically (a ``.partial`` file renamed over it), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
