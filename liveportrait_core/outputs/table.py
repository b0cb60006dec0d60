"""The one table of outputs: what each is called, which setting switches it on, how it is built, and
which settings rebuild it. The engine, the OBS controller (hotkeys, status, scene placement) and the
CLI's summary all read it, so an output is added here once.

What is on lives in the settings only (``OutputSettings``): a switch (``obs_source``, ``spout``...) is
a bool there, and a run-time toggle (an OBS hotkey, ``Engine.set_output_enabled``) writes it. The
recording's setting is its target (a file or folder, empty: off), which a toggle cannot write without
losing it; its off switch at run time is kept by the engine (``Engine.output_on``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from liveportrait_core.outputs.base import Output
from liveportrait_core.settings import OutputSettings

#: ``factory(settings, fps, live)``: ``live`` frames come at the engine's own pace (a video recording
#: then follows their capture times), otherwise every frame of a file, in order.
OutputFactory = Callable[[OutputSettings, float, bool], Output]


@dataclass(frozen=True)
class OutputSpec:
    name: str  #: the engine's name for it: status key, thread ``lp-output-<name>``, hotkey ``output.<name>``
    label: str  #: what people read (hotkeys, status, the name of its receiver source in an OBS scene)
    setting: str  #: the ``OutputSettings`` field that says it is on (a bool switch, or the recording's target)
    factory: OutputFactory
    rebuild_on: tuple[str, ...] = ()  #: ``OutputSettings`` fields whose change rebuilds a running one
    capture_rate: bool = False  #: runs at the capture's rate (a recording plays at real speed), not the target fps

    @property
    def switch(self) -> bool:
        """Whether its setting is a bool that a run-time toggle writes."""
        return isinstance(getattr(OutputSettings(), self.setting), bool)

    def is_on(self, s: OutputSettings) -> bool:
        return bool(getattr(s, self.setting))

    def needs_rebuild(self, old: OutputSettings, new: OutputSettings) -> bool:
        return any(getattr(old, f) != getattr(new, f) for f in self.rebuild_on)


# Each factory imports its optional package (SpoutGL, cyndilib, OpenCV GUI) only when the output is
# built, so a missing package or the wrong OS gives a clear message for that output alone.
def _callbacks(s: OutputSettings, fps: float, live: bool) -> Output:
    from liveportrait_core.outputs.callback import CallbackOutput

    return CallbackOutput(CALLBACKS)


def _spout(s: OutputSettings, fps: float, live: bool) -> Output:
    from liveportrait_core.outputs.spout import SpoutOutput

    return SpoutOutput(s.spout_name)


def _ndi(s: OutputSettings, fps: float, live: bool) -> Output:
    from liveportrait_core.outputs.ndi import NdiOutput

    return NdiOutput(s.ndi_name, fps=fps)


def _preview(s: OutputSettings, fps: float, live: bool) -> Output:
    from liveportrait_core.outputs.preview import PreviewWindow

    return PreviewWindow()


def _record(s: OutputSettings, fps: float, live: bool) -> Output:
    from liveportrait_core.outputs.recorder import make_recorder

    if not s.record:
        raise ValueError("recording needs outputs.record set to a .mp4 file or a folder")
    return make_recorder(s.record, fps, timed=live)


#: The in-process frame callbacks (the OBS script's source, the CLI's preview window): always built by the
#: engine, so that callbacks can be added before it starts.
CALLBACKS = "obs_source"
#: The recording: its setting is its target, and the CLI's summary names it.
RECORD = "record"

OUTPUTS: tuple[OutputSpec, ...] = (
    OutputSpec(CALLBACKS, "OBS source", "obs_source", _callbacks),
    OutputSpec("spout", "Spout2", "spout", _spout, rebuild_on=("spout_name",)),
    OutputSpec("ndi", "NDI", "ndi", _ndi, rebuild_on=("ndi_name", "width", "height")),
    OutputSpec("preview", "preview window", "preview", _preview),
    OutputSpec(RECORD, "recording", "record", _record, rebuild_on=("record",), capture_rate=True),
)
BY_NAME: dict[str, OutputSpec] = {o.name: o for o in OUTPUTS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def spec(name: str) -> OutputSpec:
    """The table's row for ``name`` (ValueError naming the known ones otherwise)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown output {name!r}; known: {', '.join(NAMES)}") from None
