"""The one settings schema, shared by the CLI and the OBS script.

Every setting lives in a dataclass field below, with its default and, in the field's metadata, what is
allowed (``choices``, ``min``, ``max``) and a one-line ``help``. ``load``/``from_dict`` validate a
YAML mapping against the schema and reject it with a message that names the key, the bad value and
what is allowed (unknown keys get a "did you mean"); every mistake in a file is reported at once, one line
each, so that a file with five mistakes takes one run to fix, not five. ``apply_overrides`` takes ``section.key=value``
strings (CLI ``--set``) or a flat mapping (OBS properties) and validates them the same way.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml


class SettingsError(ValueError):
    """One or more settings are wrong; each line names the key, the value and what is allowed.

    ``errors`` holds the individual lines (one per bad key), ``str()`` all of them.
    """

    def __init__(self, message: str, errors: Iterable[str] | None = None) -> None:
        super().__init__(message)
        self.errors: list[str] = list(errors) if errors is not None else [message]

    @classmethod
    def collected(cls, errors: list[str], where: str = "") -> "SettingsError":
        """One error for all of ``errors``: the single line as it is, or a count and one line each."""
        prefix = f"{where}: " if where else ""
        if len(errors) == 1:
            return cls(prefix + errors[0], errors)
        lines = "\n".join(f"  {e}" for e in errors)
        return cls(f"{prefix}{len(errors)} settings are wrong:\n{lines}", errors)


def _f(default: Any, help: str, *, choices: Iterable[Any] | None = None, min: float | None = None,
       max: float | None = None) -> Any:
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if min is not None:
        meta["min"] = min
    if max is not None:
        meta["max"] = max
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return field(default=default, metadata=meta)


ANIMATION_REGIONS = ("all", "exp", "pose", "lip", "eyes")
DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
BACKENDS = ("auto", "torch", "onnxruntime")
ORT_PROVIDERS = ("tensorrt", "cuda", "directml", "coreml", "openvino", "cpu")


@dataclass
class CaptureSettings:
    """Where driving frames come from."""

    source: str = _f("0", "webcam index (0, 1, ...), webcam name, video file, folder of images, or none "
                     "(no webcam: idle motion, blinks, breathing and the voice, docs/VOICE.md)")
    width: int = _f(1280, "requested camera width in pixels", min=160, max=7680)
    height: int = _f(720, "requested camera height in pixels", min=120, max=4320)
    fps: int = _f(30, "requested camera frame rate", min=1, max=240)
    mjpg: bool = _f(True, "ask the webcam for MJPG (higher frame rates over USB 2)")
    backend: str = _f("auto", "OpenCV capture backend",
                      choices=("auto", "dshow", "msmf", "v4l2", "avfoundation", "any"))
    mirror: bool = _f(False, "mirror the camera image horizontally before tracking")
    loop: bool = _f(True, "restart video files and image folders when they end")
    realtime: bool = _f(True, "pace video files at their own frame rate (off: as fast as possible)")


@dataclass
class TrackingSettings:
    """MediaPipe face tracking and the driving crop."""

    max_faces: int = _f(2, "faces MediaPipe looks for; the one nearest the last position is kept", min=1, max=5)
    min_detection_confidence: float = _f(0.5, "MediaPipe face detection confidence", min=0.05, max=0.99)
    min_tracking_confidence: float = _f(0.5, "MediaPipe landmark tracking confidence", min=0.05, max=0.99)
    smoothing: bool = _f(True, "One Euro filter on landmarks and the crop box")
    min_cutoff: float = _f(1.0, "One Euro minimum cutoff in Hz (lower: steadier, more lag)", min=0.01, max=30.0)
    beta: float = _f(0.05, "One Euro speed coefficient (higher: less lag on fast moves)", min=0.0, max=10.0)
    d_cutoff: float = _f(1.0, "One Euro derivative cutoff in Hz", min=0.01, max=30.0)
    crop_scale: float = _f(2.2, "driving crop size relative to the face (official 2.2)", min=1.0, max=4.0)
    crop_vy: float = _f(-0.1, "driving crop vertical offset relative to its size (official -0.1)", min=-0.5, max=0.5)
    auto_calibrate: bool = _f(True, "take the neutral reference once a steady, frontal face is seen")
    calibrate_after_s: float = _f(1.0, "seconds of steady, frontal face before auto-calibration", min=0.0, max=30.0)
    mouth_check: bool = _f(True, "notice a tracked face's hidden mouth (covered, out of frame, looking down, too "
                                 "dark): audio.mode fallback then voices it, mix ignores its tracked opening")
    mouth_min_match: float = _f(0.45, "how much the lower face must still look as at the neutral reference to count "
                                      "as seen (higher: a hand or microphone is noticed sooner, but a wide grin may "
                                      "read as covered)", min=0.05, max=0.95)
    mouth_pitch_down_deg: float = _f(25.0, "looking down more than this many degrees below the neutral pose hides the "
                                           "mouth", min=5.0, max=90.0)
    mouth_min_light: float = _f(25.0, "a mouth region darker than this mean grey level (0..255) is too dark to track",
                                min=0.0, max=128.0)


@dataclass
class ModelSettings:
    """The LivePortrait weights and where they run."""

    models_dir: str = _f("models", "folder holding liveportrait/ (relative paths are relative to the project)")
    variant: str = _f("human", "which official weights to use", choices=("human", "animal"))
    device: str = _f("auto", "where the networks run (auto: CUDA, then MPS, then CPU)", choices=DEVICES)
    precision: str = _f("auto", "network precision (auto: fp16 on CUDA, fp32 elsewhere)", choices=PRECISIONS)
    backend: str = _f("auto", "what runs the four big networks: torch (on the CPU in fp32 the faster of the plain "
                              "and the exact fast form of each network, measured once); onnxruntime (ONNX Runtime, "
                              "on the first of model.providers that this machine has); auto: torch on CUDA and "
                              "MPS, an ONNX Runtime GPU provider when torch has no GPU, else on the CPU the fastest "
                              "measured form of each network (docs/PERFORMANCE.md)", choices=BACKENDS)
    providers: list[str] = _f(list(ORT_PROVIDERS), "ONNX Runtime providers in order of preference; those this "
                              "machine lacks are skipped, the CPU is always the last resort", choices=ORT_PROVIDERS)
    verify_on_load: bool = _f(True, "check every weight file's keys and shapes before loading")
    verify_checksums: bool = _f(True, "doctor also compares each weight file's SHA-256 with the official one"
                                      " (reads ~520 MB; off: keys and shapes only)")


@dataclass
class CharacterSettings:
    """The character library."""

    folder: str = _f("characters", "folder of character images (PNG, JPEG, WebP)")
    extra_folders: list[str] = _f([], "more folders to scan for characters")
    active: str = _f("", "file name of the character to start with (empty: the first one)")
    cache_dir: str = _f("", "prepared-character cache (empty: the per-user cache folder)")
    device_cache_size: int = _f(4, "prepared characters kept on the GPU for instant switching", min=1, max=32)
    min_face_px: int = _f(64, "smallest face (pixels across) accepted in a character image", min=16, max=4096)
    min_face_confidence: float = _f(0.8, "face-detector score a character's face needs; lower it (e.g. 0.6) for "
                                    "stylised art or animals that are refused", min=0.3, max=0.99)
    rescan_s: float = _f(2.0, "seconds between checks for added, removed or changed files (0: never)",
                         min=0.0, max=3600.0)


@dataclass
class AnimationSettings:
    """How the webcam's motion drives the character (official options plus our additions)."""

    region: str = _f("all", "which part of the motion is applied", choices=ANIMATION_REGIONS)
    relative_motion: bool = _f(True, "motion relative to the calibrated neutral face (off: absolute)")
    stitching: bool = _f(True, "stitching network (keeps the face seamless in the full image)")
    animal_stitching: bool = _f(False, "stitching for characters on the animal model (the official animal "
                                "default is off: 'not recommended'); a character's sidecar may still ask for it")
    animal_driving: bool = _f(True, "drive characters on the animal model as the official animal script does "
                              "(the driving pose and expression as they are, relative to the reference in keypoint "
                              "space, times the motion multiplier; regions do not apply); off: as human characters")
    eye_close_boost: float = _f(0.0, "on a blink (tracked or idle) also move the eyes towards closed by the "
                                "official eye retargeting, times this (0: off; 1: a full blink closes big "
                                "stylised eyes fully); per character in its sidecar", min=0.0, max=2.0)
    eye_retargeting: bool = _f(False, "drive eye openness from the tracked eye ratios")
    lip_retargeting: bool = _f(False, "drive mouth openness from the tracked lip ratio")
    normalize_lip: bool = _f(False, "close the character's open mouth at neutral (official option)")
    lip_normalize_threshold: float = _f(0.03, "lip ratio above which lip normalisation applies", min=0.0, max=1.0)
    driving_multiplier: float = _f(1.0, "scales the motion (1: as tracked)", min=0.0, max=3.0)
    driving_option: str = _f("pose-friendly", "official driving option (expression-friendly rescales the motion "
                             "by the ratio of face volumes)", choices=("pose-friendly", "expression-friendly"))
    smoothing: bool = _f(True, "One Euro smoothing of rotation and expression")
    min_cutoff: float = _f(2.0, "One Euro minimum cutoff for motion, Hz", min=0.01, max=30.0)
    beta: float = _f(0.3, "One Euro speed coefficient for motion", min=0.0, max=10.0)
    d_cutoff: float = _f(1.0, "One Euro derivative cutoff for motion, Hz", min=0.01, max=30.0)
    max_pitch_deg: float = _f(30.0, "clamp on head pitch beyond which LivePortrait distorts", min=0.0, max=90.0)
    max_yaw_deg: float = _f(40.0, "clamp on head yaw", min=0.0, max=90.0)
    max_roll_deg: float = _f(30.0, "clamp on head roll", min=0.0, max=90.0)
    expression_ease_s: float = _f(0.15, "ease-in/out time of triggered expressions", min=0.0, max=5.0)
    idle: bool = _f(True, "keep the character alive (breathing, blinks) while no face is tracked")
    idle_ease_s: float = _f(0.5, "time to ease to neutral when the face is lost", min=0.0, max=10.0)


