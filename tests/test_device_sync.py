"""No host-device sync on the device frame path (issue #14), checked on the CPU device.

A sync makes the host wait for the GPU's queued work, so the next frame's networks cannot be queued
behind the current one. On the CPU device nothing waits, so instead the operations that would sync on a
GPU are made to fail while frames are queued (``animate_async`` with the device paste-back): reading a
tensor's values on the host (``item``, ``tolist``, ``numpy``, ``bool``/``float``/``int``/``index`` of a
tensor), downloads (``cpu``, ``.to`` without ``non_blocking``), data-dependent shapes (``nonzero``,
``masked_select``, ``unique``), blocking uploads (``torch.tensor``/``as_tensor`` straight onto a device) and
explicit waits. The allowed transfers are the documented ones (docs/ARCHITECTURE.md): the driving crop and
the tracked ratios, expression and vowel weights up (``animation.upload``: pinned and
non-blocking on CUDA) and the finished frame down (``FrameDownloads.download``). The first frame (the reference, a new character) may sync; the frames after
it may not. Reduced networks (models/small.py, random weights: the path is what is checked)."""
from __future__ import annotations

import contextlib
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from liveportrait_core.characters.library import CharacterLibrary
from liveportrait_core.driving.animation import MotionDriver, SourceMotion, upload
from liveportrait_core.engine.device_frames import FrameDownloads
from liveportrait_core.engine.pipeline import Animator
from liveportrait_core.models.small import reduced_models
from liveportrait_core.voice.features import VoiceFeatures
from tests.test_device_paste_pipeline import _driving, _settings

#: Tensor methods that read values on the host or download (a sync on a GPU).
_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "nonzero",
          "masked_select", "unique")
_TORCH = ("nonzero", "masked_select", "unique")
#: The per-frame transfers the design allows (their code objects: the caller of ``.to``).
_ALLOWED_TO = {upload.__code__, FrameDownloads.download.__code__}


class SyncFound(AssertionError):
    pass


@contextlib.contextmanager
def no_host_sync():
    """Fail any operation that would make the host wait for the device (see the module docstring)."""
    found: list[str] = []

    def fail(what: str):
        caller = sys._getframe(2)  # noqa: SLF001 - the frame that asked for it
        found.append(f"{what} at {caller.f_code.co_filename}:{caller.f_lineno} ({caller.f_code.co_name})")
        raise SyncFound(found[-1])

    saved: list[tuple[object, str, object]] = []

    def patch(owner, name, replacement):
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    for name in _READS:
        patch(torch.Tensor, name, lambda self, *a, _n=name, **k: fail(f"Tensor.{_n}"))
    for name in _TORCH:
        patch(torch, name, lambda *a, _n=name, **k: fail(f"torch.{_n}"))
    to, tensor, as_tensor = torch.Tensor.to, torch.tensor, torch.as_tensor

    def checked_to(self, *args, **kwargs):
        target = kwargs.get("device", args[0] if args and isinstance(args[0], (str, torch.device)) else None)
        caller = sys._getframe(1).f_code  # noqa: SLF001
        if target is not None and caller not in _ALLOWED_TO:
            # a copy from pageable memory may wait for the stream even with non_blocking (CUDA's documented
            # behaviour): per frame, host tensors go up through the pinned uploads only
            fail(f"Tensor.to({target!s}) outside the pinned uploads")
        return to(self, *args, **kwargs)

    def checked(make, label):
        def f(*args, **kwargs):
            if kwargs.get("device") is not None:
                fail(f"{label}(..., device=) (a blocking upload)")
            return make(*args, **kwargs)
        return f

    patch(torch.Tensor, "to", checked_to)
    patch(torch, "tensor", checked(tensor, "torch.tensor"))
    patch(torch, "as_tensor", checked(as_tensor, "torch.as_tensor"))
    patch(torch.cuda, "synchronize", lambda *a, **k: fail("torch.cuda.synchronize"))
    try:
        yield found
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)
    assert not found, "host-device syncs on the frame path:\n" + "\n".join(found)


@pytest.fixture(scope="module")
def small_models():
    return reduced_models("cpu")


def _voice(t: float) -> VoiceFeatures:
    return VoiceFeatures(timestamp=t, db=-20.0, level=0.8, gate_open=True, vowels=(0.0, 1.0) + (0.0,) * 3)


