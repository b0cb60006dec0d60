"""download-models: fails fast without a network, verifies before moving into place, never leaves partial files.

No test touches the network: the offline cases use HF_HUB_OFFLINE or an endpoint on a closed local
port, the rest replace ``huggingface_hub.hf_hub_download`` with a fake that "downloads" files written
here. The layout is cut to the two small files so that no test needs the 520 MB of full weights.
"""
from __future__ import annotations

import shutil
import socket
import time
import types
from pathlib import Path

import huggingface_hub
import pytest

from liveportrait_core.cli import main as cli
from liveportrait_core.models.checkpoint import download, layout, weights
from liveportrait_core.models.checkpoint.download import DownloadError
from liveportrait_core.models.checkpoint.recipe import recipe_weights

AFE_REL = "liveportrait/base_models/appearance_feature_extractor.pth"
STITCH_REL = "liveportrait/retargeting_models/stitching_retargeting_module.pth"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: connections are refused


@pytest.fixture
def small_layout(monkeypatch):
    """The human variant cut to its two small files."""
    monkeypatch.setitem(layout.CHECKPOINT_FILES, "human", {
        "appearance_feature_extractor": AFE_REL, "stitching_retargeting_module": STITCH_REL})


@pytest.fixture(scope="module")
def source_files(tmp_path_factory) -> dict[str, Path]:
    """rel -> a good file (recipe weights in the official layout) the fake hub serves."""
    root = tmp_path_factory.mktemp("hub")
    weights.write_checkpoints(root, recipe_weights(("appearance_feature_extractor", *layout.RETARGETING_MODULES)))
    return {AFE_REL: root / AFE_REL, STITCH_REL: root / STITCH_REL}


@pytest.fixture
def checksums(source_files) -> dict[str, tuple[int, str]]:
    return {rel: (p.stat().st_size, weights.sha256_file(p)) for rel, p in source_files.items()}


class FakeHub:
    """Stands in for ``hf_hub_download``: copies the served file into ``local_dir`` like the real one."""

    def __init__(self, files: dict[str, Path], fail_on: str | None = None, corrupt: str | None = None):
        self.files, self.fail_on, self.corrupt, self.calls = files, fail_on, corrupt, []

    def __call__(self, repo_id, filename, *, local_dir, revision=None, etag_timeout=10, token=None, **kw):
        self.calls.append(filename)
        dest = Path(local_dir) / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        if filename == self.fail_on:  # a connection that drops halfway, leaving a partial file
            part = Path(local_dir) / ".cache" / "huggingface" / "download" / (Path(filename).name + ".incomplete")
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(self.files[filename].read_bytes()[:1000])
            raise ConnectionError("Connection reset by peer")
        shutil.copyfile(self.files[filename], dest)
        if filename == self.corrupt:
            data = bytearray(dest.read_bytes())
            data[len(data) // 2] ^= 0xFF
            dest.write_bytes(bytes(data))
        return str(dest)


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(download, "offline_reason", lambda **kw: None)


def _weight_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------------
# no network


def test_offline_mode_fails_fast_with_a_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = tmp_path / "models"
    t0 = time.monotonic()
    rc = cli.main(["download-models", "--models-dir", str(models)])
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    assert rc == 1
    assert "cannot download the LivePortrait weights: offline mode is on (HF_HUB_OFFLINE is set)" in err
    assert "https://huggingface.co/KwaiVGI/LivePortrait" in err and str(models / AFE_REL) in err
    assert not models.exists()
    assert elapsed < 60  # generous: the point is "no retry loop", not a speed figure


def test_unreachable_hub_fails_without_retrying(tmp_path, monkeypatch):
    for k in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    fake = FakeHub({})
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    with pytest.raises(DownloadError, match=r"cannot reach 127\.0\.0\.1:\d+"):
        download.download_models(tmp_path / "m")
    assert fake.calls == [] and not (tmp_path / "m").exists()


def test_unreachable_proxy_is_named(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_closed_port()}")
    assert "cannot reach the proxy 127.0.0.1" in download.offline_reason()


def test_existing_models_folder_keeps_only_what_was_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError):
        download.download_models(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------------------------------------
# mocked downloads


def test_download_verifies_and_moves_into_place(tmp_path, monkeypatch, small_layout, online, source_files,
                                                checksums):
    fake = FakeHub(source_files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    got = download.download_models(tmp_path, checksums=checksums)
    assert sorted(fake.calls) == sorted([AFE_REL, STITCH_REL])
    assert {r.rel: r.action for r in got} == {AFE_REL: "downloaded", STITCH_REL: "downloaded"}
    assert _weight_files(tmp_path) == sorted([tmp_path / AFE_REL, tmp_path / STITCH_REL,
                                              tmp_path / weights.MANIFEST_NAME])  # no staging left
    assert (tmp_path / AFE_REL).read_bytes() == source_files[AFE_REL].read_bytes()
    assert weights.read_manifest(tmp_path)[AFE_REL]["sha256"] == checksums[AFE_REL][1]
    # the fake hub serves recipe weights, not the official bytes: usable, and said to differ from the pinned hash
    assert [r.status for r in weights.verify_models(tmp_path)] == ["differs", "differs"]
    with monkeypatch.context() as m:  # had the hub served the official files, they would be plainly "ok"
        for rel, sha in checksums.items():
            m.setitem(weights.OFFICIAL_CHECKSUMS, rel, sha)
        assert [r.status for r in weights.verify_models(tmp_path)] == ["ok", "ok"]

    # a second run finds both files valid and downloads nothing
    fake.calls.clear()
    again = download.download_models(tmp_path, checksums=checksums)
    assert fake.calls == [] and {r.action for r in again} == {"differs"}  # kept; not the pinned official bytes


def test_hash_mismatch_is_rejected_and_deleted(tmp_path, monkeypatch, small_layout, online, source_files,
                                               checksums):
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(source_files, corrupt=STITCH_REL))
    with pytest.raises(DownloadError, match="does not match the given checksum") as e:
        download.download_models(tmp_path, checksums=checksums)
    assert STITCH_REL in str(e.value)
    assert not (tmp_path / STITCH_REL).exists()
    assert not (tmp_path / download.STAGING_DIR).exists()


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch, small_layout, online, source_files,
                                                     checksums):
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(source_files, fail_on=STITCH_REL))
    with pytest.raises(DownloadError, match="Connection reset by peer") as e:
        download.download_models(tmp_path, checksums=checksums)
    assert "download the files by hand" in str(e.value)
    assert not (tmp_path / STITCH_REL).exists()
    assert not list(tmp_path.rglob("*.incomplete")) and not (tmp_path / ".cache").exists()
    # files that were complete and verified before the failure stay, they are good
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.pth")] in ([], [AFE_REL])


