"""Fetch the official LivePortrait weights from Hugging Face, verify them, and only then put them in place.

Files are downloaded into a staging folder inside the models folder (``.cache/download``, ignored by
git), checked (size, SHA-256, safe load, keys and shapes) and moved into the official layout with an
atomic rename, so the official paths only ever hold complete, verified files. Without a network the
download fails within seconds (a short connection probe and ``HF_HUB_OFFLINE`` are checked first)
instead of retrying for minutes, and the staging folder is removed.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlparse

from liveportrait_core import paths
from liveportrait_core.models.checkpoint import layout, weights
from liveportrait_core.models.checkpoint.weights import REPO_ID, WeightsError

_log = logging.getLogger(__name__)

STAGING_DIR = Path(".cache") / "download"
MANUAL_URL = f"https://huggingface.co/{REPO_ID}/tree/main"


class DownloadError(WeightsError):
    """The download could not be done; the message says why and what to do."""


@dataclass
class FileResult:
    rel: str  #: path inside the models folder (= path in the Hugging Face repository)
    path: Path
    action: str  #: "downloaded", "present", or "differs" (present, usable, not the official bytes: kept)
    sha256: str | None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_reason(endpoint: str | None = None, timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached right now, or None when it looks reachable.

    A TCP probe of the hub (or of the configured HTTPS proxy, which is all we can reach directly then)
    answers in milliseconds where a DNS lookup or route is missing, instead of minutes of retries.
    """
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return "offline mode is on (HF_HUB_OFFLINE is set)"
    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), None)
    url = urlparse(proxy if proxy and "://" in proxy else (f"http://{proxy}" if proxy else endpoint or hub_endpoint()))
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    what = "the proxy " if proxy else ""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"cannot reach {what}{host}:{port} ({e.strerror or e})"


def _manual_help(models_dir: Path, rels: list[str]) -> str:
    listing = "\n".join(f"    {models_dir / r}" for r in rels)
    return (f"Connect to the internet and run the command again, or download the files by hand from "
            f"{MANUAL_URL} and put them at:\n{listing}")


def hub_checksums(rels: list[str], repo_id: str = REPO_ID, revision: str | None = None,
                  token: str | bool | None = None) -> dict[str, tuple[int, str]]:
    """(size, sha256) of each file as the hub's LFS metadata states it (one request)."""
    from huggingface_hub import HfApi

    out: dict[str, tuple[int, str]] = {}
    for info in HfApi(endpoint=hub_endpoint()).get_paths_info(repo_id, rels, revision=revision, token=token):
        lfs = getattr(info, "lfs", None)
        if lfs is not None and getattr(lfs, "sha256", None):
            out[info.path] = (int(lfs.size), str(lfs.sha256))
    return out


def _expected(rels: list[str], checksums: Mapping[str, tuple[int, str]] | None, repo_id: str,
              revision: str | None, token: str | bool | None) -> dict[str, tuple[int, str, str]]:
    """rel -> (size, sha256, source): pinned official hashes first, the hub's metadata for the rest."""
    if checksums is not None:
        return {r: (*checksums[r], "given") for r in rels if r in checksums}
    out = {r: (*weights.OFFICIAL_CHECKSUMS[r], "official") for r in rels if r in weights.OFFICIAL_CHECKSUMS}
    unpinned = [r for r in rels if r not in out]
    if unpinned or _log.isEnabledFor(logging.DEBUG):
        try:
            hub = hub_checksums(rels, repo_id, revision, token)
        except Exception as e:  # metadata is a second opinion for pinned files; see below for unpinned ones
            hub = {}
            _log.warning("could not read the hub's file metadata: %s", e)
        for r in rels:
            if r in out and r in hub and hub[r][1] != out[r][1]:
                _log.warning("%s: the hub now lists SHA-256 %s, this version expects %s; keeping the expected one",
                             r, hub[r][1][:12], out[r][1][:12])
            elif r not in out and r in hub:
                out[r] = (*hub[r], "hub LFS metadata")
    return out


def _hf_download(repo_id: str, rel: str, staging: Path, revision: str | None, token: str | bool | None,
                 timeout: float) -> Path:
    import huggingface_hub

    return Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=rel, revision=revision,
                                                local_dir=staging, etag_timeout=timeout, token=token))


def _verify_staged(file: str, rel: str, staged: Path, expected: tuple[int, str, str] | None,
                   variant: str, models_dir: Path) -> str:
    """Size, hash and layout of a freshly downloaded file; returns its SHA-256 or raises."""
    size = staged.stat().st_size
    sha = weights.sha256_file(staged)
    if expected is not None:
        want_size, want_sha, source = expected
        if size != want_size or sha != want_sha:
            raise DownloadError(f"{rel}: the downloaded file does not match the {source} checksum "
                                f"({size:,} bytes, SHA-256 {sha[:16]}...; expected {want_size:,} bytes, "
                                f"{want_sha[:16]}...). It was deleted; run the command again (a proxy or "
                                f"an interrupted transfer can corrupt downloads).")
    _, problems = weights._read_file(file, staged, layout.modules_in_file(file), variant, models_dir)
    if problems:
        raise DownloadError(f"{rel}: the downloaded file is not usable and was deleted: " + " | ".join(problems))
    return sha


def _check_disk_space(root: Path, created: list[Path], needed: int) -> None:
    """Fail before downloading rather than after filling the disk (staged file + final file share a volume)."""
    existing = next((p for p in (root, *root.parents) if p not in created), root)
    free = shutil.disk_usage(existing).free
    margin = 64 * 2**20
    if needed + margin > free:
        raise DownloadError(f"not enough free disk space in {existing}: the weights need {needed / 2**20:,.0f} MB, "
                            f"{free / 2**20:,.0f} MB are free. Free some space or use --models-dir on another drive.")
    _log.info("downloading %.0f MB of LivePortrait weights into %s", needed / 2**20, root)


def download_models(models_dir: str | os.PathLike[str], variant: str = "human", *, repo_id: str = REPO_ID,
                    revision: str | None = None, force: bool = False, keep_partial: bool = False,
                    timeout: float = 10.0, token: str | bool | None = None,
                    checksums: Mapping[str, tuple[int, str]] | None = None,
                    on_file: Callable[[FileResult], None] | None = None) -> list[FileResult]:
    """Make every official file of ``variant`` present and verified in ``models_dir``.

    Files already there and valid are kept (``force`` fetches them again). Raises ``DownloadError``
    with the reason and the manual alternative; on failure nothing new is left in the official layout,
    and the staging folder is removed unless ``keep_partial`` (so that a later run can resume).
    """
    root = weights.models_root(models_dir)
    targets = layout.checkpoint_files(variant)
    results: list[FileResult] = []
    todo: dict[str, str] = {}
    if not force:
        for rep in weights.verify_models(root, variant, deep=True, check_hash=True):
            rel = targets[rep.file]
            if rep.ok:
                res = FileResult(rel, rep.path, "present" if rep.status == "ok" else "differs", rep.sha256)
                results.append(res)
                if on_file:
                    on_file(res)
            else:
                if rep.status == "bad":
                    _log.warning("%s", rep.message)
                todo[rep.file] = rel
    else:
        todo = dict(targets)
    if not todo:
        return results

    rels = list(todo.values())
    if importlib.util.find_spec("huggingface_hub") is None:
        raise DownloadError("cannot download the LivePortrait weights: the huggingface_hub package is missing; "
                            f"install it with `{paths.python_command(paths.this_python(), '-m', 'pip', 'install', 'huggingface_hub')}`.\n"
                            + _manual_help(root, rels))
    reason = offline_reason(timeout=min(timeout, 5.0))
    if reason:
        raise DownloadError(f"cannot download the LivePortrait weights: {reason}.\n" + _manual_help(root, rels))

    expected = _expected(rels, checksums, repo_id, revision, token)
    for r in rels:
        if r not in expected:
            _log.warning("%s: no checksum known; only the file's layout can be verified", r)
    created = [p for p in (root, *root.parents) if not p.exists()]  # removed again if left empty
    _check_disk_space(root, created, sum(expected[r][0] for r in rels if r in expected))
    staging = root / STAGING_DIR
    staging.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        for file, rel in todo.items():
            _log.info("downloading %s from %s", rel, repo_id)
            try:
                staged = _hf_download(repo_id, rel, staging, revision, token, timeout)
            except Exception as e:  # network, HTTP and hub errors all end the same way for the user
                raise DownloadError(f"downloading {rel} from {repo_id} failed: {type(e).__name__}: "
                                    f"{weights._short(e)}\n" + _manual_help(root, rels)) from None
            try:
                sha = _verify_staged(file, rel, staged, expected.get(rel), variant, root)
            except DownloadError:
                staged.unlink(missing_ok=True)
                raise
            final = root / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            exp = expected.get(rel)
            if exp is None or exp[2] != "official":  # pinned hashes need no record; the rest do
                weights.record_verified(root, rel, final.stat().st_size, sha,
                                        exp[2] if exp else "download (no published checksum)")
            res = FileResult(rel, final, "downloaded", sha)
            results.append(res)
            if on_file:
                on_file(res)
        ok = True
    finally:
        if ok or not keep_partial:
            shutil.rmtree(staging, ignore_errors=True)
            for d in (staging.parent, *created):  # innermost first
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    return results
