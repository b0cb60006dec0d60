"""The Animator's device paste-back path (paste on the device, one download, frames in flight), run on the
CPU device, against its CPU path. Reduced networks (models/small.py: random weights, test numbers only):
the paste-back and the frame hand-over are what is checked, not the face."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from liveportrait_core.characters.library import CharacterLibrary
from liveportrait_core.engine.device_frames import FrameDownloads, PendingFrame
from liveportrait_core.engine.pipeline import Animator
from liveportrait_core.models.small import reduced_models
from liveportrait_core.settings import Settings
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def small_models():
    return reduced_models("cpu")


def _settings(tmp_path, with_alpha: bool) -> Settings:
    folder = tmp_path / "chars"
    folder.mkdir()
    src = shared_path("testdata", "characters", "s1.jpg")
    shutil.copy(shared_path("testdata", "characters", "s5.jpg"), folder / "s5.jpg")  # a second one to switch to
    if with_alpha:  # a soft round alpha: the composite branch of the paste-back
        img = cv2.resize(cv2.imread(str(src)), (480, 520), interpolation=cv2.INTER_AREA)
        yy, xx = np.mgrid[0:520, 0:480]
        alpha = np.clip((1.0 - np.hypot(xx - 240, yy - 250) / 260) * 400, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / "round.png"), np.dstack([img, alpha]))
    else:
        shutil.copy(src, folder / "s1.jpg")
    s = Settings()
    s.characters.folder = str(folder)
    s.characters.cache_dir = str(tmp_path / "cache")
    s.characters.rescan_s = 3600.0
    s.animation.smoothing = False
    return s


def _pair(settings, models):
    """The same character in two animators: the CPU paste-back and the device one (on the CPU device)."""
    lib = CharacterLibrary(settings, models)
    cpu, dev = Animator(models, settings, lib), Animator(models, settings, lib, device_paste=True)
    for a in (cpu, dev):
        a.select_character(0)
    return cpu, dev


@pytest.fixture(scope="module")
def opaque(small_models, tmp_path_factory):
    """(CPU animator, device animator) on s1.jpg (the folder also holds s5.jpg); settings restored after each use."""
    cpu, dev = _pair(_settings(tmp_path_factory.mktemp("opaque"), with_alpha=False), small_models)
    yield cpu, dev
    cpu.close(), dev.close()


@pytest.fixture(scope="module")
def alpha(small_models, tmp_path_factory):
    cpu, dev = _pair(_settings(tmp_path_factory.mktemp("alpha"), with_alpha=True), small_models)
    yield cpu, dev
    cpu.close(), dev.close()


@pytest.fixture
def outputs(opaque):
    """The opaque pair's output settings, restored afterwards."""
    o = opaque[0].settings.outputs
    saved = dict(o.__dict__)
    yield o
    o.__dict__.update(saved)


def _obs(i: int):
    return SimpleNamespace(found=True, timestamp=i / 30.0, eye_open=None, mouth_open=None, calibrate_now=False)


def _driving(animator, i: int) -> np.ndarray:
    return np.roll(animator.character.crop_rgb256, i, axis=1)


def test_device_paste_is_off_on_the_cpu_unless_asked(small_models):
    assert Animator(small_models, Settings()).device_paste is False
    assert Animator(small_models, Settings(), device_paste=True).device_paste is True


@pytest.mark.parametrize("with_alpha", [False, True], ids=["opaque", "alpha"])
def test_device_frames_equal_cpu_frames(opaque, alpha, with_alpha):
    cpu, dev = alpha if with_alpha else opaque
    for i in range(1 if with_alpha else 2):
        want = cpu.animate(_driving(cpu, i), _obs(i))
        got = dev.animate(_driving(dev, i), _obs(i))
        assert got.shape == want.shape and got.dtype == np.uint8
        assert np.array_equal(got, want), f"frame {i}: {np.abs(got.astype(int) - want.astype(int)).max()} LSB"
    if with_alpha:
        assert (want[..., 3] < 255).any() and (want[..., 3] == 255).any()


def test_frames_in_flight_keep_their_own_pixels(opaque):
    """Three frames queued before any is resolved (more than the two device buffers): each is its own."""
    cpu, dev = opaque
    pending = [dev.animate_async(_driving(dev, i), _obs(i)) for i in range(3)]
    assert all(isinstance(p, PendingFrame) for p in pending)
    for i, p in enumerate(pending):
        assert np.array_equal(p.result(), cpu.animate(_driving(cpu, i), _obs(i))), i
        assert p.ready() and p.result() is p.result()


