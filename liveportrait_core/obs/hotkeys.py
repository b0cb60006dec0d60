"""Frontend hotkeys (Settings > Hotkeys) whose bindings are saved in the script's settings.

OBS stores nothing for a script's hotkeys by itself: the binding array is loaded from the script settings
after registering (``obs_hotkey_load``) and written back in ``script_save`` (``obs_hotkey_save``). A hotkey
that is not registered in this run (e.g. an expression the engine no longer offers) keeps its saved array
untouched, so bindings are never lost. Callbacks run on OBS's UI thread: they only hand a command to the
engine and never raise.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

HOTKEY_PREFIX = "liveportrait."


@dataclass
class _Hotkey:
    name: str
    description: str
    callback: Callable[[bool], None]
    hotkey_id: Any


class Hotkeys:
    """Registered hotkeys of one script load."""

    def __init__(self, obs: Any) -> None:
        self._obs = obs
        self._keys: dict[str, _Hotkey] = {}

    def register(self, name: str, description: str, action: Callable[[], None], settings: Any,
                 on_release: Callable[[], None] | None = None) -> None:
        """Register ``liveportrait.<name>``; ``action`` runs on key press, ``on_release`` (if any) on release (a
        key held down, such as push to talk); without it a release is ignored."""
        full = HOTKEY_PREFIX + name
        if full in self._keys:
            return

        def on_hotkey(pressed: bool, _full: str = full) -> None:
            if not pressed and on_release is None:
                return
            try:
                (action if pressed else on_release)()
            except Exception:  # noqa: BLE001 - never raise into OBS
                log.exception("hotkey %s failed", _full)

        obs = self._obs
        hid = obs.obs_hotkey_register_frontend(full, description, on_hotkey)
        self._keys[full] = _Hotkey(full, description, on_hotkey, hid)
        if settings is not None:
            arr = obs.obs_data_get_array(settings, full)
            if arr is not None:
                obs.obs_hotkey_load(hid, arr)
                obs.obs_data_array_release(arr)

    def names(self) -> list[str]:
        return list(self._keys)

    def hotkey_id(self, name: str) -> Any:
        return self._keys[HOTKEY_PREFIX + name].hotkey_id

    def save(self, settings: Any) -> None:
        """Write every registered hotkey's bindings into ``settings`` (``script_save``)."""
        obs = self._obs
        for hk in self._keys.values():
            arr = obs.obs_hotkey_save(hk.hotkey_id)
            obs.obs_data_set_array(settings, hk.name, arr)
            obs.obs_data_array_release(arr)

    def unregister_all(self) -> None:
        obs = self._obs
        for hk in self._keys.values():
            try:
                obs.obs_hotkey_unregister(hk.callback)
            except Exception:  # noqa: BLE001 - best effort at unload
                log.debug("could not unregister hotkey %s", hk.name, exc_info=True)
        self._keys.clear()
