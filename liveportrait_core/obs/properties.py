"""OBS properties generated from the one settings schema, and OBS settings data read back into ``Settings``.

Every engine setting appears in the Scripts dialog under its dotted key (``animation.region``) — the same
name the CLI's ``--set`` and the YAML file use — so there is no second schema: defaults, help (the tooltip),
choices and ranges all come from ``settings.describe()``. Keys the script adds for its own OBS-side state
start with ``lp.`` and never reach the engine.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from liveportrait_core import paths
from liveportrait_core import settings as schema

log = logging.getLogger(__name__)

#: The panel, top to bottom: Status (state, Start/Stop), then the character and the camera, then one switch that
#: shows the advanced groups below it (hidden by default: about 70 settings a first run does not need).
STATUS_GROUP = "lp.group.status"
BASICS_GROUP = "lp.group.basics"
SHOW_ADVANCED_KEY = "lp.show_advanced"
#: Settings in the basics group, in this order (everything else is advanced). The voice's mode is here because
#: the camera list offers "No webcam (idle + voice)": the voice must be one click away, not behind the switch.
BASIC_KEYS = ("characters.active", "capture.source", "audio.mode")
BASIC_LABELS = {"capture.source": "Camera", "audio.mode": "Voice"}
BASICS_LABEL = "Character, camera and voice"
#: What a choice list shows for each value (the value itself where absent).
CHOICE_TEXT: Mapping[str, Mapping[str, str]] = {
    "audio.mode": {"off": "Off", "fallback": "When the face or mouth is lost", "mix": "Mixed with the webcam",
                   "always": "Voice only (mouth follows the voice)"},
}
#: Advanced groups: (group key, label, dotted keys or section prefixes ending in ".").
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("lp.group.character", "Character options", ("characters.", "hotkeys.")),
    ("lp.group.camera", "Camera options", ("capture.",)),
    ("lp.group.animation", "Animation", ("animation.", "tracking.")),
    ("lp.group.voice", "Voice", ("audio.",)),
    ("lp.group.output", "Output", ("outputs.",)),
    ("lp.group.performance", "Performance", ("performance.", "model.device", "model.precision", "log_level")),
    ("lp.group.models", "Models", ("model.",)),
)
#: Folder pickers; every other text setting is a text field.
DIRECTORY_KEYS = frozenset({"characters.folder", "characters.cache_dir", "model.models_dir"})
#: Text settings that get an editable drop-down with suggestions.
SUGGESTIONS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "capture.source": (("0", "Webcam 0"), ("1", "Webcam 1"), ("2", "Webcam 2"), ("none", "No webcam (idle + voice)")),
    "audio.device": (("default", "Default microphone"),),
}
CHARACTER_KEY = "characters.active"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
EXPRESSION_PREFIX = "lp.expression."
FLOAT_STEP = 0.01


@dataclass(frozen=True)
class SettingRow:
    key: str
    default: Any
    help: str
    meta: Mapping[str, Any]

    @property
    def kind(self) -> str:
        """bool | int | float | str | list, from the schema's default."""
        d = self.default
        return "bool" if isinstance(d, bool) else "list" if isinstance(d, list) else type(d).__name__


def rows() -> list[SettingRow]:
    return [SettingRow(k, d, h, m) for k, d, h, m in schema.describe()]


def group_of(key: str) -> str:
    """The group key a dotted setting belongs to (the basics, else the first matching entry in GROUPS)."""
    if key in BASIC_KEYS:
        return BASICS_GROUP
    for gkey, _label, members in GROUPS:
        for m in members:
            if key == m or (m.endswith(".") and key.startswith(m)):
                return gkey
    return GROUPS[-1][0]


def label(key: str) -> str:
    """``animation.driving_multiplier`` -> ``Driving multiplier`` (section is the group's label)."""
    text = key.rsplit(".", 1)[-1].replace("_", " ")
    text = {"spout": "Spout2"}.get(text, text)
    units = {"s": "(s)", "deg": "(°)", "px": "(px)", "db": "(dB)", "ms": "(ms)"}
    words = text.split()
    if len(words) > 1 and words[-1] in units:
        words[-1] = units[words[-1]]
    out = " ".join(w.upper() if w in ("fps", "ndi", "gpu", "obs", "mjpg", "cuda") else w for w in words)
    if key.startswith("tracking."):
        out = "Tracking: " + out
    return out[:1].upper() + out[1:]


