"""Where finished frames go: one small interface (``base.Output``), several outputs at once.

``table.OUTPUTS`` lists them (name, label, the setting that switches each on, how it is built, what
rebuilds it); the engine, the OBS controller and the CLI read that table. Each output module imports its
optional package (SpoutGL, cyndilib, OpenCV GUI) only when built, so a missing package or the wrong OS
gives a clear message for that output and leaves the others running.
"""
from __future__ import annotations

from liveportrait_core.outputs.base import Output, OutputUnavailable, PublishedFrame
from liveportrait_core.outputs.table import NAMES as OUTPUT_NAMES
from liveportrait_core.outputs.table import OUTPUTS, OutputSpec, spec
from liveportrait_core.settings import OutputSettings

__all__ = ["Output", "OutputUnavailable", "PublishedFrame", "OutputSpec", "OUTPUTS", "OUTPUT_NAMES", "make_output",
           "enabled_in_settings"]


def make_output(name: str, s: OutputSettings, fps: float, live: bool = True) -> Output:
    """The output called ``name``, configured from ``s`` (ValueError for an unknown name or a recording
    without a target); ``live``: see ``table.OutputFactory``."""
    return spec(name).factory(s, fps, live)


def enabled_in_settings(s: OutputSettings) -> dict[str, bool]:
    """Which of the table's outputs ``s`` switches on."""
    return {o.name: o.is_on(s) for o in OUTPUTS}
