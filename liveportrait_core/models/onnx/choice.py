"""``model.backend: auto`` on the CPU: the fastest form of each network, measured on this machine.

Each network has up to three CPU forms that compute the same function: ``torch`` (the plain official
structure), ``torch-fast`` (the exact Winograd/FFT rewrites of ``models/fast``; the warping module and
the SPADE decoder only) and ``onnxruntime`` (the ONNX export on ONNX Runtime's CPU provider, when it
is installed and the networks are exported). At the first load on a machine each form is run, interleaved
(``measure``), the fastest is kept, and the decision is cached in
``<models>/onnx/cache/cpu_choice.json`` under a key made of the CPU model, the thread count and the
library versions; a later start with the same key reads it instead of measuring — unless it was measured on a
busy CPU (``BUSY_LOAD_PER_CPU``) and the CPU is quiet now: then it is measured again. Since the plain form
is always among the candidates, no network can end up slower than the plain structure (as measured).

The measurement delays the first frame (about a minute on 2 quiet cores at full size, several under load), so it
says what it does and for how long, network by network (``measure``'s ``activity``: "measuring the fastest
form for this CPU, once: warping 1/2" and the seconds left), and a stop interrupts it within one layer
(``interruptible``), not one whole network call.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from liveportrait_core.machine import cpu_model

from liveportrait_core.models.onnx.export import read_json, write_json

_log = logging.getLogger(__name__)

FORMS = ("torch", "torch-fast", "onnxruntime")
RUNS = 2  #: rounds at most (the first decides when it is clear): at the first load each costs one call per form
#: Bumped when the set of forms or the way they are measured changes (old decisions are then measured again).
RECIPE = 1
CACHE_FILE = "cpu_choice.json"
#: What the activity line calls each network (short words a user can follow).
SHORT_NAMES = {"appearance_feature_extractor": "appearance", "motion_extractor": "motion",
               "warping_module": "warping", "spade_generator": "decoder"}
#: The decoder's time over the warping module's in the plain structure, for the first estimate (the decoder is
#: not run before the measurement): 3.31 / 1.88 s on 2 quiet AMD cores, 14.0 / 7.9 s on a loaded 2-vCPU Xeon.
DECODER_PER_WARPING = 1.8
ACTIVITY = "measuring the fastest form for this CPU, once"
#: A measurement made while the 1-minute load average per logical CPU was above this (other programs competing
#: for the cores: which form wins then moves, e.g. the fast forms measured 2x slower than plain torch on a
#: loaded 2-vCPU Xeon and 0.76x quiet) is provisional: a later start on a machine below it measures again.
BUSY_LOAD_PER_CPU = 1.5
#: A status line's sink: (what is being done, seconds left or None); ("", None) when it is over.
Activity = Callable[[str, "float | None"], None]


def machine_key(ort_version: str, threads: int | None = None) -> dict[str, Any]:
    """What the measured decision depends on: the CPU, the threads, the library versions."""
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count() or 0,
            "threads": int(threads or torch.get_num_threads()), "torch": torch.__version__,
            "onnxruntime": ort_version, "recipe": RECIPE}


@dataclass(frozen=True)
class CpuChoice:
    """The form kept for each network, and the measured seconds per call of every form."""

    forms: Mapping[str, str]
    timings: Mapping[str, Mapping[str, float]]
    key: Mapping[str, Any]
    cached: bool = False
    load_per_cpu: float | None = None  #: the load average per logical CPU when it was measured (None: unknown)

    def summary(self) -> str:
        parts = []
        for net, form in self.forms.items():
            t = self.timings.get(net, {})
            others = ", ".join(f"{f} {1e3 * s:.0f} ms" for f, s in t.items()) if len(t) > 1 else "its only form"
            parts.append(f"{net}: {form} ({others})")
        return "; ".join(parts)


def measured_busy(choice: "CpuChoice", load_now: float | None) -> bool:
    """The cached ``choice`` was measured on a busy CPU and this one is quiet: measure again (its result replaces
    the provisional one, so a machine that stays busy does not measure at every start)."""
    return (choice.load_per_cpu is not None and load_now is not None
            and choice.load_per_cpu > BUSY_LOAD_PER_CPU >= load_now)


def pick_fastest(timings: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """Network -> the form with the least time (a tie keeps the earlier form of ``FORMS``: the plainer)."""
    out = {}
    for net, by_form in timings.items():
        ranked = sorted(by_form, key=lambda f: (by_form[f], FORMS.index(f) if f in FORMS else len(FORMS)))
        out[net] = ranked[0]
    return out


def first_round_estimate(plain_seconds: Mapping[str, float], forms: Mapping[str, int]) -> dict[str, float]:
    """Seconds of each timed network's first round (one call per form), from one plain call of each network
    before the measurement (the decoder's from the warping module's, ``DECODER_PER_WARPING``)."""
    s = dict(plain_seconds)
    if "spade_generator" not in s and "warping_module" in s:
        s["spade_generator"] = DECODER_PER_WARPING * s["warping_module"]
    return {n: k * s[n] for n, k in forms.items() if k >= 2 and n in s}


def measure(calls: Mapping[str, Mapping[str, Callable[[], Any]]], runs: int = RUNS,
            progress: Callable[[str], None] | None = None,
            between: Callable[[], None] = lambda: None, activity: Activity | None = None,
            estimate: Mapping[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Seconds per call of each (network, form), the forms of a network alternating in every round (so a
    load spike from elsewhere hits them alike).

    The first round settles it when one form is clearly fastest (``DECISIVE``: at the first load this
    costs one call per form, about a minute at full size on 2 cores); otherwise up to ``runs`` rounds are
    run and the first (which also pays one-off set-up costs) is dropped, the fastest of the rest kept.
    ``between()`` runs before every call (the loader's cancellation point). A network with one form is
    not timed (its entry is that form at 0 s: nothing to choose). ``activity`` gets one line per timed network
    for a status display ("measuring the fastest form for this CPU, once: warping 1/2") and the seconds left,
    from ``estimate`` (seconds of each network's first round, ``first_round_estimate``) scaled by how the rounds
    measured so far compared with it (None without an estimate).
    """
    out: dict[str, dict[str, float]] = {}
    timed = [n for n, forms in calls.items() if len(forms) >= 2]
    estimate = dict(estimate or {})
    spent = planned = 0.0  # the networks timed so far: seconds measured (all rounds), and first rounds estimated
    for net, forms in calls.items():
        if len(forms) < 2:
            out[net] = {f: 0.0 for f in forms}
            continue
        if progress:
            progress(f"timing {net} in {len(forms)} forms ({', '.join(forms)}) to keep the fastest on this CPU")
        if activity:
            i = timed.index(net)
            left = sum(estimate.get(n, 0.0) for n in timed[i:]) * (spent / planned if planned > 0 else 1.0)
            activity(f"{ACTIVITY}: {SHORT_NAMES.get(net, net)} {i + 1}/{len(timed)}", left if left > 0 else None)
        samples: dict[str, list[float]] = {f: [] for f in forms}
        with torch.inference_mode():
            for round_ in range(max(1, runs)):
                for form, call in forms.items():
                    between()
                    t0 = time.perf_counter()
                    call()
                    samples[form].append(time.perf_counter() - t0)
                if round_ == 0 and _decisive({f: s[0] for f, s in samples.items()}):
                    break
        if estimate.get(net, 0.0) > 0:  # all its rounds against the first round's estimate: a second round counts
            spent += sum(sum(s) for s in samples.values())
            planned += estimate[net]
        out[net] = {f: min(s[1:]) if len(s) > 1 else s[0] for f, s in samples.items()}
    return out


