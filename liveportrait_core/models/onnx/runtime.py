"""Run the exported networks with ONNX Runtime, on the best execution provider the machine has.

A network becomes an ``OrtNetwork``: an ``nn.Module`` whose ``forward`` takes and returns what the
torch network does (tensors, and the same dict keys for M and W), so that it sits in
``LivePortraitModels.modules`` and every caller keeps using ``models.run(name, ...)`` unchanged.

Providers are tried in the order of ``model.providers`` (short names, see ``PROVIDERS``); those that
this onnxruntime build does not have are skipped. At load the log says which provider runs each
network and which nodes ONNX Runtime placed elsewhere (``Placement``): a node on the CPU inside a GPU
network (a GridSample, typically) costs two copies per frame, so a network that a provider does not
run whole is tried with the next one, and the first provider that runs it whole is kept
(``choose_providers``). TensorRT is used through ONNX Runtime's own provider (no plugin to build):
fp16, and its engine and timing caches in ``<models>/onnx/cache/tensorrt`` so only the first start
on a machine builds them (minutes; a message says so).

What is verified where is in docs/PERFORMANCE.md and docs/INSTALLATION.md: the CPU provider here;
the GPU providers' code paths are written against the documented ONNX Runtime API but untested.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from liveportrait_core.models.onnx.export import DICT_OUTPUTS, INPUT_NAMES, OUTPUT_NAMES, read_json, write_json

_log = logging.getLogger(__name__)

#: model.providers short name -> ONNX Runtime provider name, in the default order of preference.
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
SHORT = {v: k for k, v in PROVIDERS.items()}
#: providers that run on another device than the host (a node left on the CPU beside them costs copies)
DEVICE_PROVIDERS = frozenset({"tensorrt", "cuda", "directml", "coreml", "openvino"})
#: providers that run the fp16 variant of a network when the precision is reduced (fp16 kernels are
#: their fast ones); TensorRT takes the float32 file and builds fp16 engines itself (``trt_fp16_enable``)
FP16_FILE_PROVIDERS = frozenset({"cuda", "directml"})
#: node types that are ONNX Runtime's own copies between providers, not the network's
_COPY_OPS = frozenset({"MemcpyToHost", "MemcpyFromHost"})

Progress = Callable[[str], None]


class OrtUnavailable(RuntimeError):
    """onnxruntime is not installed (or has none of the requested providers); the message says what to do."""


#: What to do when ONNX Runtime is missing (the end of every ``OrtUnavailable`` message about it).
INSTALL_HINT = ("run install.py --backend onnx (the project's installer; it picks the build for this machine), "
                "or set model.backend to torch")


def ort():
    """The onnxruntime module, or ``OrtUnavailable`` with the install command."""
    try:
        import onnxruntime  # noqa: PLC0415 - optional extra
    except ImportError:
        raise OrtUnavailable(f"model.backend 'onnxruntime' needs ONNX Runtime: {INSTALL_HINT}") from None
    return onnxruntime


def ort_version() -> str:
    try:
        return str(ort().__version__)
    except OrtUnavailable:
        return ""


def available_providers() -> list[str]:
    """Short names of the providers this onnxruntime build has (``[]`` when it is not installed)."""
    try:
        names = ort().get_available_providers()
    except OrtUnavailable:
        return []
    return [SHORT[n] for n in names if n in SHORT]


def resolve_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """The requested providers this build has, in the requested order, the CPU last as the fallback.

    An unknown name raises ``ValueError`` naming the known ones; one that is merely not available
    here is skipped (it is a list of preferences, the same settings file serves several machines).
    """
    out: list[str] = []
    for name in requested:
        key = str(name).strip().lower()
        if key not in PROVIDERS:
            raise ValueError(f"unknown ONNX Runtime provider {name!r} in model.providers; known: "
                             f"{', '.join(PROVIDERS)}")
        if key in available and key not in out:
            out.append(key)
    if "cpu" in out:
        out.remove("cpu")
    out.append("cpu")
    return out


def cache_dir(models_dir: str | os.PathLike[str]) -> Path:
    """``<models>/onnx/cache``: TensorRT engines and timing caches, CoreML and OpenVINO caches, the CPU choice."""
    from liveportrait_core.models.checkpoint.weights import models_root  # noqa: PLC0415

    return models_root(models_dir) / "onnx" / "cache"


def provider_options(name: str, caches: Path, model_stem: str, fp16: bool, device_id: int = 0) -> dict[str, Any]:
    """ONNX Runtime options of one provider: TensorRT with fp16 and its caches on disk, CoreML and
    OpenVINO with their model caches; the others with their defaults."""
    if name == "tensorrt":
        trt = caches / "tensorrt"
        return {"device_id": device_id, "trt_fp16_enable": fp16,
                "trt_engine_cache_enable": True, "trt_engine_cache_path": str(trt),
                "trt_engine_cache_prefix": model_stem.replace(".", "_"),
                "trt_timing_cache_enable": True, "trt_timing_cache_path": str(trt),
                "trt_max_workspace_size": 4 << 30}
    if name == "cuda":
        return {"device_id": device_id}
    if name == "directml":
        return {"device_id": device_id}
    if name == "coreml":
        return {"ModelFormat": "MLProgram", "MLComputeUnits": "ALL", "ModelCacheDirectory": str(caches / "coreml")}
    if name == "openvino":
        return {"device_type": "AUTO:GPU,CPU", "cache_dir": str(caches / "openvino")}
    return {}


def tensorrt_engine_cached(caches: Path, model_stem: str) -> bool:
    """Whether a TensorRT engine for this export is already on disk (if not, the first load builds it)."""
    folder = caches / "tensorrt"
    prefix = model_stem.replace(".", "_")
    return folder.is_dir() and any(p.name.startswith(prefix) for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------
# where ONNX Runtime put the nodes


@dataclass(frozen=True)
class Placement:
    """Which provider runs how many of a network's nodes, and the nodes off its main provider."""

    network: str
    requested: tuple[str, ...]  #: provider short names the session was opened with, in order
    nodes: Mapping[str, int]  #: provider short name -> number of nodes (copies not counted)
    elsewhere: tuple[tuple[str, str], ...] = ()  #: (op type, provider) of nodes off the main provider
    copies: int = 0  #: host<->device copy nodes ONNX Runtime inserted

    @property
    def main(self) -> str:
        """The provider that runs the network: the first requested one that got nodes."""
        for p in self.requested:
            if self.nodes.get(p):
                return p
        return max(self.nodes, key=lambda p: self.nodes[p]) if self.nodes else "cpu"

    @property
    def whole(self) -> bool:
        """True when no node runs on the host CPU beside a device provider (no copies per frame)."""
        return self.main == "cpu" or not self.nodes.get("cpu")

    def summary(self) -> str:
        total = sum(self.nodes.values())
        text = f"{self.network}: {PROVIDERS[self.main]} ({self.nodes.get(self.main, 0)}/{total} nodes)"
        if self.elsewhere:
            ops: dict[str, int] = {}
            for op, prov in self.elsewhere:
                ops[f"{op} on {PROVIDERS.get(prov, prov)}"] = ops.get(f"{op} on {PROVIDERS.get(prov, prov)}", 0) + 1
            text += "; placed elsewhere: " + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items()))
            if not self.whole:
                text += " (each frame copies its data to the host and back)"
        return text


