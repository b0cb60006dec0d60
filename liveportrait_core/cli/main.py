"""``liveportrait <command>``: the console command ``pip install -e .`` makes (``python -m liveportrait_core``
runs the same).

Each command lives in its own module under ``liveportrait_core/cli/commands/`` and exposes ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args, settings) -> int``. Command modules are discovered, so adding
one needs no edit here; they must import heavy packages (torch, mediapipe) inside ``run`` only, so
that ``--help`` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from types import ModuleType
from typing import Sequence

from liveportrait_core import __version__, log, paths, settings as settings_mod
from liveportrait_core.cli import commands, exits

_log = logging.getLogger(__name__)

#: The order commands are listed in ``--help``; discovered commands not named here follow.
_ORDER = ("doctor", "download-models", "check-character", "run", "preview", "record", "demo", "benchmark")


def _command_modules() -> list[ModuleType]:
    mods = [importlib.import_module(f"{commands.__name__}.{m.name}")
            for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    mods = [m for m in mods if hasattr(m, "NAME") and hasattr(m, "run")]
    rank = {n: i for i, n in enumerate(_ORDER)}
    return sorted(mods, key=lambda m: (rank.get(m.NAME, len(rank)), m.NAME))


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """Options every command shares: a settings file and ``--set section.key=value`` overrides."""
    g = p.add_argument_group("settings")
    g.add_argument("--config", metavar="FILE", help="YAML settings file (see docs/SETTINGS.md)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set animation.region=exp (repeatable)")
    g.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="logging level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=paths.CLI_NAME,  # the console command pyproject.toml declares; `python -m liveportrait_core` runs the same
        description="LivePortrait for OBS: animate a character image from your webcam.")
    parser.add_argument("--version", action="version", version=f"{paths.CLI_NAME} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           epilog=getattr(mod, "EPILOG", None))
        add_settings_arguments(p)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def load_settings(args: argparse.Namespace) -> settings_mod.Settings:
    """Settings from ``--config`` and ``--set``, plus the command's own shortcuts (e.g. ``--models-dir``)."""
    s = settings_mod.load(args.config) if getattr(args, "config", None) else settings_mod.Settings()
    s = settings_mod.apply_overrides(s, getattr(args, "overrides", []) or [])
    shortcuts = getattr(args, "_settings_shortcuts", {})
    if shortcuts:
        s = settings_mod.apply_overrides(s, {k: getattr(args, a) for a, k in shortcuts.items()
                                             if getattr(args, a, None) is not None})
    if getattr(args, "log_level", None):
        s.log_level = args.log_level
    return s


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (``exits``). ``argv`` None means this is the process's own command line
    (``liveportrait``, ``python -m liveportrait_core``): the process is then ended safely (``exits.leave``)."""
    try:
        code = _main(argv)
    except BrokenPipeError:  # the reader went away (``liveportrait check-character --json | head``)
        _discard_stdout()
        code = exits.ERROR
    return exits.leave(code) if argv is None else code


def _discard_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's final flush does not fail again (the
    way Python's documentation handles SIGPIPE): the command ends quietly with its status."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor behind stdout (tests): nothing to redirect
        pass


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    log.configure(args.log_level or "INFO")
    try:
        s = load_settings(args)
    except settings_mod.SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log.configure(s.log_level)
    try:
        return int(args._module.run(args, s) or 0)
    except KeyboardInterrupt:
        return exits.INTERRUPTED