@contextlib.contextmanager
def interruptible(between: Callable[[], None]) -> Iterator[None]:
    """Call ``between()`` before every torch module this thread runs (a forward pre-hook): a stop (``between``
    raises) then waits for one layer, not for a whole network call (tens of seconds at full size under load).
    Other threads' modules are not touched; an ONNX Runtime call is not interrupted (it runs as one call)."""
    me = threading.get_ident()

    def hook(_module: torch.nn.Module, _args: Any) -> None:
        if threading.get_ident() == me:
            between()

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


#: A first round decides when the fastest form takes at most this fraction of the next one's time.
DECISIVE = 0.8


def _decisive(first: Mapping[str, float]) -> bool:
    times = sorted(first.values())
    return len(times) < 2 or times[0] <= DECISIVE * times[1]


def read_cached(path: Path, key: Mapping[str, Any], networks: set[str]) -> CpuChoice | None:
    """The cached decision for ``key`` covering ``networks``, or None."""
    for entry in _entries(path):
        if entry.get("key") == dict(key) and networks <= set(entry.get("forms", {})):
            forms = {n: f for n, f in entry["forms"].items() if n in networks and f in FORMS}
            if len(forms) == len(networks):
                load = entry.get("load_per_cpu")
                return CpuChoice(forms, entry.get("timings", {}), key, cached=True,
                                 load_per_cpu=float(load) if isinstance(load, (int, float)) else None)
    return None


def write_cached(path: Path, choice: CpuChoice) -> None:
    """Add (or replace) the decision for its key; other machines' decisions in the file are kept."""
    entries = [e for e in _entries(path) if e.get("key") != dict(choice.key)]
    entries.append({"key": dict(choice.key), "forms": dict(choice.forms),
                    "timings": {n: dict(t) for n, t in choice.timings.items()}, "load_per_cpu": choice.load_per_cpu})
    write_json(path, {"entries": entries})


def _entries(path: Path) -> list[dict]:
    entries = read_json(path).get("entries")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