def placement_from_nodes(network: str, requested: Sequence[str], nodes: Iterable[tuple[str, str]]) -> Placement:
    """A ``Placement`` from (op type, provider name) pairs, as either ONNX Runtime API reports them."""
    counts: dict[str, int] = {}
    listed: list[tuple[str, str]] = []
    copies = 0
    for op, provider in nodes:
        short = SHORT.get(provider, provider)
        if op in _COPY_OPS:
            copies += 1
            continue
        counts[short] = counts.get(short, 0) + 1
        listed.append((op, short))
    p = Placement(network, tuple(requested), counts, copies=copies)
    main = p.main
    return Placement(network, tuple(requested), counts, tuple((op, s) for op, s in listed if s != main), copies)


def session_placement(network: str, session: Any, requested: Sequence[str],
                      feeds: Mapping[str, np.ndarray] | None = None) -> Placement:
    """Read the node assignment of an open session.

    ONNX Runtime 1.2x records it when the session was opened with
    ``session.record_ep_graph_assignment_info=1`` (``get_provider_graph_assignment_info``); older
    builds do not, and there the placement is read from one profiled run (``enable_profiling``: every
    node event names its provider), which needs ``feeds`` and a session opened with profiling on.
    """
    get = getattr(session, "get_provider_graph_assignment_info", None)
    if get is not None:
        try:
            pairs = [(n.op_type, sub.ep_name) for sub in get() for n in sub.get_nodes()]
        except Exception as e:  # noqa: BLE001 - not recorded: fall through to profiling
            _log.debug("no graph assignment info for %s: %s", network, e)
        else:
            if pairs:
                return placement_from_nodes(network, requested, pairs)
    if feeds is None:
        return Placement(network, tuple(requested), {})
    session.run(None, dict(feeds))
    profile = Path(session.end_profiling())
    try:
        events = json.loads(profile.read_text(encoding="utf-8"))
    finally:
        profile.unlink(missing_ok=True)
    return placement_from_nodes(network, requested, profiled_nodes(events))


