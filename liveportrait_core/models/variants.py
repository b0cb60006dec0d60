"""The networks of each weight variant (human, animal), loaded on first use and kept while memory allows.

A character may ask for the other variant (its sidecar's ``model.variant``): switching to it must not need a
restart. ``VariantModels.get(variant)`` gives that variant's ``loader.LivePortraitModels``; the first call loads
them (``loader.load_from_settings`` with ``model.variant`` set: the official file layout, strict load). Both
sets stay resident when the device has room for another set (free GPU memory on CUDA, available RAM
elsewhere, with ``HEADROOM`` to spare): then a switch only swaps references. Without the room the other set is
released first and a switch back loads it again (seconds: the load of one set). Cost, stated: one set holds
the seven networks' 130 M parameters in float32, about 520 MB, plus the optimised copies the loader makes.
"""
from __future__ import annotations

import gc
import logging
import threading
from typing import Any, Callable

_log = logging.getLogger(__name__)

#: Free memory kept beyond one more set (activations, the character caches, the rest of the process).
HEADROOM = 1.5


def set_bytes(models) -> int:
    """Device bytes held by one set: its parameters and buffers (the optimised copies included)."""
    from liveportrait_core.models.fast.seam import plain_network  # noqa: PLC0415

    seen: set[int] = set()
    n = 0
    for m in getattr(models, "modules", {}).values():
        plain = plain_network(m)  # a fast form holds its plain network too (whose replaced leaves it does not list)
        for t in [*m.parameters(), *m.buffers(), *plain.parameters(), *plain.buffers()]:
            if t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            n += t.numel() * t.element_size()
    return n


def free_bytes(device) -> int | None:
    """Memory free for another set on ``device`` (None: unknown)."""
    try:
        if getattr(device, "type", str(device)) == "cuda":
            import torch  # noqa: PLC0415

            return int(torch.cuda.mem_get_info(device)[0])
        import psutil  # noqa: PLC0415

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no way to ask: behave as if there were no room
        return None


class VariantModels:
    """``get(variant)``: the networks of that variant (``settings``: a ``settings.Settings``, whose ``model`` and
    ``performance`` sections the loader reads); thread-safe (the engine's inference thread uses it, the
    library prepares on the same thread)."""

    def __init__(self, settings: Any, load: Callable[[Any], object] | None = None,
                 free: Callable[[object], int | None] = free_bytes) -> None:
        self.settings = settings
        self._load = load or self._load_from_settings
        self._free = free
        self._sets: dict[str, object] = {}
        self._lock = threading.RLock()
        self.loads = 0  #: sets loaded so far (tests, status)
        self.released = 0  #: sets released for lack of memory

    @staticmethod
    def _load_from_settings(settings: Any):
        from liveportrait_core.models.loader import load_from_settings  # noqa: PLC0415

        return load_from_settings(settings)

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._sets)

    def get(self, variant: str):
        """The networks of ``variant``, loading them now if needed (raises what the loader raises: missing
        weights name the download command)."""
        with self._lock:
            hit = self._sets.get(variant)
            if hit is not None:
                return hit
            if self._sets and not self._room_for_another():
                for name in list(self._sets):
                    _log.info("not enough memory for the %s and %s networks together: releasing %s (a switch "
                              "back loads it again)", name, variant, name)
                    del self._sets[name]
                    self.released += 1
                gc.collect()
                _empty_cuda_cache()
            s = self.settings.copy()
            s.model.variant = variant
            models = self._load(s)
            models.variant = variant
            self.loads += 1
            self._sets[variant] = models
            if len(self._sets) > 1:
                _log.info("%s networks loaded beside %s (%.0f MB each); switching between them is instant",
                          variant, ", ".join(n for n in self._sets if n != variant), set_bytes(models) / 1e6)
            return models

    def _room_for_another(self) -> bool:
        some = next(iter(self._sets.values()))
        free = self._free(getattr(some, "device", "cpu"))
        return free is not None and free >= set_bytes(some) * HEADROOM

    def close(self) -> None:
        with self._lock:
            self._sets.clear()
        gc.collect()
        _empty_cuda_cache()


def _empty_cuda_cache() -> None:
    try:
        import torch  # noqa: PLC0415

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass
