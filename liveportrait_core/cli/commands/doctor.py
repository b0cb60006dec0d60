"""``doctor``: what is ready to run and what is not, each problem with its fix.

``report`` is the command as a plain function: the CLI's ``run`` and the OBS panel's "Verify models" button
both call it."""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liveportrait_core.settings import Settings

NAME = "doctor"
HELP = "check Python, torch/GPU, MediaPipe, the weights and the outputs; say how to fix what is missing"
DESCRIPTION = HELP + ". Exit status 0 only when everything needed to run is in place."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the findings as JSON (for scripts and the OBS panel)")
    p.add_argument("--models-dir", help="folder holding liveportrait/ (default: settings model.models_dir)")
    p.add_argument("--variant", choices=("human", "animal"), help="which weights to check")
    p.add_argument("--quick", action="store_true", help="skip the SHA-256 of the weight files (keys and shapes only)")
    p.set_defaults(_settings_shortcuts={"models_dir": "model.models_dir", "variant": "model.variant"})


def run(args: argparse.Namespace, settings) -> int:
    return report(settings, quick=args.quick, as_json=args.json)


def report(settings: Settings, *, quick: bool = False, as_json: bool = False) -> int:
    """Run every check, print the findings (or JSON) to stdout; 0 when everything needed to run is in place,
    else 1. ``quick``: skip the SHA-256 of the weight files (``settings`` is changed for that)."""
    from liveportrait_core.tools import doctor

    if quick:
        settings.model.verify_checksums = False
    checks = doctor.run_checks(settings)
    ready = doctor.is_ready(checks)
    if as_json:
        print(json.dumps({"ready": ready, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        print(doctor.format_report(checks))
    return 0 if ready else 1
