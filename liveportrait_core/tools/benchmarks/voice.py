"""``benchmark --voice``: what one audio block costs the voice thread on this CPU (docs/PERFORMANCE.md, "Voice").

Times ``VoiceAnalyzer.process`` on a voiced block (RMS, gate, smoothing and, with the gate open, LPC formants
and the vowel) and on silence (the gate closed: RMS only), the microphone's 48 kHz -> 16 kHz resampling of one
block, and the mapping to mouth controls; median and 95th percentile over many blocks, after a warm-up. The
test signal is a synthetic vowel (a pulse train through formant resonators): no model, no file.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any, Callable, Iterable

import numpy as np

from liveportrait_core.machine import cpu_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voice", dest="kind", action="store_const", const="voice",
                   help="time the voice features per audio block (loudness, formants, vowel)")
    p.add_argument("--blocks", type=int, default=3000, help="audio blocks timed by --voice")


def _voiced(seconds: float, rate: int) -> np.ndarray:
    """A synthetic A: a 120 Hz pulse train through formant resonators at 730, 1090 and 2440 Hz."""
    from scipy import signal

    x = np.zeros(int(seconds * rate))
    x[:: rate // 120] = 1.0
    for f, bw in ((730, 60), (1090, 90), (2440, 120)):
        r = np.exp(-np.pi * bw / rate)
        x = signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / rate), r * r], x)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _timed(fn: Callable[[Any], Any], inputs: Iterable[Any]) -> tuple[float, float]:
    ts = []
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        ts.append(time.perf_counter() - t0)
    a = np.array(ts[len(ts) // 10:]) * 1e6  # the first tenth warms the caches up
    return float(np.median(a)), float(np.percentile(a, 95))


def run(args: argparse.Namespace, settings: Any) -> dict:
    from liveportrait_core.voice.features import VoiceAnalyzer
    from liveportrait_core.voice.mouth import mouth_from_features
    from liveportrait_core.voice.resample import RATE, StreamResampler
    from liveportrait_core.voice.stage import block_samples

    s = settings.audio
    n = block_samples(s)
    blocks = max(100, int(getattr(args, "blocks", 3000)))
    voiced = _voiced(blocks * n / RATE + 0.1, RATE)
    rows: dict[str, tuple[float, float]] = {}
    va = VoiceAnalyzer(s)
    rows["features, voiced (RMS, gate, LPC formants, vowel)"] = _timed(
        lambda x: va.process(x, 0.0), (voiced[i * n:(i + 1) * n] for i in range(blocks)))
    vs = VoiceAnalyzer(s)
    silence = np.zeros(n, np.float32)
    rows["features, silence (gate closed: RMS only)"] = _timed(lambda x: vs.process(x, 0.0), [silence] * blocks)
    rs = StreamResampler(48000, RATE)
    m = n * 3
    mic = _voiced(blocks * m / 48000 + 0.1, 48000)
    rows["resampling one block, 48 kHz -> 16 kHz"] = _timed(rs, (mic[i * m:(i + 1) * m] for i in range(blocks)))
    f = va.process(voiced[:n], 0.0)
    rows["mouth controls from the features"] = _timed(lambda _x: mouth_from_features(f, s), range(blocks))
    total = sum(v[0] for k, v in rows.items() if "silence" not in k)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"kind": "voice", "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "load_average": load,
            "block_ms": s.block_ms, "rate": RATE, "blocks": blocks,
            "rows": {k: {"median_us": v[0], "p95_us": v[1]} for k, v in rows.items()},
            "voiced_block_ms": total / 1000.0, "ok": True}


def format_table(result: dict) -> str:
    lines = [f"voice features per {result['block_ms']:.0f} ms block at {result['rate'] // 1000} kHz on "
             f"{result['cpu']} ({result['logical_cpus']} logical CPUs, load average {result['load_average']:.1f}), "
             f"{result['blocks']} blocks"]
    for name, r in result["rows"].items():
        lines.append(f"  {name:<52} median {r['median_us']:7.1f} µs   p95 {r['p95_us']:7.1f} µs")
    lines.append(f"  a voiced microphone block (resampling + features + mouth): {result['voiced_block_ms']:.3f} ms "
                 f"of the block's {result['block_ms']:.0f} ms (goal: under 1 ms)")
    return "\n".join(lines)
