"""``model.backend``: which engine runs each of the four big networks, behind one ``run`` interface.

* ``torch``: torch only. On the CPU in float32, the plain or the exact fast form (``models/fast``) of each
  network, whichever measures faster on this machine (``choice.py``: the fast forms are not faster on every
  CPU); elsewhere ``loader.load_models`` as it is (CUDA, MPS, bf16).
* ``onnxruntime``: the ONNX exports on ONNX Runtime, providers in ``model.providers`` order (an
  explicit choice: when onnxruntime is missing the load fails with the install command, it never
  silently runs something else).
* ``auto``: on CUDA and Apple MPS, torch (the official fp16 path on CUDA; ORT there is an opt-in,
  untested on a GPU by this project so far, and TensorRT's first engine build takes minutes). On a
  CPU-only torch: if onnxruntime has a GPU provider that ``model.providers`` lists (DirectML on an
  AMD/Intel Windows PC, CUDA/TensorRT, CoreML, OpenVINO), that one; otherwise, in float32, the
  fastest CPU form of each network by measurement (``choice.py``), and in bf16 torch (ORT's CPU
  provider has no bf16 path).

Whatever the backend, the result is a ``LivePortraitModels`` whose ``run(name, ...)`` returns float32
tensors (and the same dict keys for M and W); the three retargeting MLPs always stay in torch.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from liveportrait_core import machine
from liveportrait_core.models.checkpoint.layout import MODULE_NAMES
from liveportrait_core.models.onnx import choice as cpu_choice
from liveportrait_core.models.onnx import runtime
from liveportrait_core.models.onnx.export import EXPORTED

_log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")


@dataclass(frozen=True)
class BackendPlan:
    """What ``resolve_backend`` decided: ``torch``, ``onnxruntime`` (with providers) or ``cpu-choice``."""

    kind: str
    providers: tuple[str, ...] = ()
    reason: str = ""


def resolve_backend(backend: str, device: torch.device, precision: str, requested: Sequence[str],
                    available: Sequence[str]) -> BackendPlan:
    """Pure decision from the settings and what the machine has (see the module docstring)."""
    backend = (backend or "auto").lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown model.backend {backend!r}; use {', '.join(BACKENDS)}")
    cpu_fp32 = device.type == "cpu" and (precision or "auto").lower() in ("auto", "fp32", "fp16")
    if backend == "torch":
        if cpu_fp32:  # no setting may leave a network slower than its plain form: measured, per network
            return BackendPlan("cpu-choice", (), "model.backend torch on the CPU: the plain or the exact fast "
                                                 "form of each network, whichever measures faster")
        return BackendPlan("torch", reason="model.backend is torch")
    if backend == "onnxruntime":
        if not available:
            raise runtime.OrtUnavailable(f"model.backend is 'onnxruntime' but ONNX Runtime is not installed: "
                                         f"{runtime.INSTALL_HINT} or auto")
        return BackendPlan("onnxruntime", tuple(runtime.resolve_providers(requested, available)),
                           "model.backend is onnxruntime")
    if device.type != "cpu":
        return BackendPlan("torch", reason=f"auto on {device.type}: torch (ONNX Runtime there is opt-in: "
                                           f"model.backend=onnxruntime)")
    providers = runtime.resolve_providers(requested, available) if available else ["cpu"]
    gpu = [p for p in providers if p in runtime.DEVICE_PROVIDERS]
    if gpu:
        return BackendPlan("onnxruntime", tuple(providers),
                           f"auto: torch has no GPU here, ONNX Runtime has {runtime.PROVIDERS[gpu[0]]}")
    if not cpu_fp32:
        return BackendPlan("torch", reason="auto in bf16: torch (ONNX Runtime's CPU provider runs float32)")
    return BackendPlan("cpu-choice", ("cpu",), "auto on the CPU: the fastest measured form of each network")


def load_with_backend(models_dir: str | os.PathLike[str], *, backend: str, device: str, precision: str,
                      providers: Sequence[str], variant: str = "human", threads: int = 0, channels_last: bool = True,
                      names: Iterable[str] = MODULE_NAMES, between: Callable[[], None] = lambda: None,
                      progress: Callable[[str], None] | None = None, activity: cpu_choice.Activity | None = None):
    """The networks for ``names`` as a ``LivePortraitModels``, each run by the backend the settings
    and the machine call for; logs which backend and provider runs each one. ``activity`` gets a line for a
    status display while a long step runs (the first start's CPU measurement) with the seconds left when known
    (``choice.Activity``), and ("", None) when it is over."""
    from liveportrait_core.models.loader import (LivePortraitModels, load_models, pick_device,  # noqa: PLC0415
                                                 pick_precision)

    say = progress or _log.info
    names = tuple(names)
    dev = pick_device(device)
    if pick_precision(precision, dev) == torch.float32:  # e.g. bf16 on a CPU without it: float32, said once there
        precision = "fp32"  # and then decided (the forms measured) as the float32 it runs in
    plan = resolve_backend(backend, dev, precision, providers, runtime.available_providers())
    big = [n for n in names if n in EXPORTED]
    if plan.kind == "torch" or not big:
        return load_models(models_dir, device=dev, precision=precision, names=names, variant=variant,
                           channels_last=channels_last, between=between)
    _log.info("model backend: %s", plan.reason)
    if plan.kind == "onnxruntime":
        if (precision or "auto").lower() == "bf16":
            _log.warning("ONNX Runtime has no bf16 mode; running float32 (fp16 on the GPU providers with "
                         "model.precision auto or fp16)")
        rest = [n for n in names if n not in EXPORTED]
        modules: dict[str, nn.Module] = {}
        if rest:
            modules.update(load_models(models_dir, device=dev, precision="fp32", names=rest, variant=variant,
                                       optimize=False, between=between).modules)
        load = runtime.OrtLoad(models_dir, variant, plan.providers, precision, threads, dev)
        nets = runtime.load_ort_networks(load, big, progress=say, between=between)
        modules.update(nets)
        dtype = torch.float32
        split = [n for n, net in nets.items() if not net.placement.whole]
        if split and dev.type != "cpu":
            # a node on the host inside a GPU network costs two copies per frame: torch on the GPU runs it whole
            # (typically W, whose 5-D GridSample not every GPU provider has). Untested on a GPU so far.
            _log.warning("no ONNX Runtime GPU provider runs %s whole; running %s in torch on %s",
                         ", ".join(split), "it" if len(split) == 1 else "them", dev)
            on_torch = load_models(models_dir, device=dev, precision=precision, names=split, variant=variant,
                                   channels_last=channels_last, between=between)
            modules.update(on_torch.modules)
            dtype = on_torch.dtype  # its autocast; the ONNX Runtime networks ignore it (float32 in and out)
        return LivePortraitModels(modules={n: modules[n] for n in names}, device=dev, dtype=dtype, optimized=True,
                                  variant=variant)
    return _load_cpu_choice(models_dir, variant, names, threads, between, say, allow_ort=bool(plan.providers),
                            activity=activity)


#: The networks that have an exact fast form in ``models/fast`` (on the CPU in float32).
FAST_FORMS = ("warping_module", "spade_generator")


def _fast_forms(plain: dict[str, nn.Module], names: Iterable[str],
                between: Callable[[], None] = lambda: None) -> dict[str, nn.Module]:
    """The exact fast forms (``models/fast``) of the networks that have one (W and G), on the CPU."""
    from liveportrait_core.models.fast.optimize import prepare_for_inference  # noqa: PLC0415
    from liveportrait_core.models.loader import LivePortraitModels  # noqa: PLC0415

    subset = {n: plain[n] for n in names if n in FAST_FORMS}
    if not subset:
        return {}
    models = LivePortraitModels(modules=dict(subset), device=torch.device("cpu"), dtype=torch.float32)
    prepare_for_inference(models, channels_last=False, between=between)
    return {n: m for n, m in models.modules.items() if m is not subset[n]}


def _load_cpu_choice(models_dir, variant: str, names: tuple[str, ...], threads: int,
                     between: Callable[[], None], say: Callable[[str], None], allow_ort: bool = True,
                     activity: cpu_choice.Activity | None = None):
    """Plain torch, the exact fast forms and (``allow_ort``, when exported) ONNX Runtime's CPU provider, per
    network: the cached decision for this machine, or a measurement made now and cached (said as it goes:
    ``activity``, see ``load_with_backend``; a stop interrupts it within one layer)."""
    from liveportrait_core.models.loader import LivePortraitModels, load_models  # noqa: PLC0415
    from liveportrait_core.models.onnx import export  # noqa: PLC0415

    models = load_models(models_dir, device="cpu", precision="fp32", names=names, variant=variant,
                         optimize=False, between=between)
    plain = dict(models.modules)
    big = [n for n in names if n in EXPORTED]
    has_fast = any(n in FAST_FORMS for n in big)
    ort_ready = allow_ort and _ort_exports_ready(models_dir, variant, big)

    def choice_key(ort: bool) -> dict:
        forms = ["torch"] + (["torch-fast"] if has_fast else []) + (["onnxruntime"] if ort else [])
        return {**cpu_choice.machine_key(runtime.ort_version(), threads), "candidates": forms}

    key = choice_key(ort_ready)
    cache = runtime.cache_dir(models_dir) / cpu_choice.CACHE_FILE
    load_now = machine.load_per_cpu()

    def cached(key_: dict):
        found = cpu_choice.read_cached(cache, key_, set(big))
        if found is not None and cpu_choice.measured_busy(found, load_now):
            say(f"the cached CPU choice was measured while the CPU was busy (load {found.load_per_cpu:.1f} per core; "
                f"now {load_now:.1f}): it is measured again")
            return None
        return found

    decision = cached(key)
    ort_nets: dict[str, nn.Module] = {}
    if ort_ready and (decision is None or "onnxruntime" in decision.forms.values()):
        targets = big if decision is None else [n for n in big if decision.forms[n] == "onnxruntime"]
        try:
            load = runtime.OrtLoad(models_dir, variant, ("cpu",), "fp32", threads, torch.device("cpu"))
            ort_nets = dict(runtime.load_ort_networks(load, targets, progress=say, between=between))
        except Exception as e:  # noqa: BLE001 - auto is not an explicit choice: the torch forms still run
            _log.warning("ONNX Runtime is left out of the CPU choice: %s", e)
            ort_ready, key = False, choice_key(False)
            decision = cached(key)
    measuring = decision is None and set(EXPORTED) <= set(plain)  # a partial load (tools, tests): no chain to feed
    tell = activity or (lambda _text, _left: None)
    if measuring:
        tell(f"{cpu_choice.ACTIVITY} (a minute or more): preparing the forms", None)
        say(f"first start with these settings on this CPU: {cpu_choice.ACTIVITY} (about a minute on 2 quiet cores, "
            f"longer under load; kept in {cache} for the next starts)")
    # the fast forms cost memory (Winograd filters, FFT spectra): built only to be measured or when chosen
    wants_fast = decision is None or "torch-fast" in decision.forms.values()
    fast = _fast_forms(plain, big, between) if wants_fast else {}  # ``between`` per decoder block
    if decision is None:
        if not measuring:  # a partial load: no chain to feed, the fast forms unmeasured
            return LivePortraitModels(modules={**plain, **fast}, device=torch.device("cpu"), dtype=torch.float32,
                                      optimized=True, variant=variant)
        seconds: dict[str, float] = {}
        with cpu_choice.interruptible(between):
            inputs = export.example_inputs(plain, seconds)
        calls = {}
        for n in big:
            calls[n] = {"torch": (lambda m=plain[n], x=inputs[n]: m(*x))}
            if n in fast:
                calls[n]["torch-fast"] = lambda m=fast[n], x=inputs[n]: m(*x)
            if n in ort_nets:
                calls[n]["onnxruntime"] = lambda m=ort_nets[n], x=inputs[n]: m(*x)
        estimate = cpu_choice.first_round_estimate(seconds, {n: len(c) for n, c in calls.items()})
        with cpu_choice.interruptible(between):
            timings = cpu_choice.measure(calls, progress=say, between=between, activity=activity, estimate=estimate)
        tell("", None)
        decision = cpu_choice.CpuChoice(cpu_choice.pick_fastest(timings), timings, key, load_per_cpu=load_now)
        try:
            cpu_choice.write_cached(cache, decision)
        except OSError as e:
            _log.warning("cannot cache the CPU choice in %s: %s (it is measured again next start)", cache, e)
    chosen = dict(plain)
    for n in big:
        chosen[n] = {"torch": plain[n], "torch-fast": fast.get(n, plain[n]), "onnxruntime": ort_nets.get(n)}[
            decision.forms[n]]
    say(f"CPU choice{' (cached)' if decision.cached else ''} on {key['cpu']}: {decision.summary()}"
        + ("" if ort_ready or not allow_ort or not runtime.available_providers() else
           "; ONNX Runtime is installed but the networks are not exported: run export-onnx to let auto weigh it"))
    return LivePortraitModels(modules=chosen, device=torch.device("cpu"), dtype=torch.float32, optimized=True,
                              variant=variant)


def _ort_exports_ready(models_dir, variant: str, names: Iterable[str]) -> bool:
    """ONNX Runtime is a CPU candidate when it is installed and every export is current (auto never
    starts a minutes-long export on its own: ``export-onnx`` or the onnxruntime backend makes them)."""
    from liveportrait_core.models.onnx import export  # noqa: PLC0415

    if not runtime.available_providers():
        return False
    try:
        return all(export.export_state(models_dir, variant, n).state == "current" for n in names)
    except (export.ExportError, OSError):
        return False


def describe(models) -> dict[str, str]:
    """Network -> what runs it ('torch', 'torch-fast', 'torch-bf16', 'onnxruntime CPUExecutionProvider', ...)."""
    from liveportrait_core.models.fast.bf16 import sets_own_precision  # noqa: PLC0415
    from liveportrait_core.models.fast.seam import plain_network  # noqa: PLC0415

    out = {}
    for name, module in models.modules.items():
        inner = getattr(module, "_orig_mod", module)  # torch.compile's wrapper
        if isinstance(inner, runtime.OrtNetwork):
            out[name] = f"onnxruntime {runtime.PROVIDERS[inner.provider]}"
        elif plain_network(inner) is not inner:  # a form made through the seam (models/fast)
            out[name] = "torch-bf16" if sets_own_precision(inner) else "torch-fast"
        else:
            out[name] = "torch"
    return out


def uses_onnxruntime(models) -> bool:
    """Whether any network runs on ONNX Runtime (``torch.compile`` and CUDA graphs then do not apply)."""
    return any(isinstance(m, runtime.OrtNetwork) for m in models.modules.values())
