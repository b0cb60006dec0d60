"""A fake ``obspython`` for unit tests: the subset of OBS's scripting API the script uses, with reference
counting, so tests can assert that every reference taken was released (real OBS logs leaks at exit).

Semantics follow what was measured in OBS 29 (see shared/notes/OBS_FINDINGS.md): hotkey callbacks get
``pressed`` True then False; ``obs_hotkey_load/save`` round-trip arrays of key objects; timers run when
the test calls ``run_timers``; ``remove_current_callback`` removes the timer that is running.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable

OBS_INVALID_HOTKEY_ID = -1
OBS_COMBO_TYPE_EDITABLE, OBS_COMBO_TYPE_LIST = 1, 2
OBS_COMBO_FORMAT_INT, OBS_COMBO_FORMAT_FLOAT, OBS_COMBO_FORMAT_STRING = 1, 2, 3
OBS_TEXT_DEFAULT, OBS_TEXT_PASSWORD, OBS_TEXT_MULTILINE, OBS_TEXT_INFO = 0, 1, 2, 3
OBS_PATH_FILE, OBS_PATH_FILE_SAVE, OBS_PATH_DIRECTORY = 0, 1, 2
OBS_GROUP_NORMAL, OBS_GROUP_CHECKABLE = 1, 2
LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG = 100, 200, 300, 400
OBS_FRONTEND_EVENT_SCENE_COLLECTION_CHANGED = 13
OBS_FRONTEND_EVENT_EXIT = 17
OBS_FRONTEND_EVENT_FINISHED_LOADING = 26
OBS_BOUNDS_NONE, OBS_BOUNDS_STRETCH, OBS_BOUNDS_SCALE_INNER = 0, 1, 2
SWIG_NULL_WARNING = "get_current_scene: SWIG failed to convert obs object"


class vec2:  # noqa: N801 - SWIG name
    def __init__(self) -> None:
        self.x = 0.0
        self.y = 0.0


class obs_video_info:  # noqa: N801 - SWIG name
    def __init__(self) -> None:
        self.base_width = self.base_height = 0


class _Counted:
    def __init__(self, fake: "FakeObs") -> None:
        self.refs = 1
        fake._live.add(self)


@dataclass
class Prop:
    name: str
    kind: str
    description: str
    extra: dict[str, Any] = field(default_factory=dict)
    items: list[tuple[str, Any]] = field(default_factory=list)
    long_description: str = ""
    callback: Callable[..., Any] | None = None
    group: "Props | None" = None
    visible: bool = True


class Props:
    def __init__(self) -> None:
        self.props: dict[str, Prop] = {}

    def add(self, p: Prop) -> Prop:
        assert p.name not in self.props, f"duplicate property {p.name}"
        self.props[p.name] = p
        return p

    def walk(self):
        for p in self.props.values():
            yield p
            if p.group is not None:
                yield from p.group.walk()


class Data(_Counted):
    def __init__(self, fake: "FakeObs", values: dict[str, Any] | None = None) -> None:
        super().__init__(fake)
        self.values: dict[str, Any] = dict(values or {})
        self.defaults: dict[str, Any] = {}

    def get(self, key: str, empty: Any) -> Any:
        return self.values.get(key, self.defaults.get(key, empty))


class Array(_Counted):
    def __init__(self, fake: "FakeObs", items: list[dict[str, Any]]) -> None:
        super().__init__(fake)
        self.items = items


class Source(_Counted):
    def __init__(self, fake: "FakeObs", type_id: str, name: str, settings: dict[str, Any]) -> None:
        super().__init__(fake)
        self.type_id, self.name, self.settings = type_id, name, settings
        self.scene: Scene | None = None


class Scene:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.items: list[SceneItem] = []


class SceneItem:
    def __init__(self, scene: Scene, source: Source) -> None:
        self.scene, self.source = scene, source
        self.pos, self.scale, self.bounds = (0.0, 0.0), (1.0, 1.0), (0.0, 0.0)
        self.rot, self.align, self.bounds_type, self.bounds_align, self.visible = 0.0, 5, 0, 0, True


class FakeObs:
    """Use an instance as the ``obspython`` module."""

    def __init__(self, version: str = "29.0.2.1-1+b1", source_types: tuple[str, ...] = ("image_source",)) -> None:
        self._live: set[_Counted] = set()
        self.version = version
        self.source_types = {t: t for t in source_types}
        self.sources: dict[str, Source] = {}  # by name, alive while refs > 0 (scene items hold one)
        self.timers: list[tuple[Callable[[], None], int]] = []
        self._current_timer: Callable[[], None] | None = None
        self.hotkeys: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.logs: list[tuple[int, str]] = []
        self.event_callbacks: list[Callable[[int], None]] = []
        self.current_scene: Scene | None = self.add_scene("Scene")
        self.canvas = (640, 360)

    # -------------------------------------------------------------- test helpers
    def add_scene(self, name: str) -> Scene:
        src = Source(self, "scene", name, {})
        src.refs = 0
        src.scene = Scene(src)
        self.sources[name] = src
        return src.scene

    def leaked(self) -> list[str]:
        """References taken from this fake and not released (scene items hold their own, uncounted)."""
        return [f"{type(o).__name__} {getattr(o, 'name', '')} refs={o.refs}" for o in self._live if o.refs > 0]

    def run_timers(self, times: int = 1) -> None:
        for _ in range(times):
            for cb, _ms in list(self.timers):
                if (cb, _ms) not in self.timers:
                    continue
                self._current_timer = cb
                cb()
                self._current_timer = None

    def trigger_hotkey(self, name: str) -> None:
        for hk in self.hotkeys.values():
            if hk["name"] == name:
                hk["callback"](True)
                hk["callback"](False)
                return
        raise KeyError(name)

    def scene_names(self, scene: Scene) -> list[str]:
        return [it.source.name for it in scene.items]

    # -------------------------------------------------------------- version, log, timers
    def obs_get_version_string(self) -> str:
        return self.version

    def script_log(self, level: int, msg: str) -> None:
        self.logs.append((level, msg))

    def timer_add(self, cb: Callable[[], None], ms: int) -> None:
        self.timers.append((cb, ms))

    def timer_remove(self, cb: Callable[[], None]) -> None:
        self.timers = [t for t in self.timers if t[0] != cb]

    def remove_current_callback(self) -> None:
        assert self._current_timer is not None, "remove_current_callback outside a timer"
        self.timer_remove(self._current_timer)

    # -------------------------------------------------------------- obs_data
    def obs_data_create(self) -> Data:
        return Data(self)

    def obs_data_create_from_json(self, text: str) -> Data:
        return Data(self, json.loads(text))

    def obs_data_release(self, d: Data) -> None:
        d.refs -= 1
        if d.refs <= 0:
            self._live.discard(d)

    def obs_data_get_json(self, d: Data) -> str:
        return json.dumps({**d.defaults, **d.values}, default=lambda a: a.items)

    def _set_default(self, d: Data, k: str, v: Any) -> None:
        d.defaults[k] = v

    def _set(self, d: Data, k: str, v: Any) -> None:
        d.values[k] = v

    obs_data_set_default_bool = obs_data_set_default_int = obs_data_set_default_double = _set_default
    obs_data_set_default_string = _set_default
    obs_data_set_bool = obs_data_set_int = obs_data_set_double = obs_data_set_string = _set

    def obs_data_get_bool(self, d: Data, k: str) -> bool:
        return bool(d.get(k, False))

    def obs_data_get_int(self, d: Data, k: str) -> int:
        return int(d.get(k, 0))

    def obs_data_get_double(self, d: Data, k: str) -> float:
        return float(d.get(k, 0.0))

    def obs_data_get_string(self, d: Data, k: str) -> str:
        return str(d.get(k, ""))

    def obs_data_get_array(self, d: Data, k: str) -> Array | None:
        items = d.values.get(k)
        return Array(self, [dict(i) for i in items]) if items is not None else None

    def obs_data_set_array(self, d: Data, k: str, arr: Array) -> None:
        d.values[k] = [dict(i) for i in arr.items]

    def obs_data_array_release(self, arr: Array | None) -> None:
        if arr is not None:
            arr.refs -= 1
            if arr.refs <= 0:
                self._live.discard(arr)

    def obs_data_array_count(self, arr: Array) -> int:
        return len(arr.items)

    # -------------------------------------------------------------- properties
    def obs_properties_create(self) -> Props:
        return Props()

    def obs_properties_destroy(self, props: Props) -> None:
        pass

    def obs_properties_get(self, props: Props, name: str) -> Prop | None:
        for p in props.walk():
            if p.name == name:
                return p
        return None

    def obs_properties_add_bool(self, props: Props, name: str, desc: str) -> Prop:
        return props.add(Prop(name, "bool", desc))

    def obs_properties_add_int(self, props: Props, name: str, desc: str, lo: int, hi: int, step: int) -> Prop:
        assert isinstance(lo, int) and isinstance(hi, int) and -2**31 <= lo <= hi <= 2**31 - 1
        return props.add(Prop(name, "int", desc, {"min": lo, "max": hi, "step": step}))

    obs_properties_add_int_slider = obs_properties_add_int

    def obs_properties_add_float(self, props: Props, name: str, desc: str, lo: float, hi: float,
                                 step: float) -> Prop:
        assert lo <= hi
        return props.add(Prop(name, "float", desc, {"min": lo, "max": hi, "step": step}))

    obs_properties_add_float_slider = obs_properties_add_float

    def obs_properties_add_text(self, props: Props, name: str, desc: str, kind: int) -> Prop:
        return props.add(Prop(name, "text", desc, {"text_type": kind}))

    def obs_properties_add_path(self, props: Props, name: str, desc: str, kind: int, flt: str,
                                default: str | None) -> Prop:
        return props.add(Prop(name, "path", desc, {"path_type": kind, "default": default}))

    def obs_properties_add_list(self, props: Props, name: str, desc: str, combo: int, fmt: int) -> Prop:
        return props.add(Prop(name, "list", desc, {"combo": combo, "format": fmt}))

    def obs_property_list_add_string(self, p: Prop, text: str, value: str) -> None:
        assert isinstance(value, str)
        p.items.append((text, value))

    def obs_properties_add_button(self, props: Props, name: str, text: str, cb: Callable[..., Any]) -> Prop:
        return props.add(Prop(name, "button", text, callback=cb))

    def obs_properties_add_group(self, props: Props, name: str, desc: str, kind: int, group: Props) -> Prop:
        return props.add(Prop(name, "group", desc, group=group))

    def obs_property_set_long_description(self, p: Prop, text: str) -> None:
        p.long_description = text

    def obs_property_set_modified_callback(self, p: Prop, cb: Callable[..., Any]) -> None:
        p.callback = cb

    def obs_property_set_visible(self, p: Prop, visible: bool) -> None:
        p.visible = bool(visible)

    def obs_property_visible(self, p: Prop) -> bool:
        return p.visible

    def modify(self, props: Props, name: str, data: "Data") -> Any:
        """What OBS does when the user changes property ``name``: its modified callback, if any."""
        p = self.obs_properties_get(props, name)
        return p.callback(props, p, data) if p is not None and p.callback is not None else None

    def obs_property_button_clicked(self, p: Prop, _data: Any) -> Any:
        return p.callback(None, p)

    # -------------------------------------------------------------- hotkeys
    def obs_hotkey_register_frontend(self, name: str, desc: str, cb: Callable[[bool], None]) -> int:
        hid = next(self._ids)
        self.hotkeys[hid] = {"name": name, "description": desc, "callback": cb, "bindings": []}
        return hid

    def obs_hotkey_unregister(self, cb: Callable[[bool], None]) -> None:
        self.hotkeys = {k: v for k, v in self.hotkeys.items() if v["callback"] is not cb}

    def obs_hotkey_load(self, hid: int, arr: Array) -> None:
        self.hotkeys[hid]["bindings"] = [dict(i) for i in arr.items]

    def obs_hotkey_save(self, hid: int) -> Array:
        return Array(self, [dict(i) for i in self.hotkeys[hid]["bindings"]])

    def obs_hotkey_trigger_routed_callback(self, hid: int, pressed: bool) -> None:
        self.hotkeys[hid]["callback"](pressed)

    # -------------------------------------------------------------- sources and scenes
    def obs_source_get_display_name(self, type_id: str) -> str | None:
        return self.source_types.get(type_id)

    def register_source_type(self, type_id: str) -> None:
        self.source_types[type_id] = type_id

    def obs_source_create(self, type_id: str, name: str, data: Data, hotkeys: Any) -> Source | None:
        if type_id not in self.source_types:
            return None
        assert name not in self.sources, f"duplicate source name {name}"
        src = Source(self, type_id, name, dict(data.values))
        self.sources[name] = src
        return src

    def obs_get_source_by_name(self, name: str) -> Source | None:
        src = self.sources.get(name)
        if src is not None:
            src.refs += 1
        return src

    def obs_source_release(self, src: Source | None) -> None:
        if src is None:
            return
        src.refs -= 1
        assert src.refs >= 0, f"over-released {src.name}"
        in_scenes = any(it.source is src for s in self.sources.values() if s.scene for it in s.scene.items)
        if src.refs == 0 and not in_scenes and src.scene is None:  # destroyed
            self.sources.pop(src.name, None)

    def obs_source_get_name(self, src: Source) -> str:
        return src.name

    def emit(self, event: int) -> None:
        for cb in list(self.event_callbacks):
            cb(event)

    def obs_frontend_add_event_callback(self, cb: Callable[[int], None]) -> None:
        self.event_callbacks.append(cb)

    def obs_frontend_remove_event_callback(self, cb: Callable[[int], None]) -> None:
        self.event_callbacks.remove(cb)

    def obs_frontend_get_current_scene(self) -> Source | None:
        if self.current_scene is None:  # OBS is still loading the scene collection: the binding warns
            self.logs.append((LOG_WARNING, SWIG_NULL_WARNING))
            return None
        src = self.current_scene.source
        src.refs += 1
        return src

    def obs_frontend_get_scene_names(self) -> list[str]:
        if self.current_scene is None:  # still loading: no scenes yet
            return []
        return [s.name for s in self.sources.values() if s.scene is not None]

    def obs_get_video_info(self, ovi: obs_video_info) -> bool:
        ovi.base_width, ovi.base_height = self.canvas
        return True

    def obs_frontend_get_scenes(self) -> list[Source]:
        out = [s for s in self.sources.values() if s.scene is not None]
        for s in out:
            s.refs += 1
        return out

    def source_list_release(self, lst: list[Source]) -> None:
        for s in lst:
            self.obs_source_release(s)

    def obs_scene_from_source(self, src: Source) -> Scene | None:
        return src.scene

    def obs_scene_find_source(self, scene: Scene, name: str) -> SceneItem | None:
        return next((it for it in scene.items if it.source.name == name), None)

    def obs_scene_add(self, scene: Scene, src: Source) -> SceneItem:
        item = SceneItem(scene, src)
        scene.items.append(item)
        return item

    # scene item transform
    def obs_sceneitem_get_pos(self, it: SceneItem, v: vec2) -> None:
        v.x, v.y = it.pos

    def obs_sceneitem_set_pos(self, it: SceneItem, v: vec2) -> None:
        it.pos = (v.x, v.y)

    def obs_sceneitem_get_scale(self, it: SceneItem, v: vec2) -> None:
        v.x, v.y = it.scale

    def obs_sceneitem_set_scale(self, it: SceneItem, v: vec2) -> None:
        it.scale = (v.x, v.y)

    def obs_sceneitem_get_bounds(self, it: SceneItem, v: vec2) -> None:
        v.x, v.y = it.bounds

    def obs_sceneitem_set_bounds(self, it: SceneItem, v: vec2) -> None:
        it.bounds = (v.x, v.y)

    def obs_sceneitem_get_rot(self, it: SceneItem) -> float:
        return it.rot

    def obs_sceneitem_set_rot(self, it: SceneItem, r: float) -> None:
        it.rot = r

    def obs_sceneitem_get_alignment(self, it: SceneItem) -> int:
        return it.align

    def obs_sceneitem_set_alignment(self, it: SceneItem, a: int) -> None:
        it.align = a

    def obs_sceneitem_get_bounds_type(self, it: SceneItem) -> int:
        return it.bounds_type

    def obs_sceneitem_set_bounds_type(self, it: SceneItem, t: int) -> None:
        it.bounds_type = t

    def obs_sceneitem_get_bounds_alignment(self, it: SceneItem) -> int:
        return it.bounds_align

    def obs_sceneitem_set_bounds_alignment(self, it: SceneItem, a: int) -> None:
        it.bounds_align = a

    def obs_sceneitem_visible(self, it: SceneItem) -> bool:
        return it.visible

    def obs_sceneitem_set_visible(self, it: SceneItem, v: bool) -> None:
        it.visible = v


for _name, _value in list(globals().items()):  # the module's constants are attributes of the fake module
    if _name.isupper() and isinstance(_value, int):
        setattr(FakeObs, _name, _value)
FakeObs.vec2 = vec2  # type: ignore[attr-defined]
FakeObs.obs_video_info = obs_video_info  # type: ignore[attr-defined]
