"""The character library: find character images, keep them in a stable order, prepare each once, keep a few
on the GPU.

Preparing a character (``preparation``) costs two network passes and a landmark pass; doing that on every
switch would stall the stream. So each prepared character is kept in the disk cache (``cache``) and the last
``characters.device_cache_size`` used ones stay on the device: a switch between them only swaps references.
User files are only ever read; the cache lives in its own folder.

An image's sidecar (``sidecar.py``, ``IMAGE.yaml``) is read with it: a placed face replaces detection, its
settings apply to that character (``characters.min_face_confidence`` here, the rest in the animator), its model
variant chooses the networks that prepare it (``models_for``, the engine's ``models.variants.VariantModels``);
the sidecar's content is part of the cache key and a change to it prepares the image again.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from liveportrait_core import paths
from liveportrait_core.characters.cache import cache_key, file_digest, load_prepared, model_identity, save_prepared
from liveportrait_core.characters.faces import CharacterError, FaceFinder, LazyFaceFinder, SourceFace
from liveportrait_core.characters.preparation import PreparedCharacter, load_character_image, prepare_character
from liveportrait_core.characters.sidecar import Sidecar, load_sidecar, sidecar_stamp
from liveportrait_core.images import list_images
from liveportrait_core.settings import CharacterSettings, Settings

_log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# finding files


def character_folders(cs: CharacterSettings) -> list[Path]:
    """The configured folders, in order: ``characters.folder`` then ``characters.extra_folders``."""
    out: list[Path] = []
    for f in [cs.folder, *cs.extra_folders]:
        if f:
            p = paths.resolve(f)
            if p not in out:
                out.append(p)
    return out


def list_character_files(cs: CharacterSettings) -> list[Path]:
    """Character image files in a stable order (folder order, then file name); missing folders are skipped."""
    files: list[Path] = []
    for folder in character_folders(cs):
        if not folder.is_dir():
            _log.debug("characters folder %s does not exist; skipped", folder)
            continue
        try:
            found = list_images(folder)
        except OSError as e:
            _log.warning("cannot list characters folder %s: %s", folder, e)
            continue
        files.extend(sorted(found, key=lambda p: (p.name.casefold(), p.name)))
    return files


# ------------------------------------------------------------------------------------------------
# the library


@dataclass
class _Entry:
    name: str
    path: Path
    stamp: tuple  #: (mtime_ns, size) of the image and of its sidecar (None without one) when last seen
    digest: str | None = None  #: content hash for that stamp


class CharacterLibrary:
    """The ordered list of character files, their preparation and the device LRU cache.

    Thread-safe: the engine lists and selects from any thread, the animator prepares on the inference
    thread.
    """

    def __init__(self, settings: Settings, models, face_finder: FaceFinder | None = None,
                 clock: Callable[[], float] = time.monotonic, models_for: Callable[[str], object] | None = None) -> None:
        self.models = models
        #: the networks of a weights variant (a character's sidecar may ask for the other one); None: ``models``
        self.models_for = models_for
        self._model_ids: dict[str, str] = {}  #: model identity per weights variant (``models_for``'s sets)
        self._own_finders: dict[float, LazyFaceFinder] = {}  # per-character thresholds (sidecar settings)
        self._face_finder = face_finder
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: "OrderedDict[str, _Entry]" = OrderedDict()
        self._device: "OrderedDict[str, PreparedCharacter]" = OrderedDict()
        self._errors: dict[str, str] = {}
        self._model_id: str | None = None
        self._last_scan = -1e18
        self.prepare_calls = 0  #: full preparations run (network passes), for tests and status
        self.update_settings(settings)

    # -- settings and scanning ---------------------------------------------------------------------
    def update_settings(self, settings: Settings) -> None:
        with self._lock:
            self.settings = settings
            cs = settings.characters
            self.cache_dir = paths.resolve(cs.cache_dir) if cs.cache_dir else paths.user_cache_dir() / "characters"
            while len(self._device) > cs.device_cache_size:
                self._device.popitem(last=False)
            finder = self._face_finder
            if isinstance(finder, LazyFaceFinder) and not finder.uses(cs):
                self._face_finder = None  # new thresholds: refused images get another chance on next use
                finder.close()  # its MediaPipe graph is not needed any more
            self.rescan(force=True)

    @property
    def face_finder(self) -> FaceFinder:
        if self._face_finder is None:
            self._face_finder = LazyFaceFinder(self.settings.characters)
        return self._face_finder

    def rescan(self, force: bool = False) -> list[str]:
        """Pick up added, removed and changed files (at most every ``rescan_s``); returns changed names."""
        with self._lock:
            now = self._clock()
            every = self.settings.characters.rescan_s
            if not force and (every <= 0 or now - self._last_scan < every):
                return []
            self._last_scan = now
            found: "OrderedDict[str, _Entry]" = OrderedDict()
            for p in list_character_files(self.settings.characters):
                name = p.name if p.name not in found else f"{p.parent.name}/{p.name}"
                try:
                    st = p.stat()
                except OSError:
                    continue
                old = self._entries.get(name)
                stamp = (st.st_mtime_ns, st.st_size, sidecar_stamp(p))
                found[name] = old if (old is not None and old.path == p and old.stamp == stamp) else _Entry(name, p, stamp)
            changed = [n for n in set(found) | set(self._entries)
                       if n not in found or n not in self._entries or found[n] is not self._entries[n]]
            for n in changed:
                self._device.pop(n, None)
                self._errors.pop(n, None)
            if changed and self._entries:
                _log.info("characters changed: %s", ", ".join(sorted(changed)))
            self._entries = found
            return sorted(changed)

    # -- listing -----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def path(self, name: str) -> Path:
        with self._lock:
            return self._entry(name).path

    def errors(self) -> dict[str, str]:
        """Characters that could not be prepared, with the reason."""
        with self._lock:
            return dict(self._errors)

    def slots(self) -> list[str]:
        """Characters for hotkeys 1-9: ``hotkeys.character_slots`` when set, else the library order."""
        with self._lock:
            wanted = [s for s in self.settings.hotkeys.character_slots if s]
            return (wanted or list(self._entries))[:9]

    def resolve(self, key: int | str) -> str:
        """A slot (0-based: hotkey 1 is slot 0, the engine's convention) or a file name (or its stem)."""
        with self._lock:
            if isinstance(key, int):
                slots = self.slots()
                if not 0 <= key < len(slots):
                    raise CharacterError(f"no character in slot {key + 1}; {len(slots)} slot(s) are filled "
                                         f"({', '.join(slots) or 'no characters found'})")
                key = slots[key]
            if key in self._entries:
                return key
            matches = [n for n in self._entries if Path(n).name == key or Path(n).stem == key]
            if len(matches) == 1:
                return matches[0]
            raise CharacterError(f"unknown character {key!r}; found: {', '.join(self._entries) or 'none'} "
                                 f"(in {', '.join(map(str, character_folders(self.settings.characters)))})")

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise CharacterError(f"unknown character {name!r}") from None

    # -- preparing ---------------------------------------------------------------------------------
    def model_id(self, models=None) -> str:
        models = self.models if models is None else models
        if models is self.models:
            if self._model_id is None:
                self._model_id = model_identity(models)
            return self._model_id
        variant = getattr(models, "variant", "")  # a set released and loaded again has the same weights
        if variant not in self._model_ids:
            self._model_ids[variant] = model_identity(models)
        return self._model_ids[variant]

    def models_of(self, sidecar: Sidecar | None):
        """The networks a character is prepared and animated with: its sidecar's variant, else ``model.variant``."""
        variant = (sidecar.variant if sidecar is not None else None) or self.settings.model.variant
        if self.models_for is None or variant == getattr(self.models, "variant", variant):
            return self.models
        from liveportrait_core.models.checkpoint.weights import WeightsError  # noqa: PLC0415
        from liveportrait_core.models.loader import ModelLoadError  # noqa: PLC0415

        try:
            return self.models_for(variant)
        except (WeightsError, ModelLoadError, OSError) as e:  # the others keep working; the message says what to do
            raise CharacterError(f"{sidecar.path if sidecar is not None else 'model.variant'}: this character "
                                 f"needs the {variant} networks, which cannot be loaded: {e}") from None

    def finder_for(self, sidecar: Sidecar | None) -> FaceFinder:
        """The face finder with the character's own ``characters.min_face_confidence`` when its sidecar sets one."""
        own = sidecar.settings.get("characters.min_face_confidence") if sidecar is not None else None
        if own is None or own == self.settings.characters.min_face_confidence:
            return self.face_finder
        wanted = dataclasses.replace(self.settings.characters, min_face_confidence=own)
        finder = self._own_finders.get(own)
        if finder is None or not finder.uses(wanted):  # new: or made before characters.min_face_px changed
            if finder is not None:
                finder.close()
            finder = self._own_finders[own] = LazyFaceFinder(wanted)
        return finder

    def sidecar(self, name: str) -> Sidecar | None:
        """The validated sidecar of a character (None without one); SidecarError (a CharacterError) names
        the file and the bad field."""
        with self._lock:
            return load_sidecar(self._entry(self.resolve(name)).path)

    def get(self, name: str) -> PreparedCharacter:
        """The prepared character on the device: from the LRU, the disk cache, or prepared now."""
        with self._lock:
            name = self.resolve(name)
            hit = self._device.get(name)
            if hit is not None:
                self._device.move_to_end(name)
                return hit
            entry = self._entry(name)
            try:
                prepared = self._load_or_prepare(entry)
            except CharacterError as e:
                self._errors[name] = str(e)
                _log.warning("%s", e)
                raise
            self._errors.pop(name, None)
            prepared.ensure_paste_back()
            self._device[name] = prepared
            while len(self._device) > self.settings.characters.device_cache_size:
                self._device.popitem(last=False)
            return prepared

    def close(self) -> None:
        """Release the device copies and the face finder (MediaPipe)."""
        with self._lock:
            self._device.clear()
            close = getattr(self._face_finder, "close", None)
            if close is not None:
                close()
            for finder in self._own_finders.values():
                finder.close()
            self._own_finders.clear()

    def check(self, name: str) -> SourceFace:
        """The checks of a preparation without the networks (decode, face, size): fast, and possible before
        the models load. Raises CharacterError (also kept in ``errors()``)."""
        with self._lock:
            name = self.resolve(name)
            entry = self._entry(name)
            try:
                sidecar = load_sidecar(entry.path)
                _img, face = load_character_image(entry.path, self.finder_for(sidecar),
                                                  self.settings.characters.min_face_px, name, sidecar)
            except CharacterError as e:
                self._errors[name] = str(e)
                raise
            return face

    def cached_on_device(self) -> list[str]:
        with self._lock:
            return list(self._device)

    def _load_or_prepare(self, entry: _Entry) -> PreparedCharacter:
        try:
            if entry.digest is None:
                entry.digest = file_digest(entry.path)
        except OSError as e:
            raise CharacterError(f"{entry.path}: cannot read the file ({e.strerror or e})") from None
        sidecar = load_sidecar(entry.path)  # SidecarError: a CharacterError naming the file and field
        models = self.models_of(sidecar)
        variant = getattr(models, "variant", "human")
        key = cache_key(entry.digest, self.model_id(models), sidecar.digest if sidecar is not None else "")
        cached = load_prepared(entry.path, entry.name, key, models.device, self.cache_dir)
        if cached is not None:
            cached.sidecar, cached.variant = sidecar, variant
            _log.info("character %s loaded from the cache", entry.name)
            return cached
        t0 = time.perf_counter()
        self.prepare_calls += 1
        prepared = prepare_character(entry.path, models, self.finder_for(sidecar),
                                     min_face_px=self.settings.characters.min_face_px, name=entry.name, key=key,
                                     sidecar=sidecar)
        prepared.variant = variant
        _log.info("character %s prepared in %.2f s", entry.name, time.perf_counter() - t0)
        try:
            save_prepared(prepared, self.cache_dir)
        except OSError as e:
            _log.warning("cannot write the character cache in %s (%s); %s will be prepared again next time",
                         self.cache_dir, e.strerror or e, entry.name)
        return prepared


def check_chosen_character(settings: Settings) -> str:
    """The explicitly chosen character (``characters.active``, e.g. from ``--character``), checked before
    anything heavy loads: its library name, or CharacterError naming the file and why it cannot be used.
    An explicit choice is refused loudly, never replaced by another file of its folder."""
    library = CharacterLibrary(settings, models=None)
    try:
        name = library.resolve(settings.characters.active)
        library.check(name)
        return name
    finally:
        library.close()
