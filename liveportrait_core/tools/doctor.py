"""What is ready and what is not: Python, torch and the GPU, MediaPipe, the weights, the outputs.

Each check gives OK, WARN or FAIL with a one-line finding and, when not OK, the exact fix. FAIL means
the engine cannot run as configured; WARN means it runs with a limitation (e.g. on the CPU). Checks
are cheap: packages are located without importing them where possible, and weight files are loaded
only when they exist.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import platform
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from liveportrait_core import machine
from liveportrait_core import paths
from liveportrait_core.settings import Settings

_log = logging.getLogger(__name__)

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MEDIAPIPE_VERSION = "0.10.21"
#: Python versions whose embedded interpreter OBS Studio 29-31 loads for scripts (64-bit builds).
OBS_PYTHONS = ((3, 10), (3, 12))
#: PyTorch's CUDA wheel index, the same one install.py uses.
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
#: FaceMesh files the tracker needs inside the mediapipe package (refined, 478-point landmarks).
FACEMESH_FILES = ("modules/face_detection/face_detection_short_range.tflite",
                  "modules/face_landmark/face_landmark_with_attention.tflite",
                  "modules/face_landmark/face_landmark_front_cpu.binarypb")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class Check:
    name: str
    status: str  #: OK, WARN or FAIL
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _install(args: str = "") -> str:
    """How README.md tells users to run install.py: ``python3 install.py`` on Linux and macOS,
    ``py -3.X install.py`` on Windows (the launcher picks the Python OBS uses; 3.X is this Python's
    version when OBS can load it, else 3.12), with install.py by its full path so that it works from any
    folder."""
    script = paths.quote_arg(str(paths.PROJECT_ROOT / "install.py"))
    if sys.platform == "win32":
        v = sys.version_info
        lo, hi = OBS_PYTHONS
        usable = struct.calcsize("P") == 8 and lo <= (v.major, v.minor) <= hi
        minor = v.minor if usable else hi[1]
        cmd = f"py -3.{minor} {script}"
    else:
        cmd = f"python3 {script}"
    return f"{cmd} {args}".rstrip()


def _pip(args: str) -> str:
    return paths.python_command(paths.this_python(), "-m", "pip", "install", args)


def _nvidia_driver_present() -> bool:
    """Whether this machine has an NVIDIA driver (NVML loads, or ``nvidia-smi -L`` lists a GPU), i.e.
    whether a CUDA build of torch could help at all. Never raises."""
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            return False
        except Exception:  # a driver that is installed but does not answer is still a driver
            return True
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        except Exception:
            return True
        finally:
            try:
                pynvml.nvmlShutdown()
            except Exception:
                pass
    return machine.nvidia_smi_lists_a_gpu()


#: What running on the CPU means, for the checks that find no usable GPU.
CPU_PATH = ("the networks run on the CPU: seconds per frame, enough to check characters and the set-up, "
            "far too slow for live animation (see docs/PERFORMANCE.md)")


# ------------------------------------------------------------------------------------------------
# the checks


def check_python() -> Check:
    v = sys.version_info
    bits = struct.calcsize("P") * 8
    detail = f"Python {v.major}.{v.minor}.{v.micro} ({bits}-bit) on {platform.system()} {platform.release()}"
    lo, hi = OBS_PYTHONS
    if bits == 64 and lo <= (v.major, v.minor) <= hi:
        return Check("python", OK, detail + "; suits OBS scripting")
    return Check("python", WARN, detail + f"; OBS scripting needs 64-bit Python {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]} "
                 "(the command line still works)",
                 f"install 64-bit Python {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]}, run `{_install()}` with it, "
                 "and select it in OBS under Tools > Scripts > Python Settings")


def check_torch(settings: Settings) -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("torch", FAIL, "PyTorch is not installed", f"run `{_install()}`")
    import torch

    cuda_build = torch.version.cuda
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU build"
    detail = f"torch {torch.__version__} ({build})"
    want = settings.model.device
    cuda_fix = (_pip(f'--force-reinstall "torch=={torch.__version__.split("+")[0]}" --index-url {TORCH_CUDA_INDEX}')
                + f" (or `{_install('--torch cuda')}`)")
    if torch.cuda.is_available():
        return Check("torch", OK, f"{detail}; CUDA device: {torch.cuda.get_device_name(0)}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        if want == "cuda":
            return Check("torch", FAIL, f"{detail}; model.device is cuda but this Mac has MPS only",
                         "--set model.device=auto")
        return Check("torch", OK, f"{detail}; Apple MPS available (slower than an NVIDIA GPU)")
    if not _nvidia_driver_present():
        # no NVIDIA GPU: a CUDA build of torch would change nothing, so none is suggested
        detail += f"; no NVIDIA GPU or driver on this machine, so {CPU_PATH}"
        if want in ("cuda", "mps"):
            return Check("torch", FAIL, f"{detail}; model.device is {want}, which this machine does not have",
                         "--set model.device=auto (or cpu)")
        return Check("torch", WARN, detail,
                     "nothing to install here; for live animation use a PC with an NVIDIA GPU "
                     "(docs/INSTALLATION.md)")
    if cuda_build:
        detail += "; an NVIDIA driver is installed, but torch cannot use the GPU (driver too old for this CUDA build?)"
        fix = "update the NVIDIA driver (https://www.nvidia.com/Download/index.aspx)"
    else:
        detail += "; this machine has an NVIDIA GPU, which this build of torch cannot use"
        fix = cuda_fix
    if want in ("cuda", "mps"):
        return Check("torch", FAIL, f"{detail}; model.device is {want}", fix + " or --set model.device=auto")
    return Check("torch", WARN, f"{detail}; until then {CPU_PATH}", fix)


def check_gpu() -> Check:
    try:
        import pynvml
    except ImportError:
        return Check("gpu", WARN, "cannot query NVIDIA GPUs: nvidia-ml-py is not installed",
                     _pip('"nvidia-ml-py>=12.535"'))
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return Check("gpu", WARN, "no NVIDIA driver (NVML library not found), so no NVIDIA GPU is used; "
                     "the CPU runs the networks",
                     "only if this PC has an NVIDIA GPU: install its driver, https://www.nvidia.com/Download/index.aspx")
    except pynvml.NVMLError as e:
        return Check("gpu", WARN, f"the NVIDIA driver does not answer: {e}", "reinstall or update the NVIDIA driver")
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            gpus.append(f"{name} ({mem.total / 2**30:.0f} GiB, {mem.free / 2**30:.1f} GiB free)")
    finally:
        pynvml.nvmlShutdown()
    if not gpus:
        return Check("gpu", WARN, f"NVIDIA driver {driver} but no GPU found", "check that the GPU is enabled")
    return Check("gpu", OK, f"NVIDIA driver {driver}: " + "; ".join(gpus))


def check_mediapipe() -> Check:
    version = _version("mediapipe")
    fix = _pip(f"--force-reinstall mediapipe=={MEDIAPIPE_VERSION}")
    if version is None:
        return Check("mediapipe", FAIL, "MediaPipe is not installed (face tracking)", fix)
    if version != MEDIAPIPE_VERSION:
        return Check("mediapipe", FAIL, f"mediapipe {version}; {MEDIAPIPE_VERSION} is required (later releases do "
                     "not ship the FaceMesh models, so tracking cannot work offline)", fix)
    spec = importlib.util.find_spec("mediapipe")
    root = Path(spec.origin).parent if spec and spec.origin else None
    missing = [f for f in FACEMESH_FILES if root is None or not (root / f).is_file()]
    if missing:
        return Check("mediapipe", FAIL, f"mediapipe {version} lacks FaceMesh model files: {', '.join(missing)}", fix)
    return Check("mediapipe", OK, f"mediapipe {version} with FaceMesh models (478 landmarks)")


def check_command() -> Check:
    """The ``liveportrait`` command that install.py installs (``pip install -e .``): without it the printed
    commands fall back to ``python -m liveportrait_core``, which works only inside the project folder."""
    exe = paths.cli_executable()
    if exe is not None:
        return Check("command", OK, f"`liveportrait` installed: {exe}")
    return Check("command", WARN, "the `liveportrait` command is not installed (this project is not installed "
                 "into the environment), so commands work only from the project folder",
                 f"run `{_install('--no-models --no-run')}` (it installs the project editable into .venv)")


def check_opencv() -> Check:
    if importlib.util.find_spec("cv2") is None:
        return Check("opencv", FAIL, "OpenCV is not installed (camera, images)",
                     _pip('"opencv-contrib-python>=4.8,<4.12"'))
    import cv2

    return Check("opencv", OK, f"OpenCV {cv2.__version__}")


def check_weights(settings: Settings) -> list[Check]:
    from liveportrait_core.models.checkpoint import weights

    variant = settings.model.variant
    root = weights.models_root(settings.model.models_dir)
    reports = weights.verify_models(root, variant, deep=True, check_hash=settings.model.verify_checksums)
    if all(r.status == "missing" for r in reports):
        return [Check("weights", FAIL, f"no LivePortrait weights ({variant}) in {root}",
                      weights.download_fix(variant, again=False, models_dir=root))]
    status = {"ok": OK, "differs": WARN}
    return [Check(f"weights:{r.file}", status.get(r.status, FAIL), r.message, r.fix) for r in reports]


#: The ONNX Runtime wheels; only one may be installed (they ship the same module and overwrite each other).
ORT_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")


def check_onnxruntime(settings: Settings) -> list[Check]:
    """ONNX Runtime (optional, ``model.backend``): installed, which providers, exports current, and where the
    last load put each network (recorded then: doctor opens no session, a TensorRT build takes minutes)."""
    from liveportrait_core.models.onnx import export, runtime

    m = settings.model
    explicit = m.backend == "onnxruntime"
    dists = [d for d in ORT_DISTS if _version(d)]
    fix = _install("--backend onnx")
    if not dists or not runtime.available_providers():
        if explicit:
            return [Check("onnxruntime", FAIL, "model.backend is onnxruntime but ONNX Runtime is not installed", fix)]
        return [Check("onnxruntime", OK, "not installed (optional: TensorRT, DirectML, CoreML, OpenVINO and a "
                                         "faster CPU path for some networks; model.backend is " + m.backend + ")")]
    available = runtime.available_providers()
    order = runtime.resolve_providers(m.providers, available)
    detail = (f"{', '.join(f'{d} {_version(d)}' for d in dists)}; providers here: {', '.join(available)}; "
              f"model.backend {m.backend}, used in order: {', '.join(order)}")
    checks = [Check("onnxruntime", OK, detail)]
    if len(dists) > 1:
        checks[0] = Check("onnxruntime", WARN, detail + f"; {' and '.join(dists)} are both installed and overwrite "
                          "each other's files", f"{_pip('--force-reinstall --no-deps ' + dists[-1])} (or uninstall all "
                          f"and run {fix})")
    elif _nvidia_driver_present() and "cuda" not in available:
        checks[0] = Check("onnxruntime", WARN, detail + "; this machine has an NVIDIA GPU but this build has no "
                          "CUDA/TensorRT provider", fix)
    if not export.onnx_version():
        checks.append(Check("onnx:export", WARN if explicit else OK, "the onnx package (needed to export) is not "
                            "installed" + ("" if explicit else "; only needed for the onnxruntime backend"), fix))
        return checks
    report = runtime.read_report(runtime.cache_dir(m.models_dir), m.variant)
    for name in export.EXPORTED:
        try:
            st = export.export_state(m.models_dir, m.variant, name)
        except export.ExportError:
            return checks  # no weights: the weights check says what to do
        last = report.get(name)
        ran = f"; last load: {last['summary']} ({last['time']})" if last else ""
        if st.state == "current":
            status = OK if not last or last.get("whole", True) else WARN
            checks.append(Check(f"onnx:{name}", status, f"exported, current ({st.path.name}){ran}",
                                "" if status == OK else "a node runs on the CPU beside the GPU provider: try the next "
                                "provider first in model.providers (docs/TROUBLESHOOTING.md)"))
        else:
            why = "not exported yet" if st.state == "missing" else f"out of date: {st.reason}"
            checks.append(Check(f"onnx:{name}", WARN if explicit else OK,
                                why + ("; the first start exports it (minutes)" if explicit else ""),
                                paths.cli_command("export-onnx")))
    return checks


def _importable(module: str) -> tuple[bool, str]:
    """Import ``module`` (outputs load native runtimes at import, which is what matters)."""
    if importlib.util.find_spec(module) is None:
        return False, "not installed"
    try:
        __import__(module)
    except Exception as e:  # a broken native runtime raises anything
        return False, f"installed but fails to load: {type(e).__name__}: {e}"
    return True, ""


def check_outputs(settings: Settings) -> list[Check]:
    out = settings.outputs
    checks: list[Check] = []
    if sys.platform == "win32":
        ok, why = _importable("SpoutGL")
        checks.append(Check("output:spout", OK, "Spout2 available (SpoutGL)") if ok else
                      Check("output:spout", FAIL if out.spout else WARN, f"Spout2: SpoutGL {why}",
                            _pip('"SpoutGL>=0.1.1"')))
    elif out.spout:
        checks.append(Check("output:spout", FAIL, "outputs.spout is on, but Spout2 exists on Windows only",
                            "--set outputs.spout=false (use NDI or the OBS source)"))
    else:
        checks.append(Check("output:spout", OK, "Spout2: Windows only, not used on this system"))
    ok, why = _importable("cyndilib")
    checks.append(Check("output:ndi", OK, "NDI available (cyndilib)") if ok else
                  Check("output:ndi", FAIL if out.ndi else WARN, f"NDI: cyndilib {why}", _pip('"cyndilib>=0.1.3"')))
    return checks


def check_voice(settings: Settings) -> list[Check]:
    """The voice (docs/VOICE.md): PortAudio for microphones, PyAV for audio files and the recording's sound.
    A missing piece fails only when ``audio.mode`` is on and needs it."""
    a = settings.audio
    from liveportrait_core.voice.sources import describe_audio, list_microphones, resolve_microphone

    wants_mic = a.mode != "off" and describe_audio(a.device) != "file"
    checks: list[Check] = []
    ok, why = _importable("sounddevice")
    if not ok:
        fix = "sudo apt-get install libportaudio2" if sys.platform.startswith("linux") and "PortAudio" in why \
            else _pip('"sounddevice>=0.4.6"')
        checks.append(Check("voice:microphone", FAIL if wants_mic else WARN,
                            f"microphones: sounddevice {why}", fix))
    else:
        mics = list_microphones()
        names = ", ".join(f"{m.index}: {m.name}" for m in mics) or "none found"
        status, detail = OK, f"microphones (PortAudio): {names}"
        if wants_mic:
            try:
                import sounddevice

                mic = resolve_microphone(a.device, mics, sounddevice.default.device[0])
                detail += f"; audio.device {a.device!r} is {mic.index}: {mic.name}"
            except Exception as e:  # noqa: BLE001 - AudioSourceError (a missing device) is the finding
                status, detail = FAIL, f"audio.mode is {a.mode} but {e}"
        elif not mics:
            detail += " (the voice is off, audio.mode off: nothing needs one)"
        checks.append(Check("voice:microphone", status, detail,
                            "" if status == OK else "connect a microphone, or set audio.device to one listed"))
    ok, why = _importable("av")
    checks.append(Check("voice:files", OK, "audio files and the recording's sound (PyAV)") if ok else
                  Check("voice:files", WARN, f"audio files other than WAV and the recording's sound: av {why}",
                        _pip('"av>=12"')))
    return checks


def check_character_folder(settings: Settings) -> Check:
    """The characters folder exists and holds images (``check-character`` checks the images themselves)."""
    folder = paths.resolve(settings.characters.folder)
    if not folder.is_dir():
        return Check("characters", FAIL, f"character folder {folder} does not exist",
                     f"create it and put portrait images in it, or --set characters.folder=PATH")
    n = sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if n == 0:
        return Check("characters", FAIL, f"no images (PNG, JPEG, WebP) in {folder}",
                     "put a portrait image there (see characters/README.md)")
    return Check("characters", OK, f"{n} character image(s) in {folder}")


def _guard(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    """A check that crashes is itself a finding; doctor must always finish its report."""
    try:
        res = fn()
    except Exception as e:
        _log.debug("check %s crashed", name, exc_info=True)
        return [Check(name, FAIL, f"the check itself failed: {type(e).__name__}: {e}",
                      f"report this with the output of `{paths.cli_command('doctor', '--json')}`")]
    return res if isinstance(res, list) else [res]


def run_checks(settings: Settings | None = None) -> list[Check]:
    s = settings or Settings()
    checks: list[Check] = []
    for name, fn in (("python", check_python), ("torch", lambda: check_torch(s)), ("gpu", check_gpu),
                     ("mediapipe", check_mediapipe), ("opencv", check_opencv),
                     ("weights", lambda: check_weights(s)), ("onnxruntime", lambda: check_onnxruntime(s)),
                     ("outputs", lambda: check_outputs(s)), ("voice", lambda: check_voice(s)),
                     ("characters", lambda: check_character_folder(s)), ("command", check_command)):
        checks += _guard(name, fn)
    return checks


def is_ready(checks: list[Check]) -> bool:
    """Ready to run: nothing failed (warnings are limitations, not blockers)."""
    return all(c.status != FAIL for c in checks)


def format_report(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        lines.append(f"[{c.status:4}] {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"       {'':<{width}}  fix: {c.fix}")
    ready = is_ready(checks)
    warns = sum(c.status == WARN for c in checks)
    fails = sum(c.status == FAIL for c in checks)
    lines.append("")
    lines.append("ready to run" + (f" ({warns} warning(s))" if warns else "") if ready
                 else f"not ready: {fails} problem(s) to fix" + (f", {warns} warning(s)" if warns else ""))
    return "\n".join(lines)
