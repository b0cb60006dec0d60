"""The first start's CPU measurement (models/onnx/choice.py) says what it does and how long it will take,
network by network, in the engine's status (the OBS panel and the CLI show that line), and a stop during it
is prompt: one layer, not one network call (tens of seconds at full size under load)."""
from __future__ import annotations

import threading

import pytest
import torch

from liveportrait_core.engine.cancel import FrameCancelled
from liveportrait_core.models.onnx import backend, choice
from tests.test_engine import FakeBackend, _settings, _video, _wait

pytestmark = pytest.mark.usefixtures("stop_started_engines")


def _fake_clock(monkeypatch, durations):
    """time.perf_counter advanced by the called form's recorded duration."""
    now = [0.0]
    monkeypatch.setattr(choice.time, "perf_counter", lambda: now[0])
    return {f: (lambda f=f: now.__setitem__(0, now[0] + durations[f].pop(0))) for f in durations}


def test_first_round_estimate_takes_the_decoder_from_the_warping_module():
    est = choice.first_round_estimate({"appearance_feature_extractor": 0.2, "motion_extractor": 0.1,
                                       "warping_module": 2.0},
                                      {"motion_extractor": 1, "warping_module": 2, "spade_generator": 3})
    assert est == pytest.approx({"warping_module": 4.0, "spade_generator": 3 * choice.DECODER_PER_WARPING * 2.0})


def test_each_network_is_announced_with_the_time_left(monkeypatch):
    clock = _fake_clock(monkeypatch, {"w": [2.0], "w-fast": [1.0], "g": [4.0], "g-fast": [2.0]})
    w = {"torch": clock["w"], "torch-fast": clock["w-fast"]}
    g = {"torch": clock["g"], "torch-fast": clock["g-fast"]}
    said: list[tuple[str, float | None]] = []
    calls = {"motion_extractor": {"torch": lambda: None}, "warping_module": w, "spade_generator": g}
    # estimated: W 2 s, G 4 s; W took 3 s (1.5x the estimate), so G's 4 s is announced as 6 s
    choice.measure(calls, runs=1, activity=lambda text, left: said.append((text, left)),
                   estimate={"warping_module": 2.0, "spade_generator": 4.0})
    assert said == [(f"{choice.ACTIVITY}: warping 1/2", pytest.approx(6.0)),
                    (f"{choice.ACTIVITY}: decoder 2/2", pytest.approx(6.0))]
    said.clear()
    w = _fake_clock(monkeypatch, {"torch": [1.0], "torch-fast": [0.5]})
    choice.measure({"warping_module": w}, runs=1, activity=lambda text, left: said.append((text, left)))
    assert said == [(f"{choice.ACTIVITY}: warping 1/1", None)]  # no estimate: no time said


class _Stop(Exception):
    pass


def test_a_stop_interrupts_a_network_between_two_layers():
    net = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(10)])
    asked: list[int] = []

    def between():
        asked.append(1)
        if len(asked) == 3:
            raise _Stop

    with pytest.raises(_Stop):
        with choice.interruptible(between):
            net(torch.ones(1, 4))
    assert len(asked) == 3  # the Sequential, then two layers: the rest of the network did not run
    net(torch.ones(1, 4))  # the hook is gone afterwards
    assert len(asked) == 3
    other: list[int] = []
    with choice.interruptible(lambda: asked.append(1)):  # another thread's networks are not interrupted
        t = threading.Thread(target=lambda: other.append(net(torch.ones(1, 4)).shape[0]))
        t.start()
        t.join(30)
    assert other == [1] and len(asked) == 3


@pytest.fixture
def reduced_cpu_choice(monkeypatch):
    from liveportrait_core.models import loader
    from liveportrait_core.models.small import reduced_models

    monkeypatch.setattr(loader, "load_models", lambda *a, **k: reduced_models())
    monkeypatch.setattr(backend, "_ort_exports_ready", lambda *a: False)
    return lambda tmp, between, activity: backend._load_cpu_choice(  # noqa: SLF001
        tmp, "human", tuple(loader.MODULE_NAMES), 0, between, lambda _m: None, activity=activity)


def test_the_measurement_says_each_step_and_ends_its_line(tmp_path, reduced_cpu_choice):
    said: list[tuple[str, float | None]] = []
    asked: list[int] = []
    reduced_cpu_choice(tmp_path, lambda: asked.append(1), lambda text, left=None: said.append((text, left)))
    texts = [t for t, _ in said]
    assert texts[0] == f"{choice.ACTIVITY} (a minute or more): preparing the forms"
    assert texts[1:] == [f"{choice.ACTIVITY}: warping 1/2", f"{choice.ACTIVITY}: decoder 2/2", ""]
    assert all(left is not None and left > 0 for _, left in said[1:3])  # estimated from the plain chain's run
    assert said[-1] == ("", None)
    assert len(asked) > 50, "asked between layers, not only between network calls"
    said.clear()
    reduced_cpu_choice(tmp_path, lambda: None, lambda text, left=None: said.append((text, left)))
    assert said == []  # the cached choice: nothing to measure, nothing to say


def test_a_stop_during_the_measurement_ends_it_inside_a_network_call(tmp_path, reduced_cpu_choice, monkeypatch):
    done: list[str] = []
    real = choice.measure

    def measure(calls, **kw):
        out = real(calls, **kw)
        done.append("measured")
        return out

    monkeypatch.setattr(choice, "measure", measure)
    said: list[str] = []
    stop = threading.Event()

    def between():
        if stop.is_set():
            raise FrameCancelled("stopped")

    def activity(text, left=None):
        said.append(text)
        if text.endswith("warping 1/2"):
            stop.set()  # the user stops as the warping module's forms begin

    with pytest.raises(FrameCancelled):
        reduced_cpu_choice(tmp_path, between, activity)
    assert not done and said[-1].endswith("warping 1/2")
    assert not (tmp_path / "onnx" / "cache" / choice.CACHE_FILE).exists()  # nothing half-measured is kept


def test_the_engine_status_shows_the_measurement_and_counts_down(tmp_path):
    from liveportrait_core.engine.core import Engine

    fake = FakeBackend()
    fake.release_animator.clear()
    fake.activity = lambda text, left=None: None  # the attribute the engine points at its status
    eng = Engine(_settings(str(_video(tmp_path / "d.avi", 3))), [], backend=fake)
    eng.start()
    assert _wait(lambda: eng.status_line().startswith("starting: loading the networks"))
    fake.activity(f"{choice.ACTIVITY}: warping 1/2", 40.0)
    line = eng.status_line()
    assert line.startswith(f"starting: {choice.ACTIVITY}: warping 1/2, about ") and "s left (" in line, line
    left = int(line.split(", about ")[1].split(" s left")[0])
    assert 35 <= left <= 40
    fake.activity(f"{choice.ACTIVITY}: decoder 2/2", 200.0)
    assert ", about 3 min left (" in eng.status_line()
    fake.activity(f"{choice.ACTIVITY}: decoder 2/2", -1.0)
    assert "decoder 2/2, taking longer than estimated (" in eng.status_line()
    fake.activity("", None)
    assert eng.status_line().startswith("starting: loading the networks and preparing the character (")
    fake.release_animator.set()
    assert eng.wait_finished(30)
    eng.stop(1.0)
