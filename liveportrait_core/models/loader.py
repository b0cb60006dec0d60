"""Build the seven networks, load the official weights strictly, and run them with the right precision.

``load_models`` reads the files through ``weights.read_state_dicts`` (which verifies keys and shapes
against the official layout), builds each module with ``models.networks.build``, loads it with
``load_state_dict(strict=True)`` on the chosen device and puts it in eval mode. Then, once, the
exact inference rewrites of ``models/fast/optimize.py`` are applied (they never change the state_dict names on
disk: the plain modules are what the files load into).

Precision follows the official code: on CUDA the four big networks (F, M, W, G) run under fp16
autocast and their outputs are returned as float32; the MLPs and keypoint maths always run in
float32. ``bf16`` is an option on a CPU with native bf16 and on CUDA (compute capability 8.0 or newer): F and M
stay float32 and W and G run their bf16 forms (``models/fast/bf16.py``: bf16 for the big convolutions,
float32 for the coordinate grid, the motion heads, norms and sums; no autocast), which keep the image
within 1/255 of float32 on a CPU (docs/PERFORMANCE.md; on CUDA unmeasured so far). If a reduced-precision network ever produces a
non-finite output, that network is switched to float32 for good and a warning says so once: elsewhere the
call is re-run; on CUDA the check is read when its result has reached the host (no wait for the GPU on a
frame's path), so the frames made meanwhile (one or two) go out as they were.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from liveportrait_core.models.networks import build
from liveportrait_core.models.checkpoint import weights
from liveportrait_core.models.checkpoint.layout import BASE_MODULES, MODULE_NAMES
from liveportrait_core.models.fast.bf16 import BF16_FORM_DEVICES, sets_own_precision
from liveportrait_core.models.fast.seam import plain_network

_log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: bf16 (on a CPU or CUDA, ``fast.bf16.BF16_FORM_DEVICES``): the networks that run in bf16 (their bf16 forms,
#: after ``prepare_for_inference``). F runs once per character and feeds every frame, and M's keypoints move the
#: whole image (bf16 M alone costs 7/255 of image error for 0.04 s on a CPU): both stay float32.
BF16_NETWORKS = frozenset({"warping_module", "spade_generator"})
#: Calls per network during which every reduced-precision output is checked for inf/NaN; afterwards
#: one call in ``_CHECK_EVERY`` (a check costs a device sync, so it is not done on every frame).
_CHECK_FIRST = 8
_CHECK_EVERY = 64


class ModelLoadError(RuntimeError):
    """The weights could not be loaded into the networks; the message names the module and keys."""


def pick_device(setting: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. An explicit device that is not available raises."""
    setting = (setting or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("model.device is 'cuda' but PyTorch sees no CUDA GPU (CPU-only PyTorch build or no "
                             "NVIDIA driver); set model.device to 'auto' or 'cpu', or install the CUDA build")
    if setting == "mps" and not has_mps:
        raise ModelLoadError("model.device is 'mps' but Apple Metal is not available; set model.device to 'auto'")
    if setting not in ("cpu", "mps") and not setting.startswith("cuda"):
        raise ModelLoadError(f"unknown model.device {setting!r}; use auto, cuda, mps or cpu")
    return torch.device(setting)


def pick_precision(setting: str, device: torch.device) -> torch.dtype:
    """Network dtype of the four big networks: ``auto`` is fp16 on CUDA (as the official), fp32 elsewhere."""
    setting = (setting or "auto").lower()
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if setting not in _DTYPES:
        raise ModelLoadError(f"unknown model.precision {setting!r}; use auto, fp32, fp16 or bf16")
    dtype = _DTYPES[setting]
    if dtype == torch.float16 and device.type == "cpu":
        _log.warning("fp16 is not useful on the CPU (no fast half-precision kernels); using fp32 "
                     "(bf16 is the fast reduced-precision mode on CPUs that support it)")
        return torch.float32
    if dtype == torch.bfloat16 and device.type == "mps":
        _log.warning("bf16 autocast is not supported on MPS; using fp32")
        return torch.float32
    if dtype == torch.bfloat16 and device.type == "cuda" and not cuda_has_bf16(device):
        _log.warning("this GPU has no bf16 (it needs compute capability 8.0, Ampere, or newer): using fp32 "
                     "(model.precision auto runs the official fp16)")
        return torch.float32
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_fast_bf16():
        _log.warning("this CPU has no bf16 instructions (avx512_bf16 or AMX): bf16 would run about 100x slower "
                     "than fp32 here, so fp32 is used")
        return torch.float32
    return dtype


def cuda_has_bf16(device: torch.device) -> bool:
    """True when the GPU has bf16 tensor cores (compute capability 8.0, Ampere, or newer)."""
    try:
        return tuple(torch.cuda.get_device_capability(device)) >= (8, 0)
    except (RuntimeError, AssertionError, ValueError):
        return False


def cpu_has_fast_bf16() -> bool:
    """True when oneDNN can run bf16 convolutions natively (x86 avx512_bf16 / AMX, or Arm bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        flags = ""
    if flags:
        return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16", "bf16"))
    return "AVX512" in torch.backends.cpu.get_cpu_capability()


@dataclass
class LivePortraitModels:
    """The seven networks on one device, and how to call them.

    ``run(name, ...)`` calls a network under its precision policy in inference mode and returns
    float32 outputs; the modules are also reachable as attributes (``models.networks.warping_module``).
    """

    modules: dict[str, nn.Module]
    device: torch.device
    dtype: torch.dtype  #: autocast dtype of the big networks (float32: no autocast)
    optimized: bool = False
    variant: str = "human"  #: which official weights (``model.variant``): human or animal
    _fp32_only: set[str] = field(default_factory=set)
    _calls: dict[str, int] = field(default_factory=dict)
    _pending: dict[str, "_FiniteCheck"] = field(default_factory=dict)  #: deferred checks in flight (CUDA)

    def __getattr__(self, name: str) -> nn.Module:
        modules = self.__dict__.get("modules", {})
        if name in modules:
            return modules[name]
        raise AttributeError(name)

    def __getitem__(self, name: str) -> nn.Module:
        return self.modules[name]

    @property
    def precision(self) -> str:
        return {v: k for k, v in _DTYPES.items()}[self.dtype]

    def network_dtype(self, name: str) -> torch.dtype:
        """The compute dtype a network runs in now (float32 for the MLPs and after a fallback)."""
        if name not in BASE_MODULES or name in self._fp32_only:
            return torch.float32
        if self.dtype == torch.bfloat16 and self.device.type in BF16_FORM_DEVICES and name not in BF16_NETWORKS:
            return torch.float32
        return self.dtype

    def autocast(self, name: str) -> contextlib.AbstractContextManager:
        """Autocast for a reduced-precision network, unless its module is a form that sets its own
        precision leaf by leaf (the CPU bf16 forms)."""
        dtype = self.network_dtype(name)
        if dtype == torch.float32 or sets_own_precision(self.modules[name]):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @property
    def defers_checks(self) -> bool:
        """On CUDA the non-finite check is read when its result has reached the host, at a later call (reading it
        at once would make the host wait for the GPU, every checked frame); elsewhere it is read at once."""
        return self.device.type == "cuda"

    def run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a network: inference mode, its autocast, outputs as float32, non-finite guard."""
        self._settle_check(name)
        module = self.modules[name]
        with torch.inference_mode():
            with self.autocast(name):
                out = module(*args, **kwargs)
            out = _to_float32(out)
            if self.network_dtype(name) != torch.float32 and self._should_check(name):
                if self.defers_checks:
                    if name not in self._pending:
                        self._pending[name] = _FiniteCheck.start(out, self.device)
                elif not _all_finite(out):
                    out = _to_float32(self._fall_back(name)(*args, **kwargs))
        return out

    def _fall_back(self, name: str) -> nn.Module:
        """Run ``name`` in float32 from now on (said once); returns its float32 module."""
        self._fp32_only.add(name)
        _log.warning("%s produced non-finite values in %s; running it in float32 from now on",
                     name, str(self.dtype).replace("torch.", ""))
        module = self.modules[name]
        if sets_own_precision(module):  # its bf16 leaves are built in: the plain network is float32
            module = self.modules[name] = plain_network(module)
        return module

    def _settle_check(self, name: str) -> None:
        """Read a deferred check whose result has landed; a non-finite output switches the network to float32
        before this call (the frames made meanwhile have gone out as they were)."""
        check = self._pending.get(name)
        if check is None or not check.ready():
            return
        del self._pending[name]
        if not check.finite() and name not in self._fp32_only:
            self._fall_back(name)

    def _should_check(self, name: str) -> bool:
        n = self._calls.get(name, 0)
        self._calls[name] = n + 1
        return n < _CHECK_FIRST or n % _CHECK_EVERY == 0

    def num_parameters(self) -> int:
        """Parameters of the official networks (a fast form's plain network holds them all)."""
        return sum(p.numel() for m in self.modules.values() for p in plain_network(m).parameters())


def _to_float32(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float()
    if isinstance(out, dict):
        return {k: _to_float32(v) for k, v in out.items()}
    return out


def _finite_flag(out: Any) -> torch.Tensor:
    """A 0-d bool tensor on the outputs' device: every output is finite."""
    tensors = [out] if isinstance(out, torch.Tensor) else [v for v in out.values() if isinstance(v, torch.Tensor)]
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all()


def _all_finite(out: Any) -> bool:
    return bool(_finite_flag(out))


@dataclass
class _FiniteCheck:
    """A non-finite check on its way to the host: the flag copied (non-blocking, into pinned memory on CUDA)
    behind the network's work, and an event that says when it has landed."""

    flag: torch.Tensor
    event: Any = None  #: ``torch.cuda.Event`` (None: the flag is on the host already)

    @classmethod
    def start(cls, out: Any, device: torch.device) -> "_FiniteCheck":
        cuda = device.type == "cuda"
        host = torch.empty((), dtype=torch.bool, pin_memory=cuda)
        host.copy_(_finite_flag(out), non_blocking=cuda)
        if not cuda:
            return cls(host)
        event = torch.cuda.Event()
        event.record()
        return cls(host, event)

    def ready(self) -> bool:
        return self.event is None or self.event.query()

    def finite(self) -> bool:
        """The flag (call once ``ready``: a host read then, no wait)."""
        return bool(self.flag.numpy())


def _nothing() -> None:
    return None


def load_state_dicts_into(state_dicts: dict[str, dict[str, torch.Tensor]], device: torch.device,
                          names: Iterable[str] = MODULE_NAMES,
                          between: Callable[[], None] = _nothing) -> dict[str, nn.Module]:
    """Build each named module on ``device`` and load its state_dict strictly, in eval mode
    (``between()`` is called before each one: see ``load_models``)."""
    modules: dict[str, nn.Module] = {}
    for name in names:
        between()
        if name not in state_dicts:
            raise ModelLoadError(f"no weights for the {name} network")
        module = build(name).to(device)
        result = _strict_load(name, module, state_dicts[name])
        if result:
            raise ModelLoadError(result)
        modules[name] = module.eval().requires_grad_(False)
    return modules


def _strict_load(name: str, module: nn.Module, sd: dict[str, torch.Tensor]) -> str | None:
    """Load strictly; on a mismatch say which keys are missing, unexpected or of another shape."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})"
              for k, v in own.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s), first: {missing[0]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s), first: {unexpected[0]}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), first: {shapes[0]}")
        return f"{name}: the weights do not fit the network: " + "; ".join(parts)
    module.load_state_dict(sd, strict=True)
    return None


def load_models(models_dir: str | os.PathLike[str], device: str | torch.device = "auto",
                precision: str = "auto", names: Iterable[str] = MODULE_NAMES, variant: str = "human",
                optimize: bool = True, channels_last: bool = True,
                between: Callable[[], None] = _nothing) -> LivePortraitModels:
    """Read the official files under ``models_dir`` and return the networks ready for inference.

    ``optimize`` applies the exact inference rewrites (``optimize.prepare_for_inference``); turn it
    off to run the plain modules exactly as loaded (tests compare the two). ``between()`` is called
    between the steps of the (seconds-long) load; it may raise to give the load up (a stopping engine
    does), so a stop waits for one step at most, not for the whole load.
    """
    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    dtype = pick_precision(precision, dev)
    names = tuple(names)
    state_dicts = weights.read_state_dicts(models_dir, variant=variant, names=names)
    modules = load_state_dicts_into(state_dicts, dev, names, between)
    del state_dicts
    models = LivePortraitModels(modules=modules, device=dev, dtype=dtype, variant=variant)
    if optimize:
        from liveportrait_core.models.fast.optimize import prepare_for_inference

        between()
        prepare_for_inference(models, channels_last=channels_last, between=between)
    _log.info("loaded %d LivePortrait networks (%s) from %s on %s, %s", len(modules), variant,
              Path(os.fspath(models_dir)), dev, models.precision)
    return models


def load_from_settings(settings, names: Iterable[str] = MODULE_NAMES, between: Callable[[], None] = _nothing,
                       activity: Callable[[str, float | None], None] | None = None) -> LivePortraitModels:
    """The networks as the ``model.*`` and ``performance.*`` settings say (``between``: see ``load_models``;
    ``activity``: a status line while a long step runs, see ``backend.load_with_backend``): ``model.backend``
    chooses what runs each big network (``models/onnx/backend.py``); ``run`` is the same."""
    from liveportrait_core.models.onnx.backend import load_with_backend, uses_onnxruntime

    m, p = settings.model, settings.performance
    if p.torch_threads:
        torch.set_num_threads(p.torch_threads)
    models = load_with_backend(m.models_dir, backend=m.backend, device=m.device, precision=m.precision,
                               providers=m.providers, variant=m.variant, threads=p.torch_threads,
                               channels_last=p.channels_last, names=names, between=between, activity=activity)
    if (p.compile or p.cuda_graphs) and not uses_onnxruntime(models):
        between()
        from liveportrait_core.models.fast.optimize import compile_models, warm_up

        compile_models(models, use_compile=p.compile, cuda_graphs=p.cuda_graphs)
        warm_up(models, max(1, p.warmup_frames))  # compiles now, not on the first live frame
    return models
