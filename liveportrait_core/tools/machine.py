"""What this machine has, asked with the standard library only: ``install.py`` uses it before anything
else is installed, and ``doctor`` after."""
from __future__ import annotations

import shutil
import subprocess


def nvidia_smi_lists_a_gpu() -> bool:
    """Whether ``nvidia-smi -L`` exists and lists a GPU (the NVIDIA driver is installed). Never raises."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        return subprocess.run([exe, "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
