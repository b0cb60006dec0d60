"""What this machine has, asked with the standard library only: ``install.py`` uses it before anything
else is installed; ``doctor``, the CPU choice of the networks, the benchmarks and the GPU check after."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path


def nvidia_smi_lists_a_gpu() -> bool:
    """Whether ``nvidia-smi -L`` exists and lists a GPU (the NVIDIA driver is installed). Never raises."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        return subprocess.run([exe, "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere): every speed figure names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_per_cpu() -> float | None:
    """The 1-minute load average per logical CPU now (None where the OS does not tell: Windows)."""
    try:
        return os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None