def set_defaults(obs: Any, data: Any) -> None:
    """``script_defaults``: every schema default, under its dotted key."""
    for r in rows():
        value = r.default
        if r.kind == "bool":
            obs.obs_data_set_default_bool(data, r.key, value)
        elif r.kind == "int":
            obs.obs_data_set_default_int(data, r.key, value)
        elif r.kind == "float":
            obs.obs_data_set_default_double(data, r.key, value)
        elif r.kind == "list":
            obs.obs_data_set_default_string(data, r.key, ", ".join(value))
        else:
            obs.obs_data_set_default_string(data, r.key, value)


def read_values(obs: Any, data: Any) -> dict[str, Any]:
    """Every schema key's current value in ``data`` (flat, dotted keys)."""
    out: dict[str, Any] = {}
    for r in rows():
        if r.kind == "bool":
            out[r.key] = obs.obs_data_get_bool(data, r.key)
        elif r.kind == "int":
            out[r.key] = obs.obs_data_get_int(data, r.key)
        elif r.kind == "float":
            out[r.key] = obs.obs_data_get_double(data, r.key)
        else:  # str, or a list as comma-separated text (apply_overrides splits it)
            out[r.key] = obs.obs_data_get_string(data, r.key)
    return out


def settings_from_values(values: Mapping[str, Any], base: schema.Settings | None = None
                         ) -> tuple[schema.Settings, list[str]]:
    """Validated settings; each bad value is skipped (keeping the default) and reported, never fatal."""
    if base is None:  # the usual case, validated in one pass over the tree (script_update is on the UI thread)
        nested: dict[str, Any] = {}
        for key, value in values.items():
            *sections, name = key.split(".")
            cur = nested
            for sec in sections:
                cur = cur.setdefault(sec, {})
            cur[name] = value
        try:
            return schema.from_dict(nested), []
        except schema.SettingsError:
            pass  # find and skip the bad values one by one
    current = base.copy() if base is not None else schema.Settings()
    errors: list[str] = []
    for key, value in values.items():
        try:
            current = schema.apply_overrides(current, {key: value})
        except schema.SettingsError as e:
            errors.append(str(e))
    return current, errors


def settings_from_data(obs: Any, data: Any) -> tuple[schema.Settings, list[str]]:
    return settings_from_values(read_values(obs, data))


def list_characters(folder: str) -> list[str]:
    """Image files in the character folder, sorted (cheap: one directory listing, for the drop-down)."""
    p = paths.resolve(folder)
    try:
        names = [e.name for e in os.scandir(p) if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)]
    except OSError:
        return []
    return sorted(names, key=str.lower)


def _add_setting(obs: Any, props: Any, r: SettingRow, characters: Iterable[str]) -> Any:
    name = BASIC_LABELS.get(r.key) or label(r.key)
    choices = r.meta.get("choices")
    lo, hi = r.meta.get("min"), r.meta.get("max")
    if r.key == CHARACTER_KEY:
        p = obs.obs_properties_add_list(props, r.key, "Character", obs.OBS_COMBO_TYPE_EDITABLE,
                                        obs.OBS_COMBO_FORMAT_STRING)
        obs.obs_property_list_add_string(p, "(first in folder)", "")
        for c in characters:
            obs.obs_property_list_add_string(p, c, c)
    elif r.kind == "bool":
        p = obs.obs_properties_add_bool(props, r.key, name)
    elif r.kind == "int":
        p = obs.obs_properties_add_int(props, r.key, name, int(lo if lo is not None else -2**31),
                                       int(hi if hi is not None else 2**31 - 1), 1)
    elif r.kind == "float":
        lo_f = float(lo if lo is not None else -1e9)
        hi_f = float(hi if hi is not None else 1e9)
        step = FLOAT_STEP if hi_f - lo_f <= 10 else 0.1
        p = obs.obs_properties_add_float_slider(props, r.key, name, lo_f, hi_f, step)
    elif choices:
        p = obs.obs_properties_add_list(props, r.key, name, obs.OBS_COMBO_TYPE_LIST, obs.OBS_COMBO_FORMAT_STRING)
        for c in choices:
            obs.obs_property_list_add_string(p, CHOICE_TEXT.get(r.key, {}).get(str(c), str(c)), str(c))
    elif r.key in SUGGESTIONS:
        p = obs.obs_properties_add_list(props, r.key, name, obs.OBS_COMBO_TYPE_EDITABLE,
                                        obs.OBS_COMBO_FORMAT_STRING)
        for value, text in (*SUGGESTIONS[r.key], *_microphones(r.key)):
            obs.obs_property_list_add_string(p, text, value)
    elif r.key in DIRECTORY_KEYS:
        p = obs.obs_properties_add_path(props, r.key, name, obs.OBS_PATH_DIRECTORY, "",
                                        str(paths.resolve(r.default)) if r.default else None)
    else:
        p = obs.obs_properties_add_text(props, r.key, name, obs.OBS_TEXT_DEFAULT)
    help_text = r.help + (" (comma-separated)" if r.kind == "list" else "") + f" [{r.key}]"
    obs.obs_property_set_long_description(p, help_text)
    return p


