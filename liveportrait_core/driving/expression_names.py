"""The named expressions, in hotkey order, without importing torch.

The OBS script registers one hotkey per expression while it loads, on OBS's UI thread, where torch must
never be imported (it takes seconds); ``expressions.SHAPES`` defines each name and checks that it has
exactly these.
"""
from __future__ import annotations

NAMES: tuple[str, ...] = ("smile", "wink_left", "wink_right", "blink", "aaa", "eee", "woo", "eyebrows_up",
                          "pupils_left", "pupils_right", "pupils_up", "pupils_down", "head_tilt")