@dataclass
class AudioSettings:
    """Voice drives the mouth (docs/VOICE.md): a microphone or an audio file, analysed per block."""

    mode: str = _f("off", "off; fallback: the voice moves the mouth while the face is lost or its mouth hidden "
                   "(tracking.mouth_check); mix: the larger of the tracked and the voiced opening; always: the "
                   "mouth follows the voice only",
                   choices=("off", "fallback", "mix", "always"))
    device: str = _f("default", "microphone index or name (part of it is enough), 'default', or an audio/video file")
    loop: bool = _f(False, "restart an audio file when it ends")
    gain_db: float = _f(0.0, "gain applied before the gate, dB", min=-20.0, max=40.0)
    gate_db: float = _f(-50.0, "noise gate: quieter than this (dBFS) is silence; it closes 3 dB lower",
                        min=-90.0, max=0.0)
    range_db: float = _f(30.0, "dB above the gate for a fully open mouth", min=3.0, max=60.0)
    attack_ms: float = _f(15.0, "how fast the mouth opens (time constant, ms)", min=0.0, max=500.0)
    release_ms: float = _f(80.0, "how fast it closes again (time constant, ms)", min=0.0, max=2000.0)
    max_open: float = _f(0.5, "lip-open ratio at full level (official range: closed 0, a wide 'ah' about 0.6)",
                         min=0.0, max=1.0)
    vowels: bool = _f(True, "shape the mouth by vowel (A I U E O, from formants)")
    vowel_strength: float = _f(1.0, "how much the vowel shapes show", min=0.0, max=2.0)
    push_to_talk: bool = _f(False, "the voice moves the mouth only while the push-to-talk hotkey is held")
    block_ms: float = _f(10.0, "audio block length in ms (the lag is at most one block plus one video frame)",
                         min=5.0, max=20.0)