def profiled_nodes(events: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(op type, provider) of each node in an ONNX Runtime profile (its ``Node`` events, once per node)."""
    seen: dict[str, tuple[str, str]] = {}
    for e in events:
        args = e.get("args") or {}
        if e.get("cat") == "Node" and "provider" in args and "op_name" in args:
            seen.setdefault(str(e.get("name", "")).removesuffix("_kernel_time"), (args["op_name"], args["provider"]))
    return list(seen.values())


# ------------------------------------------------------------------------------------------------
# sessions


def open_session(network: str, path: Path, providers: Sequence[str], caches: Path, *, fp16: bool = False,
                 threads: int = 0, device_id: int = 0, progress: Progress | None = None,
                 user_stream: int | None = None) -> tuple[Any, Placement]:
    """An ``InferenceSession`` of one exported network on ``providers`` (short names, in order), and
    where ONNX Runtime placed its nodes."""
    rt = ort()
    say = progress or _log.info
    so = rt.SessionOptions()
    so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = max(0, int(threads))
    so.log_severity_level = 3  # ONNX Runtime's own warnings go to stderr; the placement is reported here
    # torch runs the other networks between these calls: idle ONNX Runtime threads must not spin on its cores
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    recorded = hasattr(rt.InferenceSession, "get_provider_graph_assignment_info")
    if recorded:
        so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    else:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"liveportrait_ort_{network}")
    if "directml" in providers:  # DirectML's documented requirements
        so.enable_mem_pattern = False
        so.execution_mode = rt.ExecutionMode.ORT_SEQUENTIAL
    stem = path.name.removesuffix(".onnx")
    listed = []
    for p in providers:
        opts = provider_options(p, caches, stem, fp16, device_id)
        if user_stream is not None and p in ("cuda", "tensorrt"):
            opts = {**opts, "user_compute_stream": str(user_stream)}
            if p == "tensorrt":
                opts["has_user_compute_stream"] = True
        for folder in ("trt_engine_cache_path", "ModelCacheDirectory", "cache_dir"):
            if folder in opts:
                Path(opts[folder]).mkdir(parents=True, exist_ok=True)
        listed.append((PROVIDERS[p], opts))
    if "tensorrt" in providers and not tensorrt_engine_cached(caches, stem):
        say(f"{network}: building the TensorRT engine (first start with these weights on this GPU: this takes "
            f"minutes; it is kept in {caches / 'tensorrt'} for the next starts)")
    session = rt.InferenceSession(str(path), so, providers=listed)
    feeds = None if recorded else zero_feeds(session)
    return session, session_placement(network, session, providers, feeds)


def zero_feeds(session: Any) -> dict[str, np.ndarray]:
    """Zeros of each input's (static) shape: enough for a profiled run or a warm-up."""
    return {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
            for i in session.get_inputs()}


def choose_providers(network: str, providers: Sequence[str],
                     open_with: Callable[[Sequence[str]], tuple[Any, Placement]]) -> tuple[Any, Placement]:
    """Keep the network on the first provider that runs it whole.

    ``providers`` is the resolved, ordered list (CPU last). The session is opened with the whole
    list; if its main provider is a device provider and some nodes fell back to the host CPU, the
    list without that provider is tried, and so on; when no device provider runs it whole, the first
    session is kept (it is still the fastest the user listed) and the log says what runs on the CPU.
    """
    first = None
    rest = list(providers)
    while rest:
        try:
            session, placement = open_with(rest)
        except Exception as e:  # noqa: BLE001 - a provider that fails to start (libraries, options): the next one
            if rest[0] == "cpu":
                raise
            _log.warning("%s: %s could not open it (%s); trying %s", network, PROVIDERS[rest[0]], str(e)[:300],
                         PROVIDERS[rest[1]])
            rest = rest[1:]
            continue
        if placement.whole or not placement.nodes:
            if first is not None:
                _log.info("%s: %s does not run it whole (%s); using %s", network, PROVIDERS[first[1].main],
                          first[1].summary(), PROVIDERS[placement.main])
            return session, placement
        if first is None:
            first = (session, placement)
        rest = [p for p in rest if p != placement.main]
        if not any(p in DEVICE_PROVIDERS for p in rest):
            break
    assert first is not None
    _log.warning("%s: no listed GPU provider runs it whole; %s", network, first[1].summary())
    return first


#: Networks whose outputs every caller consumes before calling the network again (the animator feeds W's
#: ``out`` to G and G's image into the frame's crop within the frame), so their output buffers are bound once
#: and reused. F's and M's outputs are kept across calls (the character's f_s and keypoints, the neutral
#: reference): they get new buffers (torch's caching allocator, no device allocation) each call.
REUSED_OUTPUTS = frozenset({"warping_module", "spade_generator"})
#: Run option: ONNX Runtime does not wait for the device at the end of a run (documented key of
#: ``onnxruntime_run_options_config_keys.h``); safe only when the session computes on torch's own stream.
NO_SYNC_KEY = "disable_synchronize_execution_providers"


class IoBound:
    """One I/O binding of a session for one set of input shapes, made once and reused every call.

    Inputs are bound by pointer to the caller's tensors and rebound only when the tensor changes (another
    tensor object or another address: f_s and x_s stay bound while x_d is rebound per frame); outputs are
    torch tensors on the device that ONNX Runtime writes in place (no copy). With ``reuse_outputs`` the
    same output tensors are returned every call, valid until the next one; otherwise new ones are bound
    each call. Not thread-safe on its own: ``OrtNetwork`` holds a lock around ``run``.
    """

    def __init__(self, session: Any, device: torch.device, input_names: Sequence[str],
                 output_names: Sequence[str], output_shapes: Mapping[str, tuple[int, ...]],
                 reuse_outputs: bool, run_options: Any = None) -> None:
        self.session = session
        self.binding = session.io_binding()
        self.device = device
        self._kind, self._index = device.type, device.index or 0
        self.input_names, self.output_names = tuple(input_names), tuple(output_names)
        self.output_shapes = output_shapes
        self.reuse_outputs = reuse_outputs
        self.run_options = run_options
        self._bound: dict[str, tuple[Any, int]] = {}  #: input -> (weakref to the bound tensor, its address)
        self._outputs: list[torch.Tensor] | None = None
        self.binds = 0  #: bind_input/bind_output calls so far (tests read it: only what changes is bound)

    def _bind_input(self, name: str, t: torch.Tensor) -> None:
        held = self._bound.get(name)
        if held is not None and held[0]() is t and held[1] == t.data_ptr():
            return
        self.binding.bind_input(name, self._kind, self._index, np.float32, tuple(t.shape), t.data_ptr())
        self._bound[name] = (weakref.ref(t), t.data_ptr())
        self.binds += 1

    def _bind_outputs(self) -> list[torch.Tensor]:
        if self.reuse_outputs and self._outputs is not None:
            return self._outputs
        outs = [torch.empty(self.output_shapes[n], dtype=torch.float32, device=self.device) for n in self.output_names]
        for name, t in zip(self.output_names, outs):
            self.binding.bind_output(name, self._kind, self._index, np.float32, tuple(t.shape), t.data_ptr())
            self.binds += 1
        self._outputs = outs if self.reuse_outputs else None
        return outs

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        for name, t in zip(self.input_names, inputs):
            self._bind_input(name, t)
        outs = self._bind_outputs()
        self.session.run_with_iobinding(self.binding, self.run_options)
        return outs


class OrtNetwork(nn.Module):
    """One exported network behind the torch network's call signature (see the module docstring).

    Tensors are bound in place (I/O binding, ``IoBound``: one binding per input shapes, kept): CPU tensors
    when the session runs on the CPU provider, CUDA tensors when it runs on CUDA or TensorRT, so a frame
    never visits the host. On CUDA the session computes on torch's stream (``user_stream``, given at load)
    and, while that is still the current stream, a run is not waited for (``NO_SYNC_KEY``): the outputs are
    ordered after it on the stream like any torch op. Other providers (DirectML, CoreML, OpenVINO) and
    device tensors on a host session go through ``session.run`` with numpy arrays. Outputs are float32
    tensors on the inputs' device. The weights' hash is kept as a buffer so that fingerprints of
    ``state_dict()`` (the character cache's) still tell weights apart.
    """

    def __init__(self, network: str, session: Any, placement: Placement, weights_sha256: str = "", *,
                 reuse_outputs: bool = False, user_stream: int | None = None):
        super().__init__()
        self.network = network
        self.session = session
        self.placement = placement
        self.input_names = INPUT_NAMES[network]
        self.output_names = OUTPUT_NAMES[network]
        self.output_shapes = {o.name: tuple(o.shape) for o in session.get_outputs()}
        #: every output's shape is fixed, so its buffer can be made before the run (the CPU binding needs it)
        self._static_outputs = all(isinstance(d, int) for shape in self.output_shapes.values() for d in shape)
        self.reuse_outputs = reuse_outputs
        self.user_stream = user_stream
        self._bindings: dict[tuple, IoBound] = {}
        self._lock = threading.Lock()
        self._no_sync: Any = None  #: the RunOptions with ``NO_SYNC_KEY`` (made at the first CUDA call)
        digest = bytes.fromhex(weights_sha256) if weights_sha256 else b""
        self.register_buffer("weights_sha256", torch.tensor(list(digest), dtype=torch.uint8))

    @property
    def provider(self) -> str:
        return self.placement.main

    def extra_repr(self) -> str:
        return f"{self.network} on {PROVIDERS[self.provider]}"

    def _inputs(self, args: tuple, kwargs: Mapping[str, Any]) -> list[torch.Tensor]:
        if len(args) > len(self.input_names):
            raise TypeError(f"{self.network} takes {len(self.input_names)} inputs, got {len(args)}")
        values = dict(zip(self.input_names, args))
        values.update(kwargs)
        missing = [n for n in self.input_names if n not in values]
        if missing or len(values) != len(self.input_names):
            raise TypeError(f"{self.network} takes {', '.join(self.input_names)}; got {', '.join(values)}")
        return [values[n].float().contiguous() for n in self.input_names]

    def binds_in_place(self, device: torch.device) -> bool:
        """Whether tensors on ``device`` are bound in place (else they go through numpy and ``session.run``)."""
        if device.type == "cuda":
            return self.provider in ("cuda", "tensorrt")
        return device.type == "cpu" and self.provider == "cpu" and self._static_outputs

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        inputs = self._inputs(args, kwargs)
        device = inputs[0].device
        if self.binds_in_place(device):
            with self._lock:
                outs = self.binding(inputs, device).run(inputs)
        else:
            feeds = {n: t.detach().cpu().numpy() for n, t in zip(self.input_names, inputs)}
            outs = [torch.from_numpy(o).to(device) for o in self.session.run(list(self.output_names), feeds)]
        if self.network in DICT_OUTPUTS:
            return dict(zip(self.output_names, outs))
        return outs[0]

    def binding(self, inputs: Sequence[torch.Tensor], device: torch.device) -> IoBound:
        """The binding for these inputs' shapes on ``device`` (made at the first call with them)."""
        key = (device.type, device.index, *(tuple(t.shape) for t in inputs))
        bound = self._bindings.get(key)
        if bound is None:
            bound = self._bindings[key] = IoBound(self.session, device, self.input_names, self.output_names,
                                                  self.output_shapes, self.reuse_outputs)
        bound.run_options = self._run_options(device)
        return bound

    def _run_options(self, device: torch.device) -> Any:
        """No wait at the end of a run when the session computes on the current torch stream (else the
        default: ONNX Runtime waits for its own stream, so the outputs are ready when torch reads them)."""
        if device.type != "cuda" or self.user_stream is None:
            return None
        if torch.cuda.current_stream(device).cuda_stream != self.user_stream:
            return None
        if self._no_sync is None:
            self._no_sync = ort().RunOptions()
            self._no_sync.add_run_config_entry(NO_SYNC_KEY, "1")
        return self._no_sync


@dataclass
class OrtLoad:
    """How to open the exported networks (from the settings; see ``load_ort_networks``)."""

    models_dir: str | os.PathLike[str]
    variant: str
    providers: Sequence[str]  #: short names in order of preference (``model.providers``)
    precision: str  #: auto/fp16: fp16 on the GPU providers; fp32 (and bf16): float32 everywhere
    threads: int = 0  #: intra-op threads of the CPU provider (0: ONNX Runtime's choice, the physical cores)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  #: where the tensors live


def load_ort_networks(load: OrtLoad, names: Iterable[str], progress: Progress | None = None,
                      between: Callable[[], None] = lambda: None) -> dict[str, OrtNetwork]:
    """Export what is missing or stale, then open each named network on its provider; logs the report."""
    from liveportrait_core.models.onnx import export  # noqa: PLC0415

    say = progress or _log.info
    providers = resolve_providers(load.providers, available_providers())
    paths = export.ensure_exported(load.models_dir, load.variant, names, progress=say)
    caches = cache_dir(load.models_dir)
    reduced = (load.precision or "auto").lower() in ("auto", "fp16")
    device_id = load.device.index or 0 if load.device.type == "cuda" else 0
    stream = torch.cuda.current_stream(load.device).cuda_stream if load.device.type == "cuda" else None
    out: dict[str, OrtNetwork] = {}
    for name, path in paths.items():
        between()

        def open_with(provs: Sequence[str], name: str = name, path: Path = path) -> tuple[Any, Placement]:
            fp16_file = reduced and provs[0] in FP16_FILE_PROVIDERS
            file = export.ensure_fp16(path, say) if fp16_file else path
            return open_session(name, file, provs, caches, fp16=reduced, threads=load.threads,
                                device_id=device_id, progress=say, user_stream=stream)

        session, placement = choose_providers(name, providers, open_with)
        sha = export.weights_sha256(load.models_dir, load.variant, name)
        out[name] = OrtNetwork(name, session, placement, sha, reuse_outputs=name in REUSED_OUTPUTS,
                               user_stream=stream if placement.main in ("cuda", "tensorrt") else None)
        (_log.info if placement.whole else _log.warning)("ONNX Runtime: %s", placement.summary())
    write_report(caches, load.variant, [n.placement for n in out.values()])
    return out


REPORT_FILE = "placement.json"


def write_report(caches: Path, variant: str, placements: Iterable[Placement]) -> None:
    """Remember where the last load placed each network, for ``doctor`` (which opens no session itself:
    a TensorRT build takes minutes). Best effort: a read-only models folder only loses the report."""
    path = caches / REPORT_FILE
    data = read_json(path)
    for p in placements:
        data[f"{variant}/{p.network}"] = {"summary": p.summary(), "provider": PROVIDERS[p.main], "whole": p.whole,
                                          "onnxruntime": ort_version(), "time": time.strftime("%Y-%m-%d %H:%M")}
    try:
        write_json(path, data)
    except OSError as e:
        _log.debug("cannot write %s: %s", path, e)


def read_report(caches: Path, variant: str) -> dict[str, dict[str, Any]]:
    """Network -> what ``write_report`` recorded at the last load of ``variant`` ({} when none)."""
    prefix = f"{variant}/"
    return {k[len(prefix):]: v for k, v in read_json(caches / REPORT_FILE).items()
            if k.startswith(prefix) and isinstance(v, dict)}
