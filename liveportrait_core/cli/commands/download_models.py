"""``download-models``: fetch the official LivePortrait weights from Hugging Face and verify them.

``download`` is the command as a plain function: the CLI's ``run`` and the OBS panel's "Download models"
button both call it."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liveportrait_core.settings import Settings

NAME = "download-models"
HELP = "download the official LivePortrait weights (KwaiVGI/LivePortrait on Hugging Face) and verify them"
DESCRIPTION = (HELP + ". Files already present and valid are kept; each new file is checked (size, SHA-256, "
               "keys and shapes) before it is moved into place, so an interrupted or corrupt download never "
               "replaces a good file.")

_log = logging.getLogger(__name__)

#: Seconds to wait for the server unless ``--timeout`` says otherwise.
TIMEOUT_S = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", choices=("human", "animal"),
                   help="which weights (default: settings model.variant, normally human)")
    p.add_argument("--models-dir", help="folder to put liveportrait/ in (default: settings model.models_dir)")
    p.add_argument("--force", action="store_true", help="download again even when the files are valid")
    p.add_argument("--revision", help="Hugging Face revision (branch, tag or commit) to download from")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S,
                   help=f"seconds to wait for the server (default {TIMEOUT_S:g})")
    p.add_argument("--keep-partial", action="store_true",
                   help="on failure keep the partial download in <models>/.cache/download so the next run resumes")
    p.set_defaults(_settings_shortcuts={"models_dir": "model.models_dir", "variant": "model.variant"})


def run(args: argparse.Namespace, settings) -> int:
    return download(settings, revision=args.revision, force=args.force, timeout=args.timeout,
                    keep_partial=args.keep_partial)


def download(settings: Settings, *, revision: str | None = None, force: bool = False, timeout: float = TIMEOUT_S,
             keep_partial: bool = False) -> int:
    """Download what is missing of ``settings.model.variant`` into ``settings.model.models_dir``, saying each file
    on stdout; 0 when every file is present afterwards, 1 when not (the message says why)."""
    from liveportrait_core import paths
    from liveportrait_core.models.checkpoint import download as download_mod, weights

    variant = settings.model.variant
    root = weights.models_root(settings.model.models_dir)
    print(f"LivePortrait weights ({variant}) -> {root}")

    verbs = {"present": "ok, already present", "downloaded": "downloaded and verified",
             "differs": "kept, but not the official file (usable: same keys and shapes; --force replaces it)"}

    def said(res: download_mod.FileResult) -> None:
        print(f"  {verbs[res.action]}: {res.rel}")

    try:
        results = download_mod.download_models(root, variant, revision=revision, force=force,
                                               keep_partial=keep_partial, timeout=timeout, on_file=said)
    except weights.WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    differ = sum(r.action == "differs" for r in results)
    print("all files present and verified" if not differ else
          f"all files present; {differ} differ from the official ones and were kept "
          f"(`{paths.cli_command('doctor')}` says how; --force downloads the official files over them)")
    return 0
