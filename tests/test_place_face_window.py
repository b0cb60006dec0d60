"""``place-face`` in a real window: Xvfb, the command as a user runs it, real X mouse clicks and keys (xdotool).
Skipped where Xvfb or xdotool is missing (the model layer is tested without a window in test_sidecar.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import yaml

from liveportrait_core.cli.commands.place_face import WINDOW
from tests.conftest import shared_path

needs_x = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                             reason="needs Xvfb and xdotool")


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def display():
    """A display of its own: Xvfb picks a free number and says which (-displayfd), so parallel runs never share."""
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1400x1000x24"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    number = xvfb.stdout.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    yield f":{number}"
    xvfb.terminate()
    xvfb.wait(10)


def _xdo(env, *args):
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=30).stdout.strip()


@needs_x
def test_clicks_in_the_window_save_a_valid_sidecar(tmp_path, display):
    """Each step is echoed in the terminal, which is how the test knows a click landed before the next: once, in
    a fresh CI venv, three clicks sent at fixed pauses were all lost and the run timed out."""
    image = tmp_path / "s23.jpg"
    shutil.copy(shared_path("testdata", "characters", "s23.jpg"), image)
    env = {**os.environ, "DISPLAY": display}
    proc = subprocess.Popen([sys.executable, "-m", "liveportrait_core", "place-face", str(image)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        win = _wait(lambda: _xdo(env, "search", "--onlyvisible", "--name", WINDOW).split("\n")[0], 60,
                    "the place-face window")

        def shown() -> bool:  # the first frame is shown once the window has the picture's size (626 + panel)
            geometry = _xdo(env, "getwindowgeometry", win)
            size = geometry.rsplit("Geometry:", 1)[-1].strip().split("x") if "Geometry:" in geometry else ["0"]
            return int(size[0]) >= 626 + 320

        _wait(shown, 60, "the window's first frame")
        clicks = (((260, 345), "click the eye (image right)"), ((395, 340), "click the mouth"),
                  ((340, 412), "points placed; enter saves"))  # eye (image left), eye, mouth: image pixels
        for (x, y), then in clicks:
            for _attempt in range(3):  # a click the window did not take yet is sent again; a taken one never is
                _xdo(env, "mousemove", "--window", win, str(x), str(y), "click", "1")
                try:
                    _wait(lambda: any(ln.strip() == then for ln in lines), 10, f"'{then}' after a click")
                    break
                except AssertionError:
                    continue
            assert any(ln.strip() == then for ln in lines), "".join(lines)
        _xdo(env, "key", "--window", win, "v")  # variant: global -> human
        time.sleep(0.3)
        _xdo(env, "key", "--window", win, "Return")
        proc.wait(timeout=60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert (tmp_path / "s23.jpg.yaml").is_file(), out
    data = yaml.safe_load((tmp_path / "s23.jpg.yaml").read_text())
    assert data["face"] == {"left_eye": [260, 345], "right_eye": [395, 340], "mouth": [340, 412]}
    assert data["settings"] == {"model": {"variant": "human"}}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is Linux's")
def test_without_a_desktop_it_says_so_instead_of_aborting(tmp_path):
    """OpenCV's Qt would abort the process (status 134) without a display: place-face refuses first, status 2."""
    image = tmp_path / "s23.jpg"
    shutil.copy(shared_path("testdata", "characters", "s23.jpg"), image)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    p = subprocess.run([sys.executable, "-m", "liveportrait_core", "place-face", str(image)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "needs a desktop" in p.stderr and not (tmp_path / "s23.jpg.yaml").exists()
