#!/usr/bin/env python3
"""Set up LivePortrait for OBS on this machine, then start the demo.

Run it with the Python that OBS uses (Windows/macOS: the one set in OBS > Tools > Scripts >
Python Settings, 64-bit 3.10-3.12; Linux: the system Python 3), so that OBS can load the packages:

    python3 install.py            # .venv, dependencies, official weights, checks, then the demo

Steps: create ``.venv`` beside this file; install torch first (the CUDA build when an NVIDIA driver
is present, otherwise the default build), then this project, editable, with the dependencies that
``pyproject.toml`` declares (``pip install -e .``), which also makes the ``liveportrait`` command; download
and verify the official weights into ``models/``; run ``doctor``; start ``demo``. Every step can be skipped, and a
step that cannot work here (no network for the weights, no GPU) says why and what to do, without
undoing the others. Only the standard library is used, because nothing else is installed yet.
"""
from __future__ import annotations

import argparse
import os
import platform
import struct
import subprocess
import sys
from pathlib import Path

from liveportrait_core import machine
from liveportrait_core import paths

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
#: The torch release the project is tested with; a CUDA machine gets the same release built for CUDA.
TORCH_VERSION = "2.13.0"
#: PyTorch's own index for the CUDA build on Windows (PyPI's Windows wheels are CPU-only; PyPI's Linux
#: wheels are already CUDA builds). Override with --torch-index when your driver needs another CUDA variant.
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
SUPPORTED = ((3, 10), (3, 12))
#: ``--backend onnx``: the exporter and ONNX Runtime, with the bounds of pyproject.toml's ``onnx`` extra
#: (tests/test_install.py keeps them equal). The ONNX Runtime wheels all ship the same ``onnxruntime``
#: module, so exactly one of them may be installed.
ONNX_SPEC = "onnx>=1.16"
ORT_SPEC = ">=1.20"
ORT_WHEELS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")
#: ``--tensorrt``: the TensorRT libraries ONNX Runtime's TensorRT provider loads (no plugin to build).
TENSORRT_SPEC = "tensorrt-cu12-libs>=10,<11"


def say(msg: str) -> None:
    print(f"[install] {msg}", flush=True)


def venv_python() -> Path:
    return paths.venv_python(VENV)


def venv_cli() -> Path:
    """The ``liveportrait`` command that ``pip install -e .`` puts into the venv."""
    return paths.venv_script(VENV)


def cli_command(*args: str) -> str:
    """A command for the user to copy: the venv's ``liveportrait`` by its full path (quoted when the path
    has spaces), so that it works from any folder without activating anything."""
    return paths.python_command(venv_cli(), *args)


def run(cmd: list[str], check: bool = True) -> int:
    say("$ " + " ".join(str(c) for c in cmd))
    rc = subprocess.call([str(c) for c in cmd], cwd=ROOT)
    if check and rc != 0:
        say(f"step failed (exit {rc}); fix the message above and run install.py again (finished steps are kept)")
        sys.exit(rc)
    return rc


def check_python() -> None:
    v = sys.version_info[:2]
    bits = struct.calcsize("P") * 8
    if bits != 64:
        sys.exit(f"[install] this Python is {bits}-bit; OBS needs a 64-bit Python 3.10-3.12. "
                 "Install 64-bit Python 3.12 from python.org and run install.py with it.")
    if not (SUPPORTED[0] <= v <= SUPPORTED[1]):
        sys.exit(f"[install] Python {v[0]}.{v[1]} is not supported: mediapipe 0.10.21 and OBS need 3.10-3.12. "
                 "Run install.py with Python 3.12 (Windows: the same Python you select in OBS > Tools > Scripts > "
                 "Python Settings).")


def has_nvidia_gpu() -> bool:
    return machine.nvidia_smi_lists_a_gpu()


def onnxruntime_wheel(system: str, nvidia: bool) -> str:
    """The ONNX Runtime wheel for this machine: the CUDA/TensorRT build with an NVIDIA GPU (Linux, Windows),
    DirectML on other Windows PCs (AMD, Intel: any DirectX 12 GPU), the default wheel elsewhere (its macOS
    build has CoreML, every build has the CPU provider)."""
    if nvidia and system in ("Linux", "Windows"):
        return "onnxruntime-gpu"
    if system == "Windows":
        return "onnxruntime-directml"
    return "onnxruntime"