def test_keep_partial_keeps_the_staging_folder_for_resuming(tmp_path, monkeypatch, small_layout, online,
                                                            source_files, checksums):
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(source_files, fail_on=STITCH_REL))
    with pytest.raises(DownloadError):
        download.download_models(tmp_path, checksums=checksums, keep_partial=True)
    assert list((tmp_path / download.STAGING_DIR).rglob("*.incomplete"))
    assert not (tmp_path / STITCH_REL).exists()


def test_a_bad_file_in_place_is_replaced(tmp_path, monkeypatch, small_layout, online, source_files, checksums):
    (tmp_path / STITCH_REL).parent.mkdir(parents=True)
    (tmp_path / STITCH_REL).write_bytes(source_files[STITCH_REL].read_bytes()[:5000])  # truncated
    shutil.copytree(source_files[AFE_REL].parent, (tmp_path / AFE_REL).parent)
    fake = FakeHub(source_files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    download.download_models(tmp_path, checksums=checksums)
    assert fake.calls == [STITCH_REL]
    assert (tmp_path / STITCH_REL).read_bytes() == source_files[STITCH_REL].read_bytes()


def test_downloaded_file_with_the_wrong_layout_is_rejected(tmp_path, monkeypatch, small_layout, online,
                                                           source_files):
    swapped = {AFE_REL: source_files[STITCH_REL], STITCH_REL: source_files[STITCH_REL]}
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(swapped))
    monkeypatch.setattr(download, "hub_checksums", lambda *a, **k: {})  # nothing known: layout check only
    monkeypatch.setattr(weights, "OFFICIAL_CHECKSUMS", {})
    with pytest.raises(DownloadError, match="not usable"):
        download.download_models(tmp_path)
    assert not (tmp_path / AFE_REL).exists()


def test_unpinned_files_use_the_hubs_lfs_metadata(tmp_path, monkeypatch, small_layout, online, source_files,
                                                  checksums):
    monkeypatch.setattr(weights, "OFFICIAL_CHECKSUMS", {})
    bad = {AFE_REL: (checksums[AFE_REL][0], "0" * 64), STITCH_REL: checksums[STITCH_REL]}
    monkeypatch.setattr(download, "hub_checksums", lambda rels, *a, **k: {r: bad[r] for r in rels})
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(source_files))
    with pytest.raises(DownloadError, match="hub LFS metadata checksum"):
        download.download_models(tmp_path)
    assert not (tmp_path / AFE_REL).exists()


def test_official_human_files_are_pinned():
    human = set(layout.checkpoint_files("human").values())
    assert set(weights.OFFICIAL_CHECKSUMS) == human
    assert all(len(sha) == 64 and int(sha, 16) >= 0 for _, sha in weights.OFFICIAL_CHECKSUMS.values())


def test_not_enough_disk_space_fails_before_downloading(tmp_path, monkeypatch, small_layout, online, source_files,
                                                       checksums):
    fake = FakeHub(source_files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: types.SimpleNamespace(free=1000))
    with pytest.raises(DownloadError, match="not enough free disk space"):
        download.download_models(tmp_path / "m", checksums=checksums)
    assert fake.calls == [] and not (tmp_path / "m").exists()


def test_a_file_that_differs_from_the_official_one_is_kept_and_said(tmp_path, monkeypatch, small_layout, capsys):
    """download-models never replaces a usable file behind the user's back, but says it is not the official one."""
    weights.write_checkpoints(tmp_path, recipe_weights(("appearance_feature_extractor", *layout.RETARGETING_MODULES)))
    before = {p: p.read_bytes() for p in _weight_files(tmp_path)}
    monkeypatch.setattr(download, "offline_reason", lambda **kw: pytest.fail("nothing needs downloading"))
    assert cli.main(["download-models", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"kept, but not the official file (usable: same keys and shapes; --force replaces it): {AFE_REL}" in out
    assert "2 differ from the official ones and were kept" in out and "doctor" in out
    assert {p: p.read_bytes() for p in _weight_files(tmp_path)} == before