def test_output_size_is_fitted_when_the_frame_is_resolved(opaque, outputs):
    outputs.width, outputs.height, outputs.fit = 320, 180, "contain"
    cpu, dev = opaque
    got = dev.animate_async(_driving(dev, 0), _obs(0)).result()
    assert got.shape == (180, 320, 4)
    assert np.array_equal(got, cpu.animate(_driving(cpu, 0), _obs(0)))


def test_crop_output_without_paste_back_is_unchanged(opaque, outputs):
    outputs.paste_back = False
    cpu, dev = opaque
    got = dev.animate_async(_driving(dev, 0), _obs(0)).result()
    assert got.shape == (512, 512, 4)
    assert np.array_equal(got, cpu.animate(_driving(cpu, 0), _obs(0)))


def test_switching_characters_makes_new_buffers(opaque):
    cpu, dev = opaque
    made = {}
    for name in ("s5.jpg", "s1.jpg", "s5.jpg"):
        for a in (cpu, dev):
            a.select_character(name)
        made.setdefault(name, dev._device_paste)  # noqa: SLF001
        assert dev._device_paste is made[name], "a switch back reuses the character's device paste-back"  # noqa: SLF001
        got, want = dev.animate(_driving(dev, 1), _obs(1)), cpu.animate(_driving(cpu, 1), _obs(1))
        assert got.shape == want.shape and np.array_equal(got, want), name


def test_downloads_take_turns_and_need_buffers():
    d = FrameDownloads("cpu")
    with pytest.raises(RuntimeError, match="reset"):
        d.next_buffer()
    made = iter(range(10))
    d.reset(lambda: torch.full((2, 2, 4), next(made), dtype=torch.uint8))
    first = d.next_buffer()
    p = d.download(first)
    second = d.next_buffer()
    assert second is not first
    first.fill_(99)  # the buffer is written again: the downloaded frame is not
    assert (p.result() == 0).all()
    d.download(second)
    assert d.next_buffer() is first
    d.clear()
    with pytest.raises(RuntimeError):
        d.next_buffer()


# --- the engine's hand-off of pending frames (test doubles for the tracker and animator: tests/test_engine.py)


class _BrokenFrame:
    """A pending frame whose download fails (as a device error would surface)."""

    def result(self):
        raise RuntimeError("injected download failure")


def _pending_backend(fail_on: set[int] = frozenset()):
    from tests.test_engine import FakeAnimator, FakeBackend

    class PendingAnimator(FakeAnimator):
        device_paste = True

        def animate(self, driving, observation):
            raise AssertionError("the engine must queue frames with animate_async when device_paste is on")

        def animate_async(self, driving, observation):
            if observation.index in fail_on:
                return _BrokenFrame()
            return PendingFrame(torch.from_numpy(FakeAnimator.animate(self, driving, observation)))

    backend = FakeBackend()
    backend.create_animator = lambda s: PendingAnimator(backend.log)  # type: ignore[method-assign]
    return backend


@pytest.mark.usefixtures("stop_started_engines")
def test_engine_publishes_pending_frames_in_order_and_survives_a_failed_download(tmp_path):
    from liveportrait_core.engine.core import Engine
    from tests.test_engine import Collect, _settings as engine_settings, _video

    out = Collect()
    eng = Engine(engine_settings(str(_video(tmp_path / "d.avi", 12))), [out], backend=_pending_backend({4}))
    eng.start()
    assert eng.wait_finished(30)
    st = eng.status()
    eng.stop(1.0)
    assert [f.index for f in out.frames] == [i for i in range(12) if i != 4]
    assert all(isinstance(f.bgra, np.ndarray) and f.bgra.flags.c_contiguous for f in out.frames)
    assert [int(f.bgra[0, 0, 0]) for f in out.frames] == [f.index for f in out.frames]
    assert st.failed == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_frames_in_flight_equal_the_cpu_paste_back(tmp_path):
    """On CUDA: pinned downloads on the second stream, three frames queued before any is resolved."""
    models = reduced_models("cuda")
    s = _settings(tmp_path, with_alpha=True)
    lib = CharacterLibrary(s, models)
    cpu, dev = Animator(models, s, lib, device_paste=False), Animator(models, s, lib)
    assert dev.device_paste
    for a in (cpu, dev):
        a.select_character("round.png")
    pending = [dev.animate_async(_driving(dev, i), _obs(i)) for i in range(3)]
    assert all(p._host.is_pinned() for p in pending)  # noqa: SLF001 - the download's target
    for i, p in enumerate(pending):
        want = cpu.animate(_driving(cpu, i), _obs(i))
        diff = np.abs(p.result().astype(int) - want.astype(int))
        assert diff.max() <= 1, (i, int(diff.max()), int((diff > 0).sum()))
