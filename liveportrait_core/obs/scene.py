"""Put the script's sources into OBS scenes, remember where they were, and put them back after a restart.

OBS creates the saved scene collection's sources before scripts load, so a saved source of the ctypes
type fails ("Source ID 'liveportrait_source' not found") and disappears at every restart. The script
therefore saves each scene item's transform in its own settings (``script_save``) and, once loaded,
recreates the source by name — looking it up first, so that nothing is ever duplicated.
Every reference obtained from OBS is released in the same function (OBS logs leaks at exit otherwise).
"""
from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from liveportrait_core.settings import OutputSettings

log = logging.getLogger(__name__)

SPOUT_SOURCE_ID = "spout_capture"
NDI_SOURCE_ID = "ndi_source"
SPOUT_COMPOSITE_PREMULTIPLIED = 4  # obs-spout2-plugin "compositemode": premultiplied alpha
OBS_BOUNDS_SCALE_INNER = 2  # enum obs_bounds_type: fit inside the bounds, keeping the aspect ratio
OBS_ALIGN_CENTER = 0
OBS_ALIGN_TOP_LEFT = 5  # OBS_ALIGN_LEFT | OBS_ALIGN_TOP
SPOUT_HELP = ("Spout2 Capture is not installed: get the Spout2 plugin for OBS from "
              "https://github.com/Off-World-Live/obs-spout2-plugin/releases (Windows only), restart OBS, "
              "then press 'Add source to current scene' again.")
NDI_HELP = ("The NDI Source type is not installed: install DistroAV from https://github.com/DistroAV/DistroAV "
            "and the NDI Runtime it asks for, restart OBS, then press 'Add source to current scene' again.")


def type_available(obs: Any, type_id: str) -> bool:
    """Whether a source type is registered (its display name exists)."""
    try:
        return bool(obs.obs_source_get_display_name(type_id))
    except Exception:  # noqa: BLE001 - unknown id on some bindings raises
        return False


def ndi_source_name(sender: str, host: str | None = None) -> str:
    """The name DistroAV lists our NDI sender under: ``HOST (sender)``."""
    h = (host or socket.gethostname()).split(".")[0].upper()
    return f"{h} ({sender})"


def source_exists(obs: Any, name: str) -> bool:
    src = obs.obs_get_source_by_name(name)
    if src is None:
        return False
    obs.obs_source_release(src)
    return True


def _set_data(obs: Any, data: Any, values: Mapping[str, Any]) -> None:
    for k, v in values.items():
        if isinstance(v, bool):
            obs.obs_data_set_bool(data, k, v)
        elif isinstance(v, int):
            obs.obs_data_set_int(data, k, v)
        elif isinstance(v, float):
            obs.obs_data_set_double(data, k, v)
        else:
            obs.obs_data_set_string(data, k, str(v))


def _scenes(obs: Any) -> Iterator[tuple[str, Any]]:
    """(name, obs_scene_t) of every scene; the list is released when the generator ends."""
    scenes = obs.obs_frontend_get_scenes()
    try:
        for s in scenes or []:
            yield obs.obs_source_get_name(s), obs.obs_scene_from_source(s)
    finally:
        obs.source_list_release(scenes)


def _find_scene(obs: Any, scene_name: str) -> Any:
    """A referenced scene source by name (caller releases), or None."""
    src = obs.obs_get_source_by_name(scene_name)
    if src is None:
        return None
    if obs.obs_scene_from_source(src) is None:
        obs.obs_source_release(src)
        return None
    return src


def ensure_in_current_scene(obs: Any, type_id: str, name: str, settings: Mapping[str, Any] | None = None) -> str:
    """Create source ``name`` (type ``type_id``) if missing and add it to the current scene if not there."""
    scene_src = obs.obs_frontend_get_current_scene()
    if scene_src is None:
        return "no current scene"
    try:
        scene = obs.obs_scene_from_source(scene_src)
        scene_name = obs.obs_source_get_name(scene_src)
        if obs.obs_scene_find_source(scene, name) is not None:
            return f"'{name}' is already in scene '{scene_name}'"
        src = obs.obs_get_source_by_name(name)
        created = src is None
        if created:
            data = obs.obs_data_create()
            _set_data(obs, data, settings or {})
            src = obs.obs_source_create(type_id, name, data, None)
            obs.obs_data_release(data)
            if src is None:
                return f"OBS could not create a '{type_id}' source"
        try:
            item = obs.obs_scene_add(scene, src)
            fitted = fit_to_canvas(obs, item) if item is not None else ""
        finally:
            obs.obs_source_release(src)
        return f"{'created' if created else 'added'} '{name}' in scene '{scene_name}'{fitted}"
    finally:
        obs.obs_source_release(scene_src)


def canvas_size(obs: Any) -> tuple[int, int] | None:
    """The base (canvas) resolution, e.g. (1920, 1080); None when OBS cannot say."""
    try:
        ovi = obs.obs_video_info()
        if not obs.obs_get_video_info(ovi):
            return None
        return int(ovi.base_width), int(ovi.base_height)
    except Exception:  # noqa: BLE001 - an older binding: leave the item where OBS put it
        return None


