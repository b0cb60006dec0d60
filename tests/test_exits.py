"""Every way a command ends, run as a user runs it: the real CLI in a subprocess, with the full-size networks
(recipe weights written by the test: test-only synthetic numbers) so that a model load and a frame take seconds
on a CPU, as they do for users. Each test asserts the documented exit status (``liveportrait_core.cli.exits``), that
no signal ended the process (the old abort: -6 / 134, "terminate called without an active exception") and, where
a recording was asked for, that the file is complete (it opens and has frames).

Stopping is timed by what the process prints (its status line), never by sleeps.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from liveportrait_core.cli import exits
from liveportrait_core import paths
from tests.conftest import REPO, shared_path

ASTRONAUT = paths.DEFAULT_CHARACTERS_DIR / "astronaut.png"
ABORTED = "terminate called"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One user cache for this module (the prepared character and the demo clip are made once)."""
    return tmp_path_factory.mktemp("cache")


class Cli:
    """``liveportrait ARGS`` in a subprocess, from another folder, its output collected as it comes."""

    def __init__(self, args: list[str], cwd: Path, cache: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env.update(PYTHONUNBUFFERED="1", XDG_CACHE_HOME=str(cache),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-m", "liveportrait_core", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(s, lines), daemon=True)
                         for s, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def wait_for(self, text: str, timeout: float = 180.0) -> bool:
        """True once ``text`` was printed; False if the process ended (or the deadline passed) first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.text:
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the readers catch up with the last lines
                return text in self.text
            time.sleep(0.05)
        return False

    def signal(self, sig: int = signal.SIGINT) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 180.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the command did not end within {timeout} s:\n{self.text}")
        for t in self._readers:
            t.join(5)
        return rc


def _assert_status(cli: Cli, rc: int, expected: int) -> None:
    assert rc >= 0, f"ended by signal {-rc}:\n{cli.text}"
    assert ABORTED not in cli.text and rc != 134, cli.text
    assert rc == expected, f"exit status {rc}, documented {expected}:\n{cli.text}"
    assert "Traceback" not in cli.text, cli.text


def _frames(path: Path) -> int:
    """Frames a player gets from the file (0 when it does not open)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened():
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def _run(tmp_path: Path, models: Path, cache: Path, *extra: str, command: str = "run") -> Cli:
    args = [command, "--character", str(ASTRONAUT), "--models-dir", str(models), "--status-every", "0.2",
            "--set", "model.device=cpu", *extra]
    return Cli(args, tmp_path, cache)


def _video() -> str:
    return str(shared_path("testdata", "driving", "d0.mp4"))


def test_ctrl_c_while_the_networks_load_exits_130_without_a_recording(recipe_models_dir, cache_dir, tmp_path):
    """Ctrl-C during the model load (a native call that cannot be interrupted); a second Ctrl-C while the command
    waits for it leaves at once: both end with 130, never with SIGABRT."""
    out = tmp_path / "out.mp4"
    cli = _run(tmp_path, recipe_models_dir, cache_dir, "--input", _video(), "--record", str(out))
    assert cli.wait_for("starting: loading"), cli.text
    cli.signal()
    if cli.wait_for("stopping: waiting", timeout=60):  # the load outlived the stop timeout: leave now
        cli.signal()
    rc = cli.finish()
    _assert_status(cli, rc, exits.INTERRUPTED)
    assert "interrupted" in cli.text and "recording: nothing recorded" in cli.text
    assert "recording is already finalised" not in cli.text  # the 'stopping:' line claimed one
    assert not out.exists()  # no recording is claimed, and none was made


def test_duration_that_ends_during_the_load_waits_for_it_and_exits_1(recipe_models_dir, cache_dir, tmp_path):
    cli = _run(tmp_path, recipe_models_dir, cache_dir, "--input", _video(), "--duration", "0.5")
    rc = cli.finish()
    _assert_status(cli, rc, exits.ERROR)
    assert "no frame was published (--duration 0.5 s ended first" in cli.text


def test_a_camera_that_cannot_be_opened_exits_1_once_with_the_reason(recipe_models_dir, cache_dir, tmp_path):
    """The reported case: ``run --input 5 --max-frames 2`` aborted while the networks were still loading."""
    cli = _run(tmp_path, recipe_models_dir, cache_dir, "--input", "57", "--max-frames", "2")
    rc = cli.finish()
    _assert_status(cli, rc, exits.ERROR)
    assert "".join(cli.err).count("could not be opened") == 1, cli.text  # said once, by the command


def test_ctrl_c_mid_frame_finalises_the_recording(recipe_models_dir, cache_dir, tmp_path):
    """Live input (the video paced as a camera): Ctrl-C while frame 2 is computed ends with 130, and the MP4
    holds the frame published before."""
    out = tmp_path / "live.mp4"
    cli = _run(tmp_path, recipe_models_dir, cache_dir, "--input", _video(), "--realtime", "--loop",
               "--record", str(out))
    assert cli.wait_for("computing frame 2"), cli.text
    cli.signal()
    rc = cli.finish()
    _assert_status(cli, rc, exits.INTERRUPTED)
    n = _frames(out)
    assert n >= 1, cli.text
    assert f"recording: {out}" in cli.text


def test_demo_max_frames_counts_published_frames_and_records_them(recipe_models_dir, cache_dir, tmp_path):
    """The reported case: ``demo --record x.mp4 --max-frames N`` (live: the demo clip paced as a camera) recorded
    0 frames, exited 1 and still printed "recording: x.mp4"."""
    out = tmp_path / "x.mp4"
    cli = Cli(["demo", "--record", str(out), "--max-frames", "1", "--models-dir", str(recipe_models_dir),
               "--set", "model.device=cpu"], tmp_path, cache_dir)
    rc = cli.finish()
    _assert_status(cli, rc, exits.OK)
    assert "frames published: 1 " in cli.text and f"recording: {out} (1 frame)" in cli.text
    assert _frames(out) >= 1
    assert "output obs_source" not in cli.text  # only the outputs that were on are listed



def test_a_reader_that_goes_away_ends_the_command_quietly(monkeypatch, capsys):
    """``liveportrait check-character --json | head``: when the reader closes the pipe, the write raises
    BrokenPipeError (Python ignores SIGPIPE); the command ends with status 1 and no traceback."""
    from liveportrait_core.cli import main as cli
    from liveportrait_core.cli.commands import doctor

    def run(args, settings):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(doctor, "run", run)
    assert cli.main(["doctor", "--quick"]) == exits.ERROR
    assert "Traceback" not in capsys.readouterr().err
