"""``benchmark``: measure the networks, the tracker or the whole pipeline on this machine."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
from pathlib import Path

NAME = "benchmark"
HELP = ("measure speed: per network (--modules), face tracking (--tracking), the voice features (--voice), or "
        "the whole pipeline")

_log = logging.getLogger(__name__)

#: benchmark kind -> module under liveportrait_core.tools.benchmarks
_KINDS = {"modules": "modules", "tracking": "tracking", "pipeline": "pipeline", "voice": "voice"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--modules", dest="kind", action="store_const", const="modules",
                      help="time each LivePortrait network separately")
    kind.add_argument("--tracking", dest="kind", action="store_const", const="tracking",
                      help="time MediaPipe landmarks plus the driving crop per 640x480 frame")
    p.set_defaults(kind="pipeline")
    p.add_argument("--models-dir", help="folder holding liveportrait/ (default: settings model.models_dir)")
    p.add_argument("--random-weights", action="store_true",
                   help="use deterministic synthetic weights instead of the official files (results are labelled)")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), help="where the networks run")
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), help="network precision")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to this file")
    p.set_defaults(_settings_shortcuts={"models_dir": "model.models_dir", "device": "model.device",
                                        "precision": "model.precision"})
    for mod in _KINDS.values():
        try:
            m = importlib.import_module(f"liveportrait_core.tools.benchmarks.{mod}")
        except ImportError:
            continue
        if hasattr(m, "add_arguments"):
            m.add_arguments(p)


def run(args: argparse.Namespace, settings) -> int:
    try:
        bench = importlib.import_module(f"liveportrait_core.tools.benchmarks.{_KINDS[args.kind]}")
    except ImportError as e:
        _log.error("the %s benchmark is not available in this version: %s", args.kind, e)
        return 2
    result = bench.run(args, settings)
    print(bench.format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
        _log.info("wrote %s", args.json)
    return 0 if result.get("ok", True) else 1
