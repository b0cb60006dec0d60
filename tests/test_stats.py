"""Stats: windowed rate and percentiles, NVML absence handled once, the one-line status."""
from __future__ import annotations

import logging

from liveportrait_core.engine.stats import EngineStatus, GpuStats, OutputStatus, StageTimer, SystemMonitor, percentile


def test_percentile_interpolates():
    assert percentile([], 50) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([0.0, 10.0], 95) == 9.5


def test_stage_timer_rate_and_latency_over_window():
    t = StageTimer(window_s=2.0)
    for i in range(21):  # 20 intervals of 50 ms -> 20 fps, durations 10..30 ms
        t.record(0.010 + 0.001 * i, end=100.0 + 0.05 * i)
    s = t.snapshot(now=101.0)
    assert abs(s.fps - 20.0) < 1e-6
    assert abs(s.latency_p50_ms - 20.0) < 1e-6
    assert 28.0 < s.latency_p95_ms <= 30.0
    assert s.count == 21
    stale = t.snapshot(now=300.0)  # nothing recent at all: rate is zero, count stays
    assert stale.fps == 0.0 and stale.count == 21


def test_a_stage_slower_than_the_window_is_described_by_its_last_samples():
    t = StageTimer(window_s=2.0)
    for k in range(4):  # one 7 s frame every 8 s
        t.record(7.0, end=100.0 + 8.0 * k)
    s = t.snapshot(now=124.5)  # 0.5 s after the last one
    assert abs(s.fps - 3 / 24.5) < 1e-9 and s.latency_p50_ms == 7000.0
    later = t.snapshot(now=160.0)  # stalled: the rate decays
    assert later.fps < s.fps and later.fps > 0


def test_system_monitor_without_nvidia_driver_disables_gpu_once(caplog):
    caplog.set_level(logging.INFO, logger="liveportrait_core.engine.stats")
    mon = SystemMonitor(interval_s=0.0)
    cpu, gpu = mon.sample()
    mon.sample()
    try:
        import pynvml

        pynvml.nvmlInit()
        has_driver = True
        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001
        has_driver = False
    if not has_driver:
        assert gpu is None and "GPU stats off" in mon.gpu_disabled_reason
        assert sum("GPU stats off" in r.message for r in caplog.records) == 1
    assert cpu.ram_total_mb > 0 and cpu.process_rss_mb > 0
    mon.close()


def test_status_line_shows_rate_latency_warning_and_failing_outputs():
    st = EngineStatus(state="running", fps=41.0, latency_p50_ms=33.0, latency_p95_ms=48.0, frames=100,
                      target_fps=60, character="astronaut.png", dropped=3, tracking="lost",
                      outputs={"ndi": OutputStatus("ndi", state="retrying", failures=2)},
                      gpu=GpuStats("RTX", 71, 2048, 10240, 64))
    line = st.line()
    for part in ("41.0 fps", "below target 60", "33/48 ms", "astronaut.png", "face lost", "dropped 3",
                 "GPU 71%", "64C", "output problem: ndi"):
        assert part in line, (part, line)
    assert EngineStatus(state="error", message="models missing").line() == "error: models missing"
    assert EngineStatus(state="error", message="weights not usable:\n  a.pth: missing").line() == \
        "error: weights not usable: a.pth: missing"
    recent = EngineStatus(state="running", fps=60, frames=9, errors=["12:00:00 inference: boom"], last_error_age_s=2.0)
    assert "last: 12:00:00 inference: boom" in recent.line()
    recent.last_error_age_s = 300.0  # an old error no longer clutters the line (it stays in .errors)
    assert "boom" not in recent.line()


def test_a_slow_rate_is_never_shown_as_zero():
    """One frame every 44 s on a CPU read "0.0 fps | latency 61357/61357 ms" next to "computing frame 2"."""
    from liveportrait_core.engine.stats import fps_text

    st = EngineStatus(state="running", fps=1 / 44.2, latency_p50_ms=61357.0, latency_p95_ms=61357.0, frames=1,
                      target_fps=60, activity="computing frame 2 on the CPU, about 44.2 s each (1 s in)")
    line = st.line()
    assert "0.023 fps (below target 60)" in line and "0.0 fps" not in line, line
    assert "computing frame 2" in line
    assert [fps_text(f) for f in (0.0, 0.17, 0.0049, 1.0, 58.94)] == ["0.0", "0.17", "0.0049", "1.0", "58.9"]
    # after the first frame there is no rate yet: real OBS showed "0.0 fps" beside "about 17.4 s each"
    first = EngineStatus(state="running", fps=0.0, latency_p50_ms=17491.0, latency_p95_ms=17491.0, frames=1,
                         target_fps=60, activity="computing frame 2 on the CPU, about 17.4 s each (4 s in)")
    line = first.line()
    assert " fps" not in line and "latency 17491/17491 ms" in line and "about 17.4 s each" in line, line
