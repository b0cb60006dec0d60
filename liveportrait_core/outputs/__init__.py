"""Where finished frames go: one small interface (``base.Output``), several outputs at once.

``outputs_from_settings`` builds the outputs that ``settings.outputs`` switches on; each output
module imports its optional package (SpoutGL, cyndilib, OpenCV GUI) only when opened, so a missing
package or the wrong OS gives a clear message for that output and leaves the others running.
"""
from __future__ import annotations

from liveportrait_core.outputs.base import Output, OutputUnavailable, PublishedFrame
from liveportrait_core.settings import OutputSettings

__all__ = ["Output", "OutputUnavailable", "PublishedFrame", "make_output", "enabled_in_settings", "OUTPUT_NAMES"]

#: Names of the outputs settings can switch on (plus ``obs_source``, the in-process callback).
OUTPUT_NAMES = ("obs_source", "spout", "ndi", "preview", "record")


def make_output(name: str, s: OutputSettings, fps: float, live: bool = True) -> Output:
    """The output called ``name``, configured from ``s``; ``live`` frames come at the engine's own pace
    (a video recording then follows their capture times), otherwise every frame of a file, in order."""
    if name == "spout":
        from liveportrait_core.outputs.spout import SpoutOutput

        return SpoutOutput(s.spout_name)
    if name == "ndi":
        from liveportrait_core.outputs.ndi import NdiOutput

        return NdiOutput(s.ndi_name, fps=fps)
    if name == "preview":
        from liveportrait_core.outputs.preview import PreviewWindow

        return PreviewWindow()
    if name == "record":
        from liveportrait_core.outputs.recorder import make_recorder

        return make_recorder(s.record, fps, timed=live)
    raise ValueError(f"unknown output {name!r}; known: {', '.join(OUTPUT_NAMES)}")


def enabled_in_settings(s: OutputSettings) -> dict[str, bool]:
    return {"obs_source": s.obs_source, "spout": s.spout, "ndi": s.ndi, "preview": s.preview,
            "record": bool(s.record)}
