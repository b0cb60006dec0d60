"""``Animator``: one driving crop and its face observation in, one BGRA frame of the character out.

Per frame: the motion extractor on the 256x256 driving crop, the driving maths (``animation``) with
the expressions and the idle animation on top, then warping and decoding into the animated 512x512
crop, which is pasted back into the full character image through the feathered mask (``crop``),
keeping the character's alpha. The networks and keypoint maths stay on the device.

Two ways to finish a frame. On the CPU (and with ``device_paste=False``) the crop is downloaded and
pasted on the CPU (``crop.PasteBack``). On a GPU the paste-back runs on the device
(``driving/paste_device.py``, equal to the CPU path) and the finished frame goes down once, into
pinned memory, while the next frame's networks run (``engine/device_frames.py``): ``animate_async``
returns a ``PendingFrame`` that the publish stage resolves, so the frame rate is bound by the networks.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Callable

import cv2
import numpy as np
import torch

from liveportrait_core.driving.animation import MotionDriver, RetargetingNets, upload
from liveportrait_core.driving import eye_close
from liveportrait_core.engine.cancel import FrameCancelled
from liveportrait_core.characters.faces import CharacterError
from liveportrait_core.characters.library import CharacterLibrary
from liveportrait_core.characters.preparation import PreparedCharacter
from liveportrait_core.driving.expressions import NAMES as EXPRESSION_NAMES, Expressions, add_offsets
from liveportrait_core.driving.idle import IdleAnimator, blend_motion
from liveportrait_core.driving.paste_device import DevicePasteBack
from liveportrait_core.engine.device_frames import FrameDownloads, PendingFrame
from liveportrait_core.driving.voice import VowelShapes, hold_lips, voice_lip_delta
from liveportrait_core.models.networks.keypoints import MotionInfo
from liveportrait_core.models.variants import VariantModels
from liveportrait_core.settings import Settings
from liveportrait_core.voice.features import VoiceFeatures
from liveportrait_core.voice.mouth import CLOSED, MouthControls, apply_mode, mouth_from_features

_log = logging.getLogger(__name__)

#: The idle blinks' random gaps start from this seed (and again with every ``restart_clock``): the same input
#: gives the same frames, blinks included, while the gaps still look irregular.
IDLE_SEED = 0


def _idle_clocks(a: Any) -> tuple[IdleAnimator, IdleAnimator]:
    """The idle animation (seeded blinks: the same input gives the same frames) and the hidden-mouth easing:
    0 while the tracked mouth is seen .. 1 once it is hidden or the face lost, eased like the idle weight
    (``audio.mode`` fallback voices a hidden mouth; ``voice.mouth.apply_mode``). ``a``: the animation settings."""
    return IdleAnimator(a.idle_ease_s, a.idle, seed=IDLE_SEED), IdleAnimator(a.idle_ease_s, False)


def fit_frame(frame: np.ndarray, width: int, height: int, fit: str) -> np.ndarray:
    """Place a BGRA frame on a ``width`` x ``height`` canvas: contain (letterbox, transparent),
    cover (fill and crop the overflow) or stretch. 0 for a side keeps the frame's own size."""
    h, w = frame.shape[:2]
    width, height = width or w, height or h
    if (width, height) == (w, h):
        return frame
    if fit == "stretch":
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if width < w else cv2.INTER_LINEAR)
    s = min(width / w, height / h) if fit == "contain" else max(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    scaled = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if fit == "contain":
        out = np.zeros((height, width, 4), np.uint8)
        x0, y0 = (width - nw) // 2, (height - nh) // 2
        out[y0:y0 + nh, x0:x0 + nw] = scaled
        return out
    x0, y0 = (nw - width) // 2, (nh - height) // 2
    return np.ascontiguousarray(scaled[y0:y0 + height, x0:x0 + width])


def _retargeting_nets(models) -> RetargetingNets:
    mods = getattr(models, "modules", {})
    return RetargetingNets(stitching=mods.get("stitching"), lip=mods.get("lip"), eye=mods.get("eye"))


class Animator:
    """Animates the active character from driving crops (the engine's inference stage)."""

    def __init__(self, models, settings: Settings, library: CharacterLibrary | None = None,
                 variants: VariantModels | None = None, device_paste: bool | None = None) -> None:
        """``device_paste``: paste back on the networks' device and download the finished frame once
        (None: when the device is not the CPU; True on the CPU runs the same path there, for tests)."""
        self.models = models
        self.device = models.device
        self.device_paste = torch.device(self.device).type != "cpu" if device_paste is None else bool(device_paste)
        self._device_paste: DevicePasteBack | None = None
        #: the device paste-backs of the last characters (``characters.device_cache_size``): a switch back is instant
        self._device_pastes: OrderedDict[int, tuple[Any, DevicePasteBack]] = OrderedDict()
        self._downloads = FrameDownloads(self.device) if self.device_paste else None
        self.library = library
        #: the networks of each weights variant: a character on the other variant swaps them (None: one set)
        self.variants = variants
        self.nets = _retargeting_nets(models)
        a = settings.animation
        self.driver = MotionDriver(self.nets, a)
        self._ref_eye: tuple[float, float] | None = None  #: the tracked eye ratios at the neutral reference
        self.expressions = Expressions(a.expression_ease_s, device=self.device)
        self.idle, self._unseen_mouth = _idle_clocks(a)
        self.character: PreparedCharacter | None = None
        #: the user's explicit choice (``characters.active``, a pick or a hotkey; "" = none) and, when it is not
        #: the live character, why (the engine's status shows both; a refused choice is never replaced)
        self.chosen_character = ""
        self.character_error = ""
        self._calibrate = False
        self._last_live: MotionInfo | None = None
        self._last_eye: torch.Tensor | None = None
        self._last_lip: torch.Tensor | None = None
        self._base: np.ndarray | None = None  # the character as BGRA, copied for every frame
        self.last_keypoints: torch.Tensor | None = None  #: x_d of the last frame (for checks and debugging)
        self._voice: VoiceFeatures | None = None  #: the voice at this frame's time (``set_voice``), None: none
        self._vowels = VowelShapes(self.device)
        self._tracked_mouth: float | None = None  #: the last tracked lip-open ratio (official range)
        self.last_mouth: MouthControls = CLOSED  #: what the voice asked of the last frame's mouth
        #: Asked between the networks; the engine points it at its stop flag (``FrameCancelled`` then).
        self.should_stop: Callable[[], bool] = lambda: False
        self.update_settings(settings)

    @classmethod
    def from_settings(cls, settings: Settings, should_stop: Callable[[], bool] | None = None,
                      activity: Callable[[str, float | None], None] | None = None) -> "Animator":
        """Load the networks (``model.*``), open the character library and select the active character.
        ``should_stop`` is asked between the steps of the (seconds-long) load and before the preparation:
        a stopping engine gives the start up (``FrameCancelled``) after one step at most. ``activity`` gets a
        line for the status while a long load step runs (the first start's CPU measurement) and the seconds
        left when known; ("", None) after it."""
        from liveportrait_core.models.loader import load_from_settings

        def between() -> None:
            if should_stop is not None and should_stop():
                raise FrameCancelled("the engine stopped while the models were loading")

        variants = VariantModels(settings, load=lambda s: load_from_settings(s, between=between, activity=activity))
        models = variants.get(settings.model.variant)
        between()
        animator = cls(models, settings, CharacterLibrary(settings, models, models_for=variants.get), variants)
        animator.start_character()
        return animator

    def start_character(self) -> None:
        """The chosen character (``characters.active``) goes live; when it is refused none does and
        ``character_error`` says why (the networks stay loaded, so picking another one is instant). Only
        with no choice is the first usable image of the folder taken, and the log says so."""
        active = self.settings.characters.active
        if active:
            try:
                self.select_character(active)
            except CharacterError:  # the library has logged the reason; the engine's status shows it
                _log.warning("nothing is animated: the chosen character %s (characters.active) is refused; pick "
                             "another one or fix the file (it is tried again when it changes)", active)
            return
        names = self.library.names()
        if not names:
            raise CharacterError("no character images found; put a PNG/JPEG/WebP portrait into "
                                 f"{self.settings.characters.folder} (or set characters.folder)")
        refused: list[str] = []
        for name in names:
            try:
                self.set_character(self.library.get(name))
                break
            except CharacterError as e:
                refused.append(str(e))
        else:
            raise CharacterError("none of the character images could be used: " + "; ".join(refused))
        _log.info("no character chosen (characters.active is empty): using %s, the first usable one in the "
                  "folder%s", name, f"; refused: {'; '.join(refused)}" if refused else "")

    # -- configuration ------------------------------------------------------------------------------
    def update_settings(self, settings: Settings) -> None:
        self.settings = settings
        a = settings.animation
        self._configure_driver()
        self.expressions.ease_s = a.expression_ease_s
        self.idle.ease_s, self.idle.alive = a.idle_ease_s, a.idle
        self._unseen_mouth.ease_s = a.idle_ease_s
        if self.library is not None and self.library.settings is not settings:
            self.library.update_settings(settings)
            if self.character_error:  # e.g. a lowered min_face_confidence: the refused choice gets another try
                self._retry_chosen()

    def set_character(self, prepared: PreparedCharacter) -> None:
        """Switch to a prepared character (the neutral reference of the driving face is kept)."""
        if prepared.device is None or torch.device(prepared.device) != torch.device(self.device):
            prepared = prepared.to(self.device)
        if self.variants is not None and prepared.variant != getattr(self.models, "variant", prepared.variant):
            self._use_models(self.variants.get(prepared.variant))
        self.character = prepared
        self._configure_driver()
        self.driver.set_source(prepared.source_motion())
        paste = prepared.ensure_paste_back()
        self._base = np.dstack([prepared.image_bgr, prepared.alpha if prepared.alpha is not None
                                else np.full(prepared.image_bgr.shape[:2], 255, np.uint8)])
        self._paste = paste
        if self._downloads is not None:  # everything constant about the character, once, on the device
            self._device_paste = self._device_paste_for(paste, prepared.crop_alpha512)
            self._downloads.reset(self._device_paste.new_frame)

    def character_settings(self) -> Settings:
        """The settings the live character runs with: the global ones, its variant's defaults (the official
        animal ones), then its sidecar's own (``characters.sidecar.character_settings``)."""
        from liveportrait_core.characters.sidecar import character_settings  # noqa: PLC0415

        c = self.character
        return character_settings(self.settings, c.sidecar if c is not None else None)

    def _configure_driver(self) -> None:
        """The driver takes the live character's settings, and drives it as the official animal script does
        when it is on the animal weights (``animation.animal_driving``)."""
        a = self.character_settings().animation
        self.driver.configure(a)
        variant = self.character.variant if self.character is not None else self.settings.model.variant
        self.driver.set_animal(variant == "animal" and a.animal_driving)

    def _use_models(self, models) -> None:
        """Animate with another set of networks (a character on the other weights variant)."""
        _log.info("switching to the %s networks for this character", getattr(models, "variant", "?"))
        self.models = models
        self.nets = _retargeting_nets(models)
        self.driver.nets = self.nets

    def _device_paste_for(self, paste, crop_alpha: np.ndarray | None) -> DevicePasteBack:
        """The character's device paste-back (its grid, mask and blend terms take a few hundred ms to make for
        a large face), kept for the last ``characters.device_cache_size`` characters."""
        key = id(paste)
        hit = self._device_pastes.pop(key, None)
        if hit is None or hit[0] is not paste:  # the id of a released paste-back may be reused
            hit = (paste, DevicePasteBack(paste, crop_alpha, self.device))
        self._device_pastes[key] = hit
        while len(self._device_pastes) > max(1, self.settings.characters.device_cache_size):
            self._device_pastes.popitem(last=False)
        return hit[1]

    def calibrate(self) -> None:
        """The next tracked frame becomes the neutral reference."""
        self._calibrate = True

    def restart_clock(self) -> None:
        """The frames' clock starts again (a file processed frame by frame: media time from 0, ``capture.clock``).
        Everything timed or learnt on the previous run is dropped — the smoothing filters, the idle state and
        its blink gaps, the expressions' easing clock, the neutral reference and the last tracked face — so that
        a run gives the same frames in an animator kept from an earlier run as in a fresh one. The expressions
        switched on stay on."""
        self.driver.set_reference(None)  # (resets the filters)
        self._calibrate = False
        self._ref_eye = None
        self._last_live = self._last_eye = self._last_lip = None
        self._tracked_mouth = None
        self.idle, self._unseen_mouth = _idle_clocks(self.settings.animation)
        self.expressions.restart_clock()

    # -- the engine's character and expression commands ---------------------------------------------
    def characters(self) -> list[str]:
        return self.library.names() if self.library is not None else []

    def current_character(self) -> str:
        return self.character.name if self.character is not None else ""

    def select_character(self, key: int | str) -> str:
        """Switch by hotkey slot (0-based) or name: an explicit choice. A refused image keeps the current
        character live, and ``character_error`` says why the chosen one is not (CharacterError raised)."""
        if self.library is None:
            raise CharacterError("no character library")
        self.chosen_character = f"slot {key + 1}" if isinstance(key, int) else str(key)
        try:
            self.chosen_character = self.library.resolve(key)
            self.set_character(self.library.get(self.chosen_character))
        except CharacterError as e:
            self.character_error = str(e)
            raise
        self.character_error = ""
        return self.character.name

    def follow_files(self) -> None:
        """Pick up changed files (at most every ``characters.rescan_s``): the live character is prepared
        again, and a refused chosen one gets another try, so fixing the file is enough."""
        if self.library is None:
            return
        changed = self.library.rescan()
        if self.character is not None and self.character.name in changed:
            self._reload_current()
        if self.character_error and self.chosen_character in changed:
            self._retry_chosen()

    def _retry_chosen(self) -> None:
        if self.library is None or self.chosen_character not in self.library.names():
            return
        try:
            self.select_character(self.chosen_character)
            _log.info("the chosen character %s is live now", self.chosen_character)
        except CharacterError as e:
            _log.info("the chosen character %s still cannot be used: %s", self.chosen_character, e)

    def next_character(self, step: int = 1) -> str:
        names = self.characters()
        if not names:
            raise CharacterError("no characters")
        i = names.index(self.current_character()) if self.current_character() in names else -step
        errors: list[str] = []
        for k in range(1, len(names) + 1):
            try:
                return self.select_character(names[(i + k * step) % len(names)])
            except CharacterError as e:
                errors.append(str(e))
        raise CharacterError("; ".join(errors))

    def set_voice(self, features: VoiceFeatures | None) -> None:
        """The voice features for the next frame (the engine reads them at the frame's own timestamp); None:
        no voice. What they do depends on ``audio.mode`` (``voice.mouth.apply_mode``)."""
        self._voice = features

    def _mouth(self, idle_weight: float, hidden_weight: float) -> MouthControls:
        a = getattr(self.settings, "audio", None)
        if a is None or a.mode == "off" or self._voice is None:
            return CLOSED
        return apply_mode(a.mode, mouth_from_features(self._voice, a), idle_weight, self._tracked_mouth,
                          hidden_weight)

    @staticmethod
    def voice_motion(d: MotionInfo, neutral: MotionInfo, mouth: MouthControls) -> MotionInfo:
        """``d`` with the tracked lip motion held at neutral (as far as ``hold_tracked_mouth``) when the voice
        alone drives the mouth."""
        hold = mouth.hold_tracked_mouth
        return hold_lips(d, neutral, hold) if hold > 0.0 and d is not neutral else d

    def set_expression(self, name: str, active: bool, strength: float = 1.0) -> None:
        self.expressions.set(name, active, strength)

    @staticmethod
    def expression_names() -> list[str]:
        return list(EXPRESSION_NAMES)

    def close(self) -> None:
        self.character = None
        self._base = None
        self._device_paste = None
        self._device_pastes.clear()
        if self._downloads is not None:
            self._downloads.clear()
        if self.library is not None:
            self.library.close()
        if self.variants is not None:
            self.variants.close()

    # -- per frame ----------------------------------------------------------------------------------
    def _driving_motion(self, driving_rgb256: np.ndarray) -> MotionInfo:
        x = upload(torch.from_numpy(np.ascontiguousarray(driving_rgb256)), self.device)
        x = x.permute(2, 0, 1)[None].float().div_(255.0)
        return MotionInfo.from_raw(self.models.run("motion_extractor", x))

    def _ratios(self, observation: Any) -> tuple[torch.Tensor, torch.Tensor]:
        eye = getattr(observation, "eye_open", None)
        mouth = getattr(observation, "mouth_open", None)
        src = self.driver.source
        # off CUDA a plain copy of these temporary host tensors (a non-blocking one may outlive its source on MPS)
        f32 = torch.float32
        e = src.eye_ratio if eye is None else upload(torch.tensor([list(eye)], dtype=f32), self.device, False)
        m = src.lip_ratio if mouth is None else upload(torch.tensor([[float(mouth)]], dtype=f32), self.device, False)
        return e, m

    def driving_keypoints(self, driving_rgb256: np.ndarray | None, observation: Any) -> torch.Tensor:
        """x_d for this frame: tracked motion (or idle), expressions and idle life on top."""
        if self.character is None:
            raise CharacterError("no character selected")
        now = getattr(observation, "timestamp", None)
        now = time.perf_counter() if now is None else float(now)
        found = driving_rgb256 is not None and bool(getattr(observation, "found", False))
        w = self.idle.update(found, now)
        unseen = self._unseen_mouth.update(found and bool(getattr(observation, "mouth_visible", True)), now)
        if found:
            d = self._driving_motion(driving_rgb256)
            # the tracker flags the steady, frontal frame it takes as neutral (calibrate_now); until then the
            # first tracked frame serves, and calibrate() makes the next one the reference
            if self._calibrate or self.driver.reference is None or getattr(observation, "calibrate_now", False):
                self.driver.set_reference(d)
                self._calibrate = False
                eye_now = getattr(observation, "eye_open", None)
                self._ref_eye = None if eye_now is None else (float(eye_now[0]), float(eye_now[1]))
            self._last_live = self.driver.condition(d, now)
            self._last_eye, self._last_lip = self._ratios(observation)
            mouth = getattr(observation, "mouth_open", None)
            self._tracked_mouth = None if mouth is None else float(mouth)
        neutral = self.driver.neutral()
        src = self.driver.source
        if self._last_live is None:
            d_eff, eye, lip = neutral, src.eye_ratio, src.lip_ratio
        else:
            d_eff = blend_motion(self._last_live, neutral, w)
            eye = torch.lerp(self._last_eye, src.eye_ratio, w)
            lip = torch.lerp(self._last_lip, src.lip_ratio, w)
        offsets = add_offsets(self.expressions.offsets(now), self.idle.offsets(now, self.expressions))
        # the voice (docs/VOICE.md): vowel shapes beside the expressions, the opening through the lip MLP
        self.last_mouth = mouth = self._mouth(w, unseen)
        if mouth.active:
            d_eff = self.voice_motion(d_eff, neutral, mouth)
            if mouth.hold_tracked_mouth > 0.0:  # nor does the tracked lip ratio drive the lip retargeting
                lip = torch.lerp(lip, src.lip_ratio, min(mouth.hold_tracked_mouth, 1.0))
            offsets = add_offsets(offsets, self._vowels.offsets(mouth.vowels))
        blink = 0.0
        if self.driver.settings.eye_close_boost > 0:  # the eye-close boost: how closed, from host floats
            tracked = eye_close.tracked_blink(getattr(observation, "eye_open", None) if found else None, self._ref_eye)
            idle_blink = self.idle.blink_level(now) if self.idle.alive else 0.0
            blink = max(eye_close.blink_level(tracked, idle_blink, w), min(1.0, self.expressions.weight("blink")))
        return self.driver.drive_conditioned(d_eff, eye_ratio=eye, lip_ratio=lip, offsets=offsets, blink=blink,
                                             voice=voice_lip_delta(self.nets, src, mouth.open_ratio))

    def render_crop_device(self, x_d: torch.Tensor) -> torch.Tensor:
        """Warp and decode: the animated crop as a (3, 512, 512) BGR uint8 tensor on the device."""
        c = self.character
        with torch.inference_mode():
            self._check_stop()
            feature = self.models.run("warping_module", c.f_s, kp_driving=x_d, kp_source=self.driver.source.x_s)
            self._check_stop()
            img = self.models.run("spade_generator", feature["out"])
            u8 = (img[0].clamp(0.0, 1.0) * 255.0).to(torch.uint8)  # truncation, as the official astype
            return u8.flip(0)

    def render_crop(self, x_d: torch.Tensor) -> np.ndarray:
        """The animated 512x512 crop, BGR uint8 on the host (one transfer)."""
        return self.render_crop_device(x_d).permute(1, 2, 0).contiguous().cpu().numpy()

    def _check_stop(self) -> None:
        if self.should_stop():
            raise FrameCancelled("the engine is stopping")

    def animate(self, driving_rgb256: np.ndarray | None, observation: Any) -> np.ndarray:
        """The BGRA uint8 frame: the character with its animated face (idle when no face is found)."""
        if self.device_paste and self.settings.outputs.paste_back:
            return self.animate_async(driving_rgb256, observation).result()
        self.follow_files()
        x_d = self.driving_keypoints(driving_rgb256, observation)
        self.last_keypoints = x_d
        crop = self.render_crop(x_d)
        o = self.settings.outputs
        if o.paste_back:
            frame = self._paste.paste_bgra(crop, self.character.crop_alpha512, out=self._base.copy())
        else:
            a = self.character.crop_alpha512
            frame = np.dstack([crop, a if a is not None else np.full(crop.shape[:2], 255, np.uint8)])
        return fit_frame(frame, o.width, o.height, o.fit)

    def animate_async(self, driving_rgb256: np.ndarray | None, observation: Any) -> PendingFrame:
        """``animate`` without waiting for the frame: with the device paste-back the work is queued on the
        device and the ``PendingFrame`` waits for the finished frame's download in ``result()`` (the engine's
        publish stage calls it); otherwise the frame is made here and handed on ready."""
        if not (self.device_paste and self.settings.outputs.paste_back):  # the crop output is pasted nowhere
            return PendingFrame(torch.from_numpy(self.animate(driving_rgb256, observation)))
        started = time.perf_counter()
        self.follow_files()
        x_d = self.driving_keypoints(driving_rgb256, observation)
        self.last_keypoints = x_d
        crop = self.render_crop_device(x_d)
        with torch.inference_mode():
            frame = self._device_paste.paste(crop, self._downloads.next_buffer())
        o = self.settings.outputs
        h, w = frame.shape[:2]
        size, fit = (o.width, o.height), o.fit  # this frame's output size, whatever the settings say later
        finish = None if (size[0] or w, size[1] or h) == (w, h) else lambda f: fit_frame(f, *size, fit)
        return self._downloads.download(frame, finish, started)

    def _reload_current(self) -> None:
        name = self.character.name
        try:
            self.set_character(self.library.get(name))
            _log.info("character %s changed on disk and was prepared again", name)
        except CharacterError as e:
            _log.warning("%s changed on disk and cannot be used any more (%s); keeping the previous version",
                         name, e)
