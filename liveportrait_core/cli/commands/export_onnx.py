"""``export-onnx``: write the ONNX files of the four big networks beside the weights (the onnxruntime
backend does it by itself on first use; ``model.backend: auto`` weighs ONNX Runtime only once they exist),
then open each on the machine's providers and say which provider runs it and what ran elsewhere."""
from __future__ import annotations

import argparse
import sys

NAME = "export-onnx"
HELP = "export the networks to ONNX for the onnxruntime backend (TensorRT, CUDA, DirectML, CoreML, OpenVINO, CPU)"
DESCRIPTION = (HELP + ". Files go to <models>/onnx/<variant>/, named after the weights' SHA-256 and tagged with the "
               "torch, onnx and opset versions; current ones are kept, stale ones exported again. The weight files "
               "are only read. Afterwards each network is opened with model.providers and the provider that runs "
               "it is printed (--no-check skips that; a TensorRT engine build then happens at the first run).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", help="folder holding liveportrait/ (default: settings model.models_dir)")
    p.add_argument("--variant", choices=("human", "animal"), help="which weights (default: settings model.variant)")
    p.add_argument("--force", action="store_true", help="export again even when the files are current")
    p.add_argument("--no-check", action="store_true", help="do not open the exports with ONNX Runtime afterwards")
    p.set_defaults(_settings_shortcuts={"models_dir": "model.models_dir", "variant": "model.variant"})


def run(args: argparse.Namespace, settings) -> int:
    from liveportrait_core import paths
    from liveportrait_core.cli import exits
    from liveportrait_core.models.checkpoint.weights import WeightsError
    from liveportrait_core.models.loader import ModelLoadError, pick_device
    from liveportrait_core.models.onnx import export, runtime

    m = settings.model
    folder = export.onnx_dir(m.models_dir, m.variant)
    print(f"ONNX export ({m.variant}, opset {export.OPSET}, torch {export.torch.__version__}, "
          f"onnx {export.onnx_version() or 'not installed'}) -> {folder}")
    if not export.onnx_version():
        print(f"error: exporting needs the onnx package: run {paths.PROJECT_ROOT / 'install.py'} --backend onnx "
              "with the Python you installed with (or pip install -e .[onnx] in .venv)", file=sys.stderr)
        return exits.ERROR
    try:
        files = export.ensure_exported(m.models_dir, m.variant, progress=lambda s: print(f"  {s}", flush=True),
                                       force=args.force)
    except (export.ExportError, WeightsError, ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return exits.ERROR
    for name, path in files.items():
        print(f"  current: {name}: {path.name}")
    if args.no_check:
        return exits.OK
    available = runtime.available_providers()
    if not available:
        print(f"ONNX Runtime is not installed: the files are ready for when it is ({paths.PROJECT_ROOT / 'install.py'} "
              "--backend onnx)")
        return exits.OK
    try:
        providers = runtime.resolve_providers(m.providers, available)
        load = runtime.OrtLoad(m.models_dir, m.variant, providers, m.precision, settings.performance.torch_threads,
                               pick_device(m.device))
        nets = runtime.load_ort_networks(load, files, progress=lambda s: print(f"  {s}", flush=True))
    except Exception as e:  # noqa: BLE001 - a provider failing to open a file is reported, not a traceback
        print(f"error: ONNX Runtime could not open the exports: {e}", file=sys.stderr)
        return exits.ERROR
    print(f"ONNX Runtime {runtime.ort_version()}, providers here: {', '.join(available)}")
    for net in nets.values():
        print(f"  {net.placement.summary()}")
    return exits.OK