def _microphones(key: str) -> list[tuple[str, str]]:
    """The microphones PortAudio reports, for the Voice group's device list (by name: an index can change)."""
    if key != "audio.device":
        return []
    from liveportrait_core.voice.sources import list_microphones  # noqa: PLC0415 - only when the panel opens

    return [(m.name, m.name) for m in list_microphones()]


Button = tuple[str, str, Callable[..., Any]]


def build(obs: Any, *, character_folder: str, expressions: Iterable[str] = (),
          buttons: Mapping[str, Iterable[Button]] | None = None, status_text: str = "",
          extra_top: Callable[[Any], None] | None = None, status_extra: Callable[[Any], None] | None = None,
          show_advanced: bool = False) -> Any:
    """All properties: Status, the basics, the advanced switch, the advanced groups (hidden unless
    ``show_advanced``). ``buttons`` maps a group key to (key, text, callback) buttons for it."""
    props = obs.obs_properties_create()
    if extra_top is not None:
        extra_top(props)
    buttons = buttons or {}
    status = obs.obs_properties_create()
    obs.obs_properties_add_text(status, "lp.status", status_text or "Not running", obs.OBS_TEXT_INFO)
    groups = {gkey: obs.obs_properties_create() for gkey, _l, _m in GROUPS}
    groups[BASICS_GROUP] = obs.obs_properties_create()
    characters = list_characters(character_folder)
    by_key = {r.key: r for r in rows()}
    for key in BASIC_KEYS:
        _add_setting(obs, groups[BASICS_GROUP], by_key[key], characters)
    for r in by_key.values():
        if r.key not in BASIC_KEYS:
            _add_setting(obs, groups[group_of(r.key)], r, characters)
    anim = groups["lp.group.animation"]
    for e in expressions:
        p = obs.obs_properties_add_bool(anim, EXPRESSION_PREFIX + e, "Expression: " + e.replace("_", " "))
        obs.obs_property_set_long_description(p, f"hold the '{e}' expression on top of tracking "
                                                 "(also a hotkey in Settings > Hotkeys)")

    def add_group(gkey: str, lbl: str, gprops: Any) -> Any:
        for key, text, cb in buttons.get(gkey, ()):
            obs.obs_properties_add_button(gprops, key, text, cb)
        return obs.obs_properties_add_group(props, gkey, lbl, obs.OBS_GROUP_NORMAL, gprops)

    for key, text, cb in buttons.get(STATUS_GROUP, ()):
        obs.obs_properties_add_button(status, key, text, cb)
    if status_extra is not None:
        status_extra(status)
    obs.obs_properties_add_group(props, STATUS_GROUP, "Status", obs.OBS_GROUP_NORMAL, status)
    add_group(BASICS_GROUP, BASICS_LABEL, groups[BASICS_GROUP])
    switch = obs.obs_properties_add_bool(props, SHOW_ADVANCED_KEY, "Show advanced settings")
    obs.obs_property_set_long_description(switch, "every engine setting, in groups (animation, output, "
                                                  "performance, models, …)")
    advanced = [add_group(g, lbl, groups[g]) for g, lbl, _m in GROUPS]
    for g in advanced:
        obs.obs_property_set_visible(g, show_advanced)

    def on_switch(props_: Any, _prop: Any, settings: Any) -> bool:
        show = obs.obs_data_get_bool(settings, SHOW_ADVANCED_KEY)
        for gkey, _l, _m in GROUPS:
            p = obs.obs_properties_get(props_, gkey)
            if p is not None:
                obs.obs_property_set_visible(p, show)
        return True  # redraw the panel

    obs.obs_property_set_modified_callback(switch, on_switch)
    return props


def open_folder(path: Path) -> str:
    """Open ``path`` in the desktop's file manager (created if missing); returns what was done."""
    import subprocess  # noqa: PLC0415 - only on a button press

    path.mkdir(parents=True, exist_ok=True)
    if os.name == "nt":
        os.startfile(str(path))  # type: ignore[attr-defined]  # noqa: S606
    else:
        opener = "open" if os.uname().sysname == "Darwin" else "xdg-open"
        subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    return f"opened {path}"
