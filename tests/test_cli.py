"""Command discovery and the CLI contract: instant --help, every command has the shared settings options."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from liveportrait_core.cli import main as cli

REPO = Path(__file__).resolve().parents[1]


def test_commands_are_discovered_in_order():
    names = [m.NAME for m in cli._command_modules()]
    assert names[:2] == ["doctor", "download-models"]
    assert len(names) == len(set(names))
    for m in cli._command_modules():
        assert m.HELP and callable(m.run) and callable(m.add_arguments)


def test_every_command_takes_config_and_set():
    import argparse

    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == {m.NAME for m in cli._command_modules()}
    for name, p in sub.choices.items():
        opts = {o for a in p._actions for o in a.option_strings}
        assert {"--config", "--set", "--log-level"} <= opts, name
    args = parser.parse_args(["doctor", "--set", "animation.region=exp", "--config", "x.yaml"])
    assert args.overrides == ["animation.region=exp"] and args.config == "x.yaml"


def test_help_does_not_import_heavy_packages():
    code = ("import sys; from liveportrait_core.cli import main as cli; cli.build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'mediapipe', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "doctor" in out and "download-models" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["dance"])
    assert e.value.code == 2
    assert "invalid choice: 'dance'" in capsys.readouterr().err


def test_download_models_variant_shortcut(monkeypatch, capsys):
    from liveportrait_core.models.checkpoint import download

    seen = {}

    def fake(root, variant, **kw):
        seen.update(root=root, variant=variant, **kw)
        return []

    monkeypatch.setattr(download, "download_models", fake)
    assert cli.main(["download-models", "--variant", "animal", "--models-dir", "/tmp/w", "--force"]) == 0
    assert seen["variant"] == "animal" and str(seen["root"]) == "/tmp/w" and seen["force"] is True
    assert "all files present and verified" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "liveportrait_core", "--version"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("liveportrait 0.")  # the console command's name


@pytest.mark.parametrize("extra, mode, engine_mode", [
    (["--loop"], "(every frame, looped)", "engine started (lossless file processing)"),
    (["--realtime"], "(live)", "engine started (live)"),
])
def test_run_names_the_input_mode_the_engine_uses(tmp_path, extra, mode, engine_mode):
    """The input line and the engine's log agree: a looped file is still processed every frame (it said 'live')."""
    import cv2
    import numpy as np

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 60 * i, np.uint8))
    writer.release()
    out = subprocess.run([sys.executable, "-m", "liveportrait_core", "run", "--input", str(clip), *extra,
                          "--models-dir", str(tmp_path / "no-weights"), "--max-frames", "1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert f"input: {clip}  {mode}" in out.stdout, out.stdout + out.stderr
    assert engine_mode in out.stderr, out.stderr
    assert out.returncode == 1 and "weights are not usable" in out.stderr  # no weights here: one clear error
