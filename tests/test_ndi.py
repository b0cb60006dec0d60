"""NDI loopback: our NdiOutput sends, a cyndilib receiver on 127.0.0.1 gets the frames, alpha exact.

The body runs in a subprocess inside a private network namespace (``unshare -n``, only ``lo``), so
no packet can leave the machine. Without mDNS, cyndilib's Finder needs an NDI config file naming
127.0.0.1 (docs: shared notes DEPENDENCIES.md section 4). Skips when cyndilib or unshare is missing
or not permitted.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BODY = textwrap.dedent(r"""
    import json, sys, time
    import numpy as np
    from liveportrait_core.outputs.base import PublishedFrame
    from liveportrait_core.outputs.ndi import NdiOutput
    from cyndilib.finder import Finder
    from cyndilib.receiver import Receiver, ReceiveFrameType
    from cyndilib.video_frame import VideoRecvFrame
    from cyndilib.wrapper import RecvBandwidth, RecvColorFormat

    W, H, N = 96, 64, 40
    out = NdiOutput("LP_LOOPBACK", fps=30)
    out.open()

    def frame(k):
        img = np.zeros((H, W, 4), np.uint8)
        img[..., 0] = np.arange(W, dtype=np.uint8)[None, :] * 2
        img[..., 1] = 128
        img[..., 2] = (k * 5) % 256
        img[..., 3] = (np.arange(H, dtype=np.uint8)[:, None] * 4 + k) % 256  # a different alpha every frame
        return img

    frames = [frame(k) for k in range(N)]
    out.send(PublishedFrame(0, 0.0, 0.0, frames[0]))  # creates the sender
    finder = Finder()
    finder.open()
    deadline = time.monotonic() + 30  # generous: on a loaded 2-core machine discovery takes seconds
    names = []
    while time.monotonic() < deadline and not names:
        finder.wait_for_sources(0.5)
        names = [n for n in finder.get_source_names() if "LP_LOOPBACK" in n]
    result = {"names": names, "received": [], "alpha_err": [], "color_err": [], "size": None, "fourcc": None}
    if names:
        rx = Receiver(color_format=RecvColorFormat.BGRX_BGRA, bandwidth=RecvBandwidth.highest)
        vf = VideoRecvFrame()
        rx.set_video_frame(vf)
        rx.set_source(finder.get_source(names[0]))
        sent = 0
        deadline = time.monotonic() + 40  # the receiver's connection can take seconds under load
        while time.monotonic() < deadline and len(result["received"]) < 10:
            k = sent % N
            out.send(PublishedFrame(k, 0.0, 0.0, frames[k]))
            sent += 1
            if rx.receive(ReceiveFrameType.recv_video, 100) & ReceiveFrameType.recv_video:
                buf = np.empty(vf.get_data_size(), np.uint8)
                vf.fill_p_data(buf)
                img = buf.reshape(H, W, 4)
                # which sent frame is it? alpha identifies it exactly when alpha is lossless
                k_rx = int(img[0, 0, 3]) % N
                result["received"].append(k_rx)
                result["alpha_err"].append(int(np.abs(img[..., 3].astype(int) - frames[k_rx][..., 3]).max()))
                result["color_err"].append(int(np.abs(img[..., :3].astype(int) - frames[k_rx][..., :3]).max()))
                result["size"] = list(vf.get_resolution())
                result["fourcc"] = int(vf.get_fourcc())
        rx.disconnect()
    finder.close()
    out.close()
    print("RESULT " + json.dumps(result))
""")


def _unshare_works() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def test_ndi_loopback_frames_arrive_with_exact_alpha(tmp_path):
    pytest.importorskip("cyndilib")
    if not _unshare_works():
        pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")
    (tmp_path / "ndi-config.v1.json").write_text(json.dumps({"ndi": {"networks": {"ips": "127.0.0.1"}}}))
    script = tmp_path / "ndi_body.py"
    script.write_text(BODY)
    cmd = (f"ip link set lo up && NDI_CONFIG_DIR={tmp_path} PYTHONPATH={REPO} "
           f"exec {sys.executable} {script}")
    proc = subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True, timeout=150)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(line[len("RESULT "):])
    assert res["names"], "the NDI sender was not found on 127.0.0.1"
    assert len(res["received"]) >= 3, res
    assert res["size"] == [96, 64] and res["fourcc"] == 1095911234  # 'BGRA'
    assert max(res["alpha_err"]) == 0  # alpha is carried exactly
    assert max(res["color_err"]) <= 40  # colour goes through NDI's lossy codec
