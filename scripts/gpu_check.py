#!/usr/bin/env python3
"""The GPU check (liveportrait_core/tools/gpu_check.py) as a script: ``python scripts/gpu_check.py [--dry-run]``.

Run it with the project's Python (``.venv/bin/python``) on a machine with an NVIDIA GPU; see docs/PERFORMANCE.md.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from any folder, installed or not

from liveportrait_core.tools.gpu_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
