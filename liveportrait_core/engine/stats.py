"""Live statistics: per-stage rate and latency, end-to-end latency, GPU/CPU load, the status line.

Each stage records one sample per item it finishes (``StageTimer.record``); rates and percentiles
are computed over a sliding time window so that they describe *now*, not the whole session.
GPU figures come from NVML (the ``nvidia-ml-py`` package, module ``pynvml``); on a machine without
an NVIDIA driver NVML raises ``NVMLError`` and GPU stats are switched off, said once. CPU and RAM
come from psutil.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

_log = logging.getLogger(__name__)

#: A stage slower than the window is described by its last samples, if they are this recent.
SLOW_SAMPLES = 5
SLOW_HORIZON_S = 120.0
#: The status line shows the last error for this long.
RECENT_ERROR_S = 30.0
#: Engine states, in the order a session goes through them.
STATES = ("stopped", "starting", "running", "paused", "error")


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class StageStatus:
    """One stage (or the whole pipeline) over the last window: items per second and latency."""

    fps: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    count: int = 0  #: items since start


class StageTimer:
    """Rate and latency of one stage over a sliding window of ``window_s`` seconds (thread-safe)."""

    def __init__(self, window_s: float = 2.0, max_samples: int = 1024) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)  # (end time, duration)
        self._lock = threading.Lock()
        self.count = 0

    def record(self, duration_s: float, end: float | None = None) -> None:
        end = time.perf_counter() if end is None else end
        with self._lock:
            self._samples.append((end, duration_s))
            self.count += 1

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self.count = 0

    def snapshot(self, now: float | None = None, window_s: float | None = None) -> StageStatus:
        """Figures over the last ``window_s`` s (default: the timer's window; ``math.inf``: every
        retained sample, for an end-of-run summary). A pipeline slower than the window (seconds per
        frame on a CPU) is described by its last few samples instead, with a rate that decays while
        nothing new arrives, rather than by zeros."""
        now = time.perf_counter() if now is None else now
        window = self.window_s if window_s is None else window_s
        with self._lock:
            recent = [(t, d) for t, d in self._samples if now - t <= window]
            if len(recent) < 2 and window_s is None:
                recent = [(t, d) for t, d in list(self._samples)[-SLOW_SAMPLES:] if now - t <= SLOW_HORIZON_S]
                slow = True
            else:
                slow = False
            count = self.count
        if not recent:
            return StageStatus(count=count)
        durations = sorted(d for _, d in recent)
        span = recent[-1][0] - recent[0][0]
        if slow:  # n samples since the first one's end: decays when the stage stalls
            elapsed = now - recent[0][0]
            fps = (len(recent) - 1) / elapsed if len(recent) > 1 and elapsed > 0 else 0.0
        elif len(recent) > 1 and span > 0:  # n samples delimit n-1 intervals
            fps = (len(recent) - 1) / span
        else:
            fps = len(recent) / window if window != float("inf") else 0.0
        return StageStatus(fps=fps, latency_p50_ms=percentile(durations, 50) * 1e3,
                           latency_p95_ms=percentile(durations, 95) * 1e3, count=count)


# ------------------------------------------------------------------------------------------------
# system load


@dataclass
class GpuStats:
    name: str = ""
    utilization_pct: float = 0.0
    memory_used_mb: float = 0.0
    memory_total_mb: float = 0.0
    temperature_c: float = 0.0


@dataclass
class CpuStats:
    system_pct: float = 0.0  #: whole machine, all cores = 100
    process_pct: float = 0.0  #: this process, one core = 100
    ram_used_mb: float = 0.0
    ram_total_mb: float = 0.0
    process_rss_mb: float = 0.0


class SystemMonitor:
    """Samples GPU (NVML) and CPU/RAM (psutil) at most once per ``interval_s`` (cheap to call often)."""

    def __init__(self, interval_s: float = 1.0, gpu_index: int = 0) -> None:
        self.interval_s = interval_s
        self.gpu_index = gpu_index
        self.gpu_disabled_reason = ""
        self._nvml: Any = None
        self._handle: Any = None
        self._gpu_tried = False
        self._proc: Any = None
        self._psutil: Any = None
        self._last = 0.0
        self._cpu = CpuStats()
        self._gpu: GpuStats | None = None
        self._lock = threading.Lock()

    def _init_gpu(self) -> None:
        self._gpu_tried = True
        try:
            import pynvml  # from nvidia-ml-py
        except ImportError:
            self.gpu_disabled_reason = "GPU stats off: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            _log.info(self.gpu_disabled_reason)
            return
        try:
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.gpu_index)
            self._nvml = pynvml
        except pynvml.NVMLError as e:
            self.gpu_disabled_reason = f"GPU stats off: NVML unavailable ({e}); no NVIDIA driver?"
            _log.info(self.gpu_disabled_reason)

    def _init_cpu(self) -> None:
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil is a requirement
            return
        self._psutil = psutil
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # first call primes the counter
        psutil.cpu_percent(None)

    def _sample_gpu(self) -> GpuStats | None:
        nv = self._nvml
        if nv is None:
            return None
        try:
            name = nv.nvmlDeviceGetName(self._handle)
            util = nv.nvmlDeviceGetUtilizationRates(self._handle)
            mem = nv.nvmlDeviceGetMemoryInfo(self._handle)
            temp = nv.nvmlDeviceGetTemperature(self._handle, nv.NVML_TEMPERATURE_GPU)
        except nv.NVMLError as e:
            self.gpu_disabled_reason = f"GPU stats off: NVML query failed ({e})"
            _log.warning(self.gpu_disabled_reason)
            self._nvml = None
            return None
        return GpuStats(name=name.decode() if isinstance(name, bytes) else str(name),
                        utilization_pct=float(util.gpu), memory_used_mb=mem.used / 2**20,
                        memory_total_mb=mem.total / 2**20, temperature_c=float(temp))

    def sample(self) -> tuple[CpuStats, GpuStats | None]:
        """The latest CPU and GPU figures (GPU None when unavailable)."""
        with self._lock:
            now = time.monotonic()
            if self._last and now - self._last < self.interval_s:
                return self._cpu, self._gpu
            self._last = now
            if not self._gpu_tried:
                self._init_gpu()
                self._init_cpu()
            self._gpu = self._sample_gpu()
            ps = self._psutil
            if ps is not None:
                vm = ps.virtual_memory()
                self._cpu = CpuStats(system_pct=ps.cpu_percent(None), process_pct=self._proc.cpu_percent(None),
                                     ram_used_mb=(vm.total - vm.available) / 2**20, ram_total_mb=vm.total / 2**20,
                                     process_rss_mb=self._proc.memory_info().rss / 2**20)
            return self._cpu, self._gpu

    def latest(self) -> tuple[CpuStats, GpuStats | None]:
        """The last sample, without sampling (cheap for a UI thread; NVML is initialised elsewhere)."""
        with self._lock:
            return self._cpu, self._gpu

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                try:
                    self._nvml.nvmlShutdown()
                except self._nvml.NVMLError:
                    pass
                self._nvml = None
            self._gpu_tried = False
            self._last = 0.0


# ------------------------------------------------------------------------------------------------
# the engine's status


@dataclass
class OutputStatus:
    """One output: whether it runs, how many frames it sent, how often it failed and why."""

    name: str
    state: str = "stopped"  #: disabled | opening | running | retrying | unavailable | stopped
    enabled: bool = True
    sent: int = 0
    failures: int = 0
    dropped: int = 0
    fps: float = 0.0
    message: str = ""
    target: str = ""  #: where the output writes, when it writes to a file (the recording's actual path)


@dataclass
class EngineStatus:
    """Everything the OBS panel and the CLI show about a running engine."""

    state: str = "stopped"  #: one of STATES
    message: str = ""
    fps: float = 0.0  #: frames published per second
    latency_p50_ms: float = 0.0  #: capture -> publish
    latency_p95_ms: float = 0.0
    stages: dict[str, StageStatus] = field(default_factory=dict)
    #: input frames (camera/video) never animated because a later stage was still busy with an older one:
    #: normal when the pipeline is slower than the camera (live: the newest frame wins); idle frames made
    #: while the camera is away are not counted
    skipped: int = 0
    dropped: int = 0  #: animated frames replaced before they were published (work thrown away)
    failed: int = 0  #: input frames lost to a tracking or inference error (see ``errors``)
    dropped_by_stage: dict[str, int] = field(default_factory=dict)  #: replacements per hand-off
    activity: str = ""  #: what a slow pipeline is busy with ("computing frame 3 on the CPU, about 5.9 s each")
    frames: int = 0  #: frames published since start
    character: str = ""  #: the live character ("" = none)
    #: the user's explicit choice (characters.active, a pick or a hotkey); "" = none, the first usable one is live
    character_chosen: str = ""
    character_error: str = ""  #: why ``character_chosen`` is not the live one ("" = it is)
    tracking: str = ""  #: face | mouth hidden (covered, ...) | lost | idle (no input) | no webcam | ""
    voice: str = ""  #: the voice's live level ("voice -23 dB ▮▮▮▯▯ A"), "" while ``audio.mode`` is off
    voice_mode: str = "off"  #: ``audio.mode``
    outputs: dict[str, OutputStatus] = field(default_factory=dict)
    gpu: GpuStats | None = None
    cpu: CpuStats = field(default_factory=CpuStats)
    target_fps: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  #: most recent last, bounded
    last_error_age_s: float | None = None  #: seconds since the last error (None: none yet)

    @property
    def below_target(self) -> bool:
        return self.state == "running" and self.frames > 0 and 0 < self.fps < self.target_fps * 0.9

    def line(self) -> str:
        """One line for the OBS panel, e.g. ``running | 58.9 fps (target 60) | 31/44 ms | astro.png | GPU 71% 64C``;
        while no frame came out yet, or slower than one a second, it says what is in flight instead of zeros."""
        if self.state == "starting" and self.activity:
            return _one_line(f"starting: {self.activity}")
        if self.state in ("stopped", "starting", "error") or (self.state == "paused" and not self.frames):
            return _one_line(f"{self.state}" + (f": {self.message}" if self.message else ""))
        parts = [self.state]
        if self.frames:
            below = f" (below target {self.target_fps})" if self.below_target else ""
            if self.fps > 0:  # one frame gives no rate yet (the activity says how long a frame takes)
                parts.append(f"{fps_text(self.fps)} fps{below}")
            parts.append(f"latency {self.latency_p50_ms:.0f}/{self.latency_p95_ms:.0f} ms")
        if self.activity and (not self.frames or self.fps < 1.0):
            parts.append(self.activity)
        if self.character:
            parts.append(self.character)
        if self.tracking == "no webcam" and self.voice_mode == "off":  # the character can only idle: say how it talks
            parts.append(f"no webcam, voice off: idle only (set {VOICE_MODE_HINT} to talk)")
        elif self.tracking and self.tracking != "face":
            bare = self.tracking == "no webcam" or self.tracking.startswith("mouth hidden")  # the face is tracked
            parts.append(self.tracking if bare else f"face {self.tracking}")
        if self.voice:
            parts.append(self.voice)
        if self.skipped:
            parts.append(f"input skipped {self.skipped} (busy)")
        if self.failed:
            parts.append(f"failed {self.failed}")
        if self.dropped:
            parts.append(f"dropped {self.dropped}")
        if self.gpu is not None:
            parts.append(f"GPU {self.gpu.utilization_pct:.0f}% {self.gpu.memory_used_mb / 1024:.1f}GB "
                         f"{self.gpu.temperature_c:.0f}C")
        else:
            parts.append(f"CPU {self.cpu.system_pct:.0f}%")
        failing = [o.name for o in self.outputs.values() if o.enabled and o.state in ("retrying", "unavailable")]
        if failing:
            parts.append("output problem: " + ", ".join(failing))
        if self.message:
            parts.append(self.message)
        if self.errors and (self.last_error_age_s is None or self.last_error_age_s < RECENT_ERROR_S):
            parts.append(f"{len(self.errors)} error(s), last: {_one_line(self.errors[-1])[:80]}")
        return _one_line(" | ".join(parts))


#: Where the voice is turned on, named for both the panel and the CLI/YAML.
VOICE_MODE_HINT = "Voice (audio.mode)"


def fps_text(fps: float) -> str:
    """A frame rate as a person reads it: ``58.9``; below one a second two significant digits (``0.023``, one
    frame every 44 s), never ``0.0`` while frames do come out."""
    return f"{fps:.1f}" if fps >= 1 or fps <= 0 else f"{fps:.2g}"


def _one_line(text: str) -> str:
    """Messages may span lines (a loader report); the panel line must not."""
    return " ".join(text.split())
