"""The GPU check (tools/gpu_check.py): its CPU dry run end to end (what CI can run of it), its report,
and how it reports a failing step. The GPU run itself needs a lent GPU (docs/PERFORMANCE.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from liveportrait_core.tools import gpu_check
from tests.conftest import REPO, shared_path


@pytest.mark.slow
def test_dry_run_passes_every_step_and_writes_the_report(tmp_path):
    shared_path("reference", "vectors")
    out, scratch = tmp_path / "report", tmp_path / "scratch"
    scratch.mkdir()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] and report["dry_run"] and report["failures"] == []
    steps = report["steps"]
    assert [k for k in steps] == [name for name, _ in gpu_check.STEPS]
    assert all(s["status"] == "ok" for s in steps.values()), {k: s.get("error") for k, s in steps.items()}
    assert "not a model" in steps["weights"]["what"]
    vec = steps["vectors"]["fp32"]
    assert set(vec) == {"motion_extractor", "stitching", "lip", "eye"} and all(v["ok"] for v in vec.values())
    assert vec["motion_extractor"]["tolerance"] == 1e-4 and vec["eye"]["tolerance"] == 1e-5
    nets = steps["networks"]["fp32"]
    assert all(nets[n]["median_ms"] > 0 and nets[n]["gflop"] > 0 for n in gpu_check.BIG)
    frame = steps["frame"]["512"]
    assert {"cpu_paste", "device_paste", "device_paste_pipelined"} <= set(frame)
    assert steps["paste"]["512"] == {"max_lsb": 0, "values_differing": 0, "ok": True}
    assert steps["tests"]["ran"] is False and "-m gpu" in steps["tests"]["command"]
    md = (out / "gpu_check.md").read_text()
    assert "DRY RUN on the CPU" in md and "not GPU figures" in md and "all checks passed" in md
    assert not list(scratch.glob("lp_gpu_check_*")), "the weights and characters written are removed"
    assert "report:" in proc.stdout


def test_a_failing_step_is_reported_and_the_next_ones_still_run(monkeypatch):
    def boom(plan, ctx):
        raise ValueError("injected")

    ran = []
    steps = (("environment", lambda p, c: {"gpu": "test"}), ("vectors", boom),
             ("frame", lambda p, c: ran.append("frame") or {}))
    monkeypatch.setattr(gpu_check, "STEPS", steps)
    plan = gpu_check.make_plan(gpu_check.build_parser().parse_args(["--dry-run"]))
    report = gpu_check.run_check(plan, log=lambda s: None)
    assert ran == ["frame"] and not report["ok"]
    assert report["steps"]["vectors"]["status"] == "error" and "injected" in report["steps"]["vectors"]["error"]
    assert report["failures"] == ["vectors: ValueError: injected"]
    assert "FAILED" in gpu_check.format_markdown(report)


def test_without_a_gpu_the_full_check_says_so_and_stops(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    env = report["steps"]["environment"]
    assert env["status"] == "error" and "--dry-run" in env["error"]
    assert all(report["steps"][n]["status"] == "skipped" for n, _ in gpu_check.STEPS[1:])