@dataclass
class OutputSettings:
    """Where animated frames go; several at once."""

    width: int = _f(0, "output width in pixels (0: the character image's exact width; characters are scaled down "
                    "to 1280 px on their longest side when loaded, a fixed limit, so larger sizes are upscaled)",
                    min=0, max=7680)
    height: int = _f(0, "output height in pixels (0: the character image's exact height, within the same 1280 px "
                     "limit)", min=0, max=4320)
    fit: str = _f("contain", "how the character fills the output size", choices=("contain", "cover", "stretch"))
    paste_back: bool = _f(True, "paste the animated face into the full character image (off: the 512x512 crop)")
    obs_source: bool = _f(True, "frames into the OBS source registered by the script")
    spout: bool = _f(False, "Spout2 sender (Windows)")
    spout_name: str = _f("LivePortrait", "Spout2 sender name")
    ndi: bool = _f(False, "NDI sender (any OS, needs cyndilib)")
    ndi_name: str = _f("LivePortrait", "NDI sender name")
    preview: bool = _f(False, "preview window (OpenCV)")
    record: str = _f("", "record to this .mp4 file or PNG folder (empty: off); an existing recording is kept "
                     "(name-2.mp4, name-3.mp4 ... is used instead); a video's odd side gets one row or "
                     "column of background (encoders need even sides), a PNG sequence keeps the exact size")