def fit_to_canvas(obs: Any, item: Any) -> str:
    """A newly added item fills the canvas, centred, keeping the aspect ratio (OBS's "Fit to screen"): a
    720x720 character on a 640x360 canvas no longer overflows it. Only on first add: a placement the user
    made is saved and restored as it is."""
    size = canvas_size(obs)
    if size is None or min(size) <= 0:
        return ""
    pos, bounds = obs.vec2(), obs.vec2()
    pos.x = pos.y = 0.0
    bounds.x, bounds.y = float(size[0]), float(size[1])
    obs.obs_sceneitem_set_alignment(item, OBS_ALIGN_TOP_LEFT)
    obs.obs_sceneitem_set_pos(item, pos)
    obs.obs_sceneitem_set_bounds_type(item, int(getattr(obs, "OBS_BOUNDS_SCALE_INNER", OBS_BOUNDS_SCALE_INNER)))
    obs.obs_sceneitem_set_bounds_alignment(item, OBS_ALIGN_CENTER)
    obs.obs_sceneitem_set_bounds(item, bounds)
    return f", fitted to the {size[0]}x{size[1]} canvas"


def capture_placements(obs: Any, name: str) -> list[dict[str, Any]]:
    """Transform of every scene item that shows source ``name``, for ``script_save``."""
    out: list[dict[str, Any]] = []
    for scene_name, scene in _scenes(obs):
        item = obs.obs_scene_find_source(scene, name) if scene is not None else None
        if item is None:
            continue
        pos, scale, bounds = obs.vec2(), obs.vec2(), obs.vec2()
        obs.obs_sceneitem_get_pos(item, pos)
        obs.obs_sceneitem_get_scale(item, scale)
        obs.obs_sceneitem_get_bounds(item, bounds)
        out.append({
            "scene": scene_name, "x": pos.x, "y": pos.y, "sx": scale.x, "sy": scale.y,
            "rot": obs.obs_sceneitem_get_rot(item), "align": obs.obs_sceneitem_get_alignment(item),
            "bounds_type": obs.obs_sceneitem_get_bounds_type(item), "bx": bounds.x, "by": bounds.y,
            "bounds_align": obs.obs_sceneitem_get_bounds_alignment(item),
            "visible": bool(obs.obs_sceneitem_visible(item)),
        })
    return out


def _apply(obs: Any, item: Any, p: Mapping[str, Any]) -> None:
    pos, scale, bounds = obs.vec2(), obs.vec2(), obs.vec2()
    pos.x, pos.y = float(p.get("x", 0.0)), float(p.get("y", 0.0))
    scale.x, scale.y = float(p.get("sx", 1.0)), float(p.get("sy", 1.0))
    bounds.x, bounds.y = float(p.get("bx", 0.0)), float(p.get("by", 0.0))
    obs.obs_sceneitem_set_pos(item, pos)
    obs.obs_sceneitem_set_scale(item, scale)
    obs.obs_sceneitem_set_rot(item, float(p.get("rot", 0.0)))
    obs.obs_sceneitem_set_alignment(item, int(p.get("align", 5)))
    obs.obs_sceneitem_set_bounds_type(item, int(p.get("bounds_type", 0)))
    obs.obs_sceneitem_set_bounds(item, bounds)
    obs.obs_sceneitem_set_bounds_alignment(item, int(p.get("bounds_align", 0)))
    obs.obs_sceneitem_set_visible(item, bool(p.get("visible", True)))


def restore(obs: Any, type_id: str, name: str, placements_json: str) -> str:
    """Recreate source ``name`` where it was saved; a source already there (by name) is left alone."""
    if source_exists(obs, name):
        return f"'{name}' exists"
    try:
        placements = json.loads(placements_json or "[]")
    except ValueError:
        placements = []
    if not placements:
        return "nothing to restore"
    data = obs.obs_data_create()
    src = obs.obs_source_create(type_id, name, data, None)
    obs.obs_data_release(data)
    if src is None:
        return f"OBS could not create a '{type_id}' source"
    done = []
    try:
        for p in placements:
            scene_src = _find_scene(obs, str(p.get("scene", "")))
            if scene_src is None:
                continue
            try:
                item = obs.obs_scene_add(obs.obs_scene_from_source(scene_src), src)
                if item is not None:
                    _apply(obs, item, p)
                    done.append(str(p.get("scene")))
            finally:
                obs.obs_source_release(scene_src)
    finally:
        obs.obs_source_release(src)
    return f"restored '{name}' in scene(s) {', '.join(done) or '(none found)'}"


def spout_source_settings(sender: str) -> dict[str, Any]:
    return {"spoutsenders": sender, "compositemode": SPOUT_COMPOSITE_PREMULTIPLIED}


def ndi_source_settings(sender: str) -> dict[str, Any]:
    return {"ndi_source_name": ndi_source_name(sender)}


@dataclass(frozen=True)
class Receiver:
    """The OBS source type that shows one of our outputs (``outputs.table`` names it), and how to set it up."""

    type_id: str
    source_settings: Callable[[OutputSettings], dict[str, Any]]
    help: str  #: said when the type is not installed


#: By output name (``outputs.table.OUTPUTS``): the outputs that "Add source to current scene" gives a receiver
#: and that stand in for the in-process source when there is none.
RECEIVERS: dict[str, Receiver] = {
    "spout": Receiver(SPOUT_SOURCE_ID, lambda o: spout_source_settings(o.spout_name), SPOUT_HELP),
    "ndi": Receiver(NDI_SOURCE_ID, lambda o: ndi_source_settings(o.ndi_name), NDI_HELP),
}