CONFIGS = {
    # smoothing (One Euro), the rotation clamp, the eye-close boost and an expression
    "live": dict(smoothing=True, eye_close_boost=1.0),
    # the official options that keep state per reference or source, retargeting from the tracked ratios
    "official": dict(smoothing=False, driving_option="expression-friendly", eye_retargeting=True,
                     lip_retargeting=True, normalize_lip=True, lip_normalize_threshold=0.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_queued_frames_never_wait_for_the_device(small_models, tmp_path, config):
    """That the device frames equal the CPU path's is tests/test_device_paste_pipeline.py's; here: no sync."""
    s = _settings(tmp_path, with_alpha=True)
    for k, v in CONFIGS[config].items():
        setattr(s.animation, k, v)
    if config == "official":
        s.audio.mode = "mix"
    dev = Animator(small_models, s, CharacterLibrary(s, small_models), device_paste=True)
    dev.select_character(0)
    dev.set_expression("smile", True)

    def frame(i: int):
        """Frame i of rounds of 5: a tracked face for 3 frames, then lost for 2 (the idle animation eases in)."""
        if config == "official":
            dev.set_voice(_voice(i / 30.0))
        if i % 5 < 3:
            o = SimpleNamespace(found=True, timestamp=i / 30.0, eye_open=(0.30 - 0.01 * (i % 5), 0.29),
                                mouth_open=0.05 * (i % 5), calibrate_now=False)
            return _driving(dev, i), o
        return None, SimpleNamespace(found=False, timestamp=i / 30.0)

    # the first round may sync: the reference (once per reference), constants made once per device
    warm = [dev.animate_async(*frame(i)) for i in range(5)]
    with no_host_sync():
        pending = [dev.animate_async(*frame(i)) for i in range(5, 10)]
    frames = [p.result() for p in warm + pending]
    assert all(f.shape == frames[0].shape and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[5], frames[6]), "the frames move"
    dev.close()


def test_the_guard_catches_a_sync():
    """The check can fail: each kind of sync is caught (and the patches are undone afterwards)."""
    t = torch.ones(3)
    for bad in (lambda: t.sum().item(), lambda: bool(t.any()), lambda: float(t[0]), lambda: t.tolist(),
                lambda: t.cpu(), lambda: t.to("cpu"), lambda: t.to("cpu", non_blocking=True),
                lambda: torch.tensor([1.0], device="cpu"),
                lambda: t.nonzero(), lambda: torch.unique(t)):
        with pytest.raises(AssertionError, match="host-device syncs"):
            with no_host_sync():
                with contextlib.suppress(SyncFound):  # code that swallows the error is still caught
                    bad()
    assert t.sum().item() == 3.0 and bool(t.any()) and torch.Tensor.to is not None


def test_single_driving_image_frames_never_wait_for_the_device():
    """``MotionDriver``'s single-image mode (the official lip_array reference) once made lip_array per frame."""
    from tests.test_animation import recipe_nets
    from liveportrait_core.models.networks.keypoints import MotionInfo

    gen = torch.Generator().manual_seed(3)

    def info() -> MotionInfo:
        r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
        return MotionInfo.from_raw({"pitch": r(1, 66), "yaw": r(1, 66), "roll": r(1, 66), "kp": r(1, 63) * 0.1,
                                    "exp": r(1, 63) * 0.01, "t": r(1, 3) * 0.01, "scale": r(1, 1).abs() + 1})

    source = SourceMotion(info(), torch.tensor([[0.3, 0.3]]), torch.tensor([[0.1]]))
    driver = MotionDriver(recipe_nets(), additions=False, single_image=True)
    driver.set_source(source)
    driver.drive(info())  # the first frame: once-per-device constants are made here
    frames = [info() for _ in range(3)]
    with no_host_sync():
        got = [driver.drive(d) for d in frames]
    assert all(g.shape == (1, 21, 3) and torch.isfinite(g).all() for g in got)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_frames_never_sync(tmp_path):
    """On CUDA the driver itself tells: PyTorch's sync debug mode makes any synchronising call raise."""
    s = _settings(tmp_path, with_alpha=True)
    s.animation.eye_close_boost = 1.0
    models = reduced_models("cuda")
    dev = Animator(models, s, CharacterLibrary(s, models))
    assert dev.device_paste
    dev.select_character(0)
    obs = lambda i: SimpleNamespace(found=i % 5 < 3, timestamp=i / 30.0, eye_open=(0.3, 0.29),  # noqa: E731
                                    mouth_open=0.1, calibrate_now=False)
    warm = [dev.animate_async(_driving(dev, i) if i % 5 < 3 else None, obs(i)) for i in range(5)]
    torch.cuda.set_sync_debug_mode("error")
    try:
        pending = [dev.animate_async(_driving(dev, i) if i % 5 < 3 else None, obs(i)) for i in range(5, 10)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(p.result().dtype == np.uint8 for p in warm + pending)
    dev.close()