@dataclass
class PerformanceSettings:
    """Speed levers; each is measured in docs/PERFORMANCE.md."""

    target_fps: int = _f(60, "warn when the output runs below this rate", min=1, max=240)
    compile: bool = _f(False, "torch.compile the networks (slow first start)")
    cuda_graphs: bool = _f(False, "capture the per-frame networks as CUDA graphs (CUDA only)")
    channels_last: bool = _f(True, "channels-last memory format where it measurably helps")
    warmup_frames: int = _f(3, "frames run at start so that the first live frame is not slow", min=0, max=100)
    torch_threads: int = _f(0, "CPU threads for torch (0: torch's default)", min=0, max=256)


@dataclass
class HotkeySettings:
    """Character slots for the 1-9 hotkeys (OBS stores the key bindings themselves)."""

    character_slots: list[str] = _f([], "file names for hotkeys 1-9, in order (empty: library order)")


@dataclass
class Settings:
    """Everything the engine needs, in one tree."""

    capture: CaptureSettings = field(default_factory=CaptureSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    characters: CharacterSettings = field(default_factory=CharacterSettings)
    animation: AnimationSettings = field(default_factory=AnimationSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    outputs: OutputSettings = field(default_factory=OutputSettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    hotkeys: HotkeySettings = field(default_factory=HotkeySettings)
    log_level: str = _f("INFO", "logging level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    # -- conversion -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def copy(self) -> "Settings":
        return copy.deepcopy(self)

    def get(self, dotted: str) -> Any:
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj


# ------------------------------------------------------------------------------------------------
# validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"a list of {_type_name(arg)}"
    return {bool: "true/false", int: "an integer", float: "a number", str: "text"}.get(tp, str(tp))


def _coerce(key: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Any:
    """Check ``value`` against the field type and metadata; return it in the field's type."""
    origin = typing.get_origin(tp)
    bad = SettingsError(f"setting '{key}': {value!r} is not {_type_name(tp)}"
                        + (f"; allowed: {', '.join(map(str, meta['choices']))}" if "choices" in meta else ""))
    if origin is list:
        (arg,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad
        each = {"choices": meta["choices"]} if "choices" in meta else {}  # a list's choices are its items'
        return [_coerce(f"{key}[{i}]", v, arg, each) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            out: Any = value
        elif isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            out = value.strip().lower() in ("true", "yes", "on", "1")
        else:
            raise bad
    elif tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            out = value
        elif isinstance(value, float) and value.is_integer():
            out = int(value)
        elif isinstance(value, str):
            try:
                out = int(value.strip())
            except ValueError:
                raise bad from None
        else:
            raise bad
    elif tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise bad from None
        else:
            raise bad
        if out != out or out in (float("inf"), float("-inf")):
            raise SettingsError(f"setting '{key}': {value!r} is not a finite number")
    elif tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise bad
        out = value
    else:  # pragma: no cover - schema programming error
        raise TypeError(f"unsupported settings type {tp!r} for {key}")
    choices = meta.get("choices")
    if choices is not None:
        match = [c for c in choices if str(c).lower() == str(out).lower()]
        if not match:
            hint = difflib.get_close_matches(str(out), [str(c) for c in choices], n=1)
            raise SettingsError(f"setting '{key}': {value!r} is not allowed; allowed: {', '.join(map(str, choices))}"
                                + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        out = match[0]
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise SettingsError(f"setting '{key}': {out!r} is out of range; allowed: {lo} to {hi}")
    return out


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown(key: str, known: Iterable[str]) -> SettingsError:
    name = key.rsplit(".", 1)[-1]
    hint = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    where = key.rsplit(".", 1)[0] + "." if "." in key else ""
    return SettingsError(f"unknown setting '{key}'" + (f" (did you mean '{where}{hint[0]}'?)" if hint else "")
                         + f"; known here: {', '.join(sorted(known))}")


def _update(obj: Any, data: Mapping[str, Any], prefix: str, errors: list[str]) -> None:
    """Apply ``data`` to ``obj``; each bad key adds one line to ``errors`` and the rest still apply."""
    if not isinstance(data, Mapping):
        errors.append(f"setting '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {data!r}")
        return
    hints = _field_types(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in fields:
            errors.append(str(_unknown(key, fields)))
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            _update(getattr(obj, name), value or {}, key + ".", errors)
            continue
        try:
            setattr(obj, name, _coerce(key, value, tp, fields[name].metadata))
        except SettingsError as e:
            errors.append(str(e))


def from_dict(data: Mapping[str, Any] | None) -> Settings:
    """Defaults updated by ``data`` (nested mapping as in YAML), validated; every bad key is reported."""
    s = Settings()
    errors: list[str] = []
    _update(s, data or {}, "", errors)
    if errors:
        raise SettingsError.collected(errors)
    return s


def load(path: str | os.PathLike[str]) -> Settings:
    """Read and validate a YAML settings file; the file itself is never written."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SettingsError(f"cannot read settings file {p}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SettingsError(f"settings file {p} is not valid YAML: {e}") from None
    try:
        return from_dict(data)
    except SettingsError as e:
        raise SettingsError.collected(e.errors, where=str(p)) from None


def dump(settings: Settings) -> str:
    """YAML text of the whole settings tree (round-trips through ``from_dict``)."""
    return yaml.safe_dump(settings.to_dict(), sort_keys=False)


def save(settings: Settings, path: str | os.PathLike[str]) -> None:
    """Write settings atomically, so that an interrupted save never loses the user's file."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(dump(settings), encoding="utf-8")
    os.replace(tmp, p)


def apply_overrides(settings: Settings, overrides: Iterable[str] | Mapping[str, Any]) -> Settings:
    """A validated copy of ``settings`` with ``section.key=value`` overrides applied."""
    out = settings.copy()
    errors: list[str] = []
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for item in items:
        try:
            dotted, value = item if isinstance(overrides, Mapping) else _split(item)
        except SettingsError as e:
            errors.append(str(e))
            continue
        parts = dotted.strip().split(".")
        nested: dict[str, Any] = {}
        cur = nested
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
        _update(out, nested, "", errors)
    if errors:
        raise SettingsError.collected(errors)
    return out


def _split(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise SettingsError(f"override {text!r} must look like section.key=value, e.g. animation.region=exp")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def describe() -> list[tuple[str, Any, str, Mapping[str, Any]]]:
    """(dotted key, default, help, metadata) for every setting: docs and OBS properties use this."""
    rows: list[tuple[str, Any, str, Mapping[str, Any]]] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, f"{prefix}{f.name}.")
            else:
                rows.append((f"{prefix}{f.name}", v, f.metadata.get("help", ""), f.metadata))

    walk(Settings(), "")
    return rows