def project_requirements(root: Path, dev: bool, backend: str, wheel: str) -> list[str]:
    """What one ``pip install`` gets for the project: itself (editable, extras) and, for ``--backend onnx``,
    the exporter and the ONNX Runtime wheel in the same resolve (so that they honour the project's pins)."""
    extras = (["dev"] if dev else []) + (["onnx"] if backend == "onnx" and wheel == "onnxruntime" else [])
    reqs = [f"{root}[{','.join(extras)}]" if extras else str(root)]
    if backend == "onnx" and wheel != "onnxruntime":
        reqs += [ONNX_SPEC, wheel + ORT_SPEC]
    return reqs


def installed_wheels(py: Path) -> list[str]:
    """The ONNX Runtime wheels installed in the venv (``pip show`` names those it finds)."""
    out = subprocess.run([str(py), "-m", "pip", "show", *ORT_WHEELS], capture_output=True, text=True).stdout
    return [line.split(":", 1)[1].strip().lower() for line in out.splitlines() if line.startswith("Name:")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", action="store_true",
                    help="also install the test tools (the [dev] extra of pyproject.toml)")
    ap.add_argument("--torch", choices=("auto", "cuda", "default"), default="auto",
                    help="torch build: auto = CUDA when an NVIDIA driver is found; default = pip's default build")
    ap.add_argument("--torch-index", default=TORCH_CUDA_INDEX,
                    help="package index for the CUDA build of torch on Windows (see pytorch.org for your CUDA)")
    ap.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                    help="onnx: also install ONNX Runtime (the CUDA/TensorRT build on NVIDIA, DirectML on other "
                         "Windows GPUs, the default build elsewhere) and export the networks (see "
                         "docs/INSTALLATION.md)")
    ap.add_argument("--tensorrt", action="store_true",
                    help="with --backend onnx on NVIDIA: also the TensorRT libraries for the TensorRT provider")
    ap.add_argument("--no-models", action="store_true", help="skip downloading the official weights")
    ap.add_argument("--no-run", action="store_true", help="do not start the demo at the end")
    args = ap.parse_args()

    check_python()
    if not venv_python().exists():
        say(f"creating {VENV}")
        run([sys.executable, "-m", "venv", VENV])
    py = venv_python()
    run([py, "-m", "pip", "install", "--upgrade", "pip"])

    cuda = args.torch == "cuda" or (args.torch == "auto" and has_nvidia_gpu())
    torch_cmd = [py, "-m", "pip", "install", f"torch=={TORCH_VERSION}"]
    if cuda:
        if os.name == "nt":
            torch_cmd += ["--index-url", args.torch_index]
        say("installing the CUDA build of torch")
    else:
        say("no NVIDIA driver found: installing the default torch build (on this machine it runs on the CPU;"
            " use --torch cuda to force the CUDA build)")
    run(torch_cmd)
    wheel = onnxruntime_wheel(platform.system(), cuda)
    if args.backend == "onnx":
        other = [w for w in installed_wheels(py) if w != wheel]
        if other:  # they overwrite each other's files: only one may stay
            run([py, "-m", "pip", "uninstall", "-y", *other])
        say(f"installing ONNX Runtime: {wheel}")
    # the project itself, editable: the CLI and the OBS script run these very files
    reqs = project_requirements(ROOT, args.dev, args.backend, wheel)
    run([py, "-m", "pip", "install", "-e", reqs[0], *reqs[1:]])
    if args.backend == "onnx" and args.tensorrt:
        if wheel == "onnxruntime-gpu":
            run([py, "-m", "pip", "install", TENSORRT_SPEC])
        else:
            say("--tensorrt needs an NVIDIA GPU: skipped")
    cli = venv_cli()

    ready = True
    if not args.no_models:
        if run([cli, "download-models"], check=False) != 0:
            ready = False
            say("the official weights could not be downloaded (see above); everything else is installed. "
                f"Run `{cli_command('download-models')}` when you are online, or copy "
                "the files into models/ as models/README.md shows.")
        elif args.backend == "onnx" and run([cli, "export-onnx"], check=False) != 0:
            say(f"the ONNX export failed (see above); the torch backend still works. Try again with "
                f"`{cli_command('export-onnx')}`.")
    if run([cli, "doctor"], check=False) != 0:
        ready = False
    doctor = cli_command("doctor")
    demo = cli_command("demo")
    if not ready:
        say(f"{'set up' if args.no_run else 'not starting the demo'}: `doctor` above lists what is missing and "
            f"how to fix it; check again with `{doctor}`, then start the demo with `{demo}`.")
        return 0 if args.no_run else 3
    if args.no_run:
        say(f"set up and ready; start the demo with `{demo}`.")
        return 0
    say("starting the demo (close its window or press q to stop)")
    return run([cli, "demo"], check=False)


if __name__ == "__main__":
    if platform.system() == "Windows":
        os.environ.setdefault("PYTHONUTF8", "1")
    sys.exit(main())
